"""Real processes for tests: a Celery worker bound to the test database.

Tests that need one run with ``django_db(transaction=True)`` so the worker sees committed rows.
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def test_process_env(**extra: str) -> dict[str, str]:
    """The environment of a child process that must use this test run's database and Redis."""
    name = connection.settings_dict["NAME"]
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "outreach.settings.dev",
        "DATABASE_URL": f"postgres://root@127.0.0.1:5432/{name}",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "SENDGRID_API_HOST": settings.SENDGRID_API_HOST,
        "TWILIO_API_BASE": settings.TWILIO_API_BASE,
        "PUBLIC_BASE_URL": settings.PUBLIC_BASE_URL,
        **extra,
    }


class CeleryWorkerProcess:
    """``celery worker`` in its own process group, consuming private queues of this test.

    ``private_queues=False`` consumes the production queue names instead, for tests that let
    the product publish its own hints (the sweep's dispatch, webhook receipts). Hints earlier
    tests left in those queues name rows that no longer exist; the worker skips them like
    any repeated hint.
    """

    def __init__(
        self,
        *,
        log_dir: Path,
        concurrency: int = 1,
        pool: str = "solo",
        private_queues: bool = True,
        **env: str,
    ):
        self.suffix = uuid.uuid4().hex[:8]
        self.queues = {
            name: f"{name}-{self.suffix}" if private_queues else name
            for name in ("sending", "events", "maintenance")
        }
        self.log_path = log_dir / f"worker-{self.suffix}.log"
        self.concurrency = concurrency
        self.pool = pool
        self.env = env
        self.proc: subprocess.Popen | None = None

    def start(self) -> "CeleryWorkerProcess":
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "outreach",
                "worker",
                "--pool",
                self.pool,
                "--concurrency",
                str(self.concurrency),
                "--queues",
                ",".join(self.queues.values()),
                "--loglevel",
                "INFO",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=ROOT,
            env=test_process_env(**self.env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if "ready" in self.log_path.read_text():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log()}")
            time.sleep(0.1)
        raise RuntimeError(f"worker did not become ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the whole worker: no cleanup, no acks, like a machine dying."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
