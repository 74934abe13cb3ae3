"""Reading inbound mail: the list an SDR works through (unmatched first) and one message."""

from django.db.models import QuerySet

from messaging.models import InboundMessage
from outreach.common.errors import NotFound


def inbound_message_list(
    *, tenant_id: int, matched: bool | None = None, classification: str | None = None
) -> QuerySet[InboundMessage]:
    """The tenant's inbound mail, newest first; ``matched=False`` is the unmatched inbox."""
    queryset = (
        InboundMessage.objects.for_tenant(tenant_id)
        .select_related("matched_message")
        .defer("raw_mime")
    )
    if matched is not None:
        queryset = queryset.filter(matched_message__isnull=not matched)
    if classification:
        queryset = queryset.filter(classification=classification)
    return queryset.order_by("-id")


def inbound_message_get(*, tenant_id: int, inbound_message_id: int) -> InboundMessage:
    """One inbound message of this tenant; another tenant's id is simply not found."""
    inbound = (
        InboundMessage.objects.for_tenant(tenant_id)
        .select_related("matched_message")
        .filter(pk=inbound_message_id)
        .first()
    )
    if inbound is None:
        raise NotFound("Inbound message not found.")
    return inbound
