"""Enrolling leads in a campaign, listing enrollments, and moving them to another version."""

from drf_spectacular.utils import extend_schema
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from campaigns import selectors_campaigns as selectors
from campaigns.api.campaigns import CAMPAIGN_ID, ERRORS, NOT_FOUND, TAGS, TOO_LARGE, campaign_id_of
from campaigns.api.serializers import (
    EnrollInputSerializer,
    EnrollmentFilterSerializer,
    EnrollmentSerializer,
    EnrollResultSerializer,
    MigrateInputSerializer,
    MigrationResultSerializer,
)
from campaigns.services import campaigns as services
from campaigns.services.enrollment import enrollments_create


class CampaignEnrollView(APIView):
    @extend_schema(
        summary="Enroll leads",
        description=(
            "By `lead_ids` or `emails` (up to 10,000 in all per call) into the published "
            "version. Each lead is either enrolled or skipped with a reason: `not_found`, "
            "`invalid` (its address failed validation), `suppressed`, `already_enrolled`. "
            "Each enrollment and its first scheduled action are written together."
        ),
        tags=TAGS,
        parameters=[CAMPAIGN_ID],
        request=EnrollInputSerializer,
        responses={200: EnrollResultSerializer, **ERRORS, **NOT_FOUND, **TOO_LARGE},
    )
    def post(self, request: Request, pk: str) -> Response:
        campaign_id = campaign_id_of(request, pk)
        incoming = EnrollInputSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        result = enrollments_create(
            tenant_id=request.tenant.id,
            campaign_id=campaign_id,
            lead_ids=incoming.validated_data.get("lead_ids"),
            emails=incoming.validated_data.get("emails"),
        )
        body = {"enrolled": result.enrolled, "skipped": result.skipped}
        return Response(EnrollResultSerializer(body).data)


class CampaignEnrollmentsView(GenericAPIView):
    serializer_class = EnrollmentSerializer

    @extend_schema(
        summary="List a campaign's enrollments",
        description="Newest first, cursor-paginated; filter with `state`.",
        tags=TAGS,
        parameters=[CAMPAIGN_ID, EnrollmentFilterSerializer],
        responses={200: EnrollmentSerializer(many=True), **ERRORS, **NOT_FOUND},
    )
    def get(self, request: Request, pk: str) -> Response:
        campaign_id = campaign_id_of(request, pk)
        filters = EnrollmentFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = selectors.enrollment_list(
            tenant_id=request.tenant.id, campaign_id=campaign_id, **filters.validated_data
        )
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(EnrollmentSerializer(page, many=True).data)


class CampaignMigrateView(APIView):
    @extend_schema(
        summary="Move live enrollments to another plan version",
        description=(
            "Takes an explicit `step_map` from each current step to a step of the target "
            "(published) version. Every live enrollment not yet on that version gets an "
            "outcome: `stays` (same step name; only its version changes), `moved` (its pending "
            "actions are replaced and it enters the new step, recorded as a `migrated` "
            "transition) or `error` (its step is missing from the map, or the mapped step does "
            "not exist in the target version). `dry_run` (the default) changes nothing. A real "
            "run is all or nothing: with any `error`, it answers 400 naming the steps "
            "(`step_map/<step>`) and moves no one."
        ),
        tags=TAGS,
        parameters=[CAMPAIGN_ID],
        request=MigrateInputSerializer,
        responses={200: MigrationResultSerializer, **ERRORS, **NOT_FOUND, **TOO_LARGE},
    )
    def post(self, request: Request, pk: str) -> Response:
        campaign_id = campaign_id_of(request, pk)
        incoming = MigrateInputSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        target = selectors.campaign_version_in_body(
            tenant_id=request.tenant.id,
            campaign_id=campaign_id,
            version=data["to_version"],
            field="to_version",
        )
        result = services.enrollments_migrate(
            tenant_id=request.tenant.id,
            campaign_id=campaign_id,
            to_version_id=target.pk,
            step_map=data["step_map"],
            dry_run=data["dry_run"],
        )
        body = {
            "to_version": result.to_version,
            "dry_run": result.dry_run,
            "counts": result.counts,
            "outcomes": result.outcomes,
        }
        return Response(MigrationResultSerializer(body).data)
