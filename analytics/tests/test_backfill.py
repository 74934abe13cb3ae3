"""``analytics_backfill`` rebuilds a range to the recount, again and again, and says no clearly."""

import datetime
import random
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from analytics.models import HourlyRollup, JourneyCount, MessageFirst
from analytics.services.backfill import analytics_tenant_rebuild
from analytics.services.recount import journey_recount
from analytics.services.rollup import analytics_refresh
from analytics.tests.support import (
    campaign_messages,
    engagement_events,
    enrollments_make,
    receipt_post,
    recount_rows,
    rollup_rows,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _events_cleanup(event_rows_cleanup):
    """The partitioned event table is unmanaged: see ``event_rows_cleanup``."""


def _hours(n: int) -> list[datetime.datetime]:
    top = timezone.now().replace(minute=0, second=0, microsecond=0)
    return [top - datetime.timedelta(hours=h) for h in range(n, 0, -1)]


def test_a_damaged_rollup_is_rebuilt_to_the_recount_and_a_rerun_changes_nothing(tenant):
    _campaign, messages = campaign_messages(tenant, hours=_hours(3), per_hour=8)
    receipt_post(tenant, engagement_events(messages, rng=random.Random(5)))
    analytics_refresh()
    expected = recount_rows(tenant.pk)
    # Someone's bad hand edit, or rows lost in a restore.
    HourlyRollup.objects.filter(tenant=tenant).update(sent=999)
    HourlyRollup.objects.filter(tenant=tenant, opens__gt=0).delete()
    since = (timezone.now() - datetime.timedelta(days=2)).date().isoformat()

    call_command("analytics_backfill", "--since", since, "--tenant", tenant.slug, "--quiet")
    assert rollup_rows(tenant.pk) == expected
    call_command("analytics_backfill", "--since", since, "--tenant", str(tenant.pk), "--quiet")
    assert rollup_rows(tenant.pk) == expected

    # Events that arrive after the rebuild are added on top, once.
    receipt_post(tenant, engagement_events(messages[:5], rng=random.Random(6)))
    analytics_refresh()
    assert rollup_rows(tenant.pk) == recount_rows(tenant.pk)


def test_waiting_deltas_of_the_rebuilt_range_are_not_counted_twice(tenant):
    _campaign, messages = campaign_messages(tenant, hours=_hours(2), per_hour=5)
    receipt_post(tenant, engagement_events(messages, rng=random.Random(7)))
    # No refresh yet: the deltas wait in the queue when the backfill recounts the range.
    since = (timezone.now() - datetime.timedelta(days=1)).date().isoformat()
    call_command("analytics_backfill", "--since", since, "--quiet")
    analytics_refresh()
    assert rollup_rows(tenant.pk) == recount_rows(tenant.pk)


def _journeys(tenant_id: int) -> dict[tuple, int]:
    return {
        (j.campaign_id, j.plan_version_id, j.step, j.state, j.reason): j.enrollments
        for j in JourneyCount.objects.filter(tenant_id=tenant_id, enrollments__gt=0)
    }


def _firsts(tenant_id: int) -> set[tuple[int, int]]:
    return set(MessageFirst.objects.filter(tenant_id=tenant_id).values_list("message_id", "kind"))


@pytest.fixture
def other_events_cleanup(other_tenant):
    yield
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM messaging_messageevent WHERE tenant_id = %s", [other_tenant.pk])


def test_a_whole_tenant_rebuild_gives_what_the_triggers_counted_and_leaves_others_alone(
    tenant, other_tenant, other_events_cleanup
):
    worlds = {}
    for owner, seed in ((tenant, 11), (other_tenant, 12)):
        campaign, messages = campaign_messages(owner, hours=_hours(3), per_hour=6)
        enrollments_make(campaign, 4)
        receipt_post(owner, engagement_events(messages, rng=random.Random(seed)))
        worlds[owner.pk] = messages
    analytics_refresh()
    counted = {t: (rollup_rows(t), _journeys(t), _firsts(t)) for t in worlds}
    assert counted[tenant.pk][0] == recount_rows(tenant.pk)
    assert counted[tenant.pk][2]  # some human opens or clicks were marked first-of-kind

    # The tenant's analytics lost (as after a load written with the triggers off), and more
    # events arrive whose deltas wait in the queue when the rebuild runs.
    for model in (HourlyRollup, JourneyCount, MessageFirst):
        model.objects.filter(tenant=tenant).delete()
    receipt_post(tenant, engagement_events(worlds[tenant.pk][:6], rng=random.Random(13)))

    analytics_tenant_rebuild(tenant_id=tenant.pk)
    analytics_refresh()  # the waiting deltas were dropped with the rows they counted
    rebuilt = rollup_rows(tenant.pk)
    assert rebuilt == recount_rows(tenant.pk)
    assert rebuilt != counted[tenant.pk][0]  # the late events are in it, once
    expected_journeys = {
        (r["campaign_id"], r["plan_version_id"], r["step"], r["state"], r["reason"]): r[
            "enrollments"
        ]
        for r in journey_recount(tenant_id=tenant.pk)
    }
    assert _journeys(tenant.pk) == expected_journeys == counted[tenant.pk][1]
    assert _firsts(tenant.pk) >= counted[tenant.pk][2]
    # The other tenant's rows were not touched.
    assert (
        rollup_rows(other_tenant.pk),
        _journeys(other_tenant.pk),
        _firsts(other_tenant.pk),
    ) == counted[other_tenant.pk]

    analytics_tenant_rebuild(tenant_id=tenant.pk)  # again: nothing changes
    assert rollup_rows(tenant.pk) == rebuilt


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "last week"], "--since: 'last week' is not a date"),
        (["--since", "2026-12-01", "--until", "2026-11-01"], "must be before --until"),
        (["--since", "2026-12-01", "--tenant", "no-such-tenant"], "no tenant with slug or id"),
    ],
)
def test_bad_arguments_are_one_readable_line(tenant, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("analytics_backfill", *args)


def test_the_command_exits_non_zero_with_one_line_on_bad_input():
    result = subprocess.run(
        [sys.executable, "manage.py", "analytics_backfill", "--since", "whenever"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if line]
    assert lines == [
        "CommandError: --since: 'whenever' is not a date (2026-11-01) or a time (2026-11-01T09:00Z)"
    ]
