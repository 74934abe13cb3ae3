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
from typing import Literal

from django.db import transaction
from django.utils import timezone

from campaigns.models import Enrollment
from campaigns.services import engine, scheduler
from messaging.models import Message
from messaging.services.events import MESSAGE_STATUS_RANK
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
