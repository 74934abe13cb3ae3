"""Messaging admin pages load with data present; history is read-only."""

import pytest
from django.urls import reverse

from messaging.models import (
    EmailVerdict,
    InboundMessage,
    Message,
    MessageEvent,
    MessageEventKey,
    SenderIdentity,
    WebhookReceipt,
)
from outreach.testing.world import world_build

pytestmark = pytest.mark.django_db

MODELS = [
    SenderIdentity,
    Message,
    MessageEvent,
    MessageEventKey,
    WebhookReceipt,
    InboundMessage,
    EmailVerdict,
]
HISTORY = [Message, MessageEvent, MessageEventKey, WebhookReceipt, EmailVerdict]


def _url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def worlds(tenant, other_tenant):
    return world_build(tenant=tenant), world_build(tenant=other_tenant)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_changelists_and_change_pages_load_with_rows(admin_client, worlds, model):
    response = admin_client.get(_url(model, "changelist"))
    assert response.status_code == 200
    assert response.context["cl"].result_count == 2
    row = model.objects.filter(tenant=worlds[0].tenant).first()
    assert admin_client.get(_url(model, "change", row.pk)).status_code == 200


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_changelists_filter_by_tenant_and_search(admin_client, worlds, model):
    tenant = worlds[0].tenant
    response = admin_client.get(_url(model, "changelist"), {"tenant__id__exact": tenant.pk})
    assert [obj.tenant_id for obj in response.context["cl"].result_list] == [tenant.pk]
    response = admin_client.get(_url(model, "changelist"), {"q": "nobody@nowhere.example"})
    assert response.status_code == 200


def test_the_partitioned_event_table_lists_rows_from_every_month(admin_client, worlds):
    """MessageEvent is unmanaged over a partitioned table: rows in several partitions
    (including the DEFAULT one, for a date far outside the monthly range) all list."""
    import datetime

    event = worlds[0].event
    for days, suffix in ((-40, "old"), (3650, "future")):
        MessageEvent.objects.create(
            tenant=event.tenant,
            event_type="open",
            occurred_at=event.occurred_at + datetime.timedelta(days=days),
            received_at=event.received_at,
            provider_event_id=f"{event.provider_event_id}-{suffix}",
        )
    response = admin_client.get(_url(MessageEvent, "changelist"))
    assert response.status_code == 200
    assert response.context["cl"].result_count == 4
    assert b"open" in response.content


@pytest.mark.parametrize("model", HISTORY, ids=lambda m: m.__name__)
def test_history_cannot_be_added_changed_or_deleted(admin_client, worlds, model):
    row = model.objects.filter(tenant=worlds[0].tenant).first()
    assert admin_client.get(_url(model, "add")).status_code == 403
    assert admin_client.post(_url(model, "change", row.pk), {}).status_code == 403
    assert admin_client.post(_url(model, "delete", row.pk), {"post": "yes"}).status_code == 403
    assert model.objects.filter(pk=row.pk).exists()


def test_an_inbound_reply_can_only_be_reclassified(admin_client, worlds):
    inbound = worlds[0].inbound
    response = admin_client.post(
        _url(InboundMessage, "change", inbound.pk),
        {"classification": "out_of_office", "subject": "changed"},
    )
    assert response.status_code == 302
    inbound.refresh_from_db()
    assert (inbound.classification, inbound.subject) == ("out_of_office", "Re: Hello there")


def test_a_receipt_body_is_shown_as_text(admin_client, worlds):
    receipt = worlds[0].receipt
    response = admin_client.get(_url(WebhookReceipt, "change", receipt.pk))
    assert b"[{&quot;event&quot;: &quot;delivered&quot;}]" in response.content


def _identity_form(tenant, **overrides) -> dict:
    data = {
        "tenant": tenant.pk,
        "from_name": "Ann",
        "from_email": "Ann@Acme.example.com",
        "daily_cap": 100,
        "hourly_cap": 10,
        "warmup_start_volume": 20,
        "warmup_daily_increase": 10,
        "warmup_ceiling": 200,
        "window_days": "0,1,2,3,4",
        "window_start": "09:00",
        "window_end": "17:00",
        "timezone": "Europe/Berlin",
        "sms_per_second": "1",
        "sms_daily_cap": "200",
        "domain_status": "unverified",
    }
    return {**data, **overrides}


def test_a_sender_identity_added_in_the_admin_is_normalised(admin_client, tenant):
    response = admin_client.post(_url(SenderIdentity, "add"), _identity_form(tenant))
    assert response.status_code == 302, response.context["adminform"].form.errors
    identity = SenderIdentity.objects.get(tenant=tenant)
    assert identity.from_email == "ann@acme.example.com"
    assert identity.window_days == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    "overrides",
    [
        {"hourly_cap": 1000},
        {"window_start": "18:00"},
        {"timezone": "Mars/Base"},
        {"window_days": "1,1"},
        {"window_days": "7"},
        {"from_email": "nope"},
    ],
)
def test_bad_sender_identities_are_form_errors_not_500s(admin_client, tenant, overrides):
    response = admin_client.post(_url(SenderIdentity, "add"), _identity_form(tenant, **overrides))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors or response.context["errors"]
    assert not SenderIdentity.objects.exists()


def _action(admin_client, model, action: str, ids: list[int], reason: str):
    return admin_client.post(
        _url(model, "changelist"),
        {"action": action, "_selected_action": ids, "apply": "1", "reason": reason},
    )


def test_receipts_are_reprocessed_from_the_admin(admin_client, worlds, event_rows_cleanup):
    receipt = worlds[0].receipt
    response = _action(admin_client, WebhookReceipt, "reprocess_receipts", [receipt.pk], "fix")
    assert response.status_code == 302
    receipt.refresh_from_db()
    assert receipt.processed_at is not None and receipt.event_count == 1


def test_identities_are_paused_from_the_admin_and_audited(admin_client, worlds):
    from outreach.tenancy.models import AuditEntry

    identity = worlds[0].identity
    _action(admin_client, SenderIdentity, "pause_identities", [identity.pk], "bounces")
    identity.refresh_from_db()
    assert identity.paused is True
    entry = AuditEntry.objects.get(action="sender_identity.pause")
    assert (entry.actor, entry.reason) == ("admin:admin", "bounces")


def test_a_needs_review_message_is_resolved_from_the_admin(admin_client, worlds):
    from outreach.tenancy.models import AuditEntry

    message = worlds[0].message
    Message.objects.filter(pk=message.pk).update(status="needs_review", status_rank=1)
    _action(admin_client, Message, "resolve_review_sent", [message.pk], "seen in SendGrid")
    message.refresh_from_db()
    assert message.status == "accepted"
    assert AuditEntry.objects.get(action="message.review_sent").reason == "seen in SendGrid"
    # Not needs_review any more: refused with a message, nothing changes.
    response = _action(admin_client, Message, "resolve_review_not_sent", [message.pk], "oops")
    assert response.status_code == 302
    message.refresh_from_db()
    assert message.status == "accepted"


def test_reprocessing_from_the_admin_is_audited_with_its_reason(admin_client, worlds):
    from outreach.tenancy.models import AuditEntry

    receipt = worlds[0].receipt
    _action(admin_client, WebhookReceipt, "reprocess_receipts", [receipt.pk], "after fix #12")
    entry = AuditEntry.objects.get(action="webhook_receipt.reprocess")
    assert (entry.actor, entry.reason, entry.target_id, entry.tenant_id) == (
        "admin:admin",
        "after fix #12",
        str(receipt.pk),
        receipt.tenant_id,
    )
    assert entry.after == {"outcome": "processed"}
