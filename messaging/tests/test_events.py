"""Normalisation of stored Event Webhook receipts: mapping, dedup, order, flags, suppression."""

import datetime
import json
import time
import uuid

import pytest
from django.db import connection
from django.utils import timezone

from campaigns.services import transitions
from messaging.models import Message, MessageEvent, MessageEventKey, WebhookReceipt
from messaging.services.receipts import (
    webhook_receipt_create,
    webhook_receipt_normalise,
    webhook_receipts_sweep,
)
from messaging.tests.webhook_support import campaign_message_make, message_make, sg_event
from outreach.tenancy.models import TenantAlert
from outreach.testing.factories import LeadFactory
from suppression.models import Suppression
from suppression.selectors import suppression_check

pytestmark = pytest.mark.django_db


@pytest.fixture
def hook_calls(monkeypatch):
    """Record what the campaign engine is told (its own behaviour is tested in campaigns)."""
    calls: list[dict] = []
    real = transitions.enrollment_events_apply

    def record(*, tenant_id, events):
        calls.append({"tenant_id": tenant_id, "event_ids": sorted(e.event_id for e in events)})
        return real(tenant_id=tenant_id, events=events)

    monkeypatch.setattr(transitions, "enrollment_events_apply", record)
    return calls


def _receive(tenant, events) -> int:
    return webhook_receipt_create(
        tenant_id=tenant.pk,
        kind=WebhookReceipt.Kind.EVENTS,
        body=json.dumps(events).encode(),
        headers={},
        content_type="application/json",
    )


def _process(tenant, events):
    receipt_id = _receive(tenant, events)
    return webhook_receipt_normalise(receipt_id=receipt_id)


def _events(tenant, **filters):
    return list(
        MessageEvent.objects.filter(tenant_id=tenant.pk, **filters).order_by("occurred_at", "id")
    )


# --------------------------------------------------------------------------- mapping


def test_events_map_to_our_message_by_custom_arg(tenant, hook_calls):
    message = campaign_message_make(tenant, provider_message_id="")
    transactional = message_make(tenant)  # not sent by a campaign: nothing for the engine
    result = _process(
        tenant,
        [
            sg_event(message, "delivered"),
            sg_event(message, "open"),
            sg_event(transactional, "open"),
        ],
    )
    assert len(result.new_event_ids) == 3
    stored = _events(tenant)
    assert {e.message_id for e in stored} == {message.pk, transactional.pk}
    ours = [e for e in stored if e.message_id == message.pk]
    assert {e.event_type for e in ours} == {"delivered", "open"}
    assert all(e.email == message.to_email and e.receipt_id for e in ours)
    assert all(e.enrollment_id == message.enrollment_id for e in ours)
    receipt = WebhookReceipt.objects.get()
    assert receipt.processed_at is not None and receipt.event_count == 3
    assert hook_calls == [{"tenant_id": tenant.pk, "event_ids": sorted(e.id for e in ours)}]


def test_events_without_our_id_map_by_sendgrid_message_id_prefix(tenant):
    message = message_make(tenant, provider_message_id="LRzXl_NHStOGhQ4kofSm_A")
    event = sg_event(message, "delivered")
    del event["outreach_message_id"]
    _process(tenant, [event])
    assert _events(tenant)[0].message_id == message.pk
    assert _events(tenant)[0].provider_message_id.startswith("LRzXl_NHStOGhQ4kofSm_A.")


def test_a_shared_request_id_is_disambiguated_by_address_or_left_orphan(tenant):
    first = message_make(tenant, provider_message_id="shared-request-id")
    second = message_make(tenant, provider_message_id="shared-request-id")
    to_second = sg_event(second, "delivered")
    stranger = sg_event(second, "delivered", email="someone.else@x.test")
    for event in (to_second, stranger):
        del event["outreach_message_id"]
    _process(tenant, [to_second, stranger])
    by_email = {e.email: e.message_id for e in _events(tenant)}
    assert by_email == {second.to_email: second.pk, "someone.else@x.test": None}
    first.refresh_from_db()
    assert first.status == Message.Status.ACCEPTED


def test_unknown_messages_and_unknown_event_types_are_kept_not_dropped(tenant):
    events = [
        sg_event(None, "delivered", email="nobody@x.test", outreach_message_id=str(uuid.uuid4())),
        sg_event(None, "open", email="a@x.test", outreach_message_id="not-a-uuid"),
        sg_event(None, "brand_new_event_type", email="b@x.test"),
    ]
    _process(tenant, events)
    stored = _events(tenant)
    assert len(stored) == 3
    assert all(e.message_id is None for e in stored)
    assert sorted(e.event_type for e in stored) == ["delivered", "open", "unknown"]
    unknown = next(e for e in stored if e.event_type == "unknown")
    assert unknown.raw["event"] == "brand_new_event_type"


def test_another_tenants_message_id_is_never_attached(tenant, other_tenant):
    theirs = message_make(other_tenant)
    _process(tenant, [sg_event(theirs, "spamreport")])
    assert _events(tenant)[0].message_id is None
    theirs.refresh_from_db()
    assert theirs.status == Message.Status.ACCEPTED
    assert not Suppression.objects.filter(tenant=other_tenant).exists()
    assert MessageEvent.objects.filter(tenant_id=other_tenant.pk).count() == 0


# --------------------------------------------------------------------------- dedup


def test_the_same_batch_delivered_again_stores_nothing_new(tenant, hook_calls):
    message = campaign_message_make(tenant)
    batch = [sg_event(message, "delivered"), sg_event(message, "open")]
    first = _process(tenant, batch)
    again = _process(tenant, list(reversed(batch)))
    assert len(first.new_event_ids) == 2
    assert again.new_event_ids == []
    assert MessageEvent.objects.filter(tenant_id=tenant.pk).count() == 2
    assert MessageEventKey.objects.filter(tenant=tenant).count() == 2
    assert len(hook_calls) == 1
    assert WebhookReceipt.objects.filter(processed_at__isnull=False).count() == 2


def test_duplicates_inside_one_batch_are_stored_once(tenant):
    message = message_make(tenant)
    event = sg_event(message, "click", url="https://x.test/a")
    _process(tenant, [event, dict(event), dict(event)])
    assert len(_events(tenant)) == 1


def test_events_without_sg_event_id_get_a_stable_synthetic_key(tenant):
    message = message_make(tenant)
    event = sg_event(message, "open")
    del event["sg_event_id"]
    reordered = dict(reversed(list(event.items())))
    _process(tenant, [event])
    _process(tenant, [reordered])
    stored = _events(tenant)
    assert len(stored) == 1
    assert stored[0].provider_event_id.startswith("syn:")


def test_the_same_event_id_in_two_tenants_is_two_events(tenant, other_tenant):
    event = sg_event(None, "open", email="a@x.test")
    _process(tenant, [event])
    _process(other_tenant, [event])
    assert MessageEvent.objects.filter(tenant_id__in=[tenant.pk, other_tenant.pk]).count() == 2


def test_a_task_delivered_twice_has_its_effect_once(tenant, hook_calls):
    message = campaign_message_make(tenant)
    receipt_id = _receive(tenant, [sg_event(message, "bounce", type="bounce", reason="550")])
    assert webhook_receipt_normalise(receipt_id=receipt_id) is not None
    assert webhook_receipt_normalise(receipt_id=receipt_id) is None
    assert len(_events(tenant)) == 1
    assert Suppression.objects.filter(tenant=tenant).count() == 1
    assert len(hook_calls) == 1
    assert WebhookReceipt.objects.get().attempts == 1


# --------------------------------------------------------------------------- status


def test_an_open_before_its_delivered_leaves_the_message_opened(tenant):
    message = message_make(tenant)
    now = time.time()
    _process(tenant, [sg_event(message, "open", at=now)])
    _process(tenant, [sg_event(message, "delivered", at=now - 5)])
    _process(tenant, [sg_event(message, "processed", at=now - 10)])
    message.refresh_from_db()
    assert message.status == Message.Status.OPENED
    assert len(_events(tenant)) == 3


def test_a_bounce_is_terminal_and_records_why(tenant):
    message = message_make(tenant)
    _process(
        tenant,
        [
            sg_event(message, "bounce", type="bounce", status="5.1.1", reason="550 no such user"),
            sg_event(message, "delivered"),
        ],
    )
    message.refresh_from_db()
    assert message.status == Message.Status.BOUNCED
    assert message.error_code == "bounce:5.1.1"
    assert message.error_message == "550 no such user"
    assert message.last_event_at is not None


def test_a_machine_open_is_flagged_and_proves_delivery_only(tenant):
    message = message_make(tenant)
    _process(tenant, [sg_event(message, "open", sg_machine_open=True)])
    event = _events(tenant)[0]
    assert event.event_type == "open" and event.is_machine_open
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED
    _process(tenant, [sg_event(message, "open", sg_machine_open=False)])
    message.refresh_from_db()
    assert message.status == Message.Status.OPENED
    assert [e.is_machine_open for e in _events(tenant)] == [True, False]


def test_scanner_clicks_are_flagged_and_human_clicks_count(tenant):
    sent = timezone.now() - datetime.timedelta(hours=1)
    message = message_make(tenant, sent_at=sent)
    early = sent.timestamp() + 3  # within seconds of the send: a security gateway
    human_at = sent.timestamp() + 1800
    _process(
        tenant,
        [
            sg_event(message, "click", at=early, useragent="Mozilla/5.0", url="https://x.test"),
            sg_event(
                message,
                "click",
                at=human_at,
                useragent="Mozilla/5.0 (compatible; Barracuda Sentinel)",
                url="https://x.test",
            ),
        ],
    )
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED
    _process(
        tenant,
        [
            sg_event(
                message,
                "click",
                at=human_at + 60,
                useragent="Mozilla/5.0 (Macintosh) Safari/605",
                url="https://x.test",
            )
        ],
    )
    flags = [e.is_bot_click for e in _events(tenant)]
    assert flags == [True, True, False]
    message.refresh_from_db()
    assert message.status == Message.Status.CLICKED


def test_millisecond_timestamps_are_understood(tenant):
    at = datetime.datetime(2026, 3, 4, 5, 6, 7, tzinfo=datetime.UTC)
    _process(
        tenant, [sg_event(None, "open", email="a@x.test", timestamp=int(at.timestamp() * 1000))]
    )
    assert _events(tenant)[0].occurred_at == at


def test_smtp_id_is_recorded_and_a_sending_message_is_reconciled(tenant):
    message = message_make(
        tenant, status=Message.Status.SENDING, status_rank=0, provider_message_id=""
    )
    processed = sg_event(message, "processed")
    processed["sg_message_id"] = "AbCdEf123.filterdrecv-1.0"
    processed["smtp-id"] = "<AbCdEf123@ismtpd0039p1iad1.sendgrid.net>"
    _process(tenant, [processed])
    message.refresh_from_db()
    assert message.status == Message.Status.PROCESSED
    assert message.smtp_id == "<AbCdEf123@ismtpd0039p1iad1.sendgrid.net>"
    assert message.provider_message_id == "AbCdEf123"
    assert message.sent_at is not None


def test_hostile_field_values_are_stored_not_crashed(tenant):
    event = sg_event(
        None,
        "open",
        email="A@X.TEST\x00",
        useragent="evil\x00agent",
        timestamp="not a time",
        sg_event_id="x" * 400,
        note="nul \u0000 inside",
    )
    _process(tenant, [event, {"event": None}, {"timestamp": True}])
    stored = _events(tenant)
    assert len(stored) == 3
    opened = next(e for e in stored if e.event_type == "open")
    assert opened.email == "a@x.test"
    assert opened.provider_event_id.startswith("sha256:")


def test_each_event_keeps_exactly_what_sendgrid_posted(tenant):
    message = message_make(tenant)
    posted = [
        sg_event(message, "click", url="https://x.test/a?b=1&c=\u00e9", useragent="Mozilla/5.0"),
        "not an event",  # skipped, and the events after it keep their own bodies
        sg_event(message, "open", sg_machine_open=True, asm_group_id=7),
        sg_event(message, "bounce", type="bounce", reason="550 5.1.1 unknown", status="5.1.1"),
    ]
    posted.append(dict(posted[0]))  # a repeat inside the batch is stored once
    _process(tenant, posted)
    stored = {event.provider_event_id: event.raw for event in _events(tenant)}
    assert stored == {event["sg_event_id"]: event for event in posted if isinstance(event, dict)}


def test_lone_surrogates_and_nul_escapes_in_the_json_are_stored_not_crashed(tenant):
    body = (
        b'[{"event":"open","email":"x\\ud800@x.test","sg_event_id":"id\\udfff",'
        b'"useragent":"a\\u0000b\\ud83d","timestamp":1700000000},'
        b'{"event":"click","email":"y@x.test","url":"https://x.test/\\udc00","timestamp":1700000001}]'
    )
    receipt_id = webhook_receipt_create(
        tenant_id=tenant.pk, kind=WebhookReceipt.Kind.EVENTS, body=body, headers={}
    )
    result = webhook_receipt_normalise(receipt_id=receipt_id)
    assert len(result.new_event_ids) == 2
    stored = _events(tenant)
    assert stored[0].email == "x?@x.test"
    assert stored[0].provider_event_id.startswith("sha256:")
    again = webhook_receipt_create(
        tenant_id=tenant.pk, kind=WebhookReceipt.Kind.EVENTS, body=body, headers={}
    )
    assert webhook_receipt_normalise(receipt_id=again).new_event_ids == []


def test_a_repeat_that_changes_nothing_leaves_the_message_row_alone(tenant):
    message = message_make(tenant)
    now = time.time()
    _process(tenant, [sg_event(message, "open", at=now - 60)])
    message.refresh_from_db()
    opened_at, updated_at = message.last_event_at, message.updated_at
    _process(tenant, [sg_event(message, "open", at=now), sg_event(message, "delivered", at=now)])
    message.refresh_from_db()
    assert (message.status, message.last_event_at, message.updated_at) == (
        Message.Status.OPENED,
        opened_at,
        updated_at,
    )
    assert len(_events(tenant)) == 3
    _process(tenant, [sg_event(message, "click", at=now + 60)])
    message.refresh_from_db()
    assert message.status == Message.Status.CLICKED
    assert message.last_event_at > opened_at


# --------------------------------------------------------------------------- alerts, suppression


def test_account_status_change_raises_an_alert(tenant):
    _process(
        tenant,
        [
            {
                "event": "account_status_change",
                "sg_event_id": "YWNjb3VudC1zdGF0dXM",
                "timestamp": int(time.time()),
                "type": "compliance_suspend",
            }
        ],
    )
    alert = TenantAlert.objects.get(tenant=tenant)
    assert alert.kind == TenantAlert.Kind.ACCOUNT_STATUS
    assert "compliance_suspend" in alert.message
    assert _events(tenant)[0].event_type == "account_status_change"


@pytest.mark.parametrize(
    ("event", "fields", "reason"),
    [
        ("bounce", {"type": "bounce", "reason": "550 5.1.1"}, "hard_bounce"),
        ("spamreport", {}, "spam_report"),
        ("unsubscribe", {}, "unsubscribe"),
        ("group_unsubscribe", {"asm_group_id": 7}, "group_unsubscribe"),
        ("dropped", {"reason": "Bounced Address"}, "hard_bounce"),
        ("dropped", {"reason": "Spam Reporting Address"}, "spam_report"),
        ("dropped", {"reason": "Unsubscribed Address"}, "unsubscribe"),
    ],
)
def test_negative_events_suppress_the_address_for_the_tenant(tenant, event, fields, reason):
    message = message_make(tenant)
    _process(tenant, [sg_event(message, event, **fields)])
    entry = Suppression.objects.get()
    assert (entry.tenant_id, entry.email, entry.reason, entry.source) == (
        tenant.pk,
        message.to_email.lower(),
        reason,
        "webhook",
    )
    assert suppression_check(tenant_id=tenant.pk, emails=[message.to_email]) == {
        message.to_email.lower()
    }


@pytest.mark.parametrize(
    ("event", "fields"),
    [
        ("bounce", {"type": "blocked", "reason": "421 try later"}),
        ("dropped", {"reason": "Spam Content"}),
        ("deferred", {"response": "450"}),
        ("open", {}),
    ],
)
def test_other_events_do_not_suppress(tenant, event, fields):
    message = message_make(tenant)
    _process(tenant, [sg_event(message, event, **fields)])
    assert not Suppression.objects.exists()


def test_a_blocked_bounce_is_stored_as_blocked_and_marks_the_message_bounced(tenant):
    message = message_make(tenant)
    _process(tenant, [sg_event(message, "bounce", type="blocked", status="4.0.0")])
    assert _events(tenant)[0].event_type == "blocked"
    message.refresh_from_db()
    assert message.status == Message.Status.BOUNCED
    assert message.error_code == "blocked:4.0.0"


def test_repeated_blocked_bounces_suppress_past_the_threshold(tenant, settings):
    settings.SUPPRESSION_SOFT_BOUNCE_THRESHOLD = 3
    lead = LeadFactory(tenant=tenant)
    for n in range(3):
        message = message_make(tenant, lead=lead)
        _process(tenant, [sg_event(message, "bounce", type="blocked", reason="421")])
        suppressed = Suppression.objects.filter(tenant=tenant, email=lead.email.lower())
        assert suppressed.exists() is (n == 2)
    assert suppressed.get().reason == "repeated_soft_bounce"


def test_repeated_blocked_bounces_of_unknown_messages_also_count(tenant, settings):
    settings.SUPPRESSION_SOFT_BOUNCE_THRESHOLD = 2
    _process(tenant, [sg_event(None, "bounce", type="blocked", email="Far@X.test")])
    assert not Suppression.objects.exists()
    _process(tenant, [sg_event(None, "bounce", type="blocked", email="far@x.test")])
    assert Suppression.objects.get().email == "far@x.test"


def test_old_blocked_bounces_fall_out_of_the_window(tenant, settings):
    settings.SUPPRESSION_SOFT_BOUNCE_THRESHOLD = 2
    lead = LeadFactory(tenant=tenant)
    long_ago = time.time() - 8 * 86400
    _process(
        tenant, [sg_event(message_make(tenant, lead=lead), "bounce", type="blocked", at=long_ago)]
    )
    _process(tenant, [sg_event(message_make(tenant, lead=lead), "bounce", type="blocked")])
    assert not Suppression.objects.exists()


def test_suppression_commits_with_the_event_or_not_at_all(tenant, monkeypatch):
    message = campaign_message_make(tenant)

    def broken(**kwargs):
        raise RuntimeError("campaign engine unavailable")

    monkeypatch.setattr(transitions, "enrollment_events_apply", broken)
    receipt_id = _receive(tenant, [sg_event(message, "spamreport")])
    with pytest.raises(RuntimeError):
        webhook_receipt_normalise(receipt_id=receipt_id)
    receipt = WebhookReceipt.objects.get()
    assert receipt.processed_at is None
    assert receipt.attempts == 1 and "campaign engine unavailable" in receipt.last_error
    assert not _events(tenant)
    assert not MessageEventKey.objects.exists()
    assert not Suppression.objects.exists()
    message.refresh_from_db()
    assert message.status == Message.Status.ACCEPTED

    monkeypatch.undo()
    assert webhook_receipt_normalise(receipt_id=receipt_id) is not None
    assert len(_events(tenant)) == 1
    assert Suppression.objects.count() == 1
    message.refresh_from_db()
    assert message.status == Message.Status.COMPLAINED


def test_shadow_mode_stores_events_but_suppresses_nothing_and_calls_no_hook(tenant, hook_calls):
    tenant.webhook_shadow_mode = True
    tenant.save()
    message = campaign_message_make(tenant)
    _process(
        tenant,
        [
            sg_event(message, "bounce", type="bounce"),
            sg_event(message, "spamreport"),
            {"event": "account_status_change", "sg_event_id": "YQ", "type": "reactivate"},
        ],
    )
    assert len(_events(tenant)) == 3
    assert not Suppression.objects.exists()
    assert hook_calls == []
    assert TenantAlert.objects.filter(tenant=tenant).count() == 1


# --------------------------------------------------------------------------- sweeper


def _age(receipt_id: int, seconds: int) -> None:
    WebhookReceipt.objects.filter(pk=receipt_id).update(
        received_at=timezone.now() - datetime.timedelta(seconds=seconds)
    )


def test_the_sweeper_processes_receipts_whose_hint_was_lost(tenant):
    message = message_make(tenant)
    stale = _receive(tenant, [sg_event(message, "delivered")])
    fresh = _receive(tenant, [sg_event(message, "open")])
    _age(stale, 120)
    assert webhook_receipts_sweep() == 1
    assert WebhookReceipt.objects.get(pk=stale).processed_at is not None
    assert WebhookReceipt.objects.get(pk=fresh).processed_at is None  # its hint may still come
    assert webhook_receipts_sweep() == 0


def test_the_sweeper_leaves_inbound_receipts_to_the_inbound_pipeline(tenant):
    receipt = WebhookReceipt.objects.create(
        tenant=tenant, kind=WebhookReceipt.Kind.INBOUND, body=b"raw mime", headers={}
    )
    _age(receipt.pk, 3600)
    assert webhook_receipts_sweep() == 0
    assert webhook_receipt_normalise(receipt_id=receipt.pk) is None
    receipt.refresh_from_db()
    assert receipt.processed_at is None and receipt.attempts == 0


def test_a_receipt_that_keeps_failing_stops_being_retried_and_alerts(tenant, settings, monkeypatch):
    settings.WEBHOOK_RECEIPT_MAX_ATTEMPTS = 2

    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(transitions, "enrollment_events_apply", broken)
    receipt_id = _receive(tenant, [sg_event(campaign_message_make(tenant), "open")])
    _age(receipt_id, 120)
    assert webhook_receipts_sweep() == 0
    assert webhook_receipts_sweep() == 0
    assert webhook_receipts_sweep() == 0  # no third attempt
    receipt = WebhookReceipt.objects.get()
    assert receipt.attempts == 2 and receipt.processed_at is None
    alert = TenantAlert.objects.get(tenant=tenant)
    assert alert.kind == TenantAlert.Kind.WEBHOOK and str(receipt_id) in alert.message


def test_events_land_in_their_month_partition(tenant):
    _process(tenant, [sg_event(None, "open", email="a@x.test")])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tableoid::regclass::text FROM messaging_messageevent WHERE tenant_id = %s",
            [tenant.pk],
        )
        (partition,) = cursor.fetchone()
    assert partition == "messaging_messageevent_" + timezone.now().strftime("%Y_%m")
