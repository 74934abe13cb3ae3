"""The sender-identities API: CRUD, cross-field rules as 400s, in-use identities as 409."""

import pytest

from messaging.models import SenderIdentity
from outreach.testing.factories import SenderIdentityFactory
from outreach.testing.world import world_build

pytestmark = pytest.mark.django_db

URL = "/api/v1/sender-identities/"


def _fields(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"].get("fields", {})


def test_create_with_every_field(api, tenant):
    body = {
        "from_name": "Ann Example",
        "from_email": "Ann@Acme.example.com",
        "reply_to": "replies@acme.example.com",
        "signature": "Ann\nAcme",
        "owner_name": "Ann",
        "owner_email": "ann.owner@acme.example.com",
        "daily_cap": 150,
        "hourly_cap": 30,
        "warmup_enabled": True,
        "warmup_start_volume": 10,
        "warmup_daily_increase": 5,
        "warmup_ceiling": 150,
        "warmup_started_on": "2026-11-01",
        "window_days": [4, 0, 2],
        "window_start": "08:30",
        "window_end": "16:45",
        "timezone": "America/Chicago",
        "paused": True,
    }
    response = api.post(URL, body, format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["from_email"] == "ann@acme.example.com"
    assert data["window_days"] == [0, 2, 4]
    assert data["window_start"] == "08:30:00"
    assert data["domain_status"] == "unverified"
    identity = SenderIdentity.objects.get(pk=data["id"])
    assert identity.tenant_id == tenant.id
    assert (identity.daily_cap, identity.hourly_cap, identity.paused) == (150, 30, True)


def test_create_with_only_the_required_fields_takes_defaults(api):
    response = api.post(
        URL, {"from_name": "Bo", "from_email": "bo@acme.example.com"}, format="json"
    )
    assert response.status_code == 201
    data = response.json()
    assert (data["window_days"], data["timezone"], data["daily_cap"]) == (
        [0, 1, 2, 3, 4],
        "UTC",
        200,
    )


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"from_email": "a@acme.example.com"}, "from_name"),
        ({"from_name": "A"}, "from_email"),
        ({"from_email": "not-an-email"}, "from_email"),
        ({"reply_to": "nope@"}, "reply_to"),
        ({"hourly_cap": 500, "daily_cap": 100}, "hourly_cap"),
        ({"window_start": "17:00", "window_end": "09:00"}, "window_end"),
        ({"window_start": "09:00", "window_end": "09:00"}, "window_end"),
        ({"window_days": [1, 1]}, "window_days"),
        ({"window_days": [7]}, "window_days/0"),
        ({"window_days": []}, "window_days"),
        ({"window_days": "0,1"}, "window_days"),
        ({"timezone": "Atlantis/Capital"}, "timezone"),
        ({"timezone": ""}, "timezone"),
        ({"daily_cap": -1}, "daily_cap"),
        ({"daily_cap": "100"}, "daily_cap"),
        ({"daily_cap": 2**40}, "daily_cap"),
        ({"paused": "yes"}, "paused"),
        ({"window_start": "9 o'clock"}, "window_start"),
        ({"warmup_started_on": "yesterday"}, "warmup_started_on"),
        ({"warmup_start_volume": 500, "warmup_ceiling": 100}, "warmup_start_volume"),
        ({"domain_status": "verified"}, "domain_status"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_input_is_a_400_with_the_field_path(api, body, path):
    full = {"from_name": "A", "from_email": "a@acme.example.com", **body}
    for key in ("from_name", "from_email"):
        if key not in body and path == key:
            full.pop(key)
    response = api.post(URL, full, format="json")
    assert response.status_code == 400, response.content
    assert path in _fields(response), response.json()
    assert not SenderIdentity.objects.exists()


def test_a_duplicate_from_address_is_a_400_on_from_email(api, tenant):
    SenderIdentityFactory(tenant=tenant, from_email="ann@acme.example.com")
    response = api.post(
        URL, {"from_name": "A", "from_email": "ANN@acme.example.com"}, format="json"
    )
    assert response.status_code == 400
    assert "from_email" in _fields(response)


def test_the_same_from_address_in_another_tenant_is_fine(api, other_tenant):
    SenderIdentityFactory(tenant=other_tenant, from_email="ann@acme.example.com")
    response = api.post(
        URL, {"from_name": "A", "from_email": "ann@acme.example.com"}, format="json"
    )
    assert response.status_code == 201


def test_list_and_retrieve(api, tenant, other_tenant):
    mine = [SenderIdentityFactory(tenant=tenant) for _ in range(3)]
    SenderIdentityFactory(tenant=other_tenant)
    response = api.get(URL)
    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [i.id for i in reversed(mine)]
    response = api.get(f"{URL}{mine[0].id}/")
    assert response.json()["from_email"] == mine[0].from_email


def test_patch_checks_rules_against_the_stored_values(api, tenant):
    identity = SenderIdentityFactory(tenant=tenant, daily_cap=100, hourly_cap=20)
    response = api.patch(f"{URL}{identity.id}/", {"hourly_cap": 101}, format="json")
    assert response.status_code == 400
    assert "hourly_cap" in _fields(response)
    response = api.patch(f"{URL}{identity.id}/", {"window_end": "08:00"}, format="json")
    assert response.status_code == 400
    assert "window_end" in _fields(response)

    response = api.patch(
        f"{URL}{identity.id}/", {"daily_cap": 500, "hourly_cap": 101}, format="json"
    )
    assert response.status_code == 200
    identity.refresh_from_db()
    assert (identity.daily_cap, identity.hourly_cap) == (500, 101)


def test_patch_to_a_taken_from_address_is_a_400(api, tenant):
    SenderIdentityFactory(tenant=tenant, from_email="taken@acme.example.com")
    identity = SenderIdentityFactory(tenant=tenant)
    response = api.patch(
        f"{URL}{identity.id}/", {"from_email": "taken@acme.example.com"}, format="json"
    )
    assert response.status_code == 400
    assert "from_email" in _fields(response)


def test_pause_and_resume(api, tenant):
    identity = SenderIdentityFactory(tenant=tenant)
    assert api.patch(f"{URL}{identity.id}/", {"paused": True}, format="json").json()["paused"]
    identity.refresh_from_db()
    assert identity.paused


def test_delete_an_unused_identity(api, tenant):
    identity = SenderIdentityFactory(tenant=tenant)
    assert api.delete(f"{URL}{identity.id}/").status_code == 204
    assert not SenderIdentity.objects.filter(pk=identity.pk).exists()


def test_delete_an_identity_in_use_is_a_409_that_says_why(api, tenant):
    world = world_build(tenant=tenant)
    response = api.delete(f"{URL}{world.identity.id}/")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "in_use"
    assert "1 campaigns" in error["message"]
    assert "paused" in error["message"]
    assert SenderIdentity.objects.filter(pk=world.identity.pk).exists()


@pytest.mark.parametrize("bad_id", ["abc", "0", "123456789012345678901234"])
def test_ids_that_cannot_exist_are_404(api, bad_id):
    for method in ("get", "patch", "delete"):
        response = getattr(api, method)(f"{URL}{bad_id}/", {}, format="json")
        assert response.status_code == 404, (method, bad_id)
