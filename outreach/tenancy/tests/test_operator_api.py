"""The operator API (``/api/v1/operator/kill-switches/``): staff signed in to the admin read
and set the platform kill switch per channel, audited like every control; tenant API keys,
anonymous callers, non-staff users and staff without the permission change nothing."""

import pytest
import yaml
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from outreach.tenancy import controls
from outreach.tenancy.models import AuditEntry, KillSwitch

pytestmark = pytest.mark.django_db

URL = "/api/v1/operator/kill-switches/"


@pytest.fixture(autouse=True)
def _fresh_caches(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    controls.kill_switches_cache_clear()
    yield
    controls.kill_switches_cache_clear()


def _user(username: str, *codenames: str, staff: bool = True):
    user = get_user_model().objects.create_user(
        username, f"{username}@example.com", "pw", is_staff=staff
    )
    for codename in codenames:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="tenancy", codename=codename)
        )
    return user


def _session(user, *, csrf: bool = False) -> APIClient:
    client = APIClient(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


@pytest.fixture
def operator() -> APIClient:
    return _session(_user("ops", "view_killswitch", "operate_killswitch"))


def _engaged() -> list[str]:
    return sorted(KillSwitch.objects.filter(engaged=True).values_list("channel", flat=True))


def test_an_operator_engages_and_releases_one_channel_with_an_audited_reason(operator, tenant):
    listed = operator.get(URL)
    assert listed.status_code == 200, listed.content
    assert [(s["channel"], s["engaged"]) for s in listed.json()["results"]] == [
        ("all", False),
        ("email", False),
        ("sms", False),
    ]

    response = operator.post(
        URL,
        {"channel": "email", "engaged": True, "reason": " SendGrid incident 42 "},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["channel"], body["engaged"], body["reason"], body["changed_by"]) == (
        "email",
        True,
        "SendGrid incident 42",
        "operator-api:ops",
    )
    assert _engaged() == ["email"]
    # Takes effect for the next send of that channel only.
    assert controls.sending_stop_reason(tenant=tenant, channel="email") == (
        "kill switch engaged (email)"
    )
    assert controls.sending_stop_reason(tenant=tenant, channel="sms") is None

    entry = AuditEntry.objects.get()
    assert (entry.tenant_id, entry.actor, entry.action, entry.target_type, entry.target_id) == (
        None,
        "operator-api:ops",
        "kill_switch.engage",
        "kill_switch",
        "email",
    )
    assert entry.reason == "SendGrid incident 42"
    assert (entry.before, entry.after) == (
        {"engaged": False, "reason": ""},
        {"engaged": True, "reason": "SendGrid incident 42"},
    )
    assert entry.created_at is not None
    assert [h["id"] for h in body["history"]] == [entry.pk]

    # Repeating the change is harmless: no second entry.
    again = operator.post(URL, {"channel": "email", "engaged": True, "reason": "x"}, format="json")
    assert again.status_code == 200
    assert AuditEntry.objects.count() == 1

    released = operator.post(
        URL, {"channel": "email", "engaged": False, "reason": "resolved"}, format="json"
    ).json()
    assert released["engaged"] is False
    assert _engaged() == []
    assert [h["action"] for h in released["history"]] == [
        "kill_switch.release",
        "kill_switch.engage",
    ]
    assert released["history"][0]["before"] == {"engaged": True, "reason": "SendGrid incident 42"}
    assert controls.sending_stop_reason(tenant=tenant, channel="email") is None


def test_the_all_channel_holds_every_channel(operator, tenant):
    operator.post(URL, {"channel": "all", "engaged": True, "reason": "stop"}, format="json")
    listed = {s["channel"]: s for s in operator.get(URL).json()["results"]}
    assert (listed["all"]["engaged"], listed["all"]["reason"]) == (True, "stop")
    for channel in ("email", "sms"):
        assert controls.sending_stop_reason(tenant=tenant, channel=channel) == (
            "kill switch engaged (all)"
        )


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"channel", "engaged", "reason"}),
        ({"channel": "fax", "engaged": True, "reason": "x"}, {"channel"}),
        ({"channel": "email", "engaged": "yes", "reason": "x"}, {"engaged"}),
        ({"channel": "email", "engaged": 1, "reason": "x"}, {"engaged"}),
        ({"channel": "email", "engaged": True}, {"reason"}),
        ({"channel": "email", "engaged": True, "reason": "   "}, {"reason"}),
        ({"channel": "email", "engaged": True, "reason": 7}, {"reason"}),
        ({"channel": "email", "engaged": True, "reason": "x" * 2001}, {"reason"}),
        ({"channel": "email", "engaged": True, "reason": "x", "force": True}, {"force"}),
        (["email", True, "x"], {"non_field_errors"}),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_changes_nothing(operator, body, fields):
    response = operator.post(URL, body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert set(error["fields"]) == fields, error
    assert all(reasons and all(reasons) for reasons in error["fields"].values())
    assert error["message"].split(":")[0] in fields
    assert _engaged() == []
    assert not AuditEntry.objects.exists()


def _try_all(client: APIClient) -> tuple[int, int]:
    read = client.get(URL).status_code
    write = client.post(
        URL, {"channel": "all", "engaged": True, "reason": "let me"}, format="json"
    ).status_code
    return read, write


def test_a_tenant_api_key_is_refused(api):
    response = api.post(URL, {"channel": "all", "engaged": True, "reason": "x"}, format="json")
    assert response.status_code == 403
    assert set(response.json()) == {"error"}
    assert api.get(URL).status_code == 403
    assert _engaged() == []
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("anonymous", (403, 403)),
        ("non_staff_with_permissions", (403, 403)),
        ("staff_without_permissions", (403, 403)),
        ("staff_who_may_only_look", (200, 403)),
        ("staff_who_may_only_operate", (403, 200)),
    ],
)
def test_only_staff_with_the_permission_may_read_or_change(who, expected):
    users = {
        "non_staff_with_permissions": lambda: _user(
            "customer", "view_killswitch", "operate_killswitch", staff=False
        ),
        "staff_without_permissions": lambda: _user("intern"),
        "staff_who_may_only_look": lambda: _user("viewer", "view_killswitch"),
        "staff_who_may_only_operate": lambda: _user("oncall", "operate_killswitch"),
    }
    client = APIClient() if who == "anonymous" else _session(users[who]())
    assert _try_all(client) == expected
    changed = expected[1] == 200
    assert _engaged() == (["all"] if changed else [])
    assert AuditEntry.objects.count() == int(changed)


def test_a_superuser_may_do_both(admin_user):
    assert _try_all(_session(admin_user)) == (200, 200)


def test_a_session_write_without_the_csrf_token_is_refused(admin_user):
    client = _session(admin_user, csrf=True)
    assert client.get(URL).status_code == 200
    response = client.post(URL, {"channel": "all", "engaged": True, "reason": "x"}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]
    assert _engaged() == []


def test_the_schema_documents_the_operator_routes():
    schema = yaml.safe_load(APIClient().get("/api/schema/").content)
    route = schema["paths"]["/api/v1/operator/kill-switches/"]
    assert set(route) >= {"get", "post"}
    assert route["post"]["tags"] == ["operator"]
    assert {"200", "400", "403"} <= set(route["post"]["responses"])
