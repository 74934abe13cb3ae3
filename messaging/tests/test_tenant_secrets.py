"""Tenants' SendGrid keys at rest: encryption, rotation, the CLI, and keeping keys out of logs."""

import logging
import os
import subprocess
import sys
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from messaging.services.tenant_secrets import (
    SecretDecryptError,
    tenant_sendgrid_key_clear,
    tenant_sendgrid_key_get,
    tenant_sendgrid_key_set,
)
from outreach.common.errors import ApplicationError, NotFound
from outreach.testing.factories import TenantFactory

API_KEY = "SG.aaaaBBBBccccDDDDeeee12.ffffGGGGhhhhIIIIjjjjKKKKllllMMMMnnnnOOOOppp"


def _new_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def old_key(settings) -> str:
    key = _new_key()
    settings.ENCRYPTION_KEYS = [key]
    return key


def test_round_trip_stores_only_ciphertext_and_last4(tenant, old_key):
    tenant_sendgrid_key_set(tenant_id=tenant.id, api_key=f"  {API_KEY}\n")

    tenant.refresh_from_db()
    assert API_KEY not in tenant.sendgrid_api_key_encrypted
    assert tenant.sendgrid_api_key_last4 == API_KEY[-4:]
    assert tenant_sendgrid_key_get(tenant_id=tenant.id) == API_KEY


def test_tenant_without_key_gets_none_and_clear_forgets_it(tenant, old_key):
    assert tenant_sendgrid_key_get(tenant_id=tenant.id) is None
    tenant_sendgrid_key_set(tenant_id=tenant.id, api_key=API_KEY)

    tenant_sendgrid_key_clear(tenant_id=tenant.id)

    tenant.refresh_from_db()
    assert tenant_sendgrid_key_get(tenant_id=tenant.id) is None
    assert tenant.sendgrid_api_key_last4 == ""


def test_keys_are_per_tenant(tenant, other_tenant, old_key):
    tenant_sendgrid_key_set(tenant_id=tenant.id, api_key=API_KEY)

    assert tenant_sendgrid_key_get(tenant_id=other_tenant.id) is None
    with pytest.raises(NotFound):
        tenant_sendgrid_key_set(tenant_id=other_tenant.id + 10_000, api_key=API_KEY)


@pytest.mark.parametrize("bad", ["", "   ", "SG.abc def.ghi", "SG.abc\x00.def"])
def test_blank_or_malformed_key_is_refused_with_the_field(tenant, old_key, bad):
    with pytest.raises(ApplicationError) as excinfo:
        tenant_sendgrid_key_set(tenant_id=tenant.id, api_key=bad)

    assert "sendgrid_api_key" in excinfo.value.extra
    tenant.refresh_from_db()
    assert tenant.sendgrid_api_key_encrypted == ""


def test_tampered_token_raises_a_decrypt_error(tenant, old_key):
    tenant_sendgrid_key_set(tenant_id=tenant.id, api_key=API_KEY)
    tenant.refresh_from_db()
    token = tenant.sendgrid_api_key_encrypted
    # Flip one character in the middle of the ciphertext: the HMAC no longer matches.
    middle = len(token) // 2
    tampered = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    tenant.sendgrid_api_key_encrypted = tampered
    tenant.save(update_fields=["sendgrid_api_key_encrypted"])

    with pytest.raises(SecretDecryptError):
        tenant_sendgrid_key_get(tenant_id=tenant.id)


def test_rotation_old_key_still_decrypts_then_only_new_key_is_needed(
    tenant, other_tenant, settings, old_key
):
    tenant_sendgrid_key_set(tenant_id=tenant.id, api_key=API_KEY)
    new_key = _new_key()
    settings.ENCRYPTION_KEYS = [new_key, old_key]

    # Before rotating, a key made under the old key still reads (old key second in the list).
    assert tenant_sendgrid_key_get(tenant_id=tenant.id) == API_KEY
    out = StringIO()
    call_command("secrets_rotate", stdout=out)
    assert out.getvalue().strip() == "re-encrypted 1, already current 0, without a key 1"

    settings.ENCRYPTION_KEYS = [new_key]
    assert tenant_sendgrid_key_get(tenant_id=tenant.id) == API_KEY

    # Idempotent: a second run finds nothing left to do and leaves the token alone.
    tenant.refresh_from_db()
    token_after_first_run = tenant.sendgrid_api_key_encrypted
    out = StringIO()
    call_command("secrets_rotate", stdout=out)
    assert out.getvalue().strip() == "re-encrypted 0, already current 1, without a key 1"
    tenant.refresh_from_db()
    assert tenant.sendgrid_api_key_encrypted == token_after_first_run


def test_rotation_changes_nothing_when_a_token_fits_no_key(tenant, other_tenant, settings, old_key):
    tenant_sendgrid_key_set(tenant_id=tenant.id, api_key=API_KEY)
    tenant_sendgrid_key_set(tenant_id=other_tenant.id, api_key=API_KEY)
    settings.ENCRYPTION_KEYS = [_new_key()]
    stranger = TenantFactory()
    tenant_sendgrid_key_set(tenant_id=stranger.id, api_key=API_KEY)
    stranger.refresh_from_db()
    settings.ENCRYPTION_KEYS = [_new_key(), old_key]
    tenant.refresh_from_db()
    before = tenant.sendgrid_api_key_encrypted

    with pytest.raises(CommandError) as excinfo:
        call_command("secrets_rotate", stdout=StringIO())

    message = str(excinfo.value)
    assert f"{stranger.slug} (id {stranger.id})" in message
    assert "nothing was changed" in message
    assert "\n" not in message
    tenant.refresh_from_db()
    assert tenant.sendgrid_api_key_encrypted == before


@pytest.mark.slow
def test_cli_exits_non_zero_with_one_line_for_an_undecryptable_key(transactional_db):
    key = _new_key()
    tenant = TenantFactory()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(django_settings, "ENCRYPTION_KEYS", [key])
        tenant_sendgrid_key_set(tenant_id=tenant.id, api_key=API_KEY)

    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "outreach.settings.dev",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "OUTREACH_ENCRYPTION_KEYS": _new_key(),
    }
    proc = subprocess.run(
        [sys.executable, "manage.py", "secrets_rotate"],
        cwd=django_settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"{tenant.slug} (id {tenant.id})" in lines[0]
    assert API_KEY not in proc.stderr + proc.stdout


def test_the_key_is_never_logged(tenant, settings, old_key, caplog):
    caplog.set_level(logging.DEBUG)
    tenant_sendgrid_key_set(tenant_id=tenant.id, api_key=API_KEY)
    tenant_sendgrid_key_get(tenant_id=tenant.id)
    settings.ENCRYPTION_KEYS = [_new_key(), old_key]
    call_command("secrets_rotate", stdout=StringIO())

    assert any(r.getMessage() == "tenant.sendgrid_key_set" for r in caplog.records)
    for record in caplog.records:
        assert API_KEY not in record.getMessage()
        assert API_KEY not in repr(record.__dict__)
