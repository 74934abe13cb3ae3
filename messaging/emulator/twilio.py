"""A Twilio-compatible Programmable Messaging emulator, served by the same process as the
SendGrid one (its API lives under ``/2010-04-01/``, its controls under ``/_emulator/sms/``).

What it does, as Twilio documents it:

- ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` (form fields ``To``, ``From`` or
  ``MessagingServiceSid``, ``Body``, ``StatusCallback``) with basic auth ``AccountSid:AuthToken``:
  401 (code 20003) for wrong credentials; 400 with Twilio's codes: 21211 for a ``To`` that is
  not E.164, 21212 for a bad ``From``, 21602 for an empty body, 21617 past 1,600 characters,
  21610 for a recipient who texted STOP to that sender, 21614 for a number that cannot take
  texts; 429 (code 20429, ``Retry-After``) past ``rate_per_second`` per sender; otherwise 201
  with a message resource (``sid`` ``SM…``, ``status`` ``queued``).
- Status callbacks to the message's ``StatusCallback``: ``queued``, ``sent``, then
  ``delivered``, ``undelivered`` (``ErrorCode`` 30003) or ``failed`` (30006), form-encoded
  and signed like Twilio: ``X-Twilio-Signature`` is base64 HMAC-SHA1, keyed with the auth
  token, of the full URL followed by each POST parameter's name and value, sorted by name.
- Inbound texts to the URL registered for the number (``POST /_emulator/sms/numbers`` or
  ``sms_url``/``sms_numbers`` in the tenants file), signed the same way; a text to the
  number of a Messaging Service (the one a send through it came from) carries its
  ``MessagingServiceSid``. The answer's TwiML
  ``<Message>`` is recorded as a text sent back to the person (STOP confirmations, HELP).
  A STOP (or STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT) marks the pair opted out, so later
  sends from that number answer 21610 until a START.

Outcomes are chosen by the recipient's number, like the +tags of email addresses: the last
two digits ``10`` reply "Yes, tell me more", ``11`` reply STOP, ``12`` reply HELP, ``13``
are undelivered, ``14`` fail, ``15`` stop at ``sent``; any other number is delivered.
Twilio's magic test numbers answer as Twilio's do: ``+15005550001`` 21211, ``+15005550004``
21610, ``+15005550009`` 21614.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import http.client
import itertools
import json
import logging
import os
import random
import re
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit
from xml.etree import ElementTree

from .httpserver import Request, Response

logger = logging.getLogger("sendgrid_emulator")

JSON = "application/json"
API_VERSION = "2010-04-01"
_MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
REPLY_TEXTS = {"10": "Yes, tell me more", "11": "STOP", "12": "HELP"}


def signature_compute(*, auth_token: str, url: str, params: dict[str, str]) -> str:
    """Twilio's request signature (written out here, not borrowed from the SDK, so the app's
    check with ``twilio.request_validator`` really tests compatibility)."""
    payload = url + "".join(f"{name}{params[name]}" for name in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _sid(prefix: str) -> str:
    return prefix + os.urandom(16).hex()


def _error(status: int, code: int, message: str, headers: list | None = None) -> Response:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return Response(status, json.dumps(body).encode(), headers or [], JSON)


@dataclass
class SmsOptions:
    latency_ms: float = 0.0
    rate_per_second: int = 0  # per sender; 0 = unlimited
    fault_429_share: float = 0.0
    fault_500_share: float = 0.0
    retry_after_seconds: int = 1  # the Retry-After of a 429
    # Twilio's own opt-out handling: after a STOP, sends to that person answer 21610. Off,
    # only the application's suppression stands between a STOP and the next text (tests).
    carrier_opt_out: bool = True

    def update(self, changes: dict[str, Any]) -> list[str]:
        problems = []
        for name, value in changes.items():
            if name not in self.__dataclass_fields__:
                problems.append(f"{name}: unknown option")
                continue
            try:
                kind = type(getattr(self, name))
                if kind is bool and not isinstance(value, bool):
                    raise ValueError("expected true or false")
                setattr(self, name, kind(value))
            except (TypeError, ValueError) as exc:
                problems.append(f"{name}: {exc}")
        return problems


@dataclass(order=True)
class _Planned:
    due: float
    sequence: int
    generation: int = field(compare=False)
    kind: str = field(compare=False)  # "status" or "inbound"
    url: str = field(compare=False)
    params: dict[str, str] = field(compare=False)


class SmsEmulator:
    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        delay_min: float,
        delay_max: float,
        routes: Any = None,
        seed: int = 0,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.delay_min, self.delay_max = delay_min, delay_max
        self.routes = routes  # the SendGrid side's TenantRegistry: sms_url / sms_numbers
        self.options = SmsOptions()
        self.numbers: dict[str, str] = {}  # our number → inbound URL
        self.services: dict[str, str] = {}  # a Messaging Service's number → its MG… SID
        self.opted_out: set[tuple[str, str]] = set()  # (person, our number)
        self.store: deque[dict[str, Any]] = deque(maxlen=20_000)
        self.deliveries: deque[dict[str, Any]] = deque(maxlen=1000)
        self.counts: dict[str, int] = {}
        self._rng = random.Random(seed)
        self._window: dict[str, tuple[int, int]] = {}
        self._heap: list[_Planned] = []
        self._sequence = itertools.count()
        self._generation = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._in_flight = 0
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sms-post")
        self._thread = threading.Thread(target=self._run, name="sms-dispatch", daemon=True)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def reset(self) -> None:
        with self._lock:
            self._generation += 1
            self._heap.clear()
            self.store.clear()
            self.deliveries.clear()
            self.counts.clear()
            self.numbers.clear()
            self.services.clear()
            self.opted_out.clear()
            self._window.clear()
        self.options = SmsOptions()

    def pending(self) -> int:
        with self._lock:
            return len(self._heap) + self._in_flight

    def _count(self, name: str) -> None:
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + 1

    # --- the Messages API -------------------------------------------------------------------

    def handle_api(self, request: Request) -> Response:
        delay = self.options.latency_ms / 1000.0
        response = self._api(request)
        response.delay = delay
        return response

    def _authorised(self, request: Request, sid: str) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded.strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return (
            user == self.account_sid
            and sid == self.account_sid
            and hmac.compare_digest(password.encode(), self.auth_token.encode())
        )

    def _api(self, request: Request) -> Response:
        match = _MESSAGES_PATH.match(request.path)
        if match is None:
            return _error(404, 20404, "The requested resource was not found")
        if not self._authorised(request, match.group("sid")):
            self._count("rejected")
            return _error(401, 20003, "Authenticate")
        if request.method == "GET":
            return Response(200, json.dumps({"messages": list(self.store)}).encode(), [], JSON)
        if request.method != "POST":
            return _error(405, 20004, "Method not allowed")
        fields = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        options = self.options
        if options.fault_500_share and self._rng.random() < options.fault_500_share:
            self._count("rejected")
            return _error(500, 20500, "Internal Server Error")
        if options.fault_429_share and self._rng.random() < options.fault_429_share:
            self._count("rejected")
            return self._too_many()
        refusal = self._refusal(fields)
        if refusal is not None:
            self._count("rejected")
            return refusal
        sender = fields.get("From") or fields.get("MessagingServiceSid", "")
        if options.rate_per_second and self._over_rate(sender):
            self._count("rejected")
            return self._too_many()
        return self._accept(fields)

    def _too_many(self) -> Response:
        retry_after = str(self.options.retry_after_seconds)
        return _error(429, 20429, "Too Many Requests", [("Retry-After", retry_after)])

    def _refusal(self, fields: dict[str, str]) -> Response | None:
        to = fields.get("To", "")
        sender = fields.get("From", "")
        service = fields.get("MessagingServiceSid", "")
        body = fields.get("Body", "")
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if not _E164.match(to) or to == "+15005550001":
            return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not sender and not service:
            return _error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required.")
        if sender and not _E164.match(sender):
            return _error(400, 21212, f"The 'From' number {sender} is not a valid phone number.")
        if service and not _SERVICE_SID.match(service):
            return _error(400, 21705, "The Messaging Service Sid is invalid.")
        if not body.strip():
            return _error(400, 21602, "Message body is required.")
        if len(body) > 1600:
            return _error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        if to == "+15005550009":
            return _error(400, 21614, f"'To' number {to} is not a valid mobile number")
        if to == "+15005550004" or (to, sender or service) in self.opted_out:
            return _error(400, 21610, "Attempt to send to unsubscribed recipient")
        return None

    def _over_rate(self, sender: str) -> bool:
        second = int(time.time())
        with self._lock:
            window, count = self._window.get(sender, (second, 0))
            if window != second:
                window, count = second, 0
            count += 1
            self._window[sender] = (window, count)
        return count > self.options.rate_per_second

    def _accept(self, fields: dict[str, str]) -> Response:
        now = time.time()
        sid = _sid("SM")
        to, sender = fields["To"], fields.get("From", "")
        service = fields.get("MessagingServiceSid", "")
        if not sender and service:
            sender = self._service_number(service)
            self.services[sender] = service
        record = {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": to,
            "from": sender,
            "messaging_service_sid": service or None,
            "body": fields.get("Body", ""),
            "status": "accepted" if service else "queued",
            "direction": "outbound-api",
            "num_segments": "1",
            "api_version": API_VERSION,
            "status_callback": fields.get("StatusCallback", ""),
            "date_created": time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(now)),
            "received_at": now,
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        self.store.append(record)
        self._count("accepted")
        self._plan(record, now)
        public = {k: v for k, v in record.items() if k != "received_at"}
        return Response(201, json.dumps(public).encode(), [], JSON)

    def _service_number(self, service: str) -> str:
        # A Messaging Service picks a sender from its pool; ours has one number per service.
        return "+1555" + str(int(hashlib.sha256(service.encode()).hexdigest(), 16))[:7]

    # --- what happens after a send ----------------------------------------------------------

    def _delay(self) -> float:
        if self.delay_max <= 0:
            return 0.0
        return self._rng.uniform(self.delay_min, self.delay_max)

    def _plan(self, record: dict[str, Any], now: float) -> None:
        ending = record["to"][-2:]
        callback = record["status_callback"]
        common = {
            "MessageSid": record["sid"],
            "SmsSid": record["sid"],
            "AccountSid": self.account_sid,
            "From": record["from"],
            "To": record["to"],
            "ApiVersion": API_VERSION,
        }
        if record["messaging_service_sid"]:
            common["MessagingServiceSid"] = record["messaging_service_sid"]
        steps: list[tuple[str, dict[str, str]]] = [("queued", {}), ("sent", {})]
        if ending == "13":
            steps.append(("undelivered", {"ErrorCode": "30003"}))
        elif ending == "14":
            steps.append(("failed", {"ErrorCode": "30006"}))
        elif ending != "15":
            steps.append(("delivered", {}))
        when = now
        if callback:
            for status, extra in steps:
                when += self._delay()
                params = {**common, "MessageStatus": status, "SmsStatus": status, **extra}
                self._push(when, "status", callback, params)
        reply = REPLY_TEXTS.get(ending)
        if reply is not None:
            when += self._delay() + 0.05
            self._push(
                when,
                "inbound",
                "",
                self._inbound_params(person=record["to"], ours=record["from"], body=reply),
            )

    def _inbound_params(self, *, person: str, ours: str, body: str) -> dict[str, str]:
        sid = _sid("SM")
        # Twilio names the Messaging Service of a number in its pool, as it does here.
        service = {"MessagingServiceSid": self.services[ours]} if ours in self.services else {}
        return {
            **service,
            "MessageSid": sid,
            "SmsSid": sid,
            "SmsMessageSid": sid,
            "AccountSid": self.account_sid,
            "From": person,
            "To": ours,
            "Body": body,
            "NumMedia": "0",
            "NumSegments": "1",
            "SmsStatus": "received",
            "ApiVersion": API_VERSION,
        }

    def _push(self, due: float, kind: str, url: str, params: dict[str, str]) -> None:
        with self._lock:
            heapq.heappush(
                self._heap,
                _Planned(due, next(self._sequence), self._generation, kind, url, params),
            )
        self._wake.set()

    def inbound_url(self, number: str) -> str | None:
        if number in self.numbers:
            return self.numbers[number]
        if self.routes is not None:
            self.routes.refresh()
            for route in self.routes.all():
                if number in (route.get("sms_numbers") or []) and route.get("sms_url"):
                    return route["sms_url"]
        return None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.05)
            self._wake.clear()
            now = time.time()
            due: list[_Planned] = []
            with self._lock:
                while self._heap and self._heap[0].due <= now:
                    item = heapq.heappop(self._heap)
                    if item.generation == self._generation:
                        due.append(item)
                self._in_flight += len(due)
            for item in due:
                self._pool.submit(self._deliver, item)

    def _deliver(self, item: _Planned) -> None:
        try:
            if item.kind == "inbound":
                self._deliver_inbound(item)
            else:
                self._post(item.kind, item.url, item.params)
        except Exception:
            logger.exception("emulator.sms_post_failed", extra={"url": item.url})
        finally:
            with self._lock:
                self._in_flight -= 1

    def _deliver_inbound(self, item: _Planned) -> None:
        params = item.params
        person, ours, body = params["From"], params["To"], params["Body"]
        keyword = body.strip().upper()
        if keyword in STOP_WORDS and self.options.carrier_opt_out:
            self.opted_out.add((person, ours))
        elif keyword in START_WORDS:
            self.opted_out.discard((person, ours))
        self.store.append(
            {
                "sid": params["MessageSid"],
                "account_sid": self.account_sid,
                "to": ours,
                "from": person,
                "body": body,
                "status": "received",
                "direction": "inbound",
                "received_at": time.time(),
            }
        )
        url = self.inbound_url(ours)
        if url is None:
            self._count("inbound_unroutable")
            return
        status, answer = self._post("inbound", url, params)
        if status is not None and 200 <= status < 300:
            for text in _twiml_messages(answer):
                self.store.append(
                    {
                        "sid": _sid("SM"),
                        "account_sid": self.account_sid,
                        "to": person,
                        "from": ours,
                        "body": text,
                        "status": "delivered",
                        "direction": "outbound-reply",
                        "received_at": time.time(),
                    }
                )

    def _post(self, kind: str, url: str, params: dict[str, str]) -> tuple[int | None, bytes]:
        body = urlencode(params).encode()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "TwilioProxy/1.1",
            "X-Twilio-Signature": signature_compute(
                auth_token=self.auth_token, url=url, params=params
            ),
        }
        parts = urlsplit(url)
        connection_class = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        status: int | None = None
        answer = b""
        error = None
        started = time.time()
        for attempt in range(3):
            connection = connection_class(parts.hostname or "127.0.0.1", parts.port, timeout=10)
            try:
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                status, answer, error = response.status, response.read(), None
            except (OSError, http.client.HTTPException) as exc:
                status, error = None, f"{type(exc).__name__}: {exc}"
            finally:
                connection.close()
            if status is not None and status < 500:
                break
            time.sleep(0.2 * (2**attempt))  # Twilio retries a callback that failed to connect
        self.deliveries.append(
            {
                "kind": kind,
                "url": url,
                "status": status,
                "error": error,
                "started": started,  # when the first attempt was posted
                "at": time.time(),  # after the answer: the receiver had committed by then
                "number": params.get("From") if kind == "inbound" else params.get("To"),
                "body": params.get("Body", "") if kind == "inbound" else "",
            }
        )
        self._count(f"{kind}_posts_{'ok' if status and 200 <= status < 300 else 'failed'}")
        return status, answer

    # --- controls ---------------------------------------------------------------------------

    def controls(self, request: Request) -> Response:
        path, method = request.path.rstrip("/"), request.method
        try:
            data = json.loads(request.body or b"{}") if method == "POST" else {}
        except ValueError as exc:
            return Response(400, json.dumps({"error": str(exc)}).encode(), [], JSON)
        if path == "/_emulator/sms/messages":
            if method == "DELETE":
                self.store.clear()
                return Response(204)
            to = (request.query.get("to") or [""])[0]
            direction = (request.query.get("direction") or [""])[0]
            found = [
                record
                for record in reversed(self.store)
                if (not to or record["to"] == to)
                and (not direction or record["direction"] == direction)
            ]
            return _json(200, {"count": len(found), "messages": found})
        if path == "/_emulator/sms/numbers":
            if method == "POST":
                entries = data if isinstance(data, list) else [data]
                for entry in entries:
                    if not isinstance(entry, dict) or not _E164.match(str(entry.get("number"))):
                        return _json(400, {"error": "expected {number: E.164, sms_url: URL}"})
                    self.numbers[entry["number"]] = str(entry.get("sms_url", ""))
            return _json(200, {"numbers": self.numbers})
        if path == "/_emulator/sms/inbound" and method == "POST":
            person, ours, text = data.get("from"), data.get("to"), data.get("body")
            if not all(isinstance(v, str) and v for v in (person, ours, text)):
                return _json(400, {"error": "expected {from, to, body}"})
            params = self._inbound_params(person=person, ours=ours, body=text)
            self._push(time.time(), "inbound", "", params)
            return _json(202, {"sid": params["MessageSid"]})
        if path == "/_emulator/sms/config":
            if method == "POST":
                problems = self.options.update(data if isinstance(data, dict) else {})
                if problems:
                    return _json(400, {"errors": problems})
            return _json(200, vars(self.options))
        if path == "/_emulator/sms/stats":
            with self._lock:
                counts = dict(self.counts)
            return _json(
                200,
                {
                    **counts,
                    "pending": self.pending(),
                    "opted_out": sorted(f"{a}>{b}" for a, b in self.opted_out),
                    "deliveries": list(self.deliveries),
                },
            )
        return _json(404, {"error": "resource not found"})


def _json(status: int, data: Any) -> Response:
    return Response(status, json.dumps(data).encode(), [], JSON)


def _twiml_messages(answer: bytes) -> list[str]:
    """The texts of a TwiML answer's ``<Message>`` verbs (``<Response/>`` has none)."""
    if not answer.strip():
        return []
    try:
        root = ElementTree.fromstring(answer)  # noqa: S314 - our own app's answer, in tests
    except ElementTree.ParseError:
        return []
    texts = []
    for element in root.iter("Message"):
        body = element.find("Body")
        text = (body.text if body is not None else element.text) or ""
        if text.strip():
            texts.append(text.strip())
    return texts
