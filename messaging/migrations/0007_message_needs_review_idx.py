"""A partial index on the messages an operator must resolve (``needs_review``): the tenant
health page, /metrics and ``messages_reconcile`` find them without scanning the ledger.
Built concurrently, so a large ledger keeps taking writes while it is built."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("messaging", "0006_message_plan_version")]

    operations = [
        AddIndexConcurrently(
            model_name="message",
            index=models.Index(
                condition=models.Q(("status", "needs_review")),
                fields=["tenant", "updated_at"],
                name="message_needs_review_idx",
            ),
        ),
    ]
