"""Analytics at scale: dashboard API latency, rollup lag under load, refresh cost vs table size.

Runs against its own database (``--db``, name must contain ``bench``; created and migrated on
first use, and kept: a second run reuses the load). The load is generated inside PostgreSQL
(``INSERT … SELECT generate_series``) through the real triggers, in statements of
``--chunk`` events, with ``analytics_refresh`` applying the deltas as it goes:
``--tenants`` tenants with 5 sender identities and 5 campaigns (3 email steps, 2 variants)
each, ``--leads`` leads each enrolled once, ``--events`` / 10 messages and ``--events``
engagement events over the last ``--days`` days.

Figures:

A. refresh cost: the time of one ``analytics_refresh`` after 10,000 new events (ten webhook
   sized statements of 1,000), median of 5, at ``--checkpoint`` events and at ``--events``;
B. dashboard API: p50/p95 of each analytics endpoint for the largest campaign (real HTTP
   through the Django stack, tenant API key), ``--requests`` each;
C. rollup lag: ``--rate`` events/s inserted for ``--lag-seconds`` by a loader process while
   a refresher process runs ``analytics_refresh`` every 10 s (as beat does); once a second a
   marker event is stored, and the API is polled until it counts it: stored → visible.

Usage: ``python bench/analytics_scale.py [--events 50000000] [--leads 1000000]``
(smaller: ``--events 2000000 --leads 100000 --checkpoint 1000000``). Rewrites the
"Analytics" section of docs/benchmarks.md unless ``--no-doc``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
START = "<!-- analytics-scale:start -->"
END = "<!-- analytics-scale:end -->"
MARKER_STEP = "bench-marker"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="postgres://root@127.0.0.1:5432/outreach_bench_analytics")
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=50_000_000)
    parser.add_argument("--checkpoint", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--chunk", type=int, default=500_000)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--lag-seconds", type=int, default=60)
    parser.add_argument("--no-doc", action="store_true")
    return parser.parse_args()


ARGS = parse_args()
if "bench" not in ARGS.db.rsplit("/", 1)[-1]:
    sys.exit("analytics_scale: --db must name a database containing 'bench'")
os.environ["DATABASE_URL"] = ARGS.db
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "outreach.settings.dev")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/12")
sys.path.insert(0, str(ROOT))

import subprocess  # noqa: E402

subprocess.run([sys.executable, str(ROOT / "bin" / "ensure-database")], check=True)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from analytics.services.rollup import analytics_refresh, analytics_views_refresh  # noqa: E402
from campaigns.models import Campaign, CampaignPlanVersion  # noqa: E402
from messaging.models import SenderIdentity  # noqa: E402
from outreach.tenancy.models import Tenant, TenantAPIKey  # noqa: E402

PLAN = {
    "start": "intro",
    "steps": {
        "intro": {
            "type": "email",
            "variants": [
                {"name": "A", "weight": 1, "subject": "Hi", "text": "Hello"},
                {"name": "B", "weight": 1, "subject": "Hello", "text": "Hi"},
            ],
            "on": {"reply": "done", "no_reply": {"after": "3d", "to": "follow_up"}},
        },
        "follow_up": {
            "type": "email",
            "variants": [{"name": "main", "text": "Bumping this"}],
            "on": {"reply": "done", "no_reply": {"after": "3d", "to": "breakup"}},
        },
        "breakup": {
            "type": "email",
            "variants": [{"name": "main", "text": "Closing the loop"}],
            "next": "done",
        },
        "done": {"type": "end", "outcome": "finished"},
    },
}


def sql(statement: str, params=None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])
        return cursor.fetchall() if cursor.description else []


def count(table: str) -> int:
    return int(sql(f"SELECT count(*) FROM {table}")[0][0])


def setup_world() -> None:
    call_command("migrate", verbosity=0)
    sql("SELECT messaging_ensure_event_partitions(%s, %s)", [ARGS.days // 30 + 2, 2])
    if Tenant.objects.filter(slug__startswith="bench-").count() >= ARGS.tenants:
        return
    import hashlib
    import json

    checksum = hashlib.sha256(json.dumps(PLAN, sort_keys=True).encode()).hexdigest()
    for t in range(ARGS.tenants):
        tenant = Tenant.objects.create(name=f"Bench tenant {t}", slug=f"bench-{t}")
        senders = [
            SenderIdentity.objects.create(
                tenant=tenant,
                from_name=f"AE {s}",
                from_email=f"ae{s}@t{t}.bench.example.com",
                owner_name=f"AE {s}",
                daily_cap=5000,
                hourly_cap=500,
            )
            for s in range(5)
        ]
        for c in range(5):
            campaign = Campaign.objects.create(
                tenant=tenant, name=f"Campaign {c}", sender_identity=senders[c], status="active"
            )
            version = CampaignPlanVersion.objects.create(
                tenant=tenant, campaign=campaign, version=1, plan=PLAN, checksum=checksum
            )
            campaign.current_version = version
            campaign.save(update_fields=["current_version"])


def load_people() -> None:
    if count("campaigns_lead") >= ARGS.leads:
        return
    per_tenant = ARGS.leads // ARGS.tenants
    print(f"loading {ARGS.leads:,} leads and enrollments …", flush=True)
    sql(
        """
        INSERT INTO campaigns_lead (tenant_id, email, first_name, last_name, company, title,
            timezone, country, phone, custom_fields, validation_status, validation_reason,
            is_role_address, is_disposable, created_at, updated_at)
        SELECT t.id, 'lead' || g || '@company' || (g %% 5000) || '.example.com', 'Lead', 'L' || g,
            'Company ' || (g %% 5000), 'VP Sales', '', 'US', '', '{}', 'valid', '', false, false,
            now(), now()
        FROM tenancy_tenant t CROSS JOIN generate_series(1, %s) g
        WHERE t.slug LIKE 'bench-%%'
        """,
        [per_tenant],
    )
    sql(
        """
        INSERT INTO campaigns_enrollment (tenant_id, campaign_id, lead_id, plan_version_id,
            sender_identity_id, state, current_step, step_seq, step_entered_at, outcome,
            stop_reason, last_error, enrolled_at, updated_at)
        SELECT l.tenant_id, c.id, l.id, c.current_version_id, c.sender_identity_id,
            CASE WHEN l.id %% 10 < 6 THEN 'active' WHEN l.id %% 10 < 8 THEN 'completed'
                 ELSE 'stopped' END,
            CASE l.id %% 3 WHEN 0 THEN 'intro' WHEN 1 THEN 'follow_up' ELSE 'breakup' END,
            1, now(), CASE WHEN l.id %% 10 BETWEEN 6 AND 7 THEN 'finished' ELSE '' END,
            CASE WHEN l.id %% 10 >= 8 THEN 'lead replied' ELSE '' END, '',
            now() - (l.id %% (%s * 24)) * interval '1 hour', now()
        FROM campaigns_lead l
        JOIN LATERAL (
            SELECT id, current_version_id, sender_identity_id FROM campaigns_campaign
            WHERE tenant_id = l.tenant_id ORDER BY id OFFSET (l.id %% 5) LIMIT 1
        ) c ON true
        WHERE l.tenant_id IN (SELECT id FROM tenancy_tenant WHERE slug LIKE 'bench-%%')
        """,
        [ARGS.days],
    )
    analytics_refresh(budget_seconds=600)


def load_messages() -> None:
    wanted = ARGS.events // 10
    have = count("messaging_message")
    if have >= wanted:
        return
    print(f"loading {wanted:,} messages …", flush=True)
    per_enrollment = max(1, wanted // max(1, count("campaigns_enrollment")))
    sql(
        """
        INSERT INTO messaging_message (tenant_id, public_id, channel, sender_identity_id,
            enrollment_id, lead_id, campaign_id, plan_version_id, step, step_seq, variant,
            attempt, status, status_rank, to_email, subject, rfc_message_id, reply_token,
            provider_message_id, smtp_id, error_code, error_message, sent_at, created_at,
            updated_at)
        SELECT e.tenant_id, gen_random_uuid(), 'email', e.sender_identity_id, e.id, e.lead_id,
            e.campaign_id, e.plan_version_id,
            CASE s WHEN 1 THEN 'intro' WHEN 2 THEN 'follow_up' ELSE 'breakup' END, s,
            CASE WHEN s = 1 THEN (CASE WHEN e.id %% 2 = 0 THEN 'A' ELSE 'B' END) ELSE 'main' END,
            1, 'delivered', 40, 'lead@example.com', 'Hi', '', md5(e.id || ':' || s),
            'pm' || e.id || 'x' || s, '', '', '',
            e.enrolled_at + s * interval '3 hours', e.enrolled_at + s * interval '3 hours',
            now()
        FROM campaigns_enrollment e CROSS JOIN generate_series(1, %s) s
        WHERE e.tenant_id IN (SELECT id FROM tenancy_tenant WHERE slug LIKE 'bench-%%')
        """,
        [per_enrollment],
    )
    analytics_refresh(budget_seconds=600)


# Ten events per message, in a realistic mix; ``n`` numbers the message's event (0..9).
EVENTS_INSERT = """
INSERT INTO messaging_messageevent (tenant_id, message_id, enrollment_id, event_type,
    occurred_at, received_at, provider_event_id, provider_message_id, email, is_machine_open,
    is_bot_click, raw)
SELECT m.tenant_id, m.id, m.enrollment_id,
    CASE WHEN n = 9 AND m.id %% 50 = 0 THEN 'bounce'
         WHEN n = 7 AND m.id %% 400 = 0 THEN 'spamreport'
         WHEN n = 7 AND m.id %% 100 = 0 THEN 'unsubscribe'
         ELSE (ARRAY['processed', 'delivered', 'open', 'open', 'open', 'click', 'open',
                     'deferred', 'click', 'open'])[n + 1] END,
    m.created_at + (n * 17 + m.id %% 600) * interval '1 minute', now(),
    'ev' || m.id || ':' || n || ':' || %(salt)s, m.provider_message_id, m.to_email,
    n IN (3, 6) AND m.id %% 3 = 0, n = 8, '{}'::jsonb
FROM messaging_message m CROSS JOIN generate_series(0, 9) n
WHERE m.id > %(after)s AND m.id <= %(upto)s
"""


def stored_events() -> int:
    """Rows in the event table (the planner's count after ANALYZE: exact enough, and instant)."""
    sql("ANALYZE messaging_messageevent")
    return int(
        sql(
            "SELECT coalesce(sum(c.reltuples), 0)::bigint FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'messaging_messageevent'::regclass AND c.reltuples > 0"
        )[0][0]
    )


def loaded_through() -> int:
    """The last message whose ten load events are stored (the load resumes after it)."""
    return int(
        sql(
            "SELECT coalesce(max(message_id), 0) FROM messaging_messageevent"
            " WHERE provider_event_id LIKE 'ev%%:load'"
        )[0][0]
    )


def load_events(upto_events: int) -> float:
    """Insert events (through the triggers) until ``upto_events`` are stored; returns seconds."""
    first, last = sql("SELECT min(id), max(id) FROM messaging_message")[0]
    after = max(first - 1, loaded_through())
    have = (after - first + 1) * 10
    target_last = min(last, first - 1 + upto_events // 10)
    if after >= target_last:
        return 0.0
    per_chunk = max(1, ARGS.chunk // 10)
    started = time.monotonic()
    while after < target_last:
        upto = min(target_last, after + per_chunk)
        sql(EVENTS_INSERT, {"after": after, "upto": upto, "salt": "load"})
        analytics_refresh(budget_seconds=600)
        after = upto
        loaded = (after - first + 1) * 10
        rate = (loaded - have) / (time.monotonic() - started)
        print(f"  {loaded:,} events stored ({rate:,.0f}/s with rollup)", flush=True)
    return time.monotonic() - started


def refresh_cost(label: str) -> dict:
    """Median time of a refresh after 10,000 new events, in ten 1,000-event statements."""
    first = sql("SELECT min(id) FROM messaging_message")[0][0]
    times = []
    for rep in range(5):
        analytics_refresh(budget_seconds=600)
        for k in range(10):
            start = first + (rep * 10 + k) * 100
            sql(
                EVENTS_INSERT,
                {"after": start, "upto": start + 100, "salt": f"{label}{time.time_ns()}"},
            )
        t0 = time.perf_counter()
        result = analytics_refresh(budget_seconds=600)
        times.append(time.perf_counter() - t0)
        assert result.ran
    rows = stored_events()
    return {
        "label": label,
        "events": rows,
        "median_ms": statistics.median(times) * 1000,
        "max_ms": max(times) * 1000,
    }


def api_latency() -> dict:
    tenant_id, campaign_id, sender_id = sql(
        """
        SELECT tenant_id, campaign_id, sender_identity_id FROM analytics_hourlyrollup
        WHERE campaign_id <> 0 GROUP BY 1, 2, 3 ORDER BY sum(sent) DESC LIMIT 1
        """
    )[0]
    analytics_views_refresh()
    tenant = Tenant.objects.get(pk=tenant_id)
    _, key = TenantAPIKey.objects.create_key(name="bench", tenant=tenant)
    client = Client(HTTP_AUTHORIZATION=f"Api-Key {key}")
    urls = {
        "campaign": f"/api/v1/analytics/campaigns/{campaign_id}/",
        "timeseries hour (2 days)": f"/api/v1/analytics/campaigns/{campaign_id}/timeseries/?bucket=hour",
        "timeseries day (30 days)": f"/api/v1/analytics/campaigns/{campaign_id}/timeseries/?bucket=day",
        "sender identity": f"/api/v1/analytics/sender-identities/{sender_id}/",
        "tenant": "/api/v1/analytics/tenant/",
    }
    figures = {}
    for name, url in urls.items():
        assert client.get(url).status_code == 200, url
        samples = []
        for _ in range(ARGS.requests):
            t0 = time.perf_counter()
            response = client.get(url)
            samples.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200
        samples.sort()
        figures[name] = {
            "p50": statistics.median(samples),
            "p95": samples[int(len(samples) * 0.95) - 1],
        }
    rollup_rows = count("analytics_hourlyrollup")
    return {
        "campaign_id": campaign_id,
        "endpoints": figures,
        "rollup_rows": rollup_rows,
        "key": key,
        "tenant_id": tenant_id,
    }


def _loader(db: str, rate: int, seconds: int, marker_message: int, stamps) -> None:
    import psycopg

    with psycopg.connect(db.replace("postgres://", "postgresql://"), autocommit=True) as conn:
        first = conn.execute("SELECT min(id) FROM messaging_message").fetchone()[0]
        per_tick = rate // 10  # ten statements a second, like concurrent webhook batches
        start = time.monotonic()
        tick = 0
        while time.monotonic() - start < seconds:
            base = first + (tick * per_tick // 10) % 1_000_000
            conn.execute(
                EVENTS_INSERT,
                {"after": base, "upto": base + per_tick // 10, "salt": f"lag{tick}"},
            )
            if tick % 10 == 0:
                conn.execute(
                    """
                    INSERT INTO messaging_messageevent (tenant_id, message_id, event_type,
                        occurred_at, received_at, provider_event_id, raw)
                    SELECT tenant_id, id, 'deferred', now(), now(), 'marker' || %s, '{}'
                    FROM messaging_message WHERE id = %s
                    """,
                    [tick, marker_message],
                )
                stamps.append(time.time())
            tick += 1
            time.sleep(max(0.0, start + tick / 10 - time.monotonic()))


def _refresher(seconds: int) -> None:
    django.db.connections.close_all()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        analytics_refresh()
        time.sleep(10)


def rollup_lag(api: dict) -> dict:
    # A marker message of its own campaign step, so its deferrals are ours alone.
    marker = sql(
        """
        INSERT INTO messaging_message (tenant_id, public_id, channel, sender_identity_id,
            campaign_id, plan_version_id, step, step_seq, variant, attempt, status,
            status_rank, to_email, subject, rfc_message_id, reply_token, provider_message_id,
            smtp_id, error_code, error_message, created_at, updated_at)
        SELECT tenant_id, gen_random_uuid(), 'email', sender_identity_id, campaign_id,
            plan_version_id, %s, 0, '', 1, 'delivered', 40, 'marker@example.com', '', '',
            md5(random()::text), '', '', '', '', now(), now()
        FROM messaging_message WHERE campaign_id = %s LIMIT 1
        RETURNING id
        """,
        [f"{MARKER_STEP}-{time.time_ns()}", api["campaign_id"]],
    )[0][0]
    step = sql("SELECT step FROM messaging_message WHERE id = %s", [marker])[0][0]
    analytics_refresh(budget_seconds=600)
    connection.close()
    manager = multiprocessing.Manager()
    stamps = manager.list()
    loader = multiprocessing.Process(
        target=_loader, args=(ARGS.db, ARGS.rate, ARGS.lag_seconds, marker, stamps)
    )
    refresher = multiprocessing.Process(target=_refresher, args=(ARGS.lag_seconds + 15,))
    loader.start()
    refresher.start()
    client = Client(HTTP_AUTHORIZATION=f"Api-Key {api['key']}")
    url = f"/api/v1/analytics/campaigns/{api['campaign_id']}/"
    seen_at: dict[int, float] = {}
    deadline = time.monotonic() + ARGS.lag_seconds + 15
    while time.monotonic() < deadline:
        body = client.get(url).json()
        visible = next((s["deferrals"] for s in body["steps"] if s["step"] == step), 0)
        now = time.time()
        for i in range(visible):
            seen_at.setdefault(i, now)
        time.sleep(0.5)
    loader.join()
    refresher.join()
    lags = sorted(seen_at[i] - stamps[i] for i in range(min(len(stamps), len(seen_at))))
    stored = len(stamps)
    return {
        "markers": stored,
        "visible": len(lags),
        "p50_s": statistics.median(lags) if lags else None,
        "max_s": max(lags) if lags else None,
        "rate": ARGS.rate,
    }


def main() -> None:
    t0 = time.monotonic()
    setup_world()
    load_people()
    load_messages()
    load_seconds = load_events(ARGS.checkpoint)
    small = refresh_cost("checkpoint")
    load_seconds += load_events(ARGS.events)
    large = refresh_cost("full")
    api = api_latency()
    lag = rollup_lag(api)
    leads = count("campaigns_lead")
    print()
    print(f"leads {leads:,}, events {large['events']:,}, rollup rows {api['rollup_rows']:,}")
    print(
        f"refresh after 10k new events: {small['median_ms']:.0f} ms at {small['events']:,} events, "
        f"{large['median_ms']:.0f} ms at {large['events']:,} events"
    )
    for name, f in api["endpoints"].items():
        print(f"API {name:28s} p50 {f['p50']:6.1f} ms  p95 {f['p95']:6.1f} ms")
    print(
        f"rollup lag at {lag['rate']:,} events/s: {lag['visible']}/{lag['markers']} markers seen, "
        f"p50 {lag['p50_s']:.1f} s, max {lag['max_s']:.1f} s"
    )
    print(f"total {time.monotonic() - t0:.0f} s")
    if not ARGS.no_doc:
        write_doc(
            leads=leads, small=small, large=large, api=api, lag=lag, load_seconds=load_seconds
        )


def write_doc(*, leads, small, large, api, lag, load_seconds) -> None:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
        platform.processor(),
    )
    rows = "\n".join(
        f"| `GET {name}` | {f['p50']:.1f} ms | {f['p95']:.1f} ms |"
        for name, f in api["endpoints"].items()
    )
    command = "python bench/analytics_scale.py " + " ".join(sys.argv[1:])
    text = f"""{START}
## Analytics (rollups, dashboard API)

{dt.date.today().isoformat()}, {os.cpu_count()} cores ({cpu}), PostgreSQL {connection.pg_version // 10000}, load average
at start {" / ".join(f"{x:.2f}" for x in os.getloadavg())}. Command: `{command.strip()}`.
Data: {leads:,} leads, {large["events"]:,} `MessageEvent` rows, {api["rollup_rows"]:,} hourly rollup rows
(loaded through the triggers in {load_seconds:.0f} s).

| Figure | At {small["events"]:,} events | At {large["events"]:,} events |
|---|---|---|
| `analytics_refresh` after 10,000 new events (median of 5) | {small["median_ms"]:.0f} ms | {large["median_ms"]:.0f} ms |

| Endpoint (largest campaign, {ARGS.requests} requests) | p50 | p95 |
|---|---|---|
{rows}

Rollup lag at {lag["rate"]:,} events/s for {ARGS.lag_seconds} s, refresh every 10 s (as beat runs it):
{lag["visible"]} of {lag["markers"]} markers seen through the API; stored → visible p50
{lag["p50_s"]:.1f} s, max {lag["max_s"]:.1f} s.
{END}"""
    doc = DOC.read_text()
    if START in doc:
        doc = doc[: doc.index(START)] + text + doc[doc.index(END) + len(END) :]
    else:
        doc = doc.rstrip() + "\n\n" + text + "\n"
    DOC.write_text(doc)
    print(f"updated {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
