"""Shapes of the leads API: what a request may carry, and what a response looks like.

Input serializers check JSON types and lengths only; the domain rules (email verdict, E.164,
IANA zone, ISO country, uniqueness) live in ``campaigns.services.leads``.
"""

from typing import Any

from rest_framework import serializers

from campaigns.models import Lead
from campaigns.services.leads import BULK_MAX_ROWS
from outreach.common.serializers import StrictCharField, StrictSerializer

CUSTOM_FIELDS_MAX_KEYS = 100
CUSTOM_FIELD_KEY_MAX = 100
CUSTOM_FIELD_VALUE_MAX = 2000


class _MergeValueField(serializers.JSONField):
    """A string, number, boolean or null (no ``json.dumps`` round trip per value)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, (dict, list)):
            raise serializers.ValidationError("Must be a string, number, boolean or null.")
        return data


class CustomFieldsField(serializers.DictField):
    """A flat object of merge values: ``{"plan": "pro", "seats": 12}``. Nested objects and
    lists are refused: templates personalise with scalars."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("child", _MergeValueField(allow_null=True))
        kwargs.setdefault(
            "help_text",
            f"Flat object (at most {CUSTOM_FIELDS_MAX_KEYS} keys) of string, number, boolean "
            "or null values, available to templates.",
        )
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        value = super().to_internal_value(data)
        if len(value) > CUSTOM_FIELDS_MAX_KEYS:
            raise serializers.ValidationError(f"At most {CUSTOM_FIELDS_MAX_KEYS} keys.")
        errors: dict[str, list[str]] = {}
        for key, item in value.items():
            if not key or len(key) > CUSTOM_FIELD_KEY_MAX:
                errors[key] = [f"Keys must be 1 to {CUSTOM_FIELD_KEY_MAX} characters."]
            elif "\x00" in key or (isinstance(item, str) and "\x00" in item):
                # PostgreSQL text and jsonb cannot store NUL.
                errors[key] = ["Null characters are not allowed."]
            elif isinstance(item, str) and len(item) > CUSTOM_FIELD_VALUE_MAX:
                errors[key] = [
                    f"Ensure this value has at most {CUSTOM_FIELD_VALUE_MAX} characters."
                ]
        if errors:
            raise serializers.ValidationError(errors)
        return value


def _text(max_length: int, help_text: str = "") -> StrictCharField:
    return StrictCharField(
        required=False, allow_blank=True, max_length=max_length, help_text=help_text
    )


class LeadInputSerializer(StrictSerializer):
    email = StrictCharField(
        max_length=320,
        help_text=(
            "Stored normalised: the domain in its ASCII (IDNA) form and the whole address in "
            "lower case. Role addresses and disposable domains are accepted as `risky`."
        ),
    )
    first_name = _text(100)
    last_name = _text(100)
    company = _text(200)
    title = _text(200)
    timezone = _text(64, "IANA time zone, e.g. `Europe/Berlin`.")
    country = _text(64, "ISO 3166-1 alpha-2 code, e.g. `DE` (stored upper-case).")
    phone = _text(32, "E.164, e.g. `+14155550100` (spaces, dashes and brackets are removed).")
    custom_fields = CustomFieldsField(required=False)
    sms_consent = serializers.ChoiceField(
        choices=Lead.SmsConsent.choices,
        required=False,
        help_text="No SMS is sent without `granted`; the time of a change is recorded.",
    )
    sms_consent_source = _text(
        100,
        "Where the consent came from, e.g. `web_form`; required with `granted`; `api` when "
        "`unknown` or `revoked` is set without one (never the source of the state replaced).",
    )


class LeadSerializer(serializers.ModelSerializer):
    class Meta:
        model = Lead
        fields = [
            "id",
            "email",
            "first_name",
            "last_name",
            "company",
            "title",
            "timezone",
            "country",
            "phone",
            "custom_fields",
            "sms_consent",
            "sms_consent_source",
            "sms_consent_at",
            "validation_status",
            "validation_reason",
            "is_role_address",
            "is_disposable",
            "validated_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class LeadFilterSerializer(serializers.Serializer):
    email = serializers.CharField(required=False, help_text="Exact address (normalised first).")
    company = serializers.CharField(required=False, help_text="Exact company name.")
    validation_status = serializers.ChoiceField(choices=Lead.Validation.choices, required=False)
    created_after = serializers.DateTimeField(
        required=False, help_text="ISO 8601; leads created at or after this instant."
    )
    created_before = serializers.DateTimeField(
        required=False, help_text="ISO 8601; leads created before this instant."
    )
    q = serializers.CharField(
        required=False, help_text="Words searched in first name, last name and company."
    )


class LeadBulkRequestSerializer(StrictSerializer):
    items = LeadInputSerializer(many=True, min_length=1, max_length=BULK_MAX_ROWS)


class _RowsField(serializers.Field):
    """A JSON array of 1 to ``BULK_MAX_ROWS`` elements, left unparsed."""

    def to_internal_value(self, data: Any) -> list[Any]:
        if not isinstance(data, list):
            raise serializers.ValidationError(
                f'Expected a list of items but got type "{type(data).__name__}".'
            )
        if not data:
            raise serializers.ValidationError("This list may not be empty.")
        if len(data) > BULK_MAX_ROWS:
            raise serializers.ValidationError(
                f"Ensure this field has no more than {BULK_MAX_ROWS} elements."
            )
        return data


class LeadBulkEnvelopeSerializer(StrictSerializer):
    """The bulk body's outer shape only; rows are validated one by one so each row's errors
    are reported under its own index instead of failing the whole request."""

    items = _RowsField()


class LeadBulkCreatedSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    id = serializers.IntegerField()


class LeadBulkSkippedSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    email = serializers.CharField()
    reason = serializers.CharField(
        help_text='"already exists" (see existing_id), or '
        '"duplicate of an earlier row (items/N)" of the same request.'
    )
    existing_id = serializers.IntegerField(allow_null=True)


class LeadBulkResultSerializer(serializers.Serializer):
    created_count = serializers.IntegerField()
    skipped_count = serializers.IntegerField()
    error_count = serializers.IntegerField(help_text="Rows rejected for invalid fields.")
    created = LeadBulkCreatedSerializer(many=True)
    skipped = LeadBulkSkippedSerializer(many=True)
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text='Field path → reasons, e.g. `{"items/3/email": ["Enter a valid email ..."]}`.',
    )
