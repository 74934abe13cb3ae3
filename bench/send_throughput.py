"""End-to-end sending: due ``send`` actions in, the emulator's 202 and the ledger row out.

Builds a tenant, an identity whose window is open all week (00:00-23:59 UTC) with its caps
and the tenant quota lifted, ``--leads`` leads and a one-email campaign (``intro`` with
``next`` to an end step), and enrolls them through ``enrollments_create``. Their ``send``
actions are parked a day ahead, then:

1. starts the SendGrid emulator (loopback, ``--tags-only``, no webhooks: it only accepts) and
   ``--workers`` real Celery worker processes (``celery -A outreach worker --queues
   sending,maintenance`` with ``--pool``/``--concurrency``; each batch calls the provider on
   ``--threads`` threads, ``SEND_THREADS``), with ``SEND_GLOBAL_PER_SECOND=0``;
2. runs the real beat task body ``campaigns.tasks.scheduled_actions_sweep`` every
   ``--sweep-interval`` seconds from this process (it claims and publishes the hints);
3. warm-up: ``--warmup`` actions are made due now and sent (not measured);
4. measured: the other actions are made due, all at once (``--mode burst``: the drain rate
   is the throughput) or spread evenly at ``--rate`` per second (``--mode paced``: the lag
   from due time to send under that load). The due time of every action is kept here.

It then reads the ledger: sends/s = accepted ``Message`` rows per second between the 10th and
90th percentile of ``sent_at`` (the steady state), cross-checked with the emulator's accepted
counter over the same interval, and lag = ``Message.sent_at`` - the action's due time
(p50/p95/p99/max). It also checks the emulator accepted exactly as many messages as the
ledger holds, and reports the CPU seconds each party used (workers, emulator, the Postgres
backends of this database, this process, Redis) and how busy the machine was.

Bounded in count and time, loopback only; every process it starts is stopped at the end.
Needs a database of its own (its name must contain "bench": the tenants table is truncated
at start) and a Redis db other than 0::

    DATABASE_URL=postgres://root@127.0.0.1:5432/outreach_bench_send \\
    REDIS_URL=redis://127.0.0.1:6379/12 python bench/send_throughput.py \\
        --leads 20000 --workers 1 --concurrency 2 --threads 8 --batch-size 50
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, suppress
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "outreach.settings.dev")

PLAN = {
    "name": "Send bench",
    "start": "intro",
    "steps": {
        "intro": {
            "type": "email",
            "variants": [
                {
                    "name": "main",
                    "subject": 'Quick question, {{ lead.first_name | default:"there" }}',
                    "text": (
                        'Hi {{ lead.first_name | default:"there" }},\n\n'
                        "Would a 15-minute call about outreach at "
                        '{{ lead.company | default:"your team" }} be useful next week?\n\n'
                        "{{ sender.signature }}\n\nUnsubscribe: {{ unsubscribe_url }}"
                    ),
                }
            ],
            "next": "done",
        },
        "done": {"type": "end", "outcome": "sent"},
    },
}
UINT_MAX = 2**31 - 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=20_000, help="measured sends")
    parser.add_argument("--warmup", type=int, default=1_000, help="sends before measuring")
    parser.add_argument("--mode", choices=("burst", "paced"), default="burst")
    parser.add_argument("--rate", type=float, default=1000.0, help="paced: due actions per second")
    parser.add_argument("--workers", type=int, default=1, help="Celery worker processes")
    parser.add_argument("--concurrency", type=int, default=2, help="pool size of each worker")
    parser.add_argument("--pool", choices=("prefork", "threads", "solo"), default="prefork")
    parser.add_argument("--threads", type=int, default=8, help="SEND_THREADS (provider calls)")
    parser.add_argument("--batch-size", type=int, default=50, help="SEND_BATCH_SIZE")
    parser.add_argument("--prefetch", type=int, default=4, help="worker prefetch multiplier")
    parser.add_argument("--sweep-interval", type=float, default=0.25, help="seconds")
    parser.add_argument("--timeout", type=float, default=600.0, help="bound of each phase")
    parser.add_argument("--emulator-port", type=int, default=18600)
    parser.add_argument("--worker-log-level", default="WARNING", help="LOG_LEVEL of the workers")
    parser.add_argument("--conn-max-age", type=int, default=600, help="DB_CONN_MAX_AGE")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    return parser.parse_args()


ARGS = parse_args()
# Read by the settings of this process (the sweep batches hints by SEND_BATCH_SIZE, enrolment
# computes due times) and passed on to the workers.
BENCH_ENV = {
    "SEND_BATCH_SIZE": str(ARGS.batch_size),
    "SEND_THREADS": str(ARGS.threads),
    "SEND_JITTER_SECONDS": "0",
    "SEND_GLOBAL_PER_SECOND": "0",
    "DJANGO_DEBUG": "0",
    "DB_CONN_MAX_AGE": str(ARGS.conn_max_age),
}
os.environ.update(BENCH_ENV)
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

from campaigns.models import Lead  # noqa: E402
from campaigns.services import campaigns as campaign_services  # noqa: E402
from campaigns.services.enrollment import enrollments_create  # noqa: E402
from campaigns.services.leads import lead_bulk_create  # noqa: E402
from campaigns.tasks import scheduled_actions_sweep  # noqa: E402
from messaging.emulator.process import EmulatorProcess  # noqa: E402
from messaging.services.identities import sender_identity_create  # noqa: E402
from outreach.tenancy.models import Tenant  # noqa: E402
from outreach.tenancy.services import tenant_create  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
DB_NAME = settings.DATABASES["default"]["NAME"]


def refuse_shared_stores() -> None:
    if "bench" not in DB_NAME:
        sys.exit(f"send_throughput: database {DB_NAME!r} is not a bench database (needs 'bench')")
    db_index = int((urlsplit(settings.REDIS_URL).path or "/0").strip("/") or 0)
    if db_index == 0:
        sys.exit("send_throughput: use a Redis db of its own (REDIS_URL=redis://.../N, N > 0)")


# --- fixture -------------------------------------------------------------------------------


def reset_stores() -> None:
    """Start from empty tables and queues, so every run sees the same table sizes."""
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE tenancy_tenant CASCADE")
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete("sending", "maintenance", "events", "unacked", "unacked_index")
    for key in client.scan_iter("outreach:cap:*", count=1000):
        client.delete(key)


def fixture(total: int) -> tuple[int, int]:
    """Tenant, identity, leads, campaign and enrollments; returns (tenant_id, campaign_id)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
    tenant = tenant_create(name=f"Send bench {stamp}", slug=f"sendbench-{stamp}").tenant
    Tenant.objects.filter(pk=tenant.pk).update(daily_send_quota=UINT_MAX)
    identity = sender_identity_create(
        tenant_id=tenant.pk,
        data={
            "from_name": "Bench AE",
            "from_email": "ae@sender.example.com",
            "reply_to": "ae@sender.example.com",
            "signature": "Bench AE\nAccount Executive",
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
                index,
                {
                    "email": f"lead{index}@prospect.example.com",
                    "first_name": f"First{index}",
                    "last_name": "Lead",
                    "company": f"Prospect {index % 97}",
                    "timezone": "UTC",
                },
            )
            for index in range(start, min(total, start + 10_000))
        ]
        lead_bulk_create(tenant_id=tenant.pk, rows=rows)
    campaign = campaign_services.campaign_create(
        tenant_id=tenant.pk, name="Send bench", sender_identity_id=identity.pk
    )
    added = campaign_services.campaign_version_add(
        tenant_id=tenant.pk, campaign_id=campaign.pk, plan=PLAN
    )
    campaign_services.campaign_publish(
        tenant_id=tenant.pk, campaign_id=campaign.pk, version=added.version.version
    )
    campaign_services.campaign_status_set(
        tenant_id=tenant.pk, campaign_id=campaign.pk, action="activate"
    )
    lead_ids = sorted(Lead.objects.for_tenant(tenant.pk).values_list("pk", flat=True))
    for start in range(0, len(lead_ids), 10_000):
        enrollments_create(
            tenant_id=tenant.pk, campaign_id=campaign.pk, lead_ids=lead_ids[start : start + 10_000]
        )
    park(tenant.pk)
    return tenant.pk, campaign.pk


def park(tenant_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE campaigns_scheduledaction SET due_at = now() + interval '1 day'"
            " WHERE tenant_id = %s AND status = 'pending'",
            [tenant_id],
        )


def make_due(
    tenant_id: int, count: int, start: dt.datetime, spacing: float
) -> dict[int, dt.datetime]:
    """Make ``count`` parked actions due from ``start``, ``spacing`` seconds apart; returns
    each one's due time by enrollment id (the action row is deleted once sent)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH picked AS (
                SELECT id, row_number() OVER (ORDER BY id) - 1 AS n
                FROM campaigns_scheduledaction
                WHERE tenant_id = %s AND status = 'pending' AND due_at > now()
                ORDER BY id LIMIT %s
            )
            UPDATE campaigns_scheduledaction AS a
            SET due_at = %s + picked.n * make_interval(secs => %s)
            FROM picked WHERE a.id = picked.id
            RETURNING a.enrollment_id, a.due_at
            """,
            [tenant_id, count, start, spacing],
        )
        return dict(cursor.fetchall())


def ledger_counts(tenant_id: int) -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT status, count(*) FROM messaging_message WHERE tenant_id = %s GROUP BY status",
            [tenant_id],
        )
        return dict(cursor.fetchall())


def sent_times(tenant_id: int, enrollment_ids: list[int]) -> dict[int, dt.datetime]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT enrollment_id, sent_at FROM messaging_message"
            " WHERE tenant_id = %s AND status = 'accepted' AND enrollment_id = ANY(%s)",
            [tenant_id, enrollment_ids],
        )
        return dict(cursor.fetchall())


# --- processes and CPU accounting ----------------------------------------------------------


def start_workers(emulator_host: str, log_dir: Path) -> list[subprocess.Popen]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDGRID_")}
    env.update(BENCH_ENV)
    env.update(
        {
            "SENDGRID_API_HOST": emulator_host,
            "LOG_LEVEL": ARGS.worker_log_level,
            "CELERY_BROKER_URL": settings.REDIS_URL,
            "PYTHONPATH": str(ROOT),
        }
    )
    workers = []
    for index in range(ARGS.workers):
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "outreach",
            "worker",
            "--queues",
            "sending,maintenance",
            "--pool",
            ARGS.pool,
            "--concurrency",
            str(ARGS.concurrency),
            "--prefetch-multiplier",
            str(ARGS.prefetch),
            "--loglevel",
            ARGS.worker_log_level,
            "--hostname",
            f"sendbench{index}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        log = (log_dir / f"worker{index}.log").open("wb")
        workers.append(
            subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
    return workers


def stop_workers(workers: list[subprocess.Popen]) -> None:
    # SIGTERM to the main process only: a warm shutdown lets the pool finish its batches.
    for process in workers:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + 15
    for process in workers:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def _proc_table() -> list[tuple[int, int, str, float]]:
    """(pid, process group, command line, CPU seconds) of every process we can read."""
    rows = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        pgrp = int(fields[2])
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
        rows.append((int(entry.name), pgrp, cmdline, cpu))
    return rows


def cpu_by_party(worker_groups: set[int], emulator_group: int | None) -> dict[str, float]:
    parties = {"workers": 0.0, "emulator": 0.0, "postgres (this db)": 0.0, "redis (shared)": 0.0}
    for _pid, pgrp, cmdline, cpu in _proc_table():
        if pgrp in worker_groups:
            parties["workers"] += cpu
        elif emulator_group is not None and pgrp == emulator_group:
            parties["emulator"] += cpu
        elif cmdline.startswith("postgres:") and f" {DB_NAME} " in cmdline:
            parties["postgres (this db)"] += cpu
        elif "redis-server" in cmdline:
            parties["redis (shared)"] += cpu
    times = os.times()
    parties["sweeper (this process)"] = times.user + times.system
    return parties


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


# --- the run -------------------------------------------------------------------------------


def drive(
    *,
    emulator: EmulatorProcess,
    tenant_id: int,
    due: dict[int, dt.datetime],
    expected_accepted: int,
    samples: list[tuple[float, int]],
) -> None:
    """Sweep until the emulator has accepted ``expected_accepted`` messages in all and the
    ledger shows them, bounded by ``--timeout``."""
    deadline = time.monotonic() + ARGS.timeout
    next_sweep = next_sample = time.monotonic()
    while time.monotonic() < deadline:
        now = time.monotonic()
        if now >= next_sweep:
            scheduled_actions_sweep()
            next_sweep = max(next_sweep + ARGS.sweep_interval, time.monotonic())
        if now >= next_sample:
            accepted = emulator.stats()["accepted"]
            samples.append((time.time(), accepted))
            next_sample = now + 0.5
            if accepted >= expected_accepted:
                break
        time.sleep(max(0.0, min(next_sweep, next_sample) - time.monotonic()))
    # The ledger row is updated right after the 202: give the last batch a moment.
    while time.monotonic() < deadline:
        if ledger_counts(tenant_id).get("accepted", 0) >= expected_accepted:
            return
        scheduled_actions_sweep()
        time.sleep(0.2)


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def interpolate(samples: list[tuple[float, int]], at: float) -> float:
    for (t0, v0), (t1, v1) in itertools.pairwise(samples):
        if t0 <= at <= t1:
            return v0 + (v1 - v0) * (at - t0) / (t1 - t0 or 1)
    return float(samples[-1][1] if at > samples[-1][0] else samples[0][1])


def main() -> int:
    refuse_shared_stores()
    print(f"load at start: {load()}", flush=True)
    layout = (
        f"{ARGS.workers} worker(s) x {ARGS.pool} {ARGS.concurrency} x {ARGS.threads} send "
        f"threads, batch {ARGS.batch_size}, prefetch {ARGS.prefetch}, sweep every "
        f"{ARGS.sweep_interval:g}s"
    )
    reset_stores()
    started = time.perf_counter()
    tenant_id, _ = fixture(ARGS.leads + ARGS.warmup)
    print(
        f"fixture: {ARGS.leads + ARGS.warmup} leads enrolled in "
        f"{time.perf_counter() - started:.1f}s",
        flush=True,
    )
    log_dir = Path(tempfile.mkdtemp(prefix="send-bench-"))
    with ExitStack() as stack:
        emulator = stack.enter_context(
            EmulatorProcess(
                port=ARGS.emulator_port,
                quiet=True,
                tags_only=True,
                store_size=1000,
                events_url_template="",
                inbound_url_template="",
            )
        )
        workers = start_workers(emulator.host, log_dir)
        stack.callback(stop_workers, workers)
        worker_groups = {w.pid for w in workers}

        # Warm-up: imports, connections, the first hints; not measured.
        if ARGS.warmup:
            warm_due = make_due(tenant_id, ARGS.warmup, dt.datetime.now(dt.UTC), 0.0)
            drive(
                emulator=emulator,
                tenant_id=tenant_id,
                due=warm_due,
                expected_accepted=ARGS.warmup,
                samples=[],
            )
            warm = ledger_counts(tenant_id).get("accepted", 0)
            print(f"warm-up: {warm}/{ARGS.warmup} sent", flush=True)
            if warm < ARGS.warmup:
                print(f"warm-up did not finish; worker logs in {log_dir}", file=sys.stderr)
                return 1

        load_before = load()
        cpu_before = cpu_by_party(worker_groups, emulator.pid)
        busy_before = machine_busy()
        samples: list[tuple[float, int]] = []
        first_due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.5)
        spacing = 0.0 if ARGS.mode == "burst" else 1.0 / ARGS.rate
        due = make_due(tenant_id, ARGS.leads, first_due, spacing)
        wall_started = time.perf_counter()
        drive(
            emulator=emulator,
            tenant_id=tenant_id,
            due=due,
            expected_accepted=ARGS.warmup + ARGS.leads,
            samples=samples,
        )
        wall = time.perf_counter() - wall_started
        cpu_after = cpu_by_party(worker_groups, emulator.pid)
        busy_after = machine_busy()
        load_after = load()
        emulator_accepted = emulator.stats()["accepted"]

    counts = ledger_counts(tenant_id)
    sent = sent_times(tenant_id, list(due))
    lags = [(sent[e] - due[e]).total_seconds() for e in sent]
    times = sorted(t.timestamp() for t in sent.values())
    n = len(times)
    if n < 10:
        print(f"only {n} measured sends; worker logs in {log_dir}", file=sys.stderr)
        return 1
    low, high = times[int(0.1 * (n - 1))], times[int(0.9 * (n - 1))]
    steady = (int(0.9 * (n - 1)) - int(0.1 * (n - 1))) / max(high - low, 1e-9)
    overall = n / max(times[-1] - first_due.timestamp(), 1e-9)
    emulator_steady = (interpolate(samples, high) - interpolate(samples, low)) / max(
        high - low, 1e-9
    )
    cpu = {k: cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after}
    busy = (busy_after[0] - busy_before[0]) / max(busy_after[1] - busy_before[1], 1)
    figures = {
        "layout": layout,
        "mode": ARGS.mode + (f" at {ARGS.rate:g}/s" if ARGS.mode == "paced" else ""),
        "measured_sends": n,
        "wanted": ARGS.leads,
        "wall_seconds": round(wall, 1),
        "sends_per_second_steady": round(steady, 1),
        "sends_per_second_overall": round(overall, 1),
        "emulator_per_second_steady": round(emulator_steady, 1),
        "lag_p50_s": round(percentile(lags, 0.50), 3),
        "lag_p95_s": round(percentile(lags, 0.95), 3),
        "lag_p99_s": round(percentile(lags, 0.99), 3),
        "lag_max_s": round(max(lags), 3),
        "ledger": counts,
        "emulator_accepted": emulator_accepted,
        "exactly_once": emulator_accepted == counts.get("accepted", 0) == ARGS.leads + ARGS.warmup,
        "cpu_seconds": {k: round(v, 1) for k, v in cpu.items()},
        "machine_busy_share": round(busy, 2),
        "load_before": load_before,
        "load_after": load_after,
    }
    print(
        f"{layout}; {figures['mode']}\n"
        f"  sends/s steady {steady:,.0f} (emulator {emulator_steady:,.0f}), overall "
        f"{overall:,.0f}; {n}/{ARGS.leads} measured in {wall:.1f}s\n"
        f"  lag due->sent p50 {figures['lag_p50_s']}s p95 {figures['lag_p95_s']}s "
        f"p99 {figures['lag_p99_s']}s max {figures['lag_max_s']}s\n"
        f"  ledger {counts}, emulator accepted {emulator_accepted}, exactly once: "
        f"{figures['exactly_once']}\n"
        f"  CPU s: {', '.join(f'{k} {v:.1f}' for k, v in cpu.items())}; machine busy "
        f"{busy:.0%} of {os.cpu_count()} CPUs\n"
        f"  load before {load_before}, after {load_after}",
        flush=True,
    )
    if ARGS.json:
        print(json.dumps(figures))
    return 0 if figures["exactly_once"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
