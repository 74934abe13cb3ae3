"""The SendGrid emulator, driven as a real subprocess through the official ``sendgrid`` client."""

from __future__ import annotations

import base64
import email
import email.policy
import gzip
import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from python_http_client.exceptions import (
    BadRequestsError,
    InternalServerError,
    PayloadTooLargeError,
    TooManyRequestsError,
    UnauthorizedError,
)
from sendgrid import EventWebhook, SendGridAPIClient

from messaging.emulator.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TENANT = "5f0c6a52-2d7e-4f55-9a51-7d1f5a3f6b10"
UNAUTHORIZED = {
    "errors": [
        {
            "message": "The provided authorization grant is invalid, expired, or revoked",
            "field": None,
            "help": None,
        }
    ]
}


def client(emulator, key: str = "test-key") -> SendGridAPIClient:
    sg = SendGridAPIClient(api_key=key, host=emulator.host)
    sg.client.timeout = 10
    return sg


def mail(*recipients: str, **overrides) -> dict:
    body = {
        "personalizations": [
            {
                "to": [{"email": recipient, "name": "Lead"}],
                "custom_args": {
                    "outreach_message_id": str(uuid.uuid4()),
                    "outreach_tenant": TENANT,
                },
            }
            for recipient in recipients or ("lead@example.com",)
        ],
        "from": {"email": "ae@sender.example.org", "name": "Ada Example"},
        "reply_to": {"email": "reply+tok123@reply.example.org"},
        "subject": "Quick question",
        "content": [
            {"type": "text/plain", "value": "Hi,\nworth a chat?\n"},
            {
                "type": "text/html",
                "value": '<p>Hi, worth a <a href="https://example.org/meet">chat</a>?</p>',
            },
        ],
        "categories": ["campaign-7", "step-1"],
    }
    body.update(overrides)
    return body


def raw_post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


# --- authentication, validation, limits -----------------------------------------------------


def test_missing_or_empty_bearer_key_gets_sendgrids_401(sendgrid_emulator):
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Basic abc"}):
        status, response_headers, body = raw_post(
            sendgrid_emulator.host + "/v3/mail/send",
            json.dumps(mail()).encode(),
            {"Content-Type": "application/json", **headers},
        )
        assert status == 401
        assert json.loads(body) == UNAUTHORIZED
        assert "X-RateLimit-Limit" in response_headers
    assert sendgrid_emulator.messages() == []


def test_configured_keys_are_the_only_ones_accepted(sendgrid_emulator_factory):
    emulator = sendgrid_emulator_factory(api_keys="good-one,good-two")
    with pytest.raises(UnauthorizedError) as excinfo:
        client(emulator, "some-other-key").send(mail())
    assert json.loads(excinfo.value.body) == UNAUTHORIZED
    assert client(emulator, "good-two").send(mail()).status_code == 202


def test_accepted_send_answers_202_with_a_message_id(sendgrid_emulator):
    response = client(sendgrid_emulator).send(mail("ann@example.com"))

    assert response.status_code == 202
    assert response.body == b""
    message_id = response.headers["X-Message-Id"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", message_id)
    assert int(response.headers["X-RateLimit-Limit"]) >= int(
        response.headers["X-RateLimit-Remaining"]
    )
    assert int(response.headers["X-RateLimit-Reset"]) >= int(time.time())
    [held] = sendgrid_emulator.messages(to="ann@example.com")
    assert held["x_message_id"] == message_id
    assert held["subject"] == "Quick question"
    assert held["text"] == "Hi,\nworth a chat?\n"
    assert held["custom_args"]["outreach_tenant"] == TENANT
    assert held["reply_to"] == {"email": "reply+tok123@reply.example.org"}


def test_each_send_gets_its_own_message_id(sendgrid_emulator):
    sg = client(sendgrid_emulator)
    ids = {sg.send(mail()).headers["X-Message-Id"] for _ in range(5)}
    assert len(ids) == 5


def _with(**changes) -> dict:
    body = mail()
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def _personalization(**changes) -> dict:
    body = mail()
    body["personalizations"][0].update(changes)
    return body


VALIDATION_CASES = {
    "no personalizations": (_with(personalizations=None), "personalizations"),
    "empty personalizations": (_with(personalizations=[]), "personalizations"),
    "personalization without to": (_personalization(to=[]), "personalizations.0.to"),
    "invalid recipient": (
        _personalization(to=[{"email": "not-an-address"}]),
        "personalizations.0.to.0.email",
    ),
    "duplicate recipient": (
        _personalization(cc=[{"email": "lead@example.com"}]),
        "personalizations.0.cc",
    ),
    "no from": (_with(**{"from": None}), "from.email"),
    "from without email": (_with(**{"from": {"name": "Ada"}}), "from.email"),
    "no subject": (_with(subject=None), "subject"),
    "no content": (_with(content=None), "content"),
    "empty content value": (
        _with(content=[{"type": "text/plain", "value": ""}]),
        "content.0.value",
    ),
    "reply_to and reply_to_list": (
        _with(reply_to_list=[{"email": "a@example.org"}]),
        "reply_to_list",
    ),
    "custom arg not a string": (
        _personalization(custom_args={"outreach_tenant": 5}),
        "personalizations.0.custom_args.outreach_tenant",
    ),
    "custom args too large": (_with(custom_args={"blob": "x" * 10_000}), "custom_args"),
    "eleven categories": (_with(categories=[f"c{i}" for i in range(11)]), "categories"),
    "duplicate categories": (_with(categories=["a", "a"]), "categories"),
    "category too long": (_with(categories=["x" * 256]), "categories.0"),
    "reserved header": (_with(headers={"To": "someone@example.com"}), "headers.To"),
    "sandbox enable not a boolean": (
        _with(mail_settings={"sandbox_mode": {"enable": "true"}}),
        "mail_settings.sandbox_mode.enable",
    ),
    "send_at beyond 72 hours": (_with(send_at=int(time.time()) + 80 * 3600), "send_at"),
    "1001 personalizations": (
        _with(personalizations=[{"to": [{"email": f"l{i}@example.com"}]} for i in range(1001)]),
        "personalizations",
    ),
    "1001 recipients": (
        _with(
            personalizations=[
                {"to": [{"email": f"l{i}-{j}@example.com"} for j in range(11)]} for i in range(91)
            ]
        ),
        "personalizations",
    ),
}


@pytest.mark.parametrize("payload,field", VALIDATION_CASES.values(), ids=VALIDATION_CASES.keys())
def test_invalid_payloads_get_sendgrid_400_bodies(sendgrid_emulator, payload, field):
    with pytest.raises(BadRequestsError) as excinfo:
        client(sendgrid_emulator).send(payload)

    assert excinfo.value.status_code == 400
    errors = json.loads(excinfo.value.body)["errors"]
    assert field in [error["field"] for error in errors]
    for error in errors:
        assert set(error) == {"message", "field", "help"}
        assert error["message"]
    assert sendgrid_emulator.messages() == []


def test_documented_alternatives_are_accepted(sendgrid_emulator):
    sg = client(sendgrid_emulator)
    per_personalization_subject = mail(subject=None)
    del per_personalization_subject["subject"]
    per_personalization_subject["personalizations"][0]["subject"] = "Own subject"
    templated = mail()
    del templated["content"]
    templated["template_id"] = "d-0123456789abcdef"
    threaded = mail(
        headers={
            "Message-ID": "<m1@outreach.test>",
            "In-Reply-To": "<m0@outreach.test>",
            "List-Unsubscribe": "<https://outreach.test/u/abc>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
    )
    for payload in (per_personalization_subject, templated, threaded):
        assert sg.send(payload).status_code == 202
    assert len(sendgrid_emulator.messages()) == 3
    assert sendgrid_emulator.messages(limit="1")[0]["headers"]["Message-ID"] == (
        "<m1@outreach.test>"
    )


def test_invalid_json_is_a_400(sendgrid_emulator):
    status, _, body = raw_post(
        sendgrid_emulator.host + "/v3/mail/send",
        b"{not json",
        {"Authorization": "Bearer k", "Content-Type": "application/json"},
    )
    assert status == 400
    assert json.loads(body)["errors"][0]["message"]


def test_sandbox_mode_answers_200_and_sends_nothing(sendgrid_emulator, webhook_sink):
    sendgrid_emulator.register_tenant(TENANT, events_url=webhook_sink.url + "/events/")
    response = client(sendgrid_emulator).send(
        mail("ann+open@example.com", mail_settings={"sandbox_mode": {"enable": True}})
    )

    assert response.status_code == 200
    assert sendgrid_emulator.messages() == []
    stats = sendgrid_emulator.wait_idle()
    assert stats["sandboxed"] == 1
    assert webhook_sink.requests == []


def test_oversized_body_gets_413(sendgrid_emulator_factory):
    emulator = sendgrid_emulator_factory(max_body_bytes=4_000)
    big = mail(content=[{"type": "text/plain", "value": "x" * 5_000}])
    with pytest.raises(PayloadTooLargeError) as excinfo:
        client(emulator).send(big)
    assert excinfo.value.headers["X-RateLimit-Limit"]
    assert client(emulator).send(mail()).status_code == 202
    assert len(emulator.messages()) == 1


def test_gzip_bodies_are_inflated_and_bombs_refused(sendgrid_emulator_factory):
    emulator = sendgrid_emulator_factory(max_body_bytes=50_000)
    headers = {
        "Authorization": "Bearer k",
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }
    small = gzip.compress(json.dumps(mail("zip@example.com")).encode())
    status, _, _ = raw_post(emulator.host + "/v3/mail/send", small, headers)
    assert status == 202
    huge = gzip.compress(
        json.dumps(mail(content=[{"type": "text/plain", "value": "x" * 200_000}])).encode()
    )
    assert len(huge) < 50_000
    status, _, body = raw_post(emulator.host + "/v3/mail/send", huge, headers)
    assert status == 413 and json.loads(body)["errors"][0]["message"]
    assert [m["to"][0]["email"] for m in emulator.messages()] == ["zip@example.com"]


def test_a_large_refused_upload_still_reads_the_413(sendgrid_emulator_factory):
    emulator = sendgrid_emulator_factory(max_body_bytes=10_000)
    big = mail(content=[{"type": "text/plain", "value": "x" * 3_000_000}])
    with pytest.raises(PayloadTooLargeError):
        client(emulator).send(big)


def test_added_latency_keeps_pipelined_answers_in_order(sendgrid_emulator):
    sendgrid_emulator.configure(latency_ms=150)
    port = int(sendgrid_emulator.host.rsplit(":", 1)[1])
    requests = b""
    for recipient in ("first@example.com", "second@example.com"):
        body = json.dumps(mail(recipient)).encode()
        requests += (
            "POST /v3/mail/send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
    requests += b"GET /v3/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(requests)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    answers = received.split(b"HTTP/1.1 ")[1:]

    assert [answer[:3] for answer in answers] == [b"202", b"202", b"401"]
    assert time.monotonic() - started >= 0.3  # held one after the other, not in parallel
    ids = [re.search(rb"X-Message-Id: (\S+)", answer).group(1).decode() for answer in answers[:2]]
    assert [sendgrid_emulator.messages(x_message_id=i)[0]["to"][0]["email"] for i in ids] == [
        "first@example.com",
        "second@example.com",
    ]


# --- the catcher ----------------------------------------------------------------------------


def test_catcher_json_filters_and_reset(sendgrid_emulator):
    sg = client(sendgrid_emulator)
    first = sg.send(mail("ann@example.com")).headers["X-Message-Id"]
    sg.send(mail("bob@example.com"))
    sg.send(mail("Ann@Example.com"))

    assert len(sendgrid_emulator.messages()) == 3
    assert len(sendgrid_emulator.messages(to="ann@example.com")) == 2
    [only] = sendgrid_emulator.messages(x_message_id=first)
    assert only["to"] == [{"email": "ann@example.com", "name": "Lead"}]
    our_id = only["custom_args"]["outreach_message_id"]
    assert [
        m["x_message_id"] for m in sendgrid_emulator.messages(arg_outreach_message_id=our_id)
    ] == [first]

    sendgrid_emulator.clear_messages()
    assert sendgrid_emulator.messages() == []


def test_catcher_page_shows_messages_escaped(sendgrid_emulator):
    client(sendgrid_emulator).send(
        mail(
            "eve@example.com",
            subject="<script>alert('subject')</script>",
            content=[
                {"type": "text/plain", "value": "plain <b>text</b>"},
                {"type": "text/html", "value": "<img src=x onerror=alert(1)><p>Hello</p>"},
            ],
            headers={"X-Campaign": "<evil>"},
        )
    )

    page = get(sendgrid_emulator.host + "/").decode()

    assert "eve@example.com" in page
    assert "&lt;script&gt;alert(&#x27;subject&#x27;)&lt;/script&gt;" in page
    assert "<script>" not in page
    assert "plain &lt;b&gt;text&lt;/b&gt;" in page
    assert "<img src=x" not in page
    assert 'sandbox=""' in page
    assert "X-Campaign" in page and "&lt;evil&gt;" in page
    assert TENANT in page  # custom args are listed


# --- fault injection and rate limits ----------------------------------------------------------


def test_fault_share_of_429_carries_rate_limit_headers(sendgrid_emulator_factory):
    emulator = sendgrid_emulator_factory(fault_429_share=1.0)
    with pytest.raises(TooManyRequestsError) as excinfo:
        client(emulator).send(mail())

    error = excinfo.value
    assert json.loads(error.body) == {"errors": [{"field": None, "message": "too many requests"}]}
    assert error.headers["X-RateLimit-Remaining"] == "0"
    assert int(error.headers["X-RateLimit-Reset"]) >= int(time.time())
    assert error.headers["X-RateLimit-Limit"]
    assert emulator.messages() == []


def test_runtime_fault_500_then_reset(sendgrid_emulator):
    sendgrid_emulator.configure(fault_500_share=1.0)
    with pytest.raises(InternalServerError):
        client(sendgrid_emulator).send(mail())

    sendgrid_emulator.reset()
    assert client(sendgrid_emulator).send(mail()).status_code == 202


def test_injected_429_can_carry_retry_after(sendgrid_emulator):
    sendgrid_emulator.configure(fault_429_share=1.0, fault_retry_after=7)
    with pytest.raises(TooManyRequestsError) as excinfo:
        client(sendgrid_emulator).send(mail())
    assert excinfo.value.headers["Retry-After"] == "7"


def _post_raw(emulator, body: dict, timeout: float) -> int:
    """POST with a bare http.client: its errors say how the exchange ended."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(emulator.host)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request(
            "POST",
            "/v3/mail/send",
            body=json.dumps(body),
            headers={"Authorization": "Bearer k", "Content-Type": "application/json"},
        )
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("fault", "error", "kept"),
    [
        ({"fault_timeout_share": 1.0, "fault_timeout_seconds": 3}, TimeoutError, True),
        ({"fault_drop_share": 1.0}, ConnectionError, True),
        ({"fault_reset_share": 1.0}, ConnectionError, False),
    ],
    ids=["accepted, answered too late", "accepted, no answer", "lost before accepting"],
)
def test_faults_where_the_client_cannot_know_the_outcome(sendgrid_emulator, fault, error, kept):
    import http.client

    sendgrid_emulator.configure(**fault)
    body = mail("unknown@example.com")
    with pytest.raises((error, http.client.RemoteDisconnected)):
        _post_raw(sendgrid_emulator, body, timeout=1)
    assert len(sendgrid_emulator.messages(to="unknown@example.com")) == int(kept)
    stats = sendgrid_emulator.stats()
    assert sum(stats["faults"].values()) == 1
    # Which mail the provider took without telling us: our id, for a test to follow.
    our_id = body["personalizations"][0]["custom_args"]["outreach_message_id"]
    kind = next(kind for kind, n in stats["faults"].items() if n)
    assert stats["faulted_messages"] == ([[kind, our_id]] if kept else [])

    sendgrid_emulator.configure(fault_timeout_share=0, fault_drop_share=0, fault_reset_share=0)
    assert _post_raw(sendgrid_emulator, mail("known@example.com"), timeout=5) == 202


def test_messages_can_be_listed_with_only_some_fields(sendgrid_emulator):
    client(sendgrid_emulator).send(mail("a@example.com"))
    records = sendgrid_emulator.messages(fields="to,custom_args")
    assert len(records) == 1 and set(records[0]) == {"to", "custom_args"}


def test_bad_runtime_option_is_refused(sendgrid_emulator):
    with pytest.raises(RuntimeError, match="open_rate"):
        sendgrid_emulator.configure(open_rate=2)
    with pytest.raises(RuntimeError, match="no_such_option"):
        sendgrid_emulator.configure(no_such_option=1)


def test_enforced_rate_limit_counts_down_then_429(sendgrid_emulator_factory):
    emulator = sendgrid_emulator_factory(
        enforce_rate_limit=True, rate_limit=2, rate_limit_window=3600
    )
    sg = client(emulator)
    first = sg.send(mail())
    second = sg.send(mail())
    assert (first.headers["X-RateLimit-Remaining"], second.headers["X-RateLimit-Remaining"]) == (
        "1",
        "0",
    )
    with pytest.raises(TooManyRequestsError) as excinfo:
        sg.send(mail())
    assert excinfo.value.headers["X-RateLimit-Limit"] == "2"


# --- signed Event Webhook ---------------------------------------------------------------------


def _verified_events(emulator, requests) -> list[dict]:
    verifier = EventWebhook(emulator.public_key)
    events = []
    for request in requests:
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert headers["content-type"] == "application/json"
        assert verifier.verify_signature(
            request.body.decode(),
            headers[SIGNATURE_HEADER.lower()],
            headers[TIMESTAMP_HEADER.lower()],
        )
        events.extend(json.loads(request.body))
    return events


def _by_email(events: list[dict]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for event in sorted(events, key=lambda e: e["timestamp"]):
        result.setdefault(event["email"], []).append(event["event"])
    return result


def test_signed_event_batches_follow_the_address_tags(sendgrid_emulator, webhook_sink):
    sendgrid_emulator.register_tenant(TENANT, events_url=webhook_sink.url + "/events/")
    recipients = {
        "plain@example.com": {"processed", "delivered"},
        "ann+open@example.com": {"processed", "delivered", "open"},
        "bob+click@example.com": {"processed", "delivered", "open", "click"},
        "cat+machineopen@example.com": {"processed", "delivered", "open"},
        "dan+bounce@example.com": {"processed", "bounce"},
        "eve+blocked@example.com": {"processed", "bounce"},
        "fay+drop@example.com": {"processed", "dropped"},
        "gus+defer@example.com": {"processed", "deferred", "delivered"},
        "hal+spam@example.com": {"processed", "delivered", "spamreport"},
        "ivy+unsub+noopen@example.com": {"processed", "delivered", "unsubscribe"},
        "jo+click+noopen@example.com": {"processed", "delivered"},
    }
    sg = client(sendgrid_emulator)
    x_ids = {r: sg.send(mail(r, asm={"group_id": 42})).headers["X-Message-Id"] for r in recipients}

    stats = sendgrid_emulator.wait_idle()
    events = _verified_events(sendgrid_emulator, webhook_sink.matching("/events/"))

    assert stats["events_posted"] == len(events) == stats["events_planned"]
    seen = _by_email(events)
    for recipient, expected in recipients.items():
        assert set(seen[recipient]) == expected, recipient
    assert seen["gus+defer@example.com"].count("deferred") == 2
    assert len({e["sg_event_id"] for e in events}) == len(events)
    for event in events:
        x_id = x_ids[event["email"]]
        assert event["sg_message_id"].startswith(f"{x_id}.filterdrecv-")
        assert event["smtp-id"] == f"<{x_id}@ismtpd0039p1iad1.sendgrid.net>"
        assert re.fullmatch(r"[A-Za-z0-9_-]+", event["sg_event_id"])
        assert event["outreach_tenant"] == TENANT  # custom args merged at the top level
        assert event["outreach_message_id"]
        assert event["category"] == ["campaign-7", "step-1"]
        assert event["asm_group_id"] == 42
        assert isinstance(event["timestamp"], int)
    by_type = {(e["email"], e["event"]): e for e in events}
    hard = by_type[("dan+bounce@example.com", "bounce")]
    assert (hard["type"], hard["bounce_classification"]) == ("bounce", "Invalid Address")
    assert hard["status"].startswith("5.") and hard["reason"]
    soft = by_type[("eve+blocked@example.com", "bounce")]
    assert soft["type"] == "blocked" and soft["reason"]
    assert by_type[("fay+drop@example.com", "dropped")]["reason"] == "Bounced Address"
    assert by_type[("cat+machineopen@example.com", "open")]["sg_machine_open"] is True
    assert by_type[("ann+open@example.com", "open")]["sg_machine_open"] is False
    click = by_type[("bob+click@example.com", "click")]
    assert click["url"] == "https://example.org/meet"
    assert click["url_offset"] == {"index": 0, "type": "html"}
    assert click["useragent"] and click["ip"]
    deferred = [e for e in events if e["event"] == "deferred"]
    assert sorted(e["attempt"] for e in deferred) == ["1", "2"]


def test_a_tampered_batch_does_not_verify(sendgrid_emulator, webhook_sink):
    sendgrid_emulator.register_tenant(TENANT, events_url=webhook_sink.url + "/events/")
    client(sendgrid_emulator).send(mail("ann@example.com"))
    [request, *_] = webhook_sink.wait_for(1, prefix="/events/")
    headers = {k.lower(): v for k, v in request.headers.items()}
    signature, timestamp = headers[SIGNATURE_HEADER.lower()], headers[TIMESTAMP_HEADER.lower()]
    verifier = EventWebhook(sendgrid_emulator.public_key)

    assert verifier.verify_signature(request.body.decode(), signature, timestamp)
    assert request.body.endswith(b"\r\n")
    tampered = request.body.decode().replace("ann@example.com", "bob@example.com")
    assert not verifier.verify_signature(tampered, signature, timestamp)
    assert not verifier.verify_signature(request.body.decode(), signature, str(int(timestamp) + 1))


def test_events_url_template_uses_the_tenant_from_custom_args(
    sendgrid_emulator_factory, webhook_sink
):
    emulator = sendgrid_emulator_factory(
        events_url_template=webhook_sink.url + "/webhooks/sendgrid/events/{tenant}/"
    )
    client(emulator).send(mail("ann@example.com"))
    no_tenant = mail("bob@example.com")
    del no_tenant["personalizations"][0]["custom_args"]
    client(emulator).send(no_tenant)

    stats = emulator.wait_idle()
    paths = {r.path for r in webhook_sink.requests}
    assert paths == {f"/webhooks/sendgrid/events/{TENANT}/"}
    assert stats["events_unroutable"] == 2  # processed + delivered of the mail without a tenant


def test_events_posted_to_the_served_public_key_endpoints(sendgrid_emulator):
    body = json.loads(get(sendgrid_emulator.host + "/_emulator/public-key"))
    assert body == {"public_key": sendgrid_emulator.public_key}
    der = base64.b64decode(sendgrid_emulator.public_key)
    assert der.startswith(base64.b64decode("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"))
    response = client(sendgrid_emulator).client.user.webhooks.event.settings.signed.get()
    assert json.loads(response.body) == body


def test_signing_key_file_is_created_then_reused(sendgrid_emulator_factory, tmp_path):
    key_file = tmp_path / "keys" / "webhook.pem"
    first = sendgrid_emulator_factory(signing_key_file=str(key_file))
    first.stop()
    second = sendgrid_emulator_factory(signing_key_file=str(key_file))
    assert key_file.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert second.public_key == first.public_key


def test_duplicated_batches_are_posted_twice(sendgrid_emulator, webhook_sink):
    sendgrid_emulator.register_tenant(TENANT, events_url=webhook_sink.url + "/events/")
    sendgrid_emulator.configure(webhook_duplicate_share=1.0)
    client(sendgrid_emulator).send(mail("ann+open@example.com"))

    sendgrid_emulator.wait_idle()
    events = _verified_events(sendgrid_emulator, webhook_sink.requests)
    ids = [e["sg_event_id"] for e in events]
    assert len(ids) == 6  # processed, delivered, open: each twice
    assert all(ids.count(event_id) == 2 for event_id in ids)


def test_reordered_events_spread_over_batches_out_of_order(sendgrid_emulator, webhook_sink):
    sendgrid_emulator.register_tenant(TENANT, events_url=webhook_sink.url + "/events/")
    sendgrid_emulator.configure(webhook_reorder=True)
    recipients = [f"lead{i}+click@example.com" for i in range(10)]
    # One request, so every event is planned and shuffled in the same dispatch round.
    client(sendgrid_emulator).send(mail(*recipients))

    sendgrid_emulator.wait_idle()
    requests = webhook_sink.requests
    events = _verified_events(sendgrid_emulator, requests)
    assert len(requests) > 1
    assert len(events) == 40
    assert _by_email(events).keys() == set(recipients)
    canonical = ["processed", "delivered", "open", "click"]
    arrival: dict[str, list[str]] = {}
    for event in events:
        arrival.setdefault(event["email"], []).append(event["event"])
    assert any(order != canonical for order in arrival.values())


def test_failed_posts_are_retried(sendgrid_emulator, webhook_sink):
    sendgrid_emulator.register_tenant(TENANT, events_url=webhook_sink.url + "/events/")
    webhook_sink.fail_next(503, times=2)
    client(sendgrid_emulator).send(mail("ann@example.com"))

    stats = sendgrid_emulator.wait_idle()
    events = _verified_events(sendgrid_emulator, webhook_sink.requests)
    assert {e["event"] for e in events} == {"processed", "delivered"}
    assert stats["events_posts_failed"] == 2
    assert max(d["attempt"] for d in sendgrid_emulator.deliveries()) == 2


def test_unreachable_webhook_is_given_up_and_reported(sendgrid_emulator):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    sendgrid_emulator.configure(webhook_retries=1, webhook_retry_backoff=0.05)
    sendgrid_emulator.register_tenant(TENANT, events_url=f"http://127.0.0.1:{dead_port}/events/")
    client(sendgrid_emulator).send(mail("ann@example.com"))

    stats = sendgrid_emulator.wait_idle()
    assert stats["events_posts_given_up"] == 1
    assert stats["recent_failures"][0]["error"]


def test_events_wait_for_their_delay_unless_flushed(sendgrid_emulator, webhook_sink):
    sendgrid_emulator.register_tenant(TENANT, events_url=webhook_sink.url + "/events/")
    sendgrid_emulator.configure(delay_min=300, delay_max=600)
    client(sendgrid_emulator).send(mail("ann+open@example.com"))
    deadline = time.monotonic() + 10
    while sendgrid_emulator.stats().get("events_planned", 0) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.2)  # several dispatch rounds: none of them may post these events yet
    assert sendgrid_emulator.stats()["pending"] == 3
    assert webhook_sink.requests == []

    sendgrid_emulator.flush()
    sendgrid_emulator.wait_idle()
    events = _verified_events(sendgrid_emulator, webhook_sink.requests)
    assert sorted(e["event"] for e in events) == ["delivered", "open", "processed"]
    # Their timestamps are the simulated times, in order, minutes after the send.
    stamps = {e["event"]: e["timestamp"] for e in events}
    assert stamps["processed"] < stamps["delivered"] < stamps["open"]
    assert stamps["processed"] >= time.time() + 200


def test_rates_with_a_seed_are_reproducible(sendgrid_emulator_factory, webhook_sink):
    outcomes = []
    for _ in range(2):
        webhook_sink.requests.clear()
        emulator = sendgrid_emulator_factory(
            tags_only=False,
            seed=11,
            open_rate=0.5,
            bounce_rate=0.2,
            events_url_template=webhook_sink.url + "/events/{tenant}/",
        )
        body = mail(*[f"lead{i}@example.com" for i in range(30)])
        for index, personalization in enumerate(body["personalizations"]):
            personalization["custom_args"]["outreach_message_id"] = f"m-{index}"
        client(emulator).send(body)
        emulator.wait_idle()
        outcomes.append(
            {
                k: sorted(v)
                for k, v in _by_email(_verified_events(emulator, webhook_sink.requests)).items()
            }
        )
        emulator.stop()
    assert outcomes[0] == outcomes[1]
    kinds = {tuple(v) for v in outcomes[0].values()}
    assert ("bounce", "processed") in kinds
    assert any("open" in v for v in kinds)
    assert ("delivered", "processed") in kinds


def test_tenants_file_is_read_when_it_appears_and_when_it_changes(
    sendgrid_emulator_factory, webhook_sink, tmp_path
):
    routes = tmp_path / "tenants.json"
    emulator = sendgrid_emulator_factory(tenants_file=str(routes))
    sg = client(emulator)
    sg.send(mail("early@example.com"))
    assert emulator.wait_idle()["events_unroutable"] == 2

    routes.write_text(
        json.dumps([{"tenant": TENANT, "events_url": webhook_sink.url + "/from-file/"}])
    )
    deadline = time.monotonic() + 10
    while not any(
        t["tenant"] == TENANT for t in emulator.control("GET", "/_emulator/tenants")["tenants"]
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    sg.send(mail("late@example.com"))
    events = _verified_events(emulator, webhook_sink.wait_for(1, prefix="/from-file/"))
    assert {e["email"] for e in events} == {"late@example.com"}

    emulator.reset()  # routes from the file survive a reset
    assert emulator.control("GET", "/_emulator/tenants")["tenants"][0]["tenant"] == TENANT


def test_malformed_tenants_file_stops_start_up_with_one_line(tmp_path):
    routes = tmp_path / "tenants.json"
    routes.write_text("{not json")
    result = subprocess.run(
        [sys.executable, "-m", "messaging.emulator", "--port", "0", "--tenants-file", str(routes)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stderr.strip().startswith(f"sendgrid-emulator: --tenants-file {routes}:")
    assert len(result.stderr.strip().splitlines()) == 1


# --- Inbound Parse replies --------------------------------------------------------------------


def _form(request) -> dict[str, str]:
    content_type = {k.lower(): v for k, v in request.headers.items()}["content-type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    message = email.message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + request.body,
        policy=email.policy.HTTP,
    )
    return {
        part.get_param("name", header="content-disposition"): part.get_content()
        for part in message.iter_parts()
    }


def test_plus_reply_posts_a_raw_mime_reply_threaded_on_our_message_id(
    sendgrid_emulator, webhook_sink
):
    sendgrid_emulator.register_tenant(
        TENANT,
        events_url=webhook_sink.url + "/events/",
        inbound_url=webhook_sink.url + "/inbound/",
    )
    client(sendgrid_emulator).send(
        mail(
            "ann+reply@example.com",
            headers={"Message-ID": "<msg-1@outreach.test>", "References": "<msg-0@outreach.test>"},
        )
    )

    [request] = webhook_sink.wait_for(1, prefix="/inbound/")
    form = _form(request)
    reply = email.message_from_string(form["email"], policy=email.policy.default)

    assert reply["In-Reply-To"] == "<msg-1@outreach.test>"
    assert reply["References"] == "<msg-0@outreach.test> <msg-1@outreach.test>"
    assert reply["To"].addresses[0].addr_spec == "reply+tok123@reply.example.org"
    assert reply["From"].addresses[0].addr_spec == "ann+reply@example.com"
    assert reply["Subject"] == "Re: Quick question"
    assert reply["Auto-Submitted"] is None
    assert reply["Message-ID"]
    assert "> worth a chat?" in reply.get_content()
    assert json.loads(form["envelope"]) == {
        "to": ["reply+tok123@reply.example.org"],
        "from": "ann+reply@example.com",
    }
    assert "reply+tok123@reply.example.org" in form["to"]
    assert "ann+reply@example.com" in form["from"]
    assert form["subject"] == "Re: Quick question"
    assert form["SPF"] == "pass"
    assert form["dkim"] == "{@example.com : pass}"
    assert json.loads(form["charsets"])["subject"] == "UTF-8"
    sendgrid_emulator.wait_idle()  # events and the reply are posted concurrently
    events = _verified_events(sendgrid_emulator, webhook_sink.matching("/events/"))
    assert {e["event"] for e in events} == {"processed", "delivered"}


def test_plus_ooo_posts_an_auto_reply_with_a_return_date(sendgrid_emulator, webhook_sink):
    sendgrid_emulator.register_tenant(TENANT, inbound_url=webhook_sink.url + "/inbound/")
    x_id = client(sendgrid_emulator).send(mail("bob+ooo@example.com")).headers["X-Message-Id"]

    [request] = webhook_sink.wait_for(1, prefix="/inbound/")
    reply = email.message_from_string(_form(request)["email"], policy=email.policy.default)

    assert reply["Auto-Submitted"] == "auto-replied"
    # Without a Message-ID header of ours, replies thread on SendGrid's smtp-id.
    assert reply["In-Reply-To"] == f"<{x_id}@ismtpd0039p1iad1.sendgrid.net>"
    assert reply["Subject"] == "Automatic reply: Quick question"
    assert re.search(r"I will be back on \d{4}-\d{2}-\d{2}", reply.get_content())


def test_inbound_url_template_takes_the_registered_secret(sendgrid_emulator_factory, webhook_sink):
    emulator = sendgrid_emulator_factory(
        inbound_url_template=webhook_sink.url + "/webhooks/sendgrid/inbound/{tenant}/{secret}/"
    )
    sg = client(emulator)
    sg.send(mail("ann+reply@example.com"))
    assert emulator.wait_idle()["replies_unroutable"] == 1  # no secret known yet

    emulator.register_tenant(TENANT, inbound_secret="s3cret")
    sg.send(mail("ann+reply@example.com"))
    [request] = webhook_sink.wait_for(1)
    assert request.path == f"/webhooks/sendgrid/inbound/{TENANT}/s3cret/"


# --- email validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address,verdict,check",
    [
        ("jane.doe@example.com", "Valid", None),
        ("sales@example.com", "Risky", ("local_part", "is_suspected_role_address")),
        ("jane@mailinator.com", "Risky", ("domain", "is_suspected_disposable_address")),
        ("jane+risky@example.com", "Risky", ("additional", "has_suspected_bounces")),
        ("jane+bounce@example.com", "Invalid", ("additional", "has_known_bounces")),
        ("jane+invalid@example.com", "Invalid", None),
        ("jane@nowhere.invalid", "Invalid", None),
        ("not an address", "Invalid", None),
    ],
)
def test_email_validation_shape_and_verdicts(sendgrid_emulator, address, verdict, check):
    response = client(sendgrid_emulator).client.validations.email.post(
        request_body={"email": address, "source": "signup"}
    )

    result = json.loads(response.body)["result"]
    assert response.status_code == 200
    assert result["verdict"] == verdict
    assert result["email"] == address and result["source"] == "signup"
    assert 0 <= result["score"] <= 1
    assert set(result) >= {"email", "verdict", "score", "local", "host", "checks", "ip_address"}
    assert set(result["checks"]) == {"domain", "local_part", "additional"}
    assert set(result["checks"]["domain"]) == {
        "has_valid_address_syntax",
        "has_mx_or_a_record",
        "is_suspected_disposable_address",
    }
    if check:
        assert result["checks"][check[0]][check[1]] is True
    if verdict == "Valid":
        assert result["score"] > 0.8 and result["local"] == "jane.doe"


def test_email_validation_suggests_a_typo_fix_and_requires_an_email(sendgrid_emulator):
    sg = client(sendgrid_emulator)
    response = sg.client.validations.email.post(request_body={"email": "ann@gmial.com"})
    assert json.loads(response.body)["result"]["suggestion"] == "gmail.com"
    with pytest.raises(BadRequestsError):
        sg.client.validations.email.post(request_body={})
    status, _, body = raw_post(
        sendgrid_emulator.host + "/v3/validations/email", b'{"email": "a@example.com"}', {}
    )
    assert (status, json.loads(body)) == (401, UNAUTHORIZED)


# --- HTTP details -----------------------------------------------------------------------------


def test_keep_alive_pipelined_and_chunked_requests(sendgrid_emulator):
    port = int(sendgrid_emulator.host.rsplit(":", 1)[1])
    body = json.dumps(mail("pipe@example.com")).encode()
    plain = (
        "POST /v3/mail/send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    chunked = (
        b"POST /v3/mail/send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + f"{len(body[:50]):x}\r\n".encode()
        + body[:50]
        + b"\r\n"
        + f"{len(body[50:]):x}\r\n".encode()
        + body[50:]
        + b"\r\n0\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(plain + plain + chunked)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk

    answers = received.split(b"HTTP/1.1 ")[1:]
    assert [answer[:3] for answer in answers] == [b"202", b"202", b"202"]
    assert b"Connection: close" in answers[-1]
    assert len(sendgrid_emulator.messages(to="pipe@example.com")) == 3


def test_expect_100_continue_is_answered_before_the_body(sendgrid_emulator):
    port = int(sendgrid_emulator.host.rsplit(":", 1)[1])
    body = json.dumps(mail("curl@example.com")).encode()
    head = (
        "POST /v3/mail/send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
        f"Expect: 100-continue\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(head)
        assert connection.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        connection.sendall(body)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 202 ")
    assert len(sendgrid_emulator.messages(to="curl@example.com")) == 1


def test_unknown_paths_and_methods(sendgrid_emulator):
    status, _, body = raw_post(
        sendgrid_emulator.host + "/v3/nope", b"{}", {"Authorization": "Bearer k"}
    )
    assert status == 404 and json.loads(body)["errors"]
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(
            urllib.request.Request(
                sendgrid_emulator.host + "/v3/mail/send", headers={"Authorization": "Bearer k"}
            ),
            timeout=10,
        )
    assert excinfo.value.code == 405


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_emulator_stops_when_the_process_that_started_it_is_killed():
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\n"
            "from messaging.emulator.process import EmulatorProcess\n"
            "emulator = EmulatorProcess(quiet=True).start()\n"
            "print(emulator.pid, flush=True)\n"
            "time.sleep(120)\n",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    emulator_pid = int(parent.stdout.readline())
    assert _alive(emulator_pid)

    parent.kill()
    parent.wait(timeout=10)
    deadline = time.monotonic() + 15
    while _alive(emulator_pid):
        assert time.monotonic() < deadline, "emulator outlived its parent"
        time.sleep(0.1)


# --- the management command ---------------------------------------------------------------------


def test_management_command_serves_and_rejects_bad_options(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "emulator.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "sendgrid_emulator", "--port", str(port), "--quiet"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 20
        while "listening on" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert json.loads(get(f"http://127.0.0.1:{port}/_emulator/health")) == {"status": "ok"}
    finally:
        process.terminate()
        process.wait(timeout=10)

    bad = subprocess.run(
        [sys.executable, "manage.py", "sendgrid_emulator", "--open-rate", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines()[-1] == (
        "CommandError: --open-rate: expected a share between 0 and 1"
    )
