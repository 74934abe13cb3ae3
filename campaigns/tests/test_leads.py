"""Lead services: stored forms, verdicts, uniqueness, bulk creation and deletion rules."""

import pytest

from campaigns.models import Lead
from campaigns.services.leads import (
    ALREADY_EXISTS,
    BULK_MAX_ROWS,
    lead_bulk_create,
    lead_create,
    lead_delete,
    lead_update,
)
from outreach.common.errors import ApplicationError, NotFound
from outreach.testing.factories import LeadFactory
from outreach.testing.world import world_build

pytestmark = pytest.mark.django_db


def test_create_stores_normalised_fields_and_the_verdict(tenant):
    lead = lead_create(
        tenant_id=tenant.id,
        data={
            "email": " Jane.Doe@Example.COM ",
            "first_name": " Jane ",
            "phone": "+1 (415) 555-0100",
            "timezone": "America/Los_Angeles",
            "country": "us",
            "custom_fields": {"plan": "pro"},
        },
    )
    lead.refresh_from_db()
    assert lead.email == "jane.doe@example.com"
    assert lead.first_name == "Jane"
    assert lead.phone == "+14155550100"
    assert lead.country == "US"
    assert lead.timezone == "America/Los_Angeles"
    assert lead.custom_fields == {"plan": "pro"}
    assert lead.validation_status == Lead.Validation.VALID
    assert lead.validated_at is not None


def test_role_and_disposable_addresses_are_stored_as_risky(tenant):
    role = lead_create(tenant_id=tenant.id, data={"email": "info@acme.com"})
    throwaway = lead_create(tenant_id=tenant.id, data={"email": "bob@mailinator.com"})
    assert (role.validation_status, role.is_role_address, role.is_disposable) == (
        "risky",
        True,
        False,
    )
    assert (throwaway.validation_status, throwaway.is_disposable) == ("risky", True)
    assert "role address" in role.validation_reason


def test_invalid_fields_are_refused_with_their_names(tenant):
    with pytest.raises(ApplicationError) as caught:
        lead_create(
            tenant_id=tenant.id,
            data={"email": "nope", "phone": "12", "timezone": "Moon/Base", "country": "Germany"},
        )
    assert set(caught.value.extra) == {"email", "phone", "timezone", "country"}
    assert not Lead.objects.exists()


def test_the_same_address_twice_in_a_tenant_is_a_duplicate_error(tenant):
    lead_create(tenant_id=tenant.id, data={"email": "jane@example.com"})
    with pytest.raises(ApplicationError) as caught:
        lead_create(tenant_id=tenant.id, data={"email": "JANE@example.com"})
    assert caught.value.code == "duplicate"
    assert "email" in caught.value.extra


def test_the_same_address_in_two_tenants_is_two_leads(tenant, other_tenant):
    lead_create(tenant_id=tenant.id, data={"email": "jane@example.com"})
    lead_create(tenant_id=other_tenant.id, data={"email": "jane@example.com"})
    assert Lead.objects.filter(email="jane@example.com").count() == 2


def test_changing_the_email_validates_it_again(tenant):
    lead = lead_create(tenant_id=tenant.id, data={"email": "jane@example.com"})
    changed = lead_update(tenant_id=tenant.id, lead_id=lead.id, data={"email": "Sales@Acme.com"})
    assert changed.email == "sales@acme.com"
    assert changed.validation_status == "risky"
    assert changed.is_role_address


def test_changing_to_an_address_the_tenant_has_is_a_duplicate_error(tenant):
    lead_create(tenant_id=tenant.id, data={"email": "taken@example.com"})
    lead = lead_create(tenant_id=tenant.id, data={"email": "jane@example.com"})
    with pytest.raises(ApplicationError) as caught:
        lead_update(tenant_id=tenant.id, lead_id=lead.id, data={"email": "Taken@example.com"})
    assert caught.value.code == "duplicate"
    lead.refresh_from_db()
    assert lead.email == "jane@example.com"


def test_a_lead_of_another_tenant_cannot_be_changed_or_deleted(tenant, other_tenant):
    lead = LeadFactory(tenant=other_tenant)
    with pytest.raises(NotFound):
        lead_update(tenant_id=tenant.id, lead_id=lead.id, data={"first_name": "X"})
    with pytest.raises(NotFound):
        lead_delete(tenant_id=tenant.id, lead_id=lead.id)
    assert Lead.objects.filter(pk=lead.pk, first_name=lead.first_name).exists()


def test_a_lead_with_sent_messages_is_kept_with_a_409(tenant):
    world = world_build(tenant=tenant)
    with pytest.raises(ApplicationError) as caught:
        lead_delete(tenant_id=tenant.id, lead_id=world.lead.id)
    assert caught.value.status_code == 409
    assert Lead.objects.filter(pk=world.lead.pk).exists()


def test_bulk_create_reports_each_row_on_its_own(tenant):
    LeadFactory(tenant=tenant, email="old@example.com")
    result = lead_bulk_create(
        tenant_id=tenant.id,
        rows=[
            (0, {"email": "new@example.com"}),
            (1, {"email": "broken"}),
            (2, {"email": "OLD@example.com"}),
            (3, {"email": "New@Example.com"}),
            (4, {"email": "info@example.com", "phone": "555"}),
            (5, {"first_name": "No email"}),
        ],
    )
    assert [index for index, _ in result.created] == [0]
    assert set(result.errors) == {1, 4, 5}
    assert set(result.errors[4]) == {"phone"}
    skipped = {skip.index: skip for skip in result.skipped}
    assert skipped[2].reason == ALREADY_EXISTS
    assert skipped[2].existing_id == Lead.objects.get(email="old@example.com").pk
    assert skipped[3].duplicate_of == 0
    assert Lead.objects.for_tenant(tenant.id).count() == 2


def test_bulk_create_of_ten_thousand_rows_with_bad_ones(tenant, other_tenant):
    # Another tenant having the same addresses must not make them duplicates here.
    LeadFactory(tenant=other_tenant, email="person5@bulk.example.com")
    LeadFactory(tenant=tenant, email="person7@bulk.example.com")
    rows = []
    for index in range(BULK_MAX_ROWS):
        data = {
            "email": f"Person{index}@Bulk.example.com",
            "first_name": f"P{index}",
            "custom_fields": {"n": index},
        }
        if index % 1000 == 3:
            data["email"] = f"broken{index}"
        rows.append((index, data))
    result = lead_bulk_create(tenant_id=tenant.id, rows=rows)
    assert len(result.errors) == 10
    assert all(set(errors) == {"email"} for errors in result.errors.values())
    assert [skip.index for skip in result.skipped] == [7]
    assert len(result.created) == BULK_MAX_ROWS - 11
    assert Lead.objects.for_tenant(tenant.id).count() == BULK_MAX_ROWS - 10
    stored = Lead.objects.get(tenant=tenant, email="person42@bulk.example.com")
    assert (stored.first_name, stored.custom_fields) == ("P42", {"n": 42})
    assert dict(result.created)[42] == stored.pk


def test_bulk_create_refuses_more_than_the_limit(tenant):
    rows = [(i, {"email": f"a{i}@example.com"}) for i in range(BULK_MAX_ROWS + 1)]
    with pytest.raises(ApplicationError):
        lead_bulk_create(tenant_id=tenant.id, rows=rows)
    assert not Lead.objects.exists()
