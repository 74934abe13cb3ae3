"""Suppression writes. An address is stored normalised (stripped, lower-case).

Every add is ``INSERT … ON CONFLICT DO NOTHING`` on the unique (tenant, email) key — NULL
tenant is the global scope — so concurrent adds of one address (a webhook retry racing a
one-click unsubscribe) store it once and never fail. Adds take part in the caller's
transaction: the webhook normaliser suppresses in the same transaction as the event.
"""

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction

from campaigns.validation.email import InvalidEmail, email_normalize
from outreach.common.errors import ApplicationError, NotFound
from suppression.models import Suppression
from suppression.unsubscribe import unsubscribe_url_build  # noqa: F401 (the send path's entry)

MAX_EMAIL_LENGTH = 320

# How an erased address is kept (``suppression_hash``); the unsalted form of the first
# erasures is still recognised, never written.
HASH_PREFIX = "hmac-sha256:"
LEGACY_HASH_PREFIX = "sha256:"

# Nothing is sent to an address after its suppression commits: the send path holds the
# address's send lock (shared, per database session) from its suppression check until
# SendGrid answered, and a suppression takes it exclusively before it writes, so it waits for
# sends already under way and every later send sees it. Addresses share 1,024 locks: a bulk
# import of 10,000 addresses takes at most that many.
_SEND_LOCK_NAMESPACE = 0x5355
_SEND_LOCK_BUCKETS = 1024


@dataclass(frozen=True)
class SuppressionEntry:
    email: str
    reason: str
    note: str = ""


def email_normalise(email: str) -> str:
    """The same stored form leads use (ASCII domain, lower case), so a suppression added by
    hand with a Unicode domain still matches the lead it is meant for. An address that does
    not parse is kept stripped and lower-cased: suppressing too much is the safe side."""
    try:
        return email_normalize(email=email)
    except InvalidEmail:
        return email.strip().lower()


def _validate(*, email: str, reason: str, source: str) -> None:
    if (
        not email
        or ("@" not in email and not email.startswith((HASH_PREFIX, LEGACY_HASH_PREFIX)))
        or len(email) > MAX_EMAIL_LENGTH
    ):
        raise ApplicationError(
            "Enter a valid email address.", extra={"email": ["Enter a valid email address."]}
        )
    if reason not in Suppression.Reason.values:
        raise ApplicationError(
            f"Unknown suppression reason {reason!r}.",
            extra={"reason": [f"expected one of {', '.join(Suppression.Reason.values)}"]},
        )
    if source not in Suppression.Source.values:
        raise ApplicationError(
            f"Unknown suppression source {source!r}.",
            extra={"source": [f"expected one of {', '.join(Suppression.Source.values)}"]},
        )


def suppression_bulk_add(
    *, tenant_id: int | None, entries: Iterable[SuppressionEntry], source: str
) -> list[str]:
    """Suppress many addresses in one statement; returns the addresses newly suppressed.

    ``tenant_id=None`` writes the global scope. Duplicates in ``entries`` keep the first.
    Rows are inserted in email order so two concurrent callers lock keys in the same order.
    """
    unique: dict[str, SuppressionEntry] = {}
    for entry in entries:
        email = email_normalise(entry.email)
        _validate(email=email, reason=entry.reason, source=source)
        unique.setdefault(email, SuppressionEntry(email, entry.reason, entry.note))
    if not unique:
        return []
    emails = sorted(unique)
    scope = Suppression.Scope.GLOBAL if tenant_id is None else Suppression.Scope.TENANT
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT pg_advisory_xact_lock(%s, b.bucket)
            FROM (SELECT DISTINCT hashtext(e) & %s AS bucket FROM unnest(%s::text[]) AS e
                  ORDER BY bucket) AS b
            """,
            [_SEND_LOCK_NAMESPACE, _SEND_LOCK_BUCKETS - 1, emails],
        )
        cursor.execute(
            """
            INSERT INTO suppression_suppression (tenant_id, scope, email, reason, source, note,
                                                 created_at)
            SELECT %s, %s, e.email, e.reason, %s, e.note, now()
            FROM unnest(%s::text[], %s::text[], %s::text[]) WITH ORDINALITY
                AS e(email, reason, note, n)
            ORDER BY e.n
            ON CONFLICT (tenant_id, email) DO NOTHING
            RETURNING email
            """,
            [
                tenant_id,
                scope,
                source,
                emails,
                [unique[e].reason for e in emails],
                [unique[e].note for e in emails],
            ],
        )
        return [row[0] for row in cursor.fetchall()]


def suppression_add(
    *, tenant_id: int | None, email: str, reason: str, source: str, note: str = ""
) -> bool:
    """Suppress one address; True when it was not suppressed in that scope before."""
    created = suppression_bulk_add(
        tenant_id=tenant_id,
        entries=[SuppressionEntry(email=email, reason=reason, note=note)],
        source=source,
    )
    return bool(created)


def suppression_send_lock(*, email: str) -> bool:
    """Take ``email``'s send lock (shared, held by this database session) unless a suppression
    of it is being written right now. Every True must be paired with
    ``suppression_send_unlock`` once the provider call for it returned."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_try_advisory_lock_shared(%s, hashtext(%s) & %s)",
            [_SEND_LOCK_NAMESPACE, email_normalise(email), _SEND_LOCK_BUCKETS - 1],
        )
        return bool(cursor.fetchone()[0])


def suppression_send_unlock(*, email: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_unlock_shared(%s, hashtext(%s) & %s)",
            [_SEND_LOCK_NAMESPACE, email_normalise(email), _SEND_LOCK_BUCKETS - 1],
        )


def suppression_send_lock_many(*, emails: list[str]) -> set[str]:
    """``suppression_send_lock`` for a batch in one query; returns the addresses (as given)
    whose lock was taken. Each must be released with ``suppression_send_unlock_many``."""
    if not emails:
        return set()
    normalised = [email_normalise(email) for email in emails]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT pg_try_advisory_lock_shared(%s, hashtext(e.email) & %s)
            FROM unnest(%s::text[]) WITH ORDINALITY AS e(email, n)
            ORDER BY e.n
            """,
            [_SEND_LOCK_NAMESPACE, _SEND_LOCK_BUCKETS - 1, normalised],
        )
        taken = [row[0] for row in cursor.fetchall()]
    return {email for email, ok in zip(emails, taken, strict=True) if ok}


def suppression_send_unlock_many(*, emails: list[str]) -> None:
    """Release send locks taken by this session, one release per entry of ``emails``."""
    if not emails:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_unlock_shared(%s, hashtext(e) & %s) FROM unnest(%s::text[]) AS e",
            [_SEND_LOCK_NAMESPACE, _SEND_LOCK_BUCKETS - 1, [email_normalise(e) for e in emails]],
        )


def suppression_remove(*, tenant_id: int, suppression_id: int) -> None:
    """Lift a tenant-scope suppression. Global entries are read-only through a tenant."""
    entry = Suppression.objects.filter(pk=suppression_id).applicable_to(tenant_id).first()
    if entry is None:
        raise NotFound("Suppression not found.")
    if entry.tenant_id is None:
        raise ApplicationError(
            "Global suppressions are managed by the platform operator.",
            code="read_only",
            status_code=403,
        )
    Suppression.objects.filter(pk=entry.pk, tenant_id=tenant_id).delete()


def suppression_one_click_apply(*, tenant_id: int, email: str, message_public_id: str = "") -> bool:
    """Honour an RFC 8058 one-click unsubscribe (always, shadow mode or not: it is the
    recipient's legal opt-out). True when the address was not suppressed before."""
    note = f"one-click unsubscribe from message {message_public_id}" if message_public_id else ""
    return suppression_add(
        tenant_id=tenant_id,
        email=email,
        reason=Suppression.Reason.UNSUBSCRIBE,
        source=Suppression.Source.ONE_CLICK,
        note=note,
    )


def suppression_hash(email: str) -> str:
    """How an erased address stays suppressed: an HMAC-SHA256 of its normalised form under
    the server's ``SUPPRESSION_HASH_KEYS[0]``. Without the key nobody can confirm a guessed
    address against it (a plain SHA-256 of an address is found by hashing candidates). The
    send path's check compares addresses and their hashes (``suppression_hashes``), so the
    person is never mailed again although the address itself is gone."""
    return suppression_hashes(email)[0]


def suppression_hashes(email: str) -> list[str]:
    """Every stored form an erased ``email`` may have: its HMAC under each configured key
    (the first is what is written now), then the unsalted SHA-256 of early erasures."""
    normalised = email_normalise(email).encode()
    keys = settings.SUPPRESSION_HASH_KEYS
    if not keys:
        raise ImproperlyConfigured("SUPPRESSION_HASH_KEYS is empty")
    return [
        *(
            HASH_PREFIX + hmac.new(key.encode(), normalised, hashlib.sha256).hexdigest()
            for key in keys
        ),
        LEGACY_HASH_PREFIX + hashlib.sha256(normalised).hexdigest(),
    ]


def suppression_keep_as_hash(*, tenant_id: int, email: str, note: str = "") -> str:
    """For an erasure request: the tenant's suppression of ``email`` keeps only the hash
    (one is added if there was none), in the caller's transaction. Returns the hash."""
    digest = suppression_hash(email)
    normalised = email_normalise(email)
    with transaction.atomic():
        existing = Suppression.objects.filter(tenant_id=tenant_id, email=normalised).first()
        Suppression.objects.filter(tenant_id=tenant_id, email=normalised).delete()
        suppression_bulk_add(
            tenant_id=tenant_id,
            entries=[
                SuppressionEntry(
                    email=digest,
                    reason=existing.reason if existing else Suppression.Reason.MANUAL,
                    note=note[:500],
                )
            ],
            source=existing.source if existing else Suppression.Source.ADMIN,
        )
    return digest


# --------------------------------------------------------------------------- phone numbers
#
# The SMS twin of the send lock above: the SMS send path holds a number's lock (shared) from
# its suppression check until Twilio answered, and a STOP takes it exclusively before writing
# the suppression, so a text racing a STOP either went out before the STOP committed or sees
# it. Separate lock space: a number and an address never share a lock.
_PHONE_LOCK_NAMESPACE = 0x534D
_PHONE_LOCK_BUCKETS = 1024


def phone_send_lock_many(*, phones: list[str]) -> set[str]:
    """Take the send lock of each number (shared, held by this database session) unless a
    suppression of it is being written; returns the numbers whose lock was taken. Release
    each with ``phone_send_unlock_many`` once the provider call for it returned."""
    if not phones:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT pg_try_advisory_lock_shared(%s, hashtext(p.phone) & %s)
            FROM unnest(%s::text[]) WITH ORDINALITY AS p(phone, n)
            ORDER BY p.n
            """,
            [_PHONE_LOCK_NAMESPACE, _PHONE_LOCK_BUCKETS - 1, phones],
        )
        taken = [row[0] for row in cursor.fetchall()]
    return {phone for phone, ok in zip(phones, taken, strict=True) if ok}


def phone_send_unlock_many(*, phones: list[str]) -> None:
    if not phones:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_unlock_shared(%s, hashtext(p) & %s) FROM unnest(%s::text[]) AS p",
            [_PHONE_LOCK_NAMESPACE, _PHONE_LOCK_BUCKETS - 1, phones],
        )


def _phone_lock_exclusive(phone: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s) & %s)",
            [_PHONE_LOCK_NAMESPACE, phone, _PHONE_LOCK_BUCKETS - 1],
        )


def phone_suppression_add(*, tenant_id: int, phone: str, reason: str, note: str = "") -> bool:
    """Stop texting ``phone`` for this tenant, from the moment this transaction commits: it
    first waits for texts to the number already under way. True when it was not suppressed.
    Joins the caller's transaction (a STOP is stored with its receipt)."""
    from suppression.models import PhoneSuppression

    if reason not in PhoneSuppression.Reason.values:
        raise ApplicationError(
            f"Unknown suppression reason {reason!r}.",
            extra={"reason": [f"expected one of {', '.join(PhoneSuppression.Reason.values)}"]},
        )
    with transaction.atomic():
        _phone_lock_exclusive(phone)
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO suppression_phonesuppression (tenant_id, phone, reason, note,
                                                          created_at)
                VALUES (%s, %s, %s, %s, now())
                ON CONFLICT (tenant_id, phone) DO NOTHING
                """,
                [tenant_id, phone, reason, note[:500]],
            )
            return cursor.rowcount == 1


def phone_suppression_remove(*, tenant_id: int, phone: str) -> bool:
    """Text ``phone`` again, whatever suppressed it (an operator removing the entry). True
    when it was suppressed."""
    from suppression.models import PhoneSuppression

    with transaction.atomic():
        _phone_lock_exclusive(phone)
        deleted, _ = PhoneSuppression.objects.filter(tenant_id=tenant_id, phone=phone).delete()
    return bool(deleted)


def phone_suppression_lift(*, tenant_id: int, phone: str) -> bool:
    """The recipient texted START: lift the suppression their own opt-out left (a STOP, or
    Twilio's 21610, a STOP sent to the carrier). An operator's ``manual`` block is the
    tenant's decision, not theirs, and stays. True when the number may be texted again (no
    suppression left), False when a block remains. Takes the number's lock like
    ``phone_suppression_add`` and joins the caller's transaction."""
    from suppression.models import PhoneSuppression

    lifted_by_start = [PhoneSuppression.Reason.STOP, PhoneSuppression.Reason.CARRIER_OPT_OUT]
    with transaction.atomic():
        _phone_lock_exclusive(phone)
        entries = PhoneSuppression.objects.filter(tenant_id=tenant_id, phone=phone)
        entries.filter(reason__in=lifted_by_start).delete()
        return not entries.exists()


def suppressions_tenant_delete(*, tenant_id: int) -> int:
    """A deleted tenant's own suppressions (the global list is not the tenant's: it stays)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM suppression_suppression WHERE tenant_id = %s", [tenant_id])
        return cursor.rowcount
