"""``load_synthetic`` refuses a database with real tenants unless told, and any bad argument,
with a non-zero exit and one readable line."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from outreach.tenancy.models import Tenant
from outreach.testing.factories import TenantFactory

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.django_db(transaction=True)
def test_a_database_with_real_tenants_is_refused_unless_told():
    real = TenantFactory(slug="acme")
    with pytest.raises(CommandError, match=r"1 real tenant.*'acme'.*--allow-existing"):
        call_command("load_synthetic", "--tenants", "2", "--leads", "40", "--events", "400")
    assert list(Tenant.objects.values_list("pk", flat=True)) == [real.pk]


def _command(*args: str) -> subprocess.CompletedProcess:
    info = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{info['USER']}@{info['HOST']}:{info['PORT']}/{info['NAME']}",
    }
    return subprocess.run(
        [sys.executable, "manage.py", "load_synthetic", "--no-progress", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.django_db(transaction=True)
def test_from_the_shell_a_real_tenant_means_a_non_zero_exit_and_one_line():
    TenantFactory(slug="acme")
    done = _command("--tenants", "2", "--leads", "40", "--events", "400")
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "real tenant" in lines[0] and "--allow-existing" in lines[0]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenants", "0"], "--tenants: expected a whole number from 1 to 1000, got 0"),
        (["--tenants", "ten"], "argument --tenants: invalid whole number value: 'ten'"),
        (["--tenants", "5", "--leads", "20"], "--leads: expected at least 10 per tenant"),
        (
            ["--tenants", "2", "--leads", "100", "--events", "50"],
            "--events: expected from one to 200 per lead",
        ),
        (["--months", "30"], "--months: expected a whole number from 1 to 24, got 30"),
        (["--prefix", "Not A Slug"], "--prefix: expected a slug"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_arguments_exit_non_zero_with_one_readable_line(args, message):
    done = _command(*args)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert message in lines[0]
    assert done.stdout == ""
