"""A partial index of the messages of erased leads, by tenant.

Re-delivered webhook events are checked for erased leads' addresses (their receipt bodies
must be cleaned); the index lets that check first ask whether the tenant has erased anyone
at all, which is almost never, for the cost of one index probe. Built concurrently: the
message table is large and hot.
"""

from django.db import migrations


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("messaging", "0010_operator_permissions")]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS message_erased_tenant_idx"
            " ON messaging_message (tenant_id) WHERE to_email LIKE '%@erased.invalid'",
            reverse_sql="DROP INDEX CONCURRENTLY IF EXISTS message_erased_tenant_idx",
        ),
    ]
