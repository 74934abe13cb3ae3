"""First-of-kind marks keep their tenant column without a foreign-key constraint.

The event trigger writes a mark for a message's first human open, click and reply; like
``message_id`` beside it, the tenant is copied from the event's own row, and a deferred
per-row check of it at commit only repeated that. Tenant deletion deletes the marks itself
(``analytics.services.tenant_data``).
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0006_event_delta_index_lookups"),
        ("tenancy", "0010_tenantalert_event_storage"),
    ]

    operations = [
        migrations.AlterField(
            model_name="messagefirst",
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
