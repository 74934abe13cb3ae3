"""How long ``POST /api/v1/leads/bulk/`` takes for a full request of 10,000 rows.

Creates a throw-away tenant in the configured database (``DATABASE_URL``; it must be
migrated), posts ``--rows`` leads per request through Django's test client in this process
(JSON parsing, per-row validation, email verdicts, the single INSERT, the response), and
prints the time of each phase-inclusive request: a first run into an empty tenant, a second
run of the same rows (all skipped as existing), and a run with 1% invalid rows. The tenant
and its leads are deleted afterwards. Rewrites the "Bulk lead creation" section of
docs/benchmarks.md (``--no-doc`` to skip).

Usage: ``DATABASE_URL=postgres://root@127.0.0.1:5432/outreach python bench/leads_bulk.py``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "outreach.settings.dev")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from outreach.tenancy.models import Tenant  # noqa: E402
from outreach.tenancy.services import tenant_create  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
START = "<!-- leads-bulk:start -->"
END = "<!-- leads-bulk:end -->"


def _rows(count: int, *, bad_every: int = 0) -> list[dict]:
    rows = []
    for i in range(count):
        row = {
            "email": f"Prospect.{i}@Company{i % 400}.example.com",
            "first_name": f"First{i}",
            "last_name": "Lastname",
            "company": f"Company {i % 400}",
            "title": "Head of Sales",
            "timezone": "Europe/Berlin",
            "country": "de",
            "phone": f"+4930{1000000 + i}",
            "custom_fields": {"source": "webinar", "score": i % 100},
        }
        if bad_every and i % bad_every == 0:
            row["email"] = f"broken-{i}"
        rows.append(row)
    return rows


def _post(client: APIClient, rows: list[dict]) -> tuple[float, float, dict, int]:
    """Wall seconds, CPU seconds of this process (steadier on a shared machine), body."""
    body = json.dumps({"items": rows})
    started, cpu_started = time.perf_counter(), time.process_time()
    response = client.post("/api/v1/leads/bulk/", body, content_type="application/json")
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if response.status_code != 200:
        raise SystemExit(f"bulk request failed: {response.status_code} {response.content[:300]}")
    return elapsed, cpu, response.json(), len(body)


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPU(s) (nproc), {cpu}, Python {platform.python_version()}"


def write_doc(text: str) -> None:
    current = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if START in current and END in current:
        before, rest = current.split(START, 1)
        updated = before + text + rest.split(END, 1)[1]
    else:
        updated = current.rstrip("\n") + "\n\n" + text + "\n"
    DOC.write_text(updated)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--no-doc", action="store_true", help="print only")
    args = parser.parse_args()
    logging.getLogger("campaigns").setLevel(logging.WARNING)
    logging.getLogger("django.request").setLevel(logging.ERROR)

    load = os.getloadavg()
    created = tenant_create(name="Bench leads", slug=f"bench-{uuid.uuid4().hex[:10]}")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {created.key}")
    results = []
    try:
        rows = _rows(args.rows)
        for label, payload in (
            ("new rows into an empty tenant", rows),
            ("the same rows again (all skipped)", rows),
        ):
            results.append((label, *_post(client, payload)))
        Tenant.objects.filter(pk=created.tenant.pk).delete()
        created = tenant_create(name="Bench leads", slug=f"bench-{uuid.uuid4().hex[:10]}")
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {created.key}")
        results.append(
            ("new rows, 1% invalid emails", *_post(client, _rows(args.rows, bad_every=100)))
        )
    finally:
        Tenant.objects.filter(pk=created.tenant.pk).delete()

    lines = [
        START,
        "## Bulk lead creation (`POST /api/v1/leads/bulk/`)",
        "",
        f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {_machine()}; PostgreSQL {settings.DATABASES['default']['HOST']} on the "
        "same machine.",
        f"- Command: `python bench/leads_bulk.py --rows {args.rows}`",
        f"- Load average at start (1/5/15 min): {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}; "
        "other work shared the CPUs.",
        "",
        "| Request | Rows | Body | Created | Skipped | Rejected | Wall s | Rows/s | App CPU s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, seconds, cpu, body, size in results:
        lines.append(
            f"| {label} | {args.rows} | {size / 1_048_576:.1f} MB | {body['created_count']} | "
            f"{body['skipped_count']} | {body['error_count']} | {seconds:.2f} | "
            f"{args.rows / seconds:,.0f} | {cpu:.2f} |"
        )
    lines += [
        "",
        "One request through Django's test client in one process: JSON parsing, per-row type "
        "checks, email verdicts (cached domain checks), phone/zone/country normalisation, one "
        "`INSERT … SELECT FROM json_to_recordset … ON CONFLICT DO NOTHING RETURNING`, and the "
        "response. No network hop, no gunicorn. App CPU is this process's CPU time (Python "
        "side); the rest of the wall time is PostgreSQL and waiting for a CPU.",
        END,
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_doc:
        write_doc(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
