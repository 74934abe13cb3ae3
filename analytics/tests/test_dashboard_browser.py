"""The dashboard in a real browser: Debian's chromium, headless, against a live server."""

import datetime
import os
import random
import re

import pytest
from django.utils import timezone

from analytics.services.rollup import analytics_refresh, analytics_views_refresh
from analytics.tests.support import campaign_messages, engagement_events, receipt_post
from analytics.views import share_token_make
from outreach.testing.browser import chromium_dom, chromium_path

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    # CI installs chromium and sets OUTREACH_REQUIRE_BROWSER, so there a missing browser fails.
    pytest.mark.skipif(
        chromium_path() is None and not os.environ.get("OUTREACH_REQUIRE_BROWSER"),
        reason="chromium is not installed (apt-get install chromium)",
    ),
]


@pytest.fixture(autouse=True)
def _events_cleanup(event_rows_cleanup):
    """The partitioned event table is unmanaged: see ``event_rows_cleanup``."""


def test_the_campaign_page_draws_its_charts_and_plan_in_chromium(live_server, tenant):
    hour = timezone.now().replace(minute=0, second=0, microsecond=0) - datetime.timedelta(hours=1)
    campaign, messages = campaign_messages(tenant, hours=[hour], per_hour=15)
    receipt_post(tenant, engagement_events(messages, rng=random.Random(2)))
    analytics_refresh()
    analytics_views_refresh()
    share = share_token_make(tenant=tenant)

    dom = chromium_dom(
        f"{live_server.url}/dashboard/{tenant.slug}/campaigns/{campaign.pk}/?share={share}"
    )
    body = re.search(r"<body[^>]*>", dom).group(0)
    # Funnel, variants and hourly series drawn by Chart.js; the plan drawn as an SVG graph.
    assert 'data-charts="3"' in body
    assert 'data-plan="2"' in body
    assert dom.count("<canvas") == 3
    assert 'data-step="intro"' in dom and "sent 15" in dom
    assert "figures as of" in dom

    tenant_dom = chromium_dom(f"{live_server.url}/dashboard/{tenant.slug}/?share={share}")
    assert 'data-charts="1"' in re.search(r"<body[^>]*>", tenant_dom).group(0)
    assert campaign.name in tenant_dom
