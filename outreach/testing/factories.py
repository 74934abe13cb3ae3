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
