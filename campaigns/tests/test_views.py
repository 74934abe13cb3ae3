"""The leads API as an integrator sees it: status codes, bodies and stored rows."""

import datetime
import json

import pytest
from django.utils import timezone

from campaigns.models import Lead
from outreach.testing.factories import LeadFactory
from outreach.testing.world import world_build

pytestmark = pytest.mark.django_db

URL = "/api/v1/leads/"


def _fields(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"].get("fields", {})


def test_create_returns_the_stored_lead(api, tenant):
    response = api.post(
        URL,
        {
            "email": "Jane.Doe@Example.com",
            "first_name": "Jane",
            "last_name": "Doe",
            "company": "Acme",
            "title": "CTO",
            "timezone": "Europe/Berlin",
            "country": "de",
            "phone": "+49 30 1234567",
            "custom_fields": {"plan": "pro", "seats": 12, "trial": True, "ref": None},
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["email"] == "jane.doe@example.com"
    assert body["country"] == "DE"
    assert body["phone"] == "+49301234567"
    assert body["validation_status"] == "valid"
    assert body["custom_fields"] == {"plan": "pro", "seats": 12, "trial": True, "ref": None}
    assert Lead.objects.get(pk=body["id"]).tenant_id == tenant.id


def test_a_role_address_is_accepted_as_risky(api):
    response = api.post(URL, {"email": "sales@acme.com"}, format="json")
    assert response.status_code == 201
    assert response.json()["validation_status"] == "risky"
    assert response.json()["is_role_address"] is True


def test_an_invalid_email_is_a_400_naming_the_field_and_the_reason(api):
    response = api.post(URL, {"email": "jane@@example.com"}, format="json")
    assert response.status_code == 400
    fields = _fields(response)
    assert list(fields) == ["email"]
    assert "valid email" in fields["email"][0]
    assert not Lead.objects.exists()


def test_a_duplicate_email_is_a_400_naming_the_field(api, tenant):
    LeadFactory(tenant=tenant, email="jane@example.com")
    response = api.post(URL, {"email": "JANE@example.com"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "duplicate"
    assert "already exists" in _fields(response)["email"][0]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({}, "email"),
        ({"email": 42}, "email"),
        ({"email": None}, "email"),
        ({"email": "a@example.com", "first_name": 7}, "first_name"),
        ({"email": "a@example.com", "first_name": ["Jane"]}, "first_name"),
        ({"email": "a@example.com", "custom_fields": "plan=pro"}, "custom_fields"),
        ({"email": "a@example.com", "custom_fields": {"nested": {"a": 1}}}, "custom_fields/nested"),
        ({"email": "a@example.com", "custom_fields": {"list": [1]}}, "custom_fields/list"),
        ({"email": "a@example.com", "first_name": "x" * 101}, "first_name"),
        ({"email": "a@example.com", "phone": "555-0100"}, "phone"),
        ({"email": "a@example.com", "timezone": "Europe/Atlantis"}, "timezone"),
        ({"email": "a@example.com", "country": "Germany"}, "country"),
        ({"email": "a@example.com", "favourite_colour": "blue"}, "favourite_colour"),
        ({"email": "a@example.com", "validation_status": "valid"}, "validation_status"),
        ({"email": "a@example.com", "id": 5}, "id"),
        ([{"email": "a@example.com"}], "non_field_errors"),
    ],
)
def test_bad_input_is_a_400_with_the_field_path(api, body, path):
    response = api.post(URL, body, format="json")
    assert response.status_code == 400, response.content
    assert path in _fields(response), response.json()
    assert not Lead.objects.exists()


def test_unknown_fields_are_each_named(api):
    response = api.post(URL, {"email": "a@example.com", "nmae": "x", "compnay": "y"}, format="json")
    assert response.status_code == 400
    assert _fields(response) == {"compnay": ["Unknown field."], "nmae": ["Unknown field."]}


def test_retrieve_returns_the_lead(api, tenant):
    lead = LeadFactory(tenant=tenant)
    response = api.get(f"{URL}{lead.id}/")
    assert response.status_code == 200
    assert response.json()["email"] == lead.email


@pytest.mark.parametrize("bad_id", ["abc", "0", "99999999999999999999999", "1.5", "-1"])
def test_ids_that_cannot_exist_are_404_not_500(api, bad_id):
    for method in ("get", "patch", "delete"):
        response = getattr(api, method)(f"{URL}{bad_id}/", {}, format="json")
        assert response.status_code == 404, (method, response.content)


def test_patch_changes_only_the_fields_sent(api, tenant):
    lead = LeadFactory(tenant=tenant, company="Old Co", title="CEO")
    response = api.patch(f"{URL}{lead.id}/", {"company": "New Co"}, format="json")
    assert response.status_code == 200
    lead.refresh_from_db()
    assert (lead.company, lead.title) == ("New Co", "CEO")


def test_patch_of_the_email_validates_it_again(api, tenant):
    lead = LeadFactory(tenant=tenant, email="jane@example.com")
    response = api.patch(f"{URL}{lead.id}/", {"email": "Jane@Mailinator.com"}, format="json")
    assert response.status_code == 200
    assert response.json()["email"] == "jane@mailinator.com"
    assert response.json()["validation_status"] == "risky"
    assert response.json()["is_disposable"] is True

    response = api.patch(f"{URL}{lead.id}/", {"email": "not-an-email"}, format="json")
    assert response.status_code == 400
    assert "email" in _fields(response)
    lead.refresh_from_db()
    assert lead.email == "jane@mailinator.com"


def test_patch_to_an_address_already_taken_is_a_400_on_email(api, tenant):
    LeadFactory(tenant=tenant, email="taken@example.com")
    lead = LeadFactory(tenant=tenant, email="jane@example.com")
    response = api.patch(f"{URL}{lead.id}/", {"email": "taken@example.com"}, format="json")
    assert response.status_code == 400
    assert "email" in _fields(response)


def test_patch_refuses_wrong_types_and_unknown_fields(api, tenant):
    lead = LeadFactory(tenant=tenant)
    response = api.patch(f"{URL}{lead.id}/", {"company": 5, "colour": "red"}, format="json")
    assert response.status_code == 400
    assert "colour" in _fields(response)


def test_put_is_not_offered(api, tenant):
    lead = LeadFactory(tenant=tenant)
    assert api.put(f"{URL}{lead.id}/", {"email": "x@example.com"}, format="json").status_code == 405


def test_delete_removes_the_lead(api, tenant):
    lead = LeadFactory(tenant=tenant)
    response = api.delete(f"{URL}{lead.id}/")
    assert response.status_code == 204
    assert not Lead.objects.filter(pk=lead.pk).exists()


def test_delete_of_a_lead_with_messages_is_a_409(api, tenant):
    world = world_build(tenant=tenant)
    response = api.delete(f"{URL}{world.lead.id}/")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "in_use"


def test_list_pages_with_a_cursor_newest_first(api, tenant, other_tenant):
    leads = [LeadFactory(tenant=tenant) for _ in range(5)]
    LeadFactory(tenant=other_tenant)
    seen = []
    url = f"{URL}?page_size=2"
    while url:
        response = api.get(url)
        assert response.status_code == 200
        body = response.json()
        seen += [row["id"] for row in body["results"]]
        url = body["next"]
    assert seen == [lead.id for lead in reversed(leads)]


def test_list_filters(api, tenant):
    jane = LeadFactory(tenant=tenant, email="jane@example.com", company="Acme", first_name="Jane")
    bob = LeadFactory(tenant=tenant, email="bob@example.com", company="Initech", first_name="Bob")
    risky = LeadFactory(tenant=tenant, email="info@example.com", validation_status="risky")
    old = LeadFactory(tenant=tenant, email="old@example.com")
    Lead.objects.filter(pk=old.pk).update(created_at=timezone.now() - datetime.timedelta(days=30))

    def ids(query: str) -> set[int]:
        response = api.get(f"{URL}?{query}")
        assert response.status_code == 200, response.json()
        return {row["id"] for row in response.json()["results"]}

    assert ids("email=JANE@Example.com") == {jane.id}
    assert ids("company=Initech") == {bob.id}
    assert ids("validation_status=risky") == {risky.id}
    assert ids("q=jan") == {jane.id}
    assert ids("q=initech") == {bob.id}
    cutoff = (timezone.now() - datetime.timedelta(days=1)).isoformat()
    assert ids(f"created_before={cutoff.replace('+', '%2B')}") == {old.id}
    assert old.id not in ids(f"created_after={cutoff.replace('+', '%2B')}")


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("validation_status=great", "validation_status"),
        ("created_after=yesterday", "created_after"),
        ("created_before=2026-13-45", "created_before"),
    ],
)
def test_bad_filters_are_a_400_with_the_parameter(api, query, path):
    response = api.get(f"{URL}?{query}")
    assert response.status_code == 400
    assert path in _fields(response)


def test_a_bad_cursor_is_a_404_not_a_500(api):
    assert api.get(f"{URL}?cursor=garbage").status_code == 404


def test_sms_consent_is_stamped_with_its_time_and_a_grant_needs_its_source(api, tenant):
    before = timezone.now()
    response = api.post(
        URL,
        {
            "email": "texted@example.com",
            "phone": "+14155550100",
            "sms_consent": "granted",
            "sms_consent_source": "web_form",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["sms_consent"], body["sms_consent_source"]) == ("granted", "web_form")
    stamped = datetime.datetime.fromisoformat(body["sms_consent_at"])
    assert before <= stamped <= timezone.now()
    lead = Lead.objects.get(pk=body["id"])
    assert lead.sms_consent_at == stamped

    # A grant without its source is refused, whatever the lead had before.
    refused = api.post(
        URL, {"email": "nosource@example.com", "sms_consent": "granted"}, format="json"
    )
    assert refused.status_code == 400
    assert list(_fields(refused)) == ["sms_consent_source"]
    assert not Lead.objects.filter(email="nosource@example.com").exists()
    revoked = api.patch(
        f"{URL}{lead.pk}/",
        {"sms_consent": "revoked", "sms_consent_source": "crm"},
        format="json",
    )
    assert revoked.status_code == 200
    assert revoked.json()["sms_consent_at"] > body["sms_consent_at"]
    for source in ({}, {"sms_consent_source": "  "}):
        response = api.patch(
            f"{URL}{lead.pk}/", {"sms_consent": "granted", **source}, format="json"
        )
        assert response.status_code == 400
        assert _fields(response) == {
            "sms_consent_source": [
                'required when sms_consent is "granted": where the consent came from, e.g. web_form'
            ]
        }
    lead.refresh_from_db()
    assert (lead.sms_consent, lead.sms_consent_source) == ("revoked", "crm")
    # Unknown or revoked need no source: theirs is then "api", never the one before.
    unknown = api.patch(f"{URL}{lead.pk}/", {"sms_consent": "unknown"}, format="json")
    assert unknown.status_code == 200
    assert (unknown.json()["sms_consent"], unknown.json()["sms_consent_source"]) == (
        "unknown",
        "api",
    )
    created = api.post(URL, {"email": "r@example.com", "sms_consent": "revoked"}, format="json")
    assert created.json()["sms_consent_source"] == "api"

    bulk = api.post(
        f"{URL}bulk/",
        {"items": [{"email": "b1@example.com", "sms_consent": "granted"}]},
        format="json",
    )
    assert set(bulk.json()["errors"]) == {"items/0/sms_consent_source"}


def test_bulk_create_answers_per_row(api, tenant):
    LeadFactory(tenant=tenant, email="existing@example.com")
    response = api.post(
        f"{URL}bulk/",
        {
            "items": [
                {"email": "one@example.com", "first_name": "One"},
                {"email": "broken"},
                {"email": "Existing@example.com"},
                {"email": "two@example.com", "phone": 5},
                "not an object",
                {"email": "ONE@example.com"},
                {"email": "three@example.com", "extra": 1},
                {"email": "four@example.com", "country": "Narnia"},
            ]
        },
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["created_count"] == 1
    assert body["skipped_count"] == 2
    assert body["error_count"] == 5
    assert [row["index"] for row in body["created"]] == [0]
    assert body["skipped"][0] == {
        "index": 2,
        "email": "existing@example.com",
        "reason": "already exists",
        "existing_id": Lead.objects.get(email="existing@example.com").id,
    }
    assert body["skipped"][1]["index"] == 5
    assert body["skipped"][1]["reason"].startswith("duplicate of an earlier row (items/0)")
    assert set(body["errors"]) == {
        "items/1/email",
        "items/3/phone",
        "items/4",
        "items/6/extra",
        "items/7/country",
    }
    assert Lead.objects.for_tenant(tenant.id).count() == 2


def test_bulk_create_of_ten_thousand_rows(api, tenant):
    items = [
        {"email": f"person{i}@example.com", "company": f"Company {i % 7}"} for i in range(10_000)
    ]
    bad = {
        17: {"email": "nope"},
        4000: {"email": "x@y"},
        9999: {"email": "ok@example.com", "phone": "1"},
    }
    for index, row in bad.items():
        items[index] = row
    response = api.post(f"{URL}bulk/", {"items": items}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["created_count"] == 9_997
    assert body["error_count"] == 3
    assert set(body["errors"]) == {"items/17/email", "items/4000/email", "items/9999/phone"}
    assert Lead.objects.for_tenant(tenant.id).count() == 9_997


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({}, "items"),
        ({"items": []}, "items"),
        ({"items": {"email": "a@example.com"}}, "items"),
        ({"items": [{"email": "a@example.com"}], "dry_run": True}, "dry_run"),
        ({"items": [{"email": "a@example.com"}] * 10_001}, "items"),
    ],
)
def test_bulk_envelope_errors_are_a_400(api, body, path):
    response = api.post(f"{URL}bulk/", body, format="json")
    assert response.status_code == 400
    assert path in _fields(response)
    assert not Lead.objects.exists()


def test_malformed_json_is_a_400(api):
    response = api.post(URL, '{"email": "a@example.com",', content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


def test_nan_is_not_json(api):
    response = api.post(
        URL,
        '{"email": "a@example.com", "custom_fields": {"x": NaN}}',
        content_type="application/json",
    )
    assert response.status_code == 400


def test_a_body_over_the_limit_is_a_413_with_a_json_error(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    items = [{"email": f"person{i}@example.com"} for i in range(1_000)]
    response = api.post(
        f"{URL}bulk/", json.dumps({"items": items}), content_type="application/json"
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert not Lead.objects.exists()
