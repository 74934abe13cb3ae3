"""The send worker: due ``send`` actions in, emails out, exactly once.

For each claimed action, in order:

1. **Prepare** (one transaction for the batch, its enrollment rows locked, each action re-read
   with its attempt as a fencing token): skip what is stopped, hold what is paused, respect
   the window in the lead's time, check suppression *now*, take capacity, render, and commit
   the ledger row as ``sending``. A ledger row that already exists for this step entry is
   never sent again.
   The address's send lock is held from the suppression check until the provider answered:
   a suppression waits for it, so no mail leaves after a suppression of its address commits.
2. **Call the provider** outside any transaction (a batch's calls run on a few threads).
3. **Record** the typed outcome: accepted (a batch's rows together) → arm the step's timeouts;
   transient → retry later with a new attempt row, unless the provider may have taken it, in
   which case wait for webhook events carrying our id to say so, then mark for review;
   permanent → fail the step with SendGrid's reason, visible on the enrollment.
"""

import datetime
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from campaigns import plans
from campaigns.models import Campaign, Enrollment, ScheduledAction
from campaigns.selectors import campaign_status_locked
from campaigns.services import engine, scheduler, timing
from campaigns.services.actions import (
    enrollment_wait_until,
    scheduled_actions_finish,
    scheduled_actions_held,
)
from messaging.models import Message
from messaging.providers import (
    Accepted,
    OutboundEmail,
    Permanent,
    ProviderConfigError,
    ProviderCredentials,
    Transient,
    provider_credentials_get,
    provider_email_send,
)
from messaging.providers.payload import rfc_message_id_build
from messaging.selectors import sender_identity_paused_locked
from messaging.services import ratelimit
from messaging.services.events import MESSAGE_STATUS_RANK, server_cursor
from outreach.tenancy import controls
from outreach.tenancy.models import Tenant
from suppression.selectors import suppression_check
from suppression.services import (
    email_normalise,
    suppression_send_lock_many,
    suppression_send_unlock_many,
)
from suppression.unsubscribe import unsubscribe_url_build

logger = logging.getLogger(__name__)

# Message states that mean "the provider has it" (or had it): never send that step again.
SENT_STATES = {
    Message.Status.ACCEPTED,
    Message.Status.PROCESSED,
    Message.Status.DEFERRED,
    Message.Status.DELIVERED,
    Message.Status.OPENED,
    Message.Status.CLICKED,
    Message.Status.REPLIED,
    Message.Status.DROPPED,
    Message.Status.BOUNCED,
    Message.Status.COMPLAINED,
    Message.Status.UNSUBSCRIBED,
}


@dataclass
class _Ready:
    action_id: int
    attempt: int
    message: Message
    outbound: OutboundEmail
    capacity: ratelimit.CapacityGrant
    enrollment: Enrollment


@dataclass
class _Checked:
    """An action that passed every send-time check but capacity."""

    action: ScheduledAction
    enrollment: Enrollment
    context: timing.LeadTiming
    next_attempt: int
    capacity: ratelimit.CapacityRequest


@dataclass
class SendBatchReport:
    sent: int = 0
    skipped: int = 0
    rescheduled: int = 0
    failed: int = 0


def message_send_batch(*, items: list[list[int]]) -> SendBatchReport:
    """Send one batch of claimed ``send`` actions (``[[action_id, attempt], ...]``).

    Safe to run twice with the same items, concurrently or not: the second run finds the
    actions no longer held under those attempts, or the ledger rows already there.
    """
    report = SendBatchReport()
    ready: list[_Ready] = []
    results: list = []
    locked: list[str] = []  # addresses whose send lock this database session holds
    try:
        ready = _prepare_batch(items, report, locked)
        if ready:
            results = _provider_calls(ready)
    finally:
        # Released before recording: a suppression waiting for these sends may commit now.
        suppression_send_unlock_many(emails=locked)
    accepted = []
    for prepared, result in zip(ready, results, strict=True):
        if isinstance(result, Accepted):
            accepted.append((prepared, result))
        else:
            _record(prepared, result, report)
    if accepted:
        _record_accepted(accepted, report)
    return report


def _provider_calls(ready: list[_Ready]) -> list:
    # Look up each tenant's key once, here: worker threads must not each open a database
    # connection to decrypt it.
    credentials: dict[int, ProviderCredentials | None] = {}
    for prepared in ready:
        tenant_id = prepared.message.tenant_id
        if tenant_id not in credentials:
            try:
                credentials[tenant_id] = provider_credentials_get(tenant_id=tenant_id)
            except ProviderConfigError:
                credentials[tenant_id] = None  # provider_email_send reports it as Permanent

    def send(prepared: _Ready):
        tenant_id = prepared.message.tenant_id
        try:
            return provider_email_send(
                tenant_id=tenant_id, email=prepared.outbound, credentials=credentials[tenant_id]
            )
        except Exception as exc:
            # A bug, not a provider answer: we cannot tell whether the request left, so the
            # row stays `sending` and goes the reconcile-or-review way, like after a crash.
            logger.exception(
                "message.send_crashed",
                extra={"tenant_id": tenant_id, "message_id": prepared.message.pk},
            )
            return Transient(
                reason="internal_error", detail=f"{type(exc).__name__}: {exc}", maybe_delivered=True
            )

    if settings.SEND_THREADS <= 1 or len(ready) == 1:
        return [send(prepared) for prepared in ready]
    return list(_send_pool().map(send, ready))


_pool: tuple[int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def _send_pool() -> ThreadPoolExecutor:
    """The process's provider-call threads. They outlive a batch so that each keeps its
    connection to the provider open between batches (a forked worker makes its own)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (
                os.getpid(),
                ThreadPoolExecutor(max_workers=settings.SEND_THREADS, thread_name_prefix="send"),
            )
        return _pool[1]


def _hold(
    action_id: int, attempt: int, due_at: datetime.datetime, reason: str, report, priority=None
):
    scheduler.scheduled_action_reschedule(
        action_id=action_id, attempt=attempt, due_at=due_at, reason=reason, priority=priority
    )
    report.rescheduled += 1


def _prepare_batch(
    items: list[list[int]], report: SendBatchReport, locked: list[str]
) -> list[_Ready]:
    """Prepare a whole batch in one transaction: the actions and the enrollments locked with
    one query each (in id order, so batches sharing rows never deadlock), the previous ledger
    rows, the send locks and the suppressions with one query each, the new ledger rows
    inserted together. The decisions are those of one action at a time (``_prepare_one``).

    If anything raises, the transaction is rolled back and the batch is prepared again one
    action per transaction, as before batching, so one failing action costs the others what
    it cost them then. Capacity taken in the rolled-back try is not charged twice (grants are
    idempotent by id); the send locks it took are in ``locked`` and released with the rest.
    """
    attempt_report = SendBatchReport()
    try:
        with transaction.atomic():
            ready = _prepare_many(items, attempt_report, locked)
    except Exception:
        logger.warning("message.prepare_batch_failed", exc_info=True, extra={"actions": len(items)})
        ready = []
        for item in items:
            with transaction.atomic():
                ready.extend(_prepare_many([item], report, locked))
        return ready
    report.skipped += attempt_report.skipped
    report.rescheduled += attempt_report.rescheduled
    report.failed += attempt_report.failed
    return ready


def _prepare_many(
    items: list[list[int]], report: SendBatchReport, locked: list[str]
) -> list[_Ready]:
    held = scheduled_actions_held(items=items)
    wanted = dict.fromkeys(action_id for action_id, _ in items)
    report.skipped += len(wanted) - len(held)
    if not held:
        return []
    enrollments = engine.enrollments_locked(
        enrollment_ids=[action.enrollment_id for action in held.values()]
    )
    previous: dict[tuple[int, int], Message] = {}
    step_entries = {(action.enrollment_id, action.step_seq) for action in held.values()}
    earlier = Message.objects.filter(
        enrollment_id__in=list(enrollments),
        step_seq__in=sorted({step_seq for _, step_seq in step_entries}),
    ).order_by("attempt")
    for message in earlier:
        if (message.enrollment_id, message.step_seq) in step_entries:
            previous[(message.enrollment_id, message.step_seq)] = message  # the last attempt wins
    # The send locks are taken before suppressions are read (see suppression_send_lock).
    lockable = suppression_send_lock_many(
        emails=sorted({enrollment.lead.email for enrollment in enrollments.values()})
    )
    locked.extend(lockable)
    emails: dict[int, list[str]] = {}
    for enrollment in enrollments.values():
        emails.setdefault(enrollment.tenant_id, []).append(enrollment.lead.email)
    suppressed = {
        tenant_id: suppression_check(tenant_id=tenant_id, emails=tenant_emails)
        for tenant_id, tenant_emails in emails.items()
    }
    now = timezone.now()
    checked: list[_Checked] = []
    for action_id in wanted:
        action = held.get(action_id)
        if action is None:
            continue
        enrollment = enrollments.get(action.enrollment_id)
        passed = _prepare_one(
            action,
            enrollment,
            previous.get((action.enrollment_id, action.step_seq)),
            lockable,
            suppressed.get(enrollment.tenant_id, set()) if enrollment is not None else set(),
            now,
            report,
        )
        if passed is not None:
            checked.append(passed)
    grants = ratelimit.capacity_acquire_many(requests=[item.capacity for item in checked])
    threads = _threads_find(checked)
    ready = []
    for item, grant in zip(checked, grants, strict=True):
        prepared = _prepare_ready(item, grant, threads, now, report)
        if prepared is not None:
            ready.append(prepared)
    # The ledger rows commit with this transaction, before any provider call.
    _messages_insert([prepared.message for prepared in ready])
    return ready


_MESSAGE_FIELDS = (
    "tenant_id",
    "public_id",
    "channel",
    "sender_identity_id",
    "enrollment_id",
    "lead_id",
    "campaign_id",
    "plan_version_id",
    "step",
    "step_seq",
    "variant",
    "attempt",
    "status",
    "status_rank",
    "to_email",
    "subject",
    "rfc_message_id",
    "reply_token",
)
_MESSAGES_INSERT = """
    INSERT INTO messaging_message
        (tenant_id, public_id, channel, sender_identity_id, enrollment_id, lead_id,
         campaign_id, plan_version_id, step, step_seq, variant, attempt, status, status_rank,
         to_email, subject, rfc_message_id, reply_token, provider_message_id, smtp_id,
         error_code, error_message, created_at, updated_at)
    SELECT u.*, '', '', '', '', now(), now()
    FROM unnest(%s::bigint[], %s::uuid[], %s::text[], %s::bigint[], %s::bigint[],
                %s::bigint[], %s::bigint[], %s::bigint[], %s::text[], %s::int[], %s::text[],
                %s::int[], %s::text[], %s::int[], %s::text[], %s::text[], %s::text[],
                %s::text[])
        AS u(tenant_id, public_id, channel, sender_identity_id, enrollment_id, lead_id,
             campaign_id, plan_version_id, step, step_seq, variant, attempt, status,
             status_rank, to_email, subject, rfc_message_id, reply_token)
    ORDER BY u.enrollment_id
    RETURNING public_id, id
"""


def _messages_insert(messages: list[Message]) -> None:
    """The batch's new ledger rows in one statement (columns as arrays, bound server-side),
    each instance given its id. ``bulk_create`` cost more than the rest of the preparation."""
    if not messages:
        return
    with server_cursor() as cursor:
        cursor.execute(
            _MESSAGES_INSERT,
            [[getattr(message, name) for message in messages] for name in _MESSAGE_FIELDS],
        )
        ids = dict(cursor.fetchall())
    for message in messages:
        message.pk = ids[message.public_id]
        message._state.adding = False


def _prepare_one(
    action: ScheduledAction,
    enrollment: Enrollment | None,
    previous: Message | None,
    lockable: set[str],
    suppressed: set[str],
    now: datetime.datetime,
    report: SendBatchReport,
) -> _Checked | None:
    """The send-time checks of one held action, in order, up to capacity. Its enrollment is
    locked; ``previous`` is the step entry's latest ledger row, ``lockable`` the addresses
    whose send lock this session holds, ``suppressed`` the batch's suppressed addresses of its
    tenant."""
    action_id, attempt = action.pk, action.attempt
    if (
        enrollment is None
        or enrollment.step_seq != action.step_seq
        or enrollment.state not in (Enrollment.State.ACTIVE, Enrollment.State.PAUSED)
    ):
        scheduler.scheduled_action_finish(action_id=action_id, attempt=attempt)
        report.skipped += 1
        return None
    wake = enrollment_wait_until(enrollment, now)
    if wake is not None:
        _hold(action_id, attempt, wake, "enrollment paused", report)
        return None

    next_attempt = 1
    if previous is not None:
        decision = _after_previous(previous, action, enrollment, now, report)
        if decision is None:
            return None
        next_attempt = decision

    recheck = now + datetime.timedelta(seconds=settings.SEND_PAUSED_RECHECK_SECONDS)
    recheck_soon = now + datetime.timedelta(seconds=5)
    tenant: Tenant = enrollment.tenant
    campaign: Campaign = enrollment.campaign
    identity = enrollment.sender_identity
    # A paused tenant, or a kill switch (cached: no query per send). A hold is confirmed
    # under a share lock of the control's row, so a resume committed meanwhile is seen and
    # one committing now waits for this batch, then releases its holds (controls module).
    stop = controls.sending_stop_reason(tenant=tenant, channel=Message.Channel.EMAIL, lock=True)
    if stop is not None:
        _hold(action_id, attempt, _recheck(stop, recheck, recheck_soon), stop, report)
        return None
    if campaign.status not in (Campaign.Status.ACTIVE, Campaign.Status.ARCHIVED):
        status = _confirmed(
            campaign,
            lambda: campaign_status_locked(tenant_id=tenant.pk, campaign_id=campaign.pk),
        )
        campaign.status = status or campaign.status  # None: being changed, hold briefly
    if identity.paused:
        paused = _confirmed(
            identity,
            lambda: sender_identity_paused_locked(tenant_id=tenant.pk, identity_id=identity.pk),
        )
        identity.paused = paused is not False  # None: being changed, hold briefly
    if campaign.status != Campaign.Status.ACTIVE:
        if campaign.status == Campaign.Status.ARCHIVED:
            engine.enrollment_stop(
                enrollment=enrollment,
                trigger="campaign_archived",
                reason="campaign archived",
                now=now,
            )
            scheduler.scheduled_action_finish(action_id=action_id, attempt=attempt)
            report.skipped += 1
            return None
        reason = f"campaign {campaign.status}"
        _hold(action_id, attempt, _recheck(campaign, recheck, recheck_soon), reason, report)
        return None
    if identity.paused:
        due = _recheck(identity, recheck, recheck_soon)
        _hold(action_id, attempt, due, "sender identity paused", report)
        return None

    context = timing.LeadTiming(
        timezone=enrollment.lead.timezone or identity.timezone,
        country=enrollment.lead.country,
        identity=identity,
    )
    if not timing.send_window_open(context=context, at=now):
        due = timing.send_time_next(
            context=context, earliest=now, jitter_key=f"{enrollment.pk}:{action.step_seq}"
        )
        _hold(action_id, attempt, due, "outside the sending window", report)
        return None

    lead = enrollment.lead
    # Held until the provider call returned, so a suppression of this address commits
    # either before this check (and is seen) or after the mail went out.
    if lead.email not in lockable:
        _hold(
            action_id,
            attempt,
            recheck_soon,
            "a suppression of the address is being written",
            report,
        )
        return None
    if email_normalise(lead.email) in suppressed:
        engine.enrollment_stop(
            enrollment=enrollment, trigger="suppressed", reason="address is suppressed", now=now
        )
        scheduler.scheduled_action_finish(action_id=action_id, attempt=attempt)
        report.skipped += 1
        return None
    if lead.validation_status == lead.Validation.INVALID:
        engine.enrollment_stop(
            enrollment=enrollment,
            trigger="invalid_address",
            reason=f"address is invalid: {lead.validation_reason}".strip(": "),
            now=now,
        )
        scheduler.scheduled_action_finish(action_id=action_id, attempt=attempt)
        report.skipped += 1
        return None

    # Capacity is taken next, for the whole batch in one round trip (_prepare_many).
    return _Checked(
        action,
        enrollment,
        context,
        next_attempt,
        ratelimit.CapacityRequest(
            tenant_id=tenant.pk,
            identity=identity,
            now=now,
            follow_up=action.priority == engine.PRIORITY_FOLLOW_UP,
            tenant_daily_quota=tenant.daily_send_quota,
            grant_id=f"send:{enrollment.pk}:{action.step_seq}:{next_attempt}",
        ),
    )


_CONFIRMED = "_control_confirmed"


def _confirmed(row, read):
    """A campaign's status or an identity's ``paused`` as ``read()`` returns it under a
    share lock (see ``controls.sending_stop_reason``), once per batch: the batch's
    enrollments share the row's instance, which keeps the answer. None from ``read`` means
    the row is being changed right now (``_recheck`` then holds briefly)."""
    if _CONFIRMED not in row.__dict__:
        row.__dict__[_CONFIRMED] = read()
    return row.__dict__[_CONFIRMED]


def _recheck(held, recheck: datetime.datetime, soon: datetime.datetime) -> datetime.datetime:
    """When a send held by a control is looked at again: soon while the control is being
    changed (it may be a resume), else at the usual re-check (a resume releases it sooner)."""
    if isinstance(held, str):
        changing = held == controls.CONTROL_CHANGING
    else:
        changing = _CONFIRMED in held.__dict__ and held.__dict__[_CONFIRMED] is None
    return soon if changing else recheck


def _prepare_ready(
    checked: _Checked,
    grant: ratelimit.CapacityGrant,
    threads: dict[tuple[int, str], Message],
    now: datetime.datetime,
    report,
) -> _Ready | None:
    """The rest of an action's preparation once capacity answered: hold it, or compose."""
    action, enrollment = checked.action, checked.enrollment
    if not grant.granted:
        # Capacity comes back when its window ends (midnight for a full day), which may
        # be outside the sending window: wait for the first instant both allow.
        due = timing.send_time_next(
            context=checked.context,
            earliest=grant.retry_at,
            jitter_key=f"{enrollment.pk}:{action.step_seq}",
        )
        _hold(action.pk, action.attempt, due, f"no capacity: {grant.reason}", report)
        return None
    message, outbound = _compose(
        enrollment, action.step, action.step_seq, checked.next_attempt, threads, now
    )
    # Inserted by the caller, with the rest of the batch.
    return _Ready(action.pk, action.attempt, message, outbound, grant, enrollment)


def _after_previous(
    previous: Message, action, enrollment: Enrollment, now: datetime.datetime, report
) -> int | None:
    """Decide from the ledger what a re-run of this step may do. Returns the attempt number to
    send with, or None when nothing must be sent (already sent, failed, or unknown yet)."""
    action_id, attempt = action.pk, action.attempt
    if previous.status in SENT_STATES:
        # Sent before; a crash or a lost hint kept the action alive. Finish the step's
        # bookkeeping (idempotent) and never send again.
        engine.enrollment_after_send(
            enrollment=enrollment,
            step_seq=action.step_seq,
            sent_at=previous.sent_at or previous.created_at,
            message_id=previous.pk,
        )
        scheduler.scheduled_action_finish(action_id=action_id, attempt=attempt)
        report.skipped += 1
        return None
    if previous.status == Message.Status.SENDING:
        grace = datetime.timedelta(seconds=settings.SEND_RECONCILE_GRACE_SECONDS)
        if now - previous.updated_at < grace:
            # Outcome unknown (a crash, or a timeout after the request left): wait for the
            # webhook events that carry our id instead of resending blindly.
            _hold(
                action_id,
                attempt,
                previous.updated_at + grace,
                "send outcome unknown; waiting for events",
                report,
            )
            return None
        # Only while still `sending`: events may have proved it sent since it was read.
        marked = Message.objects.filter(
            pk=previous.pk, tenant_id=previous.tenant_id, status=Message.Status.SENDING
        ).update(
            status=Message.Status.NEEDS_REVIEW,
            status_rank=MESSAGE_STATUS_RANK[Message.Status.NEEDS_REVIEW],
            error_message=previous.error_message
            or "no provider answer and no webhook event within the grace period",
            updated_at=now,
        )
        if not marked:
            previous.refresh_from_db()
            return _after_previous(previous, action, enrollment, now, report)
        enrollment.state = Enrollment.State.PAUSED
        enrollment.paused_until = None
        enrollment.stop_reason = "needs review: send outcome unknown"
        enrollment.last_error = f"message {previous.public_id} may or may not have been sent"
        enrollment.save(
            update_fields=["state", "paused_until", "stop_reason", "last_error", "updated_at"]
        )
        scheduler.scheduled_action_finish(action_id=action_id, attempt=attempt)
        logger.warning(
            "message.needs_review",
            extra={"tenant_id": previous.tenant_id, "message_id": previous.pk},
        )
        report.skipped += 1
        return None
    if previous.status == Message.Status.FAILED and previous.error_code.startswith("transient"):
        if previous.attempt >= settings.SEND_MAX_TRANSIENT_RETRIES:
            engine.enrollment_stop(
                enrollment=enrollment,
                trigger="send_failed",
                reason=f"gave up after {previous.attempt} attempts: {previous.error_message}",
                now=now,
                state=Enrollment.State.FAILED,
                message_id=previous.pk,
            )
            scheduler.scheduled_action_finish(action_id=action_id, attempt=attempt)
            report.failed += 1
            return None
        return previous.attempt + 1
    # Failed permanently or under review: an operator decides, the engine does not retry.
    scheduler.scheduled_action_finish(action_id=action_id, attempt=attempt)
    report.skipped += 1
    return None


def _compose(
    enrollment: Enrollment,
    step_name: str,
    step_seq: int,
    attempt: int,
    threads: dict[tuple[int, str], Message],
    now: datetime.datetime,
) -> tuple[Message, OutboundEmail]:
    plan = enrollment.plan_version.plan
    step = engine.step_get(plan, step_name)
    lead = enrollment.lead
    identity = enrollment.sender_identity
    tenant = enrollment.tenant
    variant_name = plans.plan_pick_variant(step=step, key=f"{enrollment.pk}:{step_name}")
    message = Message(
        tenant_id=enrollment.tenant_id,
        channel=Message.Channel.EMAIL,
        sender_identity=identity,
        enrollment=enrollment,
        lead=lead,
        campaign_id=enrollment.campaign_id,
        plan_version_id=enrollment.plan_version_id,
        step=step_name,
        step_seq=step_seq,
        variant=variant_name,
        attempt=attempt,
        status=Message.Status.SENDING,
        to_email=lead.email,
    )
    unsubscribe_url = unsubscribe_url_build(
        tenant_id=enrollment.tenant_id, email=lead.email, message_public_id=str(message.public_id)
    )
    in_reply_to, references, thread_subject = _thread(enrollment, step, threads)
    rendered = plans.plan_render_step(
        plan=plan,
        step_name=step_name,
        variant_name=variant_name,
        lead=_lead_fields(lead),
        sender={
            "from_name": identity.from_name,
            "from_email": identity.from_email,
            "signature": identity.signature,
        },
        unsubscribe_url=unsubscribe_url,
        thread_subject=thread_subject or None,
    )
    subject = rendered.subject
    message.subject = subject[:998]
    message.rfc_message_id = rfc_message_id_build(
        message_public_id=message.public_id, from_email=identity.from_email
    )
    # Without the inbound phase, replies go straight to the sender's own reply-to.
    reply_domain = settings.INBOUND_REPLY_DOMAIN if tenant.inbound_enabled else ""
    reply_to = f"reply+{message.reply_token}@{reply_domain}" if reply_domain else identity.reply_to
    outbound = OutboundEmail(
        message_public_id=message.public_id,
        tenant_public_id=tenant.public_id,
        from_email=identity.from_email,
        from_name=identity.from_name,
        reply_to=reply_to or identity.from_email,
        to_email=lead.email,
        to_name=f"{lead.first_name} {lead.last_name}".strip(),
        subject=message.subject,
        text=rendered.text,
        html=rendered.html or "",
        categories=(f"campaign-{enrollment.campaign_id}", f"step-{step_name}"),
        message_id_header=message.rfc_message_id,
        in_reply_to=in_reply_to,
        references=references,
        unsubscribe_url=unsubscribe_url,
        open_tracking=tenant.open_tracking,
        click_tracking=tenant.click_tracking,
    )
    return message, outbound


def _lead_fields(lead) -> dict:
    return {
        "first_name": lead.first_name,
        "last_name": lead.last_name,
        "email": lead.email,
        "company": lead.company,
        "title": lead.title,
        "custom_fields": lead.custom_fields or {},
    }


def _threads_find(checked: list[_Checked]) -> dict[tuple[int, str], Message]:
    """The sent messages that the batch's follow-ups thread with, by (enrollment, step), in
    one query: the latest sent one of each step."""
    wanted: set[tuple[int, str]] = set()
    for item in checked:
        plan = item.enrollment.plan_version.plan
        earlier = engine.step_get(plan, item.action.step).get("thread_with")
        if earlier:
            wanted.add((item.enrollment.pk, earlier))
    if not wanted:
        return {}
    found: dict[tuple[int, str], Message] = {}
    originals = (
        Message.objects.filter(
            enrollment_id__in=sorted({enrollment_id for enrollment_id, _ in wanted}),
            step__in=sorted({step for _, step in wanted}),
            status__in=list(SENT_STATES),
        )
        .only("enrollment_id", "step", "step_seq", "attempt", "subject", "rfc_message_id")
        .order_by("step_seq", "attempt")
    )
    for message in originals:
        if (message.enrollment_id, message.step) in wanted:
            found[(message.enrollment_id, message.step)] = message  # the latest wins
    return found


def _thread(
    enrollment: Enrollment, step: dict, threads: dict[tuple[int, str], Message]
) -> tuple[str, list[str], str]:
    """For a follow-up that threads with an earlier step: In-Reply-To, References, subject."""
    earlier = step.get("thread_with")
    original = threads.get((enrollment.pk, earlier)) if earlier else None
    if original is None:
        return "", [], ""
    subject = original.subject
    if not subject.lower().startswith("re:"):
        subject = f"Re: {subject}"
    return original.rfc_message_id, [original.rfc_message_id], subject


def _record_accepted(accepted: list[tuple[_Ready, Accepted]], report: SendBatchReport) -> None:
    """Record a batch's accepted sends with a few set-based statements.

    The ledger rows turn ``accepted`` in a transaction of their own, first: if what follows
    fails, the actions stay held and a re-run finds the rows sent and only finishes the
    bookkeeping (never a second mail). Then, in one transaction, the actions are deleted and
    the enrollments locked (both in id order, actions before enrollments as in the prepare
    phase, so the phases of two batches never deadlock) and the enrollments move on
    (``engine.enrollments_after_send``). If anything raises, each send is recorded again on
    its own by ``_record``, as before.
    """
    now = timezone.now()
    try:
        with transaction.atomic():
            _messages_accepted(accepted, now)
        with transaction.atomic():
            scheduled_actions_finish(
                items=[[prepared.action_id, prepared.attempt] for prepared, _ in accepted]
            )
            enrollments = engine.enrollments_locked(
                enrollment_ids=[prepared.message.enrollment_id for prepared, _ in accepted],
                loaded=[prepared.enrollment for prepared, _ in accepted],
            )
            engine.enrollments_after_send(
                sent=[
                    engine.SentStep(
                        enrollments[prepared.message.enrollment_id],
                        prepared.message.step_seq,
                        prepared.message.pk,
                    )
                    for prepared, _ in accepted
                    if prepared.message.enrollment_id in enrollments
                ],
                sent_at=now,
            )
    except Exception:
        logger.warning(
            "message.record_batch_failed", exc_info=True, extra={"messages": len(accepted)}
        )
        for prepared, result in accepted:
            _record(prepared, result, report)
        return
    report.sent += len(accepted)


def _messages_accepted(accepted: list[tuple[_Ready, Accepted]], now: datetime.datetime) -> None:
    """``sending`` → ``accepted`` with SendGrid's message ids, rows locked in id order."""
    ids = [prepared.message.pk for prepared, _ in accepted]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE messaging_message AS m
            SET status = %s, status_rank = %s, provider_message_id = u.provider_message_id,
                sent_at = %s, updated_at = %s
            FROM unnest(%s::bigint[], %s::text[]) AS u(id, provider_message_id)
            WHERE m.id = u.id AND m.id = ANY(ARRAY(
                SELECT id FROM messaging_message
                WHERE id = ANY(%s::bigint[]) AND status = %s
                ORDER BY id
                FOR UPDATE
            ))
            """,
            [
                Message.Status.ACCEPTED,
                MESSAGE_STATUS_RANK[Message.Status.ACCEPTED],
                now,
                now,
                ids,
                [result.provider_message_id for _, result in accepted],
                ids,
                Message.Status.SENDING,
            ],
        )


def _record(prepared: _Ready, result, report: SendBatchReport) -> None:
    message = prepared.message
    now = timezone.now()
    with transaction.atomic():
        if isinstance(result, Accepted):
            Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
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

        ratelimit.capacity_release(grant=prepared.capacity)
        if isinstance(result, Transient) and result.maybe_delivered:
            Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
                error_code=f"unknown:{result.reason}",
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
            Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
                status=Message.Status.FAILED,
                error_code=f"transient:{result.reason}"[:64],
                error_message=(result.detail or result.reason)[:2000],
                updated_at=now,
            )
            backoff = datetime.timedelta(
                seconds=settings.SEND_RETRY_BACKOFF_SECONDS * 2 ** (message.attempt - 1)
            )
            due = max(result.retry_after or now, now + backoff)
            scheduler.scheduled_action_reschedule(
                action_id=prepared.action_id,
                attempt=prepared.attempt,
                due_at=due,
                reason=f"provider transient error: {result.reason}",
            )
            report.rescheduled += 1
            return
        assert isinstance(result, Permanent)
        reason = "; ".join(result.errors) or result.reason or f"HTTP {result.status_code}"
        Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
            status=Message.Status.FAILED,
            error_code=f"permanent:{result.status_code or result.reason}"[:64],
            error_message=reason[:2000],
            updated_at=now,
        )
        enrollment = engine.enrollment_locked(enrollment_id=message.enrollment_id)
        if enrollment is not None:
            engine.enrollment_stop(
                enrollment=enrollment,
                trigger="send_failed",
                reason=f"SendGrid refused the message: {reason}",
                now=now,
                state=Enrollment.State.FAILED,
                message_id=message.pk,
            )
        scheduler.scheduled_action_finish(action_id=prepared.action_id, attempt=prepared.attempt)
        report.failed += 1
