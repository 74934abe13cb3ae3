"""The suppressions API: /api/v1/suppressions/."""

import pytest

from suppression.models import Suppression
from suppression.services import suppression_add

pytestmark = pytest.mark.django_db

URL = "/api/v1/suppressions/"


def test_list_shows_own_and_global_entries_with_cursor_pages(api, tenant, other_tenant):
    for n in range(5):
        suppression_add(tenant_id=tenant.pk, email=f"a{n}@x.test", reason="manual", source="api")
    suppression_add(tenant_id=None, email="g@x.test", reason="spam_report", source="admin")
    suppression_add(tenant_id=other_tenant.pk, email="o@x.test", reason="manual", source="api")
    first = api.get(URL, {"page_size": 4}).json()
    assert [r["email"] for r in first["results"]] == [
        "g@x.test",
        "a4@x.test",
        "a3@x.test",
        "a2@x.test",
    ]
    assert first["results"][0]["scope"] == "global"
    second = api.get(first["next"]).json()
    assert [r["email"] for r in second["results"]] == ["a1@x.test", "a0@x.test"]
    assert second["next"] is None


def test_list_filters(api, tenant):
    suppression_add(tenant_id=tenant.pk, email="a@x.test", reason="hard_bounce", source="webhook")
    suppression_add(tenant_id=None, email="g@x.test", reason="manual", source="admin")
    assert [r["email"] for r in api.get(URL, {"scope": "tenant"}).json()["results"]] == ["a@x.test"]
    assert [r["email"] for r in api.get(URL, {"reason": "manual"}).json()["results"]] == [
        "g@x.test"
    ]
    assert [r["email"] for r in api.get(URL, {"email": "A@x.test"}).json()["results"]] == [
        "a@x.test"
    ]


@pytest.mark.parametrize(("param", "value"), [("scope", "planet"), ("reason", "whim")])
def test_bad_filters_are_400_naming_the_parameter(api, param, value):
    response = api.get(URL, {param: value})
    assert response.status_code == 400
    assert param in response.json()["error"]["fields"]


def test_add_creates_then_reports_existing(api, tenant):
    response = api.post(
        URL, {"email": "New@X.test", "reason": "manual", "note": "asked by phone"}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert (body["email"], body["scope"], body["source"]) == ("new@x.test", "tenant", "api")
    again = api.post(URL, {"email": "new@x.test"}, format="json")
    assert again.status_code == 200
    assert again.json()["id"] == body["id"]
    assert Suppression.objects.filter(tenant=tenant).count() == 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "not an email"}, "email"),
        ({}, "email"),
        ({"email": "a@x.test", "reason": "whim"}, "reason"),
        ({"email": "a@x.test", "note": 5}, "note"),
        ({"email": "a@x.test", "scope": "global"}, "scope"),
        ({"email": "a@x.test", "tenant": 1}, "tenant"),
    ],
)
def test_add_refuses_bad_input_with_400_and_field_path(api, payload, field):
    response = api.post(URL, payload, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert not Suppression.objects.exists()


def test_a_tenant_cannot_write_the_global_list(api):
    api.post(URL, {"email": "a@x.test", "scope": "global"}, format="json")
    assert not Suppression.objects.filter(tenant__isnull=True).exists()


def test_get_and_delete_another_tenants_entry_is_404(api, other_tenant):
    suppression_add(tenant_id=other_tenant.pk, email="o@x.test", reason="manual", source="api")
    theirs = Suppression.objects.get()
    assert api.get(f"{URL}{theirs.pk}/").status_code == 404
    assert api.delete(f"{URL}{theirs.pk}/").status_code == 404
    assert Suppression.objects.filter(pk=theirs.pk).exists()


@pytest.mark.parametrize("bad_id", ["abc", "0", "99999999999999999999999"])
def test_malformed_ids_are_404_not_500(api, bad_id):
    assert api.get(f"{URL}{bad_id}/").status_code == 404


def test_delete_lifts_own_entry_and_refuses_global(api, tenant):
    suppression_add(tenant_id=tenant.pk, email="a@x.test", reason="manual", source="api")
    suppression_add(tenant_id=None, email="g@x.test", reason="manual", source="admin")
    own = Suppression.objects.get(email="a@x.test")
    glob = Suppression.objects.get(email="g@x.test")
    assert api.delete(f"{URL}{own.pk}/").status_code == 204
    response = api.delete(f"{URL}{glob.pk}/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "read_only"
    assert list(Suppression.objects.values_list("email", flat=True)) == ["g@x.test"]


def test_bulk_import_adds_valid_rows_and_reports_each_bad_row(api, tenant):
    suppression_add(tenant_id=tenant.pk, email="old@x.test", reason="manual", source="api")
    items = [
        {"email": "one@x.test", "reason": "unsubscribe"},
        {"email": "nope"},
        {"email": "old@x.test"},
        {"email": "two@x.test", "colour": "red"},
        "not an object",
        {"email": "three@x.test", "note": "from the old CRM"},
    ]
    response = api.post(f"{URL}bulk/", {"items": items}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["created_count"], body["existing_count"], body["error_count"]) == (2, 1, 3)
    assert set(body["errors"]) == {"items/1/email", "items/3/colour", "items/4"}
    stored = dict(Suppression.objects.filter(tenant=tenant).values_list("email", "source"))
    assert stored == {"old@x.test": "api", "one@x.test": "import", "three@x.test": "import"}


@pytest.mark.parametrize(
    "payload",
    [{"items": []}, {"items": "x"}, {}, {"items": [{"email": "a@x.test"}] * 10_001}, []],
)
def test_bulk_import_refuses_a_bad_envelope(api, payload):
    response = api.post(f"{URL}bulk/", payload, format="json")
    assert response.status_code == 400
    assert not Suppression.objects.exists()


def test_bulk_import_takes_ten_thousand_rows(api, tenant):
    items = [{"email": f"user{n}@x.test"} for n in range(10_000)]
    response = api.post(f"{URL}bulk/", {"items": items}, format="json")
    assert response.status_code == 200
    assert response.json()["created_count"] == 10_000
    assert Suppression.objects.filter(tenant=tenant).count() == 10_000


def test_the_api_needs_a_key(client):
    assert client.get(URL).status_code == 401
