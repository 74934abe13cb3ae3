"""``analytics_backfill`` rebuilds a range to the recount, again and again, and says no clearly."""

import datetime
import random
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from analytics.models import HourlyRollup
from analytics.services.rollup import analytics_refresh
from analytics.tests.support import (
    campaign_messages,
    engagement_events,
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
