"""Postgres owns time: scheduled actions are rows, claimed in batches under a lease.

The beat sweep (``scheduled_actions_sweep``) claims due rows with ``FOR UPDATE SKIP LOCKED``,
stamps a lease and bumps ``attempt``, commits, and only then publishes one Celery hint per
batch. A worker acts on a row only while ``(status, attempt)`` is still what it was handed:
a stale worker whose lease expired and was reclaimed finds a newer attempt and backs off
(fencing). Finished rows are deleted, so the hot partial index holds only live work; the
history of what happened lives in messages and enrollment transitions.
"""

import datetime
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from django.db import connection, connections, transaction

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClaimedAction:
    id: int
    kind: str
    attempt: int


@dataclass(frozen=True)
class NewAction:
    tenant_id: int
    enrollment_id: int
    kind: str
    step: str
    step_seq: int
    due_at: datetime.datetime
    idempotency_key: str
    priority: int = 1
    payload: dict | None = None


def scheduled_actions_create(*, actions: Iterable[NewAction]) -> int:
    """Insert actions; an idempotency key seen before is skipped. Returns how many were new.

    One statement per 5,000 rows: columns travel as arrays and ``unnest`` turns them back
    into rows, so enrolling 10,000 leads is a handful of round trips.
    """
    rows = list(actions)
    inserted = 0
    with connection.cursor() as cursor:
        for start in range(0, len(rows), 5000):
            chunk = rows[start : start + 5000]
            cursor.execute(
                """
                INSERT INTO campaigns_scheduledaction
                    (tenant_id, enrollment_id, kind, step, step_seq, due_at, status, priority,
                     lease_expires_at, attempt, idempotency_key, payload, last_error,
                     created_at, updated_at)
                SELECT t, e, k, s, q, d, 'pending', p, NULL, 0, i, pl::jsonb, '', now(), now()
                FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::int[],
                            %s::timestamptz[], %s::smallint[], %s::text[], %s::text[])
                    AS u(t, e, k, s, q, d, p, i, pl)
                ON CONFLICT (idempotency_key) DO NOTHING
                """,
                [
                    [a.tenant_id for a in chunk],
                    [a.enrollment_id for a in chunk],
                    [a.kind for a in chunk],
                    [a.step for a in chunk],
                    [a.step_seq for a in chunk],
                    [a.due_at for a in chunk],
                    [a.priority for a in chunk],
                    [a.idempotency_key for a in chunk],
                    [json.dumps(a.payload or {}) for a in chunk],
                ],
            )
            inserted += cursor.rowcount
    return inserted


def scheduled_actions_claim(*, limit: int = 2000, lease_seconds: int = 300) -> list[ClaimedAction]:
    """Claim up to ``limit`` due rows (one statement, its own transaction). Never blocks on
    rows another sweeper holds: ``SKIP LOCKED`` makes concurrent sweepers split the work.

    The locked ids come back as an array the update looks up by primary key, so a claim costs
    the rows it takes whatever the table size (joined to a CTE instead, the planner may hash
    the whole table when it looks small).
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE campaigns_scheduledaction AS a
            SET status = 'claimed',
                lease_expires_at = now() + make_interval(secs => %s),
                attempt = a.attempt + 1,
                updated_at = now()
            WHERE a.id = ANY(ARRAY(
                SELECT id FROM campaigns_scheduledaction
                WHERE status = 'pending' AND due_at <= now()
                ORDER BY due_at
                LIMIT %s
                FOR UPDATE SKIP LOCKED
            ))
            RETURNING a.id, a.kind, a.attempt
            """,
            [lease_seconds, limit],
        )
        return [ClaimedAction(*row) for row in cursor.fetchall()]


def scheduled_actions_reclaim_expired(*, limit: int = 5000) -> int:
    """Return rows whose lease ran out (a worker died or its message was lost) to pending."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            WITH stale AS (
                SELECT id FROM campaigns_scheduledaction
                WHERE status = 'claimed' AND lease_expires_at < now()
                LIMIT %s
                FOR UPDATE SKIP LOCKED
            )
            UPDATE campaigns_scheduledaction AS a
            SET status = 'pending', lease_expires_at = NULL, updated_at = now(),
                last_error = 'lease expired; reclaimed'
            FROM stale WHERE a.id = stale.id
            """,
            [limit],
        )
        count = cursor.rowcount
    if count:
        logger.warning("scheduler.leases_reclaimed", extra={"count": count})
    return count


def scheduled_actions_sweep(
    *,
    dispatch: Callable[[str, list[list[int]]], None],
    batch_size: int = 100,
    claim_limit: int = 2000,
    time_budget_seconds: float = 0.9,
    lease_seconds: int = 300,
) -> int:
    """Claim due actions until none are left or the budget is spent, dispatching batches.

    ``dispatch(kind, [[id, attempt], ...])`` publishes one hint per batch. It runs after the
    claim committed; if publishing fails the lease simply expires and the rows come back.
    The hints of one claim go out on a helper thread while the next claim runs, so broker
    round trips overlap database work. At most one claim's hints are in flight; a publish
    error ends the sweep (rows whose hint did not go out come back when their lease expires,
    as above), and the sweep returns only once every hint is out. ``dispatch`` therefore
    runs outside the caller's thread and transaction: it publishes, it does not query.
    """
    started = time.monotonic()
    total = 0
    scheduled_actions_reclaim_expired()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sweep-dispatch") as publisher:
        publishing: Future | None = None
        while True:
            claimed = scheduled_actions_claim(limit=claim_limit, lease_seconds=lease_seconds)
            by_kind: dict[str, list[list[int]]] = defaultdict(list)
            for action in claimed:
                by_kind[action.kind].append([action.id, action.attempt])
            batches = [
                (kind, items[start : start + batch_size])
                for kind, items in by_kind.items()
                for start in range(0, len(items), batch_size)
            ]
            if publishing is not None:
                publishing.result()
            publishing = publisher.submit(_batches_dispatch, dispatch, batches) if batches else None
            total += len(claimed)
            if len(claimed) < claim_limit or time.monotonic() - started > time_budget_seconds:
                break
        if publishing is not None:
            publishing.result()
    return total


def _batches_dispatch(
    dispatch: Callable[[str, list[list[int]]], None], batches: list[tuple[str, list[list[int]]]]
) -> None:
    try:
        for kind, items in batches:
            dispatch(kind, items)
    finally:
        # Connections are per thread: one a dispatch opened here would outlive the sweep.
        connections.close_all()


def scheduled_action_finish(*, action_id: int, attempt: int) -> bool:
    """Delete a finished action if we still hold it. False means a newer attempt owns it."""
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM campaigns_scheduledaction"
            " WHERE id = %s AND attempt = %s AND status = 'claimed'",
            [action_id, attempt],
        )
        return cursor.rowcount == 1


def scheduled_action_reschedule(
    *,
    action_id: int,
    attempt: int,
    due_at: datetime.datetime,
    reason: str,
    priority: int | None = None,
) -> bool:
    """Put a held action back to pending for later (no capacity, outside the window, paused)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE campaigns_scheduledaction
            SET status = 'pending', due_at = %s, lease_expires_at = NULL, last_error = %s,
                priority = COALESCE(%s, priority), updated_at = now()
            WHERE id = %s AND attempt = %s AND status = 'claimed'
            """,
            [due_at, reason[:1000], priority, action_id, attempt],
        )
        return cursor.rowcount == 1


def scheduled_actions_cancel_steps(*, steps: list[tuple[int, int]]) -> int:
    """``scheduled_actions_cancel`` of many step entries (``(enrollment_id, step_seq)``) in
    one statement."""
    if not steps:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            """
            DELETE FROM campaigns_scheduledaction AS a
            USING unnest(%s::bigint[], %s::int[]) AS u(enrollment_id, step_seq)
            WHERE a.enrollment_id = u.enrollment_id AND a.step_seq = u.step_seq
              AND a.status = 'pending'
            """,
            [[enrollment_id for enrollment_id, _ in steps], [seq for _, seq in steps]],
        )
        return cursor.rowcount


def scheduled_actions_cancel(*, enrollment_id: int, step_seq: int | None = None) -> int:
    """Drop an enrollment's pending work (all of it, or that of one step entry)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM campaigns_scheduledaction"
            " WHERE enrollment_id = %s AND status = 'pending'"
            " AND (%s::int IS NULL OR step_seq = %s::int)",
            [enrollment_id, step_seq, step_seq],
        )
        return cursor.rowcount
