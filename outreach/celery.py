"""The Celery app. Messages are hints: every task's effect is guarded by Postgres."""

import gc
import os

import kombu
from celery import Celery
from celery.app.amqp import AMQP
from celery.signals import worker_process_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "outreach.settings.dev")


class BrokerConnection(kombu.Connection):
    """A broker connection whose default channel is closed once.

    When Redis goes away while hints are unacknowledged, Celery 5.7's worker first collects
    the dead connection: closing its default channel fails on the dead socket before the
    channel counts as closed, and the transport is dropped. It then closes the connection
    again; kombu still holds the channel, so its cleanup runs against a transport that is
    gone, and the AttributeError it raises is not a connection error: it escapes the
    reconnect path and every worker exits with status 1 ("Unrecoverable error") instead of
    reconnecting. Forgetting the channel when the connection closes makes the second close a
    no-op; a later use opens a fresh channel, as on a new connection. The hints that channel
    held are not needed: the actions' leases in Postgres expire and the sweep hands them out
    again, as after any lost hint (docs/reliability.md, case 2).
    """

    def _do_close_self(self) -> None:
        try:
            super()._do_close_self()
        finally:
            self._default_channel = None


class BrokerAMQP(AMQP):
    Connection = BrokerConnection


app = Celery("outreach", amqp=BrokerAMQP)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect  # each prefork child, once the app is loaded
@worker_ready.connect  # the worker process itself (the one that runs tasks with --pool solo)
def _loaded_objects_freeze(**_) -> None:
    """Move everything alive once the app is loaded out of the garbage collector's sight.

    The loaded app (Django, the ORM's models, Celery, kombu, the provider SDKs) is about
    170,000 objects that never die, and a full collection walks them all: a normalised
    webhook batch or a send batch makes enough objects to start one every few batches, and
    each took 60-70 ms of the worker's CPU (12 of them in one events benchmark run). After
    gc.freeze full collections walk only what tasks leave behind.
    """
    gc.freeze()
