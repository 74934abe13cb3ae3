import secrets
import uuid

from django.db import models
from rest_framework_api_key.models import AbstractAPIKey, BaseAPIKeyManager


def _inbound_secret() -> str:
    return secrets.token_urlsafe(24)


class Tenant(models.Model):
    """A customer company. Every other tenant-owned row points here."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        PAUSED = "paused"

    class Plan(models.TextChoices):
        """What the tenant pays for; decides how long its raw events are kept
        (``settings.EVENT_RETENTION_MONTHS``). Rollups are kept whatever the plan."""

        TRIAL = "trial"
        STANDARD = "standard"
        ENTERPRISE = "enterprise"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    plan = models.CharField(max_length=16, choices=Plan.choices, default=Plan.STANDARD)

    # Feature flags: per-tenant rollout, per the implementation overview.
    campaigns_enabled = models.BooleanField(default=True)
    webhook_shadow_mode = models.BooleanField(
        default=False,
        help_text="Store and normalise events, but drive no transitions or suppressions.",
    )
    sms_enabled = models.BooleanField(default=False)

    daily_send_quota = models.PositiveIntegerField(default=10_000)
    timezone = models.CharField(
        max_length=64, default="UTC", help_text="IANA zone: analytics days and hours are its own"
    )
    open_tracking = models.BooleanField(default=True)
    click_tracking = models.BooleanField(default=True)
    postal_address = models.TextField(
        blank=True, help_text="CAN-SPAM physical address shown in every email footer."
    )

    # Secrets: the API key is Fernet-encrypted (outreach.common.crypto); only its last four
    # characters are ever shown.
    sendgrid_api_key_encrypted = models.TextField(blank=True, default="")
    sendgrid_api_key_last4 = models.CharField(max_length=4, blank=True, default="")
    webhook_public_key = models.TextField(
        blank=True,
        default="",
        help_text="SendGrid Event Webhook verification key (base64 DER, as SendGrid shows it).",
    )
    inbound_secret = models.CharField(max_length=64, default=_inbound_secret)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["active", "paused"]), name="tenant_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"


class TenantAPIKeyManager(BaseAPIKeyManager):
    def get_usable_keys(self) -> models.QuerySet:
        return super().get_usable_keys().select_related("tenant")


class TenantAPIKey(AbstractAPIKey):
    """An integration's key: stored hashed (SHA-512), shown once, revocable, looked up by prefix."""

    objects = TenantAPIKeyManager()

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "tenant API key"
        verbose_name_plural = "tenant API keys"

    def __str__(self) -> str:
        state = "revoked" if self.revoked else "active"
        return f"{self.tenant.slug}: {self.name} ({self.prefix}…, {state})"


class TenantAlert(models.Model):
    """Something an operator must look at: e.g. SendGrid suspended the tenant's account."""

    class Kind(models.TextChoices):
        ACCOUNT_STATUS = "account_status", "SendGrid account status change"
        SENDING = "sending", "Sending problem"
        WEBHOOK = "webhook", "Webhook problem"
        EVENT_STORAGE = "event_storage", "Events stored outside the monthly partitions"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    message = models.TextField()
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["tenant", "created_at"],
                condition=models.Q(acknowledged_at__isnull=True),
                name="tenantalert_open_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.tenant.slug}: {self.get_kind_display()} at {self.created_at:%Y-%m-%d %H:%M}"
