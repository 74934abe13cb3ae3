"""The raw webhook store and the Event Webhook receipt lifecycle.

A body is kept exactly as received (one INSERT) before the provider gets its 2xx. A receipt
is then normalised exactly once: by the task its commit hinted, or by the sweeper when that
hint was lost or its worker died. Either path goes through ``webhook_receipt_normalise``,
which claims the row with ``SKIP LOCKED`` and marks it processed in the same transaction as
its events.
"""

import datetime
import logging
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from messaging.models import WebhookReceipt
from messaging.services.erasure import RECEIPT_ERASED, address_pattern_bytes
from messaging.services.events import EventsStored, message_events_store, server_cursor
from messaging.webhooks.sendgrid_events import json_strict_loads, jsonb_text
from outreach.metrics import metrics_add
from outreach.tenancy.audit import audit_record
from outreach.tenancy.models import TenantAlert

logger = logging.getLogger(__name__)


def webhook_receipt_create(
    *,
    tenant_id: int,
    kind: str,
    body: bytes,
    headers: dict[str, str],
    content_type: str = "",
) -> int:
    """Store one receipt in a single INSERT and return its id.

    Normalisation of an Event Webhook receipt is only hinted (``transaction.on_commit``): the
    row is the durable record, and the sweeper re-processes any receipt whose hint was lost.
    """
    # Server-side binding sends the body as raw bytes; Django's client-side binding would
    # hex-escape ~0.5 MB into the SQL text for Postgres to decode again.
    with server_cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO messaging_webhookreceipt
                (tenant_id, kind, body, headers, content_type, received_at, attempts,
                 event_count, last_error)
            VALUES (%s, %s, %b, %s::jsonb, %s, now(), 0, 0, '')
            RETURNING id
            """,
            [tenant_id, kind, body, jsonb_text(headers), content_type[:200]],
        )
        receipt_id = cursor.fetchone()[0]
    if kind == WebhookReceipt.Kind.EVENTS:
        transaction.on_commit(lambda: _normalise_hint(receipt_id))
    return receipt_id


def _normalise_hint(receipt_id: int) -> None:
    from messaging.tasks_events import webhook_receipt_normalise

    try:
        webhook_receipt_normalise.apply_async(args=[receipt_id], retry=False)
    except Exception:  # the broker being down must not fail an accepted webhook
        logger.warning("webhook.receipt.hint_failed", extra={"receipt_id": receipt_id})


def _claim_attempt(receipt_id: int) -> bool:
    """Count this attempt outside the processing transaction, so a worker that dies mid-way
    still used one up (a receipt that crashes workers must not be retried forever)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE messaging_webhookreceipt SET attempts = attempts + 1
            WHERE id = (SELECT id FROM messaging_webhookreceipt
                        WHERE id = %s AND kind = %s AND processed_at IS NULL
                        FOR UPDATE SKIP LOCKED)
            """,
            [receipt_id, WebhookReceipt.Kind.EVENTS],
        )
        return cursor.rowcount == 1


def _record_failure(receipt_id: int, exc: BaseException) -> None:
    message = f"{type(exc).__name__}: {exc}"[:2000]
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE messaging_webhookreceipt SET last_error = %s WHERE id = %s"
            " RETURNING tenant_id, attempts",
            [message, receipt_id],
        )
        row = cursor.fetchone()
    if row and row[1] >= settings.WEBHOOK_RECEIPT_MAX_ATTEMPTS:
        TenantAlert.objects.create(
            tenant_id=row[0],
            kind=TenantAlert.Kind.WEBHOOK,
            message=f"Webhook receipt {receipt_id} failed {row[1]} times and is no longer "
            f"retried: {message[:300]}",
            payload={"receipt_id": receipt_id},
        )


def _parse_body(body: bytes) -> list[Any] | None:
    try:
        parsed = json_strict_loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return parsed if isinstance(parsed, list) else None


def _body_erase(receipt_id: int, body: bytes, addresses: dict[str, str]) -> None:
    cleaned = body
    for email, placeholder in addresses.items():
        cleaned = address_pattern_bytes(email).sub(placeholder.encode(), cleaned)
    if cleaned != body:
        with server_cursor() as cursor:
            cursor.execute(
                "UPDATE messaging_webhookreceipt SET body = %b WHERE id = %s", [cleaned, receipt_id]
            )


def webhook_receipt_normalise(*, receipt_id: int) -> EventsStored | None:
    """Process one Event Webhook receipt exactly once; None when there was nothing to do
    (already processed, or another worker holds it right now).

    Safe to call any number of times, concurrently: the receipt row is claimed with
    ``SKIP LOCKED`` and marked processed in the same transaction as its events.
    """
    if not _claim_attempt(receipt_id):
        return None
    try:
        with transaction.atomic(durable=True):
            with server_cursor() as cursor:
                # Safe without waiting for the WAL flush: the raw receipt is already durable,
                # so a commit lost in a crash leaves it unprocessed (keys and all) and the
                # sweeper redoes it. Any later synchronous commit flushes this one too.
                cursor.execute("SET LOCAL synchronous_commit = off")
                cursor.execute(
                    """
                    SELECT r.tenant_id, r.body, r.received_at, t.webhook_shadow_mode
                    FROM messaging_webhookreceipt r
                    JOIN tenancy_tenant t ON t.id = r.tenant_id
                    WHERE r.id = %s AND r.kind = %s AND r.processed_at IS NULL
                    FOR UPDATE OF r SKIP LOCKED
                    """,
                    [receipt_id, WebhookReceipt.Kind.EVENTS],
                    binary=True,  # the body comes back as bytes, not as hex text
                )
                row = cursor.fetchone()
            if row is None:
                return None
            tenant_id, body, received_at, shadow_mode = row
            raw_events = _parse_body(bytes(body))
            error = ""
            if raw_events is None:
                # Cannot happen through the endpoint (it refuses such bodies); never retry it.
                error, raw_events = "body is not a JSON array", []
            result = message_events_store(
                tenant_id=tenant_id,
                raw_events=raw_events,
                received_at=received_at,
                shadow_mode=shadow_mode,
                receipt_id=receipt_id,
            )
            if result.erased:  # events of erased leads: their addresses leave the body too
                _body_erase(receipt_id, bytes(body), result.erased)
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE messaging_webhookreceipt SET processed_at = now(), event_count = %s,"
                    " last_error = %s WHERE id = %s",
                    [result.received, error, receipt_id],
                )
    except Exception as exc:
        _record_failure(receipt_id, exc)
        raise
    metrics_add(
        [
            ("webhook_receipts_normalised", {}, 1),
            ("events_received", {}, result.received),
            ("events_stored", {}, len(result.new_event_ids)),
        ]
    )
    logger.info(
        "webhook.receipt.normalised",
        extra={
            "tenant_id": tenant_id,
            "receipt_id": receipt_id,
            "events": result.received,
            "new": len(result.new_event_ids),
            "suppressed": result.suppressed,
        },
    )
    return result


def webhook_receipts_sweep(
    *, limit: int = 500, grace_seconds: int | None = None, time_budget_seconds: float = 25.0
) -> int:
    """Re-process Event Webhook receipts left unprocessed past the grace period (a lost
    Celery message, a crashed worker). Returns how many this run processed.

    Safe to run concurrently with itself and with the normalise task: each receipt is
    claimed with ``SKIP LOCKED`` by whoever gets it first. A receipt that keeps failing
    stops being retried after ``WEBHOOK_RECEIPT_MAX_ATTEMPTS`` (and has raised an alert).
    """
    grace = settings.WEBHOOK_RECEIPT_GRACE_SECONDS if grace_seconds is None else grace_seconds
    started = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT id FROM messaging_webhookreceipt
            WHERE kind = %s AND processed_at IS NULL AND received_at < %s AND attempts < %s
            ORDER BY received_at LIMIT %s
            """,
            [
                WebhookReceipt.Kind.EVENTS,
                started - datetime.timedelta(seconds=grace),
                settings.WEBHOOK_RECEIPT_MAX_ATTEMPTS,
                limit,
            ],
        )
        receipt_ids = [row[0] for row in cursor.fetchall()]
    processed = 0
    for receipt_id in receipt_ids:
        if (timezone.now() - started).total_seconds() > time_budget_seconds:
            break
        try:
            if webhook_receipt_normalise(receipt_id=receipt_id) is not None:
                processed += 1
        except Exception:
            logger.exception("webhook.receipt.sweep_failed", extra={"receipt_id": receipt_id})
    if receipt_ids:
        logger.info(
            "webhook.receipts.swept", extra={"found": len(receipt_ids), "processed": processed}
        )
    return processed


def webhook_receipt_reprocess(
    *, receipt_id: int, tenant_id: int | None = None, actor: str = "", reason: str = ""
) -> str:
    """Process a stored receipt (events or inbound) again, whatever happened to it before:
    the repair for a receipt that failed too often, was stored while the tenant's inbound
    phase was off, or predates a fix in normalisation. Returns what happened: ``processed``;
    ``held`` (an inbound reply of a tenant whose inbound phase is still off: stored, not
    processed); ``erased`` (its body was removed on an erasure request: never processed
    again); ``busy`` (another worker holds it right now; it finishes it) or ``not_found``.

    Idempotent: events are deduplicated on their provider ids and a reply is recorded once
    per receipt, so re-processing adds only what is missing. ``tenant_id`` scopes the
    lookup (an operator's command may leave it out). With an ``actor`` (the admin action)
    the attempt and its ``reason`` go to the audit log.
    """
    outcome, owner_id = _reprocess(receipt_id=receipt_id, tenant_id=tenant_id)
    if actor and owner_id is not None:
        audit_record(
            tenant_id=owner_id,
            actor=actor,
            action="webhook_receipt.reprocess",
            target_type="webhook_receipt",
            target_id=receipt_id,
            reason=reason,
            after={"outcome": outcome},
        )
    return outcome


def _reprocess(*, receipt_id: int, tenant_id: int | None) -> tuple[str, int | None]:
    from messaging.services.inbound import INBOUND_DISABLED, inbound_receipt_process

    scope = WebhookReceipt.objects.filter(pk=receipt_id)
    if tenant_id is not None:
        scope = scope.filter(tenant_id=tenant_id)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE messaging_webhookreceipt
            SET processed_at = NULL, attempts = 0, last_error = ''
            WHERE id = %s AND (%s::bigint IS NULL OR tenant_id = %s::bigint)
              AND last_error <> %s
            RETURNING kind, tenant_id
            """,
            [receipt_id, tenant_id, tenant_id, RECEIPT_ERASED],
        )
        row = cursor.fetchone()
    if row is None:
        erased = scope.filter(last_error=RECEIPT_ERASED).values_list("tenant_id", flat=True)
        owner = erased.first()
        return ("erased", owner) if owner is not None else ("not_found", None)
    kind, owner_id = row
    if kind == WebhookReceipt.Kind.EVENTS:
        done = webhook_receipt_normalise(receipt_id=receipt_id)
    elif kind in (WebhookReceipt.Kind.SMS_STATUS, WebhookReceipt.Kind.SMS_INBOUND):
        from messaging.services.sms_events import sms_receipt_process

        done = sms_receipt_process(receipt_id=receipt_id)
    else:
        done = inbound_receipt_process(tenant_id=owner_id, receipt_id=receipt_id)
        if done is None:
            state = scope.values_list("processed_at", "last_error").first()
            if state and state[0] is not None:
                # Marked processed without a reply recorded: a re-post of one recorded
                # before, or still stored unprocessed because inbound is off.
                return ("held" if state[1] == INBOUND_DISABLED else "processed"), owner_id
    if done is None:
        return "busy", owner_id
    logger.info(
        "webhook.receipt.reprocessed",
        extra={"tenant_id": owner_id, "receipt_id": receipt_id, "kind": kind},
    )
    return "processed", owner_id
