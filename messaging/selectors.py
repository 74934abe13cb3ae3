"""Reading messaging data. Every function is scoped by ``tenant_id`` first."""

import datetime
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Count, Min, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.utils import timezone

from messaging.models import Message, MessageEvent, SenderIdentity, WebhookReceipt
from outreach.common.errors import NotFound


def sender_identity_get(
    *, tenant_id: int, identity_id: int, for_update: bool = False
) -> SenderIdentity:
    """The tenant's identity, or ``NotFound`` (another tenant's id looks like a missing one)."""
    queryset = SenderIdentity.objects.for_tenant(tenant_id)
    if for_update:
        queryset = queryset.select_for_update()
    try:
        return queryset.get(pk=identity_id)
    except SenderIdentity.DoesNotExist:
        raise NotFound("Sender identity not found.") from None


def sender_identity_paused_locked(*, tenant_id: int, identity_id: int) -> bool | None:
    """Whether the identity is paused, read ``FOR SHARE`` until the caller's transaction
    ends (the send path confirming a hold: a resume waits for it, see
    ``outreach.tenancy.controls``). None when a change of the identity holds its row right
    now (``SKIP LOCKED``)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT paused FROM messaging_senderidentity WHERE id = %s AND tenant_id = %s"
            " FOR SHARE SKIP LOCKED",
            [identity_id, tenant_id],
        )
        found = cursor.fetchone()
    return found[0] if found else None


def sender_identity_list(*, tenant_id: int) -> QuerySet[SenderIdentity]:
    return SenderIdentity.objects.for_tenant(tenant_id)


# --------------------------------------------------------------------------- operations
# What an operator (the admin's tenant health page, /metrics, the repair commands) asks.
# ``tenant_id=None`` means the whole platform. Each reads a partial index that holds only
# the rows in question, so they stay cheap however large the ledger grows.


@dataclass(frozen=True)
class ReceiptBacklog:
    count: int
    oldest_received_at: datetime.datetime | None


def webhook_receipt_backlog(*, tenant_id: int | None = None) -> dict[str, ReceiptBacklog]:
    """Unprocessed receipts by kind (``events``, ``inbound``), with the oldest's arrival."""
    queryset = WebhookReceipt.objects.filter(processed_at__isnull=True)
    if tenant_id is not None:
        queryset = queryset.filter(tenant_id=tenant_id)
    rows = queryset.values("kind").annotate(count=Count("id"), oldest=Min("received_at"))
    found = {row["kind"]: ReceiptBacklog(row["count"], row["oldest"]) for row in rows}
    return {kind: found.get(kind, ReceiptBacklog(0, None)) for kind in WebhookReceipt.Kind.values}


def messages_stuck_sending(
    *, tenant_id: int | None = None, older_than: datetime.timedelta
) -> QuerySet[Message]:
    """Messages still ``sending`` (outcome unknown) since longer than ``older_than``."""
    queryset = Message.objects.filter(
        status=Message.Status.SENDING, updated_at__lt=timezone.now() - older_than
    )
    if tenant_id is not None:
        queryset = queryset.filter(tenant_id=tenant_id)
    return queryset


def messages_needs_review(*, tenant_id: int | None = None) -> QuerySet[Message]:
    queryset = Message.objects.filter(status=Message.Status.NEEDS_REVIEW)
    if tenant_id is not None:
        queryset = queryset.filter(tenant_id=tenant_id)
    return queryset


# How far around a message's creation its events may be: SendGrid retries for 72 hours.
MESSAGE_EVENT_WINDOW = (datetime.timedelta(minutes=5), datetime.timedelta(days=4))


def message_orphan_events_find(
    *, tenant_id: int, message_ids: list[int]
) -> dict[int, list[dict[str, Any]]]:
    """Events stored as orphans (no message matched when they came) that carry one of these
    messages' ids in ``outreach_message_id``, by message: one scan of the tenant's orphan
    events over the messages' time windows, however many messages."""
    messages = {
        str(public_id): (pk, created_at)
        for pk, public_id, created_at in Message.objects.for_tenant(tenant_id)
        .filter(id__in=message_ids)
        .values_list("id", "public_id", "created_at")
    }
    if not messages:
        return {}
    before, after = MESSAGE_EVENT_WINDOW
    starts = [created_at - before for _, created_at in messages.values()]
    ends = [created_at + after for _, created_at in messages.values()]
    rows = (
        MessageEvent.objects.filter(
            tenant_id=tenant_id,
            message_id__isnull=True,
            occurred_at__gte=min(starts),
            occurred_at__lt=max(ends),
        )
        .annotate(ref=KeyTextTransform("outreach_message_id", "raw"))
        .filter(ref__in=list(messages))
        .values("id", "occurred_at", "event_type", "provider_message_id", "message_id", "ref")
    )
    found: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        pk, created_at = messages[row.pop("ref")]
        if created_at - before <= row["occurred_at"] < created_at + after:
            found.setdefault(pk, []).append(row)
    return found
