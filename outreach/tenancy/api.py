"""``/api/v1/tenant/`` (the caller's own controls and health) and ``/api/v1/audit-log/``.

Interfaces only. A tenant may pause itself and lift its own pause (not the operator's);
flags, quotas and the platform's kill switches are the operator's (admin, ``manage.py
tenant_control``, ``/api/v1/operator/``: ``operator_api``) and only shown here.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from outreach.common.serializers import ErrorSerializer
from outreach.common.views import path_id
from outreach.tenancy import controls, selectors
from outreach.tenancy.audit import actor_for_api_key
from outreach.tenancy.models import Tenant
from outreach.tenancy.serializers import (
    AuditEntrySerializer,
    AuditFilterSerializer,
    ReasonSerializer,
    TenantControlsSerializer,
    TenantHealthSerializer,
)

TAGS = ["tenant"]
ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid input, with field paths."),
    401: OpenApiResponse(ErrorSerializer, description="Missing, invalid or revoked API key."),
}


def request_actor(request: Request) -> str:
    """Who did it, for the audit log: the API key's prefix (the key itself is secret)."""
    return actor_for_api_key(prefix=request.auth.prefix)


def request_reason(request: Request) -> str:
    """The optional ``{"reason": ...}`` body of a control action (400 if malformed)."""
    body = ReasonSerializer(data=request.data if request.data else {})
    body.is_valid(raise_exception=True)
    return body.validated_data.get("reason", "")


class TenantControlsView(APIView):
    @extend_schema(
        summary="The account's controls",
        description="Status, feature flags, quotas and what is used of them, and whether the "
        "platform's kill switches hold sends.",
        tags=TAGS,
        responses={200: TenantControlsSerializer, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        return Response(
            TenantControlsSerializer(
                selectors.tenant_controls_get(tenant_id=request.tenant.id)
            ).data
        )


class TenantHealthView(APIView):
    @extend_schema(
        summary="The account's health at a glance",
        description="Sends today against caps, bounce and complaint rates over 7 days, the "
        "webhook backlog and its oldest receipt, and messages whose outcome is unknown.",
        tags=TAGS,
        responses={200: TenantHealthSerializer, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        return Response(
            TenantHealthSerializer(selectors.tenant_health_get(tenant_id=request.tenant.id)).data
        )


class _TenantStatusView(APIView):
    pause: bool

    def post(self, request: Request) -> Response:
        reason = request_reason(request)
        change = controls.tenant_pause if self.pause else controls.tenant_resume
        change(
            tenant_id=request.tenant.id,
            actor=request_actor(request),
            reason=reason,
            by=Tenant.PausedBy.TENANT,
        )
        return Response(
            TenantControlsSerializer(
                selectors.tenant_controls_get(tenant_id=request.tenant.id)
            ).data
        )


class TenantPauseView(_TenantStatusView):
    pause = True

    @extend_schema(
        summary="Pause all sending of the account",
        description="From the next send on, every due send waits (nothing is dropped). "
        "Repeating it is harmless. Audited with the optional reason.",
        tags=TAGS,
        request=ReasonSerializer,
        responses={200: TenantControlsSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        return super().post(request)


class TenantResumeView(_TenantStatusView):
    pause = False

    @extend_schema(
        summary="Resume sending of the account",
        description="The sends the pause held become due at once. Audited. Only the "
        "account's own pause can be lifted here: a pause by the platform operator answers 409.",
        tags=TAGS,
        request=ReasonSerializer,
        responses={
            200: TenantControlsSerializer,
            **ERRORS,
            409: OpenApiResponse(
                ErrorSerializer, description="Paused by the platform operator (paused_by_operator)."
            ),
        },
    )
    def post(self, request: Request) -> Response:
        return super().post(request)


_ENTRY_ID = OpenApiParameter(
    "id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Audit entry id."
)


@extend_schema_view(
    list=extend_schema(
        summary="List the audit log",
        description="Every control change of the account, newest first: who, when, what, "
        "why, and the values before and after. Entries cannot be changed or deleted.",
        tags=["audit-log"],
        parameters=[AuditFilterSerializer],
        responses={200: AuditEntrySerializer(many=True), **ERRORS},
    ),
    retrieve=extend_schema(
        summary="Get an audit entry",
        tags=["audit-log"],
        parameters=[_ENTRY_ID],
        responses={
            200: AuditEntrySerializer,
            **ERRORS,
            404: OpenApiResponse(ErrorSerializer, description="No such entry in this account."),
        },
    ),
)
class AuditLogViewSet(viewsets.GenericViewSet):
    serializer_class = AuditEntrySerializer
    http_method_names = ["get", "head", "options"]

    def list(self, request: Request) -> Response:
        filters = AuditFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = selectors.audit_list(tenant_id=request.tenant.id, **filters.validated_data)
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(AuditEntrySerializer(page, many=True).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        entry = selectors.audit_get(
            tenant_id=request.tenant.id, entry_id=path_id(pk, what="Audit entry")
        )
        return Response(AuditEntrySerializer(entry).data)
