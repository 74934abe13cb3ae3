"""Tenants' SendGrid API keys, encrypted at rest with MultiFernet.

Only ``last4`` is ever shown (admin, API, logs). ``settings.ENCRYPTION_KEYS`` lists Fernet keys
newest first: a key is rotated by prepending a new one, running ``manage.py secrets_rotate``,
then removing the old one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.db import transaction

from outreach.common.crypto import (
    SecretDecryptError,
    secret_decrypt,
    secret_rotate,
)
from outreach.common.errors import NotFound
from outreach.tenancy.models import Tenant
from outreach.tenancy.services import sendgrid_key_fields

logger = logging.getLogger(__name__)

__all__ = [
    "SecretDecryptError",
    "SecretRotationReport",
    "tenant_secrets_rotate",
    "tenant_sendgrid_key_clear",
    "tenant_sendgrid_key_get",
    "tenant_sendgrid_key_set",
]


def tenant_sendgrid_key_set(*, tenant_id: int, api_key: str) -> Tenant:
    """Store the tenant's SendGrid key encrypted under the newest key; keep its last 4 only."""
    fields = sendgrid_key_fields(api_key=api_key)
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().filter(pk=tenant_id).first()
        if tenant is None:
            raise NotFound()
        tenant.sendgrid_api_key_encrypted = fields["sendgrid_api_key_encrypted"]
        tenant.sendgrid_api_key_last4 = fields["sendgrid_api_key_last4"]
        tenant.save(
            update_fields=["sendgrid_api_key_encrypted", "sendgrid_api_key_last4", "updated_at"]
        )
    logger.info(
        "tenant.sendgrid_key_set",
        extra={"tenant_id": tenant_id, "key_last4": tenant.sendgrid_api_key_last4},
    )
    return tenant


def tenant_sendgrid_key_clear(*, tenant_id: int) -> None:
    """Forget the tenant's key: sends fall back to the platform key (or the emulator)."""
    updated = Tenant.objects.filter(pk=tenant_id).update(
        sendgrid_api_key_encrypted="", sendgrid_api_key_last4=""
    )
    if not updated:
        raise NotFound()
    logger.info("tenant.sendgrid_key_cleared", extra={"tenant_id": tenant_id})


def tenant_sendgrid_key_get(*, tenant_id: int) -> str | None:
    """The tenant's SendGrid key in clear, or None if it has none.

    Raises ``SecretDecryptError`` when the stored token was made by no configured key (a key
    removed too early from ``OUTREACH_ENCRYPTION_KEYS``) or was tampered with.
    """
    token = (
        Tenant.objects.filter(pk=tenant_id)
        .values_list("sendgrid_api_key_encrypted", flat=True)
        .first()
    )
    if not token:
        return None
    return secret_decrypt(token=token)


@dataclass
class SecretRotationReport:
    rotated: int = 0
    already_current: int = 0
    without_key: int = 0
    undecryptable: list[str] = field(default_factory=list)


def _is_current(token: str) -> bool:
    try:
        Fernet(settings.ENCRYPTION_KEYS[0]).decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def tenant_secrets_rotate() -> SecretRotationReport:
    """Re-encrypt every tenant's key under the newest encryption key.

    Idempotent: tokens already made by the newest key are left untouched, so a second run
    reports them as current. All or nothing: if any token is made by no configured key,
    nothing is written and the report names those tenants (fix the key list, run again).
    """
    report = SecretRotationReport()
    with transaction.atomic(durable=True):
        tenants = (
            Tenant.objects.select_for_update()
            .order_by("pk")
            .only("pk", "slug", "sendgrid_api_key_encrypted")
        )
        pending: list[Tenant] = []
        for tenant in tenants:
            token = tenant.sendgrid_api_key_encrypted
            if not token:
                report.without_key += 1
                continue
            if _is_current(token):
                report.already_current += 1
                continue
            try:
                tenant.sendgrid_api_key_encrypted = secret_rotate(token=token)
            except SecretDecryptError:
                report.undecryptable.append(f"{tenant.slug} (id {tenant.pk})")
                continue
            pending.append(tenant)
        if report.undecryptable:
            transaction.set_rollback(True)
            return report
        Tenant.objects.bulk_update(pending, ["sendgrid_api_key_encrypted"], batch_size=500)
        report.rotated = len(pending)
    logger.info(
        "tenant.secrets_rotated",
        extra={"rotated": report.rotated, "already_current": report.already_current},
    )
    return report
