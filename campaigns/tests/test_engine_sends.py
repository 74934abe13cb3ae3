"""Proof that the send path sends each step once, to allowed addresses, within caps and windows.

What a user would notice is counted where it lands: the mails the SendGrid emulator accepted
per recipient, the send ledger (``Message`` rows), enrollment states and the actions left.
Concurrency and crash tests use real processes (sweepers, Celery workers, a SIGKILL).
"""

import datetime
import json
import subprocess
import sys
import threading
import uuid
from zoneinfo import ZoneInfo

import pytest
from django.db import connection, transaction
from django.utils import timezone

from campaigns import tasks
from campaigns.models import Enrollment, EnrollmentTransition, ScheduledAction
from campaigns.services import engine, scheduler
from campaigns.services.campaigns import campaign_status_set
from campaigns.tests.engine_support import (
    PLAN_ONE_EMAIL,
    WORKER_ENV,
    actions_make_due,
    beat_until,
    campaign_enrolled,
    emulator_events_for,
    enrollment_states,
    events_store,
    identity_all_day,
    lead_emails,
    leases_expire,
    pending_actions,
    received_per_recipient,
    sweep_inline,
    wait_until,
    worker_idle,
    zone_at_local_hour,
)
from messaging.models import Message, SenderIdentity, WebhookReceipt
from messaging.services import ratelimit
from messaging.services.tenant_secrets import tenant_sendgrid_key_set
from outreach.testing import processes
from outreach.testing.factories import SenderIdentityFactory
from suppression.models import Suppression
from suppression.services import suppression_add


def _messages(enrollments) -> list[Message]:
    return list(Message.objects.filter(enrollment__in=[e.pk for e in enrollments]).order_by("id"))


def _python(code: str, *args: str, **env: str) -> subprocess.Popen:
    """A Django process on the test database, printing ``ready`` once set up."""
    prelude = "import django\ndjango.setup()\nprint('ready', flush=True)\n"
    return subprocess.Popen(
        [sys.executable, "-c", prelude + code, *args],
        cwd=processes.ROOT,
        env=processes.test_process_env(LOG_LEVEL="WARNING", **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _start_together(procs: list[subprocess.Popen], go_file) -> None:
    """Wait until every process is set up, then let them all go at once."""
    for proc in procs:
        line = proc.stdout.readline()
        assert line.strip() == "ready", (line, proc.stderr.read() if proc.poll() else "")
    go_file.write_text("go")


def _finish(procs: list[subprocess.Popen], timeout: float = 60) -> list[str]:
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, err
        outputs.append(out)
    return outputs


# --- 1. no message is sent twice ---------------------------------------------------------

_SWEEPER = """
import os, sys, time
from campaigns import tasks
from campaigns.services import scheduler
go = sys.argv[1]
while not os.path.exists(go):
    time.sleep(0.005)
claimed, idle = 0, 0
while idle < 3:
    # Small claims so the two sweepers interleave on the same rows (SKIP LOCKED).
    count = scheduler.scheduled_actions_sweep(
        dispatch=tasks._dispatch, batch_size=5, claim_limit=5, time_budget_seconds=0.2
    )
    claimed += count
    idle = 0 if count else idle + 1
print(claimed, flush=True)
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_sweepers_and_a_worker_send_each_due_enrollment_exactly_once(
    tenant, engine_settings, engine_worker, tmp_path
):
    emulator = engine_settings
    emails = lead_emails("sweep", 60)
    _, enrollments = campaign_enrolled(tenant, plan=PLAN_ONE_EMAIL, emails=emails)
    assert actions_make_due() == 60

    go = tmp_path / "go"
    sweepers = [_python(_SWEEPER, str(go)) for _ in range(2)]
    _start_together(sweepers, go)
    claimed = [int(out) for out in _finish(sweepers)]

    assert sum(claimed) == 60  # each due action claimed by exactly one sweeper
    wait_until(
        lambda: enrollment_states(enrollments) == {"completed": 60},
        timeout=60,
        what="every enrollment to complete",
    )
    assert received_per_recipient(emulator) == {email: 1 for email in emails}
    messages = _messages(enrollments)
    assert len(messages) == 60
    assert {(m.status, m.attempt) for m in messages} == {("accepted", 1)}
    assert not ScheduledAction.objects.exists()


def _claim_all() -> list[list[int]]:
    return [[a.id, a.attempt] for a in scheduler.scheduled_actions_claim(limit=1000)]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_send_batch_message_delivered_twice_to_a_worker_sends_each_recipient_once(
    tenant, engine_settings, engine_worker
):
    from outreach.celery import app

    emulator = engine_settings
    emails = lead_emails("twice", 20)
    _, enrollments = campaign_enrolled(tenant, plan=PLAN_ONE_EMAIL, emails=emails)
    actions_make_due()
    items = _claim_all()
    assert len(items) == 20

    # The same Celery message (same task id) twice, as a redelivery would bring it; the
    # worker has two processes, so both copies may run at once.
    task_id = str(uuid.uuid4())
    for _ in range(2):
        app.send_task("messaging.message_send_batch", args=[items], task_id=task_id)
    wait_until(
        lambda: engine_worker.log().count(f"[{task_id}] succeeded") == 2,
        timeout=60,
        what="both copies of the batch to finish",
    )

    assert received_per_recipient(emulator) == {email: 1 for email in emails}
    assert enrollment_states(enrollments) == {"completed": 20}
    assert len(_messages(enrollments)) == 20
    # Whatever the second copy left behind (an action parked until the ledger decides) sends
    # nothing when it comes due.
    actions_make_due()
    sweep_inline()
    assert received_per_recipient(emulator) == {email: 1 for email in emails}
    assert not ScheduledAction.objects.exists()


_SEND_BATCH = """
import json, os, sys, time
from messaging.services import sending
items, go = json.loads(sys.argv[1]), sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.002)
report = sending.message_send_batch(items=items)
print(json.dumps(report.__dict__), flush=True)
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_same_send_batch_run_by_two_processes_at_once_sends_each_recipient_once(
    tenant, engine_settings, tmp_path
):
    emulator = engine_settings
    emails = lead_emails("race", 20)
    _, enrollments = campaign_enrolled(tenant, plan=PLAN_ONE_EMAIL, emails=emails)
    actions_make_due()
    items = _claim_all()

    go = tmp_path / "go"
    procs = [
        _python(_SEND_BATCH, json.dumps(items), str(go), SENDGRID_API_HOST=emulator.host)
        for _ in range(2)
    ]
    _start_together(procs, go)
    reports = [json.loads(out) for out in _finish(procs)]

    assert sum(report["sent"] for report in reports) == 20
    assert received_per_recipient(emulator) == {email: 1 for email in emails}
    assert enrollment_states(enrollments) == {"completed": 20}
    assert len(_messages(enrollments)) == 20
    actions_make_due()
    sweep_inline()
    assert received_per_recipient(emulator) == {email: 1 for email in emails}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("leads", "threads"),
    [(24, 4), (200, 64)],
    ids=["24 sends on 4 connections", "200 sends on 64 kept-alive connections"],
)
def test_a_worker_killed_mid_batch_never_causes_a_second_mail(
    tenant, engine_settings, engine_worker, live_server, tmp_path, events_cleanup, leads, threads
):
    from outreach.celery import app

    emulator = engine_settings
    tenant.webhook_public_key = emulator.public_key
    tenant.save(update_fields=["webhook_public_key"])
    emulator.register_tenant(
        str(tenant.public_id),
        events_url=f"{live_server.url}/webhooks/sendgrid/events/{tenant.public_id}/",
    )
    emails = lead_emails("crash", leads)
    _, enrollments = campaign_enrolled(tenant, plan=PLAN_ONE_EMAIL, emails=emails)
    actions_make_due()
    items = _claim_all()
    assert len(items) == leads

    # A batch takes seconds (`threads` provider calls at a time on kept-alive connections,
    # 1.5 s each); the worker dies after the first calls reached SendGrid and before their
    # answers were recorded.
    emulator.configure(latency_ms=1500)
    doomed = processes.CeleryWorkerProcess(
        log_dir=tmp_path,
        SENDGRID_API_HOST=emulator.host,
        SEND_THREADS=str(threads),
        **WORKER_ENV,
    ).start()
    app.send_task("messaging.message_send_batch", args=[items], queue=doomed.queues["sending"])
    wait_until(lambda: len(emulator.messages()) >= threads, timeout=60, what="the first mails")
    doomed.kill()
    emulator.configure(latency_ms=0)

    received = received_per_recipient(emulator)
    assert threads <= len(received) < leads
    assert set(received.values()) == {1}
    # The worker recorded no outcome before it died: every row is still `sending`, unless
    # SendGrid's events for it already came in.
    for message in _messages(enrollments):
        assert message.status in ("sending", "processed", "delivered")
        assert message.status == "sending" or message.to_email in received

    # SendGrid's events carry our id: they reconcile the rows whose mail went out.
    emulator.wait_idle(timeout=30)
    wait_until(
        lambda: Message.objects.exclude(status="sending").count() == len(received),
        timeout=30,
        what="webhook events to reconcile the mails that went out",
    )
    assert not WebhookReceipt.objects.filter(processed_at__isnull=True).exists()

    # The leases run out; the sweep hands the actions to a fresh worker.
    assert leases_expire() == leads
    beat_until(
        lambda: not ScheduledAction.objects.filter(kind="send").exists(),
        what="the fresh worker to settle every action",
    )

    assert received_per_recipient(emulator) == received  # nothing was sent again
    for message in _messages(enrollments):
        enrollment = Enrollment.objects.get(pk=message.enrollment_id)
        if message.to_email in received:
            assert message.status in ("processed", "delivered")
            assert message.provider_message_id and message.sent_at
            assert enrollment.state == "completed"
        else:
            # Never reached SendGrid, but nobody can know that: an operator decides.
            assert message.status == "needs_review"
            assert enrollment.state == "paused"
            assert enrollment.stop_reason == "needs review: send outcome unknown"
    assert Message.objects.count() == leads


@pytest.mark.django_db
def test_a_send_with_no_answer_is_held_reconciled_by_events_or_marked_for_review(
    tenant, engine_settings, settings, webhook_sink
):
    from messaging.services.events import message_events_store

    emulator = engine_settings
    emulator.register_tenant(str(tenant.public_id), events_url=webhook_sink.url + "/events")
    settings.SENDGRID_TIMEOUT_SECONDS = 0.3
    emulator.configure(latency_ms=1000)  # SendGrid takes the mail but answers too late
    _, (reconciled, unknown) = campaign_enrolled(
        tenant, plan=PLAN_ONE_EMAIL, emails=lead_emails("unknown", 2)
    )
    actions_make_due()
    sweep_inline()
    emulator.configure(latency_ms=0)

    assert len(emulator.messages()) == 2
    for enrollment in (reconciled, unknown):
        (message,) = _messages([enrollment])
        assert (message.status, message.error_code) == ("sending", "unknown:timeout")
        (action,) = pending_actions(enrollment)
        assert "waiting for events" in action.last_error

    # Due again within the grace period: held, not sent a second time.
    actions_make_due()
    sweep_inline()
    assert len(emulator.messages()) == 2
    assert "waiting for events" in pending_actions(reconciled)[0].last_error

    # SendGrid's events for the first mail reach us and reconcile it.
    (reconciled_message,) = _messages([reconciled])

    def events_of_first_mail():
        events = [
            event
            for request in webhook_sink.matching("/events")
            for event in json.loads(request.body)
            if event.get("outreach_message_id") == str(reconciled_message.public_id)
        ]
        return events if len(events) == 2 else None

    events = wait_until(events_of_first_mail, timeout=10, what="SendGrid's events")
    assert {e["event"] for e in events} == {"processed", "delivered"}
    message_events_store(
        tenant_id=tenant.pk, raw_events=events, received_at=timezone.now(), shadow_mode=False
    )
    # Past the grace period: the reconciled step finishes, the unknown one goes to review.
    settings.SEND_RECONCILE_GRACE_SECONDS = 0
    actions_make_due()
    sweep_inline()

    assert len(emulator.messages()) == 2
    reconciled.refresh_from_db()
    unknown.refresh_from_db()
    assert (reconciled.state, reconciled.outcome) == ("completed", "sent")
    assert _messages([reconciled])[0].status == "delivered"
    assert unknown.state == "paused"
    assert unknown.stop_reason == "needs review: send outcome unknown"
    assert _messages([unknown])[0].status == "needs_review"
    assert not ScheduledAction.objects.filter(enrollment__in=[reconciled, unknown]).exists()


@pytest.mark.django_db
def test_events_arriving_after_the_grace_period_settle_a_needs_review_send(
    tenant, engine_settings, settings, webhook_sink
):
    """Found by the chaos suite (PostgreSQL down past the grace period): the late events moved
    the message on, out of the review list, and left its enrollment paused for good."""
    from outreach.tenancy.models import AuditEntry

    emulator = engine_settings
    emulator.register_tenant(str(tenant.public_id), events_url=webhook_sink.url + "/events")
    settings.SENDGRID_TIMEOUT_SECONDS = 0.3
    emulator.configure(latency_ms=1000)  # SendGrid takes the mail but answers too late
    _, (enrollment,) = campaign_enrolled(
        tenant, plan=PLAN_ONE_EMAIL, emails=lead_emails("late-events", 1)
    )
    actions_make_due()
    sweep_inline()
    emulator.configure(latency_ms=0)
    settings.SEND_RECONCILE_GRACE_SECONDS = 0
    actions_make_due()
    sweep_inline()
    (message,) = _messages([enrollment])
    enrollment.refresh_from_db()
    assert message.status == "needs_review"
    assert (enrollment.state, enrollment.stop_reason) == (
        "paused",
        "needs review: send outcome unknown",
    )

    events = emulator_events_for(webhook_sink, message, {"processed", "delivered"})
    events_store(tenant, events)

    message.refresh_from_db()
    enrollment.refresh_from_db()
    assert message.status == "delivered"
    assert (enrollment.state, enrollment.outcome) == ("completed", "sent")
    assert AuditEntry.objects.filter(
        action="message.review_sent", actor="system:webhook-events", target_id=message.pk
    ).exists()
    events_store(tenant, events)  # re-delivered: nothing more happens
    assert len(emulator.messages()) == 1
    assert EnrollmentTransition.objects.filter(enrollment=enrollment).count() == 1


# --- 2. suppression is checked at send time ------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("scope", ["tenant", "global"])
def test_an_address_suppressed_after_enrollment_receives_nothing(tenant, engine_settings, scope):
    emulator = engine_settings
    emails = lead_emails(f"supp-{scope}", 3)
    _, enrollments = campaign_enrolled(tenant, plan=PLAN_ONE_EMAIL, emails=emails)
    suppression_add(
        tenant_id=tenant.pk if scope == "tenant" else None,
        email=emails[1].upper(),
        reason=Suppression.Reason.UNSUBSCRIBE,
        source=Suppression.Source.API,
    )
    actions_make_due()
    sweep_inline()

    assert received_per_recipient(emulator) == {emails[0]: 1, emails[2]: 1}
    stopped = Enrollment.objects.get(pk=enrollments[1].pk)
    assert (stopped.state, stopped.stop_reason) == ("stopped", "address is suppressed")
    assert not _messages([stopped])
    assert EnrollmentTransition.objects.get(enrollment=stopped).trigger == "suppressed"
    assert not ScheduledAction.objects.filter(enrollment=stopped).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("paused", ["campaign", "identity"])
def test_a_send_due_while_paused_waits_and_goes_out_once_resumed(tenant, engine_settings, paused):
    emulator = engine_settings
    campaign, (enrollment,) = campaign_enrolled(
        tenant, plan=PLAN_ONE_EMAIL, emails=["patient@prospect.example.com"]
    )
    if paused == "campaign":
        campaign_status_set(tenant_id=tenant.pk, campaign_id=campaign.pk, action="pause")
    else:
        SenderIdentity.objects.filter(pk=campaign.sender_identity_id).update(paused=True)
    actions_make_due()
    sweep_inline()

    assert emulator.messages() == []
    (action,) = pending_actions(enrollment)
    assert (
        action.last_error == f"{'campaign' if paused == 'campaign' else 'sender identity'} paused"
    )
    if paused == "campaign":
        campaign_status_set(tenant_id=tenant.pk, campaign_id=campaign.pk, action="resume")
    else:
        SenderIdentity.objects.filter(pk=campaign.sender_identity_id).update(paused=False)
    actions_make_due()
    sweep_inline()
    assert received_per_recipient(emulator) == {"patient@prospect.example.com": 1}


# --- 3. caps and windows ---------------------------------------------------------------------


def _window_identity(tenant, *, zone: str, **fields):
    return SenderIdentityFactory(
        tenant=tenant,
        timezone=zone,
        window_days=[0, 1, 2, 3, 4, 5, 6],
        window_start=datetime.time(9, 0),
        window_end=datetime.time(17, 0),
        **fields,
    )


@pytest.mark.django_db
def test_a_daily_cap_of_three_sends_three_and_moves_the_rest_to_the_next_window(
    tenant, engine_settings
):
    emulator = engine_settings
    zone = zone_at_local_hour(12)  # the identity's window (9-17) is open now
    identity = _window_identity(tenant, zone=zone, daily_cap=3, hourly_cap=3)
    emails = lead_emails("cap", 5)
    _, enrollments = campaign_enrolled(
        tenant, plan=PLAN_ONE_EMAIL, emails=emails, identity=identity
    )
    actions_make_due()
    sweep_inline()

    assert len(received_per_recipient(emulator)) == 3
    held = ScheduledAction.objects.filter(enrollment__in=enrollments, status="pending")
    assert held.count() == 2
    local_tomorrow = timezone.now().astimezone(ZoneInfo(zone)).date() + datetime.timedelta(1)
    next_window = datetime.datetime.combine(
        local_tomorrow, datetime.time(9, 0), tzinfo=ZoneInfo(zone)
    )
    for action in held:
        assert action.due_at == next_window
        assert action.last_error.startswith("no capacity: ")
        assert "identity_day" in action.last_error

    # Due again today: the cap still holds, whoever claims them.
    actions_make_due()
    sweep_inline()
    assert len(received_per_recipient(emulator)) == 3
    usage = ratelimit.capacity_usage_get(tenant_id=tenant.pk, identity=identity, now=timezone.now())
    assert usage.sent_today == 3


@pytest.mark.django_db
def test_a_lead_outside_the_window_in_its_own_zone_gets_nothing_until_its_window_opens(
    tenant, engine_settings
):
    emulator = engine_settings
    identity = _window_identity(tenant, zone=zone_at_local_hour(12))  # open for the sender
    lead_zone = zone_at_local_hour(3)  # 3 a.m. for the lead
    _, (enrollment,) = campaign_enrolled(
        tenant,
        plan=PLAN_ONE_EMAIL,
        emails=["night-owl@prospect.example.com"],
        identity=identity,
        timezone=lead_zone,
    )
    local_now = timezone.now().astimezone(ZoneInfo(lead_zone))
    opening = datetime.datetime.combine(
        local_now.date(), datetime.time(9, 0), tzinfo=ZoneInfo(lead_zone)
    )
    (action,) = pending_actions(enrollment)
    assert action.due_at == opening  # scheduled for the lead's morning at enrollment

    # Claimed early anyway (a clock step, a moved lead): the send path checks again.
    actions_make_due()
    sweep_inline()

    assert emulator.messages() == []
    assert not _messages([enrollment])
    (action,) = pending_actions(enrollment)
    assert action.due_at == opening
    assert action.last_error == "outside the sending window"


@pytest.mark.django_db
def test_waits_and_windows_follow_new_york_across_the_spring_forward_change(tenant, settings):
    """2027-03-14 02:00 EST → 03:00 EDT. Monday the 15th, New York is UTC-4, not UTC-5."""
    settings.SEND_JITTER_SECONDS = 0
    identity = SenderIdentityFactory(tenant=tenant, timezone="UTC")  # Mon-Fri, 9-17
    plan = {
        "start": "pause",
        "steps": {
            "pause": {"type": "wait", "duration": "3d", "next": "intro"},
            **{k: v for k, v in PLAN_ONE_EMAIL["steps"].items()},
        },
    }
    _, (enrollment,) = campaign_enrolled(
        tenant,
        plan=plan,
        emails=["ny@prospect.example.com"],
        identity=identity,
        timezone="America/New_York",
        country="US",
    )
    utc = datetime.UTC
    locked = engine.enrollment_locked(enrollment_id=enrollment.pk)
    scheduler.scheduled_actions_cancel(enrollment_id=enrollment.pk)

    # A 3-day wait from Friday 10:00 EST ends Monday 10:00 EDT: 71 hours, not 72.
    friday = datetime.datetime(2027, 3, 12, 15, 0, tzinfo=utc)
    engine.enrollment_enter_step(enrollment=locked, step_name="pause", step_seq=2, now=friday)
    (advance,) = pending_actions(enrollment, kind="advance")
    assert advance.due_at == datetime.datetime(2027, 3, 15, 14, 0, tzinfo=utc)

    # The email step entered before the window opens (08:30 EDT Monday) goes out at 09:00
    # EDT, which is 13:00 UTC (a fixed UTC-5 would say 14:00).
    monday_early = datetime.datetime(2027, 3, 15, 12, 30, tzinfo=utc)
    engine.enrollment_enter_step(enrollment=locked, step_name="intro", step_seq=3, now=monday_early)
    (send,) = pending_actions(enrollment, kind="send")
    assert send.due_at == datetime.datetime(2027, 3, 15, 13, 0, tzinfo=utc)

    # Entered on the Sunday of the change (a weekend), it waits for Monday's window too.
    sunday = datetime.datetime(2027, 3, 14, 7, 30, tzinfo=utc)  # 03:30 EDT, just after it
    engine.enrollment_enter_step(enrollment=locked, step_name="intro", step_seq=4, now=sunday)
    send = pending_actions(enrollment, kind="send")[-1]
    assert send.due_at == datetime.datetime(2027, 3, 15, 13, 0, tzinfo=utc)


# --- 4. provider errors ------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fault", "reason"), [("fault_500_share", "server_error"), ("fault_429_share", "rate_limited")]
)
def test_transient_provider_errors_retry_later_with_a_new_attempt_then_succeed_once(
    tenant, engine_settings, fault, reason
):
    emulator = engine_settings
    _, (enrollment,) = campaign_enrolled(
        tenant, plan=PLAN_ONE_EMAIL, emails=["flaky@prospect.example.com"]
    )
    emulator.configure(**{fault: 1.0})
    for attempt in (1, 2):
        before = timezone.now()
        actions_make_due()
        sweep_inline()
        (action,) = pending_actions(enrollment)
        assert action.last_error == f"provider transient error: {reason}"
        # Backoff doubles (30 s, 60 s), never sooner than SendGrid asked.
        assert action.due_at >= before + datetime.timedelta(seconds=30 * 2 ** (attempt - 1))
        latest = _messages([enrollment])[-1]
        assert (latest.attempt, latest.status) == (attempt, "failed")
        assert latest.error_code == f"transient:{reason}"
    assert emulator.messages() == []

    emulator.configure(**{fault: 0.0})
    actions_make_due()
    sweep_inline()

    assert received_per_recipient(emulator) == {"flaky@prospect.example.com": 1}
    assert [(m.attempt, m.status) for m in _messages([enrollment])] == [
        (1, "failed"),
        (2, "failed"),
        (3, "accepted"),
    ]
    enrollment.refresh_from_db()
    assert enrollment.state == "completed"


@pytest.mark.django_db
def test_transient_errors_are_retried_a_bounded_number_of_times(tenant, engine_settings, settings):
    emulator = engine_settings
    settings.SEND_MAX_TRANSIENT_RETRIES = 3
    _, (enrollment,) = campaign_enrolled(
        tenant, plan=PLAN_ONE_EMAIL, emails=["down@prospect.example.com"]
    )
    emulator.configure(fault_500_share=1.0)
    for _ in range(6):
        actions_make_due()
        sweep_inline()

    assert [m.attempt for m in _messages([enrollment])] == [1, 2, 3]
    enrollment.refresh_from_db()
    assert enrollment.state == "failed"
    assert enrollment.last_error.startswith("gave up after 3 attempts: ")
    assert "internal server error" in enrollment.last_error
    assert not ScheduledAction.objects.filter(enrollment=enrollment).exists()


@pytest.mark.django_db
def test_a_payload_sendgrid_refuses_fails_the_enrollment_with_its_reason(tenant, engine_settings):
    emulator = engine_settings
    identity = identity_all_day(tenant)
    _, (enrollment,) = campaign_enrolled(
        tenant, plan=PLAN_ONE_EMAIL, emails=["ann@@prospect.example.com"], identity=identity
    )
    actions_make_due()
    sweep_inline()

    assert emulator.messages() == []
    enrollment.refresh_from_db()
    assert enrollment.state == "failed"
    assert enrollment.last_error == (
        "SendGrid refused the message: Does not contain a valid address."
    )
    (message,) = _messages([enrollment])
    assert (message.status, message.error_code) == ("failed", "permanent:400")
    assert not ScheduledAction.objects.filter(enrollment=enrollment).exists()
    # A refused mail does not use up the sender's daily capacity.
    usage = ratelimit.capacity_usage_get(tenant_id=tenant.pk, identity=identity, now=timezone.now())
    assert usage.sent_today == 0


@pytest.mark.django_db
def test_a_wrong_tenant_api_key_fails_the_enrollment_with_sendgrids_401_reason(
    tenant, settings, sendgrid_emulator_factory
):
    emulator = sendgrid_emulator_factory(api_keys="SG.the-right-key")
    settings.SENDGRID_API_HOST = emulator.host
    tenant_sendgrid_key_set(tenant_id=tenant.pk, api_key="SG.a-revoked-key")
    _, (enrollment,) = campaign_enrolled(
        tenant, plan=PLAN_ONE_EMAIL, emails=["kim@prospect.example.com"]
    )
    actions_make_due()
    sweep_inline()

    assert emulator.messages() == []
    enrollment.refresh_from_db()
    assert enrollment.state == "failed"
    assert enrollment.last_error == (
        "SendGrid refused the message: "
        "The provided authorization grant is invalid, expired, or revoked"
    )
    assert _messages([enrollment])[0].error_code == "permanent:401"


# --- 7. suppression racing a scheduled send -------------------------------------------------

_SUPPRESSOR = """
import json, os, random, sys, time
from django.db import transaction
from suppression.services import suppression_add
emails, go = json.loads(sys.argv[1]), sys.argv[2]
random.seed(7)
random.shuffle(emails)
while not os.path.exists(go):
    time.sleep(0.002)
committed = {}
for email in emails:
    time.sleep(random.uniform(0, 0.03))
    with transaction.atomic():
        suppression_add(tenant_id=None, email=email, reason="unsubscribe", source="api")
    committed[email] = time.time()  # the commit is visible by now
print(json.dumps(committed), flush=True)
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_no_mail_is_received_after_its_suppression_committed(
    tenant, engine_settings, engine_worker, tmp_path
):
    emulator = engine_settings
    emails = lead_emails("racing", 40)
    _, enrollments = campaign_enrolled(tenant, plan=PLAN_ONE_EMAIL, emails=emails)
    actions_make_due()
    go = tmp_path / "go"
    suppressor = _python(_SUPPRESSOR, json.dumps(emails), str(go))
    _start_together([suppressor], go)
    # Small batches, so the worker's two processes prepare and send while suppressions land.
    scheduler.scheduled_actions_sweep(dispatch=tasks._dispatch, batch_size=4)
    (output,) = _finish([suppressor])
    committed = json.loads(output)
    beat_until(
        lambda: not ScheduledAction.objects.exists() and worker_idle(engine_worker)(),
        what="every send to be settled",
    )

    received = {}
    for record in emulator.messages():
        for entry in record["to"]:
            assert entry["email"] not in received, "a second mail"
            received[entry["email"]] = record["received_at"]
    late = {
        email: round(at - committed[email], 3)
        for email, at in received.items()
        if at > committed[email]
    }
    assert late == {}, f"received after the suppression committed (seconds late): {late}"
    states = enrollment_states(enrollments)
    assert states["completed"] == len(received)
    assert states["stopped"] == 40 - len(received)


@pytest.mark.django_db(transaction=True)
def test_a_send_meeting_a_suppression_being_written_waits_for_it_and_sends_nothing(
    tenant, engine_settings
):
    emulator = engine_settings
    _, (enrollment,) = campaign_enrolled(
        tenant, plan=PLAN_ONE_EMAIL, emails=["leaving@prospect.example.com"]
    )
    written, release = threading.Event(), threading.Event()

    def unsubscribe() -> None:
        try:
            with transaction.atomic():
                suppression_add(
                    tenant_id=tenant.pk,
                    email="leaving@prospect.example.com",
                    reason=Suppression.Reason.UNSUBSCRIBE,
                    source=Suppression.Source.ONE_CLICK,
                )
                written.set()
                release.wait(10)
        finally:
            connection.close()

    writer = threading.Thread(target=unsubscribe)
    writer.start()
    assert written.wait(10)
    actions_make_due()
    sweep_inline()  # the suppression is written but not committed yet

    assert emulator.messages() == []
    (action,) = pending_actions(enrollment)
    assert action.last_error == "a suppression of the address is being written"
    release.set()
    writer.join(10)
    actions_make_due()
    sweep_inline()

    assert emulator.messages() == []
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.stop_reason) == ("stopped", "address is suppressed")
