"""Signed Event Webhook batches through the real app: ingest, normalise, re-deliver.

Runs against its own database (``--db``, created and migrated on first use) and Redis db
(``--redis``), with gunicorn on a loopback port and real Celery workers on the ``events``
queue. Each batch is ``--batch-size`` realistic SendGrid events (processed, delivered, open,
click, some bounces and blocked ones, a few orphans) for a pool of seeded messages, signed
with a real P-256 key exactly as SendGrid signs them.

Phases (each bounded by ``--timeout``):

A. ingest only: workers paused (SIGSTOP); ``--latency-posts`` batches POSTed one at a time
   (the response time of a lone 1,000-event POST), then ``--batches`` new batches from
   ``--clients`` keep-alive connections: accepted events/s and POST latency p50/p99;
B. normalise: resume the workers and drain that backlog: normalised events/s;
C. re-delivery: pause the workers, POST the same batches again, resume and drain: nothing
   must be inserted; its CPU against B is the cost of an already-seen batch;
D. end to end: workers running while new batches are posted: events/s from the first POST
   to the last receipt processed, and POST latency under that load.

Prints the figures and rewrites the "Event Webhook ingestion" section of
docs/benchmarks.md (``--no-doc`` to skip).

Usage: ``python bench/webhook_ingest.py [--batches 40] [--batch-size 1000] [--clients 4]``
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import http.client
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
START = "<!-- webhook-ingest:start -->"
END = "<!-- webhook-ingest:end -->"
LOAD_AT_START = " / ".join(f"{x:.2f}" for x in os.getloadavg())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=40, help="batches per phase")
    parser.add_argument("--batch-size", type=int, default=1000, help="events per batch")
    parser.add_argument("--clients", type=int, default=4, help="concurrent POST connections")
    parser.add_argument("--messages", type=int, default=20_000, help="seeded messages")
    parser.add_argument(
        "--latency-posts", type=int, default=20, help="extra batches POSTed one at a time"
    )
    parser.add_argument(
        "--profile-batches", type=int, default=5, help="batches profiled in-process (phase E)"
    )
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--celery-concurrency", type=int, default=2, help="normalise processes")
    parser.add_argument("--port", type=int, default=18310, help="gunicorn port (loopback)")
    parser.add_argument("--db", default="outreach_bench_events", help="database to use")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/6", help="Redis URL")
    parser.add_argument("--timeout", type=float, default=300.0, help="bound of each phase, s")
    parser.add_argument("--no-doc", action="store_true", help="print only")
    parser.add_argument("--json", action="store_true", help="end with the figures as JSON")
    return parser.parse_args()


ARGS = parse_args()
os.environ["DATABASE_URL"] = f"postgres://root@127.0.0.1:5432/{ARGS.db}"
os.environ["REDIS_URL"] = ARGS.redis
os.environ["DJANGO_SETTINGS_MODULE"] = "outreach.settings.dev"
os.environ["DJANGO_DEBUG"] = "false"  # DEBUG keeps every query in memory
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

from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from django.db import connection  # noqa: E402

from messaging.models import Message, SenderIdentity, WebhookReceipt  # noqa: E402
from outreach.tenancy.models import Tenant  # noqa: E402


def seed() -> tuple[Tenant, ec.EllipticCurvePrivateKey, list[tuple[str, str, str]]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE messaging_messageevent, messaging_messageeventkey, messaging_webhookreceipt,"
            " suppression_suppression, tenancy_tenantalert, messaging_message CASCADE"
        )
    private = ec.generate_private_key(ec.SECP256R1())
    public_b64 = base64.b64encode(
        private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    tenant, _ = Tenant.objects.update_or_create(
        slug="bench-webhooks",
        defaults={"name": "Bench webhooks", "webhook_public_key": public_b64},
    )
    identity, _ = SenderIdentity.objects.get_or_create(
        tenant=tenant, from_email="ae@bench.example.com", defaults={"from_name": "Bench AE"}
    )
    sent = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    messages = [
        Message(
            tenant=tenant,
            sender_identity=identity,
            to_email=f"lead{n}@prospect.example.com",
            subject="Quick question",
            status=Message.Status.ACCEPTED,
            status_rank=10,
            provider_message_id=uuid.uuid4().hex[:22],
            sent_at=sent,
        )
        for n in range(ARGS.messages)
    ]
    Message.objects.bulk_create(messages, batch_size=5000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # fresh statistics, as autovacuum would have after a load
    pool = [(str(m.public_id), m.provider_message_id, m.to_email) for m in messages]
    return tenant, private, pool


_TYPES = ["processed"] * 25 + ["delivered"] * 25 + ["open"] * 30 + ["click"] * 12
_TYPES += ["deferred"] * 4 + ["bounce"] * 1 + ["blocked"] * 1 + ["orphan"] * 2


def event(pool: list[tuple[str, str, str]], n: int) -> dict:
    public_id, provider_id, email = random.choice(pool)
    kind = random.choice(_TYPES)
    now = int(time.time()) - random.randint(60, 3000)
    body: dict = {
        "email": email,
        "timestamp": now,
        "event": kind,
        "sg_event_id": base64.urlsafe_b64encode(uuid.uuid4().bytes + n.to_bytes(4)).decode(),
        "sg_message_id": f"{provider_id}.filterdrecv-5645d9c87f-6r4zq-1-{n:08X}-3.0",
        "smtp-id": f"<{provider_id}@ismtpd0001p1iad1.sendgrid.net>",
        "category": ["outreach", "step-1"],
        "outreach_message_id": public_id,
        "outreach_tenant": "bench",
    }
    if kind == "orphan":
        body.update(event="delivered", outreach_message_id=str(uuid.uuid4()))
        body["sg_message_id"] = f"unknown{n}.filter.0"
    elif kind in ("bounce", "blocked"):
        body.update(
            event="bounce",
            type="blocked" if kind == "blocked" else "bounce",
            status="5.1.1" if kind == "bounce" else "4.7.1",
            reason="550 5.1.1 user unknown" if kind == "bounce" else "421 try again later",
            bounce_classification="Invalid Address" if kind == "bounce" else "Reputation",
        )
    elif kind == "open":
        body.update(useragent="Mozilla/5.0 (iPhone)", ip="203.0.113.5")
        body["sg_machine_open"] = random.random() < 0.3
    elif kind == "click":
        body.update(url="https://vendor.example.com/pricing", useragent="Mozilla/5.0 (Macintosh)")
    elif kind == "delivered":
        body.update(response="250 OK", ip="149.72.1.1", tls=1)
    elif kind == "deferred":
        body.update(response="450 mailbox busy", attempt="1")
    return body


def batches(pool, count: int, size: int) -> list[bytes]:
    counter = iter(range(10**9))
    return [
        json.dumps([event(pool, next(counter)) for _ in range(size)]).encode() + b"\r\n"
        for _ in range(count)
    ]


def sign(private: ec.EllipticCurvePrivateKey, body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    signature = private.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": ts,
        "Content-Type": "application/json",
        "User-Agent": "SendGrid Event API",
    }


def post_all(
    tenant: Tenant, private, bodies: list[bytes], clients: int | None = None
) -> tuple[list[float], float]:
    """POST every body from ``clients`` keep-alive connections; latencies and wall time."""
    path = f"/webhooks/sendgrid/events/{tenant.public_id}/"
    work = list(enumerate(bodies))
    lock = threading.Lock()
    latencies: list[float] = []
    failures: list[str] = []
    # Signing is the sender's cost (SendGrid's), not ours: sign before the clock starts.
    signed = [(body, sign(private, body)) for body in bodies]

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", ARGS.port, timeout=60)
        while True:
            with lock:
                if not work:
                    break
                index, _ = work.pop()
            body, headers = signed[index]
            started = time.perf_counter()
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if response.status != 204:
                    failures.append(f"{response.status}")
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients or ARGS.clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} POSTs failed: {sorted(set(failures))}")
    return latencies, wall


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))] if ordered else 0.0


def pending() -> int:
    return WebhookReceipt.objects.filter(processed_at__isnull=True).count()


def wait_drained(deadline_s: float) -> float:
    started = time.perf_counter()
    while pending():
        if time.perf_counter() - started > deadline_s:
            raise SystemExit(f"phase timed out with {pending()} receipts unprocessed")
        time.sleep(0.05)
    return time.perf_counter() - started


def processed_span(since: dt.datetime) -> tuple[float, int]:
    """Normalisation wall time of the receipts processed after ``since``: first to last
    completion, scaled by n/(n-1) to count the first receipt's own processing."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT min(processed_at), max(processed_at), count(*) FROM messaging_webhookreceipt"
            " WHERE processed_at > %s",
            [since],
        )
        first, last, count = cursor.fetchone()
    if count < 2:
        return 0.0, count
    return (last - first).total_seconds() * count / (count - 1), count


def event_count() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM messaging_messageevent")
        return cursor.fetchone()[0]


def free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


class Processes:
    def __init__(self) -> None:
        self.web: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.logs = Path("/tmp/outreach-bench-webhook-ingest")
        self.logs.mkdir(exist_ok=True)

    def web_start(self) -> None:
        if not free(ARGS.port):
            raise SystemExit(f"port {ARGS.port} is busy; pass --port")
        self.web = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "outreach.wsgi:application",
                "--bind",
                f"127.0.0.1:{ARGS.port}",
                "--workers",
                str(ARGS.web_workers),
                "--threads",
                "2",
                "--keep-alive",
                "30",
            ],
            cwd=ROOT,
            stdout=open(self.logs / "webhook-web.log", "w"),  # noqa: SIM115 (the child writes it)
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", ARGS.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(
            "gunicorn did not come up; see /tmp/outreach-bench-webhook-ingest/webhook-web.log"
        )

    def worker_start(self) -> None:
        self.worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "outreach",
                "worker",
                "--queues",
                "events",
                "--concurrency",
                str(ARGS.celery_concurrency),
                "--loglevel",
                "WARNING",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"bench-events-{uuid.uuid4().hex[:6]}@%h",
            ],
            cwd=ROOT,
            stdout=open(self.logs / "webhook-worker.log", "a"),  # noqa: SIM115 (the child writes it)
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @staticmethod
    def _stop(process: subprocess.Popen | None) -> None:
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def worker_pause(self) -> None:
        for pid in _tree(self.worker.pid):
            os.kill(pid, signal.SIGSTOP)

    def worker_resume(self) -> None:
        for pid in _tree(self.worker.pid):
            os.kill(pid, signal.SIGCONT)

    def worker_stop(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker_resume()
        self._stop(self.worker)
        self.worker = None

    def stop(self) -> None:
        self.worker_stop()
        self._stop(self.web)


def queue_purge() -> None:
    import redis

    redis.Redis.from_url(ARGS.redis).delete("events")


def now_db() -> dt.datetime:
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def _tree(root: int) -> list[int]:
    """A process and all its descendants (gunicorn and Celery fork their workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _cpu(pids: list[int]) -> dict[int, float]:
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return out


def _backends() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
        return [row[0] for row in cursor.fetchall()]


class CpuMeter:
    """CPU seconds used by our processes (web, workers, their Postgres backends) over a
    phase: on a shared machine, wall time says little, CPU per event says what it costs."""

    def __init__(self, procs: Processes) -> None:
        self.procs = procs

    def _sample(self) -> dict[str, dict[int, float]]:
        return {
            "web": _cpu(_tree(self.procs.web.pid)),
            "workers": _cpu(_tree(self.procs.worker.pid)),
            "postgres": _cpu(_backends()),
        }

    def __enter__(self) -> CpuMeter:
        self.start = self._sample()
        return self

    def __exit__(self, *exc) -> None:
        end = self._sample()
        self.used = {
            part: sum(cpu - self.start[part].get(pid, 0.0) for pid, cpu in end[part].items())
            for part in end
        }


def main() -> int:
    queue_purge()
    tenant, private, pool = seed()
    size, count = ARGS.batch_size, ARGS.batches
    set_one = batches(pool, count, size)
    set_two = batches(pool, count, size)
    total = size * count
    mb = sum(len(b) for b in set_one) / count / 1e6
    print(f"{count} batches of {size} events ({mb:.2f} MB each), {ARGS.clients} clients")

    procs = Processes()
    results: dict[str, dict] = {}
    try:
        procs.web_start()
        procs.worker_start()
        post_all(tenant, private, batches(pool, 2, 50))  # warm-up: both sides loaded
        wait_drained(ARGS.timeout)
        base = event_count()

        # A. ingest only: workers paused (SIGSTOP), so the backlog waits in Redis. First one
        # batch at a time (the response time of a lone 1,000-event POST), then concurrently.
        procs.worker_pause()
        serial = batches(pool, ARGS.latency_posts, size)
        serial_latencies, _ = post_all(tenant, private, serial, clients=1)
        with CpuMeter(procs) as cpu:
            latencies, wall = post_all(tenant, private, set_one)
        results["A"] = {
            "events": total,
            "seconds": wall,
            "lat": latencies,
            "serial": serial_latencies,
            "cpu": cpu.used,
        }
        total_b = total + len(serial) * size

        # B. normalise that backlog of new events.
        with CpuMeter(procs) as cpu:
            started = time.perf_counter()
            procs.worker_resume()
            wait_drained(ARGS.timeout)
            wall = time.perf_counter() - started
        stored = event_count() - base
        results["B"] = {"events": total_b, "seconds": wall, "stored": stored, "cpu": cpu.used}

        # C. the same batches delivered again: stored nothing, costs what?
        procs.worker_pause()
        post_all(tenant, private, set_one)
        with CpuMeter(procs) as cpu:
            started = time.perf_counter()
            procs.worker_resume()
            wait_drained(ARGS.timeout)
            wall = time.perf_counter() - started
        inserted = event_count() - base - stored
        results["C"] = {"events": total, "seconds": wall, "inserted": inserted, "cpu": cpu.used}

        # D. end to end, workers running while new batches arrive.
        with CpuMeter(procs) as cpu:
            started = time.perf_counter()
            latencies, _ = post_all(tenant, private, set_two)
            wait_drained(ARGS.timeout)
            wall = time.perf_counter() - started
        results["D"] = {"events": total, "seconds": wall, "lat": latencies, "cpu": cpu.used}

        # E. where the time goes: a few new batches normalised in this process, with the
        # Postgres CPU of each statement and our own CPU.
        procs.worker_pause()
        post_all(tenant, private, batches(pool, ARGS.profile_batches, size))
        results["E"] = profile_normalisation()
    finally:
        procs.stop()
        queue_purge()

    for line in report_lines(results):
        print(line)
    if ARGS.json:
        end_to_end = results["D"]
        print(
            json.dumps(
                {
                    "events_per_s": round(end_to_end["events"] / end_to_end["seconds"]),
                    "post_p99_ms": round(percentile(end_to_end["lat"], 0.99) * 1000, 1),
                    "redelivery_cost_ratio": round(
                        _cpu_ms(results["C"]) / _cpu_ms(results["B"]), 3
                    ),
                    "cpu_us_per_event": round(_cpu_ms(end_to_end)),
                }
            )
        )
    if not ARGS.no_doc:
        write_doc(section(results, mb))
        print(f"updated {DOC.relative_to(ROOT)}")
    return 0


def _cpu_ms(result: dict) -> float:
    return sum(result["cpu"].values()) / result["events"] * 1000 * 1000  # CPU µs per event


def profile_normalisation() -> dict:
    import resource
    from collections import defaultdict

    import psycopg

    from messaging.services.receipts import webhook_receipt_normalise

    connection.ensure_connection()
    backend = connection.connection.info.backend_pid
    per_statement: dict[str, float] = defaultdict(float)
    original = psycopg.Cursor.execute

    def timed(cursor, query, params=None, **kwargs):
        before = _cpu([backend]).get(backend, 0.0)
        try:
            return original(cursor, query, params, **kwargs)
        finally:
            text = query if isinstance(query, str) else str(query)
            key = " ".join(text.split())[:48]
            per_statement[key] += _cpu([backend]).get(backend, 0.0) - before

    def own() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    receipt_ids = list(
        WebhookReceipt.objects.filter(processed_at__isnull=True).values_list("id", flat=True)
    )
    psycopg.Cursor.execute = timed
    try:
        pg_before, own_before = _cpu([backend]).get(backend, 0.0), own()
        for receipt_id in receipt_ids:
            webhook_receipt_normalise(receipt_id=receipt_id)
        pg_total = _cpu([backend]).get(backend, 0.0) - pg_before
        own_total = own() - own_before
    finally:
        psycopg.Cursor.execute = original
    n = len(receipt_ids) or 1
    top = sorted(per_statement.items(), key=lambda item: -item[1])[:6]
    return {
        "batches": len(receipt_ids),
        "postgres_ms": pg_total / n * 1000,
        "python_ms": own_total / n * 1000,
        "statements": [(key, cpu / n * 1000) for key, cpu in top],
    }


def report_lines(results: dict[str, dict]) -> list[str]:
    a, b, c, d = (results[k] for k in "ABCD")
    cores = os.cpu_count() or 1

    def split(result: dict) -> str:
        return ", ".join(f"{k} {v:.1f}s" for k, v in result["cpu"].items())

    return [
        f"A0 one POST at a time ({len(a['serial'])} batches): p50 "
        f"{percentile(a['serial'], 0.5) * 1000:.1f} ms, p99 "
        f"{percentile(a['serial'], 0.99) * 1000:.1f} ms, max {max(a['serial']) * 1000:.1f} ms",
        f"A ingest only: {a['events'] / a['seconds']:,.0f} events/s accepted, POST p50 "
        f"{percentile(a['lat'], 0.5) * 1000:.1f} ms, p99 {percentile(a['lat'], 0.99) * 1000:.1f} ms;"
        f" CPU {_cpu_ms(a):.0f} µs/event ({split(a)})",
        f"B normalise new: {b['events'] / b['seconds']:,.0f} events/s ({b['seconds']:.2f} s, "
        f"{b['stored']} stored); CPU {_cpu_ms(b):.0f} µs/event ({split(b)})",
        f"C re-delivery: {c['seconds']:.2f} s, {c['inserted']} inserted; CPU {_cpu_ms(c):.0f} "
        f"µs/event = {_cpu_ms(c) / _cpu_ms(b):.2f} x B ({split(c)})",
        f"D end to end: {d['events'] / d['seconds']:,.0f} events/s ({d['seconds']:.2f} s), POST "
        f"p50 {percentile(d['lat'], 0.5) * 1000:.1f} ms, p99 {percentile(d['lat'], 0.99) * 1000:.1f}"
        f" ms; CPU {_cpu_ms(d):.0f} µs/event ({split(d)}) -> {cores / _cpu_ms(d) * 1e6:,.0f} "
        f"events/s if the {cores} cores were ours alone",
        f"E per batch of {ARGS.batch_size} (in-process, {results['E']['batches']} batches): "
        f"Python {results['E']['python_ms']:.0f} ms CPU, Postgres {results['E']['postgres_ms']:.0f}"
        " ms CPU, of which: "
        + "; ".join(f"{key}… {ms:.1f} ms" for key, ms in results["E"]["statements"]),
    ]


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


def section(results: dict[str, dict], mb: float) -> str:
    a, b, c, d, e = (results[k] for k in "ABCDE")
    cores = os.cpu_count() or 1
    command = "python bench/webhook_ingest.py " + " ".join(sys.argv[1:])

    def cpu(result: dict) -> str:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in result["cpu"].items())
        return f"{_cpu_ms(result):.0f} ({parts})"

    def row(name: str, result: dict, note: str, lat: bool = True) -> str:
        p50 = f"{percentile(result['lat'], 0.5) * 1000:.1f}" if lat else ""
        p99 = f"{percentile(result['lat'], 0.99) * 1000:.1f}" if lat else ""
        return (
            f"| {name} | {result['events']:,} | {result['seconds']:.2f} | "
            f"{result['events'] / result['seconds']:,.0f} | {p50} | {p99} | {cpu(result)} | "
            f"{note} |"
        )

    return "\n".join(
        [
            START,
            "## Event Webhook ingestion",
            "",
            f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
            f"- Machine: {machine()}; PostgreSQL, Redis, gunicorn ({ARGS.web_workers} workers x 2 "
            f"threads) and Celery ({ARGS.celery_concurrency} prefork processes) on the same "
            "machine, loopback only.",
            f"- Command: `{command.strip()}`",
            f"- Load average at start (1/5/15 min): {LOAD_AT_START}.",
            f"- Batches: {ARGS.batches} x {ARGS.batch_size} events ({mb:.2f} MB each, signed "
            f"P-256), {ARGS.clients} keep-alive clients, {ARGS.messages:,} seeded messages.",
            "",
            "| Phase | Events | Seconds | Events/s | POST p50 ms | POST p99 ms "
            "| CPU µs/event (web, workers, postgres s) | Note |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
            f"| A0. one {ARGS.batch_size}-event POST at a time | {len(a['serial']) * ARGS.batch_size:,}"
            f" | | | {percentile(a['serial'], 0.5) * 1000:.1f} | "
            f"{percentile(a['serial'], 0.99) * 1000:.1f} | | {len(a['serial'])} POSTs, 1 client, "
            "workers paused |",
            row("A. ingest only (verify, store raw, 204)", a, "workers paused"),
            row("B. normalise new events", b, f"{b['stored']:,} events stored", lat=False),
            row(
                "C. normalise a re-delivery",
                c,
                f"{c['inserted']} inserted; {_cpu_ms(c) / _cpu_ms(b):.2f} x the CPU of B",
                lat=False,
            ),
            row(
                "D. end to end (POST to normalised)",
                d,
                f"workers running; ~{cores / _cpu_ms(d) * 1e6:,.0f} events/s if the "
                f"{cores} cores were ours alone",
            ),
            "",
            f"Where the time goes (E: {e['batches']} more batches normalised in the bench process, "
            f"CPU per {ARGS.batch_size}-event batch): Python {e['python_ms']:.0f} ms (JSON parse, "
            f"normalisation, the campaign hook's Python), Postgres {e['postgres_ms']:.0f} ms, "
            "of which " + "; ".join(f"`{key}…` {ms:.1f} ms" for key, ms in e["statements"]) + ".",
            "",
            f"Goals (issue 9): at least 20,000 events/s end to end on this 2-core machine: "
            f"{'met' if d['events'] / d['seconds'] >= 20_000 else 'not met'} "
            f"({d['events'] / d['seconds']:,.0f} events/s measured; about "
            f"{cores / _cpu_ms(d) * 1e6:,.0f} by the CPU our processes used). A re-delivery at "
            "most 0.25 x the CPU of a first delivery, nothing inserted: "
            f"{'met' if _cpu_ms(c) <= _cpu_ms(b) / 4 and c['inserted'] == 0 else 'not met'}. "
            f"A {ARGS.batch_size}-event POST p99 under 250 ms under that load: "
            f"{'met' if percentile(d['lat'], 0.99) < 0.25 else 'not met'}. "
            "Most of the cost is the PostgreSQL work the schema asks of every new event: two "
            "inserts (the dedup key, and the partitioned event table with its indexes, its "
            "raw JSON and the analytics trigger that counts it), and for roughly half the "
            "events a rewrite of the message row, which is not a HOT update (its status is in "
            "the predicates of two partial indexes, so each index of the table gets a new "
            "entry). "
            "Repeats that change nothing skip the row. The headline notes above say what was "
            "tried on this path and what it changed.",
            "",
            "Wall times are from the first POST (A, D) or from resuming the paused workers "
            "(B, C) to the last receipt marked processed. CPU is what our processes used "
            "(gunicorn, the Celery workers and their Postgres backends, from /proc), which "
            "stays meaningful when other work shares the machine; Redis and Postgres "
            "background writers are not counted. Every normalisation runs the dedup-ledger "
            "insert, the partitioned event insert, the monotonic message update, suppressions "
            "and the campaign-engine hook in one transaction per batch.",
            END,
        ]
    )


def write_doc(text: str) -> None:
    current = (
        DOC.read_text()
        if DOC.exists()
        else "# Benchmarks\n\nFigures measured by the scripts in `bench/`, newest run of each.\n"
    )
    if START in current and END in current:
        before, rest = current.split(START, 1)
        updated = before + text + rest.split(END, 1)[1]
    else:
        updated = current.rstrip("\n") + "\n\n" + text + "\n"
    DOC.write_text(updated)


if __name__ == "__main__":
    sys.exit(main())
