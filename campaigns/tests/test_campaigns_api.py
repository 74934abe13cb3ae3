"""The campaigns API end to end against Postgres: lifecycle, versions, enrollment, preview,
tenant isolation and error bodies."""

import datetime
import json
import os
import subprocess
import sys

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.models import Campaign, CampaignPlanVersion, Enrollment, Lead, ScheduledAction
from campaigns.services import engine
from campaigns.services.transitions import enrollment_pause
from campaigns.tests.campaign_support import PLAN, campaign_live, identity_for, plan_v2
from outreach.testing.factories import LeadFactory
from suppression.models import Suppression

pytestmark = pytest.mark.django_db


def _error(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"]


def test_full_lifecycle_create_version_publish_activate_enroll(api, tenant):
    identity = identity_for(tenant)
    response = api.post(
        "/api/v1/campaigns/",
        {"name": "Q3 outbound", "description": "EMEA", "sender_identity_id": identity.pk},
        format="json",
    )
    assert response.status_code == 201
    campaign = response.json()
    assert campaign["status"] == "draft"
    assert campaign["current_version"] is None
    base = f"/api/v1/campaigns/{campaign['id']}"

    # Activating needs a published version.
    response = api.post(f"{base}/activate/")
    assert response.status_code == 400
    assert _error(response)["code"] == "not_published"

    response = api.post(f"{base}/versions/validate/", {"plan": PLAN}, format="json")
    assert response.status_code == 200
    assert response.json() == {"valid": True, "warnings": {}, "sms_segments": {}}
    assert not CampaignPlanVersion.objects.exists()

    response = api.post(f"{base}/versions/", {"plan": PLAN}, format="json")
    assert response.status_code == 201
    version = response.json()
    assert version["version"] == 1
    assert len(version["checksum"]) == 64
    assert version["published_at"] is None
    assert version["is_current"] is False

    response = api.post(f"{base}/versions/1/publish/")
    assert response.status_code == 200
    assert response.json()["current_version"] == 1
    assert CampaignPlanVersion.objects.get(campaign_id=campaign["id"]).published_at is not None

    response = api.post(f"{base}/activate/")
    assert response.status_code == 200
    assert response.json()["status"] == "active"

    jane = LeadFactory(tenant=tenant, email="jane@acme.example", first_name="Jane")
    bob = LeadFactory(tenant=tenant, email="bob@acme.example")
    invalid = LeadFactory(
        tenant=tenant,
        email="nobody@nxdomain.example",
        validation_status="invalid",
        validation_reason="domain has no mail server",
    )
    suppressed = LeadFactory(tenant=tenant, email="gone@acme.example")
    Suppression.objects.create(
        tenant=tenant, email="gone@acme.example", reason="unsubscribe", source="api"
    )
    stranger = LeadFactory()  # another tenant's lead

    response = api.post(
        f"{base}/enroll/",
        {"lead_ids": [jane.pk, invalid.pk, suppressed.pk, stranger.pk, 987654321]},
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert [e["lead_id"] for e in body["enrolled"]] == [jane.pk]
    reasons = {(s.get("lead_id"), s["reason"]) for s in body["skipped"]}
    assert reasons == {
        (invalid.pk, "invalid"),
        (suppressed.pk, "suppressed"),
        (stranger.pk, "not_found"),
        (987654321, "not_found"),
    }
    invalid_skip = next(s for s in body["skipped"] if s["reason"] == "invalid")
    assert invalid_skip["detail"] == "domain has no mail server"

    response = api.post(
        f"{base}/enroll/",
        {"emails": ["BOB@acme.example", "jane@acme.example", "who@acme.example"]},
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert [e["email"] for e in body["enrolled"]] == ["bob@acme.example"]
    assert {(s["email"], s["reason"]) for s in body["skipped"]} == {
        ("jane@acme.example", "already_enrolled"),
        ("who@acme.example", "not_found"),
    }

    enrollments = Enrollment.objects.filter(campaign_id=campaign["id"]).order_by("lead_id")
    assert [(e.lead_id, e.state, e.current_step, e.step_seq) for e in enrollments] == [
        (jane.pk, "active", "intro", 1),
        (bob.pk, "active", "intro", 1),
    ]
    for enrollment in enrollments:
        action = ScheduledAction.objects.get(enrollment=enrollment)
        assert (action.kind, action.step, action.step_seq, action.status) == (
            "send",
            "intro",
            1,
            "pending",
        )

    response = api.get(f"{base}/enrollments/", {"state": "active"})
    assert response.status_code == 200
    rows = response.json()["results"]
    assert {row["lead_id"] for row in rows} == {jane.pk, bob.pk}
    row = next(r for r in rows if r["lead_id"] == jane.pk)
    assert row["current_step"] == "intro"
    assert row["state"] == "active"
    assert row["plan_version"] == 1
    assert row["stop_reason"] == ""
    assert row["last_error"] == ""
    assert row["lead_email"] == "jane@acme.example"
    assert api.get(f"{base}/enrollments/", {"state": "stopped"}).json()["results"] == []


def test_enrollments_list_is_cursor_paginated(api, tenant):
    campaign = campaign_live(api, tenant)
    leads = [LeadFactory(tenant=tenant) for _ in range(3)]
    api.post(
        f"/api/v1/campaigns/{campaign['id']}/enroll/",
        {"lead_ids": [lead.pk for lead in leads]},
        format="json",
    )
    seen = []
    url = f"/api/v1/campaigns/{campaign['id']}/enrollments/?page_size=2"
    while url:
        body = api.get(url).json()
        seen.extend(row["lead_id"] for row in body["results"])
        url = body["next"]
    assert sorted(seen) == sorted(lead.pk for lead in leads)


def test_invalid_plan_is_refused_with_exact_pointers(api, tenant):
    identity = identity_for(tenant)
    campaign = api.post(
        "/api/v1/campaigns/", {"name": "c", "sender_identity_id": identity.pk}, format="json"
    ).json()
    bad = {
        "start": "intro",
        "steps": {
            "intro": {
                "type": "email",
                "variants": [{"name": "a", "subject": "Hi {{ lead.nope }}", "text": "x"}],
                "on": {"no_open": {"after": "3 days", "to": "gone"}},
            }
        },
    }
    for url in ("versions/validate/", "versions/"):
        response = api.post(
            f"/api/v1/campaigns/{campaign['id']}/{url}", {"plan": bad}, format="json"
        )
        assert response.status_code == 400
        error = _error(response)
        assert error["code"] == "invalid_plan"
        assert set(error["fields"]) == {
            "/steps/intro/on",
            "/steps/intro/on/no_open/after",
            "/steps/intro/on/no_open/to",
            "/steps/intro/variants/0/subject",
        }
        assert error["fields"]["/steps/intro/on/no_open/to"] == ['no step named "gone"']
        assert error["fields"]["/steps/intro/on/no_open/after"][0].startswith(
            'expected a duration like "3d"'
        )
    assert not CampaignPlanVersion.objects.exists()

    # Not an object at all: the whole document ("" pointer) is wrong.
    for plan in ([], "plan", 3):
        response = api.post(
            f"/api/v1/campaigns/{campaign['id']}/versions/", {"plan": plan}, format="json"
        )
        assert response.status_code == 400, plan
        assert "" in _error(response)["fields"]
    for body in ({}, {"plan": None}):
        response = api.post(f"/api/v1/campaigns/{campaign['id']}/versions/", body, format="json")
        assert response.status_code == 400
        assert "plan" in _error(response)["fields"]
    # Deep enough to exhaust the JSON decoder's stack: still a 400.
    deep = '{"plan": ' + "[" * 50_000 + "]" * 50_000 + "}"
    response = api.post(
        f"/api/v1/campaigns/{campaign['id']}/versions/", deep, content_type="application/json"
    )
    assert (response.status_code, _error(response)["code"]) == (400, "parse_error")
    response = api.post(
        f"/api/v1/campaigns/{campaign['id']}/versions/", {"plan": PLAN, "x": 1}, format="json"
    )
    assert response.status_code == 400
    assert _error(response)["fields"] == {"x": ["Unknown field."]}


def test_versions_are_idempotent_numbered_and_immutable(api, tenant):
    identity = identity_for(tenant)
    campaign = api.post(
        "/api/v1/campaigns/", {"name": "c", "sender_identity_id": identity.pk}, format="json"
    ).json()
    url = f"/api/v1/campaigns/{campaign['id']}/versions/"
    first = api.post(url, {"plan": PLAN}, format="json")
    # The same plan with its keys in another order is the same document.
    reordered = {"steps": dict(reversed(list(PLAN["steps"].items()))), "start": "intro"}
    again = api.post(url, {"plan": reordered}, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["version"] == 1
    assert again.json()["checksum"] == first.json()["checksum"]
    second = api.post(url, {"plan": plan_v2()}, format="json")
    assert second.status_code == 201
    assert second.json()["version"] == 2
    assert CampaignPlanVersion.objects.filter(campaign_id=campaign["id"]).count() == 2

    api.post(f"{url}2/publish/")
    listed = api.get(url).json()
    assert [(v["version"], v["is_current"]) for v in listed] == [(2, True), (1, False)]

    version = CampaignPlanVersion.objects.get(campaign_id=campaign["id"], version=1)
    with (
        pytest.raises(IntegrityError, match="immutable"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            "UPDATE campaigns_campaignplanversion SET plan = '{}'::jsonb WHERE id = %s",
            [version.pk],
        )
    version.refresh_from_db()
    assert version.plan == PLAN

    # Rolling back is publishing the older version again.
    response = api.post(f"{url}1/publish/")
    assert response.json()["current_version"] == 1
    assert api.post(f"{url}9/publish/").status_code == 404


def test_pause_keeps_work_resume_continues_archive_stops(api, tenant):
    campaign = campaign_live(api, tenant)
    base = f"/api/v1/campaigns/{campaign['id']}"
    leads = [LeadFactory(tenant=tenant) for _ in range(3)]
    api.post(f"{base}/enroll/", {"lead_ids": [lead.pk for lead in leads]}, format="json")
    actions_before = set(ScheduledAction.objects.values_list("id", "due_at", "status"))
    assert len(actions_before) == 3

    response = api.post(f"{base}/pause/", {"reason": "client asked"}, format="json")
    assert response.json()["status"] == "paused"
    assert set(Enrollment.objects.values_list("state", flat=True)) == {"active"}
    assert set(ScheduledAction.objects.values_list("id", "due_at", "status")) == actions_before
    assert api.post(f"{base}/pause/").status_code == 200  # repeating is harmless
    # Audited once (the repeat changed nothing): who, what, why, before and after.
    entries = api.get("/api/v1/audit-log/", {"action": "campaign.pause"}).json()["results"]
    assert len(entries) == 1, entries
    pause = entries[0]
    assert pause["actor"].startswith("api-key:")
    assert (pause["target_type"], pause["target_id"], pause["reason"]) == (
        "campaign",
        str(campaign["id"]),
        "client asked",
    )
    assert (pause["before"], pause["after"]) == ({"status": "active"}, {"status": "paused"})
    assert pause["created_at"]
    response = api.post(f"{base}/activate/")
    assert response.status_code == 400
    assert _error(response)["code"] == "invalid_transition"
    assert "resume" in _error(response)["message"]

    response = api.post(f"{base}/resume/")
    assert response.json()["status"] == "active"
    assert set(ScheduledAction.objects.values_list("id", "due_at", "status")) == actions_before

    # One lead is out of office: a paused enrollment with a wake-up; archiving stops it too.
    with transaction.atomic():
        ooo = engine.enrollment_locked(enrollment_id=Enrollment.objects.get(lead=leads[0]).pk)
        enrollment_pause(
            enrollment=ooo, until=timezone.now() + datetime.timedelta(days=3), reason="ooo"
        )
    assert ScheduledAction.objects.filter(kind="resume").count() == 1

    response = api.post(f"{base}/archive/")
    assert response.status_code == 200
    assert response.json()["status"] == "archived"
    stopped = Enrollment.objects.filter(campaign_id=campaign["id"])
    assert {(e.state, e.stop_reason) for e in stopped} == {("stopped", "campaign archived")}
    assert all(e.finished_at is not None for e in stopped)
    assert not ScheduledAction.objects.exists()
    for enrollment in stopped:
        transition = enrollment.transitions.get()
        assert (transition.trigger, transition.from_step, transition.to_step) == (
            "campaign_archived",
            "intro",
            "",
        )

    assert api.post(f"{base}/archive/").status_code == 200
    for url in ("activate/", "pause/", "resume/"):
        response = api.post(f"{base}/{url}")
        assert response.status_code == 400, url
        assert _error(response)["code"] == "invalid_transition"
    response = api.post(f"{base}/versions/", {"plan": plan_v2()}, format="json")
    assert (response.status_code, _error(response)["code"]) == (400, "archived")
    response = api.post(f"{base}/enroll/", {"lead_ids": [leads[0].pk]}, format="json")
    assert (response.status_code, _error(response)["code"]) == (400, "archived")
    response = api.patch(f"{base}/", {"name": "new"}, format="json")
    assert (response.status_code, _error(response)["code"]) == (400, "archived")


def test_status_changes_refused_from_draft(api, tenant):
    identity = identity_for(tenant)
    campaign = api.post(
        "/api/v1/campaigns/", {"name": "c", "sender_identity_id": identity.pk}, format="json"
    ).json()
    for url in ("pause/", "resume/"):
        response = api.post(f"/api/v1/campaigns/{campaign['id']}/{url}")
        assert response.status_code == 400
        assert _error(response)["code"] == "invalid_transition"
    assert Campaign.objects.get(pk=campaign["id"]).status == "draft"
    # A draft can be archived directly.
    response = api.post(f"/api/v1/campaigns/{campaign['id']}/archive/")
    assert response.json()["status"] == "archived"


def test_preview_renders_every_email_variant_for_the_lead(api, tenant):
    campaign = campaign_live(api, tenant)
    lead = LeadFactory(
        tenant=tenant, first_name="Jane", company="Acme & Co", custom_fields={"plan": "pro"}
    )
    response = api.get(f"/api/v1/campaigns/{campaign['id']}/preview/", {"lead_id": lead.pk})
    assert response.status_code == 200
    body = response.json()
    assert (body["version"], body["lead_id"]) == (1, lead.pk)
    assert [step["step"] for step in body["steps"]] == ["intro", "follow_up"]
    intro, follow_up = body["steps"]
    a, b = intro["variants"]
    assert a["name"] == "a" and a["weight"] == 1
    assert a["subject"] == "Hi Jane"
    assert a["text"] == "Hello Jane at Acme & Co.\n-- Sam, Outreach Inc"
    assert a["html"] == "<p>Hello Jane at Acme &amp; Co</p>"
    assert b["subject"] == "A question for Acme & Co"
    assert b["text"].startswith("Your plan: pro. http")
    assert follow_up["thread_with"] == "intro"
    assert follow_up["variants"][0]["subject"] == "Re: Hi Jane"
    assert follow_up["variants"][0]["text"] == "Just following up, Jane."

    api.post(f"/api/v1/campaigns/{campaign['id']}/versions/", {"plan": plan_v2()}, format="json")
    response = api.get(
        f"/api/v1/campaigns/{campaign['id']}/preview/", {"lead_id": lead.pk, "version": 2}
    )
    assert response.json()["steps"][0]["variants"][0]["text"] == "Hello again Jane."

    for params, field in (
        ({}, "lead_id"),
        ({"lead_id": "x"}, "lead_id"),
        ({"lead_id": 987654321}, "lead_id"),
        ({"lead_id": LeadFactory().pk}, "lead_id"),  # another tenant's lead
        ({"lead_id": lead.pk, "version": 7}, "version"),
        ({"lead_id": lead.pk, "version": "v1"}, "version"),
    ):
        response = api.get(f"/api/v1/campaigns/{campaign['id']}/preview/", params)
        assert response.status_code == 400, params
        assert field in _error(response)["fields"], params


def test_campaign_list_retrieve_and_patch(api, tenant, other_tenant):
    identity = identity_for(tenant)
    other_identity = identity_for(tenant, from_email="other@sender.example.com")
    created = api.post(
        "/api/v1/campaigns/", {"name": "c", "sender_identity_id": identity.pk}, format="json"
    ).json()
    campaign_live(api, tenant)
    Campaign.objects.create(
        tenant=other_tenant, name="theirs", sender_identity=identity_for(other_tenant)
    )
    response = api.patch(
        f"/api/v1/campaigns/{created['id']}/",
        {"name": "Renamed", "sender_identity_id": other_identity.pk},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["name"] == "Renamed"
    assert response.json()["sender_identity_id"] == other_identity.pk
    assert response.json()["description"] == ""
    assert api.get(f"/api/v1/campaigns/{created['id']}/").json()["name"] == "Renamed"

    listed = api.get("/api/v1/campaigns/").json()["results"]
    assert len(listed) == 2
    drafts = api.get("/api/v1/campaigns/", {"status": "draft"}).json()["results"]
    assert [c["id"] for c in drafts] == [created["id"]]
    assert api.get("/api/v1/campaigns/", {"status": "nope"}).status_code == 400


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "c"}, "sender_identity_id"),
        ({"name": "c", "sender_identity_id": "1"}, "sender_identity_id"),
        ({"name": 5, "sender_identity_id": 1}, "name"),
        ({"name": "", "sender_identity_id": 1}, "name"),
        ({"name": "c", "sender_identity_id": 1, "status": "active"}, "status"),
    ],
)
def test_create_campaign_bad_input(api, body, field):
    response = api.post("/api/v1/campaigns/", body, format="json")
    assert response.status_code == 400
    assert field in _error(response)["fields"]


def test_create_campaign_with_another_tenants_identity_is_refused(api, other_tenant):
    theirs = identity_for(other_tenant)
    response = api.post(
        "/api/v1/campaigns/", {"name": "c", "sender_identity_id": theirs.pk}, format="json"
    )
    assert response.status_code == 400
    assert "sender_identity_id" in _error(response)["fields"]
    assert not Campaign.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "lead_ids"),
        ({"lead_ids": []}, "lead_ids"),
        ({"lead_ids": "1"}, "lead_ids"),
        ({"lead_ids": ["1"]}, "lead_ids/0"),
        ({"lead_ids": [1, -4]}, "lead_ids/1"),
        ({"emails": [5]}, "emails/0"),
        ({"lead_ids": list(range(1, 10_002))}, "lead_ids"),
        (
            {"lead_ids": list(range(1, 5001)), "emails": [f"{n}@x.example" for n in range(5001)]},
            "lead_ids",
        ),
        ({"lead_id": [1]}, "lead_id"),
    ],
)
def test_enroll_bad_input(api, tenant, body, field):
    campaign = campaign_live(api, tenant)
    response = api.post(f"/api/v1/campaigns/{campaign['id']}/enroll/", body, format="json")
    assert response.status_code == 400
    assert field in _error(response)["fields"], _error(response)
    assert not Enrollment.objects.exists()


def test_enroll_ten_thousand_leads_in_one_call(api, tenant):
    campaign = campaign_live(api, tenant)
    Lead.objects.bulk_create(
        Lead(tenant=tenant, email=f"lead{n}@bulk.example") for n in range(10_000)
    )
    ids = list(Lead.objects.filter(tenant=tenant).values_list("id", flat=True))
    response = api.post(
        f"/api/v1/campaigns/{campaign['id']}/enroll/", {"lead_ids": ids}, format="json"
    )
    assert response.status_code == 200
    assert len(response.json()["enrolled"]) == 10_000
    assert ScheduledAction.objects.filter(kind="send").count() == 10_000


def _every_endpoint(campaign_id, lead_id):
    base = f"/api/v1/campaigns/{campaign_id}"
    return [
        ("get", f"{base}/", None),
        ("patch", f"{base}/", {"name": "x"}),
        ("get", f"{base}/versions/", None),
        ("post", f"{base}/versions/", {"plan": PLAN}),
        ("post", f"{base}/versions/validate/", {"plan": PLAN}),
        ("post", f"{base}/versions/1/publish/", None),
        ("post", f"{base}/activate/", None),
        ("post", f"{base}/pause/", None),
        ("post", f"{base}/resume/", None),
        ("post", f"{base}/archive/", None),
        ("post", f"{base}/enroll/", {"lead_ids": [lead_id]}),
        ("get", f"{base}/enrollments/", None),
        ("get", f"{base}/preview/?lead_id={lead_id}", None),
        ("post", f"{base}/migrate/", {"to_version": 1, "step_map": {}, "dry_run": True}),
        ("get", f"/api/v1/leads/{lead_id}/timeline/", None),
    ]


def test_another_tenants_ids_are_not_found_on_every_endpoint(api_client_for, tenant, other_tenant):
    theirs = campaign_live(api_client_for(other_tenant), other_tenant)
    their_lead = LeadFactory(tenant=other_tenant)
    api_client_for(other_tenant).post(
        f"/api/v1/campaigns/{theirs['id']}/enroll/", {"lead_ids": [their_lead.pk]}, format="json"
    )
    state_before = (
        list(Campaign.objects.values_list("id", "status", "name", "current_version_id")),
        list(Enrollment.objects.values_list("id", "state")),
        CampaignPlanVersion.objects.count(),
    )
    mine = api_client_for(tenant)
    for method, url, body in _every_endpoint(theirs["id"], their_lead.pk):
        response = getattr(mine, method)(url, body, format="json")
        assert response.status_code == 404, (method, url, response.content)
        assert _error(response)["code"] == "not_found"
    state_after = (
        list(Campaign.objects.values_list("id", "status", "name", "current_version_id")),
        list(Enrollment.objects.values_list("id", "state")),
        CampaignPlanVersion.objects.count(),
    )
    assert state_after == state_before
    # Malformed ids are simply not found either.
    for method, url, body in _every_endpoint("abc", "99999999999999999999"):
        response = getattr(mine, method)(url, body, format="json")
        assert response.status_code == 404, (method, url)


def test_every_endpoint_needs_an_api_key(api, tenant):
    campaign = campaign_live(api, tenant)
    lead = LeadFactory(tenant=tenant)
    anonymous = APIClient()
    endpoints = [
        ("get", "/api/v1/campaigns/", None),
        ("post", "/api/v1/campaigns/", {"name": "x", "sender_identity_id": 1}),
        *_every_endpoint(campaign["id"], lead.pk),
    ]
    for method, url, body in endpoints:
        response = getattr(anonymous, method)(url, body, format="json")
        assert response.status_code == 401, (method, url)
    assert Campaign.objects.get(pk=campaign["id"]).status == "active"


def _race_version_adds(tenant, campaign_id: int, plans: list[dict], tmp_path) -> list[dict]:
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://root@127.0.0.1:5432/{connection.settings_dict['NAME']}",
    }
    go = tmp_path / "go"
    procs = []
    for index, plan in enumerate(plans):
        plan_file = tmp_path / f"plan{index}.json"
        plan_file.write_text(json.dumps(plan))
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "campaigns.tests.version_add_worker",
                    str(tenant.pk),
                    str(campaign_id),
                    str(plan_file),
                    str(go),
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    return results


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_version_adds_number_versions_once_each(tenant, tmp_path):
    identity = identity_for(tenant)
    campaign = Campaign.objects.create(tenant=tenant, name="c", sender_identity=identity)
    same = _race_version_adds(tenant, campaign.pk, [PLAN] * 4, tmp_path)
    assert sorted((r["version"], r["created"]) for r in same) == [
        (1, False),
        (1, False),
        (1, False),
        (1, True),
    ]
    other = plan_v2()
    third = plan_v2()
    third["steps"]["done"]["outcome"] = "other"
    second = tmp_path / "second"
    second.mkdir()
    different = _race_version_adds(tenant, campaign.pk, [other, third], second)
    assert sorted(r["version"] for r in different) == [2, 3]
    assert all(r["created"] for r in different)
    assert sorted(
        CampaignPlanVersion.objects.filter(campaign=campaign).values_list("version", flat=True)
    ) == [1, 2, 3]
