"""New messages get time-ordered public ids (UUID v7; no database change: the default is
Python's). See ``messaging.models.message_public_id``."""

from django.db import migrations, models

import messaging.models


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0013_event_partitions_from_default"),
    ]

    operations = [
        migrations.AlterField(
            model_name="message",
            name="public_id",
            field=models.UUIDField(
                default=messaging.models.message_public_id, editable=False, unique=True
            ),
        ),
    ]
