"""A deleted tenant's analytics: rollups, journey counts, first-of-kind marks, queued deltas.

Called by ``tenancy.services.tenant_delete`` once the tenant's messages and enrollments are
gone (their delete triggers queued negative deltas, which go too). The rollup lock is held,
so a concurrent ``analytics_refresh`` cannot move a delta of this tenant into a rollup row
after the rollup rows were deleted.
"""

from django.db import connection, transaction
from psycopg import sql

from analytics.services.rollup import ROLLUP_LOCK


def analytics_tenant_delete(*, tenant_id: int) -> dict[str, int]:
    rows: dict[str, int] = {}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ROLLUP_LOCK])
        for name, table in (
            ("hourly_deltas", "analytics_hourlydelta"),
            ("journey_deltas", "analytics_journeydelta"),
            ("hourly_rollups", "analytics_hourlyrollup"),
            ("journey_counts", "analytics_journeycount"),
            ("message_firsts", "analytics_messagefirst"),
        ):
            cursor.execute(
                sql.SQL("DELETE FROM {} WHERE tenant_id = %s").format(sql.Identifier(table)),
                [tenant_id],
            )
            rows[name] = cursor.rowcount
    return rows
