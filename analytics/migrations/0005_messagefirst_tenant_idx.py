"""An index on ``analytics_messagefirst.tenant_id``, built without locking out the triggers.

The primary key leads with ``message_id``; deleting a tenant (its rows, and the foreign-key
check on the tenant row) would otherwise scan the whole table.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("analytics", "0004_sms_counter_triggers")]

    operations = [
        AddIndexConcurrently(
            model_name="messagefirst",
            index=models.Index(fields=["tenant"], name="analytics_first_tenant_idx"),
        ),
    ]
