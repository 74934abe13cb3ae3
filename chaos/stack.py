"""The application processes of a chaos run, pointed at the private PostgreSQL and Redis.

Web is gunicorn, workers are ``celery worker`` (prefork), beat is ``celery beat`` with the
database scheduler, exactly as the Procfile runs them; the SendGrid emulator posts its signed
webhooks to the web process. Every process is a child in its own group, SIGKILLed if the
driver dies.
"""

from __future__ import annotations

import os
import random
import sys
import time
import urllib.request
from pathlib import Path

from chaos.services import Child, PrivatePostgres, PrivateRedis, free_port, wait_for
from messaging.emulator.process import EmulatorProcess

ROOT = Path(__file__).resolve().parents[1]
# pytest-django's name for the test database of ``outreach_chaos_tests`` (case 7).
CASE7_TEST_DATABASE = "test_outreach_chaos_tests"


class Timing:
    """The few settings a run shortens so that recovery fits in minutes, not hours."""

    def __init__(self, *, short: bool):
        self.lease_seconds = 6 if short else 15
        self.reconcile_grace_seconds = 6 if short else 15
        self.retry_backoff_seconds = 3
        self.provider_timeout_seconds = 2.0
        self.receipt_grace_seconds = 5
        # The sweeps that recover webhooks whose hint was lost (Redis down when they came)
        # run every 30 or 60 s; here every 5, so a recovery waits seconds, not a minute.
        self.receipt_sweeps_every_seconds = 5
        self.receipt_sweeps = (
            "maintenance.webhook_receipts_sweep",
            "maintenance.inbound_receipts_sweep",
            "maintenance.sms_receipts_sweep",
        )


def app_env(pg: PrivatePostgres, redis: PrivateRedis, timing: Timing, **extra: str) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SENDGRID_", "OUTREACH_TEST_DB", "DJANGO_", "CELERY_"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "outreach.settings.dev",
            "DJANGO_DEBUG": "0",  # DEBUG keeps every query in memory: not for a long run
            "DATABASE_URL": pg.url,
            "REDIS_URL": redis.url,
            "CELERY_BROKER_URL": redis.url,
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "SEND_JITTER_SECONDS": "0",
            "SEND_GLOBAL_PER_SECOND": "0",
            "SEND_THREADS": "8",
            "SCHEDULED_ACTION_LEASE_SECONDS": str(timing.lease_seconds),
            "SEND_RECONCILE_GRACE_SECONDS": str(timing.reconcile_grace_seconds),
            "SEND_RETRY_BACKOFF_SECONDS": str(timing.retry_backoff_seconds),
            "SENDGRID_TIMEOUT_SECONDS": str(timing.provider_timeout_seconds),
            "WEBHOOK_RECEIPT_GRACE_SECONDS": str(timing.receipt_grace_seconds),
            "DB_CONN_MAX_AGE": "60",
            **extra,
        }
    )
    return env


class Stack:
    def __init__(self, root: Path, pg: PrivatePostgres, redis: PrivateRedis, timing: Timing):
        self.root, self.pg, self.redis, self.timing = root, pg, redis, timing
        self.logs = root / "logs"
        self.web_port = free_port()
        self.emulator: EmulatorProcess | None = None
        self.web: Child | None = None
        self.workers: list[Child] = []
        self.beats: list[Child] = []
        self.extras: list[Child] = []
        self.env: dict[str, str] = {}
        self.restarts: list[str] = []  # "worker1 (exit 1)": every restart by the supervisor

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self, *, workers: int = 2) -> None:
        self.emulator = EmulatorProcess(
            port=0,
            quiet=True,
            tags_only=True,
            delay_min=0.2,
            delay_max=1.0,
            store_size=1_000_000,
            events_url_template=f"{self.web_url}/webhooks/sendgrid/events/{{tenant}}/",
            inbound_url_template="",
            webhook_batch_size=200,
            webhook_concurrency=4,
            # SendGrid retries for 72 hours; here long enough to outlast any outage we cause.
            webhook_retries=12,
            webhook_retry_backoff=0.5,
            webhook_timeout=10,
            seed=13,
        ).start()
        self.env = app_env(self.pg, self.redis, self.timing, SENDGRID_API_HOST=self.emulator.host)
        self.web = self._child(
            "web",
            [
                sys.executable, "-m", "gunicorn", "outreach.wsgi:application", "--bind",
                f"127.0.0.1:{self.web_port}", "--workers", "2", "--threads", "4",
                "--timeout", "60", "--graceful-timeout", "5",
            ],
        ).start()  # fmt: skip
        for _ in range(workers):
            self.worker_add()
        self.beat_add()
        wait_for(self.web_ready, timeout=60, what="gunicorn")

    def _child(self, name: str, argv: list[str], env: dict | None = None) -> Child:
        return Child(name, argv, env=env or self.env, log=self.logs / f"{name}.log", cwd=ROOT)

    def worker_argv(self, name: str) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", "outreach", "worker", "--queues",
            "sending,events,maintenance", "--pool", "prefork", "--concurrency", "2",
            "--loglevel", "WARNING", "--hostname", f"{name}@%h", "--without-gossip",
            "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip

    def worker_add(self) -> Child:
        name = f"worker{len(self.workers) + 1}"
        worker = self._child(name, self.worker_argv(name)).start()
        self.workers.append(worker)
        return worker

    def beat_add(self) -> Child:
        name = f"beat{len(self.beats) + 1}"
        beat = self._child(
            name,
            [
                sys.executable, "-m", "celery", "-A", "outreach", "beat", "--scheduler",
                "django_celery_beat.schedulers:DatabaseScheduler", "--loglevel", "WARNING",
                "--pidfile", "", "--schedule", str(self.root / f"{name}-schedule"),
            ],
        ).start()  # fmt: skip
        self.beats.append(beat)
        return beat

    def sweeper_add(self) -> Child:
        """A process running the periodic sweeps that act on rows back to back, with no
        grace period (a second 'beat' without Celery, racing the hinted tasks): scheduled
        actions, SendGrid webhook receipts, Inbound Parse and Twilio receipts, rollups."""
        name = f"sweeper{len(self.extras) + 1}"
        code = (
            "import time, django\n"
            "django.setup()\n"
            "from campaigns.tasks import scheduled_actions_sweep\n"
            "from messaging.services.receipts import webhook_receipts_sweep\n"
            "from messaging.services.inbound import inbound_receipts_sweep\n"
            "from messaging.services.sms_events import sms_receipts_sweep\n"
            "from analytics.services.rollup import analytics_refresh\n"
            "from django.db import connection\n"
            "while True:\n"
            "    try:\n"
            "        scheduled_actions_sweep()\n"
            "        webhook_receipts_sweep(grace_seconds=0)\n"
            "        inbound_receipts_sweep(grace_seconds=0)\n"
            "        sms_receipts_sweep(grace_seconds=0)\n"
            "        analytics_refresh(batch=500, budget_seconds=1)\n"
            "    except Exception as exc:\n"
            "        print('sweeper error', type(exc).__name__, exc, flush=True)\n"
            "        connection.close()\n"
            "    time.sleep(0.3)\n"
        )
        sweeper = self._child(name, [sys.executable, "-c", code]).start()
        self.extras.append(sweeper)
        return sweeper

    def web_ready(self) -> bool:
        with urllib.request.urlopen(self.web_url + "/healthz", timeout=2) as response:
            return response.status == 200

    def kill_random_worker(self, rng: random.Random, down_seconds: float) -> str:
        worker = rng.choice(self.workers)
        worker.kill()
        time.sleep(down_seconds)
        worker.start()
        return worker.name

    def processes_restart_on_death(self) -> list[str]:
        """Celery gives up on a broker that stays away long enough; a supervisor restarts it.
        Returns the names restarted (a real deployment's systemd or Kubernetes does this)."""
        restarted = []
        for child in [self.web, *self.workers, *self.beats, *self.extras]:
            if child is not None and not child.alive:
                code = child.proc.returncode if child.proc is not None else None
                child.start()
                restarted.append(f"{child.name} (exit {code})")
        self.restarts += restarted
        return restarted

    def stop(self) -> None:
        for child in [*self.extras, *self.beats, *self.workers, self.web]:
            if child is not None:
                child.stop(timeout=10)
        if self.emulator is not None:
            self.emulator.stop()
