"""How fast the beat sweep claims due actions and publishes their Celery hints.

Loads ``--count`` due pending actions (one per enrollment; the tenant, leads and enrollments
they point at are inserted with set-based SQL and kept for the next run), then runs the real
``campaigns.services.scheduler.scheduled_actions_sweep`` in a loop:

1. for each ``--claim-limits`` value, ``--seconds`` of sweeping with a no-op dispatch (the
   claim alone) and with the real ``campaigns.tasks._dispatch`` (one Celery publish to Redis per
   ``--batch-size`` actions), the claimed rows put back to pending after each run;
2. ``--sweepers`` sweeper processes at once (``SKIP LOCKED`` splits the rows), real dispatch;
3. the headline: one sweeper drains all ``--count`` actions, real dispatch, default limit.

Prints claims/s, then rewrites its part of the "Scheduling" section of docs/benchmarks.md
(``--no-doc`` to skip). Needs a database of its own (its name must contain "bench": actions are
truncated) and a Redis db other than 0, e.g.::

    DATABASE_URL=postgres://root@127.0.0.1:5432/outreach_bench_sched \\
    REDIS_URL=redis://127.0.0.1:6379/10 python bench/sweep_throughput.py

The hints land on the ``sending`` queue of that Redis db; the keys the run created are deleted
at the end. ``claim_scaling.py`` reuses the fixture and helpers defined here.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "outreach.settings.dev")

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from campaigns.models import (  # noqa: E402
    Campaign,
    CampaignPlanVersion,
    Enrollment,
    Lead,
    ScheduledAction,
)
from campaigns.services import scheduler  # noqa: E402
from messaging.models import SenderIdentity  # noqa: E402
from outreach.tenancy.models import Tenant  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
SECTION_START = "<!-- scheduling:start -->"
SECTION_END = "<!-- scheduling:end -->"
TENANT_SLUG = "bench-scheduling"
ACTIONS = ScheduledAction._meta.db_table


class BenchError(Exception):
    """A precondition of the benchmark does not hold; main() prints it on one line."""


# --- environment -------------------------------------------------------------------------


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    model = "unknown CPU"
    memory = "unknown RAM"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
                break
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0].split()[0]
        cursor.execute("SHOW shared_buffers")
        buffers = cursor.fetchone()[0]
    return (
        f"{os.cpu_count()} CPU(s) (nproc), {model}, {memory}; "
        f"PostgreSQL {version} (shared_buffers {buffers}) on the same machine"
    )


def database_guard() -> None:
    name = connection.settings_dict["NAME"]
    if "bench" not in name:
        raise BenchError(
            f"database {name!r} is not a benchmark database (its name must contain 'bench'):"
            " set DATABASE_URL=postgres://…/outreach_bench_<you>"
        )


def broker_client() -> redis.Redis:
    url = settings.CELERY_BROKER_URL
    client = redis.Redis.from_url(url)
    if client.connection_pool.connection_kwargs.get("db", 0) == 0:
        raise BenchError(
            f"broker {url} is Redis db 0, where workers may listen: use a db of the"
            " benchmark's own, e.g. REDIS_URL=redis://127.0.0.1:6379/10"
        )
    client.ping()
    return client


class BackendCpu:
    """CPU seconds spent by this connection's PostgreSQL backend (same host only)."""

    def __init__(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self.path = Path(f"/proc/{cursor.fetchone()[0]}/stat")

    def seconds(self) -> float | None:
        try:
            fields = self.path.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- fixture -----------------------------------------------------------------------------


def execute(statement: str, params: dict | list | None = None) -> int:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.rowcount


def insert_select(model, *, exprs: dict[str, str], source: str, params: dict) -> int:
    """``INSERT INTO <table> (<every column>) SELECT <exprs> <source>``, set-based.

    Columns missing from ``exprs`` get the model field's default (``now()`` for auto
    timestamps), so a column added to the model later does not break the benchmark.
    """
    columns, values, params = [], [], dict(params)
    for model_field in model._meta.concrete_fields:
        if model_field.primary_key or model_field.generated:
            continue  # a generated column (the lead's search text) is computed by PostgreSQL
        columns.append(connection.ops.quote_name(model_field.column))
        if model_field.column in exprs:
            values.append(exprs[model_field.column])
        elif getattr(model_field, "auto_now", False) or getattr(model_field, "auto_now_add", False):
            values.append("now()")
        elif model_field.null and not model_field.has_default():
            values.append("NULL")
        else:
            key = f"default_{model_field.column}"
            params[key] = model_field.get_db_prep_save(model_field.get_default(), connection)
            values.append(f"%({key})s")
    return execute(
        f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)}"
        f" ({', '.join(columns)}) SELECT {', '.join(values)} {source}",
        params,
    )


@contextlib.contextmanager
def bulk_load(*models) -> Iterator[None]:
    """Load fast: no FK triggers; indexes (and primary/unique keys no foreign key points at)
    dropped, then rebuilt in one sort each afterwards, as they were.

    Their definitions are kept in a table of the bench database first, so an interrupted
    load gets them back on the next run (``indexes_restore``).
    """
    execute(
        "CREATE TABLE IF NOT EXISTS bench_index_backup"
        " (name text PRIMARY KEY, drop_sql text NOT NULL, create_sql text NOT NULL)"
    )
    tables = [m._meta.db_table for m in models]
    execute(
        """
        INSERT INTO bench_index_backup (name, drop_sql, create_sql)
        SELECT c.conname,
               format('ALTER TABLE %%I DROP CONSTRAINT %%I', t.relname, c.conname),
               format('ALTER TABLE %%I ADD CONSTRAINT %%I %%s', t.relname, c.conname,
                      pg_get_constraintdef(c.oid))
        FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
        WHERE t.relname = ANY(%(tables)s) AND c.contype IN ('p', 'u')
          AND t.relnamespace = current_schema()::regnamespace
          AND NOT EXISTS (SELECT 1 FROM pg_constraint f
                          WHERE f.contype = 'f' AND f.conindid = c.conindid)
        UNION ALL
        SELECT i.indexname, format('DROP INDEX %%I', i.indexname), i.indexdef
        FROM pg_indexes i
        WHERE i.schemaname = current_schema() AND i.tablename = ANY(%(tables)s)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
        ON CONFLICT (name) DO NOTHING
        """,
        {"tables": tables},
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT b.drop_sql FROM bench_index_backup b"
            " JOIN pg_class i ON i.relname = b.name AND i.relkind = 'i'"
            " JOIN pg_index x ON x.indexrelid = i.oid"
            " WHERE x.indrelid::regclass::text = ANY(%s)",
            [tables],
        )
        for (drop_sql,) in cursor.fetchall():
            cursor.execute(drop_sql)
    execute("SET session_replication_role = replica")
    try:
        yield
    finally:
        execute("RESET session_replication_role")
        indexes_restore()
        for table in tables:
            execute(f"VACUUM ANALYZE {connection.ops.quote_name(table)}")


def indexes_restore() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('bench_index_backup') IS NOT NULL")
        if not cursor.fetchone()[0]:
            return
        cursor.execute("SET maintenance_work_mem = '512MB'")
        cursor.execute("SELECT name, create_sql FROM bench_index_backup ORDER BY name")
        for name, create_sql in cursor.fetchall():
            cursor.execute("SELECT to_regclass(%s) IS NULL", [connection.ops.quote_name(name)])
            if cursor.fetchone()[0]:
                print(f"  rebuilding {name}…", flush=True)
                cursor.execute(create_sql)
            cursor.execute("DELETE FROM bench_index_backup WHERE name = %s", [name])
        cursor.execute("RESET maintenance_work_mem")


@dataclass
class Fixture:
    tenant_id: int
    campaign_id: int
    version_id: int
    identity_id: int


def fixture_ensure(*, enrollments: int) -> Fixture:
    """One tenant, identity and campaign, and at least ``enrollments`` active enrollments."""
    tenant, _ = Tenant.objects.get_or_create(slug=TENANT_SLUG, defaults={"name": "Bench sched"})
    identity, _ = SenderIdentity.objects.get_or_create(
        tenant=tenant,
        from_email="ae@bench.example.com",
        defaults={"from_name": "Bench AE", "daily_cap": 1_000_000, "hourly_cap": 1_000_000},
    )
    campaign = Campaign.objects.filter(tenant=tenant).first()
    if campaign is None:
        campaign = Campaign.objects.create(
            tenant=tenant, name="Bench", sender_identity=identity, status="active"
        )
        plan = {"start": "intro", "steps": {"intro": {"type": "end", "outcome": "done"}}}
        version = CampaignPlanVersion.objects.create(
            tenant=tenant, campaign=campaign, version=1, plan=plan, checksum="bench" * 12
        )
        campaign.current_version = version
        campaign.save(update_fields=["current_version"])
    fixture = Fixture(tenant.pk, campaign.pk, campaign.current_version_id, identity.pk)
    have = Enrollment.objects.filter(campaign_id=campaign.pk).count()
    if have >= enrollments:
        return fixture
    missing = enrollments - have
    print(f"fixture: inserting {missing:,} leads and enrollments (kept for later runs)…")
    started = time.monotonic()
    params = {
        "tenant": tenant.pk,
        "campaign": campaign.pk,
        "version": fixture.version_id,
        "identity": identity.pk,
        "first": have + 1,
        "last": enrollments,
    }
    with bulk_load(Lead, Enrollment):
        insert_select(
            Lead,
            exprs={
                "tenant_id": "%(tenant)s",
                "email": "'lead' || g || '@sched-bench.example.com'",
                "first_name": "'Lead'",
                "company": "'Prospect Inc'",
            },
            source="FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g",
            params=params,
        )
        # The statement reads the table it fills: a nested-loop anti join would rescan the
        # growing heap once per lead (hours at 1M), so the planner is told to hash instead.
        execute("SET enable_nestloop = off")
        insert_select(
            Enrollment,
            exprs={
                "tenant_id": "%(tenant)s",
                "campaign_id": "%(campaign)s",
                "lead_id": "l.id",
                "plan_version_id": "%(version)s",
                "sender_identity_id": "%(identity)s",
                "state": "'active'",
                "current_step": "'intro'",
                "step_seq": "1",
            },
            source="FROM campaigns_lead l WHERE l.tenant_id = %(tenant)s AND NOT EXISTS"
            " (SELECT 1 FROM campaigns_enrollment e WHERE e.lead_id = l.id)",
            params=params,
        )
        execute("RESET enable_nestloop")
    print(f"fixture: done in {time.monotonic() - started:.0f} s (load {load_average()})")
    return fixture


def actions_load(
    fixture: Fixture, *, count: int, future: int = 0, layout: str = "scattered"
) -> None:
    """Replace every action with ``count`` due ones and ``future`` not yet due, all pending.

    Due times follow bulk enrollment: chunks of 10,000 enrollments spread over the last hour,
    each with the send jitter (300 s), so the claim order is close to, not equal to, the
    physical order. Future rows are due in 1 to 31 days. ``layout`` places the due rows among
    them: ``scattered`` (one every ``(count + future) / count`` rows, each on its own heap
    page and index leaves: the worst case) or ``clustered`` (one contiguous run of ids in the
    middle of the table, as rows created together by one enrollment batch or one wave of
    follow-ups are).
    """
    total = count + future
    started = time.monotonic()
    print(f"actions: loading {count:,} due ({layout}) + {future:,} future pending actions…")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM campaigns_enrollment WHERE campaign_id = %s",
            [fixture.campaign_id],
        )
        pool = min(cursor.fetchone()[0], total)
    execute(f"TRUNCATE {ACTIONS}")
    if layout == "scattered":
        due = "(g %% %(every)s = 0 AND g / %(every)s <= %(count)s)"
        ordinal = "(g / %(every)s)"
    elif layout == "clustered":
        due = "(g > %(offset)s AND g <= %(offset)s + %(count)s)"
        ordinal = "(g - %(offset)s)"
    else:
        raise BenchError(f"unknown layout {layout!r}: scattered or clustered")
    with bulk_load(ScheduledAction):
        insert_select(
            ScheduledAction,
            exprs={
                "tenant_id": "%(tenant)s",
                "enrollment_id": "e.ids[1 + g %% %(pool)s]",
                "kind": "'send'",
                "step": "'intro'",
                "step_seq": "1",
                "due_at": f"CASE WHEN {due} THEN now() - interval '65 minutes'"
                f" + ({ordinal} / 10000 * 10000)::float8 / %(count)s * interval '1 hour'"
                " + random() * interval '300 seconds'"
                " ELSE now() + interval '1 day' + random() * interval '30 days' END",
                "status": "'pending'",
                "priority": "1",
                "attempt": "0",
                "idempotency_key": "'bench:' || g || ':1:send'",
            },
            source="FROM (SELECT array_agg(id ORDER BY id) AS ids FROM ("
            "  SELECT id FROM campaigns_enrollment WHERE campaign_id = %(campaign)s"
            "  ORDER BY id LIMIT %(pool)s) p) e,"
            " generate_series(1, %(total)s::bigint) AS g",
            params={
                "tenant": fixture.tenant_id,
                "campaign": fixture.campaign_id,
                "pool": pool,
                "total": total,
                "count": count,
                "every": max(1, total // max(count, 1)),
                "offset": (total - count) // 2,
            },
        )
    print(f"actions: loaded in {time.monotonic() - started:.0f} s (load {load_average()})")


def claimed_reset() -> None:
    """Put claimed rows back to pending and vacuum, so every run starts from the same state."""
    execute(
        f"UPDATE {ACTIONS} SET status = 'pending', lease_expires_at = NULL, attempt = 0"
        " WHERE status = 'claimed'"
    )
    execute(f"VACUUM ANALYZE {ACTIONS}")


def due_count() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM {ACTIONS} WHERE status = 'pending' AND due_at <= now()"
        )
        return cursor.fetchone()[0]


# --- docs --------------------------------------------------------------------------------


def doc_part_write(key: str, text: str) -> None:
    """Replace (or add) one part of the "Scheduling" section, leaving other sections alone."""
    start, end = f"<!-- scheduling-{key}:start -->", f"<!-- scheduling-{key}:end -->"
    part = f"{start}\n{text.strip()}\n{end}"
    current = (
        DOC.read_text()
        if DOC.exists()
        else ("# Benchmarks\n\nFigures measured by the scripts in `bench/`, newest run of each.\n")
    )
    if start in current and end in current:
        before, rest = current.split(start, 1)
        updated = before + part + rest.split(end, 1)[1]
    elif SECTION_START in current and SECTION_END in current:
        before, rest = current.split(SECTION_END, 1)
        updated = before.rstrip("\n") + "\n\n" + part + "\n" + SECTION_END + rest
    else:
        section = f"{SECTION_START}\n## Scheduling\n\n{part}\n{SECTION_END}"
        updated = current.rstrip("\n") + "\n\n" + section + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    temporary = DOC.with_suffix(".md.tmp-sched")
    temporary.write_text(updated)
    temporary.replace(DOC)


def command_line(env: str = "DATABASE_URL=… REDIS_URL=redis://127.0.0.1:6379/10") -> str:
    return f"{env} python " + " ".join([f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]])


# --- the sweep ---------------------------------------------------------------------------


class CountingDispatch:
    """Wraps a dispatch callable to count publishes and the time spent in them."""

    def __init__(self, inner: Callable[[str, list[list[int]]], None]) -> None:
        self.inner = inner
        self.calls = 0
        self.seconds = 0.0

    def __call__(self, kind: str, items: list[list[int]]) -> None:
        started = time.perf_counter()
        self.inner(kind, items)
        self.seconds += time.perf_counter() - started
        self.calls += 1


def dispatch_none(kind: str, items: list[list[int]]) -> None:
    """Claim only: nothing is published."""


def dispatch_for(mode: str) -> Callable[[str, list[list[int]]], None]:
    if mode == "none":
        return dispatch_none
    from campaigns.tasks import _dispatch

    return _dispatch


@dataclass
class SweepRun:
    label: str
    claim_limit: int
    dispatch: str
    sweepers: int
    claimed: int
    seconds: float
    publishes: int = 0
    publish_seconds: float = 0.0
    sweep_calls: int = 0
    pg_cpu_seconds: float | None = None
    py_cpu_seconds: float | None = None
    load: str = field(default_factory=load_average)

    @property
    def rate(self) -> float:
        return self.claimed / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def explain_claim(limit: int) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS, WAL) of the claim statement exactly as the scheduler sends it
    (captured, not copied), rolled back so nothing stays claimed."""
    captured: list[tuple[str, object]] = []

    def capture(execute_, sql, params, many, context):
        captured.append((sql, params))
        raise _Captured

    with connection.execute_wrapper(capture), contextlib.suppress(_Captured):
        scheduler.scheduled_actions_claim(limit=limit)
    sql, params = captured[0]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, WAL) " + sql, params)
        lines = [row[0] for row in cursor.fetchall()]
        transaction.set_rollback(True)
    return lines


class _Captured(Exception):
    pass


def explain_wal(limit: int) -> tuple[int, int, int, int]:
    """(rows, WAL records, full-page images, WAL bytes) of one claim of ``limit`` rows, from
    its EXPLAIN (the cluster-wide WAL position would count other databases' writes too)."""
    lines = explain_claim(limit)
    rows = records = fpi = wal = 0
    for line in lines:
        text = line.strip()
        if text.startswith("Update on") and "rows=" in text:
            rows = int(text.rsplit("rows=", 1)[1].split()[0])
        if text.startswith("WAL:") and not wal:
            fields = dict(part.split("=") for part in text.removeprefix("WAL:").split())
            records = int(fields.get("records", 0))
            fpi = int(fields.get("fpi", 0))
            wal = int(fields.get("bytes", 0))
    return rows, records, fpi, wal


def sweep_loop(
    *,
    label: str,
    claim_limit: int,
    batch_size: int,
    dispatch: str,
    seconds: float | None,
    start_at: float | None = None,
) -> SweepRun:
    """Call the real sweep back to back, for ``seconds`` (None: until nothing is due)."""
    counting = CountingDispatch(dispatch_for(dispatch))
    cpu = BackendCpu()
    if start_at is not None:
        time.sleep(max(0.0, start_at - time.time()))
    cpu_started, py_started = cpu.seconds(), time.process_time()
    started = reported = time.perf_counter()
    deadline = None if seconds is None else started + seconds
    claimed = calls = 0
    while True:
        budget = 0.9 if deadline is None else min(0.9, max(0.0, deadline - time.perf_counter()))
        got = scheduler.scheduled_actions_sweep(
            dispatch=counting,
            batch_size=batch_size,
            claim_limit=claim_limit,
            time_budget_seconds=budget,
        )
        claimed += got
        calls += 1
        if deadline is None and time.perf_counter() - reported > 10:
            reported = time.perf_counter()
            print(
                f"    {claimed:,} claimed, {claimed / (reported - started):,.0f}/s so far"
                f" (load {load_average()})",
                flush=True,
            )
        if got == 0 or (deadline is not None and time.perf_counter() >= deadline):
            break
    elapsed = time.perf_counter() - started
    cpu_done = cpu.seconds()
    return SweepRun(
        label=label,
        claim_limit=claim_limit,
        dispatch=dispatch,
        sweepers=1,
        claimed=claimed,
        seconds=elapsed,
        publishes=counting.calls,
        publish_seconds=counting.seconds,
        sweep_calls=calls,
        pg_cpu_seconds=None if cpu_started is None else cpu_done - cpu_started,
        py_cpu_seconds=time.process_time() - py_started,
    )


def sweepers_run(*, count: int, claim_limit: int, batch_size: int, seconds: float) -> SweepRun:
    """``count`` sweeper processes started together; SKIP LOCKED splits the due rows."""
    start_at = time.time() + 3.0
    with tempfile.TemporaryDirectory(prefix="sched-bench-") as directory:
        outputs = [Path(directory) / f"sweeper{i}.json" for i in range(count)]
        processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--sweeper-process",
                    str(output),
                    "--start-at",
                    repr(start_at),
                    "--seconds",
                    str(seconds),
                    "--claim-limits",
                    str(claim_limit),
                    "--batch-size",
                    str(batch_size),
                ]
            )
            for output in outputs
        ]
        for process in processes:
            if process.wait(timeout=seconds + 120) != 0:
                raise BenchError(f"a sweeper process exited with {process.returncode}")
        runs = [json.loads(output.read_text()) for output in outputs]
    return SweepRun(
        label=f"{count} sweeper processes",
        claim_limit=claim_limit,
        dispatch="celery",
        sweepers=count,
        claimed=sum(r["claimed"] for r in runs),
        seconds=max(r["seconds"] for r in runs),
        publishes=sum(r["publishes"] for r in runs),
        publish_seconds=sum(r["publish_seconds"] for r in runs),
        sweep_calls=sum(r["sweep_calls"] for r in runs),
    )


def redis_keys(client: redis.Redis) -> set[bytes]:
    return set(client.scan_iter(count=1000))


def per_row_us(run: SweepRun, seconds: float | None) -> str:
    return "-" if seconds is None or not run.claimed else f"{seconds / run.claimed * 1e6:.1f}"


def table(runs: list[SweepRun]) -> list[str]:
    lines = [
        "| Run | claim_limit | Dispatch | Sweepers | Claimed | Seconds | Claims/s "
        "| Publishes | Time publishing | PG CPU µs/row | Python CPU µs/row | WAL bytes/row "
        "| Load (1/5/15) |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for run in runs:
        share = run.publish_seconds / run.seconds if run.seconds else 0.0
        lines.append(
            f"| {run.label} | {run.claim_limit:,} | {run.dispatch} | {run.sweepers} "
            f"| {run.claimed:,} | {run.seconds:.1f} | **{run.rate:,.0f}** | {run.publishes:,} "
            f"| {share:.0%} | {per_row_us(run, run.pg_cpu_seconds)} "
            f"| {per_row_us(run, run.py_cpu_seconds)} | {run.load} |"
        )
    return lines


def print_run(run: SweepRun) -> None:
    share = run.publish_seconds / run.seconds if run.seconds else 0.0
    print(
        f"  {run.label:<28} limit {run.claim_limit:>6,} dispatch {run.dispatch:<6}"
        f" {run.claimed:>9,} in {run.seconds:6.1f} s = {run.rate:>8,.0f}/s"
        f"  publishing {share:4.0%}  PG CPU {per_row_us(run, run.pg_cpu_seconds)} µs/row"
        f"  load {run.load}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="due pending actions")
    parser.add_argument(
        "--claim-limits",
        default="1000,2000,5000,10000",
        help="comma-separated claim_limit values for the table",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=settings.SEND_BATCH_SIZE,
        help="actions per published hint (settings.SEND_BATCH_SIZE)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each table run")
    parser.add_argument("--sweepers", type=int, default=2, help="concurrent sweepers (0 skips)")
    parser.add_argument("--no-drain", action="store_true", help="skip the full drain")
    parser.add_argument("--keep", action="store_true", help="keep the actions afterwards")
    parser.add_argument("--no-doc", action="store_true", help="print only")
    parser.add_argument("--json", action="store_true", help="end with the figures as JSON")
    parser.add_argument("--sweeper-process", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    limits = [int(x) for x in args.claim_limits.split(",") if x.strip()]
    default_limit = scheduler.scheduled_actions_sweep.__kwdefaults__["claim_limit"]

    if args.sweeper_process:
        run = sweep_loop(
            label="sweeper",
            claim_limit=limits[0],
            batch_size=args.batch_size,
            dispatch="celery",
            seconds=args.seconds,
            start_at=args.start_at,
        )
        Path(args.sweeper_process).write_text(json.dumps(run.as_dict()))
        return 0

    try:
        database_guard()
        broker = broker_client()
    except BenchError as exc:
        print(f"sweep_throughput: {exc}", file=sys.stderr)
        return 2
    if broker.llen("sending"):
        print("sweep_throughput: the broker's 'sending' queue is not empty", file=sys.stderr)
        return 2
    keys_before = redis_keys(broker)
    load_at_start = load_average()
    print(f"machine: {machine()}\nload at start: {load_at_start}")
    indexes_restore()
    fixture = fixture_ensure(enrollments=args.count)
    actions_load(fixture, count=args.count)

    runs: list[SweepRun] = []
    try:
        # The first pass over freshly loaded pages pays for hint bits and full-page WAL images
        # after the load's checkpoint; an untimed warm-up keeps that out of the first row.
        sweep_loop(
            label="warm-up",
            claim_limit=default_limit,
            batch_size=args.batch_size,
            dispatch="none",
            seconds=min(args.seconds, 5.0),
        )
        claimed_reset()
        wal_rows, wal_records, wal_fpi, wal_bytes = explain_wal(default_limit)
        print(
            f"WAL of one claim (EXPLAIN, rolled back): {wal_rows:,} rows, {wal_records:,}"
            f" records, {wal_fpi:,} full-page images, {wal_bytes:,} bytes ="
            f" {wal_bytes / max(wal_rows, 1):,.0f} bytes per claimed row"
        )
        print(f"table: {args.seconds:.0f} s per run, {args.count:,} due at the start of each")
        for limit in limits:
            for mode in ("none", "celery"):
                run = sweep_loop(
                    label="table",
                    claim_limit=limit,
                    batch_size=args.batch_size,
                    dispatch=mode,
                    seconds=args.seconds,
                )
                runs.append(run)
                print_run(run)
                claimed_reset()
                broker.delete("sending")
        if args.sweepers > 1:
            for limit in sorted({default_limit, max(limits)}):
                run = sweepers_run(
                    count=args.sweepers,
                    claim_limit=limit,
                    batch_size=args.batch_size,
                    seconds=args.seconds,
                )
                runs.append(run)
                print_run(run)
                claimed_reset()
                broker.delete("sending")
        if not args.no_drain:
            print(f"drain: one sweeper, default claim_limit {default_limit:,}, real dispatch")
            run = sweep_loop(
                label=f"drain all {args.count:,}",
                claim_limit=default_limit,
                batch_size=args.batch_size,
                dispatch="celery",
                seconds=None,
            )
            runs.append(run)
            print_run(run)
            left = due_count()
            if left:
                print(f"  warning: {left:,} actions still due after the drain")
    finally:
        created = redis_keys(broker) - keys_before
        if created:
            broker.delete(*created)
        if not args.keep:
            execute(f"TRUNCATE {ACTIONS}")

    table_rows = [r for r in runs if r.label == "table"]
    best: dict[str, SweepRun] = {}
    for run in table_rows:
        if run.dispatch not in best or run.rate > best[run.dispatch].rate:
            best[run.dispatch] = run
    medians = {
        mode: statistics.median(r.rate for r in table_rows if r.dispatch == mode) for mode in best
    }
    summary = [
        f"best claim+publish: {best['celery'].rate:,.0f}/s at claim_limit "
        f"{best['celery'].claim_limit:,} (median over limits {medians['celery']:,.0f}/s);"
        f" claim only: {best['none'].rate:,.0f}/s at {best['none'].claim_limit:,}",
    ]
    drain = next((r for r in runs if r.label.startswith("drain")), None)
    if drain:
        summary.append(f"full drain of {drain.claimed:,} with real dispatch: {drain.rate:,.0f}/s")
    for line in summary:
        print(line)
    if args.json:
        headline = drain or best["celery"]
        print(
            json.dumps(
                {
                    "claims_per_s": round(headline.rate),
                    "claimed": headline.claimed,
                    "claim_limit": headline.claim_limit,
                    "wal_bytes_per_claim": round(wal_bytes / max(wal_rows, 1)),
                    "run": headline.label,
                }
            )
        )
    if args.no_doc:
        return 0

    text = [
        "### Sweep throughput: claims + Celery publishes per second",
        "",
        f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine()}; Redis on the same machine.",
        f"- Command: `{command_line()}`",
        f"- Load average (1/5/15 min) at the start: {load_at_start}; per run in the table."
        " Other test suites shared the 2 CPUs, so wall-clock rates are lower bounds: the CPU"
        " columns say what one claimed row costs whatever the load.",
        f"- {args.count:,} due pending actions (one per enrollment) at the start of every run;"
        " table runs last "
        f"{args.seconds:.0f} s each and their claimed rows are put back to pending (then"
        " VACUUM) before the next. Hints carry "
        f"{args.batch_size} actions each (`SEND_BATCH_SIZE`), published by the real"
        " `campaigns.tasks._dispatch` to Redis (`dispatch=celery`); `none` is the claim alone.",
        f"- WAL of one {wal_rows:,}-row claim (EXPLAIN (ANALYZE, WAL), rolled back, after the"
        f" warm-up): {wal_records:,} records, {wal_fpi:,} full-page images, {wal_bytes:,} bytes:"
        f" **{wal_bytes / max(wal_rows, 1):,.0f} bytes per claimed row**.",
        "",
        *[f"- **{line[0].upper()}{line[1:]}**" for line in summary],
        "",
        *table(runs),
        "",
        "Each run calls `scheduler.scheduled_actions_sweep` back to back (its reclaim of expired"
        " leases included). PG CPU is the backend's own CPU time (from /proc), Python CPU the"
        " sweeper's; claims/s divided by their sum would be the rate on an idle core.",
    ]
    doc_part_write("sweep", "\n".join(text))
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
