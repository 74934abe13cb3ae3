"""What a provider call can come back with: a closed set of typed outcomes.

The send worker branches on the type, never on exceptions: ``Accepted`` is recorded,
``Transient`` is retried (no earlier than ``retry_after`` when the provider said so) and
``Permanent`` fails the message without a retry.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Accepted:
    """The provider took the message (202). ``provider_message_id`` is its ``X-Message-Id``."""

    provider_message_id: str
    status_code: int = 202


@dataclass(frozen=True, slots=True)
class Transient:
    """Worth retrying: 429, 5xx, timeouts and network failures.

    ``reason`` is a short code: ``rate_limited`` (429), ``server_error`` (5xx),
    ``connect_timeout``/``connection_error`` (the request never left: safe to resend),
    ``timeout``/``connection_lost`` (the request was written but no answer came back).
    ``status_code`` is None when no HTTP answer arrived. ``maybe_delivered`` is True when the
    provider may have accepted the message anyway: resending could deliver it twice.
    """

    reason: str
    retry_after: datetime.datetime | None = None
    status_code: int | None = None
    detail: str = ""
    maybe_delivered: bool = False


@dataclass(frozen=True, slots=True)
class Permanent:
    """Retrying cannot help: the provider refused the request (400/401/403/404/413, …) or we
    could not even build it (no API key, undecryptable key). ``errors`` keeps the provider's own
    messages verbatim so an operator sees what SendGrid said."""

    status_code: int | None
    errors: list[str] = field(default_factory=list)
    reason: str = ""


SendResult = Accepted | Transient | Permanent


@dataclass(frozen=True, slots=True)
class EmailValidation:
    """SendGrid's Email Validation answer for one address (``result`` of the 200 body)."""

    email: str
    verdict: str  # "Valid" | "Risky" | "Invalid", as SendGrid spells it
    score: float | None
    checks: dict[str, Any] = field(default_factory=dict)
    suggestion: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


ValidationResult = EmailValidation | Transient | Permanent


@dataclass(frozen=True, slots=True)
class ProviderCredentials:
    """Where and as whom to call the provider. ``api_key`` is a secret: never log it."""

    api_key: str = field(repr=False)
    host: str

    @property
    def key_last4(self) -> str:
        return self.api_key[-4:]
