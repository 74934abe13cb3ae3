"""Serializer building blocks for a strict JSON API.

DRF is lenient by default: ``"first_name": 12`` becomes ``"12"``, ``"paused": "yes"`` becomes
``True`` and a misspelt key is silently ignored. For an integration API that hides bugs in the
caller's code, so these fields accept only the JSON type they document, and
``StrictSerializer`` refuses keys it does not know, naming each one.
"""

from typing import Any

from django.utils.functional import cached_property
from rest_framework import serializers
from rest_framework.validators import ProhibitSurrogateCharactersValidator


class _AsciiFastSurrogateCheck(ProhibitSurrogateCharactersValidator):
    """DRF's check walks every character; ASCII text (nearly all of it) cannot hold a
    surrogate, and bulk requests validate hundreds of thousands of strings."""

    def __call__(self, value: Any) -> None:
        if isinstance(value, str) and value.isascii():
            return
        super().__call__(value)


class StrictCharField(serializers.CharField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validators = [
            _AsciiFastSurrogateCheck() if type(v) is ProhibitSurrogateCharactersValidator else v
            for v in self.validators
        ]

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    default_error_messages = {"invalid": "A valid integer is required (a JSON number)."}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    default_error_messages = {"invalid": "Must be a JSON boolean (true or false)."}

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictSerializer(serializers.Serializer):
    """Refuses unknown keys, and read-only ones, with a field-path error each."""

    @cached_property
    def _writable_names(self) -> frozenset[str]:
        return frozenset(name for name, f in self.fields.items() if not f.read_only)

    def _refuse_unknown(self, data: dict) -> None:
        writable = self._writable_names
        if all(key in writable for key in data):
            return
        unknown = sorted(str(key) for key in data if key not in writable)
        if unknown:
            readonly = {name for name, f in self.fields.items() if f.read_only}
            raise serializers.ValidationError(
                {
                    key: ["This field is read-only." if key in readonly else "Unknown field."]
                    for key in unknown
                }
            )

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            self._refuse_unknown(data)
        return super().to_internal_value(data)

    def row_validate(self, data: Any) -> dict[str, Any]:
        """Validate one row of a bulk request: the same field checks as ``is_valid``, but
        only the keys present are visited, which is what makes 10,000 rows cheap. (For
        serializers without object-level ``validate`` or defaults, as bulk rows are.)"""
        if not isinstance(data, dict):
            message = self.error_messages["invalid"].format(datatype=type(data).__name__)
            raise serializers.ValidationError({"non_field_errors": [message]})
        self._refuse_unknown(data)
        fields = self.fields
        errors: dict[str, Any] = {}
        validated: dict[str, Any] = {}
        for name, value in data.items():
            try:
                validated[fields[name].source] = fields[name].run_validation(value)
            except serializers.ValidationError as exc:
                errors[name] = exc.detail
        for name, field in fields.items():
            if field.required and name not in data:
                errors[name] = [field.error_messages["required"]]
        if errors:
            raise serializers.ValidationError(errors)
        return validated


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text='Field path → reasons, e.g. `{"items/3/email": ["Enter a valid email ..."]}`.',
    )


class ErrorSerializer(serializers.Serializer):
    """Every 4xx body (``outreach.common.errors``)."""

    error = ErrorBodySerializer()
