"""``/api/v1/campaigns/``: campaigns, their plan versions, publishing, status and preview.

Interfaces only: parse, call one service or selector, format. Every path id is looked up in
the caller's tenant first, so another tenant's id is a 404 whatever the body says.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from campaigns import selectors_campaigns as selectors
from campaigns.api.serializers import (
    CampaignFilterSerializer,
    CampaignInputSerializer,
    CampaignPlanVersionSerializer,
    CampaignSerializer,
    PlanInputSerializer,
    PlanValidSerializer,
    PreviewQuerySerializer,
    PreviewSerializer,
)
from campaigns.services import campaigns as services
from outreach.common.serializers import ErrorSerializer
from outreach.common.views import path_id
from outreach.tenancy.api import request_actor, request_reason
from outreach.tenancy.serializers import ReasonSerializer

TAGS = ["campaigns"]
CAMPAIGN_ID = OpenApiParameter(
    "id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Campaign id."
)
VERSION = OpenApiParameter(
    "version", OpenApiTypes.INT, OpenApiParameter.PATH, description="Plan version number."
)
ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid input, with field paths."),
    401: OpenApiResponse(ErrorSerializer, description="Missing, invalid or revoked API key."),
}
NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="No such campaign in this tenant.")}
TOO_LARGE = {413: OpenApiResponse(ErrorSerializer, description="Body over the size limit.")}


def campaign_id_of(request: Request, pk: str) -> int:
    """The path's campaign id, checked to belong to the caller's tenant."""
    campaign_id = path_id(pk, what="Campaign")
    selectors.campaign_get(tenant_id=request.tenant.id, campaign_id=campaign_id)
    return campaign_id


def _campaign_body(tenant_id: int, campaign_id: int) -> dict:
    return CampaignSerializer(
        selectors.campaign_get(tenant_id=tenant_id, campaign_id=campaign_id)
    ).data


@extend_schema_view(
    list=extend_schema(
        summary="List campaigns",
        tags=TAGS,
        parameters=[CampaignFilterSerializer],
        responses={200: CampaignSerializer(many=True), **ERRORS},
    ),
    create=extend_schema(
        summary="Create a campaign",
        description="A new campaign starts as `draft`: add a plan version, publish, activate.",
        tags=TAGS,
        request=CampaignInputSerializer,
        responses={201: CampaignSerializer, **ERRORS, **TOO_LARGE},
    ),
    retrieve=extend_schema(
        summary="Get a campaign",
        tags=TAGS,
        parameters=[CAMPAIGN_ID],
        responses={200: CampaignSerializer, **ERRORS, **NOT_FOUND},
    ),
    partial_update=extend_schema(
        summary="Change a campaign",
        description=(
            "Name, description or sender identity. A new sender identity applies to leads "
            "enrolled from now on; running enrollments keep theirs."
        ),
        tags=TAGS,
        parameters=[CAMPAIGN_ID],
        request=CampaignInputSerializer(partial=True),
        responses={200: CampaignSerializer, **ERRORS, **NOT_FOUND, **TOO_LARGE},
    ),
)
class CampaignViewSet(viewsets.GenericViewSet):
    serializer_class = CampaignSerializer
    http_method_names = ["get", "post", "patch", "head", "options"]

    def list(self, request: Request) -> Response:
        filters = CampaignFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = selectors.campaign_list(tenant_id=request.tenant.id, **filters.validated_data)
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(CampaignSerializer(page, many=True).data)

    def create(self, request: Request) -> Response:
        incoming = CampaignInputSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        campaign = services.campaign_create(tenant_id=request.tenant.id, **incoming.validated_data)
        return Response(
            _campaign_body(request.tenant.id, campaign.pk), status=status.HTTP_201_CREATED
        )

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(_campaign_body(request.tenant.id, path_id(pk, what="Campaign")))

    def partial_update(self, request: Request, pk: str) -> Response:
        campaign_id = campaign_id_of(request, pk)
        incoming = CampaignInputSerializer(data=request.data, partial=True)
        incoming.is_valid(raise_exception=True)
        services.campaign_update(
            tenant_id=request.tenant.id, campaign_id=campaign_id, data=incoming.validated_data
        )
        return Response(_campaign_body(request.tenant.id, campaign_id))


class CampaignVersionsView(APIView):
    @extend_schema(
        summary="List a campaign's plan versions",
        tags=TAGS,
        parameters=[CAMPAIGN_ID],
        responses={200: CampaignPlanVersionSerializer(many=True), **ERRORS, **NOT_FOUND},
    )
    def get(self, request: Request, pk: str) -> Response:
        campaign_id = path_id(pk, what="Campaign")
        campaign = selectors.campaign_get(tenant_id=request.tenant.id, campaign_id=campaign_id)
        versions = selectors.campaign_version_list(
            tenant_id=request.tenant.id, campaign_id=campaign_id
        ).order_by("-version")
        context = {"current_version_id": campaign.current_version_id}
        return Response(CampaignPlanVersionSerializer(versions, many=True, context=context).data)

    @extend_schema(
        summary="Add a plan version",
        description=(
            "Validates the plan strictly (every problem is listed under its JSON pointer in "
            "`error.fields`, e.g. `/steps/intro/on/no_open/after`) and stores it as the next "
            "version. Versions are immutable. Sending a plan identical to an existing version "
            "returns that version with 200 instead of creating a copy."
        ),
        tags=TAGS,
        parameters=[CAMPAIGN_ID],
        request=PlanInputSerializer,
        responses={
            201: OpenApiResponse(CampaignPlanVersionSerializer, description="A new version."),
            200: OpenApiResponse(
                CampaignPlanVersionSerializer, description="The same plan was already stored."
            ),
            **ERRORS,
            **NOT_FOUND,
            **TOO_LARGE,
        },
    )
    def post(self, request: Request, pk: str) -> Response:
        campaign_id = campaign_id_of(request, pk)
        incoming = PlanInputSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        added = services.campaign_version_add(
            tenant_id=request.tenant.id,
            campaign_id=campaign_id,
            plan=incoming.validated_data["plan"],
        )
        campaign = selectors.campaign_get(tenant_id=request.tenant.id, campaign_id=campaign_id)
        body = CampaignPlanVersionSerializer(
            added.version, context={"current_version_id": campaign.current_version_id}
        ).data
        return Response(
            body, status=status.HTTP_201_CREATED if added.created else status.HTTP_200_OK
        )


class CampaignVersionValidateView(APIView):
    @extend_schema(
        summary="Validate a plan without saving it",
        description=(
            '200 `{"valid": true, "warnings": {...}, "sms_segments": {...}}`, or 400 with each '
            "problem under its JSON pointer. Warnings do not stop a plan (an SMS body past 3 "
            "segments, say); `sms_segments` gives every SMS step's encoding, characters and "
            "segments."
        ),
        tags=TAGS,
        parameters=[CAMPAIGN_ID],
        request=PlanInputSerializer,
        responses={200: PlanValidSerializer, **ERRORS, **NOT_FOUND, **TOO_LARGE},
    )
    def post(self, request: Request, pk: str) -> Response:
        campaign_id = campaign_id_of(request, pk)
        incoming = PlanInputSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        checked = services.campaign_version_check(
            tenant_id=request.tenant.id,
            campaign_id=campaign_id,
            plan=incoming.validated_data["plan"],
        )
        fields: dict[str, list[str]] = {}
        for warning in checked.warnings:
            fields.setdefault(warning.pointer, []).append(warning.message)
        segments = {
            pointer: {
                "encoding": counted.encoding,
                "characters": counted.characters,
                "segments": counted.segments,
            }
            for pointer, counted in checked.sms_segments.items()
        }
        return Response(
            PlanValidSerializer({"valid": True, "warnings": fields, "sms_segments": segments}).data
        )


class CampaignPublishView(APIView):
    @extend_schema(
        summary="Publish a plan version",
        description=(
            "New enrollments start on the published version. Enrollments already running stay "
            "on theirs (see the migrate endpoint). Publishing an older version rolls back."
        ),
        tags=TAGS,
        parameters=[CAMPAIGN_ID, VERSION],
        request=None,
        responses={
            200: CampaignSerializer,
            **ERRORS,
            404: OpenApiResponse(ErrorSerializer, description="No such campaign or version."),
        },
    )
    def post(self, request: Request, pk: str, version: str) -> Response:
        campaign_id = campaign_id_of(request, pk)
        number = path_id(version, what="Version")
        services.campaign_publish(
            tenant_id=request.tenant.id, campaign_id=campaign_id, version=number
        )
        return Response(_campaign_body(request.tenant.id, campaign_id))


_STATUS_DOCS = {
    "activate": (
        "Activate a campaign",
        "From `draft` to `active`; needs a published version. Repeating it is harmless.",
    ),
    "pause": (
        "Pause a campaign",
        "From `active` to `paused`. Enrollments and their schedule are kept; due sends wait "
        "until the campaign is resumed.",
    ),
    "resume": ("Resume a paused campaign", "From `paused` back to `active`."),
    "archive": (
        "Archive a campaign",
        "Final. Stops every live enrollment (reason `campaign archived`) and drops its "
        "scheduled work.",
    ),
}


class _CampaignStatusView(APIView):
    status_action: services.StatusAction

    def post(self, request: Request, pk: str) -> Response:
        campaign_id = campaign_id_of(request, pk)
        services.campaign_status_set(
            tenant_id=request.tenant.id,
            campaign_id=campaign_id,
            action=self.status_action,
            actor=request_actor(request),
            reason=request_reason(request),
        )
        return Response(_campaign_body(request.tenant.id, campaign_id))


def _status_view(action: services.StatusAction) -> type[APIView]:
    summary, description = _STATUS_DOCS[action]

    # A function of its own per action: the schema annotation is stored on the function.
    def post(self: _CampaignStatusView, request: Request, pk: str) -> Response:
        return _CampaignStatusView.post(self, request, pk)

    post = extend_schema(
        summary=summary,
        description=description,
        tags=TAGS,
        parameters=[CAMPAIGN_ID],
        request=ReasonSerializer,
        responses={200: CampaignSerializer, **ERRORS, **NOT_FOUND},
    )(post)
    name = f"Campaign{action.capitalize()}View"
    return type(name, (_CampaignStatusView,), {"status_action": action, "post": post})


CampaignActivateView = _status_view("activate")
CampaignPauseView = _status_view("pause")
CampaignResumeView = _status_view("resume")
CampaignArchiveView = _status_view("archive")


class CampaignPreviewView(APIView):
    @extend_schema(
        summary="Preview a plan for one lead",
        description=(
            "Renders every email step, each variant, with the lead's merge fields. The "
            "unsubscribe link in a preview is a placeholder."
        ),
        tags=TAGS,
        parameters=[CAMPAIGN_ID, PreviewQuerySerializer],
        responses={200: PreviewSerializer, **ERRORS, **NOT_FOUND},
    )
    def get(self, request: Request, pk: str) -> Response:
        campaign_id = campaign_id_of(request, pk)
        query = PreviewQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        preview = selectors.campaign_preview(
            tenant_id=request.tenant.id, campaign_id=campaign_id, **query.validated_data
        )
        return Response(PreviewSerializer(preview).data)
