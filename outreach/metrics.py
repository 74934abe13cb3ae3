"""Operational metrics: ``/metrics`` in the Prometheus text format, and ``/readyz``.

Two kinds of figures:

- **Counters** (sends by outcome, claims, events normalised, capacity refusals) are kept in
  Redis, so every web process answers with the platform's totals whichever process counted.
  The hot paths add to them once per *batch* with one pipelined round trip, never per send,
  and a Redis failure is swallowed: metrics never break sending.
- **Gauges** (due-action lag, pending actions, webhook backlog and lag, queue depth, stuck
  messages) are computed when Prometheus scrapes, by queries that read partial indexes
  holding only the rows in question.

Protected in production: ``METRICS_TOKEN`` (``Authorization: Bearer <token>``) and/or
``METRICS_ALLOWED_NETWORKS`` (CIDRs the scraper comes from, checked at start-up); with
neither set, production answers 403 rather than publish its figures. Behind a proxy or load
balancer ``REMOTE_ADDR`` is the proxy's own address, so there only the token is safe.
"""

import datetime
import ipaddress
import logging
import secrets
import time
from collections.abc import Iterator
from functools import lru_cache

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

logger = logging.getLogger(__name__)

COUNTERS_KEY = "outreach:metrics:counters"
LAST_SWEEP_KEY = "outreach:metrics:beat_last_sweep"

# name → (help, label names). Counters are stored as "name|label=value,label=value".
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sends": ("Send attempts finished by the send worker, by outcome.", ("outcome",)),
    "scheduled_actions_claimed": ("Scheduled actions claimed by the beat sweep.", ()),
    "webhook_receipts_normalised": ("Event Webhook receipts normalised.", ()),
    "events_received": ("Webhook events received in normalised receipts.", ()),
    "events_stored": ("Webhook events stored as new (after deduplication).", ()),
    "capacity_rejections": (
        "Sends refused by a full Redis capacity bucket (each refusal names its buckets).",
        ("bucket",),
    ),
}


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, decode_responses=True, socket_timeout=0.5, socket_connect_timeout=0.5
    )


def _redis() -> redis.Redis:
    return _client(settings.REDIS_URL)


def _field(name: str, labels: dict[str, str]) -> str:
    return name + "|" + ",".join(f"{key}={labels[key]}" for key in sorted(labels))


def metrics_add(counts: list[tuple[str, dict[str, str], int]]) -> None:
    """Add to counters: ``[(name, labels, amount), ...]`` in one round trip. Never raises."""
    counts = [item for item in counts if item[2]]
    if not counts:
        return
    try:
        pipeline = _redis().pipeline(transaction=False)
        for name, labels, amount in counts:
            pipeline.hincrby(COUNTERS_KEY, _field(name, labels), amount)
        pipeline.execute()
    except redis.RedisError:
        logger.debug("metrics.add_failed", exc_info=True)


def beat_sweep_record(*, claimed: int) -> None:
    """The beat sweep ran (readiness checks its age) and claimed ``claimed`` actions."""
    try:
        pipeline = _redis().pipeline(transaction=False)
        pipeline.set(LAST_SWEEP_KEY, f"{time.time():.3f}")
        if claimed:
            pipeline.hincrby(COUNTERS_KEY, _field("scheduled_actions_claimed", {}), claimed)
        pipeline.execute()
    except redis.RedisError:
        logger.debug("metrics.sweep_record_failed", exc_info=True)


def beat_last_sweep_age() -> float | None:
    """Seconds since the last beat sweep ran, or None if none was ever recorded."""
    value = _redis().get(LAST_SWEEP_KEY)
    return None if value is None else max(0.0, time.time() - float(value))


# --------------------------------------------------------------------------- scrape time


def _counters() -> Iterator[Metric]:
    stored = _redis().hgetall(COUNTERS_KEY)
    families = {
        name: CounterMetricFamily(f"outreach_{name}", text, labels=list(labels))
        for name, (text, labels) in COUNTERS.items()
    }
    for field, value in sorted(stored.items()):
        name, _, label_text = field.partition("|")
        family = families.get(name)
        if family is None:
            continue
        labels = dict(pair.split("=", 1) for pair in label_text.split(",") if pair)
        family.add_metric([labels.get(key, "") for key in COUNTERS[name][1]], float(value))
    yield from families.values()


def _scheduled_actions() -> Iterator[Metric]:
    from campaigns.selectors import scheduled_actions_backlog

    backlog = scheduled_actions_backlog()
    due, lag, claimed = backlog.due, backlog.due_lag_seconds, backlog.claimed
    pending_estimate = backlog.pending_estimate
    actions = GaugeMetricFamily(
        "outreach_scheduled_actions",
        "Scheduled actions by state: pending and due (exact), claimed (exact), pending for "
        "later (estimated from the pending index's size at its last analyze).",
        labels=["state"],
    )
    actions.add_metric(["due"], due)
    actions.add_metric(["future"], max(pending_estimate - due, 0.0))
    actions.add_metric(["claimed"], claimed)
    yield actions
    yield GaugeMetricFamily(
        "outreach_scheduled_actions_due_lag_seconds",
        "How long the oldest due, unclaimed action has been waiting (0 when none).",
        value=float(lag),
    )


def _webhooks() -> Iterator[Metric]:
    from messaging.selectors import webhook_receipt_backlog

    now = timezone.now()
    backlog = GaugeMetricFamily(
        "outreach_webhook_receipts_unprocessed",
        "Stored webhook receipts not yet processed, by kind.",
        labels=["kind"],
    )
    lag = GaugeMetricFamily(
        "outreach_webhook_receipt_lag_seconds",
        "Age of the oldest unprocessed webhook receipt, by kind (0 when none).",
        labels=["kind"],
    )
    for kind, item in webhook_receipt_backlog().items():
        backlog.add_metric([kind], item.count)
        oldest = item.oldest_received_at
        lag.add_metric([kind], (now - oldest).total_seconds() if oldest else 0.0)
    yield backlog
    yield lag


def _messages() -> Iterator[Metric]:
    from messaging.selectors import messages_needs_review, messages_stuck_sending

    gauge = GaugeMetricFamily(
        "outreach_messages_outcome_unknown",
        "Messages whose send outcome is unknown: still sending after 5 minutes, or needs_review.",
        labels=["status"],
    )
    gauge.add_metric(
        ["sending"],
        messages_stuck_sending(older_than=datetime.timedelta(minutes=5)).count(),
    )
    gauge.add_metric(["needs_review"], messages_needs_review().count())
    yield gauge


def _queues() -> Iterator[Metric]:
    from outreach.celery import app
    from outreach.queues import QUEUE_NAMES

    gauge = GaugeMetricFamily(
        "outreach_celery_queue_depth", "Messages waiting in each Celery queue.", labels=["queue"]
    )
    with app.connection_for_read() as broker:
        broker.ensure_connection(max_retries=1)
        channel = broker.default_channel
        for name in QUEUE_NAMES:
            try:
                depth = channel.queue_declare(queue=name, passive=True).message_count
            except Exception:  # not declared yet: no worker ever started on it
                depth = 0
                channel = broker.channel()
            gauge.add_metric([name], depth)
    yield gauge


def _controls() -> Iterator[Metric]:
    from outreach.tenancy.models import KillSwitch

    engaged = set(KillSwitch.objects.filter(engaged=True).values_list("channel", flat=True))
    gauge = GaugeMetricFamily(
        "outreach_kill_switch_engaged",
        "1 while the platform kill switch of a channel holds every send.",
        labels=["channel"],
    )
    for channel in KillSwitch.Channel.values:
        gauge.add_metric([channel], 1.0 if channel in engaged else 0.0)
    yield gauge
    age = beat_last_sweep_age()
    yield GaugeMetricFamily(
        "outreach_beat_last_sweep_age_seconds",
        "Seconds since beat's scheduled-action sweep last ran (-1: never recorded).",
        value=-1.0 if age is None else age,
    )


_SOURCES = {
    "counters": _counters,
    "scheduled_actions": _scheduled_actions,
    "webhooks": _webhooks,
    "messages": _messages,
    "queues": _queues,
    "controls": _controls,
}


class OutreachCollector:
    """Every figure, gathered at scrape time; a source that fails is reported as down
    (``outreach_metrics_source_up``) instead of failing the whole scrape."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "outreach_metrics_source_up",
            "1 when the source of a group of figures answered this scrape.",
            labels=["source"],
        )
        for name, source in _SOURCES.items():
            try:
                metrics = list(source())
            except Exception:
                logger.warning("metrics.source_failed", extra={"source": name}, exc_info=True)
                up.add_metric([name], 0.0)
                continue
            up.add_metric([name], 1.0)
            yield from metrics
        yield up


def _allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    networks = settings.METRICS_ALLOWED_NETWORKS
    if not token and not networks:
        return not settings.METRICS_REQUIRE_PROTECTION
    if token:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, given = header.partition(" ")
        # Bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500).
        if scheme.lower() == "bearer" and secrets.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return True
    if networks:
        try:
            address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
        except ValueError:
            return False
        return any(address in ipaddress.ip_network(net, strict=False) for net in networks)
    return False


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        return HttpResponse(
            "metrics are protected: send Authorization: Bearer <METRICS_TOKEN> or scrape from "
            "METRICS_ALLOWED_NETWORKS\n",
            status=403,
            content_type="text/plain",
        )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(OutreachCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """200 when Postgres and Redis answer and beat's sweep ran within
    ``READINESS_BEAT_MAX_AGE_SECONDS``; 503 naming each part that does not."""
    from outreach.tenancy.health import database_check, redis_check

    failures = {
        name: error
        for name, error in (("database", database_check()), ("redis", redis_check()))
        if error
    }
    if "redis" not in failures:
        try:
            age = beat_last_sweep_age()
        except redis.RedisError as exc:
            failures["beat"] = f"cannot read the last sweep: {exc}"
        else:
            limit = settings.READINESS_BEAT_MAX_AGE_SECONDS
            if age is None:
                failures["beat"] = "no sweep recorded: is celery beat (and a worker) running?"
            elif age > limit:
                failures["beat"] = f"last sweep {age:.0f} s ago (limit {limit} s)"
    if failures:
        logger.warning("readyz.failing", extra={"failing": sorted(failures)})
        return JsonResponse({"status": "failing", "failing": failures}, status=503)
    return JsonResponse({"status": "ok", "database": "ok", "redis": "ok", "beat": "ok"})
