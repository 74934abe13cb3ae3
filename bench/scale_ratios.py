"""Does the system slow down as its tables grow? The same operations on a small and a full
synthetic data set, as ratios (issue goal: each within ±20 % of its small-table figure).

Two databases filled by ``manage.py load_synthetic`` beforehand (``--small``: e.g. 1M
events; ``--large``: e.g. 50M events). For each, one after the other, a child process of
this script (so Django talks to that database) and a SendGrid emulator of its own:

1. adds the same *probe* tenant to it through the same loader (``--probe-leads`` leads,
   ``--probe-events`` events over 6 months, seed fixed), with its caps and window lifted;
2. measures on the probe, in this order: lead search (the leads API with ``q``, and exact
   email), the lead timeline (API), the dashboard (the analytics API endpoints), webhook
   ingest (signed POSTs through the Django stack) and normalisation (the service, one
   receipt after another), enrolment of ``--enrol`` leads in a new campaign (one call), the
   send path (``--sends`` of those actions claimed and sent by ``message_send_batch`` in
   batches of 100, to the emulator), claim + dispatch of the other actions (the real sweep
   and Celery publish), archiving that campaign, and deleting the probe tenant;
3. times every SQL statement it sends (normalised text → calls and milliseconds: the shared
   server does not load ``pg_stat_statements``) and reports the table sizes.

The parent prints each figure at both sizes with the ratio, the statements whose time grew
the most, and an ``EXPLAIN (ANALYZE, BUFFERS)`` on the large database of the worst of them
(DML inside a rolled-back transaction), then rewrites its part of ``docs/benchmarks.md``.

Both databases must have been loaded by ``load_synthetic`` and their names must contain
"scale" or "bench"; a Redis db other than 0 is needed (``--redis``). Example::

    python bench/scale_ratios.py \\
        --small postgres://root@127.0.0.1:5432/outreach_wt10_small \\
        --large postgres://root@127.0.0.1:5432/outreach_wt10_scale --redis redis://127.0.0.1:6379/6
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
START = "<!-- scale-ratios:start -->"
END = "<!-- scale-ratios:end -->"
UINT_MAX = 2**31 - 1
GOAL = 0.20
CLAIM_ROUNDS = 5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", help="URL of the small synthetic database")
    parser.add_argument("--large", help="URL of the large synthetic database")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/6")
    parser.add_argument("--probe-leads", type=int, default=20_000)
    parser.add_argument("--probe-events", type=int, default=200_000)
    parser.add_argument("--enrol", type=int, default=10_000, help="leads enrolled in one call")
    parser.add_argument("--sends", type=int, default=2_000, help="sends through the send path")
    parser.add_argument("--ingest-batches", type=int, default=20)
    parser.add_argument("--batch-events", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of each read operation")
    parser.add_argument(
        "--rounds", type=int, default=2, help="small and large runs, alternated; best kept"
    )
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--save", help="keep each run's figures, statements and plans here")
    parser.add_argument(
        "--explain", type=int, default=4, help="statements explained per operation (0: none)"
    )
    # Internal: the child that measures one database.
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args()


ARGS = parse_args()


def fail(message: str) -> None:
    print(f"scale_ratios: {message}", file=sys.stderr)
    sys.exit(2)


def db_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


# =========================================================================== the child


def child_setup(url: str):
    """Start an emulator, point Django at ``url`` and the emulator, and set the service
    knobs a benchmark needs (no jitter, no global send rate)."""
    sys.path.insert(0, str(ROOT))
    from messaging.emulator.process import EmulatorProcess

    emulator = EmulatorProcess(
        quiet=True, tags_only=True, store_size=1000, events_url_template="",
        inbound_url_template="",
    ).start()  # fmt: skip
    os.environ.update(
        {
            "DATABASE_URL": url,
            "REDIS_URL": ARGS.redis,
            "DJANGO_SETTINGS_MODULE": "outreach.settings.dev",
            "SENDGRID_API_HOST": emulator.host,
            "SEND_JITTER_SECONDS": "0",
            "SEND_GLOBAL_PER_SECOND": "0",
            "SEND_THREADS": "8",
            "SEND_BATCH_SIZE": "100",
            "LOG_LEVEL": "WARNING",
            "DJANGO_DEBUG": "0",
        }
    )
    import django

    django.setup()
    return emulator


class Statements:
    """Wall time of every statement psycopg sends, by normalised text, per operation, and one
    sample of each with its parameters bound (for EXPLAIN)."""

    def __init__(self) -> None:
        import psycopg

        global STATEMENTS
        STATEMENTS = self
        self.current = "setup"
        self.by_op: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self.samples: dict[str, str] = {}
        self.paused = False
        self.plans: dict[str, dict[str, list[str]]] = {}
        original = psycopg.Cursor.execute
        statements = self

        def timed(cursor, query, params=None, **kwargs):
            if statements.paused:
                return original(cursor, query, params, **kwargs)
            text = query if isinstance(query, str) else query.as_string(cursor)
            key = normalise(text)
            if key not in statements.samples:
                # Bound before running: mogrify after a query would reset its result.
                try:
                    bound = cursor.mogrify(query, params) if hasattr(cursor, "mogrify") else ""
                except Exception:  # a statement we cannot bind client-side
                    bound = ""
                statements.samples[key] = bound
            started = time.perf_counter()
            try:
                return original(cursor, query, params, **kwargs)
            finally:
                statements.by_op[statements.current][key].append(time.perf_counter() - started)

        psycopg.Cursor.execute = timed

    @contextlib.contextmanager
    def setup(self):
        """Statements of the benchmark's own setup, kept out of the operation's figures."""
        current, self.current = self.current, "setup"
        try:
            yield
        finally:
            self.current = current

    def op(self, name: str) -> None:
        """Start timing ``name``; the operation before it gets its statements explained."""
        if self.current in OPS and ARGS.explain:
            self.plans[self.current] = self.explain_top(self.current, ARGS.explain)
        self.current = name

    def explain_top(self, op: str, count: int) -> dict[str, list[str]]:
        """EXPLAIN (ANALYZE, BUFFERS) the ``count`` statements that took longest in ``op``,
        run again now (DML rolled back), while the data they touched still exists."""
        from django.db import connection, transaction

        ranked = sorted(self.by_op[op].items(), key=lambda item: -sum(item[1]))[:count]
        plans = {}
        self.paused = True
        try:
            for key, _ in ranked:
                text = self.samples.get(key)
                if not text or not re.match(r"\s*(SELECT|WITH|INSERT|UPDATE|DELETE)", text, re.I):
                    continue
                try:
                    with transaction.atomic(), connection.cursor() as cursor:
                        cursor.execute("SET LOCAL statement_timeout = '120s'")
                        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + text)
                        plans[key] = [row[0] for row in cursor.fetchall()]
                        transaction.set_rollback(True)
                except Exception as exc:
                    plans[key] = [f"(not explained: {type(exc).__name__}: {exc})"[:300]]
        finally:
            self.paused = False
        return plans


STATEMENTS: Statements


def normalise(text: str) -> str:
    text = " ".join(text.split())
    text = re.sub(r"'[^']*'", "?", text)
    text = re.sub(r"\b\d+\b", "N", text)
    text = re.sub(r"(\?|N|%s)(, (\?|N|%s))+", r"\1, …", text)
    return text[:160]


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - started, result


def child_main() -> None:
    emulator = child_setup(ARGS.measure)
    statements = Statements()
    try:
        results = measure(statements)
    finally:
        emulator.stop()
    slow = {
        op: {key: [len(times), sum(times) * 1000] for key, times in per.items()}
        for op, per in statements.by_op.items()
    }
    Path(ARGS.out).write_text(
        json.dumps({"results": results, "statements": slow, "plans": statements.plans}, default=str)
    )


def measure(statements: Statements) -> dict:
    import redis
    from django.db import connection

    from outreach.tenancy.models import Tenant
    from outreach.tenancy.services import tenant_delete

    name = connection.settings_dict["NAME"]
    if "scale" not in name and "bench" not in name:
        fail(f"database {name!r}: its name must contain 'scale' or 'bench'")
    if not Tenant.objects.filter(slug__startswith="synthetic-").exists():
        fail(f"database {name!r} holds no synthetic data: run manage.py load_synthetic first")
    for leftover in Tenant.objects.filter(slug__startswith="probe-").values_list("pk", flat=True):
        tenant_delete(tenant_id=leftover)
    results: dict = {"meta": meta()}
    results["meta"]["parked"] = backlog_park()

    statements.op("probe load")
    seconds, tenant_id = timed(probe_load)
    results["probe load"] = {"value": seconds, "unit": "s", "better": "lower"}
    print(f"  probe tenant loaded in {seconds:.1f} s", flush=True)
    client = api_client(tenant_id)

    statements.op("lead search")
    results["lead search"] = lead_search(client, tenant_id)
    statements.op("lead timeline")
    results["lead timeline"] = lead_timelines(client, tenant_id)
    statements.op("dashboard")
    results["dashboard"] = dashboard(client, tenant_id)
    statements.op("webhook ingest")
    ingest, normalise_ = webhook(tenant_id, statements)
    results["webhook ingest"] = ingest
    results["webhook normalisation"] = normalise_
    statements.op("enrolment")
    campaign_id, enrolled = enrolment(tenant_id)
    results["enrolment"] = enrolled
    statements.op("send path")
    results["send path"] = send_path(tenant_id, campaign_id)
    statements.op("claim + dispatch")
    results["claim + dispatch"] = claim_dispatch(tenant_id, campaign_id)
    redis.Redis.from_url(ARGS.redis).delete("sending", "events", "maintenance")
    statements.op("campaign archive")
    results["campaign archive"] = archive(tenant_id, campaign_id)
    statements.op("tenant deletion")
    seconds, deleted = timed(tenant_delete, tenant_id=tenant_id)
    results["tenant deletion"] = {
        "value": seconds,
        "unit": "s",
        "better": "lower",
        "note": f"{sum(deleted.rows.values()):,} rows",
    }
    statements.op("after")
    redis.Redis.from_url(ARGS.redis).delete("sending", "events", "maintenance")
    return results


def backlog_park() -> int:
    """Actions of the synthetic tenants that fell due since the load (nothing runs them
    here) move 30 days on, so the claims measured are the probe's alone: a system that
    keeps up has no backlog."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE campaigns_scheduledaction SET due_at = due_at + interval '30 days'"
            " WHERE status = 'pending' AND due_at <= now() + interval '1 hour'"
        )
        return cursor.rowcount


def meta() -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        size = cursor.fetchone()[0]
        cursor.execute(
            """
            SELECT c.relname, c.reltuples::bigint FROM pg_class c
            WHERE c.relname IN ('campaigns_lead', 'campaigns_enrollment', 'messaging_message',
                'campaigns_enrollmenttransition', 'campaigns_scheduledaction',
                'messaging_messageeventkey', 'analytics_hourlyrollup')
            """
        )
        tables = dict(cursor.fetchall())
        cursor.execute(
            "SELECT coalesce(sum(c.reltuples), 0)::bigint FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'messaging_messageevent'::regclass AND c.reltuples > 0"
        )
        tables["messaging_messageevent"] = cursor.fetchone()[0]
    return {
        "database": connection.settings_dict["NAME"],
        "bytes": size,
        "rows": tables,
        "load": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def probe_load() -> int:
    from campaigns.models import Campaign
    from messaging.models import SenderIdentity
    from outreach.synthetic.load import SyntheticSpec, synthetic_load
    from outreach.tenancy.models import Tenant

    synthetic_load(
        spec=SyntheticSpec(
            tenants=1, leads=ARGS.probe_leads, events=ARGS.probe_events, seed=11, prefix="probe"
        ),
        allow_existing=True,
        views_refresh=False,
    )
    tenant = Tenant.objects.get(slug="probe-01")
    Tenant.objects.filter(pk=tenant.pk).update(daily_send_quota=UINT_MAX)
    SenderIdentity.objects.filter(tenant=tenant).update(
        daily_cap=UINT_MAX,
        hourly_cap=UINT_MAX,
        warmup_enabled=False,
        window_days=[0, 1, 2, 3, 4, 5, 6],
        window_start=dt.time(0, 0),
        window_end=dt.time(23, 59, 59),
        timezone="UTC",
    )
    assert Campaign.objects.filter(tenant=tenant).exists()
    return tenant.pk


def api_client(tenant_id: int):
    from django.test import Client

    from outreach.tenancy.models import Tenant, TenantAPIKey

    _, key = TenantAPIKey.objects.create_key(name="bench", tenant=Tenant.objects.get(pk=tenant_id))
    return Client(HTTP_AUTHORIZATION=f"Api-Key {key}")


def _latency(client, urls: list[str]) -> dict:
    samples = []
    for url in urls:
        client.get(url)  # warm: plan cache, connection
    for _ in range(ARGS.repeat):
        for url in urls:
            started = time.perf_counter()
            response = client.get(url)
            samples.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (url, response.status_code, response.content[:200])
    return {
        "value": statistics.median(samples),
        "unit": "ms",
        "better": "lower",
        "note": f"p50 of {len(samples)}; p95 {sorted(samples)[int(len(samples) * 0.95) - 1]:.1f} ms",
    }


SEARCHES = ["son", "smith", "harbor", "ana", "labs", "zen", "mar tin", "patel", "quantum sys"]


def lead_search(client, tenant_id: int) -> dict:
    from campaigns.models import Lead

    with STATEMENTS.setup():
        emails = list(
            Lead.objects.filter(tenant_id=tenant_id)
            .order_by("?")
            .values_list("email", flat=True)[:3]
        )
    urls = [f"/api/v1/leads/?q={term.replace(' ', '+')}" for term in SEARCHES]
    urls += [f"/api/v1/leads/?email={email}" for email in emails]
    urls += ["/api/v1/leads/"]
    return _latency(client, urls)


def lead_timelines(client, tenant_id: int) -> dict:
    from django.db import connection

    with STATEMENTS.setup(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT lead_id FROM messaging_message WHERE tenant_id = %s"
            " GROUP BY lead_id ORDER BY count(*) DESC, lead_id LIMIT 20",
            [tenant_id],
        )
        leads = [row[0] for row in cursor.fetchall()]
    return _latency(client, [f"/api/v1/leads/{lead}/timeline/" for lead in leads])


def dashboard(client, tenant_id: int) -> dict:
    from django.db import connection

    with STATEMENTS.setup(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT campaign_id, sender_identity_id FROM messaging_message WHERE tenant_id = %s"
            " GROUP BY 1, 2 ORDER BY count(*) DESC LIMIT 1",
            [tenant_id],
        )
        campaign_id, sender_id = cursor.fetchone()
    base = f"/api/v1/analytics/campaigns/{campaign_id}/"
    return _latency(
        client,
        [
            base,
            f"{base}timeseries/?bucket=hour",
            f"{base}timeseries/?bucket=day",
            f"/api/v1/analytics/sender-identities/{sender_id}/",
            "/api/v1/analytics/tenant/",
        ],
    )


def webhook(tenant_id: int, statements: Statements) -> tuple[dict, dict]:
    import base64
    import random
    import uuid

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from django.db import connection
    from django.test import Client

    from messaging.models import WebhookReceipt
    from messaging.services.receipts import webhook_receipt_normalise
    from outreach.tenancy.models import Tenant

    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    tenant = Tenant.objects.get(pk=tenant_id)
    Tenant.objects.filter(pk=tenant_id).update(webhook_public_key=base64.b64encode(public).decode())
    with STATEMENTS.setup(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT public_id, provider_message_id, to_email FROM messaging_message"
            " WHERE tenant_id = %s AND status_rank >= 10 ORDER BY id DESC LIMIT 5000",
            [tenant_id],
        )
        pool = cursor.fetchall()
    rng = random.Random(5)
    now = int(time.time())

    def event(n: int) -> dict:
        public_id, provider_id, email = rng.choice(pool)
        kind = rng.choice(["delivered", "open", "open", "open", "click", "deferred", "processed"])
        body = {
            "email": email,
            "timestamp": now - rng.randint(60, 3000),
            "event": kind,
            "sg_event_id": base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
            "sg_message_id": f"{provider_id}.filterdrecv-bench-{n:08X}-3.0",
            "outreach_message_id": str(public_id),
        }
        if kind == "open":
            body.update(useragent="Mozilla/5.0 (iPhone)", sg_machine_open=rng.random() < 0.3)
        elif kind == "click":
            body.update(url="https://vendor.example.com/pricing", useragent="Mozilla/5.0 (Mac)")
        return body

    counter = iter(range(10**9))
    bodies = [
        json.dumps([event(next(counter)) for _ in range(ARGS.batch_events)]).encode()
        for _ in range(ARGS.ingest_batches)
    ]

    def signed_headers(body: bytes) -> dict[str, str]:
        stamp = str(int(time.time()))
        signature = private.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE": base64.b64encode(signature).decode(),
            "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP": stamp,
        }

    # Signing is SendGrid's cost, not ours: done before the clock starts.
    signed = [(body, signed_headers(body)) for body in bodies]
    client = Client()
    url = f"/webhooks/sendgrid/events/{tenant.public_id}/"
    client.post(url, data=b"[]", content_type="application/json", **signed_headers(b"[]"))
    started = time.perf_counter()
    for body, headers in signed:
        response = client.post(url, data=body, content_type="application/json", **headers)
        assert response.status_code == 204, response.status_code
    ingest_seconds = time.perf_counter() - started
    with STATEMENTS.setup():
        receipt_ids = list(
            WebhookReceipt.objects.filter(tenant_id=tenant_id, processed_at__isnull=True)
            .order_by("id")
            .values_list("id", flat=True)
        )
    statements.op("webhook normalisation")
    started = time.perf_counter()
    for receipt_id in receipt_ids:
        webhook_receipt_normalise(receipt_id=receipt_id)
    normalise_seconds = time.perf_counter() - started
    events = ARGS.ingest_batches * ARGS.batch_events
    return (
        {
            "value": ingest_seconds / ARGS.ingest_batches * 1000,
            "unit": "ms",
            "better": "lower",
            "note": f"per {ARGS.batch_events}-event POST, {ARGS.ingest_batches} POSTs",
        },
        {
            "value": events / normalise_seconds,
            "unit": "events/s",
            "better": "higher",
            "note": f"{len(receipt_ids)} receipts of {ARGS.batch_events}",
        },
    )


def enrolment(tenant_id: int) -> tuple[int, dict]:
    from campaigns.models import Lead
    from campaigns.services import campaigns as services
    from campaigns.services.enrollment import enrollments_create
    from messaging.models import SenderIdentity
    from outreach.synthetic.data import PLAN

    STATEMENTS.current = "setup"
    identity = SenderIdentity.objects.filter(tenant_id=tenant_id).order_by("pk").first()
    campaign = services.campaign_create(
        tenant_id=tenant_id, name="Scale bench", sender_identity_id=identity.pk
    )
    version = services.campaign_version_add(tenant_id=tenant_id, campaign_id=campaign.pk, plan=PLAN)
    services.campaign_publish(
        tenant_id=tenant_id, campaign_id=campaign.pk, version=version.version.version
    )
    services.campaign_status_set(tenant_id=tenant_id, campaign_id=campaign.pk, action="activate")
    lead_ids = list(
        Lead.objects.filter(tenant_id=tenant_id)
        .exclude(validation_status="invalid")
        .order_by("pk")
        .values_list("pk", flat=True)[: ARGS.enrol]
    )
    STATEMENTS.current = "enrolment"
    seconds, result = timed(
        enrollments_create, tenant_id=tenant_id, campaign_id=campaign.pk, lead_ids=lead_ids
    )
    with STATEMENTS.setup():
        park(campaign.pk)
    return campaign.pk, {
        "value": seconds,
        "unit": "s",
        "better": "lower",
        "note": f"{len(result.enrolled):,} enrolled, {len(result.skipped):,} skipped",
    }


def park(campaign_id: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE campaigns_scheduledaction a SET due_at = now() + interval '1 day'
            FROM campaigns_enrollment e
            WHERE e.id = a.enrollment_id AND e.campaign_id = %s AND a.status = 'pending'
            """,
            [campaign_id],
        )


def make_due(campaign_id: int, count: int) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE campaigns_scheduledaction SET due_at = now() - interval '1 second'
            WHERE id IN (
                SELECT a.id FROM campaigns_scheduledaction a
                JOIN campaigns_enrollment e ON e.id = a.enrollment_id
                WHERE e.campaign_id = %s AND a.status = 'pending' AND a.due_at > now()
                ORDER BY a.id LIMIT %s)
            """,
            [campaign_id, count],
        )
        return cursor.rowcount


def send_path(tenant_id: int, campaign_id: int) -> dict:
    from campaigns.services import scheduler
    from messaging.services.sending import message_send_batch

    with STATEMENTS.setup():
        due = make_due(campaign_id, ARGS.sends + 100)
        claimed = scheduler.scheduled_actions_claim(limit=due)
    items = [[a.id, a.attempt] for a in claimed]
    message_send_batch(items=items[:100])  # warm-up: imports, connections, the emulator
    report_sent = 0
    started = time.perf_counter()
    for start in range(100, len(items), 100):
        report_sent += message_send_batch(items=items[start : start + 100]).sent
    seconds = time.perf_counter() - started
    return {
        "value": seconds / max(1, report_sent) * 1000,
        "unit": "ms",
        "better": "lower",
        "note": f"per message, {report_sent:,} sent in batches of 100",
    }


def claim_dispatch(tenant_id: int, campaign_id: int) -> dict:
    """Claims/s of the real sweep with the real Celery publish, over the campaign's parked
    actions, ``CLAIM_ROUNDS`` times (the claimed rows are put back between rounds); the
    median round. One round is a fraction of a second: a single one is mostly noise."""
    from django.db import connection

    from campaigns.services import scheduler
    from campaigns.tasks import _dispatch

    rates = []
    for _ in range(CLAIM_ROUNDS):
        with STATEMENTS.setup():
            due = make_due(campaign_id, UINT_MAX)
        started = time.perf_counter()
        claimed = 0
        while claimed < due:
            got = scheduler.scheduled_actions_sweep(
                dispatch=_dispatch, batch_size=100, claim_limit=2000, time_budget_seconds=60
            )
            if not got:
                break
            claimed += got
        rates.append(claimed / (time.perf_counter() - started))
        with STATEMENTS.setup(), connection.cursor() as cursor:
            cursor.execute(
                """
                UPDATE campaigns_scheduledaction a
                SET status = 'pending', lease_expires_at = NULL, due_at = now() + interval '1 day'
                FROM campaigns_enrollment e
                WHERE e.id = a.enrollment_id AND e.campaign_id = %s AND a.status = 'claimed'
                """,
                [campaign_id],
            )
    return {
        "value": statistics.median(rates),
        "unit": "claims/s",
        "better": "higher",
        "note": f"{claimed:,} due actions, claim limit 2,000, Celery publish; median of"
        f" {CLAIM_ROUNDS}",
    }


def archive(tenant_id: int, campaign_id: int) -> dict:
    from campaigns.services.campaigns import campaign_status_set

    seconds, _ = timed(
        campaign_status_set, tenant_id=tenant_id, campaign_id=campaign_id, action="archive"
    )
    return {"value": seconds, "unit": "s", "better": "lower", "note": f"{ARGS.enrol:,} live"}


# =========================================================================== the parent


def run_child(url: str, label: str) -> dict:
    out = Path(tempfile.mkstemp(prefix=f"scale-{label}-", suffix=".json")[1])
    print(f"{label}: {db_name(url)}", flush=True)
    command = [sys.executable, __file__, "--measure", url, "--out", str(out), "--redis", ARGS.redis]
    for name in ("probe_leads", "probe_events", "enrol", "sends", "ingest_batches",
                 "batch_events", "repeat", "explain"):  # fmt: skip
        command += [f"--{name.replace('_', '-')}", str(getattr(ARGS, name))]
    done = subprocess.run(command, cwd=ROOT, check=False)
    if done.returncode:
        fail(f"measuring {db_name(url)} failed (exit {done.returncode})")
    data = json.loads(out.read_text())
    if ARGS.save:
        Path(ARGS.save).mkdir(parents=True, exist_ok=True)
        (Path(ARGS.save) / f"{label}.json").write_text(out.read_text())
    out.unlink()
    return data


OPS = [
    "claim + dispatch",
    "webhook ingest",
    "webhook normalisation",
    "send path",
    "lead search",
    "lead timeline",
    "enrolment",
    "campaign archive",
    "tenant deletion",
    "dashboard",
]


def best_of(runs: list[dict]) -> dict:
    """Each operation's best figure over the rounds (a shared machine only ever makes a run
    slower); the statements and plans of the last round."""
    best = dict(runs[-1])
    best["results"] = dict(runs[-1]["results"])
    best["loads"] = [run["results"]["meta"]["load"].split(" / ")[0] for run in runs]
    for op in OPS:
        figures = [run["results"][op] for run in runs if op in run["results"]]
        if figures:
            pick = min if figures[0]["better"] == "lower" else max
            best["results"][op] = pick(figures, key=lambda f: f["value"])
    return best


def change(small: dict, large: dict) -> float:
    """How much worse the large figure is, as a signed fraction (+0.25 = 25% worse)."""
    if small["better"] == "lower":
        return large["value"] / small["value"] - 1
    return small["value"] / large["value"] - 1


def growers(small: dict, large: dict, per_op: int) -> list[tuple[str, str, float, float, int]]:
    """For each operation, the statements whose summed time grew the most."""
    rows = []
    for op in OPS:
        grown = []
        for key, (calls, ms) in large["statements"].get(op, {}).items():
            before = small["statements"].get(op, {}).get(key, [calls, 0.0])
            grown.append((op, key, before[1], ms, calls))
        grown.sort(key=lambda r: -(r[3] - r[2]))
        rows += [r for r in grown[:per_op] if r[3] - r[2] > 1.0]
    return rows


def fmt(result: dict) -> str:
    value = result["value"]
    if result["unit"] == "s":
        return f"{value:.2f} s"
    if result["unit"] == "ms":
        return f"{value:.1f} ms"
    return f"{value:,.0f} {result['unit']}"


def parent_main() -> None:
    if not ARGS.small or not ARGS.large:
        fail("give --small and --large database URLs")
    if (urlsplit(ARGS.redis).path or "/0").strip("/") in ("", "0"):
        fail("--redis: use a Redis db of its own (redis://host:port/N, N > 0)")
    started = dt.datetime.now(dt.UTC)
    load_before = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    rounds: dict[str, list[dict]] = {"small": [], "large": []}
    for round_number in range(1, ARGS.rounds + 1):
        for label, url in (("small", ARGS.small), ("large", ARGS.large)):
            rounds[label].append(run_child(url, f"{label}{round_number}"))
    small, large = best_of(rounds["small"]), best_of(rounds["large"])
    print()
    print(f"{'operation':24s} {'small':>16s} {'large':>16s}  change")
    lines = []
    for op in OPS:
        if op not in small["results"] or op not in large["results"]:
            continue
        a, b = small["results"][op], large["results"][op]
        delta = change(a, b)
        ok = "ok" if abs(delta) <= GOAL else "OVER"
        print(f"{op:24s} {fmt(a):>16s} {fmt(b):>16s}  {delta:+.0%} {ok}")
        lines.append((op, a, b, delta, ok))
    grew = growers(small, large, 2)
    print("\nstatements whose time grew most (ms in the small / large run):")
    for op, key, before, after, calls in grew:
        print(f"  [{op}] {before:8.1f} → {after:8.1f} ms, {calls} calls: {key[:110]}")
    for op, key, *_ in grew:
        for label, data in (("small", small), ("large", large)):
            plan = data["plans"].get(op, {}).get(key)
            if plan:
                print(f"\nEXPLAIN ({label}) [{op}] {key[:100]}")
                for line in plan[:45]:
                    print(f"    {line}")
    if not ARGS.no_doc:
        write_doc(small, large, lines, grew, started, load_before)


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    return f"{os.cpu_count()} CPU(s), {cpu}, {mem:.0f} GiB RAM, Python {platform.python_version()}"


def write_doc(small, large, lines, grew, started, load_before) -> None:
    def size(data) -> str:
        rows = data["results"]["meta"]["rows"]
        return (
            f"{rows.get('campaigns_lead', 0):,} leads, {rows.get('messaging_message', 0):,} "
            f"messages, {rows.get('messaging_messageevent', 0):,} events, "
            f"{data['results']['meta']['bytes'] / 2**30:.1f} GiB"
        )

    table = "\n".join(
        f"| {op} | {fmt(a)} | {fmt(b)} | **{delta:+.0%}** {'' if ok == 'ok' else '(over 20%)'} |"
        f" {b.get('note', '')} |"
        for op, a, b, delta, ok in lines
    )
    grown = "\n".join(
        f"| {op} | `{key[:90]}` | {calls} | {before:.1f} | {after:.1f} |"
        for op, key, before, after, calls in grew
    )
    shown, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--save":
            skip = True
        elif arg.startswith("postgres"):
            shown.append(f"postgres://…/{db_name(arg)}")
        else:
            shown.append(arg)
    command = "python bench/scale_ratios.py " + " ".join(shown)
    text = f"""{START}
## Scale: the same operations on a small and a full data set

- Date: {started:%Y-%m-%d %H:%M} UTC
- Machine: {machine()}; PostgreSQL on the same machine (shared_buffers 128MB).
- Command: `{command.strip()}` (small and large: databases filled by `manage.py load_synthetic`)
- Load average at start (1/5/15 min): {load_before}; other work shared the CPUs.
- Small: {size(small)}. Large: {size(large)}.
- Every operation runs on the same probe tenant ({ARGS.probe_leads:,} leads, {ARGS.probe_events:,}
  events of history), loaded into each database by the same loader; the change is large
  against small (goal: within ±20%; positive = slower). Small and large ran alternately
  {ARGS.rounds} times; each figure is the best of its rounds (load average at the start of
  run, 1 min: small {", ".join(small["loads"])}; large {", ".join(large["loads"])}).

| Operation | Small | Large | Change | Large run |
| --- | ---: | ---: | ---: | --- |
{table}

Statements whose time grew most (the script's own per-statement timing; milliseconds summed
over the operation):

| Operation | Statement | Calls | Small ms | Large ms |
| --- | --- | ---: | ---: | ---: |
{grown}
{END}"""
    doc = DOC.read_text()
    if START in doc:
        doc = doc[: doc.index(START)] + text + doc[doc.index(END) + len(END) :]
    else:
        doc = doc.rstrip() + "\n\n" + text + "\n"
    DOC.write_text(doc)
    print(f"\nupdated {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    if ARGS.measure:  # the child
        print(f"measuring {db_name(ARGS.measure)} …", flush=True)
        child_main()
    else:
        parent_main()
