"""The platform itself: migrations, health, the Celery pipeline and periodic tasks."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from django_celery_beat.models import PeriodicTask

from outreach.periodic import periodic_tasks_all

pytestmark = pytest.mark.django_db


def test_healthz_reports_ok_when_database_and_redis_answer(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "redis": "ok"}


def test_healthz_names_redis_when_it_is_unreachable(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failing"
    assert list(body["failing"]) == ["redis"]


def test_migrations_apply_on_an_empty_database_and_roll_back():
    """Build a brand-new database with every migration, then unapply and re-apply them."""
    name = f"outreach_migr_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect("postgresql://root@127.0.0.1:5432/postgres", autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    settings_env = {
        **os.environ,
        "DATABASE_URL": f"postgres://root@127.0.0.1:5432/{name}",
        "DJANGO_SETTINGS_MODULE": "outreach.settings.dev",
    }
    try:
        for args in (
            ["migrate", "--noinput"],
            ["migrate", "messaging", "zero", "--noinput"],
            ["migrate", "--noinput"],
            ["makemigrations", "--check", "--dry-run"],
        ):
            done = subprocess.run(
                [sys.executable, "manage.py", *args],
                env=settings_env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, f"manage.py {' '.join(args)} failed:\n{done.stderr}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_periodic_tasks_sync_is_idempotent():
    call_command("periodic_tasks_sync")
    call_command("periodic_tasks_sync")
    names = {item.name for item in periodic_tasks_all()}
    assert names
    stored = PeriodicTask.objects.filter(name__in=names)
    assert stored.count() == len(names)
    assert all(task.enabled for task in stored)


def _partition_exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        return bool(cursor.fetchone()[0])


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_celery_worker_executes_a_task_sent_through_redis(tmp_path):
    """Drop next month's partition, send the maintenance task, and watch a worker recreate it."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 'messaging_messageevent_' || to_char(date_trunc('month', now()) + interval '2 month', 'YYYY_MM')"
        )
        partition = cursor.fetchone()[0]
        cursor.execute(f'DROP TABLE IF EXISTS "{partition}"')
    assert not _partition_exists(partition)

    queue = f"test-{uuid.uuid4().hex[:8]}"
    db_name = connection.settings_dict["NAME"]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://root@127.0.0.1:5432/{db_name}",
        "DJANGO_SETTINGS_MODULE": "outreach.settings.dev",
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "outreach",
            "worker",
            "--pool",
            "solo",
            "--queues",
            queue,
            "--loglevel",
            "WARNING",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
        env=env,
        stdout=open(tmp_path / "worker.log", "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        from messaging.tasks import event_partitions_ensure

        event_partitions_ensure.apply_async(queue=queue)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _partition_exists(partition):
            time.sleep(0.2)
        assert _partition_exists(partition), (tmp_path / "worker.log").read_text()
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)


def _manage(args: list[str], **env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {"DJANGO_SECRET_KEY", "OUTREACH_ENCRYPTION_KEYS", "OUTREACH_SUPPRESSION_HASH_KEYS"}
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_refuse_to_start_without_their_secrets():
    done = _manage(["check", "--settings=outreach.settings.production"])
    assert done.returncode != 0
    assert (
        "missing required setting(s): DJANGO_SECRET_KEY, OUTREACH_ENCRYPTION_KEYS, "
        "OUTREACH_SUPPRESSION_HASH_KEYS" in done.stderr
    )


def test_production_settings_pass_the_deployment_checklist():
    from cryptography.fernet import Fernet

    done = _manage(
        ["check", "--deploy", "--fail-level", "WARNING", "--settings=outreach.settings.production"],
        DJANGO_SECRET_KEY="x" * 20 + uuid.uuid4().hex + uuid.uuid4().hex,
        OUTREACH_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        OUTREACH_SUPPRESSION_HASH_KEYS=uuid.uuid4().hex,
        PUBLIC_BASE_URL="https://outreach.example.com",
        ALLOWED_HOSTS="outreach.example.com",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_a_web_process_loads_every_view_and_keeps_the_loaded_app_out_of_full_collections():
    """Full garbage collections in a web process walk only what requests leave behind: the
    loaded app (every view the URLconf names included) is frozen when the WSGI app loads,
    so a collection during a webhook POST does not stall it for the whole app's objects."""
    probe = (
        "import gc, json, sys\n"
        "import outreach.wsgi\n"
        "print(json.dumps({'frozen': gc.get_freeze_count(),"
        " 'views': 'messaging.webhooks.views' in sys.modules,"
        " 'tracked': len(gc.get_objects())}))\n"
    )
    db_name = connection.settings_dict["NAME"]
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={
            **os.environ,
            "DATABASE_URL": f"postgres://root@127.0.0.1:5432/{db_name}",
            "DJANGO_SETTINGS_MODULE": "outreach.settings.dev",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["views"]
    assert loaded["frozen"] > 50_000
    assert loaded["tracked"] < loaded["frozen"] / 10
