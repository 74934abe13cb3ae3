"""The suppressions API (``/api/v1/suppressions/``): parse, call one service or selector, format.

A tenant sees its own entries and the global (platform-wide) ones; it can add and remove only
its own. Another tenant's entry is a 404.
"""

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

from outreach.common.errors import NotFound
from outreach.common.errors import errors_flatten as flatten_errors
from outreach.common.serializers import ErrorSerializer
from outreach.common.views import path_id
from suppression import selectors
from suppression.models import Suppression
from suppression.serializers import (
    SuppressionBulkEnvelopeSerializer,
    SuppressionBulkRequestSerializer,
    SuppressionBulkResultSerializer,
    SuppressionFilterSerializer,
    SuppressionInputSerializer,
    SuppressionSerializer,
)
from suppression.services import (
    SuppressionEntry,
    email_normalise,
    suppression_add,
    suppression_bulk_add,
    suppression_remove,
)

_ID = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Entry id.")
_ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid input, with field paths."),
    401: OpenApiResponse(ErrorSerializer, description="Missing, invalid or revoked API key."),
}
_NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="No such entry for this tenant.")}


@extend_schema_view(
    list=extend_schema(
        summary="List suppressions",
        description="The tenant's own entries and the global ones, newest first.",
        parameters=[SuppressionFilterSerializer],
        responses={200: SuppressionSerializer(many=True), **_ERRORS},
    ),
    create=extend_schema(
        summary="Suppress an address",
        description="201 when added; 200 with the existing entry when already suppressed.",
        request=SuppressionInputSerializer,
        responses={201: SuppressionSerializer, 200: SuppressionSerializer, **_ERRORS},
    ),
    retrieve=extend_schema(
        summary="Get a suppression",
        parameters=[_ID],
        responses={200: SuppressionSerializer, **_ERRORS, **_NOT_FOUND},
    ),
    destroy=extend_schema(
        summary="Lift a suppression",
        description="Only the tenant's own entries; global entries are read-only (403).",
        parameters=[_ID],
        responses={
            204: None,
            **_ERRORS,
            **_NOT_FOUND,
            403: OpenApiResponse(ErrorSerializer, description="A global entry."),
        },
    ),
)
class SuppressionViewSet(viewsets.GenericViewSet):
    serializer_class = SuppressionSerializer
    http_method_names = ["get", "post", "delete", "head", "options"]

    def list(self, request: Request) -> Response:
        filters = SuppressionFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = selectors.suppression_list(tenant_id=request.tenant.id, **filters.validated_data)
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(SuppressionSerializer(page, many=True).data)

    def create(self, request: Request) -> Response:
        incoming = SuppressionInputSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        created = suppression_add(
            tenant_id=request.tenant.id,
            email=data["email"],
            reason=data["reason"],
            source=Suppression.Source.API,
            note=data["note"],
        )
        entry = Suppression.objects.get(
            tenant_id=request.tenant.id, email=email_normalise(data["email"])
        )
        return Response(
            SuppressionSerializer(entry).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    def retrieve(self, request: Request, pk: str) -> Response:
        entry = selectors.suppression_get(
            tenant_id=request.tenant.id, suppression_id=path_id(pk, what="Suppression")
        )
        if entry is None:
            raise NotFound("Suppression not found.")
        return Response(SuppressionSerializer(entry).data)

    def destroy(self, request: Request, pk: str) -> Response:
        suppression_remove(
            tenant_id=request.tenant.id, suppression_id=path_id(pk, what="Suppression")
        )
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Suppress up to 10,000 addresses",
        description=(
            "Each row succeeds or fails on its own. Rows with invalid fields are listed in "
            "`errors` under their path (`items/3/email`); valid rows are added in one "
            "statement, and addresses already suppressed are counted in `existing_count`. "
            "The response is 200 whenever the envelope itself is valid."
        ),
        request=SuppressionBulkRequestSerializer,
        responses={200: SuppressionBulkResultSerializer, **_ERRORS},
    )
    @action(detail=False, methods=["post"], url_path="bulk")
    def bulk(self, request: Request) -> Response:
        envelope = SuppressionBulkEnvelopeSerializer(data=request.data)
        envelope.is_valid(raise_exception=True)
        entries, errors = _rows_parse(envelope.validated_data["items"])
        created = suppression_bulk_add(
            tenant_id=request.tenant.id, entries=entries, source=Suppression.Source.IMPORT
        )
        distinct = {email_normalise(entry.email) for entry in entries}
        body = {
            "created_count": len(created),
            "existing_count": len(distinct) - len(created),
            "error_count": len({path.split("/")[1] for path in errors}),
            "errors": errors,
        }
        return Response(SuppressionBulkResultSerializer(body).data)


def _rows_parse(items: list[Any]) -> tuple[list[SuppressionEntry], dict[str, list[str]]]:
    row_serializer = SuppressionInputSerializer()
    entries: list[SuppressionEntry] = []
    errors: dict[str, list[str]] = {}
    for index, item in enumerate(items):
        try:
            row = row_serializer.run_validation(item)
        except serializers.ValidationError as exc:
            detail = exc.detail
            if isinstance(detail, dict) and list(detail) == ["non_field_errors"]:
                detail = detail["non_field_errors"]
            errors.update(flatten_errors(detail, f"items/{index}"))
            continue
        entries.append(SuppressionEntry(email=row["email"], reason=row["reason"], note=row["note"]))
    return entries, errors
