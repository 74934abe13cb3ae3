"""Indexes that no query uses, dropped (each one cost every insert or status change).

- ``message_tenant_lead_idx`` (tenant, lead): a lead's messages are found through the
  ``lead_id`` index, which the foreign key needs anyway.
- The single-column ``tenant_id`` indexes of event keys, email verdicts and sender
  identities: their unique constraints lead with ``tenant_id``.
- ``messageevent_enrollment_idx``: nothing reads events by enrollment (the engine and the
  timeline go through messages). On 50M events it was an index as big as the primary key,
  maintained on every insert.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0011_message_erased_tenant_idx"),
        ("tenancy", "0001_initial"),
    ]

    operations = [
        migrations.RunSQL(
            "DROP INDEX IF EXISTS messageevent_enrollment_idx",
            reverse_sql="CREATE INDEX messageevent_enrollment_idx ON messaging_messageevent"
            " (enrollment_id, occurred_at) WHERE enrollment_id IS NOT NULL",
        ),
        migrations.RemoveIndex(
            model_name="message",
            name="message_tenant_lead_idx",
        ),
        migrations.AlterField(
            model_name="emailverdict",
            name="tenant",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="tenancy.tenant",
            ),
        ),
        migrations.AlterField(
            model_name="messageeventkey",
            name="tenant",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="tenancy.tenant",
            ),
        ),
        migrations.AlterField(
            model_name="senderidentity",
            name="tenant",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="tenancy.tenant",
            ),
        ),
    ]
