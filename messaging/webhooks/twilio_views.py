"""Twilio's callbacks under ``/webhooks/twilio/``: verify, store raw in one insert, answer.

``status/<tenant public id>/`` takes the status callbacks of the texts we send (their URL,
query included, is set per message); ``inbound/<tenant public id>/`` is the SMS URL to set on
the tenant's numbers (or its Messaging Service). Both are plain Django views: Twilio signs
its requests (``X-Twilio-Signature``, HMAC-SHA1 of the URL and the sorted form parameters,
keyed with the account's auth token), checked with the official
``twilio.request_validator.RequestValidator``. Refusals write nothing: unknown tenant → 404,
body too large → 413, signature missing or wrong → 403. An inbound text is answered with
TwiML: the STOP/START confirmation or the HELP text, otherwise an empty ``<Response/>``.
"""

import logging
import uuid
from xml.sax.saxutils import escape

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator

from messaging.models import WebhookReceipt
from messaging.services.sms_events import sms_receipt_store
from outreach.tenancy.models import Tenant

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Signature"
_KEPT_HEADERS = (SIGNATURE_HEADER, "Content-Type", "User-Agent", "I-Twilio-Idempotency-Token")


def _refuse(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def _urls(request: HttpRequest) -> list[str]:
    """The URL Twilio may have signed: ours as the public sees it, and as this server does
    (a proxy in front may rewrite host or scheme)."""
    public = f"{settings.PUBLIC_BASE_URL}{request.get_full_path()}"
    seen = request.build_absolute_uri()
    return [public] if seen == public else [public, seen]


def _verified(request: HttpRequest) -> bool:
    signature = request.headers.get(SIGNATURE_HEADER, "")
    token = settings.TWILIO_AUTH_TOKEN
    if not signature or not token:
        return False
    validator = RequestValidator(token)
    return any(validator.validate(url, request.POST, signature) for url in _urls(request))


def _receive(request: HttpRequest, tenant_public_id: uuid.UUID, kind: str) -> HttpResponse:
    tenant = Tenant.objects.filter(public_id=tenant_public_id).only("id").first()
    if tenant is None:
        return _refuse(404, "not_found", "Unknown webhook URL.")
    limit = settings.TWILIO_WEBHOOK_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return _refuse(400, "invalid", "Content-Length is not a number.")
    if declared > limit:
        return _refuse(413, "too_large", f"Body exceeds {limit} bytes.")
    body = request.body  # read before request.POST: the raw bytes are what we store
    if not _verified(request):
        logger.warning("webhook.twilio.refused", extra={"tenant_id": tenant.pk, "kind": kind})
        return _refuse(403, "bad_signature", "X-Twilio-Signature is missing or not valid.")
    headers = {name: request.headers[name] for name in _KEPT_HEADERS if name in request.headers}
    received = sms_receipt_store(
        tenant_id=tenant.pk,
        kind=kind,
        body=body,
        url=_urls(request)[0],
        headers=headers,
        content_type=request.content_type or "",
    )
    if kind == WebhookReceipt.Kind.SMS_STATUS:
        return HttpResponse(status=204)
    twiml = "<Response/>"
    if received.answer:
        twiml = f"<Response><Message>{escape(received.answer)}</Message></Response>"
    return HttpResponse(
        f'<?xml version="1.0" encoding="UTF-8"?>{twiml}', content_type="text/xml; charset=utf-8"
    )


@csrf_exempt
@require_POST
def twilio_status(request: HttpRequest, tenant_public_id: uuid.UUID) -> HttpResponse:
    return _receive(request, tenant_public_id, WebhookReceipt.Kind.SMS_STATUS)


@csrf_exempt
@require_POST
def twilio_inbound(request: HttpRequest, tenant_public_id: uuid.UUID) -> HttpResponse:
    return _receive(request, tenant_public_id, WebhookReceipt.Kind.SMS_INBOUND)
