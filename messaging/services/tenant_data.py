"""A tenant's messaging rows, deleted for ``tenancy.services.tenant_delete``.

Events first (nothing points at them), found partition by partition through the
tenant-leading index and deleted by ``ctid`` in bounded batches; then what points at
messages, the messages, and (last, after campaigns let go of them) the sender identities.
"""

from django.db import connection, transaction
from psycopg import sql

from messaging.services.partitions import DEFAULT_PARTITION, event_partitions_list
from outreach.common.bulk import rows_delete_batched


def _events_delete(tenant_id: int, batch: int) -> int:
    deleted = 0
    tables = [p.name for p in event_partitions_list()] + [DEFAULT_PARTITION]
    for table in tables:
        statement = sql.SQL(
            "DELETE FROM {t} WHERE tenant_id = %(tenant)s AND ctid = ANY(ARRAY("
            "SELECT ctid FROM {t} WHERE tenant_id = %(tenant)s LIMIT %(batch)s))"
        ).format(t=sql.Identifier(table))
        while True:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(statement, {"tenant": tenant_id, "batch": batch})
                count = cursor.rowcount
            deleted += count
            if count < batch:
                break
    return deleted


def messaging_tenant_history_delete(*, tenant_id: int, batch: int = 10_000) -> dict[str, int]:
    """Events, dedup keys, inbound messages, webhook receipts, messages, email verdicts."""
    params = {"tenant": tenant_id}
    rows = {"events": _events_delete(tenant_id, batch)}
    for name, table in (
        ("event_keys", "messaging_messageeventkey"),
        ("inbound_messages", "messaging_inboundmessage"),
        ("webhook_receipts", "messaging_webhookreceipt"),
        ("messages", "messaging_message"),
        ("email_verdicts", "messaging_emailverdict"),
    ):
        rows[name] = rows_delete_batched(
            table=table, where="tenant_id = %(tenant)s", params=params, batch=batch
        )
    return rows


def messaging_tenant_identities_delete(*, tenant_id: int) -> dict[str, int]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM messaging_senderidentity WHERE tenant_id = %s", [tenant_id])
        return {"sender_identities": cursor.rowcount}
