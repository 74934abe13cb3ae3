"""One-click unsubscribe tokens (RFC 8058).

A token is ``django.core.signing`` output over ``[tenant id, message public id, address]``
with a purpose-specific salt: it cannot be guessed or forged, and it names exactly one tenant
and one address, so it can never unsubscribe anything else. It carries no expiry on purpose:
an opt-out link must keep working long after the mail was sent (CAN-SPAM asks for at least
30 days, and people unsubscribe from old mail).
"""

import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.urls import reverse

_SALT = "outreach.suppression.unsubscribe.one-click.v1"


@dataclass(frozen=True)
class UnsubscribeClaim:
    tenant_id: int
    email: str
    message_public_id: uuid.UUID | None


def unsubscribe_token_make(
    *, tenant_id: int, email: str, message_public_id: uuid.UUID | str | None
) -> str:
    message = uuid.UUID(str(message_public_id)).hex if message_public_id else ""
    return signing.dumps([tenant_id, message, email.strip().lower()], salt=_SALT, compress=True)


def unsubscribe_token_read(*, token: str) -> UnsubscribeClaim | None:
    """The claim a genuine token carries, or None for anything tampered, truncated or foreign."""
    try:
        payload = signing.loads(token, salt=_SALT)
    except (signing.BadSignature, ValueError, TypeError, UnicodeDecodeError):
        return None
    if not (isinstance(payload, list) and len(payload) == 3):
        return None
    tenant_id, message, email = payload
    if not isinstance(tenant_id, int) or not isinstance(email, str) or "@" not in email:
        return None
    try:
        message_public_id = uuid.UUID(message) if message else None
    except (ValueError, TypeError, AttributeError):
        return None
    return UnsubscribeClaim(tenant_id=tenant_id, email=email, message_public_id=message_public_id)


def unsubscribe_url_build(
    *, tenant_id: int, email: str, message_public_id: uuid.UUID | str | None
) -> str:
    """The absolute one-click URL for ``List-Unsubscribe`` and the footer link."""
    token = unsubscribe_token_make(
        tenant_id=tenant_id, email=email, message_public_id=message_public_id
    )
    return settings.PUBLIC_BASE_URL + reverse("unsubscribe-one-click", args=[token])
