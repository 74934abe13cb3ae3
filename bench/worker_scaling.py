"""Does the worker side scale out? 1, 2 and 4 sweeper + worker processes draining the same
due ``send`` actions of one database, with their contention.

Each process is what one worker host runs, in a loop: claim due actions
(``scheduler.scheduled_actions_claim``: ``FOR UPDATE SKIP LOCKED``, a lease, ``--claim-limit``
rows) and send them with ``message_send_batch`` (``--batch`` per call, provider calls on
``SEND_THREADS`` threads, to one SendGrid emulator), until nothing is due. Celery is left out
on purpose: a hint carries exactly these ids, and its broker is not what is being scaled.

For each process count, ``--actions`` actions are made due at once and all processes start
together. Figures:

- claims/s and sends/s over the drain (first claim to last accepted send);
- SKIP LOCKED misses: claim calls that came back short while due rows were still left (the
  rows skipped were locked by another process's claim), and empty claims among them;
- lock waits: ``pg_stat_activity`` of the processes' backends sampled every 10 ms; the share
  of samples waiting on a heavyweight lock (``wait_event_type = 'Lock'``) and on anything
  else (LWLocks, I/O), by event;
- exactly-once: every action sent once (ledger rows = actions, the emulator's count agrees).

Needs a database of its own whose name contains "bench" or "scale" (its tables are emptied
first) and a Redis db other than 0::

    DATABASE_URL=postgres://root@127.0.0.1:5432/outreach_wt10_workers \\
    REDIS_URL=redis://127.0.0.1:6379/6 python bench/worker_scaling.py --processes 1,2,4
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
START = "<!-- worker-scaling:start -->"
END = "<!-- worker-scaling:end -->"
UINT_MAX = 2**31 - 1
APP_NAME = "worker_scaling"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--actions", type=int, default=4000, help="due actions per round")
    parser.add_argument("--claim-limit", type=int, default=200)
    parser.add_argument("--batch", type=int, default=100, help="actions per send batch")
    parser.add_argument("--threads", type=int, default=8, help="SEND_THREADS")
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--emulator", help=argparse.SUPPRESS)
    return parser.parse_args()


ARGS = parse_args()


def fail(message: str) -> None:
    print(f"worker_scaling: {message}", file=sys.stderr)
    sys.exit(2)


def django_setup(emulator_host: str | None) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "outreach.settings.dev")
    os.environ.update(
        {
            "SEND_JITTER_SECONDS": "0",
            "SEND_GLOBAL_PER_SECOND": "0",
            "SEND_THREADS": str(ARGS.threads),
            "LOG_LEVEL": "WARNING",
            "DJANGO_DEBUG": "0",
        }
    )
    if emulator_host:
        os.environ["SENDGRID_API_HOST"] = emulator_host
    import django

    django.setup()


# =========================================================================== a worker


def worker_main() -> None:
    django_setup(ARGS.emulator)
    from django.db import connection

    from campaigns.services import scheduler
    from messaging.services.sending import message_send_batch

    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('application_name', %s, false)", [APP_NAME])
    time.sleep(max(0.0, ARGS.start_at - time.time()))
    stats = Counter()
    first = last = None
    idle = 0
    while idle < 3:
        claimed = scheduler.scheduled_actions_claim(limit=ARGS.claim_limit)
        stats["claim_calls"] += 1
        stats["claimed"] += len(claimed)
        if len(claimed) < ARGS.claim_limit:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT EXISTS (SELECT 1 FROM campaigns_scheduledaction"
                    " WHERE status = 'pending' AND due_at <= now())"
                )
                if cursor.fetchone()[0]:
                    stats["short_with_due_left"] += 1
                    stats["empty_with_due_left"] += not claimed
        if not claimed:
            idle += 1
            time.sleep(0.05)
            continue
        idle = 0
        first = first or time.time()
        items = [[action.id, action.attempt] for action in claimed]
        for start in range(0, len(items), ARGS.batch):
            report = message_send_batch(items=items[start : start + ARGS.batch])
            stats["sent"] += report.sent
            stats["not_sent"] += report.skipped + report.rescheduled + report.failed
        last = time.time()
    Path(ARGS.out).write_text(json.dumps({"stats": stats, "first": first, "last": last}))


# =========================================================================== the parent


PLAN = {
    "name": "Worker scaling bench",
    "start": "intro",
    "steps": {
        "intro": {
            "type": "email",
            "variants": [
                {
                    "name": "main",
                    "subject": 'Quick question, {{ lead.first_name | default:"there" }}',
                    "text": "Hi {{ lead.first_name }}, worth a call?\n\n{{ unsubscribe_url }}",
                }
            ],
            "next": "done",
        },
        "done": {"type": "end", "outcome": "sent"},
    },
}


def fixture(total: int) -> tuple[int, int]:
    from django.db import connection

    from campaigns.models import Lead
    from campaigns.services import campaigns as services
    from campaigns.services.enrollment import enrollments_create
    from campaigns.services.leads import lead_bulk_create
    from messaging.services.identities import sender_identity_create
    from outreach.tenancy.models import Tenant
    from outreach.tenancy.services import tenant_create

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE tenancy_tenant CASCADE")
        cursor.execute("DELETE FROM messaging_messageevent")
    tenant = tenant_create(name="Worker scaling", slug="worker-scaling").tenant
    Tenant.objects.filter(pk=tenant.pk).update(daily_send_quota=UINT_MAX)
    identity = sender_identity_create(
        tenant_id=tenant.pk,
        data={
            "from_name": "Bench AE",
            "from_email": "ae@sender.example.com",
            "daily_cap": UINT_MAX,
            "hourly_cap": UINT_MAX,
            "window_days": [0, 1, 2, 3, 4, 5, 6],
            "window_start": "00:00",
            "window_end": "23:59",
            "timezone": "UTC",
        },
    )
    for start in range(0, total, 10_000):
        rows = [
            (
                i,
                {
                    "email": f"lead{i}@prospect.example.com",
                    "first_name": f"F{i}",
                    "timezone": "UTC",
                },
            )
            for i in range(start, min(total, start + 10_000))
        ]
        lead_bulk_create(tenant_id=tenant.pk, rows=rows)
    campaign = services.campaign_create(
        tenant_id=tenant.pk, name="Worker scaling", sender_identity_id=identity.pk
    )
    added = services.campaign_version_add(tenant_id=tenant.pk, campaign_id=campaign.pk, plan=PLAN)
    services.campaign_publish(
        tenant_id=tenant.pk, campaign_id=campaign.pk, version=added.version.version
    )
    services.campaign_status_set(tenant_id=tenant.pk, campaign_id=campaign.pk, action="activate")
    lead_ids = sorted(Lead.objects.for_tenant(tenant.pk).values_list("pk", flat=True))
    for start in range(0, len(lead_ids), 10_000):
        enrollments_create(
            tenant_id=tenant.pk, campaign_id=campaign.pk, lead_ids=lead_ids[start : start + 10_000]
        )
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE campaigns_scheduledaction SET due_at = now() + interval '1 day'"
            " WHERE status = 'pending'"
        )
        cursor.execute("VACUUM ANALYZE campaigns_scheduledaction")
    return tenant.pk, campaign.pk


def make_due(count: int) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE campaigns_scheduledaction SET due_at = now() - interval '1 second'
            WHERE id IN (SELECT id FROM campaigns_scheduledaction
                         WHERE status = 'pending' AND due_at > now() ORDER BY id LIMIT %s)
            """,
            [count],
        )
        return cursor.rowcount


class Sampler(threading.Thread):
    """pg_stat_activity of the workers' backends every 10 ms."""

    def __init__(self, conninfo: str) -> None:
        super().__init__(daemon=True)
        self.conninfo = conninfo
        self.stop = threading.Event()
        self.samples = 0
        self.active = 0
        self.waits: Counter = Counter()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            while not self.stop.is_set():
                rows = conn.execute(
                    "SELECT state, wait_event_type, wait_event FROM pg_stat_activity"
                    " WHERE application_name = %s",
                    [APP_NAME],
                ).fetchall()
                for state, kind, event in rows:
                    self.samples += 1
                    if state == "active":
                        self.active += 1
                        if kind and kind != "Client":
                            self.waits[f"{kind}:{event}"] += 1
                time.sleep(0.01)


def cpu_busy() -> tuple[float, float]:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [float(v) for v in fields]
    return sum(values) - values[3] - values[4], sum(values)


def run_round(processes: int, emulator_host: str) -> dict:
    from django.conf import settings
    from django.db import connection

    from messaging.models import Message

    due = make_due(ARGS.actions)
    connection.close()
    info = settings.DATABASES["default"]
    conninfo = f"host={info['HOST']} port={info['PORT']} dbname={info['NAME']} user={info['USER']}"
    sent_before = Message.objects.filter(status="accepted").count()
    start_at = time.time() + 4.0  # time for each process to import Django and connect
    outs = [Path(tempfile.mkstemp(prefix=f"wscale-{processes}-{i}-")[1]) for i in range(processes)]
    children = []
    for index, out in enumerate(outs):
        command = [sys.executable, __file__, "--worker", str(index), "--start-at", str(start_at),
                   "--out", str(out), "--emulator", emulator_host, "--claim-limit",
                   str(ARGS.claim_limit), "--batch", str(ARGS.batch), "--threads",
                   str(ARGS.threads)]  # fmt: skip
        children.append(subprocess.Popen(command, cwd=ROOT))
    sampler = Sampler(conninfo)
    time.sleep(max(0.0, start_at - time.time()))
    busy0, total0 = cpu_busy()
    sampler.start()
    for child in children:
        child.wait()
    sampler.stop.set()
    sampler.join()
    busy1, total1 = cpu_busy()
    reports = [json.loads(out.read_text()) for out in outs]
    for out in outs:
        out.unlink()
    stats = Counter()
    for report in reports:
        stats.update(report["stats"])
    first = min(r["first"] for r in reports if r["first"])
    last = max(r["last"] for r in reports if r["last"])
    seconds = last - first
    sent = Message.objects.filter(status="accepted").count() - sent_before
    lock = sum(n for key, n in sampler.waits.items() if key.startswith("Lock:"))
    other = sum(n for key, n in sampler.waits.items() if not key.startswith("Lock:"))
    return {
        "processes": processes,
        "due": due,
        "claimed": stats["claimed"],
        "sent": stats["sent"],
        "ledger_sent": sent,
        "seconds": seconds,
        "claims_per_s": stats["claimed"] / seconds,
        "sends_per_s": stats["sent"] / seconds,
        "claim_calls": stats["claim_calls"],
        "short_with_due_left": stats["short_with_due_left"],
        "empty_with_due_left": stats["empty_with_due_left"],
        "samples": sampler.active,
        "lock_share": lock / max(1, sampler.active),
        "other_wait_share": other / max(1, sampler.active),
        "waits": dict(sampler.waits.most_common(6)),
        "busy": (busy1 - busy0) / max(1.0, total1 - total0),
        "load": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def parent_main() -> None:
    counts = [int(n) for n in ARGS.processes.split(",")]
    django_setup(None)
    from django.conf import settings

    from messaging.emulator.process import EmulatorProcess

    name = settings.DATABASES["default"]["NAME"]
    if "bench" not in name and "scale" not in name:
        fail(
            f"database {name!r}: its name must contain 'bench' or 'scale' (its tables are emptied)"
        )
    if (urlsplit(settings.REDIS_URL).path or "/0").strip("/") in ("", "0"):
        fail("use a Redis db of its own (REDIS_URL=redis://host:port/N, N > 0)")
    started = dt.datetime.now(dt.UTC)
    load_before = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    total = ARGS.actions * len(counts)
    t0 = time.perf_counter()
    fixture(total)
    print(f"fixture: {total:,} enrolled, parked ({time.perf_counter() - t0:.0f} s)", flush=True)
    emulator = EmulatorProcess(
        quiet=True, tags_only=True, store_size=1000, events_url_template="",
        inbound_url_template="",
    ).start()  # fmt: skip
    rounds = []
    try:
        for processes in counts:
            result = run_round(processes, emulator.host)
            rounds.append(result)
            print(
                f"{processes} process(es): {result['claims_per_s']:,.0f} claims/s,"
                f" {result['sends_per_s']:,.0f} sends/s ({result['sent']:,} in"
                f" {result['seconds']:.1f} s); short claims with due rows left"
                f" {result['short_with_due_left']} of {result['claim_calls']} (empty"
                f" {result['empty_with_due_left']}); lock waits {result['lock_share']:.1%},"
                f" other waits {result['other_wait_share']:.1%} of active samples;"
                f" CPU busy {result['busy']:.0%}; top waits {result['waits']}",
                flush=True,
            )
        emulated = emulator.stats()
        accepted = emulated.get("accepted", emulated)
    finally:
        emulator.stop()
    once = all(r["sent"] == r["due"] == r["ledger_sent"] for r in rounds)
    print(f"every due action sent exactly once: {once} (emulator accepted: {accepted})")
    if not ARGS.no_doc:
        write_doc(rounds, started, load_before, once)


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return f"{os.cpu_count()} CPU(s) (nproc), {cpu}, Python {platform.python_version()}"


def write_doc(rounds: list[dict], started, load_before: str, once: bool) -> None:
    base = rounds[0]
    table = "\n".join(
        f"| {r['processes']} | {r['sent']:,} | {r['seconds']:.1f} | **{r['claims_per_s']:,.0f}** |"
        f" **{r['sends_per_s']:,.0f}** | {r['sends_per_s'] / base['sends_per_s']:.2f}x |"
        f" {r['short_with_due_left']} / {r['claim_calls']} ({r['empty_with_due_left']} empty) |"
        f" {r['lock_share']:.1%} | {r['other_wait_share']:.1%} |"
        f" {', '.join(f'{k} {v}' for k, v in list(r['waits'].items())[:3]) or '-'} |"
        f" {r['busy']:.0%} | {r['load']} |"
        for r in rounds
    )
    command = "python bench/worker_scaling.py " + " ".join(sys.argv[1:])
    text = f"""{START}
## Worker side: sweeper + worker processes against one database

- Date: {started:%Y-%m-%d %H:%M} UTC
- Machine: {machine()}; PostgreSQL, Redis and the SendGrid emulator on the same machine.
- Command: `{command.strip()}`
- Load average at start (1/5/15 min): {load_before}; other work shared the CPUs.
- Each process claims (`FOR UPDATE SKIP LOCKED`, {ARGS.claim_limit} rows a call) and sends what it
  claimed (`message_send_batch`, {ARGS.batch} a call, {ARGS.threads} provider threads), until nothing is
  due; {ARGS.actions:,} actions due at once per round. Every due action sent exactly once in every
  round: **{"yes" if once else "NO"}**.

| Processes | Sent | Seconds | Claims/s | Sends/s | vs 1 | Short claims with due rows left (SKIP LOCKED misses) | Lock waits | Other waits | Top waits (samples) | CPU busy | Load after |
| ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: | --- |
{table}

Waits are the share of 10 ms samples of the processes' active backends (`pg_stat_activity`)
waiting on a heavyweight lock (*Lock waits*) or on anything else but the client (*Other*).
{END}"""
    doc = DOC.read_text()
    if START in doc:
        doc = doc[: doc.index(START)] + text + doc[doc.index(END) + len(END) :]
    else:
        doc = doc.rstrip() + "\n\n" + text + "\n"
    DOC.write_text(doc)
    print(f"updated {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    if ARGS.worker is not None:
        worker_main()
    else:
        parent_main()
