"""How long the campaign lifecycle's bulk operations take at the API's limits.

Runs against its own database (``--db``, created and migrated on first use). Times, with
``--leads`` live enrollments (default 10,000, the per-call enrollment limit):

- enrolling them in one ``enrollments_create`` call (rows + first scheduled actions);
- a dry-run and a real ``enrollments_migrate`` to a new version (half the enrollments stay on
  their step, half move to a renamed step and are rescheduled);
- ``campaign_status_set(action="archive")``, which stops every live enrollment;
- ``lead_timeline`` for one lead with ``--history`` messages of 5 events each (queries, ms).

Prints a table and rewrites the "Campaign lifecycle" section of docs/benchmarks.md (``--no-doc``
to skip).

Usage: ``python bench/campaign_lifecycle.py [--leads 10000] [--history 400]``
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
START = "<!-- campaign-lifecycle:start -->"
END = "<!-- campaign-lifecycle:end -->"
LOAD_AT_START = " / ".join(f"{x:.2f}" for x in os.getloadavg())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=10_000, help="enrollments (max 10,000)")
    parser.add_argument("--history", type=int, default=400, help="messages in the timeline lead")
    parser.add_argument("--db", default="outreach_bench_campapi", help="database to use")
    parser.add_argument("--no-doc", action="store_true", help="print only")
    return parser.parse_args()


ARGS = parse_args()
os.environ["DATABASE_URL"] = f"postgres://root@127.0.0.1:5432/{ARGS.db}"
os.environ["DJANGO_SETTINGS_MODULE"] = "outreach.settings.dev"
os.environ["DJANGO_DEBUG"] = "false"
os.environ["LOG_LEVEL"] = "WARNING"
sys.path.insert(0, str(ROOT))


def database_prepare() -> None:
    import psycopg

    with psycopg.connect("postgresql://root@127.0.0.1:5432/postgres", autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [ARGS.db]).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{ARGS.db}"')
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, check=True
    )


database_prepare()

import django  # noqa: E402

django.setup()

import logging  # noqa: E402

from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from campaigns.models import Enrollment, Lead  # noqa: E402
from campaigns.selectors_timeline import lead_timeline  # noqa: E402
from campaigns.services import campaigns as services  # noqa: E402
from campaigns.services.enrollment import enrollments_create  # noqa: E402
from campaigns.tests.campaign_support import PLAN, plan_v2  # noqa: E402
from messaging.models import Message, MessageEvent, SenderIdentity  # noqa: E402
from outreach.tenancy.models import Tenant  # noqa: E402

logging.disable(logging.INFO)


def timed(label: str, rows: list, fn, count: int):
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    rows.append((label, count, seconds))
    print(f"{label:<55} {count:>7} {seconds:>8.2f} s {count / seconds:>9.0f}/s", flush=True)
    return result


def main() -> None:
    stamp = int(time.time())
    tenant = Tenant.objects.create(name=f"bench {stamp}", slug=f"bench-campapi-{stamp}")
    identity = SenderIdentity.objects.create(
        tenant=tenant, from_name="AE", from_email=f"ae{stamp}@bench.example"
    )
    campaign = services.campaign_create(
        tenant_id=tenant.pk, name="bench", sender_identity_id=identity.pk
    )
    services.campaign_version_add(tenant_id=tenant.pk, campaign_id=campaign.pk, plan=PLAN)
    services.campaign_publish(tenant_id=tenant.pk, campaign_id=campaign.pk, version=1)
    services.campaign_status_set(tenant_id=tenant.pk, campaign_id=campaign.pk, action="activate")
    Lead.objects.bulk_create(
        Lead(tenant=tenant, email=f"lead{n}@bench.example", first_name=f"L{n}")
        for n in range(ARGS.leads)
    )
    lead_ids = list(Lead.objects.filter(tenant=tenant).values_list("id", flat=True))
    rows: list[tuple[str, int, float]] = []

    result = timed(
        "enroll (one call: enrollments + first actions)",
        rows,
        lambda: enrollments_create(tenant_id=tenant.pk, campaign_id=campaign.pk, lead_ids=lead_ids),
        ARGS.leads,
    )
    assert len(result.enrolled) == ARGS.leads
    # Half the journeys have reached the wait step (as after a no_reply timeout).
    half = [e["enrollment_id"] for e in result.enrolled[: ARGS.leads // 2]]
    Enrollment.objects.filter(pk__in=half).update(current_step="wait", step_seq=2)

    v2 = services.campaign_version_add(
        tenant_id=tenant.pk, campaign_id=campaign.pk, plan=copy.deepcopy(plan_v2())
    ).version
    services.campaign_publish(tenant_id=tenant.pk, campaign_id=campaign.pk, version=2)
    step_map = {"intro": "intro", "wait": "nudge"}
    for dry_run in (True, False):
        migrated = timed(
            f"migrate to v2, {'dry run' if dry_run else 'real run (half move)'}",
            rows,
            lambda dry_run=dry_run: services.enrollments_migrate(
                tenant_id=tenant.pk,
                campaign_id=campaign.pk,
                to_version_id=v2.pk,
                step_map=step_map,
                dry_run=dry_run,
            ),
            ARGS.leads,
        )
        assert migrated.counts["error"] == 0

    timed(
        "archive (stops every live enrollment)",
        rows,
        lambda: services.campaign_status_set(
            tenant_id=tenant.pk, campaign_id=campaign.pk, action="archive"
        ),
        ARGS.leads,
    )
    assert not Enrollment.objects.filter(campaign=campaign, state="active").exists()

    # One lead with a long history for the timeline.
    lead = Lead.objects.get(pk=lead_ids[0])
    enrollment = Enrollment.objects.filter(lead=lead).first()
    now = timezone.now()
    messages = Message.objects.bulk_create(
        Message(
            tenant=tenant,
            sender_identity=identity,
            enrollment=enrollment,
            lead=lead,
            campaign=campaign,
            step="intro",
            step_seq=100 + n,
            subject=f"Hi {n}",
            to_email=lead.email,
            status="delivered",
        )
        for n in range(ARGS.history)
    )
    MessageEvent.objects.bulk_create(
        MessageEvent(
            tenant_id=tenant.pk,
            message_id=message.pk,
            event_type=kind,
            occurred_at=now,
            received_at=now,
            provider_event_id=f"{message.pk}-{kind}",
        )
        for message in messages
        for kind in ("processed", "delivered", "open", "click", "open")
    )
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        timeline = lead_timeline(tenant_id=tenant.pk, lead_id=lead.pk)
        timeline_ms = (time.perf_counter() - started) * 1000
    history = ARGS.history * 6 + 2
    print(
        f"timeline: {history} rows of history, {len(timeline.entries)} entries returned, "
        f"{len(queries.captured_queries)} queries, {timeline_ms:.0f} ms"
    )
    if not ARGS.no_doc:
        doc_write(rows, history, len(timeline.entries), len(queries.captured_queries), timeline_ms)


def doc_write(rows, history: int, returned: int, queries: int, timeline_ms: float) -> None:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    table = "\n".join(
        f"| {label} | {count} | {seconds:.2f} | {count / seconds:,.0f} |"
        for label, count, seconds in rows
    )
    text = "\n".join(
        [
            START,
            "## Campaign lifecycle",
            "",
            f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
            f"- Machine: {os.cpu_count()} CPU(s), {cpu}, Python {platform.python_version()}",
            f"- Command: `python bench/campaign_lifecycle.py --leads {ARGS.leads} "
            f"--history {ARGS.history}`",
            f"- Load average at start (1/5/15 min): {LOAD_AT_START}; other work shared the CPUs.",
            "",
            "| Operation | Enrollments | Seconds | Enrollments/s |",
            "| --- | ---: | ---: | ---: |",
            table,
            "",
            f"Lead timeline with {history} rows of history (messages, events, enrollment): "
            f"{returned} entries returned (capped), {queries} queries, {timeline_ms:.0f} ms.",
            "Each operation is one service call in one transaction. The real migration re-pins "
            "every enrollment in one statement and moves each one whose step changes through "
            "the engine (about four round trips each); the archive stops enrollments "
            "set-based, a locked batch of 1,000 at a time.",
            END,
        ]
    )
    current = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if START in current and END in current:
        before, rest = current.split(START, 1)
        updated = before + text + rest.split(END, 1)[1]
    else:
        updated = current.rstrip("\n") + "\n\n" + text + "\n"
    DOC.write_text(updated)


if __name__ == "__main__":
    main()
