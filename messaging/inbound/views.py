"""The Inbound Parse endpoint and the inbound mail API.

``POST /webhooks/sendgrid/inbound/<tenant public id>/<secret>/`` is a plain Django view:
SendGrid posts ``multipart/form-data`` and knows nothing of API keys. It authenticates the
caller by the tenant's inbound secret, given either as the last path segment or as the
password of HTTP basic auth (``https://any-user:<secret>@host/webhooks/sendgrid/inbound/
<tenant public id>/``), so the secret can stay out of access logs. Basic auth is checked
against the tenant's own secret, never a deployment-wide one, so one tenant's credentials
cannot post into another tenant's inbox. ``INBOUND_PARSE_BASIC_AUTH = False`` turns it off.

Refusals write nothing: an unknown tenant and a wrong secret are the same 404 (a probe learns
neither), a body over ``INBOUND_PARSE_MAX_BODY_BYTES`` is 413, a body that is not
``multipart/form-data`` is 400. An accepted body is stored in one INSERT and answered 200 at
once; parsing happens in a task, because SendGrid retries anything slow or 5xx for 3 days.
The trailing slash stays: SendGrid does not follow redirects.
"""

import base64
import binascii
import hmac
import logging
import uuid

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response

from messaging.inbound.selectors import inbound_message_get, inbound_message_list
from messaging.inbound.serializers import (
    InboundFilterSerializer,
    InboundMessageDetailSerializer,
    InboundMessageSerializer,
)
from messaging.services.inbound import inbound_receipt_store
from outreach.common.serializers import ErrorSerializer
from outreach.common.views import path_id
from outreach.tenancy.models import Tenant

logger = logging.getLogger(__name__)

_KEPT_HEADERS = (
    "Content-Type",
    "Content-Length",
    "User-Agent",
    "X-Forwarded-For",
    "X-Twilio-Email-Event-Webhook-Signature",
    "X-Twilio-Email-Event-Webhook-Timestamp",
)
_READ_CHUNK = 1 << 16
# Compared against when the tenant does not exist, so both refusals take the same time.
_NO_SECRET = "-" * 32


def _refuse(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def _basic_password(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, sep, password = decoded.partition(":")
    return password if sep else None


def _secret_matches(expected: str, offered: str | None) -> bool:
    if offered is None:
        return False
    return hmac.compare_digest(expected.encode(), offered.encode())


def _tenant_authenticate(
    request: HttpRequest, tenant_public_id: uuid.UUID, secret: str | None
) -> Tenant | None:
    tenant = Tenant.objects.filter(public_id=tenant_public_id).only("id", "inbound_secret").first()
    expected = tenant.inbound_secret if tenant and tenant.inbound_secret else _NO_SECRET
    accepted = _secret_matches(expected, secret)
    if settings.INBOUND_PARSE_BASIC_AUTH:
        accepted = _secret_matches(expected, _basic_password(request)) or accepted
    if tenant is None or not tenant.inbound_secret or not accepted:
        return None
    return tenant


def _body_read(request: HttpRequest, limit: int) -> bytes | None:
    """The raw body, or None once it exceeds ``limit`` (never buffered past it)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = request.read(_READ_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


@csrf_exempt
@require_POST
def sendgrid_inbound(
    request: HttpRequest, tenant_public_id: uuid.UUID, secret: str | None = None
) -> HttpResponse:
    tenant = _tenant_authenticate(request, tenant_public_id, secret)
    if tenant is None:
        logger.warning("inbound.refused", extra={"tenant_public_id": str(tenant_public_id)})
        return _refuse(404, "not_found", "Unknown inbound URL.")

    limit = settings.INBOUND_PARSE_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return _refuse(400, "invalid", "Content-Length is not a number.")
    if declared > limit:
        return _refuse(413, "too_large", f"Body exceeds {limit} bytes.")
    body = _body_read(request, limit)
    if body is None:
        return _refuse(413, "too_large", f"Body exceeds {limit} bytes.")

    content_type = request.META.get("CONTENT_TYPE", "")
    if not content_type.lower().startswith("multipart/form-data") or "boundary=" not in (
        content_type.lower()
    ):
        return _refuse(400, "invalid", "Body must be multipart/form-data with a boundary.")
    if not body:
        return _refuse(400, "invalid", "Body is empty.")

    headers = {name: request.headers[name] for name in _KEPT_HEADERS if name in request.headers}
    receipt = inbound_receipt_store(
        tenant_id=tenant.pk, body=body, content_type=content_type, headers=headers
    )
    logger.info(
        "inbound.received",
        extra={"tenant_id": tenant.pk, "receipt_id": receipt.pk, "bytes": len(body)},
    )
    return JsonResponse({"status": "received"}, status=200)


_ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid filter, with its field path."),
    401: OpenApiResponse(ErrorSerializer, description="Missing, invalid or revoked API key."),
}


class InboundMessageListView(generics.GenericAPIView):
    serializer_class = InboundMessageSerializer

    @extend_schema(
        summary="List inbound mail",
        description=(
            "Replies, auto-replies, out-of-office notices and bounces received through "
            "Inbound Parse, newest first. `matched=false` lists the mail we could not tie to "
            "a message of ours: it is kept for a person to look at, never dropped."
        ),
        parameters=[InboundFilterSerializer],
        responses={200: InboundMessageSerializer(many=True), **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        filters = InboundFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = inbound_message_list(tenant_id=request.tenant.id, **filters.validated_data)
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(InboundMessageSerializer(page, many=True).data)


class InboundMessageDetailView(generics.GenericAPIView):
    serializer_class = InboundMessageDetailSerializer

    @extend_schema(
        summary="Get one inbound message",
        parameters=[
            OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Id.")
        ],
        responses={
            200: InboundMessageDetailSerializer,
            **_ERRORS,
            404: OpenApiResponse(ErrorSerializer, description="No such message in this tenant."),
        },
    )
    def get(self, request: Request, pk: str) -> Response:
        inbound = inbound_message_get(
            tenant_id=request.tenant.id, inbound_message_id=path_id(pk, what="Inbound message")
        )
        return Response(InboundMessageDetailSerializer(inbound).data)
