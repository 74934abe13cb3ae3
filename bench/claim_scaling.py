"""Does claiming get slower as the actions table grows? 100k rows versus 10M rows.

For each layout (``--layouts``) and table size (``--sizes``), the actions table holds that
many pending rows: ``--due`` of them due now and the rest due in 1 to 31 days (rows that are
done are deleted by design, so the table is live work only). The due rows are either
*scattered* (one every N rows: worst case) or *clustered* (one contiguous run of ids, as rows
created together are). Indexes are rebuilt after the load and the table is VACUUM ANALYZEd.
Then ``--rounds`` times: claim every due row with ``scheduler.scheduled_actions_claim`` in
batches of the default ``claim_limit``, timing each call, and put the claimed rows back to
pending (then VACUUM, untimed).

Prints the median and p95 of one claim call per size and their ratio (goal: within 20%), plus
an ``EXPLAIN (ANALYZE, BUFFERS, WAL)`` of one claim per size, then rewrites its part of the
"Scheduling" section of docs/benchmarks.md (``--no-doc`` to skip). Uses the fixture of
``sweep_throughput.py`` and, like it, needs a database whose name contains "bench"::

    DATABASE_URL=postgres://root@127.0.0.1:5432/outreach_bench_sched \\
    python bench/claim_scaling.py

About 10 minutes and 3 GB of disk at the default sizes (two 10M loads).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field

from django.db import connection
from sweep_throughput import (
    ACTIONS,
    DOC,
    ROOT,
    BackendCpu,
    BenchError,
    actions_load,
    claimed_reset,
    command_line,
    database_guard,
    doc_part_write,
    execute,
    explain_claim,
    fixture_ensure,
    indexes_restore,
    load_average,
    machine,
)

from campaigns.services import scheduler


@dataclass
class SizeResult:
    layout: str
    rows: int
    due: int
    calls: list[float] = field(default_factory=list)
    pg_cpu_seconds: float = 0.0
    table_size: str = ""
    load_seconds: float = 0.0
    loads: list[str] = field(default_factory=list)
    explain: list[str] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.calls) * 1000

    @property
    def p95_ms(self) -> float:
        ordered = sorted(self.calls)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000

    @property
    def best_ms(self) -> float:
        return min(self.calls) * 1000

    def explain_line(self, prefix: str) -> str:
        """The top node's ``Buffers:`` or ``WAL:`` line of the EXPLAIN, for the table."""
        for line in self.explain[1:4]:
            if line.strip().startswith(prefix):
                return line.strip().removeprefix(prefix).strip()
        return "-"


def percent(a: float, b: float) -> str:
    return f"{(a / b - 1) * 100:+.0f}%" if b else "n/a"


def measure(*, layout: str, rows: int, due: int, rounds: int, limit: int, fixture) -> SizeResult:
    result = SizeResult(layout=layout, rows=rows, due=due)
    started = time.monotonic()
    actions_load(fixture, count=due, future=rows - due, layout=layout)
    result.load_seconds = time.monotonic() - started
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size(%s))", [ACTIONS])
        result.table_size = cursor.fetchone()[0]
    print(f"  table {rows:,} rows: {result.table_size} with indexes, disk {disk()}")
    cpu = BackendCpu()
    for round_number in range(1, rounds + 1):
        # One claim outside the timing warms the plan cache, as in a long-lived sweeper.
        warm = scheduler.scheduled_actions_claim(limit=1)
        claimed = len(warm)
        round_calls = []
        cpu_started = cpu.seconds()
        while True:
            call_started = time.perf_counter()
            got = len(scheduler.scheduled_actions_claim(limit=limit))
            elapsed = time.perf_counter() - call_started
            claimed += got
            if got < limit:
                break
            # Only full batches count: the last, partial one would flatter the figures.
            round_calls.append(elapsed)
        cpu_done = cpu.seconds()
        if cpu_started is not None and cpu_done is not None:
            result.pg_cpu_seconds += cpu_done - cpu_started
        result.calls += round_calls
        result.loads.append(load_average())
        print(
            f"  round {round_number}: claimed {claimed:,} in {len(round_calls)} calls,"
            f" median {statistics.median(round_calls) * 1000:.1f} ms,"
            f" max {max(round_calls) * 1000:.1f} ms (load {load_average()})",
            flush=True,
        )
        claimed_reset()
    result.explain = explain_claim(limit)
    return result


def disk() -> str:
    usage = shutil.disk_usage(ROOT)
    return f"{usage.free / 2**30:.0f} GiB free"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="100000,10000000", help="comma-separated table sizes (rows)"
    )
    parser.add_argument("--due", type=int, default=50_000, help="due rows in every table")
    parser.add_argument("--rounds", type=int, default=2, help="claim-everything rounds per size")
    parser.add_argument(
        "--enrollments", type=int, default=100_000, help="FK targets to spread over"
    )
    parser.add_argument(
        "--layouts",
        default="scattered,clustered",
        help="where the due rows sit: scattered (worst case), clustered, or both",
    )
    parser.add_argument("--no-doc", action="store_true", help="print only")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    layouts = [x.strip() for x in args.layouts.split(",") if x.strip()]
    limit = scheduler.scheduled_actions_sweep.__kwdefaults__["claim_limit"]
    try:
        database_guard()
        if any(size < args.due for size in sizes):
            raise BenchError("every size must hold at least --due rows")
        if not set(layouts) <= {"scattered", "clustered"}:
            raise BenchError("--layouts takes scattered and/or clustered")
    except BenchError as exc:
        print(f"claim_scaling: {exc}", file=sys.stderr)
        return 2

    load_at_start = load_average()
    print(f"machine: {machine()}\nload at start: {load_at_start}, disk {disk()}")
    indexes_restore()
    fixture = fixture_ensure(enrollments=args.enrollments)
    results: list[SizeResult] = []
    try:
        for layout in layouts:
            for size in sizes:
                print(f"{layout}, {size:,} rows: {args.due:,} due, claim_limit {limit:,}")
                results.append(
                    measure(
                        layout=layout,
                        rows=size,
                        due=args.due,
                        rounds=args.rounds,
                        limit=limit,
                        fixture=fixture,
                    )
                )
    finally:
        execute(f"TRUNCATE {ACTIONS}")

    lines = [
        "| Due rows | Rows in the table | Size with indexes | Claim calls | Median ms | p95 ms "
        "| Best ms | PG CPU ms/call | vs 1st size (median / p95) | One claim's buffers "
        "(EXPLAIN) | Its WAL | Load (1/5/15) per round |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- |",
    ]
    verdicts = []
    for layout in layouts:
        mine = [r for r in results if r.layout == layout]
        base = mine[0]
        for result in mine:
            lines.append(
                f"| {layout} | {result.rows:,} | {result.table_size} | {len(result.calls)} "
                f"| {result.median_ms:.1f} | {result.p95_ms:.1f} | {result.best_ms:.1f} "
                f"| {result.pg_cpu_seconds / len(result.calls) * 1000:.1f} "
                f"| {percent(result.median_ms, base.median_ms)} / "
                f"{percent(result.p95_ms, base.p95_ms)} "
                f"| {result.explain_line('Buffers:')} | {result.explain_line('WAL:')} "
                f"| {'; '.join(result.loads)} |"
            )
        largest = mine[-1]
        verdicts.append(
            f"{layout} due rows, {largest.rows:,} rows versus {base.rows:,}: median claim "
            f"{percent(largest.median_ms, base.median_ms)}, p95 "
            f"{percent(largest.p95_ms, base.p95_ms)} (goal: within 20%)"
        )
    for line in lines + verdicts:
        print(line)
    for result in results:
        print(f"EXPLAIN of one claim, {result.layout}, {result.rows:,} rows:")
        for line in result.explain:
            print("   ", line)
    if args.no_doc:
        return 0

    text = [
        "### Claim time versus table size",
        "",
        f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine()}.",
        f"- Command: `{command_line('DATABASE_URL=…')}`",
        f"- Load average (1/5/15 min) at the start: {load_at_start}; per round in the table."
        " Other test suites shared the 2 CPUs.",
        f"- Every table holds {args.due:,} due pending actions; all other rows are pending"
        " actions due in 1 to 31 days (done rows are deleted by design). *Scattered*: one due"
        " row every N rows, each on its own heap page and index leaves (worst case);"
        " *clustered*: the due rows are one contiguous run of ids, as rows created together"
        " (an enrollment batch, a wave of follow-ups) are. Each claim call takes up to"
        f" {limit:,} rows (the default `claim_limit`); only full calls are timed; every round"
        " claims all due rows, then they are put back to pending and the table vacuumed.",
        *[f"- **{verdict[0].upper()}{verdict[1:]}.**" for verdict in verdicts],
        "",
        *lines,
        "",
        "The claim walks the partial index `action_due_pending_idx` (`due_at WHERE status ="
        " 'pending'`) from its oldest entry, so rows due later are never read. What grows with"
        " the table is the update's side: a claim is a non-HOT update (it changes `status`), so"
        " every claimed row gets a new entry in each of the table's 8 indexes. In a small table"
        " those leaves are few and stay hot; in a big one each claimed row dirties its own leaf"
        " pages, which miss shared_buffers and, first touched after a checkpoint, write"
        " full-page images to the WAL (the EXPLAIN columns).",
    ]
    doc_part_write("claim", "\n".join(text))
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
