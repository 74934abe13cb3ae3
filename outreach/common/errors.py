"""One project exception, mapped to API responses in one place.

Every client error is a 400-class JSON body of the form
``{"error": {"code": ..., "message": ..., "fields": {"path": ["reason"]}}}`` so an integrator
always sees which field was wrong and why. Unexpected exceptions still surface as 500s (and in
logs): they are bugs, not input errors.
"""

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class ApplicationError(Exception):
    """A business rule said no. ``extra`` carries field paths → reasons when there are any."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(
        self,
        message: str,
        code: str = "invalid",
        extra: dict[str, Any] | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.extra = extra or {}
        if status_code is not None:
            self.status_code = status_code


class NotFound(ApplicationError):
    status_code = status.HTTP_404_NOT_FOUND

    def __init__(self, message: str = "Not found.", code: str = "not_found") -> None:
        super().__init__(message, code)


def errors_flatten(detail: Any, path: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error detail into ``{"items/3/email": ["reason"]}``."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            sub = f"{path}/{key}" if path else str(key)
            for k, v in errors_flatten(value, sub).items():
                out.setdefault(k, []).extend(v)
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            out.setdefault(path or "non_field_errors", []).extend(str(item) for item in detail)
        else:
            for index, item in enumerate(detail):
                if not item:
                    continue
                sub = f"{path}/{index}" if path else str(index)
                for k, v in errors_flatten(item, sub).items():
                    out.setdefault(k, []).extend(v)
    else:
        out.setdefault(path or "non_field_errors", []).append(str(detail))
    return out


def _body(code: str, message: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        return Response(_body(exc.code, exc.message, exc.extra or None), status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    if isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = errors_flatten(exc.detail)
        first_path, first_reasons = next(iter(fields.items()))
        message = f"{first_path}: {first_reasons[0]}"
        response.data = _body("invalid", message, fields)
    elif isinstance(exc, exceptions.APIException):
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else "error"
        response.data = _body(str(code), str(exc.detail))
    return response
