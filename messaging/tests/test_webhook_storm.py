"""Event Webhook normalisation under real concurrency: Celery workers, sweepers, a SIGKILL."""

import datetime
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from messaging.models import Message, MessageEvent, MessageEventKey, WebhookReceipt
from messaging.services.receipts import webhook_receipts_sweep
from messaging.tests.webhook_support import campaign_message_make, message_make, sg_event
from outreach.testing.factories import LeadFactory
from suppression.models import Suppression

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _events_cleanup(event_rows_cleanup):
    """The partitioned event table is unmanaged: see ``event_rows_cleanup``."""


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://root@127.0.0.1:5432/{connection.settings_dict['NAME']}",
        "DJANGO_SETTINGS_MODULE": "outreach.settings.dev",
        "LOG_LEVEL": "WARNING",
    }


def _python(code: str, log: Path) -> subprocess.Popen:
    prelude = "import django; django.setup()\n"
    return subprocess.Popen(
        [sys.executable, "-c", prelude + code],
        cwd=ROOT,
        env=_env(),
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _worker(queue: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "outreach",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            "2",
            "--queues",
            queue,
            "--loglevel",
            "WARNING",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"{queue}-{uuid.uuid4().hex[:6]}@%h",
        ],
        cwd=ROOT,
        env=_env(),
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _wait(condition, timeout: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("timed out; logs:\n" + "\n".join(p.read_text()[-3000:] for p in logs))


def _receipt(tenant, events) -> int:
    # Created without the on-commit hint: the test decides who hears about it.
    return WebhookReceipt.objects.create(
        tenant=tenant, kind="events", body=json.dumps(events).encode(), headers={}
    ).pk


def test_a_storm_of_duplicated_shuffled_batches_stores_each_event_once(tenant, tmp_path):
    """20 shuffled copies of one batch, each task sent twice, raced by 2 Celery workers
    (4 processes) and 2 sweeper processes: every event is stored once, every status and
    suppression is right, no transaction fails (the lock order prevents deadlocks)."""
    now = time.time() - 3600
    leads = [LeadFactory(tenant=tenant) for _ in range(10)]
    messages = [message_make(tenant, lead=leads[i % 10], sent_at=None) for i in range(40)]
    batch = []
    for i, message in enumerate(messages):
        batch += [
            sg_event(message, "processed", at=now),
            sg_event(message, "delivered", at=now + 60),
            sg_event(message, "open", at=now + 600),
        ]
        if i % 4 == 0:
            batch.append(sg_event(message, "click", at=now + 700, useragent="Mozilla/5.0"))
        if i % 10 == 1:
            batch.append(sg_event(message, "bounce", type="bounce", at=now + 120))
        if i % 10 == 2:  # lead 2 collects 4 blocked bounces: past the threshold of 3
            batch.append(sg_event(message, "bounce", type="blocked", at=now + 120))
    batch += [sg_event(None, "delivered", email=f"orphan{i}@x.test") for i in range(20)]
    no_id = sg_event(None, "open", email="noid@x.test")
    del no_id["sg_event_id"]
    batch.append(no_id)

    receipt_ids = []
    for _ in range(20):
        copy = [dict(e) for e in batch]
        random.shuffle(copy)
        receipt_ids.append(_receipt(tenant, copy))

    queue = f"test-storm-{uuid.uuid4().hex[:8]}"
    logs = [tmp_path / "w1.log", tmp_path / "w2.log", tmp_path / "s1.log", tmp_path / "s2.log"]
    sweep = (
        "import time\n"
        "from messaging.services.receipts import webhook_receipts_sweep\n"
        "deadline = time.monotonic() + 60\n"
        "while time.monotonic() < deadline and webhook_receipts_sweep(grace_seconds=0) >= 0:\n"
        "    time.sleep(0.05)\n"
    )
    processes = [_worker(queue, logs[0]), _worker(queue, logs[1])]
    try:
        from messaging.tasks_events import webhook_receipt_normalise

        for receipt_id in receipt_ids + receipt_ids:
            webhook_receipt_normalise.apply_async(args=[receipt_id], queue=queue)
        processes += [_python(sweep, logs[2]), _python(sweep, logs[3])]
        _wait(
            lambda: not WebhookReceipt.objects.filter(processed_at__isnull=True).exists(),
            120,
            logs,
        )
    finally:
        for process in processes:
            _stop(process)

    unique = len(batch)
    assert MessageEvent.objects.filter(tenant_id=tenant.pk).count() == unique
    assert MessageEventKey.objects.filter(tenant=tenant).count() == unique
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM (SELECT provider_event_id FROM messaging_messageevent"
            " WHERE tenant_id = %s GROUP BY provider_event_id HAVING count(*) > 1) d",
            [tenant.pk],
        )
        assert cursor.fetchone()[0] == 0
    receipts = list(WebhookReceipt.objects.all())
    assert all(r.event_count == unique for r in receipts)
    assert [r.last_error for r in receipts if r.last_error] == []
    assert sum(MessageEvent.objects.filter(receipt_id=r.pk).count() for r in receipts) == unique

    for i, message in enumerate(messages):
        message.refresh_from_db()
        if i % 10 in (1, 2):
            expected = Message.Status.BOUNCED
        elif i % 4 == 0:
            expected = Message.Status.CLICKED
        else:
            expected = Message.Status.OPENED
        assert message.status == expected, (i, message.status)
        assert message.smtp_id and message.sent_at is not None

    suppressed = dict(Suppression.objects.filter(tenant=tenant).values_list("email", "reason"))
    assert suppressed == {
        leads[1].email.lower(): "hard_bounce",
        leads[2].email.lower(): "repeated_soft_bounce",
    }


def test_a_worker_killed_mid_batch_loses_nothing(tenant, tmp_path):
    """SIGKILL a process holding a receipt half-way through its transaction: nothing of it
    commits, and the sweeper later stores every event exactly once."""
    message = campaign_message_make(tenant)
    receipt_id = _receipt(
        tenant, [sg_event(message, "delivered"), sg_event(message, "bounce", type="bounce")]
    )
    log = tmp_path / "victim.log"
    victim = _python(
        "import time\n"
        "from campaigns.services import transitions\n"
        "def stall(**kwargs):\n"
        "    print('stalling', flush=True)\n"
        "    time.sleep(120)\n"
        "transitions.enrollment_events_apply = stall\n"
        "from messaging.services.receipts import webhook_receipt_normalise\n"
        f"webhook_receipt_normalise(receipt_id={receipt_id})\n",
        log,
    )
    try:
        _wait(lambda: "stalling" in log.read_text(), 60, [log])
        # Mid-transaction: events inserted but not committed, the receipt row locked.
        assert MessageEvent.objects.filter(tenant_id=tenant.pk).count() == 0
        assert webhook_receipts_sweep(grace_seconds=0) == 0  # locked: skipped, not blocked
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
    finally:
        _stop(victim)

    def swept() -> bool:
        return webhook_receipts_sweep(grace_seconds=0) == 1

    _wait(swept, 30, [log])  # the killed session's locks go once Postgres notices
    receipt = WebhookReceipt.objects.get()
    assert receipt.processed_at is not None and receipt.attempts == 2
    assert MessageEvent.objects.filter(tenant_id=tenant.pk).count() == 2
    assert Suppression.objects.filter(tenant=tenant, reason="hard_bounce").count() == 1
    message.refresh_from_db()
    assert message.status == Message.Status.BOUNCED
    assert receipt.received_at < timezone.now() + datetime.timedelta(seconds=1)
