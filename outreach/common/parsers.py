"""Request-body parsing for the JSON API, with the size limit enforced as a 413.

DRF's own ``JSONParser`` is handed ``request.body``, whose ``DATA_UPLOAD_MAX_MEMORY_SIZE``
check raises ``RequestDataTooBig`` outside the API's error handling (Django answers with an
HTML 400). This parser applies the same limit itself and answers 413 with the API's JSON
error: a declared ``Content-Length`` over the limit is refused before anything is read, and
a body is never read past limit + 1 bytes, so an oversized upload costs no more memory than
the limit.
"""

import json
from typing import Any

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser, get_encoding
from rest_framework.renderers import JSONRenderer
from rest_framework.utils import json as drf_json


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"
    default_detail = "Request body is too large."


def _limit() -> int | None:
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"Request body is larger than the limit of {limit} bytes.")


class LimitedJSONParser(BaseParser):
    """JSON bodies up to ``DATA_UPLOAD_MAX_MEMORY_SIZE`` bytes; larger ones are a 413.

    Deliberately not a ``JSONParser`` subclass: DRF hands those ``request.body``, whose own
    size check raises ``RequestDataTooBig`` outside the API's error handling (an HTML 400).
    Given the raw stream, this parser reads at most limit + 1 bytes and answers in JSON.
    """

    media_type = "application/json"
    renderer_class = JSONRenderer

    def parse(
        self, stream: Any, media_type: str | None = None, parser_context: dict | None = None
    ) -> Any:
        parser_context = parser_context or {}
        limit = _limit()
        request = parser_context.get("request")
        if limit is not None and request is not None:
            meta = request.META
            try:
                declared = int(meta.get("CONTENT_LENGTH") or meta.get("HTTP_CONTENT_LENGTH") or 0)
            except (TypeError, ValueError):
                declared = 0
            if declared > limit:
                raise _too_large(limit)
        raw = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(raw) > limit:
            raise _too_large(limit)

        encoding = get_encoding(parser_context)  # refuses bytes-to-bytes codecs (zip bombs)
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            raise ParseError(f"Request body is not valid {encoding}: {exc}") from None
        try:
            return json.loads(text, parse_constant=drf_json.strict_constant)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        except RecursionError:
            # A few kilobytes of "[[[[..." exhaust the decoder's stack: bad input, not a crash.
            raise ParseError("JSON parse error - the document is nested too deeply") from None
