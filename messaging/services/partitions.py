"""The monthly partitions of the event table: created ahead, watched, expired per plan.

- ``event_partitions_ensure`` (beat, every 6 hours): last month's, this month's and the next
  ``EVENT_PARTITIONS_AHEAD_MONTHS`` months' partitions exist, so an insert never needs the
  DEFAULT partition. Rows that did land in DEFAULT for a month being created are moved into
  it by the same SQL function (``messaging_ensure_event_partitions``), atomically.
- ``event_default_partition_check`` (after each ensure): DEFAULT holding rows means events
  arrived with a time no partition covers (a far-future or ancient timestamp, or partitions
  not created): logged as an error and raised as an alert to each tenant concerned.
- ``event_retention_apply`` (beat, daily; ``manage.py event_retention``): a tenant's raw
  events are kept for the current month and ``EVENT_RETENTION_MONTHS[plan]`` whole months
  before it. Partitions that every tenant's plan has let go of are detached and dropped (a
  metadata change, however many rows); rows of tenants whose plan is shorter than the
  longest are deleted from the partitions still kept, in small batches. The analytics
  rollups are separate tables and are kept. Dedup keys older than ``EVENT_DEDUP_KEY_DAYS``
  are deleted too.
"""

import datetime
import logging
import re
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from psycopg import sql

from outreach.tenancy.models import Tenant, TenantAlert

logger = logging.getLogger(__name__)

PARENT = "messaging_messageevent"
DEFAULT_PARTITION = "messaging_messageevent_default"
_BOUND = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")
# A detach waits at most this long for the parent's lock (it queues inserts behind it); a
# run that gives up leaves the partition for the next run.
DETACH_LOCK_TIMEOUT = "5s"


@dataclass(frozen=True)
class EventPartition:
    name: str
    start: datetime.datetime
    end: datetime.datetime


def event_partitions_ensure(*, months_back: int = 1, months_ahead: int | None = None) -> int:
    """Create any missing monthly partitions of the event table; returns how many were made.

    Idempotent (``to_regclass`` check per month); a concurrent run that loses the race to
    create the same partition fails only that run, and the next sweep finds nothing to do.
    """
    if months_ahead is None:
        months_ahead = settings.EVENT_PARTITIONS_AHEAD_MONTHS
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT messaging_ensure_event_partitions(%s, %s)", [months_back, months_ahead]
        )
        return int(cursor.fetchone()[0])


def event_partitions_list() -> list[EventPartition]:
    """The monthly partitions, oldest first (DEFAULT is not one of them)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = %s::regclass
            """,
            [PARENT],
        )
        rows = cursor.fetchall()
    partitions = []
    for name, bound in rows:
        match = _BOUND.search(bound or "")
        if match:
            start, end = (parse_datetime(value) for value in match.groups())
            partitions.append(EventPartition(name, start, end))
    return sorted(partitions, key=lambda p: p.start)


@dataclass(frozen=True)
class DefaultPartitionRows:
    tenant_id: int
    rows: int
    oldest: datetime.datetime
    newest: datetime.datetime


def event_default_partition_check() -> list[DefaultPartitionRows]:
    """Rows in DEFAULT, per tenant. Each tenant concerned gets one open alert (not one per
    run); the error log names them all."""
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL(
                "SELECT tenant_id, count(*), min(occurred_at), max(occurred_at) FROM {}"
                " GROUP BY tenant_id ORDER BY tenant_id"
            ).format(sql.Identifier(DEFAULT_PARTITION))
        )
        found = [DefaultPartitionRows(*row) for row in cursor.fetchall()]
    if not found:
        return found
    logger.error(
        "messaging.events_in_default_partition",
        extra={"tenants": {f.tenant_id: f.rows for f in found}},
    )
    open_alerts = set(
        TenantAlert.objects.filter(
            kind=TenantAlert.Kind.EVENT_STORAGE,
            acknowledged_at__isnull=True,
            tenant_id__in=[f.tenant_id for f in found],
        ).values_list("tenant_id", flat=True)
    )
    existing = set(
        Tenant.objects.filter(pk__in=[f.tenant_id for f in found]).values_list("pk", flat=True)
    )
    TenantAlert.objects.bulk_create(
        TenantAlert(
            tenant_id=f.tenant_id,
            kind=TenantAlert.Kind.EVENT_STORAGE,
            message=(
                f"{f.rows} event(s) dated {f.oldest:%Y-%m-%d} to {f.newest:%Y-%m-%d} are stored in"
                " the DEFAULT partition: no monthly partition covers their time. They are kept"
                " and counted; they move into their month's partition when it is created"
                " (far-future or ancient timestamps stay until an operator looks)."
            ),
            payload={
                "rows": f.rows,
                "oldest": f.oldest.isoformat(),
                "newest": f.newest.isoformat(),
            },
        )
        for f in found
        if f.tenant_id in existing and f.tenant_id not in open_alerts
    )
    return found


def _month_start(moment: datetime.datetime) -> datetime.datetime:
    moment = moment.astimezone(datetime.UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _months_before(moment: datetime.datetime, months: int) -> datetime.datetime:
    index = moment.year * 12 + (moment.month - 1) - months
    return moment.replace(year=index // 12, month=index % 12 + 1)


def event_retention_cutoff(*, plan: str, now: datetime.datetime | None = None) -> datetime.datetime:
    """Events of a tenant on ``plan`` that occurred before this instant are expired."""
    months = settings.EVENT_RETENTION_MONTHS[plan]
    return _months_before(_month_start(now or timezone.now()), months)


def event_retention_horizon(*, tenant_id: int) -> datetime.datetime | None:
    """The oldest instant whose events this tenant may still have: its plan's cutoff, or the
    start of the oldest partition if that is later. None: no partition at all."""
    plan = Tenant.objects.filter(pk=tenant_id).values_list("plan", flat=True).first()
    partitions = event_partitions_list()
    if plan is None or not partitions:
        return None
    return max(event_retention_cutoff(plan=plan), partitions[0].start)


@dataclass
class RetentionResult:
    dropped: list[str] = field(default_factory=list)
    deleted_events: dict[int, int] = field(default_factory=dict)  # tenant id → rows
    deleted_keys: int = 0
    skipped: list[str] = field(default_factory=list)  # partitions whose lock timed out
    dry_run: bool = False


def event_retention_apply(
    *,
    now: datetime.datetime | None = None,
    dry_run: bool = False,
    batch: int = 10_000,
) -> RetentionResult:
    """Expire raw events past each tenant's plan (see the module docstring). ``dry_run``
    reports what would go (partitions, and rows per tenant counted) and changes nothing.

    Safe to run twice and to interrupt: every step is a bounded transaction of its own and
    a re-run picks up what is left."""
    now = now or timezone.now()
    result = RetentionResult(dry_run=dry_run)
    plans_in_use = set(Tenant.objects.values_list("plan", flat=True).distinct())
    if not plans_in_use:
        plans_in_use = set(settings.EVENT_RETENTION_MONTHS)
    cutoffs = {plan: event_retention_cutoff(plan=plan, now=now) for plan in plans_in_use}
    droppable_before = min(cutoffs.values())
    for partition in event_partitions_list():
        if partition.end <= droppable_before:
            if dry_run or _partition_drop(partition.name):
                result.dropped.append(partition.name)
            else:
                result.skipped.append(partition.name)
    for tenant_id, plan in Tenant.objects.order_by("pk").values_list("pk", "plan"):
        cutoff = cutoffs[plan]
        if cutoff <= droppable_before:
            continue  # the dropped partitions held everything this plan expires
        deleted = _tenant_events_expire(
            tenant_id, cutoff, batch=batch, dry_run=dry_run, dropped_before=droppable_before
        )
        if deleted:
            result.deleted_events[tenant_id] = deleted
    result.deleted_keys = _dedup_keys_expire(
        now - datetime.timedelta(days=settings.EVENT_DEDUP_KEY_DAYS), batch=batch, dry_run=dry_run
    )
    logger.info(
        "messaging.event_retention",
        extra={
            "dropped": result.dropped,
            "skipped": result.skipped,
            "deleted_events": sum(result.deleted_events.values()),
            "deleted_keys": result.deleted_keys,
            "dry_run": dry_run,
        },
    )
    return result


def _partition_drop(name: str) -> bool:
    """Detach, then drop. ``DETACH … CONCURRENTLY`` is not allowed while the table has a
    DEFAULT partition, so the plain detach takes the parent's lock for a moment, with a
    timeout: False when it could not get it (the next run tries again)."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [DETACH_LOCK_TIMEOUT])
            cursor.execute(
                sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
                    sql.Identifier(PARENT), sql.Identifier(name)
                )
            )
            cursor.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
    except Exception as exc:  # LockNotAvailable, mostly; anything else is logged and retried
        logger.warning(
            "messaging.event_partition_drop_failed", extra={"partition": name, "error": str(exc)}
        )
        return False
    logger.info("messaging.event_partition_dropped", extra={"partition": name})
    return True


def _tenant_events_expire(
    tenant_id: int,
    cutoff: datetime.datetime,
    *,
    batch: int,
    dry_run: bool,
    dropped_before: datetime.datetime,
) -> int:
    """Delete one tenant's events older than ``cutoff``, ``batch`` rows per transaction. The
    time bound prunes the scan to the old partitions (and DEFAULT); the tenant-leading index
    finds the rows. A dry run counts those the partition drops leave (from
    ``dropped_before``)."""
    with connection.cursor() as cursor:
        if dry_run:
            cursor.execute(
                "SELECT count(*) FROM messaging_messageevent"
                " WHERE tenant_id = %s AND occurred_at >= %s AND occurred_at < %s",
                [tenant_id, dropped_before, cutoff],
            )
            return int(cursor.fetchone()[0])
        deleted = 0
        while True:
            with transaction.atomic():
                cursor.execute(
                    """
                    DELETE FROM messaging_messageevent
                    WHERE tenant_id = %(tenant)s AND occurred_at < %(cutoff)s
                      AND id = ANY(ARRAY(
                        SELECT id FROM messaging_messageevent
                        WHERE tenant_id = %(tenant)s AND occurred_at < %(cutoff)s
                        LIMIT %(batch)s))
                    """,
                    {"tenant": tenant_id, "cutoff": cutoff, "batch": batch},
                )
                deleted += cursor.rowcount
            if cursor.rowcount < batch:
                return deleted


def _dedup_keys_expire(before: datetime.datetime, *, batch: int, dry_run: bool) -> int:
    """Delete dedup keys first seen before ``before``. Keys are written in id order as they
    arrive, so the oldest are the lowest ids: walk the primary key from the start and stop at
    the first batch that holds a key still needed."""
    deleted = 0
    with connection.cursor() as cursor:
        last_id = 0
        while True:
            cursor.execute(
                "SELECT id, first_seen_at < %s FROM messaging_messageeventkey"
                " WHERE id > %s ORDER BY id LIMIT %s",
                [before, last_id, batch],
            )
            rows = cursor.fetchall()
            expired = [key_id for key_id, old in rows if old]
            if expired and not dry_run:
                with transaction.atomic():
                    cursor.execute(
                        "DELETE FROM messaging_messageeventkey WHERE id = ANY(%s)", [expired]
                    )
            deleted += len(expired)
            if len(rows) < batch or len(expired) < len(rows):
                return deleted
            last_id = rows[-1][0]
