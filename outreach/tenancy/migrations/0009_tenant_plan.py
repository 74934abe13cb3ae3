from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tenancy", "0008_control_permissions"),
    ]

    operations = [
        migrations.AddField(
            model_name="tenant",
            name="plan",
            field=models.CharField(
                choices=[
                    ("trial", "Trial"),
                    ("standard", "Standard"),
                    ("enterprise", "Enterprise"),
                ],
                default="standard",
                max_length=16,
            ),
        ),
    ]
