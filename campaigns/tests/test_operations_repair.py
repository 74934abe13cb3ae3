"""Repair tools on real sends: resolving needs_review messages, reconciling `sending` ones
from webhook events, re-processing receipts, erasing a lead. Each is idempotent: run twice,
the effect happens once."""

import datetime
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from campaigns.models import Enrollment, Lead, ScheduledAction
from campaigns.services.enrollment import enrollments_create
from campaigns.services.erasure import ERASURE_STEPS, lead_erase
from campaigns.tests.engine_support import (
    PLAN_BRANCHES,
    PLAN_ONE_EMAIL,
    actions_make_due,
    campaign_enrolled,
    emulator_events_for,
    pending_actions,
    received_per_recipient,
    sweep_inline,
)
from messaging.models import InboundMessage, Message, MessageEvent, WebhookReceipt
from messaging.services.receipts import (
    webhook_receipt_create,
    webhook_receipt_normalise,
    webhook_receipt_reprocess,
)
from messaging.services.review import message_reconcile, message_review_resolve
from outreach.common.errors import ApplicationError
from outreach.tenancy.models import AuditEntry
from outreach.testing.factories import LeadFactory
from outreach.testing.world import world_build
from suppression.models import Suppression
from suppression.selectors import suppression_check

pytestmark = pytest.mark.django_db


def _run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue().strip()


def _needs_review(tenant, emulator, email: str, plan=PLAN_ONE_EMAIL):
    """A send whose outcome was unknown past the grace period: the message is needs_review
    and the enrollment paused, as the send path leaves them."""
    _, (enrollment,) = campaign_enrolled(tenant, plan=plan, emails=[email])
    actions_make_due()
    sweep_inline()
    message = Message.objects.get(enrollment=enrollment)
    # As if the worker died after the provider call: the row is left `sending`, the step's
    # action is still there, and the grace period has passed.
    Message.objects.filter(pk=message.pk).update(
        status=Message.Status.SENDING,
        status_rank=0,
        sent_at=None,
        provider_message_id="",
        updated_at=timezone.now() - datetime.timedelta(hours=1),
    )
    Enrollment.objects.filter(pk=enrollment.pk).update(
        state=Enrollment.State.ACTIVE, current_step="intro", step_seq=1
    )
    ScheduledAction.objects.filter(enrollment=enrollment).delete()
    ScheduledAction.objects.create(
        tenant=tenant,
        enrollment=enrollment,
        kind="send",
        step="intro",
        step_seq=1,
        due_at=timezone.now() - datetime.timedelta(seconds=1),
        idempotency_key=f"repair-{enrollment.pk}",
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM campaigns_enrollmenttransition WHERE enrollment_id = %s", [enrollment.pk]
        )
    sweep_inline()
    message.refresh_from_db()
    enrollment.refresh_from_db()
    assert message.status == Message.Status.NEEDS_REVIEW
    assert enrollment.state == Enrollment.State.PAUSED
    return enrollment, message


def test_resolving_as_not_sent_sends_the_step_again_exactly_once(tenant, engine_settings):
    emulator = engine_settings
    enrollment, message = _needs_review(tenant, emulator, "lost@prospect.example.com")
    emulator.clear_messages()
    message_review_resolve(
        tenant_id=tenant.pk, message_id=message.pk, outcome="not_sent", actor="admin:ops"
    )
    with pytest.raises(ApplicationError, match="not needs_review"):
        message_review_resolve(
            tenant_id=tenant.pk, message_id=message.pk, outcome="not_sent", actor="admin:ops"
        )
    actions_make_due()  # due "now" is after this test transaction's now()
    sweep_inline()
    actions_make_due()
    sweep_inline()
    assert received_per_recipient(emulator) == {"lost@prospect.example.com": 1}
    attempts = list(
        Message.objects.filter(enrollment=enrollment)
        .order_by("attempt")
        .values_list("attempt", "status")
    )
    assert attempts == [(1, "failed"), (2, "accepted")]
    assert AuditEntry.objects.get(target_type="message").action == "message.review_not_sent"


def test_resolving_as_sent_moves_the_enrollment_on_without_a_mail(tenant, engine_settings):
    emulator = engine_settings
    enrollment, message = _needs_review(tenant, emulator, "had@prospect.example.com")
    emulator.clear_messages()
    message_review_resolve(
        tenant_id=tenant.pk, message_id=message.pk, outcome="sent", actor="admin:ops"
    )
    enrollment.refresh_from_db()
    message.refresh_from_db()
    assert message.status == Message.Status.ACCEPTED
    assert enrollment.state == Enrollment.State.COMPLETED  # the one-email plan went on to its end
    sweep_inline()
    assert emulator.messages() == []


def test_reconcile_settles_a_needs_review_message_from_an_orphan_event(
    tenant, engine_settings, events_cleanup
):
    enrollment, message = _needs_review(tenant, engine_settings, "seen@prospect.example.com")
    now = timezone.now()
    # An event stored as an orphan (no message matched at the time) that carries our id.
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO messaging_messageevent (tenant_id, event_type, occurred_at, received_at,
                provider_event_id, provider_message_id, email, is_machine_open, is_bot_click,
                is_synthetic, raw)
            VALUES (%s, 'delivered', %s, %s, 'orphan-1', 'sg-xyz', %s, false, false, false, %s)
            """,
            [
                tenant.pk,
                now,
                now,
                message.to_email,
                json.dumps({"outreach_message_id": str(message.public_id)}),
            ],
        )
    dry = _run("messages_reconcile", "--tenant", tenant.slug, "--dry-run", "--no-progress")
    assert dry.startswith("dry run: would reconcile 1 of 1")
    assert Message.objects.get(pk=message.pk).status == Message.Status.NEEDS_REVIEW

    line = _run("messages_reconcile", "--tenant", tenant.slug, "--no-progress")
    assert line.startswith("reconciled 1 of 1")
    message.refresh_from_db()
    enrollment.refresh_from_db()
    assert (message.status, message.provider_message_id) == ("delivered", "sg-xyz")
    assert MessageEvent.objects.get(provider_event_id="orphan-1").message_id == message.pk
    assert enrollment.state == Enrollment.State.COMPLETED
    assert _run("messages_reconcile", "--tenant", tenant.slug, "--no-progress").startswith(
        "reconciled 0 of 0"
    )
    assert message_reconcile(tenant_id=tenant.pk, message_id=message.pk) == "settled"


def test_reconcile_is_scoped_to_the_tenant(tenant, other_tenant, engine_settings, events_cleanup):
    _, message = _needs_review(tenant, engine_settings, "mine@prospect.example.com")
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO messaging_messageevent (tenant_id, event_type, occurred_at, received_at,
                provider_event_id, provider_message_id, email, is_machine_open, is_bot_click,
                is_synthetic, raw)
            VALUES (%s, 'delivered', %s, %s, 'orphan-2', 'sg-abc', '', false, false, false, %s)
            """,
            [tenant.pk, now, now, json.dumps({"outreach_message_id": str(message.public_id)})],
        )
    assert message_reconcile(tenant_id=other_tenant.pk, message_id=message.pk) == "settled"
    assert Message.objects.get(pk=message.pk).status == Message.Status.NEEDS_REVIEW
    assert MessageEvent.objects.get(provider_event_id="orphan-2").message_id is None
    assert message_reconcile(tenant_id=tenant.pk, message_id=message.pk) == "reconciled"


def test_reconcile_without_evidence_leaves_the_message_for_review(tenant, engine_settings):
    _, message = _needs_review(tenant, engine_settings, "silent@prospect.example.com")
    assert message_reconcile(tenant_id=tenant.pk, message_id=message.pk) == "no_evidence"
    assert Message.objects.get(pk=message.pk).status == Message.Status.NEEDS_REVIEW


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than-minutes", "-1"], r"^--older-than-minutes must be 0 or more$"),
        (["--older-than-minutes", "soon"], "invalid int value: 'soon'"),
        (["--tenant", "nobody"], "no tenant with slug or id 'nobody'"),
    ],
)
def test_reconcile_bad_input_is_one_line_and_touches_nothing(tenant, args, message):
    world = world_build(tenant=tenant)
    an_hour_ago = timezone.now() - datetime.timedelta(hours=1)
    Message.objects.filter(pk=world.message.pk).update(
        status=Message.Status.SENDING, status_rank=0, updated_at=an_hour_ago
    )
    with pytest.raises(CommandError, match=message) as refused:
        _run("messages_reconcile", *args, "--no-progress")
    assert "\n" not in str(refused.value)
    message_row = Message.objects.get(pk=world.message.pk)
    assert (message_row.status, message_row.updated_at) == (Message.Status.SENDING, an_hour_ago)
    assert not AuditEntry.objects.exclude(pk=world.audit.pk).exists()


def test_reprocessing_receipts_twice_stores_their_events_once(
    tenant, engine_settings, webhook_sink, events_cleanup
):
    engine_settings.register_tenant(str(tenant.public_id), events_url=webhook_sink.url + "/events")
    _, (enrollment,) = campaign_enrolled(
        tenant, plan=PLAN_BRANCHES, emails=["reader+open@prospect.example.com"]
    )
    actions_make_due()
    sweep_inline()
    message = Message.objects.get(enrollment=enrollment)
    events = emulator_events_for(webhook_sink, message, {"open"})
    receipt_id = webhook_receipt_create(
        tenant_id=tenant.pk, kind="events", body=json.dumps(events).encode(), headers={}
    )
    webhook_receipt_normalise(receipt_id=receipt_id)
    stored = MessageEvent.objects.filter(message_id=message.pk).count()
    assert stored == len(events)
    since = (timezone.now() - datetime.timedelta(hours=1)).isoformat()
    for _ in range(2):
        line = _run(
            "webhook_receipts_reprocess", "--since", since, "--tenant", tenant.slug, "--no-progress"
        )
        assert line.startswith("re-processed 1 of 1 receipts")
    assert MessageEvent.objects.filter(message_id=message.pk).count() == stored
    assert WebhookReceipt.objects.get(pk=receipt_id).processed_at is not None
    dry = _run("webhook_receipts_reprocess", "--since", since, "--dry-run")
    assert dry.startswith("dry run: would re-process 1 receipts")


def test_reprocess_leaves_receipts_outside_the_time_range_alone(tenant):
    now = timezone.now()
    long_ago = now - datetime.timedelta(days=3)

    def receipt(minutes_ago: int, *, processed: bool) -> int:
        row = WebhookReceipt.objects.create(
            tenant=tenant, kind="events", body=b"[]", content_type="application/json"
        )
        WebhookReceipt.objects.filter(pk=row.pk).update(
            received_at=now - datetime.timedelta(minutes=minutes_ago),
            processed_at=long_ago if processed else None,
            attempts=int(processed),
        )
        return row.pk

    before_since = [receipt(90, processed=False), receipt(61, processed=True)]
    inside = [receipt(59, processed=False), receipt(11, processed=True)]
    after_until = [receipt(9, processed=False)]
    untouched = {
        row["id"]: row
        for row in WebhookReceipt.objects.filter(pk__in=before_since + after_until).values()
    }
    since = (now - datetime.timedelta(minutes=60)).isoformat()
    until = (now - datetime.timedelta(minutes=10)).isoformat()

    dry = _run("webhook_receipts_reprocess", "--since", since, "--until", until, "--dry-run")
    assert dry.startswith("dry run: would re-process 2 receipts")
    line = _run("webhook_receipts_reprocess", "--since", since, "--until", until, "--no-progress")

    assert line.startswith("re-processed 2 of 2 receipts")
    for row in WebhookReceipt.objects.filter(pk__in=inside):
        assert row.processed_at is not None and row.processed_at > long_ago, row.pk
    after = {
        row["id"]: row
        for row in WebhookReceipt.objects.filter(pk__in=before_since + after_until).values()
    }
    assert after == untouched


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "not a date"),
        (["--since", "2026-13-45"], "not a date"),
        (["--since", "2030-01-02", "--until", "2030-01-01"], "must be before"),
        (["--since", "2026-01-01", "--tenant", "nobody"], "no tenant"),
    ],
)
def test_reprocess_bad_input_is_one_line(args, message):
    with pytest.raises(CommandError, match=message):
        _run("webhook_receipts_reprocess", *args)


# --- erasure ----------------------------------------------------------------------------------


def test_erasing_a_lead_removes_its_pii_and_keeps_it_suppressed_as_a_hash(
    tenant, other_tenant, engine_settings, webhook_sink, events_cleanup
):
    engine_settings.register_tenant(str(tenant.public_id), events_url=webhook_sink.url + "/events")
    email = "jane.doe+open@prospect.example.com"
    _, (enrollment,) = campaign_enrolled(
        tenant, plan=PLAN_BRANCHES, emails=[email], first_name="Jane", company="Doe Corp"
    )
    campaign_enrolled(other_tenant, plan=PLAN_ONE_EMAIL, emails=[email])  # not theirs to erase
    actions_make_due()
    sweep_inline()
    message = Message.objects.get(enrollment=enrollment)
    events = emulator_events_for(webhook_sink, message, {"open"})
    receipt_id = webhook_receipt_create(
        tenant_id=tenant.pk, kind="events", body=json.dumps(events).encode(), headers={}
    )
    webhook_receipt_normalise(receipt_id=receipt_id)
    lead = Lead.objects.get(tenant=tenant, email=email)

    dry = _run(
        "lead_erase", "--tenant", tenant.slug, "--email", email, "--reason", "r1", "--dry-run"
    )
    assert dry.startswith(f"dry run (rolled back): lead {lead.pk}: erased")
    assert Lead.objects.get(pk=lead.pk).first_name == "Jane"

    line = _run("lead_erase", "--tenant", tenant.slug, "--email", email.upper(), "--reason", "r1")
    assert line.startswith(f"lead {lead.pk}: erased")
    lead.refresh_from_db()
    assert lead.email == f"erased-{lead.pk}@erased.invalid"
    assert (lead.first_name, lead.company, lead.custom_fields) == ("", "", {})
    message.refresh_from_db()
    assert email not in (message.to_email + message.subject)
    for event in MessageEvent.objects.filter(message_id=message.pk):
        assert event.email == "" and event.raw == {"erased": True}
    assert email.encode() not in bytes(WebhookReceipt.objects.get(pk=receipt_id).body)
    assert Enrollment.objects.get(pk=enrollment.pk).state == Enrollment.State.STOPPED
    # Kept suppressed, only as a hash; the other tenant's lead is untouched.
    assert not Suppression.objects.filter(email=email).exists()
    assert suppression_check(tenant_id=tenant.pk, emails=[email]) == {email}
    assert suppression_check(tenant_id=other_tenant.pk, emails=[email]) == set()
    assert Lead.objects.get(tenant=other_tenant, email=email).first_name != ""
    entry = AuditEntry.objects.get(action="lead.erase")
    assert email not in json.dumps([entry.before, entry.after, entry.reason])

    # Idempotent, by address or by id.
    again = _run("lead_erase", "--tenant", tenant.slug, "--email", email, "--reason", "r1")
    assert again.endswith("was erased before; nothing to do")
    assert lead_erase(tenant_id=tenant.pk, lead_id=lead.pk, actor="cli:x").already_erased
    assert AuditEntry.objects.filter(action="lead.erase").count() == 1


def test_an_erased_address_imported_again_is_never_mailed(tenant, engine_settings):
    email = "gone@prospect.example.com"
    campaign, (enrollment,) = campaign_enrolled(tenant, plan=PLAN_ONE_EMAIL, emails=[email])
    lead_erase(tenant_id=tenant.pk, lead_id=enrollment.lead_id, actor="cli:x", reason="r")
    again = Lead.objects.create(tenant=tenant, email=email)
    result = enrollments_create(tenant_id=tenant.pk, campaign_id=campaign.pk, lead_ids=[again.pk])
    assert result.enrolled == []
    assert [row["reason"] for row in result.skipped] == ["suppressed"]
    # And should it slip into a plan anyway, the send path checks the hash at send time.
    Enrollment.objects.create(
        tenant=tenant,
        campaign=campaign,
        lead=again,
        plan_version=campaign.current_version,
        sender_identity=campaign.sender_identity,
        current_step="intro",
        step_seq=1,
    )
    slipped = Enrollment.objects.get(lead=again)
    ScheduledAction.objects.create(
        tenant=tenant,
        enrollment=slipped,
        kind="send",
        step="intro",
        step_seq=1,
        due_at=timezone.now() - datetime.timedelta(minutes=1),
        idempotency_key=f"slipped-{slipped.pk}",
    )
    sweep_inline()
    assert engine_settings.messages() == []
    assert Enrollment.objects.get(pk=slipped.pk).stop_reason == "address is suppressed"
    assert not pending_actions(slipped)


def test_lead_erase_bad_input_is_one_line(tenant):
    with pytest.raises(CommandError, match="no lead with the address"):
        _run("lead_erase", "--tenant", tenant.slug, "--email", "nobody@x.com", "--reason", "r")
    with pytest.raises(CommandError, match="Lead not found"):
        _run("lead_erase", "--tenant", tenant.slug, "--lead-id", "999999", "--reason", "r")
    assert not InboundMessage.objects.exists()


@pytest.mark.parametrize("reason", ["", "   "])
def test_lead_erase_refuses_a_blank_reason_and_erases_nothing(tenant, reason):
    lead = LeadFactory(tenant=tenant, first_name="Jane")
    for who in (["--lead-id", str(lead.pk)], ["--email", lead.email]):
        with pytest.raises(CommandError, match=r"^--reason: give the request's reference$"):
            _run("lead_erase", "--tenant", tenant.slug, *who, "--reason", reason)
    assert Lead.objects.get(pk=lead.pk).first_name == "Jane"
    assert not AuditEntry.objects.filter(action="lead.erase").exists()


class _Terminal(StringIO):
    """A stderr that says it is a terminal, as an operator's is (tqdm draws only there)."""

    def isatty(self) -> bool:
        return True


def test_lead_erase_draws_its_steps_on_stderr_unless_told_not_to(tenant):
    first, second = LeadFactory(tenant=tenant), LeadFactory(tenant=tenant)
    out, err = StringIO(), _Terminal()
    call_command(
        "lead_erase", "--tenant", tenant.slug, "--lead-id", str(first.pk), "--reason", "r",
        stdout=out, stderr=err,
    )  # fmt: skip
    assert out.getvalue().strip().startswith(f"lead {first.pk}: erased")
    assert len(out.getvalue().strip().splitlines()) == 1  # the bar never reaches stdout
    drawn = err.getvalue()
    steps = len(ERASURE_STEPS)
    assert f"erasing lead {first.pk}" in drawn
    assert f"{steps}/{steps}" in drawn
    assert ERASURE_STEPS[-1] in drawn

    quiet = _Terminal()
    call_command(
        "lead_erase", "--tenant", tenant.slug, "--lead-id", str(second.pk), "--reason", "r",
        "--no-progress", stdout=StringIO(), stderr=quiet,
    )  # fmt: skip
    assert quiet.getvalue() == ""
    assert Lead.objects.get(pk=second.pk).email == f"erased-{second.pk}@erased.invalid"


def test_lead_erase_reports_each_step_once_in_order(tenant):
    lead = LeadFactory(tenant=tenant)
    done: list[str] = []
    lead_erase(
        tenant_id=tenant.pk, lead_id=lead.pk, actor="cli:dpo", reason="r", progress=done.append
    )
    assert done == list(ERASURE_STEPS)


def test_reprocess_skips_erased_receipts_and_tells_held_inbound_from_processed(tenant):
    from messaging.services.erasure import RECEIPT_ERASED
    from messaging.services.inbound import INBOUND_DISABLED
    from messaging.tests.inbound_support import fixture_bytes, raw_mode_post
    from outreach.tenancy.models import Tenant

    body, content_type = raw_mode_post(fixture_bytes("gmail_reply"))
    erased = WebhookReceipt.objects.create(
        tenant=tenant,
        kind="inbound",
        body=b"",
        content_type=content_type,
        processed_at=timezone.now(),
        last_error=RECEIPT_ERASED,
    )
    held = WebhookReceipt.objects.create(
        tenant=tenant, kind="inbound", body=body, content_type=content_type
    )
    Tenant.objects.filter(pk=tenant.pk).update(inbound_enabled=False)
    since = (timezone.now() - datetime.timedelta(hours=1)).isoformat()

    line = _run("webhook_receipts_reprocess", "--since", since, "--no-progress")

    assert line == (
        "re-processed 0 of 1 receipts received "
        + line.split("receipts received ", 1)[1].split(";")[0]
        + "; 0 busy (another worker had them), 1 held (inbound is off for its tenant), "
        "0 failed; 1 erased on request skipped"
    )
    erased.refresh_from_db()
    assert (bytes(erased.body), erased.last_error) == (b"", RECEIPT_ERASED)
    assert not InboundMessage.objects.filter(receipt=erased).exists()
    held.refresh_from_db()
    assert held.last_error == INBOUND_DISABLED
    assert webhook_receipt_reprocess(receipt_id=erased.pk) == "erased"
    assert webhook_receipt_reprocess(receipt_id=held.pk) == "held"
