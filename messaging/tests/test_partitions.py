"""Event partitions: created ahead, DEFAULT watched (and emptied when its month comes),
retention per tenant plan, and queries that read only the partitions they need."""

import datetime
import re

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone

from analytics.services.recount import HOURLY_RECOUNT
from analytics.services.rollup import analytics_refresh
from analytics.tests.support import rollup_rows
from campaigns.selectors_timeline import lead_timeline
from messaging.models import Message
from messaging.periodic import PERIODIC_TASKS
from messaging.services import partitions
from messaging.tasks import event_partitions_ensure
from outreach.tenancy.models import TenantAlert
from outreach.testing.factories import LeadFactory, SenderIdentityFactory, TenantFactory

pytestmark = pytest.mark.django_db

RETENTION = {"trial": 3, "standard": 12, "enterprise": 24}


def month_name(moment: datetime.datetime) -> str:
    return f"messaging_messageevent_{moment:%Y_%m}"


def months_ago(n: int, day: int = 10) -> datetime.datetime:
    start = timezone.now().astimezone(datetime.UTC).replace(day=1, hour=12, minute=0)
    index = start.year * 12 + start.month - 1 - n
    return start.replace(year=index // 12, month=index % 12 + 1, day=day)


def event_store(tenant_id: int, at: datetime.datetime, key: str, message_id=None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO messaging_messageevent (tenant_id, message_id, event_type, occurred_at,
                received_at, provider_event_id, raw)
            VALUES (%s, %s, 'delivered', %s, now(), %s, '{}')
            """,
            [tenant_id, message_id, at, key],
        )


def where_stored(key: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tableoid::regclass::text FROM messaging_messageevent"
            " WHERE provider_event_id = %s",
            [key],
        )
        found = cursor.fetchall()
    assert len(found) == 1, found
    return found[0][0]


def test_partitions_exist_ahead_and_a_second_run_creates_nothing():
    with override_settings(EVENT_PARTITIONS_AHEAD_MONTHS=5):
        partitions.event_partitions_ensure()
        assert partitions.event_partitions_ensure() == 0
    names = {p.name for p in partitions.event_partitions_list()}
    assert {month_name(months_ago(-n)) for n in range(0, 6)} <= names
    assert {e.task for e in PERIODIC_TASKS} >= {
        "maintenance.event_partitions_ensure",
        "maintenance.event_retention_apply",
    }


def test_an_event_no_partition_covers_is_kept_in_default_and_raises_one_alert(tenant):
    event_store(tenant.pk, months_ago(-40), "far-future")
    assert where_stored("far-future") == partitions.DEFAULT_PARTITION

    event_partitions_ensure()  # the beat task: ensure, then check DEFAULT
    event_partitions_ensure()  # delivered twice: still one open alert
    alerts = TenantAlert.objects.filter(tenant=tenant, kind=TenantAlert.Kind.EVENT_STORAGE)
    assert alerts.count() == 1
    assert "1 event(s)" in alerts.get().message and "DEFAULT" in alerts.get().message


def test_creating_a_month_moves_its_rows_out_of_default(tenant):
    at = months_ago(-8)
    event_store(tenant.pk, at, "early")
    assert where_stored("early") == partitions.DEFAULT_PARTITION

    with override_settings(EVENT_PARTITIONS_AHEAD_MONTHS=9):
        partitions.event_partitions_ensure()

    assert where_stored("early") == month_name(at)
    assert partitions.event_default_partition_check() == []
    # The moved partition is a real one: its indexes were built when it was attached.
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_indexes WHERE tablename = %s", [month_name(at)])
        assert cursor.fetchone()[0] >= 3


@override_settings(EVENT_RETENTION_MONTHS=RETENTION, EVENT_DEDUP_KEY_DAYS=30)
def test_retention_drops_partitions_no_plan_needs_trims_shorter_plans_and_keeps_rollups():
    trial = TenantFactory(plan="trial")
    big = TenantFactory(plan="enterprise")
    partitions.event_partitions_ensure(months_back=30)
    event_store(big.pk, months_ago(27), "big-27")  # past every plan: its partition goes
    event_store(trial.pk, months_ago(27), "trial-27")
    event_store(big.pk, months_ago(5), "big-5")  # enterprise keeps 24 months
    event_store(trial.pk, months_ago(5), "trial-5")  # a trial keeps 3
    event_store(trial.pk, months_ago(1), "trial-1")
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO messaging_messageeventkey (tenant_id, provider_event_id, first_seen_at)"
            " VALUES (%s, 'old-key', now() - interval '40 days'),"
            " (%s, 'new-key', now() - interval '2 days')",
            [trial.pk, trial.pk],
        )
    analytics_refresh()
    rollups = {t.pk: rollup_rows(t.pk) for t in (trial, big)}

    # Enterprise keeps 24 whole months before this one: the months from 25 back go.
    expired = [month_name(months_ago(n)) for n in range(30, 24, -1)]
    planned = partitions.event_retention_apply(dry_run=True)
    assert planned.dropped == expired
    assert planned.deleted_events == {trial.pk: 1}
    assert planned.deleted_keys == 1
    where_stored("big-27")  # a dry run changes nothing

    result = partitions.event_retention_apply(batch=1)
    assert result.dropped == expired and result.skipped == []
    assert result.deleted_events == {trial.pk: 1} and result.deleted_keys == 1
    names = {p.name for p in partitions.event_partitions_list()}
    assert month_name(months_ago(25)) not in names and month_name(months_ago(24)) in names
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT provider_event_id FROM messaging_messageevent WHERE tenant_id IN (%s, %s)"
            " ORDER BY 1",
            [trial.pk, big.pk],
        )
        assert [row[0] for row in cursor.fetchall()] == ["big-5", "trial-1"]
        cursor.execute(
            "SELECT provider_event_id FROM messaging_messageeventkey WHERE tenant_id = %s",
            [trial.pk],
        )
        assert [row[0] for row in cursor.fetchall()] == ["new-key"]
    assert {t.pk: rollup_rows(t.pk) for t in (trial, big)} == rollups  # rollups are kept
    again = partitions.event_retention_apply()
    assert (again.dropped, again.deleted_events, again.deleted_keys) == ([], {}, 0)


@override_settings(EVENT_RETENTION_MONTHS=RETENTION)
def test_the_command_reports_and_a_dry_run_changes_nothing(capsys):
    tenant = TenantFactory(plan="trial")
    TenantFactory(plan="standard")  # keeps the partitions: the trial's old rows are deleted
    partitions.event_partitions_ensure(months_back=6)
    event_store(tenant.pk, months_ago(5), "old")
    call_command("event_retention", "--dry-run")
    out = capsys.readouterr().out
    assert "trial 3 months" in out
    assert "would delete from kept partitions: 1 (1 tenant(s))" in out
    where_stored("old")
    call_command("event_retention")
    assert "deleted from kept partitions: 1" in capsys.readouterr().out


def _partitions_in(plan: str) -> set[str]:
    return set(
        re.findall(r"messaging_messageevent_\d{4}_\d{2}|messaging_messageevent_default", plan)
    )


def _explain(sql: str, params=None, analyze: bool = False) -> str:
    with connection.cursor() as cursor:
        cursor.execute(("EXPLAIN (ANALYZE) " if analyze else "EXPLAIN ") + sql, params or [])
        return "\n".join(row[0] for row in cursor.fetchall())


def test_the_timeline_reads_only_partitions_since_the_lead_was_created(tenant):
    partitions.event_partitions_ensure(months_back=4)
    lead = LeadFactory(tenant=tenant)
    identity = SenderIdentityFactory(tenant=tenant)
    message = Message.objects.create(
        tenant=tenant, sender_identity=identity, lead=lead, to_email=lead.email, subject="Hi"
    )
    event_store(tenant.pk, timezone.now(), "recent", message_id=message.pk)
    with CaptureQueriesContext(connection) as queries:
        timeline = lead_timeline(tenant_id=tenant.pk, lead_id=lead.pk)
    assert [e.kind for e in timeline.entries] == ["message", "event"]
    sql = next(q["sql"] for q in queries if "messaging_messageevent" in q["sql"])
    read = _partitions_in(_explain(sql))
    assert month_name(timezone.now()) in read
    assert month_name(months_ago(3)) not in read and month_name(months_ago(2)) not in read
    # DEFAULT stays in the plan (it may hold rows dated after the last month); it is empty.


def test_an_analytics_recount_of_a_day_skips_the_partitions_before_it(tenant):
    partitions.event_partitions_ensure(months_back=4)
    day = months_ago(2).replace(hour=0)
    lead = LeadFactory(tenant=tenant)
    message = Message.objects.create(
        tenant=tenant,
        sender_identity=SenderIdentityFactory(tenant=tenant),
        lead=lead,
        to_email=lead.email,
        subject="Hi",
    )
    Message.objects.filter(pk=message.pk).update(created_at=day + datetime.timedelta(hours=9))
    event_store(tenant.pk, day + datetime.timedelta(hours=10), "opened", message_id=message.pk)
    params = {"tenant": tenant.pk, "since": day, "until": day + datetime.timedelta(days=1)}
    plan = _explain(HOURLY_RECOUNT, params, analyze=True)
    scanned = {
        name
        for line in plan.splitlines()
        if "never executed" not in line
        for name in _partitions_in(line)
    }
    assert month_name(day) in scanned
    # Neither the day's events nor its messages' first opens read older months.
    assert not scanned & {month_name(months_ago(3)), month_name(months_ago(4))}, plan


@override_settings(EVENT_RETENTION_MONTHS=RETENTION)
def test_a_backfill_before_the_kept_events_is_refused_so_rollups_are_not_erased():
    trial = TenantFactory(plan="trial")
    partitions.event_partitions_ensure(months_back=6)
    since = months_ago(5).date().isoformat()
    with pytest.raises(CommandError, match="retention expired them"):
        call_command("analytics_backfill", "--since", since, "--tenant", trial.slug, "--quiet")
