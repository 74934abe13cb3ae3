"""A suppression must match the lead it names however the address was typed."""

import pytest

from suppression.selectors import suppression_check
from suppression.services import suppression_add


@pytest.mark.django_db
def test_a_unicode_domain_suppression_matches_the_lead_stored_in_ascii(tenant):
    suppression_add(
        tenant_id=tenant.pk, email=" Jürgen@Bücher.example ", reason="manual", source="api"
    )
    stored_lead_email = "jürgen@xn--bcher-kva.example"
    assert suppression_check(tenant_id=tenant.pk, emails=[stored_lead_email]) == {stored_lead_email}


@pytest.mark.django_db
def test_an_unparseable_address_is_still_suppressed_as_typed(tenant):
    suppression_add(tenant_id=tenant.pk, email="Not An Address@@x", reason="manual", source="api")
    assert suppression_check(tenant_id=tenant.pk, emails=["not an address@@x"])
