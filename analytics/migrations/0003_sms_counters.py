"""Counters of their own for text messages, so email figures never include SMS.

The materialized views sum every counter: after ``migrate`` they are rebuilt with the new
columns (``analytics.apps.views_sync``). Migrating back drops them first (they depend on the
columns); the ``migrate`` of the code without these counters rebuilds them (run with this
code, the rebuild after migrating back fails: its models still name the columns).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0002_delta_triggers"),
    ]

    operations = [
        migrations.AddField(
            model_name="hourlydelta",
            name="sms_delivered",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="hourlydelta",
            name="sms_failed",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="hourlydelta",
            name="sms_needs_review",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="hourlydelta",
            name="sms_opt_outs",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="hourlydelta",
            name="sms_replies",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="hourlydelta",
            name="sms_sent",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="hourlydelta",
            name="sms_undelivered",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="hourlyrollup",
            name="sms_delivered",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="hourlyrollup",
            name="sms_failed",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="hourlyrollup",
            name="sms_needs_review",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="hourlyrollup",
            name="sms_opt_outs",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="hourlyrollup",
            name="sms_replies",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="hourlyrollup",
            name="sms_sent",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="hourlyrollup",
            name="sms_undelivered",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.RunSQL(
            migrations.RunSQL.noop,
            reverse_sql=(
                "DROP MATERIALIZED VIEW IF EXISTS analytics_campaign_daily;"
                "DROP MATERIALIZED VIEW IF EXISTS analytics_tenant_daily;"
                "DROP MATERIALIZED VIEW IF EXISTS analytics_sender_daily;"
            ),
        ),
    ]
