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

    class PausedBy(models.TextChoices):
        OPERATOR = "operator"
        TENANT = "tenant"

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
    # Who paused: the tenant may lift its own pause through the API, never the operator's.
    paused_by = models.CharField(
        max_length=16, choices=PausedBy.choices, blank=True, default="", editable=False
    )
    plan = models.CharField(max_length=16, choices=Plan.choices, default=Plan.STANDARD)

    # Feature flags: per-tenant rollout of each phase, read through outreach.tenancy.flags.
    campaigns_enabled = models.BooleanField(
        default=True, help_text="Campaign sending: off holds every due send of the tenant."
    )
    webhook_shadow_mode = models.BooleanField(
        default=False,
        help_text="Store and normalise events, but drive no transitions or suppressions.",
    )
    event_branching_enabled = models.BooleanField(
        default=True,
        help_text="Events and replies move enrollments along their plan's branches; off, "
        "events are stored and suppress, but only timeouts move enrollments.",
    )
    analytics_enabled = models.BooleanField(
        default=True, help_text="The analytics API and dashboard answer for this tenant."
    )
    sms_enabled = models.BooleanField(default=False, help_text="Plans may contain SMS steps.")
    inbound_enabled = models.BooleanField(
        default=True,
        help_text="Replies come back through Inbound Parse and are matched and applied; off, "
        "replies go to the sender's own reply-to and inbound mail is stored unprocessed.",
    )

    # Quotas. Sends over the daily quota wait for the next UTC day; leads and campaigns over
    # theirs are refused (HTTP 429). Empty means no limit.
    daily_send_quota = models.PositiveIntegerField(default=10_000)
    lead_quota = models.PositiveIntegerField(null=True, blank=True)
    campaign_quota = models.PositiveIntegerField(null=True, blank=True)
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
    sms_help_text = models.CharField(
        max_length=320,
        blank=True,
        default="",
        db_default="",
        help_text="The answer to an SMS HELP: who is texting and how to reach them. Empty: a "
        "default naming the tenant.",
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [
            ("operate_controls", "Can pause and resume tenants and change their flags and quotas")
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["active", "paused"]), name="tenant_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(status="active", paused_by="")
                | models.Q(status="paused", paused_by__in=["operator", "tenant"]),
                name="tenant_paused_by_matches_status",
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


class AuditEntry(models.Model):
    """One control change: who, when, what, why, and the values before and after.

    Append-only: a trigger refuses UPDATE and DELETE (migration 0004), so not even the ORM
    can rewrite history. ``tenant`` is empty for platform-wide changes (the kill switch); it
    is not a foreign-key constraint, so the entries outlive a deleted tenant.
    """

    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
    )
    actor = models.CharField(max_length=200, help_text="admin:<user>, api-key:<prefix>, cli:<user>")
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64)
    target_id = models.CharField(max_length=64, blank=True, default="")
    reason = models.TextField(blank=True, default="")
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "audit entry"
        verbose_name_plural = "audit log"
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["tenant", "-id"], name="audit_tenant_idx"),
            models.Index(fields=["target_type", "target_id"], name="audit_target_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.target_type} {self.target_id}"


class KillSwitch(models.Model):
    """A platform-wide stop for sending: ``all`` channels, or one channel.

    While engaged, the send path holds every due send of that channel (they wait, they are
    not lost). Read through ``outreach.tenancy.controls.sending_stop_reason``, cached for
    ``CONTROLS_CACHE_SECONDS``.
    """

    class Channel(models.TextChoices):
        ALL = "all", "all channels"
        EMAIL = "email"
        SMS = "sms"

    channel = models.CharField(max_length=8, choices=Channel.choices, unique=True)
    engaged = models.BooleanField(default=False)
    reason = models.TextField(blank=True, default="")
    changed_by = models.CharField(max_length=200, blank=True, default="")
    changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "sending kill switch"
        verbose_name_plural = "sending kill switches"
        ordering = ["channel"]
        permissions = [("operate_killswitch", "Can engage and release the sending kill switch")]

    def __str__(self) -> str:
        state = "ENGAGED" if self.engaged else "released"
        return f"kill switch ({self.get_channel_display()}): {state}"
