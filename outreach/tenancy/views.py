import logging

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means "not healthy"; the reason goes to the body
        return f"{type(exc).__name__}: {exc}".strip()
    return None


def _check_redis() -> str | None:
    try:
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1
        )
        client.ping()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".strip()
    return None


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when Postgres and Redis both answer; 503 naming the part that does not."""
    failures = {
        name: error
        for name, error in (("database", _check_database()), ("redis", _check_redis()))
        if error
    }
    if failures:
        logger.warning("healthz.failing", extra={"failing": sorted(failures)})
        return JsonResponse({"status": "failing", "failing": failures}, status=503)
    return JsonResponse({"status": "ok", "database": "ok", "redis": "ok"})
