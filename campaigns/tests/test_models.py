"""Constraints the database enforces whatever the code above it does."""

import pytest
from django.db import IntegrityError, transaction

from campaigns.models import Enrollment, Lead
from outreach.testing.factories import LeadFactory
from outreach.testing.world import world_build

pytestmark = pytest.mark.django_db


def _refused(create) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        create()


def test_a_lead_email_is_unique_within_a_tenant(tenant):
    LeadFactory(tenant=tenant, email="jane@example.com")
    _refused(lambda: Lead.objects.create(tenant=tenant, email="jane@example.com"))
    assert Lead.objects.filter(tenant=tenant).count() == 1


def test_the_same_lead_email_in_two_tenants_is_allowed(tenant, other_tenant):
    LeadFactory(tenant=tenant, email="jane@example.com")
    LeadFactory(tenant=other_tenant, email="jane@example.com")
    assert Lead.objects.filter(email="jane@example.com").count() == 2


def test_a_lead_needs_an_email_and_an_e164_phone(tenant):
    _refused(lambda: Lead.objects.create(tenant=tenant, email=""))
    _refused(lambda: Lead.objects.create(tenant=tenant, email="a@example.com", phone="0301234"))
    Lead.objects.create(tenant=tenant, email="b@example.com", phone="+49301234567")


def test_one_live_enrollment_per_lead_and_campaign(tenant):
    world = world_build(tenant=tenant)
    first = world.enrollment

    def again(state: str = "active") -> Enrollment:
        return Enrollment.objects.create(
            tenant=tenant,
            campaign=first.campaign,
            lead=first.lead,
            plan_version=first.plan_version,
            sender_identity=first.sender_identity,
            current_step="intro",
            state=state,
        )

    _refused(again)
    _refused(lambda: again("paused"))
    # Finished journeys do not block a new one (re-enrolling after completion or a stop).
    again("completed")
    again("stopped")
    Enrollment.objects.filter(pk=first.pk).update(state="completed")
    again("active")
    assert Enrollment.objects.filter(lead=first.lead, state="active").count() == 1
