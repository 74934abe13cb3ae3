"""Tenant scoping shared by every tenant-owned model."""

from django.db import models


class TenantQuerySet(models.QuerySet):
    def for_tenant(self, tenant_id: int) -> "TenantQuerySet":
        return self.filter(tenant_id=tenant_id)


class TenantOwned(models.Model):
    """Abstract base: the row belongs to exactly one tenant, and queries say which."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="+")

    objects = TenantQuerySet.as_manager()

    class Meta:
        abstract = True
