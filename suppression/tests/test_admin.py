"""Suppression admin: lists load with data, manual entries are normalised and unique."""

import pytest
from django.urls import reverse

from outreach.testing.world import world_build
from suppression.models import PhoneSuppression, Suppression
from suppression.selectors import phone_suppression_check

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


# --- phone numbers ----------------------------------------------------------------------------

PHONES = reverse("admin:suppression_phonesuppression_changelist")
PHONE_ADD = reverse("admin:suppression_phonesuppression_add")


def test_the_phone_changelist_filters_and_finds_a_number_as_people_type_it(
    admin_client, tenant, other_tenant
):
    PhoneSuppression.objects.create(tenant=tenant, phone="+14155550100", reason="stop")
    PhoneSuppression.objects.create(tenant=tenant, phone="+14155550101", reason="manual")
    theirs = PhoneSuppression.objects.create(
        tenant=other_tenant, phone="+14155550100", reason="carrier_opt_out"
    )
    response = admin_client.get(PHONES)
    assert response.status_code == 200
    assert response.context["cl"].result_count == 3

    def phones(**query) -> list[tuple[int, str]]:
        page = admin_client.get(PHONES, query)
        assert page.status_code == 200
        return sorted((row.tenant_id, row.phone) for row in page.context["cl"].result_list)

    assert phones(reason__exact="carrier_opt_out") == [(other_tenant.pk, "+14155550100")]
    assert phones(tenant__id__exact=tenant.pk) == [
        (tenant.pk, "+14155550100"),
        (tenant.pk, "+14155550101"),
    ]
    assert phones(q="+1 (415) 555-0101") == [(tenant.pk, "+14155550101")]
    change = reverse("admin:suppression_phonesuppression_change", args=[theirs.pk])
    page = admin_client.get(change)
    assert page.status_code == 200
    assert b'name="_save"' not in page.content  # an entry is removed, never edited


def test_a_number_added_in_the_admin_is_stored_in_e164_and_suppressed(admin_client, tenant):
    response = admin_client.post(
        PHONE_ADD,
        {"tenant": tenant.pk, "phone": "+1 415-555-0199", "reason": "manual", "note": "called"},
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    entry = PhoneSuppression.objects.get()
    assert (entry.tenant_id, entry.phone, entry.reason, entry.note) == (
        tenant.pk,
        "+14155550199",
        "manual",
        "called",
    )
    assert phone_suppression_check(tenant_id=tenant.pk, phones=["+14155550199"]) == {"+14155550199"}


@pytest.mark.parametrize(
    ("phone", "field"),
    [("not a number", "phone"), ("", "phone"), ("+1 415 555 0100", "__all__")],
)
def test_a_bad_or_duplicate_number_is_a_form_error(admin_client, tenant, phone, field):
    PhoneSuppression.objects.create(tenant=tenant, phone="+14155550100", reason="stop")
    response = admin_client.post(
        PHONE_ADD, {"tenant": tenant.pk, "phone": phone, "reason": "manual"}
    )
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert PhoneSuppression.objects.count() == 1


def test_deleting_a_number_in_the_admin_lets_it_be_texted_again(admin_client, tenant):
    kept = PhoneSuppression.objects.create(tenant=tenant, phone="+14155550100", reason="stop")
    gone = PhoneSuppression.objects.create(tenant=tenant, phone="+14155550101", reason="stop")
    response = admin_client.post(
        PHONES, {"action": "delete_selected", "_selected_action": [gone.pk], "post": "yes"}
    )
    assert response.status_code == 302
    assert list(PhoneSuppression.objects.values_list("pk", flat=True)) == [kept.pk]
    assert phone_suppression_check(
        tenant_id=tenant.pk, phones=["+14155550100", "+14155550101"]
    ) == {"+14155550100"}
