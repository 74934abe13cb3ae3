"""Applying the delta queues to the rollups, and refreshing the dashboard's views.

``analytics_refresh`` is run by beat every few seconds and is safe to run anywhere, any
number of times at once: one run at a time holds the rollup lock (``pg_try_advisory_xact_lock``;
another run simply returns), and each batch is one statement, ``DELETE`` from the queue
feeding an upsert into the rollup, so a delta is applied once or, if the run dies, not at all.
Its cost is the number of deltas waiting, never the size of the event table.
"""

import datetime
import logging
import time
from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone
from psycopg import sql

from analytics.models import (
    BUCKET_KEYS,
    COUNTERS,
    JOURNEY_KEYS,
    CampaignDailyStats,
    FillState,
    SenderDailyStats,
    TenantDailyStats,
)

logger = logging.getLogger(__name__)

# Advisory lock keys (any two constants the project uses for nothing else).
ROLLUP_LOCK = 7_301_001
VIEWS_LOCK = 7_301_002
# With a tenant id as second key: one whole-tenant rebuild of a tenant at a time.
TENANT_REBUILD_LOCK = 7_301_003

HOURLY = "hourly"
JOURNEY = "journey"
VIEWS = "views"


@dataclass(frozen=True)
class RefreshResult:
    ran: bool
    hourly_deltas: int = 0
    journey_deltas: int = 0
    seconds: float = 0.0


def _ids(names: tuple[str, ...]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(name) for name in names)


def _apply_statement(
    *, queue: str, target: str, keys: tuple[str, ...], counters: tuple[str, ...]
) -> sql.Composable:
    """One batch: take the oldest deltas off the queue and add them to their buckets.

    Rows are grouped and written in key order, so this never deadlocks with a backfill."""
    return sql.SQL(
        """
        WITH moved AS (
            DELETE FROM {queue}
            WHERE id IN (SELECT id FROM {queue} ORDER BY id LIMIT %(limit)s)
            RETURNING *
        ), summed AS (
            SELECT {keys}, {sums}, count(*) AS n FROM moved GROUP BY {keys}
        ), applied AS (
            INSERT INTO {target} AS r ({keys}, {counters})
            SELECT {keys}, {counters} FROM summed ORDER BY {keys}
            ON CONFLICT ({keys}) DO UPDATE SET {adds}
        )
        SELECT coalesce(sum(n), 0)::bigint FROM summed
        """
    ).format(
        queue=sql.Identifier(queue),
        target=sql.Identifier(target),
        keys=_ids(keys),
        counters=_ids(counters),
        sums=sql.SQL(", ").join(
            sql.SQL("sum({c})::bigint AS {c}").format(c=sql.Identifier(c)) for c in counters
        ),
        adds=sql.SQL(", ").join(
            sql.SQL("{c} = r.{c} + excluded.{c}").format(c=sql.Identifier(c)) for c in counters
        ),
    )


_HOURLY_APPLY = _apply_statement(
    queue="analytics_hourlydelta",
    target="analytics_hourlyrollup",
    keys=BUCKET_KEYS,
    counters=COUNTERS,
)
_JOURNEY_APPLY = _apply_statement(
    queue="analytics_journeydelta",
    target="analytics_journeycount",
    keys=JOURNEY_KEYS,
    counters=("enrollments",),
)


def _fill_state_save(*, name: str, started: datetime.datetime, rows: int, drained: bool) -> None:
    """Record the high-water mark. Drained: everything committed before the run started is
    in the rollup. Not drained (time budget spent): only what is older than the oldest delta
    still waiting."""
    if drained:
        filled_through = started
    else:
        queue = "analytics_hourlydelta" if name == HOURLY else "analytics_journeydelta"
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL("SELECT min(created_at) FROM {}").format(sql.Identifier(queue)))
            filled_through = cursor.fetchone()[0] or started
    now = timezone.now()
    FillState.objects.update_or_create(
        name=name,
        defaults={
            "filled_through": filled_through,
            "last_run_at": now,
            "last_rows": rows,
            "last_duration_ms": (now - started).total_seconds() * 1000,
            "last_error": "",
        },
    )


def analytics_refresh(*, batch: int = 20_000, budget_seconds: float = 20.0) -> RefreshResult:
    """Apply waiting deltas to the hourly rollup and the journey counts.

    Each batch commits on its own, so a long backlog is worked off in bounded transactions
    and a crash loses nothing (the unapplied deltas are still queued). Returns ``ran=False``
    when another run holds the lock."""
    started = time.monotonic()
    deadline = started + budget_seconds
    applied: dict[str, int] = {}
    for name, statement in ((HOURLY, _HOURLY_APPLY), (JOURNEY, _JOURNEY_APPLY)):
        run_started = timezone.now()
        rows = 0
        while True:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [ROLLUP_LOCK])
                if not cursor.fetchone()[0]:
                    return RefreshResult(ran=False)
                cursor.execute(statement, {"limit": batch})
                moved = int(cursor.fetchone()[0])
            rows += moved
            drained = moved < batch
            if drained or time.monotonic() > deadline:
                break
        _fill_state_save(name=name, started=run_started, rows=rows, drained=drained)
        applied[name] = rows
    seconds = time.monotonic() - started
    if applied[HOURLY] or applied[JOURNEY]:
        logger.info(
            "analytics refresh applied %s hourly and %s journey deltas in %.3f s",
            applied[HOURLY],
            applied[JOURNEY],
            seconds,
        )
    return RefreshResult(
        ran=True, hourly_deltas=applied[HOURLY], journey_deltas=applied[JOURNEY], seconds=seconds
    )


def analytics_views_refresh() -> bool:
    """Refresh the dashboard's materialized views ``CONCURRENTLY`` (readers never wait).

    Returns False when another refresh holds the lock."""
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [VIEWS_LOCK])
        if not cursor.fetchone()[0]:
            return False
        try:
            for view in (CampaignDailyStats, TenantDailyStats, SenderDailyStats):
                view.refresh(concurrently=True)
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [VIEWS_LOCK])
    now = timezone.now()
    FillState.objects.update_or_create(
        name=VIEWS,
        defaults={
            "filled_through": now - datetime.timedelta(seconds=time.monotonic() - started),
            "last_run_at": now,
            "last_duration_ms": (time.monotonic() - started) * 1000,
            "last_error": "",
        },
    )
    return True
