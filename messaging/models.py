import datetime
import os
import secrets
import time
import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from outreach.common.models import TenantOwned, tenant_key


def _weekdays() -> list[int]:
    return [0, 1, 2, 3, 4]


class SenderIdentity(TenantOwned):
    """An AE's from-address, with the caps, warm-up ramp and sending window the send path obeys."""

    class DomainStatus(models.TextChoices):
        UNVERIFIED = "unverified"
        PENDING = "pending"
        VERIFIED = "verified"
        FAILED = "failed"

    tenant = tenant_key(db_index=False)  # leads identity_from_unique_per_tenant
    from_name = models.CharField(max_length=200)
    from_email = models.CharField(max_length=320)
    reply_to = models.CharField(max_length=320, blank=True, default="")
    signature = models.TextField(blank=True, default="")
    owner_name = models.CharField(max_length=200, blank=True, default="")
    owner_email = models.CharField(max_length=320, blank=True, default="")

    daily_cap = models.PositiveIntegerField(default=200)
    hourly_cap = models.PositiveIntegerField(default=40)

    warmup_enabled = models.BooleanField(default=False)
    warmup_start_volume = models.PositiveIntegerField(default=20)
    warmup_daily_increase = models.PositiveIntegerField(default=10)
    warmup_ceiling = models.PositiveIntegerField(default=200)
    warmup_started_on = models.DateField(null=True, blank=True)

    window_days = ArrayField(
        models.PositiveSmallIntegerField(),
        default=_weekdays,
        help_text="ISO weekdays the identity sends on, 0 = Monday … 6 = Sunday.",
    )
    window_start = models.TimeField(default=datetime.time(9, 0))
    window_end = models.TimeField(default=datetime.time(17, 0))
    timezone = models.CharField(max_length=64, default="UTC")

    # SMS (optional): a Twilio number in E.164 or a Messaging Service SID, and the number's
    # own caps (a US long code takes about one message per second).
    sms_from_number = models.CharField(
        max_length=16, blank=True, default="", db_default="", help_text="E.164"
    )
    sms_messaging_service_sid = models.CharField(
        max_length=34,
        blank=True,
        default="",
        db_default="",
        help_text="MG… (Twilio Messaging Service)",
    )
    sms_per_second = models.PositiveSmallIntegerField(
        default=1, db_default=1, help_text="Most SMS per second from this number"
    )
    sms_daily_cap = models.PositiveIntegerField(
        default=200, db_default=200, help_text="Most SMS per day"
    )

    paused = models.BooleanField(default=False)
    domain_status = models.CharField(
        max_length=16, choices=DomainStatus.choices, default=DomainStatus.UNVERIFIED
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "sender identities"
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "from_email"], name="identity_from_unique_per_tenant"
            ),
            models.CheckConstraint(
                condition=Q(window_start__lt=models.F("window_end")),
                name="identity_window_start_before_end",
            ),
            models.CheckConstraint(
                condition=Q(hourly_cap__lte=models.F("daily_cap")),
                name="identity_hourly_cap_within_daily",
            ),
            models.CheckConstraint(
                condition=Q(sms_from_number="") | Q(sms_from_number__regex=r"^\+[1-9][0-9]{6,14}$"),
                name="identity_sms_number_e164",
            ),
            models.CheckConstraint(
                condition=Q(sms_messaging_service_sid="")
                | Q(sms_messaging_service_sid__regex=r"^MG[0-9a-fA-F]{32}$"),
                name="identity_sms_service_sid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.from_name} <{self.from_email}>"


# Keys of the send ledger's unique indexes are made to sort by time: rows written together
# then land on the index's newest pages. A random key lands on a random page of an index that
# outgrows memory (one cache miss per send, and again per status change, since those are not
# HOT updates), which measurably slowed the send path at 7M messages.


def message_public_id() -> uuid.UUID:
    """A version 7 UUID (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits."""
    millis = time.time_ns() // 1_000_000
    random_bits = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((random_bits >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= random_bits & ((1 << 62) - 1)
    return uuid.UUID(int=value)


def _reply_token() -> str:
    """The time in hex (8 characters), then 96 random bits (16 URL-safe characters)."""
    return f"{int(time.time()):08x}{secrets.token_urlsafe(12)}"


class Message(TenantOwned):
    """The send ledger. A row is committed as ``sending`` before the provider is called.

    ``status_rank`` only ever grows, so webhook events arriving out of order never move a
    message backwards (an ``open`` before its ``delivered`` leaves it ``opened``).
    """

    class Channel(models.TextChoices):
        EMAIL = "email"
        SMS = "sms"

    class Status(models.TextChoices):
        SENDING = "sending"
        NEEDS_REVIEW = "needs_review"
        FAILED = "failed"
        ACCEPTED = "accepted"
        PROCESSED = "processed"
        DEFERRED = "deferred"
        DELIVERED = "delivered"
        OPENED = "opened"
        CLICKED = "clicked"
        REPLIED = "replied"
        UNDELIVERED = "undelivered"  # SMS: the carrier could not deliver it
        DROPPED = "dropped"
        BOUNCED = "bounced"
        COMPLAINED = "complained"
        UNSUBSCRIBED = "unsubscribed"

    # Indexes are few on purpose: every event that moves a message rewrites each of them.
    # tenant_id and enrollment_id lead other indexes (message_tenant_created_idx and
    # message_once_per_step_attempt), so they get none of their own.
    tenant = tenant_key(db_index=False)
    public_id = models.UUIDField(default=message_public_id, unique=True, editable=False)
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.EMAIL)
    sender_identity = models.ForeignKey(
        SenderIdentity, on_delete=models.PROTECT, related_name="messages"
    )
    enrollment = models.ForeignKey(
        "campaigns.Enrollment",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="messages",
        db_index=False,
    )
    lead = models.ForeignKey(
        "campaigns.Lead", on_delete=models.PROTECT, null=True, blank=True, related_name="messages"
    )
    campaign = models.ForeignKey(
        "campaigns.Campaign",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="messages",
    )
    # The version the enrollment was on when this message was composed: analytics attribute
    # the message (and its events) to it even after the enrollment migrates to a newer one.
    plan_version = models.ForeignKey(
        "campaigns.CampaignPlanVersion",
        on_delete=models.DO_NOTHING,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    step = models.CharField(max_length=100, blank=True, default="")
    step_seq = models.PositiveIntegerField(default=0)
    variant = models.CharField(max_length=100, blank=True, default="")
    attempt = models.PositiveSmallIntegerField(default=1)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SENDING)
    status_rank = models.PositiveSmallIntegerField(default=0)

    to_email = models.CharField(max_length=320)
    # A database default too: the email send path inserts with raw SQL that does not name it.
    to_phone = models.CharField(
        max_length=16, blank=True, default="", db_default="", help_text="SMS: E.164"
    )
    subject = models.CharField(max_length=998, blank=True, default="")
    rfc_message_id = models.CharField(
        max_length=300, blank=True, default="", help_text="Our Message-ID header, for threading"
    )
    reply_token = models.CharField(max_length=32, default=_reply_token)
    provider_message_id = models.CharField(max_length=200, blank=True, default="")
    smtp_id = models.CharField(max_length=300, blank=True, default="")
    error_code = models.CharField(max_length=64, blank=True, default="")
    error_message = models.TextField(blank=True, default="")

    sent_at = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        permissions = [("resolve_review", "Can resolve needs_review messages as sent or not")]
        constraints = [
            models.UniqueConstraint(
                fields=["enrollment", "step_seq", "attempt"], name="message_once_per_step_attempt"
            ),
            # A constraint rather than unique=True: no LIKE-pattern index to maintain.
            models.UniqueConstraint(fields=["reply_token"], name="message_reply_token_unique"),
        ]
        indexes = [
            models.Index(
                fields=["provider_message_id"],
                condition=~Q(provider_message_id=""),
                name="message_provider_id_idx",
            ),
            models.Index(
                fields=["updated_at"], condition=Q(status="sending"), name="message_sending_idx"
            ),
            # Rare rows an operator must resolve: the index holds only them.
            models.Index(
                fields=["tenant", "updated_at"],
                condition=Q(status="needs_review"),
                name="message_needs_review_idx",
            ),
            # The tenant's messages by time: analytics recounts and backfills, and the
            # tenant's deletion. (A lead's messages use the lead_id index.)
            models.Index(fields=["tenant", "created_at"], name="message_tenant_created_idx"),
        ]

    def __str__(self) -> str:
        if self.channel == self.Channel.SMS:
            return f"sms to {self.to_phone} [{self.status}]"
        return f"{self.channel} to {self.to_email}: {self.subject[:60]} [{self.status}]"


class MessageEvent(models.Model):
    """A normalised engagement or delivery event.

    The table is range-partitioned by month on ``occurred_at`` (created by raw SQL in the
    migration; Django only reads and writes it). Its real primary key is
    ``(id, occurred_at)``; ``id`` alone is unique in practice (one identity sequence). Duplicate
    provider events are refused by ``MessageEventKey``, because a unique index on a partitioned
    table would have to include the partition key.
    """

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey(
        "tenancy.Tenant", on_delete=models.DO_NOTHING, related_name="+", db_constraint=False
    )
    message = models.ForeignKey(
        Message,
        on_delete=models.DO_NOTHING,
        null=True,
        blank=True,
        db_constraint=False,
        related_name="events",
    )
    enrollment = models.ForeignKey(
        "campaigns.Enrollment",
        on_delete=models.DO_NOTHING,
        null=True,
        blank=True,
        db_constraint=False,
        related_name="+",
    )
    event_type = models.CharField(max_length=32)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField()
    provider_event_id = models.CharField(max_length=255)
    provider_message_id = models.CharField(max_length=200, blank=True, default="")
    email = models.CharField(max_length=320, blank=True, default="")
    is_machine_open = models.BooleanField(default=False)
    is_bot_click = models.BooleanField(default=False)
    is_synthetic = models.BooleanField(default=False)
    receipt_id = models.BigIntegerField(null=True, blank=True)
    raw = models.JSONField(default=dict)

    objects = models.Manager()

    class Meta:
        managed = False
        db_table = "messaging_messageevent"

    def __str__(self) -> str:
        return f"{self.event_type} at {self.occurred_at:%Y-%m-%d %H:%M:%S}"


class MessageEventKey(TenantOwned):
    """Dedup ledger for provider event ids: ``INSERT … ON CONFLICT DO NOTHING RETURNING``.

    Keys older than ``EVENT_DEDUP_KEY_DAYS`` are deleted by the retention job (SendGrid
    retries for 24 hours), so the table holds weeks of keys, not all of history."""

    # No foreign-key constraint: one key is written per event, and the deferred check of
    # each (a lookup of the tenant row at commit) cost 8 µs of an event's 50 in PostgreSQL.
    # The tenant is the receipt's; tenant deletion deletes its keys itself.
    tenant = tenant_key(db_index=False, db_constraint=False)  # leads eventkey_unique_per_tenant
    provider_event_id = models.CharField(max_length=255)
    first_seen_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "provider_event_id"], name="eventkey_unique_per_tenant"
            ),
        ]

    def __str__(self) -> str:
        return self.provider_event_id


class WebhookReceipt(TenantOwned):
    """A webhook body exactly as received, stored before we answer; normalised later."""

    class Kind(models.TextChoices):
        EVENTS = "events"
        INBOUND = "inbound"
        SMS_STATUS = "sms_status"  # a Twilio status callback
        SMS_INBOUND = "sms_inbound"  # a text message to one of our numbers

    kind = models.CharField(max_length=16, choices=Kind.choices)
    body = models.BinaryField()
    headers = models.JSONField(default=dict)
    content_type = models.CharField(max_length=200, blank=True, default="")
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    event_count = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        permissions = [("reprocess_receipt", "Can re-process stored webhook receipts")]
        indexes = [
            models.Index(
                fields=["received_at"],
                condition=Q(processed_at__isnull=True),
                name="receipt_unprocessed_idx",
            ),
        ]

    def __str__(self) -> str:
        state = "processed" if self.processed_at else "pending"
        return f"{self.kind} receipt {self.pk} [{state}]"


class InboundMessage(TenantOwned):
    """A reply (or auto-reply) that came back through Inbound Parse. Unmatched mail is kept."""

    class Classification(models.TextChoices):
        UNCLASSIFIED = "unclassified"
        HUMAN = "human"
        AUTO_REPLY = "auto_reply"
        OUT_OF_OFFICE = "out_of_office"
        BOUNCE = "bounce"

    receipt = models.OneToOneField(
        WebhookReceipt, on_delete=models.SET_NULL, null=True, blank=True, related_name="inbound"
    )
    raw_mime = models.TextField(blank=True, default="")
    from_email = models.CharField(max_length=320, blank=True, default="")
    to_email = models.CharField(max_length=320, blank=True, default="")
    subject = models.CharField(max_length=998, blank=True, default="")
    message_id_header = models.CharField(max_length=300, blank=True, default="")
    in_reply_to = models.CharField(max_length=300, blank=True, default="")
    references = models.TextField(blank=True, default="")
    matched_message = models.ForeignKey(
        Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="replies"
    )
    classification = models.CharField(
        max_length=16, choices=Classification.choices, default=Classification.UNCLASSIFIED
    )
    return_date = models.DateField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["tenant", "received_at"],
                condition=Q(matched_message__isnull=True),
                name="inbound_unmatched_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"reply from {self.from_email}: {self.subject[:60]} [{self.classification}]"


class EmailVerdict(TenantOwned):
    """Cached validation verdict for one address (SendGrid's Email Validation API or local)."""

    tenant = tenant_key(db_index=False)  # leads verdict_unique_per_tenant
    email = models.CharField(max_length=320)
    verdict = models.CharField(max_length=16)
    score = models.FloatField(null=True, blank=True)
    source = models.CharField(max_length=16, default="local")
    checks = models.JSONField(default=dict, blank=True)
    checked_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "email"], name="verdict_unique_per_tenant"),
        ]

    def __str__(self) -> str:
        return f"{self.email}: {self.verdict}"
