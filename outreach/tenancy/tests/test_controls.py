"""Tenant controls through the API and the services: pause and resume, the audit log
(append-only, even for the ORM), feature flags and quotas, with bad input refused clearly."""

import pytest
from django.db import DatabaseError, transaction

from campaigns.models import Campaign, Lead
from outreach.tenancy import controls, flags
from outreach.tenancy.models import AuditEntry, KillSwitch, Tenant
from outreach.testing.factories import LeadFactory, SenderIdentityFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_caches():
    flags.tenant_flags_cache_clear()
    controls.kill_switches_cache_clear()
    yield
    flags.tenant_flags_cache_clear()
    controls.kill_switches_cache_clear()


# --- the audit log ----------------------------------------------------------------------------


def test_an_audit_entry_cannot_be_changed_or_deleted_even_by_the_orm(tenant):
    entry = controls.tenant_pause(tenant_id=tenant.pk, actor="cli:ops", reason="test")
    entry = AuditEntry.objects.get(tenant=tenant)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(reason="rewritten")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        entry.delete()
    entry.refresh_from_db()
    assert entry.reason == "test"


def test_pause_and_resume_through_the_api_are_audited_with_who_and_why(api, tenant):
    response = api.post("/api/v1/tenant/pause/", {"reason": "customer asked"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "paused"
    assert response.json()["sending_stopped_because"] == "tenant paused"
    api.post("/api/v1/tenant/pause/", {}, format="json")  # repeating is a no-op: no entry
    assert api.post("/api/v1/tenant/resume/").json()["status"] == "active"

    entries = api.get("/api/v1/audit-log/").json()["results"]
    assert [e["action"] for e in entries] == ["tenant.resume", "tenant.pause"]
    pause = entries[1]
    assert pause["actor"].startswith("api-key:")
    assert pause["reason"] == "customer asked"
    assert (pause["before"], pause["after"]) == (
        {"status": "active", "paused_by": ""},
        {"status": "paused", "paused_by": "tenant"},
    )
    assert api.get(f"/api/v1/audit-log/{pause['id']}/").json()["id"] == pause["id"]
    filtered = api.get("/api/v1/audit-log/", {"action": "tenant.pause"}).json()["results"]
    assert [e["id"] for e in filtered] == [pause["id"]]


def test_a_tenant_cannot_resume_a_pause_the_operator_made(api, tenant):
    controls.tenant_pause(tenant_id=tenant.pk, actor="cli:ops", reason="abuse report #7")

    response = api.post("/api/v1/tenant/resume/", {"reason": "we want to send"}, format="json")
    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert error["code"] == "paused_by_operator"
    assert "paused by the platform operator" in error["message"]
    tenant.refresh_from_db()
    assert (tenant.status, tenant.paused_by) == ("paused", "operator")
    # Pausing again does not make the operator's pause the tenant's own.
    assert api.post("/api/v1/tenant/pause/").json()["paused_by"] == "operator"
    assert api.post("/api/v1/tenant/resume/").status_code == 409

    controls.tenant_resume(tenant_id=tenant.pk, actor="cli:ops", reason="resolved")
    assert api.get("/api/v1/tenant/").json()["paused_by"] == ""
    # Its own pause, the tenant may lift; an operator's pause on top of it takes it over.
    assert api.post("/api/v1/tenant/pause/").json()["paused_by"] == "tenant"
    assert api.post("/api/v1/tenant/resume/").json()["status"] == "active"
    api.post("/api/v1/tenant/pause/")
    controls.tenant_pause(tenant_id=tenant.pk, actor="admin:ops", reason="taking over")
    assert api.post("/api/v1/tenant/resume/").status_code == 409
    actions = list(
        AuditEntry.objects.filter(tenant=tenant).order_by("id").values_list("action", flat=True)
    )
    # The last: the tenant's own pause, then the operator's taking it over.
    assert actions == [*["tenant.pause", "tenant.resume"] * 2, "tenant.pause", "tenant.pause"]


def test_another_tenants_audit_entries_are_invisible(api_client_for, tenant, other_tenant):
    controls.tenant_pause(tenant_id=other_tenant.pk, actor="cli:ops", reason="theirs")
    controls.kill_switch_set(channel="all", engaged=True, actor="cli:ops", reason="platform")
    theirs = AuditEntry.objects.get(tenant=other_tenant)
    as_tenant = api_client_for(tenant)
    assert as_tenant.get("/api/v1/audit-log/").json()["results"] == []
    assert as_tenant.get(f"/api/v1/audit-log/{theirs.pk}/").status_code == 404
    platform = AuditEntry.objects.get(tenant__isnull=True)
    assert as_tenant.get(f"/api/v1/audit-log/{platform.pk}/").status_code == 404


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/api/v1/tenant/pause/", {"reason": 5}, "reason"),
        ("/api/v1/tenant/pause/", {"reason": "x" * 2001}, "reason"),
        ("/api/v1/tenant/resume/", {"why": "typo"}, "why"),
        ("/api/v1/tenant/pause/", ["not", "an", "object"], "non_field_errors"),
    ],
)
def test_a_bad_control_body_is_a_400_naming_the_field_and_changes_nothing(
    api, tenant, url, body, field
):
    response = api.post(url, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    tenant.refresh_from_db()
    assert tenant.status == "active"
    assert not AuditEntry.objects.exists()


def test_bad_audit_filters_are_a_400(api):
    response = api.get("/api/v1/audit-log/", {"colour": "red"})
    assert response.status_code == 400
    assert "colour" in response.json()["error"]["fields"]


def test_the_controls_show_flags_quotas_usage_and_the_kill_switches(api, tenant):
    LeadFactory(tenant=tenant)
    controls.kill_switch_set(channel="email", engaged=True, actor="cli:ops", reason="incident")
    body = api.get("/api/v1/tenant/").json()
    assert body["flags"]["campaigns"] is True and body["flags"]["sms"] is False
    assert body["quotas"] == {"daily_send_quota": 10000, "lead_quota": None, "campaign_quota": None}
    assert body["usage"]["leads"] == 1
    assert body["kill_switches"]["email"] == {"engaged": True, "reason": "incident"}
    assert body["sending_stopped_because"] == "kill switch engaged (email)"


def test_the_health_endpoint_answers_for_the_caller(api, tenant):
    SenderIdentityFactory(tenant=tenant)
    body = api.get("/api/v1/tenant/health/").json()
    assert body["id"] == tenant.pk
    assert len(body["sender_identities"]) == 1
    assert set(body["webhooks"]) == {"events", "inbound", "sms_status", "sms_inbound"}
    assert body["messages"] == {
        "sending_over_5_minutes": 0,
        "sending_past_reconcile_grace": 0,
        "needs_review": 0,
    }


def test_identity_pause_and_resume_endpoints_are_audited(api, tenant):
    identity = SenderIdentityFactory(tenant=tenant)
    url = f"/api/v1/sender-identities/{identity.pk}/"
    assert api.post(url + "pause/", {"reason": "bounces"}, format="json").json()["paused"] is True
    assert api.post(url + "resume/").json()["paused"] is False
    assert api.patch(url, {"paused": True}, format="json").status_code == 200
    actions = [e.action for e in AuditEntry.objects.filter(target_id=str(identity.pk))]
    assert actions == ["sender_identity.pause", "sender_identity.resume", "sender_identity.pause"]


# --- services: validation, no-ops -------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"status": "sleeping"}, "status"),
        ({"sms_enabled": "yes"}, "sms_enabled"),
        ({"lead_quota": -1}, "lead_quota"),
        ({"daily_send_quota": None}, "daily_send_quota"),
        ({"name": "Renamed"}, "name"),
    ],
)
def test_bad_control_changes_are_refused_naming_the_field(tenant, changes, field):
    from outreach.common.errors import ApplicationError

    with pytest.raises(ApplicationError) as refused:
        controls.tenant_controls_update(
            tenant_id=tenant.pk, changes=changes, actor="cli:ops", reason="x"
        )
    assert field in refused.value.extra
    assert not AuditEntry.objects.exists()


def test_the_kill_switch_needs_a_reason_and_a_known_channel():
    from outreach.common.errors import ApplicationError

    with pytest.raises(ApplicationError, match="reason"):
        controls.kill_switch_set(channel="all", engaged=True, actor="cli:ops", reason=" ")
    with pytest.raises(ApplicationError, match="channel"):
        controls.kill_switch_set(channel="fax", engaged=True, actor="cli:ops", reason="x")
    assert not KillSwitch.objects.filter(engaged=True).exists()


def test_a_flag_change_is_seen_at_once_in_this_process_and_audited(tenant):
    assert flags.tenant_flag_enabled(tenant_id=tenant.pk, flag=flags.Flag.ANALYTICS)
    controls.tenant_controls_update(
        tenant_id=tenant.pk, changes={"analytics_enabled": False}, actor="cli:ops", reason="x"
    )
    assert not flags.tenant_flag_enabled(tenant_id=tenant.pk, flag=flags.Flag.ANALYTICS)
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.before, entry.after) == (
        "tenant.flags",
        {"analytics_enabled": True},
        {"analytics_enabled": False},
    )


def test_flags_are_cached_briefly(tenant, settings):
    settings.FEATURE_FLAGS_CACHE_SECONDS = 60
    assert flags.tenant_flags_get(tenant_id=tenant.pk).sms is False
    Tenant.objects.filter(pk=tenant.pk).update(sms_enabled=True)  # behind the cache's back
    assert flags.tenant_flags_get(tenant_id=tenant.pk).sms is False
    flags.tenant_flags_cache_clear(tenant_id=tenant.pk)
    assert flags.tenant_flags_get(tenant_id=tenant.pk).sms is True


# --- flags disable their paths ------------------------------------------------------------------


def test_with_analytics_off_the_analytics_api_answers_403(api, tenant):
    assert api.get("/api/v1/analytics/tenant/").status_code == 200
    controls.tenant_controls_update(
        tenant_id=tenant.pk, changes={"analytics_enabled": False}, actor="cli:ops", reason="x"
    )
    response = api.get("/api/v1/analytics/tenant/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "feature_disabled"


def test_with_sms_off_a_plan_with_an_sms_step_is_refused_and_on_it_is_accepted(api, tenant):
    identity = SenderIdentityFactory(tenant=tenant)
    campaign = api.post(
        "/api/v1/campaigns/", {"name": "C", "sender_identity_id": identity.pk}, format="json"
    ).json()
    plan = {
        "start": "text",
        "steps": {
            "text": {"type": "sms", "body": "Hi {{ lead.first_name }}", "next": "done"},
            "done": {"type": "end", "outcome": "texted"},
        },
    }
    url = f"/api/v1/campaigns/{campaign['id']}/versions/validate/"
    refused = api.post(url, {"plan": plan}, format="json")
    assert refused.status_code == 400
    assert refused.json()["error"]["fields"] == {
        "/steps/text/type": ["sms steps are not enabled yet"]
    }
    controls.tenant_controls_update(
        tenant_id=tenant.pk, changes={"sms_enabled": True}, actor="cli:ops", reason="x"
    )
    assert api.post(url, {"plan": plan}, format="json").status_code == 200


# --- quotas -----------------------------------------------------------------------------------


def test_a_lead_over_the_quota_is_a_429_and_is_not_stored(api, tenant):
    Tenant.objects.filter(pk=tenant.pk).update(lead_quota=2)
    for n in range(2):
        assert (
            api.post("/api/v1/leads/", {"email": f"q{n}@example.com"}, format="json").status_code
            == 201
        )
    response = api.post("/api/v1/leads/", {"email": "q3@example.com"}, format="json")
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert "may hold 2 leads" in error["message"]
    assert Lead.objects.filter(tenant=tenant).count() == 2


def test_a_bulk_create_over_the_lead_quota_stores_nothing(api, tenant):
    Tenant.objects.filter(pk=tenant.pk).update(lead_quota=3)
    LeadFactory(tenant=tenant, email="old@example.com")
    items = [{"email": "old@example.com"}] + [{"email": f"b{n}@example.com"} for n in range(3)]
    response = api.post("/api/v1/leads/bulk/", {"items": items}, format="json")
    assert response.status_code == 429
    assert "would add 3" in response.json()["error"]["message"]
    assert Lead.objects.filter(tenant=tenant).count() == 1
    # Within the quota (the existing address is a skip, not a new lead), it goes through.
    response = api.post("/api/v1/leads/bulk/", {"items": items[:3]}, format="json")
    assert response.json()["created_count"] == 2


def test_a_campaign_over_the_quota_is_a_429(api, tenant):
    Tenant.objects.filter(pk=tenant.pk).update(campaign_quota=1)
    identity = SenderIdentityFactory(tenant=tenant)
    body = {"name": "C", "sender_identity_id": identity.pk}
    assert api.post("/api/v1/campaigns/", body, format="json").status_code == 201
    response = api.post("/api/v1/campaigns/", body, format="json")
    assert response.status_code == 429
    assert Campaign.objects.filter(tenant=tenant).count() == 1


def test_another_tenants_leads_do_not_count_against_the_quota(api, tenant, other_tenant):
    Tenant.objects.filter(pk=tenant.pk).update(lead_quota=1)
    LeadFactory(tenant=other_tenant)
    LeadFactory(tenant=other_tenant)
    assert (
        api.post("/api/v1/leads/", {"email": "mine@example.com"}, format="json").status_code == 201
    )
