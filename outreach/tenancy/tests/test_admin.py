"""Tenant admin: secrets never shown, keys replaced encrypted; every tenancy page loads."""

import datetime
import re

import pytest
from django.apps import apps as django_apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign
from messaging.models import Message, SenderIdentity, WebhookReceipt
from outreach.common.crypto import secret_decrypt
from outreach.tenancy import controls
from outreach.tenancy.models import AuditEntry, KillSwitch, Tenant, TenantAlert, TenantAPIKey
from outreach.tenancy.services import sendgrid_key_fields
from outreach.testing.world import world_build

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _tenant_form(tenant: Tenant, **overrides) -> dict:
    data = {
        "name": tenant.name,
        "slug": tenant.slug,
        "status": tenant.status,
        "campaigns_enabled": "on",
        "event_branching_enabled": "on",
        "analytics_enabled": "on",
        "inbound_enabled": "on",
        "daily_send_quota": tenant.daily_send_quota,
        "open_tracking": "on",
        "click_tracking": "on",
        "postal_address": "1 Main St",
        "webhook_public_key": "",
        "new_sendgrid_api_key": "",
    }
    return {**data, **overrides}


@pytest.mark.parametrize("model", [Tenant, TenantAPIKey, TenantAlert], ids=lambda m: m.__name__)
def test_changelists_and_change_pages_load_with_rows(
    admin_client, tenant, other_tenant, api_client_for, model
):
    world_build(tenant=tenant)
    world_build(tenant=other_tenant)
    api_client_for(tenant)
    api_client_for(other_tenant)
    response = admin_client.get(_url(model, "changelist"))
    assert response.status_code == 200
    assert response.context["cl"].result_count == 2
    if model is not Tenant:
        response = admin_client.get(_url(model, "changelist"), {"tenant__id__exact": tenant.pk})
        assert [row.tenant_id for row in response.context["cl"].result_list] == [tenant.pk]
    row = model.objects.first()
    assert admin_client.get(_url(model, "change", row.pk)).status_code == 200


def test_the_stored_sendgrid_key_is_never_displayed_only_its_last_four(admin_client, tenant):
    secret = "SG.very-secret-key-ABCD"
    Tenant.objects.filter(pk=tenant.pk).update(**sendgrid_key_fields(api_key=secret))
    tenant.refresh_from_db()
    for url in (_url(Tenant, "changelist"), _url(Tenant, "change", tenant.pk)):
        content = admin_client.get(url).content.decode()
        assert "ABCD" in content
        assert secret not in content
        assert tenant.sendgrid_api_key_encrypted not in content


def test_a_new_sendgrid_key_is_stored_encrypted_and_an_empty_one_keeps_the_old(
    admin_client, tenant
):
    change = _url(Tenant, "change", tenant.pk)
    response = admin_client.post(change, _tenant_form(tenant, new_sendgrid_api_key="SG.new-WXYZ"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    tenant.refresh_from_db()
    assert tenant.sendgrid_api_key_last4 == "WXYZ"
    assert secret_decrypt(token=tenant.sendgrid_api_key_encrypted) == "SG.new-WXYZ"

    assert (
        admin_client.post(change, _tenant_form(tenant, postal_address="2 Main St")).status_code
        == 302
    )
    tenant.refresh_from_db()
    assert secret_decrypt(token=tenant.sendgrid_api_key_encrypted) == "SG.new-WXYZ"
    assert tenant.postal_address == "2 Main St"

    admin_client.post(change, _tenant_form(tenant, clear_sendgrid_api_key="on"))
    tenant.refresh_from_db()
    assert (tenant.sendgrid_api_key_encrypted, tenant.sendgrid_api_key_last4) == ("", "")


def test_the_sms_help_text_is_set_in_the_tenant_form_and_answers_help(
    admin_client, tenant, settings
):
    from urllib.parse import urlencode

    from messaging.emulator.twilio import signature_compute

    change = _url(Tenant, "change", tenant.pk)
    page = admin_client.get(change)
    assert "sms_help_text" in page.context["adminform"].form.fields
    assert "SMS" in [name for name, _ in page.context["adminform"].fieldsets]

    help_text = "Acme sales texts. Questions: 555-0100. Reply STOP to opt out."
    response = admin_client.post(change, _tenant_form(tenant, sms_help_text=help_text))
    assert response.status_code == 302, response.context["adminform"].form.errors
    tenant.refresh_from_db()
    assert tenant.sms_help_text == help_text

    # A person texts HELP: the answer is that text (signed like Twilio, with the default
    # emulator token the app uses when no Twilio account is set).
    settings.PUBLIC_BASE_URL = "http://testserver"
    path = f"/webhooks/twilio/inbound/{tenant.public_id}/"
    params = {"MessageSid": "SM" + "1" * 32, "From": "+15551230100", "To": "+15550001000"}
    params["Body"] = "HELP"
    signature = signature_compute(
        auth_token=settings.TWILIO_AUTH_TOKEN, url=f"http://testserver{path}", params=params
    )
    answer = admin_client.post(
        path,
        data=urlencode(params),
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": signature},
    )
    assert answer.status_code == 200
    assert f"<Message>{help_text}</Message>".encode() in answer.content

    too_long = admin_client.post(change, _tenant_form(tenant, sms_help_text="x" * 321))
    assert "sms_help_text" in too_long.context["adminform"].form.errors
    tenant.refresh_from_db()
    assert tenant.sms_help_text == help_text


def test_a_bad_webhook_key_is_a_form_error(admin_client, tenant):
    response = admin_client.post(
        _url(Tenant, "change", tenant.pk), _tenant_form(tenant, webhook_public_key="garbage")
    )
    assert response.status_code == 200
    assert "webhook_public_key" in response.context["adminform"].form.errors


def test_adding_an_api_key_shows_it_once(admin_client, tenant):
    response = admin_client.post(
        _url(TenantAPIKey, "add"), {"name": "crm", "tenant": tenant.pk}, follow=True
    )
    assert response.status_code == 200
    api_key = TenantAPIKey.objects.get(tenant=tenant, name="crm")
    shown = [str(m) for m in response.context["messages"]]
    assert any(api_key.prefix in m and "will not be able to see it again" in m for m in shown)


@pytest.mark.parametrize("model", [AuditEntry, KillSwitch], ids=lambda m: m.__name__)
def test_the_audit_log_and_kill_switch_pages_load_and_are_read_only(
    admin_client, tenant, other_tenant, model
):
    world_build(tenant=tenant)
    world_build(tenant=other_tenant)
    response = admin_client.get(_url(model, "changelist"))
    assert response.status_code == 200
    row = model.objects.first()
    page = admin_client.get(_url(model, "change", row.pk))
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert admin_client.get(_url(model, "add")).status_code == 403
    assert admin_client.post(_url(model, "delete", row.pk), {"post": "yes"}).status_code == 403


PROJECT_APPS = ("tenancy", "campaigns", "messaging", "suppression", "analytics")
# The project's models deliberately kept out of the admin, and why. Each is bookkeeping of
# the analytics pipeline that nobody acts on row by row; its figures are read through the
# dashboard and the analytics API, and its freshness through FillState (which is here).
_DERIVED = "derived counts, rebuilt from the ledger by analytics_refresh and analytics_recount"
_QUEUE = "a queue written by triggers and emptied by analytics_refresh within seconds"
NOT_IN_ADMIN = {
    "analytics.HourlyRollup": _DERIVED,
    "analytics.JourneyCount": _DERIVED,
    "analytics.HourlyDelta": _QUEUE,
    "analytics.JourneyDelta": _QUEUE,
    "analytics.MessageFirst": "first-of-kind marks the triggers keep so a second open or "
    "click is not counted as unique; the message's own events are in the admin",
    "analytics.CampaignDailyStats": "a materialized view of the rollups (the dashboard's)",
    "analytics.TenantDailyStats": "a materialized view of the rollups (the dashboard's)",
    "analytics.SenderDailyStats": "a materialized view of the rollups (the dashboard's)",
}


def test_every_project_model_is_in_the_admin_with_filters_and_search():
    """Walks the models, not the admin's registry: a new model left out of the admin fails
    here until it is registered or listed in NOT_IN_ADMIN with its reason."""
    models = [m for app in PROJECT_APPS for m in django_apps.get_app_config(app).get_models()]
    problems = []
    for model in models:
        label, model_admin = model._meta.label, admin.site._registry.get(model)
        if label in NOT_IN_ADMIN:
            if model_admin is not None:
                problems.append(f"{label}: in the admin, but listed in NOT_IN_ADMIN")
        elif model_admin is None:
            problems.append(f"{label}: not in the admin")
        elif not model_admin.list_filter:
            problems.append(f"{label}: no list filters")
        elif not model_admin.search_fields:
            problems.append(f"{label}: no search")
    assert not problems, problems
    assert set(NOT_IN_ADMIN) <= {model._meta.label for model in models}, "stale exclusions"


def _action(admin_client, model, action: str, ids: list[int], reason: str | None):
    data = {"action": action, "_selected_action": ids}
    if reason is not None:
        data.update({"apply": "1", "reason": reason})
    return admin_client.post(_url(model, "changelist"), data)


def test_pausing_tenants_in_the_admin_asks_why_then_audits(admin_client, tenant):
    page = _action(admin_client, Tenant, "pause_tenants", [tenant.pk], None)
    assert page.status_code == 200
    assert b'name="reason"' in page.content
    assert Tenant.objects.get(pk=tenant.pk).status == "active"
    refused = _action(admin_client, Tenant, "pause_tenants", [tenant.pk], "  ")
    assert b"Say why" in refused.content
    done = _action(admin_client, Tenant, "pause_tenants", [tenant.pk], "customer asked")
    assert done.status_code == 302
    assert Tenant.objects.get(pk=tenant.pk).status == "paused"
    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.action, entry.reason) == (
        "admin:admin",
        "tenant.pause",
        "customer asked",
    )
    _action(admin_client, Tenant, "resume_tenants", [tenant.pk], "done")
    assert Tenant.objects.get(pk=tenant.pk).status == "active"


def test_the_kill_switch_is_engaged_from_the_admin_with_a_reason(admin_client):
    admin_client.get(_url(KillSwitch, "changelist"))  # the three channels exist from here on
    switch = KillSwitch.objects.get(channel="all")
    _action(admin_client, KillSwitch, "engage_kill_switch", [switch.pk], "provider incident")
    switch.refresh_from_db()
    assert (switch.engaged, switch.reason, switch.changed_by) == (
        True,
        "provider incident",
        "admin:admin",
    )
    assert AuditEntry.objects.get().action == "kill_switch.engage"


def test_changing_controls_in_the_tenant_form_needs_a_reason_and_is_audited(admin_client, tenant):
    change = _url(Tenant, "change", tenant.pk)
    refused = admin_client.post(change, _tenant_form(tenant, lead_quota=100))
    assert refused.status_code == 200
    assert "change_reason" in refused.context["adminform"].form.errors
    done = admin_client.post(change, _tenant_form(tenant, lead_quota=100, change_reason="plan"))
    assert done.status_code == 302, done.context["adminform"].form.errors
    tenant.refresh_from_db()
    assert tenant.lead_quota == 100
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.before, entry.after, entry.reason) == (
        "tenant.quotas",
        {"lead_quota": None},
        {"lead_quota": 100},
        "plan",
    )


def test_the_tenant_health_page_shows_the_figures(admin_client, tenant):
    world_build(tenant=tenant)
    page = admin_client.get(reverse("admin:tenancy_tenant_health", args=[tenant.pk]))
    assert page.status_code == 200
    text = page.content.decode()
    for label in (
        "Sent today (UTC) / daily quota",
        "Bounce rate",
        "Unprocessed receipts",
        "needs_review",
        "Latest control changes",
    ):
        assert label in text
    assert admin_client.get(reverse("admin:tenancy_tenant_health", args=[99999])).status_code == 404


def test_the_tenant_health_page_counts_the_backlog_and_the_unknown_outcomes(
    admin_client, tenant, other_tenant, settings
):
    settings.SEND_RECONCILE_GRACE_SECONDS = 15 * 60
    now = timezone.now()
    world = world_build(tenant=tenant)
    # The other tenant's backlog and stuck sends are not this tenant's.
    theirs = world_build(tenant=other_tenant)
    Message.objects.filter(pk=theirs.message.pk).update(
        status="sending", status_rank=0, updated_at=now - datetime.timedelta(hours=1)
    )
    WebhookReceipt.objects.filter(pk=theirs.receipt.pk).update(
        received_at=now - datetime.timedelta(hours=2)
    )

    def message(status: str, minutes_ago: int) -> None:
        """Another attempt of the world's step, left in ``status`` since ``minutes_ago``."""
        sent = world.message
        row = Message.objects.create(
            tenant=tenant,
            sender_identity=sent.sender_identity,
            enrollment=sent.enrollment,
            lead=sent.lead,
            campaign=sent.campaign,
            plan_version=sent.plan_version,
            step=sent.step,
            step_seq=sent.step_seq,
            attempt=Message.objects.filter(enrollment=sent.enrollment).count() + 1,
            to_email=sent.to_email,
            subject=sent.subject,
        )
        Message.objects.filter(pk=row.pk).update(
            status=status,
            status_rank=int(status == "needs_review"),
            updated_at=now - datetime.timedelta(minutes=minutes_ago),
        )

    message("sending", 10)
    message("sending", 1)  # not stuck yet
    message("sending", 20)  # past the reconcile grace too
    message("needs_review", 30)
    message("needs_review", 0)

    def receipt(minutes_ago: int, processed: bool) -> None:
        row = WebhookReceipt.objects.create(tenant=tenant, kind="events", body=b"[]")
        WebhookReceipt.objects.filter(pk=row.pk).update(
            received_at=now - datetime.timedelta(minutes=minutes_ago),
            processed_at=now if processed else None,
        )

    # The world's own receipt (received now, unprocessed) and:
    receipt(10, processed=False)
    receipt(60, processed=True)
    receipt(0, processed=True)

    page = admin_client.get(reverse("admin:tenancy_tenant_health", args=[tenant.pk]))
    assert page.status_code == 200
    health = page.context["health"]
    events = health["webhooks"]["events"]
    assert events["unprocessed"] == 2
    assert 600 <= events["oldest_age_seconds"] < 660
    assert health["webhooks"]["inbound"]["unprocessed"] == 0
    assert health["messages"] == {
        "sending_over_5_minutes": 2,
        "sending_past_reconcile_grace": 1,
        "needs_review": 2,
    }
    # And what the operator reads on the page itself.
    text = page.content.decode()
    row = re.search(
        r'<tr><td>events</td><td class="bad">(\d+)</td>\s*<td>[^<]+</td><td>(\d+)</td></tr>', text
    )
    assert row, text
    assert int(row[1]) == 2 and 600 <= int(row[2]) < 660
    assert re.search(r'after 5 minutes</th><td class="bad">2</td>', text)
    assert re.search(r'15-minute reconcile grace</th><td class="bad">1</td>', text)
    assert re.search(r'status__exact=needs_review">2</a>', text)


# --- who may act: a staff user who may only look changes nothing ------------------------------

# action → (model, the permission it needs besides seeing the list)
ACTIONS = {
    "pause_tenants": (Tenant, "tenancy.operate_controls"),
    "resume_tenants": (Tenant, "tenancy.operate_controls"),
    "engage_kill_switch": (KillSwitch, "tenancy.operate_killswitch"),
    "release_kill_switch": (KillSwitch, "tenancy.operate_killswitch"),
    "resolve_review_sent": (Message, "messaging.resolve_review"),
    "resolve_review_not_sent": (Message, "messaging.resolve_review"),
    "reprocess_receipts": (WebhookReceipt, "messaging.reprocess_receipt"),
    "pause_identities": (SenderIdentity, "messaging.change_senderidentity"),
    "resume_identities": (SenderIdentity, "messaging.change_senderidentity"),
    "pause_campaigns": (Campaign, "campaigns.change_campaign"),
    "resume_campaigns": (Campaign, "campaigns.change_campaign"),
}


def _staff_client(client, *permissions: str):
    user = get_user_model().objects.create_user("viewer", "viewer@example.com", "pw", is_staff=True)
    for model in {model for model, _ in ACTIONS.values()}:
        codename = f"view_{model._meta.model_name}"
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=model._meta.app_label, codename=codename)
        )
    for permission in permissions:
        app_label, codename = permission.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client.force_login(user)
    return client


def _state(world) -> dict:
    world.tenant.refresh_from_db()
    return {
        "tenant": world.tenant.status,
        "switches": list(KillSwitch.objects.filter(engaged=True).values_list("channel", flat=True)),
        "message": Message.objects.get(pk=world.message.pk).status,
        "receipt": WebhookReceipt.objects.get(pk=world.receipt.pk).processed_at,
        "identity": SenderIdentity.objects.get(pk=world.identity.pk).paused,
        "campaign": Campaign.objects.get(pk=world.campaign.pk).status,
        "audit": AuditEntry.objects.count(),
    }


def _target(world, model):
    if model is KillSwitch:
        return KillSwitch.objects.get_or_create(channel="all")[0].pk
    attribute = {Tenant: "tenant", WebhookReceipt: "receipt", SenderIdentity: "identity"}
    return getattr(world, attribute.get(model, model._meta.model_name)).pk


@pytest.mark.parametrize("action", list(ACTIONS))
def test_a_view_only_staff_user_cannot_run_control_actions(client, tenant, action):
    world = world_build(tenant=tenant)
    Message.objects.filter(pk=world.message.pk).update(status="needs_review", status_rank=1)
    KillSwitch.objects.filter(channel="all").update(engaged=True, reason="incident")
    model, permission = ACTIONS[action]
    viewer = _staff_client(client)
    page = viewer.get(_url(model, "changelist"))
    assert page.status_code == 200
    assert f'value="{action}"' not in page.content.decode()
    before = _state(world)
    response = _action(viewer, model, action, [_target(world, model)], "trying")
    assert response.status_code in (200, 302)
    assert _state(world) == before
    # Given the action's permission, the same user is offered it.
    app_label, codename = permission.split(".")
    user = get_user_model().objects.get(username="viewer")
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label=app_label, codename=codename)
    )
    assert f'value="{action}"' in viewer.get(_url(model, "changelist")).content.decode()


def test_with_the_permission_a_staff_user_runs_the_action(client, tenant):
    world = world_build(tenant=tenant)
    viewer = _staff_client(client, "tenancy.operate_controls", "tenancy.operate_killswitch")
    assert 'value="pause_tenants"' in viewer.get(_url(Tenant, "changelist")).content.decode()
    _action(viewer, Tenant, "pause_tenants", [tenant.pk], "abuse report")
    _action(viewer, KillSwitch, "engage_kill_switch", [_target(world, KillSwitch)], "incident")
    assert _state(world)["tenant"] == "paused"
    assert _state(world)["switches"] == ["all"]


def test_without_operate_controls_the_tenant_form_shows_the_controls_read_only(client, tenant):
    user = get_user_model().objects.create_user("editor", "e@example.com", "pw", is_staff=True)
    for codename in ("view_tenant", "change_tenant"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(user)
    change = _url(Tenant, "change", tenant.pk)
    response = client.post(
        change, _tenant_form(tenant, status="paused", lead_quota=5, change_reason="sneaky")
    )
    assert response.status_code == 302
    tenant.refresh_from_db()
    assert (tenant.status, tenant.lead_quota) == ("active", None)
    assert not AuditEntry.objects.exists()


# --- the tenant form never undoes a control change made meanwhile -----------------------------


def test_saving_the_tenant_form_keeps_a_pause_made_while_it_was_saved(rf, admin_user, tenant):
    """The API pauses between the change view loading the tenant and saving it."""
    model_admin = admin.site._registry[Tenant]
    request = rf.post("/")
    request.user = admin_user
    loaded = Tenant.objects.get(pk=tenant.pk)
    form = model_admin.get_form(request, loaded)(
        data=_tenant_form(tenant, name="Renamed"), instance=loaded
    )
    assert form.is_valid(), form.errors
    controls.tenant_pause(tenant_id=tenant.pk, actor="api-key:abc", by="tenant")
    model_admin.save_model(request, form.save(commit=False), form, change=True)
    tenant.refresh_from_db()
    assert (tenant.name, tenant.status, tenant.paused_by) == ("Renamed", "paused", "tenant")


def test_a_form_loaded_before_a_pause_does_not_resume_it_on_save(admin_client, tenant):
    change = _url(Tenant, "change", tenant.pk)
    page = admin_client.get(change).content.decode()
    # What the browser sends back: the values shown, and (hidden) the values loaded.
    shown = dict(re.findall(r'name="(initial-[\w]+)" value="([^"]*)"', page))
    controls.tenant_pause(tenant_id=tenant.pk, actor="api-key:abc", reason="ours", by="tenant")
    response = admin_client.post(
        change, {**_tenant_form(tenant, lead_quota=50, change_reason="more leads"), **shown}
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    tenant.refresh_from_db()
    assert (tenant.status, tenant.lead_quota) == ("paused", 50)
    assert list(AuditEntry.objects.order_by("id").values_list("action", "actor")) == [
        ("tenant.pause", "api-key:abc"),
        ("tenant.quotas", "admin:admin"),
    ]


def test_a_reason_action_over_too_many_rows_is_refused(admin_client, tenant, monkeypatch):
    """'Select all' on a table of millions would page through them all, one audited change
    at a time: above the bound, the action asks to narrow the list first."""
    from outreach.common import admin_utils
    from outreach.testing.factories import TenantFactory

    monkeypatch.setattr(admin_utils, "REASON_ACTION_MAX_ROWS", 2)
    TenantFactory.create_batch(2)
    data = {
        "action": "pause_tenants",
        "_selected_action": [tenant.pk],
        "select_across": "1",
        "apply": "1",
        "reason": "everyone",
    }
    response = admin_client.post(_url(Tenant, "changelist"), data, follow=True)
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    assert any("more than 2 rows" in m for m in shown), shown
    assert not Tenant.objects.filter(status="paused").exists()
    assert not AuditEntry.objects.exists()
    # Within the bound it goes on as usual.
    data.update(select_across="0", _selected_action=[tenant.pk])
    admin_client.post(_url(Tenant, "changelist"), data)
    assert list(Tenant.objects.filter(status="paused")) == [tenant]
