"""Erasing one person's personal data from the messaging side (a GDPR erasure request).

The ledger rows stay (counts, statuses and timings are not personal data, and analytics
and exactly-once bookkeeping rely on them); what identifies the person goes: the address,
subjects (merge fields may hold a name), event payloads (address, IP, user agent), the
replies they wrote and the raw webhook bodies that carried any of it. Runs in the caller's
transaction.

Webhook bodies are found by a scan of the tenant's receipts for the address (once per
erasure), not only through the events stored from them: a backlog not processed yet, a
receipt that failed, a duplicate delivery whose events were all known already and an inbound
reply not parsed yet carry it too. The person's own replies are blanked whole (and marked
``RECEIPT_ERASED``, so nothing processes them again); in every other body, which may hold
other people's data, only the address is replaced, matched as a whole address
(``address_pattern``): erasing ``ann@x.com`` leaves ``joann@x.com`` and ``ann@x.com.au``
alone.

Mail still on its way for an erased lead (events, replies) is stored without the address:
see ``EMAIL_ERASED_SUFFIX`` and ``messaging.services.events``.
"""

import re
from dataclasses import dataclass

from django.db import connection
from django.db.models import Q
from django.utils import timezone

from messaging.inbound.parse import InboundParseError, inbound_email_parse
from messaging.models import EmailVerdict, InboundMessage, Message, MessageEvent, WebhookReceipt

# The placeholder an erased lead's address becomes (``erased-<lead id>@erased.invalid``,
# a reserved domain that can never receive mail). A message whose ``to_email`` ends so is a
# message of an erased lead: the webhook paths read it on the rows they load anyway.
ERASED_DOMAIN = "erased.invalid"
EMAIL_ERASED_SUFFIX = "@" + ERASED_DOMAIN
# ``last_error`` of a receipt whose body was removed: never processed again.
RECEIPT_ERASED = "erased on request: body removed"

# Characters an address may contain (RFC 5322 atext, and the dot). An address found in a
# body counts only where the characters around it cannot belong to it.
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-"
# What may stand right before an address, in raw bodies: a character that is not part of
# one; a JSON escape of such a character (``\n``, ``\u003c`` for "<" as Go and others
# write it); a quoted-printable one (``=3C``). ``\/`` and ``\u0026`` decode to "/" and "&",
# which belong to addresses, so they are no boundary.
_BEFORE = (
    rf"(?:(?<![{_ATEXT}])"
    r"|(?<=(?<!\\)\\[nrtbf])"
    r"|(?<=\\u00(?:[01][0-9a-fA-F]|2[0289cC]|3[aAbBcCeE]|40|5[bBcCdD]|7[fF]))"
    r"|(?<==(?:0[9AD]|2[0289C]|3[ABCE]|40|5[BCD])))"
)
# What must not follow: more of a domain (a letter, digit or hyphen, or a dot and one),
# also escaped; or a soft line break, after which the address may go on.
_AFTER = (
    r"(?![A-Za-z0-9_\-]|\.[A-Za-z0-9\-]"
    r"|\\u00(?:2[dDeE]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA]|5[fF])"
    r"|=(?:2[DE]|3[0-9]|[46][1-9A-F]|[57][0-9A]|5F)|=\r?\n)"
)


def address_pattern(email: str) -> re.Pattern[str]:
    """``email`` as a whole address in text (case-insensitive), never part of another."""
    return re.compile(_BEFORE + re.escape(email) + _AFTER, re.IGNORECASE)


def address_pattern_bytes(email: str) -> re.Pattern[bytes]:
    """``address_pattern`` for raw bodies (the address as UTF-8)."""
    return re.compile((_BEFORE + re.escape(email) + _AFTER).encode(), re.IGNORECASE)


def address_scrub(*, text: str, email: str, placeholder: str) -> str:
    """``text`` with every whole occurrence of ``email`` replaced by ``placeholder``."""
    return address_pattern(email).sub(placeholder, text) if text else text


def email_is_erased(email: str) -> bool:
    """An erased lead's placeholder address (see ``ERASED_DOMAIN``)."""
    return email.lower().endswith(EMAIL_ERASED_SUFFIX)


@dataclass
class MessagingErased:
    messages: int = 0
    events: int = 0
    inbound_messages: int = 0
    receipts: int = 0
    verdicts: int = 0


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")


def _pg_escape_bytes(value: bytes) -> str:
    """``value`` as Postgres's ``encode(…, 'escape')`` writes it (zero and high bytes in
    octal, backslashes doubled), so a substring search can run on the escaped body."""
    out = []
    for byte in value:
        if byte == 0 or byte >= 0x80:
            out.append(f"\\{byte:03o}")
        elif byte == 0x5C:
            out.append("\\\\")
        else:
            out.append(chr(byte))
    return "".join(out)


def receipts_with_address(*, tenant_id: int, email: str) -> list[int]:
    """The tenant's webhook receipts whose body holds ``email`` (any case): one scan of
    the tenant's receipts, for an erasure. The pattern decides afterwards what is a whole
    address."""
    needle = _pg_escape_bytes(email.lower().encode())
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM messaging_webhookreceipt WHERE tenant_id = %s"
            " AND strpos(lower(encode(body, 'escape')), %s) > 0 ORDER BY id",
            [tenant_id, needle],
        )
        return [row[0] for row in cursor.fetchall()]


def _sender_of(receipt: WebhookReceipt) -> str:
    try:
        parsed = inbound_email_parse(body=bytes(receipt.body), content_type=receipt.content_type)
    except InboundParseError:
        return ""
    return parsed.from_email.strip().lower()


def lead_messaging_erase(
    *, tenant_id: int, lead_id: int, email: str, placeholder: str
) -> MessagingErased:
    """Replace ``email`` by ``placeholder`` and blank the personal fields of the lead's
    messages, their events, the replies from the address and the webhook bodies carrying
    any of it (see the module)."""
    erased = MessagingErased()
    email = email.strip().lower()
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

    # The person's own replies: all of them is theirs.
    inbound = InboundMessage.objects.for_tenant(tenant_id).filter(
        Q(matched_message_id__in=message_ids) | Q(from_email__iexact=email)
    )
    own_receipts = set(inbound.exclude(receipt_id=None).values_list("receipt_id", flat=True))
    own_inbound = set(inbound.values_list("id", flat=True))
    erased.inbound_messages = inbound.update(
        raw_mime="", from_email=placeholder, subject="", references=""
    )
    # Other people's mail that mentions the address keeps everything else.
    mentions = (
        InboundMessage.objects.for_tenant(tenant_id)
        .exclude(id__in=own_inbound)
        .filter(
            Q(raw_mime__icontains=email)
            | Q(subject__icontains=email)
            | Q(references__icontains=email)
            | Q(to_email__iexact=email)
        )
    )
    for other in mentions:
        fields = {
            name: address_scrub(text=getattr(other, name), email=email, placeholder=placeholder)
            for name in ("raw_mime", "subject", "references", "to_email")
        }
        changed = {name: value for name, value in fields.items() if value != getattr(other, name)}
        if changed:
            InboundMessage.objects.filter(pk=other.pk, tenant_id=tenant_id).update(**changed)
            erased.inbound_messages += 1

    erased.receipts = _receipts_erase(
        tenant_id=tenant_id,
        email=email,
        placeholder=placeholder,
        candidates=receipt_ids | own_receipts,
        own=own_receipts,
    )
    erased.verdicts, _ = EmailVerdict.objects.for_tenant(tenant_id).filter(email=email).delete()
    return erased


def _receipts_erase(
    *, tenant_id: int, email: str, placeholder: str, candidates: set[int], own: set[int]
) -> int:
    """Blank the person's own replies; replace the address in every other body holding it."""
    pattern = address_pattern_bytes(email)
    replacement = placeholder.encode()
    ids = sorted(candidates | set(receipts_with_address(tenant_id=tenant_id, email=email)))
    linked = dict(
        InboundMessage.objects.for_tenant(tenant_id)
        .filter(receipt_id__in=ids)
        .values_list("receipt_id", "id")
    )
    changed = 0
    for start in range(0, len(ids), 200):
        for receipt in WebhookReceipt.objects.for_tenant(tenant_id).filter(
            id__in=ids[start : start + 200]
        ):
            body = bytes(receipt.body)
            own_reply = receipt.pk in own or (
                receipt.kind == WebhookReceipt.Kind.INBOUND
                and receipt.pk not in linked
                and _sender_of(receipt) == email
            )
            if own_reply:
                WebhookReceipt.objects.filter(pk=receipt.pk, tenant_id=tenant_id).update(
                    body=b"",
                    headers={},
                    last_error=RECEIPT_ERASED,
                    processed_at=receipt.processed_at or timezone.now(),
                )
                changed += 1
                continue
            cleaned = pattern.sub(replacement, body)
            if cleaned != body:
                WebhookReceipt.objects.filter(pk=receipt.pk, tenant_id=tenant_id).update(
                    body=cleaned
                )
                changed += 1
    return changed
