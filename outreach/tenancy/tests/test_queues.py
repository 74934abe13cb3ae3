"""Celery routing: each queue has its own exchange and key, checked on a real RabbitMQ.

The broker is RabbitMQ on 127.0.0.1:5672 (guest/guest). The queues and exchanges of this
test carry a random prefix and are deleted afterwards, so runs sharing the broker never see
each other's messages. Without RabbitMQ the test is skipped, unless
``OUTREACH_REQUIRE_RABBITMQ=1`` (CI) makes that a failure.
"""

import os
import socket
import time
import uuid

import pytest
from celery import Celery
from django.conf import settings
from kombu import Exchange

from outreach.queues import QUEUE_NAMES, celery_routing

RABBITMQ_URL = os.environ.get("OUTREACH_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


def _rabbitmq_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture
def rabbit_app():
    if not _rabbitmq_up():
        if os.environ.get("OUTREACH_REQUIRE_RABBITMQ") == "1":
            pytest.fail("RabbitMQ is not answering on 127.0.0.1:5672")
        pytest.skip("RabbitMQ is not answering on 127.0.0.1:5672")
    prefix = f"outreach-test-{uuid.uuid4().hex[:8]}-"
    app = Celery("routing-test", broker=RABBITMQ_URL, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options={"confirm_publish": True},
        **celery_routing(prefix=prefix),
    )
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in app.amqp.queues.values():
            queue.bind(channel).declare()  # what a worker does when it starts
        app.prefix = prefix
        try:
            yield app
        finally:
            for queue in app.amqp.queues.values():
                queue.bind(channel).delete()
                queue.exchange.bind(channel).delete()


def _depths(app) -> dict[str, int]:
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        return {
            name: channel.queue_declare(f"{app.prefix}{name}", passive=True).message_count
            for name in QUEUE_NAMES
        }


def _settled_depths(app, expected_total: int) -> dict[str, int]:
    deadline = time.monotonic() + 5
    depths = _depths(app)
    while sum(depths.values()) < expected_total and time.monotonic() < deadline:
        time.sleep(0.05)
        depths = _depths(app)
    time.sleep(0.2)  # anything copied to a second queue would show by now
    return _depths(app)


def _purge(app) -> None:
    with app.connection_for_write() as connection:
        for name in QUEUE_NAMES:
            connection.default_channel.queue_purge(f"{app.prefix}{name}")


def test_the_project_declares_each_queue_with_its_own_exchange_and_routing_key():
    bindings = {
        queue.name: (queue.exchange.name, queue.routing_key)
        for queue in settings.CELERY_TASK_QUEUES
    }
    assert bindings == {
        "sending": ("sending", "sending"),
        "events": ("events", "events"),
        "maintenance": ("maintenance", "maintenance"),
    }


@pytest.mark.parametrize(
    ("task", "queue"),
    [
        ("messaging.message_send_batch", "sending"),
        ("campaigns.scheduled_actions_run", "sending"),
        ("messaging.webhook_receipt_normalise", "events"),
        ("messaging.inbound_receipt_process", "events"),
        ("maintenance.scheduled_actions_sweep", "maintenance"),
        ("maintenance.webhook_receipts_sweep", "maintenance"),
    ],
)
def test_a_task_lands_in_its_own_queue_only(rabbit_app, task, queue):
    """Published through the exchange and routing key its route's queue is bound with, as
    any AMQP client that follows the declared bindings does. (``send_task`` alone cannot
    tell: Celery publishes a routed task to the default exchange with the queue's *name* as
    key, which reaches that queue whatever the bindings, so it passed with the bug.)"""
    declared = rabbit_app.amqp.router.route({}, task)["queue"]
    assert declared.name == f"{rabbit_app.prefix}{queue}"
    rabbit_app.send_task(
        task, args=[], exchange=declared.exchange.name, routing_key=declared.routing_key
    )
    depths = _settled_depths(rabbit_app, 1)
    assert depths == {name: int(name == queue) for name in QUEUE_NAMES}


def test_publishing_to_each_queue_exchange_reaches_that_queue_only(rabbit_app):
    """The bug the banner showed: all three queues bound to exchange ``maintenance`` with
    key ``maintenance``, so one message published there was copied into all three."""
    for name in QUEUE_NAMES:
        _purge(rabbit_app)
        exchange = f"{rabbit_app.prefix}{name}"
        # An explicit exchange and key: how beat entries and other clients may publish.
        rabbit_app.send_task(
            "maintenance.event_partitions_ensure",
            args=[],
            exchange=Exchange(exchange, type="direct"),
            routing_key=exchange,
        )
        depths = _settled_depths(rabbit_app, 1)
        assert depths == {other: int(other == name) for other in QUEUE_NAMES}, name
