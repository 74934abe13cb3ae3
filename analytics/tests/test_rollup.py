"""The hourly rollup equals a full recount, however events arrive: shuffled, repeated, late."""

import datetime
import random

import pytest
from django.utils import timezone

from analytics.models import FillState, HourlyDelta, HourlyRollup, JourneyCount
from analytics.services.recount import journey_recount
from analytics.services.rollup import analytics_refresh
from analytics.tests.support import (
    campaign_messages,
    engagement_events,
    enrollments_make,
    receipt_post,
    recount_rows,
    reply_record,
    rollup_rows,
)
from campaigns.models import Enrollment
from messaging.models import Message, MessageEvent
from messaging.tests.webhook_support import sg_event

pytestmark = pytest.mark.django_db


def _hours(n: int) -> list[datetime.datetime]:
    top = timezone.now().replace(minute=0, second=0, microsecond=0)
    return [top - datetime.timedelta(hours=h) for h in range(n, 0, -1)]


def test_shuffled_repeated_and_late_events_roll_up_to_exactly_the_recount(tenant):
    rng = random.Random(8)
    _campaign, messages = campaign_messages(tenant, hours=_hours(4), per_hour=12)
    events = engagement_events(messages, rng=rng)
    late = [e for e in events if rng.random() < 0.2]
    on_time = [e for e in events if e not in late]
    # SendGrid re-delivers: every on-time event arrives one to four times, in any order.
    deliveries = [e for e in on_time for _ in range(rng.randint(1, 4))]
    rng.shuffle(deliveries)
    for start in range(0, len(deliveries), 25):
        receipt_post(tenant, deliveries[start : start + 25])
        if start % 100 == 0:
            analytics_refresh()
    analytics_refresh()
    assert rollup_rows(tenant.pk) == recount_rows(tenant.pk)

    # The late ones belong to hours already rolled up; some come twice, in two receipts.
    receipt_post(tenant, late)
    receipt_post(tenant, late[: len(late) // 2])
    for message in rng.sample(messages, 6):
        reply_record(message, classification="human", at=message.created_at, key=f"r-{message.pk}")
    reply_record(messages[0], classification="out_of_office", at=timezone.now(), key="ooo-0")
    analytics_refresh()
    analytics_refresh()  # a second run finds nothing left to apply

    assert not HourlyDelta.objects.exists()
    assert rollup_rows(tenant.pk) == recount_rows(tenant.pk)

    # And the figures a user reads are the ones the ledger holds.
    totals = {
        c: sum(getattr(r, c) for r in HourlyRollup.objects.filter(tenant=tenant))
        for c in (
            "sent",
            "opens",
            "unique_opens",
            "machine_opens",
            "bot_clicks",
            "replies_ooo",
            "unique_replies",
            "hard_bounces",
            "blocked_bounces",
        )
    }
    stored = MessageEvent.objects.filter(tenant_id=tenant.pk)
    human_opens = stored.filter(event_type="open", is_machine_open=False)
    assert totals["sent"] == len(messages) == 48
    assert totals["opens"] == human_opens.count()
    assert totals["unique_opens"] == human_opens.values("message_id").distinct().count()
    assert totals["machine_opens"] == stored.filter(event_type="open", is_machine_open=True).count()
    assert totals["bot_clicks"] == stored.filter(event_type="click", is_bot_click=True).count()
    assert totals["hard_bounces"] == stored.filter(event_type="bounce").count()
    assert totals["blocked_bounces"] == stored.filter(event_type="blocked").count()
    assert totals["unique_replies"] == 6
    assert totals["replies_ooo"] == 1
    assert len({e["sg_event_id"] for e in events}) == stored.exclude(event_type="reply").count()


def test_events_are_counted_in_their_own_hour_and_sends_in_the_hour_they_were_composed(tenant):
    two_hours_ago, one_hour_ago = _hours(2)
    _campaign, (message,) = campaign_messages(tenant, hours=[two_hours_ago], per_hour=1)
    receipt_post(tenant, [sg_event(message, "open", at=one_hour_ago.timestamp() + 5)])
    analytics_refresh()
    by_hour = {r.hour: r for r in HourlyRollup.objects.filter(tenant=tenant, campaign_id__gt=0)}
    assert by_hour[two_hours_ago].sent == 1
    assert by_hour[two_hours_ago].unique_opens == 1
    assert by_hour[two_hours_ago].opens == 0
    assert by_hour[one_hour_ago].opens == 1


def test_a_send_outcome_that_changes_moves_the_message_between_counters(tenant):
    _campaign, (message,) = campaign_messages(tenant, hours=_hours(1), per_hour=1)
    Message.objects.filter(pk=message.pk).update(status="sending", status_rank=0)
    Message.objects.filter(pk=message.pk).update(status="needs_review", status_rank=1)
    analytics_refresh()
    row = HourlyRollup.objects.get(
        tenant=tenant, campaign_id=message.campaign_id, hour=_hours(1)[0]
    )
    assert (row.sent, row.needs_review) == (0, 1)
    # The webhook reconciles it later: it was sent after all.
    Message.objects.filter(pk=message.pk).update(status="delivered", status_rank=40)
    analytics_refresh()
    row.refresh_from_db()
    assert (row.sent, row.needs_review) == (1, 0)
    assert rollup_rows(tenant.pk) == recount_rows(tenant.pk)


def test_journey_counts_follow_enrollments_through_steps_and_stops(tenant):
    campaign, _ = campaign_messages(tenant, hours=_hours(1), per_hour=0)
    enrollments = enrollments_make(campaign, 5)
    Enrollment.objects.filter(pk=enrollments[0].pk).update(
        state="stopped", stop_reason="replied", current_step="intro"
    )
    Enrollment.objects.filter(pk__in=[e.pk for e in enrollments[1:3]]).update(
        state="completed", current_step="done", outcome="finished"
    )
    analytics_refresh()
    counts = {
        (j.step, j.state, j.reason): j.enrollments
        for j in JourneyCount.objects.filter(tenant=tenant)
        if j.enrollments
    }
    assert counts == {
        ("intro", "active", ""): 2,
        ("intro", "stopped", "replied"): 1,
        ("done", "completed", "finished"): 2,
    }
    recounted = {
        (j["step"], j["state"], j["reason"]): j["enrollments"]
        for j in journey_recount(tenant_id=tenant.pk)
    }
    assert counts == recounted
    enrolled = sum(r.enrolled for r in HourlyRollup.objects.filter(tenant=tenant))
    assert enrolled == 5


def test_the_fill_state_says_what_the_rollup_holds(tenant):
    before = timezone.now()
    analytics_refresh()
    state = FillState.objects.get(name="hourly")
    assert state.filled_through >= before - datetime.timedelta(seconds=1)
    assert state.last_error == ""


def test_another_tenants_activity_never_lands_in_this_tenants_rollup(tenant, other_tenant):
    campaign_messages(other_tenant, hours=_hours(1), per_hour=3)
    analytics_refresh()
    assert not HourlyRollup.objects.filter(tenant=tenant).exists()
    assert sum(r.sent for r in HourlyRollup.objects.filter(tenant=other_tenant)) == 3
