"""Lead selectors: filters, and never another tenant's rows."""

import datetime

import pytest
from django.utils import timezone

from campaigns.models import Lead
from campaigns.selectors import lead_get, lead_list
from outreach.common.errors import NotFound
from outreach.testing.factories import LeadFactory

pytestmark = pytest.mark.django_db


def test_lead_get_is_scoped_to_the_tenant(tenant, other_tenant):
    theirs = LeadFactory(tenant=other_tenant)
    mine = LeadFactory(tenant=tenant)
    assert lead_get(tenant_id=tenant.id, lead_id=mine.id) == mine
    with pytest.raises(NotFound):
        lead_get(tenant_id=tenant.id, lead_id=theirs.id)


def test_lead_list_never_returns_another_tenants_rows(tenant, other_tenant):
    mine = LeadFactory(tenant=tenant, email="same@example.com", company="Acme")
    LeadFactory(tenant=other_tenant, email="same@example.com", company="Acme")
    assert list(lead_list(tenant_id=tenant.id)) == [mine]
    assert list(lead_list(tenant_id=tenant.id, email="same@example.com")) == [mine]
    assert list(lead_list(tenant_id=tenant.id, company="Acme", q="acme")) == [mine]


def test_lead_list_filters_combine(tenant):
    now = timezone.now()
    a = LeadFactory(tenant=tenant, email="ann@acme.com", company="Acme", first_name="Ann")
    b = LeadFactory(tenant=tenant, email="bob@acme.com", company="Acme", first_name="Bob")
    c = LeadFactory(tenant=tenant, email="cy@initech.com", company="Initech", first_name="Cy")
    Lead.objects.filter(pk=a.pk).update(created_at=now - datetime.timedelta(days=10))
    Lead.objects.filter(pk=c.pk).update(validation_status="risky")

    def ids(**filters) -> set[int]:
        return set(lead_list(tenant_id=tenant.id, **filters).values_list("id", flat=True))

    assert ids(company="Acme") == {a.id, b.id}
    assert ids(company="Acme", created_after=now - datetime.timedelta(days=1)) == {b.id}
    assert ids(created_before=now - datetime.timedelta(days=1)) == {a.id}
    assert ids(validation_status="risky") == {c.id}
    assert ids(q="bob acme") == {b.id}
    assert ids(q="ACME") == {a.id, b.id}
    assert ids(email=" ANN@ACME.COM ") == {a.id}
    assert ids(email="not an email") == set()
