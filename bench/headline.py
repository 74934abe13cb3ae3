"""The three headline figures in one run, beside the peer built the usual way (``make bench``).

Runs, one after the other, each in its own process, database and Redis db:

1. ``send_throughput.py`` burst: sends per second, due action to the emulator's 202 and the
   ledger row ``accepted`` (worker, sweeper, Postgres, Redis and emulator on this machine);
2. ``send_throughput.py`` paced at ``--paced-rate``: p99 lag from due time to sent, with the
   sweep every second as beat runs it;
3. ``sweep_throughput.py``: claims + dispatched hints per second draining ``--due`` actions;
4. ``webhook_ingest.py``: signed Event Webhook events per second, POST to normalised
   (events stored, message statuses, suppressions, transitions), POST p99 under that load,
   and the CPU of a re-delivered batch against a new one;
5. ``peer_send.py``: the same work done one Celery task per message and per event.

Prints one table (figure, goal, measured, ratio to the peer) and, last, one line of JSON;
rewrites the "Headline" section of docs/benchmarks.md unless ``--no-doc``. About five
minutes here (the first run also builds the 1M-action fixture of the sweep benchmark, kept
for later runs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
START = "<!-- headline:start -->"
END = "<!-- headline:end -->"
PG = "postgres://root@127.0.0.1:5432/"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=20_000, help="sends in the burst")
    parser.add_argument("--paced-rate", type=float, default=800.0, help="sends/s offered")
    parser.add_argument("--paced-seconds", type=float, default=20.0)
    parser.add_argument("--due", type=int, default=1_000_000, help="due actions to drain")
    parser.add_argument("--event-batches", type=int, default=100, help="1,000-event POSTs")
    parser.add_argument("--peer-messages", type=int, default=3000)
    parser.add_argument("--peer-events", type=int, default=3000)
    parser.add_argument("--no-doc", action="store_true", help="print only")
    return parser.parse_args()


def run(name: str, command: list[str], env: dict[str, str]) -> dict:
    """Run one benchmark; its last line of output is its JSON."""
    print(f"== {name}: {' '.join(command)}", flush=True)
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, *command],
        cwd=ROOT,
        env={**os.environ, "LOG_LEVEL": "WARNING", **env},
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    for line in lines[:-1]:
        if " INFO " not in line:
            print(f"   {line}")
    if completed.returncode != 0 or not lines or not lines[-1].startswith("{"):
        print(completed.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"headline: {name} failed (exit {completed.returncode})")
    print(f"   ({time.perf_counter() - started:.0f} s)", flush=True)
    return json.loads(lines[-1])


def migrate(database: str) -> None:
    env = {**os.environ, "DATABASE_URL": PG + database}
    subprocess.run([sys.executable, "bin/ensure-database"], cwd=ROOT, env=env, check=True)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def ratio(value: float, peer: float | None) -> str:
    return f"{value / peer:.1f}x" if peer else "-"


def main() -> int:
    args = parse_args()
    load_at_start = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    started = time.perf_counter()
    send_env = {
        "DATABASE_URL": PG + "outreach_bench_send",
        "REDIS_URL": "redis://127.0.0.1:6379/12",
    }
    sched_env = {
        "DATABASE_URL": PG + "outreach_bench_sched",
        "REDIS_URL": "redis://127.0.0.1:6379/10",
    }
    migrate("outreach_bench_send")
    migrate("outreach_bench_sched")
    # One worker of two processes, SEND_THREADS and SEND_BATCH_SIZE at their defaults.
    send_layout = ["--concurrency", "2", "--threads", "8", "--batch-size", "100", "--json"]
    burst = run(
        "sends (burst)",
        ["bench/send_throughput.py", "--leads", str(args.leads), "--warmup", "1000", *send_layout],
        send_env,
    )
    paced = run(
        "sends (paced)",
        [
            "bench/send_throughput.py",
            "--mode",
            "paced",
            "--rate",
            f"{args.paced_rate:g}",
            "--leads",
            str(int(args.paced_rate * args.paced_seconds)),
            "--warmup",
            "1000",
            "--sweep-interval",
            "1.0",
            *send_layout,
        ],
        send_env,
    )
    claims = run(
        "claims",
        [
            "bench/sweep_throughput.py",
            "--count",
            str(args.due),
            "--claim-limits",
            "5000",
            "--seconds",
            "5",
            "--sweepers",
            "0",
            "--batch-size",
            "100",
            "--json",
            "--no-doc",
        ],
        sched_env,
    )
    events = run(
        "events",
        [
            "bench/webhook_ingest.py",
            "--batches",
            str(args.event_batches),
            "--redis",
            "redis://127.0.0.1:6379/11",
            "--json",
            "--no-doc",
        ],
        {},
    )
    peer = run(
        "peer",
        [
            "bench/peer_send.py",
            "--messages",
            str(args.peer_messages),
            "--events",
            str(args.peer_events),
            "--json",
        ],
        send_env,
    )
    rows = [
        (
            "sends/s, due → 202 → ledger `accepted`",
            ">= 1,000",
            f"{burst['sends_per_second_steady']:,.0f}",
            ratio(burst["sends_per_second_steady"], peer["peer_sends_per_s"]),
        ),
        (
            f"p99 lag due → sent at {args.paced_rate:,.0f}/s offered (sweep every 1 s)",
            "< 2 s",
            f"{paced['lag_p99_s']:.2f} s ({paced['sends_per_second_steady']:,.0f}/s sent)",
            "-",
        ),
        (
            f"claims + dispatched/s, {args.due:,} due",
            ">= 20,000",
            f"{claims['claims_per_s']:,} ({claims['wal_bytes_per_claim']:,} B WAL/claim)",
            ratio(claims["claims_per_s"], peer["peer_dispatch_per_s"]),
        ),
        (
            "webhook events/s, POST → normalised",
            ">= 20,000",
            f"{events['events_per_s']:,}",
            ratio(events["events_per_s"], peer["peer_events_per_s"]),
        ),
        ("1,000-event POST p99 under that load", "< 250 ms", f"{events['post_p99_ms']} ms", "-"),
        (
            "re-delivered batch CPU / new batch CPU",
            "<= 0.25",
            f"{events['redelivery_cost_ratio']:.2f}",
            "-",
        ),
    ]
    table = [
        "| Figure | Goal | Measured | vs peer |",
        "| --- | --- | --- | --- |",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
    ]
    peer_line = (
        f"Peer ({peer['layout']}): {peer['peer_sends_per_s']:,.0f} sends/s, "
        f"{peer['peer_dispatch_per_s']:,} task publishes/s (its dispatch), "
        f"{peer['peer_events_per_s']:,} events/s."
    )
    print()
    print("\n".join(table))
    print(peer_line)
    figures = {
        "sends_per_s": round(burst["sends_per_second_steady"]),
        "claims_per_s": claims["claims_per_s"],
        "events_per_s": events["events_per_s"],
        "peer_sends_per_s": round(peer["peer_sends_per_s"]),
    }
    if not args.no_doc:
        section = "\n".join(
            [
                START,
                "## Headline (`make bench`)",
                "",
                f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; the run took "
                f"{time.perf_counter() - started:.0f} s.",
                f"- Machine: {os.cpu_count()} CPUs, {cpu_model()}, Python"
                f" {platform.python_version()}; PostgreSQL, Redis, the workers, the"
                " sweeper, gunicorn and the emulator all on this machine, loopback only.",
                f"- Command: `python bench/headline.py` (`make bench`). Load average at start:"
                f" {load_at_start}.",
                "",
                *table,
                "",
                peer_line,
                "",
                "Exactly once held in both send runs (emulator accepted = ledger rows"
                f" `accepted`: {burst['exactly_once']} and {paced['exactly_once']}).",
                "Each figure's own section below has the details of its latest full run.",
                END,
            ]
        )
        text = DOC.read_text()
        if START in text:
            head, rest = text.split(START, 1)
            text = head + section + rest.split(END, 1)[1]
        else:  # first section, after the page's introduction
            head, rest = text.split("<!-- ", 1)
            text = head + section + "\n\n<!-- " + rest
        DOC.write_text(text)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
