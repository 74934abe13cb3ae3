"""What analytics tests share: a campaign with messages in chosen hours, events posted
through the real normalisation path, and the rollup compared with a recount."""

import datetime
import json
import random

from django.db import connection

from analytics.models import BUCKET_KEYS, COUNTERS, HourlyRollup
from analytics.services.recount import hourly_recount
from campaigns.models import Enrollment
from messaging.models import Message, WebhookReceipt
from messaging.services.receipts import webhook_receipt_create, webhook_receipt_normalise
from messaging.tests.webhook_support import sg_event
from outreach.testing.factories import LeadFactory, SenderIdentityFactory, campaign_with_plan

PLAN = {
    "start": "intro",
    "steps": {
        "intro": {"type": "email", "next": "done"},
        "done": {"type": "end", "outcome": "finished"},
    },
}


def campaign_messages(
    tenant, *, hours: list[datetime.datetime], per_hour: int, variant="A", plan: dict = PLAN
):
    """Accepted messages of one campaign step, ``per_hour`` composed in each of ``hours``."""
    identity = SenderIdentityFactory(tenant=tenant)
    campaign = campaign_with_plan(tenant=tenant, plan=plan, identity=identity)
    messages = []
    for hour in hours:
        for i in range(per_hour):
            lead = LeadFactory(tenant=tenant)
            message = Message.objects.create(
                tenant=tenant,
                sender_identity=identity,
                lead=lead,
                campaign=campaign,
                plan_version=campaign.current_version,
                step="intro",
                variant=variant,
                to_email=lead.email,
                subject="Quick question",
                status=Message.Status.ACCEPTED,
                status_rank=10,
                provider_message_id=f"pm{tenant.pk}x{lead.pk}",
                sent_at=hour,
            )
            # auto_now_add stamps "now": move the message into its hour (an UPDATE, which
            # the triggers must follow from one bucket to the other).
            Message.objects.filter(pk=message.pk).update(
                created_at=hour + datetime.timedelta(minutes=i % 60)
            )
            message.refresh_from_db()
            messages.append(message)
    return campaign, messages


def enrollments_make(campaign, n: int) -> list[Enrollment]:
    """``n`` leads enrolled in the campaign, on its first step."""
    return [
        Enrollment.objects.create(
            tenant=campaign.tenant,
            campaign=campaign,
            lead=LeadFactory(tenant=campaign.tenant),
            plan_version=campaign.current_version,
            sender_identity=campaign.sender_identity,
            current_step="intro",
        )
        for _ in range(n)
    ]


def receipt_post(tenant, events: list[dict]) -> None:
    receipt_id = webhook_receipt_create(
        tenant_id=tenant.pk,
        kind=WebhookReceipt.Kind.EVENTS,
        body=json.dumps(events).encode(),
        headers={},
        content_type="application/json",
    )
    webhook_receipt_normalise(receipt_id=receipt_id)


def engagement_events(messages, *, rng: random.Random) -> list[dict]:
    """A realistic mix per message: delivered, then opens (some by Apple's proxy), clicks (some
    by link scanners), a few bounces, complaints and unsubscribes."""
    events = []
    for message in messages:
        at = message.created_at.timestamp() + 60
        roll = rng.random()
        if roll < 0.1:
            events.append(sg_event(message, "bounce", at=at, type="bounce", status="5.1.1"))
            continue
        if roll < 0.15:
            events.append(sg_event(message, "bounce", at=at, type="blocked", status="4.7.1"))
            continue
        events.append(sg_event(message, "delivered", at=at))
        for n in range(rng.randint(0, 3)):
            events.append(
                sg_event(message, "open", at=at + 600 * (n + 1), sg_machine_open=rng.random() < 0.3)
            )
        if rng.random() < 0.4:
            scanner = rng.random() < 0.3
            events.append(
                sg_event(
                    message,
                    "click",
                    at=at + (2 if scanner else 1800),
                    url="https://example.com/pricing",
                    useragent="Mozilla/5.0 (compatible; Barracuda)" if scanner else "Mozilla/5.0",
                )
            )
        if rng.random() < 0.05:
            events.append(sg_event(message, "spamreport", at=at + 3600))
        elif rng.random() < 0.05:
            events.append(sg_event(message, "unsubscribe", at=at + 3600))
    return events


def reply_record(message, *, classification: str, at: datetime.datetime, key: str) -> None:
    """A reply event as the inbound path stores it (the inbound parser has its own tests)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO messaging_messageevent
                (tenant_id, message_id, enrollment_id, event_type, occurred_at, received_at,
                 provider_event_id, provider_message_id, email, raw)
            VALUES (%s, %s, NULL, 'reply', %s, now(), %s, '', %s, %s::jsonb)
            """,
            [
                message.tenant_id,
                message.pk,
                at,
                key,
                message.to_email,
                json.dumps({"classification": classification}),
            ],
        )


def _key(row) -> tuple:
    return tuple(row[k] for k in BUCKET_KEYS)


def rollup_rows(tenant_id: int) -> dict[tuple, dict[str, int]]:
    rows = HourlyRollup.objects.filter(tenant_id=tenant_id).values(*BUCKET_KEYS, *COUNTERS)
    out = {}
    for row in rows:
        counts = {c: row[c] for c in COUNTERS}
        if any(counts.values()):
            out[_key(row)] = counts
    return out


def recount_rows(tenant_id: int) -> dict[tuple, dict[str, int]]:
    rows = hourly_recount(
        tenant_id=tenant_id,
        since=datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC),
        until=datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC),
    )
    return {_key(row): {c: row[c] for c in COUNTERS} for row in rows}
