"""The triggers that feed the analytics delta queues.

Statement-level ``AFTER`` triggers with transition tables: one aggregated ``INSERT`` per
statement whatever its row count, in the writer's own transaction. PostgreSQL allows one
event per trigger when transition tables are used, hence three triggers per table.

The event trigger records in ``analytics_messagefirst`` that a message had its first human
open, click or reply (``ON CONFLICT DO NOTHING``, in key order so concurrent writers never
deadlock), which is what makes the ``unique_*`` counters exact under repeated events.

The counter list is frozen here on purpose: a later migration that adds a counter replaces
these functions; it must not change what this one did.
"""

from django.db import migrations

COUNTERS = (
    "enrolled",
    "sent",
    "failed",
    "needs_review",
    "unique_opens",
    "unique_clicks",
    "unique_replies",
    "delivered",
    "opens",
    "machine_opens",
    "clicks",
    "bot_clicks",
    "replies",
    "replies_human",
    "replies_auto",
    "replies_ooo",
    "hard_bounces",
    "blocked_bounces",
    "deferrals",
    "dropped",
    "spam_reports",
    "unsubscribes",
)
KEYS = "tenant_id, campaign_id, plan_version_id, step, variant, sender_identity_id, hour"

# Message status ranks (messaging.services.events.MESSAGE_STATUS_RANK): accepted is 10.
MESSAGE_COUNTERS = {
    "sent": "(x.status_rank >= 10)::int",
    "failed": "(x.status = 'failed')::int",
    "needs_review": "(x.status = 'needs_review')::int",
}
EVENT_COUNTERS = {
    "delivered": "(e.event_type = 'delivered')::int",
    "opens": "(e.event_type = 'open' AND NOT e.is_machine_open)::int",
    "machine_opens": "(e.event_type = 'open' AND e.is_machine_open)::int",
    "clicks": "(e.event_type = 'click' AND NOT e.is_bot_click)::int",
    "bot_clicks": "(e.event_type = 'click' AND e.is_bot_click)::int",
    "replies": "(e.event_type = 'reply')::int",
    "replies_human": "(e.event_type = 'reply' AND e.raw->>'classification' = 'human')::int",
    "replies_auto": "(e.event_type = 'reply' AND e.raw->>'classification' = 'auto_reply')::int",
    "replies_ooo": "(e.event_type = 'reply' AND e.raw->>'classification' = 'out_of_office')::int",
    "hard_bounces": "(e.event_type = 'bounce')::int",
    "blocked_bounces": "(e.event_type = 'blocked')::int",
    "deferrals": "(e.event_type = 'deferred')::int",
    "dropped": "(e.event_type = 'dropped')::int",
    "spam_reports": "(e.event_type = 'spamreport')::int",
    "unsubscribes": "(e.event_type IN ('unsubscribe', 'group_unsubscribe'))::int",
}
FIRST_KIND = """CASE
        WHEN e.event_type = 'open' AND NOT e.is_machine_open THEN 1
        WHEN e.event_type = 'click' AND NOT e.is_bot_click THEN 2
        WHEN e.event_type = 'reply' AND e.raw->>'classification' = 'human' THEN 3
    END"""
FIRST_COUNTERS = {
    "unique_opens": "(f.kind = 1)::int",
    "unique_clicks": "(f.kind = 2)::int",
    "unique_replies": "(f.kind = 3)::int",
}


def _columns(exprs: dict[str, str], sign: str = "") -> str:
    return ", ".join(f"{sign}{exprs.get(name, '0')} AS {name}" for name in COUNTERS)


SUMS = ", ".join(f"sum({name})" for name in COUNTERS)
ANY_NONZERO = " OR ".join(f"sum({name}) <> 0" for name in COUNTERS)
INSERT_DELTA = f"INSERT INTO analytics_hourlydelta ({KEYS}, {', '.join(COUNTERS)})"


def _message_side(table: str, sign: str) -> str:
    classed = " OR ".join(f"{expr} <> 0" for expr in MESSAGE_COUNTERS.values())
    return f"""
        SELECT x.tenant_id, coalesce(x.campaign_id, 0) AS campaign_id,
               coalesce(x.plan_version_id, 0) AS plan_version_id, x.step, x.variant,
               x.sender_identity_id, date_trunc('hour', x.created_at, 'UTC') AS hour,
               {_columns(MESSAGE_COUNTERS, sign)}
        FROM {table} x
        WHERE {classed}"""


def _message_function(op: str) -> str:
    sides = {
        "INSERT": [_message_side("new_rows", "")],
        "UPDATE": [_message_side("new_rows", ""), _message_side("old_rows", "-")],
        "DELETE": [_message_side("old_rows", "-")],
    }[op]
    return f"""
CREATE FUNCTION analytics_message_{op.lower()}_delta() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    {INSERT_DELTA}
    SELECT {KEYS}, {SUMS}
    FROM ({" UNION ALL ".join(sides)}) d
    GROUP BY {KEYS}
    HAVING {ANY_NONZERO};
    RETURN NULL;
END;
$$;
CREATE TRIGGER analytics_message_{op.lower()}_delta
    AFTER {op} ON messaging_message
    REFERENCING {"OLD" if op == "DELETE" else "NEW"} TABLE AS {"old_rows" if op == "DELETE" else "new_rows"}
    {"OLD TABLE AS old_rows" if op == "UPDATE" else ""}
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_message_{op.lower()}_delta();
"""


EVENT_FUNCTION = f"""
CREATE FUNCTION analytics_event_insert_delta() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH firsts AS (
        INSERT INTO analytics_messagefirst (tenant_id, message_id, kind)
        SELECT DISTINCT e.tenant_id, e.message_id, {FIRST_KIND} AS kind
        FROM new_rows e
        WHERE e.message_id IS NOT NULL AND {FIRST_KIND} IS NOT NULL
        ORDER BY e.message_id, kind
        ON CONFLICT DO NOTHING
        RETURNING message_id, kind
    )
    {INSERT_DELTA}
    SELECT {KEYS}, {SUMS}
    FROM (
        SELECT m.tenant_id, coalesce(m.campaign_id, 0) AS campaign_id,
               coalesce(m.plan_version_id, 0) AS plan_version_id, m.step, m.variant,
               m.sender_identity_id, date_trunc('hour', m.created_at, 'UTC') AS hour,
               {_columns(FIRST_COUNTERS)}
        FROM firsts f JOIN messaging_message m ON m.id = f.message_id
        UNION ALL
        SELECT e.tenant_id, coalesce(m.campaign_id, 0), coalesce(m.plan_version_id, 0),
               coalesce(m.step, ''), coalesce(m.variant, ''), coalesce(m.sender_identity_id, 0),
               date_trunc('hour', e.occurred_at, 'UTC'),
               {_columns(EVENT_COUNTERS)}
        FROM new_rows e LEFT JOIN messaging_message m ON m.id = e.message_id
    ) d
    GROUP BY {KEYS}
    HAVING {ANY_NONZERO};
    RETURN NULL;
END;
$$;
CREATE TRIGGER analytics_event_insert_delta
    AFTER INSERT ON messaging_messageevent
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_event_insert_delta();
"""

# Where an enrollment is for the journey: its step and state, and why it ended or stopped.
JOURNEY_REASON = """left(CASE
        WHEN x.state = 'completed' THEN x.outcome
        WHEN x.state IN ('stopped', 'failed', 'paused') THEN x.stop_reason
        ELSE ''
    END, 200)"""


def _journey_side(table: str, sign: str) -> str:
    return f"""
        SELECT x.tenant_id, x.campaign_id, x.plan_version_id, x.current_step AS step, x.state,
               {JOURNEY_REASON} AS reason, {sign}1 AS enrollments,
               date_trunc('hour', x.enrolled_at, 'UTC') AS hour
        FROM {table} x"""


def _enrollment_function(op: str) -> str:
    sides = {
        "INSERT": [_journey_side("new_rows", "")],
        "UPDATE": [_journey_side("new_rows", ""), _journey_side("old_rows", "-")],
        "DELETE": [_journey_side("old_rows", "-")],
    }[op]
    journey = """INSERT INTO analytics_journeydelta
        (tenant_id, campaign_id, plan_version_id, step, state, reason, enrollments)
    SELECT tenant_id, campaign_id, plan_version_id, step, state, reason, sum(enrollments)
    FROM moves
    GROUP BY tenant_id, campaign_id, plan_version_id, step, state, reason
    HAVING sum(enrollments) <> 0"""
    # An enrollment's creation hour never changes, so only inserts and deletes count there.
    body = (
        f"{journey};"
        if op == "UPDATE"
        else f"""journeys AS ({journey})
    INSERT INTO analytics_hourlydelta (tenant_id, campaign_id, hour, enrolled)
    SELECT tenant_id, campaign_id, hour, sum(enrollments) FROM moves
    GROUP BY tenant_id, campaign_id, hour;"""
    )
    return f"""
CREATE FUNCTION analytics_enrollment_{op.lower()}_delta() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH moves AS ({" UNION ALL ".join(sides)}
    ){"," if op != "UPDATE" else ""}
    {body}
    RETURN NULL;
END;
$$;
CREATE TRIGGER analytics_enrollment_{op.lower()}_delta
    AFTER {op} ON campaigns_enrollment
    REFERENCING {"OLD" if op == "DELETE" else "NEW"} TABLE AS {"old_rows" if op == "DELETE" else "new_rows"}
    {"OLD TABLE AS old_rows" if op == "UPDATE" else ""}
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_enrollment_{op.lower()}_delta();
"""


OPS = ("INSERT", "UPDATE", "DELETE")

CREATE = (
    "".join(_message_function(op) for op in OPS)
    + EVENT_FUNCTION
    + "".join(_enrollment_function(op) for op in OPS)
)

DROP = (
    "".join(
        f"DROP TRIGGER IF EXISTS analytics_message_{op.lower()}_delta ON messaging_message;"
        f"DROP FUNCTION IF EXISTS analytics_message_{op.lower()}_delta();"
        f"DROP TRIGGER IF EXISTS analytics_enrollment_{op.lower()}_delta ON campaigns_enrollment;"
        f"DROP FUNCTION IF EXISTS analytics_enrollment_{op.lower()}_delta();"
        for op in OPS
    )
    + "DROP TRIGGER IF EXISTS analytics_event_insert_delta ON messaging_messageevent;"
    + "DROP FUNCTION IF EXISTS analytics_event_insert_delta();"
)


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0001_initial"),
        ("messaging", "0006_message_plan_version"),
        ("campaigns", "0004_scheduledaction_fewer_indexes"),
    ]

    operations = [migrations.RunSQL(CREATE, reverse_sql=DROP)]
