"""Twilio's callbacks: status reports and inbound texts, stored raw, then normalised.

Like the SendGrid webhooks (``messaging.services.receipts``): the endpoint verifies the
signature and stores the form body in one INSERT (``sms_receipt_store``) before answering;
``messaging.sms_receipt_process`` (hinted on commit) normalises it, and
``sms_receipts_sweep`` finishes whatever a lost hint or a dead worker left. Processing one
receipt is one transaction: its event (deduplicated on Twilio's ids), the message's status
(forward only), the campaign engine's reaction and the receipt's ``processed_at``.

One thing is not left for later: an opt-out. A STOP (or STOPALL, UNSUBSCRIBE, CANCEL, END,
QUIT) suppresses the number for the tenant and revokes the consent of its leads in the same
transaction that stores the receipt, after waiting for texts to that number already under way
(``phone_suppression_add``), so no text leaves once the STOP is stored. START (or YES,
UNSTOP) lifts it the same way and gives back the consent a STOP revoked, and no other: a
START is not consent from a lead who never gave it. It lifts only what an opt-out (a STOP,
Twilio's 21610) put there: a number an operator blocked stays blocked, the START changes
nothing and gets no answer. The endpoint answers with the confirmation (or the tenant's HELP
text) as TwiML.

Event types (``MessageEvent.event_type``), kept apart from the email ones so SMS never
counts in the email figures: ``sms_queued``, ``sms_sent``, ``sms_delivered``,
``sms_undelivered``, ``sms_failed`` from status callbacks; ``sms_reply``, ``sms_stop``,
``sms_start``, ``sms_help`` from inbound texts, attached to the latest text we sent that
number from that sender (our number, or the Messaging Service whose number it was texted
to), else the latest text to that number; an unmatched text is kept with no message.
"""

from __future__ import annotations

import datetime
import json
import logging
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qs, parse_qsl, urlsplit

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from campaigns.models import Lead
from messaging.models import Message, WebhookReceipt
from messaging.services.engagement import StoredEvent
from messaging.services.events import MESSAGE_STATUS_RANK
from outreach.tenancy.flags import tenant_flags_of
from outreach.tenancy.models import Tenant
from suppression.models import PhoneSuppression
from suppression.services import phone_suppression_add, phone_suppression_lift

logger = logging.getLogger(__name__)

TASK_NAME = "messaging.sms_receipt_process"
STOP_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})
# Twilio's own wording for its default opt-out answers.
STOP_CONFIRMATION = (
    "You have successfully been unsubscribed. You will not receive any more messages from "
    "this number. Reply START to resubscribe."
)
START_CONFIRMATION = (
    "You have successfully been re-subscribed to messages from this number. Reply HELP for "
    "help. Reply STOP to unsubscribe."
)
RECEIPT_KINDS = (WebhookReceipt.Kind.SMS_STATUS, WebhookReceipt.Kind.SMS_INBOUND)

_STATUS_OF: dict[str, str] = {
    "accepted": Message.Status.ACCEPTED,
    "queued": Message.Status.ACCEPTED,
    "scheduled": Message.Status.ACCEPTED,
    "sending": Message.Status.PROCESSED,
    "sent": Message.Status.PROCESSED,
    "delivered": Message.Status.DELIVERED,
    "read": Message.Status.DELIVERED,
    "undelivered": Message.Status.UNDELIVERED,
    "failed": Message.Status.UNDELIVERED,
}
_STATUS_OF_INBOUND = {"sms_reply": Message.Status.REPLIED, "sms_stop": Message.Status.UNSUBSCRIBED}


def sms_keyword(body: str) -> str | None:
    """``stop``, ``start`` or ``help`` when the whole text is one of their keywords (as
    carriers read them: trimmed, any case), else None (a reply)."""
    word = _word(body)
    if word in STOP_KEYWORDS:
        return "stop"
    if word in START_KEYWORDS:
        return "start"
    if word in HELP_KEYWORDS:
        return "help"
    return None


def _word(body: str) -> str:
    return " ".join(body.split()).upper().rstrip(".!")


# The consent source a STOP leaves on the leads whose consent it revoked (and only those: a
# START gives consent back to them alone). Those written before a STOP revoked granted
# consent only were moved out of this set (``legacy:sms:STOP``, campaigns migration 0010).
STOP_SOURCES = frozenset(f"sms:{word}" for word in STOP_KEYWORDS)


def sms_help_text(*, tenant: Tenant) -> str:
    return tenant.sms_help_text.strip() or (
        f"{tenant.name}: sales messages. Reply STOP to unsubscribe. Msg&data rates may apply."
    )


# --------------------------------------------------------------------------- receiving


@dataclass(frozen=True)
class SmsReceived:
    receipt_id: int
    answer: str  # the text to send back (TwiML <Message>), or ""


def sms_receipt_store(
    *,
    tenant_id: int,
    kind: str,
    body: bytes,
    url: str,
    headers: dict[str, str],
    content_type: str = "",
) -> SmsReceived:
    """Store one verified Twilio callback exactly as received (its URL too: status
    callbacks carry our message id there) and hint its processing after commit. An inbound
    opt-out keyword takes effect here, in the same transaction; returns the answer text."""
    if kind not in RECEIPT_KINDS:
        raise ValueError(f"not an SMS receipt kind: {kind!r}")
    answer = ""
    with transaction.atomic(durable=True):
        receipt = WebhookReceipt.objects.create(
            tenant_id=tenant_id,
            kind=kind,
            body=body,
            headers={**headers, "url": url},
            content_type=content_type[:200],
        )
        if kind == WebhookReceipt.Kind.SMS_INBOUND:
            answer = _opt_out_apply(tenant_id=tenant_id, receipt_id=receipt.pk, body=body)
        transaction.on_commit(lambda: _process_hint(receipt.pk))
    return SmsReceived(receipt.pk, answer)


def _opt_out_apply(*, tenant_id: int, receipt_id: int, body: bytes) -> str:
    params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    phone = params.get("From", "").strip()
    keyword = sms_keyword(params.get("Body", ""))
    if keyword is None or not phone:
        return ""
    now = timezone.now()
    leads = Lead.objects.for_tenant(tenant_id).filter(phone=phone)
    if keyword == "stop":
        phone_suppression_add(
            tenant_id=tenant_id,
            phone=phone,
            reason=PhoneSuppression.Reason.STOP,
            note=f"texted {params.get('Body', '').strip()[:20]!r} (receipt {receipt_id})",
        )
        # Only a granted consent is revoked: a lead who never consented stays `unknown`, and
        # one revoked otherwise keeps its source, so that a START cannot turn either into a
        # consent (the suppression alone already keeps the number from being texted).
        leads.filter(sms_consent=Lead.SmsConsent.GRANTED).update(
            sms_consent=Lead.SmsConsent.REVOKED,
            sms_consent_source=f"sms:{_word(params.get('Body', ''))}",
            sms_consent_at=now,
            updated_at=now,
        )
        logger.info("sms.opted_out", extra={"tenant_id": tenant_id, "receipt_id": receipt_id})
        return STOP_CONFIRMATION
    if keyword == "start":
        # A START re-subscribes: it lifts the suppression and gives back the consent a STOP
        # took. It is no consent of its own: a lead whose consent was unknown (or revoked by
        # other means) is not texted because it texted START.
        if not phone_suppression_lift(tenant_id=tenant_id, phone=phone):
            # An operator blocked the number: the START changes nothing (not even the consent
            # its STOP took, which removing the block later must not bring back), and no
            # answer claims a re-subscription that did not happen.
            logger.info(
                "sms.opt_in_blocked", extra={"tenant_id": tenant_id, "receipt_id": receipt_id}
            )
            return ""
        leads.filter(
            sms_consent=Lead.SmsConsent.REVOKED, sms_consent_source__in=sorted(STOP_SOURCES)
        ).update(
            sms_consent=Lead.SmsConsent.GRANTED,
            sms_consent_source="sms:START",
            sms_consent_at=now,
            updated_at=now,
        )
        logger.info("sms.opted_in", extra={"tenant_id": tenant_id, "receipt_id": receipt_id})
        return START_CONFIRMATION
    tenant = Tenant.objects.only("name", "sms_help_text").get(pk=tenant_id)
    return sms_help_text(tenant=tenant)


def _process_hint(receipt_id: int) -> None:
    from outreach.celery import app

    try:
        app.send_task(TASK_NAME, args=[receipt_id], retry=False)
    except Exception:  # the broker being down must not fail an accepted callback
        logger.warning("sms.receipt.hint_failed", extra={"receipt_id": receipt_id})


# --------------------------------------------------------------------------- processing


def _attempt_claim(receipt_id: int) -> bool:
    """Count the attempt outside the processing transaction (a receipt that kills workers
    is not retried forever)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE messaging_webhookreceipt SET attempts = attempts + 1
            WHERE id = (SELECT id FROM messaging_webhookreceipt
                        WHERE id = %s AND kind = ANY(%s) AND processed_at IS NULL
                        FOR UPDATE SKIP LOCKED)
            """,
            [receipt_id, list(RECEIPT_KINDS)],
        )
        return cursor.rowcount == 1


@dataclass(frozen=True)
class _Event:
    event_type: str
    key: str
    phone: str
    message: Message | None
    raw: dict


def sms_receipt_process(*, receipt_id: int) -> int | None:
    """Normalise one stored Twilio callback exactly once; returns the id of the event it
    stored (or 0 for a repeat of one already stored), None when there was nothing to do
    (already processed, or another worker holds it). Safe to call any number of times."""
    if not _attempt_claim(receipt_id):
        return None
    try:
        with transaction.atomic(durable=True):
            receipt = (
                WebhookReceipt.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("tenant")
                .filter(pk=receipt_id, kind__in=RECEIPT_KINDS, processed_at=None)
                .first()
            )
            if receipt is None:
                return None
            event = _event_of(receipt)
            event_id = _event_store(receipt, event) if event is not None else None
            WebhookReceipt.objects.filter(pk=receipt.pk).update(
                processed_at=timezone.now(),
                event_count=int(bool(event_id)),
                last_error="" if event is not None else "not a Twilio message callback",
            )
    except Exception as exc:
        WebhookReceipt.objects.filter(pk=receipt_id).update(
            last_error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        raise
    return event_id or 0


def _event_of(receipt: WebhookReceipt) -> _Event | None:
    params = dict(parse_qsl(bytes(receipt.body).decode("utf-8", "replace"), True))
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    if not sid:
        return None
    tenant_id = receipt.tenant_id
    if receipt.kind == WebhookReceipt.Kind.SMS_STATUS:
        status = (params.get("MessageStatus") or params.get("SmsStatus") or "").lower()
        if status not in _STATUS_OF:
            return None
        query = parse_qs(urlsplit(str(receipt.headers.get("url", ""))).query)
        message = _message_by_public_id(tenant_id, (query.get("message") or [""])[0])
        if message is None:
            message = (
                Message.objects.for_tenant(tenant_id)
                .filter(provider_message_id=sid, channel=Message.Channel.SMS)
                .first()
            )
        return _Event(
            f"sms_{status}", f"twilio:{sid}:{status}", params.get("To", ""), message, params
        )
    person, ours = params.get("From", ""), params.get("To", "")
    service = params.get("MessagingServiceSid", "")
    keyword = sms_keyword(params.get("Body", ""))
    message = (
        Message.objects.for_tenant(tenant_id)
        .filter(channel=Message.Channel.SMS, to_phone=person, sent_at__isnull=False)
        .select_related("sender_identity")
        .order_by("-sent_at", "-id")
    )

    def sent_from_there(candidate: Message) -> bool:
        # The text was to our number, or to a number of the Messaging Service we sent through.
        identity = candidate.sender_identity
        return ours in ("", identity.sms_from_number) or (
            bool(service) and service == identity.sms_messaging_service_sid
        )

    matched = next((m for m in message[:20] if sent_from_there(m)), None) or message.first()
    return _Event(f"sms_{keyword or 'reply'}", f"twilio:{sid}", person, matched, params)


def _message_by_public_id(tenant_id: int, value: str) -> Message | None:
    try:
        public_id = uuid.UUID(value)
    except ValueError:
        return None
    return Message.objects.for_tenant(tenant_id).filter(public_id=public_id).first()


def _event_store(receipt: WebhookReceipt, event: _Event) -> int | None:
    tenant_id = receipt.tenant_id
    message = event.message
    occurred_at = receipt.received_at
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO messaging_messageeventkey (tenant_id, provider_event_id, first_seen_at)
            VALUES (%s, %s, now()) ON CONFLICT (tenant_id, provider_event_id) DO NOTHING
            """,
            [tenant_id, event.key],
        )
        if cursor.rowcount != 1:
            return None  # Twilio posted this one before (a retry): stored once
        cursor.execute(
            """
            INSERT INTO messaging_messageevent
                (tenant_id, message_id, enrollment_id, event_type, occurred_at, received_at,
                 provider_event_id, provider_message_id, email, receipt_id, raw)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, '', %s, %s::jsonb)
            RETURNING id
            """,
            [
                tenant_id,
                message.pk if message else None,
                message.enrollment_id if message else None,
                event.event_type,
                occurred_at,
                receipt.received_at,
                event.key,
                event.raw.get("MessageSid", "")[:200],
                receipt.pk,
                json.dumps(event.raw),
            ],
        )
        event_id = int(cursor.fetchone()[0])
    if message is None:
        return event_id
    _message_advance(message, event, occurred_at)
    flags = tenant_flags_of(tenant=receipt.tenant)
    if (
        message.enrollment_id is not None
        and flags.event_branching
        and not flags.webhook_shadow_mode
    ):
        # Imported here: the campaign engine imports messaging, not the other way round.
        from campaigns.services import transitions

        transitions.enrollment_events_apply(
            tenant_id=tenant_id,
            events=[
                StoredEvent(
                    event_id=event_id,
                    event_type=event.event_type,
                    occurred_at=occurred_at,
                    machine_open=False,
                    bot_click=False,
                    message_id=message.pk,
                    message_step_seq=message.step_seq,
                    enrollment_id=message.enrollment_id,
                )
            ],
        )
    return event_id


def _message_advance(message: Message, event: _Event, occurred_at: datetime.datetime) -> None:
    """Move the message forward only; a status callback for a text still ``sending`` (a
    crash after Twilio took it) fills in Twilio's SID and the send time, so it is never sent
    again."""
    is_status = event.event_type.removeprefix("sms_") in _STATUS_OF and event.key.count(":") == 2
    if is_status:
        status = _STATUS_OF[event.event_type.removeprefix("sms_")]
    else:
        status = _STATUS_OF_INBOUND.get(event.event_type)
    if status is None:
        return
    rank = MESSAGE_STATUS_RANK[status]
    error_code = f"twilio:{event.raw['ErrorCode']}"[:64] if event.raw.get("ErrorCode") else ""
    sid = event.raw.get("MessageSid", "")[:200] if is_status else ""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE messaging_message SET
                status = CASE WHEN status_rank < %(rank)s THEN %(status)s ELSE status END,
                error_code = CASE WHEN status_rank < %(rank)s AND %(code)s <> ''
                                  THEN %(code)s ELSE error_code END,
                updated_at = CASE WHEN status_rank < %(rank)s THEN now() ELSE updated_at END,
                status_rank = GREATEST(status_rank, %(rank)s),
                provider_message_id = CASE WHEN provider_message_id = ''
                                           THEN %(sid)s ELSE provider_message_id END,
                sent_at = CASE WHEN %(is_status)s THEN COALESCE(sent_at, %(at)s)
                               ELSE sent_at END,
                last_event_at = GREATEST(last_event_at, %(at)s)
            WHERE id = %(id)s
            """,
            {
                "rank": rank,
                "status": status,
                "code": error_code,
                "sid": sid,
                "is_status": is_status,
                "at": occurred_at,
                "id": message.pk,
            },
        )


def sms_receipts_sweep(
    *, limit: int = 200, grace_seconds: int | None = None, time_budget_seconds: float = 25.0
) -> int:
    """Process Twilio receipts left unprocessed past the grace period (a lost hint, a dead
    worker); returns how many this run processed. Safe concurrently with itself and the
    task (``SKIP LOCKED``); a receipt failing ``WEBHOOK_RECEIPT_MAX_ATTEMPTS`` times stays
    for an operator with its ``last_error``."""
    grace = settings.WEBHOOK_RECEIPT_GRACE_SECONDS if grace_seconds is None else grace_seconds
    started = timezone.now()
    pending = list(
        WebhookReceipt.objects.filter(
            kind__in=RECEIPT_KINDS,
            processed_at=None,
            received_at__lt=started - datetime.timedelta(seconds=grace),
            attempts__lt=settings.WEBHOOK_RECEIPT_MAX_ATTEMPTS,
        )
        .order_by("received_at")
        .values_list("id", flat=True)[:limit]
    )
    processed = 0
    for receipt_id in pending:
        if (timezone.now() - started).total_seconds() > time_budget_seconds:
            break
        try:
            if sms_receipt_process(receipt_id=receipt_id) is not None:
                processed += 1
        except Exception:
            logger.exception("sms.receipt.sweep_failed", extra={"receipt_id": receipt_id})
    if pending:
        logger.info("sms.receipts.swept", extra={"found": len(pending), "processed": processed})
    return processed
