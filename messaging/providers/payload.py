"""The v3 mail-send body for one outbound message.

Built as a plain dict (no ``sendgrid.helpers.mail``): the adapter posts it as is. The webhook
normaliser and the emulator find our ids in ``custom_args`` under ``outreach_message_id`` and
``outreach_tenant``; those names are part of the contract.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CUSTOM_ARG_MESSAGE_ID = "outreach_message_id"
CUSTOM_ARG_TENANT = "outreach_tenant"

# SendGrid refuses to let these be set through ``headers`` (they come from the body fields).
_RESERVED_HEADERS = frozenset(
    name.lower()
    for name in (
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "content-type",
        "content-transfer-encoding",
        "to",
        "from",
        "subject",
        "reply-to",
        "cc",
        "bcc",
    )
)
# What a SendGrid key looks like (``SG.<id>.<secret>``). The official Mail helper refuses
# content matching it; we post plain dicts, so we keep the same guard ourselves.
_API_KEY_PATTERN = re.compile(r"SG\.[0-9A-Za-z_-]{16,}\.[0-9A-Za-z_-]{16,}")
_MAX_CATEGORIES = 10
_MAX_CATEGORY_LENGTH = 255


class PayloadError(ValueError):
    """The message cannot be turned into a valid mail-send request; retrying will not help."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundEmail:
    """Everything the provider needs to send one message, already rendered.

    ``message_id_header`` defaults to ``<message_public_id@sender-domain>``
    (see :func:`rfc_message_id_build`); store the same value on the Message row so replies can
    be matched. ``in_reply_to``/``references`` are set for follow-ups in the same thread.
    """

    message_public_id: uuid.UUID | str
    tenant_public_id: uuid.UUID | str
    from_email: str
    from_name: str = ""
    reply_to: str = ""
    reply_to_name: str = ""
    to_email: str
    to_name: str = ""
    subject: str
    text: str = ""
    html: str = ""
    categories: Sequence[str] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    message_id_header: str = ""
    in_reply_to: str = ""
    references: Sequence[str] = ()
    unsubscribe_url: str = ""
    open_tracking: bool = True
    click_tracking: bool = True


def _domain_of(address: str) -> str:
    domain = address.rpartition("@")[2].strip().lower()
    if not domain:
        raise PayloadError(f"from_email {address!r} has no domain")
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise PayloadError(f"from_email domain {domain!r} is not a valid domain") from exc


def _angle(msg_id: str) -> str:
    msg_id = msg_id.strip()
    if not msg_id:
        return ""
    if not (msg_id.startswith("<") and msg_id.endswith(">")):
        msg_id = f"<{msg_id.strip('<>')}>"
    return msg_id


def rfc_message_id_build(*, message_public_id: uuid.UUID | str, from_email: str) -> str:
    """Our ``Message-ID`` header: ``<uuid@domain-of-sender>`` (a bare id renders broken)."""
    return f"<{message_public_id}@{_domain_of(from_email)}>"


def _no_newlines(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise PayloadError(f"{name} must not contain line breaks")
    return value


def _address(email: str, name: str) -> dict[str, str]:
    item = {"email": _no_newlines("address", email.strip())}
    if name.strip():
        item["name"] = _no_newlines("display name", name.strip())
    return item


def _categories(values: Sequence[str]) -> list[str]:
    seen: list[str] = []
    for value in values:
        value = str(value).strip()[:_MAX_CATEGORY_LENGTH]
        if value and value not in seen:
            seen.append(value)
    return seen[:_MAX_CATEGORIES]


def mail_send_payload_build(*, email: OutboundEmail) -> dict[str, Any]:
    """The ``POST /v3/mail/send`` body: one personalization, our ids in ``custom_args``,
    unsubscribe and threading headers, tracking per tenant. Raises :class:`PayloadError`."""
    if not email.to_email.strip():
        raise PayloadError("to_email is empty")
    if not email.text and not email.html:
        raise PayloadError("the message has neither a text nor an HTML body")
    for part_name, part in (("subject", email.subject), ("text", email.text), ("html", email.html)):
        if _API_KEY_PATTERN.search(part):
            raise PayloadError(f"the {part_name} contains what looks like a SendGrid API key")

    headers: dict[str, str] = {}
    for name, value in email.headers.items():
        name, value = str(name).strip(), str(value)
        if not name or name.lower() in _RESERVED_HEADERS:
            raise PayloadError(f"header {name!r} cannot be set on a message")
        headers[name] = _no_newlines(f"header {name}", value)

    if email.unsubscribe_url:
        url = _no_newlines("unsubscribe_url", email.unsubscribe_url.strip())
        # RFC 8058 one-click: receivers POST "List-Unsubscribe=One-Click" to this URL. Both
        # headers are always set together; receivers only honour one-click over HTTPS.
        headers["List-Unsubscribe"] = f"<{url}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"

    headers["Message-ID"] = _angle(email.message_id_header) or rfc_message_id_build(
        message_public_id=email.message_public_id, from_email=email.from_email
    )
    in_reply_to = _angle(email.in_reply_to)
    references = [_angle(ref) for ref in email.references if ref.strip()]
    if in_reply_to and in_reply_to not in references:
        references.append(in_reply_to)
    if in_reply_to:
        headers["In-Reply-To"] = in_reply_to
    if references:
        headers["References"] = " ".join(references)

    content = []
    if email.text:
        content.append({"type": "text/plain", "value": email.text})
    if email.html:
        content.append({"type": "text/html", "value": email.html})

    payload: dict[str, Any] = {
        "personalizations": [{"to": [_address(email.to_email, email.to_name)]}],
        "from": _address(email.from_email, email.from_name),
        "subject": " ".join(email.subject.splitlines()),
        "content": content,
        "custom_args": {
            CUSTOM_ARG_MESSAGE_ID: str(email.message_public_id),
            CUSTOM_ARG_TENANT: str(email.tenant_public_id),
        },
        "headers": headers,
        "tracking_settings": {
            "click_tracking": {"enable": email.click_tracking, "enable_text": False},
            "open_tracking": {"enable": email.open_tracking},
            # We add our own one-click unsubscribe; SendGrid's would be a second, unrelated one.
            "subscription_tracking": {"enable": False},
        },
    }
    if email.reply_to.strip():
        payload["reply_to"] = _address(email.reply_to, email.reply_to_name)
    categories = _categories(email.categories)
    if categories:
        payload["categories"] = categories
    return payload
