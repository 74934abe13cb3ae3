"""factory_boy factories shared by every app's tests."""

import factory

from campaigns.models import Lead
from messaging.models import SenderIdentity
from outreach.tenancy.models import Tenant


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant

    name = factory.Sequence(lambda n: f"Tenant {n}")
    slug = factory.Sequence(lambda n: f"tenant-{n}")


class SenderIdentityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SenderIdentity

    tenant = factory.SubFactory(TenantFactory)
    from_name = factory.Sequence(lambda n: f"AE {n}")
    from_email = factory.Sequence(lambda n: f"ae{n}@sender.example.com")


class LeadFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Lead

    tenant = factory.SubFactory(TenantFactory)
    email = factory.Sequence(lambda n: f"lead{n}@prospect.example.com")
    first_name = factory.Sequence(lambda n: f"First{n}")
    last_name = "Lead"
    company = "Prospect Inc"


def campaign_with_plan(*, tenant, plan: dict, identity=None, status: str = "active"):
    """An active campaign whose current version is ``plan`` (stored as given: tests of the
    engine exercise plans independently of the validator)."""
    import hashlib
    import json

    from campaigns.models import Campaign, CampaignPlanVersion

    identity = identity or SenderIdentityFactory(tenant=tenant)
    campaign = Campaign.objects.create(
        tenant=tenant, name="Test campaign", sender_identity=identity, status=status
    )
    checksum = hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()
    version = CampaignPlanVersion.objects.create(
        tenant=tenant, campaign=campaign, version=1, plan=plan, checksum=checksum
    )
    campaign.current_version = version
    campaign.save(update_fields=["current_version"])
    return campaign
