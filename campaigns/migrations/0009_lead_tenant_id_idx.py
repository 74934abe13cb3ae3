"""The tenant's leads newest first, built without locking out writes.

The leads API pages by ``-id``. With only the primary key in that order, PostgreSQL walked
it backwards and filtered by tenant: cheap for the newest tenant, but for a search whose
matches are rare (or a tenant whose leads are old) it read back through every other
tenant's leads, a cost that grew with the table (measured by ``bench/scale_ratios.py``).
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("campaigns", "0008_lead_search_trgm_idx")]

    operations = [
        AddIndexConcurrently(
            model_name="lead",
            index=models.Index(fields=["tenant", "-id"], name="lead_tenant_id_idx"),
        ),
    ]
