"""Index the blocked (soft) bounces by address, for the repeated-soft-bounce suppression rule.

Normalisation counts an address's blocked bounces over the last days each time a batch holds
one; without this index that count scans the tenant's whole recent event history. Blocked
bounces are a small share of events, so the partial index stays small and costs nothing on
other inserts. Created on the partitioned parent, it cascades to every partition (existing
and future); ``CONCURRENTLY`` is not available on a partitioned parent.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("messaging", "0002_messageevent_partitioned")]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX messageevent_blocked_email_idx ON messaging_messageevent"
            " (tenant_id, email, occurred_at) WHERE event_type = 'blocked'",
            reverse_sql="DROP INDEX IF EXISTS messageevent_blocked_email_idx",
        )
    ]
