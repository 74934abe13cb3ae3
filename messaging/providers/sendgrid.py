"""The SendGrid adapter: the only module that imports the ``sendgrid`` package.

Every call comes back as a typed outcome (``messaging.providers.base``); network failures,
timeouts and HTTP errors never escape as exceptions. The official client defines each
request (its versioned URL, ``Authorization`` and ``User-Agent``); the bytes travel over a
kept-alive connection of the calling thread (``messaging.providers.transport``), with a
timeout always set (``settings.SENDGRID_TIMEOUT_SECONDS``):

- a failure while connecting (refused, DNS, connect timeout) means nothing was sent;
- a timeout or disconnect *after* the request was written means SendGrid may have accepted
  the message: those come back with ``maybe_delivered=True`` so the caller never blindly
  resends.

The API key is a secret: it only ever travels in the request's headers and is never logged.
"""

from __future__ import annotations

import datetime
import http.client
import json
import logging
import time
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from sendgrid import SendGridAPIClient

from messaging.providers.base import (
    Accepted,
    EmailValidation,
    Permanent,
    ProviderCredentials,
    SendResult,
    Transient,
    ValidationResult,
)
from messaging.providers.payload import OutboundEmail, PayloadError, mail_send_payload_build
from messaging.providers.transport import HttpFailure, http_post
from messaging.services.tenant_secrets import SecretDecryptError, tenant_sendgrid_key_get

logger = logging.getLogger(__name__)

_PERMANENT_REASONS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class ProviderConfigError(Exception):
    """No usable credentials: the call is not even attempted."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _is_emulator(host: str) -> bool:
    # Real SendGrid lives under sendgrid.com (api., api.eu.); anything else is the local
    # emulator or a test double, which accept the well-known emulator key.
    hostname = (urlsplit(host).hostname or "").lower()
    return not (hostname == "sendgrid.com" or hostname.endswith(".sendgrid.com"))


def provider_credentials_get(*, tenant_id: int | None) -> ProviderCredentials:
    """The key and host to call SendGrid with for this tenant.

    The tenant's own key first, then the platform key (``SENDGRID_API_KEY``), then the
    emulator's key when the host is not SendGrid. A send worker may fetch these once per
    batch and pass them to :func:`provider_email_send`. Raises :class:`ProviderConfigError`.
    """
    host = str(settings.SENDGRID_API_HOST).rstrip("/")
    if urlsplit(host).scheme not in {"http", "https"} or not urlsplit(host).hostname:
        raise ProviderConfigError(
            "invalid_host", f"SENDGRID_API_HOST {host!r} is not an http(s) URL"
        )
    api_key = None
    if tenant_id is not None:
        try:
            api_key = tenant_sendgrid_key_get(tenant_id=tenant_id)
        except SecretDecryptError as exc:
            raise ProviderConfigError(
                "undecryptable_api_key",
                "the tenant's SendGrid key cannot be decrypted with OUTREACH_ENCRYPTION_KEYS",
            ) from exc
    api_key = api_key or settings.SENDGRID_API_KEY
    if not api_key and _is_emulator(host):
        api_key = settings.SENDGRID_EMULATOR_KEY
    if not api_key:
        raise ProviderConfigError("missing_api_key", "no SendGrid API key is configured")
    return ProviderCredentials(api_key=api_key, host=host)


@lru_cache(maxsize=256)
def _client(api_key: str, host: str, timeout: float) -> SendGridAPIClient:
    # One per (key, host), shared by all threads: only its URL and headers are read.
    client = SendGridAPIClient(api_key=api_key, host=host)
    client.client.timeout = timeout
    return client


def provider_client_get(*, credentials: ProviderCredentials) -> SendGridAPIClient:
    return _client(credentials.api_key, credentials.host, float(settings.SENDGRID_TIMEOUT_SECONDS))


class _Reply:
    __slots__ = ("body", "headers", "status_code")

    def __init__(self, status_code: int, headers: Any, body: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.body = body


def _header(headers: Any, name: str) -> str:
    if headers is None:
        return ""
    try:
        value = headers.get(name)
    except AttributeError:
        return ""
    return str(value).strip() if value is not None else ""


def _rate_limit_reset(headers: Any) -> datetime.datetime | None:
    """When a 429 may be retried. SendGrid documents ``X-RateLimit-Reset`` (epoch seconds),
    not ``Retry-After``; every response carries the rate-limit headers, so they only mean
    "wait" on a 429."""
    reset = _header(headers, "X-RateLimit-Reset")
    if reset:
        try:
            return datetime.datetime.fromtimestamp(float(reset), tz=datetime.UTC)
        except (ValueError, OverflowError, OSError):
            pass
    return _retry_after(headers)


def _retry_after(headers: Any) -> datetime.datetime | None:
    delay = _header(headers, "Retry-After")
    if delay:
        try:
            return datetime.datetime.now(tz=datetime.UTC) + datetime.timedelta(
                seconds=max(0.0, float(delay))
            )
        except (ValueError, OverflowError):
            pass
    return None


def _error_messages(body: bytes | None, fallback: str) -> list[str]:
    """SendGrid's ``{"errors": [{"message", "field"}]}``, messages kept verbatim."""
    text = (body or b"").decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text) if text else None
    except ValueError:
        data = None
    messages: list[str] = []
    if isinstance(data, dict) and isinstance(data.get("errors"), list):
        for item in data["errors"]:
            if isinstance(item, dict) and item.get("message"):
                messages.append(str(item["message"]))
            elif isinstance(item, str):
                messages.append(item)
    if not messages and text:
        messages.append(text[:500])
    if not messages and fallback:
        messages.append(fallback)
    return messages


def _from_status(status: int, headers: Any, body: bytes) -> Transient | Permanent:
    messages = _error_messages(body, http.client.responses.get(status, ""))
    if status == 429:
        return Transient(
            "rate_limited", _rate_limit_reset(headers), status, "; ".join(messages)[:500]
        )
    if status >= 500 or status == 408:
        return Transient("server_error", _retry_after(headers), status, "; ".join(messages)[:500])
    return Permanent(status, messages, _PERMANENT_REASONS.get(status, f"http_{status}"))


@lru_cache(maxsize=256)
def _endpoint(api_key: str, host: str, path: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    """The URL and headers the official client would use for ``path`` (its versioned URL,
    ``Authorization``, ``User-Agent``); the request itself goes over a kept-alive
    connection (``messaging.providers.transport``) instead of its urllib opener."""
    endpoint = _client(api_key, host, float(settings.SENDGRID_TIMEOUT_SECONDS)).client
    for part in path:
        endpoint = endpoint._(part)
    headers = {**endpoint.request_headers, "Content-Type": "application/json"}
    return endpoint._build_url(None), headers


def _post(
    credentials: ProviderCredentials, path: tuple[str, ...], body: dict[str, Any]
) -> _Reply | Transient | Permanent:
    url, headers = _endpoint(credentials.api_key, credentials.host, path)
    timeout = float(settings.SENDGRID_TIMEOUT_SECONDS)
    answer = http_post(
        url=url,
        body=json.dumps(body, separators=(",", ":")).encode(),
        headers=headers,
        timeout=timeout,
    )
    if isinstance(answer, HttpFailure):
        # Before the request was written nothing was sent; after it, SendGrid may have it.
        return Transient(answer.reason, None, None, answer.detail, maybe_delivered=answer.sent)
    if answer.status >= 400:
        return _from_status(answer.status, answer.headers, answer.body)
    return _Reply(answer.status, answer.headers, answer.body)


def _log(event: str, level: int, fields: dict[str, Any]) -> None:
    logger.log(level, event, extra=fields)


def _outcome_fields(result: Accepted | EmailValidation | Transient | Permanent) -> dict[str, Any]:
    if isinstance(result, Accepted):
        return {"outcome": "accepted", "status": result.status_code}
    if isinstance(result, EmailValidation):
        return {"outcome": "validated", "status": 200, "verdict": result.verdict}
    if isinstance(result, Transient):
        return {
            "outcome": "transient",
            "status": result.status_code,
            "reason": result.reason,
            "retry_after": result.retry_after.isoformat() if result.retry_after else None,
        }
    return {"outcome": "permanent", "status": result.status_code, "reason": result.reason}


def provider_email_send(
    *,
    tenant_id: int,
    email: OutboundEmail,
    credentials: ProviderCredentials | None = None,
) -> SendResult:
    """Send one message through SendGrid and say what happened, never raising for provider or
    network trouble. ``credentials`` defaults to :func:`provider_credentials_get`."""
    started = time.perf_counter()
    result: SendResult
    try:
        payload = mail_send_payload_build(email=email)
        if credentials is None:
            credentials = provider_credentials_get(tenant_id=tenant_id)
    except PayloadError as exc:
        result = Permanent(None, [str(exc)], "invalid_payload")
    except ProviderConfigError as exc:
        result = Permanent(None, [exc.message], exc.reason)
    else:
        reply = _post(credentials, ("mail", "send"), payload)
        if isinstance(reply, _Reply):
            result = Accepted(_header(reply.headers, "X-Message-Id"), reply.status_code)
        else:
            result = reply
    fields = {
        "tenant_id": tenant_id,
        "message_public_id": str(email.message_public_id),
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        **_outcome_fields(result),
    }
    if isinstance(result, Accepted):
        fields["provider_message_id"] = result.provider_message_id
    _log("provider.send", logging.INFO if isinstance(result, Accepted) else logging.WARNING, fields)
    return result


def _validation_from(reply: _Reply, email: str) -> ValidationResult:
    try:
        data = json.loads(reply.body.decode("utf-8")) if reply.body else {}
        result = data["result"]
        verdict = str(result["verdict"])
    except (ValueError, KeyError, TypeError):
        return Transient(
            "unexpected_response", None, reply.status_code, "validation answer had no result"
        )
    score = result.get("score")
    return EmailValidation(
        email=str(result.get("email") or email),
        verdict=verdict,
        score=float(score) if isinstance(score, int | float) else None,
        checks=result.get("checks") if isinstance(result.get("checks"), dict) else {},
        suggestion=str(result.get("suggestion") or ""),
        raw=result,
    )


def provider_email_validate(
    *,
    tenant_id: int,
    email: str,
    source: str = "outreach",
    credentials: ProviderCredentials | None = None,
) -> ValidationResult:
    """Ask SendGrid's Email Validation API (``POST /v3/validations/email``) about one address.

    Needs a key with the Email Address Validation scope (Pro/Premier plans); without it
    SendGrid answers 403, which comes back as ``Permanent``.
    """
    started = time.perf_counter()
    result: ValidationResult
    try:
        if credentials is None:
            credentials = provider_credentials_get(tenant_id=tenant_id)
    except ProviderConfigError as exc:
        result = Permanent(None, [exc.message], exc.reason)
    else:
        reply = _post(credentials, ("validations", "email"), {"email": email, "source": source})
        result = _validation_from(reply, email) if isinstance(reply, _Reply) else reply
    _log(
        "provider.validate",
        logging.INFO if isinstance(result, EmailValidation) else logging.WARNING,
        {
            "tenant_id": tenant_id,
            # The address is personal data; its domain is enough to debug with.
            "email_domain": email.rpartition("@")[2],
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            **_outcome_fields(result),
        },
    )
    return result
