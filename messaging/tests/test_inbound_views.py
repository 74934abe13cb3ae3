"""The Inbound Parse endpoint (authenticate, store raw, answer at once) and the inbound API."""

import base64

import pytest

from messaging.models import InboundMessage, WebhookReceipt
from messaging.services.inbound import inbound_receipt_process
from messaging.tests.inbound_support import (
    TOKENS,
    default_mode_post,
    fixture_bytes,
    inbound_url,
    multipart_encode,
    raw_mode_post,
    sent_message,
)

pytestmark = pytest.mark.django_db


def _post(client, url: str, body: bytes, content_type: str, **extra):
    return client.generic("POST", url, data=body, content_type=content_type, **extra)


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}


# --- the endpoint -----------------------------------------------------------------------------


def test_a_raw_mode_post_is_stored_before_the_answer_and_nothing_else_happens(client, tenant):
    body, content_type = raw_mode_post(fixture_bytes("gmail_reply"))
    response = _post(client, inbound_url(tenant), body, content_type, HTTP_USER_AGENT="Sendlib/1.0")
    assert response.status_code == 200
    receipt = WebhookReceipt.objects.get()
    assert (receipt.tenant_id, receipt.kind) == (tenant.pk, "inbound")
    assert bytes(receipt.body) == body
    assert receipt.content_type == content_type
    assert receipt.headers["User-Agent"] == "Sendlib/1.0"
    assert receipt.processed_at is None
    # The task never ran here: the durable row is all there is, and it is enough.
    assert InboundMessage.objects.count() == 0


def test_processing_is_only_hinted_after_commit(client, tenant, django_capture_on_commit_callbacks):
    body, content_type = raw_mode_post(fixture_bytes("gmail_reply"))
    with django_capture_on_commit_callbacks() as callbacks:
        response = _post(client, inbound_url(tenant), body, content_type)
    assert response.status_code == 200
    assert len(callbacks) == 1


def test_a_default_mode_post_is_stored_and_reads_as_the_same_reply(client, tenant):
    ours = sent_message(tenant, reply_token=TOKENS["exchange_ooo"])
    body, content_type = default_mode_post(fixture_bytes("exchange_ooo"), text_charset="iso-8859-1")
    assert _post(client, inbound_url(tenant), body, content_type).status_code == 200
    receipt = WebhookReceipt.objects.get()
    inbound = inbound_receipt_process(tenant_id=tenant.pk, receipt_id=receipt.pk)
    assert inbound.matched_message == ours
    assert inbound.classification == "out_of_office"
    assert "Sinéad Byrne" in inbound.raw_mime


@pytest.mark.parametrize("secret", ["wrong-secret", ""])
def test_a_wrong_secret_is_a_404_and_stores_nothing(client, tenant, secret):
    body, content_type = raw_mode_post(fixture_bytes("gmail_reply"))
    url = (
        inbound_url(tenant, secret=secret)
        if secret
        else f"/webhooks/sendgrid/inbound/{tenant.public_id}/"
    )
    response = _post(client, url, body, content_type)
    assert response.status_code == 404
    assert WebhookReceipt.objects.count() == 0


def test_an_unknown_tenant_looks_exactly_like_a_wrong_secret(client, tenant, other_tenant):
    body, content_type = raw_mode_post(fixture_bytes("gmail_reply"))
    wrong_secret = _post(client, inbound_url(tenant, secret="nope"), body, content_type)
    other_secret = _post(
        client, inbound_url(tenant, secret=other_tenant.inbound_secret), body, content_type
    )
    unknown = _post(
        client,
        "/webhooks/sendgrid/inbound/00000000-0000-4000-8000-000000000000/nope/",
        body,
        content_type,
    )
    assert wrong_secret.status_code == other_secret.status_code == unknown.status_code == 404
    assert wrong_secret.content == other_secret.content == unknown.content
    assert WebhookReceipt.objects.count() == 0


def test_basic_auth_with_the_tenants_secret_is_accepted_without_a_url_secret(client, tenant):
    body, content_type = raw_mode_post(fixture_bytes("gmail_reply"))
    url = f"/webhooks/sendgrid/inbound/{tenant.public_id}/"
    response = _post(client, url, body, content_type, **_basic("sendgrid", tenant.inbound_secret))
    assert response.status_code == 200
    assert WebhookReceipt.objects.get().tenant_id == tenant.pk


def test_basic_auth_with_another_tenants_secret_is_refused(client, tenant, other_tenant):
    body, content_type = raw_mode_post(fixture_bytes("gmail_reply"))
    url = f"/webhooks/sendgrid/inbound/{tenant.public_id}/"
    response = _post(
        client, url, body, content_type, **_basic("sendgrid", other_tenant.inbound_secret)
    )
    assert response.status_code == 404
    assert WebhookReceipt.objects.count() == 0


def test_basic_auth_can_be_switched_off(client, tenant, settings):
    settings.INBOUND_PARSE_BASIC_AUTH = False
    body, content_type = raw_mode_post(fixture_bytes("gmail_reply"))
    url = f"/webhooks/sendgrid/inbound/{tenant.public_id}/"
    response = _post(client, url, body, content_type, **_basic("sendgrid", tenant.inbound_secret))
    assert response.status_code == 404
    # The URL secret keeps working.
    assert _post(client, inbound_url(tenant), body, content_type).status_code == 200


def test_a_body_over_the_limit_is_413_and_stores_nothing(client, tenant, settings):
    settings.INBOUND_PARSE_MAX_BODY_BYTES = 4096
    big = fixture_bytes("gmail_reply") + b"x" * 5000
    body, content_type = raw_mode_post(big)
    response = _post(client, inbound_url(tenant), body, content_type)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert WebhookReceipt.objects.count() == 0


def test_a_body_at_the_limit_is_accepted(client, tenant, settings):
    body, content_type = raw_mode_post(fixture_bytes("gmail_reply"))
    settings.INBOUND_PARSE_MAX_BODY_BYTES = len(body)
    assert _post(client, inbound_url(tenant), body, content_type).status_code == 200


def test_a_body_that_is_not_multipart_is_400(client, tenant):
    response = _post(client, inbound_url(tenant), b'{"email": "x"}', "application/json")
    assert response.status_code == 400
    assert WebhookReceipt.objects.count() == 0


def test_an_empty_body_is_400(client, tenant):
    response = _post(client, inbound_url(tenant), b"", "multipart/form-data; boundary=xYz")
    assert response.status_code == 400
    assert WebhookReceipt.objects.count() == 0


def test_only_post_is_allowed(client, tenant):
    assert client.get(inbound_url(tenant)).status_code == 405


def test_the_url_keeps_its_trailing_slash_because_sendgrid_does_not_follow_redirects(
    client, tenant
):
    body, content_type = multipart_encode({"email": fixture_bytes("gmail_reply")})
    assert _post(client, inbound_url(tenant), body, content_type).status_code == 200


# --- the API ----------------------------------------------------------------------------------


def _received(client, tenant, fixture: str) -> InboundMessage:
    body, content_type = raw_mode_post(fixture_bytes(fixture))
    assert _post(client, inbound_url(tenant), body, content_type).status_code == 200
    receipt = WebhookReceipt.objects.filter(tenant=tenant).latest("id")
    return inbound_receipt_process(tenant_id=tenant.pk, receipt_id=receipt.pk)


def test_unmatched_mail_is_listed_for_its_tenant_only(client, tenant, other_tenant, api):
    ours = sent_message(tenant, reply_token=TOKENS["gmail_reply"])
    matched = _received(client, tenant, "gmail_reply")
    unmatched = _received(client, tenant, "unknown_reply")
    _received(client, other_tenant, "unknown_reply")

    response = api.get("/api/v1/inbound/", {"matched": "false"})
    assert response.status_code == 200
    rows = response.json()["results"]
    assert [row["id"] for row in rows] == [unmatched.pk]
    assert rows[0]["matched"] is False
    assert rows[0]["matched_message"] is None
    assert rows[0]["from_email"] == "grace.liu@margies-travel.example"
    assert rows[0]["classification"] == "human"

    everything = api.get("/api/v1/inbound/").json()["results"]
    assert [row["id"] for row in everything] == [unmatched.pk, matched.pk]
    assert everything[1]["matched_message"] == str(ours.public_id)
    assert everything[1]["lead"] == ours.lead_id


def test_the_list_filters_by_classification_and_pages_with_a_cursor(client, tenant, api):
    for fixture in ("exchange_ooo", "gmail_vacation", "gmail_reply"):
        _received(client, tenant, fixture)
    response = api.get("/api/v1/inbound/", {"classification": "out_of_office", "page_size": 1})
    body = response.json()
    assert len(body["results"]) == 1
    assert body["results"][0]["return_date"] == "2026-12-07"
    second = api.get(body["next"]).json()
    assert len(second["results"]) == 1
    assert second["next"] is None
    assert second["results"][0]["id"] != body["results"][0]["id"]


def test_a_bad_filter_is_a_400_naming_the_field(api):
    response = api.get("/api/v1/inbound/", {"matched": "perhaps"})
    assert response.status_code == 400
    assert "matched" in response.json()["error"]["fields"]


def test_retrieve_shows_the_text_and_what_the_sender_wrote_now(client, tenant, api):
    inbound = _received(client, tenant, "gmail_reply")
    response = api.get(f"/api/v1/inbound/{inbound.pk}/")
    assert response.status_code == 200
    body = response.json()
    assert body["new_text"].startswith("Hi Sam,")
    assert "wrote:" not in body["new_text"]
    assert "> Noticed Northwind is hiring SDRs." in body["text"]


def test_another_tenants_inbound_message_is_a_404(client, other_tenant, api):
    theirs = _received(client, other_tenant, "unknown_reply")
    assert api.get(f"/api/v1/inbound/{theirs.pk}/").status_code == 404
    assert api.get("/api/v1/inbound/abc/").status_code == 404


def test_the_api_needs_a_key():
    from rest_framework.test import APIClient

    assert APIClient().get("/api/v1/inbound/").status_code == 401
    assert APIClient().get("/api/v1/inbound/1/").status_code == 401
