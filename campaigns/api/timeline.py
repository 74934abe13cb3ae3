"""``GET /api/v1/leads/{id}/timeline/``: a lead's story across its enrollments."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from campaigns.api.serializers import TIMELINE_ENTRY_SERIALIZERS, TimelineSerializer
from campaigns.selectors_timeline import TIMELINE_LIMIT, lead_timeline
from outreach.common.serializers import ErrorSerializer
from outreach.common.views import path_id


class LeadTimelineView(APIView):
    @extend_schema(
        summary="A lead's timeline",
        description=(
            "Chronological entries across all the lead's enrollments: `enrolled` (campaign, "
            "plan version), `message` (step, variant, subject, status, provider id, error), "
            "`event` (type, machine-open / bot-click / synthetic flags), `transition` (from → "
            "to, trigger, cause) and `scheduled` (pending work with its due time and, when it "
            "was put off, why: `outside the sending window`, `no capacity: ...`). Each entry "
            f"has a one-line `summary`. At most the latest {TIMELINE_LIMIT} entries are "
            "returned; `truncated` says when older ones were left out."
        ),
        tags=["leads"],
        parameters=[
            OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Lead id.")
        ],
        responses={
            200: TimelineSerializer,
            401: OpenApiResponse(
                ErrorSerializer, description="Missing, invalid or revoked API key."
            ),
            404: OpenApiResponse(ErrorSerializer, description="No such lead in this tenant."),
        },
    )
    def get(self, request: Request, pk: str) -> Response:
        timeline = lead_timeline(tenant_id=request.tenant.id, lead_id=path_id(pk, what="Lead"))
        return Response(
            {
                "lead_id": timeline.lead_id,
                "truncated": timeline.truncated,
                "note": timeline.note,
                "entries": [
                    TIMELINE_ENTRY_SERIALIZERS[entry.kind](entry).data for entry in timeline.entries
                ],
            }
        )
