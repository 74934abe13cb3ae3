"""Controls take effect for the next send: the kill switch, tenant, campaign and identity
pauses hold due sends (nothing is lost), and a resume makes them due at once. Feature flags
really disable their paths: event branching, inbound replies.

What a user notices is counted where it lands: mails the SendGrid emulator accepted, the
scheduled actions left and their reasons, enrollment transitions.
"""

import datetime
import subprocess
import sys
import time

import psycopg
import pytest
from django.db import connection, transaction
from django.utils import timezone

from campaigns.models import EnrollmentTransition
from campaigns.selectors import campaign_status_locked
from campaigns.services import engine, scheduler
from campaigns.services.actions import scheduled_actions_held
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
from messaging.selectors import sender_identity_paused_locked
from messaging.services.identities import sender_identity_pause_set
from outreach.tenancy import controls
from outreach.tenancy.models import AuditEntry, KillSwitch, Tenant
from outreach.testing import processes

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


# --- a release reaches every held send ---------------------------------------------------------


def test_a_kill_switch_released_elsewhere_holds_nothing_despite_a_stale_cache(
    tenant, engine_settings, settings
):
    """Another process released the switch: its cache clear does not reach this process,
    whose cache still says 'engaged' (for as long as CONTROLS_CACHE_SECONDS). The batch
    confirms a hold against the row, so the send goes now instead of in ten minutes."""
    settings.CONTROLS_CACHE_SECONDS = 600
    campaign_enrolled(tenant, plan=PLAN_ONE_EMAIL, emails=["stale@prospect.example.com"])
    KillSwitch.objects.create(channel="all", engaged=True, reason="incident")
    assert "all" in controls.kill_switches_engaged()
    KillSwitch.objects.filter(channel="all").update(engaged=False, reason="over")
    actions_make_due()
    sweep_inline()
    assert received_per_recipient(engine_settings) == {"stale@prospect.example.com": 1}
    assert controls.kill_switches_engaged() == {}  # the confirmation refreshed the cache


def _pause(control: str, campaign, on: bool, actor: str = "cli:ops") -> None:
    if control == "tenant":
        change = controls.tenant_pause if on else controls.tenant_resume
        change(tenant_id=campaign.tenant_id, actor=actor, reason="race")
    elif control == "kill_switch":
        controls.kill_switch_set(channel="all", engaged=on, actor=actor, reason="race")
    elif control == "campaign":
        campaign_status_set(
            tenant_id=campaign.tenant_id,
            campaign_id=campaign.pk,
            action="pause" if on else "resume",
            actor=actor,
            reason="race",
        )
    else:
        sender_identity_pause_set(
            tenant_id=campaign.tenant_id,
            identity_id=campaign.sender_identity_id,
            paused=on,
            actor=actor,
        )


def _hold_reason(control: str, enrollment) -> str | None:
    """What the send path asks before it holds a send (messaging.services.sending)."""
    if control in ("tenant", "kill_switch"):
        return controls.sending_stop_reason(tenant=enrollment.tenant, channel="email", lock=True)
    if control == "campaign":
        status = campaign_status_locked(
            tenant_id=enrollment.tenant_id, campaign_id=enrollment.campaign_id
        )
        return f"campaign {status}"
    paused = sender_identity_paused_locked(
        tenant_id=enrollment.tenant_id, identity_id=enrollment.sender_identity_id
    )
    return "sender identity paused" if paused else None


def _blocked_or_exited(process: subprocess.Popen) -> str:
    """Wait until ``process`` exited or one of its queries waits for a row lock."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return "exited"
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0]:
                return "blocked"
        time.sleep(0.05)
    raise AssertionError("the resume neither finished nor waited")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("control", ["tenant", "kill_switch", "campaign", "identity"])
def test_a_resume_committing_while_a_batch_holds_its_send_releases_that_send_too(tenant, control):
    """The batch has claimed the send and read the control as paused; the operator's
    resume (another process) commits before the batch writes its hold. The hold must not
    survive the resume for SEND_PAUSED_RECHECK_SECONDS: the resume waits for the batch
    and then releases the send it held."""
    campaign, (enrollment,) = campaign_enrolled(
        tenant, plan=PLAN_ONE_EMAIL, emails=["race@prospect.example.com"]
    )
    _pause(control, campaign, on=True)
    actions_make_due()
    (claimed,) = scheduler.scheduled_actions_claim(limit=10)
    resume = (
        "from campaigns.models import Campaign; from campaigns.tests import test_engine_controls"
        f" as t; t._pause({control!r}, Campaign.objects.get(pk={campaign.pk}), on=False)"
    )
    with transaction.atomic():  # the send batch
        assert scheduled_actions_held(items=[[claimed.id, claimed.attempt]])
        locked = engine.enrollments_locked(enrollment_ids=[enrollment.pk])[enrollment.pk]
        reason = _hold_reason(control, locked)
        assert reason and "changed" not in reason
        operator = subprocess.Popen(
            [sys.executable, "manage.py", "shell", "-c", resume],
            cwd=processes.ROOT,
            env=processes.test_process_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _blocked_or_exited(operator)
        scheduler.scheduled_action_reschedule(
            action_id=claimed.id,
            attempt=claimed.attempt,
            due_at=timezone.now() + datetime.timedelta(seconds=600),
            reason=reason,
        )
    _, err = operator.communicate(timeout=60)
    assert operator.returncode == 0, err
    (action,) = pending_actions(enrollment)
    assert action.due_at <= timezone.now(), (action.due_at, action.last_error)


@pytest.mark.django_db(transaction=True)
def test_a_send_meeting_a_pause_being_changed_is_held_briefly(tenant, engine_settings):
    """The tenant row is locked by a change in progress (perhaps a resume): the batch does
    not wait for it, and holds the send for a few seconds rather than the full re-check."""
    _, (enrollment,) = campaign_enrolled(
        tenant, plan=PLAN_ONE_EMAIL, emails=["busy@prospect.example.com"]
    )
    controls.tenant_pause(tenant_id=tenant.pk, actor="cli:ops", reason="x")
    actions_make_due()
    dsn = processes.test_process_env()["DATABASE_URL"]
    with psycopg.connect(dsn) as other:
        other.execute("SELECT 1 FROM tenancy_tenant WHERE id = %s FOR UPDATE", [tenant.pk])
        sweep_inline()
    (action,) = pending_actions(enrollment)
    assert action.last_error == controls.CONTROL_CHANGING
    assert action.due_at <= timezone.now() + datetime.timedelta(seconds=10)
    assert engine_settings.messages() == []
