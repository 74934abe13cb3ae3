"""``manage.py seed_demo``: the demo ``make run`` shows, SMS included, seeded twice."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

from campaigns.management.commands.seed_demo import (
    DEMO_SLUG,
    DEMO_SMS_LEADS,
    DEMO_SMS_NUMBER,
)
from campaigns.models import Campaign, Enrollment, Lead, ScheduledAction
from messaging.models import SenderIdentity
from outreach.tenancy.models import Tenant
from outreach.tenancy.services import tenant_webhook_urls

pytestmark = pytest.mark.django_db


def _seed() -> dict:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return json.loads(out.getvalue())


def test_seed_demo_creates_the_sms_campaign_its_consenting_phone_leads_and_emulator_numbers(
    settings, tmp_path
):
    settings.BASE_DIR = tmp_path  # var/ (the emulator's files) is written here
    settings.DEBUG = False  # no admin user
    summary = _seed()

    tenant = Tenant.objects.get(slug=DEMO_SLUG)
    assert tenant.sms_enabled
    identity = SenderIdentity.objects.for_tenant(tenant.pk).get()
    assert identity.sms_from_number == DEMO_SMS_NUMBER

    campaign = Campaign.objects.for_tenant(tenant.pk).get(pk=summary["sms_campaign_id"])
    assert (campaign.name, campaign.status) == ("Demo texts", "active")
    plan = campaign.current_version.plan
    assert plan["steps"][plan["start"]]["type"] == "sms"

    phones = [row[4] for row in DEMO_SMS_LEADS]
    leads = Lead.objects.for_tenant(tenant.pk).filter(phone__in=phones)
    assert sorted(lead.phone for lead in leads) == sorted(phones)
    for lead in leads:
        assert lead.sms_consent == "granted"
        assert lead.sms_consent_source and lead.sms_consent_at is not None
    enrollments = Enrollment.objects.filter(campaign=campaign)
    assert sorted(e.lead_id for e in enrollments) == sorted(lead.pk for lead in leads)
    assert ScheduledAction.objects.filter(enrollment__in=enrollments, kind="sms").count() == 2

    # The emulator's tenants file routes texts to the demo number into our inbound webhook.
    (route,) = json.loads((tmp_path / "var" / "emulator-tenants.json").read_text())
    assert route["tenant"] == str(tenant.public_id)
    assert route["sms_numbers"] == [DEMO_SMS_NUMBER]
    assert route["sms_url"] == tenant_webhook_urls(tenant=tenant)["sms_inbound"]
    assert summary["webhooks"]["sms_inbound"] == route["sms_url"]

    # Seeded again: the same campaign, leads and enrollments, nothing doubled.
    again = _seed()
    assert again["sms_campaign_id"] == campaign.pk
    assert Lead.objects.for_tenant(tenant.pk).filter(phone__in=phones).count() == 2
    assert Enrollment.objects.filter(campaign=campaign).count() == 2
    assert Campaign.objects.for_tenant(tenant.pk).filter(name="Demo texts").count() == 1
