"""How fast the SendGrid adapter sends, against the emulator, from several threads.

Starts the emulator (loopback, webhooks off), then sends ``--count`` messages through
``messaging.providers.provider_email_send`` (payload build, the official ``sendgrid`` client
over urllib, outcome mapping) from ``--threads`` threads in one process, bounded by
``--seconds``. Credentials are fetched once and passed in, as a batch send worker does, so no
database is needed. Prints sends/s and p50/p99 latency, then rewrites the "SendGrid adapter
throughput" section of docs/benchmarks.md (``--no-doc`` to skip).

Usage: ``python bench/adapter_throughput.py [--count 5000] [--threads 8] [--wan-latency-ms 50]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "outreach.settings.dev")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from messaging.emulator.process import EmulatorProcess  # noqa: E402
from messaging.providers import (  # noqa: E402
    Accepted,
    OutboundEmail,
    Permanent,
    Transient,
    provider_credentials_get,
    provider_email_send,
)

DOC = ROOT / "docs" / "benchmarks.md"
START = "<!-- adapter-throughput:start -->"
END = "<!-- adapter-throughput:end -->"
LOAD_AT_START = " / ".join(f"{x:.2f}" for x in os.getloadavg())
TENANT_PUBLIC_ID = uuid.UUID("00000000-0000-4000-8000-00000000be4c")


def outbound(index: int) -> OutboundEmail:
    return OutboundEmail(
        message_public_id=uuid.uuid4(),
        tenant_public_id=TENANT_PUBLIC_ID,
        from_email="ae@sender.example.com",
        from_name="Bench AE",
        reply_to="reply+bench@reply.example.com",
        to_email=f"lead{index}@prospect.example.com",
        to_name=f"Lead {index}",
        subject=f"Quick question {index}",
        text="Hi,\n\nworth a short call next week?\n\n-- Bench AE\n" * 3,
        html="<p>Hi,</p><p>worth a short call next week?</p><p>-- Bench AE</p>" * 3,
        categories=["campaign-bench", "step-intro"],
        unsubscribe_url=f"https://outreach.example.com/u/{uuid.uuid4().hex}/",
    )


def run(*, count: int, threads: int, seconds: float) -> tuple[Counter, list[float], float]:
    credentials = provider_credentials_get(tenant_id=None)
    outcomes: Counter = Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    next_index = iter(range(count))
    deadline = time.monotonic() + seconds

    def loop() -> None:
        mine: list[float] = []
        seen: Counter = Counter()
        while time.monotonic() < deadline:
            with lock:
                index = next(next_index, None)
            if index is None:
                break
            email = outbound(index)
            started = time.perf_counter()
            result = provider_email_send(tenant_id=0, email=email, credentials=credentials)
            mine.append(time.perf_counter() - started)
            if isinstance(result, Accepted):
                seen["accepted"] += 1
            elif isinstance(result, Transient):
                seen[f"transient:{result.reason}"] += 1
            elif isinstance(result, Permanent):
                seen[f"permanent:{result.reason}"] += 1
        with lock:
            latencies.extend(mine)
            outcomes.update(seen)

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return outcomes, latencies, time.perf_counter() - started


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPU(s) (nproc), {model}, Python {platform.python_version()}"


def section(rows: list[dict], command: str) -> str:
    lines = [
        START,
        "## SendGrid adapter throughput",
        "",
        f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine()}; the emulator runs on the same machine, loopback only.",
        f"- Command: `{command}`",
        f"- Load average at start (1/5/15 min): {LOAD_AT_START}; other work shared the CPUs.",
        "",
        "| Setup | Sends | Outcomes | Seconds | Sends/s | p50 ms | p99 ms |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        outcomes = ", ".join(f"{k}: {v}" for k, v in sorted(row["outcomes"].items()))
        lines.append(
            f"| {row['setup']} | {row['sends']} | {outcomes} | {row['elapsed']:.2f} | "
            f"{row['sends'] / row['elapsed']:,.0f} | {row['p50'] * 1000:.1f} | "
            f"{row['p99'] * 1000:.1f} |"
        )
    lines += [
        "",
        "One process, N threads, each send = payload build + the official `sendgrid` client "
        "(urllib, a new TCP connection per request) + outcome mapping, credentials fetched "
        "once (no database on the hot path), INFO logs off. The GIL bounds one process; a "
        "deployment scales with worker processes. Rows with added emulator latency "
        "(at most 400 sends per thread) show how threads hide a real API's round trip.",
        END,
    ]
    return "\n".join(lines)


def write_doc(text: str) -> None:
    if DOC.exists():
        current = DOC.read_text()
    else:
        current = (
            "# Benchmarks\n\nFigures measured by the scripts in `bench/`, newest run of each.\n"
        )
    if START in current and END in current:
        before, rest = current.split(START, 1)
        updated = before + text + rest.split(END, 1)[1]
    else:
        updated = current.rstrip("\n") + "\n\n" + text + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(updated)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=5_000, help="messages per run")
    parser.add_argument("--threads", type=int, default=8, help="sending threads")
    parser.add_argument("--seconds", type=float, default=60.0, help="time bound of each run")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="emulator added latency")
    parser.add_argument(
        "--wan-latency-ms",
        type=float,
        default=50.0,
        help="also run with this added latency, like a real API round trip (0 skips)",
    )
    parser.add_argument(
        "--fault-429-share", type=float, default=0.0, help="share of 429s from the emulator"
    )
    parser.add_argument("--port", type=int, default=0, help="emulator port (0 picks a free one)")
    parser.add_argument("--no-doc", action="store_true", help="print only")
    args = parser.parse_args()
    # The adapter logs one INFO line per send; measure the adapter, not the log handler.
    logging.getLogger("messaging.providers").setLevel(logging.WARNING)

    rows = []
    with EmulatorProcess(
        port=args.port,
        quiet=True,
        latency_ms=args.latency_ms,
        fault_429_share=args.fault_429_share,
    ) as emulator:
        settings.SENDGRID_API_HOST = emulator.host
        settings.SENDGRID_API_KEY = ""
        run(count=min(500, args.count), threads=args.threads, seconds=10)  # warm-up
        emulator.clear_messages()
        plans = [(threads, args.latency_ms) for threads in sorted({1, args.threads})]
        if args.wan_latency_ms:
            plans += [(1, args.wan_latency_ms), (args.threads, args.wan_latency_ms)]
        for threads, latency_ms in plans:
            emulator.configure(latency_ms=latency_ms)
            # A waiting thread sends ~1/latency per second: keep added-latency runs short.
            count = args.count if latency_ms == args.latency_ms else min(args.count, 400 * threads)
            outcomes, latencies, elapsed = run(count=count, threads=threads, seconds=args.seconds)
            row = {
                "setup": f"{threads} thread(s), emulator latency {latency_ms:g} ms"
                + (f", {args.fault_429_share:.0%} 429s" if args.fault_429_share else ""),
                "sends": len(latencies),
                "outcomes": outcomes,
                "elapsed": elapsed,
                "p50": percentile(latencies, 0.50),
                "p99": percentile(latencies, 0.99),
                "mean": statistics.fmean(latencies) if latencies else 0.0,
            }
            rows.append(row)
            print(
                f"{row['setup']}: {row['sends']} sends in {elapsed:.2f}s = "
                f"{row['sends'] / elapsed:,.0f} sends/s; p50 {row['p50'] * 1000:.1f} ms, "
                f"p99 {row['p99'] * 1000:.1f} ms; {dict(outcomes)}"
            )
        held = len(emulator.messages(limit=str(sum(r["sends"] for r in rows) + 10)))
        print(f"emulator holds {held} accepted message(s) from the measured runs")

    if not args.no_doc:
        command = "python bench/adapter_throughput.py " + " ".join(sys.argv[1:])
        write_doc(section(rows, command.strip()))
        print(f"updated {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
