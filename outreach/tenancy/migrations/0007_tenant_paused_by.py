from django.db import migrations, models

# A tenant paused before this column existed is attributed from its latest pause in the
# audit log: through the tenant's API key it is the tenant's own, anything else the
# operator's (the safe side: the tenant cannot lift it).
_ATTRIBUTE = """
    UPDATE tenancy_tenant AS t SET paused_by = CASE
        WHEN (SELECT a.actor FROM tenancy_auditentry AS a
              WHERE a.tenant_id = t.id AND a.action = 'tenant.pause'
              ORDER BY a.id DESC LIMIT 1) LIKE 'api-key:%' THEN 'tenant'
        ELSE 'operator' END
    WHERE t.status = 'paused'
"""


class Migration(migrations.Migration):
    dependencies = [
        ("tenancy", "0006_tenant_sms_help_db_default"),
    ]

    operations = [
        migrations.AddField(
            model_name="tenant",
            name="paused_by",
            field=models.CharField(
                blank=True,
                choices=[("operator", "Operator"), ("tenant", "Tenant")],
                default="",
                editable=False,
                max_length=16,
            ),
        ),
        migrations.RunSQL(_ATTRIBUTE, reverse_sql=migrations.RunSQL.noop),
        migrations.AddConstraint(
            model_name="tenant",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("paused_by", ""), ("status", "active")),
                    models.Q(("paused_by__in", ["operator", "tenant"]), ("status", "paused")),
                    _connector="OR",
                ),
                name="tenant_paused_by_matches_status",
            ),
        ),
    ]
