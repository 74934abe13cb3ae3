"""What the operations layer costs: the send path's control check and metrics, /metrics and
/readyz on a large backlog.

1. The per-action check the send path added (``controls.sending_stop_reason``: the cached
   kill switches and the tenant row already in hand) and the once-per-batch counter update
   (``metrics.metrics_add``, one pipelined Redis round trip), in µs per call.
2. ``GET /metrics`` and ``GET /readyz`` through the Django test client (no HTTP server), p50
   and max over ``--scrapes`` scrapes, with ``--actions`` pending scheduled actions
   (``--due`` of them due) and ``--receipts`` unprocessed webhook receipts in the tables.

Uses the fixture of ``sweep_throughput.py`` (tenant ``bench-scheduling``; leads and
enrollments are kept for later runs, the actions are replaced). Needs a database of its own
(its name must contain "bench") and a Redis db other than 0::

    DATABASE_URL=postgres://root@127.0.0.1:5432/outreach_bench_ops \\
    REDIS_URL=redis://127.0.0.1:6379/10 python bench/operations_overhead.py

Rewrites the "Operations overhead" section of docs/benchmarks.md (``--no-doc`` to skip).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time

from django.db import connection
from django.test import Client
from sweep_throughput import (
    DOC,
    BenchError,
    actions_load,
    broker_client,
    command_line,
    database_guard,
    execute,
    fixture_ensure,
    load_average,
    machine,
)

from messaging.models import WebhookReceipt
from outreach import metrics
from outreach.tenancy import controls
from outreach.tenancy.models import Tenant

SECTION_START = "<!-- operations-overhead:start -->"
SECTION_END = "<!-- operations-overhead:end -->"


def per_call_us(function, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - started) / calls * 1e6


def receipts_load(tenant_id: int, count: int) -> None:
    execute(f"DELETE FROM {WebhookReceipt._meta.db_table} WHERE tenant_id = %s", [tenant_id])
    execute(
        f"""
        INSERT INTO {WebhookReceipt._meta.db_table}
            (tenant_id, kind, body, headers, content_type, received_at, attempts, event_count,
             last_error)
        SELECT %s, 'events', '\\x5b5d'::bytea, '{{}}'::jsonb, 'application/json',
               now() - g * interval '1 second', 0, 0, ''
        FROM generate_series(1, %s) AS g
        """,
        [tenant_id, count],
    )
    execute(f"ANALYZE {WebhookReceipt._meta.db_table}")


def scrape_times(client: Client, path: str, scrapes: int) -> tuple[float, float, int]:
    times = []
    status = 0
    for _ in range(scrapes):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        status = response.status_code
    return statistics.median(times), max(times), status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--actions", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=100_000)
    parser.add_argument("--receipts", type=int, default=10_000)
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    database_guard()
    broker_client()
    started_load = load_average()
    fixture = fixture_ensure(enrollments=min(args.actions, 100_000))
    actions_load(fixture, count=args.due, future=args.actions - args.due, layout="scattered")
    receipts_load(fixture.tenant_id, args.receipts)
    tenant = Tenant.objects.get(pk=fixture.tenant_id)

    controls.kill_switches_cache_clear()
    check_us = per_call_us(lambda: controls.sending_stop_reason(tenant=tenant), args.calls)
    batch = [("sends", {"outcome": o}, 1) for o in ("sent", "skipped", "rescheduled", "failed")]
    metrics_us = per_call_us(lambda: metrics.metrics_add(batch), 2000)
    metrics.beat_sweep_record(claimed=0)

    client = Client()
    scrape = scrape_times(client, "/metrics", args.scrapes)
    ready = scrape_times(client, "/readyz", args.scrapes)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM campaigns_scheduledaction WHERE status = 'pending'")
        pending = cursor.fetchone()[0]

    rows = [
        "| Measure | Value |",
        "| --- | ---: |",
        f"| send path: control check per action (`sending_stop_reason`, cached) | {check_us:.2f} µs |",
        f"| send path: counters per batch (`metrics_add`, 4 counters, one Redis round trip) | {metrics_us:.0f} µs |",
        f"| `GET /metrics` p50 / max over {args.scrapes} scrapes | {scrape[0]:.0f} / {scrape[1]:.0f} ms (HTTP {scrape[2]}) |",
        f"| `GET /readyz` p50 / max | {ready[0]:.1f} / {ready[1]:.1f} ms (HTTP {ready[2]}) |",
    ]
    text = "\n".join(
        [
            SECTION_START,
            "## Operations overhead",
            "",
            f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
            f"- Machine: {machine()}",
            f"- Command: `{command_line()}`",
            f"- Load average at start (1/5/15 min): {started_load}; other work may share the CPUs.",
            f"- Tables: {pending:,} pending scheduled actions ({args.due:,} due), "
            f"{args.receipts:,} unprocessed webhook receipts.",
            "",
            *rows,
            "",
            "The send path pays the control check once per action (no query: the kill switches "
            "come from a per-process cache refreshed every `CONTROLS_CACHE_SECONDS`, the tenant "
            "row from the batch's own join) and the counters once per batch of "
            "`SEND_BATCH_SIZE` sends. The gauges of `/metrics` are computed per scrape from "
            "partial indexes (`action_due_pending_idx`, `receipt_unprocessed_idx`, "
            "`message_sending_idx`, `message_needs_review_idx`); a 15 s scrape interval makes "
            "their cost negligible.",
            SECTION_END,
        ]
    )
    print(text)
    if not args.no_doc:
        current = DOC.read_text()
        if SECTION_START in current:
            before, rest = current.split(SECTION_START, 1)
            current = before + text + rest.split(SECTION_END, 1)[1]
        else:
            current = current.rstrip("\n") + "\n\n" + text + "\n"
        DOC.write_text(current)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"operations_overhead: {exc}", file=sys.stderr)
        sys.exit(1)
