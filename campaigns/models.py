from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models import Q, Value
from django.db.models.functions import Concat, Lower

from outreach.common.models import TenantOwned, tenant_key


class Lead(TenantOwned):
    """A prospect. ``email`` is stored normalised (see campaigns.services.leads)."""

    class SmsConsent(models.TextChoices):
        UNKNOWN = "unknown"  # never asked: no SMS
        GRANTED = "granted"
        REVOKED = "revoked"  # texted STOP, or withdrawn by hand

    class Validation(models.TextChoices):
        UNKNOWN = "unknown"
        VALID = "valid"
        RISKY = "risky"
        INVALID = "invalid"

    tenant = tenant_key(db_index=False)  # leads lead_email_unique_per_tenant
    email = models.CharField(max_length=320)
    first_name = models.CharField(max_length=100, blank=True, default="")
    last_name = models.CharField(max_length=100, blank=True, default="")
    company = models.CharField(max_length=200, blank=True, default="")
    title = models.CharField(max_length=200, blank=True, default="")
    timezone = models.CharField(max_length=64, blank=True, default="")
    country = models.CharField(max_length=2, blank=True, default="", help_text="ISO 3166-1 alpha-2")
    phone = models.CharField(max_length=16, blank=True, default="", help_text="E.164")
    custom_fields = models.JSONField(default=dict, blank=True)
    # No SMS is sent without consent; its source (a form, an import, a START text) and time
    # are what a compliance review asks for.
    # Database defaults too: bulk imports insert with raw SQL that does not name them.
    sms_consent = models.CharField(
        max_length=8,
        choices=SmsConsent.choices,
        default=SmsConsent.UNKNOWN,
        db_default=SmsConsent.UNKNOWN,
    )
    sms_consent_source = models.CharField(max_length=100, blank=True, default="", db_default="")
    sms_consent_at = models.DateTimeField(null=True, blank=True)

    validation_status = models.CharField(
        max_length=16, choices=Validation.choices, default=Validation.UNKNOWN
    )
    validation_reason = models.CharField(max_length=200, blank=True, default="")
    is_role_address = models.BooleanField(default=False)
    is_disposable = models.BooleanField(default=False)
    validated_at = models.DateTimeField(null=True, blank=True)
    # What lead search matches words in (``selectors.lead_list``): kept by PostgreSQL, indexed
    # with trigrams so a substring search reads only the tenant's matching leads.
    search_text = models.GeneratedField(
        expression=Lower(
            Concat(
                "first_name",
                Value(" "),
                "last_name",
                Value(" "),
                "company",
                output_field=models.TextField(),
            )
        ),
        output_field=models.TextField(),
        db_persist=True,
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # Also the tenant-leading index: exact email lookups, and the tenant's deletion.
            models.UniqueConstraint(
                fields=["tenant", "email"], name="lead_email_unique_per_tenant"
            ),
            models.CheckConstraint(condition=~Q(email=""), name="lead_email_not_empty"),
            models.CheckConstraint(
                condition=Q(phone="") | Q(phone__regex=r"^\+[1-9][0-9]{6,14}$"),
                name="lead_phone_e164",
            ),
        ]
        indexes = [
            # The company filter, and the admin's company prefix search.
            models.Index(fields=["tenant", "company"], name="lead_tenant_company_idx"),
            # The created_after / created_before filters.
            models.Index(fields=["tenant", "created_at"], name="lead_tenant_created_idx"),
            # The leads API pages newest first (cursor on -id): the tenant's leads in that
            # order, so a page, or a search whose matches are rare, never walks the primary
            # key back through every other tenant's leads.
            models.Index(fields=["tenant", "-id"], name="lead_tenant_id_idx"),
            # Word search (``q``): tenant_id (btree_gin) and trigrams of search_text in one
            # index, so the tenant's matches are found without reading other tenants'.
            GinIndex(
                fields=["tenant", "search_text"],
                opclasses=["int8_ops", "gin_trgm_ops"],
                name="lead_search_trgm_idx",
            ),
        ]

    def __str__(self) -> str:
        name = f"{self.first_name} {self.last_name}".strip()
        return f"{name} <{self.email}>" if name else self.email


class Campaign(TenantOwned):
    class Status(models.TextChoices):
        DRAFT = "draft"
        ACTIVE = "active"
        PAUSED = "paused"
        ARCHIVED = "archived"

    tenant = tenant_key(db_index=False)  # leads campaign_tenant_status_idx
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    sender_identity = models.ForeignKey(
        "messaging.SenderIdentity", on_delete=models.PROTECT, related_name="campaigns"
    )
    current_version = models.ForeignKey(
        "campaigns.CampaignPlanVersion",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "status"], name="campaign_tenant_status_idx")]

    def __str__(self) -> str:
        return f"{self.name} [{self.status}]"


class CampaignPlanVersion(TenantOwned):
    """An immutable plan document. A database trigger refuses any change to plan or checksum."""

    # Leads planversion_unique: no index of its own.
    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="versions", db_index=False
    )
    version = models.PositiveIntegerField()
    plan = models.JSONField()
    checksum = models.CharField(max_length=64, help_text="SHA-256 of the canonical plan JSON")
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "version"], name="planversion_unique"),
            models.UniqueConstraint(
                fields=["campaign", "checksum"], name="planversion_checksum_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.campaign.name} v{self.version}"


class Enrollment(TenantOwned):
    """A lead's journey through one campaign, pinned to the plan version it started on.

    ``step_seq`` counts step entries; a transition out of a step entry happens at most once
    (``EnrollmentTransition`` is unique on it), which is what makes transitions exactly-once.
    """

    class State(models.TextChoices):
        ACTIVE = "active"
        PAUSED = "paused"
        COMPLETED = "completed"
        STOPPED = "stopped"
        FAILED = "failed"

    tenant = tenant_key(db_index=False)  # leads enrollment_campaign_idx
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="enrollments")
    # Indexed by enrollment_lead_idx (the lead's timeline, and a lead's deletion).
    lead = models.ForeignKey(
        Lead, on_delete=models.CASCADE, related_name="enrollments", db_index=False
    )
    plan_version = models.ForeignKey(
        CampaignPlanVersion, on_delete=models.PROTECT, related_name="enrollments"
    )
    sender_identity = models.ForeignKey(
        "messaging.SenderIdentity", on_delete=models.PROTECT, related_name="enrollments"
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    current_step = models.CharField(max_length=100)
    step_seq = models.PositiveIntegerField(default=0)
    step_entered_at = models.DateTimeField(auto_now_add=True)
    outcome = models.CharField(max_length=100, blank=True, default="")
    stop_reason = models.CharField(max_length=200, blank=True, default="")
    last_error = models.TextField(blank=True, default="")
    paused_until = models.DateTimeField(null=True, blank=True)
    enrolled_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "lead"],
                condition=Q(state__in=["active", "paused"]),
                name="enrollment_one_live_per_lead_campaign",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "campaign", "state"], name="enrollment_campaign_idx"),
            models.Index(fields=["lead"], name="enrollment_lead_idx"),
        ]

    def __str__(self) -> str:
        return f"enrollment {self.pk}: lead {self.lead_id} in campaign {self.campaign_id} [{self.state}]"


class EnrollmentTransition(TenantOwned):
    """Why an enrollment moved: one row per step entry left, with its trigger and cause."""

    # Leads transition_once_per_step_entry: no index of its own.
    enrollment = models.ForeignKey(
        Enrollment, on_delete=models.CASCADE, related_name="transitions", db_index=False
    )
    from_step = models.CharField(max_length=100)
    from_seq = models.PositiveIntegerField()
    to_step = models.CharField(max_length=100, blank=True, default="")
    trigger = models.CharField(max_length=32)
    cause = models.CharField(max_length=300, blank=True, default="")
    message = models.ForeignKey(
        "messaging.Message", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    event_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["enrollment", "from_seq"], name="transition_once_per_step_entry"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.from_step} --{self.trigger}--> {self.to_step or '(end)'}"


class ScheduledAction(TenantOwned):
    """Every future action is a row: Postgres owns time, Celery messages are only hints.

    A sweeper claims due rows with ``FOR UPDATE SKIP LOCKED``, sets ``lease_expires_at`` and bumps
    ``attempt``; a worker commits its result only while its attempt is still the current one.
    """

    class Kind(models.TextChoices):
        SEND = "send"
        SMS = "sms"  # send an SMS step's text message (messaging.services.sending_sms)
        ADVANCE = "advance"
        TIMEOUT = "timeout"
        RESUME = "resume"

    class Status(models.TextChoices):
        PENDING = "pending"
        CLAIMED = "claimed"
        DONE = "done"
        CANCELLED = "cancelled"

    # Every index costs each claim a btree insert (a claim changes ``status``, so it is never a
    # HOT update): the enrollment column is covered by ``action_enrollment_idx`` and nothing
    # looks actions up by tenant alone. Without a tenant index the foreign key to the tenant
    # would make deleting a tenant scan the whole table, so it is not a database constraint:
    # an action lives and dies with its enrollment (whose foreign key is enforced), and a
    # tenant's deletion removes its actions through its enrollments.
    tenant = tenant_key(db_index=False, db_constraint=False)
    enrollment = models.ForeignKey(
        Enrollment, on_delete=models.CASCADE, related_name="scheduled_actions", db_index=False
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    step = models.CharField(max_length=100)
    step_seq = models.PositiveIntegerField()
    due_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    priority = models.SmallIntegerField(
        default=1, help_text="Lower runs first under a cap: follow-ups before first touches."
    )
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempt = models.PositiveIntegerField(default=0)
    idempotency_key = models.CharField(max_length=200)
    payload = models.JSONField(default=dict, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["due_at"], condition=Q(status="pending"), name="action_due_pending_idx"
            ),
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(status="claimed"),
                name="action_lease_claimed_idx",
            ),
            models.Index(fields=["enrollment", "status"], name="action_enrollment_idx"),
        ]
        constraints = [
            # A constraint rather than unique=True: no extra LIKE-pattern index to maintain.
            models.UniqueConstraint(
                fields=["idempotency_key"], name="action_idempotency_key_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.step} for enrollment {self.enrollment_id} at {self.due_at:%Y-%m-%d %H:%M} [{self.status}]"
