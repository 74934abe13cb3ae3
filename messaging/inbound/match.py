"""Find the message of ours an inbound email answers, always within one tenant.

1. The reply-to token: we send with ``Reply-To: reply+<reply_token>@<inbound domain>``, so
   the token comes back in the envelope recipient (what SendGrid saw at SMTP time), ``To``,
   ``Cc``, ``Delivered-To`` or ``X-Original-To``. It survives clients that drop threading
   headers and is unique per message.
2. Threading headers: ``In-Reply-To`` first, then ``References`` from the newest id back,
   against our own ``Message-ID`` (``rfc_message_id``) and SendGrid's ``smtp-id``. A delivery
   report's returned original counts as well.

Every lookup is filtered by ``tenant_id``: a token or id of another tenant finds nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db.models import Q

from messaging.inbound.parse import InboundEmail
from messaging.models import Message

# Tokens are ``secrets.token_urlsafe`` output; the length bound keeps junk out of the query.
_TOKEN = re.compile(r"^reply\+(?P<token>[A-Za-z0-9_-]{8,32})@", re.I)


@dataclass(frozen=True)
class InboundMatch:
    message: Message
    method: str  # "token", "in_reply_to", "references" or "returned_message"


def reply_tokens_find(*, email: InboundEmail) -> list[str]:
    """Reply tokens in the order we trust them: envelope first, then visible headers."""
    tokens: list[str] = []
    for address in (*email.envelope_to, *email.delivered_to, *email.to, *email.cc):
        match = _TOKEN.match(address)
        if match and match.group("token") not in tokens:
            tokens.append(match.group("token"))
    return tokens


def _id_forms(message_id: str) -> list[str]:
    bare = message_id.strip().strip("<>")
    return [f"<{bare}>", bare] if bare else []


def inbound_message_match(*, tenant_id: int, email: InboundEmail) -> InboundMatch | None:
    """Our message this email replies to, or ``None`` (the mail is kept as unmatched)."""
    messages = Message.objects.for_tenant(tenant_id)

    tokens = reply_tokens_find(email=email)
    if tokens:
        found = {m.reply_token: m for m in messages.filter(reply_token__in=tokens)}
        for token in tokens:
            if token in found:
                return InboundMatch(message=found[token], method="token")

    ordered: list[tuple[str, str]] = [(i, "in_reply_to") for i in email.in_reply_to]
    ordered += [(i, "references") for i in reversed(email.references)]
    ordered += [(i, "returned_message") for i in email.returned_message_ids]
    if not ordered:
        return None
    forms = sorted({form for message_id, _ in ordered for form in _id_forms(message_id)})
    candidates = list(
        messages.filter(Q(rfc_message_id__in=forms) | Q(smtp_id__in=forms)).order_by("-id")
    )
    if not candidates:
        return None
    by_id: dict[str, Message] = {}
    for message in candidates:
        for value in (message.rfc_message_id, message.smtp_id):
            for form in _id_forms(value):
                by_id.setdefault(form, message)
    for message_id, method in ordered:
        for form in _id_forms(message_id):
            if form in by_id:
                return InboundMatch(message=by_id[form], method=method)
    return None
