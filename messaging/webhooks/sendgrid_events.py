"""SendGrid Event Webhook events as we read them: types, keys, times, ids.

Pure functions over one event object (a dict from the posted JSON array). The docs
contradict themselves on details (millisecond timestamps in Single Sends, ``url_offset``
types, id lengths), so everything is read leniently: a missing or odd field degrades to a
default, never to an exception that would block the whole batch.
"""

import datetime
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

CUSTOM_ARG_MESSAGE_ID = "outreach_message_id"


EVENT_TYPES = frozenset(
    {
        "processed",
        "deferred",
        "delivered",
        "open",
        "click",
        "bounce",
        "blocked",
        "dropped",
        "spamreport",
        "unsubscribe",
        "group_unsubscribe",
        "group_resubscribe",
        "account_status_change",
        "unknown",
    }
)


def utf8_safe(text: str) -> str:
    """JSON may carry lone surrogates (``"\\ud800"``), which no UTF-8 encoder accepts."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def clean_text(value: Any, limit: int) -> str:
    """A string column value: text only, no NUL (Postgres refuses it), valid UTF-8,
    bounded length."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if text.isascii() and "\x00" not in text:
        return text[:limit]  # the usual case: nothing to clean
    if "\x00" in text:
        text = text.replace("\x00", "")
    return utf8_safe(text[:limit])


def _canonical(raw: dict[str, Any]) -> str:
    return json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def event_key(raw: dict[str, Any]) -> str:
    """The dedup key: SendGrid's ``sg_event_id``, else a hash of the whole event (so the same
    event delivered twice still has one key). Hashed keys are prefixed, and ``:`` never
    occurs in base64url ids, so the two spaces cannot collide."""
    sg_event_id = raw.get("sg_event_id")
    if isinstance(sg_event_id, str) and sg_event_id:
        if (
            len(sg_event_id) <= 255
            and "\x00" not in sg_event_id
            and utf8_safe(sg_event_id) == sg_event_id
        ):
            return sg_event_id
        return "sha256:" + hashlib.sha256(sg_event_id.encode("utf-8", "surrogatepass")).hexdigest()
    return "syn:" + hashlib.sha256(_canonical(raw).encode()).hexdigest()


def event_occurred_at(raw: dict[str, Any], default: datetime.datetime) -> datetime.datetime:
    """``timestamp`` is unix seconds; some senders (Single Sends) use milliseconds."""
    value = raw.get("timestamp")
    if isinstance(value, bool):
        return default
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return default
    if not isinstance(value, (int, float)) or value != value or value <= 0:
        return default
    if value > 100_000_000_000:  # later than year 5138 in seconds: must be milliseconds
        value = value / 1000
    try:
        return datetime.datetime.fromtimestamp(value, tz=datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return default


def event_type_of(raw: dict[str, Any]) -> str:
    name = raw.get("event")
    if name == "bounce" and str(raw.get("type", "")).lower() == "blocked":
        return "blocked"
    if isinstance(name, str) and name in EVENT_TYPES and name not in ("blocked", "unknown"):
        return name
    return "unknown"


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    return bool(value) and value == value


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def message_ref_of(raw: dict[str, Any]) -> str | None:
    """Our message id as the canonical text of a UUID (how we wrote it into ``custom_args``),
    or None when it is missing or not a UUID."""
    value = raw.get(CUSTOM_ARG_MESSAGE_ID)
    if not isinstance(value, str) or not value:
        return None
    if _CANONICAL_UUID.fullmatch(value):
        return value
    try:
        return str(uuid.UUID(value))  # other spellings SendGrid may hand back (case, braces)
    except ValueError:
        return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_strict_loads(body: bytes | str) -> Any:
    """``json.loads`` as JSON is written: ``NaN`` and ``Infinity`` (which Python accepts and
    Postgres does not) are errors, and so is nesting too deep to parse (``ValueError``).

    orjson parses (about four times faster than ``json``, on every POST and again in the
    worker); what it refuses goes to ``json``, which decides as before: a lone surrogate
    escape or a byte order mark is accepted there (the text is repaired when stored),
    ``NaN`` or nesting past its depth is not."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body, parse_constant=_no_constant)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


def jsonb_text(value: Any, *, rfc3339: bool = False) -> str:
    """JSON text Postgres accepts as ``jsonb``: no NUL escape, no lone surrogate.

    Datetimes are written through ``str`` as ``json`` wrote them (stored payloads keep that
    form); ``rfc3339`` writes them as orjson does natively, for rows a statement reads back
    as ``timestamptz`` at once (no ``isoformat`` call per value)."""
    try:
        # orjson refuses lone surrogates and keys that are not strings, which ``json`` then
        # writes.
        option = 0 if rfc3339 else orjson.OPT_PASSTHROUGH_DATETIME
        text = orjson.dumps(value, default=str, option=option).decode()
    except TypeError:
        text = utf8_safe(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str))
    if "\\u0000" in text:
        text = text.replace("\\u0000", "\\ufffd")
    return text


@dataclass(slots=True)
class NormalisedEvent:
    key: str
    event_type: str
    occurred_at: datetime.datetime
    email: str
    provider_message_id: str
    sg_prefix: str
    smtp_id: str
    message_ref: str | None
    is_machine_open: bool
    user_agent: str
    raw: dict[str, Any]
    id: int | None = None  # set once stored
    message_id: int | None = None
    enrollment_id: int | None = None
    is_bot_click: bool = False


def event_normalise(
    raw: dict[str, Any], *, key: str, received_at: datetime.datetime
) -> NormalisedEvent:
    """One SendGrid event as we store it (the message is attached later, in bulk)."""
    event_type = event_type_of(raw)
    sg_message_id = clean_text(raw.get("sg_message_id"), 200)
    return NormalisedEvent(
        key=key,
        event_type=event_type,
        occurred_at=event_occurred_at(raw, received_at),
        email=clean_text(raw.get("email"), 320).strip().lower(),
        provider_message_id=sg_message_id,
        sg_prefix=sg_message_id.split(".", 1)[0],
        smtp_id=clean_text(raw.get("smtp-id"), 300),
        message_ref=message_ref_of(raw),
        is_machine_open=event_type == "open" and _truthy(raw.get("sg_machine_open")),
        user_agent=clean_text(raw.get("useragent"), 1000),
        raw=raw,
    )
