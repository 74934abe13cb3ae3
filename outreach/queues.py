"""The Celery queues and how tasks reach them.

Each queue has an exchange and a routing key of its own. Declared without one, Celery binds
every queue to the default exchange with the default routing key (``maintenance`` for
both), so the worker banner shows all three on exchange ``maintenance`` with key
``maintenance``: on RabbitMQ a message published to that exchange and key is copied into
*every* queue bound that way. Redis happens to hand each message to one queue, RabbitMQ
does not.

``celery_routing`` returns the routing settings (without the ``CELERY_`` prefix) so the
settings and the routing test on a real RabbitMQ use the same declaration; the test passes
a ``prefix`` to keep its queues apart from anyone else's on the shared broker.
"""

from typing import Any

from kombu import Exchange, Queue

SENDING = "sending"
EVENTS = "events"
MAINTENANCE = "maintenance"
QUEUE_NAMES = (SENDING, EVENTS, MAINTENANCE)

# Task name patterns → queue (first match wins, as Celery reads a dict of globs).
_ROUTES = (
    ("campaigns.*", SENDING),
    ("messaging.message_send_batch", SENDING),
    ("messaging.sms_send_batch", SENDING),
    ("messaging.sms_receipt_*", EVENTS),
    ("messaging.webhook_*", EVENTS),
    ("messaging.inbound_*", EVENTS),
    ("maintenance.*", MAINTENANCE),
)


def task_queues(*, prefix: str = "") -> tuple[Queue, ...]:
    """One direct exchange per queue, named like it, bound with the queue's name as key."""
    return tuple(
        Queue(
            f"{prefix}{name}",
            Exchange(f"{prefix}{name}", type="direct", durable=True),
            routing_key=f"{prefix}{name}",
        )
        for name in QUEUE_NAMES
    )


def celery_routing(*, prefix: str = "") -> dict[str, Any]:
    """``task_queues``, ``task_routes`` and the defaults, as Celery setting names."""
    default = f"{prefix}{MAINTENANCE}"
    return {
        "task_queues": task_queues(prefix=prefix),
        "task_routes": {pattern: {"queue": f"{prefix}{queue}"} for pattern, queue in _ROUTES},
        "task_default_queue": default,
        "task_default_exchange": default,
        "task_default_exchange_type": "direct",
        "task_default_routing_key": default,
    }
