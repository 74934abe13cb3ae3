"""Operator commands: tenant_create, api_key_create, api_key_revoke."""

import base64
import io
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from outreach.common.crypto import secret_decrypt
from outreach.tenancy.models import Tenant, TenantAPIKey

pytestmark = pytest.mark.django_db


def _public_key_b64(key) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def _call(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def _leads_status(key: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client.get("/api/v1/leads/").status_code


def test_tenant_create_prints_one_json_object_with_a_working_key(settings):
    settings.PUBLIC_BASE_URL = "https://outreach.example.com"
    public_key = _public_key_b64(ec.generate_private_key(ec.SECP256R1()))
    output = _call(
        "tenant_create",
        "--name",
        "Acme Corp",
        "--sendgrid-api-key",
        "SG.secret-value-WXYZ",
        "--webhook-public-key",
        public_key,
    )
    assert len(output.strip().splitlines()) == 1
    body = json.loads(output)
    tenant = Tenant.objects.get(pk=body["tenant_id"])
    assert body["slug"] == tenant.slug == "acme-corp"
    assert body["public_id"] == str(tenant.public_id)
    assert body["sendgrid_api_key_last4"] == "WXYZ"
    assert body["webhooks"] == {
        "events": f"https://outreach.example.com/webhooks/sendgrid/events/{tenant.public_id}/",
        "inbound": (
            f"https://outreach.example.com/webhooks/sendgrid/inbound/{tenant.public_id}/"
            f"{tenant.inbound_secret}/"
        ),
        "sms_inbound": f"https://outreach.example.com/webhooks/twilio/inbound/{tenant.public_id}/",
    }
    # Secrets at rest: the SendGrid key only encrypted, the API key only hashed.
    assert "SG.secret-value-WXYZ" not in tenant.sendgrid_api_key_encrypted
    assert secret_decrypt(token=tenant.sendgrid_api_key_encrypted) == "SG.secret-value-WXYZ"
    assert tenant.webhook_public_key == public_key
    stored = TenantAPIKey.objects.get(tenant=tenant)
    assert body["api_key"] not in stored.hashed_key
    assert body["api_key"].startswith(body["api_key_prefix"] + ".")
    assert _leads_status(body["api_key"]) == 200


def test_tenant_create_takes_an_explicit_slug_and_refuses_a_taken_one():
    body = json.loads(_call("tenant_create", "--name", "Acme", "--slug", "acme-eu"))
    assert body["slug"] == "acme-eu"
    assert body["sendgrid_api_key_last4"] is None
    with pytest.raises(CommandError, match="A tenant with the slug 'acme-eu' already exists"):
        _call("tenant_create", "--name", "Other", "--slug", "acme-eu")
    assert Tenant.objects.count() == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "  "], "name: This field may not be blank."),
        (["--name", "Acme", "--slug", "not a slug!"], "is not a slug"),
        (["--name", "Acme", "--webhook-public-key", "not base64!"], "Not a base64 DER"),
        (["--name", "Acme", "--sendgrid-api-key", "SG.with space"], "spaces or control"),
    ],
)
def test_tenant_create_refuses_bad_input_with_one_line(args, message):
    with pytest.raises(CommandError, match=message):
        _call("tenant_create", *args)
    assert not Tenant.objects.exists()


def test_tenant_create_refuses_a_key_that_is_not_sendgrids_kind():
    rsa_key = _public_key_b64(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with pytest.raises(CommandError, match="ECDSA P-256"):
        _call("tenant_create", "--name", "Acme", "--webhook-public-key", rsa_key)


def test_api_keys_can_be_added_and_revoked_by_prefix(tenant):
    created = json.loads(_call("api_key_create", "--tenant", tenant.slug, "--name", "crm-sync"))
    assert created["tenant"] == tenant.slug
    assert _leads_status(created["api_key"]) == 200

    output = _call("api_key_revoke", "--prefix", created["prefix"])
    assert output.startswith(f"revoked {created['prefix']} (crm-sync) of tenant {tenant.slug}")
    assert _leads_status(created["api_key"]) == 401


def test_api_key_commands_name_what_is_wrong(tenant):
    with pytest.raises(CommandError, match="no tenant with the slug 'nobody'"):
        _call("api_key_create", "--tenant", "nobody", "--name", "x")
    with pytest.raises(CommandError, match="No API key with the prefix 'nope'"):
        _call("api_key_revoke", "--prefix", "nope")
