"""Suppression admin: lists load with data, manual entries are normalised and unique."""

import pytest
from django.urls import reverse

from outreach.testing.world import world_build
from suppression.models import Suppression

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:suppression_suppression_changelist")
ADD = reverse("admin:suppression_suppression_add")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_the_changelist_and_change_page_load_with_rows(admin_client, tenant, other_tenant):
    world = world_build(tenant=tenant)
    world_build(tenant=other_tenant)
    Suppression.objects.create(
        scope="global", email="everyone-hates@example.com", reason="spam_report", source="admin"
    )
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    assert response.context["cl"].result_count == 3
    response = admin_client.get(CHANGELIST, {"tenant__id__exact": tenant.pk, "q": "x"})
    assert response.status_code == 200
    response = admin_client.get(CHANGELIST, {"scope__exact": "global"})
    assert [s.email for s in response.context["cl"].result_list] == ["everyone-hates@example.com"]
    change = reverse("admin:suppression_suppression_change", args=[world.suppression.pk])
    assert admin_client.get(change).status_code == 200


def test_a_manual_suppression_is_stored_normalised(admin_client, tenant):
    response = admin_client.post(
        ADD,
        {
            "scope": "tenant",
            "tenant": tenant.pk,
            "email": " Jane@Example.COM ",
            "reason": "manual",
            "source": "admin",
        },
    )
    assert response.status_code == 302
    assert Suppression.objects.get().email == "jane@example.com"


@pytest.mark.parametrize(
    "data",
    [
        # A global entry that already exists (NULL tenant still counts as one scope).
        {"scope": "global", "tenant": "", "email": "dup@example.com"},
        # Scope and tenant must agree.
        {"scope": "global", "tenant": "TENANT", "email": "new@example.com"},
        {"scope": "tenant", "tenant": "", "email": "new@example.com"},
    ],
)
def test_inconsistent_or_duplicate_entries_are_form_errors_not_500s(admin_client, tenant, data):
    Suppression.objects.create(
        scope="global", email="dup@example.com", reason="manual", source="admin"
    )
    data = {**data, "reason": "manual", "source": "admin"}
    if data["tenant"] == "TENANT":
        data["tenant"] = tenant.pk
    response = admin_client.post(ADD, data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert Suppression.objects.count() == 1
