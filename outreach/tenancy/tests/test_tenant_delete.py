"""Deleting a tenant: every row it owns goes, nobody else's, and an interrupted run finishes."""

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from analytics.tests.support import rollup_rows
from campaigns.services.tenant_data import campaigns_tenant_journeys_delete
from outreach.common.errors import NotFound
from outreach.synthetic.load import SyntheticSpec, synthetic_load
from outreach.tenancy.models import Tenant
from outreach.tenancy.services import tenant_delete

pytestmark = pytest.mark.django_db(transaction=True)

TABLES = [
    "campaigns_lead",
    "campaigns_campaign",
    "campaigns_campaignplanversion",
    "campaigns_enrollment",
    "campaigns_enrollmenttransition",
    "campaigns_scheduledaction",
    "messaging_senderidentity",
    "messaging_message",
    "messaging_messageevent",
    "messaging_messageeventkey",
    "messaging_inboundmessage",
    "suppression_suppression",
    "analytics_hourlyrollup",
    "analytics_journeycount",
    "analytics_messagefirst",
    "tenancy_tenantapikey",
]


def counts(tenant_id: int) -> dict[str, int]:
    out = {}
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"SELECT count(*) FROM {table} WHERE tenant_id = %s", [tenant_id])
            out[table] = cursor.fetchone()[0]
    return out


@pytest.fixture
def two_tenants(event_rows_cleanup_all):
    synthetic_load(
        spec=SyntheticSpec(tenants=2, leads=120, events=2_000, months=2, prefix="del"),
        allow_existing=True,
    )
    return list(Tenant.objects.order_by("pk"))


@pytest.fixture
def event_rows_cleanup_all():
    yield
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM messaging_messageevent")


def test_every_row_of_the_tenant_goes_and_the_other_tenant_keeps_all_of_its(two_tenants):
    gone, kept = two_tenants
    before = counts(gone.pk)
    assert all(before[table] for table in TABLES if "scheduledaction" not in table), before
    kept_before, kept_rollups = counts(kept.pk), rollup_rows(kept.pk)

    deleted = tenant_delete(tenant_id=gone.pk, batch=50)

    assert not Tenant.objects.filter(pk=gone.pk).exists()
    assert set(counts(gone.pk).values()) == {0}
    assert deleted.rows["leads"] == before["campaigns_lead"]
    assert deleted.rows["events"] == before["messaging_messageevent"]
    assert counts(kept.pk) == kept_before
    assert rollup_rows(kept.pk) == kept_rollups
    with pytest.raises(NotFound):
        tenant_delete(tenant_id=gone.pk)


def test_a_deletion_that_stopped_half_way_is_finished_by_running_it_again(two_tenants):
    gone, _ = two_tenants
    campaigns_tenant_journeys_delete(tenant_id=gone.pk)  # as if it died after the first step
    Tenant.objects.filter(pk=gone.pk).update(status="paused", paused_by="operator")
    call_command("tenant_delete", "--tenant", gone.slug, "--confirm", gone.slug)
    assert not Tenant.objects.filter(pk=gone.pk).exists()
    assert set(counts(gone.pk).values()) == {0}


def test_the_command_wants_the_slug_twice_and_an_existing_tenant(two_tenants):
    gone, _ = two_tenants
    with pytest.raises(CommandError, match="--confirm must repeat the slug"):
        call_command("tenant_delete", "--tenant", gone.slug, "--confirm", "other")
    with pytest.raises(CommandError, match="no tenant with the slug 'nope'"):
        call_command("tenant_delete", "--tenant", "nope", "--confirm", "nope")
    assert Tenant.objects.filter(pk=gone.pk).exists()
