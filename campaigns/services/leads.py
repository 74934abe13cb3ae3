"""Creating, changing and removing leads.

Callers (the API, ``leads_import``) hand in values of the right JSON types; this module owns
the domain rules: the email verdict (``campaigns.validation.email``), the stored forms of
phone, time zone and country, and uniqueness of the email within a tenant. A rule that fails
is reported with the field it concerns, so the API can answer with a field path.
"""

import contextvars
import datetime
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import ProtectedError
from django.utils import timezone
from psycopg import sql

from campaigns.models import Lead
from campaigns.selectors import lead_count, lead_get
from campaigns.validation.email import EmailCheck, Status, email_validate
from campaigns.validation.fields import country_normalize, phone_normalize, timezone_normalize
from outreach.common.errors import ApplicationError
from outreach.tenancy.quotas import QuotaExceeded, tenant_quota_enforce

logger = logging.getLogger(__name__)

# Everything a caller may set on a lead; the rest (validation verdict, timestamps) is ours.
LEAD_INPUT_FIELDS = (
    "email",
    "first_name",
    "last_name",
    "company",
    "title",
    "timezone",
    "country",
    "phone",
    "custom_fields",
    "sms_consent",
    "sms_consent_source",
)
BULK_MAX_ROWS = 10_000
# The source of an unknown or revoked SMS consent set without one.
CONSENT_SOURCE_DEFAULT = "api"
ALREADY_EXISTS = "already exists"
DUPLICATE_IN_BATCH = "duplicate of an earlier row"
_EMAIL_UNIQUE = "lead_email_unique_per_tenant"
_NORMALIZERS: dict[str, Callable[[str], str]] = {
    "phone": phone_normalize,
    "timezone": timezone_normalize,
    "country": country_normalize,
}

_VERDICT_KEYS = (
    "email",
    "validation_status",
    "validation_reason",
    "is_role_address",
    "is_disposable",
    "validated_at",
)

FieldErrors = dict[str, list[str]]


@dataclass(frozen=True)
class LeadBulkSkip:
    """A row not inserted because its email is taken: ``existing_id`` names the tenant's lead
    with it, or ``duplicate_of`` the index of an earlier row of the same batch."""

    index: int
    email: str
    existing_id: int | None = None
    duplicate_of: int | None = None

    @property
    def reason(self) -> str:
        return ALREADY_EXISTS if self.duplicate_of is None else DUPLICATE_IN_BATCH


@dataclass
class LeadBulkResult:
    created: list[tuple[int, int]] = field(default_factory=list)  # (row index, lead id)
    skipped: list[LeadBulkSkip] = field(default_factory=list)
    errors: dict[int, FieldErrors] = field(default_factory=dict)


def _verdict_fields(check: EmailCheck, *, now: datetime.datetime) -> dict[str, Any]:
    return {
        "email": check.email,
        "validation_status": str(check.status),
        "validation_reason": check.reason[:200],
        "is_role_address": check.is_role_address,
        "is_disposable": check.is_disposable,
        "validated_at": now,
    }


def _clean(
    data: Mapping[str, Any], *, now: datetime.datetime
) -> tuple[dict[str, Any], FieldErrors]:
    """Stored values for the fields present in ``data``, or the reasons they cannot be stored."""
    unknown = sorted(set(data) - set(LEAD_INPUT_FIELDS))
    errors: FieldErrors = {key: ["Unknown field."] for key in unknown}
    clean: dict[str, Any] = {}
    for key, value in data.items():
        if key in unknown:
            continue
        if key == "email":
            check = email_validate(email=value)
            if check.status == Status.INVALID:
                errors["email"] = [check.reason]
            else:
                clean.update(_verdict_fields(check, now=now))
        elif key in _NORMALIZERS:
            try:
                clean[key] = _NORMALIZERS[key](value or "")
            except ValueError as exc:
                errors[key] = [str(exc)]
        elif key == "custom_fields":
            clean[key] = dict(value or {})
        elif key == "sms_consent":
            if value not in Lead.SmsConsent.values:
                errors[key] = [f"expected one of {', '.join(Lead.SmsConsent.values)}"]
            else:
                # A consent state is only as good as when it was given: stamp it now.
                clean[key], clean["sms_consent_at"] = value, now
        elif key == "sms_consent_source":
            clean[key] = (value or "").strip()[:100]
        else:
            clean[key] = (value or "").strip()
    if "sms_consent" in clean and not clean.get("sms_consent_source"):
        if clean["sms_consent"] == Lead.SmsConsent.GRANTED:
            # A consent to be texted is only worth what its record proves: each grant says
            # where it came from, in the same request (a source left from before may be a
            # STOP's).
            errors.setdefault("sms_consent_source", []).append(
                'required when sms_consent is "granted": where the consent came from, e.g. web_form'
            )
        else:
            # The source is the record of this state, never of the one it replaces: a
            # revocation sent here keeping a STOP's source (``sms:STOP``) would be undone by
            # the person's next START, against the tenant's own revocation.
            clean["sms_consent_source"] = CONSENT_SOURCE_DEFAULT
    return clean, errors


def _raise_invalid(errors: FieldErrors) -> None:
    path, reasons = next(iter(errors.items()))
    raise ApplicationError(f"{path}: {reasons[0]}", code="invalid", extra=errors)


def _duplicate(email: str) -> ApplicationError:
    reason = f"A lead with the email {email} already exists."
    return ApplicationError(f"email: {reason}", code="duplicate", extra={"email": [reason]})


def _is_email_conflict(exc: IntegrityError) -> bool:
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None) == _EMAIL_UNIQUE


def _lead_quota_enforce(tenant_id: int, *, added: int) -> None:
    """After inserting, in the same transaction: over the tenant's lead quota, roll back (429)."""
    tenant_quota_enforce(
        tenant_id=tenant_id,
        quota="lead_quota",
        added=added,
        count=lambda: lead_count(tenant_id=tenant_id),
    )


def lead_create(*, tenant_id: int, data: Mapping[str, Any]) -> Lead:
    """Create one lead. Invalid fields and an email the tenant already has raise
    ``ApplicationError`` naming the field; role and disposable addresses are stored as
    ``risky``."""
    if "email" not in data:
        _raise_invalid({"email": ["This field is required."]})
    clean, errors = _clean(data, now=timezone.now())
    if errors:
        _raise_invalid(errors)
    try:
        with transaction.atomic(durable=True):
            lead = Lead.objects.create(tenant_id=tenant_id, **clean)
            _lead_quota_enforce(tenant_id, added=1)
    except IntegrityError as exc:
        if _is_email_conflict(exc):
            raise _duplicate(clean["email"]) from None
        raise
    logger.info("lead.created", extra={"tenant_id": tenant_id, "lead_id": lead.pk})
    return lead


def lead_update(*, tenant_id: int, lead_id: int, data: Mapping[str, Any]) -> Lead:
    """Change the given fields. A new email is validated again (a new verdict is stored)."""
    with transaction.atomic(durable=True):
        lead = lead_get(tenant_id=tenant_id, lead_id=lead_id, for_update=True)
        clean, errors = _clean(data, now=timezone.now())
        if errors:
            _raise_invalid(errors)
        if clean.get("email") == lead.email:
            # Same address after normalisation: keep the verdict it already has.
            for key in _VERDICT_KEYS:
                clean.pop(key, None)
        for key, value in clean.items():
            setattr(lead, key, value)
        if clean:
            try:
                with transaction.atomic():
                    lead.save(update_fields=[*clean, "updated_at"])
            except IntegrityError as exc:
                if _is_email_conflict(exc):
                    raise _duplicate(clean["email"]) from None
                raise
    logger.info("lead.updated", extra={"tenant_id": tenant_id, "lead_id": lead.pk})
    return lead


def lead_delete(*, tenant_id: int, lead_id: int) -> None:
    """Delete a lead and its enrollments. A lead we have already emailed stays: the send
    ledger (``Message``) keeps its history, so that is a 409, not a silent cascade."""
    with transaction.atomic(durable=True):
        lead = lead_get(tenant_id=tenant_id, lead_id=lead_id, for_update=True)
        try:
            with transaction.atomic():
                lead.delete()
        except ProtectedError:
            raise ApplicationError(
                "This lead has messages in the send ledger and cannot be deleted; "
                "suppress the address instead to stop all further email.",
                code="in_use",
                status_code=409,
            ) from None
    logger.info("lead.deleted", extra={"tenant_id": tenant_id, "lead_id": lead_id})


_INSERT_COLUMNS = (
    ("email", "text"),
    ("first_name", "text"),
    ("last_name", "text"),
    ("company", "text"),
    ("title", "text"),
    ("timezone", "text"),
    ("country", "text"),
    ("phone", "text"),
    ("custom_fields", "jsonb"),
    ("validation_status", "text"),
    ("validation_reason", "text"),
    ("is_role_address", "boolean"),
    ("is_disposable", "boolean"),
)


def _insert_ignoring_existing(
    *, tenant_id: int, rows: Sequence[dict[str, Any]], now: datetime.datetime
) -> dict[str, int]:
    """Insert rows, skipping emails the tenant already has; returns email → new lead id.

    The rows travel as one JSON document expanded by ``json_to_recordset``: a single round
    trip and a single statement for any number of rows (several times faster than
    per-column arrays, whose client-side encoding dominates at 10,000 rows).
    ``ON CONFLICT DO NOTHING`` makes an address inserted concurrently by someone else a skip
    rather than a failed batch.
    """
    if not rows:
        return {}
    names = [name for name, _ in _INSERT_COLUMNS]
    query = sql.SQL(
        "INSERT INTO {table} (tenant_id, created_at, updated_at, validated_at, {columns}) "
        "SELECT %s, %s, %s, %s, {columns} FROM json_to_recordset(%s::json) AS t({spec}) "
        "ON CONFLICT (tenant_id, email) DO NOTHING RETURNING email, id"
    ).format(
        table=sql.Identifier(Lead._meta.db_table),
        columns=sql.SQL(", ").join(sql.Identifier(name) for name in names),
        spec=sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(pg_type))
            for name, pg_type in _INSERT_COLUMNS
        ),
    )
    defaults = {"custom_fields": {}, "is_role_address": False, "is_disposable": False}
    document = json.dumps(
        [{name: row.get(name, defaults.get(name, "")) for name in names} for row in rows]
    )
    with connection.cursor() as cursor:
        cursor.execute(query.as_string(cursor.connection), [tenant_id, now, now, now, document])
        return dict(cursor.fetchall())


_dry_run_open: contextvars.ContextVar[bool] = contextvars.ContextVar("leads_dry_run", default=False)


@contextmanager
def leads_dry_run() -> Iterator[None]:
    """One transaction around a dry run of many ``lead_bulk_create(dry_run=True)`` calls (an
    import's batches), rolled back when the block ends, however it ends. Inside it, each
    call keeps its rows until then, so later batches see them as the real run would: an
    address repeated across batches is "already present", and the lead quota is counted
    over everything before it."""
    with transaction.atomic(durable=True):
        token = _dry_run_open.set(True)
        try:
            yield
        finally:
            _dry_run_open.reset(token)
            transaction.set_rollback(True)


def lead_bulk_create(
    *, tenant_id: int, rows: Sequence[tuple[int, Mapping[str, Any]]], dry_run: bool = False
) -> LeadBulkResult:
    """Create many leads in one transaction; each row succeeds or fails on its own.

    ``rows`` pairs each row with the index the caller reports it by. A row with an invalid
    field lands in ``errors``; a row whose email the tenant already has (or that repeats an
    earlier row of the same batch) is skipped with a reason; the rest are inserted together.
    Over the tenant's lead quota nothing is inserted (``QuotaExceeded``, 429). ``dry_run``
    does all of it, quota included, and rolls the insert back: at once, or inside
    ``leads_dry_run`` when that block ends.
    """
    if len(rows) > BULK_MAX_ROWS:
        raise ApplicationError(
            f"items: at most {BULK_MAX_ROWS} rows per request.",
            extra={"items": [f"Ensure this field has no more than {BULK_MAX_ROWS} elements."]},
        )
    now = timezone.now()
    result = LeadBulkResult()
    accepted: list[tuple[int, dict[str, Any]]] = []
    first_index_of: dict[str, int] = {}
    for index, data in rows:
        if "email" not in data:
            result.errors[index] = {"email": ["This field is required."]}
            continue
        clean, errors = _clean(data, now=now)
        if errors:
            result.errors[index] = errors
            continue
        email = clean["email"]
        if email in first_index_of:
            result.skipped.append(
                LeadBulkSkip(index=index, email=email, duplicate_of=first_index_of[email])
            )
            continue
        first_index_of[email] = index
        accepted.append((index, clean))

    rehearsal = dry_run and _dry_run_open.get()
    with transaction.atomic(durable=not dry_run):
        inserted = _insert_ignoring_existing(
            tenant_id=tenant_id, rows=[clean for _, clean in accepted], now=now
        )
        try:
            _lead_quota_enforce(tenant_id, added=len(inserted))
        except QuotaExceeded as exc:
            exc.row_errors = result.errors  # the batch's invalid rows, for the caller's report
            raise
        missing = [clean["email"] for _, clean in accepted if clean["email"] not in inserted]
        existing = dict(
            Lead.objects.for_tenant(tenant_id).filter(email__in=missing).values_list("email", "id")
        )
        if dry_run and not rehearsal:
            transaction.set_rollback(True)
    for index, clean in accepted:
        email = clean["email"]
        if email in inserted:
            result.created.append((index, inserted[email]))
        else:
            result.skipped.append(
                LeadBulkSkip(index=index, email=email, existing_id=existing.get(email))
            )
    result.skipped.sort(key=lambda skip: skip.index)
    logger.info(
        "lead.bulk_created",
        extra={
            "tenant_id": tenant_id,
            "created_count": len(result.created),
            "skipped_count": len(result.skipped),
            "rejected_count": len(result.errors),
        },
    )
    return result
