"""Set-up shared by the SMS tests: an SMS-enabled tenant's campaign with a text step, the
emulator as Twilio, and Twilio's callbacks replayed into our endpoints."""

import datetime
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.test import Client
from django.utils import timezone

from campaigns.models import Enrollment, Lead
from campaigns.tests.engine_support import (
    campaign_enrolled,
    identity_all_day,
    zone_at_local_hour,
)
from messaging.emulator.process import EmulatorProcess
from messaging.models import Message, SenderIdentity, WebhookReceipt
from messaging.services.ratelimit import KEY_PREFIX
from messaging.services.sms_events import sms_receipt_process
from outreach.tenancy.models import Tenant

SENDER_NUMBER = "+15550001000"

PLAN_ONE_SMS = {
    "start": "text",
    "steps": {
        "text": {
            "type": "sms",
            "body": "Hi {{ lead.first_name }}, quick question from {{ sender.from_name }}?",
            "next": "done",
        },
        "done": {"type": "end", "outcome": "texted"},
    },
}

# Branches on the carrier's delivery report: delivered → landed; undelivered or failed →
# unreachable.
PLAN_SMS_DELIVERY = {
    "start": "text",
    "steps": {
        "text": {
            "type": "sms",
            "body": "Hi {{ lead.first_name }}, a short note from us.",
            "on": {
                "delivered": "landed",
                "undelivered": "unreachable",
                "reply": "replied",
                "no_reply": {"after": "1d", "to": "replied"},
            },
        },
        "landed": {"type": "end", "outcome": "landed"},
        "unreachable": {"type": "end", "outcome": "unreachable"},
        "replied": {"type": "end", "outcome": "replied"},
    },
}

# An SMS step that waits: delivered → thanks, reply → replied, undelivered → fallback email
# step stand-in (an end step here), silence for a day → no_response.
PLAN_SMS_BRANCHES = {
    "start": "text",
    "steps": {
        "text": {
            "type": "sms",
            "body": "Hi {{ lead.first_name }}, worth a chat this week?",
            "on": {
                "reply": "replied",
                "undelivered": "unreachable",
                "no_reply": {"after": "1d", "to": "no_response"},
            },
        },
        "replied": {"type": "end", "outcome": "replied"},
        "unreachable": {"type": "end", "outcome": "unreachable"},
        "no_response": {"type": "end", "outcome": "no_response"},
    },
}


def phones(prefix: int, count: int, ending: str = "00") -> list[str]:
    """Distinct US numbers ``+1555<prefix><n><ending>``: ``ending`` is the emulator's
    outcome code (``10`` replies, ``11`` texts STOP, ``13`` undelivered, ``00`` delivered)."""
    assert 100 <= prefix <= 999 and count <= 100
    return [f"+1555{prefix}{n:02d}{ending}" for n in range(count)]


def sms_campaign(
    tenant: Tenant,
    *,
    numbers: list[str],
    plan: dict = PLAN_ONE_SMS,
    consent: str = Lead.SmsConsent.GRANTED,
    identity: SenderIdentity | None = None,
    label: str = "sms",
    **lead_fields: Any,
) -> list[Enrollment]:
    """An active campaign on ``plan`` whose identity texts from ``SENDER_NUMBER`` (or
    ``identity``), one lead per number (with SMS consent unless told otherwise; ``label``
    starts their addresses), enrolled. The leads live where it is noon now, so quiet hours
    never stop a test that does not mean them to."""
    lead_fields.setdefault("timezone", zone_at_local_hour(12))
    Tenant.objects.filter(pk=tenant.pk).update(sms_enabled=True)
    tenant.refresh_from_db()
    identity = identity or identity_all_day(
        tenant, sms_from_number=SENDER_NUMBER, sms_per_second=1000
    )
    sms_counters_clear(identity)
    emails = [f"{label}{number[1:]}@prospect.example.com" for number in numbers]
    _, enrollments = campaign_enrolled(
        tenant, plan=plan, emails=emails, identity=identity, timezone=lead_fields["timezone"]
    )
    for enrollment, number in zip(enrollments, numbers, strict=True):
        Lead.objects.filter(pk=enrollment.lead_id).update(
            phone=number,
            sms_consent=consent,
            sms_consent_source="web_form",
            sms_consent_at=timezone.now() - datetime.timedelta(days=1),
            **{k: v for k, v in lead_fields.items() if k != "timezone"},
        )
    return enrollments


def sms_counters_clear(identity: SenderIdentity) -> None:
    """Forget the SMS capacity an identity used today: identity ids restart with each new
    test database, and Redis outlives it."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(f"{KEY_PREFIX}sms:i:{identity.pk}:*", count=1000))
    if keys:
        client.delete(*keys)


def texts_per_number(emulator: EmulatorProcess) -> Counter:
    """How many texts the emulator accepted through the API for each number."""
    return Counter(m["to"] for m in emulator.sms_messages(direction="outbound-api"))


def sms_messages(enrollments: list[Enrollment]) -> list[Message]:
    return list(
        Message.objects.filter(enrollment__in=[e.pk for e in enrollments], channel="sms").order_by(
            "id"
        )
    )


def callbacks_replay(sink, client: Client | None = None, *, process: bool = True) -> list[int]:
    """Post every callback the emulator delivered to ``sink`` into our endpoints (same
    process, same transaction), then process the stored receipts (unless ``process`` is
    false: their hints are lost, as in a test transaction). Returns the status codes.
    The sink stands in for our server: ``PUBLIC_BASE_URL`` pointed at it when the texts were
    sent, so the signed URL is ours."""
    client = client or Client()
    statuses = []
    for request in list(sink.requests):
        parts = urlsplit(request.path)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        response = client.post(
            path,
            data=request.body,
            content_type="application/x-www-form-urlencoded",
            headers={"X-Twilio-Signature": request.headers.get("X-Twilio-Signature", "")},
        )
        statuses.append(response.status_code)
    sink.requests.clear()
    if process:
        receipts_process()
    return statuses


def receipts_process() -> int:
    done = 0
    for receipt_id in WebhookReceipt.objects.filter(
        kind__in=["sms_status", "sms_inbound"], processed_at=None
    ).values_list("id", flat=True):
        if sms_receipt_process(receipt_id=receipt_id) is not None:
            done += 1
    return done
