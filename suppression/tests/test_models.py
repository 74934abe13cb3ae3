"""Suppression uniqueness per scope, with the global scope stored as a NULL tenant."""

import pytest
from django.db import IntegrityError, transaction

from suppression.models import Suppression

pytestmark = pytest.mark.django_db


def _add(tenant=None, email="jane@example.com") -> Suppression:
    return Suppression.objects.create(
        tenant=tenant,
        scope="tenant" if tenant else "global",
        email=email,
        reason="unsubscribe",
        source="api",
    )


def _refused(create) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        create()


def test_an_address_is_suppressed_once_per_tenant(tenant, other_tenant):
    _add(tenant)
    _refused(lambda: _add(tenant))
    _add(other_tenant)
    assert Suppression.objects.count() == 2


def test_an_address_is_suppressed_once_globally_even_though_tenant_is_null(tenant):
    _add(None)
    _refused(lambda: _add(None))
    # The global entry and a tenant's own entry for the same address coexist.
    _add(tenant)
    assert Suppression.objects.filter(email="jane@example.com").count() == 2


def test_scope_and_tenant_must_agree(tenant):
    _refused(
        lambda: Suppression.objects.create(
            tenant=tenant, scope="global", email="a@example.com", reason="manual", source="api"
        )
    )
    _refused(
        lambda: Suppression.objects.create(
            tenant=None, scope="tenant", email="a@example.com", reason="manual", source="api"
        )
    )


def test_applicable_to_covers_the_tenant_and_the_global_list(tenant, other_tenant):
    mine = _add(tenant, "mine@example.com")
    everyone = _add(None, "everyone@example.com")
    _add(other_tenant, "theirs@example.com")
    assert set(Suppression.objects.applicable_to(tenant.id)) == {mine, everyone}
