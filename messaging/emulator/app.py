"""Routes of the emulator, and ``emulator_run`` which serves them until interrupted.

SendGrid's API lives under ``/v3/``; the emulator's own controls (for tests, benchmarks and the
demo) live under ``/_emulator/`` and need no key:

- ``GET /_emulator/messages?to=&x_message_id=&arg.<custom_arg>=&limit=&fields=``: accepted
  messages, one per personalization, newest first (``fields=to,custom_args`` keeps only
  those keys); ``DELETE`` forgets them.
- ``GET /_emulator/public-key``: ``{"public_key": base64 DER SPKI}`` (also at SendGrid's
  ``GET /v3/user/webhooks/event/settings/signed``).
- ``GET|POST /_emulator/tenants``: routes ``{tenant, events_url, inbound_url, inbound_secret}``.
- ``GET|POST /_emulator/config``: read or patch runtime options (rates, faults, delays...).
- ``GET /_emulator/stats``, ``GET /_emulator/deliveries``: counters and recent webhook POSTs.
- ``POST /_emulator/flush``: make pending events due now. ``POST /_emulator/reset``: back to
  the start-up state (messages, routes, options, counters, pending events).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import logging
import os
import random
import signal
import sys
import time
import zlib
from collections import deque
from typing import Any

from .addresscheck import email_verdict
from .catcher import catcher_page
from .config import EmulatorConfig
from .httpserver import Request, Response, serve
from .mailsend import (
    SERVER_ERROR_BODY,
    TOO_LARGE_BODY,
    TOO_MANY_BODY,
    UNAUTHORIZED_BODY,
    message_id_new,
    payload_validate,
    records_expand,
    sandbox_enabled,
)
from .twilio import SmsEmulator
from .webhooks import Dispatcher, Signer, Stats, TenantRegistry

logger = logging.getLogger("sendgrid_emulator")

JSON = "application/json"


def _json(status: int, data: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, json.dumps(data).encode(), headers=headers or [], content_type=JSON)


def _errors(status: int, errors: list[dict[str, Any]], headers: list) -> Response:
    return _json(status, {"errors": errors}, headers)


def _addressed_to(payload: dict[str, Any], address: str) -> bool:
    return any(
        isinstance(entry, dict) and str(entry.get("email", "")).lower() == address
        for item in payload.get("personalizations") or []
        for kind in ("to", "cc", "bcc")
        for entry in item.get(kind) or []
    )


class Emulator:
    def __init__(self, config: EmulatorConfig):
        self.config = config
        self._startup_config = copy.deepcopy(config)
        self.signer = Signer.from_setting(config.signing_key_file)
        self.registry = TenantRegistry()
        if config.tenants_file:
            self.registry.watch_file(config.tenants_file)
        self.stats = Stats()
        self.store: deque[tuple[str, float, dict[str, Any]]] = deque(maxlen=config.store_size)
        self.dispatcher = Dispatcher(
            config=config, signer=self.signer, registry=self.registry, stats=self.stats
        )
        self.sms = SmsEmulator(
            account_sid=config.twilio_account_sid,
            auth_token=config.twilio_auth_token,
            delay_min=config.delay_min,
            delay_max=config.delay_max,
            routes=self.registry,
            seed=config.seed,
        )
        self._fault_rng = random.Random(config.seed)
        self._window = 0
        self._window_count = 0
        self._accepted = 0
        self._rejected = 0
        self._sandboxed = 0
        self._faults = {"timeout": 0, "drop": 0, "reset": 0}
        self._faulted: deque[tuple[str, str]] = deque(maxlen=100_000)

    # --- SendGrid API -------------------------------------------------------------------

    def _rate_headers(self, now: float) -> tuple[list[tuple[str, str]], bool]:
        config = self.config
        window_length = max(1, config.rate_limit_window)
        window = int(now) // window_length * window_length
        if window != self._window:
            self._window, self._window_count = window, 0
        self._window_count += 1
        over = self._window_count > config.rate_limit
        remaining = max(0, config.rate_limit - self._window_count)
        return [
            ("X-RateLimit-Limit", str(config.rate_limit)),
            ("X-RateLimit-Remaining", str(remaining)),
            ("X-RateLimit-Reset", str(window + window_length)),
        ], over

    def _authorised(self, request: Request) -> bool:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return False
        return not self.config.api_keys or key in self.config.api_keys

    def _v3(self, request: Request) -> Response:
        now = time.time()
        rate_headers, over = self._rate_headers(now)
        config = self.config
        delay = config.latency_ms / 1000.0
        if not self._authorised(request):
            self._rejected += 1
            return Response(401, UNAUTHORIZED_BODY, rate_headers, JSON, delay)
        if (config.enforce_rate_limit and over) or (
            config.fault_429_share and self._fault_rng.random() < config.fault_429_share
        ):
            self._rejected += 1
            rate_headers[1] = ("X-RateLimit-Remaining", "0")
            if config.fault_retry_after:
                rate_headers.append(("Retry-After", str(config.fault_retry_after)))
            return Response(429, TOO_MANY_BODY, rate_headers, JSON, delay)
        if config.fault_500_share and self._fault_rng.random() < config.fault_500_share:
            self._rejected += 1
            return Response(500, SERVER_ERROR_BODY, rate_headers, JSON, delay)

        path = request.path
        if path == "/v3/mail/send":
            if request.method != "POST":
                return _errors(
                    405, [{"field": None, "message": "method not allowed"}], rate_headers
                )
            if config.fault_reset_share and self._fault_rng.random() < config.fault_reset_share:
                self._rejected += 1
                self._faults["reset"] += 1
                return Response(0, abort=True)  # lost before SendGrid took it
            response = self._mail_send(request, now, rate_headers)
            if response.status == 202:
                # Taken, but the client never learns it: the answer comes too late, or never.
                if config.fault_timeout_share and (
                    self._fault_rng.random() < config.fault_timeout_share
                ):
                    self._fault_taken("timeout")
                    response.delay = config.fault_timeout_seconds
                    return response
                if config.fault_drop_share and self._fault_rng.random() < config.fault_drop_share:
                    self._fault_taken("drop")
                    response.abort = True
                    return response
        elif path == "/v3/validations/email":
            if request.method != "POST":
                return _errors(
                    405, [{"field": None, "message": "method not allowed"}], rate_headers
                )
            response = self._validate_email(request, rate_headers)
        elif path.rstrip("/") == "/v3/user/webhooks/event/settings/signed":
            response = _json(200, {"public_key": self.signer.public_key}, rate_headers)
        else:
            response = _errors(
                404, [{"field": None, "message": "resource not found"}], rate_headers
            )
        response.delay = delay
        return response

    def _fault_taken(self, kind: str) -> None:
        """Count a fault on a mail just accepted, and remember which mail it was (by our
        ``outreach_message_id``), so a test can follow each one."""
        self._faults[kind] += 1
        _, _, payload = self.store[-1]
        for item in payload.get("personalizations") or []:
            args = {**(payload.get("custom_args") or {}), **(item.get("custom_args") or {})}
            self._faulted.append((kind, str(args.get("outreach_message_id", ""))))

    def _body_json(self, request: Request) -> tuple[Any, str | None]:
        """The parsed body, or None and the problem: "json" (400) or "size" (413)."""
        body = request.body
        if request.headers.get("content-encoding", "").lower() == "gzip":
            limit = self.config.max_body_bytes
            try:
                inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                body = inflater.decompress(body, limit + 1)
            except zlib.error:
                return None, "json"
            if len(body) > limit or inflater.unconsumed_tail:
                return None, "size"
        try:
            return json.loads(body), None
        except ValueError:
            return None, "json"

    def _mail_send(self, request: Request, now: float, headers: list) -> Response:
        payload, problem = self._body_json(request)
        if problem == "size":
            self._rejected += 1
            return Response(413, TOO_LARGE_BODY, headers, JSON)
        if problem:
            self._rejected += 1
            return _errors(
                400,
                [
                    {
                        "message": "Bad Request: the request body is not valid JSON.",
                        "field": None,
                        "help": None,
                    }
                ],
                headers,
            )
        errors = payload_validate(payload, now=now)
        if errors:
            self._rejected += 1
            return _errors(400, errors, headers)
        if sandbox_enabled(payload):
            self._sandboxed += 1
            return Response(200, b"", headers)
        x_message_id = message_id_new()
        self.store.append((x_message_id, now, payload))
        self._accepted += 1
        if self.dispatcher.routable():
            self.dispatcher.submit(x_message_id, now, payload)
        headers.append(("X-Message-Id", x_message_id))
        return Response(202, b"", headers)

    def _validate_email(self, request: Request, headers: list) -> Response:
        payload, _ = self._body_json(request)
        email = payload.get("email") if isinstance(payload, dict) else None
        if not isinstance(email, str) or not email:
            return _errors(
                400, [{"field": "email", "message": "email is required", "help": None}], headers
            )
        source = payload.get("source")
        return _json(
            200,
            email_verdict(
                email, source=source if isinstance(source, str) else None, ip_address=request.peer
            ),
            headers,
        )

    # --- Emulator controls --------------------------------------------------------------

    def messages(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        to = (query.get("to") or [""])[0].lower()
        x_message_id = (query.get("x_message_id") or [""])[0]
        arg_filters = {
            key[4:]: values[0] for key, values in query.items() if key.startswith("arg.")
        }
        limit = int((query.get("limit") or ["0"])[0] or 0)
        found: list[dict[str, Any]] = []
        for stored_id, received_at, payload in reversed(self.store):
            if x_message_id and stored_id != x_message_id:
                continue
            if to and not _addressed_to(payload, to):
                continue  # cheap check before building the records
            for record in records_expand(stored_id, received_at, payload):
                if to and to not in {
                    entry.get("email", "").lower()
                    for kind in ("to", "cc", "bcc")
                    for entry in record[kind]
                }:
                    continue
                if any(record["custom_args"].get(k) != v for k, v in arg_filters.items()):
                    continue
                found.append(record)
            if limit and len(found) >= limit:
                return found[:limit]
        return found

    def _reset(self) -> None:
        self.store.clear()
        self.stats.clear()
        self.dispatcher.clear()
        self.registry.clear()
        self.sms.reset()
        for spec in dataclasses.fields(self.config):
            setattr(self.config, spec.name, copy.deepcopy(getattr(self._startup_config, spec.name)))
        self._fault_rng = random.Random(self.config.seed)
        self._accepted = self._rejected = self._sandboxed = 0
        self._faults = dict.fromkeys(self._faults, 0)
        self._faulted.clear()

    def _controls(self, request: Request) -> Response:
        path, method = request.path.rstrip("/"), request.method
        if path == "/_emulator/health":
            return _json(200, {"status": "ok"})
        if path == "/_emulator/messages":
            if method == "DELETE":
                self.store.clear()
                return Response(204)
            try:
                found = self.messages(request.query)
            except ValueError:
                return _json(
                    400, {"errors": [{"field": "limit", "message": "expected an integer"}]}
                )
            fields = [f for f in (request.query.get("fields") or [""])[0].split(",") if f]
            if fields:  # a compact answer for counting (the chaos suite reads every record)
                found = [{f: record.get(f) for f in fields} for record in found]
            return _json(200, {"count": len(found), "messages": found})
        if path == "/_emulator/public-key":
            return _json(200, {"public_key": self.signer.public_key})
        if path == "/_emulator/tenants":
            if method == "POST":
                try:
                    data = json.loads(request.body or b"{}")
                    entries = data if isinstance(data, list) else [data]
                    routes = [vars(self.registry.register(entry)) for entry in entries]
                except (ValueError, AttributeError) as exc:
                    return _json(400, {"errors": [{"field": None, "message": str(exc)}]})
                return _json(201, {"tenants": routes})
            return _json(200, {"tenants": self.registry.all()})
        if path == "/_emulator/config":
            if method == "POST":
                try:
                    changes = json.loads(request.body or b"{}")
                    if not isinstance(changes, dict):
                        raise ValueError("expected a JSON object")
                except ValueError as exc:
                    return _json(400, {"errors": [{"field": None, "message": str(exc)}]})
                problems = self.config.update(changes)
                if problems:
                    return _json(400, {"errors": [{"field": None, "message": p} for p in problems]})
            return _json(200, self.config.public_dict())
        if path == "/_emulator/stats":
            return _json(
                200,
                {
                    "accepted": self._accepted,
                    "rejected": self._rejected,
                    "sandboxed": self._sandboxed,
                    "held": len(self.store),
                    "faults": dict(self._faults),
                    "faulted_messages": [list(item) for item in self._faulted],
                    "pending": self.dispatcher.pending(),
                    **self.stats.snapshot(),
                    "recent_failures": list(self.stats.failures),
                },
            )
        if path == "/_emulator/deliveries":
            return _json(200, {"deliveries": list(self.stats.deliveries)})
        if path == "/_emulator/flush" and method == "POST":
            self.dispatcher.flush()
            return _json(202, {"pending": self.dispatcher.pending()})
        if path == "/_emulator/reset" and method == "POST":
            self._reset()
            return Response(204)
        return _json(404, {"errors": [{"field": None, "message": "resource not found"}]})

    def handle(self, request: Request) -> Response:
        if request.target.startswith("/v3/"):
            return self._v3(request)
        if request.target.startswith("/2010-04-01/"):
            return self.sms.handle_api(request)  # Twilio's Messages API
        if request.target.startswith("/_emulator/sms/"):
            return self.sms.controls(request)
        if request.target.startswith("/_emulator/"):
            return self._controls(request)
        if request.path in ("/", "/index.html") and request.method == "GET":
            try:
                limit = int((request.query.get("limit") or ["100"])[0])
            except ValueError:
                limit = 100
            records = self.messages({"limit": [str(max(1, limit))]})
            page = catcher_page(records, total=len(self.store), public_key=self.signer.public_key)
            return Response(200, page.encode(), content_type="text/html; charset=utf-8")
        return _json(404, {"errors": [{"field": None, "message": "resource not found"}]})

    def too_large(self, request: Request) -> Response:
        self._rejected += 1
        headers, _ = self._rate_headers(time.time())
        return Response(413, TOO_LARGE_BODY, headers, JSON, close=True)


async def _serve_forever(emulator: Emulator) -> None:
    config = emulator.config
    server = await serve(
        emulator.handle,
        host=config.host,
        port=config.port,
        max_body_bytes=lambda: emulator.config.max_body_bytes,
        too_large=emulator.too_large,
    )
    port = server.sockets[0].getsockname()[1]
    emulator.dispatcher.start()
    emulator.sms.start()
    # Tests and scripts wait for these two lines; keep their wording stable.
    print(f"sendgrid-emulator listening on http://{config.host}:{port}", flush=True)
    print(f"sendgrid-emulator webhook public key {emulator.signer.public_key}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if config.exit_with_parent:
        # A test run that is killed outright must not leave emulators behind on the machine.
        parent = os.getppid()

        def watch_parent() -> None:
            if os.getppid() != parent:
                stop.set()
            else:
                loop.call_later(1.0, watch_parent)

        loop.call_later(1.0, watch_parent)
    async with server:
        await stop.wait()
    emulator.dispatcher.stop()
    emulator.sms.stop()


def emulator_run(config: EmulatorConfig) -> None:
    logging.basicConfig(
        level=logging.WARNING if config.quiet else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    emulator = Emulator(config)
    try:
        import uvloop  # libuv transports: about half the per-request cost of the stdlib loop
    except ImportError:  # pragma: no cover - uvloop is in requirements.txt
        asyncio.run(_serve_forever(emulator))
    else:
        uvloop.run(_serve_forever(emulator))
