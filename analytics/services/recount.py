"""Counting from the source tables: what the rollups must equal, and how a range is rebuilt.

The rules are the triggers' rules (``analytics/migrations/0004_sms_counter_triggers.py``)
written a second time, from the ledger's point of view, for whole ranges: the tests hold the
two to the same answer, and ``analytics_backfill`` uses this side to rebuild a range.
"""

import datetime

from django.db import connection
from psycopg import sql

from analytics.models import BUCKET_KEYS, COUNTERS, JOURNEY_KEYS

_EVENT_COUNTERS: dict[str, str] = {
    "delivered": "e.event_type = 'delivered'",
    "opens": "e.event_type = 'open' AND NOT e.is_machine_open",
    "machine_opens": "e.event_type = 'open' AND e.is_machine_open",
    "clicks": "e.event_type = 'click' AND NOT e.is_bot_click",
    "bot_clicks": "e.event_type = 'click' AND e.is_bot_click",
    "replies": "e.event_type = 'reply'",
    "replies_human": "e.event_type = 'reply' AND e.raw->>'classification' = 'human'",
    "replies_auto": "e.event_type = 'reply' AND e.raw->>'classification' = 'auto_reply'",
    "replies_ooo": "e.event_type = 'reply' AND e.raw->>'classification' = 'out_of_office'",
    "hard_bounces": "e.event_type = 'bounce'",
    "blocked_bounces": "e.event_type = 'blocked'",
    "deferrals": "e.event_type = 'deferred'",
    "dropped": "e.event_type = 'dropped'",
    "spam_reports": "e.event_type = 'spamreport'",
    "unsubscribes": "e.event_type IN ('unsubscribe', 'group_unsubscribe')",
    "sms_delivered": "e.event_type = 'sms_delivered'",
    "sms_undelivered": "e.event_type IN ('sms_undelivered', 'sms_failed')",
    "sms_replies": "e.event_type = 'sms_reply'",
    "sms_opt_outs": "e.event_type = 'sms_stop'",
}
# Emails and texts by send outcome, each channel in its own counters.
_MESSAGE_COUNTERS: dict[str, str] = {
    "sent": "m.channel = 'email' AND m.status_rank >= 10",
    "failed": "m.channel = 'email' AND m.status = 'failed'",
    "needs_review": "m.channel = 'email' AND m.status = 'needs_review'",
    "sms_sent": "m.channel = 'sms' AND m.status_rank >= 10",
    "sms_failed": "m.channel = 'sms' AND m.status = 'failed'",
    "sms_needs_review": "m.channel = 'sms' AND m.status = 'needs_review'",
    "unique_opens": "u.opened",
    "unique_clicks": "u.clicked",
    "unique_replies": "u.replied",
}
# The kinds of ``analytics_messagefirst``: first human open, click, reply of a message.
_FIRST_KINDS = """CASE
    WHEN e.event_type = 'open' AND NOT e.is_machine_open THEN 1
    WHEN e.event_type = 'click' AND NOT e.is_bot_click THEN 2
    WHEN e.event_type = 'reply' AND e.raw->>'classification' = 'human' THEN 3
END"""


def _columns(exprs: dict[str, str]) -> str:
    return ",\n           ".join(
        f"({exprs[name]})::int AS {name}" if name in exprs else f"0 AS {name}" for name in COUNTERS
    )


# A message's events happen after it was composed; a day earlier allows for a provider's
# clock. The bound lets PostgreSQL skip the monthly event partitions older than the message
# (per message, at run time) instead of probing every partition for it.
_SKEW = "interval '1 day'"

_KEYS = ", ".join(BUCKET_KEYS)
_SUMS = ", ".join(f"sum({name})::bigint AS {name}" for name in COUNTERS)
_NONZERO = " OR ".join(f"sum({name}) <> 0" for name in COUNTERS)


def _hourly_recount(
    *, firsts: str, uniques: dict[str, str], messages: str, events: str, enrollments: str
) -> str:
    """The hourly buckets counted from messages (with their first-of-kind marks joined by
    ``firsts``), events and enrollments, each side filtered by its own condition."""
    return f"""
SELECT {_KEYS}, {_SUMS}
FROM (
    SELECT m.tenant_id, coalesce(m.campaign_id, 0) AS campaign_id,
           coalesce(m.plan_version_id, 0) AS plan_version_id, m.step, m.variant,
           m.sender_identity_id, date_trunc('hour', m.created_at, 'UTC') AS hour,
           {_columns({**_MESSAGE_COUNTERS, **uniques, "enrolled": "false"})}
    FROM messaging_message m
    {firsts}
    WHERE {messages}
    UNION ALL
    SELECT e.tenant_id, coalesce(m.campaign_id, 0), coalesce(m.plan_version_id, 0),
           coalesce(m.step, ''), coalesce(m.variant, ''), coalesce(m.sender_identity_id, 0),
           date_trunc('hour', e.occurred_at, 'UTC'),
           {_columns(_EVENT_COUNTERS)}
    FROM messaging_messageevent e
    {events}
    UNION ALL
    SELECT x.tenant_id, x.campaign_id, 0, '', '', 0, date_trunc('hour', x.enrolled_at, 'UTC'),
           {_columns({"enrolled": "true"})}
    FROM campaigns_enrollment x
    WHERE {enrollments}
) d
GROUP BY {_KEYS}
HAVING {_NONZERO}
"""


HOURLY_RECOUNT = _hourly_recount(
    firsts=f"""LEFT JOIN LATERAL (
        SELECT coalesce(bool_or(k.kind = 1), false) AS opened,
               coalesce(bool_or(k.kind = 2), false) AS clicked,
               coalesce(bool_or(k.kind = 3), false) AS replied
        FROM (SELECT {_FIRST_KINDS} AS kind FROM messaging_messageevent e
              WHERE e.message_id = m.id AND e.occurred_at >= m.created_at - {_SKEW}) k
    ) u ON true""",
    uniques={},
    messages="m.tenant_id = %(tenant)s AND m.created_at >= %(since)s AND m.created_at < %(until)s",
    events="""LEFT JOIN messaging_message m ON m.id = e.message_id
    WHERE e.tenant_id = %(tenant)s AND e.occurred_at >= %(since)s AND e.occurred_at < %(until)s""",
    enrollments="x.tenant_id = %(tenant)s AND x.enrolled_at >= %(since)s"
    " AND x.enrolled_at < %(until)s",
)

JOURNEY_RECOUNT = f"""
SELECT x.tenant_id, x.campaign_id, x.plan_version_id, x.current_step AS step, x.state,
       left(CASE
           WHEN x.state = 'completed' THEN x.outcome
           WHEN x.state IN ('stopped', 'failed', 'paused') THEN x.stop_reason
           ELSE ''
       END, 200) AS reason,
       count(*)::bigint AS enrollments
FROM campaigns_enrollment x
WHERE x.tenant_id = %(tenant)s
GROUP BY {", ".join(JOURNEY_KEYS)}
"""

FIRSTS_FILL = f"""
INSERT INTO analytics_messagefirst (tenant_id, message_id, kind)
SELECT DISTINCT m.tenant_id, m.id, k.kind
FROM messaging_message m
JOIN messaging_messageevent e ON e.message_id = m.id AND e.occurred_at >= m.created_at - {_SKEW}
CROSS JOIN LATERAL (SELECT {_FIRST_KINDS} AS kind) k
WHERE m.tenant_id = %(tenant)s AND m.created_at >= %(since)s AND m.created_at < %(until)s
  AND k.kind IS NOT NULL
ORDER BY m.id, k.kind
ON CONFLICT DO NOTHING
"""


# A whole tenant at once, for rebuilding it after a bulk load: the same counts as
# ``HOURLY_RECOUNT``, but set-based (messages and events hashed, not looked up one by one),
# with the first-of-kind marks read from ``analytics_messagefirst`` once ``TENANT_FIRSTS_FILL``
# has filled them.
TENANT_FIRSTS_FILL = f"""
INSERT INTO analytics_messagefirst (tenant_id, message_id, kind)
SELECT DISTINCT e.tenant_id, e.message_id, k.kind
FROM messaging_messageevent e
CROSS JOIN LATERAL (SELECT {_FIRST_KINDS} AS kind) k
WHERE e.tenant_id = %(tenant)s AND e.message_id IS NOT NULL AND k.kind IS NOT NULL
ORDER BY e.message_id, k.kind
ON CONFLICT DO NOTHING
"""

# A whole tenant, its first-of-kind marks read from the filled ``analytics_messagefirst``.
TENANT_HOURLY_RECOUNT = _hourly_recount(
    firsts="""LEFT JOIN (
        SELECT f.message_id, bool_or(f.kind = 1) AS opened, bool_or(f.kind = 2) AS clicked,
               bool_or(f.kind = 3) AS replied
        FROM analytics_messagefirst f
        WHERE f.tenant_id = %(tenant)s
        GROUP BY f.message_id
    ) u ON u.message_id = m.id""",
    uniques={
        "unique_opens": "coalesce(u.opened, false)",
        "unique_clicks": "coalesce(u.clicked, false)",
        "unique_replies": "coalesce(u.replied, false)",
    },
    messages="m.tenant_id = %(tenant)s",
    events="""LEFT JOIN messaging_message m ON m.id = e.message_id AND m.tenant_id = %(tenant)s
    WHERE e.tenant_id = %(tenant)s""",
    enrollments="x.tenant_id = %(tenant)s",
)


def hourly_recount(
    *, tenant_id: int, since: datetime.datetime, until: datetime.datetime
) -> list[dict]:
    """Every hourly bucket of ``[since, until)`` counted from the source tables."""
    with connection.cursor() as cursor:
        cursor.execute(HOURLY_RECOUNT, {"tenant": tenant_id, "since": since, "until": until})
        columns = [c.name for c in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def journey_recount(*, tenant_id: int) -> list[dict]:
    """Where the tenant's enrollments are now, counted from the enrollments."""
    with connection.cursor() as cursor:
        cursor.execute(JOURNEY_RECOUNT, {"tenant": tenant_id})
        columns = [c.name for c in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def recount_insert_sql(target: str, recount: str = HOURLY_RECOUNT) -> sql.Composable:
    """``INSERT INTO <target>`` of an hourly recount, for the backfill and the rebuild."""
    return sql.SQL("INSERT INTO {} ({}, {}) ").format(
        sql.Identifier(target),
        sql.SQL(_KEYS),
        sql.SQL(", ".join(COUNTERS)),
    ) + sql.SQL(recount)
