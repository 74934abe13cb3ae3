"""Deleting many rows without one huge transaction."""

from django.db import connection, transaction
from psycopg import sql


def rows_delete_batched(*, table: str, where: str, params: dict, batch: int = 10_000) -> int:
    """``DELETE FROM table WHERE where``, ``batch`` rows per transaction, until none are left.

    ``where`` is trusted SQL (a constant of the caller) with ``%(name)s`` placeholders; it must
    be served by an index, since every batch looks the rows up again. It is repeated on the
    outer statement so that, when ``where`` names the tenant, the whole statement stays on one
    tenant (one shard, on Citus). Returns the rows deleted. An interrupted run leaves whole
    batches done; running it again finishes."""
    # The ids come back as an array looked up by primary key: joined to a subquery instead,
    # the planner may scan the whole table for the outer condition.
    statement = sql.SQL(
        "DELETE FROM {table} WHERE {where}"
        " AND id = ANY(ARRAY(SELECT id FROM {table} WHERE {where} LIMIT %(batch)s))"
    ).format(table=sql.Identifier(table), where=sql.SQL(where))
    deleted = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, {**params, "batch": batch})
            count = cursor.rowcount
        deleted += count
        if count < batch:
            return deleted
