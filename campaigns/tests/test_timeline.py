"""The lead timeline: a lead's messages, events, transitions and pending work, in order.

These tests commit for real (``transaction=True``): transitions are stamped with Postgres'
``now()``, which inside one test-wide transaction would be the same instant for everything.
"""

import datetime

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.models import Enrollment, ScheduledAction
from campaigns.selectors_timeline import lead_timeline
from campaigns.services import engine
from campaigns.tests.campaign_support import campaign_live
from messaging.models import Message, MessageEvent
from messaging.services.engagement import message_event_synthetic_record
from outreach.common.errors import NotFound
from outreach.testing.factories import LeadFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _events_cleanup():
    """Transactional tests: the partitioned event table is not flushed between tests, and a
    second run (--reuse-db) would find these rows in the admin's event list."""
    yield
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM messaging_messageevent")


def _sent(enrollment: Enrollment, step: str, step_seq: int, subject: str, **kwargs) -> Message:
    now = timezone.now()
    return Message.objects.create(
        tenant_id=enrollment.tenant_id,
        sender_identity_id=enrollment.sender_identity_id,
        enrollment=enrollment,
        lead_id=enrollment.lead_id,
        campaign_id=enrollment.campaign_id,
        step=step,
        step_seq=step_seq,
        variant="a",
        subject=subject,
        to_email=enrollment.lead.email,
        **{"status": "delivered", "provider_message_id": "sg-abc.1", "sent_at": now, **kwargs},
    )


def _event(message: Message, event_type: str, **flags) -> MessageEvent:
    now = timezone.now()
    return MessageEvent.objects.create(
        tenant_id=message.tenant_id,
        message=message,
        enrollment_id=message.enrollment_id,
        event_type=event_type,
        occurred_at=now,
        received_at=now,
        provider_event_id=f"{event_type}-{message.pk}-{now.timestamp()}",
        **flags,
    )


def _transition(enrollment_id: int, from_seq: int, trigger: str, to_step: str, cause: str):
    with transaction.atomic():
        enrollment = engine.enrollment_locked(enrollment_id=enrollment_id)
        assert engine.enrollment_transition(
            enrollment=enrollment,
            from_seq=from_seq,
            trigger=trigger,
            to_step=to_step,
            cause=cause,
            now=timezone.now(),
        )


@pytest.fixture
def story(api, tenant):
    """Jane: enrolled, intro sent and delivered, a machine open, no reply in 3 days, the wait
    elapsed, and the follow-up now held back for lack of capacity."""
    campaign = campaign_live(api, tenant)
    jane = LeadFactory(tenant=tenant, first_name="Jane")
    api.post(f"/api/v1/campaigns/{campaign['id']}/enroll/", {"lead_ids": [jane.pk]}, format="json")
    enrollment = Enrollment.objects.select_related("lead").get(lead=jane)
    ScheduledAction.objects.filter(enrollment=enrollment).delete()  # the send went out:
    intro = _sent(enrollment, "intro", 1, "Hi Jane")
    _event(intro, "delivered")
    _event(intro, "open", is_machine_open=True)
    no_reply = message_event_synthetic_record(
        tenant_id=tenant.pk,
        message_id=intro.pk,
        enrollment_id=enrollment.pk,
        event_type="no_reply",
        key=f"timeout:{enrollment.pk}:1",
    )
    _transition(enrollment.pk, 1, "no_reply", "wait", "no reply within 3d")
    _transition(enrollment.pk, 2, "wait_elapsed", "follow_up", "waited 2 business_days")
    ScheduledAction.objects.filter(enrollment=enrollment, kind="send").update(
        last_error="no capacity: identity_day full",
        due_at=timezone.now() + datetime.timedelta(hours=20),
    )
    return {"campaign": campaign, "lead": jane, "enrollment": enrollment, "no_reply": no_reply}


def test_timeline_tells_the_story_in_order(api, story):
    response = api.get(f"/api/v1/leads/{story['lead'].pk}/timeline/")
    assert response.status_code == 200
    body = response.json()
    assert body["lead_id"] == story["lead"].pk
    assert (body["truncated"], body["note"]) == (False, "")
    entries = body["entries"]
    assert [
        (e["kind"], e["detail"].get("type") or e["detail"].get("trigger")) for e in entries
    ] == [
        ("enrolled", None),
        ("message", None),
        ("event", "delivered"),
        ("event", "open"),
        ("event", "no_reply"),
        ("transition", "no_reply"),
        ("transition", "wait_elapsed"),
        ("scheduled", None),
    ]
    times = [e["at"] for e in entries]
    assert times == sorted(times)
    assert {e["enrollment_id"] for e in entries} == {story["enrollment"].pk}
    assert {e["campaign_id"] for e in entries} == {story["campaign"]["id"]}

    enrolled, message, delivered, machine_open, no_reply, timed_out, waited, pending = entries
    assert enrolled["detail"]["version"] == 1
    assert enrolled["detail"]["start_step"] == "intro"
    assert enrolled["detail"]["state"] == "active"
    assert enrolled["detail"]["current_step"] == "follow_up"
    assert enrolled["summary"] == (
        'Enrolled in campaign "Q3 outbound" on plan version 1, starting at step "intro"'
    )

    detail = message["detail"]
    assert (detail["step"], detail["variant"], detail["subject"], detail["status"]) == (
        "intro",
        "a",
        "Hi Jane",
        "delivered",
    )
    assert detail["provider_message_id"] == "sg-abc.1"
    assert detail["sent_at"] is not None
    assert detail["error_message"] == ""
    assert (
        message["summary"]
        == 'Sent the email of step "intro" (variant "a"), "Hi Jane": now delivered'
    )

    assert delivered["detail"]["is_machine_open"] is False
    assert machine_open["detail"]["is_machine_open"] is True
    assert "not counted as a human open" in machine_open["summary"]
    assert no_reply["detail"]["is_synthetic"] is True
    assert no_reply["detail"]["event_id"] == story["no_reply"]
    assert no_reply["detail"]["message_id"] == detail["message_id"]

    assert (timed_out["detail"]["from_step"], timed_out["detail"]["to_step"]) == ("intro", "wait")
    assert timed_out["detail"]["cause"] == "no reply within 3d"
    assert timed_out["summary"] == (
        'Moved from step "intro" to "wait" on no_reply: no reply within 3d'
    )
    assert (waited["detail"]["from_step"], waited["detail"]["to_step"]) == ("wait", "follow_up")

    assert pending["detail"]["action"] == "send"
    assert pending["detail"]["step"] == "follow_up"
    assert pending["detail"]["status"] == "pending"
    assert pending["detail"]["delay_reason"] == "no capacity: identity_day full"
    assert pending["summary"] == (
        'Scheduled to send the email of step "follow_up"; delayed: no capacity: identity_day full'
    )


def test_failed_sends_and_stops_say_why(api, tenant, story):
    enrollment = story["enrollment"]
    ScheduledAction.objects.filter(enrollment=enrollment).delete()
    _sent(
        enrollment,
        "follow_up",
        3,
        "Re: Hi Jane",
        status="failed",
        provider_message_id="",
        sent_at=None,
        error_code="permanent:invalid_recipient",
        error_message="The to address is not valid",
    )
    with transaction.atomic():
        locked = engine.enrollment_locked(enrollment_id=enrollment.pk)
        engine.enrollment_stop(
            enrollment=locked,
            trigger="send_failed",
            reason="The to address is not valid",
            now=timezone.now(),
            state=Enrollment.State.FAILED,
        )
    entries = api.get(f"/api/v1/leads/{story['lead'].pk}/timeline/").json()["entries"]
    failed, stopped = entries[-2:]
    assert failed["summary"] == (
        'The email of step "follow_up" (variant "a") failed: The to address is not valid'
    )
    assert failed["detail"]["error_code"] == "permanent:invalid_recipient"
    assert stopped["kind"] == "transition"
    assert stopped["detail"]["to_step"] == ""
    assert stopped["summary"] == (
        'Journey ended at step "follow_up" on send_failed: The to address is not valid'
    )
    assert entries[0]["detail"]["state"] == "failed"
    assert entries[0]["detail"]["last_error"] == "The to address is not valid"


def test_entries_span_every_enrollment_of_the_lead(api, tenant, story):
    other = campaign_live(api, tenant)
    api.post(
        f"/api/v1/campaigns/{other['id']}/enroll/",
        {"lead_ids": [story["lead"].pk]},
        format="json",
    )
    api.post(f"/api/v1/campaigns/{other['id']}/archive/")
    entries = api.get(f"/api/v1/leads/{story['lead'].pk}/timeline/").json()["entries"]
    assert {e["campaign_id"] for e in entries} == {story["campaign"]["id"], other["id"]}
    archived = [e for e in entries if e["campaign_id"] == other["id"]]
    assert [e["kind"] for e in archived] == ["enrolled", "transition"]
    assert archived[1]["detail"]["trigger"] == "campaign_archived"
    assert archived[0]["detail"]["stop_reason"] == "campaign archived"


def test_queries_stay_bounded_and_history_is_capped(api, tenant, story):
    with CaptureQueriesContext(connection) as small:
        lead_timeline(tenant_id=tenant.pk, lead_id=story["lead"].pk)
    enrollment = story["enrollment"]
    for seq in range(10, 40):
        message = _sent(enrollment, "intro", seq, f"Hi {seq}")
        for event_type in ("processed", "delivered", "open", "click"):
            _event(message, event_type)
    with CaptureQueriesContext(connection) as large:
        timeline = lead_timeline(tenant_id=tenant.pk, lead_id=story["lead"].pk)
    assert len(large.captured_queries) == len(small.captured_queries) == 6
    assert len(timeline.entries) == 8 + 30 * 5
    assert not timeline.truncated

    capped = lead_timeline(tenant_id=tenant.pk, lead_id=story["lead"].pk, limit=20)
    assert capped.truncated
    assert len(capped.entries) == 20
    assert "latest 20 entries" in capped.note
    # The newest are kept: the pending follow-up and the last message's events.
    assert capped.entries[-1].kind == "scheduled"
    assert capped.entries == sorted(capped.entries, key=lambda e: e.at)
    assert capped.entries[0].at >= timeline.entries[-20].at


def test_another_tenants_lead_is_not_found(api_client_for, other_tenant, story):
    with pytest.raises(NotFound):
        lead_timeline(tenant_id=other_tenant.pk, lead_id=story["lead"].pk)
    response = api_client_for(other_tenant).get(f"/api/v1/leads/{story['lead'].pk}/timeline/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert APIClient().get(f"/api/v1/leads/{story['lead'].pk}/timeline/").status_code == 401


def test_a_lead_with_no_history_has_an_empty_timeline(api, tenant):
    lead = LeadFactory(tenant=tenant)
    body = api.get(f"/api/v1/leads/{lead.pk}/timeline/").json()
    assert body == {"lead_id": lead.pk, "truncated": False, "note": "", "entries": []}
