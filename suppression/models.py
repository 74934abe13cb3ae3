from django.db import models
from django.db.models import Q


class SuppressionQuerySet(models.QuerySet):
    def applicable_to(self, tenant_id: int) -> "SuppressionQuerySet":
        """Suppressions that stop sends for this tenant: its own and the global list."""
        return self.filter(Q(tenant_id=tenant_id) | Q(tenant__isnull=True))


class Suppression(models.Model):
    """An address we must not email. ``tenant`` is null for the global (platform-wide) scope."""

    class Scope(models.TextChoices):
        TENANT = "tenant"
        GLOBAL = "global"

    class Reason(models.TextChoices):
        HARD_BOUNCE = "hard_bounce"
        REPEATED_SOFT_BOUNCE = "repeated_soft_bounce"
        SPAM_REPORT = "spam_report"
        UNSUBSCRIBE = "unsubscribe"
        GROUP_UNSUBSCRIBE = "group_unsubscribe"
        INVALID_ADDRESS = "invalid_address"
        MANUAL = "manual"

    class Source(models.TextChoices):
        WEBHOOK = "webhook"
        ONE_CLICK = "one_click"
        INBOUND = "inbound"
        API = "api"
        ADMIN = "admin"
        IMPORT = "import"

    # suppression_unique_scope leads with tenant_id: no index of its own.
    tenant = models.ForeignKey(
        "tenancy.Tenant",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.TENANT)
    email = models.CharField(max_length=320)
    reason = models.CharField(max_length=32, choices=Reason.choices)
    source = models.CharField(max_length=16, choices=Source.choices)
    note = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = SuppressionQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "email"], nulls_distinct=False, name="suppression_unique_scope"
            ),
            models.CheckConstraint(
                condition=(Q(scope="global") & Q(tenant__isnull=True))
                | (Q(scope="tenant") & Q(tenant__isnull=False)),
                name="suppression_scope_matches_tenant",
            ),
        ]
        indexes = [models.Index(fields=["email"], name="suppression_email_idx")]

    def __str__(self) -> str:
        return f"{self.email} ({self.scope}, {self.reason})"


class PhoneSuppression(models.Model):
    """A phone number we must not text, per tenant: a STOP (or its synonyms) puts it here at
    once, a START takes it out (an operator's ``manual`` entry stays). Checked by the SMS send
    path at send time, like email."""

    class Reason(models.TextChoices):
        STOP = "stop"  # the recipient texted STOP, STOPALL, UNSUBSCRIBE, CANCEL, END or QUIT
        CARRIER_OPT_OUT = "carrier_opt_out"  # Twilio answered 21610
        MANUAL = "manual"

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="+")
    phone = models.CharField(max_length=16, help_text="E.164")
    reason = models.CharField(max_length=32, choices=Reason.choices)
    note = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "phone"], name="phone_suppression_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.phone} ({self.reason})"
