"""What the campaign engine needs from the event store: fresh events with their messages,
and synthetic events (timeouts) recorded the same way real ones are."""

import datetime
import json
from dataclasses import dataclass

from django.db import connection
from django.utils import timezone


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A freshly stored event on a campaign message, as the normaliser hands it to the
    campaign engine (in the same transaction): what it needs, without reading it back."""

    event_id: int
    event_type: str
    occurred_at: datetime.datetime
    machine_open: bool
    bot_click: bool
    message_id: int
    message_step_seq: int
    enrollment_id: int


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
