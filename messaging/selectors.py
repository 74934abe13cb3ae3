"""Reading messaging data. Every function is scoped by ``tenant_id`` first."""

from django.db.models import QuerySet

from messaging.models import SenderIdentity
from outreach.common.errors import NotFound


def sender_identity_get(
    *, tenant_id: int, identity_id: int, for_update: bool = False
) -> SenderIdentity:
    """The tenant's identity, or ``NotFound`` (another tenant's id looks like a missing one)."""
    queryset = SenderIdentity.objects.for_tenant(tenant_id)
    if for_update:
        queryset = queryset.select_for_update()
    try:
        return queryset.get(pk=identity_id)
    except SenderIdentity.DoesNotExist:
        raise NotFound("Sender identity not found.") from None


def sender_identity_list(*, tenant_id: int) -> QuerySet[SenderIdentity]:
    return SenderIdentity.objects.for_tenant(tenant_id)
