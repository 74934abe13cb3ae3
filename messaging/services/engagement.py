"""What the campaign engine needs from the event store: read fresh events with their
messages, and record synthetic events (timeouts) the same way real ones are recorded."""

import datetime
import json

from django.db import connection
from django.utils import timezone

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_FAR_FUTURE = datetime.datetime(9999, 1, 1, tzinfo=datetime.UTC)


def message_events_for_transitions(
    *,
    tenant_id: int,
    event_ids: list[int],
    event_types: list[str],
    occurred_range: tuple[datetime.datetime, datetime.datetime] | None = None,
) -> list[tuple]:
    """Rows ``(event_id, event_type, occurred_at, machine_open, bot_click, message_id,
    message_step_seq, enrollment_id)`` for events on campaign messages, oldest first.

    ``occurred_range`` (the first and last ``occurred_at`` of these events) lets Postgres
    read only the monthly partitions that can hold them instead of probing every one.

    The ids drive the query, each one looked up by primary key (the ``LIMIT 1`` lateral
    keeps the planner from doing anything else): left to itself it read the tenant's events
    of that time range and kept the ids asked for, and its estimate for the newest minutes
    is far too low, so a busy tenant's whole window was read (10,869 rows for 377 kept at
    50M events)."""
    low, high = occurred_range or (_EPOCH, _FAR_FUTURE)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT e.id, e.event_type, e.occurred_at, e.is_machine_open, e.is_bot_click,
                   m.id, m.step_seq, m.enrollment_id
            FROM unnest(%s::bigint[]) AS wanted(id)
            CROSS JOIN LATERAL (
                SELECT * FROM messaging_messageevent e
                WHERE e.id = wanted.id AND e.occurred_at >= %s AND e.occurred_at <= %s
                LIMIT 1
            ) e
            JOIN messaging_message m ON m.id = e.message_id AND m.tenant_id = e.tenant_id
            WHERE e.tenant_id = %s AND m.enrollment_id IS NOT NULL AND e.event_type = ANY(%s)
            ORDER BY e.occurred_at, e.id
            """,
            [event_ids, low, high, tenant_id, event_types],
        )
        return cursor.fetchall()


def message_event_exists(
    *, tenant_id: int, message_id: int, event_type: str, human_only: bool
) -> bool:
    """Has this message seen ``event_type``? Machine opens and bot clicks don't count when
    ``human_only``."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT EXISTS (
                SELECT 1 FROM messaging_messageevent
                WHERE tenant_id = %s AND message_id = %s AND event_type = %s
                  AND (NOT %s OR (NOT is_machine_open AND NOT is_bot_click))
            )
            """,
            [tenant_id, message_id, event_type, human_only],
        )
        return bool(cursor.fetchone()[0])


def message_event_synthetic_record(
    *,
    tenant_id: int,
    message_id: int | None,
    enrollment_id: int,
    event_type: str,
    key: str,
    occurred_at: datetime.datetime | None = None,
    detail: dict | None = None,
) -> int | None:
    """Store a synthetic event (``no_open`` …) once per ``key``; returns its id, or None when
    that key was recorded before."""
    occurred_at = occurred_at or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO messaging_messageeventkey (tenant_id, provider_event_id, first_seen_at)
            VALUES (%s, %s, now()) ON CONFLICT DO NOTHING
            """,
            [tenant_id, key],
        )
        if cursor.rowcount != 1:
            return None
        cursor.execute(
            """
            INSERT INTO messaging_messageevent
                (tenant_id, message_id, enrollment_id, event_type, occurred_at, received_at,
                 provider_event_id, is_synthetic, raw)
            VALUES (%s, %s, %s, %s, %s, now(), %s, true, %s::jsonb)
            RETURNING id
            """,
            [
                tenant_id,
                message_id,
                enrollment_id,
                event_type,
                occurred_at,
                key,
                json.dumps(detail or {}),
            ],
        )
        return int(cursor.fetchone()[0])
