"""Engagement drives enrollments: webhook events, replies and out-of-office pauses.

Called by messaging after it stored normalised events (in the same transaction, so an event
and its consequence commit together) and after an inbound reply was classified.
"""

import datetime
import logging

from django.conf import settings
from django.utils import timezone

from campaigns.models import Enrollment
from campaigns.services import engine, send_time
from messaging.services.engagement import StoredEvent

logger = logging.getLogger(__name__)

# Normalised event type → plan trigger.
EVENT_TRIGGERS = {
    "delivered": "delivered",
    "open": "open",
    "click": "click",
    "reply": "reply",
    "bounce": "bounce",
    "dropped": "dropped",
    "spamreport": "spamreport",
    "unsubscribe": "unsubscribe",
    "group_unsubscribe": "unsubscribe",
    # SMS (messaging.services.sms_events): Twilio's status callbacks and inbound texts.
    "sms_delivered": "delivered",
    "sms_undelivered": "undelivered",
    "sms_failed": "undelivered",
    "sms_reply": "reply",
    "sms_stop": "sms_stop",
}
# These act on the enrollment whichever step the message belonged to.
ANY_STEP_TRIGGERS = {"reply", "bounce", "dropped", "spamreport", "unsubscribe", "sms_stop"}
STOP_REASONS = {
    "bounce": "address bounced",
    "dropped": "SendGrid dropped the message",
    "spamreport": "lead reported spam",
    "unsubscribe": "lead unsubscribed",
    "reply": "lead replied",
    "sms_stop": "lead texted STOP",
}


def _trigger_for(candidate: StoredEvent, step: dict) -> str | None:
    trigger = EVENT_TRIGGERS[candidate.event_type]
    if trigger == "open" and candidate.machine_open and not step.get("count_machine_opens"):
        return None  # Apple MPP pre-fetch, not a human reading the email
    if trigger == "click" and candidate.bot_click:
        return None  # a link scanner, not a human
    return trigger


def enrollment_events_apply(*, tenant_id: int, events: list[StoredEvent]) -> int:
    """Advance enrollments for freshly stored events (those of campaign messages, handed
    over by the normaliser in its transaction); returns how many enrollments moved.

    Events are taken oldest first. Idempotent: a re-delivered event finds its step entry
    already left (the transition row exists) and changes nothing. Events for an earlier
    step's message only matter when they end the journey (reply, bounce, complaint,
    unsubscribe).
    """
    moved = 0
    now = timezone.now()
    by_enrollment: dict[int, list[StoredEvent]] = {}
    for candidate in sorted(events, key=lambda event: (event.occurred_at, event.event_id)):
        if candidate.event_type in EVENT_TRIGGERS:
            by_enrollment.setdefault(candidate.enrollment_id, []).append(candidate)
    if not by_enrollment:
        return 0
    # Cheap pre-filter without locks: most events (delivered, opens) lead nowhere.
    live = {
        row["id"]: row
        for row in Enrollment.objects.filter(
            tenant_id=tenant_id,
            pk__in=list(by_enrollment),
            state__in=[Enrollment.State.ACTIVE, Enrollment.State.PAUSED],
        ).values("id", "step_seq", "current_step", "plan_version__plan")
    }
    for enrollment_id in sorted(live):
        row = live[enrollment_id]
        step = engine.step_get(row["plan_version__plan"], row["current_step"])
        relevant = [c for c in by_enrollment[enrollment_id] if _acts(c, step, row["step_seq"])]
        if not relevant:
            continue
        enrollment = engine.enrollment_locked(enrollment_id=enrollment_id)
        if enrollment is None:
            continue
        for candidate in relevant:
            if _apply_one(enrollment, candidate, now):
                moved += 1
    return moved


def _acts(candidate: StoredEvent, step: dict, current_seq: int) -> bool:
    trigger = _trigger_for(candidate, step)
    if trigger is None:
        return False
    if trigger in ANY_STEP_TRIGGERS:
        return True
    return candidate.message_step_seq == current_seq and engine.step_edge(step, trigger) is not None


def _apply_one(enrollment: Enrollment, candidate: StoredEvent, now: datetime.datetime) -> bool:
    if enrollment.state not in (Enrollment.State.ACTIVE, Enrollment.State.PAUSED):
        return False
    step = engine.step_get(enrollment.plan_version.plan, enrollment.current_step)
    trigger = _trigger_for(candidate, step)
    if trigger is None:
        return False
    edge = engine.step_edge(step, trigger)
    same_step = candidate.message_step_seq == enrollment.step_seq
    cause = f"{candidate.event_type} event {candidate.event_id} on message {candidate.message_id}"
    if trigger in engine.STOPPING_TRIGGERS or (trigger == "reply" and edge is None):
        # Bounces, complaints and unsubscribes always end the journey; so does a reply the
        # current step has no branch for.
        target = engine.step_get(enrollment.plan_version.plan, edge.target) if edge else {}
        return engine.enrollment_stop(
            enrollment=enrollment,
            trigger=trigger,
            reason=STOP_REASONS.get(trigger, trigger),
            now=now,
            message_id=candidate.message_id,
            event_id=candidate.event_id,
            outcome=str(target.get("outcome", "")) if target.get("type") == "end" else "",
        )
    if trigger == "reply":
        same_step = True  # a reply to any earlier email follows the current step's branch
    if edge is None or not same_step:
        return False
    return engine.enrollment_transition(
        enrollment=enrollment,
        from_seq=enrollment.step_seq,
        trigger=trigger,
        to_step=edge.target,
        cause=cause,
        now=now,
        message_id=candidate.message_id,
        event_id=candidate.event_id,
    )


def enrollment_reply_apply(
    *,
    tenant_id: int,
    inbound_message_id: int,
    classification: str,
    return_date: datetime.date | None = None,
) -> bool:
    """A classified inbound message matched to one of our messages.

    A human reply follows the current step's ``reply`` branch or stops the journey; an
    out-of-office pauses the enrollment until the stated return date (or a default delay);
    other automatic mail changes nothing.
    """
    from messaging.models import InboundMessage

    inbound = (
        InboundMessage.objects.for_tenant(tenant_id)
        .select_related("matched_message")
        .filter(pk=inbound_message_id)
        .first()
    )
    if inbound is None or inbound.matched_message is None:
        return False
    message = inbound.matched_message
    if message.enrollment_id is None:
        return False
    now = timezone.now()
    enrollment = engine.enrollment_locked(enrollment_id=message.enrollment_id)
    if enrollment is None or enrollment.tenant_id != tenant_id:
        return False
    if classification == "human":
        step = engine.step_get(enrollment.plan_version.plan, enrollment.current_step)
        edge = engine.step_edge(step, "reply")
        cause = f"human reply (inbound {inbound.pk}) to message {message.pk}"
        if edge is not None:
            return engine.enrollment_transition(
                enrollment=enrollment,
                from_seq=enrollment.step_seq,
                trigger="reply",
                to_step=edge.target,
                cause=cause,
                now=now,
                message_id=message.pk,
            )
        return engine.enrollment_stop(
            enrollment=enrollment,
            trigger="reply",
            reason=STOP_REASONS["reply"],
            now=now,
            message_id=message.pk,
        )
    if classification == "out_of_office":
        return enrollment_pause(
            enrollment=enrollment,
            until=_return_instant(enrollment, return_date, now),
            reason=f"out of office (inbound {inbound.pk})",
        )
    return False


def _return_instant(
    enrollment: Enrollment, return_date: datetime.date | None, now: datetime.datetime
) -> datetime.datetime:
    zone = send_time.lead_zone_resolve(
        lead_timezone=enrollment.lead.timezone,
        identity_timezone=enrollment.sender_identity.timezone,
    )
    if return_date is None or return_date <= now.astimezone(zone).date():
        return now + datetime.timedelta(days=settings.OOO_DEFAULT_PAUSE_DAYS)
    window = send_time.send_window_for(identity=enrollment.sender_identity)
    return send_time.local_to_utc(day=return_date, at=window.start, zone=zone)


def enrollment_pause(*, enrollment: Enrollment, until: datetime.datetime, reason: str) -> bool:
    """Hold the journey until ``until``: due actions wait, a resume action wakes it up."""
    if enrollment.state not in (Enrollment.State.ACTIVE, Enrollment.State.PAUSED):
        return False
    enrollment.state = Enrollment.State.PAUSED
    enrollment.paused_until = until
    enrollment.stop_reason = reason[:200]
    enrollment.save(update_fields=["state", "paused_until", "stop_reason", "updated_at"])
    engine._schedule(
        enrollment,
        "resume",
        enrollment.current_step,
        enrollment.step_seq,
        until,
        key_suffix=f":{until:%Y%m%d%H%M}",
    )
    logger.info(
        "enrollment.paused",
        extra={"tenant_id": enrollment.tenant_id, "enrollment_id": enrollment.pk, "until": until},
    )
    return True
