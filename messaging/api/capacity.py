"""``GET /api/v1/sender-identities/{id}/capacity/``: what an identity may still send."""

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging.models import SenderIdentity
from messaging.services.ratelimit import identity_capacity_get


class _LocalDateTimeField(serializers.DateTimeField):
    """Keeps the value's own UTC offset (DRF would convert it to the server's zone)."""

    def to_representation(self, value):
        return value.isoformat()


class IdentityCapacitySerializer(serializers.Serializer):
    identity_id = serializers.IntegerField()
    timezone = serializers.CharField(help_text="The identity's IANA time zone; its day and hours.")
    local_time = _LocalDateTimeField(help_text="Now, with the identity's UTC offset.")
    local_date = serializers.DateField(help_text="The identity's current calendar day.")
    paused = serializers.BooleanField()
    warmup_enabled = serializers.BooleanField()
    warmup_day = serializers.IntegerField(
        allow_null=True, help_text="Warm-up day number (1 = first day); null without warm-up."
    )
    warmup_allowance = serializers.IntegerField(
        allow_null=True, help_text="What the warm-up ramp allows today; null without warm-up."
    )
    daily_cap = serializers.IntegerField()
    hourly_cap = serializers.IntegerField()
    today_ceiling = serializers.IntegerField(help_text="min(daily cap, warm-up allowance).")
    hour_ceiling = serializers.IntegerField(help_text="min(hourly cap, today's ceiling).")
    sent_today = serializers.IntegerField()
    sent_this_hour = serializers.IntegerField()
    remaining_today = serializers.IntegerField(
        help_text="Sends left today for this identity (the tenant quota is reported apart)."
    )
    remaining_this_hour = serializers.IntegerField(
        help_text="Sends left in the current local hour (never more than remaining_today)."
    )
    followup_reserve_today = serializers.IntegerField(
        help_text="Of today's ceiling, how many sends first touches may not use."
    )
    day_resets_at = serializers.DateTimeField(help_text="Next local midnight, in UTC.")
    hour_resets_at = serializers.DateTimeField(help_text="Next local hour, in UTC.")
    tenant_daily_quota = serializers.IntegerField(help_text="Per UTC day, all identities.")
    tenant_sent_today = serializers.IntegerField()
    tenant_remaining_today = serializers.IntegerField()
    in_window = serializers.BooleanField(
        help_text="Inside the sending window now, in the identity's zone (each lead's own zone "
        "and holidays apply to its sends)."
    )
    window_closes_at = serializers.DateTimeField(
        allow_null=True, help_text="When the current window closes; null outside the window."
    )
    next_window_opens_at = serializers.DateTimeField(
        allow_null=True,
        help_text="The next window opening after now; null if the window has no weekdays.",
    )


class SenderIdentityCapacityView(APIView):
    @extend_schema(
        operation_id="sender_identity_capacity",
        summary="Sending capacity of a sender identity",
        description=(
            "How many sends remain today and this hour (live counters shared by all workers), "
            "the warm-up day and today's ceiling, the identity's local date and time, and its "
            "sending window. Another tenant's identity answers 404."
        ),
        tags=["sender-identities"],
        responses=IdentityCapacitySerializer,
    )
    def get(self, request: Request, pk: int) -> Response:
        identity = get_object_or_404(SenderIdentity.objects.for_tenant(request.tenant.id), pk=pk)
        report = identity_capacity_get(
            tenant_id=request.tenant.id, identity=identity, now=timezone.now()
        )
        return Response(IdentityCapacitySerializer(report).data)
