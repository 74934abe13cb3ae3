"""Remote email validation (SendGrid's Email Validation API), cached per tenant and address.

Local checks (syntax, role, disposable) live in ``campaigns.validation.email``; this module
adds the provider's opinion when a tenant asks for it. SendGrid charges per validation and
answers about 7 addresses a second, so a verdict is reused for
``settings.EMAIL_VERDICT_MAX_AGE_DAYS`` (30 by default). A provider failure never fails the
caller: the verdict is then ``unknown`` (or the last cached one), and is not cached.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils import timezone

from campaigns.models import Lead
from messaging.models import EmailVerdict
from messaging.providers import EmailValidation, provider_email_validate

logger = logging.getLogger(__name__)

SOURCE_SENDGRID = "sendgrid"
SOURCE_NONE = "none"

# SendGrid's verdicts onto our lead validation statuses.
SENDGRID_VERDICTS = {
    "Valid": Lead.Validation.VALID,
    "Risky": Lead.Validation.RISKY,
    "Invalid": Lead.Validation.INVALID,
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """What we know about one address. ``status`` is a ``Lead.Validation`` value."""

    email: str
    status: str
    reason: str = ""
    score: float | None = None
    source: str = SOURCE_NONE
    suggestion: str = ""
    checks: dict[str, Any] = field(default_factory=dict)
    checked_at: datetime.datetime | None = None
    from_cache: bool = False


def _max_age() -> datetime.timedelta:
    return datetime.timedelta(days=getattr(settings, "EMAIL_VERDICT_MAX_AGE_DAYS", 30))


def _reason(verdict: str, checks: dict[str, Any], score: float | None) -> str:
    """A sentence a user can act on, from SendGrid's check flags."""
    domain = checks.get("domain") or {}
    local = checks.get("local_part") or {}
    additional = checks.get("additional") or {}
    reasons = []
    if domain.get("has_valid_address_syntax") is False:
        reasons.append("invalid address syntax")
    if domain.get("has_mx_or_a_record") is False:
        reasons.append("the domain has no MX or A record")
    if additional.get("has_known_bounces"):
        reasons.append("the address has bounced before")
    if additional.get("has_suspected_bounces"):
        reasons.append("the address is suspected to bounce")
    if domain.get("is_suspected_disposable_address"):
        reasons.append("disposable email domain")
    if local.get("is_suspected_role_address"):
        reasons.append("role address (a shared inbox, not a person)")
    if verdict == "Valid":
        return ""
    if not reasons:
        reasons.append(f"SendGrid rated the address {verdict.lower()}")
    text = "; ".join(reasons)
    return f"{text} (score {score:.2f})" if score is not None else text


def _from_row(row: EmailVerdict, *, from_cache: bool) -> Verdict:
    checks = row.checks or {}
    return Verdict(
        email=row.email,
        status=row.verdict,
        reason=str(checks.get("reason", "")),
        score=row.score,
        source=row.source,
        suggestion=str(checks.get("suggestion", "")),
        checks=checks,
        checked_at=row.checked_at,
        from_cache=from_cache,
    )


def _store(*, tenant_id: int, email: str, result: EmailValidation) -> EmailVerdict:
    status = SENDGRID_VERDICTS.get(result.verdict, Lead.Validation.UNKNOWN)
    checks = {
        **result.checks,
        "reason": _reason(result.verdict, result.checks, result.score),
        "suggestion": result.suggestion,
        "provider_verdict": result.verdict,
    }
    row, _ = EmailVerdict.objects.update_or_create(
        tenant_id=tenant_id,
        email=email,
        defaults={
            "verdict": str(status),
            "score": result.score,
            "source": SOURCE_SENDGRID,
            "checks": checks,
        },
    )
    return row


def email_verdict_get(*, tenant_id: int, email: str, use_provider: bool) -> Verdict:
    """The verdict on ``email`` for this tenant.

    A fresh cached verdict is returned without calling anyone (with ``use_provider`` only a
    provider verdict counts as fresh). Otherwise, with ``use_provider``, SendGrid is asked
    and its answer cached. Never raises for provider trouble: a transient or permanent
    failure gives the cached verdict if any, else ``unknown``.
    """
    address = email.strip().lower()
    cached = (
        EmailVerdict.objects.for_tenant(tenant_id)
        .filter(email=address, checked_at__gte=timezone.now() - _max_age())
        .first()
    )
    if cached is not None and (cached.source == SOURCE_SENDGRID or not use_provider):
        return _from_row(cached, from_cache=True)
    if not use_provider:
        return Verdict(email=address, status=Lead.Validation.UNKNOWN, reason="not checked")

    result = provider_email_validate(tenant_id=tenant_id, email=address)
    if isinstance(result, EmailValidation):
        return _from_row(
            _store(tenant_id=tenant_id, email=address, result=result), from_cache=False
        )

    logger.warning(
        "email_verdict.provider_unavailable",
        extra={"tenant_id": tenant_id, "reason": result.reason, "status": result.status_code},
    )
    if cached is not None:
        return _from_row(cached, from_cache=True)
    return Verdict(
        email=address,
        status=Lead.Validation.UNKNOWN,
        reason=f"email validation unavailable ({result.reason})",
    )
