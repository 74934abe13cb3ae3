"""The Celery app. Messages are hints: every task's effect is guarded by Postgres."""

import os

import kombu
from celery import Celery
from celery.app.amqp import AMQP

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
