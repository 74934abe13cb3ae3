"""Lead search text, and indexes that matched no query dropped.

- ``Lead.search_text``: lower-cased first name, last name and company, a stored generated
  column, so lead search (``q``) can use a trigram index (built concurrently by the next
  migration, which needs the ``pg_trgm`` and ``btree_gin`` extensions created here).
- The single-column ``tenant_id`` indexes of leads, campaigns and enrollments: each table has
  an index that leads with ``tenant_id`` (``lead_email_unique_per_tenant``,
  ``campaign_tenant_status_idx``, ``enrollment_campaign_idx``), which serves the same queries
  and the foreign-key check of a tenant's deletion.
- Duplicates: ``enrollment.lead_id`` had two identical indexes (``enrollment_lead_idx`` stays);
  ``enrollmenttransition.enrollment_id`` and ``campaignplanversion.campaign_id`` lead their
  unique constraints.
- ``scheduledaction.tenant_id`` is no longer a foreign-key constraint: with no index on it (a
  claim would pay for one on every update), deleting a tenant would scan the whole actions
  table to check it. Actions go with their enrollment, whose foreign key is enforced.
"""

import django.db.models.deletion
import django.db.models.functions.text
from django.contrib.postgres.operations import BtreeGinExtension, TrigramExtension
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0006_lead_sms_consent_db_default"),
        ("tenancy", "0001_initial"),
    ]

    operations = [
        TrigramExtension(),
        BtreeGinExtension(),
        migrations.AddField(
            model_name="lead",
            name="search_text",
            field=models.GeneratedField(
                db_persist=True,
                expression=django.db.models.functions.text.Lower(
                    django.db.models.functions.text.Concat(
                        "first_name",
                        models.Value(" "),
                        "last_name",
                        models.Value(" "),
                        "company",
                        output_field=models.TextField(),
                    )
                ),
                output_field=models.TextField(),
            ),
        ),
        migrations.AlterField(
            model_name="campaign",
            name="tenant",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="tenancy.tenant",
            ),
        ),
        migrations.AlterField(
            model_name="campaignplanversion",
            name="campaign",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="versions",
                to="campaigns.campaign",
            ),
        ),
        migrations.AlterField(
            model_name="enrollment",
            name="lead",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="enrollments",
                to="campaigns.lead",
            ),
        ),
        migrations.AlterField(
            model_name="enrollment",
            name="tenant",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="tenancy.tenant",
            ),
        ),
        migrations.AlterField(
            model_name="enrollmenttransition",
            name="enrollment",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="transitions",
                to="campaigns.enrollment",
            ),
        ),
        migrations.AlterField(
            model_name="lead",
            name="tenant",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="tenancy.tenant",
            ),
        ),
        migrations.AlterField(
            model_name="scheduledaction",
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
