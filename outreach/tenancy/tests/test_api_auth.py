"""API authentication: every API route wants a live tenant key (401 otherwise)."""

import datetime

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from outreach.tenancy.models import TenantAPIKey
from outreach.tenancy.services import api_key_revoke

pytestmark = pytest.mark.django_db

ROUTES = [
    ("get", "/api/v1/leads/"),
    ("post", "/api/v1/leads/"),
    ("post", "/api/v1/leads/bulk/"),
    ("get", "/api/v1/leads/1/"),
    ("patch", "/api/v1/leads/1/"),
    ("delete", "/api/v1/leads/1/"),
    ("get", "/api/v1/sender-identities/"),
    ("post", "/api/v1/sender-identities/"),
    ("get", "/api/v1/sender-identities/1/"),
    ("patch", "/api/v1/sender-identities/1/"),
    ("delete", "/api/v1/sender-identities/1/"),
]


def _client(header: str | None) -> APIClient:
    client = APIClient()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    return client


def _assert_401(response) -> None:
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"] == "Api-Key"
    assert set(response.json()) == {"error"}


@pytest.mark.parametrize(("method", "url"), ROUTES)
def test_no_key_is_401(method, url):
    _assert_401(getattr(_client(None), method)(url, {}, format="json"))


@pytest.mark.parametrize(
    "header",
    [
        "Api-Key nonsense",
        "Api-Key abc.def",
        "Api-Key ",
        "Bearer something",
        "Token abc",
        "Api-Key",
    ],
)
@pytest.mark.parametrize(("method", "url"), ROUTES)
def test_a_wrong_key_is_401(method, url, header):
    _assert_401(getattr(_client(header), method)(url, {}, format="json"))


def test_a_key_with_a_real_prefix_but_a_wrong_secret_is_401(tenant):
    api_key, key = TenantAPIKey.objects.create_key(name="t", tenant=tenant)
    forged = f"{api_key.prefix}.{'x' * 32}"
    _assert_401(_client(f"Api-Key {forged}").get("/api/v1/leads/"))
    assert _client(f"Api-Key {key}").get("/api/v1/leads/").status_code == 200


@pytest.mark.parametrize(("method", "url"), ROUTES)
def test_a_revoked_key_is_401(tenant, method, url):
    api_key, key = TenantAPIKey.objects.create_key(name="t", tenant=tenant)
    api_key_revoke(prefix=api_key.prefix)
    _assert_401(getattr(_client(f"Api-Key {key}"), method)(url, {}, format="json"))


def test_an_expired_key_is_401(tenant):
    _, key = TenantAPIKey.objects.create_key(
        name="t", tenant=tenant, expiry_date=timezone.now() - datetime.timedelta(minutes=1)
    )
    _assert_401(_client(f"Api-Key {key}").get("/api/v1/leads/"))


def test_the_keyword_is_case_insensitive(tenant):
    _, key = TenantAPIKey.objects.create_key(name="t", tenant=tenant)
    assert _client(f"api-key {key}").get("/api/v1/leads/").status_code == 200


def test_the_docs_and_schema_need_no_key():
    client = APIClient()
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200
