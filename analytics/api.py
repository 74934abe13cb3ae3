"""``/api/v1/analytics/``: campaign, sender identity and account analytics.

Interfaces only: parse the query, call one selector, return its figures. Path ids are looked
up in the caller's tenant, so another tenant's campaign or sender is a 404.
"""

import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import selectors
from outreach.common.serializers import ErrorSerializer
from outreach.common.views import path_id
from outreach.tenancy.flags import Flag, tenant_flag_require

TAGS = ["analytics"]
ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="A bad parameter, named in `fields`."),
    401: OpenApiResponse(ErrorSerializer, description="Missing, invalid or revoked API key."),
}


def _not_found(what: str) -> dict:
    return {404: OpenApiResponse(ErrorSerializer, description=f"No such {what} in this tenant.")}


class MomentField(serializers.Field):
    """A date (``2026-12-01``, midnight in the tenant's zone) or an ISO 8601 time."""

    default_error_messages = {"invalid": "Use a date (2026-12-01) or an ISO 8601 time."}

    def to_internal_value(self, data: Any) -> datetime.datetime:
        text = str(data).strip()
        try:
            moment = parse_datetime(text)
            day = None if moment else parse_date(text)
        except ValueError:
            self.fail("invalid")
        if moment is None and day is None:
            self.fail("invalid")
        zone = ZoneInfo(self.context["timezone"])
        if moment is None:
            moment = datetime.datetime.combine(day, datetime.time(), tzinfo=zone)
        elif timezone.is_naive(moment):
            moment = moment.replace(tzinfo=zone)
        return moment

    def to_representation(self, value: Any) -> Any:
        return value


class RangeQuerySerializer(serializers.Serializer):
    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        # ``from`` is a Python keyword, hence declared here rather than as an attribute.
        fields["from"] = MomentField(required=False)
        fields["to"] = MomentField(required=False)
        return fields


class TimeseriesQuerySerializer(RangeQuerySerializer):
    bucket = serializers.ChoiceField(choices=selectors.BUCKETS, default="hour")


class DayRangeQuerySerializer(serializers.Serializer):
    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["from"] = serializers.DateField(required=False)
        fields["to"] = serializers.DateField(required=False)
        return fields


CAMPAIGN_ID = OpenApiParameter(
    "id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Campaign id."
)
RANGE = [
    OpenApiParameter(
        "from",
        OpenApiTypes.STR,
        description="Start: a date (midnight in the tenant's time zone) or an ISO 8601 time.",
    ),
    OpenApiParameter("to", OpenApiTypes.STR, description="End (exclusive); default now."),
]


class _AnalyticsView(APIView):
    """Answers only for tenants with the ``analytics`` feature flag on (403 otherwise)."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        tenant_flag_require(tenant_id=request.tenant.id, flag=Flag.ANALYTICS)


class CampaignAnalyticsView(_AnalyticsView):
    @extend_schema(
        summary="Campaign analytics",
        description=(
            "Totals, per plan version, per step and per A/B variant; the funnel from enrolled "
            "to replied; where enrollments are now and why they stopped; the plan as a graph "
            "with each step's counts. `sent` and `unique_*` count messages in the hour they "
            "were sent, the other counters count events; `as_of` says how fresh they are."
        ),
        tags=TAGS,
        parameters=[CAMPAIGN_ID],
        responses={200: OpenApiTypes.OBJECT, **ERRORS, **_not_found("campaign")},
    )
    def get(self, request: Request, pk: str) -> Response:
        return Response(
            selectors.campaign_analytics(
                tenant_id=request.tenant.id, campaign_id=path_id(pk, what="Campaign")
            )
        )


class CampaignTimeseriesView(_AnalyticsView):
    @extend_schema(
        summary="Campaign time series",
        description=(
            "Every counter per hour or per day of the tenant's time zone, with empty buckets "
            "as zeros. At most 31 days of hours or 731 days of days."
        ),
        tags=TAGS,
        parameters=[
            CAMPAIGN_ID,
            OpenApiParameter("bucket", OpenApiTypes.STR, enum=list(selectors.BUCKETS)),
            *RANGE,
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS, **_not_found("campaign")},
    )
    def get(self, request: Request, pk: str) -> Response:
        campaign_id = path_id(pk, what="Campaign")
        query = TimeseriesQuerySerializer(
            data=request.query_params, context={"timezone": request.tenant.timezone}
        )
        query.is_valid(raise_exception=True)
        return Response(
            selectors.campaign_timeseries(
                tenant_id=request.tenant.id,
                campaign_id=campaign_id,
                bucket=query.validated_data["bucket"],
                since=query.validated_data.get("from"),
                until=query.validated_data.get("to"),
            )
        )


class SenderIdentityAnalyticsView(_AnalyticsView):
    @extend_schema(
        summary="Sender identity analytics",
        description=(
            "An AE's sender identity over the last 30 days: sent, caps used today, and bounce "
            "and spam-complaint rates against Gmail and Yahoo bulk-sender thresholds "
            "(spam rate under 0.3 %, warning from 0.1 %)."
        ),
        tags=TAGS,
        parameters=[
            OpenApiParameter(
                "id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Sender identity id."
            )
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS, **_not_found("sender identity")},
    )
    def get(self, request: Request, pk: str) -> Response:
        return Response(
            selectors.sender_analytics(
                tenant_id=request.tenant.id,
                sender_identity_id=path_id(pk, what="Sender identity"),
            )
        )


class TenantAnalyticsView(_AnalyticsView):
    @extend_schema(
        summary="Account analytics by day",
        description="Every counter per day of the tenant's time zone; `from`/`to` are dates.",
        tags=TAGS,
        parameters=[
            OpenApiParameter(
                "from", OpenApiTypes.DATE, description="First day (default: 29 days ago)."
            ),
            OpenApiParameter(
                "to", OpenApiTypes.DATE, description="Last day, included (default today)."
            ),
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = DayRangeQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(
            selectors.tenant_analytics(
                tenant_id=request.tenant.id,
                since=query.validated_data.get("from"),
                until=query.validated_data.get("to"),
            )
        )
