"""The leads API (``/api/v1/leads/``): parse, call one service or selector, format."""

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns import selectors
from campaigns.serializers import (
    LeadBulkEnvelopeSerializer,
    LeadBulkRequestSerializer,
    LeadBulkResultSerializer,
    LeadFilterSerializer,
    LeadInputSerializer,
    LeadSerializer,
)
from campaigns.services.leads import lead_bulk_create, lead_create, lead_delete, lead_update
from outreach.common.errors import errors_flatten as flatten_errors
from outreach.common.serializers import ErrorSerializer
from outreach.common.views import path_id

_ID = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Lead id.")
_ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid input, with field paths."),
    401: OpenApiResponse(ErrorSerializer, description="Missing, invalid or revoked API key."),
}
_NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="No such lead in this tenant.")}
_TOO_LARGE = {413: OpenApiResponse(ErrorSerializer, description="Body over the size limit.")}


@extend_schema_view(
    list=extend_schema(
        summary="List leads",
        parameters=[LeadFilterSerializer],
        responses={200: LeadSerializer(many=True), **_ERRORS},
    ),
    create=extend_schema(
        summary="Create a lead",
        request=LeadInputSerializer,
        responses={201: LeadSerializer, **_ERRORS, **_TOO_LARGE},
    ),
    retrieve=extend_schema(
        summary="Get a lead",
        parameters=[_ID],
        responses={200: LeadSerializer, **_ERRORS, **_NOT_FOUND},
    ),
    partial_update=extend_schema(
        summary="Change a lead",
        description="Only the fields sent change. A new email is validated again.",
        parameters=[_ID],
        request=LeadInputSerializer(partial=True),
        responses={200: LeadSerializer, **_ERRORS, **_NOT_FOUND, **_TOO_LARGE},
    ),
    destroy=extend_schema(
        summary="Delete a lead",
        parameters=[_ID],
        responses={
            204: None,
            **_ERRORS,
            **_NOT_FOUND,
            409: OpenApiResponse(ErrorSerializer, description="The lead has sent messages."),
        },
    ),
)
class LeadViewSet(viewsets.GenericViewSet):
    serializer_class = LeadSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def list(self, request: Request) -> Response:
        filters = LeadFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = selectors.lead_list(tenant_id=request.tenant.id, **filters.validated_data)
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(LeadSerializer(page, many=True).data)

    def create(self, request: Request) -> Response:
        incoming = LeadInputSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        lead = lead_create(tenant_id=request.tenant.id, data=incoming.validated_data)
        return Response(LeadSerializer(lead).data, status=status.HTTP_201_CREATED)

    def retrieve(self, request: Request, pk: str) -> Response:
        lead = selectors.lead_get(tenant_id=request.tenant.id, lead_id=path_id(pk, what="Lead"))
        return Response(LeadSerializer(lead).data)

    def partial_update(self, request: Request, pk: str) -> Response:
        lead_id = path_id(pk, what="Lead")
        # Look the lead up before judging the body: another tenant's id is a 404 whatever
        # is sent, so a probe learns nothing from validation errors.
        selectors.lead_get(tenant_id=request.tenant.id, lead_id=lead_id)
        incoming = LeadInputSerializer(data=request.data, partial=True)
        incoming.is_valid(raise_exception=True)
        lead = lead_update(
            tenant_id=request.tenant.id, lead_id=lead_id, data=incoming.validated_data
        )
        return Response(LeadSerializer(lead).data)

    def destroy(self, request: Request, pk: str) -> Response:
        lead_delete(tenant_id=request.tenant.id, lead_id=path_id(pk, what="Lead"))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Create up to 10,000 leads",
        description=(
            "Each row succeeds or fails on its own. Rows with invalid fields are listed in "
            "`errors` under their path (`items/3/email`); rows whose email the tenant already "
            "has are skipped with the reason `already exists`; all other rows are inserted in "
            "one transaction. The response is 200 whenever the envelope itself is valid."
        ),
        request=LeadBulkRequestSerializer,
        responses={200: LeadBulkResultSerializer, **_ERRORS, **_TOO_LARGE},
    )
    @action(detail=False, methods=["post"], url_path="bulk")
    def bulk(self, request: Request) -> Response:
        envelope = LeadBulkEnvelopeSerializer(data=request.data)
        envelope.is_valid(raise_exception=True)
        rows, errors = _rows_parse(envelope.validated_data["items"])
        result = lead_bulk_create(tenant_id=request.tenant.id, rows=rows)
        for index, field_errors in result.errors.items():
            errors.update(flatten_errors(field_errors, f"items/{index}"))
        body = {
            "created_count": len(result.created),
            "skipped_count": len(result.skipped),
            "error_count": len({path.split("/")[1] for path in errors}),
            "created": [{"index": index, "id": lead_id} for index, lead_id in result.created],
            "skipped": [
                {
                    "index": skip.index,
                    "email": skip.email,
                    "reason": skip.reason
                    if skip.duplicate_of is None
                    else f"{skip.reason} (items/{skip.duplicate_of})",
                    "existing_id": skip.existing_id,
                }
                for skip in result.skipped
            ],
            "errors": dict(sorted(errors.items(), key=lambda item: _row_of(item[0]))),
        }
        return Response(LeadBulkResultSerializer(body).data)


def _row_of(path: str) -> int:
    return int(path.split("/")[1])


def _rows_parse(items: list[Any]) -> tuple[list[tuple[int, dict[str, Any]]], dict[str, list[str]]]:
    """Type-check each row with one serializer instance (cheap for 10,000 rows)."""
    row_serializer = LeadInputSerializer()
    rows: list[tuple[int, dict[str, Any]]] = []
    errors: dict[str, list[str]] = {}
    for index, item in enumerate(items):
        try:
            rows.append((index, row_serializer.row_validate(item)))
        except serializers.ValidationError as exc:
            detail = exc.detail
            if isinstance(detail, dict) and list(detail) == ["non_field_errors"]:
                detail = detail["non_field_errors"]
            errors.update(flatten_errors(detail, f"items/{index}"))
    return rows, errors
