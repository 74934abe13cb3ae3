"""Campaign admin pages load with data present, and leads edited there are normalised."""

import pytest
from django.urls import reverse

from campaigns.models import (
    Campaign,
    CampaignPlanVersion,
    Enrollment,
    EnrollmentTransition,
    Lead,
    ScheduledAction,
)
from outreach.testing.world import world_build

pytestmark = pytest.mark.django_db

MODELS = [Lead, Campaign, CampaignPlanVersion, Enrollment, EnrollmentTransition, ScheduledAction]


def _url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # The admin_user fixture hashes a password; the production hasher costs seconds here.
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
    response = admin_client.get(
        _url(model, "changelist"), {"tenant__id__exact": tenant.pk, "q": "x"}
    )
    assert response.status_code == 200
    response = admin_client.get(_url(model, "changelist"), {"tenant__id__exact": tenant.pk})
    assert [obj.tenant_id for obj in response.context["cl"].result_list] == [tenant.pk]


@pytest.mark.parametrize(
    "model", [CampaignPlanVersion, Enrollment, EnrollmentTransition, ScheduledAction]
)
def test_engine_state_is_read_only_in_the_admin(admin_client, worlds, model):
    row = model.objects.filter(tenant=worlds[0].tenant).first()
    assert admin_client.get(_url(model, "add")).status_code == 403
    assert admin_client.post(_url(model, "change", row.pk), {}).status_code == 403


def test_a_lead_added_in_the_admin_is_normalised_and_validated(admin_client, tenant):
    response = admin_client.post(
        _url(Lead, "add"),
        {
            "tenant": tenant.pk,
            "email": "Info@Example.COM",
            "country": "de",
            "phone": "+49 30 1234567",
            "timezone": "Europe/Berlin",
            "custom_fields": "{}",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    lead = Lead.objects.get(tenant=tenant)
    assert (lead.email, lead.country, lead.phone) == ("info@example.com", "DE", "+49301234567")
    assert (lead.validation_status, lead.is_role_address) == ("risky", True)


def test_a_bad_or_duplicate_lead_in_the_admin_is_a_form_error_not_a_500(admin_client, tenant):
    Lead.objects.create(tenant=tenant, email="jane@example.com")
    for email, phone in (("not-an-email", ""), ("JANE@example.com", ""), ("b@example.com", "12")):
        response = admin_client.post(
            _url(Lead, "add"),
            {"tenant": tenant.pk, "email": email, "phone": phone, "custom_fields": "{}"},
        )
        assert response.status_code == 200
        assert response.context["adminform"].form.errors
    assert Lead.objects.count() == 1


def test_campaigns_are_paused_and_resumed_from_the_admin_and_audited(admin_client, tenant):
    from campaigns.models import Campaign
    from outreach.tenancy.models import AuditEntry
    from outreach.testing.world import world_build

    campaign = world_build(tenant=tenant).campaign
    url = reverse("admin:campaigns_campaign_changelist")
    for action, status in (("pause_campaigns", "paused"), ("resume_campaigns", "active")):
        response = admin_client.post(
            url,
            {"action": action, "_selected_action": [campaign.pk], "apply": "1", "reason": "r"},
        )
        assert response.status_code == 302
        assert Campaign.objects.get(pk=campaign.pk).status == status
    assert [e.action for e in AuditEntry.objects.filter(target_type="campaign")] == [
        "campaign.resume",
        "campaign.pause",
    ]
