"""Per-tenant feature flags, one per rollout phase, read from one place.

The flags are columns of ``Tenant`` (``FLAG_FIELDS``); the paths they guard read them here:
``tenant_flags_get`` (cached in the process for ``FEATURE_FLAGS_CACHE_SECONDS``, so a hot
path pays a query at most once per tenant per interval) or ``tenant_flags_of`` (a tenant row
the caller already loaded: the SMS send path reads ``sms`` so, from the tenant row it joins
to each batch, fresher than any cache and free). Two reads bypass this module, on that same
row: ``controls.sending_stop_reason`` reads ``campaigns_enabled`` (off is a stop, like a
pause) and the email send path reads ``inbound_enabled``; ``test_boundaries`` keeps that
list from growing. A change made through ``outreach.tenancy.controls`` clears this
process's cache at once; other processes see it within the interval.

========================  ===========================================================
flag                      off means
========================  ===========================================================
``campaigns``             due sends of the tenant are held (they wait, nothing is lost)
``event_branching``       events and replies are stored, suppress and move message
                          statuses, but do not move enrollments (timeouts still do)
``analytics``             the analytics API and dashboard answer 403 for the tenant
``sms``                   a plan with an SMS step is refused (400)
``inbound``               sends carry the sender's own reply-to instead of the Inbound
                          Parse address; inbound mail still arriving is stored but not
                          processed (re-process it once the flag is on)
========================  ===========================================================
"""

import threading
import time
from dataclasses import asdict, dataclass
from enum import StrEnum

from django.conf import settings

from outreach.common.errors import ApplicationError, NotFound
from outreach.tenancy.models import Tenant


class Flag(StrEnum):
    CAMPAIGNS = "campaigns"
    EVENT_BRANCHING = "event_branching"
    ANALYTICS = "analytics"
    SMS = "sms"
    INBOUND = "inbound"


# Flag → the Tenant column that stores it.
FLAG_FIELDS: dict[Flag, str] = {
    Flag.CAMPAIGNS: "campaigns_enabled",
    Flag.EVENT_BRANCHING: "event_branching_enabled",
    Flag.ANALYTICS: "analytics_enabled",
    Flag.SMS: "sms_enabled",
    Flag.INBOUND: "inbound_enabled",
}


@dataclass(frozen=True)
class TenantFlags:
    campaigns: bool
    event_branching: bool
    analytics: bool
    sms: bool
    inbound: bool
    webhook_shadow_mode: bool

    def enabled(self, flag: Flag) -> bool:
        return bool(getattr(self, flag.value))

    def as_dict(self) -> dict[str, bool]:
        return asdict(self)


_cache: dict[int, tuple[float, TenantFlags]] = {}
_lock = threading.Lock()


def tenant_flags_of(*, tenant: Tenant) -> TenantFlags:
    """The flags of a tenant row already in hand (no query, no cache)."""
    return TenantFlags(
        **{flag.value: bool(getattr(tenant, field)) for flag, field in FLAG_FIELDS.items()},
        webhook_shadow_mode=tenant.webhook_shadow_mode,
    )


def tenant_flags_get(*, tenant_id: int) -> TenantFlags:
    """The tenant's flags, at most ``FEATURE_FLAGS_CACHE_SECONDS`` old."""
    now = time.monotonic()
    cached = _cache.get(tenant_id)
    if cached is not None and cached[0] > now:
        return cached[1]
    tenant = Tenant.objects.filter(pk=tenant_id).only(*FLAG_FIELDS.values(), "webhook_shadow_mode")
    row = tenant.first()
    if row is None:
        raise NotFound("Tenant not found.")
    flags = tenant_flags_of(tenant=row)
    with _lock:
        _cache[tenant_id] = (now + settings.FEATURE_FLAGS_CACHE_SECONDS, flags)
    return flags


def tenant_flag_enabled(*, tenant_id: int, flag: Flag) -> bool:
    return tenant_flags_get(tenant_id=tenant_id).enabled(flag)


def tenant_flag_require(*, tenant_id: int, flag: Flag) -> None:
    """Refuse (403, code ``feature_disabled``) when the flag is off for the tenant."""
    if not tenant_flag_enabled(tenant_id=tenant_id, flag=flag):
        raise ApplicationError(
            f"the {flag.value} feature is not enabled for this account",
            code="feature_disabled",
            status_code=403,
        )


def tenant_flags_cache_clear(*, tenant_id: int | None = None) -> None:
    with _lock:
        if tenant_id is None:
            _cache.clear()
        else:
            _cache.pop(tenant_id, None)


def flag_parse(value: str) -> Flag:
    """A flag by name (``event_branching``, or its column ``event_branching_enabled``)."""
    name = value.strip().lower().removesuffix("_enabled")
    try:
        return Flag(name)
    except ValueError:
        known = ", ".join(flag.value for flag in Flag)
        raise ApplicationError(
            f"unknown feature flag {value!r} (known: {known})",
            extra={"flag": [f"expected one of {known}"]},
        ) from None
