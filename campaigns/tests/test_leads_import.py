"""``manage.py leads_import``: a CSV in, leads stored, rejected rows reported by row number."""

import io
import os
import re
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from campaigns.models import Lead
from outreach.testing.factories import LeadFactory

pytestmark = pytest.mark.django_db


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command("leads_import", *args, "--no-progress", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_imports_a_csv_with_custom_columns_and_reports_rejected_rows(tmp_path, tenant):
    LeadFactory(tenant=tenant, email="existing@example.com")
    path = tmp_path / "leads.csv"
    path.write_text(
        "\ufeffEmail,First_Name,company,Country,Plan,Seats,validation_status\n"
        "jane@example.com,Jane,Acme,de,pro,12,valid\n"
        "not-an-email,Bob,Initech,,,,\n"
        "\n"
        "EXISTING@example.com,Old,Acme,,,,\n"
        "ann@example.com,Ann,Acme,Narnia,,,\n"
        "JANE@example.com,Jane again,Acme,,,,\n"
        "info@example.com,,Acme,us,basic,,\n"
        "too@many.com,a,b,c,d,e,f,g\n",
        encoding="utf-8",
    )
    output = _run("--tenant", tenant.slug, str(path))

    assert output.splitlines()[0] == (
        "imported 2 leads, skipped 1 already present, rejected 4 rows"
    )
    assert "  row 3: email: Enter a valid email address" in output
    assert "  row 6: country: 'NARNIA' is not an ISO 3166-1 alpha-2 country code" in output
    assert "  row 7: email: same address as row 2" in output
    assert "  row 9: has 8 cells but the header names 7 columns" in output

    jane = Lead.objects.get(tenant=tenant, email="jane@example.com")
    assert (jane.first_name, jane.company, jane.country) == ("Jane", "Acme", "DE")
    assert jane.custom_fields == {"Plan": "pro", "Seats": "12"}
    info = Lead.objects.get(tenant=tenant, email="info@example.com")
    assert info.validation_status == "risky"
    assert info.custom_fields == {"Plan": "basic"}
    assert Lead.objects.filter(tenant=tenant).count() == 3


def test_running_the_same_file_again_skips_what_was_imported(tmp_path, tenant):
    path = tmp_path / "leads.csv"
    path.write_text("email\n" + "".join(f"p{i}@example.com\n" for i in range(25)))
    first = _run("--tenant", tenant.slug, str(path), "--batch-size", "10")
    assert first.startswith("imported 25 leads, skipped 0 already present, rejected 0 rows")
    assert _run("--tenant", tenant.slug, str(path), "--batch-size", "10").startswith(
        "imported 0 leads, skipped 25 already present, rejected 0 rows"
    )


def test_semicolon_separated_files_and_a_rejects_file(tmp_path, tenant):
    path = tmp_path / "leads.csv"
    path.write_text("email;company\na@example.com;Acme\nbad;Acme\n", encoding="utf-8")
    rejects = tmp_path / "rejects.csv"
    _run("--tenant", tenant.slug, str(path), "--delimiter", ";", "--rejects", str(rejects))
    assert Lead.objects.get(tenant=tenant).company == "Acme"
    lines = rejects.read_text().splitlines()
    assert lines[0] == "row,reason"
    assert lines[1].startswith("3,email: Enter a valid email address")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "has no header row"),
        ("first_name,company\nJane,Acme\n", "no 'email' column (found: first_name, company)"),
        ("email,email\na@example.com,b@example.com\n", "column 'email' appears twice"),
        ("email,,company\n", "column 2 has no name"),
    ],
)
def test_a_bad_header_is_one_readable_error(tmp_path, tenant, content, message):
    path = tmp_path / "leads.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CommandError, match=re.escape(message)):
        _run("--tenant", tenant.slug, str(path))
    assert not Lead.objects.exists()


def test_a_missing_file_and_an_unknown_tenant_are_one_readable_error(tmp_path, tenant):
    with pytest.raises(CommandError, match="no such file"):
        _run("--tenant", tenant.slug, str(tmp_path / "nope.csv"))
    path = tmp_path / "leads.csv"
    path.write_text("email\na@example.com\n", encoding="utf-8")
    with pytest.raises(CommandError, match="no tenant with the slug 'nobody'"):
        _run("--tenant", "nobody", str(path))


def test_a_file_that_is_not_utf8_is_one_readable_error(tmp_path, tenant):
    path = tmp_path / "leads.csv"
    path.write_bytes("email,company\na@example.com,Müller GmbH\n".encode("latin-1"))
    with pytest.raises(CommandError, match="is not UTF-8 text"):
        _run("--tenant", tenant.slug, str(path))


def test_the_command_exits_non_zero_with_one_line_on_stderr(tmp_path, tenant):
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://root@127.0.0.1:5432/{connection.settings_dict['NAME']}",
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "leads_import", "--tenant", "x", str(tmp_path / "a.csv")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == ["CommandError: no tenant with the slug 'x'"]


def test_a_dry_run_checks_every_row_and_stores_nothing(tmp_path, tenant):
    path = tmp_path / "leads.csv"
    path.write_text("email,first_name\nann@example.com,Ann\nnot-an-email,Bob\n", encoding="utf-8")
    output = _run("--tenant", tenant.slug, str(path), "--dry-run")
    assert output.splitlines()[0] == (
        "dry run: would import 1 leads, skipped 0 already present, rejected 1 rows"
    )
    assert not Lead.objects.filter(tenant=tenant).exists()
    # The per-row report is written by default beside the file.
    report = (tmp_path / "leads.csv.rejects.csv").read_text().splitlines()
    assert report[0] == "row,reason"
    assert report[1].startswith("3,email: Enter a valid email address")


def test_an_import_over_the_lead_quota_stops_with_one_line(tmp_path, tenant):
    from outreach.tenancy.models import Tenant

    Tenant.objects.filter(pk=tenant.pk).update(lead_quota=2)
    path = tmp_path / "leads.csv"
    rows = "".join(f"q{n}@example.com\n" for n in range(5))
    path.write_text("email\n" + rows, encoding="utf-8")
    with pytest.raises(CommandError) as stopped:
        _run("--tenant", tenant.slug, str(path), "--batch-size", "2")
    message = str(stopped.value)
    assert "\n" not in message
    assert message.startswith("stopped: leads quota reached: this account may hold 2 leads")
    assert message.endswith("(imported 2 leads before it)")
    assert Lead.objects.filter(tenant=tenant).count() == 2


def test_a_dry_run_sees_duplicates_across_batches_as_the_real_run_does(tmp_path, tenant):
    path = tmp_path / "leads.csv"
    path.write_text(
        "email\nann@example.com\nbob@example.com\nANN@example.com\ncy@example.com\n",
        encoding="utf-8",
    )
    dry = _run("--tenant", tenant.slug, str(path), "--batch-size", "2", "--dry-run")
    assert not Lead.objects.filter(tenant=tenant).exists()
    real = _run("--tenant", tenant.slug, str(path), "--batch-size", "2")
    assert real.splitlines()[0] == "imported 3 leads, skipped 1 already present, rejected 0 rows"
    assert dry.splitlines()[0] == real.splitlines()[0].replace("imported", "dry run: would import")


def test_a_dry_run_counts_the_lead_quota_across_batches_and_stops_like_the_real_run(
    tmp_path, tenant
):
    from outreach.tenancy.models import Tenant

    Tenant.objects.filter(pk=tenant.pk).update(lead_quota=3)
    path = tmp_path / "leads.csv"
    rows = "".join(f"q{n}@example.com\n" for n in range(4))
    path.write_text("email\nnot-an-email\n" + rows, encoding="utf-8")
    with pytest.raises(CommandError) as stopped:
        _run("--tenant", tenant.slug, str(path), "--batch-size", "2", "--dry-run")
    message = str(stopped.value)
    assert message.startswith("dry run: would stop: leads quota reached"), message
    # Batches of 2 valid-looking rows: [bad, q0], [q1, q2], then q3 is the fourth lead.
    assert message.endswith("(would import 3 leads before it)")
    assert not Lead.objects.filter(tenant=tenant).exists()
    # The rows rejected before the stop are reported all the same.
    report = (tmp_path / "leads.csv.rejects.csv").read_text().splitlines()
    assert report[1].startswith("2,email: Enter a valid email address")


def test_an_import_stopped_by_the_quota_still_writes_the_rejects_file(tmp_path, tenant):
    from outreach.tenancy.models import Tenant

    Tenant.objects.filter(pk=tenant.pk).update(lead_quota=1)
    path = tmp_path / "leads.csv"
    path.write_text("email\nnot-an-email\na@example.com\nb@example.com\n", encoding="utf-8")
    with pytest.raises(CommandError, match=r"\(imported 0 leads before it\)"):
        _run("--tenant", tenant.slug, str(path), "--batch-size", "3")
    report = (tmp_path / "leads.csv.rejects.csv").read_text().splitlines()
    assert len(report) == 2
    assert report[1].startswith("2,email: Enter a valid email address")
