"""Tenant scoping shared by every tenant-owned model."""

from django.db import models


class TenantQuerySet(models.QuerySet):
    def for_tenant(self, tenant_id: int) -> "TenantQuerySet":
        return self.filter(tenant_id=tenant_id)


def tenant_key(*, db_index: bool = True, db_constraint: bool = True) -> models.ForeignKey:
    """The tenant column. Every tenant-scoped query and the foreign-key check of a tenant's
    deletion need an index that *leads* with ``tenant_id``; ``db_index=False`` where another
    index of the table already does (the model says which)."""
    return models.ForeignKey(
        "tenancy.Tenant",
        on_delete=models.CASCADE,
        related_name="+",
        db_index=db_index,
        db_constraint=db_constraint,
    )


class TenantOwned(models.Model):
    """Abstract base: the row belongs to exactly one tenant, and queries say which."""

    tenant = tenant_key()

    objects = TenantQuerySet.as_manager()

    class Meta:
        abstract = True
