"""The lead search index, built without locking out writes (its own non-atomic migration).

One GIN index over ``tenant_id`` (``btree_gin``) and the trigrams of ``search_text``
(``pg_trgm``): a search for "son" intersects the tenant's posting list with the word's
trigrams, so it reads the tenant's matching leads only, however many other tenants have.
"""

import django.contrib.postgres.indexes
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("campaigns", "0007_lead_search_fewer_indexes")]

    operations = [
        AddIndexConcurrently(
            model_name="lead",
            index=django.contrib.postgres.indexes.GinIndex(
                fields=["tenant", "search_text"],
                name="lead_search_trgm_idx",
                opclasses=["int8_ops", "gin_trgm_ops"],
            ),
        ),
    ]
