"""The analytics API: what a tenant reads, in its own time zone, and nobody else's."""

import datetime
import itertools
import random

import pytest
from django.utils import timezone

from analytics.services.rollup import analytics_refresh, analytics_views_refresh
from analytics.tests.support import (
    campaign_messages,
    engagement_events,
    enrollments_make,
    receipt_post,
)
from messaging.tests.webhook_support import sg_event

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
