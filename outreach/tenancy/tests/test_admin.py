"""Tenant admin: secrets never shown, keys replaced encrypted; every tenancy page loads."""

import pytest
from django.urls import reverse

from outreach.common.crypto import secret_decrypt
from outreach.tenancy.models import Tenant, TenantAlert, TenantAPIKey
from outreach.tenancy.services import sendgrid_key_fields
from outreach.testing.world import world_build

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _tenant_form(tenant: Tenant, **overrides) -> dict:
    data = {
        "name": tenant.name,
        "slug": tenant.slug,
        "status": tenant.status,
        "campaigns_enabled": "on",
        "daily_send_quota": tenant.daily_send_quota,
        "open_tracking": "on",
        "click_tracking": "on",
        "postal_address": "1 Main St",
        "webhook_public_key": "",
        "new_sendgrid_api_key": "",
    }
    return {**data, **overrides}


@pytest.mark.parametrize("model", [Tenant, TenantAPIKey, TenantAlert], ids=lambda m: m.__name__)
def test_changelists_and_change_pages_load_with_rows(
    admin_client, tenant, other_tenant, api_client_for, model
):
    world_build(tenant=tenant)
    world_build(tenant=other_tenant)
    api_client_for(tenant)
    api_client_for(other_tenant)
    response = admin_client.get(_url(model, "changelist"))
    assert response.status_code == 200
    assert response.context["cl"].result_count == 2
    if model is not Tenant:
        response = admin_client.get(_url(model, "changelist"), {"tenant__id__exact": tenant.pk})
        assert [row.tenant_id for row in response.context["cl"].result_list] == [tenant.pk]
    row = model.objects.first()
    assert admin_client.get(_url(model, "change", row.pk)).status_code == 200


def test_the_stored_sendgrid_key_is_never_displayed_only_its_last_four(admin_client, tenant):
    secret = "SG.very-secret-key-ABCD"
    Tenant.objects.filter(pk=tenant.pk).update(**sendgrid_key_fields(api_key=secret))
    tenant.refresh_from_db()
    for url in (_url(Tenant, "changelist"), _url(Tenant, "change", tenant.pk)):
        content = admin_client.get(url).content.decode()
        assert "ABCD" in content
        assert secret not in content
        assert tenant.sendgrid_api_key_encrypted not in content


def test_a_new_sendgrid_key_is_stored_encrypted_and_an_empty_one_keeps_the_old(
    admin_client, tenant
):
    change = _url(Tenant, "change", tenant.pk)
    response = admin_client.post(change, _tenant_form(tenant, new_sendgrid_api_key="SG.new-WXYZ"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    tenant.refresh_from_db()
    assert tenant.sendgrid_api_key_last4 == "WXYZ"
    assert secret_decrypt(token=tenant.sendgrid_api_key_encrypted) == "SG.new-WXYZ"

    assert (
        admin_client.post(change, _tenant_form(tenant, postal_address="2 Main St")).status_code
        == 302
    )
    tenant.refresh_from_db()
    assert secret_decrypt(token=tenant.sendgrid_api_key_encrypted) == "SG.new-WXYZ"
    assert tenant.postal_address == "2 Main St"

    admin_client.post(change, _tenant_form(tenant, clear_sendgrid_api_key="on"))
    tenant.refresh_from_db()
    assert (tenant.sendgrid_api_key_encrypted, tenant.sendgrid_api_key_last4) == ("", "")


def test_a_bad_webhook_key_is_a_form_error(admin_client, tenant):
    response = admin_client.post(
        _url(Tenant, "change", tenant.pk), _tenant_form(tenant, webhook_public_key="garbage")
    )
    assert response.status_code == 200
    assert "webhook_public_key" in response.context["adminform"].form.errors


def test_adding_an_api_key_shows_it_once(admin_client, tenant):
    response = admin_client.post(
        _url(TenantAPIKey, "add"), {"name": "crm", "tenant": tenant.pk}, follow=True
    )
    assert response.status_code == 200
    api_key = TenantAPIKey.objects.get(tenant=tenant, name="crm")
    shown = [str(m) for m in response.context["messages"]]
    assert any(api_key.prefix in m and "will not be able to see it again" in m for m in shown)
