from typing import Any

from rest_framework import serializers

from outreach.common.serializers import StrictCharField, StrictSerializer
from suppression.models import Suppression

BULK_MAX_ROWS = 10_000


class SuppressionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Suppression
        fields = ["id", "email", "scope", "reason", "source", "note", "created_at"]
        read_only_fields = fields


class SuppressionInputSerializer(StrictSerializer):
    email = serializers.EmailField(max_length=320)
    reason = serializers.ChoiceField(choices=Suppression.Reason.choices, default="manual")
    note = StrictCharField(required=False, allow_blank=True, default="", max_length=2000)


class SuppressionFilterSerializer(serializers.Serializer):
    email = serializers.CharField(required=False, help_text="Exact address (normalised first).")
    reason = serializers.ChoiceField(choices=Suppression.Reason.choices, required=False)
    scope = serializers.ChoiceField(choices=Suppression.Scope.choices, required=False)


class _RowsField(serializers.Field):
    """A JSON array of 1 to ``BULK_MAX_ROWS`` elements, left unparsed: each row is validated
    on its own so its errors are reported under its index."""

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


class SuppressionBulkEnvelopeSerializer(StrictSerializer):
    items = _RowsField()


class SuppressionBulkRequestSerializer(StrictSerializer):
    """The documented shape of a bulk import (validation happens row by row)."""

    items = SuppressionInputSerializer(many=True, min_length=1, max_length=BULK_MAX_ROWS)


class SuppressionBulkResultSerializer(serializers.Serializer):
    created_count = serializers.IntegerField()
    existing_count = serializers.IntegerField(
        help_text="Valid rows whose address this tenant had already suppressed."
    )
    error_count = serializers.IntegerField(help_text="Rows rejected for invalid fields.")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text='Field path → reasons, e.g. `{"items/3/email": ["Enter a valid email ..."]}`.',
    )
