"""`POST /v3/mail/send`: SendGrid's validation rules and error bodies, and the ids it hands out.

Messages follow SendGrid's wording where it is known; every error is
``{"message", "field", "help"}`` inside ``{"errors": [...]}`` with status 400.
"""

from __future__ import annotations

import base64
import os
import re
import time
from typing import Any

HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.{}"
MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_CUSTOM_ARGS_BYTES = 10_000
MAX_CATEGORIES = 10
MAX_CATEGORY_LENGTH = 255
SEND_AT_HORIZON_SECONDS = 72 * 3600

RESERVED_HEADERS = frozenset(
    name.lower()
    for name in (
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "Content-Type",
        "Content-Transfer-Encoding",
        "To",
        "From",
        "Subject",
        "Reply-To",
        "CC",
        "BCC",
    )
)

# Deliberately loose, like SendGrid's: one @, no spaces, a dot in the domain.
_ADDRESS = re.compile(r"^[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\".]+$")

UNAUTHORIZED_BODY = (
    b'{"errors":[{"message":"The provided authorization grant is invalid, expired, or revoked",'
    b'"field":null,"help":null}]}'
)
TOO_MANY_BODY = b'{"errors":[{"field":null,"message":"too many requests"}]}'
SERVER_ERROR_BODY = b'{"errors":[{"field":null,"message":"internal server error","help":null}]}'
TOO_LARGE_BODY = (
    b'{"errors":[{"message":"The request body is too large. Mail send requests, including '
    b'attachments, are limited to 30MB.","field":null,"help":null}]}'
)


def message_id_new() -> str:
    """A 22-character base64url id like SendGrid's ``X-Message-Id`` (128 random bits)."""
    return base64.urlsafe_b64encode(os.urandom(16))[:22].decode("ascii")


def _error(message: str, field: str | None, help_anchor: str | None = None) -> dict[str, Any]:
    return {
        "message": message,
        "field": field,
        "help": HELP.format(help_anchor) if help_anchor else None,
    }


def address_valid(value: Any) -> bool:
    return isinstance(value, str) and bool(_ADDRESS.match(value))


def _check_address(obj: Any, field: str, errors: list, anchor: str) -> str | None:
    if not isinstance(obj, dict) or "email" not in obj:
        errors.append(_error("The email parameter is required.", f"{field}.email", anchor))
        return None
    if not address_valid(obj["email"]):
        errors.append(_error("Does not contain a valid address.", f"{field}.email", anchor))
        return None
    name = obj.get("name")
    if name is not None and not isinstance(name, str):
        errors.append(_error("The name parameter must be a string.", f"{field}.name", anchor))
    return obj["email"].lower()


def _check_custom_args(value: Any, field: str, errors: list) -> int:
    """Returns the byte size the args count towards the 10,000-byte limit."""
    if not isinstance(value, dict):
        errors.append(_error("The custom_args parameter must be an object.", field, "custom_args"))
        return 0
    size = 0
    for key, item in value.items():
        if not isinstance(item, str):
            errors.append(
                _error(
                    "Each custom_args value must be a string.",
                    f"{field}.{key}",
                    "custom_args",
                )
            )
            continue
        size += len(key.encode()) + len(item.encode())
    return size


def _check_headers(value: Any, field: str, errors: list) -> None:
    if not isinstance(value, dict):
        errors.append(_error("The headers parameter must be an object.", field, "headers"))
        return
    for name, item in value.items():
        if name.lower() in RESERVED_HEADERS:
            errors.append(
                _error(
                    f"The header {name} is reserved and cannot be overridden. "
                    "Reserved headers: x-sg-id, x-sg-eid, received, dkim-signature, "
                    "Content-Type, Content-Transfer-Encoding, To, From, Subject, Reply-To, "
                    "CC, BCC.",
                    f"{field}.{name}",
                    "headers",
                )
            )
        elif not isinstance(item, str):
            errors.append(_error("Header values must be strings.", f"{field}.{name}", "headers"))


def payload_validate(payload: Any, *, now: float | None = None) -> list[dict[str, Any]]:
    """Every rule the emulator enforces; an empty list means SendGrid would accept the body."""
    if not isinstance(payload, dict):
        return [_error("The request body must be a JSON object.", None)]
    errors: list[dict[str, Any]] = []
    now = time.time() if now is None else now

    personalizations = payload.get("personalizations")
    every_personalization_has_subject = False
    custom_args_bytes = 0
    if not isinstance(personalizations, list) or not personalizations:
        errors.append(
            _error(
                "The personalizations field is required and must have at least one "
                "personalization.",
                "personalizations",
                "personalizations",
            )
        )
    elif len(personalizations) > MAX_PERSONALIZATIONS:
        errors.append(
            _error(
                "The personalization block is limited to 1000 personalizations per API "
                f"request. You have provided {len(personalizations)} personalizations. "
                "Please consider splitting this into multiple requests and resending your "
                "request.",
                "personalizations",
                "personalizations",
            )
        )
    else:
        every_personalization_has_subject = True
        recipients = 0
        for index, item in enumerate(personalizations):
            prefix = f"personalizations.{index}"
            if not isinstance(item, dict):
                errors.append(
                    _error("Each personalization must be an object.", prefix, "personalizations")
                )
                every_personalization_has_subject = False
                continue
            to = item.get("to")
            if not isinstance(to, list) or not to:
                errors.append(
                    _error(
                        "The to array is required for all personalization objects, and must "
                        "have at least one email object with a valid email address.",
                        f"{prefix}.to",
                        "personalizations.to",
                    )
                )
            seen: dict[str, str] = {}
            for kind in ("to", "cc", "bcc"):
                entries = item.get(kind)
                if entries is None:
                    continue
                if not isinstance(entries, list):
                    errors.append(
                        _error(
                            f"The {kind} parameter must be an array.",
                            f"{prefix}.{kind}",
                            f"personalizations.{kind}",
                        )
                    )
                    continue
                recipients += len(entries)
                for position, entry in enumerate(entries):
                    field = f"{prefix}.{kind}.{position}"
                    address = _check_address(entry, field, errors, f"personalizations.{kind}")
                    if address is None:
                        continue
                    if address in seen:
                        errors.append(
                            _error(
                                "Each email address in the personalization block should be "
                                "unique between to, cc, and bcc. We found the first duplicate "
                                f"instance of [{entry['email']}] in the {prefix}.{kind} field.",
                                f"{prefix}.{kind}",
                                "personalizations",
                            )
                        )
                    seen[address] = kind
            subject = item.get("subject")
            if not isinstance(subject, str) or not subject:
                every_personalization_has_subject = False
            if "headers" in item:
                _check_headers(item["headers"], f"{prefix}.headers", errors)
            if "custom_args" in item:
                custom_args_bytes += _check_custom_args(
                    item["custom_args"], f"{prefix}.custom_args", errors
                )
            if "send_at" in item:
                _check_send_at(item["send_at"], f"{prefix}.send_at", now, errors)
        if recipients > MAX_RECIPIENTS:
            errors.append(
                _error(
                    "The total number of recipients must be less than 1000. This includes all "
                    "recipients defined within the to, cc, and bcc parameters, across each "
                    "object that you include in the personalizations array.",
                    "personalizations",
                    "personalizations",
                )
            )

    sender = payload.get("from")
    if not isinstance(sender, dict) or not sender.get("email"):
        errors.append(
            _error(
                "The from object must be provided for every email send. It is an object that "
                "requires the email parameter, but may also contain a name parameter.  e.g. "
                '{"email" : "example@example.com"}  or {"email" : "example@example.com", '
                '"name" : "Example Recipient"}.',
                "from.email",
                "from",
            )
        )
    elif not address_valid(sender["email"]) or not sender["email"].isascii():
        errors.append(
            _error(
                "The from email does not contain a valid address.",
                "from.email",
                "from",
            )
        )

    if "reply_to" in payload and "reply_to_list" in payload:
        errors.append(
            _error(
                "The reply_to and reply_to_list parameters are mutually exclusive; only one "
                "may be used at a time.",
                "reply_to_list",
                "reply_to_list",
            )
        )
    elif "reply_to" in payload:
        _check_address(payload["reply_to"], "reply_to", errors, "reply_to")
    elif "reply_to_list" in payload:
        reply_list = payload["reply_to_list"]
        if not isinstance(reply_list, list) or not 1 <= len(reply_list) <= 1000:
            errors.append(
                _error(
                    "The reply_to_list parameter must be an array of 1 to 1000 addresses.",
                    "reply_to_list",
                    "reply_to_list",
                )
            )
        else:
            seen_reply: set[str] = set()
            for position, entry in enumerate(reply_list):
                address = _check_address(
                    entry, f"reply_to_list.{position}", errors, "reply_to_list"
                )
                if address in seen_reply:
                    errors.append(
                        _error(
                            "The reply_to_list addresses must be unique.",
                            f"reply_to_list.{position}.email",
                            "reply_to_list",
                        )
                    )
                seen_reply.add(address or "")

    template_id = payload.get("template_id")
    subject = payload.get("subject")
    if (
        not template_id
        and not every_personalization_has_subject
        and (not isinstance(subject, str) or not subject)
    ):
        errors.append(
            _error(
                "The subject is required. You can get around this requirement if you use "
                "a template with a subject defined or if every personalization has a "
                "subject defined.",
                "subject",
                "subject",
            )
        )

    content = payload.get("content")
    if content is None or content == []:
        if not template_id:
            errors.append(
                _error(
                    "Unless a valid template_id is provided, the content parameter is "
                    "required. There must be at least one defined content block. We typically "
                    "suggest both text/plain and text/html blocks are included, but only one "
                    "block is required.",
                    "content",
                    "content",
                )
            )
    elif not isinstance(content, list):
        errors.append(_error("The content parameter must be an array.", "content", "content"))
    else:
        for position, block in enumerate(content):
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                errors.append(
                    _error(
                        "The content type parameter is required.",
                        f"content.{position}.type",
                        "content.type",
                    )
                )
                continue
            value = block.get("value")
            if not isinstance(value, str) or not value:
                errors.append(
                    _error(
                        "The content value must be a string at least one character in length.",
                        f"content.{position}.value",
                        "content.value",
                    )
                )

    if "headers" in payload:
        _check_headers(payload["headers"], "headers", errors)
    if "custom_args" in payload:
        custom_args_bytes += _check_custom_args(payload["custom_args"], "custom_args", errors)
    if custom_args_bytes >= MAX_CUSTOM_ARGS_BYTES:
        errors.append(
            _error(
                "The custom_args parameter may not exceed 10,000 bytes.",
                "custom_args",
                "custom_args",
            )
        )

    if "categories" in payload:
        _check_categories(payload["categories"], errors)
    if "send_at" in payload:
        _check_send_at(payload["send_at"], "send_at", now, errors)
    if "asm" in payload:
        asm = payload["asm"]
        if not isinstance(asm, dict) or type(asm.get("group_id")) is not int:
            errors.append(
                _error("The asm group_id must be an integer.", "asm.group_id", "asm.group_id")
            )
        elif len(asm.get("groups_to_display") or []) > 25:
            errors.append(
                _error(
                    "The asm groups_to_display may contain at most 25 groups.",
                    "asm.groups_to_display",
                    "asm.groups_to_display",
                )
            )

    sandbox = (payload.get("mail_settings") or {}).get("sandbox_mode")
    if isinstance(sandbox, dict) and "enable" in sandbox and type(sandbox["enable"]) is not bool:
        errors.append(
            _error(
                "The mail_settings.sandbox_mode.enable parameter must be a boolean.",
                "mail_settings.sandbox_mode.enable",
                "mail_settings.sandbox_mode.enable",
            )
        )
    return errors


def _check_categories(categories: Any, errors: list) -> None:
    if not isinstance(categories, list):
        errors.append(
            _error("The categories parameter must be an array.", "categories", "categories")
        )
        return
    if len(categories) > MAX_CATEGORIES:
        errors.append(
            _error(
                "Too many categories. You can include no more than 10 categories per request.",
                "categories",
                "categories",
            )
        )
    if len(set(map(str, categories))) != len(categories):
        errors.append(_error("The categories must be unique.", "categories", "categories"))
    for position, category in enumerate(categories):
        if not isinstance(category, str):
            errors.append(
                _error("A category must be a string.", f"categories.{position}", "categories")
            )
        elif len(category) > MAX_CATEGORY_LENGTH:
            errors.append(
                _error(
                    "A category cannot have more than 255 characters.",
                    f"categories.{position}",
                    "categories",
                )
            )


def _check_send_at(value: Any, field: str, now: float, errors: list) -> None:
    if type(value) is not int:
        errors.append(_error("The send_at parameter must be a unix timestamp.", field, "send_at"))
    elif value > now + SEND_AT_HORIZON_SECONDS:
        errors.append(
            _error(
                "The send_at parameter must be a unix timestamp at most 72 hours in the future.",
                field,
                "send_at",
            )
        )


def sandbox_enabled(payload: dict[str, Any]) -> bool:
    sandbox = (payload.get("mail_settings") or {}).get("sandbox_mode")
    return isinstance(sandbox, dict) and sandbox.get("enable") is True


def records_expand(x_message_id: str, received_at: float, payload: dict[str, Any]) -> list[dict]:
    """What one accepted request becomes: one catcher record per personalization."""
    content = {block.get("type"): block.get("value") for block in payload.get("content") or []}
    reply_to = payload.get("reply_to") or (payload.get("reply_to_list") or [None])[0]
    records = []
    for index, item in enumerate(payload.get("personalizations") or []):
        headers = {**(payload.get("headers") or {}), **(item.get("headers") or {})}
        custom_args = {**(payload.get("custom_args") or {}), **(item.get("custom_args") or {})}
        records.append(
            {
                "x_message_id": x_message_id,
                "personalization": index,
                "received_at": received_at,
                "from": item.get("from") or payload.get("from"),
                "reply_to": reply_to,
                "to": item.get("to") or [],
                "cc": item.get("cc") or [],
                "bcc": item.get("bcc") or [],
                "subject": item.get("subject") or payload.get("subject") or "",
                "text": content.get("text/plain", ""),
                "html": content.get("text/html", ""),
                "headers": headers,
                "custom_args": custom_args,
                "categories": payload.get("categories") or [],
                "send_at": item.get("send_at", payload.get("send_at")),
                "template_id": payload.get("template_id"),
                "asm": payload.get("asm"),
                "tracking_settings": payload.get("tracking_settings"),
                "attachments": [
                    {"filename": a.get("filename"), "type": a.get("type")}
                    for a in payload.get("attachments") or []
                    if isinstance(a, dict)
                ],
            }
        )
    return records
