"""Proof that engagement and timeouts move an enrollment exactly once per step entry.

Mails go to the SendGrid emulator; its Event Webhook events (collected by a sink, or posted
to a live server) are what drive the engine. Timeouts come due by time travel (``due_at``
moved into the past), never by sleeping.
"""

import copy
import datetime
import json
import random
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter

import pytest
from django.utils import timezone

from campaigns import tasks
from campaigns.models import Enrollment, EnrollmentTransition, ScheduledAction
from campaigns.services import scheduler
from campaigns.tests.engine_support import (
    PLAN_BRANCHES,
    actions_make_due,
    campaign_enrolled,
    emulator_events_for,
    events_store,
    lead_emails,
    pending_actions,
    sweep_inline,
    wait_until,
)
from messaging.models import Message, MessageEvent, WebhookReceipt
from messaging.services.receipts import webhook_receipts_sweep
from outreach.testing import processes


def _sent(tenant, emulator, sink, emails, plan=PLAN_BRANCHES):
    """Leads enrolled and their first email sent; SendGrid's events go to ``sink``."""
    emulator.register_tenant(str(tenant.public_id), events_url=sink.url + "/events")
    _, enrollments = campaign_enrolled(tenant, plan=plan, emails=emails)
    actions_make_due()
    sweep_inline()
    messages = {m.enrollment_id: m for m in Message.objects.filter(enrollment__in=enrollments)}
    assert len(messages) == len(enrollments)
    return enrollments, messages


def _transitions(enrollment) -> list[tuple[int, str, str, str]]:
    return list(
        EnrollmentTransition.objects.filter(enrollment=enrollment)
        .order_by("from_seq")
        .values_list("from_seq", "from_step", "trigger", "to_step")
    )


def _synthetic(enrollment, event_type: str) -> list[MessageEvent]:
    return list(
        MessageEvent.objects.filter(
            enrollment_id=enrollment.pk, event_type=event_type, is_synthetic=True
        )
    )


# --- 5. timeouts ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_no_open_fires_when_only_a_privacy_proxy_opened(tenant, engine_settings, webhook_sink):
    (enrollment,), messages = _sent(
        tenant, engine_settings, webhook_sink, ["apple+machineopen@prospect.example.com"]
    )
    (timeout,) = pending_actions(enrollment, kind="timeout")
    assert timeout.payload["trigger"] == "no_open"
    events = emulator_events_for(webhook_sink, messages[enrollment.pk], {"open"})
    assert [e["sg_machine_open"] for e in events if e["event"] == "open"] == [True]
    events_store(tenant, events)
    assert _transitions(enrollment) == []  # Apple's pre-fetch is not the lead reading it

    actions_make_due(kind="timeout")
    sweep_inline()

    enrollment.refresh_from_db()
    assert (enrollment.current_step, enrollment.step_seq) == ("nudge", 2)
    assert _transitions(enrollment) == [(1, "intro", "no_open", "nudge")]
    (synthetic,) = _synthetic(enrollment, "no_open")
    assert synthetic.message_id == messages[enrollment.pk].pk
    (send,) = pending_actions(enrollment, kind="send")
    assert (send.step, send.step_seq) == ("nudge", 2)


@pytest.mark.django_db
def test_a_step_counting_machine_opens_follows_the_open_and_drops_its_timeout(
    tenant, engine_settings, webhook_sink
):
    plan = copy.deepcopy(PLAN_BRANCHES)
    plan["steps"]["intro"]["count_machine_opens"] = True
    (enrollment,), messages = _sent(
        tenant, engine_settings, webhook_sink, ["mpp+machineopen@prospect.example.com"], plan
    )
    events_store(tenant, emulator_events_for(webhook_sink, messages[enrollment.pk], {"open"}))

    assert _transitions(enrollment) == [(1, "intro", "open", "follow_up")]
    assert pending_actions(enrollment, kind="timeout") == []  # cancelled with the step
    actions_make_due()
    sweep_inline()  # sends the follow-up; no timeout of the intro is left to fire
    enrollment.refresh_from_db()
    assert (enrollment.current_step, enrollment.step_seq) == ("follow_up", 2)
    assert _synthetic(enrollment, "no_open") == []


@pytest.mark.django_db
def test_a_real_open_arriving_first_cancels_the_no_open_timeout(
    tenant, engine_settings, webhook_sink
):
    (enrollment,), messages = _sent(
        tenant, engine_settings, webhook_sink, ["reader+open@prospect.example.com"]
    )
    (timeout,) = pending_actions(enrollment, kind="timeout")
    events_store(tenant, emulator_events_for(webhook_sink, messages[enrollment.pk], {"open"}))

    assert not ScheduledAction.objects.filter(pk=timeout.pk).exists()
    # Even a timeout hint already in flight for that step entry changes nothing.
    scheduler.scheduled_actions_create(
        actions=[
            scheduler.NewAction(
                tenant_id=tenant.pk,
                enrollment_id=enrollment.pk,
                kind="timeout",
                step="intro",
                step_seq=1,
                due_at=timeout.due_at,
                idempotency_key="late-timeout",
                payload=timeout.payload,
            )
        ]
    )
    actions_make_due(kind="timeout")
    sweep_inline()

    enrollment.refresh_from_db()
    assert (enrollment.current_step, enrollment.step_seq) == ("follow_up", 2)
    assert _transitions(enrollment) == [(1, "intro", "open", "follow_up")]
    assert _synthetic(enrollment, "no_open") == []


@pytest.mark.django_db
def test_an_open_cancels_no_open_on_a_step_that_has_no_open_branch(
    tenant, engine_settings, webhook_sink
):
    """The lead opened: "no open within 1d" is false, so it must not fire. The step keeps
    waiting for its reply and its no_reply timeout, as the plan says."""
    plan = copy.deepcopy(PLAN_BRANCHES)
    plan["steps"]["intro"]["on"] = {
        "reply": "replied",
        "no_open": {"after": "1d", "to": "nudge"},
        "no_reply": {"after": "4d", "to": "no_response"},
    }
    (enrollment,), messages = _sent(
        tenant, engine_settings, webhook_sink, ["opener+open@prospect.example.com"], plan
    )
    events_store(tenant, emulator_events_for(webhook_sink, messages[enrollment.pk], {"open"}))
    assert _transitions(enrollment) == []  # nothing branches on an open here

    actions_make_due(kind="timeout", enrollment_ids=[enrollment.pk])
    timeouts = {a.payload["trigger"]: a for a in pending_actions(enrollment, kind="timeout")}
    # Only the no_open timeout comes due.
    ScheduledAction.objects.filter(pk=timeouts["no_reply"].pk).update(
        due_at=timezone.now() + datetime.timedelta(days=4)
    )
    sweep_inline()

    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.current_step, enrollment.step_seq) == (
        "active",
        "intro",
        1,
    )
    assert _transitions(enrollment) == []
    assert [a.payload["trigger"] for a in pending_actions(enrollment, kind="timeout")] == [
        "no_reply"
    ]

    # Four days on, the lead never replied: no_reply takes the lead on.
    actions_make_due(kind="timeout")
    sweep_inline()
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.outcome) == ("completed", "no_response")
    assert _transitions(enrollment) == [(1, "intro", "no_reply", "no_response")]


# Both racers start item k at the same instant (start + k * 0.2 s, shifted by a few
# milliseconds for the opens), so each enrollment sees its open and its timeout at once.
_TIMEOUTS = """
import json, os, sys, time
from campaigns.services.actions import scheduled_actions_run
items, go = json.loads(sys.argv[1]), sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.002)
start = float(open(go).read())
for k, item in enumerate(items):
    time.sleep(max(0, start + k * 0.2 - time.time()))
    scheduled_actions_run(kind="timeout", items=[item])
"""

_OPENS = """
import json, os, sys, time
from django.db import transaction
from django.utils import timezone
from messaging.services.events import message_events_store
tenant_id, events, shifts, go = int(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
while not os.path.exists(go):
    time.sleep(0.002)
start = float(open(go).read())
for k, (event, shift) in enumerate(zip(events, shifts)):
    time.sleep(max(0, start + k * 0.2 + shift - time.time()))
    with transaction.atomic():  # one webhook batch each, as SendGrid posts them
        message_events_store(
            tenant_id=tenant_id, raw_events=[event], received_at=timezone.now(),
            shadow_mode=False,
        )
"""


def _python(code: str, *args: str) -> subprocess.Popen:
    prelude = "import django\ndjango.setup()\nprint('ready', flush=True)\n"
    return subprocess.Popen(
        [sys.executable, "-c", prelude + code, *args],
        cwd=processes.ROOT,
        env=processes.test_process_env(LOG_LEVEL="WARNING"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_open_racing_its_no_open_timeout_moves_the_enrollment_exactly_once(
    tenant, engine_settings, webhook_sink, tmp_path, events_cleanup
):
    emails = lead_emails("racer", 30, tag="open")
    enrollments, messages = _sent(tenant, engine_settings, webhook_sink, emails)
    opens, others = [], []
    for enrollment in enrollments:
        for event in emulator_events_for(webhook_sink, messages[enrollment.pk], {"open"}):
            (opens if event["event"] == "open" else others).append(event)
    events_store(tenant, others)  # processed and delivered: nothing branches on them
    actions_make_due(kind="timeout")
    claimed = {a.id: a.attempt for a in scheduler.scheduled_actions_claim(limit=100)}
    items = [[a.id, claimed[a.id]] for e in enrollments for a in _timeout_rows(e)]
    assert len(items) == len(opens) == 30
    # The timeout path takes its lock sooner, so the opens start a little earlier.
    shifts = [random.Random(k).uniform(-0.06, 0.02) for k in range(30)]

    go = tmp_path / "go"
    racers = [
        _python(_TIMEOUTS, json.dumps(items), str(go)),
        _python(_OPENS, str(tenant.pk), json.dumps(opens), json.dumps(shifts), str(go)),
    ]
    for racer in racers:
        assert racer.stdout.readline().strip() == "ready", racer.stderr.read()
    # Written beside and renamed: a racer never finds the file before its start time is in it.
    ready = tmp_path / "go.tmp"
    ready.write_text(str(time.time() + 0.3))
    ready.rename(go)
    for racer in racers:
        _, err = racer.communicate(timeout=120)
        assert racer.returncode == 0, err

    winners = Counter()
    for enrollment in enrollments:
        enrollment.refresh_from_db()
        (transition,) = _transitions(enrollment)
        from_seq, from_step, trigger, to_step = transition
        winners[trigger] += 1
        assert (from_seq, from_step) == (1, "intro")
        # The enrollment is exactly where the winning path put it, with that path's traces.
        expected = {"open": "follow_up", "no_open": "nudge"}[trigger]
        assert (to_step, enrollment.current_step, enrollment.step_seq) == (expected, expected, 2)
        assert len(_synthetic(enrollment, "no_open")) == (1 if trigger == "no_open" else 0)
        sends = [(a.step, a.step_seq) for a in pending_actions(enrollment, kind="send")]
        assert sends == [(expected, 2)]
        assert not ScheduledAction.objects.filter(enrollment=enrollment, step_seq=1).exists()
    assert sum(winners.values()) == 30, winners


def _timeout_rows(enrollment) -> list[ScheduledAction]:
    return list(ScheduledAction.objects.filter(enrollment=enrollment, kind="timeout"))


# --- 6. idempotency under a storm of webhook deliveries ----------------------------------------


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_storm_of_duplicated_shuffled_webhooks_advances_each_enrollment_once(
    tenant, engine_settings, engine_worker, live_server, events_cleanup
):
    emulator = engine_settings
    tenant.webhook_public_key = emulator.public_key
    tenant.save(update_fields=["webhook_public_key"])
    events_url = f"{live_server.url}/webhooks/sendgrid/events/{tenant.public_id}/"
    emulator.register_tenant(str(tenant.public_id), events_url=events_url)
    # SendGrid posts every batch twice and shuffles events across batches.
    emulator.configure(webhook_duplicate_share=1.0, webhook_reorder=True, webhook_batch_size=7)
    emails = lead_emails("storm", 15, tag="open")
    _, enrollments = campaign_enrolled(tenant, plan=PLAN_BRANCHES, emails=emails)
    actions_make_due()
    scheduler.scheduled_actions_sweep(dispatch=tasks._dispatch)  # one sweep: intros only
    wait_until(lambda: len(emulator.messages()) == 15, what="the intros to be sent")
    emulator.wait_idle(timeout=30)

    # Then every signed body SendGrid posted arrives three more times, shuffled, at once.
    posted = list(WebhookReceipt.objects.filter(tenant=tenant, kind="events"))
    replays = [receipt for receipt in posted for _ in range(3)]
    random.Random(5).shuffle(replays)
    statuses: list[int] = []

    def replay(chunk: list[WebhookReceipt]) -> None:
        for receipt in chunk:
            headers = {
                name: value
                for name, value in receipt.headers.items()
                if name.startswith("X-Twilio-") or name == "Content-Type"
            }
            statuses.append(_post(events_url, bytes(receipt.body), headers))

    threads = [threading.Thread(target=replay, args=(replays[n::4],)) for n in range(4)]
    for thread in threads:
        thread.start()
    webhook_receipts_sweep(grace_seconds=0)  # the sweeper joins the worker mid-storm
    for thread in threads:
        thread.join(60)
    assert statuses == [204] * len(replays)

    def normalised() -> bool:
        webhook_receipts_sweep(grace_seconds=0)
        return not WebhookReceipt.objects.filter(processed_at__isnull=True).exists()

    wait_until(normalised, what="every receipt to be normalised")

    assert WebhookReceipt.objects.filter(tenant=tenant).count() == 4 * len(posted)
    for enrollment in Enrollment.objects.filter(pk__in=[e.pk for e in enrollments]):
        # One open, however many times it was delivered: one transition, one next step.
        assert _transitions(enrollment) == [(1, "intro", "open", "follow_up")]
        assert (enrollment.current_step, enrollment.step_seq) == ("follow_up", 2)
        sends = [(a.step, a.step_seq) for a in pending_actions(enrollment, kind="send")]
        assert sends == [("follow_up", 2)]
        (message,) = Message.objects.filter(enrollment=enrollment)
        # Delivered events that arrived after the open did not move the status back.
        assert message.status == "opened"
        kinds = Counter(
            MessageEvent.objects.filter(message_id=message.pk).values_list("event_type", flat=True)
        )
        assert kinds == {"processed": 1, "delivered": 1, "open": 1}
