"""Tenancy reads: the audit log, a tenant's controls and its health at a glance."""

import datetime
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from outreach.common.errors import NotFound
from outreach.tenancy.controls import kill_switches_engaged, sending_stop_reason
from outreach.tenancy.flags import tenant_flags_of
from outreach.tenancy.models import AuditEntry, KillSwitch, Tenant


def audit_list(
    *,
    tenant_id: int,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
) -> QuerySet[AuditEntry]:
    """The tenant's entries, newest first (platform-wide entries are not a tenant's)."""
    queryset = AuditEntry.objects.filter(tenant_id=tenant_id)
    if action:
        queryset = queryset.filter(action=action)
    if target_type:
        queryset = queryset.filter(target_type=target_type)
    if target_id:
        queryset = queryset.filter(target_id=target_id)
    return queryset.order_by("-id")


def audit_get(*, tenant_id: int, entry_id: int) -> AuditEntry:
    entry = AuditEntry.objects.filter(tenant_id=tenant_id, pk=entry_id).first()
    if entry is None:
        raise NotFound("Audit entry not found.")
    return entry


KILL_SWITCH_HISTORY = 10


def kill_switch_list(*, history: int = KILL_SWITCH_HISTORY) -> list[dict[str, Any]]:
    """Every channel's kill switch as its row says now (not the send path's cache), with
    its latest ``history`` audit entries, newest first. A channel never switched has no row
    yet: it is released. Platform-wide: for operators, never for a tenant."""
    rows = {switch.channel: switch for switch in KillSwitch.objects.all()}
    switches = []
    for channel in KillSwitch.Channel.values:
        row = rows.get(channel)
        entries = AuditEntry.objects.filter(
            tenant__isnull=True, target_type="kill_switch", target_id=channel
        ).order_by("-id")[:history]
        switches.append(
            {
                "channel": channel,
                "engaged": bool(row and row.engaged),
                "reason": row.reason if row else "",
                "changed_by": row.changed_by if row else "",
                "changed_at": row.changed_at if row else None,
                "history": list(entries),
            }
        )
    return switches


def kill_switch_get(*, channel: str, history: int = KILL_SWITCH_HISTORY) -> dict[str, Any]:
    for switch in kill_switch_list(history=history):
        if switch["channel"] == channel:
            return switch
    raise NotFound("No such kill switch.")


def tenant_controls_get(*, tenant_id: int) -> dict[str, Any]:
    """Status, feature flags, quotas with what is used of them, and the platform's kill
    switches (read-only for a tenant)."""
    from campaigns.selectors import campaign_count, lead_count
    from messaging.services.ratelimit import tenant_sent_today

    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        raise NotFound("Tenant not found.")
    engaged = kill_switches_engaged()
    return {
        "id": tenant.pk,
        "name": tenant.name,
        "slug": tenant.slug,
        "status": tenant.status,
        "paused_by": tenant.paused_by,
        "flags": tenant_flags_of(tenant=tenant).as_dict(),
        "quotas": {
            "daily_send_quota": tenant.daily_send_quota,
            "lead_quota": tenant.lead_quota,
            "campaign_quota": tenant.campaign_quota,
        },
        "usage": {
            "sent_today": tenant_sent_today(tenant_id=tenant_id, now=timezone.now()),
            "leads": lead_count(tenant_id=tenant_id),
            "campaigns": campaign_count(tenant_id=tenant_id),
        },
        "kill_switches": {
            channel: {"engaged": channel in engaged, "reason": engaged.get(channel, "")}
            for channel in KillSwitch.Channel.values
        },
        "sending_stopped_because": sending_stop_reason(tenant=tenant),
    }


def tenant_health_get(*, tenant_id: int) -> dict[str, Any]:
    """The tenant at a glance, for the 3 a.m. operator: controls and quotas, sends today
    against caps per sender identity, bounce and complaint rates over 7 days, the webhook
    backlog and its oldest receipt, and messages whose send outcome is unknown."""
    from analytics.selectors import sender_health, sender_totals
    from messaging.selectors import (
        messages_needs_review,
        messages_stuck_sending,
        sender_identity_list,
        webhook_receipt_backlog,
    )
    from messaging.services.capacity import identity_daily_ceiling, identity_zone
    from messaging.services.ratelimit import capacity_usage_get

    controls = tenant_controls_get(tenant_id=tenant_id)
    now = timezone.now()
    identities = []
    for identity in sender_identity_list(tenant_id=tenant_id).order_by("id")[:100]:
        usage = capacity_usage_get(tenant_id=tenant_id, identity=identity, now=now)
        day = now.astimezone(identity_zone(identity=identity)).date()
        identities.append(
            {
                "id": identity.pk,
                "from_email": identity.from_email,
                "paused": identity.paused,
                "sent_today": usage.sent_today,
                "today_ceiling": identity_daily_ceiling(identity=identity, day=day),
                "sent_this_hour": usage.sent_this_hour,
            }
        )
    totals: dict[str, int] = {}
    for row in sender_totals(tenant_id=tenant_id, days=7):
        for key, value in row.items():
            if key != "sender_identity_id":
                totals[key] = totals.get(key, 0) + (value or 0)
    backlog = webhook_receipt_backlog(tenant_id=tenant_id)
    grace = datetime.timedelta(seconds=settings.SEND_RECONCILE_GRACE_SECONDS)
    stuck_after = datetime.timedelta(minutes=5)
    return {
        **controls,
        "checked_at": now,
        "sender_identities": identities,
        "deliverability_7d": sender_health(totals or None),
        "webhooks": {
            kind: {
                "unprocessed": item.count,
                "oldest_received_at": item.oldest_received_at,
                "oldest_age_seconds": (now - item.oldest_received_at).total_seconds()
                if item.oldest_received_at
                else None,
            }
            for kind, item in backlog.items()
        },
        "messages": {
            "sending_over_5_minutes": messages_stuck_sending(
                tenant_id=tenant_id, older_than=stuck_after
            ).count(),
            "sending_past_reconcile_grace": messages_stuck_sending(
                tenant_id=tenant_id, older_than=grace
            ).count(),
            "needs_review": messages_needs_review(tenant_id=tenant_id).count(),
        },
    }
