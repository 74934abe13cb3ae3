"""Moving live enrollments to a new plan version: dry run, refusals, and the real move."""

import datetime

import pytest
from django.db import transaction
from django.utils import timezone

from campaigns.models import CampaignPlanVersion, Enrollment, EnrollmentTransition, ScheduledAction
from campaigns.services import engine
from campaigns.services.campaigns import enrollments_migrate
from campaigns.services.transitions import enrollment_pause
from campaigns.tests.campaign_support import campaign_live, plan_v2
from outreach.common.errors import NotFound
from outreach.testing.factories import LeadFactory

pytestmark = pytest.mark.django_db


def _move_to_wait(enrollment_id: int) -> None:
    """What a fired ``no_reply`` timeout does: intro → wait (entry 2)."""
    with transaction.atomic():
        enrollment = engine.enrollment_locked(enrollment_id=enrollment_id)
        assert engine.enrollment_transition(
            enrollment=enrollment,
            from_seq=1,
            trigger="no_reply",
            to_step="wait",
            cause="no reply within 3d",
            now=timezone.now(),
        )


def _snapshot() -> tuple:
    return (
        sorted(
            Enrollment.objects.values_list(
                "id", "plan_version_id", "current_step", "step_seq", "state"
            )
        ),
        sorted(ScheduledAction.objects.values_list("id", "kind", "step", "step_seq", "due_at")),
        EnrollmentTransition.objects.count(),
    )


@pytest.fixture
def live(api, tenant):
    """A campaign on v1 with three live enrollments: two at ``intro``, one at ``wait``, and a
    published v2 in which ``wait`` is called ``nudge``."""
    campaign = campaign_live(api, tenant)
    base = f"/api/v1/campaigns/{campaign['id']}"
    leads = [LeadFactory(tenant=tenant) for _ in range(3)]
    enrolled = api.post(
        f"{base}/enroll/", {"lead_ids": [lead.pk for lead in leads]}, format="json"
    ).json()["enrolled"]
    ids = sorted(e["enrollment_id"] for e in enrolled)
    _move_to_wait(ids[2])
    assert api.post(f"{base}/versions/", {"plan": plan_v2()}, format="json").status_code == 201
    assert api.post(f"{base}/versions/2/publish/").status_code == 200
    return {"campaign": campaign, "base": base, "intro": ids[:2], "waiting": ids[2]}


def test_dry_run_lists_each_outcome_and_changes_nothing(api, live):
    before = _snapshot()
    response = api.post(
        f"{live['base']}/migrate/",
        {"to_version": 2, "step_map": {"intro": "intro", "wait": "nudge"}, "dry_run": True},
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["to_version"], body["dry_run"]) == (2, True)
    assert body["counts"] == {"moved": 1, "stays": 2, "error": 0}
    outcomes = {o["enrollment_id"]: o for o in body["outcomes"]}
    assert set(outcomes) == {*live["intro"], live["waiting"]}
    for enrollment_id in live["intro"]:
        o = outcomes[enrollment_id]
        assert (o["from_version"], o["from_step"], o["outcome"], o["to_step"]) == (
            1,
            "intro",
            "stays",
            "intro",
        )
    waiting = outcomes[live["waiting"]]
    assert (waiting["from_step"], waiting["outcome"], waiting["to_step"]) == (
        "wait",
        "moved",
        "nudge",
    )
    assert _snapshot() == before


def test_dry_run_reports_unmapped_and_unknown_steps(api, live):
    response = api.post(
        f"{live['base']}/migrate/",
        {"to_version": 2, "step_map": {"intro": "opening", "wait": "nudge"}},
        format="json",
    )
    body = response.json()
    assert body["dry_run"] is True  # the default
    assert body["counts"] == {"moved": 1, "stays": 0, "error": 2}
    errors = [o for o in body["outcomes"] if o["outcome"] == "error"]
    assert {o["reason"] for o in errors} == {'step "opening" does not exist in version 2'}

    body = api.post(
        f"{live['base']}/migrate/", {"to_version": 2, "step_map": {"intro": "intro"}}, format="json"
    ).json()
    error = next(o for o in body["outcomes"] if o["outcome"] == "error")
    assert error["enrollment_id"] == live["waiting"]
    assert error["reason"] == 'step "wait" is missing from the step map'
    assert error["to_step"] is None


def test_real_run_with_any_error_moves_no_one(api, live):
    before = _snapshot()
    response = api.post(
        f"{live['base']}/migrate/",
        {"to_version": 2, "step_map": {"intro": "intro", "wait": "gone"}, "dry_run": False},
        format="json",
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "migration_refused"
    assert error["fields"] == {
        "step_map/wait": ['step "gone" does not exist in version 2 (1 enrollment(s) are on it)']
    }
    assert _snapshot() == before


def test_real_run_moves_enrollments_and_reschedules(api, live):
    intro_actions = set(
        ScheduledAction.objects.filter(enrollment_id__in=live["intro"]).values_list(
            "id", "kind", "step", "step_seq", "due_at"
        )
    )
    old_wait_action = ScheduledAction.objects.get(enrollment_id=live["waiting"])
    assert (old_wait_action.kind, old_wait_action.step, old_wait_action.step_seq) == (
        "advance",
        "wait",
        2,
    )
    v2 = CampaignPlanVersion.objects.get(campaign_id=live["campaign"]["id"], version=2)

    response = api.post(
        f"{live['base']}/migrate/",
        {"to_version": 2, "step_map": {"intro": "intro", "wait": "nudge"}, "dry_run": False},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["counts"] == {"moved": 1, "stays": 2, "error": 0}

    # Staying enrollments: pinned to v2, same step entry, same schedule.
    for enrollment in Enrollment.objects.filter(pk__in=live["intro"]):
        assert (enrollment.plan_version_id, enrollment.current_step, enrollment.step_seq) == (
            v2.pk,
            "intro",
            1,
        )
        assert not enrollment.transitions.exists()
    assert (
        set(
            ScheduledAction.objects.filter(enrollment_id__in=live["intro"]).values_list(
                "id", "kind", "step", "step_seq", "due_at"
            )
        )
        == intro_actions
    )

    # The moved one: a new step entry on v2 with the new step's wait, recorded as migrated.
    moved = Enrollment.objects.get(pk=live["waiting"])
    assert (moved.plan_version_id, moved.current_step, moved.step_seq, moved.state) == (
        v2.pk,
        "nudge",
        3,
        "active",
    )
    assert not ScheduledAction.objects.filter(pk=old_wait_action.pk).exists()
    action = ScheduledAction.objects.get(enrollment=moved)
    assert (action.kind, action.step, action.step_seq, action.status) == (
        "advance",
        "nudge",
        3,
        "pending",
    )
    # v2's nudge waits one day from the move.
    assert abs(action.due_at - (moved.step_entered_at + datetime.timedelta(days=1))) < (
        datetime.timedelta(seconds=5)
    )
    transition = moved.transitions.get(trigger="migrated")
    assert (transition.from_step, transition.from_seq, transition.to_step) == ("wait", 2, "nudge")
    assert transition.cause == 'moved from version 1 step "wait" to version 2 step "nudge"'

    # Running it again finds no one left on another version.
    again = api.post(
        f"{live['base']}/migrate/",
        {"to_version": 2, "step_map": {}, "dry_run": False},
        format="json",
    )
    assert again.json()["outcomes"] == []


def test_a_paused_enrollment_keeps_its_wake_up_when_moved(api, tenant, live):
    until = timezone.now() + datetime.timedelta(days=4)
    with transaction.atomic():
        enrollment = engine.enrollment_locked(enrollment_id=live["waiting"])
        assert enrollment_pause(enrollment=enrollment, until=until, reason="out of office")
    api.post(
        f"{live['base']}/migrate/",
        {"to_version": 2, "step_map": {"intro": "intro", "wait": "nudge"}, "dry_run": False},
        format="json",
    )
    moved = Enrollment.objects.get(pk=live["waiting"])
    assert (moved.state, moved.current_step, moved.step_seq) == ("paused", "nudge", 3)
    kinds = set(ScheduledAction.objects.filter(enrollment=moved).values_list("kind", "step_seq"))
    assert kinds == {("advance", 3), ("resume", 3)}
    resume = ScheduledAction.objects.get(enrollment=moved, kind="resume")
    assert resume.due_at == until


def test_completed_and_stopped_enrollments_are_left_alone(api, live):
    with transaction.atomic():
        enrollment = engine.enrollment_locked(enrollment_id=live["intro"][0])
        engine.enrollment_stop(
            enrollment=enrollment, trigger="reply", reason="lead replied", now=timezone.now()
        )
    body = api.post(
        f"{live['base']}/migrate/",
        {"to_version": 2, "step_map": {"intro": "intro", "wait": "nudge"}},
        format="json",
    ).json()
    assert live["intro"][0] not in {o["enrollment_id"] for o in body["outcomes"]}
    assert len(body["outcomes"]) == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to_version": 9, "step_map": {}}, "to_version"),
        ({"to_version": "2", "step_map": {}}, "to_version"),
        ({"step_map": {}}, "to_version"),
        ({"to_version": 2}, "step_map"),
        ({"to_version": 2, "step_map": ["intro"]}, "step_map"),
        ({"to_version": 2, "step_map": {"intro": 3}}, "step_map/intro"),
        ({"to_version": 2, "step_map": {}, "dry_run": "no"}, "dry_run"),
        ({"to_version": 2, "step_map": {}, "force": True}, "force"),
    ],
)
def test_bad_migration_requests(api, live, body, field):
    before = _snapshot()
    response = api.post(f"{live['base']}/migrate/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert _snapshot() == before


def test_an_unpublished_version_is_refused(api, live):
    plan = plan_v2()
    plan["steps"]["done"]["outcome"] = "other"
    assert (
        api.post(f"{live['base']}/versions/", {"plan": plan}, format="json").json()["version"] == 3
    )
    response = api.post(
        f"{live['base']}/migrate/", {"to_version": 3, "step_map": {}}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "not_published"
    assert "to_version" in response.json()["error"]["fields"]


def test_the_service_refuses_another_tenants_campaign(live, other_tenant):
    with pytest.raises(NotFound):
        enrollments_migrate(
            tenant_id=other_tenant.pk,
            campaign_id=live["campaign"]["id"],
            to_version_id=1,
            step_map={},
            dry_run=True,
        )
