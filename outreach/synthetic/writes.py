"""Getting synthetic rows into PostgreSQL fast: COPY, reserved id blocks, and the event
expander that turns one plan row per message into its events on a second connection."""

from __future__ import annotations

import contextlib
import datetime as dt
import queue
import threading

import psycopg
from psycopg import sql

from outreach.synthetic.data import words
from outreach.synthetic.journeys import Chunk, Progress

# Chunks of journeys the event expander may lag behind (each waits in an unlogged table).
PIPELINE_DEPTH = 3


def ids_reserve(cursor: psycopg.Cursor, table: str, count: int) -> int:
    """The first id of a block of ``count`` ids of ``table`` that no other writer will get:
    the sequence jumps past the block while the table is locked against inserts (a moment)."""
    cursor.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(table)))
    cursor.execute(
        "SELECT setval(pg_get_serial_sequence(%(t)s, 'id'),"
        " nextval(pg_get_serial_sequence(%(t)s, 'id')) + %(n)s - 1)",
        {"t": table, "n": max(1, count)},
    )
    return int(cursor.fetchone()[0]) - max(1, count) + 1


def copy_rows(cursor: psycopg.Cursor, table: str, columns: tuple[str, ...], rows: list) -> None:
    if not rows:
        return
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


LEAD_COLUMNS = words(
    "id tenant_id email first_name last_name company title timezone country phone "
    "custom_fields validation_status validation_reason is_role_address is_disposable "
    "validated_at created_at updated_at"
)
ENROLLMENT_COLUMNS = words(
    "id tenant_id campaign_id lead_id plan_version_id sender_identity_id state current_step "
    "step_seq step_entered_at outcome stop_reason last_error enrolled_at updated_at "
    "finished_at"
)
MESSAGE_COLUMNS = words(
    "id tenant_id public_id channel sender_identity_id enrollment_id lead_id campaign_id "
    "plan_version_id step step_seq variant attempt status status_rank to_email subject "
    "rfc_message_id reply_token provider_message_id smtp_id error_code error_message "
    "sent_at last_event_at created_at updated_at"
)
INBOUND_COLUMNS = words(
    "id tenant_id raw_mime from_email to_email subject message_id_header in_reply_to "
    "references matched_message_id classification received_at processed_at"
)
TRANSITION_COLUMNS = words(
    "tenant_id enrollment_id from_step from_seq to_step trigger cause message_id event_id "
    "created_at"
)
ACTION_COLUMNS = words(
    "tenant_id enrollment_id kind step step_seq due_at status priority attempt "
    "idempotency_key payload last_error created_at updated_at"
)
EVENT_COLUMNS = words(
    "id tenant_id message_id enrollment_id event_type occurred_at received_at "
    "provider_event_id provider_message_id email is_machine_open is_bot_click is_synthetic "
    "raw"
)
KEY_COLUMNS = ("tenant_id", "provider_event_id", "first_seen_at")
SUPPRESSION_COLUMNS = ("tenant_id", "scope", "email", "reason", "source", "note", "created_at")
PLAN_COLUMNS = words(
    "message_id tenant_id enrollment_id email provider_message_id sent_at processed "
    "n_deferred delivered_at n_machine n_bot n_open open_first open_last n_click "
    "click_first click_last"
)

# Each writer's own plan table (temporary: no WAL, private to the session).
PLAN = "synthetic_plan"
PLAN_TABLE = """
CREATE TEMPORARY TABLE {plan} (
    message_id bigint, tenant_id bigint, enrollment_id bigint, email text,
    provider_message_id text, sent_at timestamptz, processed boolean, n_deferred int,
    delivered_at timestamptz, n_machine int, n_bot int, n_open int, open_first timestamptz,
    open_last timestamptz, n_click int, click_first timestamptz, click_last timestamptz
)
"""

# One plan row becomes the message's common events. Times are spread between the first and
# the last of each kind; keys are unique per message and kind. Dedup keys are kept for the
# events received within ``EVENT_DEDUP_KEY_DAYS``, as the retention job leaves them.
EXPAND = """
WITH stored AS (
    INSERT INTO messaging_messageevent (tenant_id, message_id, enrollment_id, event_type,
        occurred_at, received_at, provider_event_id, provider_message_id, email,
        is_machine_open, is_bot_click, is_synthetic, raw)
    SELECT p.tenant_id, p.message_id, p.enrollment_id, x.t, x.o, x.o + interval '3 seconds',
           'syn' || p.message_id || '.' || x.k, p.provider_message_id, p.email, x.mo, x.bc,
           false, '{{}}'::jsonb
    FROM {plan} p
    CROSS JOIN LATERAL (
        SELECT 'processed' AS t, p.sent_at + interval '2 seconds' AS o, 'p' AS k,
               false AS mo, false AS bc
        WHERE p.processed
        UNION ALL
        SELECT 'deferred', p.sent_at + g * interval '10 minutes', 'd' || g, false, false
        FROM generate_series(1, p.n_deferred) g
        UNION ALL
        SELECT 'delivered', p.delivered_at, 'v', false, false WHERE p.delivered_at IS NOT NULL
        UNION ALL
        SELECT 'open', p.delivered_at + g * interval '41 seconds', 'm' || g, true, false
        FROM generate_series(1, p.n_machine) g
        UNION ALL
        SELECT 'click', p.delivered_at + g * interval '3 seconds', 'b' || g, false, true
        FROM generate_series(1, p.n_bot) g
        UNION ALL
        SELECT 'open', p.open_first + (p.open_last - p.open_first)
                   * ((g - 1)::float8 / greatest(p.n_open - 1, 1)), 'o' || g, false, false
        FROM generate_series(1, p.n_open) g
        UNION ALL
        SELECT 'click', p.click_first + (p.click_last - p.click_first)
                   * ((g - 1)::float8 / greatest(p.n_click - 1, 1)), 'c' || g, false, false
        FROM generate_series(1, p.n_click) g
    ) x
    RETURNING tenant_id, provider_event_id, received_at
)
INSERT INTO messaging_messageeventkey (tenant_id, provider_event_id, first_seen_at)
SELECT tenant_id, provider_event_id, received_at FROM stored WHERE received_at >= %(cutoff)s
"""


# Every loader session: no JIT (the planner overestimates generate_series and compiles for
# nothing), asynchronous commit, compressed full-page images (a bulk load writes many), and
# room to sort the analytics triggers' aggregates in memory.
SESSION = (
    "SET jit = off",
    "SET synchronous_commit = off",
    "SET wal_compression = on",
    "SET work_mem = '64MB'",
)
# The expansion statements insert 100k+ events; the analytics trigger joins them to their
# messages, and for that many rows the planner would hash the whole message table (which
# grows with the load) instead of looking each message up.
EXPANDER_SESSION = ("SET enable_hashjoin = off", "SET enable_mergejoin = off")


# With this, the session's rows skip the per-row foreign-key checks and the analytics
# triggers (``load_synthetic`` rebuilds the rollups set-based afterwards): about half the
# load's CPU. A superuser setting (or one granted with ``GRANT SET ON PARAMETER``).
UNCHECKED = "SET session_replication_role = replica"


def session_tune(
    conn: psycopg.Connection, extra: tuple[str, ...] = (), *, unchecked: bool = False
) -> None:
    for statement in (*SESSION, *extra):
        # wal_compression needs a superuser; without it the load only runs slower.
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)
    if unchecked:
        conn.execute(UNCHECKED)


def unchecked_allowed(conn: psycopg.Connection) -> bool:
    """Whether this role may write with the foreign-key checks and triggers off."""
    try:
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


class ChunkWriters:
    """``jobs`` connections, each writing whole chunks: the journeys by COPY, the plan rows
    into a temporary table, then their expansion into events, in one transaction per chunk.
    The loader's thread only generates chunks; PostgreSQL works on ``jobs`` chunks at once."""

    def __init__(
        self,
        *,
        conninfo: dict,
        cutoff: dt.datetime,
        progress: Progress,
        jobs: int,
        unchecked: bool,
    ) -> None:
        self.queue: queue.Queue = queue.Queue(maxsize=jobs + PIPELINE_DEPTH)
        self.conninfo, self.cutoff, self.progress = conninfo, cutoff, progress
        self.unchecked = unchecked
        self.error: BaseException | None = None
        self.threads = [
            threading.Thread(target=self._run, name=f"synthetic-writer-{n}", daemon=True)
            for n in range(jobs)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        try:
            with psycopg.connect(**self.conninfo, autocommit=True) as conn:
                session_tune(conn, EXPANDER_SESSION, unchecked=self.unchecked)
                conn.execute(sql.SQL(PLAN_TABLE).format(plan=sql.Identifier(PLAN)))
                while True:
                    chunk = self.queue.get()
                    if chunk is None:
                        return
                    chunk_write(conn, chunk, cutoff=self.cutoff)
                    self.progress.advance(len(chunk.events) + chunk.bulk_events)
        except BaseException as exc:  # re-raised by the loader's thread
            self.error = exc
            while True:  # keep draining so the producer never blocks on a dead consumer
                if self.queue.get() is None:
                    return

    def submit(self, chunk: Chunk) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(chunk)

    def finish(self) -> None:
        """Wait for every chunk submitted; re-raise the first error of any connection."""
        for _ in self.threads:
            self.queue.put(None)
        for thread in self.threads:
            thread.join()
        if self.error is not None:
            raise self.error


def chunk_write(conn: psycopg.Connection, chunk: Chunk, *, cutoff: dt.datetime) -> None:
    """One day's journeys in one transaction, parents first, then the bulk of their events
    expanded from the plan rows (``EXPAND``)."""
    with conn.transaction(), conn.cursor() as cursor:
        copy_rows(cursor, "campaigns_enrollment", ENROLLMENT_COLUMNS, chunk.enrollments)
        copy_rows(cursor, "messaging_message", MESSAGE_COLUMNS, chunk.messages)
        copy_rows(cursor, "messaging_inboundmessage", INBOUND_COLUMNS, chunk.inbound)
        copy_rows(cursor, "campaigns_enrollmenttransition", TRANSITION_COLUMNS, chunk.transitions)
        copy_rows(cursor, "campaigns_scheduledaction", ACTION_COLUMNS, chunk.actions)
        copy_rows(cursor, "messaging_messageevent", EVENT_COLUMNS, chunk.events)
        copy_rows(cursor, "messaging_messageeventkey", KEY_COLUMNS, chunk.keys)
        copy_rows(cursor, "suppression_suppression", SUPPRESSION_COLUMNS, chunk.suppressions)
        if chunk.plans:
            cursor.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(PLAN)))
            copy_rows(cursor, PLAN, PLAN_COLUMNS, chunk.plans)
            cursor.execute(sql.SQL(EXPAND).format(plan=sql.Identifier(PLAN)), {"cutoff": cutoff})
