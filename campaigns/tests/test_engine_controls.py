"""Controls take effect for the next send: the kill switch, tenant, campaign and identity
pauses hold due sends (nothing is lost), and a resume makes them due at once. Feature flags
really disable their paths: event branching, inbound replies.

What a user notices is counted where it lands: mails the SendGrid emulator accepted, the
scheduled actions left and their reasons, enrollment transitions.
"""

import datetime
import time

import pytest
from django.utils import timezone

from campaigns.models import EnrollmentTransition
from campaigns.services.campaigns import campaign_status_set
from campaigns.tests.engine_support import (
    PLAN_BRANCHES,
    PLAN_ONE_EMAIL,
    actions_make_due,
    campaign_enrolled,
    emulator_events_for,
    events_store,
    identity_all_day,
    pending_actions,
    received_per_recipient,
    sweep_inline,
)
from messaging.models import Message
from messaging.services.identities import sender_identity_pause_set
from outreach.tenancy import controls
from outreach.tenancy.models import AuditEntry, KillSwitch, Tenant

pytestmark = pytest.mark.django_db

LATER = datetime.timedelta(minutes=5)


@pytest.fixture(autouse=True)
def _no_cached_controls():
    controls.kill_switches_cache_clear()
    yield
    controls.kill_switches_cache_clear()


def _held(enrollment, reason: str) -> None:
    (action,) = pending_actions(enrollment)
    assert action.last_error == reason
    assert action.due_at > timezone.now() + LATER  # held until its re-check, not dropped


def _due_now(enrollment) -> None:
    (action,) = pending_actions(enrollment)
    assert action.due_at <= timezone.now()


@pytest.mark.parametrize("channel", ["all", "email"])
def test_the_kill_switch_holds_every_tenants_sends_and_its_release_sends_them(
    tenant, other_tenant, engine_settings, channel
):
    emulator = engine_settings
    _, (first,) = campaign_enrolled(tenant, plan=PLAN_ONE_EMAIL, emails=["k1@prospect.example.com"])
    _, (second,) = campaign_enrolled(
        other_tenant, plan=PLAN_ONE_EMAIL, emails=["k2@prospect.example.com"]
    )
    controls.kill_switch_set(
        channel=channel, engaged=True, actor="cli:oncall", reason="provider incident"
    )
    actions_make_due()
    sweep_inline()

    assert emulator.messages() == []
    assert not Message.objects.exists()
    _held(first, f"kill switch engaged ({channel})")
    _held(second, f"kill switch engaged ({channel})")

    controls.kill_switch_set(channel=channel, engaged=False, actor="cli:oncall", reason="over")
    _due_now(first)  # no time travel: the release made them due
    sweep_inline()
    assert received_per_recipient(emulator) == {
        "k1@prospect.example.com": 1,
        "k2@prospect.example.com": 1,
    }
    actions = list(AuditEntry.objects.filter(target_type="kill_switch").values_list("action"))
    assert actions == [("kill_switch.release",), ("kill_switch.engage",)]


def test_the_sms_kill_switch_does_not_stop_email(tenant, engine_settings):
    emulator = engine_settings
    campaign_enrolled(tenant, plan=PLAN_ONE_EMAIL, emails=["mail@prospect.example.com"])
    controls.kill_switch_set(channel="sms", engaged=True, actor="cli:oncall", reason="sms only")
    actions_make_due()
    sweep_inline()
    assert received_per_recipient(emulator) == {"mail@prospect.example.com": 1}


def test_a_kill_switch_engaged_by_another_process_is_seen_within_the_cache_interval(
    tenant, engine_settings, settings
):
    """The engage below bypasses this process's cache clear, as a change made by another
    process would: the cached 'released' answer holds for at most the interval."""
    settings.CONTROLS_CACHE_SECONDS = 0.2
    _, (enrollment,) = campaign_enrolled(
        tenant, plan=PLAN_ONE_EMAIL, emails=["late@prospect.example.com"]
    )
    assert controls.kill_switches_engaged() == {}
    KillSwitch.objects.create(channel="all", engaged=True, reason="elsewhere")
    time.sleep(0.3)
    actions_make_due()
    sweep_inline()
    assert engine_settings.messages() == []
    _held(enrollment, "kill switch engaged (all)")


def test_a_paused_tenant_holds_its_sends_and_its_resume_sends_them_at_once(
    tenant, other_tenant, engine_settings
):
    emulator = engine_settings
    _, (held,) = campaign_enrolled(tenant, plan=PLAN_ONE_EMAIL, emails=["p1@prospect.example.com"])
    campaign_enrolled(other_tenant, plan=PLAN_ONE_EMAIL, emails=["p2@prospect.example.com"])
    controls.tenant_pause(tenant_id=tenant.pk, actor="admin:ops", reason="customer asked")
    actions_make_due()
    sweep_inline()
    assert received_per_recipient(emulator) == {"p2@prospect.example.com": 1}
    _held(held, "tenant paused")

    controls.tenant_resume(tenant_id=tenant.pk, actor="admin:ops", reason="go")
    _due_now(held)
    sweep_inline()
    assert received_per_recipient(emulator)["p1@prospect.example.com"] == 1


def test_turning_the_campaigns_flag_off_holds_sends_like_a_pause(tenant, engine_settings):
    _, (enrollment,) = campaign_enrolled(
        tenant, plan=PLAN_ONE_EMAIL, emails=["flag@prospect.example.com"]
    )
    controls.tenant_controls_update(
        tenant_id=tenant.pk, changes={"campaigns_enabled": False}, actor="admin:ops", reason="x"
    )
    actions_make_due()
    sweep_inline()
    assert engine_settings.messages() == []
    _held(enrollment, "tenant paused")
    controls.tenant_controls_update(
        tenant_id=tenant.pk, changes={"campaigns_enabled": True}, actor="admin:ops", reason="y"
    )
    _due_now(enrollment)


@pytest.mark.parametrize("paused", ["campaign", "identity"])
def test_a_resume_through_the_service_releases_the_held_send(tenant, engine_settings, paused):
    emulator = engine_settings
    campaign, (enrollment,) = campaign_enrolled(
        tenant, plan=PLAN_ONE_EMAIL, emails=["resume@prospect.example.com"]
    )
    identity_id = campaign.sender_identity_id

    def pause(on: bool) -> None:
        if paused == "campaign":
            campaign_status_set(
                tenant_id=tenant.pk,
                campaign_id=campaign.pk,
                action="pause" if on else "resume",
                actor="api-key:abc",
                reason="why not",
            )
        else:
            sender_identity_pause_set(
                tenant_id=tenant.pk, identity_id=identity_id, paused=on, actor="api-key:abc"
            )

    pause(True)
    actions_make_due()
    sweep_inline()
    _held(enrollment, "campaign paused" if paused == "campaign" else "sender identity paused")
    pause(False)
    _due_now(enrollment)
    sweep_inline()
    assert received_per_recipient(emulator) == {"resume@prospect.example.com": 1}
    target = "campaign" if paused == "campaign" else "sender_identity"
    assert [e.action for e in AuditEntry.objects.filter(target_type=target)] == [
        f"{target}.resume",
        f"{target}.pause",
    ]


def test_with_event_branching_off_an_open_does_not_move_the_enrollment(
    tenant, engine_settings, webhook_sink, events_cleanup
):
    """Turned back on, the next event does: the flag, not something else, held it."""
    engine_settings.register_tenant(str(tenant.public_id), events_url=webhook_sink.url + "/events")
    _, (enrollment,) = campaign_enrolled(
        tenant, plan=PLAN_BRANCHES, emails=["reader+open@prospect.example.com"]
    )
    actions_make_due()
    sweep_inline()
    message = Message.objects.get(enrollment=enrollment)
    events = emulator_events_for(webhook_sink, message, {"open"})
    opens = [e for e in events if e["event"] == "open"]
    others = [e for e in events if e["event"] != "open"]

    controls.tenant_controls_update(
        tenant_id=tenant.pk,
        changes={"event_branching_enabled": False},
        actor="admin:ops",
        reason="rollout",
    )
    assert events_store(tenant, others)
    assert events_store(tenant, opens[:1])
    message.refresh_from_db()
    assert message.status == Message.Status.OPENED  # stored and normalised
    assert not EnrollmentTransition.objects.filter(enrollment=enrollment).exists()

    controls.tenant_controls_update(
        tenant_id=tenant.pk,
        changes={"event_branching_enabled": True},
        actor="admin:ops",
        reason="rollout done",
    )
    again = {**opens[0], "sg_event_id": opens[0]["sg_event_id"] + "-again"}
    events_store(tenant, [again])
    assert list(
        EnrollmentTransition.objects.filter(enrollment=enrollment).values_list("trigger")
    ) == [("open",)]


@pytest.mark.parametrize("inbound", [True, False])
def test_replies_go_through_inbound_parse_only_when_the_inbound_flag_is_on(
    tenant, engine_settings, settings, inbound
):
    settings.INBOUND_REPLY_DOMAIN = "reply.example.net"
    Tenant.objects.filter(pk=tenant.pk).update(inbound_enabled=inbound)
    identity = identity_all_day(tenant, reply_to="ae-inbox@sender.example.com")
    campaign_enrolled(
        tenant, plan=PLAN_ONE_EMAIL, emails=["r@prospect.example.com"], identity=identity
    )
    actions_make_due()
    sweep_inline()
    (sent,) = engine_settings.messages()
    reply_to = str(sent.get("reply_to"))
    if inbound:
        assert "@reply.example.net" in reply_to
    else:
        assert "ae-inbox@sender.example.com" in reply_to
        assert "reply.example.net" not in reply_to
