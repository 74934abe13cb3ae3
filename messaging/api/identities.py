"""``/api/v1/sender-identities/``: the tenant's from-addresses (CRUD)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from messaging import selectors
from messaging.serializers import SenderIdentityInputSerializer, SenderIdentitySerializer
from messaging.services.identities import (
    sender_identity_create,
    sender_identity_delete,
    sender_identity_pause_set,
    sender_identity_update,
)
from outreach.common.serializers import ErrorSerializer
from outreach.common.views import path_id
from outreach.tenancy.api import request_actor, request_reason
from outreach.tenancy.serializers import ReasonSerializer

_ID = OpenApiParameter(
    "id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Sender identity id."
)
_ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid input, with field paths."),
    401: OpenApiResponse(ErrorSerializer, description="Missing, invalid or revoked API key."),
}
_NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="No such identity in this tenant.")}
_TAGS = ["sender-identities"]


@extend_schema_view(
    list=extend_schema(
        summary="List sender identities",
        tags=_TAGS,
        responses={200: SenderIdentitySerializer(many=True), **_ERRORS},
    ),
    create=extend_schema(
        summary="Create a sender identity",
        tags=_TAGS,
        request=SenderIdentityInputSerializer,
        responses={201: SenderIdentitySerializer, **_ERRORS},
    ),
    retrieve=extend_schema(
        summary="Get a sender identity",
        tags=_TAGS,
        parameters=[_ID],
        responses={200: SenderIdentitySerializer, **_ERRORS, **_NOT_FOUND},
    ),
    partial_update=extend_schema(
        summary="Change a sender identity",
        description="Only the fields sent change; cross-field rules apply to the result.",
        tags=_TAGS,
        parameters=[_ID],
        request=SenderIdentityInputSerializer(partial=True),
        responses={200: SenderIdentitySerializer, **_ERRORS, **_NOT_FOUND},
    ),
    destroy=extend_schema(
        summary="Delete a sender identity",
        tags=_TAGS,
        parameters=[_ID],
        responses={
            204: None,
            **_ERRORS,
            **_NOT_FOUND,
            409: OpenApiResponse(
                ErrorSerializer, description="Used by campaigns, enrollments or messages."
            ),
        },
    ),
)
class SenderIdentityViewSet(viewsets.GenericViewSet):
    serializer_class = SenderIdentitySerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(selectors.sender_identity_list(tenant_id=request.tenant.id))
        return self.get_paginated_response(SenderIdentitySerializer(page, many=True).data)

    def create(self, request: Request) -> Response:
        incoming = SenderIdentityInputSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        identity = sender_identity_create(tenant_id=request.tenant.id, data=incoming.validated_data)
        return Response(SenderIdentitySerializer(identity).data, status=status.HTTP_201_CREATED)

    def retrieve(self, request: Request, pk: str) -> Response:
        identity = selectors.sender_identity_get(
            tenant_id=request.tenant.id, identity_id=path_id(pk, what="Sender identity")
        )
        return Response(SenderIdentitySerializer(identity).data)

    def partial_update(self, request: Request, pk: str) -> Response:
        identity_id = path_id(pk, what="Sender identity")
        # Another tenant's id is a 404 whatever the body says.
        selectors.sender_identity_get(tenant_id=request.tenant.id, identity_id=identity_id)
        incoming = SenderIdentityInputSerializer(data=request.data, partial=True)
        incoming.is_valid(raise_exception=True)
        identity = sender_identity_update(
            tenant_id=request.tenant.id,
            identity_id=identity_id,
            data=incoming.validated_data,
            actor=request_actor(request),
        )
        return Response(SenderIdentitySerializer(identity).data)

    def _pause_set(self, request: Request, pk: str, *, paused: bool) -> Response:
        identity_id = path_id(pk, what="Sender identity")
        # Another tenant's id is a 404 whatever the body says.
        selectors.sender_identity_get(tenant_id=request.tenant.id, identity_id=identity_id)
        identity = sender_identity_pause_set(
            tenant_id=request.tenant.id,
            identity_id=identity_id,
            paused=paused,
            actor=request_actor(request),
            reason=request_reason(request),
        )
        return Response(SenderIdentitySerializer(identity).data)

    @extend_schema(
        summary="Pause a sender identity",
        description="From the next send on, its due sends wait (nothing is dropped). "
        "Repeating it is harmless. Audited with the optional reason.",
        tags=_TAGS,
        parameters=[_ID],
        request=ReasonSerializer,
        responses={200: SenderIdentitySerializer, **_ERRORS, **_NOT_FOUND},
    )
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str) -> Response:
        return self._pause_set(request, pk, paused=True)

    @extend_schema(
        summary="Resume a sender identity",
        description="The sends its pause held become due at once. Audited.",
        tags=_TAGS,
        parameters=[_ID],
        request=ReasonSerializer,
        responses={200: SenderIdentitySerializer, **_ERRORS, **_NOT_FOUND},
    )
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str) -> Response:
        return self._pause_set(request, pk, paused=False)

    def destroy(self, request: Request, pk: str) -> Response:
        sender_identity_delete(
            tenant_id=request.tenant.id, identity_id=path_id(pk, what="Sender identity")
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
