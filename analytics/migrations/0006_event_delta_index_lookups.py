"""The event trigger finds each new event's message by its primary key, never by hashing.

``analytics_event_insert_delta`` joins the inserted events to ``messaging_message`` for
their campaign, step and sender. A webhook batch holds a few hundred to a few thousand
events; while the message table is small the planner prefers to hash all of it (measured:
12 ms per 1,000 events against a 20,000-message table, 3.7 ms by index lookups), and on a
large table a big statement (a bulk load) can tip it into hashing millions of rows. Index
lookups cost the same per event at any table size, so the function plans with hash and
merge joins turned off.
"""

from django.db import migrations

FUNCTION = "analytics_event_insert_delta()"


class Migration(migrations.Migration):
    dependencies = [("analytics", "0005_messagefirst_tenant_idx")]

    operations = [
        migrations.RunSQL(
            f"ALTER FUNCTION {FUNCTION} SET enable_hashjoin = off;"
            f" ALTER FUNCTION {FUNCTION} SET enable_mergejoin = off;",
            f"ALTER FUNCTION {FUNCTION} RESET enable_hashjoin;"
            f" ALTER FUNCTION {FUNCTION} RESET enable_mergejoin;",
        ),
    ]
