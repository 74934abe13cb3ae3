"""Creating, changing and removing sender identities (an AE's from-address and its limits).

The table's check constraints (window start before end, hourly cap within daily cap) are
the last line of defence; this module checks the same rules on the merged state first so a
caller gets a 400 naming the field instead of an IntegrityError.
"""

import logging
import re
from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from campaigns.validation.email import InvalidEmail, email_normalize
from campaigns.validation.fields import phone_normalize, timezone_normalize
from messaging.models import SenderIdentity
from messaging.selectors import sender_identity_get
from outreach.common.errors import ApplicationError
from outreach.tenancy.audit import audit_record

logger = logging.getLogger(__name__)

IDENTITY_INPUT_FIELDS = (
    "from_name",
    "from_email",
    "reply_to",
    "signature",
    "owner_name",
    "owner_email",
    "daily_cap",
    "hourly_cap",
    "warmup_enabled",
    "warmup_start_volume",
    "warmup_daily_increase",
    "warmup_ceiling",
    "warmup_started_on",
    "window_days",
    "window_start",
    "window_end",
    "timezone",
    "paused",
    "sms_from_number",
    "sms_messaging_service_sid",
    "sms_per_second",
    "sms_daily_cap",
)
_EMAILS = ("from_email", "reply_to", "owner_email")
_FROM_UNIQUE = "identity_from_unique_per_tenant"

FieldErrors = dict[str, list[str]]


def _apply(identity: SenderIdentity, data: Mapping[str, Any]) -> FieldErrors:
    """Set the given fields on ``identity`` in their stored form; return what is wrong."""
    errors: FieldErrors = {}
    for key in sorted(set(data) - set(IDENTITY_INPUT_FIELDS)):
        errors[key] = ["Unknown field."]
    for key, value in data.items():
        if key not in IDENTITY_INPUT_FIELDS:
            continue
        if key in _EMAILS:
            if key != "from_email" and not (value or "").strip():
                value = ""
            else:
                try:
                    value = email_normalize(email=value)
                except InvalidEmail as exc:
                    errors[key] = [str(exc)]
                    continue
        elif key == "timezone":
            try:
                value = timezone_normalize(value or "")
            except ValueError as exc:
                errors[key] = [str(exc)]
                continue
            if not value:
                errors[key] = ["This field may not be blank."]
                continue
        elif key == "window_days":
            if len(set(value)) != len(value):
                errors[key] = ["Each weekday may appear only once."]
                continue
            value = sorted(value)
        elif key in {"from_name", "owner_name"}:
            value = value.strip()
        elif key == "sms_from_number":
            try:
                value = phone_normalize(value or "")
            except ValueError as exc:
                errors[key] = [str(exc)]
                continue
        elif key == "sms_messaging_service_sid":
            value = (value or "").strip()
            if value and not re.fullmatch(r"MG[0-9a-fA-F]{32}", value):
                errors[key] = ["Expected a Messaging Service SID: MG and 32 hex digits."]
                continue
        setattr(identity, key, value)
    return errors


def _check(identity: SenderIdentity) -> FieldErrors:
    """Rules across fields, reported on the field a caller would change to fix them."""
    errors: FieldErrors = {}
    if not identity.from_name:
        errors["from_name"] = ["This field may not be blank."]
    if identity.hourly_cap > identity.daily_cap:
        errors["hourly_cap"] = [f"Must not exceed daily_cap ({identity.daily_cap})."]
    if identity.window_start >= identity.window_end:
        errors["window_end"] = [
            f"Must be later than window_start ({identity.window_start:%H:%M}); "
            "a window cannot span midnight."
        ]
    if not identity.window_days:
        errors["window_days"] = ["At least one weekday is required."]
    elif any(not 0 <= day <= 6 for day in identity.window_days):
        errors["window_days"] = ["Weekdays are 0 (Monday) to 6 (Sunday)."]
    if identity.warmup_start_volume > identity.warmup_ceiling:
        errors["warmup_start_volume"] = [
            f"Must not exceed warmup_ceiling ({identity.warmup_ceiling})."
        ]
    return errors


def _raise_invalid(errors: FieldErrors) -> None:
    path, reasons = next(iter(errors.items()))
    raise ApplicationError(f"{path}: {reasons[0]}", code="invalid", extra=errors)


def _save(identity: SenderIdentity, **kwargs: Any) -> None:
    try:
        with transaction.atomic():
            identity.save(**kwargs)
    except IntegrityError as exc:
        diag = getattr(exc.__cause__, "diag", None)
        if getattr(diag, "constraint_name", None) == _FROM_UNIQUE:
            reason = f"A sender identity with the address {identity.from_email} already exists."
            raise ApplicationError(
                f"from_email: {reason}", code="duplicate", extra={"from_email": [reason]}
            ) from None
        raise


def sender_identity_create(*, tenant_id: int, data: Mapping[str, Any]) -> SenderIdentity:
    """Create an identity; unset fields take the model defaults (Monday to Friday, 09:00 to 17:00 UTC)."""
    missing = [key for key in ("from_name", "from_email") if key not in data]
    if missing:
        _raise_invalid({key: ["This field is required."] for key in missing})
    identity = SenderIdentity(tenant_id=tenant_id)
    errors = _apply(identity, data) or _check(identity)
    if errors:
        _raise_invalid(errors)
    with transaction.atomic(durable=True):
        _save(identity)
    logger.info(
        "sender_identity.created", extra={"tenant_id": tenant_id, "identity_id": identity.pk}
    )
    return identity


def sender_identity_update(
    *, tenant_id: int, identity_id: int, data: Mapping[str, Any], actor: str = "system"
) -> SenderIdentity:
    """Change the given fields; cross-field rules are checked on the result. A change of
    ``paused`` is a control change: audited, and a resume releases the held sends."""
    with transaction.atomic(durable=True):
        identity = sender_identity_get(
            tenant_id=tenant_id, identity_id=identity_id, for_update=True
        )
        was_paused = identity.paused
        errors = _apply(identity, data) or _check(identity)
        if errors:
            _raise_invalid(errors)
        if data:
            _save(identity, update_fields=[*data, "updated_at"])
        if identity.paused != was_paused:
            _pause_changed(identity, actor=actor, reason="")
    logger.info(
        "sender_identity.updated", extra={"tenant_id": tenant_id, "identity_id": identity.pk}
    )
    return identity


def _pause_changed(identity: SenderIdentity, *, actor: str, reason: str) -> None:
    audit_record(
        tenant_id=identity.tenant_id,
        actor=actor,
        action="sender_identity.pause" if identity.paused else "sender_identity.resume",
        target_type="sender_identity",
        target_id=identity.pk,
        reason=reason,
        before={"paused": not identity.paused},
        after={"paused": identity.paused},
    )
    if not identity.paused:
        # Imported here: the campaign engine imports messaging services at module level.
        from campaigns.services.actions import scheduled_actions_release

        scheduled_actions_release(
            reason_prefix="sender identity paused",
            tenant_id=identity.tenant_id,
            sender_identity_id=identity.pk,
        )


def sender_identity_pause_set(
    *, tenant_id: int, identity_id: int, paused: bool, actor: str, reason: str = ""
) -> SenderIdentity:
    """Pause (its sends wait, from the next batch on) or resume (they become due now) one
    sender identity. Repeating it changes nothing and writes no audit entry."""
    with transaction.atomic():
        identity = sender_identity_get(
            tenant_id=tenant_id, identity_id=identity_id, for_update=True
        )
        if identity.paused == paused:
            return identity
        identity.paused = paused
        identity.save(update_fields=["paused", "updated_at"])
        _pause_changed(identity, actor=actor, reason=reason)
    logger.info(
        "sender_identity.paused" if paused else "sender_identity.resumed",
        extra={"tenant_id": tenant_id, "identity_id": identity_id},
    )
    return identity


def sender_identity_delete(*, tenant_id: int, identity_id: int) -> None:
    """Delete an identity no campaign, enrollment or sent message refers to. One that is in
    use answers 409: its history must keep its sender, and pausing it stops new sends."""
    with transaction.atomic(durable=True):
        identity = sender_identity_get(
            tenant_id=tenant_id, identity_id=identity_id, for_update=True
        )
        try:
            with transaction.atomic():
                identity.delete()
        except ProtectedError:
            uses = {
                "campaigns": identity.campaigns.count(),
                "enrollments": identity.enrollments.count(),
                "messages": identity.messages.count(),
            }
            listed = ", ".join(f"{count} {name}" for name, count in uses.items() if count)
            raise ApplicationError(
                f"This sender identity is in use ({listed}) and cannot be deleted; "
                "set paused=true to stop it sending.",
                code="in_use",
                status_code=409,
            ) from None
    logger.info(
        "sender_identity.deleted", extra={"tenant_id": tenant_id, "identity_id": identity_id}
    )
