"""SMS exactly-once and STOP under real processes: a Celery worker sending through the Twilio
emulator, Twilio's callbacks reaching our real endpoints (``live_server``), a SIGKILL."""

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest

from campaigns import tasks
from campaigns.models import Enrollment, ScheduledAction
from campaigns.services import scheduler
from campaigns.tests.engine_support import (
    WORKER_ENV,
    actions_make_due,
    beat_until,
    enrollment_states,
    leases_expire,
    wait_until,
    worker_idle,
)
from messaging.models import WebhookReceipt
from messaging.tests.sms_support import (
    PLAN_ONE_SMS,
    SENDER_NUMBER,
    phones,
    sms_campaign,
    sms_messages,
    texts_per_number,
)
from outreach.testing import processes
from suppression.models import PhoneSuppression


@pytest.fixture(scope="module")
def sms_worker(
    django_db_setup, django_db_blocker, sendgrid_emulator_session, live_server, tmp_path_factory
) -> Iterator[processes.CeleryWorkerProcess]:
    """A real worker (two processes) on the production queues, texting through the session's
    emulator; the texts' status callbacks point at ``live_server``."""
    with django_db_blocker.unblock():
        worker = processes.CeleryWorkerProcess(
            log_dir=tmp_path_factory.mktemp("sms-worker"),
            pool="prefork",
            concurrency=2,
            private_queues=False,
            TWILIO_API_BASE=sendgrid_emulator_session.host,
            PUBLIC_BASE_URL=live_server.url,
            **WORKER_ENV,
        )
        worker.start()
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def sms_live(settings, sendgrid_emulator, live_server, event_rows_cleanup):
    settings.TWILIO_API_BASE = sendgrid_emulator.host
    settings.PUBLIC_BASE_URL = live_server.url
    settings.SEND_JITTER_SECONDS = 0
    return sendgrid_emulator


def _claim_all() -> list[list[int]]:
    return [[a.id, a.attempt] for a in scheduler.scheduled_actions_claim(limit=1000)]


def _status_callbacks_processed(emulator) -> bool:
    """Every status callback our endpoint accepted is stored and normalised."""
    accepted = sum(
        1
        for d in emulator.sms_stats()["deliveries"]
        if d["kind"] == "status" and d["status"] is not None and 200 <= d["status"] < 300
    )
    receipts = WebhookReceipt.objects.filter(kind=WebhookReceipt.Kind.SMS_STATUS)
    return (
        accepted > 0
        and receipts.count() == accepted
        and not receipts.filter(processed_at__isnull=True).exists()
    )


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_text_batch_delivered_twice_to_a_worker_texts_each_lead_once(
    tenant, sms_live, sms_worker
):
    from outreach.celery import app

    emulator = sms_live
    numbers = phones(201, 20)
    enrollments = sms_campaign(tenant, numbers=numbers)
    actions_make_due()
    items = _claim_all()
    assert len(items) == 20

    task_id = str(uuid.uuid4())
    for _ in range(2):  # the same Celery message twice, as a redelivery brings it
        app.send_task("messaging.sms_send_batch", args=[items], task_id=task_id)
    wait_until(
        lambda: sms_worker.log().count(f"[{task_id}] succeeded") == 2,
        timeout=60,
        what="both copies of the batch to finish",
    )

    assert texts_per_number(emulator) == {number: 1 for number in numbers}
    assert enrollment_states(enrollments) == {"completed": 20}
    assert len(sms_messages(enrollments)) == 20
    # The callbacks reach our endpoint and the worker normalises them.
    emulator.sms_wait_idle(timeout=30)
    wait_until(
        lambda: {m.status for m in sms_messages(enrollments)} == {"delivered"},
        what="delivery reports for every text",
    )
    actions_make_due()
    beat_until(lambda: worker_idle(sms_worker)(), what="anything left to settle")
    assert texts_per_number(emulator) == {number: 1 for number in numbers}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_batch_never_causes_a_second_text(
    tenant, sms_live, sms_worker, live_server, tmp_path
):
    from outreach.celery import app

    emulator = sms_live
    numbers = phones(202, 8)
    enrollments = sms_campaign(tenant, numbers=numbers, plan=PLAN_ONE_SMS)
    actions_make_due()
    items = _claim_all()

    # Each text takes 1.5 s to be answered; the worker dies after the first ones reached
    # Twilio and before their answers were recorded.
    emulator.sms_configure(latency_ms=1500)
    doomed = processes.CeleryWorkerProcess(
        log_dir=tmp_path,
        TWILIO_API_BASE=emulator.host,
        PUBLIC_BASE_URL=live_server.url,
        **WORKER_ENV,
    ).start()
    app.send_task("messaging.sms_send_batch", args=[items], queue=doomed.queues["sending"])
    wait_until(lambda: len(texts_per_number(emulator)) >= 2, timeout=60, what="the first texts")
    doomed.kill()
    emulator.sms_configure(latency_ms=0)

    # Twilio's callbacks carry our id in their URL: they reconcile the texts that went out.
    # Each text has three (queued, sent, delivered), posted in any order and processed by
    # the worker one hint each: wait for every one the emulator delivered to be processed,
    # not merely for the first of each text (the others would still be in the worker).
    emulator.sms_wait_idle(timeout=30)
    wait_until(
        lambda: _status_callbacks_processed(emulator),
        what="every status callback of the texts that went out to be processed",
    )
    # What Twilio took before the worker died (a request the worker had written when it was
    # killed still lands: it counts as sent before the kill, and its callbacks are in).
    received = texts_per_number(emulator)
    assert 2 <= len(received) < 8
    assert set(received.values()) == {1}
    assert sum(m.status != "sending" for m in sms_messages(enrollments)) == len(received)
    assert not WebhookReceipt.objects.filter(processed_at__isnull=True).exists()

    assert leases_expire() == 8
    beat_until(
        lambda: not ScheduledAction.objects.filter(kind="sms").exists(),
        what="a fresh worker to settle every action",
    )
    assert texts_per_number(emulator) == received  # nothing was texted again
    for message in sms_messages(enrollments):
        enrollment = Enrollment.objects.get(pk=message.enrollment_id)
        if message.to_phone in received:
            assert message.status == "delivered" and message.provider_message_id
            assert enrollment.state == "completed"
        else:
            assert message.status == "needs_review"
            assert enrollment.stop_reason == "needs review: send outcome unknown"


LATENCY = 1.0  # seconds Twilio takes to answer each send in the STOP race


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_no_text_reaches_a_number_after_its_stop_was_answered(
    tenant, sms_live, sms_worker, live_server
):
    """Thirty queued texts, a worker sending them in batches of three (Twilio answering each
    after a second), and STOPs racing them: a third texted before their text is sent, the
    rest the moment Twilio has their text, while it is in flight. Whatever the interleaving,
    no text reaches Twilio after the STOP for its number was answered; and the STOPs that
    came while their text was in flight were answered only after Twilio answered the send
    (they waited for the number's send lock)."""
    emulator = sms_live
    # Only our suppression stands between a STOP and the next text.
    emulator.sms_configure(carrier_opt_out=False, latency_ms=LATENCY * 1000)
    emulator.sms_register_number(
        SENDER_NUMBER, f"{live_server.url}/webhooks/twilio/inbound/{tenant.public_id}/"
    )
    numbers = phones(203, 30)
    enrollments = sms_campaign(tenant, numbers=numbers)
    actions_make_due()
    early = set(numbers[::3])
    scheduler.scheduled_actions_sweep(dispatch=tasks._dispatch, batch_size=3)
    for number in reversed(numbers[::3]):
        emulator.sms_inbound(person=number, to=SENDER_NUMBER, body="STOP")

    # The others text STOP as soon as Twilio has their text (before it answered the send).
    stopped = set(early)
    done = threading.Event()

    def stop_texts_in_flight() -> None:
        while not done.is_set() and len(stopped) < len(numbers):
            for record in emulator.sms_messages(direction="outbound-api"):
                if record["to"] not in stopped:
                    stopped.add(record["to"])
                    emulator.sms_inbound(person=record["to"], to=SENDER_NUMBER, body="STOP")
            time.sleep(0.02)

    racer = threading.Thread(target=stop_texts_in_flight, name="stop-racer")
    racer.start()
    try:
        beat_until(
            lambda: (
                not ScheduledAction.objects.filter(kind="sms").exists()
                and worker_idle(sms_worker)()
            ),
            timeout=120,
            what="every text to be settled",
        )
    finally:
        done.set()
        racer.join(10)
    # STOPs still untexted (their text never left) are sent now, for the final count.
    for number in sorted(set(numbers) - stopped):
        emulator.sms_inbound(person=number, to=SENDER_NUMBER, body="STOP")
    emulator.sms_wait_idle(timeout=60)

    stops = {
        d["number"]: d
        for d in emulator.sms_stats()["deliveries"]
        if d["kind"] == "inbound" and d["body"] == "STOP"
    }
    assert len(stops) == 30 and {d["status"] for d in stops.values()} == {200}
    assert set(PhoneSuppression.objects.values_list("phone", flat=True)) == set(numbers)
    texted = {}
    for record in emulator.sms_messages(direction="outbound-api"):
        assert record["to"] not in texted, "a second text"
        texted[record["to"]] = record["received_at"]
    late = {n: round(at - stops[n]["at"], 3) for n, at in texted.items() if at > stops[n]["at"]}
    assert late == {}, f"texted after the STOP was answered (seconds late): {late}"

    # The race happened: STOPs posted while their number's text was with Twilio, answered
    # only after Twilio's answer (the text's arrival plus the latency), having waited.
    waited = {
        n
        for n, at in texted.items()
        if stops[n]["started"] < at + LATENCY <= stops[n]["at"]
        and stops[n]["at"] - stops[n]["started"] >= LATENCY / 3
    }
    assert waited, "no STOP overlapped a text in flight: the race was not exercised"
    # And texts queued behind an early STOP were held back by the send-time checks.
    held_back = {
        e.lead.phone: e.stop_reason
        for e in Enrollment.objects.filter(state="stopped").select_related("lead")
    }
    assert set(held_back) == set(numbers) - set(texted)
    assert set(held_back) <= early
    assert set(held_back.values()) <= {"no SMS consent", "number opted out of SMS"}
    print(
        f"\nSTOP race: {len(texted)} texted, {len(waited)} STOPs waited for a text in flight, "
        f"held back: {Counter(held_back.values())}"
    )

    confirmations = emulator.sms_messages(direction="outbound-reply")
    assert len(confirmations) == 30
    assert all(
        c["body"].startswith("You have successfully been unsubscribed") for c in confirmations
    )
    states = enrollment_states(enrollments)
    assert states["completed"] == len(texted) and states.get("stopped", 0) == 30 - len(texted)
