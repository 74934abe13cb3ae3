"""Fixtures shared by every app: tenants and API clients authenticated as a tenant."""

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from outreach.tenancy.models import Tenant, TenantAPIKey
from outreach.testing.factories import TenantFactory

# The SendGrid emulator fixtures (sendgrid_emulator, sendgrid_emulator_factory, webhook_sink).
pytest_plugins = ["messaging.tests.emulator_fixtures"]


@pytest.fixture
def tenant(db) -> Tenant:
    return TenantFactory()


@pytest.fixture
def other_tenant(db) -> Tenant:
    return TenantFactory()


@pytest.fixture
def api_client_for(db) -> Callable[[Tenant], APIClient]:
    """``api_client_for(tenant)``: a DRF client sending a fresh API key of that tenant."""

    def make(tenant: Tenant) -> APIClient:
        _, key = TenantAPIKey.objects.create_key(name="test", tenant=tenant)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        return client

    return make


@pytest.fixture
def api(api_client_for, tenant) -> APIClient:
    return api_client_for(tenant)


@pytest.fixture
def event_rows_cleanup(tenant):
    """For transactional tests: the partitioned event table is unmanaged, so the flush between
    tests skips it; this deletes the tenant's events afterwards."""
    yield
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM messaging_messageevent WHERE tenant_id = %s", [tenant.pk])
