import logging

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from outreach.tenancy.health import database_check, redis_check

logger = logging.getLogger(__name__)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when Postgres and Redis both answer; 503 naming the part that does not.
    Liveness only: beat is not asked (that is ``/readyz``)."""
    failures = {
        name: error
        for name, error in (("database", database_check()), ("redis", redis_check()))
        if error
    }
    if failures:
        logger.warning("healthz.failing", extra={"failing": sorted(failures)})
        return JsonResponse({"status": "failing", "failing": failures}, status=503)
    return JsonResponse({"status": "ok", "database": "ok", "redis": "ok"})
