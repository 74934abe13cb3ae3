"""The message update trigger counts only the rows whose counters or keys changed.

``analytics_message_update_delta`` added every updated row's counters and subtracted its
old ones, then dropped the groups that summed to zero. Nearly every update an event makes
(accepted -> delivered -> opened -> clicked) leaves ``sent`` at 1 on both sides, so a
1,000-event batch summed some 1,800 rows to add nothing. Now the new and old rows are paired
by id first, and only a row whose counter values or rollup keys differ between the two
enters the sums: the result is the same (an unchanged row contributes +x and -x to one
group), the work is a join of the two transition tables.

Measured on the webhook benchmark's database: see the commit that adds this migration.
The counters and keys are 0004's frozen rules; migrating back restores 0004's function.
"""

import importlib

from django.db import migrations

_rules = importlib.import_module("analytics.migrations.0004_sms_counter_triggers")

# The row values the trigger reads: the rollup keys and each message counter.
_KEY_COLUMNS = (
    "tenant_id",
    "campaign_id",
    "plan_version_id",
    "step",
    "variant",
    "sender_identity_id",
    "created_at",
)


def _row_of(alias: str) -> str:
    counters = [expr.replace("x.", f"{alias}.") for expr in _rules.MESSAGE_COUNTERS.values()]
    return "ROW(" + ", ".join([f"{alias}.{c}" for c in _KEY_COLUMNS] + counters) + ")"


def _side(table: str, sign: str) -> str:
    columns = ", ".join(
        f"{sign}{_rules.MESSAGE_COUNTERS.get(name, '0')} AS {name}" for name in _rules.COUNTERS
    )
    classed = " OR ".join(f"{expr} <> 0" for expr in _rules.MESSAGE_COUNTERS.values())
    return f"""
        SELECT x.tenant_id, coalesce(x.campaign_id, 0) AS campaign_id,
               coalesce(x.plan_version_id, 0) AS plan_version_id, x.step, x.variant,
               x.sender_identity_id, date_trunc('hour', x.created_at, 'UTC') AS hour,
               {columns}
        FROM {table} x JOIN changed c ON c.id = x.id
        WHERE {classed}"""


_sums = ", ".join(f"sum({name})" for name in _rules.COUNTERS)
_any_nonzero = " OR ".join(f"sum({name}) <> 0" for name in _rules.COUNTERS)

FORWARD = f"""
CREATE OR REPLACE FUNCTION analytics_message_update_delta() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH changed AS MATERIALIZED (
        SELECT n.id
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE {_row_of("n")} IS DISTINCT FROM {_row_of("o")}
    )
    INSERT INTO analytics_hourlydelta ({_rules.KEYS}, {", ".join(_rules.COUNTERS)})
    SELECT {_rules.KEYS}, {_sums}
    FROM ({_side("new_rows", "")} UNION ALL {_side("old_rows", "-")}) d
    GROUP BY {_rules.KEYS}
    HAVING {_any_nonzero};
    RETURN NULL;
END;
$$;
"""


# Back: 0004's update function alone (its other functions are as later migrations left them).
(REVERSE,) = (
    "CREATE OR REPLACE FUNCTION" + part
    for part in _rules.FORWARD.split("CREATE OR REPLACE FUNCTION")
    if part.lstrip().startswith("analytics_message_update_delta()")
)


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0008_event_delta_counted_types_only"),
    ]

    operations = [migrations.RunSQL(FORWARD, reverse_sql=REVERSE)]
