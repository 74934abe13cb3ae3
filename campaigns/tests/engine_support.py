"""Set-up shared by the engine proof tests (test_engine_sends, _transitions, _e2e).

Time travel instead of sleeping: due times and leases are moved with SQL (Postgres owns
time), then a sweep runs. ``sweep_inline`` runs the real sweep and hands each batch straight
to the real batch services in this process; the ``engine_worker`` fixture is a real Celery
worker consuming the production queue names, so the product's own dispatch and webhook
hints reach it.
"""

import datetime
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from campaigns import tasks
from campaigns.models import Campaign, Enrollment, Lead, ScheduledAction
from campaigns.services import actions, scheduler
from campaigns.services.enrollment import enrollments_create
from messaging.emulator.process import EmulatorProcess
from messaging.models import Message, SenderIdentity
from messaging.services import sending, sending_sms
from outreach.tenancy.models import Tenant
from outreach.testing import processes
from outreach.testing.factories import LeadFactory, SenderIdentityFactory, campaign_with_plan

EVERY_DAY = [0, 1, 2, 3, 4, 5, 6]
# The whole day: tests must not depend on the hour they run at.
ALL_DAY = {
    "window_days": EVERY_DAY,
    "window_start": datetime.time(0, 0),
    "window_end": datetime.time(23, 59, 59, 999999),
}


def _variant(subject: str, text: str) -> dict:
    return {"name": "main", "subject": subject, "text": text}


# One email, then done: what the duplicate-send tests need.
PLAN_ONE_EMAIL = {
    "start": "intro",
    "steps": {
        "intro": {
            "type": "email",
            "variants": [
                _variant(
                    "Hello {{ lead.first_name }}",
                    "Hi {{ lead.first_name }},\n\nA short note.\n\nUnsubscribe: {{ unsubscribe_url }}",
                )
            ],
            "next": "done",
        },
        "done": {"type": "end", "outcome": "sent"},
    },
}

# Branches on engagement: an open leads to a threaded follow-up, silence to a threaded nudge,
# a reply ends the journey as replied, a bounce as bounced.
PLAN_BRANCHES = {
    "name": "Branches",
    "start": "intro",
    "steps": {
        "intro": {
            "type": "email",
            "variants": [
                _variant(
                    "Quick question, {{ lead.first_name }}",
                    "Hi {{ lead.first_name }},\n\nWorth a chat?\n\nUnsubscribe: {{ unsubscribe_url }}",
                )
            ],
            "on": {
                "open": "follow_up",
                "no_open": {"after": "3d", "to": "nudge"},
                "reply": "replied",
                "bounce": "bounced",
                "unsubscribe": "unsubscribed",
            },
        },
        "follow_up": {
            "type": "email",
            "thread_with": "intro",
            "variants": [
                {
                    "name": "main",
                    "text": "Glad you had a look, {{ lead.first_name }}.\n\n{{ unsubscribe_url }}",
                }
            ],
            "on": {
                "reply": "replied",
                "no_reply": {"after": "4d", "to": "no_response"},
                "unsubscribe": "unsubscribed",
            },
        },
        "nudge": {
            "type": "email",
            "thread_with": "intro",
            "variants": [
                {
                    "name": "main",
                    "text": "Bumping this up, {{ lead.first_name }}.\n\n{{ unsubscribe_url }}",
                }
            ],
            "on": {
                "reply": "replied",
                "no_reply": {"after": "4d", "to": "no_response"},
                "unsubscribe": "unsubscribed",
            },
        },
        "replied": {"type": "end", "outcome": "replied"},
        "bounced": {"type": "end", "outcome": "bounced"},
        "unsubscribed": {"type": "end", "outcome": "unsubscribed"},
        "no_response": {"type": "end", "outcome": "no_response"},
    },
}


def identity_all_day(tenant: Tenant, **fields: Any) -> SenderIdentity:
    """An identity that may send now, with caps high enough for every test's volume."""
    fields = {**ALL_DAY, "daily_cap": 10_000, "hourly_cap": 10_000, **fields}
    return SenderIdentityFactory(tenant=tenant, **fields)


def campaign_enrolled(
    tenant: Tenant,
    *,
    plan: dict,
    emails: list[str],
    identity: SenderIdentity | None = None,
    **lead_fields: Any,
) -> tuple[Campaign, list[Enrollment]]:
    """An active campaign on ``plan`` with one lead per address, enrolled through the service
    (enrollment and first action in one transaction), in the order of ``emails``."""
    identity = identity or identity_all_day(tenant)
    campaign = campaign_with_plan(tenant=tenant, plan=plan, identity=identity)
    leads = [LeadFactory(tenant=tenant, email=email, **lead_fields) for email in emails]
    result = enrollments_create(
        tenant_id=tenant.pk, campaign_id=campaign.pk, lead_ids=[lead.pk for lead in leads]
    )
    assert len(result.enrolled) == len(leads), result.skipped
    by_lead = {row["lead_id"]: row["enrollment_id"] for row in result.enrolled}
    enrollments = Enrollment.objects.in_bulk(list(by_lead.values()))
    return campaign, [enrollments[by_lead[lead.pk]] for lead in leads]


def actions_make_due(*, kind: str | None = None, enrollment_ids: list[int] | None = None) -> int:
    """Time travel: pending actions (of ``kind``, of these enrollments) become due now."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE campaigns_scheduledaction
            SET due_at = now() - interval '1 second'
            WHERE status = 'pending' AND (%s::text IS NULL OR kind = %s::text)
              AND (%s::bigint[] IS NULL OR enrollment_id = ANY(%s::bigint[]))
            """,
            [kind, kind, enrollment_ids, enrollment_ids],
        )
        return cursor.rowcount


def leases_expire() -> int:
    """Time travel: every claimed action's lease ran out (its worker is presumed dead)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE campaigns_scheduledaction SET lease_expires_at = now() - interval '1 second'"
            " WHERE status = 'claimed'"
        )
        return cursor.rowcount


def inline_dispatch(kind: str, items: list[list[int]]) -> None:
    """What a worker does with a batch, run in this process instead of through the broker."""
    if kind == "send":
        sending.message_send_batch(items=items)
    elif kind == "sms":
        sending_sms.sms_send_batch(items=items)
    else:
        actions.scheduled_actions_run(kind=kind, items=items)


def sweep_inline() -> int:
    """A real sweep whose batches run here, after it returned (the sweep publishes from a
    helper thread, which cannot see an uncommitted test transaction)."""
    batches: list[tuple[str, list[list[int]]]] = []
    total = scheduler.scheduled_actions_sweep(
        dispatch=lambda kind, items: batches.append((kind, items)), batch_size=50
    )
    for kind, items in batches:
        inline_dispatch(kind, items)
    return total


def beat_until(predicate: Callable[[], Any], *, timeout: float = 60.0, what: str) -> Any:
    """Sweep like beat does (the product's dispatch, hints to the worker) until
    ``predicate`` holds: actions held for a few seconds come due and are sent on."""

    def swept() -> Any:
        scheduler.scheduled_actions_sweep(dispatch=tasks._dispatch)
        return predicate()

    return wait_until(swept, timeout=timeout, what=what)


def pending_actions(enrollment: Enrollment, kind: str | None = None) -> list[ScheduledAction]:
    rows = ScheduledAction.objects.filter(enrollment=enrollment, status="pending")
    if kind:
        rows = rows.filter(kind=kind)
    return list(rows.order_by("id"))


def received_per_recipient(emulator: EmulatorProcess) -> Counter:
    """How many mails the emulator accepted for each address."""
    return Counter(
        entry["email"].lower() for record in emulator.messages() for entry in record["to"]
    )


def wait_until(
    predicate: Callable[[], Any], *, timeout: float = 30.0, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it is truthy (returned) or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def lead_emails(prefix: str, count: int, tag: str = "") -> list[str]:
    suffix = f"+{tag}" if tag else ""
    return [f"{prefix}{n}{suffix}@prospect.example.com" for n in range(count)]


def enrollment_states(enrollments: list[Enrollment]) -> Counter:
    return Counter(
        Enrollment.objects.filter(pk__in=[e.pk for e in enrollments]).values_list(
            "state", flat=True
        )
    )


def lead_of(enrollment: Enrollment) -> Lead:
    return Lead.objects.get(pk=enrollment.lead_id)


@pytest.fixture
def engine_settings(settings, sendgrid_emulator: EmulatorProcess) -> EmulatorProcess:
    """This process sends to the test emulator, with no jitter (due times are exact)."""
    settings.SENDGRID_API_HOST = sendgrid_emulator.host
    settings.SEND_JITTER_SECONDS = 0
    return sendgrid_emulator


# A worker's settings come from its environment: no jitter, and a short reconcile grace so a
# test can watch an unknown send become `needs_review` without waiting fifteen minutes.
WORKER_ENV = {"SEND_JITTER_SECONDS": "0", "SEND_RECONCILE_GRACE_SECONDS": "2"}


@pytest.fixture(scope="module")
def engine_worker(
    django_db_setup, django_db_blocker, sendgrid_emulator_session, tmp_path_factory
) -> Iterator[processes.CeleryWorkerProcess]:
    """A real worker (two processes) on the production queue names of this run's Redis,
    sending to the session's emulator. One per test module: starting one costs seconds."""
    with django_db_blocker.unblock():
        worker = processes.CeleryWorkerProcess(
            log_dir=tmp_path_factory.mktemp("engine-worker"),
            pool="prefork",
            concurrency=2,
            private_queues=False,
            SENDGRID_API_HOST=sendgrid_emulator_session.host,
            **WORKER_ENV,
        )
        worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def worker_idle(worker: processes.CeleryWorkerProcess) -> Callable[[], bool]:
    """True once the worker has finished every task it received (by its log)."""

    def idle() -> bool:
        log = worker.log()
        return log.count("] received") <= log.count(" succeeded in ") + log.count(" raised ")

    return idle


@pytest.fixture
def events_cleanup() -> Iterator[None]:
    """The event table is partitioned and unmanaged, so a transactional test's flush leaves
    it alone: remove what the test wrote."""
    yield
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM messaging_messageevent")


def zone_at_local_hour(hour: int) -> str:
    """A fixed-offset zone in which it is now ``hour`` o'clock (tests run at any time)."""
    offset = (hour - timezone.now().hour + 11) % 24 - 11  # -11 … +12 hours from UTC
    return f"Etc/GMT{-offset:+d}"  # POSIX sign: Etc/GMT-3 is UTC+3


def emulator_events_for(
    sink: Any, message: Message, types: set[str], timeout: float = 10.0
) -> list[dict]:
    """The Event Webhook events the emulator posted to ``sink`` for ``message`` (found by the
    id SendGrid echoes from our ``custom_args``), once all of ``types`` have arrived."""

    def arrived() -> list[dict] | None:
        events = [
            event
            for request in sink.requests
            for event in json.loads(request.body)
            if event.get("outreach_message_id") == str(message.public_id)
        ]
        return events if {e["event"] for e in events} >= types else None

    return wait_until(arrived, timeout=timeout, what=f"{sorted(types)} events of {message}")


def events_store(tenant: Tenant, events: list[dict]) -> list[int]:
    """Store webhook events the way the normaliser does (the engine reacts in the same
    transaction); returns the ids of the events that were new."""
    from messaging.services.events import message_events_store

    with transaction.atomic():
        return message_events_store(
            tenant_id=tenant.pk, raw_events=events, received_at=timezone.now(), shadow_mode=False
        ).new_event_ids
