"""The fault suite: the whole system under load while things break (``make chaos``).

It starts its own PostgreSQL cluster and Redis server in a temporary directory (never the
machine's shared ones), runs migrations there, starts gunicorn, Celery workers, beat and the
SendGrid emulator pointed at them, runs each case, and prints one table whose counts come
from ground truth: what the emulator received per recipient, the send ledger, the event
table and the transitions per step entry. docs/reliability.md states the guarantees and
the latest figures.
"""
