"""Inbound Parse replies: store the request first, then parse, match, classify and apply it.

The endpoint calls ``inbound_receipt_store`` (one INSERT, then 200 to SendGrid). The
``messaging.inbound_receipt_process`` task, hinted on commit, calls
``inbound_receipt_process``; a lost hint or a crashed worker leaves the receipt unprocessed
and ``inbound_receipts_sweep`` picks it up after a grace period.

Processing one receipt is one transaction: the ``InboundMessage``, the ``reply`` event, the
message's ``replied`` status, the campaign engine's reaction (stop, branch, or pause until
the return date) and the receipt's ``processed_at`` commit together or not at all. The
receipt row is claimed with ``SKIP LOCKED`` and ``InboundMessage.receipt`` is one-to-one, so
a task delivered twice (or racing the sweeper) records the mail once.

Decisions:

- Unmatched mail (no token, no known thread id) is kept with ``matched_message`` NULL and
  listed by the API; so is a body we cannot parse (classification ``unclassified``, the
  receipt's ``last_error`` says why). Nothing is dropped.
- SendGrid re-posts mail when it missed our answer, so a second receipt carrying a Message-ID
  already recorded for the tenant is a duplicate: marked processed, nothing recorded again.
- A human reply emits a normalised ``reply`` event (``provider_event_id``
  ``reply:<its Message-ID>``, or ``reply:receipt:<id>`` without one) and moves the message to
  ``replied``; the rank only grows, so a late ``open`` never moves it back.
- A bounce that reaches the reply address is recorded (classification ``bounce``) and shown
  to the engine, but adds no suppression: the Event Webhook's ``bounce`` event is the
  authoritative, authenticated source, while anyone who knows a reply address can mail it a
  fake delivery report.
- In shadow mode (``Tenant.webhook_shadow_mode``), or with the ``event_branching`` flag off,
  replies are stored, matched, classified and evented, but drive no enrollment, like Event
  Webhook events.
- A reply of an erased lead (to one of its messages, whose address is the erasure's
  placeholder, or from an address kept only as an erasure's hash) is recorded without
  personal data: no body, sender, subject or references, and the receipt's body is removed
  (``RECEIPT_ERASED``). A re-post of a reply erased since is treated the same.
- With the ``inbound`` flag off the receipt is kept exactly as received and marked processed
  with ``INBOUND_DISABLED`` as its ``last_error``; nothing is parsed or applied until an
  operator re-processes it (``manage.py webhook_receipts_reprocess`` or the admin action).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from messaging.inbound.classify import HUMAN, Classification, inbound_classify
from messaging.inbound.match import inbound_message_match
from messaging.inbound.parse import InboundEmail, InboundParseError, inbound_email_parse
from messaging.models import InboundMessage, Message, WebhookReceipt
from messaging.services.erasure import RECEIPT_ERASED, email_is_erased
from messaging.services.events import MESSAGE_STATUS_RANK
from outreach.tenancy.flags import tenant_flags_of
from suppression.models import Suppression
from suppression.services import suppression_hashes

logger = logging.getLogger(__name__)

TASK_NAME = "messaging.inbound_receipt_process"
REPLY_EVENT_TYPE = "reply"
# What a receipt of a tenant without the inbound phase says: kept, not processed.
INBOUND_DISABLED = (
    "inbound is disabled for this tenant: stored, not processed (re-process it once enabled)"
)

_ADVISORY_NAMESPACE = 0x494E  # pg_advisory_xact_lock(namespace, hash) per inbound Message-ID
# A Date header further than this from the receipt is not trusted as the reply's time.
_DATE_SKEW = datetime.timedelta(days=3)


def inbound_receipt_store(
    *, tenant_id: int, body: bytes, content_type: str, headers: dict[str, str]
) -> WebhookReceipt:
    """Store an Inbound Parse request exactly as received (one INSERT) and hint processing.

    The hint is published after commit and a broker failure is only logged: the stored row
    is the durable record and the sweeper processes it if the hint never arrives.
    """
    with transaction.atomic(durable=True):
        receipt = WebhookReceipt.objects.create(
            tenant_id=tenant_id,
            kind=WebhookReceipt.Kind.INBOUND,
            body=body,
            headers=headers,
            content_type=content_type[:200],
        )
        transaction.on_commit(lambda: _process_hint(tenant_id, receipt.pk))
    return receipt


def _process_hint(tenant_id: int, receipt_id: int) -> None:
    from outreach.celery import app

    try:
        app.send_task(TASK_NAME, args=[tenant_id, receipt_id], retry=False)
    except Exception:  # the broker being down must not fail an accepted reply
        logger.warning(
            "inbound.receipt.hint_failed", extra={"tenant_id": tenant_id, "receipt_id": receipt_id}
        )


def _attempt_claim(tenant_id: int, receipt_id: int) -> bool:
    """Count this attempt outside the processing transaction, so a worker that dies mid-way
    still used one up (a receipt that crashes workers is not retried forever)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE messaging_webhookreceipt SET attempts = attempts + 1
            WHERE id = (SELECT id FROM messaging_webhookreceipt
                        WHERE id = %s AND tenant_id = %s AND kind = %s AND processed_at IS NULL
                        FOR UPDATE SKIP LOCKED)
            """,
            [receipt_id, tenant_id, WebhookReceipt.Kind.INBOUND],
        )
        return cursor.rowcount == 1


def _failure_record(receipt_id: int, exc: BaseException) -> None:
    message = f"{type(exc).__name__}: {exc}"[:2000]
    try:
        WebhookReceipt.objects.filter(pk=receipt_id).update(last_error=message)
    except Exception:  # the database may be what failed; the sweeper retries either way
        logger.exception("inbound.receipt.failure_not_recorded", extra={"receipt_id": receipt_id})


def inbound_receipt_process(*, tenant_id: int, receipt_id: int) -> InboundMessage | None:
    """Turn one stored Inbound Parse receipt into one ``InboundMessage`` and its effects.

    Returns the new ``InboundMessage``, or None when there was nothing to do: the receipt is
    unknown for this tenant, already processed, being processed by another worker right now,
    or a re-post of mail already recorded (same Message-ID; the receipt is marked processed
    with ``event_count`` 0). Safe to call any number of times, concurrently.
    """
    if not _attempt_claim(tenant_id, receipt_id):
        return None
    try:
        with transaction.atomic(durable=True):
            receipt = (
                WebhookReceipt.objects.for_tenant(tenant_id)
                .select_for_update(skip_locked=True, of=("self",))
                .select_related("tenant")
                .filter(pk=receipt_id, kind=WebhookReceipt.Kind.INBOUND, processed_at=None)
                .first()
            )
            if receipt is None:
                return None
            if tenant_flags_of(tenant=receipt.tenant).inbound:
                inbound, error = _inbound_record(receipt)
            else:
                inbound, error = None, INBOUND_DISABLED
            WebhookReceipt.objects.filter(pk=receipt.pk).update(
                processed_at=timezone.now(), event_count=int(inbound is not None), last_error=error
            )
    except Exception as exc:
        _failure_record(receipt_id, exc)
        raise
    if inbound is None:
        return None
    logger.info(
        "inbound.processed",
        extra={
            "tenant_id": tenant_id,
            "receipt_id": receipt_id,
            "inbound_message_id": inbound.pk,
            "classification": inbound.classification,
            "matched_message_id": inbound.matched_message_id,
        },
    )
    return inbound


def _inbound_record(receipt: WebhookReceipt) -> tuple[InboundMessage | None, str]:
    tenant_id = receipt.tenant_id
    existing = InboundMessage.objects.filter(receipt_id=receipt.pk).first()
    if existing is not None:
        # Only reachable if a receipt's processed_at was cleared by hand: never record twice.
        return existing, ""
    try:
        email = inbound_email_parse(body=bytes(receipt.body), content_type=receipt.content_type)
    except InboundParseError as exc:
        inbound = InboundMessage.objects.create(
            tenant_id=tenant_id,
            receipt=receipt,
            raw_mime=bytes(receipt.body).decode("utf-8", errors="replace").replace("\x00", ""),
            processed_at=timezone.now(),
        )
        logger.warning(
            "inbound.unparseable", extra={"tenant_id": tenant_id, "receipt_id": receipt.pk}
        )
        return inbound, f"unparseable: {exc}"

    if email.message_id:
        # SendGrid re-posts mail whose answer it did not see (a timeout after we stored it):
        # the same Message-ID in a second receipt is the same reply, recorded once.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                [_ADVISORY_NAMESPACE, f"{tenant_id}:{email.message_id}"],
            )
        earlier = (
            InboundMessage.objects.for_tenant(tenant_id)
            .filter(message_id_header=email.message_id[:300])
            .exclude(receipt_id=receipt.pk)
            .order_by("id")
            .first()
        )
        if earlier is not None:
            logger.info(
                "inbound.duplicate",
                extra={"tenant_id": tenant_id, "receipt_id": receipt.pk, "of": earlier.pk},
            )
            if email_is_erased(earlier.from_email) or not earlier.raw_mime:
                # The reply was erased since: its re-post goes too.
                _receipt_body_erase(receipt)
                return None, RECEIPT_ERASED
            return None, ""

    match = inbound_message_match(tenant_id=tenant_id, email=email)
    verdict = inbound_classify(email=email, received_at=receipt.received_at)
    message = match.message if match else None
    erased = _erased_sender(tenant_id=tenant_id, email=email, message=message)
    inbound = InboundMessage.objects.create(
        tenant_id=tenant_id,
        receipt=receipt,
        raw_mime="" if erased is not None else email.raw_mime,
        from_email=erased if erased is not None else email.from_email[:320],
        to_email=_recipient(email)[:320],
        subject="" if erased is not None else email.subject[:998],
        message_id_header=email.message_id[:300],
        in_reply_to=" ".join(email.in_reply_to)[:300],
        references="" if erased is not None else " ".join(email.references),
        matched_message=message,
        classification=verdict.kind,
        return_date=verdict.return_date,
        processed_at=timezone.now(),
    )
    error = ""
    if erased is not None:
        _receipt_body_erase(receipt)
        error = RECEIPT_ERASED
    logger.info(
        "inbound.classified",
        extra={
            "tenant_id": tenant_id,
            "inbound_message_id": inbound.pk,
            "kind": verdict.kind,
            "reasons": list(verdict.reasons),
            "match": match.method if match else None,
        },
    )
    if message is None:
        return inbound, error
    if verdict.kind == HUMAN:
        occurred_at = _reply_time(email, receipt.received_at)
        _reply_event_record(
            receipt=receipt, inbound=inbound, message=message, occurred_at=occurred_at
        )
        _message_replied(message=message, occurred_at=occurred_at)
    flags = tenant_flags_of(tenant=receipt.tenant)
    if flags.event_branching and not flags.webhook_shadow_mode:
        _engine_notify(tenant_id=tenant_id, inbound=inbound, verdict=verdict)
    return inbound, error


def _erased_sender(*, tenant_id: int, email: InboundEmail, message: Message | None) -> str | None:
    """The address to record for a reply of an erased lead (its placeholder, or "" when
    unknown), or None for anyone else. A reply is one when it answers a message of an erased
    lead, or comes from a placeholder or from an address the tenant keeps only as an
    erasure's hash (one query per reply)."""
    if message is not None and email_is_erased(message.to_email):
        return message.to_email
    sender = email.from_email.strip()
    if not sender:
        return None
    if email_is_erased(sender):
        return sender[:320]
    hashed = Suppression.objects.filter(tenant_id=tenant_id, email__in=suppression_hashes(sender))
    return "" if hashed.exists() else None


def _receipt_body_erase(receipt: WebhookReceipt) -> None:
    WebhookReceipt.objects.filter(pk=receipt.pk, tenant_id=receipt.tenant_id).update(
        body=b"", headers={}
    )


def _recipient(email: InboundEmail) -> str:
    for address in (*email.envelope_to, *email.to, *email.delivered_to, *email.cc):
        if address:
            return address
    return ""


def _reply_time(email: InboundEmail, received_at: datetime.datetime) -> datetime.datetime:
    if email.date and abs(email.date - received_at) <= _DATE_SKEW:
        return email.date
    return received_at


def _reply_event_key(*, receipt_id: int, message_id: str) -> str:
    if not message_id:
        return f"reply:receipt:{receipt_id}"
    key = f"reply:{message_id}"
    if len(key) <= 255:
        return key
    return f"reply:sha256:{hashlib.sha256(message_id.encode()).hexdigest()}"


def _reply_event_record(
    *,
    receipt: WebhookReceipt,
    inbound: InboundMessage,
    message: Message,
    occurred_at: datetime.datetime,
) -> int | None:
    """Insert the normalised ``reply`` event once: its key is the reply's own Message-ID
    (``reply:<message-id>``, hashed when too long), or ``reply:receipt:<id>`` without one."""
    key = _reply_event_key(receipt_id=receipt.pk, message_id=inbound.message_id_header)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO messaging_messageeventkey (tenant_id, provider_event_id, first_seen_at)
            VALUES (%s, %s, now())
            ON CONFLICT (tenant_id, provider_event_id) DO NOTHING
            """,
            [receipt.tenant_id, key],
        )
        if cursor.rowcount != 1:
            return None
        cursor.execute(
            """
            INSERT INTO messaging_messageevent
                (tenant_id, message_id, enrollment_id, event_type, occurred_at, received_at,
                 provider_event_id, provider_message_id, email, receipt_id, raw)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)
            RETURNING id
            """,
            [
                receipt.tenant_id,
                message.pk,
                message.enrollment_id,
                REPLY_EVENT_TYPE,
                occurred_at,
                receipt.received_at,
                key,
                message.provider_message_id,
                "" if email_is_erased(inbound.from_email) else inbound.from_email,
                receipt.pk,
                json.dumps(
                    {
                        "inbound_message_id": inbound.pk,
                        "classification": inbound.classification,
                        "from": inbound.from_email,
                        "subject": inbound.subject,
                        "message_id": inbound.message_id_header,
                    }
                ),
            ],
        )
        return int(cursor.fetchone()[0])


def _message_replied(*, message: Message, occurred_at: datetime.datetime) -> None:
    """Move the message to ``replied`` unless it already ranks higher (never backwards)."""
    rank = MESSAGE_STATUS_RANK[Message.Status.REPLIED]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE messaging_message SET
                status = CASE WHEN status_rank < %s THEN %s ELSE status END,
                status_rank = GREATEST(status_rank, %s),
                last_event_at = GREATEST(last_event_at, %s),
                updated_at = now()
            WHERE id = %s AND tenant_id = %s
            """,
            [rank, Message.Status.REPLIED, rank, occurred_at, message.pk, message.tenant_id],
        )


def _engine_notify(*, tenant_id: int, inbound: InboundMessage, verdict: Classification) -> None:
    # Imported here: the campaign engine imports messaging services at module level.
    from campaigns.services.transitions import enrollment_reply_apply

    enrollment_reply_apply(
        tenant_id=tenant_id,
        inbound_message_id=inbound.pk,
        classification=verdict.kind,
        return_date=verdict.return_date,
    )


def inbound_receipts_sweep(
    *, limit: int = 200, grace_seconds: int | None = None, time_budget_seconds: float = 50.0
) -> int:
    """Process Inbound Parse receipts left unprocessed past the grace period (a lost Celery
    message, a crashed worker); returns how many this run processed.

    Safe to run concurrently with itself and with the task: each receipt is claimed with
    ``SKIP LOCKED``. A receipt that keeps failing stops being retried after
    ``WEBHOOK_RECEIPT_MAX_ATTEMPTS`` and keeps its ``last_error`` for an operator.
    """
    grace = settings.WEBHOOK_RECEIPT_GRACE_SECONDS if grace_seconds is None else grace_seconds
    started = timezone.now()
    pending = list(
        WebhookReceipt.objects.filter(
            kind=WebhookReceipt.Kind.INBOUND,
            processed_at=None,
            received_at__lt=started - datetime.timedelta(seconds=grace),
            attempts__lt=settings.WEBHOOK_RECEIPT_MAX_ATTEMPTS,
        )
        .order_by("received_at")
        .values_list("tenant_id", "id")[:limit]
    )
    processed = 0
    for tenant_id, receipt_id in pending:
        if (timezone.now() - started).total_seconds() > time_budget_seconds:
            break
        try:
            if inbound_receipt_process(tenant_id=tenant_id, receipt_id=receipt_id) is not None:
                processed += 1
        except Exception:
            logger.exception(
                "inbound.receipt.sweep_failed",
                extra={"tenant_id": tenant_id, "receipt_id": receipt_id},
            )
    if pending:
        logger.info("inbound.receipts.swept", extra={"found": len(pending), "processed": processed})
    return processed
