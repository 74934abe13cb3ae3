"""The usual way, for comparison: one Celery task per message, one per webhook event.

What a Django + Celery app typically does, built here on the same machine, database, Redis,
emulator and worker settings as the product's benchmarks so the figures compare designs:

- **sends**: the scheduler publishes one task per due message (``apply_async``; its rate is
  the peer's *dispatch* figure); each task reads its lead, checks the suppression list,
  writes the ledger row ``sending``, builds the mail with ``sendgrid.helpers.mail.Mail``,
  sends it with ``SendGridAPIClient.send`` (a new connection per request) and marks the row
  ``accepted``. Sends/s is the ledger's accepted rows per second between the 10th and 90th
  percentile of their times, after ``--warmup``.
- **events**: the webhook view queues one task per event; each task claims the event's id in
  the dedup table, finds its message, stores the event and moves the message's status.
  Events/s is from the first task published to the last event stored.

No batching, no kept-alive connections, no set-based SQL.

Run as a script it is the driver; ``celery -A bench.peer_send worker`` runs its worker (this
module is also its Celery app). Needs a ``bench`` database and a Redis db other than 0::

    DATABASE_URL=postgres://root@127.0.0.1:5432/outreach_bench_send \\
    REDIS_URL=redis://127.0.0.1:6379/12 python bench/peer_send.py --messages 5000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "outreach.settings.dev")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from celery import Celery  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

QUEUE = "peer-sending"
# The project's Celery settings (broker, JSON, connection reuse across tasks), so the peer
# differs from the product in its design only.
app = Celery("peer")
app.config_from_object("django.conf:settings", namespace="CELERY")


@app.task(name="peer.send_one", ignore_result=True)
def send_one(lead_id: int, identity_id: int) -> None:
    from sendgrid import SendGridAPIClient
    from sendgrid.helpers.mail import CustomArg, Mail

    from campaigns.models import Lead
    from messaging.models import Message, SenderIdentity
    from suppression.selectors import suppression_check

    lead = Lead.objects.get(pk=lead_id)
    identity = SenderIdentity.objects.get(pk=identity_id)
    if suppression_check(tenant_id=lead.tenant_id, emails=[lead.email]):
        return
    message = Message.objects.create(
        tenant_id=lead.tenant_id,
        sender_identity=identity,
        lead=lead,
        to_email=lead.email,
        subject=f"Quick question, {lead.first_name}",
        status=Message.Status.SENDING,
    )
    mail = Mail(
        from_email=(identity.from_email, identity.from_name),
        to_emails=lead.email,
        subject=message.subject,
        plain_text_content=(
            f"Hi {lead.first_name},\n\nWould a 15-minute call about outreach at "
            f"{lead.company} be useful next week?\n\n{identity.signature}"
        ),
    )
    mail.custom_arg = CustomArg("outreach_message_id", str(message.public_id))
    client = SendGridAPIClient(api_key=settings.SENDGRID_EMULATOR_KEY, host=os.environ["PEER_HOST"])
    response = client.send(mail)
    Message.objects.filter(pk=message.pk).update(
        status=Message.Status.ACCEPTED,
        provider_message_id=response.headers.get("X-Message-Id", ""),
        sent_at=dt.datetime.now(dt.UTC),
    )


_STATUS = {"delivered": "delivered", "open": "opened", "click": "clicked", "bounce": "bounced"}


@app.task(name="peer.event_one", ignore_result=True)
def event_one(tenant_id: int, event: dict) -> None:
    from django.db import IntegrityError, transaction

    from messaging.models import Message, MessageEvent, MessageEventKey

    with transaction.atomic():
        try:
            with transaction.atomic():
                MessageEventKey.objects.create(
                    tenant_id=tenant_id, provider_event_id=event["sg_event_id"]
                )
        except IntegrityError:
            return  # seen before
        message = Message.objects.filter(
            tenant_id=tenant_id, public_id=event["outreach_message_id"]
        ).first()
        occurred = dt.datetime.fromtimestamp(event["timestamp"], tz=dt.UTC)
        MessageEvent.objects.create(
            tenant_id=tenant_id,
            message=message,
            enrollment_id=None,
            event_type=event["event"],
            occurred_at=occurred,
            received_at=dt.datetime.now(dt.UTC),
            provider_event_id=event["sg_event_id"],
            email=event["email"],
            raw=event,
        )
        status = _STATUS.get(event["event"])
        if message is not None and status:
            Message.objects.filter(pk=message.pk).update(status=status, last_event_at=occurred)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000, help="measured sends")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--events", type=int, default=20_000, help="webhook events")
    parser.add_argument(
        "--concurrency", type=int, default=8, help="prefork processes (8 was its best of 2/4/8)"
    )
    parser.add_argument("--emulator-port", type=int, default=18601)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    return parser.parse_args()


def fixture(total: int) -> tuple[int, int, list[int]]:
    from campaigns.models import Lead
    from campaigns.services.leads import lead_bulk_create
    from messaging.services.identities import sender_identity_create
    from outreach.tenancy.services import tenant_create

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
    tenant = tenant_create(name=f"Peer bench {stamp}", slug=f"peerbench-{stamp}").tenant
    identity = sender_identity_create(
        tenant_id=tenant.pk,
        data={
            "from_name": "Bench AE",
            "from_email": "ae@sender.example.com",
            "reply_to": "ae@sender.example.com",
            "signature": "Bench AE\nAccount Executive",
            "timezone": "UTC",
        },
    )
    for start in range(0, total, 10_000):
        rows = [
            (
                index,
                {
                    "email": f"peer{index}@prospect.example.com",
                    "first_name": f"First{index}",
                    "last_name": "Lead",
                    "company": f"Prospect {index % 97}",
                },
            )
            for index in range(start, min(total, start + 10_000))
        ]
        lead_bulk_create(tenant_id=tenant.pk, rows=rows)
    leads = sorted(Lead.objects.for_tenant(tenant.pk).values_list("pk", flat=True))
    return tenant.pk, identity.pk, leads


def events_phase(args: argparse.Namespace, tenant_id: int, deadline: float) -> float:
    """Queue one task per event (delivered, then an open, for the sent messages) and time
    them until the last one is stored."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT public_id, to_email FROM messaging_message WHERE tenant_id = %s"
            " AND status = 'accepted' ORDER BY id",
            [tenant_id],
        )
        messages = cursor.fetchall()
    now = int(time.time())
    events = [
        {
            "event": ("delivered", "open")[n // len(messages) % 2],
            "sg_event_id": f"peer-{tenant_id}-{n}",
            "timestamp": now,
            "email": messages[n % len(messages)][1],
            "outreach_message_id": str(messages[n % len(messages)][0]),
        }
        for n in range(args.events)
    ]
    started = time.perf_counter()
    for event in events:
        event_one.apply_async(args=[tenant_id, event], queue=QUEUE)
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM messaging_messageevent WHERE tenant_id = %s", [tenant_id]
            )
            if cursor.fetchone()[0] >= args.events:
                break
        time.sleep(0.2)
    return args.events / (time.perf_counter() - started)


def accepted_times(tenant_id: int) -> list[float]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT extract(epoch FROM sent_at) FROM messaging_message"
            " WHERE tenant_id = %s AND sent_at IS NOT NULL ORDER BY sent_at",
            [tenant_id],
        )
        return [float(row[0]) for row in cursor.fetchall()]


def run(args: argparse.Namespace) -> dict:
    from messaging.emulator.process import EmulatorProcess

    if "bench" not in settings.DATABASES["default"]["NAME"]:
        sys.exit("peer_send: DATABASE_URL must name a bench database")
    if settings.REDIS_URL.rstrip("/").endswith("/0"):
        sys.exit("peer_send: use a Redis db of its own (REDIS_URL=redis://.../N, N > 0)")
    tenant_id, identity_id, leads = fixture(args.warmup + args.messages)
    log_dir = Path(tempfile.mkdtemp(prefix="peer-bench-"))
    with ExitStack() as stack:
        emulator = stack.enter_context(
            EmulatorProcess(
                port=args.emulator_port,
                quiet=True,
                tags_only=True,
                store_size=1000,
                events_url_template="",
                inbound_url_template="",
            )
        )
        env = {
            **os.environ,
            "PEER_HOST": emulator.host,
            "PYTHONPATH": str(ROOT),
            "LOG_LEVEL": "WARNING",
        }
        log = (log_dir / "worker.log").open("wb")
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "bench.peer_send",
                "worker",
                "--queues",
                QUEUE,
                "--pool",
                "prefork",
                "--concurrency",
                str(args.concurrency),
                "--loglevel",
                "WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def stop() -> None:
            worker.terminate()
            with suppress(subprocess.TimeoutExpired):
                worker.wait(timeout=15)
            if worker.poll() is None:
                os.killpg(worker.pid, 9)
                worker.wait()

        stack.callback(stop)
        deadline = time.monotonic() + args.timeout
        for lead_id in leads[: args.warmup]:
            send_one.apply_async(args=[lead_id, identity_id], queue=QUEUE)
        while emulator.stats()["accepted"] < args.warmup and time.monotonic() < deadline:
            time.sleep(0.2)
        started = time.time()
        published = time.perf_counter()
        for lead_id in leads[args.warmup :]:
            send_one.apply_async(args=[lead_id, identity_id], queue=QUEUE)
        dispatch_rate = args.messages / (time.perf_counter() - published)
        total = args.warmup + args.messages
        while emulator.stats()["accepted"] < total and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        accepted = emulator.stats()["accepted"]
        events_rate = events_phase(args, tenant_id, deadline)
    times = [t for t in accepted_times(tenant_id) if t >= started]
    n = len(times)
    low, high = times[int(0.1 * (n - 1))], times[int(0.9 * (n - 1))]
    steady = (int(0.9 * (n - 1)) - int(0.1 * (n - 1))) / max(high - low, 1e-9)
    return {
        "peer_sends_per_s": round(steady, 1),
        "peer_dispatch_per_s": round(dispatch_rate),
        "peer_events_per_s": round(events_rate),
        "measured": n,
        "emulator_accepted": accepted,
        "layout": f"1 worker x prefork {args.concurrency}, one task per message",
    }


def main() -> int:
    args = parse_args()
    figures = run(args)
    print(
        f"peer ({figures['layout']}): {figures['peer_sends_per_s']:,.0f} sends/s steady "
        f"({figures['measured']} measured, emulator accepted {figures['emulator_accepted']}); "
        f"dispatch {figures['peer_dispatch_per_s']:,} tasks/s; "
        f"events {figures['peer_events_per_s']:,}/s",
        flush=True,
    )
    if args.json:
        print(json.dumps(figures))
    return 0 if figures["measured"] >= args.messages else 1


if __name__ == "__main__":
    raise SystemExit(main())
