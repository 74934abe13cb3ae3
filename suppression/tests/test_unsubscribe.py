"""One-click unsubscribe (RFC 8058): signed tokens, GET changes nothing, POST unsubscribes."""

import uuid

import pytest
from django.core import signing
from django.test import Client

from suppression.models import Suppression
from suppression.unsubscribe import (
    unsubscribe_token_make,
    unsubscribe_token_read,
    unsubscribe_url_build,
)

pytestmark = pytest.mark.django_db

ONE_CLICK = "List-Unsubscribe=One-Click"


@pytest.fixture
def link(tenant, settings):
    settings.PUBLIC_BASE_URL = "https://outreach.example.com"
    message_id = uuid.uuid4()
    url = unsubscribe_url_build(
        tenant_id=tenant.pk, email="Lead@Prospect.test", message_public_id=message_id
    )
    return url.removeprefix("https://outreach.example.com")


def test_the_url_is_absolute_and_carries_a_signed_claim(tenant, settings):
    settings.PUBLIC_BASE_URL = "https://outreach.example.com"
    message_id = uuid.uuid4()
    url = unsubscribe_url_build(
        tenant_id=tenant.pk, email="Lead@Prospect.test", message_public_id=message_id
    )
    assert url.startswith("https://outreach.example.com/u/") and url.endswith("/")
    # Signed, not encrypted: the address is base64 inside, not plain text in the link.
    assert "prospect" not in url.lower()
    token = url.rstrip("/").rsplit("/", 1)[1]
    claim = unsubscribe_token_read(token=token)
    assert (claim.tenant_id, claim.email, claim.message_public_id) == (
        tenant.pk,
        "lead@prospect.test",
        message_id,
    )


def test_get_shows_a_confirmation_and_changes_nothing(client, link, tenant):
    for _ in range(3):  # link scanners prefetch, sometimes repeatedly
        response = client.get(link)
        assert response.status_code == 200
        assert b'name="List-Unsubscribe" value="One-Click"' in response.content
        assert tenant.name.encode() in response.content
    assert client.head(link).status_code == 200
    assert not Suppression.objects.exists()
    assert not response.cookies


def test_post_form_encoded_unsubscribes_without_redirect_or_cookie(link, tenant):
    client = Client(enforce_csrf_checks=True)
    response = client.post(link, data=ONE_CLICK, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert not response.cookies
    assert "Location" not in response.headers
    entry = Suppression.objects.get()
    assert (entry.tenant_id, entry.email, entry.reason, entry.source) == (
        tenant.pk,
        "lead@prospect.test",
        "unsubscribe",
        "one_click",
    )


def test_post_multipart_unsubscribes_and_repeats_are_harmless(link):
    client = Client(enforce_csrf_checks=True)
    for _ in range(2):
        response = client.post(link, data={"List-Unsubscribe": "One-Click"})  # multipart
        assert response.status_code == 200
        assert not response.cookies
    assert Suppression.objects.count() == 1


def test_a_post_without_the_one_click_body_changes_nothing(client, link):
    response = client.post(link, data={"something": "else"})
    assert response.status_code == 400
    assert not Suppression.objects.exists()


def _with_payload(token: str, payload) -> str:
    """Re-sign nothing: splice another payload into a genuine token's signed envelope."""
    forged = signing.dumps(payload, salt="some-other-purpose", compress=True)
    return forged.split(":")[0] + ":" + ":".join(token.split(":")[1:])


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # signature changed
        lambda t: t[:10],  # truncated
        lambda t: "x" + t,
        lambda t: "not-a-token",
        lambda t: _with_payload(t, [1, "", "victim@x.test"]),
    ],
)
def test_tampered_tokens_are_404_and_change_nothing(client, tenant, link, tamper):
    token = link.split("/")[2]
    bad = f"/u/{tamper(token)}/"
    assert client.get(bad).status_code == 404
    assert client.post(bad, data={"List-Unsubscribe": "One-Click"}).status_code == 404
    assert not Suppression.objects.exists()


def test_a_token_signed_for_another_purpose_is_refused(client, tenant):
    token = signing.dumps([tenant.pk, "", "a@x.test"], compress=True)  # default salt
    assert client.post(f"/u/{token}/", data={"List-Unsubscribe": "One-Click"}).status_code == 404
    assert not Suppression.objects.exists()


def test_a_token_for_tenant_a_only_ever_unsubscribes_its_own_address_from_a(
    client, tenant, other_tenant
):
    token = unsubscribe_token_make(tenant_id=tenant.pk, email="a@x.test", message_public_id=None)
    # Whatever a caller adds, the tenant and address come from the signed token alone.
    response = client.post(
        f"/u/{token}/",
        data={"List-Unsubscribe": "One-Click", "email": "b@x.test", "tenant": other_tenant.pk},
    )
    assert response.status_code == 200
    assert list(Suppression.objects.values_list("tenant_id", "email")) == [(tenant.pk, "a@x.test")]


def test_a_token_of_a_deleted_tenant_is_404(client, tenant):
    token = unsubscribe_token_make(tenant_id=tenant.pk, email="a@x.test", message_public_id=None)
    tenant.delete()
    assert client.post(f"/u/{token}/", data={"List-Unsubscribe": "One-Click"}).status_code == 404


def test_unsubscribe_is_honoured_even_in_shadow_mode(client, tenant):
    tenant.webhook_shadow_mode = True
    tenant.save()
    token = unsubscribe_token_make(tenant_id=tenant.pk, email="a@x.test", message_public_id=None)
    assert (
        client.post(
            f"/u/{token}/", data=ONE_CLICK, content_type="application/x-www-form-urlencoded"
        ).status_code
        == 200
    )
    assert Suppression.objects.count() == 1
