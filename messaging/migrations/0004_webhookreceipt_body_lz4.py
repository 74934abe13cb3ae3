"""Compress webhook bodies with lz4 instead of pglz.

A 1,000-event Event Webhook batch is about 470 KB of JSON, stored before we answer SendGrid.
pglz spends about 7 ms of Postgres CPU compressing it, lz4 under 2 ms for the same ratio,
which is most of the database work of an accepted POST. Only new values are affected (no
table rewrite). A server built without lz4 keeps pglz.
"""

from django.db import migrations

FORWARD = """
DO $$
BEGIN
    ALTER TABLE messaging_webhookreceipt ALTER COLUMN body SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available on this server; webhook bodies stay pglz';
END
$$;
"""
REVERSE = "ALTER TABLE messaging_webhookreceipt ALTER COLUMN body SET COMPRESSION DEFAULT"


class Migration(migrations.Migration):
    dependencies = [("messaging", "0003_messageevent_blocked_email_idx")]

    operations = [migrations.RunSQL(FORWARD, reverse_sql=REVERSE)]
