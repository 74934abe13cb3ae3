"""Erasing one person's personal data from the messaging side (a GDPR erasure request).

The ledger rows stay (counts, statuses and timings are not personal data, and analytics
and exactly-once bookkeeping rely on them); what identifies the person goes: the address,
subjects (merge fields may hold a name), event payloads (address, IP, user agent), the
replies they wrote and the raw webhook bodies that carried any of it. Runs in the caller's
transaction.
"""

import re
from dataclasses import dataclass

from django.db import connection
from django.db.models import Q

from messaging.models import EmailVerdict, InboundMessage, Message, MessageEvent, WebhookReceipt


@dataclass
class MessagingErased:
    messages: int = 0
    events: int = 0
    inbound_messages: int = 0
    receipts: int = 0
    verdicts: int = 0


def lead_messaging_erase(
    *, tenant_id: int, lead_id: int, email: str, placeholder: str
) -> MessagingErased:
    """Replace ``email`` by ``placeholder`` and blank the personal fields of the lead's
    messages, their events, the replies from the address and the receipts carrying them."""
    erased = MessagingErased()
    message_ids = list(
        Message.objects.for_tenant(tenant_id).filter(lead_id=lead_id).values_list("id", flat=True)
    )
    erased.messages = (
        Message.objects.for_tenant(tenant_id)
        .filter(id__in=message_ids)
        .update(to_email=placeholder, subject="", error_message="")
    )
    event_filter = Q(tenant_id=tenant_id) & (
        Q(message_id__in=message_ids) | Q(message_id__isnull=True, email__iexact=email)
    )
    receipt_ids = set(
        MessageEvent.objects.filter(event_filter)
        .exclude(receipt_id__isnull=True)
        .values_list("receipt_id", flat=True)
    )
    erased.events = MessageEvent.objects.filter(event_filter).update(email="", raw={"erased": True})
    inbound = InboundMessage.objects.for_tenant(tenant_id).filter(
        Q(matched_message_id__in=message_ids) | Q(from_email__iexact=email)
    )
    inbound_receipts = set(inbound.exclude(receipt_id=None).values_list("receipt_id", flat=True))
    erased.inbound_messages = inbound.update(
        raw_mime="", from_email=placeholder, subject="", references=""
    )
    # A reply's raw MIME is all personal; an Event Webhook body holds other people's events
    # too, so only this address is replaced in it.
    erased.receipts = (
        WebhookReceipt.objects.for_tenant(tenant_id)
        .filter(id__in=inbound_receipts)
        .update(body=b"", headers={})
    )
    pattern = re.compile(re.escape(email).encode(), re.IGNORECASE)
    for receipt in WebhookReceipt.objects.for_tenant(tenant_id).filter(
        id__in=receipt_ids - inbound_receipts
    ):
        body = bytes(receipt.body)
        cleaned = pattern.sub(placeholder.encode(), body)
        if cleaned != body:
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE messaging_webhookreceipt SET body = %s WHERE id = %s AND tenant_id = %s",
                    [cleaned, receipt.pk, tenant_id],
                )
            erased.receipts += 1
    erased.verdicts, _ = EmailVerdict.objects.for_tenant(tenant_id).filter(email=email).delete()
    return erased
