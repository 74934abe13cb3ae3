"""A Celery worker rides out the loss of its Redis broker and works again when Redis is back.

The broker here is a private ``redis-server`` (no persistence, like the default deployment's),
so killing it touches nothing else of the test run.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

import psycopg
import pytest
from django.db import connection

from outreach.celery import app

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Redis:
    def __init__(self, tmp_path):
        self.port = _free_port()
        self.dir = tmp_path / "redis"
        self.dir.mkdir()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the private redis-server did not start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path):
    redis = _Redis(tmp_path)
    redis.start()
    yield redis
    redis.kill()


def _scalar(sql: str, params: list | None = None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchone()[0]


def _partition_next() -> str:
    return _scalar(
        "SELECT 'messaging_messageevent_' || to_char(date_trunc('month', now())"
        " + interval '2 month', 'YYYY_MM')"
    )


def _partition_exists(name: str) -> bool:
    return _scalar("SELECT to_regclass(%s) IS NOT NULL", [name])


def _partition_drop(name: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f'DROP TABLE IF EXISTS "{name}"')


def _wait(predicate, what: str, log, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{log.read_text()}"
        time.sleep(0.1)


def test_a_worker_holding_an_unacknowledged_hint_rides_out_a_redis_restart(private_redis, tmp_path):
    """Redis dies while the worker runs a hint (acknowledged only at the end) and waits for
    more. The worker must not exit: it reconnects when Redis is back and takes new hints."""
    queue = f"broker-loss-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"
    partition = _partition_next()
    _partition_drop(partition)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "outreach", "worker", "--pool", "prefork",
         "--concurrency", "2", "--queues", queue, "--loglevel", "INFO",
         "--without-heartbeat", "--without-gossip", "--without-mingle"],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "outreach.settings.dev",
            "DATABASE_URL": f"postgres://root@127.0.0.1:5432/{connection.settings_dict['NAME']}",
            "CELERY_BROKER_URL": private_redis.url,
        },
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    blocker = psycopg.connect(
        f"postgresql://root@127.0.0.1:5432/{connection.settings_dict['NAME']}"
    )
    try:
        _wait(lambda: "ready" in log.read_text() or worker.poll() is not None, "the worker", log)
        assert worker.poll() is None, log.read_text()

        # The partition task blocks on this lock: its hint stays unacknowledged while the
        # worker keeps asking Redis for more.
        blocker.execute("LOCK TABLE messaging_messageevent IN ACCESS EXCLUSIVE MODE")
        with app.connection_for_write(private_redis.url) as conn:
            app.send_task("maintenance.event_partitions_ensure", queue=queue, connection=conn)
        _wait(lambda: _lock_waiters() > 0, "the task to wait on the lock", log)

        private_redis.kill()
        time.sleep(2)
        private_redis.start()
        blocker.rollback()  # the task finishes; its acknowledgement has nowhere to go
        _wait(lambda: _partition_exists(partition), "the running task to finish", log)
        time.sleep(3)
        assert worker.poll() is None, f"the worker exited ({worker.returncode}):\n{log.read_text()}"
        assert "Unrecoverable error" not in log.read_text(), log.read_text()

        # Reconnected: a hint sent through the new Redis is taken and run.
        _partition_drop(partition)
        with app.connection_for_write(private_redis.url) as conn:
            app.send_task("maintenance.event_partitions_ensure", queue=queue, connection=conn)
        _wait(lambda: _partition_exists(partition), "a hint sent after the restart", log)
        assert worker.poll() is None, log.read_text()
    finally:
        blocker.close()
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=30)


def _lock_waiters() -> int:
    return _scalar(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
