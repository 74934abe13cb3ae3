"""Postgres owns time: claims, leases, fencing and concurrent sweepers."""

import datetime
import json
import os
import subprocess
import sys
import time

import pytest
from django.db import connection
from django.utils import timezone

from campaigns.models import Enrollment, ScheduledAction
from campaigns.services import scheduler
from outreach.testing.factories import LeadFactory, campaign_with_plan

PLAN = {"start": "intro", "steps": {"intro": {"type": "end", "outcome": "done"}}}


def _enrollments(tenant, count):
    campaign = campaign_with_plan(tenant=tenant, plan=PLAN)
    return [
        Enrollment.objects.create(
            tenant=tenant,
            campaign=campaign,
            lead=LeadFactory(tenant=tenant),
            plan_version=campaign.current_version,
            sender_identity=campaign.sender_identity,
            current_step="intro",
            step_seq=1,
        )
        for _ in range(count)
    ]


def _actions(enrollments, due_at, kind="send"):
    return scheduler.scheduled_actions_create(
        actions=[
            scheduler.NewAction(
                tenant_id=e.tenant_id,
                enrollment_id=e.pk,
                kind=kind,
                step="intro",
                step_seq=1,
                due_at=due_at,
                idempotency_key=f"{e.pk}:1:{kind}",
            )
            for e in enrollments
        ]
    )


@pytest.mark.django_db
def test_creating_the_same_action_twice_stores_it_once(tenant):
    enrollments = _enrollments(tenant, 3)
    past = timezone.now() - datetime.timedelta(minutes=1)
    assert _actions(enrollments, past) == 3
    assert _actions(enrollments, past) == 0
    assert ScheduledAction.objects.count() == 3


@pytest.mark.django_db
def test_only_due_actions_are_claimed_and_each_claim_bumps_the_attempt(tenant):
    enrollments = _enrollments(tenant, 4)
    now = timezone.now()
    _actions(enrollments[:3], now - datetime.timedelta(seconds=5))
    _actions(enrollments[3:], now + datetime.timedelta(hours=1))

    claimed = scheduler.scheduled_actions_claim(limit=10)
    assert len(claimed) == 3
    assert {c.attempt for c in claimed} == {1}
    assert scheduler.scheduled_actions_claim(limit=10) == []
    rows = ScheduledAction.objects.filter(pk__in=[c.id for c in claimed])
    assert all(r.status == "claimed" and r.lease_expires_at > now for r in rows)


@pytest.mark.django_db
def test_an_expired_lease_is_reclaimed_and_the_stale_worker_is_fenced_off(tenant):
    enrollment = _enrollments(tenant, 1)[0]
    _actions([enrollment], timezone.now() - datetime.timedelta(seconds=1))
    first = scheduler.scheduled_actions_claim(limit=1)[0]
    # The worker holding attempt 1 stalls past its lease.
    ScheduledAction.objects.filter(pk=first.id).update(
        lease_expires_at=timezone.now() - datetime.timedelta(seconds=1)
    )
    assert scheduler.scheduled_actions_reclaim_expired() == 1
    second = scheduler.scheduled_actions_claim(limit=1)[0]
    assert (second.id, second.attempt) == (first.id, 2)

    # The stale worker wakes up: neither finishing nor rescheduling works for it.
    assert not scheduler.scheduled_action_finish(action_id=first.id, attempt=1)
    assert not scheduler.scheduled_action_reschedule(
        action_id=first.id, attempt=1, due_at=timezone.now(), reason="stale"
    )
    assert ScheduledAction.objects.get(pk=first.id).status == "claimed"
    assert scheduler.scheduled_action_finish(action_id=first.id, attempt=2)
    assert not ScheduledAction.objects.filter(pk=first.id).exists()


@pytest.mark.django_db
def test_the_sweep_dispatches_batches_by_kind(tenant):
    enrollments = _enrollments(tenant, 5)
    past = timezone.now() - datetime.timedelta(seconds=1)
    _actions(enrollments[:3], past, kind="send")
    _actions(enrollments[3:], past, kind="advance")
    sent: list[tuple[str, list[list[int]]]] = []
    total = scheduler.scheduled_actions_sweep(
        dispatch=lambda kind, items: sent.append((kind, items)), batch_size=2
    )
    assert total == 5
    kinds = sorted((kind, len(items)) for kind, items in sent)
    assert kinds == [("advance", 2), ("send", 1), ("send", 2)]


@pytest.mark.django_db
def test_a_failing_publish_ends_the_sweep_and_unpublished_rows_come_back_after_the_lease(
    tenant,
):
    enrollments = _enrollments(tenant, 6)
    _actions(enrollments, timezone.now() - datetime.timedelta(seconds=1))
    published: list[list[int]] = []

    def dispatch(kind, items):
        if published:
            raise ConnectionError("broker unreachable")
        published.extend(items)

    with pytest.raises(ConnectionError):
        scheduler.scheduled_actions_sweep(dispatch=dispatch, batch_size=2, claim_limit=2)
    assert len(published) == 2
    # The sweep stopped: whatever it did not claim is still pending for the next one.
    claimed = ScheduledAction.objects.filter(status="claimed")
    assert ScheduledAction.objects.filter(status="pending").count() == 6 - claimed.count()
    claimed.update(lease_expires_at=timezone.now() - datetime.timedelta(seconds=1))
    scheduler.scheduled_actions_reclaim_expired()
    again: list[list[int]] = []
    assert scheduler.scheduled_actions_sweep(dispatch=lambda k, items: again.extend(items)) == 6
    assert {i for i, _ in again} == set(ScheduledAction.objects.values_list("pk", flat=True))


@pytest.mark.django_db
def test_cancel_drops_pending_work_of_one_step_entry(tenant):
    enrollment = _enrollments(tenant, 1)[0]
    later = timezone.now() + datetime.timedelta(hours=1)
    scheduler.scheduled_actions_create(
        actions=[
            scheduler.NewAction(
                tenant_id=tenant.pk,
                enrollment_id=enrollment.pk,
                kind="timeout",
                step="intro",
                step_seq=seq,
                due_at=later,
                idempotency_key=f"k{seq}",
            )
            for seq in (1, 2)
        ]
    )
    assert scheduler.scheduled_actions_cancel(enrollment_id=enrollment.pk, step_seq=1) == 1
    assert list(ScheduledAction.objects.values_list("step_seq", flat=True)) == [2]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_sweeper_processes_never_claim_the_same_action(tenant):
    enrollments = _enrollments(tenant, 400)
    _actions(enrollments, timezone.now() - datetime.timedelta(seconds=1))
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://root@127.0.0.1:5432/{connection.settings_dict['NAME']}",
    }
    start_at = time.time() + 8
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "campaigns.tests.claim_worker", "7", str(start_at)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append({tuple(pair) for pair in json.loads(out)})
    a, b = outputs
    assert a.isdisjoint(b)
    assert len(a | b) == 400
    # Both processes took part: SKIP LOCKED split the work rather than serialising it.
    assert a and b
