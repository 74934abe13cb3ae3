"""The analytics API: what a tenant reads, in its own time zone, and nobody else's."""

import datetime
import itertools
import random
from urllib.parse import urlencode

import pytest
from django.utils import timezone

from analytics.services.rollup import analytics_refresh, analytics_views_refresh
from analytics.tests.support import (
    campaign_messages,
    engagement_events,
    enrollments_make,
    receipt_post,
    recount_rows,
    rollup_rows,
)
from messaging.models import Message, SenderIdentity
from messaging.services.sms_events import sms_receipt_process, sms_receipt_store
from messaging.tests.webhook_support import sg_event
from outreach.testing.factories import LeadFactory

pytestmark = pytest.mark.django_db


def _top_of_hour(hours_ago: int) -> datetime.datetime:
    top = timezone.now().replace(minute=0, second=0, microsecond=0)
    return top - datetime.timedelta(hours=hours_ago)


@pytest.fixture
def running_campaign(tenant):
    """A campaign with 20 sends two hours ago, their engagement, and 5 enrollments."""
    campaign, messages = campaign_messages(tenant, hours=[_top_of_hour(2)], per_hour=20)
    receipt_post(tenant, engagement_events(messages, rng=random.Random(3)))
    enrollments_make(campaign, 5)
    analytics_refresh()
    analytics_views_refresh()
    return campaign, messages


def test_campaign_analytics_give_totals_rates_steps_variants_funnel_and_journey(
    api, running_campaign
):
    campaign, _messages = running_campaign
    body = api.get(f"/api/v1/analytics/campaigns/{campaign.pk}/").json()
    totals = body["totals"]
    assert totals["sent"] == 20
    assert totals["enrolled"] == 5
    assert totals["rates"]["delivery_rate"] == round(totals["delivered"] / 20, 4)
    assert body["steps"][0]["step"] == "intro" and body["steps"][0]["sent"] == 20
    assert body["variants"] == [
        {**body["variants"][0], "step": "intro", "variant": "A", "sent": 20}
    ]
    stages = [s["stage"] for s in body["funnel"]]
    assert stages == ["enrolled", "sent", "delivered", "opened", "clicked", "replied"]
    assert body["funnel"][1]["count"] == 20
    assert body["journey"]["states"] == {"active": 5}
    assert body["versions"][0]["version"] == 1
    graph = {n["name"]: n for n in body["plan_graph"]["nodes"]}
    assert graph["intro"]["sent"] == 20 and graph["intro"]["here"] == 5
    assert {"from": "intro", "to": "done", "label": "next"} in body["plan_graph"]["edges"]
    assert body["as_of"] is not None


def test_timeseries_buckets_hours_and_days_in_the_tenants_time_zone(api, tenant, running_campaign):
    campaign, _ = running_campaign
    tenant.timezone = "America/New_York"
    tenant.save(update_fields=["timezone"])
    sent_hour = _top_of_hour(2)
    body = api.get(
        f"/api/v1/analytics/campaigns/{campaign.pk}/timeseries/",
        {"bucket": "hour", "from": (sent_hour - datetime.timedelta(hours=3)).isoformat()},
    ).json()
    assert body["timezone"] == "America/New_York"
    points = {p["start"]: p for p in body["points"]}
    local = sent_hour.astimezone(datetime.timezone(datetime.timedelta(hours=-5)))
    local_dst = sent_hour.astimezone(datetime.timezone(datetime.timedelta(hours=-4)))
    key = next(k for k in points if k in (local.isoformat(), local_dst.isoformat()))
    assert points[key]["sent"] == 20
    assert sum(p["sent"] for p in body["points"]) == 20
    hours = [datetime.datetime.fromisoformat(p["start"]) for p in body["points"]]
    assert all(b - a == datetime.timedelta(hours=1) for a, b in itertools.pairwise(hours))

    days = api.get(
        f"/api/v1/analytics/campaigns/{campaign.pk}/timeseries/", {"bucket": "day"}
    ).json()
    assert len(days["points"]) in (30, 31)
    assert sum(p["sent"] for p in days["points"]) == 20
    assert all(p["start"].endswith(("T00:00:00-05:00", "T00:00:00-04:00")) for p in days["points"])


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"bucket": "week"}, "bucket"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-40"}, "to"),
        ({"from": "2026-12-05", "to": "2026-12-01"}, "from"),
        ({"bucket": "hour", "from": "2026-01-01", "to": "2026-06-01"}, "from"),
    ],
)
def test_a_bad_range_or_bucket_is_a_400_naming_the_parameter(api, running_campaign, query, field):
    campaign, _ = running_campaign
    response = api.get(f"/api/v1/analytics/campaigns/{campaign.pk}/timeseries/", query)
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_another_tenants_campaign_or_sender_is_not_found(
    api_client_for, other_tenant, running_campaign
):
    campaign, messages = running_campaign
    other = api_client_for(other_tenant)
    for url in (
        f"/api/v1/analytics/campaigns/{campaign.pk}/",
        f"/api/v1/analytics/campaigns/{campaign.pk}/timeseries/",
        f"/api/v1/analytics/sender-identities/{messages[0].sender_identity_id}/",
        "/api/v1/analytics/campaigns/abc/",
        "/api/v1/analytics/campaigns/99999999999999999999999/",
    ):
        assert other.get(url).status_code == 404, url
    tenant_view = other.get("/api/v1/analytics/tenant/").json()
    assert tenant_view["totals"]["sent"] == 0


def test_sender_analytics_report_volume_and_rates_against_bulk_sender_thresholds(
    api, tenant, running_campaign
):
    _, messages = running_campaign
    identity_id = messages[0].sender_identity_id
    # Two complaints from the twenty: far above the 0.3 % Gmail and Yahoo allow.
    receipt_post(tenant, [sg_event(m, "spamreport") for m in messages[:2]])
    analytics_refresh()
    analytics_views_refresh()
    body = api.get(f"/api/v1/analytics/sender-identities/{identity_id}/").json()
    assert body["totals"]["sent"] == 20
    assert body["totals"]["spam_reports"] >= 2
    health = body["deliverability"]
    assert health["spam_rate_limit"] == 0.003 and health["spam_rate_warn"] == 0.001
    assert health["spam_status"] == "over_limit"
    assert body["caps"]["daily_cap"] == messages[0].sender_identity.daily_cap


def test_tenant_analytics_by_day(api, tenant, running_campaign):
    body = api.get("/api/v1/analytics/tenant/").json()
    assert body["totals"]["sent"] == 20
    assert sum(d["sent"] for d in body["by_day"]) == 20
    assert api.get("/api/v1/analytics/tenant/", {"from": "soon"}).status_code == 400


def test_the_endpoints_are_in_the_openapi_schema(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json")
    text = schema.content.decode()
    for path in (
        "/api/v1/analytics/campaigns/{id}/",
        "/api/v1/analytics/campaigns/{id}/timeseries/",
        "/api/v1/analytics/sender-identities/{id}/",
        "/api/v1/analytics/tenant/",
    ):
        assert path in text


EMAIL_THEN_TEXT = {
    "start": "intro",
    "steps": {
        "intro": {"type": "email", "next": "text"},
        "text": {"type": "sms", "body": "Hi {{ lead.first_name }}, worth a call?", "next": "done"},
        "done": {"type": "end", "outcome": "finished"},
    },
}


def _twilio_callback(tenant, kind: str, message: Message, **params: str) -> None:
    """A verified Twilio callback through the real path: stored raw, then normalised."""
    if kind == "sms_status":
        url = f"http://testserver/webhooks/twilio/status/{tenant.public_id}/?message={message.public_id}"
        fields = {"MessageSid": message.provider_message_id, "To": message.to_phone, **params}
    else:
        url = f"http://testserver/webhooks/twilio/inbound/{tenant.public_id}/"
        fields = {
            "MessageSid": f"SMin{message.pk}{params['Body']}",
            "From": message.to_phone,
            "To": message.sender_identity.sms_from_number,
            **params,
        }
    received = sms_receipt_store(
        tenant_id=tenant.pk, kind=kind, body=urlencode(fields).encode(), url=url, headers={}
    )
    assert sms_receipt_process(receipt_id=received.receipt_id)


def test_a_campaign_with_an_email_step_and_a_text_step_counts_each_channel_apart(api, tenant):
    campaign, mails = campaign_messages(
        tenant, hours=[_top_of_hour(1)], per_hour=10, plan=EMAIL_THEN_TEXT
    )
    receipt_post(tenant, [sg_event(m, "delivered") for m in mails[:8]])
    identity = campaign.sender_identity
    SenderIdentity.objects.filter(pk=identity.pk).update(sms_from_number="+15550001000")
    texts = []
    for n, status in enumerate(["accepted"] * 4 + ["failed"]):
        lead = LeadFactory(tenant=tenant, phone=f"+1555000{n:04d}")
        texts.append(
            Message.objects.create(
                tenant=tenant,
                channel=Message.Channel.SMS,
                sender_identity=identity,
                lead=lead,
                campaign=campaign,
                plan_version=campaign.current_version,
                step="text",
                to_email="",
                to_phone=lead.phone,
                subject="Hi, worth a call?",
                status=status,
                status_rank=10 if status == "accepted" else 2,
                provider_message_id=f"SM{tenant.pk}x{n}" if status == "accepted" else "",
                sent_at=timezone.now() if status == "accepted" else None,
            )
        )
    for text in texts[:2]:
        _twilio_callback(tenant, "sms_status", text, MessageStatus="delivered")
    _twilio_callback(tenant, "sms_status", texts[2], MessageStatus="undelivered", ErrorCode="30003")
    _twilio_callback(tenant, "sms_inbound", texts[0], Body="Sure, call me")
    _twilio_callback(tenant, "sms_inbound", texts[1], Body="STOP")
    analytics_refresh()

    body = api.get(f"/api/v1/analytics/campaigns/{campaign.pk}/").json()
    totals = body["totals"]
    # The email figures are the emails' alone: texts never inflate sent or dilute its rates.
    assert (totals["sent"], totals["failed"], totals["delivered"]) == (10, 0, 8)
    assert totals["rates"]["delivery_rate"] == 0.8
    assert {k: v for k, v in totals.items() if k.startswith("sms_")} == {
        "sms_sent": 4,
        "sms_failed": 1,
        "sms_needs_review": 0,
        "sms_delivered": 2,
        "sms_undelivered": 1,
        "sms_replies": 1,
        "sms_opt_outs": 1,
    }
    steps = {s["step"]: s for s in body["steps"]}
    assert (steps["intro"]["sent"], steps["intro"]["sms_sent"]) == (10, 0)
    assert (steps["text"]["sent"], steps["text"]["sms_sent"]) == (0, 4)
    graph = {n["name"]: n for n in body["plan_graph"]["nodes"]}
    assert (graph["text"]["sms_sent"], graph["text"]["sms_delivered"]) == (4, 2)
    assert body["funnel"][1] == {"stage": "sent", "count": 10}
    # The triggers and the recount (what a backfill rebuilds) agree.
    assert rollup_rows(tenant.pk) == recount_rows(tenant.pk)
