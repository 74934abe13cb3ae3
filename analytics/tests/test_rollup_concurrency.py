"""Real processes at once: webhook normalisers writing events, send outcomes changing, two
refreshers applying deltas, one of them SIGKILLed mid-run. The rollup still equals a recount."""

import datetime
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from analytics.models import HourlyDelta
from analytics.services.rollup import analytics_refresh
from analytics.tests.support import (
    campaign_messages,
    engagement_events,
    recount_rows,
    rollup_rows,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _events_cleanup(event_rows_cleanup):
    """The partitioned event table is unmanaged: see ``event_rows_cleanup``."""


def _python(code: str, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://root@127.0.0.1:5432/{connection.settings_dict['NAME']}",
        "DJANGO_SETTINGS_MODULE": "outreach.settings.dev",
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-c", "import django; django.setup()\n" + code],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


WRITER = """
import json, sys
from analytics.tests.support import receipt_post
from outreach.tenancy.models import Tenant
tenant = Tenant.objects.get(pk={tenant})
batches = json.loads(open({path!r}).read())
for batch in batches:
    receipt_post(tenant, batch)
print("writer done", len(batches))
"""

OUTCOMES = """
import random
from messaging.models import Message
rng = random.Random({seed})
ids = {ids}
for _ in range(60):
    # Sends whose outcome was unknown, then reconciled: the counters must follow.
    pick = rng.sample(ids, 3)
    Message.objects.filter(pk__in=pick, status="accepted").update(status="needs_review", status_rank=1)
    Message.objects.filter(pk__in=pick, status="needs_review").update(status="accepted", status_rank=10)
print("outcomes done")
"""

REFRESHER = """
import time
from analytics.services.rollup import analytics_refresh
end = time.monotonic() + {seconds}
runs = 0
while time.monotonic() < end:
    runs += analytics_refresh(batch=7).ran
print("refresher done", runs)
"""


def test_concurrent_writers_and_refreshers_with_a_crash_still_equal_the_recount(tenant, tmp_path):
    top = timezone.now().replace(minute=0, second=0, microsecond=0)
    hours = [top - datetime.timedelta(hours=h) for h in (3, 2, 1)]
    _campaign, messages = campaign_messages(tenant, hours=hours, per_hour=30)
    rng = random.Random(13)
    events = engagement_events(messages, rng=rng)
    deliveries = [e for e in events for _ in range(rng.randint(1, 3))]
    rng.shuffle(deliveries)
    halves = [deliveries[0::2], deliveries[1::2]]
    import json

    procs = []
    for n, half in enumerate(halves):
        path = tmp_path / f"batches{n}.json"
        path.write_text(json.dumps([half[i : i + 20] for i in range(0, len(half), 20)]))
        procs.append(
            _python(WRITER.format(tenant=tenant.pk, path=str(path)), tmp_path / f"w{n}.log")
        )
    ids = [m.pk for m in messages]
    procs.append(_python(OUTCOMES.format(seed=1, ids=ids), tmp_path / "o.log"))
    refreshers = [_python(REFRESHER.format(seconds=20), tmp_path / f"r{n}.log") for n in range(2)]
    # A third refresher is killed without warning while it works.
    victim = _python(REFRESHER.format(seconds=60), tmp_path / "victim.log")
    time.sleep(3)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)

    for proc in procs + refreshers:
        assert proc.wait(timeout=180) == 0, (tmp_path / "w0.log").read_text()[-2000:]
    assert "refresher done" in (tmp_path / "r0.log").read_text()

    analytics_refresh()
    assert not HourlyDelta.objects.filter(tenant=tenant).exists()
    assert rollup_rows(tenant.pk) == recount_rows(tenant.pk)
    total_sent = sum(v["sent"] for v in rollup_rows(tenant.pk).values())
    assert total_sent == len(messages)
