"""Analytics: hourly rollups kept exact by delta queues, and the views the dashboard reads.

How a count gets here (``docs/analytics.md`` has the whole story):

1. Statement-level triggers on the send ledger (``messaging_message``), the event table
   (``messaging_messageevent``) and enrollments (``campaigns_enrollment``) write what each
   statement changed, already aggregated per bucket, into ``HourlyDelta`` / ``JourneyDelta``,
   in the same transaction as the change: a rolled-back send or event leaves no delta.
2. ``analytics_refresh`` (beat, every few seconds) moves the deltas into ``HourlyRollup`` /
   ``JourneyCount`` with one ``DELETE … RETURNING`` feeding an upsert: each delta is applied
   exactly once, a crash rolls both back, and a re-run finds nothing left to apply. Deltas
   of transactions still in flight are not visible yet and are applied by the next run, so
   late and out-of-order events are simply counted in their own hour when they arrive.
3. ``FillState`` is the high-water mark: everything committed before ``filled_through`` is
   in the rollup; the API reports it as ``as_of``.

Why queues rather than triggers updating the rollup directly: every send of a campaign step
in the same hour would update the same rollup row, serialising the send workers on its lock.

Bucket keys use ``0`` and ``""`` for "none" (an event we could not tie to a message has no
campaign) so the unique key needs no NULL handling and upserts stay simple.
"""

from django.db import models
from django.db.models.functions import Now
from django_pgviews import view as pg

# Every counter of a rollup row, in one order shared by the models, the triggers' SQL, the
# recount and the API. What each one counts:
#   enrolled           enrollments created in the hour (campaign buckets: no version, step)
#   sent/failed/needs_review  emails by send outcome, in the hour the message was composed
#   unique_*           messages with at least one human open / human click / reply, in the
#                      hour the message was composed (so rates over ``sent`` are cohort rates)
#   sms_sent/sms_failed/sms_needs_review  text messages by send outcome, likewise: the email
#                      counters and rates never include texts
#   the rest           events, in the hour the event occurred (``sms_*``: Twilio's status
#                      callbacks and inbound texts)
COUNTERS: tuple[str, ...] = (
    "enrolled",
    "sent",
    "failed",
    "needs_review",
    "unique_opens",
    "unique_clicks",
    "unique_replies",
    "delivered",
    "opens",
    "machine_opens",
    "clicks",
    "bot_clicks",
    "replies",
    "replies_human",
    "replies_auto",
    "replies_ooo",
    "hard_bounces",
    "blocked_bounces",
    "deferrals",
    "dropped",
    "spam_reports",
    "unsubscribes",
    "sms_sent",
    "sms_failed",
    "sms_needs_review",
    "sms_delivered",
    "sms_undelivered",
    "sms_replies",
    "sms_opt_outs",
)

BUCKET_KEYS: tuple[str, ...] = (
    "tenant_id",
    "campaign_id",
    "plan_version_id",
    "step",
    "variant",
    "sender_identity_id",
    "hour",
)

JOURNEY_KEYS: tuple[str, ...] = (
    "tenant_id",
    "campaign_id",
    "plan_version_id",
    "step",
    "state",
    "reason",
)


def _counter() -> models.BigIntegerField:
    # A database default too: the triggers insert only the counters a change touches.
    return models.BigIntegerField(default=0, db_default=0)


class BucketFields(models.Model):
    tenant = models.ForeignKey(
        "tenancy.Tenant", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    campaign_id = models.BigIntegerField(default=0, db_default=0)
    plan_version_id = models.BigIntegerField(default=0, db_default=0)
    step = models.CharField(max_length=100, default="", db_default="")
    variant = models.CharField(max_length=100, default="", db_default="")
    sender_identity_id = models.BigIntegerField(default=0, db_default=0)
    hour = models.DateTimeField()

    enrolled = _counter()
    sent = _counter()
    failed = _counter()
    needs_review = _counter()
    unique_opens = _counter()
    unique_clicks = _counter()
    unique_replies = _counter()
    delivered = _counter()
    opens = _counter()
    machine_opens = _counter()
    clicks = _counter()
    bot_clicks = _counter()
    replies = _counter()
    replies_human = _counter()
    replies_auto = _counter()
    replies_ooo = _counter()
    hard_bounces = _counter()
    blocked_bounces = _counter()
    deferrals = _counter()
    dropped = _counter()
    spam_reports = _counter()
    unsubscribes = _counter()
    sms_sent = _counter()
    sms_failed = _counter()
    sms_needs_review = _counter()
    sms_delivered = _counter()
    sms_undelivered = _counter()
    sms_replies = _counter()
    sms_opt_outs = _counter()

    class Meta:
        abstract = True


class HourlyRollup(BucketFields):
    """One row per tenant, campaign, plan version, step, variant, sender and UTC hour."""

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "tenant",
                    "campaign_id",
                    "plan_version_id",
                    "step",
                    "variant",
                    "sender_identity_id",
                    "hour",
                ],
                name="analytics_hourly_bucket",
            )
        ]
        indexes = [
            models.Index(fields=["tenant", "hour"], name="analytics_hourly_tenant_idx"),
            models.Index(
                fields=["tenant", "sender_identity_id", "hour"], name="analytics_hourly_sender_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"tenant {self.tenant_id} campaign {self.campaign_id} {self.step} {self.hour:%Y-%m-%d %H}h"


class HourlyDelta(BucketFields):
    """A queue of changes not yet applied to ``HourlyRollup`` (written by triggers only)."""

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(db_default=Now())

    def __str__(self) -> str:
        return f"delta {self.pk} for tenant {self.tenant_id}"


class JourneyFields(models.Model):
    tenant = models.ForeignKey(
        "tenancy.Tenant", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    campaign_id = models.BigIntegerField()
    plan_version_id = models.BigIntegerField()
    step = models.CharField(max_length=100)
    state = models.CharField(max_length=16)
    reason = models.CharField(max_length=200, default="", db_default="")
    enrollments = models.BigIntegerField(default=0, db_default=0)

    class Meta:
        abstract = True


class JourneyCount(JourneyFields):
    """How many enrollments are where right now: step, state, and why they stopped or ended."""

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "campaign_id", "plan_version_id", "step", "state", "reason"],
                name="analytics_journey_bucket",
            )
        ]

    def __str__(self) -> str:
        return f"campaign {self.campaign_id} {self.step} {self.state}: {self.enrollments}"


class JourneyDelta(JourneyFields):
    """A queue of enrollment moves not yet applied to ``JourneyCount`` (written by triggers)."""

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(db_default=Now())

    def __str__(self) -> str:
        return f"journey delta {self.pk}"


class MessageFirst(models.Model):
    """A message's first human open (1), human click (2) or human reply (3): inserted by the
    event trigger with ``ON CONFLICT DO NOTHING``, it is what makes ``unique_*`` exact when
    events repeat or arrive out of order."""

    pk = models.CompositePrimaryKey("message_id", "kind")
    # No foreign-key constraint, like ``message_id``: the event trigger writes these rows and
    # a deferred per-row check of the tenant would only repeat what the event's row says.
    tenant = models.ForeignKey(
        "tenancy.Tenant",
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    message_id = models.BigIntegerField()
    kind = models.SmallIntegerField()

    class Meta:
        # The tenant's rows when it is deleted (and that deletion's foreign-key check): the
        # primary key leads with message_id. One insert per message at most three times.
        indexes = [models.Index(fields=["tenant"], name="analytics_first_tenant_idx")]

    def __str__(self) -> str:
        return f"message {self.message_id} first {self.kind}"


class FillState(models.Model):
    """Per rollup: everything committed before ``filled_through`` has been applied."""

    name = models.CharField(max_length=64, primary_key=True)
    filled_through = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_rows = models.BigIntegerField(default=0)
    last_duration_ms = models.FloatField(default=0)
    last_error = models.TextField(blank=True, default="")

    def __str__(self) -> str:
        return f"{self.name} filled through {self.filled_through}"


_SUMS = ",\n    ".join(f"sum(r.{name})::bigint AS {name}" for name in COUNTERS)


class CampaignDailyStats(pg.ReadOnlyMaterializedView):
    """Per tenant, campaign and day in the tenant's time zone: the dashboard's campaign list."""

    concurrent_index = "tenant_id, campaign_id, day"
    sql = f"""
SELECT r.tenant_id, r.campaign_id, (r.hour AT TIME ZONE t.timezone)::date AS day,
    {_SUMS}
FROM analytics_hourlyrollup r
JOIN tenancy_tenant t ON t.id = r.tenant_id
WHERE r.campaign_id <> 0
GROUP BY r.tenant_id, r.campaign_id, (r.hour AT TIME ZONE t.timezone)::date
"""

    tenant_id = models.BigIntegerField()
    campaign_id = models.BigIntegerField()
    day = models.DateField()

    class Meta:
        managed = False
        db_table = "analytics_campaign_daily"


class TenantDailyStats(pg.ReadOnlyMaterializedView):
    """Per tenant and day in the tenant's time zone, every counter."""

    concurrent_index = "tenant_id, day"
    sql = f"""
SELECT r.tenant_id, (r.hour AT TIME ZONE t.timezone)::date AS day,
    {_SUMS}
FROM analytics_hourlyrollup r
JOIN tenancy_tenant t ON t.id = r.tenant_id
GROUP BY r.tenant_id, (r.hour AT TIME ZONE t.timezone)::date
"""

    tenant_id = models.BigIntegerField()
    day = models.DateField()

    class Meta:
        managed = False
        db_table = "analytics_tenant_daily"


class SenderDailyStats(pg.ReadOnlyMaterializedView):
    """Per sender identity and day in the sender's own time zone (its caps count those days)."""

    concurrent_index = "tenant_id, sender_identity_id, day"
    sql = f"""
SELECT r.tenant_id, r.sender_identity_id, (r.hour AT TIME ZONE s.timezone)::date AS day,
    {_SUMS}
FROM analytics_hourlyrollup r
JOIN messaging_senderidentity s ON s.id = r.sender_identity_id
GROUP BY r.tenant_id, r.sender_identity_id, (r.hour AT TIME ZONE s.timezone)::date
"""

    tenant_id = models.BigIntegerField()
    sender_identity_id = models.BigIntegerField()
    day = models.DateField()

    class Meta:
        managed = False
        db_table = "analytics_sender_daily"


def _add_counter_fields() -> None:
    # The views carry every counter as a column; declare them once rather than three times.
    for view in (CampaignDailyStats, TenantDailyStats, SenderDailyStats):
        for name in COUNTERS:
            models.BigIntegerField(default=0).contribute_to_class(view, name)


_add_counter_fields()
