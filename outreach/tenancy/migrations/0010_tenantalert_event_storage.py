from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tenancy", "0009_tenant_plan"),
    ]

    operations = [
        migrations.AlterField(
            model_name="tenantalert",
            name="kind",
            field=models.CharField(
                choices=[
                    ("account_status", "SendGrid account status change"),
                    ("sending", "Sending problem"),
                    ("webhook", "Webhook problem"),
                    ("event_storage", "Events stored outside the monthly partitions"),
                ],
                max_length=32,
            ),
        ),
    ]
