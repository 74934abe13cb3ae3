"""What a case runs on (a tenant, an identity, leads, an active campaign, enrollments) and the
ground truth it is judged by. Runs in the driver, on Django, against the private cluster.

Ground truth, never the product's own counters:

- *received*: the emulator's accepted messages, by (recipient, step) — what SendGrid got;
- *ledger*: ``messaging_message`` rows by status;
- *events*: ``messaging_messageevent`` rows from the provider (synthetic timeout events
  apart), their distinct provider ids, and the emulator's count of events it produced;
- *transitions*: ``campaigns_enrollmenttransition`` rows per (enrollment, from_seq), and the
  step entries left without one.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

from django.db import connection

from campaigns.models import Enrollment, Lead
from campaigns.services import campaigns as campaign_services
from campaigns.services.enrollment import enrollments_create
from campaigns.services.leads import lead_bulk_create
from messaging.emulator.process import EmulatorProcess
from messaging.models import Message, SenderIdentity
from messaging.services.identities import sender_identity_create
from messaging.services.review import message_review_resolve
from outreach.tenancy.models import Tenant
from outreach.tenancy.services import tenant_create

UINT_MAX = 2**31 - 1
ALL_WEEK = [0, 1, 2, 3, 4, 5, 6]
BODY = (
    'Hi {{ lead.first_name | default:"there" }},\n\nWorth a short call?\n\n'
    "{{ sender.signature }}\n\nUnsubscribe: {{ unsubscribe_url }}"
)


def email_step(subject: str, **extra) -> dict:
    return {
        "type": "email",
        "variants": [{"name": "main", "subject": subject, "text": BODY}],
        **extra,
    }


PLAN_ONE_EMAIL = {
    "name": "One email",
    "start": "intro",
    "steps": {
        "intro": email_step("Quick question", next="done"),
        "done": {"type": "end", "outcome": "sent"},
    },
}


@dataclass
class World:
    tenant: Tenant
    campaign_id: int
    identity_id: int
    enrollment_ids: list[int] = field(default_factory=list)

    @property
    def tenant_id(self) -> int:
        return self.tenant.pk


def world_build(
    *,
    name: str,
    plan: dict,
    emails: list[str],
    webhook_public_key: str,
    identity: dict | None = None,
    park: bool = True,
) -> World:
    """A tenant with an always-open identity and ``emails`` enrolled in an active campaign on
    ``plan``. ``park``: the first sends wait a day until ``world_release`` makes them due, so
    the wave starts when the case is ready to break things."""
    stamp = dt.datetime.now(dt.UTC).strftime("%H%M%S%f")
    tenant = tenant_create(
        name=f"Chaos {name}", slug=f"chaos-{name}-{stamp}", webhook_public_key=webhook_public_key
    ).tenant
    Tenant.objects.filter(pk=tenant.pk).update(daily_send_quota=UINT_MAX)
    tenant.refresh_from_db()
    fields = {
        "from_name": "Chaos AE",
        "from_email": f"ae@{name}.sender.example.com",
        "reply_to": f"ae@{name}.sender.example.com",
        "signature": "Chaos AE",
        "daily_cap": UINT_MAX,
        "hourly_cap": UINT_MAX,
        "window_days": [(dt.datetime.now(dt.UTC).weekday() + 3) % 7] if park else ALL_WEEK,
        "window_start": "00:00",
        "window_end": "23:59",
        "timezone": "UTC",
        **(identity or {}),
    }
    sender = sender_identity_create(tenant_id=tenant.pk, data=fields)
    for start in range(0, len(emails), 10_000):
        rows = [
            (index, {"email": email, "first_name": f"Lead{index}", "timezone": fields["timezone"]})
            for index, email in enumerate(emails[start : start + 10_000], start=start)
        ]
        lead_bulk_create(tenant_id=tenant.pk, rows=rows)
    campaign = campaign_services.campaign_create(
        tenant_id=tenant.pk, name=f"Chaos {name}", sender_identity_id=sender.pk
    )
    version = campaign_services.campaign_version_add(
        tenant_id=tenant.pk, campaign_id=campaign.pk, plan=plan
    ).version
    campaign_services.campaign_publish(
        tenant_id=tenant.pk, campaign_id=campaign.pk, version=version.version
    )
    campaign_services.campaign_status_set(
        tenant_id=tenant.pk, campaign_id=campaign.pk, action="activate"
    )
    world = World(tenant=tenant, campaign_id=campaign.pk, identity_id=sender.pk)
    lead_ids = sorted(Lead.objects.for_tenant(tenant.pk).values_list("pk", flat=True))
    for start in range(0, len(lead_ids), 5_000):
        result = enrollments_create(
            tenant_id=tenant.pk, campaign_id=campaign.pk, lead_ids=lead_ids[start : start + 5_000]
        )
        world.enrollment_ids += [row["enrollment_id"] for row in result.enrolled]
    if park:
        # Enrolled while the identity's window was shut (its first sends wait for a later
        # day); it opens now, and world_release makes the sends due when the case is ready.
        SenderIdentity.objects.filter(pk=sender.pk).update(window_days=ALL_WEEK)
    return world


def world_release(world: World) -> int:
    """The parked first sends become due now: the wave starts at the next sweep."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE campaigns_scheduledaction SET due_at = now()"
            " WHERE tenant_id = %s AND status = 'pending' AND kind = 'send'",
            [world.tenant_id],
        )
        return cursor.rowcount


# --- ground truth ----------------------------------------------------------------------------


def received(emulator: EmulatorProcess, world: World) -> Counter:
    """Mails the provider accepted, by (recipient, step)."""
    counts: Counter = Counter()
    for record in emulator.messages(
        arg_outreach_tenant=str(world.tenant.public_id), fields="to,categories"
    ):
        step = next((c[5:] for c in record["categories"] or [] if c.startswith("step-")), "")
        for entry in record["to"]:
            counts[(entry["email"].lower(), step)] += 1
    return counts


def received_message_ids(emulator: EmulatorProcess, world: World) -> set[str]:
    return {
        record["custom_args"].get("outreach_message_id", "")
        for record in emulator.messages(
            arg_outreach_tenant=str(world.tenant.public_id), fields="custom_args"
        )
    }


def _one(sql: str, params: list) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _all(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def ledger(world: World) -> Counter:
    return Counter(
        dict(
            _all(
                "SELECT status, count(*) FROM messaging_message WHERE tenant_id = %s"
                " GROUP BY status",
                [world.tenant_id],
            )
        )
    )


NOT_SENDGRID = ["timeout:%", "twilio:%"]


@dataclass
class EventTruth:
    rows: int  # provider events stored
    distinct: int  # distinct provider event ids among them
    synthetic: int  # timeouts recorded as events (no_open ...)

    @property
    def duplicates(self) -> int:
        return self.rows - self.distinct


def events(world: World) -> EventTruth:
    """SendGrid's events (Twilio's, keyed ``twilio:``, are counted by the case that posts
    them), and the timeouts recorded as events."""
    rows, distinct, synthetic = _one(
        """
        SELECT count(*) FILTER (WHERE NOT provider_event_id LIKE ANY (%s)),
               count(DISTINCT provider_event_id)
                   FILTER (WHERE NOT provider_event_id LIKE ANY (%s)),
               count(*) FILTER (WHERE provider_event_id LIKE 'timeout:%%')
        FROM messaging_messageevent WHERE tenant_id = %s
        """,
        [NOT_SENDGRID, NOT_SENDGRID, world.tenant_id],
    )
    return EventTruth(rows, distinct, synthetic)


@dataclass
class TransitionTruth:
    rows: int
    step_entries: int  # distinct (enrollment, from_seq)
    missing: int  # enrollments with a step entry below their current one never left
    by_trigger: Counter

    @property
    def per_entry(self) -> str:
        if not self.step_entries:
            return "-"
        ratio = self.rows / self.step_entries
        return f"{ratio:.2f} ({self.step_entries:,} entries, {self.missing} gaps)"


def transitions(world: World) -> TransitionTruth:
    rows, entries = _one(
        "SELECT count(*), count(DISTINCT (enrollment_id, from_seq))"
        " FROM campaigns_enrollmenttransition WHERE tenant_id = %s",
        [world.tenant_id],
    )
    # Every step entry before the current one was left exactly once: from_seq runs 1..n
    # with no hole, n = step_seq - 1 (still on it) or step_seq (left it and stopped there).
    (missing,) = _one(
        """
        SELECT count(*) FROM (
            SELECT e.id, e.step_seq, count(t.id) AS n,
                   coalesce(min(t.from_seq), 1) AS low, coalesce(max(t.from_seq), 0) AS high
            FROM campaigns_enrollment e
            LEFT JOIN campaigns_enrollmenttransition t ON t.enrollment_id = e.id
            WHERE e.tenant_id = %s
            GROUP BY e.id, e.step_seq
        ) x
        WHERE NOT (low = 1 AND n = high AND high IN (step_seq - 1, step_seq))
        """,
        [world.tenant_id],
    )
    by_trigger = Counter(
        dict(
            _all(
                "SELECT trigger, count(*) FROM campaigns_enrollmenttransition"
                " WHERE tenant_id = %s GROUP BY trigger",
                [world.tenant_id],
            )
        )
    )
    return TransitionTruth(rows, entries, missing, by_trigger)


def enrollment_states(world: World) -> Counter:
    return Counter(
        Enrollment.objects.filter(tenant_id=world.tenant_id).values_list("state", flat=True)
    )


def actions(world: World) -> dict[str, int]:
    """Scheduled actions left: claimed, due now, due later (held for capacity, timeouts)."""
    claimed, due, later, sends_soon = _one(
        """
        SELECT count(*) FILTER (WHERE status = 'claimed'),
               count(*) FILTER (WHERE status = 'pending' AND due_at <= now()),
               count(*) FILTER (WHERE status = 'pending' AND due_at > now()),
               count(*) FILTER (WHERE status = 'pending' AND kind = 'send'
                                AND due_at <= now() + interval '10 minutes')
        FROM campaigns_scheduledaction WHERE tenant_id = %s
        """,
        [world.tenant_id],
    )
    return {"claimed": claimed, "due": due, "later": later, "sends_soon": sends_soon}


def stranded(world: World) -> int:
    """Live enrollments with no scheduled action: nothing would ever move them again (a
    paused one waits for its resume action, one under review for its operator)."""
    (count,) = _one(
        """
        SELECT count(*) FROM campaigns_enrollment e
        WHERE e.tenant_id = %s AND e.state IN ('active', 'paused')
          AND NOT EXISTS (SELECT 1 FROM campaigns_scheduledaction a WHERE a.enrollment_id = e.id)
          AND NOT EXISTS (SELECT 1 FROM messaging_message m
                          WHERE m.enrollment_id = e.id AND m.status = 'needs_review')
        """,
        [world.tenant_id],
    )
    return count


def receipts_unprocessed(world: World) -> int:
    (count,) = _one(
        "SELECT count(*) FROM messaging_webhookreceipt"
        " WHERE tenant_id = %s AND processed_at IS NULL",
        [world.tenant_id],
    )
    return count


def rollups_match_recount(world: World) -> tuple[bool, str]:
    """The analytics rollups (hourly and journeys) equal a recount from the source tables."""
    from analytics.models import BUCKET_KEYS, COUNTERS, HourlyRollup, JourneyCount
    from analytics.services.recount import hourly_recount, journey_recount

    def key(row: dict) -> tuple:
        return tuple(
            row[k].isoformat() if isinstance(row[k], dt.datetime) else row[k] for k in BUCKET_KEYS
        )

    stored = {}
    for row in HourlyRollup.objects.filter(tenant_id=world.tenant_id).values(
        *BUCKET_KEYS, *COUNTERS
    ):
        counts = {c: row[c] for c in COUNTERS}
        if any(counts.values()):
            stored[key(row)] = counts
    recount = {
        key(row): {c: row[c] for c in COUNTERS}
        for row in hourly_recount(
            tenant_id=world.tenant_id,
            since=dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
            until=dt.datetime(2100, 1, 1, tzinfo=dt.UTC),
        )
    }
    journeys_stored = {
        (r.campaign_id, r.plan_version_id, r.step, r.state, r.reason): r.enrollments
        for r in JourneyCount.objects.filter(tenant_id=world.tenant_id)
        if r.enrollments
    }
    journeys = {
        (r["campaign_id"], r["plan_version_id"], r["step"], r["state"], r["reason"]): r[
            "enrollments"
        ]
        for r in journey_recount(tenant_id=world.tenant_id)
    }
    if stored != recount:
        differing = {k for k in stored.keys() | recount.keys() if stored.get(k) != recount.get(k)}
        return False, f"{len(differing)} hourly buckets differ"
    if journeys_stored != journeys:
        return False, "journey counts differ"
    sent = sum(v["sent"] for v in stored.values())
    return True, f"{len(stored)} hourly buckets, {sent:,} sent"


def deltas_pending() -> int:
    (hourly,) = _one("SELECT count(*) FROM analytics_hourlydelta", [])
    (journey,) = _one("SELECT count(*) FROM analytics_journeydelta", [])
    return hourly + journey


def review_as_operator(emulator: EmulatorProcess, world: World) -> tuple[int, int]:
    """The runbook's needs_review step, done as an operator would: look the message up at
    the provider (here the emulator's record, SendGrid's activity feed in production) and
    resolve it with the product's own service. Returns (resolved sent, resolved not sent)."""
    pending = list(
        Message.objects.filter(tenant_id=world.tenant_id, status=Message.Status.NEEDS_REVIEW)
    )
    if not pending:
        return 0, 0
    at_provider = received_message_ids(emulator, world)
    sent = not_sent = 0
    for message in pending:
        outcome = "sent" if str(message.public_id) in at_provider else "not_sent"
        message_review_resolve(
            tenant_id=world.tenant_id,
            message_id=message.pk,
            outcome=outcome,
            actor="chaos:operator",
            reason="checked against the provider's record of accepted mail",
        )
        sent += outcome == "sent"
        not_sent += outcome == "not_sent"
    return sent, not_sent
