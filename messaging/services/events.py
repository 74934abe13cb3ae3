"""Event Webhook normalisation: a stored receipt becomes deduplicated, normalised events.

One receipt is processed in one transaction, in a fixed lock order so concurrent workers
(SendGrid posts from many servers at once, and re-delivers some events dozens of times)
never deadlock each other:

1. the receipt row (``FOR UPDATE SKIP LOCKED``: a receipt being processed is skipped);
2. dedup keys, ``INSERT … ON CONFLICT DO NOTHING RETURNING`` in sorted order: a key another
   transaction holds makes us wait for it, then yields nothing, so each event is stored once;
3. only the new events go into the partitioned event table (one multi-row insert);
4. the messages whose status rises (or that lack an id the events carry), locked in id
   order (``FOR NO KEY UPDATE``), then one bulk UPDATE that only moves status forward;
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
  and ``smtp_id`` are filled from the events, so the send ledger never resends it. One
  already marked ``needs_review`` (the events came after the grace period) is settled the
  same way, and its paused enrollment goes on as after an operator's "it WAS sent".
- Shadow mode (``Tenant.webhook_shadow_mode``): events are stored, messages' statuses move
  and account alerts are raised (that is normalisation), but no suppression is added and
  the campaign engine is not called. With the ``event_branching`` flag off
  (``outreach.tenancy.flags``) suppressions are added but the engine is not called either.
- ``Message.last_event_at`` is the time of the latest event that changed the message
  (status or ids). Repeats that change nothing do not rewrite the row; they are in the
  event table like every other event.
- An event of an erased lead's message (its ``to_email`` is the erasure's placeholder, read
  on the message rows loaded anyway) is stored without personal data: no address, payload
  ``{"erased": true}``, and a suppression only as the keyed hash. ``EventsStored.erased``
  names the addresses such events carried (duplicates included), so the receipt's body is
  cleaned in the same transaction (``messaging.services.receipts``).
"""

import datetime
import logging
import re
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection
from django.utils import timezone

from messaging.models import Message
from messaging.services.engagement import StoredEvent
from messaging.services.erasure import EMAIL_ERASED_SUFFIX, email_is_erased
from messaging.webhooks.sendgrid_events import (
    NormalisedEvent,
    clean_text,
    event_key,
    event_normalise,
    jsonb_text,
    message_ref_of,
)
from outreach.tenancy.flags import Flag, tenant_flag_enabled
from outreach.tenancy.models import TenantAlert
from suppression.models import Suppression
from suppression.services import SuppressionEntry, suppression_bulk_add, suppression_hash

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
    Message.Status.UNDELIVERED: 79,  # SMS only (messaging.services.sms_events)
    Message.Status.DROPPED: 80,
    Message.Status.BOUNCED: 81,
    Message.Status.UNSUBSCRIBED: 82,
    Message.Status.COMPLAINED: 83,
}

STATUS_FOR_EVENT: dict[str, str] = {
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


@contextmanager
def server_cursor() -> Iterator[psycopg.Cursor]:
    """A cursor on Django's connection (same transaction) with server-side binding.

    Django binds parameters client-side, quoting every element of a large array in Python:
    for a 1,000-event batch that costs more than the whole insert. Bulk statements here bind
    server-side instead (psycopg's C dumpers, no quoting). Errors still surface as Django's database errors.
    """
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        yield cursor


@dataclass(slots=True)
class _MessageRow:
    """A message touched by the batch, as read (without a lock) before the update."""

    id: int
    provider_message_id: str
    enrollment_id: int | None
    step_seq: int
    to_email: str
    status_rank: int
    smtp_id: str
    sent_at: datetime.datetime | None


_MESSAGES_BY_PUBLIC_ID = """
    SELECT public_id::text, id, provider_message_id, enrollment_id, step_seq, lower(to_email),
           status_rank, smtp_id, sent_at
    FROM messaging_message
    WHERE tenant_id = %s AND public_id = ANY(%b::text[]::uuid[])
"""
_MESSAGES_BY_PROVIDER_ID = """
    SELECT id, provider_message_id, enrollment_id, step_seq, lower(to_email), status_rank,
           smtp_id, sent_at
    FROM messaging_message
    WHERE tenant_id = %s AND provider_message_id <> '' AND provider_message_id = ANY(%b::text[])
"""


def _messages_attach(
    cursor, tenant_id: int, events: list[NormalisedEvent]
) -> dict[int, _MessageRow]:
    """Find the batch's messages and attach each event to its message."""
    found: dict[int, _MessageRow] = {}
    refs = list({e.message_ref for e in events if e.message_ref is not None})
    if refs:
        cursor.execute(_MESSAGES_BY_PUBLIC_ID, [tenant_id, refs], binary=True)
        by_public = {}
        for public_id, *columns in cursor.fetchall():
            by_public[public_id] = found[columns[0]] = _MessageRow(*columns)
        for event in events:
            row = by_public.get(event.message_ref) if event.message_ref else None
            if row is not None:
                event.message_id, event.enrollment_id = row.id, row.enrollment_id

    prefixes = sorted({e.sg_prefix for e in events if e.message_id is None and e.sg_prefix})
    if prefixes:
        cursor.execute(_MESSAGES_BY_PROVIDER_ID, [tenant_id, prefixes], binary=True)
        by_prefix: dict[str, list[_MessageRow]] = defaultdict(list)
        for columns in cursor.fetchall():
            row = found.setdefault(columns[0], _MessageRow(*columns))
            by_prefix[row.provider_message_id].append(row)
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
        SELECT %s, k, now() FROM unnest(%b::text[]) AS k ORDER BY k COLLATE "C"
        ON CONFLICT (tenant_id, provider_event_id) DO NOTHING
        RETURNING provider_event_id
        """,
        [tenant_id, keys],
    )
    return {row[0] for row in cursor.fetchall()}


def _events_insert(
    cursor, tenant_id: int, receipt_id: int | None, received_at, events: list[NormalisedEvent]
) -> None:
    """One INSERT for the batch, each event given its id. Rows travel as one JSON document
    (a single C-encoded dump, parsed once by Postgres) rather than a dozen arrays dumped
    element by element."""
    rows = [
        {
            "m": e.message_id,
            "n": e.enrollment_id,
            "t": e.event_type,
            "o": e.occurred_at,
            "k": e.key,
            "p": e.provider_message_id,
            "e": e.email,
            "mo": e.is_machine_open,
            "bc": e.is_bot_click,
            "r": e.raw,
        }
        for e in events
    ]
    cursor.execute(
        """
        INSERT INTO messaging_messageevent
            (tenant_id, message_id, enrollment_id, event_type, occurred_at, received_at,
             provider_event_id, provider_message_id, email, is_machine_open, is_bot_click,
             receipt_id, raw)
        SELECT %s, u.m, u.n, u.t, u.o, %s, u.k, u.p, u.e, u.mo, u.bc, %s, u.r
        FROM jsonb_to_recordset(%s::jsonb) AS u(m bigint, n bigint, t text, o timestamptz,
             k text, p text, e text, mo boolean, bc boolean, r jsonb)
        RETURNING provider_event_id, id
        """,
        [tenant_id, received_at, receipt_id, jsonb_text(rows, rfc3339=True)],
    )
    ids = dict(cursor.fetchall())  # keys are unique within a batch (claimed once each)
    for event in events:
        event.id = ids[event.key]


# Event type -> (message status, its rank); a machine open or a bot click proves delivery only.
_STATUS_RANK_OF_EVENT: dict[str, tuple[str, int]] = {
    event_type: (status, MESSAGE_STATUS_RANK[status])
    for event_type, status in STATUS_FOR_EVENT.items()
}
_DELIVERED_RANK = (Message.Status.DELIVERED, MESSAGE_STATUS_RANK[Message.Status.DELIVERED])
_NO_STATUS = ("", -1)


def _error_of(event: NormalisedEvent | None) -> tuple[str, str]:
    if event is None:
        return "", ""
    raw = event.raw
    if event.event_type in ("bounce", "blocked"):
        code = f"{event.event_type}:{clean_text(raw.get('status'), 20)}".rstrip(":")
        return code[:64], clean_text(raw.get("reason") or raw.get("response"), 2000)
    if event.event_type == "dropped":
        return "dropped", clean_text(raw.get("reason"), 2000)
    return "", ""


@dataclass(slots=True)
class _MessageBest:
    """What a batch's events say of one message: the highest status (and the event that
    set it, for its error), the ids they carry, and when the first and last happened."""

    status: str
    rank: int
    ranked_by: NormalisedEvent | None
    smtp_id: str
    pmid: str
    first: datetime.datetime
    last: datetime.datetime


def _messages_update(
    cursor, events: list[NormalisedEvent], messages: dict[int, _MessageRow]
) -> list[int]:
    """One UPDATE for the messages the batch changes; the status rank only grows.

    A message is rewritten only when its status rises or an id it lacks is filled in
    (``smtp_id``, ``provider_message_id``, ``sent_at`` for a reconciled send); its
    ``last_event_at`` then moves to the batch's latest event. Repeats (another open of an
    opened message) neither lock nor rewrite the row: with fourteen indexes on the table,
    that halves the write cost of a realistic event stream, and the event table has every
    event.

    Returns the messages that were ``needs_review`` and that these events prove sent: their
    enrollments wait for an operator, who no longer needs to decide (see the caller).
    """
    best: dict[int, _MessageBest] = {}
    for event in events:
        mid = event.message_id
        if mid is None:
            continue
        if event.is_machine_open or event.is_bot_click:
            status, rank = _DELIVERED_RANK
        else:
            status, rank = _STATUS_RANK_OF_EVENT.get(event.event_type, _NO_STATUS)
        state = best.get(mid)
        if state is None:
            best[mid] = _MessageBest(
                status,
                rank,
                event if rank >= 0 else None,
                event.smtp_id,
                event.sg_prefix[:200],
                event.occurred_at,
                event.occurred_at,
            )
            continue
        if rank > state.rank:
            state.status, state.rank, state.ranked_by = status, rank, event
        if event.smtp_id and (not state.smtp_id or event.event_type == "processed"):
            state.smtp_id = event.smtp_id
        if event.sg_prefix and not state.pmid:
            state.pmid = event.sg_prefix[:200]
        if event.occurred_at < state.first:
            state.first = event.occurred_at
        elif event.occurred_at > state.last:
            state.last = event.occurred_at
    if not best:
        return []
    # The state read without a lock can only be behind: a rank never falls and an id once
    # filled stays, so a row that needs nothing by that state needs nothing now. Only rows
    # that change are locked, in id order (two batches never deadlock), and the UPDATE
    # re-checks rank and emptiness against the locked row.
    accepted = MESSAGE_STATUS_RANK[Message.Status.ACCEPTED]
    changes: list[dict[str, Any]] = []
    for mid in sorted(best):
        current, state = messages[mid], best[mid]
        rises = state.rank > current.status_rank
        fills = (
            state.smtp_id if not current.smtp_id and state.smtp_id else None,
            state.pmid if not current.provider_message_id and state.pmid else None,
            state.first if current.sent_at is None and state.rank >= accepted else None,
        )
        if not rises and fills == (None, None, None):
            continue  # a repeat (another open of an opened message): the row stays as it is
        code, error = _error_of(state.ranked_by)
        changes.append(
            {
                "id": mid,
                "status": state.status if rises else None,
                "rank": state.rank if rises else -1,
                "code": code or None,
                "error": error or None,
                "smtp_id": fills[0],
                "pmid": fills[1],
                "sent_at": fills[2],
                "last_at": state.last,
            }
        )
    if not changes:
        return []
    cursor.execute(
        "SELECT id, status FROM messaging_message WHERE id = ANY(%b::bigint[]) ORDER BY id"
        " FOR NO KEY UPDATE",
        [[change["id"] for change in changes]],
    )
    proven_sent = {c["id"] for c in changes if c["rank"] >= accepted}
    reviewed = [
        mid
        for mid, status in cursor.fetchall()
        if status == Message.Status.NEEDS_REVIEW and mid in proven_sent
    ]
    # ``updated_at`` moves with the status only, so a row that only gets an id filled in
    # keeps its indexed values and can be a HOT update (no new index entries).
    cursor.execute(
        """
        UPDATE messaging_message AS m SET
            status = CASE WHEN v.rank > m.status_rank THEN v.status ELSE m.status END,
            error_code = CASE WHEN v.rank > m.status_rank AND v.code IS NOT NULL
                              THEN v.code ELSE m.error_code END,
            error_message = CASE WHEN v.rank > m.status_rank AND v.error IS NOT NULL
                                 THEN v.error ELSE m.error_message END,
            updated_at = CASE WHEN v.rank > m.status_rank THEN now() ELSE m.updated_at END,
            status_rank = GREATEST(m.status_rank, v.rank),
            smtp_id = CASE WHEN m.smtp_id = '' THEN COALESCE(v.smtp_id, '') ELSE m.smtp_id END,
            provider_message_id = CASE WHEN m.provider_message_id = ''
                                       THEN COALESCE(v.pmid, '') ELSE m.provider_message_id END,
            sent_at = COALESCE(m.sent_at, v.sent_at),
            last_event_at = GREATEST(m.last_event_at, v.last_at)
        FROM jsonb_to_recordset(%s::jsonb) AS v(id bigint, status text, rank int, code text,
             error text, smtp_id text, pmid text, sent_at timestamptz, last_at timestamptz)
        WHERE m.id = v.id
        """,
        [jsonb_text(changes, rfc3339=True)],
    )
    return reviewed


def _soft_bounce_repeats(cursor, tenant_id: int, events: list[NormalisedEvent]) -> set[str]:
    """Addresses whose blocked bounces within the window reached the threshold.

    Counting happens under a per-address advisory lock, taken after this transaction stored
    its own events: a concurrent batch holding the lock commits first, and our count (a new
    snapshot per statement) then includes its events, so a threshold crossed by two batches
    at once is still seen. The count reads the partial index of blocked events by address.
    """
    emails = sorted({e.email for e in events if e.event_type == "blocked" and e.email})
    if not emails:
        return set()
    since = timezone.now() - datetime.timedelta(days=settings.SUPPRESSION_SOFT_BOUNCE_WINDOW_DAYS)
    cursor.execute(
        "SELECT pg_advisory_xact_lock(%s, hashtext(%s || ':' || e))"
        ' FROM unnest(%b::text[]) AS e ORDER BY e COLLATE "C"',
        [_ADVISORY_NAMESPACE, str(tenant_id), emails],
    )
    cursor.execute(
        "SELECT email, count(*) FROM messaging_messageevent"
        " WHERE tenant_id = %s AND event_type = 'blocked' AND email = ANY(%b::text[])"
        " AND occurred_at >= %s GROUP BY email",
        [tenant_id, emails, since],
    )
    threshold = settings.SUPPRESSION_SOFT_BOUNCE_THRESHOLD
    return {email for email, count in cursor.fetchall() if count >= threshold}


def _suppression_reason(event: NormalisedEvent) -> str | None:
    if event.event_type == "dropped":
        return _SUPPRESSION_FOR_DROP_REASON.get(str(event.raw.get("reason", "")).lower())
    return _SUPPRESSION_FOR_EVENT.get(event.event_type)


def _erased_scrub(
    events: list[NormalisedEvent], messages: dict[int, _MessageRow]
) -> tuple[dict[str, str], list[SuppressionEntry]]:
    """Strip the personal data of events of an erased lead's messages (or carrying an erased
    placeholder): returns the addresses they carried → the placeholder, and the hashed
    suppressions they call for. Costs nothing unless the batch touches an erased message."""
    erased_messages = {
        mid for mid, row in messages.items() if row.to_email.endswith(EMAIL_ERASED_SUFFIX)
    }
    found: dict[str, str] = {}
    hashed: list[SuppressionEntry] = []
    for event in events:
        if event.message_id in erased_messages:
            placeholder = messages[event.message_id].to_email
        elif event.message_id is None and event.email.endswith(EMAIL_ERASED_SUFFIX):
            placeholder = event.email
        else:
            continue
        if event.email and not email_is_erased(event.email):
            found[event.email] = placeholder
            reason = _suppression_reason(event)
            if reason:
                hashed.append(
                    SuppressionEntry(
                        email=suppression_hash(event.email),
                        reason=reason,
                        note=f"SendGrid {event.event_type} {event.key} (erased lead)",
                    )
                )
        event.email, event.user_agent, event.raw = "", "", {"erased": True}
    return found, hashed


def _erased_in_duplicates(cursor, tenant_id: int, raws: list[dict[str, Any]]) -> dict[str, str]:
    """The addresses that repeated events (already stored) carry for erased leads' messages:
    one query, and only for a batch with repeats, so a redelivered body is cleaned too."""
    refs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for raw in raws:
        ref = message_ref_of(raw)
        if ref is not None:
            refs[ref].append(raw)
    if not refs:
        return {}
    # Most tenants never erased anyone: one probe of a partial index answers that (the
    # pattern is the index's predicate, written out so the planner can match it).
    cursor.execute(
        "SELECT EXISTS (SELECT 1 FROM messaging_message"
        " WHERE tenant_id = %s AND to_email LIKE '%%@erased.invalid')",
        [tenant_id],
    )
    if not cursor.fetchone()[0]:
        return {}
    cursor.execute(
        "SELECT public_id::text, lower(to_email) FROM messaging_message"
        " WHERE tenant_id = %s AND public_id = ANY(%b::text[]::uuid[]) AND to_email LIKE %s",
        [tenant_id, list(refs), "%" + EMAIL_ERASED_SUFFIX],
        binary=True,
    )
    found: dict[str, str] = {}
    for public_id, placeholder in cursor.fetchall():  # rare: only erased leads' messages
        for raw in refs[public_id]:
            email = clean_text(raw.get("email"), 320).strip().lower()
            if email and not email_is_erased(email):
                found[email] = placeholder
    return found


def _suppressions_add(
    cursor, tenant_id: int, events: list[NormalisedEvent], hashed: list[SuppressionEntry]
) -> int:
    entries: dict[str, SuppressionEntry] = {entry.email: entry for entry in hashed}
    for event in events:
        if not event.email:
            continue
        reason = _suppression_reason(event)
        if reason and event.email not in entries:
            entries[event.email] = SuppressionEntry(
                email=event.email, reason=reason, note=f"SendGrid {event.event_type} {event.key}"
            )
    for email in _soft_bounce_repeats(cursor, tenant_id, events):
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
    # Addresses of erased leads the events carried → their placeholder (see the module).
    erased: dict[str, str] = field(default_factory=dict)


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

    with server_cursor() as cursor:
        new_keys = _keys_claim(cursor, tenant_id, list(first_by_key))
        erased: dict[str, str] = {}
        if len(new_keys) < len(first_by_key):
            repeats = [raw for key, raw in first_by_key.items() if key not in new_keys]
            erased = _erased_in_duplicates(cursor, tenant_id, repeats)
        if not new_keys:
            return EventsStored(len(raw_events), [], 0, erased)
        events = [
            event_normalise(raw, key=key, received_at=received_at)
            for key, raw in first_by_key.items()
            if key in new_keys
        ]
        messages = _messages_attach(cursor, tenant_id, events)
        _bot_clicks_flag(events, messages)
        found, hashed = _erased_scrub(events, messages)
        erased.update(found)
        _events_insert(cursor, tenant_id, receipt_id, received_at, events)
        reviewed = _messages_update(cursor, events, messages)
        _alerts_raise(tenant_id, events)
        suppressed = 0
        if not shadow_mode:
            suppressed = _suppressions_add(cursor, tenant_id, events, hashed)
    if reviewed and not shadow_mode:
        # Events proved that a message awaiting review was sent: its enrollment goes on, as
        # an operator's "it WAS sent" would do. Without this, a late event moved the message
        # out of the review list and left its enrollment paused for good.
        from messaging.services.review import messages_review_settle

        messages_review_settle(tenant_id=tenant_id, message_ids=reviewed)
    if not shadow_mode and tenant_flag_enabled(tenant_id=tenant_id, flag=Flag.EVENT_BRANCHING):
        # Imported here: the campaign engine imports messaging, not the other way round.
        from campaigns.services import transitions

        on_campaigns = [
            StoredEvent(
                event_id=event.id,
                event_type=event.event_type,
                occurred_at=event.occurred_at,
                machine_open=event.is_machine_open,
                bot_click=event.is_bot_click,
                message_id=event.message_id,
                message_step_seq=messages[event.message_id].step_seq,
                enrollment_id=event.enrollment_id,
            )
            for event in events
            if event.message_id is not None and event.enrollment_id is not None
        ]
        if on_campaigns:
            transitions.enrollment_events_apply(tenant_id=tenant_id, events=on_campaigns)
    return EventsStored(len(raw_events), [event.id for event in events], suppressed, erased)
