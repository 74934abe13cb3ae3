"""Reading campaign-side data. Every function is scoped by ``tenant_id`` first."""

import datetime
from dataclasses import dataclass

from django.db import connection
from django.db.models import QuerySet, Value
from django.db.models.functions import Lower

from campaigns.models import Lead
from campaigns.validation.email import InvalidEmail, email_normalize
from outreach.common.errors import NotFound


def lead_get(*, tenant_id: int, lead_id: int, for_update: bool = False) -> Lead:
    """The tenant's lead, or ``NotFound`` (another tenant's id looks exactly like a missing one)."""
    queryset = Lead.objects.for_tenant(tenant_id)
    if for_update:
        queryset = queryset.select_for_update()
    try:
        return queryset.get(pk=lead_id)
    except Lead.DoesNotExist:
        raise NotFound("Lead not found.") from None


def lead_list(
    *,
    tenant_id: int,
    email: str | None = None,
    company: str | None = None,
    validation_status: str | None = None,
    created_after: datetime.datetime | None = None,
    created_before: datetime.datetime | None = None,
    q: str | None = None,
) -> QuerySet[Lead]:
    """The tenant's leads, filtered. ``email`` matches the stored (normalised) form, so
    ``Jane@Example.com`` finds ``jane@example.com``; ``q`` finds leads whose first name, last
    name or company contain every word of it (any case), through the trigram index on
    ``search_text``."""
    queryset = Lead.objects.for_tenant(tenant_id)
    if email:
        try:
            email = email_normalize(email=email)
        except InvalidEmail:
            email = email.strip().lower()
        queryset = queryset.filter(email=email)
    if company:
        queryset = queryset.filter(company=company)
    if validation_status:
        queryset = queryset.filter(validation_status=validation_status)
    if created_after:
        queryset = queryset.filter(created_at__gte=created_after)
    if created_before:
        queryset = queryset.filter(created_at__lt=created_before)
    if q:
        for term in q.split():
            # Lowered by PostgreSQL, as search_text is: the same rules for both sides.
            queryset = queryset.filter(search_text__contains=Lower(Value(term)))
    return queryset


@dataclass(frozen=True)
class ActionsBacklog:
    due: int  # pending and due now
    due_lag_seconds: float  # how long the oldest due one has waited (0 when none)
    claimed: int
    pending_estimate: float  # every pending row, from the pending index's size


def scheduled_actions_backlog() -> ActionsBacklog:
    """The platform's scheduled actions at a glance (``/metrics``). Each count reads the
    partial index holding only its rows; the rows pending for later (the bulk of the
    table) are the index's size as the planner last measured it."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(due_at)), 0)"
            " FROM campaigns_scheduledaction WHERE status = 'pending' AND due_at <= now()"
        )
        due, lag = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM campaigns_scheduledaction WHERE status = 'claimed'")
        (claimed,) = cursor.fetchone()
        cursor.execute(
            "SELECT GREATEST(reltuples, 0) FROM pg_class WHERE relname = 'action_due_pending_idx'"
        )
        row = cursor.fetchone()
    return ActionsBacklog(
        due=due,
        due_lag_seconds=float(lag),
        claimed=claimed,
        pending_estimate=float(row[0]) if row else 0.0,
    )


def campaign_status_locked(*, tenant_id: int, campaign_id: int) -> str | None:
    """The campaign's status, read ``FOR SHARE`` until the caller's transaction ends (the
    send path confirming a hold: a resume waits for it, see ``outreach.tenancy.controls``).
    None when a change of the campaign holds its row right now (``SKIP LOCKED``)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT status FROM campaigns_campaign WHERE id = %s AND tenant_id = %s"
            " FOR SHARE SKIP LOCKED",
            [campaign_id, tenant_id],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def lead_count(*, tenant_id: int) -> int:
    return Lead.objects.for_tenant(tenant_id).count()


def campaign_count(*, tenant_id: int) -> int:
    from campaigns.models import Campaign

    return Campaign.objects.for_tenant(tenant_id).count()
