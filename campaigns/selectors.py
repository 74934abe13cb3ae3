"""Reading campaign-side data. Every function is scoped by ``tenant_id`` first."""

import datetime

from django.db.models import QuerySet, Value
from django.db.models.functions import Lower

from campaigns.models import Lead
from campaigns.validation.email import InvalidEmail, email_normalize
from outreach.common.errors import NotFound


def lead_get(*, tenant_id: int, lead_id: int, for_update: bool = False) -> Lead:
    """The tenant's lead, or ``NotFound`` (another tenant's id looks exactly like a missing one)."""
    queryset = Lead.objects.for_tenant(tenant_id)
    if for_update:
        queryset = queryset.select_for_update()
    try:
        return queryset.get(pk=lead_id)
    except Lead.DoesNotExist:
        raise NotFound("Lead not found.") from None


def lead_list(
    *,
    tenant_id: int,
    email: str | None = None,
    company: str | None = None,
    validation_status: str | None = None,
    created_after: datetime.datetime | None = None,
    created_before: datetime.datetime | None = None,
    q: str | None = None,
) -> QuerySet[Lead]:
    """The tenant's leads, filtered. ``email`` matches the stored (normalised) form, so
    ``Jane@Example.com`` finds ``jane@example.com``; ``q`` finds leads whose first name, last
    name or company contain every word of it (any case), through the trigram index on
    ``search_text``."""
    queryset = Lead.objects.for_tenant(tenant_id)
    if email:
        try:
            email = email_normalize(email=email)
        except InvalidEmail:
            email = email.strip().lower()
        queryset = queryset.filter(email=email)
    if company:
        queryset = queryset.filter(company=company)
    if validation_status:
        queryset = queryset.filter(validation_status=validation_status)
    if created_after:
        queryset = queryset.filter(created_at__gte=created_after)
    if created_before:
        queryset = queryset.filter(created_at__lt=created_before)
    if q:
        for term in q.split():
            # Lowered by PostgreSQL, as search_text is: the same rules for both sides.
            queryset = queryset.filter(search_text__contains=Lower(Value(term)))
    return queryset
