"""Shapes of the sender-identities API. Types and ranges here; cross-field rules in
``messaging.services.identities``."""

from rest_framework import serializers

from messaging.models import SenderIdentity
from messaging.services.identities import IDENTITY_INPUT_FIELDS
from outreach.common.serializers import (
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    StrictSerializer,
)

_UINT_MAX = 2**31 - 1  # PositiveIntegerField


def _count(help_text: str) -> StrictIntegerField:
    return StrictIntegerField(required=False, min_value=0, max_value=_UINT_MAX, help_text=help_text)


def _text(max_length: int | None, help_text: str = "") -> StrictCharField:
    return StrictCharField(
        required=False, allow_blank=True, max_length=max_length, help_text=help_text
    )


class SenderIdentityInputSerializer(StrictSerializer):
    from_name = StrictCharField(max_length=200)
    from_email = StrictCharField(max_length=320, help_text="Stored lower-cased, ASCII domain.")
    reply_to = _text(320, "Blank: replies go to from_email.")
    signature = _text(10_000)
    owner_name = _text(200, "The AE this identity belongs to.")
    owner_email = _text(320)
    daily_cap = _count("Sends per local day.")
    hourly_cap = _count("Sends per local hour; at most daily_cap.")
    warmup_enabled = StrictBooleanField(required=False)
    warmup_start_volume = _count("Sends allowed on the first warm-up day.")
    warmup_daily_increase = _count("Added to the allowance each further day.")
    warmup_ceiling = _count("The warm-up allowance never grows past this.")
    warmup_started_on = serializers.DateField(required=False, allow_null=True)
    window_days = serializers.ListField(
        child=StrictIntegerField(min_value=0, max_value=6),
        required=False,
        min_length=1,
        max_length=7,
        help_text="Weekdays the identity sends on, 0 = Monday … 6 = Sunday; each at most once.",
    )
    window_start = serializers.TimeField(required=False, help_text="Local time, e.g. `09:00`.")
    window_end = serializers.TimeField(
        required=False, help_text="Local time, later than window_start."
    )
    timezone = StrictCharField(
        required=False, max_length=64, help_text="IANA zone of the window, e.g. `America/Chicago`."
    )
    paused = StrictBooleanField(required=False)
    sms_from_number = _text(32, "Twilio number to text from, E.164 (blank: no SMS).")
    sms_messaging_service_sid = _text(34, "Or a Twilio Messaging Service SID (MG…).")
    sms_per_second = _count("Texts per second from this number (a US long code: 1).")
    sms_daily_cap = _count("Texts per local day.")


class SenderIdentitySerializer(serializers.ModelSerializer):
    class Meta:
        model = SenderIdentity
        fields = ["id", *IDENTITY_INPUT_FIELDS, "domain_status", "created_at", "updated_at"]
        read_only_fields = fields
