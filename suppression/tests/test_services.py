"""Suppression writes: normalised, idempotent, scoped."""

import pytest

from outreach.common.errors import ApplicationError, NotFound
from suppression.models import PhoneSuppression, Suppression
from suppression.services import (
    SuppressionEntry,
    phone_suppression_add,
    phone_suppression_lift,
    suppression_add,
    suppression_bulk_add,
    suppression_one_click_apply,
    suppression_remove,
)

pytestmark = pytest.mark.django_db


def test_add_normalises_the_address_and_is_idempotent(tenant):
    assert suppression_add(
        tenant_id=tenant.pk, email="  Jane.Doe@Example.COM ", reason="manual", source="api"
    )
    assert not suppression_add(
        tenant_id=tenant.pk, email="jane.doe@example.com", reason="unsubscribe", source="api"
    )
    entry = Suppression.objects.get()
    assert (entry.email, entry.reason, entry.scope) == ("jane.doe@example.com", "manual", "tenant")


def test_the_same_address_may_be_suppressed_per_tenant_and_globally(tenant, other_tenant):
    for tenant_id in (tenant.pk, other_tenant.pk, None):
        assert suppression_add(
            tenant_id=tenant_id, email="a@x.test", reason="manual", source="admin"
        )
    assert not suppression_add(tenant_id=None, email="A@x.test", reason="manual", source="admin")
    assert Suppression.objects.filter(scope="global", tenant__isnull=True).count() == 1
    assert Suppression.objects.count() == 3


@pytest.mark.parametrize(
    ("email", "reason", "source", "field"),
    [
        ("", "manual", "api", "email"),
        ("no-at-sign", "manual", "api", "email"),
        ("a@x.test", "because", "api", "reason"),
        ("a@x.test", "manual", "carrier-pigeon", "source"),
    ],
)
def test_bad_input_is_an_application_error_naming_the_field(tenant, email, reason, source, field):
    with pytest.raises(ApplicationError) as error:
        suppression_add(tenant_id=tenant.pk, email=email, reason=reason, source=source)
    assert field in error.value.extra
    assert not Suppression.objects.exists()


def test_bulk_add_returns_only_new_addresses_and_keeps_the_first_duplicate(tenant):
    suppression_add(tenant_id=tenant.pk, email="old@x.test", reason="manual", source="api")
    created = suppression_bulk_add(
        tenant_id=tenant.pk,
        entries=[
            SuppressionEntry("New@x.test", "spam_report", "first"),
            SuppressionEntry("new@x.test", "manual", "second"),
            SuppressionEntry("old@x.test", "manual"),
            SuppressionEntry("other@x.test", "hard_bounce"),
        ],
        source="import",
    )
    assert sorted(created) == ["new@x.test", "other@x.test"]
    new = Suppression.objects.get(email="new@x.test")
    assert (new.reason, new.note, new.source) == ("spam_report", "first", "import")


def test_remove_lifts_a_tenant_entry(tenant):
    suppression_add(tenant_id=tenant.pk, email="a@x.test", reason="manual", source="api")
    suppression_remove(tenant_id=tenant.pk, suppression_id=Suppression.objects.get().pk)
    assert not Suppression.objects.exists()


def test_remove_refuses_global_entries_and_hides_other_tenants(tenant, other_tenant):
    suppression_add(tenant_id=None, email="g@x.test", reason="manual", source="admin")
    suppression_add(tenant_id=other_tenant.pk, email="o@x.test", reason="manual", source="api")
    global_entry = Suppression.objects.get(email="g@x.test")
    theirs = Suppression.objects.get(email="o@x.test")
    with pytest.raises(ApplicationError) as error:
        suppression_remove(tenant_id=tenant.pk, suppression_id=global_entry.pk)
    assert error.value.status_code == 403
    with pytest.raises(NotFound):
        suppression_remove(tenant_id=tenant.pk, suppression_id=theirs.pk)
    assert Suppression.objects.count() == 2


def test_one_click_records_an_unsubscribe_from_the_recipient(tenant):
    assert suppression_one_click_apply(
        tenant_id=tenant.pk, email="a@x.test", message_public_id="abc"
    )
    entry = Suppression.objects.get()
    assert (entry.reason, entry.source) == ("unsubscribe", "one_click")
    assert not suppression_one_click_apply(tenant_id=tenant.pk, email="a@x.test")


@pytest.mark.parametrize(
    ("reason", "lifted"), [("stop", True), ("carrier_opt_out", True), ("manual", False)]
)
def test_a_start_lifts_an_opt_out_but_not_an_operators_block(tenant, other_tenant, reason, lifted):
    number = "+14155550100"
    phone_suppression_add(tenant_id=tenant.pk, phone=number, reason=reason)
    phone_suppression_add(tenant_id=other_tenant.pk, phone=number, reason="stop")

    assert phone_suppression_lift(tenant_id=tenant.pk, phone=number) is lifted
    remaining = set(PhoneSuppression.objects.values_list("tenant_id", "reason"))
    assert remaining == ({(other_tenant.pk, "stop")} | (set() if lifted else {(tenant.pk, reason)}))
    # Nothing to lift: the number may be texted.
    assert phone_suppression_lift(tenant_id=tenant.pk, phone="+14155550101")
