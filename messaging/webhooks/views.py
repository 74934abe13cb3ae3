"""SendGrid Event Webhook endpoint: verify, store raw in one insert, answer at once.

This is not a DRF view: SendGrid authenticates by signature, not by API key, and the body
must be read as raw bytes (the signature covers them exactly). Refusals never write anything:
unknown tenant → 404, body too large → 413, signature or timestamp wrong → 403, body that is
not a JSON array of objects → 400.
"""

import logging
import uuid

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from messaging.models import WebhookReceipt
from messaging.services.receipts import webhook_receipt_create
from messaging.webhooks.sendgrid_events import json_strict_loads
from messaging.webhooks.signature import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signature_verify,
    timestamp_is_fresh,
)
from outreach.tenancy.models import Tenant

logger = logging.getLogger(__name__)

_KEPT_HEADERS = (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    "Content-Type",
    "Content-Length",
    "User-Agent",
    "X-Forwarded-For",
)


def _refuse(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def _content_length(request: HttpRequest) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None


def _is_array_of_objects(body: bytes) -> bool:
    try:
        parsed = json_strict_loads(body)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(parsed, list) and all(isinstance(item, dict) for item in parsed)


@csrf_exempt
@require_POST
def sendgrid_events(request: HttpRequest, tenant_public_id: uuid.UUID) -> HttpResponse:
    tenant = (
        Tenant.objects.filter(public_id=tenant_public_id).only("id", "webhook_public_key").first()
    )
    if tenant is None:
        return _refuse(404, "not_found", "Unknown webhook URL.")

    limit = settings.SENDGRID_WEBHOOK_MAX_BODY_BYTES
    length = _content_length(request)
    if length is None:
        return _refuse(400, "invalid", "Content-Length is not a number.")
    if length > limit:
        return _refuse(413, "too_large", f"Body exceeds {limit} bytes.")
    body = request.read(limit + 1)
    if len(body) > limit:
        return _refuse(413, "too_large", f"Body exceeds {limit} bytes.")

    signature = request.headers.get(SIGNATURE_HEADER, "")
    timestamp = request.headers.get(TIMESTAMP_HEADER, "")
    public_key = tenant.webhook_public_key.strip()
    if public_key:
        if not timestamp_is_fresh(
            timestamp=timestamp,
            max_age_seconds=settings.SENDGRID_WEBHOOK_MAX_AGE_SECONDS,
            max_future_seconds=settings.SENDGRID_WEBHOOK_MAX_FUTURE_SECONDS,
        ) or not signature_verify(
            public_key_b64=public_key, signature_b64=signature, timestamp=timestamp, body=body
        ):
            logger.warning("webhook.events.refused", extra={"tenant_id": tenant.pk})
            return _refuse(403, "bad_signature", "Signature or timestamp is not valid.")
    elif not settings.SENDGRID_WEBHOOK_ALLOW_UNSIGNED:
        logger.warning("webhook.events.no_key", extra={"tenant_id": tenant.pk})
        return _refuse(403, "not_verifiable", "No verification key is configured.")

    if not _is_array_of_objects(body):
        return _refuse(400, "invalid", "Body must be a JSON array of event objects.")

    headers = {name: request.headers[name] for name in _KEPT_HEADERS if name in request.headers}
    webhook_receipt_create(
        tenant_id=tenant.pk,
        kind=WebhookReceipt.Kind.EVENTS,
        body=body,
        headers=headers,
        content_type=request.content_type or "",
    )
    return HttpResponse(status=204)
