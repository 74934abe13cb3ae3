"""The Twilio adapter: the only module that imports the ``twilio`` package's REST client.

``client.messages.create`` (Programmable Messaging) defines each request: its URL under
``/2010-04-01/Accounts/{sid}/Messages.json``, the form fields, basic auth, the error
parsing into ``TwilioRestException`` with Twilio's numeric codes. The bytes travel over the
calling thread's kept-alive connection (``messaging.providers.transport``) instead of a
``requests`` session, to the host of ``settings.TWILIO_API_BASE`` (the local emulator unless
a real account is configured), with a timeout always set.

Every call comes back as a typed outcome (``messaging.providers.base``), never an exception:

- 201 → ``Accepted`` with the message SID (``SM…``);
- 429 → ``Transient("rate_limited")`` no earlier than its ``Retry-After``; 5xx → transient;
- 4xx → ``Permanent`` with Twilio's code first (``21211``, ``21610``…), so the send path
  can tell an opted-out recipient from an invalid number;
- a network failure before the request was written → transient, safe to resend; after it
  → ``maybe_delivered=True``: the caller waits for status callbacks instead of resending.

The auth token is a secret: it travels only in the Authorization header and is never logged.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http import HttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.rest import Client

from messaging.providers.base import Accepted, Permanent, SendResult, Transient
from messaging.providers.transport import HttpFailure, http_post

logger = logging.getLogger(__name__)

# Twilio error codes the send path acts on.
CODE_INVALID_TO = 21211
CODE_UNSUBSCRIBED = 21610
CODE_NOT_SMS_CAPABLE = 21614


@dataclass(frozen=True, slots=True)
class SmsCredentials:
    """Which account to send as, and where. ``auth_token`` is a secret: never log it."""

    account_sid: str
    auth_token: str = field(repr=False)
    api_base: str


@dataclass(frozen=True, slots=True)
class OutboundSms:
    message_public_id: Any  # uuid.UUID: our ledger id, in the status callback URL
    to: str
    body: str
    status_callback: str
    from_number: str = ""
    messaging_service_sid: str = ""


def sms_credentials_get() -> SmsCredentials:
    """The platform's Twilio account (settings), or the emulator's when none is set."""
    return SmsCredentials(
        account_sid=settings.TWILIO_ACCOUNT_SID or settings.TWILIO_EMULATOR_ACCOUNT_SID,
        auth_token=settings.TWILIO_AUTH_TOKEN,
        api_base=str(settings.TWILIO_API_BASE).rstrip("/"),
    )


class _NoAnswer(TwilioException):
    """The request got no HTTP answer; ``failure.sent`` says whether it may have left."""

    def __init__(self, failure: HttpFailure) -> None:
        super().__init__(failure.detail)
        self.failure = failure


_last_headers = threading.local()


class KeepAliveHttpClient(HttpClient):
    """The twilio client's transport: its requests, sent to ``api_base`` over this thread's
    kept-alive connection. Only what the Messages API needs (form POSTs) is supported."""

    def __init__(self, *, api_base: str, timeout: float) -> None:
        super().__init__(logger=logger, is_async=False, timeout=timeout)
        self.api_base = api_base.rstrip("/")

    def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        if method.upper() != "POST":
            raise TwilioException(f"{method} is not supported by this client")
        parts = urlsplit(uri)
        url = self.api_base + parts.path
        query = "&".join(q for q in (parts.query, urlencode(params or {}, doseq=True)) if q)
        if query:
            url = f"{url}?{query}"
        sent_headers = dict(headers or {})
        sent_headers["Content-Type"] = "application/x-www-form-urlencoded"
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            sent_headers["Authorization"] = f"Basic {token}"
        answer = http_post(
            url=url,
            body=urlencode(data or {}, doseq=True).encode(),
            headers=sent_headers,
            timeout=timeout or self.timeout or 10.0,
        )
        if isinstance(answer, HttpFailure):
            raise _NoAnswer(answer)
        _last_headers.value = answer.headers
        return TwilioResponse(answer.status, answer.body.decode("utf-8", "replace"), answer.headers)


@lru_cache(maxsize=16)
def _client(account_sid: str, auth_token: str, api_base: str, timeout: float) -> Client:
    # One per account and host, shared by the threads: each request builds its own objects,
    # and the connections are per thread (transport).
    return Client(
        account_sid,
        auth_token,
        http_client=KeepAliveHttpClient(api_base=api_base, timeout=timeout),
    )


def sms_client_get(*, credentials: SmsCredentials) -> Client:
    return _client(
        credentials.account_sid,
        credentials.auth_token,
        credentials.api_base,
        float(settings.TWILIO_TIMEOUT_SECONDS),
    )


def _retry_after(headers: Any) -> datetime.datetime | None:
    try:
        value = headers.get("Retry-After") if headers is not None else None
        delay = float(value) if value is not None else None
    except (TypeError, ValueError, AttributeError):
        delay = None
    if delay is None:
        return None
    return datetime.datetime.now(tz=datetime.UTC) + datetime.timedelta(seconds=max(0.0, delay))


def _from_rest_error(exc: TwilioRestException) -> Transient | Permanent:
    # The client prefixes Twilio's message with "Unable to create record: ".
    message = str(exc.msg).removeprefix("Unable to create record: ")
    detail = f"{exc.code}: {message}" if exc.code else message
    if exc.status == 429:
        headers = getattr(_last_headers, "value", None)
        return Transient("rate_limited", _retry_after(headers), 429, detail[:500])
    if exc.status >= 500 or exc.status == 408:
        return Transient("server_error", None, exc.status, detail[:500])
    reason = f"twilio_{exc.code}" if exc.code else f"http_{exc.status}"
    return Permanent(exc.status, [detail], reason)


def provider_sms_send(*, sms: OutboundSms, credentials: SmsCredentials | None = None) -> SendResult:
    """Send one text through Twilio and say what happened, never raising for provider or
    network trouble. ``Accepted.provider_message_id`` is Twilio's message SID."""
    started = time.perf_counter()
    credentials = credentials or sms_credentials_get()
    result: SendResult
    if not credentials.auth_token:
        result = Permanent(None, ["no Twilio auth token is configured"], "missing_auth_token")
    else:
        sender: dict[str, str] = {}
        if sms.messaging_service_sid:
            sender["messaging_service_sid"] = sms.messaging_service_sid
        if sms.from_number:
            sender["from_"] = sms.from_number
        try:
            created = sms_client_get(credentials=credentials).messages.create(
                to=sms.to, body=sms.body, status_callback=sms.status_callback, **sender
            )
            result = Accepted(str(created.sid or ""), 201)
        except _NoAnswer as exc:
            failure = exc.failure
            result = Transient(
                failure.reason, None, None, failure.detail, maybe_delivered=failure.sent
            )
        except TwilioRestException as exc:
            result = _from_rest_error(exc)
        except (TwilioException, ValueError, json.JSONDecodeError) as exc:
            # An answer we cannot read: the request was written and may have been taken.
            result = Transient(
                "unexpected_response", None, None, f"{exc}"[:500], maybe_delivered=True
            )
    fields: dict[str, Any] = {
        "message_public_id": str(sms.message_public_id),
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    if isinstance(result, Accepted):
        fields.update(outcome="accepted", provider_message_id=result.provider_message_id)
    elif isinstance(result, Transient):
        fields.update(outcome="transient", status=result.status_code, reason=result.reason)
    else:
        fields.update(outcome="permanent", status=result.status_code, reason=result.reason)
    logger.log(
        logging.INFO if isinstance(result, Accepted) else logging.WARNING,
        "provider.sms",
        extra=fields,
    )
    return result


def twilio_error_code(result: Permanent) -> int | None:
    """Twilio's numeric error code of a refusal (``twilio_21610`` → 21610), if any."""
    if result.reason.startswith("twilio_"):
        try:
            return int(result.reason.removeprefix("twilio_"))
        except ValueError:
            return None
    return None
