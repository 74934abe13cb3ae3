"""Event Webhook normalisation: a stored receipt becomes deduplicated, normalised events.

One receipt is processed in one transaction, in a fixed lock order so concurrent workers
(SendGrid posts from many servers at once, and re-delivers some events dozens of times)
never deadlock each other:

1. the receipt row (``FOR UPDATE SKIP LOCKED``: a receipt being processed is skipped);
2. dedup keys, ``INSERT … ON CONFLICT DO NOTHING RETURNING`` in sorted order: a key another
   transaction holds makes us wait for it, then yields nothing, so each event is stored once;
3. only the new events go into the partitioned event table (one multi-row insert);
4. their messages, locked in id order, then one bulk UPDATE that only moves status forward;
5. suppressions and the campaign hook (skipped in shadow mode), then the receipt is marked.

Everything commits together: an event, its status change, its suppression and the
enrollment transitions it causes exist all or not at all. Celery messages are only hints;
a receipt whose hint was lost or whose worker died is picked up by ``webhook_receipts_sweep``.

Decisions (documented here because the send path and the campaign engine rely on them):

- Status ranks (``MESSAGE_STATUS_RANK``): sending < needs_review < failed < accepted <
  processed < deferred < delivered < opened < clicked < replied < dropped < bounced <
  unsubscribed < complained. An event never lowers the rank, so an ``open`` arriving
  before its ``delivered`` leaves the message ``opened``.
- A machine open (Apple Mail Privacy Protection, ``sg_machine_open``) and a bot click prove
  delivery but not interest: they raise the status to ``delivered`` only. The events keep
  their type and carry ``is_machine_open`` / ``is_bot_click``.
- Bot click rule (conservative, no guessing from missing opens, since many clients block
  images): the user agent names a known link scanner or HTTP library, or the click happened
  within ``EVENT_BOT_CLICK_SECONDS`` (default 10 s) of the send. No human opens and clicks
  a new mail that fast; security gateways do.
- A ``bounce`` with ``type: blocked`` is stored as event type ``blocked`` (soft bounce). It
  marks the message ``bounced`` but suppresses the address only once
  ``SUPPRESSION_SOFT_BOUNCE_THRESHOLD`` blocked bounces for it arrived within
  ``SUPPRESSION_SOFT_BOUNCE_WINDOW_DAYS``.
- Message mapping: the ``outreach_message_id`` custom arg (our ``Message.public_id``), else
  the ``sg_message_id`` prefix (the request's ``X-Message-Id``) when it names one message of
  the tenant, or several of which exactly one was sent to the event's address. Anything
  else is stored as an orphan (``message_id`` NULL), never dropped.
- A message still ``sending`` (crash after the provider call) that gets an event carrying
  our id is reconciled: its status moves forward, and ``sent_at``, ``provider_message_id``
  and ``smtp_id`` are filled from the events, so the send ledger never resends it.
"""

import datetime
import logging
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone
from psycopg import sql

from messaging.models import Message
from messaging.webhooks.sendgrid_events import (
    NormalisedEvent,
    clean_text,
    event_key,
    event_normalise,
    raw_json,
)
from outreach.tenancy.models import TenantAlert
from suppression.models import Suppression
from suppression.services import SuppressionEntry, suppression_bulk_add

logger = logging.getLogger(__name__)

MESSAGE_STATUS_RANK: dict[str, int] = {
    Message.Status.SENDING: 0,
    Message.Status.NEEDS_REVIEW: 1,
    Message.Status.FAILED: 2,
    Message.Status.ACCEPTED: 10,
    Message.Status.PROCESSED: 20,
    Message.Status.DEFERRED: 30,
    Message.Status.DELIVERED: 40,
    Message.Status.OPENED: 50,
    Message.Status.CLICKED: 60,
    Message.Status.REPLIED: 70,
    Message.Status.DROPPED: 80,
    Message.Status.BOUNCED: 81,
    Message.Status.UNSUBSCRIBED: 82,
    Message.Status.COMPLAINED: 83,
}

_STATUS_FOR_EVENT: dict[str, str] = {
    "processed": Message.Status.PROCESSED,
    "deferred": Message.Status.DEFERRED,
    "delivered": Message.Status.DELIVERED,
    "open": Message.Status.OPENED,
    "click": Message.Status.CLICKED,
    "bounce": Message.Status.BOUNCED,
    "blocked": Message.Status.BOUNCED,
    "dropped": Message.Status.DROPPED,
    "spamreport": Message.Status.COMPLAINED,
    "unsubscribe": Message.Status.UNSUBSCRIBED,
    "group_unsubscribe": Message.Status.UNSUBSCRIBED,
}

_SUPPRESSION_FOR_EVENT: dict[str, str] = {
    "bounce": Suppression.Reason.HARD_BOUNCE,
    "spamreport": Suppression.Reason.SPAM_REPORT,
    "unsubscribe": Suppression.Reason.UNSUBSCRIBE,
    "group_unsubscribe": Suppression.Reason.GROUP_UNSUBSCRIBE,
}
# SendGrid drops mail to addresses on its own suppression lists; we mirror those reasons.
_SUPPRESSION_FOR_DROP_REASON: dict[str, str] = {
    "bounced address": Suppression.Reason.HARD_BOUNCE,
    "spam reporting address": Suppression.Reason.SPAM_REPORT,
    "unsubscribed address": Suppression.Reason.UNSUBSCRIBE,
}

_BOT_USER_AGENT = re.compile(
    r"bot\b|crawler|spider|scanner|barracuda|mimecast|proofpoint|urldefense|safelinks"
    r"|trendmicro|forcepoint|sophos|python-requests|python-urllib|curl/|wget/|go-http-client"
    r"|okhttp|java/|libwww|headlesschrome|phantomjs",
    re.IGNORECASE,
)

_ADVISORY_NAMESPACE = 0x5342  # pg_advisory_xact_lock(namespace, hash) for soft-bounce counts


# --------------------------------------------------------------------------- mapping


@dataclass(slots=True)
class _MessageRow:
    id: int
    enrollment_id: int | None
    lead_id: int | None
    sent_at: datetime.datetime | None
    to_email: str


def _messages_attach(tenant_id: int, events: list[NormalisedEvent]) -> dict[int, _MessageRow]:
    refs = {e.message_ref for e in events if e.message_ref is not None}
    found: dict[int, _MessageRow] = {}
    by_public: dict[uuid.UUID, _MessageRow] = {}
    with connection.cursor() as cursor:
        if refs:
            cursor.execute(
                "SELECT id, public_id, enrollment_id, lead_id, sent_at, lower(to_email)"
                " FROM messaging_message WHERE tenant_id = %s AND public_id = ANY(%s::uuid[])",
                [tenant_id, list(refs)],
            )
            for mid, public_id, enrollment_id, lead_id, sent_at, to_email in cursor.fetchall():
                row = _MessageRow(mid, enrollment_id, lead_id, sent_at, to_email)
                by_public[public_id] = found[mid] = row
        for event in events:
            if event.message_ref is not None and event.message_ref in by_public:
                row = by_public[event.message_ref]
                event.message_id, event.enrollment_id = row.id, row.enrollment_id

        prefixes = {e.sg_prefix for e in events if e.message_id is None and e.sg_prefix}
        if prefixes:
            cursor.execute(
                "SELECT id, provider_message_id, enrollment_id, lead_id, sent_at,"
                " lower(to_email) FROM messaging_message"
                " WHERE tenant_id = %s AND provider_message_id <> ''"
                " AND provider_message_id = ANY(%s)",
                [tenant_id, sorted(prefixes)],
            )
            by_prefix: dict[str, list[_MessageRow]] = defaultdict(list)
            for mid, pmid, enrollment_id, lead_id, sent_at, to_email in cursor.fetchall():
                row = _MessageRow(mid, enrollment_id, lead_id, sent_at, to_email)
                by_prefix[pmid].append(row)
                found[mid] = row
            for event in events:
                if event.message_id is not None or event.sg_prefix not in by_prefix:
                    continue
                candidates = by_prefix[event.sg_prefix]
                if len(candidates) > 1:
                    candidates = [c for c in candidates if c.to_email == event.email]
                if len(candidates) == 1:
                    event.message_id = candidates[0].id
                    event.enrollment_id = candidates[0].enrollment_id
    return found


def _bot_clicks_flag(events: list[NormalisedEvent], messages: dict[int, _MessageRow]) -> None:
    window = settings.EVENT_BOT_CLICK_SECONDS
    sent_in_batch: dict[int, datetime.datetime] = {}
    for event in events:
        if event.message_id is not None and event.event_type in ("processed", "delivered"):
            known = sent_in_batch.get(event.message_id)
            if known is None or event.occurred_at < known:
                sent_in_batch[event.message_id] = event.occurred_at
    for event in events:
        if event.event_type != "click":
            continue
        if event.user_agent and _BOT_USER_AGENT.search(event.user_agent):
            event.is_bot_click = True
            continue
        if event.message_id is None:
            continue
        sent = messages[event.message_id].sent_at or sent_in_batch.get(event.message_id)
        if sent is not None and abs((event.occurred_at - sent).total_seconds()) < window:
            event.is_bot_click = True


# --------------------------------------------------------------------------- writing


def _keys_claim(cursor, tenant_id: int, keys: list[str]) -> set[str]:
    cursor.execute(
        """
        INSERT INTO messaging_messageeventkey (tenant_id, provider_event_id, first_seen_at)
        SELECT %s, k, now() FROM unnest(%s::text[]) AS k ORDER BY k COLLATE "C"
        ON CONFLICT (tenant_id, provider_event_id) DO NOTHING
        RETURNING provider_event_id
        """,
        [tenant_id, keys],
    )
    return {row[0] for row in cursor.fetchall()}


def _events_insert(
    cursor, tenant_id: int, receipt_id: int | None, received_at, events: list[NormalisedEvent]
) -> list[int]:
    cursor.execute(
        """
        INSERT INTO messaging_messageevent
            (tenant_id, message_id, enrollment_id, event_type, occurred_at, received_at,
             provider_event_id, provider_message_id, email, is_machine_open, is_bot_click,
             receipt_id, raw)
        SELECT %s, u.message_id, u.enrollment_id, u.event_type, u.occurred_at, %s, u.key,
               u.provider_message_id, u.email, u.machine_open, u.bot_click, %s, u.raw::jsonb
        FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::timestamptz[], %s::text[],
                    %s::text[], %s::text[], %s::bool[], %s::bool[], %s::text[])
            AS u(message_id, enrollment_id, event_type, occurred_at, key,
                 provider_message_id, email, machine_open, bot_click, raw)
        RETURNING id
        """,
        [
            tenant_id,
            received_at,
            receipt_id,
            [e.message_id for e in events],
            [e.enrollment_id for e in events],
            [e.event_type for e in events],
            [e.occurred_at for e in events],
            [e.key for e in events],
            [e.provider_message_id for e in events],
            [e.email for e in events],
            [e.is_machine_open for e in events],
            [e.is_bot_click for e in events],
            [raw_json(e.raw) for e in events],
        ],
    )
    return [row[0] for row in cursor.fetchall()]


def _status_of(event: NormalisedEvent) -> str | None:
    if event.is_machine_open or event.is_bot_click:
        return Message.Status.DELIVERED
    return _STATUS_FOR_EVENT.get(event.event_type)


def _error_of(event: NormalisedEvent) -> tuple[str, str]:
    raw = event.raw
    if event.event_type in ("bounce", "blocked"):
        code = f"{event.event_type}:{clean_text(raw.get('status'), 20)}".rstrip(":")
        return code[:64], clean_text(raw.get("reason") or raw.get("response"), 2000)
    if event.event_type == "dropped":
        return "dropped", clean_text(raw.get("reason"), 2000)
    return "", ""


def _messages_update(cursor, events: list[NormalisedEvent]) -> None:
    """One UPDATE for all touched messages; the rank only grows (``GREATEST``)."""
    best: dict[int, dict[str, Any]] = {}
    for event in events:
        if event.message_id is None:
            continue
        state = best.get(event.message_id)
        if state is None:
            state = best[event.message_id] = {
                "status": "",
                "rank": -1,
                "code": "",
                "error": "",
                "smtp_id": "",
                "pmid": "",
                "first": event.occurred_at,
                "last": event.occurred_at,
            }
        status = _status_of(event)
        rank = MESSAGE_STATUS_RANK[status] if status else -1
        if rank > state["rank"]:
            state["status"], state["rank"] = status, rank
            state["code"], state["error"] = _error_of(event)
        if event.smtp_id and (not state["smtp_id"] or event.event_type == "processed"):
            state["smtp_id"] = event.smtp_id
        if event.sg_prefix and not state["pmid"]:
            state["pmid"] = event.sg_prefix[:200]
        state["first"] = min(state["first"], event.occurred_at)
        state["last"] = max(state["last"], event.occurred_at)
    if not best:
        return
    ids = sorted(best)
    cursor.execute(
        "SELECT id FROM messaging_message WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE",
        [ids],
    )
    rows = [best[i] for i in ids]
    cursor.execute(
        """
        UPDATE messaging_message AS m SET
            status = CASE WHEN v.rank > m.status_rank THEN v.status ELSE m.status END,
            error_code = CASE WHEN v.rank > m.status_rank AND v.code <> ''
                              THEN v.code ELSE m.error_code END,
            error_message = CASE WHEN v.rank > m.status_rank AND v.error <> ''
                                 THEN v.error ELSE m.error_message END,
            status_rank = GREATEST(m.status_rank, v.rank),
            smtp_id = CASE WHEN m.smtp_id = '' THEN v.smtp_id ELSE m.smtp_id END,
            provider_message_id = CASE WHEN m.provider_message_id = '' THEN v.pmid
                                       ELSE m.provider_message_id END,
            sent_at = CASE WHEN m.sent_at IS NULL AND v.rank >= %s THEN v.first_at
                           ELSE m.sent_at END,
            last_event_at = GREATEST(m.last_event_at, v.last_at),
            updated_at = now()
        FROM unnest(%s::bigint[], %s::text[], %s::int[], %s::text[], %s::text[], %s::text[],
                    %s::text[], %s::timestamptz[], %s::timestamptz[])
            AS v(id, status, rank, code, error, smtp_id, pmid, first_at, last_at)
        WHERE m.id = v.id
        """,
        [
            MESSAGE_STATUS_RANK[Message.Status.ACCEPTED],
            ids,
            [r["status"] for r in rows],
            [max(r["rank"], 0) for r in rows],
            [r["code"] for r in rows],
            [r["error"] for r in rows],
            [r["smtp_id"] for r in rows],
            [r["pmid"] for r in rows],
            [r["first"] for r in rows],
            [r["last"] for r in rows],
        ],
    )


def _soft_bounce_repeats(
    cursor, tenant_id: int, events: list[NormalisedEvent], messages: dict[int, _MessageRow]
) -> set[str]:
    """Addresses whose blocked bounces within the window reached the threshold.

    Counting happens under a per-address advisory lock, taken after this transaction stored
    its own events: a concurrent batch holding the lock commits first, and our count (a new
    snapshot per statement) then includes its events, so a threshold crossed by two batches
    at once is still seen.
    """
    blocked = [e for e in events if e.event_type == "blocked" and e.email]
    if not blocked:
        return set()
    threshold = settings.SUPPRESSION_SOFT_BOUNCE_THRESHOLD
    since = timezone.now() - datetime.timedelta(days=settings.SUPPRESSION_SOFT_BOUNCE_WINDOW_DAYS)
    emails = sorted({e.email for e in blocked})
    cursor.execute(
        "SELECT pg_advisory_xact_lock(%s, hashtext(%s || ':' || e))"
        ' FROM unnest(%s::text[]) AS e ORDER BY e COLLATE "C"',
        [_ADVISORY_NAMESPACE, str(tenant_id), emails],
    )
    # Our messages to the address are found through the lead (indexed: lead → message →
    # events); events not tied to a lead are counted by address over the tenant's window.
    leads = sorted(
        {
            messages[e.message_id].lead_id
            for e in blocked
            if e.message_id is not None and messages[e.message_id].lead_id is not None
        }
    )
    loose = sorted(
        {e.email for e in blocked if e.message_id is None or messages[e.message_id].lead_id is None}
    )
    parts: list[sql.SQL] = []
    params: list[Any] = []
    if leads:
        parts.append(
            sql.SQL(
                "SELECT e.id, lower(m.to_email) AS email FROM messaging_message m"
                " JOIN messaging_messageevent e ON e.message_id = m.id"
                " WHERE m.tenant_id = %s AND m.lead_id = ANY(%s) AND e.tenant_id = %s"
                " AND e.event_type = 'blocked' AND e.occurred_at >= %s"
            )
        )
        params += [tenant_id, leads, tenant_id, since]
    if loose:
        parts.append(
            sql.SQL(
                "SELECT id, email FROM messaging_messageevent"
                " WHERE tenant_id = %s AND occurred_at >= %s AND event_type = 'blocked'"
                " AND email = ANY(%s)"
            )
        )
        params += [tenant_id, since, loose]
    query = sql.SQL("SELECT email, count(DISTINCT id) FROM ({}) AS b GROUP BY email").format(
        sql.SQL(" UNION ALL ").join(parts)
    )
    cursor.execute(query, params)
    counts = dict(cursor.fetchall())
    return {email for email in emails if counts.get(email, 0) >= threshold}


def _suppressions_add(
    cursor, tenant_id: int, events: list[NormalisedEvent], messages: dict[int, _MessageRow]
) -> int:
    entries: dict[str, SuppressionEntry] = {}
    for event in events:
        if not event.email:
            continue
        reason = _SUPPRESSION_FOR_EVENT.get(event.event_type)
        if event.event_type == "dropped":
            reason = _SUPPRESSION_FOR_DROP_REASON.get(str(event.raw.get("reason", "")).lower())
        if reason and event.email not in entries:
            entries[event.email] = SuppressionEntry(
                email=event.email, reason=reason, note=f"SendGrid {event.event_type} {event.key}"
            )
    for email in _soft_bounce_repeats(cursor, tenant_id, events, messages):
        entries.setdefault(
            email,
            SuppressionEntry(
                email=email,
                reason=Suppression.Reason.REPEATED_SOFT_BOUNCE,
                note=f"{settings.SUPPRESSION_SOFT_BOUNCE_THRESHOLD} blocked bounces within "
                f"{settings.SUPPRESSION_SOFT_BOUNCE_WINDOW_DAYS} days",
            ),
        )
    if not entries:
        return 0
    added = suppression_bulk_add(
        tenant_id=tenant_id, entries=entries.values(), source=Suppression.Source.WEBHOOK
    )
    return len(added)


def _alerts_raise(tenant_id: int, events: list[NormalisedEvent]) -> None:
    alerts = [
        TenantAlert(
            tenant_id=tenant_id,
            kind=TenantAlert.Kind.ACCOUNT_STATUS,
            message=f"SendGrid account status changed: {clean_text(e.raw.get('type'), 100) or 'unknown'}",
            payload=e.raw,
        )
        for e in events
        if e.event_type == "account_status_change"
    ]
    if alerts:
        TenantAlert.objects.bulk_create(alerts)
        logger.warning(
            "webhook.account_status_change", extra={"tenant_id": tenant_id, "count": len(alerts)}
        )


@dataclass(frozen=True)
class EventsStored:
    received: int
    new_event_ids: list[int]
    suppressed: int


def message_events_store(
    *,
    tenant_id: int,
    raw_events: list[dict[str, Any]],
    received_at: datetime.datetime,
    shadow_mode: bool,
    receipt_id: int | None = None,
) -> EventsStored:
    """Dedup, normalise and store raw SendGrid events inside the caller's transaction.

    Duplicates (by ``event_key``) are skipped whether they were stored before, are being
    stored by a concurrent transaction (we wait for it), or repeat within this batch.
    """
    first_by_key: dict[str, dict[str, Any]] = {}
    for raw in raw_events:
        if isinstance(raw, dict):
            first_by_key.setdefault(event_key(raw), raw)
    if not first_by_key:
        return EventsStored(len(raw_events), [], 0)

    with connection.cursor() as cursor:
        new_keys = _keys_claim(cursor, tenant_id, list(first_by_key))
        if not new_keys:
            return EventsStored(len(raw_events), [], 0)
        events = [
            event_normalise(raw, key=key, received_at=received_at)
            for key, raw in first_by_key.items()
            if key in new_keys
        ]
        messages = _messages_attach(tenant_id, events)
        _bot_clicks_flag(events, messages)
        event_ids = _events_insert(cursor, tenant_id, receipt_id, received_at, events)
        _messages_update(cursor, events)
        _alerts_raise(tenant_id, events)
        suppressed = 0
        if not shadow_mode:
            suppressed = _suppressions_add(cursor, tenant_id, events, messages)
    if not shadow_mode:
        # Imported here: the campaign engine imports messaging, not the other way round.
        from campaigns.services import transitions

        transitions.enrollment_events_apply(tenant_id=tenant_id, event_ids=event_ids)
    return EventsStored(len(raw_events), event_ids, suppressed)
