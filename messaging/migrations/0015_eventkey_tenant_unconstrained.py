"""Dedup keys keep their tenant column without a foreign-key constraint.

Every stored event writes one key, and the constraint's deferred check (a lookup of the
tenant row at commit, per key) was about 8 ms of PostgreSQL CPU per 1,000-event batch:
measured in one database, 1,000 keys per transaction, 30 alternating rounds, median 24.1 ms
with the constraint and 15.9 ms without. The tenant comes from the stored receipt, which
keeps its constraint; tenant deletion deletes its keys itself (``messaging.services.tenant_data``).
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0014_message_public_id_time_ordered"),
        ("tenancy", "0010_tenantalert_event_storage"),
    ]

    operations = [
        migrations.AlterField(
            model_name="messageeventkey",
            name="tenant",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="tenancy.tenant",
            ),
        ),
    ]
