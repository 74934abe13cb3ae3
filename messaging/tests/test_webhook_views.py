"""The Event Webhook endpoint: verify, store raw in one insert, answer at once."""

import json
import time

import pytest

from messaging.models import WebhookReceipt
from messaging.tests.test_webhook_signature import (
    VECTOR_BODY,
    VECTOR_KEY,
    VECTOR_SIGNATURE,
    VECTOR_TIMESTAMP,
)
from messaging.tests.webhook_support import (
    events_url,
    post_signed,
    sg_event,
    signed_headers,
    signing_key_new,
    tenant_with_key,
)

pytestmark = pytest.mark.django_db

SIG = "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE"
TS = "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP"


def _body(n: int = 3) -> bytes:
    return json.dumps(
        [sg_event(None, "delivered", email=f"a{i}@x.test") for i in range(n)]
    ).encode()


def _post(client, tenant, body: bytes, headers: dict):
    return client.post(events_url(tenant), data=body, content_type="application/json", **headers)


def test_a_signed_batch_is_stored_raw_once_and_answered_at_once(client, tenant):
    key = tenant_with_key(tenant)
    body = _body() + b"\r\n"
    response = _post(client, tenant, body, signed_headers(key, body))
    assert response.status_code == 204
    receipt = WebhookReceipt.objects.get()
    assert receipt.tenant_id == tenant.pk
    assert receipt.kind == "events"
    assert bytes(receipt.body) == body  # byte for byte, CRLF included
    assert receipt.processed_at is None
    assert receipt.headers["X-Twilio-Email-Event-Webhook-Timestamp"].isdigit()


def test_the_official_vector_is_accepted_through_the_endpoint(client, tenant, settings):
    settings.SENDGRID_WEBHOOK_MAX_AGE_SECONDS = int(time.time()) - int(VECTOR_TIMESTAMP) + 60
    tenant.webhook_public_key = VECTOR_KEY
    tenant.save()
    response = _post(client, tenant, VECTOR_BODY, {SIG: VECTOR_SIGNATURE, TS: VECTOR_TIMESTAMP})
    assert response.status_code == 204
    assert WebhookReceipt.objects.count() == 1


def _refused(client, tenant, body, headers, status=403):
    response = _post(client, tenant, body, headers)
    assert response.status_code == status, response.content
    assert WebhookReceipt.objects.count() == 0
    return response


def test_a_forged_signature_is_refused_without_side_effect(client, tenant):
    tenant_with_key(tenant)
    forger = signing_key_new()
    body = _body()
    _refused(client, tenant, body, signed_headers(forger, body))


def test_a_body_mutated_by_one_byte_is_refused(client, tenant):
    key = tenant_with_key(tenant)
    body = _body()
    headers = signed_headers(key, body)
    mutated = body.replace(b"delivered", b"delivereD", 1)
    _refused(client, tenant, mutated, headers)


def test_a_batch_signed_for_another_tenant_is_refused(client, tenant, other_tenant):
    tenant_with_key(tenant)
    other_key = tenant_with_key(other_tenant)
    body = _body()
    _refused(client, tenant, body, signed_headers(other_key, body))


@pytest.mark.parametrize("offset", [-601, -3600, 301, 86400])
def test_stale_and_future_timestamps_are_refused_even_when_signed(client, tenant, offset):
    key = tenant_with_key(tenant)
    body = _body()
    _refused(client, tenant, body, signed_headers(key, body, str(int(time.time()) + offset)))


def test_timestamps_inside_the_window_are_accepted(client, tenant):
    key = tenant_with_key(tenant)
    for offset in (-590, 290):
        body = _body()
        response = _post(
            client, tenant, body, signed_headers(key, body, str(int(time.time()) + offset))
        )
        assert response.status_code == 204
    assert WebhookReceipt.objects.count() == 2


@pytest.mark.parametrize("missing", [SIG, TS])
def test_missing_headers_are_refused(client, tenant, missing):
    key = tenant_with_key(tenant)
    body = _body()
    headers = signed_headers(key, body)
    del headers[missing]
    _refused(client, tenant, body, headers)


@pytest.mark.parametrize("signature", ["%%%not-base64%%%", "AAAA", "", "MEUCIQ"])
def test_malformed_signatures_are_refused_not_crashed(client, tenant, signature):
    key = tenant_with_key(tenant)
    body = _body()
    headers = signed_headers(key, body)
    headers[SIG] = signature
    _refused(client, tenant, body, headers)


def test_a_tenant_whose_key_is_garbage_refuses_rather_than_crashes(client, tenant):
    key = signing_key_new()
    tenant.webhook_public_key = "this is not a key"
    tenant.save()
    body = _body()
    _refused(client, tenant, body, signed_headers(key, body))


def test_a_tenant_without_a_key_refuses_unsigned_posts_by_default(client, tenant):
    body = _body()
    _refused(client, tenant, body, {})


def test_unsigned_posts_are_accepted_only_when_explicitly_allowed(client, tenant, settings):
    settings.SENDGRID_WEBHOOK_ALLOW_UNSIGNED = True
    response = _post(client, tenant, _body(), {})
    assert response.status_code == 204
    assert WebhookReceipt.objects.count() == 1


def test_an_allowed_unsigned_mode_never_skips_a_configured_key(client, tenant, settings):
    settings.SENDGRID_WEBHOOK_ALLOW_UNSIGNED = True
    tenant_with_key(tenant)
    _refused(client, tenant, _body(), {})


def test_an_unknown_tenant_is_404(client, tenant):
    key = tenant_with_key(tenant)
    body = _body()
    response = client.post(
        "/webhooks/sendgrid/events/00000000-0000-4000-8000-000000000000/",
        data=body,
        content_type="application/json",
        **signed_headers(key, body),
    )
    assert response.status_code == 404
    assert WebhookReceipt.objects.count() == 0


def test_a_body_over_the_limit_is_413_before_anything_else(client, tenant, settings):
    settings.SENDGRID_WEBHOOK_MAX_BODY_BYTES = 1000
    key = tenant_with_key(tenant)
    body = _body(30)
    assert len(body) > 1000
    _refused(client, tenant, body, signed_headers(key, body), status=413)


def test_a_declared_length_over_the_limit_is_413_without_reading(client, tenant, settings):
    settings.SENDGRID_WEBHOOK_MAX_BODY_BYTES = 1000
    key = tenant_with_key(tenant)
    body = _body(1)
    response = client.post(
        events_url(tenant),
        data=body,
        content_type="application/json",
        CONTENT_LENGTH="5000000",
        **signed_headers(key, body),
    )
    assert response.status_code == 413
    assert WebhookReceipt.objects.count() == 0


@pytest.mark.parametrize(
    "body",
    [
        b'{"event": "open"}',
        b"[1, 2, 3]",
        b'[{"event": "open"}, "x"]',
        b"not json",
        b"",
        b"\xff\xfe[]",
        # Python's json reads these; JSON (and Postgres) does not.
        b'[{"event": "open", "timestamp": NaN}]',
        b'[{"event": "open", "score": -Infinity}]',
        b'[{"event": "open", "deep": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]",
    ],
    ids=["object", "numbers", "mixed", "text", "empty", "bom", "nan", "infinity", "nested"],
)
def test_a_signed_body_that_is_not_an_array_of_objects_is_400(client, tenant, body):
    key = tenant_with_key(tenant)
    _refused(client, tenant, body, signed_headers(key, body), status=400)


def test_get_is_not_allowed(client, tenant):
    assert client.get(events_url(tenant)).status_code == 405


def test_acceptance_hints_normalisation_after_commit(
    client, tenant, django_capture_on_commit_callbacks
):
    key = tenant_with_key(tenant)
    with django_capture_on_commit_callbacks() as callbacks:
        response = post_signed(client, tenant, key, [sg_event(None, "open", email="a@x.test")])
    assert response.status_code == 204
    assert len(callbacks) == 1
