"""Creating tenants and managing their API keys and secrets."""

import base64
import binascii
import logging
import time
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import IntegrityError, connection, transaction
from django.utils.text import slugify

from outreach.common.crypto import secret_encrypt
from outreach.common.errors import ApplicationError, NotFound
from outreach.tenancy.models import Tenant, TenantAlert, TenantAPIKey

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TenantCreated:
    tenant: Tenant
    api_key: TenantAPIKey
    key: str  # the plain API key: shown once, never stored


def _invalid(field: str, reason: str) -> ApplicationError:
    return ApplicationError(f"{field}: {reason}", extra={field: [reason]})


def sendgrid_key_fields(*, api_key: str) -> dict[str, str]:
    """The stored form of a SendGrid API key: Fernet token and last four characters."""
    api_key = api_key.strip()
    if not api_key:
        raise _invalid("sendgrid_api_key", "This field may not be blank.")
    if any(ch.isspace() for ch in api_key) or not api_key.isprintable():
        raise _invalid("sendgrid_api_key", "Contains spaces or control characters.")
    return {
        "sendgrid_api_key_encrypted": secret_encrypt(plaintext=api_key),
        "sendgrid_api_key_last4": api_key[-4:],
    }


def webhook_public_key_clean(*, public_key: str) -> str:
    """SendGrid's Event Webhook verification key as SendGrid shows it: base64 DER of an
    ECDSA P-256 public key (no PEM armour). A key we could not verify with is refused now
    rather than discovered when every webhook fails."""
    text = "".join(public_key.split())
    if text.startswith("-----BEGIN"):
        raise _invalid("webhook_public_key", "Paste the key without the PEM BEGIN/END lines.")
    try:
        key = load_der_public_key(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError, TypeError):
        raise _invalid(
            "webhook_public_key", "Not a base64 DER public key (copy it from SendGrid as shown)."
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise _invalid("webhook_public_key", "Not an ECDSA P-256 key, which SendGrid uses.")
    return text


def tenant_webhook_urls(*, tenant: Tenant) -> dict[str, str]:
    """Where the tenant's SendGrid account must post events and inbound mail."""
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    return {
        "events": f"{base}/webhooks/sendgrid/events/{tenant.public_id}/",
        "inbound": f"{base}/webhooks/sendgrid/inbound/{tenant.public_id}/{tenant.inbound_secret}/",
        # Twilio: the SMS URL of the tenant's numbers (status callbacks are set per text).
        "sms_inbound": f"{base}/webhooks/twilio/inbound/{tenant.public_id}/",
    }


def tenant_create(
    *,
    name: str,
    slug: str | None = None,
    sendgrid_api_key: str | None = None,
    webhook_public_key: str | None = None,
    api_key_name: str = "default",
) -> TenantCreated:
    """Create a tenant with its first API key. The slug defaults to the slugified name; a
    taken slug is an error (never silently suffixed: scripts rely on the slug they chose)."""
    name = name.strip()
    if not name:
        raise _invalid("name", "This field may not be blank.")
    if len(name) > Tenant._meta.get_field("name").max_length:
        raise _invalid("name", "Ensure this field has no more than 200 characters.")
    slug = (slug or slugify(name)).strip()
    try:
        validate_slug(slug)
    except ValidationError:
        raise _invalid(
            "slug", f"'{slug}' is not a slug (letters, digits, hyphens, underscores)."
        ) from None
    if len(slug) > Tenant._meta.get_field("slug").max_length:
        raise _invalid("slug", "Ensure this field has no more than 80 characters.")
    fields: dict[str, str] = {}
    if sendgrid_api_key:
        fields.update(sendgrid_key_fields(api_key=sendgrid_api_key))
    if webhook_public_key:
        fields["webhook_public_key"] = webhook_public_key_clean(public_key=webhook_public_key)

    try:
        with transaction.atomic(durable=True):
            tenant = Tenant.objects.create(name=name, slug=slug, **fields)
            api_key, key = TenantAPIKey.objects.create_key(name=api_key_name, tenant=tenant)
    except IntegrityError:
        if Tenant.objects.filter(slug=slug).exists():
            raise _invalid("slug", f"A tenant with the slug '{slug}' already exists.") from None
        raise
    logger.info("tenant.created", extra={"tenant_id": tenant.pk, "slug": slug})
    return TenantCreated(tenant=tenant, api_key=api_key, key=key)


def api_key_create(*, tenant_id: int, name: str) -> tuple[TenantAPIKey, str]:
    """A new key for an integration; the plain key is returned once and never stored."""
    name = name.strip()
    if not name:
        raise _invalid("name", "This field may not be blank.")
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        raise NotFound("Tenant not found.")
    api_key, key = TenantAPIKey.objects.create_key(name=name, tenant=tenant)
    logger.info("tenant.api_key_created", extra={"tenant_id": tenant_id, "prefix": api_key.prefix})
    return api_key, key


def api_key_revoke(*, prefix: str) -> TenantAPIKey:
    """Revoke the key with this prefix (idempotent). Revoked keys are refused with 401."""
    updated = TenantAPIKey.objects.filter(prefix=prefix).update(revoked=True)
    if not updated:
        raise NotFound(f"No API key with the prefix '{prefix}'.")
    api_key = TenantAPIKey.objects.select_related("tenant").get(prefix=prefix)
    logger.info("tenant.api_key_revoked", extra={"tenant_id": api_key.tenant_id, "prefix": prefix})
    return api_key


@dataclass
class TenantDeleted:
    tenant_id: int
    slug: str
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def tenant_delete(*, tenant_id: int, batch: int = 10_000) -> TenantDeleted:
    """Delete a tenant and everything it owns, table by table, set-based, in bounded batches.

    The tenant is paused first (committed), so the send path holds its work while its rows
    go. Each batch is a transaction of its own: a deletion that dies half-way is finished by
    running it again (the tenant row goes last, so it is still there to name). The cost
    follows the tenant's own rows: every step finds them through an index that leads with
    ``tenant_id`` (or through its enrollments), so other tenants' rows are never read, and
    every foreign key pointing at a deleted row has an index for its check.
    """
    from analytics.services.tenant_data import analytics_tenant_delete
    from campaigns.services.tenant_data import (
        campaigns_tenant_delete,
        campaigns_tenant_journeys_delete,
    )
    from messaging.services.tenant_data import (
        messaging_tenant_history_delete,
        messaging_tenant_identities_delete,
    )
    from suppression.services import suppressions_tenant_delete

    started = time.monotonic()
    slug = Tenant.objects.filter(pk=tenant_id).values_list("slug", flat=True).first()
    if slug is None:
        raise NotFound("Tenant not found.")
    Tenant.objects.filter(pk=tenant_id).update(
        status=Tenant.Status.PAUSED,
        paused_by=Tenant.PausedBy.OPERATOR,  # nobody but an operator deletes a tenant
        campaigns_enabled=False,
    )
    logger.info("tenant.delete_started", extra={"tenant_id": tenant_id, "slug": slug})
    deleted = TenantDeleted(tenant_id=tenant_id, slug=slug)
    # Order: whatever points at a row goes before it (messages point at enrollments,
    # transitions at messages, campaigns and enrollments at identities and versions).
    deleted.rows.update(campaigns_tenant_journeys_delete(tenant_id=tenant_id, batch=batch))
    deleted.rows.update(messaging_tenant_history_delete(tenant_id=tenant_id, batch=batch))
    deleted.rows.update(campaigns_tenant_delete(tenant_id=tenant_id, batch=batch))
    deleted.rows.update(messaging_tenant_identities_delete(tenant_id=tenant_id))
    deleted.rows["suppressions"] = suppressions_tenant_delete(tenant_id=tenant_id)
    deleted.rows.update(analytics_tenant_delete(tenant_id=tenant_id))
    with transaction.atomic():
        deleted.rows["alerts"] = TenantAlert.objects.filter(tenant_id=tenant_id).delete()[0]
        deleted.rows["api_keys"] = TenantAPIKey.objects.filter(tenant_id=tenant_id).delete()[0]
        # Raw: the ORM would first look for related rows in every table, some of which
        # (scheduled actions, the delta queues) have no tenant index by design.
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM tenancy_tenant WHERE id = %s", [tenant_id])
    deleted.seconds = time.monotonic() - started
    logger.info(
        "tenant.deleted",
        extra={"tenant_id": tenant_id, "slug": slug, "rows": sum(deleted.rows.values())},
    )
    return deleted
