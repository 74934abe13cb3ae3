"""What the 3 a.m. operator uses: /metrics, /readyz, and the tenant and kill-switch
commands (one line on success, one line and a non-zero exit on bad input)."""

import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from io import StringIO

import pytest
import redis
from django.core.management import CommandError, call_command
from django.utils import timezone

from campaigns import tasks
from campaigns.models import ScheduledAction
from campaigns.services import scheduler
from campaigns.tests.engine_support import (
    PLAN_ONE_EMAIL,
    actions_make_due,
    campaign_enrolled,
    received_per_recipient,
)
from messaging import tasks_sending
from messaging.services.ratelimit import KEY_PREFIX
from outreach import metrics
from outreach.tenancy import controls
from outreach.tenancy.models import AuditEntry, KillSwitch, Tenant
from outreach.testing import processes
from outreach.testing.world import world_build

pytestmark = pytest.mark.django_db

# Redis databases of these tests' own, for counters and queues that other runs sharing the
# server's database 0 would move between two scrapes (a worker there consumes `sending`).
PRIVATE_REDIS_DB = 14
PRIVATE_BROKER_DB = 15


@pytest.fixture(autouse=True)
def _fresh_caches():
    controls.kill_switches_cache_clear()
    yield
    controls.kill_switches_cache_clear()


def _scrape(client, **headers) -> dict[str, float]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    values = {}
    for line in response.content.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def _run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue().strip()


# --- /metrics ---------------------------------------------------------------------------------


def test_metrics_show_due_actions_their_lag_and_the_webhook_backlog(client, tenant):
    world = world_build(tenant=tenant)
    ScheduledAction.objects.filter(pk=world.action.pk).update(
        due_at=timezone.now() - timezone.timedelta(seconds=42)
    )
    values = _scrape(client)
    assert values['outreach_scheduled_actions{state="due"}'] == 1
    # Postgres's now() is the test transaction's start, a moment before the update.
    assert 40 <= values["outreach_scheduled_actions_due_lag_seconds"] < 120
    assert values['outreach_webhook_receipts_unprocessed{kind="events"}'] == 1
    assert values['outreach_webhook_receipt_lag_seconds{kind="events"}'] >= 0
    assert 'outreach_celery_queue_depth{queue="sending"}' in values
    assert values['outreach_kill_switch_engaged{channel="all"}'] == 0
    assert all(
        value == 1
        for name, value in values.items()
        if name.startswith("outreach_metrics_source_up")
    ), values


def test_send_batches_count_their_outcomes_once_per_batch(client):
    before = _scrape(client).get('outreach_sends_total{outcome="skipped"}', 0)
    tasks_sending.message_send_batch([[987654321, 1], [987654322, 1]])  # no such actions
    after = _scrape(client)['outreach_sends_total{outcome="skipped"}']
    assert after - before == 2


@pytest.fixture
def private_redis(settings):
    """Counters and capacity buckets in a Redis database of this test alone, emptied of
    both before and after, so the figures scraped are exactly this test's."""
    url = settings.REDIS_URL.rsplit("/", 1)[0] + f"/{PRIVATE_REDIS_DB}"
    store = redis.Redis.from_url(url)

    def empty() -> None:
        store.delete(metrics.COUNTERS_KEY)
        keys = list(store.scan_iter(f"{KEY_PREFIX}*", count=1000))
        if keys:
            store.delete(*keys)

    empty()
    settings.REDIS_URL = url
    yield store
    empty()


def _send_due_actions() -> None:
    """A real sweep; each batch it dispatches runs through the send task itself (which
    counts the outcomes), here rather than in a worker, so the test transaction sees it."""
    batches: list[tuple[str, list[list[int]]]] = []
    scheduler.scheduled_actions_sweep(
        dispatch=lambda kind, items: batches.append((kind, items)), batch_size=50
    )
    assert batches and {kind for kind, _ in batches} == {"send"}
    for _, items in batches:
        tasks_sending.message_send_batch(items)


def test_a_full_capacity_bucket_counts_its_rejections(
    client, tenant, engine_settings, private_redis
):
    Tenant.objects.filter(pk=tenant.pk).update(daily_send_quota=0)
    campaign_enrolled(
        tenant, plan=PLAN_ONE_EMAIL, emails=["one@prospect.example.com", "two@prospect.example.com"]
    )
    actions_make_due()
    before = _scrape(client)
    assert 'outreach_capacity_rejections_total{bucket="tenant_day"}' not in before

    _send_due_actions()

    after = _scrape(client)
    assert received_per_recipient(engine_settings) == {}
    assert after['outreach_capacity_rejections_total{bucket="tenant_day"}'] == 2
    rejections = {n for n in after if n.startswith("outreach_capacity_rejections_total")}
    assert rejections == {'outreach_capacity_rejections_total{bucket="tenant_day"}'}
    assert after['outreach_sends_total{outcome="rescheduled"}'] == 2
    assert ScheduledAction.objects.filter(status="pending", due_at__gt=timezone.now()).count() == 2


def test_send_batches_count_sent_and_failed_outcomes(
    client, tenant, engine_settings, private_redis
):
    # SendGrid refuses the malformed address (a permanent 400): that send fails.
    campaign_enrolled(
        tenant, plan=PLAN_ONE_EMAIL, emails=["ok@prospect.example.com", "ann@@prospect.example.com"]
    )
    actions_make_due()
    before = _scrape(client)
    assert 'outreach_sends_total{outcome="sent"}' not in before

    _send_due_actions()

    after = _scrape(client)
    assert received_per_recipient(engine_settings) == {"ok@prospect.example.com": 1}
    assert after['outreach_sends_total{outcome="sent"}'] == 1
    assert after['outreach_sends_total{outcome="failed"}'] == 1
    assert after.get('outreach_sends_total{outcome="rescheduled"}', 0) == 0
    assert after.get('outreach_sends_total{outcome="skipped"}', 0) == 0


@pytest.fixture
def private_broker(settings, monkeypatch):
    """The Celery app's broker moved to a Redis database of this test's own, its queues
    empty before and after."""
    from outreach.celery import app

    url = settings.REDIS_URL.rsplit("/", 1)[0] + f"/{PRIVATE_BROKER_DB}"
    store = redis.Redis.from_url(url)

    def empty() -> None:
        keys = [
            key
            for key in store.scan_iter(count=1000)
            if key.startswith(b"_kombu.")
            or key.split(b"\x06")[0] in {b"sending", b"events", b"maintenance"}
        ]
        if keys:
            store.delete(*keys)

    empty()
    monkeypatch.setitem(app.conf, "broker_url", url)
    yield app
    empty()


def test_the_queue_depth_is_what_waits_in_each_queue(client, private_broker):
    app = private_broker
    with app.connection_for_write() as broker:
        for queue in app.amqp.queues.values():
            queue.bind(broker.default_channel).declare()  # what a worker does when it starts
        app.send_task("messaging.message_send_batch", args=[[]], connection=broker)
        for _ in range(2):
            app.send_task("messaging.webhook_receipt_normalise", args=[0], connection=broker)

    values = _scrape(client)

    depths = {
        name: values[f'outreach_celery_queue_depth{{queue="{name}"}}']
        for name in ("sending", "events", "maintenance")
    }
    assert depths == {"sending": 1, "events": 2, "maintenance": 0}
    # Read from where they were published: the private database's own lists.
    assert redis.Redis.from_url(app.conf.broker_url).llen("sending") == 1
    assert values['outreach_metrics_source_up{source="queues"}'] == 1


def test_the_beat_sweep_counts_claims_and_stamps_readiness(client, tenant):
    world = world_build(tenant=tenant)
    ScheduledAction.objects.filter(pk=world.action.pk).update(
        due_at=timezone.now() - timezone.timedelta(minutes=1)
    )
    before = _scrape(client).get("outreach_scheduled_actions_claimed_total", 0)
    tasks.scheduled_actions_sweep()
    values = _scrape(client)
    assert values["outreach_scheduled_actions_claimed_total"] - before == 1
    assert 0 <= values["outreach_beat_last_sweep_age_seconds"] < 5


def test_in_production_metrics_need_a_token_or_an_allowed_network(client, settings):
    settings.METRICS_REQUIRE_PROTECTION = True
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = []
    assert client.get("/metrics").status_code == 403
    settings.METRICS_TOKEN = "s3cret-token"
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 200
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert client.get("/metrics").status_code == 403  # the test client is 127.0.0.1
    settings.METRICS_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    assert client.get("/metrics").status_code == 200


def test_a_non_ascii_authorization_header_is_refused_not_an_error(client, settings):
    settings.METRICS_REQUIRE_PROTECTION = True
    settings.METRICS_TOKEN = "s3cret-token"
    settings.METRICS_ALLOWED_NETWORKS = []
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cr\u00e9t-t\u00f6ken")
    assert response.status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 200


@pytest.mark.parametrize("networks", ["10.0.0.0/33", "10.0.0.0/8,not-a-network"])
def test_a_malformed_metrics_network_refuses_to_start_with_one_line(networks):
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        env={**os.environ, "METRICS_ALLOWED_NETWORKS": networks},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("METRICS_ALLOWED_NETWORKS: "), lines[0]
    assert "expected CIDRs such as 10.0.0.0/8" in lines[0]


def test_a_failing_source_is_reported_not_fatal(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    values = _scrape(client)
    assert values['outreach_metrics_source_up{source="counters"}'] == 0
    assert values['outreach_metrics_source_up{source="scheduled_actions"}'] == 1


# --- /readyz ----------------------------------------------------------------------------------


def test_readiness_needs_a_recent_beat_sweep(client, settings):
    settings.READINESS_BEAT_MAX_AGE_SECONDS = 30
    store = redis.Redis.from_url(settings.REDIS_URL)
    store.delete(metrics.LAST_SWEEP_KEY)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert list(response.json()["failing"]) == ["beat"]

    store.set(metrics.LAST_SWEEP_KEY, f"{time.time() - 45:.3f}")
    response = client.get("/readyz")
    assert response.status_code == 503
    reason = response.json()["failing"]["beat"]
    assert reason.startswith("last sweep 4") and reason.endswith("(limit 30 s)"), reason

    metrics.beat_sweep_record(claimed=0)
    assert client.get("/readyz").json() == {
        "status": "ok",
        "database": "ok",
        "redis": "ok",
        "beat": "ok",
    }


def test_readiness_names_redis_when_it_is_down(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert list(response.json()["failing"]) == ["redis"]


# A web process whose PostgreSQL is gone: the same settings and code, its database a port
# nothing listens on. It asks both checks the way a load balancer would.
_PROBE = """
import json
import django

django.setup()
from django.test import Client

client = Client()
answers = {path: client.get(path) for path in ("/healthz", "/readyz")}
print(json.dumps({path: [r.status_code, json.loads(r.content)] for path, r in answers.items()}))
"""


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the block ends: nothing listens


def test_healthz_and_readyz_name_the_database_when_postgres_is_down():
    database_url = f"postgres://root@127.0.0.1:{_closed_port()}/outreach"
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=processes.ROOT,
        env=processes.test_process_env(DATABASE_URL=database_url, LOG_LEVEL="ERROR"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    for path in ("/healthz", "/readyz"):
        status, body = answers[path]
        assert status == 503, (path, body)
        assert body["status"] == "failing"
        reason = body["failing"]["database"]
        assert reason.startswith("OperationalError: connection failed: "), body
        assert "Connection refused" in reason
        assert "redis" not in body["failing"]  # Redis is up: only what is down is named
    assert set(answers["/healthz"][1]["failing"]) == {"database"}


# --- commands ---------------------------------------------------------------------------------


def test_tenant_control_pauses_flags_and_sets_quotas_with_an_audit_entry(tenant):
    line = _run(
        "tenant_control",
        "--tenant",
        tenant.slug,
        "--pause",
        "--flag",
        "sms=on",
        "--quota",
        "lead_quota=500",
        "--reason",
        "ticket 42",
        "--actor",
        "alice",
    )
    assert line.startswith(f"tenant {tenant.slug}: status active → paused")
    tenant.refresh_from_db()
    assert (tenant.status, tenant.sms_enabled, tenant.lead_quota) == ("paused", True, 500)
    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.action, entry.reason) == (
        "cli:alice",
        "tenant.controls",
        "ticket 42",
    )
    # Idempotent: the same command again changes and audits nothing.
    _run("tenant_control", "--tenant", tenant.slug, "--pause", "--reason", "again")
    assert AuditEntry.objects.count() == 1


def test_tenant_control_dry_run_changes_nothing(tenant):
    line = _run("tenant_control", "--tenant", tenant.slug, "--pause", "--reason", "x", "--dry-run")
    assert line == f"dry run: tenant {tenant.slug}: status active → paused"
    assert Tenant.objects.get(pk=tenant.pk).status == "active"
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize(
    ("quota", "message"),
    [
        ("daily_send_quota=none", "daily_send_quota: expected a whole number"),
        ("lead_quota=99999999999", "lead_quota: expected a number from 0 to 2147483647"),
    ],
)
def test_tenant_control_dry_run_refuses_what_the_real_run_refuses(tenant, quota, message):
    for dry in ([], ["--dry-run"]):
        with pytest.raises(CommandError, match=message):
            _run("tenant_control", "--tenant", tenant.slug, "--quota", quota, "--reason", "x", *dry)
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "nobody", "--pause", "--reason", "x"], "no tenant"),
        (["--tenant", "{slug}", "--reason", "x"], "nothing to change"),
        (["--tenant", "{slug}", "--flag", "teleport=on", "--reason", "x"], "unknown feature flag"),
        (["--tenant", "{slug}", "--flag", "sms=maybe", "--reason", "x"], "expected on or off"),
        (["--tenant", "{slug}", "--quota", "lead_quota=-3", "--reason", "x"], "whole number"),
        (["--tenant", "{slug}", "--quota", "lead_quota", "--reason", "x"], "NAME=VALUE"),
        (["--tenant", "{slug}", "--pause", "--reason", " "], "--reason"),
    ],
)
def test_tenant_control_bad_input_is_one_line_and_changes_nothing(tenant, args, message):
    args = [a.replace("{slug}", tenant.slug) for a in args]
    with pytest.raises(CommandError, match=message) as refused:
        _run("tenant_control", *args)
    assert "\n" not in str(refused.value)
    assert Tenant.objects.get(pk=tenant.pk).status == "active"
    assert not AuditEntry.objects.exists()


def test_the_kill_switch_command_engages_shows_and_releases():
    assert _run("sending_kill_switch", "status") == "all: released; email: released; sms: released"
    assert (
        _run("sending_kill_switch", "engage", "--channel", "email", "--reason", "incident 7")
        == "kill switch email: ENGAGED: sends are held"
    )
    assert "email: ENGAGED (incident 7)" in _run("sending_kill_switch", "status")
    _run("sending_kill_switch", "release", "--channel", "email", "--reason", "fixed")
    assert not KillSwitch.objects.filter(engaged=True).exists()
    with pytest.raises(CommandError, match="reason"):
        _run("sending_kill_switch", "engage")
    assert [e.action for e in AuditEntry.objects.all()] == [
        "kill_switch.release",
        "kill_switch.engage",
    ]


def test_tenant_export_writes_every_table_without_secrets_and_is_repeatable(
    tenant, other_tenant, tmp_path
):
    world_build(tenant=tenant)
    world_build(tenant=other_tenant)
    output = tmp_path / "export.zip"
    dry = _run("tenant_export", "--tenant", tenant.slug, "--dry-run")
    assert dry.startswith(f"dry run: {tenant.slug} has ")
    assert not output.exists()

    line = _run("tenant_export", "--tenant", tenant.slug, "--output", str(output), "--no-progress")
    assert line.startswith(f"exported {tenant.slug}: ")
    with zipfile.ZipFile(output) as archive:
        names = set(archive.namelist())
        assert {"tenant.jsonl", "leads.jsonl", "messages.jsonl", "audit_log.jsonl"} <= names
        (tenant_row,) = [json.loads(line) for line in archive.read("tenant.jsonl").splitlines()]
        leads = [json.loads(line) for line in archive.read("leads.jsonl").splitlines()]
        events = [json.loads(line) for line in archive.read("message_events.jsonl").splitlines()]
    assert "sendgrid_api_key_encrypted" not in tenant_row
    assert "inbound_secret" not in tenant_row
    assert {lead["tenant_id"] for lead in leads} == {tenant.pk}
    assert len(events) == 1
    first = output.read_bytes()
    _run("tenant_export", "--tenant", tenant.slug, "--output", str(output), "--no-progress")
    assert len(output.read_bytes()) == len(first)
    assert [p.name for p in tmp_path.iterdir()] == ["export.zip"]  # no partial file left


def test_tenant_export_bad_output_is_one_line(tenant, tmp_path):
    with pytest.raises(CommandError, match="does not exist"):
        _run("tenant_export", "--tenant", tenant.slug, "--output", str(tmp_path / "no" / "x.zip"))
    with pytest.raises(CommandError, match="directory"):
        _run("tenant_export", "--tenant", tenant.slug, "--output", str(tmp_path))


def test_normalising_a_receipt_counts_its_events(client, tenant, event_rows_cleanup):
    from messaging.services.receipts import webhook_receipt_normalise

    world = world_build(tenant=tenant)
    before = _scrape(client)
    webhook_receipt_normalise(receipt_id=world.receipt.pk)
    after = _scrape(client)
    for name in (
        "outreach_webhook_receipts_normalised_total",
        "outreach_events_received_total",
        "outreach_events_stored_total",
    ):
        assert after[name] - before.get(name, 0) == 1, name
