"""Rebuilding rollups from the source tables, for any range, idempotently.

A range is rebuilt one tenant-day at a time, each in one ``REPEATABLE READ`` transaction: the
recount, the deletion of the range's old rollup rows and of the deltas already visible for it
all see one snapshot, so every event is counted exactly once, either by the recount (it was
committed before the snapshot) or by its delta (applied later by ``analytics_refresh``).
``analytics_refresh`` waits meanwhile (the rollup lock is held for the whole rebuild).

``analytics_tenant_rebuild`` does a whole tenant in one set-based pass, for rows written with
the analytics triggers off (``load_synthetic``); several tenants may be rebuilt at once.
"""

import datetime
from collections.abc import Callable

from django.db import OperationalError, connection, transaction
from psycopg import errors as pg_errors
from psycopg import sql

from analytics.services import recount
from analytics.services.rollup import ROLLUP_LOCK, TENANT_REBUILD_LOCK

_RETRIES = 5


def backfill_chunks(
    *, since: datetime.datetime, until: datetime.datetime
) -> list[tuple[datetime.datetime, datetime.datetime]]:
    """``[since, until)`` cut at each UTC midnight: the unit of work and of progress."""
    chunks = []
    start = since
    while start < until:
        midnight = (start + datetime.timedelta(days=1)).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        end = min(until, midnight)
        chunks.append((start, end))
        start = end
    return chunks


def _rebuild_chunk(*, tenant_id: int, since: datetime.datetime, until: datetime.datetime) -> int:
    params = {"tenant": tenant_id, "since": since, "until": until}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute(recount.FIRSTS_FILL, params)
        for table in ("analytics_hourlydelta", "analytics_hourlyrollup"):
            cursor.execute(
                sql.SQL(
                    "DELETE FROM {} WHERE tenant_id = %(tenant)s"
                    " AND hour >= %(since)s AND hour < %(until)s"
                ).format(sql.Identifier(table)),
                params,
            )
        cursor.execute(recount.recount_insert_sql("analytics_hourlyrollup"), params)
        return cursor.rowcount


def _rebuild_journey(*, tenant_id: int) -> int:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return _journeys_replace(cursor, tenant_id=tenant_id)


def _journeys_replace(cursor, *, tenant_id: int) -> int:
    cursor.execute("DELETE FROM analytics_journeydelta WHERE tenant_id = %s", [tenant_id])
    cursor.execute("DELETE FROM analytics_journeycount WHERE tenant_id = %s", [tenant_id])
    cursor.execute(
        "INSERT INTO analytics_journeycount"
        " (tenant_id, campaign_id, plan_version_id, step, state, reason, enrollments) "
        + recount.JOURNEY_RECOUNT,
        {"tenant": tenant_id},
    )
    return cursor.rowcount


def analytics_tenant_rebuild(*, tenant_id: int) -> int:
    """Recount all of one tenant's rollups (hourly buckets, journey counts, first-of-kind
    marks) from its messages, events and enrollments, replacing what was there.

    For rows that reached the tables without the analytics triggers (a bulk load): the count
    is set-based, about ten times cheaper per event than the triggers plus the refresh. One
    ``REPEATABLE READ`` transaction, as ``_rebuild_chunk``: the tenant's queued deltas are
    dropped with the rows they were computed from counted instead. Rebuilds of different
    tenants run side by side (a shared hold of the rollup lock keeps ``analytics_refresh``
    and ``analytics_backfill`` out meanwhile); two of the same tenant take turns.
    Returns the number of hourly rollup rows written."""
    params = {"tenant": tenant_id}
    locks = [ROLLUP_LOCK, TENANT_REBUILD_LOCK, tenant_id]
    # Held before the transaction begins, so its snapshot sees whatever a refresh that held
    # the lock committed.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_lock_shared(%s), pg_advisory_lock(%s::int, %s::int)", locks
        )
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            # A big tenant's aggregate is millions of groups: hash them in memory.
            cursor.execute("SET LOCAL work_mem = '512MB'")
            cursor.execute(recount.TENANT_FIRSTS_FILL, params)
            for table in ("analytics_hourlydelta", "analytics_hourlyrollup"):
                cursor.execute(
                    sql.SQL("DELETE FROM {} WHERE tenant_id = %(tenant)s").format(
                        sql.Identifier(table)
                    ),
                    params,
                )
            cursor.execute(
                recount.recount_insert_sql("analytics_hourlyrollup", recount.TENANT_HOURLY_RECOUNT),
                params,
            )
            written = cursor.rowcount
            _journeys_replace(cursor, tenant_id=tenant_id)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_unlock_shared(%s), pg_advisory_unlock(%s::int, %s::int)",
                locks,
            )
    return written


def _with_retries(work: Callable[[], int]) -> int:
    """A concurrent writer of the same first-of-kind rows makes a repeatable-read transaction
    fail to serialise; the chunk is simply done again."""
    for attempt in range(_RETRIES):
        try:
            return work()
        except OperationalError as exc:
            if (
                not isinstance(exc.__cause__, pg_errors.SerializationFailure)
                or attempt == _RETRIES - 1
            ):
                raise
    raise AssertionError("unreachable")


def analytics_backfill(
    *,
    tenant_ids: list[int],
    since: datetime.datetime,
    until: datetime.datetime,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Rebuild the hourly rollup of ``[since, until)`` and the journey counts of each tenant.

    Returns the number of rollup rows written. ``progress(n)`` is called after each chunk."""
    written = 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [ROLLUP_LOCK])
    try:
        for tenant_id in tenant_ids:
            for start, end in backfill_chunks(since=since, until=until):
                written += _with_retries(
                    lambda tenant_id=tenant_id, start=start, end=end: _rebuild_chunk(
                        tenant_id=tenant_id, since=start, until=end
                    )
                )
                if progress:
                    progress(1)
            _with_retries(lambda tenant_id=tenant_id: _rebuild_journey(tenant_id=tenant_id))
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [ROLLUP_LOCK])
    return written
