"""Whether Postgres and Redis answer: what ``/healthz`` and ``/readyz`` report."""

import redis
from django.conf import settings
from django.db import connection


def database_check() -> str | None:
    """None when Postgres answers, else why not (for the response body)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means "not healthy"; the reason goes to the body
        return f"{type(exc).__name__}: {exc}".strip()
    return None


def redis_check() -> str | None:
    """None when Redis answers, else why not."""
    try:
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1
        )
        client.ping()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".strip()
    return None
