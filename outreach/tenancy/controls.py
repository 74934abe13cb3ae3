"""Operator and tenant controls: pause and resume, feature flags, quotas, the kill switch.

Every change goes through here (the API, the admin and the management commands are only
interfaces), is written to the audit log in the same transaction, and takes effect for the
next send: the send path re-reads the tenant with each batch and asks ``sending_stop_reason``,
whose kill-switch state is cached for ``CONTROLS_CACHE_SECONDS`` per process (one tiny
query per interval, nothing per send).

A resume also makes the sends held by the pause due now, rather than at their next
re-check (``SEND_PAUSED_RECHECK_SECONDS``). For that to reach every held send, the send path
holds a send for a control only after confirming it under a share lock of the control's row
(``sending_stop_reason(lock=True)``): a release locks the row to change it, so it waits for
batches that just decided to hold and then makes their sends due too, and a batch that reads
after the release sees it (a cached "engaged" kill switch, stale for up to
``CONTROLS_CACHE_SECONDS`` in other processes, never holds a send for the full re-check).
"""

import threading
import time
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from outreach.common.errors import ApplicationError, NotFound
from outreach.tenancy.audit import audit_record
from outreach.tenancy.flags import FLAG_FIELDS, tenant_flags_cache_clear
from outreach.tenancy.models import KillSwitch, Tenant

TENANT_PAUSED = "tenant paused"
KILL_SWITCH_HOLD = "kill switch engaged"
# A control's row is being changed right now (its lock is taken): hold briefly, re-check soon.
CONTROL_CHANGING = "a sending control is being changed"

_UINT_MAX = 2**31 - 1
FLAG_COLUMNS = (*FLAG_FIELDS.values(), "webhook_shadow_mode")
QUOTA_COLUMNS = ("daily_send_quota", "lead_quota", "campaign_quota")
CONTROL_COLUMNS = ("status", *FLAG_COLUMNS, *QUOTA_COLUMNS)


def _invalid(field: str, reason: str) -> ApplicationError:
    return ApplicationError(f"{field}: {reason}", extra={field: [reason]})


def _clean(changes: Mapping[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in changes.items():
        if key not in CONTROL_COLUMNS:
            raise _invalid(key, f"not a tenant control (one of {', '.join(CONTROL_COLUMNS)})")
        if key == "status":
            if value not in Tenant.Status.values:
                raise _invalid(key, f"expected one of {', '.join(Tenant.Status.values)}")
        elif key in FLAG_COLUMNS:
            if not isinstance(value, bool):
                raise _invalid(key, "expected true or false")
        else:
            nullable = key != "daily_send_quota"
            if value is None and nullable:
                pass
            elif isinstance(value, bool) or not isinstance(value, int):
                raise _invalid(key, "expected a whole number" + (" or null" if nullable else ""))
            elif not 0 <= value <= _UINT_MAX:
                raise _invalid(key, f"expected a number from 0 to {_UINT_MAX}")
        clean[key] = value
    return clean


def _action(before: dict[str, Any], after: dict[str, Any]) -> str:
    keys = set(before) - {"paused_by"}
    if keys <= {"status"}:
        # paused_by alone changes when the operator takes over the tenant's own pause.
        status = after.get("status", Tenant.Status.PAUSED)
        return "tenant.resume" if status == Tenant.Status.ACTIVE else "tenant.pause"
    if keys <= set(FLAG_COLUMNS):
        return "tenant.flags"
    if keys <= set(QUOTA_COLUMNS):
        return "tenant.quotas"
    return "tenant.controls"


def _sending_allowed(values: Mapping[str, Any]) -> bool:
    return values["status"] == Tenant.Status.ACTIVE and values["campaigns_enabled"]


def _paused_by(tenant: Tenant, status: str, by: str) -> str:
    """Who holds the pause after a status change ``by`` the operator or the tenant.

    A tenant cannot lift the operator's pause (409), and pausing again does not make the
    operator's pause its own; the operator's pause takes over a tenant's."""
    if status == Tenant.Status.ACTIVE:
        if (
            by == Tenant.PausedBy.TENANT
            and tenant.status == Tenant.Status.PAUSED
            and tenant.paused_by != Tenant.PausedBy.TENANT
        ):
            raise ApplicationError(
                "This account was paused by the platform operator; only the operator can "
                "resume it (the audit log says why).",
                code="paused_by_operator",
                status_code=409,
            )
        return ""
    if tenant.status == Tenant.Status.PAUSED and tenant.paused_by == Tenant.PausedBy.OPERATOR:
        return Tenant.PausedBy.OPERATOR
    return by


def tenant_controls_update(
    *,
    tenant_id: int,
    changes: Mapping[str, Any],
    actor: str,
    reason: str = "",
    by: str = Tenant.PausedBy.OPERATOR,
    dry_run: bool = False,
) -> Tenant:
    """Change a tenant's status, feature flags or quotas, and audit it.

    ``by`` says whose change it is: the operator's (admin, commands), or the tenant's own
    (its API key), which may pause and resume only itself (see ``_paused_by``). Only the
    values that really change are written and audited; repeating a change is a no-op (no
    entry). Joins the caller's transaction (the admin wraps its save in one). ``dry_run``
    checks and does everything, then rolls it back: it refuses exactly what a real change
    would refuse.
    """
    if by not in Tenant.PausedBy.values:
        raise ValueError(f"by: expected one of {Tenant.PausedBy.values}")
    clean = _clean(changes)
    with transaction.atomic():
        # FOR NO KEY UPDATE: a send batch inserting ledger rows takes KEY SHARE on the
        # tenant (the foreign key), and a resume below waits for batches holding its actions.
        tenant = Tenant.objects.select_for_update(no_key=True).filter(pk=tenant_id).first()
        if tenant is None:
            raise NotFound("Tenant not found.")
        current = {key: getattr(tenant, key) for key in (*CONTROL_COLUMNS, "paused_by")}
        if "status" in clean:
            clean["paused_by"] = _paused_by(tenant, clean["status"], by)
        before = {key: current[key] for key, value in clean.items() if current[key] != value}
        if not before:
            return tenant
        after = {key: clean[key] for key in before}
        for key, value in after.items():
            setattr(tenant, key, value)
        tenant.save(update_fields=[*after, "updated_at"])
        audit_record(
            tenant_id=tenant_id,
            actor=actor,
            action=_action(before, after),
            target_type="tenant",
            target_id=tenant_id,
            reason=reason,
            before=before,
            after=after,
        )
        if not _sending_allowed(current) and _sending_allowed({**current, **after}):
            from campaigns.services.actions import scheduled_actions_release

            scheduled_actions_release(reason_prefix=TENANT_PAUSED, tenant_id=tenant_id)
        if dry_run:
            transaction.set_rollback(True)
            return tenant
    tenant_flags_cache_clear(tenant_id=tenant_id)
    return tenant


def tenant_pause(
    *, tenant_id: int, actor: str, reason: str = "", by: str = Tenant.PausedBy.OPERATOR
) -> Tenant:
    """Hold every send of the tenant from the next batch on (nothing is dropped)."""
    return tenant_controls_update(
        tenant_id=tenant_id,
        changes={"status": Tenant.Status.PAUSED},
        actor=actor,
        reason=reason,
        by=by,
    )


def tenant_resume(
    *, tenant_id: int, actor: str, reason: str = "", by: str = Tenant.PausedBy.OPERATOR
) -> Tenant:
    """Let the tenant send again; the sends its pause held become due now. The tenant
    (``by="tenant"``) may lift only its own pause: the operator's answers 409."""
    return tenant_controls_update(
        tenant_id=tenant_id,
        changes={"status": Tenant.Status.ACTIVE},
        actor=actor,
        reason=reason,
        by=by,
    )


# --------------------------------------------------------------------------- kill switch

_switches: tuple[float, dict[str, str]] | None = None
_switches_lock = threading.Lock()


def kill_switches_engaged() -> dict[str, str]:
    """Engaged kill switches, channel → reason, at most ``CONTROLS_CACHE_SECONDS`` old."""
    global _switches
    now = time.monotonic()
    cached = _switches
    if cached is not None and cached[0] > now:
        return cached[1]
    engaged = dict(KillSwitch.objects.filter(engaged=True).values_list("channel", "reason"))
    with _switches_lock:
        _switches = (now + settings.CONTROLS_CACHE_SECONDS, engaged)
    return engaged


def kill_switches_cache_clear() -> None:
    global _switches
    with _switches_lock:
        _switches = None


def kill_switch_set(*, channel: str, engaged: bool, actor: str, reason: str) -> KillSwitch:
    """Engage or release the kill switch of one channel (``all``, ``email``, ``sms``).

    Engaging holds every due send of that channel from the next batch on (within
    ``CONTROLS_CACHE_SECONDS`` in other processes); releasing makes the held sends due now.
    A reason is required either way: it is what the next operator reads.
    """
    if channel not in KillSwitch.Channel.values:
        raise _invalid("channel", f"expected one of {', '.join(KillSwitch.Channel.values)}")
    if not (reason or "").strip():
        raise _invalid("reason", "say why: the next operator reads it in the audit log")
    with transaction.atomic():
        KillSwitch.objects.get_or_create(channel=channel)
        switch = KillSwitch.objects.select_for_update().get(channel=channel)
        if switch.engaged == engaged:
            return switch
        before = {"engaged": switch.engaged, "reason": switch.reason}
        switch.engaged = engaged
        switch.reason = reason.strip()[:2000]
        switch.changed_by = actor[:200]
        switch.changed_at = timezone.now()
        switch.save()
        audit_record(
            tenant_id=None,
            actor=actor,
            action="kill_switch.engage" if engaged else "kill_switch.release",
            target_type="kill_switch",
            target_id=channel,
            reason=reason,
            before=before,
            after={"engaged": engaged, "reason": switch.reason},
        )
        if not engaged:
            from campaigns.services.actions import scheduled_actions_release

            scheduled_actions_release(reason_prefix=f"{KILL_SWITCH_HOLD} ({channel})")
    kill_switches_cache_clear()
    return switch


def sending_stop_reason(
    *, tenant: Tenant, channel: str = "email", lock: bool = False
) -> str | None:
    """Why a send of ``tenant`` on ``channel`` must wait now, or None. ``tenant`` is a row
    the caller loaded with its batch (fresh); the kill switches come from the cache.

    ``lock`` (the send path, inside its batch transaction): a stop is confirmed by reading
    the tenant and kill-switch rows again ``FOR SHARE``, once per batch (``tenant`` is the
    batch's shared instance and carries the answer). A release, which locks those rows,
    then waits for this batch to commit its holds and releases them too; ``CONTROL_CHANGING``
    means a row is locked by a change in progress (hold briefly). The path where nothing
    stops the send stays query-free.
    """
    engaged = kill_switches_engaged()
    reason = None
    for switch in (KillSwitch.Channel.ALL, channel):
        if switch in engaged:
            reason = f"{KILL_SWITCH_HOLD} ({switch})"
            break
    if reason is None and (tenant.status != Tenant.Status.ACTIVE or not tenant.campaigns_enabled):
        reason = TENANT_PAUSED
    if reason is None or not lock:
        return reason
    confirmed = tenant.__dict__.setdefault("_sending_stop_confirmed", {})
    if channel not in confirmed:
        confirmed[channel] = _stop_reason_locked(tenant_id=tenant.pk, channel=channel)
    return confirmed[channel]


def _stop_reason_locked(*, tenant_id: int, channel: str) -> str | None:
    """``sending_stop_reason`` from the rows themselves, share-locked until the caller's
    transaction ends. ``SKIP LOCKED``: a batch never waits for a change in progress (nor
    deadlocks with one); it holds briefly instead."""
    channels = [KillSwitch.Channel.ALL, channel]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT status, campaigns_enabled FROM tenancy_tenant WHERE id = %s"
            " FOR SHARE SKIP LOCKED",
            [tenant_id],
        )
        tenant = cursor.fetchone()
        cursor.execute(
            "SELECT count(*) FROM tenancy_killswitch WHERE channel = ANY(%s)", [channels]
        )
        (existing,) = cursor.fetchone()
        cursor.execute(
            "SELECT channel, engaged FROM tenancy_killswitch WHERE channel = ANY(%s)"
            " FOR SHARE SKIP LOCKED",
            [channels],
        )
        switches = dict(cursor.fetchall())
    if tenant is None or len(switches) < existing:
        return CONTROL_CHANGING
    for switch in channels:
        if switches.get(switch):
            return f"{KILL_SWITCH_HOLD} ({switch})"
    if not any(switches.values()):
        _kill_switches_forget(released=channels)
    status, campaigns_enabled = tenant
    if status != Tenant.Status.ACTIVE or not campaigns_enabled:
        return TENANT_PAUSED
    return None


def _kill_switches_forget(*, released: list[str]) -> None:
    """Drop channels the cache still shows engaged but the rows say released."""
    global _switches
    with _switches_lock:
        if _switches is not None and any(name in _switches[1] for name in released):
            _switches = None
