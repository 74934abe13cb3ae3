"""The delta triggers count texts apart from emails.

Until now a text message counted in ``sent``/``failed``/``needs_review`` like an email, so a
campaign with an SMS step mixed both channels in its totals and its email rates. Here the
message and event trigger functions are replaced (``CREATE OR REPLACE``; the triggers of
``0002_delta_triggers`` stay): the email counters take ``channel = 'email'`` rows only and
texts get ``sms_sent``/``sms_failed``/``sms_needs_review``; Twilio's callbacks and inbound
texts (``sms_*`` events, never counted by the email rules) feed ``sms_delivered``,
``sms_undelivered``, ``sms_replies`` and ``sms_opt_outs``.

Like 0002, this migration freezes its own counter list and rules; migrating back restores
0002's functions. Rows already rolled up keep their old counts: ``analytics_backfill`` over
the affected range recounts them with these rules.
"""

import importlib

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
    "sms_sent",
    "sms_failed",
    "sms_needs_review",
    "sms_delivered",
    "sms_undelivered",
    "sms_replies",
    "sms_opt_outs",
)
KEYS = "tenant_id, campaign_id, plan_version_id, step, variant, sender_identity_id, hour"

# Message status ranks (messaging.services.events.MESSAGE_STATUS_RANK): accepted is 10.
MESSAGE_COUNTERS = {
    "sent": "(x.channel = 'email' AND x.status_rank >= 10)::int",
    "failed": "(x.channel = 'email' AND x.status = 'failed')::int",
    "needs_review": "(x.channel = 'email' AND x.status = 'needs_review')::int",
    "sms_sent": "(x.channel = 'sms' AND x.status_rank >= 10)::int",
    "sms_failed": "(x.channel = 'sms' AND x.status = 'failed')::int",
    "sms_needs_review": "(x.channel = 'sms' AND x.status = 'needs_review')::int",
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
    "sms_delivered": "(e.event_type = 'sms_delivered')::int",
    "sms_undelivered": "(e.event_type IN ('sms_undelivered', 'sms_failed'))::int",
    "sms_replies": "(e.event_type = 'sms_reply')::int",
    "sms_opt_outs": "(e.event_type = 'sms_stop')::int",
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


def functions_sql(
    counters: tuple[str, ...],
    message_counters: dict[str, str],
    event_counters: dict[str, str],
    first_kind: str,
    first_counters: dict[str, str],
) -> str:
    """``CREATE OR REPLACE`` of the message and event trigger functions for these rules
    (the bodies of ``0002_delta_triggers``, which created the triggers that call them)."""

    def columns(exprs: dict[str, str], sign: str = "") -> str:
        return ", ".join(f"{sign}{exprs.get(name, '0')} AS {name}" for name in counters)

    sums = ", ".join(f"sum({name})" for name in counters)
    any_nonzero = " OR ".join(f"sum({name}) <> 0" for name in counters)
    insert_delta = f"INSERT INTO analytics_hourlydelta ({KEYS}, {', '.join(counters)})"

    def message_side(table: str, sign: str) -> str:
        classed = " OR ".join(f"{expr} <> 0" for expr in message_counters.values())
        return f"""
        SELECT x.tenant_id, coalesce(x.campaign_id, 0) AS campaign_id,
               coalesce(x.plan_version_id, 0) AS plan_version_id, x.step, x.variant,
               x.sender_identity_id, date_trunc('hour', x.created_at, 'UTC') AS hour,
               {columns(message_counters, sign)}
        FROM {table} x
        WHERE {classed}"""

    statements = []
    for op in ("INSERT", "UPDATE", "DELETE"):
        sides = {
            "INSERT": [message_side("new_rows", "")],
            "UPDATE": [message_side("new_rows", ""), message_side("old_rows", "-")],
            "DELETE": [message_side("old_rows", "-")],
        }[op]
        statements.append(f"""
CREATE OR REPLACE FUNCTION analytics_message_{op.lower()}_delta() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    {insert_delta}
    SELECT {KEYS}, {sums}
    FROM ({" UNION ALL ".join(sides)}) d
    GROUP BY {KEYS}
    HAVING {any_nonzero};
    RETURN NULL;
END;
$$;
""")
    statements.append(f"""
CREATE OR REPLACE FUNCTION analytics_event_insert_delta() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH firsts AS (
        INSERT INTO analytics_messagefirst (tenant_id, message_id, kind)
        SELECT DISTINCT e.tenant_id, e.message_id, {first_kind} AS kind
        FROM new_rows e
        WHERE e.message_id IS NOT NULL AND {first_kind} IS NOT NULL
        ORDER BY e.message_id, kind
        ON CONFLICT DO NOTHING
        RETURNING message_id, kind
    )
    {insert_delta}
    SELECT {KEYS}, {sums}
    FROM (
        SELECT m.tenant_id, coalesce(m.campaign_id, 0) AS campaign_id,
               coalesce(m.plan_version_id, 0) AS plan_version_id, m.step, m.variant,
               m.sender_identity_id, date_trunc('hour', m.created_at, 'UTC') AS hour,
               {columns(first_counters)}
        FROM firsts f JOIN messaging_message m ON m.id = f.message_id
        UNION ALL
        SELECT e.tenant_id, coalesce(m.campaign_id, 0), coalesce(m.plan_version_id, 0),
               coalesce(m.step, ''), coalesce(m.variant, ''), coalesce(m.sender_identity_id, 0),
               date_trunc('hour', e.occurred_at, 'UTC'),
               {columns(event_counters)}
        FROM new_rows e LEFT JOIN messaging_message m ON m.id = e.message_id
    ) d
    GROUP BY {KEYS}
    HAVING {any_nonzero};
    RETURN NULL;
END;
$$;
""")
    return "".join(statements)


FORWARD = functions_sql(COUNTERS, MESSAGE_COUNTERS, EVENT_COUNTERS, FIRST_KIND, FIRST_COUNTERS)

# Back: 0002's own rules, as it froze them.
_before = importlib.import_module("analytics.migrations.0002_delta_triggers")
REVERSE = functions_sql(
    _before.COUNTERS,
    _before.MESSAGE_COUNTERS,
    _before.EVENT_COUNTERS,
    _before.FIRST_KIND,
    _before.FIRST_COUNTERS,
)


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0003_sms_counters"),
        ("messaging", "0008_sms_identity_message_receipts"),
    ]

    operations = [migrations.RunSQL(FORWARD, reverse_sql=REVERSE)]
