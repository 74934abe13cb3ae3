"""Processing stored replies: once per receipt, the reply event, the engine, the sweeper."""

import datetime
import subprocess
import sys
import time
from email.utils import format_datetime

import pytest
from django.utils import timezone

from campaigns.models import Enrollment, ScheduledAction
from messaging.models import InboundMessage, Message, MessageEvent, WebhookReceipt
from messaging.services.inbound import inbound_receipt_process, inbound_receipts_sweep
from messaging.tasks_inbound import inbound_receipt_process as inbound_receipt_process_task
from messaging.tasks_inbound import inbound_receipts_sweep as inbound_receipts_sweep_task
from messaging.tests.inbound_support import (
    TOKENS,
    fixture_bytes,
    multipart_encode,
    raw_mode_post,
    sent_message,
)
from outreach.testing import processes
from outreach.testing.factories import LeadFactory, SenderIdentityFactory, campaign_with_plan
from suppression.models import Suppression

PLAN = {"start": "intro", "steps": {"intro": {"type": "end", "outcome": "done"}}}


def _receipt(tenant, raw: bytes, **post) -> WebhookReceipt:
    body, content_type = raw_mode_post(raw, **post)
    return WebhookReceipt.objects.create(
        tenant=tenant, kind="inbound", body=body, content_type=content_type, headers={}
    )


def _enrolled_message(tenant, **fields) -> Message:
    identity = SenderIdentityFactory(tenant=tenant)
    lead = LeadFactory(tenant=tenant)
    campaign = campaign_with_plan(tenant=tenant, plan=PLAN, identity=identity)
    enrollment = Enrollment.objects.create(
        tenant=tenant,
        campaign=campaign,
        lead=lead,
        plan_version=campaign.current_version,
        sender_identity=identity,
        current_step="intro",
        step_seq=1,
    )
    return sent_message(
        tenant,
        sender_identity=identity,
        lead=lead,
        enrollment=enrollment,
        campaign=campaign,
        step="intro",
        step_seq=1,
        **fields,
    )


def _ooo_mail(token: str, back: datetime.date) -> bytes:
    now = timezone.now()
    return (
        f"From: lead@prospect.example\r\n"
        f"To: reply+{token}@reply.acme-sales.example\r\n"
        f"Subject: Automatic reply: Quick question\r\n"
        f"Date: {format_datetime(now)}\r\n"
        f"Auto-Submitted: auto-replied\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"I am out of the office and will be back on {back:%A, %B} {back.day}, {back.year}.\r\n"
    ).encode()


def _reply_events(tenant) -> list[MessageEvent]:
    return list(MessageEvent.objects.filter(tenant_id=tenant.pk, event_type="reply"))


# --- one receipt ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_human_reply_is_recorded_evented_and_marks_the_message_replied(tenant):
    ours = sent_message(tenant, reply_token=TOKENS["gmail_reply"])
    receipt = _receipt(tenant, fixture_bytes("gmail_reply"))

    inbound = inbound_receipt_process(tenant_id=tenant.pk, receipt_id=receipt.pk)

    assert inbound.matched_message == ours
    assert inbound.classification == "human"
    assert inbound.from_email == "dana.reyes@northwind.example"
    assert inbound.to_email == "reply+k7Qm2Zp9Lx4Rt1Vb@reply.acme-sales.example"
    assert inbound.in_reply_to == "<20261130141402.3f9a.sam@mail.acme-sales.example>"
    assert inbound.processed_at is not None
    [event] = _reply_events(tenant)
    assert (event.message_id, event.provider_event_id) == (
        ours.pk,
        "reply:<CAJx9p2Vq7N3rT5uW8yZbCdEfGhIjKlMnOpQ@mail.gmail.com>",
    )
    assert event.receipt_id == receipt.pk
    assert event.raw["inbound_message_id"] == inbound.pk
    ours.refresh_from_db()
    assert (ours.status, ours.status_rank) == ("replied", 70)
    receipt.refresh_from_db()
    assert receipt.processed_at is not None
    assert (receipt.event_count, receipt.attempts, receipt.last_error) == (1, 1, "")


@pytest.mark.django_db
def test_the_task_delivered_twice_records_the_reply_once(tenant):
    ours = sent_message(tenant, reply_token=TOKENS["gmail_reply"])
    receipt = _receipt(tenant, fixture_bytes("gmail_reply"))

    inbound_receipt_process_task(tenant.pk, receipt.pk)
    inbound_receipt_process_task(tenant.pk, receipt.pk)

    assert InboundMessage.objects.filter(receipt=receipt).count() == 1
    assert len(_reply_events(tenant)) == 1
    ours.refresh_from_db()
    assert ours.status == "replied"


@pytest.mark.django_db
def test_sendgrid_posting_the_same_mail_again_records_it_once(tenant):
    sent_message(tenant, reply_token=TOKENS["gmail_reply"])
    first = _receipt(tenant, fixture_bytes("gmail_reply"))
    again = _receipt(tenant, fixture_bytes("gmail_reply"))

    assert inbound_receipt_process(tenant_id=tenant.pk, receipt_id=first.pk) is not None
    assert inbound_receipt_process(tenant_id=tenant.pk, receipt_id=again.pk) is None

    assert InboundMessage.objects.get().receipt_id == first.pk
    assert len(_reply_events(tenant)) == 1
    again.refresh_from_db()
    assert again.processed_at is not None
    assert again.event_count == 0


@pytest.mark.django_db
def test_a_reply_without_message_id_is_keyed_by_its_receipt(tenant):
    sent_message(tenant, reply_token=TOKENS["gmail_reply"])
    raw = fixture_bytes("gmail_reply").replace(b"Message-ID:", b"X-Lost-Message-ID:")
    receipt = _receipt(tenant, raw)
    inbound_receipt_process(tenant_id=tenant.pk, receipt_id=receipt.pk)
    [event] = _reply_events(tenant)
    assert event.provider_event_id == f"reply:receipt:{receipt.pk}"


@pytest.mark.django_db
def test_a_reply_never_moves_a_message_backwards(tenant):
    ours = sent_message(
        tenant, reply_token=TOKENS["gmail_reply"], status="complained", status_rank=83
    )
    inbound_receipt_process(
        tenant_id=tenant.pk, receipt_id=_receipt(tenant, fixture_bytes("gmail_reply")).pk
    )
    ours.refresh_from_db()
    assert (ours.status, ours.status_rank) == ("complained", 83)
    assert len(_reply_events(tenant)) == 1  # the reply still happened


@pytest.mark.django_db
@pytest.mark.parametrize("fixture", ["exchange_ooo", "x_autoreply", "dsn_bounce"])
def test_machine_mail_emits_no_reply_event_and_leaves_the_status(tenant, fixture):
    ours = sent_message(
        tenant,
        reply_token=TOKENS[fixture],
        rfc_message_id="<20261130142000.dd44.sam@mail.acme-sales.example>",
    )
    inbound = inbound_receipt_process(
        tenant_id=tenant.pk, receipt_id=_receipt(tenant, fixture_bytes(fixture)).pk
    )
    assert inbound.matched_message == ours
    assert inbound.classification != "human"
    assert _reply_events(tenant) == []
    ours.refresh_from_db()
    assert ours.status == "delivered"


@pytest.mark.django_db
def test_a_bounce_reply_is_recorded_but_suppresses_nothing(tenant):
    ours = sent_message(tenant, rfc_message_id="<20261130142000.dd44.sam@mail.acme-sales.example>")
    inbound = inbound_receipt_process(
        tenant_id=tenant.pk, receipt_id=_receipt(tenant, fixture_bytes("dsn_bounce")).pk
    )
    assert (inbound.classification, inbound.matched_message) == ("bounce", ours)
    assert Suppression.objects.count() == 0


@pytest.mark.django_db
def test_unknown_mail_is_kept_unmatched(tenant):
    sent_message(tenant)
    inbound = inbound_receipt_process(
        tenant_id=tenant.pk, receipt_id=_receipt(tenant, fixture_bytes("unknown_reply")).pk
    )
    assert inbound.matched_message is None
    assert inbound.subject == "Re: Your proposal"
    assert "meant for someone else" in inbound.raw_mime
    assert _reply_events(tenant) == []


@pytest.mark.django_db
def test_a_token_of_tenant_a_posted_to_tenant_b_matches_nothing(tenant, other_tenant):
    theirs = sent_message(other_tenant, reply_token=TOKENS["gmail_reply"])
    receipt = _receipt(tenant, fixture_bytes("gmail_reply"))  # arrived at tenant's endpoint
    inbound = inbound_receipt_process(tenant_id=tenant.pk, receipt_id=receipt.pk)
    assert inbound.tenant_id == tenant.pk
    assert inbound.matched_message is None
    theirs.refresh_from_db()
    assert theirs.status == "delivered"
    assert MessageEvent.objects.filter(event_type="reply").count() == 0


@pytest.mark.django_db
def test_a_receipt_is_only_processed_for_its_own_tenant(tenant, other_tenant):
    receipt = _receipt(tenant, fixture_bytes("gmail_reply"))
    assert inbound_receipt_process(tenant_id=other_tenant.pk, receipt_id=receipt.pk) is None
    receipt.refresh_from_db()
    assert (receipt.processed_at, receipt.attempts) == (None, 0)


@pytest.mark.django_db
def test_an_event_webhook_receipt_is_never_taken_for_mail(tenant):
    receipt = WebhookReceipt.objects.create(tenant=tenant, kind="events", body=b"[]", headers={})
    assert inbound_receipt_process(tenant_id=tenant.pk, receipt_id=receipt.pk) is None
    receipt.refresh_from_db()
    assert (receipt.processed_at, receipt.attempts) == (None, 0)


@pytest.mark.django_db
def test_a_body_without_mail_is_kept_and_not_retried(tenant):
    body, content_type = multipart_encode({"dkim": "none", "SPF": "pass"})
    receipt = WebhookReceipt.objects.create(
        tenant=tenant, kind="inbound", body=body, content_type=content_type, headers={}
    )
    inbound = inbound_receipt_process(tenant_id=tenant.pk, receipt_id=receipt.pk)
    assert inbound.classification == "unclassified"
    assert inbound.matched_message is None
    receipt.refresh_from_db()
    assert receipt.processed_at is not None
    assert receipt.last_error.startswith("unparseable:")


# --- the campaign engine ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_human_reply_stops_an_enrollment_whose_step_has_no_reply_branch(tenant):
    ours = _enrolled_message(tenant, reply_token=TOKENS["gmail_reply"])
    inbound_receipt_process(
        tenant_id=tenant.pk, receipt_id=_receipt(tenant, fixture_bytes("gmail_reply")).pk
    )
    enrollment = Enrollment.objects.get(pk=ours.enrollment_id)
    assert enrollment.state == "stopped"
    assert enrollment.stop_reason == "lead replied"


@pytest.mark.django_db
def test_an_out_of_office_pauses_the_enrollment_until_the_return_date(tenant):
    ours = _enrolled_message(tenant)
    back = timezone.now().date() + datetime.timedelta(days=10)
    receipt = _receipt(tenant, _ooo_mail(ours.reply_token, back))

    inbound = inbound_receipt_process(tenant_id=tenant.pk, receipt_id=receipt.pk)

    assert (inbound.classification, inbound.return_date) == ("out_of_office", back)
    enrollment = Enrollment.objects.get(pk=ours.enrollment_id)
    assert enrollment.state == "paused"
    # The identity's window opens at 09:00 (UTC here) on the return date.
    assert enrollment.paused_until == datetime.datetime.combine(
        back, datetime.time(9, 0), tzinfo=datetime.UTC
    )
    assert ScheduledAction.objects.filter(enrollment=enrollment, kind="resume").count() == 1
    assert _reply_events(tenant) == []


@pytest.mark.django_db
def test_shadow_mode_records_the_reply_but_drives_no_enrollment(tenant):
    tenant.webhook_shadow_mode = True
    tenant.save(update_fields=["webhook_shadow_mode"])
    ours = _enrolled_message(tenant, reply_token=TOKENS["gmail_reply"])
    inbound_receipt_process(
        tenant_id=tenant.pk, receipt_id=_receipt(tenant, fixture_bytes("gmail_reply")).pk
    )
    assert Enrollment.objects.get(pk=ours.enrollment_id).state == "active"
    assert len(_reply_events(tenant)) == 1


# --- the sweeper ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_sweeper_processes_receipts_whose_task_was_lost(tenant, settings):
    settings.WEBHOOK_RECEIPT_GRACE_SECONDS = 60
    sent_message(tenant, reply_token=TOKENS["gmail_reply"])
    stale = _receipt(tenant, fixture_bytes("gmail_reply"))
    fresh = _receipt(tenant, fixture_bytes("unknown_reply"))
    events = WebhookReceipt.objects.create(tenant=tenant, kind="events", body=b"[]", headers={})
    old = timezone.now() - datetime.timedelta(minutes=5)
    WebhookReceipt.objects.filter(pk__in=[stale.pk, events.pk]).update(received_at=old)

    assert inbound_receipts_sweep_task() == 1

    assert InboundMessage.objects.get().receipt_id == stale.pk
    fresh.refresh_from_db()
    events.refresh_from_db()
    assert fresh.processed_at is None  # still within its grace period
    assert events.processed_at is None  # another helper's kind of receipt
    assert inbound_receipts_sweep() == 0  # nothing left to do, and nothing done twice


@pytest.mark.django_db
def test_the_sweeper_gives_up_on_a_receipt_after_the_attempt_limit(tenant, settings):
    settings.WEBHOOK_RECEIPT_MAX_ATTEMPTS = 3
    receipt = _receipt(tenant, fixture_bytes("gmail_reply"))
    WebhookReceipt.objects.filter(pk=receipt.pk).update(
        received_at=timezone.now() - datetime.timedelta(hours=1), attempts=3
    )
    assert inbound_receipts_sweep(grace_seconds=0) == 0
    assert InboundMessage.objects.count() == 0


# --- real processes ---------------------------------------------------------------------------


@pytest.fixture
def events_cleanup(tenant):
    """The event table is unmanaged (partitioned), so a transactional test's flush leaves it
    alone: remove what this test wrote so later tests start clean."""
    yield
    MessageEvent.objects.filter(tenant_id=tenant.pk).delete()


_RACE = """
import django
django.setup()
from messaging.services.inbound import inbound_receipt_process
for receipt_id in {receipt_ids}:
    result = inbound_receipt_process(tenant_id={tenant_id}, receipt_id=receipt_id)
    print("processed" if result is not None else "skipped")
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_processes_racing_on_the_same_receipts_record_each_once(tenant, events_cleanup):
    sent_message(tenant, reply_token=TOKENS["gmail_reply"])
    raw = fixture_bytes("gmail_reply")
    receipt_ids = [
        _receipt(tenant, raw.replace(b"<CAJx9p2V", f"<{n}.CAJx9p2V".encode())).pk for n in range(20)
    ]
    # SendGrid's re-post of the first mail, in the middle of the batch.
    receipt_ids.insert(10, _receipt(tenant, raw.replace(b"<CAJx9p2V", b"<0.CAJx9p2V")).pk)
    script = _RACE.format(tenant_id=tenant.pk, receipt_ids=receipt_ids)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            env=processes.test_process_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    assert sum(out.count("processed") for out, _ in outputs) == 20
    assert InboundMessage.objects.count() == 20
    assert len(_reply_events(tenant)) == 20
    assert WebhookReceipt.objects.filter(event_count=0).count() == 1
    assert WebhookReceipt.objects.filter(processed_at__isnull=True).count() == 0


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_given_the_task_twice_records_the_reply_once(
    tenant, tmp_path, events_cleanup
):
    from outreach.celery import app

    ours = sent_message(tenant, reply_token=TOKENS["gmail_reply"])
    receipt = _receipt(tenant, fixture_bytes("gmail_reply"))
    worker = processes.CeleryWorkerProcess(log_dir=tmp_path).start()
    try:
        for _ in range(2):
            app.send_task(
                "messaging.inbound_receipt_process",
                args=[tenant.pk, receipt.pk],
                queue=worker.queues["events"],
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and worker.log().count("succeeded") < 2:
            time.sleep(0.2)
    finally:
        worker.stop()
    assert worker.log().count("succeeded") == 2, worker.log()
    receipt.refresh_from_db()
    assert receipt.processed_at is not None
    assert InboundMessage.objects.filter(receipt=receipt).count() == 1
    assert [e.message_id for e in _reply_events(tenant)] == [ours.pk]


# --- the local SendGrid emulator's replies (what `make run` feeds us) --------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("auto", [False, True])
def test_replies_generated_by_the_emulator_are_matched_and_classified(tenant, auto):
    from messaging.emulator.engagement import multipart_encode as emulator_encode
    from messaging.emulator.engagement import reply_fields
    from messaging.emulator.engagement import return_date as emulator_return_date

    ours = sent_message(tenant)
    sent_at = time.time()
    payload = {
        "from": {"email": "sam@acme-sales.example", "name": "Sam Carter"},
        "reply_to": {"email": f"reply+{ours.reply_token}@reply.outreach.test"},
        "subject": "Quick question",
        "headers": {"Message-ID": ours.rfc_message_id},
        "content": [{"type": "text/plain", "value": "Hi Dana,\nWorth a chat?\nSam"}],
    }
    personalization = {"to": [{"email": ours.to_email, "name": "Dana"}]}
    fields = reply_fields(
        payload=payload,
        personalization=personalization,
        x_message_id="LRzXl_NHStOGhQ4kofSm_A",
        recipient=ours.to_email,
        auto=auto,
        sent_at=sent_at,
    )
    body, content_type = emulator_encode(fields)
    receipt = WebhookReceipt.objects.create(
        tenant=tenant, kind="inbound", body=body, content_type=content_type, headers={}
    )

    inbound = inbound_receipt_process(tenant_id=tenant.pk, receipt_id=receipt.pk)

    assert inbound.matched_message == ours
    if auto:
        assert inbound.classification == "out_of_office"
        assert inbound.return_date == emulator_return_date(sent_at)
    else:
        assert inbound.classification == "human"
        assert len(_reply_events(tenant)) == 1


# --- the inbound feature flag -------------------------------------------------------------------


@pytest.mark.django_db
def test_with_the_inbound_flag_off_a_reply_is_kept_unprocessed_until_reprocessed(tenant):
    from messaging.services.inbound import INBOUND_DISABLED
    from messaging.services.receipts import webhook_receipt_reprocess
    from outreach.tenancy.controls import tenant_controls_update

    ours = sent_message(tenant, reply_token=TOKENS["gmail_reply"])
    receipt = _receipt(tenant, fixture_bytes("gmail_reply"))
    tenant_controls_update(
        tenant_id=tenant.pk, changes={"inbound_enabled": False}, actor="cli:ops", reason="x"
    )
    assert inbound_receipt_process(tenant_id=tenant.pk, receipt_id=receipt.pk) is None
    receipt.refresh_from_db()
    assert (receipt.last_error, receipt.event_count) == (INBOUND_DISABLED, 0)
    assert receipt.processed_at is not None  # the sweeper does not retry it every minute
    assert not InboundMessage.objects.exists()
    assert Message.objects.get(pk=ours.pk).status == Message.Status.DELIVERED

    tenant_controls_update(
        tenant_id=tenant.pk, changes={"inbound_enabled": True}, actor="cli:ops", reason="y"
    )
    assert webhook_receipt_reprocess(receipt_id=receipt.pk) == "processed"
    assert webhook_receipt_reprocess(receipt_id=receipt.pk) == "processed"  # twice, once
    (inbound,) = InboundMessage.objects.all()
    assert inbound.matched_message_id == ours.pk
    assert len(_reply_events(tenant)) == 1
    assert Message.objects.get(pk=ours.pk).status == Message.Status.REPLIED
