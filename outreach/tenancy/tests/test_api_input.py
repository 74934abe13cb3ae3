"""Bad request bodies on every write endpoint: a JSON 4xx naming the problem, never a 500."""

import io
import json

import pytest
from django.test import RequestFactory
from rest_framework.exceptions import ParseError

from outreach.common.parsers import LimitedJSONParser, RequestTooLarge
from outreach.testing.factories import LeadFactory, SenderIdentityFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def writes(tenant):
    lead = LeadFactory(tenant=tenant)
    identity = SenderIdentityFactory(tenant=tenant)
    return [
        ("post", "/api/v1/leads/"),
        ("post", "/api/v1/leads/bulk/"),
        ("patch", f"/api/v1/leads/{lead.id}/"),
        ("post", "/api/v1/sender-identities/"),
        ("patch", f"/api/v1/sender-identities/{identity.id}/"),
    ]


BAD_JSON = [
    '{"email": ',
    "{'email': 'single@quotes.com'}",
    '{"email": "a@example.com",}',
    "[1, 2",
    "NaN",
    '{"x": Infinity}',
    "\x00\x01",
]


@pytest.mark.parametrize("body", BAD_JSON)
def test_malformed_json_is_a_400_parse_error(api, writes, body):
    for method, url in writes:
        response = getattr(api, method)(url, body, content_type="application/json")
        assert response.status_code == 400, (url, body, response.content)
        assert response.json()["error"]["code"] == "parse_error"


def test_a_body_that_is_not_utf8_is_a_400(api, writes):
    for method, url in writes:
        response = getattr(api, method)(
            url, '{"email": "\u00e9"}'.encode("latin-1"), content_type="application/json"
        )
        assert response.status_code == 400, (url, response.content)


@pytest.mark.parametrize("body", ["null", "42", '"text"', "[]", "true", "[{}]"])
def test_json_that_is_not_an_object_is_a_400(api, writes, body):
    for method, url in writes:
        response = getattr(api, method)(url, body, content_type="application/json")
        assert response.status_code == 400, (url, body, response.content)
        assert response.json()["error"]["fields"]


def test_a_non_json_content_type_is_a_415(api, writes):
    for method, url in writes:
        response = getattr(api, method)(url, "email=a@example.com", content_type="text/plain")
        assert response.status_code == 415, (url, response.content)
        assert set(response.json()) == {"error"}


def test_an_oversized_body_is_a_413_on_every_write(api, writes, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    body = json.dumps({"email": "a@example.com", "first_name": "x" * 2_000})
    for method, url in writes:
        response = getattr(api, method)(url, body, content_type="application/json")
        assert response.status_code == 413, (url, response.content)
        assert response.json()["error"]["code"] == "request_too_large"


def test_the_default_limit_lets_a_full_bulk_request_through(settings):
    rows = [
        {
            "email": f"someone.with.a.long.name{i}@a-rather-long-company-domain.example.com",
            "first_name": "Firstname",
            "last_name": "Lastname",
            "company": "Company Incorporated",
            "title": "Vice President of Sales",
            "custom_fields": {"source": "webinar-2026", "score": 87},
        }
        for i in range(10_000)
    ]
    assert len(json.dumps({"items": rows})) < settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def _parse(body: bytes, *, declared: int | None, limit: int, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = limit
    request = RequestFactory().post("/", data=b"", content_type="application/json")
    if declared is None:
        request.META.pop("CONTENT_LENGTH", None)
    else:
        request.META["CONTENT_LENGTH"] = str(declared)
    context = {"request": request, "encoding": "utf-8"}
    return LimitedJSONParser().parse(io.BytesIO(body), "application/json", context)


def test_the_parser_stops_reading_past_the_limit_even_without_a_declared_length(settings):
    body = json.dumps({"x": "y" * 500}).encode()
    with pytest.raises(RequestTooLarge):
        _parse(body, declared=None, limit=100, settings=settings)
    with pytest.raises(RequestTooLarge):
        _parse(body, declared=len(body), limit=100, settings=settings)
    assert _parse(body, declared=len(body), limit=len(body), settings=settings) == {"x": "y" * 500}
    with pytest.raises(ParseError):
        _parse(b'{"x": NaN}', declared=10, limit=100, settings=settings)


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -1,
        1.5,
        2**70,
        "",
        "x" * 5000,
        [],
        [None],
        {},
        {"a": {"b": {}}},
        "\u0000",
        "a\u0000@example.com",
        {"k": "\u0000"},
        {"\u0000": "v"},
        {"k": 2**70},
        {"k": 1e308},
    ],
)
def test_odd_values_in_every_field_are_4xx_never_500(api, writes, value):
    fields = {
        "/api/v1/leads/": ["email", "first_name", "phone", "timezone", "country", "custom_fields"],
        "/api/v1/sender-identities/": [
            "from_email",
            "daily_cap",
            "window_days",
            "window_start",
            "timezone",
            "paused",
            "warmup_started_on",
        ],
    }
    for method, url in writes:
        base = "/api/v1/leads/" if "/leads/" in url else "/api/v1/sender-identities/"
        for name in fields[base]:
            body = {name: value}
            if url.endswith("/bulk/"):
                body = {"items": [body]}
            response = getattr(api, method)(url, body, format="json")
            assert response.status_code < 500, (url, name, value, response.content)
