"""The dashboard pages: who may see them, what they show, and that they work offline."""

import datetime
import re

import pytest
from django.utils import timezone

from analytics.services.rollup import analytics_refresh, analytics_views_refresh
from analytics.tests.support import campaign_messages
from analytics.views import share_token_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign(tenant):
    hour = timezone.now().replace(minute=0, second=0, microsecond=0) - datetime.timedelta(hours=1)
    campaign, _ = campaign_messages(tenant, hours=[hour], per_hour=7)
    analytics_refresh()
    analytics_views_refresh()
    return campaign


def test_staff_see_the_tenant_and_campaign_pages_with_their_figures(admin_client, tenant, campaign):
    page = admin_client.get(f"/dashboard/{tenant.slug}/")
    assert page.status_code == 200
    assert campaign.name in page.content.decode()
    page = admin_client.get(f"/dashboard/{tenant.slug}/campaigns/{campaign.pk}/")
    html = page.content.decode()
    assert page.status_code == 200
    for canvas in ("funnel", "variants", "hourly"):
        assert f'id="{canvas}"' in html
    assert '"sent": 7' in html  # the embedded figures the charts start from
    data = admin_client.get(f"/dashboard/{tenant.slug}/campaigns/{campaign.pk}/data.json").json()
    assert data["analytics"]["totals"]["sent"] == 7
    assert len(data["hourly"]["points"]) >= 48


def test_the_chart_library_is_served_from_our_own_static_files(admin_client, tenant, campaign):
    html = admin_client.get(f"/dashboard/{tenant.slug}/campaigns/{campaign.pk}/").content.decode()
    scripts = re.findall(r'<script src="([^"]+)"', html)
    assert scripts and all(src.startswith("/static/") for src in scripts)
    for src in scripts:
        response = admin_client.get(src)
        assert response.status_code == 200, src
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert len(body) > 1000
    assert "http://" not in html.split("<body")[0] and "https://" not in html.split("<body")[0]


def test_a_share_link_opens_its_own_tenant_only(client, tenant, other_tenant, campaign):
    token = share_token_make(tenant=tenant)
    assert client.get(f"/dashboard/{tenant.slug}/?share={token}").status_code == 200
    own = client.get(f"/dashboard/{tenant.slug}/campaigns/{campaign.pk}/?share={token}")
    assert own.status_code == 200
    # The same token on another tenant, a tampered token, or none: sign in first.
    for url in (
        f"/dashboard/{other_tenant.slug}/?share={token}",
        f"/dashboard/{tenant.slug}/?share={token[:-2]}xx",
        f"/dashboard/{tenant.slug}/",
        f"/dashboard/{tenant.slug}/data.json",
    ):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url


def test_another_tenants_campaign_is_not_found_on_a_dashboard(
    client, tenant, other_tenant, campaign
):
    token = share_token_make(tenant=other_tenant)
    url = f"/dashboard/{other_tenant.slug}/campaigns/{campaign.pk}/?share={token}"
    assert client.get(url).status_code == 404


def test_the_admin_links_to_the_dashboard(admin_client, campaign):
    index = admin_client.get("/admin/").content.decode()
    assert 'href="/dashboard/"' in index
    change = admin_client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").content.decode()
    assert f"/dashboard/{campaign.tenant.slug}/campaigns/{campaign.pk}/" in change
