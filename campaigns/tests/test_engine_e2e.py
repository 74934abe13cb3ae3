"""A plan with branches runs end to end: API → sweep → real worker → SendGrid emulator →
signed Event Webhook and Inbound Parse posts to a live server → transitions → next sends.

Nothing is called behind the product's back: the campaign is built and leads are enrolled
through the REST API, a real Celery worker (on this run's Redis) sends and normalises, the
emulator decides each lead's behaviour from the tags in its address, and the only shortcut is
time travel for the three-day timeout.
"""

import pytest

from campaigns.models import Enrollment, EnrollmentTransition
from campaigns.tests.engine_support import (
    PLAN_BRANCHES,
    actions_make_due,
    beat_until,
    identity_all_day,
    wait_until,
)
from messaging.models import InboundMessage, Message, WebhookReceipt
from outreach.testing.factories import LeadFactory
from suppression.models import Suppression

LEADS = {
    "ann": ("Ann", "ann+open@prospect.example.com"),  # opens: the open branch
    "ben": ("Ben", "ben+noopen@prospect.example.com"),  # never opens: no_open after 3d
    "cat": ("Cat", "cat+reply@prospect.example.com"),  # replies through Inbound Parse
    "dan": ("Dan", "dan+bounce@prospect.example.com"),  # hard bounce
}


def _mails(emulator, email: str) -> list[dict]:
    return list(reversed(emulator.messages(to=email)))  # oldest first


def _journey(enrollment: Enrollment) -> list[tuple[str, str, str]]:
    return list(
        EnrollmentTransition.objects.filter(enrollment=enrollment)
        .order_by("from_seq")
        .values_list("from_step", "trigger", "to_step")
    )


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_plan_with_branches_runs_end_to_end_against_the_emulator(
    tenant, api, engine_settings, engine_worker, live_server, events_cleanup
):
    emulator = engine_settings
    tenant.webhook_public_key = emulator.public_key
    tenant.save(update_fields=["webhook_public_key"])
    hooks = f"{live_server.url}/webhooks/sendgrid"
    emulator.register_tenant(
        str(tenant.public_id),
        events_url=f"{hooks}/events/{tenant.public_id}/",
        inbound_url=f"{hooks}/inbound/{tenant.public_id}/{tenant.inbound_secret}/",
        inbound_secret=tenant.inbound_secret,
    )
    identity = identity_all_day(tenant, signature="-- Sam")
    leads = {
        key: LeadFactory(tenant=tenant, first_name=first, email=email)
        for key, (first, email) in LEADS.items()
    }

    response = api.post(
        "/api/v1/campaigns/",
        {"name": "Branches", "sender_identity_id": identity.pk},
        format="json",
    )
    assert response.status_code == 201, response.json()
    base = f"/api/v1/campaigns/{response.json()['id']}"
    response = api.post(f"{base}/versions/", {"plan": PLAN_BRANCHES}, format="json")
    assert response.status_code == 201, response.json()
    assert api.post(f"{base}/versions/1/publish/").status_code == 200
    assert api.post(f"{base}/activate/").status_code == 200
    response = api.post(
        f"{base}/enroll/", {"lead_ids": [lead.pk for lead in leads.values()]}, format="json"
    )
    assert response.status_code in (200, 201), response.json()
    assert response.json()["skipped"] == []
    by_lead = {row["lead_id"]: row["enrollment_id"] for row in response.json()["enrolled"]}
    enrollment_ids = {key: by_lead[lead.pk] for key, lead in leads.items()}

    def enrollment(key: str) -> Enrollment:
        return Enrollment.objects.get(pk=enrollment_ids[key])

    # Intros go out; the emulator answers with events and a reply; the open sends Ann's
    # follow-up in the same beat loop.
    actions_make_due()
    beat_until(
        lambda: (
            len(_mails(emulator, LEADS["ann"][1])) == 2
            and enrollment("cat").state == "completed"
            and enrollment("dan").state == "stopped"
        ),
        timeout=90,
        what="the intros, Ann's open branch, Cat's reply and Dan's bounce",
    )
    # Ben never opened: three days later (time travel) his no_open timeout fires.
    assert enrollment("ben").current_step == "intro"
    assert actions_make_due(kind="timeout", enrollment_ids=[enrollment_ids["ben"]]) == 1
    beat_until(
        lambda: len(_mails(emulator, LEADS["ben"][1])) == 2,
        what="Ben's nudge",
    )
    emulator.wait_idle(timeout=30)
    wait_until(
        lambda: not WebhookReceipt.objects.filter(processed_at__isnull=True).exists(),
        what="every webhook to be processed",
    )

    # What each lead received.
    ann_intro, ann_follow_up = _mails(emulator, LEADS["ann"][1])
    assert ann_intro["subject"] == "Quick question, Ann"
    assert ann_follow_up["subject"] == "Re: Quick question, Ann"
    assert ann_follow_up["headers"]["In-Reply-To"] == ann_intro["headers"]["Message-ID"]
    assert ann_follow_up["text"].startswith("Glad you had a look, Ann.")
    ben_intro, ben_nudge = _mails(emulator, LEADS["ben"][1])
    assert ben_nudge["subject"] == "Re: Quick question, Ben"
    assert ben_nudge["headers"]["In-Reply-To"] == ben_intro["headers"]["Message-ID"]
    assert ben_nudge["text"].startswith("Bumping this up, Ben.")
    assert len(_mails(emulator, LEADS["cat"][1])) == 1
    assert len(_mails(emulator, LEADS["dan"][1])) == 1

    # Where each journey stands, and why.
    ann, ben, cat, dan = (enrollment(key) for key in ("ann", "ben", "cat", "dan"))
    assert (ann.state, ann.current_step, ann.step_seq) == ("active", "follow_up", 2)
    assert _journey(ann) == [("intro", "open", "follow_up")]
    assert (ben.state, ben.current_step, ben.step_seq) == ("active", "nudge", 2)
    assert _journey(ben) == [("intro", "no_open", "nudge")]
    assert (cat.state, cat.outcome) == ("completed", "replied")
    assert _journey(cat) == [("intro", "reply", "replied")]
    inbound = InboundMessage.objects.get(tenant=tenant)
    assert inbound.classification == "human"
    assert inbound.matched_message.enrollment_id == cat.pk
    assert (dan.state, dan.stop_reason, dan.outcome) == ("stopped", "address bounced", "bounced")
    assert _journey(dan) == [("intro", "bounce", "")]
    assert Suppression.objects.filter(
        tenant=tenant, email=LEADS["dan"][1], reason="hard_bounce"
    ).exists()
    statuses = dict(
        Message.objects.filter(tenant=tenant, step="intro").values_list("to_email", "status")
    )
    assert statuses == {
        LEADS["ann"][1]: "opened",
        LEADS["ben"][1]: "delivered",
        LEADS["cat"][1]: "replied",
        LEADS["dan"][1]: "bounced",
    }

    # The timeline tells Ann's story in order, and Ben's and Dan's with their causes.
    response = api.get(f"/api/v1/leads/{leads['ann'].pk}/timeline/")
    assert response.status_code == 200
    story = [
        (entry["kind"], entry["detail"].get("step") or entry["detail"].get("type", ""))
        for entry in response.json()["entries"]
        if entry["kind"] in ("enrolled", "message", "transition")
    ]
    assert story == [
        ("enrolled", ""),
        ("message", "intro"),
        ("transition", ""),
        ("message", "follow_up"),
    ]
    ann_entries = response.json()["entries"]
    opened = [e for e in ann_entries if e["kind"] == "event" and e["detail"]["type"] == "open"]
    assert opened and opened[0]["detail"]["step"] == "intro"
    (moved,) = [e for e in ann_entries if e["kind"] == "transition"]
    assert (moved["detail"]["trigger"], moved["detail"]["to_step"]) == ("open", "follow_up")

    ben_entries = api.get(f"/api/v1/leads/{leads['ben'].pk}/timeline/").json()["entries"]
    (moved,) = [e for e in ben_entries if e["kind"] == "transition"]
    assert (moved["detail"]["trigger"], moved["detail"]["cause"]) == (
        "no_open",
        "no open within 3d",
    )
    assert any(e["kind"] == "event" and e["detail"]["type"] == "no_open" for e in ben_entries)

    dan_entries = api.get(f"/api/v1/leads/{leads['dan'].pk}/timeline/").json()["entries"]
    (stopped,) = [e for e in dan_entries if e["kind"] == "transition"]
    assert stopped["detail"]["trigger"] == "bounce"
    assert any(e["kind"] == "event" and e["detail"]["type"] == "bounce" for e in dan_entries)
