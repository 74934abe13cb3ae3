"""Resolving a message whose send outcome was unknown (``needs_review``).

The send path never resends blindly: a message left ``sending`` with no provider answer and
no webhook event within the grace period becomes ``needs_review`` and its enrollment is
paused. An operator who found out (SendGrid's activity feed, the recipient) resolves it:

- ``sent``: the provider had it. The message becomes ``accepted`` and the enrollment goes on
  as after any send (its timeouts are armed, or it moves to the next step).
- ``not_sent``: it never left. The message is marked failed (transient) and the step is
  scheduled again; the send path sends it as the next attempt, once.

Either way the enrollment is active again, and the decision is in the audit log.
Idempotent: a message that is no longer ``needs_review`` is left alone (``ApplicationError``
says so), and the re-send action's idempotency key is fixed per attempt.
"""

import logging
from typing import Any, Literal

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce, Greatest, NullIf
from django.utils import timezone

from campaigns.models import Enrollment
from campaigns.services import engine, scheduler
from campaigns.services.actions import scheduled_send_make_due
from messaging.models import Message, MessageEvent
from messaging.selectors import MESSAGE_EVENT_WINDOW, message_orphan_events_find
from messaging.services.events import MESSAGE_STATUS_RANK, STATUS_FOR_EVENT
from outreach.common.errors import ApplicationError, NotFound
from outreach.tenancy.audit import audit_record

logger = logging.getLogger(__name__)

Outcome = Literal["sent", "not_sent"]
NEEDS_REVIEW_REASON = "needs review: send outcome unknown"


def message_review_resolve(
    *, tenant_id: int, message_id: int, outcome: Outcome, actor: str, reason: str = ""
) -> Message:
    """Resolve one ``needs_review`` message as ``sent`` or ``not_sent`` (see the module)."""
    if outcome not in ("sent", "not_sent"):
        raise ApplicationError(
            f"unknown outcome {outcome!r}", extra={"outcome": ["expected sent or not_sent"]}
        )
    now = timezone.now()
    with transaction.atomic():
        message = (
            Message.objects.for_tenant(tenant_id)
            .select_for_update(of=("self",))
            .filter(pk=message_id)
            .first()
        )
        if message is None:
            raise NotFound("Message not found.")
        if message.status != Message.Status.NEEDS_REVIEW:
            raise ApplicationError(
                f"message {message.pk} is {message.status}, not needs_review: nothing to resolve",
                code="not_needs_review",
            )
        enrollment = (
            engine.enrollment_locked(enrollment_id=message.enrollment_id)
            if message.enrollment_id
            else None
        )
        if outcome == "sent":
            message.status = Message.Status.ACCEPTED
            message.status_rank = MESSAGE_STATUS_RANK[Message.Status.ACCEPTED]
            message.sent_at = message.sent_at or message.created_at
            message.error_message = f"resolved by {actor}: the provider had it"
        else:
            message.status = Message.Status.FAILED
            message.status_rank = MESSAGE_STATUS_RANK[Message.Status.FAILED]
            message.error_code = "transient:operator_not_sent"
            message.error_message = f"resolved by {actor}: it never left; sent again"
        fields = ["status", "status_rank", "sent_at", "error_code", "error_message"]
        message.save(update_fields=[*fields, "updated_at"])
        resumed = _enrollment_resume(enrollment, message, outcome, now)
        audit_record(
            tenant_id=tenant_id,
            actor=actor,
            action=f"message.review_{outcome}",
            target_type="message",
            target_id=message.pk,
            reason=reason,
            before={"status": Message.Status.NEEDS_REVIEW},
            after={"status": message.status, "enrollment_resumed": resumed},
        )
    logger.info(
        "message.review_resolved",
        extra={"tenant_id": tenant_id, "message_id": message_id, "outcome": outcome},
    )
    return message


def _enrollment_resume(
    enrollment: Enrollment | None, message: Message, outcome: Outcome, now
) -> bool:
    """Wake the enrollment the review paused, if it is still waiting on this message."""
    if (
        enrollment is None
        or enrollment.state != Enrollment.State.PAUSED
        or enrollment.step_seq != message.step_seq
        or enrollment.stop_reason != NEEDS_REVIEW_REASON
    ):
        return False
    enrollment.state = Enrollment.State.ACTIVE
    enrollment.paused_until = None
    enrollment.stop_reason = ""
    enrollment.last_error = ""
    enrollment.save(
        update_fields=["state", "paused_until", "stop_reason", "last_error", "updated_at"]
    )
    if outcome == "sent":
        engine.enrollment_after_send(
            enrollment=enrollment,
            step_seq=message.step_seq,
            sent_at=message.sent_at or now,
            message_id=message.pk,
        )
    else:
        scheduler.scheduled_actions_create(
            actions=[
                scheduler.NewAction(
                    tenant_id=enrollment.tenant_id,
                    enrollment_id=enrollment.pk,
                    kind="send",
                    step=message.step,
                    step_seq=message.step_seq,
                    due_at=now,
                    priority=engine.PRIORITY_FOLLOW_UP,
                    idempotency_key=f"{enrollment.pk}:{message.step_seq}:send:review{message.attempt}",
                )
            ]
        )
    return True


def messages_review_settle(*, tenant_id: int, message_ids: list[int]) -> int:
    """Messages awaiting review that webhook events just proved sent (the caller moved their
    status on, in its transaction, rows locked): each paused enrollment goes on as after
    ``message_review_resolve(outcome="sent")``, audited as the events' doing. Returns how many
    enrollments were resumed; one no longer waiting on its message is left alone."""
    now = timezone.now()
    resumed = 0
    for message in Message.objects.for_tenant(tenant_id).filter(pk__in=message_ids).order_by("pk"):
        if message.enrollment_id is None:
            continue
        enrollment = engine.enrollment_locked(enrollment_id=message.enrollment_id)
        if not _enrollment_resume(enrollment, message, "sent", now):
            continue
        resumed += 1
        audit_record(
            tenant_id=tenant_id,
            actor="system:webhook-events",
            action="message.review_sent",
            target_type="message",
            target_id=message.pk,
            reason="SendGrid's events for it arrived after the grace period",
            before={"status": Message.Status.NEEDS_REVIEW},
            after={"status": message.status, "enrollment_resumed": True},
        )
        logger.info(
            "message.review_settled_by_events",
            extra={"tenant_id": tenant_id, "message_id": message.pk},
        )
    return resumed


# --------------------------------------------------------------------------- reconcile


def message_reconcile(
    *,
    tenant_id: int,
    message_id: int,
    dry_run: bool = False,
    actor: str = "system",
    orphans: list[dict[str, Any]] | None = None,
) -> str:
    """Settle a ``sending`` or ``needs_review`` message from webhook events that prove the
    provider had it. Returns ``reconciled``, ``no_evidence`` or ``settled`` (nothing to do,
    or no such message of this tenant).

    Evidence is the message's own events, or events stored as orphans (no message found at
    the time) that carry its id in ``outreach_message_id``; orphans are attached to it. The
    status moves forward to what the events show (at least ``accepted``), ``sent_at`` and
    the provider id are filled. A ``needs_review`` message is resolved as sent (its paused
    enrollment goes on, audited); a ``sending`` one's held send action is made due, so the
    send path finishes its bookkeeping without ever sending again. Idempotent.

    ``orphans``: the message's orphan events as ``message_orphan_events_find`` returns them,
    found for a whole batch of messages at once (the command); left out, they are looked up
    for this message alone.
    """
    with transaction.atomic():
        message = (
            Message.objects.for_tenant(tenant_id)
            .select_for_update(of=("self",))
            .filter(pk=message_id)
            .first()
        )
        if message is None or message.status not in (
            Message.Status.SENDING,
            Message.Status.NEEDS_REVIEW,
        ):
            return "settled"
        before, after = MESSAGE_EVENT_WINDOW
        start, end = message.created_at - before, message.created_at + after
        if orphans is None:
            orphans = message_orphan_events_find(tenant_id=tenant_id, message_ids=[message.pk]).get(
                message.pk, []
            )
        events = [
            *MessageEvent.objects.filter(
                tenant_id=tenant_id,
                message_id=message.pk,
                occurred_at__gte=start,
                occurred_at__lt=end,
            ).values("id", "occurred_at", "event_type", "provider_message_id", "message_id"),
            *orphans,
        ]
        if not events:
            return "no_evidence"
        if dry_run:
            transaction.set_rollback(True)
            return "reconciled"
        orphan_ids = [e["id"] for e in events if e["message_id"] is None]
        if orphan_ids:
            MessageEvent.objects.filter(
                tenant_id=tenant_id,
                id__in=orphan_ids,
                message_id__isnull=True,
                occurred_at__gte=start,
                occurred_at__lt=end,
            ).update(message_id=message.pk, enrollment_id=message.enrollment_id)
        status = Message.Status.ACCEPTED
        for event in events:
            candidate = STATUS_FOR_EVENT.get(event["event_type"])
            if candidate and MESSAGE_STATUS_RANK[candidate] > MESSAGE_STATUS_RANK[status]:
                status = candidate
        if message.status == Message.Status.NEEDS_REVIEW:
            message_review_resolve(
                tenant_id=message.tenant_id,
                message_id=message.pk,
                outcome="sent",
                actor=actor,
                reason=f"reconciled from {len(events)} webhook events",
            )
        first = min(e["occurred_at"] for e in events)
        provider_id = next(
            (e["provider_message_id"] for e in events if e["provider_message_id"]), ""
        )
        Message.objects.filter(pk=message.pk).update(
            status=status,
            status_rank=Greatest(F("status_rank"), MESSAGE_STATUS_RANK[status]),
            sent_at=Coalesce(F("sent_at"), first),
            provider_message_id=Coalesce(
                NullIf(F("provider_message_id"), Value("")), Value(provider_id)
            ),
            updated_at=timezone.now(),
        )
        if message.status == Message.Status.SENDING and message.enrollment_id:
            scheduled_send_make_due(
                tenant_id=tenant_id, enrollment_id=message.enrollment_id, step_seq=message.step_seq
            )
    logger.info(
        "message.reconciled",
        extra={"tenant_id": message.tenant_id, "message_id": message.pk, "events": len(events)},
    )
    return "reconciled"
