"""The SMS send worker: due ``sms`` actions in, text messages out, exactly once.

The same three phases and rules as email (``messaging.services.sending``), one action at a
time (a number sends about one text per second, so SMS batches are small):

1. **Prepare** (one transaction for the batch, actions fenced by their attempt, enrollments
   locked in id order): skip what is stopped, hold what is paused or switched off (the
   ``sms`` kill switch, the tenant's ``sms`` flag), hold until the lead's quiet hours are
   over, stop the journey when there is no consent or the number is suppressed (checked
   *now*, under the number's send lock), take capacity, render, and commit the ledger row
   as ``sending``. A step entry that already has a ledger row is never sent again.
2. **Call Twilio** outside any transaction, the number's send lock still held: a STOP
   arriving meanwhile waits for the answer, so no text leaves after a STOP committed.
3. **Record** the typed outcome: accepted → arm the step's timeouts (or move on);
   transient → retry with a new attempt, unless Twilio may have taken it, in which case the
   status callbacks (which carry our id in their URL) settle it, else it goes to review;
   permanent → fail the step with Twilio's code and message; 21610 (the person opted out at
   the carrier) also suppresses the number.
"""

import datetime
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from campaigns import plans
from campaigns.models import Campaign, Enrollment, ScheduledAction
from campaigns.services import engine, scheduler, timing
from campaigns.services.actions import enrollment_wait_until, scheduled_actions_held
from messaging.models import Message
from messaging.providers.base import Accepted, Permanent, Transient
from messaging.providers.twilio import (
    CODE_UNSUBSCRIBED,
    OutboundSms,
    provider_sms_send,
    sms_credentials_get,
    twilio_error_code,
)
from messaging.services import ratelimit
from messaging.services.events import MESSAGE_STATUS_RANK
from messaging.services.sms_capacity import sms_capacity_acquire
from outreach.tenancy import controls
from outreach.tenancy.flags import tenant_flags_of
from suppression.models import PhoneSuppression
from suppression.selectors import phone_suppression_check
from suppression.services import (
    phone_send_lock_many,
    phone_send_unlock_many,
    phone_suppression_add,
)

logger = logging.getLogger(__name__)

SMS_DISABLED = "SMS is disabled for this tenant"
# Ledger states that mean "Twilio has it (or had it)": never text that step again.
SMS_SENT_STATES = {
    Message.Status.ACCEPTED,
    Message.Status.PROCESSED,
    Message.Status.DELIVERED,
    Message.Status.REPLIED,
    Message.Status.UNDELIVERED,
    Message.Status.UNSUBSCRIBED,
}


@dataclass
class SmsBatchReport:
    sent: int = 0
    skipped: int = 0
    rescheduled: int = 0
    failed: int = 0


@dataclass
class _Ready:
    action_id: int
    attempt: int
    message: Message
    outbound: OutboundSms
    grant_id: str


def sms_status_callback_url(*, tenant_public_id: object, message_public_id: object) -> str:
    """Where Twilio reports on one text: our id rides in the URL (which the signature
    covers), so a text whose send answer was lost is still settled by its callbacks."""
    return (
        f"{settings.PUBLIC_BASE_URL}/webhooks/twilio/status/{tenant_public_id}/"
        f"?message={message_public_id}"
    )


def sms_send_batch(*, items: list[list[int]]) -> SmsBatchReport:
    """Send one batch of claimed ``sms`` actions (``[[action_id, attempt], ...]``).

    Safe to run twice with the same items, concurrently or not: the second run finds the
    actions no longer held under those attempts, or their ledger rows already there.
    """
    report = SmsBatchReport()
    locked: list[str] = []
    ready: list[_Ready] = []
    results: list = []
    try:
        # Durable: the ledger rows must be committed, not merely saved in a caller's
        # transaction, before any text leaves.
        with transaction.atomic(durable=True):
            ready = _prepare(items, report, locked)
        credentials = sms_credentials_get()
        for prepared in ready:
            results.append(_call(prepared, credentials))
    finally:
        phone_send_unlock_many(phones=locked)
    for prepared, result in zip(ready, results, strict=False):
        _record(prepared, result, report)
    return report


def _call(prepared: _Ready, credentials):
    try:
        return provider_sms_send(sms=prepared.outbound, credentials=credentials)
    except Exception as exc:
        # A bug, not Twilio's answer: the request may have left, so the row stays `sending`
        # and goes the reconcile-or-review way, like after a crash.
        logger.exception("sms.send_crashed", extra={"message_id": prepared.message.pk})
        return Transient(
            "internal_error", detail=f"{type(exc).__name__}: {exc}", maybe_delivered=True
        )


def _hold(action: ScheduledAction, due_at: datetime.datetime, reason: str, report) -> None:
    scheduler.scheduled_action_reschedule(
        action_id=action.pk, attempt=action.attempt, due_at=due_at, reason=reason
    )
    report.rescheduled += 1


def _stop(
    action: ScheduledAction,
    enrollment: Enrollment,
    now: datetime.datetime,
    *,
    trigger: str,
    reason: str,
    report,
    state: str = Enrollment.State.STOPPED,
) -> None:
    engine.enrollment_stop(
        enrollment=enrollment, trigger=trigger, reason=reason, now=now, state=state
    )
    scheduler.scheduled_action_finish(action_id=action.pk, attempt=action.attempt)
    report.skipped += 1


def _prepare(items: list[list[int]], report: SmsBatchReport, locked: list[str]) -> list[_Ready]:
    held = scheduled_actions_held(items=items)
    report.skipped += len({action_id for action_id, _ in items}) - len(held)
    if not held:
        return []
    enrollments = engine.enrollments_locked(
        enrollment_ids=[action.enrollment_id for action in held.values()]
    )
    previous: dict[tuple[int, int], Message] = {}
    for message in Message.objects.filter(
        enrollment_id__in=list(enrollments),
        step_seq__in=sorted({action.step_seq for action in held.values()}),
    ).order_by("attempt"):
        previous[(message.enrollment_id, message.step_seq)] = message  # the last attempt wins
    phones = sorted({e.lead.phone for e in enrollments.values() if e.lead.phone})
    # The send locks are taken before suppressions are read (see phone_send_lock_many).
    lockable = phone_send_lock_many(phones=phones)
    locked.extend(lockable)
    by_tenant: dict[int, list[str]] = {}
    for enrollment in enrollments.values():
        by_tenant.setdefault(enrollment.tenant_id, []).append(enrollment.lead.phone)
    suppressed = {
        tenant_id: phone_suppression_check(tenant_id=tenant_id, phones=tenant_phones)
        for tenant_id, tenant_phones in by_tenant.items()
    }
    now = timezone.now()
    ready = []
    for action in sorted(held.values(), key=lambda a: a.pk):
        enrollment = enrollments.get(action.enrollment_id)
        prepared = _prepare_one(
            action,
            enrollment,
            previous.get((action.enrollment_id, action.step_seq)),
            lockable,
            suppressed.get(enrollment.tenant_id, set()) if enrollment else set(),
            now,
            report,
        )
        if prepared is not None:
            ready.append(prepared)
    return ready


def _prepare_one(
    action: ScheduledAction,
    enrollment: Enrollment | None,
    previous: Message | None,
    lockable: set[str],
    suppressed: set[str],
    now: datetime.datetime,
    report: SmsBatchReport,
) -> _Ready | None:
    if (
        enrollment is None
        or enrollment.step_seq != action.step_seq
        or enrollment.state not in (Enrollment.State.ACTIVE, Enrollment.State.PAUSED)
    ):
        scheduler.scheduled_action_finish(action_id=action.pk, attempt=action.attempt)
        report.skipped += 1
        return None
    wake = enrollment_wait_until(enrollment, now)
    if wake is not None:
        _hold(action, wake, "enrollment paused", report)
        return None
    attempt = 1
    if previous is not None:
        decided = _after_previous(previous, action, enrollment, now, report)
        if decided is None:
            return None
        attempt = decided

    recheck = now + datetime.timedelta(seconds=settings.SEND_PAUSED_RECHECK_SECONDS)
    tenant = enrollment.tenant
    campaign = enrollment.campaign
    identity = enrollment.sender_identity
    lead = enrollment.lead
    stop = controls.sending_stop_reason(tenant=tenant, channel=Message.Channel.SMS)
    if stop is not None:
        _hold(action, recheck, stop, report)
        return None
    # The flag from the batch's own tenant row (fresh, no query), read like every flag.
    if not tenant_flags_of(tenant=tenant).sms:
        _hold(action, recheck, SMS_DISABLED, report)
        return None
    if campaign.status != Campaign.Status.ACTIVE:
        if campaign.status == Campaign.Status.ARCHIVED:
            _stop(
                action,
                enrollment,
                now,
                trigger="campaign_archived",
                reason="campaign archived",
                report=report,
            )
            return None
        _hold(action, recheck, f"campaign {campaign.status}", report)
        return None
    if identity.paused:
        _hold(action, recheck, "sender identity paused", report)
        return None
    if not (identity.sms_from_number or identity.sms_messaging_service_sid):
        _stop(
            action,
            enrollment,
            now,
            trigger="send_failed",
            report=report,
            reason="the sender identity has no SMS number",
            state=Enrollment.State.FAILED,
        )
        return None
    context = timing.LeadTiming(
        timezone=lead.timezone or identity.timezone, country=lead.country, identity=identity
    )
    jitter_key = f"{enrollment.pk}:{action.step_seq}"
    if not timing.sms_window_open(context=context, at=now):
        due = timing.sms_send_time_next(context=context, earliest=now, jitter_key=jitter_key)
        _hold(action, due, "quiet hours for SMS (08:00-21:00 in the lead's time)", report)
        return None
    if not lead.phone:
        _stop(
            action,
            enrollment,
            now,
            trigger="no_phone",
            reason="lead has no phone number",
            report=report,
        )
        return None
    if lead.sms_consent != lead.SmsConsent.GRANTED:
        _stop(
            action,
            enrollment,
            now,
            trigger="no_sms_consent",
            reason="no SMS consent",
            report=report,
        )
        return None
    if lead.phone not in lockable:
        soon = now + datetime.timedelta(seconds=5)
        _hold(action, soon, "a suppression of the number is being written", report)
        return None
    if lead.phone in suppressed:
        _stop(
            action,
            enrollment,
            now,
            trigger="suppressed",
            reason="number opted out of SMS",
            report=report,
        )
        return None

    grant_id = f"sms:{enrollment.pk}:{action.step_seq}:{attempt}"
    grant = sms_capacity_acquire(tenant_id=tenant.pk, identity=identity, now=now, grant_id=grant_id)
    if not grant.granted:
        due = timing.sms_send_time_next(
            context=context, earliest=grant.retry_at or recheck, jitter_key=jitter_key
        )
        _hold(action, due, f"no capacity: {grant.reason}", report)
        return None
    message, outbound = _compose(enrollment, action, attempt)
    message.save(force_insert=True)  # committed with the batch, before any provider call
    return _Ready(action.pk, action.attempt, message, outbound, grant_id)


def _compose(
    enrollment: Enrollment, action: ScheduledAction, attempt: int
) -> tuple[Message, OutboundSms]:
    lead, identity = enrollment.lead, enrollment.sender_identity
    body = plans.plan_render_sms(
        plan=enrollment.plan_version.plan,
        step_name=action.step,
        lead={
            "first_name": lead.first_name,
            "last_name": lead.last_name,
            "email": lead.email,
            "company": lead.company,
            "title": lead.title,
            "phone": lead.phone,
            "custom_fields": lead.custom_fields or {},
        },
        sender={
            "from_name": identity.from_name,
            "from_email": identity.from_email,
            "signature": identity.signature,
        },
    )
    message = Message(
        tenant_id=enrollment.tenant_id,
        channel=Message.Channel.SMS,
        sender_identity=identity,
        enrollment=enrollment,
        lead=lead,
        campaign_id=enrollment.campaign_id,
        plan_version_id=enrollment.plan_version_id,
        step=action.step,
        step_seq=action.step_seq,
        attempt=attempt,
        status=Message.Status.SENDING,
        status_rank=MESSAGE_STATUS_RANK[Message.Status.SENDING],
        to_email="",
        to_phone=lead.phone,
        subject=body[:998],  # the text itself: what the timeline and the admin show
    )
    outbound = OutboundSms(
        message_public_id=message.public_id,
        to=lead.phone,
        body=body,
        status_callback=sms_status_callback_url(
            tenant_public_id=enrollment.tenant.public_id, message_public_id=message.public_id
        ),
        from_number=identity.sms_from_number,
        messaging_service_sid=identity.sms_messaging_service_sid,
    )
    return message, outbound


def _after_previous(
    previous: Message, action: ScheduledAction, enrollment: Enrollment, now, report
) -> int | None:
    """What a re-run of this step may do, from its ledger: the attempt to send with, or None
    (already sent, failed for good, or outcome unknown yet)."""
    if previous.status in SMS_SENT_STATES:
        engine.enrollment_after_send(
            enrollment=enrollment,
            step_seq=action.step_seq,
            sent_at=previous.sent_at or previous.created_at,
            message_id=previous.pk,
        )
        scheduler.scheduled_action_finish(action_id=action.pk, attempt=action.attempt)
        report.skipped += 1
        return None
    if previous.status == Message.Status.SENDING:
        grace = datetime.timedelta(seconds=settings.SEND_RECONCILE_GRACE_SECONDS)
        if now - previous.updated_at < grace:
            _hold(
                action,
                previous.updated_at + grace,
                "send outcome unknown; waiting for events",
                report,
            )
            return None
        previous.status = Message.Status.NEEDS_REVIEW
        previous.status_rank = MESSAGE_STATUS_RANK[Message.Status.NEEDS_REVIEW]
        previous.error_message = (
            previous.error_message
            or "no Twilio answer and no status callback within the grace period"
        )
        previous.save(update_fields=["status", "status_rank", "error_message", "updated_at"])
        enrollment.state = Enrollment.State.PAUSED
        enrollment.paused_until = None
        enrollment.stop_reason = "needs review: send outcome unknown"
        enrollment.last_error = f"message {previous.public_id} may or may not have been sent"
        enrollment.save(
            update_fields=["state", "paused_until", "stop_reason", "last_error", "updated_at"]
        )
        scheduler.scheduled_action_finish(action_id=action.pk, attempt=action.attempt)
        logger.warning(
            "message.needs_review",
            extra={"tenant_id": previous.tenant_id, "message_id": previous.pk},
        )
        report.skipped += 1
        return None
    if previous.status == Message.Status.FAILED and previous.error_code.startswith("transient"):
        if previous.attempt >= settings.SEND_MAX_TRANSIENT_RETRIES:
            _stop(
                action,
                enrollment,
                now,
                trigger="send_failed",
                report=report,
                reason=f"gave up after {previous.attempt} attempts: {previous.error_message}",
                state=Enrollment.State.FAILED,
            )
            return None
        return previous.attempt + 1
    scheduler.scheduled_action_finish(action_id=action.pk, attempt=action.attempt)
    report.skipped += 1
    return None


def _record(prepared: _Ready, result, report: SmsBatchReport) -> None:
    message = prepared.message
    now = timezone.now()
    sending = Message.objects.filter(pk=message.pk, status=Message.Status.SENDING)
    with transaction.atomic():
        if isinstance(result, Accepted):
            sending.update(
                status=Message.Status.ACCEPTED,
                status_rank=MESSAGE_STATUS_RANK[Message.Status.ACCEPTED],
                provider_message_id=result.provider_message_id,
                sent_at=now,
                updated_at=now,
            )
            enrollment = engine.enrollment_locked(enrollment_id=message.enrollment_id)
            if enrollment is not None:
                engine.enrollment_after_send(
                    enrollment=enrollment,
                    step_seq=message.step_seq,
                    sent_at=now,
                    message_id=message.pk,
                )
            scheduler.scheduled_action_finish(
                action_id=prepared.action_id, attempt=prepared.attempt
            )
            report.sent += 1
            return
        ratelimit.capacity_release_by_id(tenant_id=message.tenant_id, grant_id=prepared.grant_id)
        if isinstance(result, Transient) and result.maybe_delivered:
            sending.update(
                error_code=f"unknown:{result.reason}"[:64],
                error_message=result.detail[:2000],
                updated_at=now,
            )
            grace = datetime.timedelta(seconds=settings.SEND_RECONCILE_GRACE_SECONDS)
            scheduler.scheduled_action_reschedule(
                action_id=prepared.action_id,
                attempt=prepared.attempt,
                due_at=now + grace,
                reason=f"provider outcome unknown ({result.reason}); waiting for events",
            )
            report.rescheduled += 1
            return
        if isinstance(result, Transient):
            sending.update(
                status=Message.Status.FAILED,
                status_rank=MESSAGE_STATUS_RANK[Message.Status.FAILED],
                error_code=f"transient:{result.reason}"[:64],
                error_message=(result.detail or result.reason)[:2000],
                updated_at=now,
            )
            backoff = datetime.timedelta(seconds=30 * 2 ** (message.attempt - 1))
            scheduler.scheduled_action_reschedule(
                action_id=prepared.action_id,
                attempt=prepared.attempt,
                due_at=max(result.retry_after or now, now + backoff),
                reason=f"provider transient error: {result.reason}",
            )
            report.rescheduled += 1
            return
        assert isinstance(result, Permanent)
        reason = "; ".join(result.errors) or result.reason or f"HTTP {result.status_code}"
        code = twilio_error_code(result)
        sending.update(
            status=Message.Status.FAILED,
            status_rank=MESSAGE_STATUS_RANK[Message.Status.FAILED],
            error_code=f"permanent:{code or result.status_code or result.reason}"[:64],
            error_message=reason[:2000],
            updated_at=now,
        )
        if code == CODE_UNSUBSCRIBED:
            phone_suppression_add(
                tenant_id=message.tenant_id,
                phone=message.to_phone,
                reason=PhoneSuppression.Reason.CARRIER_OPT_OUT,
                note=f"Twilio 21610 on message {message.public_id}",
            )
        enrollment = engine.enrollment_locked(enrollment_id=message.enrollment_id)
        if enrollment is not None:
            if code == CODE_UNSUBSCRIBED:
                engine.enrollment_stop(
                    enrollment=enrollment,
                    trigger="suppressed",
                    now=now,
                    reason="number opted out of SMS (Twilio 21610)",
                    message_id=message.pk,
                )
            else:
                engine.enrollment_stop(
                    enrollment=enrollment,
                    trigger="send_failed",
                    reason=f"Twilio refused the message: {reason}",
                    now=now,
                    state=Enrollment.State.FAILED,
                    message_id=message.pk,
                )
        scheduler.scheduled_action_finish(action_id=prepared.action_id, attempt=prepared.attempt)
        report.failed += 1
