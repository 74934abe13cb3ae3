"""The SendGrid adapter with the real ``sendgrid`` client over real sockets."""

import datetime
import http.server
import json
import logging
import socket
import threading
import time
import uuid

import pytest

from messaging.providers import (
    CUSTOM_ARG_MESSAGE_ID,
    CUSTOM_ARG_TENANT,
    Accepted,
    OutboundEmail,
    Permanent,
    Transient,
    provider_credentials_get,
    provider_email_send,
)
from messaging.providers.sendgrid import provider_client_get
from messaging.services.tenant_secrets import tenant_sendgrid_key_set

# Shaped like a real key so a leak would be obvious; it only ever travels in headers.
TENANT_KEY = "SG.tenantKeyAbcdefghij1234.tenantSecretAbcdefghijklmnopqrstuvwxyz0123456"


pytestmark = pytest.mark.slow  # the SendGrid emulator runs as a real process


class FakeSendGrid:
    """Scripted answers SendGrid gives and the emulator does not (403 unverified sender,
    404, 502/503 from its edge): records every request, answers from a queue."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.replies: list[tuple[int, dict, bytes]] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                fake.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "json": json.loads(body)}
                )
                status, headers, reply = (
                    fake.replies.pop(0)
                    if fake.replies
                    else (202, {"X-Message-Id": uuid.uuid4().hex[:22]}, b"")
                )
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def reply(self, status: int, body: dict | None = None, **headers: str) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.replies.append((status, {k.replace("_", "-"): v for k, v in headers.items()}, data))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def emulator(sendgrid_emulator, settings):
    """The shared emulator (reset for this test), as the provider the adapter calls."""
    settings.SENDGRID_API_HOST = sendgrid_emulator.host
    settings.SENDGRID_API_KEY = ""
    settings.SENDGRID_TIMEOUT_SECONDS = 5
    return sendgrid_emulator


@pytest.fixture
def fake_sendgrid(settings):
    fake = FakeSendGrid()
    settings.SENDGRID_API_HOST = fake.host
    settings.SENDGRID_API_KEY = ""
    settings.SENDGRID_TIMEOUT_SECONDS = 5
    yield fake
    fake.close()


def _email(tenant, **overrides) -> OutboundEmail:
    values = {
        "message_public_id": uuid.uuid4(),
        "tenant_public_id": tenant.public_id,
        "from_email": "ae@sender.example.com",
        "from_name": "Alex AE",
        "to_email": "lead@prospect.example.com",
        "to_name": "Lee Lead",
        "subject": "Quick question",
        "text": "Hi Lee,\nworth a chat?",
        "html": "<p>Hi Lee,<br>worth a chat?</p>",
        "unsubscribe_url": "https://outreach.example.com/u/tok123/",
    }
    values.update(overrides)
    return OutboundEmail(**values)


def _send(tenant, email=None, **overrides):
    return provider_email_send(tenant_id=tenant.id, email=email or _email(tenant, **overrides))


def test_payload_as_the_provider_receives_it(tenant, emulator):
    tenant.open_tracking = False
    tenant.save()
    first = uuid.uuid4()
    email = _email(
        tenant,
        reply_to="reply+tok@reply.example.com",
        categories=["campaign-42", "step-followup", "campaign-42"],
        headers={"X-Outreach-Step": "followup"},
        in_reply_to=f"<{first}@sender.example.com>",
        references=[f"<{first}@sender.example.com>"],
        open_tracking=tenant.open_tracking,
        click_tracking=tenant.click_tracking,
    )

    result = _send(tenant, email)

    assert isinstance(result, Accepted)
    [record] = emulator.messages(arg_outreach_message_id=str(email.message_public_id))
    assert record["x_message_id"] == result.provider_message_id
    assert record["to"] == [{"email": "lead@prospect.example.com", "name": "Lee Lead"}]
    assert record["from"] == {"email": "ae@sender.example.com", "name": "Alex AE"}
    assert record["reply_to"] == {"email": "reply+tok@reply.example.com"}
    assert record["subject"] == "Quick question"
    assert (record["text"], record["html"]) == (email.text, email.html)
    assert record["custom_args"] == {
        CUSTOM_ARG_MESSAGE_ID: str(email.message_public_id),
        CUSTOM_ARG_TENANT: str(tenant.public_id),
    }
    assert record["categories"] == ["campaign-42", "step-followup"]
    headers = record["headers"]
    assert headers["List-Unsubscribe"] == "<https://outreach.example.com/u/tok123/>"
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["Message-ID"] == f"<{email.message_public_id}@sender.example.com>"
    assert headers["In-Reply-To"] == f"<{first}@sender.example.com>"
    assert headers["References"] == f"<{first}@sender.example.com>"
    assert headers["X-Outreach-Step"] == "followup"
    tracking = record["tracking_settings"]
    assert tracking["open_tracking"] == {"enable": False}
    assert tracking["click_tracking"]["enable"] is True
    assert tracking["subscription_tracking"] == {"enable": False}


def test_first_message_of_a_thread_has_no_reply_headers(tenant, emulator):
    email = _email(tenant, reply_to="")
    _send(tenant, email)

    [record] = emulator.messages(arg_outreach_message_id=str(email.message_public_id))
    assert "In-Reply-To" not in record["headers"]
    assert "References" not in record["headers"]
    assert record["reply_to"] is None
    assert record["categories"] == []


def test_accepted_carries_the_x_message_id(tenant, emulator):
    result = _send(tenant)

    assert isinstance(result, Accepted)
    assert result.status_code == 202
    assert len(result.provider_message_id) == 22
    [record] = emulator.messages(x_message_id=result.provider_message_id)
    assert record["to"][0]["email"] == "lead@prospect.example.com"


def test_429_is_transient_until_the_rate_limit_reset(tenant, emulator):
    emulator.configure(fault_429_share=1.0, rate_limit_window=60)
    before = int(time.time()) // 60 * 60 + 60

    result = _send(tenant)

    after = int(time.time()) // 60 * 60 + 60
    assert isinstance(result, Transient)
    assert (result.reason, result.status_code, result.maybe_delivered) == (
        "rate_limited",
        429,
        False,
    )
    assert result.retry_after in {
        datetime.datetime.fromtimestamp(reset, tz=datetime.UTC) for reset in (before, after)
    }
    assert "too many requests" in result.detail
    assert emulator.messages() == []


def test_500_is_transient(tenant, emulator):
    emulator.configure(fault_500_share=1.0)

    result = _send(tenant)

    assert isinstance(result, Transient)
    assert (result.reason, result.status_code, result.retry_after) == ("server_error", 500, None)


def test_400_is_permanent_with_sendgrids_messages(tenant, emulator):
    result = _send(tenant, to_email="not-an-address")

    assert result == Permanent(
        status_code=400, errors=["Does not contain a valid address."], reason="bad_request"
    )


def test_401_is_permanent_with_sendgrids_message(tenant, emulator):
    emulator.configure(api_keys=["the-only-accepted-key"])

    result = _send(tenant)

    assert result == Permanent(
        status_code=401,
        errors=["The provided authorization grant is invalid, expired, or revoked"],
        reason="unauthorized",
    )


def test_413_is_permanent(tenant, emulator):
    emulator.configure(max_body_bytes=4096)

    result = _send(tenant, html="<p>" + "x" * 8192 + "</p>")

    assert isinstance(result, Permanent)
    assert (result.status_code, result.reason) == (413, "payload_too_large")
    assert "too large" in result.errors[0]


def test_timeout_after_the_provider_took_the_message_says_maybe_delivered(
    tenant, emulator, settings
):
    emulator.configure(latency_ms=3000)
    settings.SENDGRID_TIMEOUT_SECONDS = 0.5
    email = _email(tenant)

    result = _send(tenant, email)

    assert isinstance(result, Transient)
    assert (result.reason, result.maybe_delivered) == ("timeout", True)
    # The emulator did accept it: a blind resend would deliver the message twice.
    assert emulator.messages(arg_outreach_message_id=str(email.message_public_id))


def test_errors_sendgrid_has_but_the_emulator_does_not(tenant, fake_sendgrid):
    unverified = (
        "The from address does not match a verified Sender Identity. Mail cannot be sent "
        "until this error is resolved."
    )
    fake_sendgrid.reply(403, {"errors": [{"message": unverified, "field": "from", "help": None}]})
    fake_sendgrid.reply(404, {"errors": [{"message": "resource not found", "field": None}]})
    fake_sendgrid.reply(502, None)
    fake_sendgrid.reply(
        503, {"errors": [{"message": "unavailable", "field": None}]}, Retry_After="30"
    )

    forbidden, not_found, bad_gateway, unavailable = (_send(tenant) for _ in range(4))

    assert forbidden == Permanent(status_code=403, errors=[unverified], reason="forbidden")
    assert not_found == Permanent(
        status_code=404, errors=["resource not found"], reason="not_found"
    )
    assert isinstance(bad_gateway, Transient)
    assert (bad_gateway.reason, bad_gateway.status_code) == ("server_error", 502)
    assert isinstance(unavailable, Transient)
    assert unavailable.status_code == 503
    assert unavailable.retry_after is not None
    assert fake_sendgrid.requests[0]["path"] == "/v3/mail/send"


def test_timeout_against_a_server_that_never_answers(tenant, settings):
    # Accepts the connection (the kernel does, via the backlog) and never reads or answers.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    settings.SENDGRID_API_HOST = f"http://127.0.0.1:{silent.getsockname()[1]}"
    settings.SENDGRID_TIMEOUT_SECONDS = 0.5
    outcome: list = []
    worker = threading.Thread(target=lambda: outcome.append(_send(tenant)), daemon=True)
    try:
        worker.start()
        # Without an explicit timeout the client would wait forever; don't hang the suite.
        worker.join(timeout=30)
    finally:
        silent.close()

    assert outcome, "the send did not return: no timeout was applied"
    [result] = outcome
    assert isinstance(result, Transient)
    assert result.reason == "timeout"
    assert result.status_code is None
    # The request was written before the wait: SendGrid may have taken it.
    assert result.maybe_delivered is True


def test_connection_refused_is_transient_and_not_delivered(tenant, settings):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    settings.SENDGRID_API_HOST = f"http://127.0.0.1:{port}"

    result = _send(tenant)

    assert isinstance(result, Transient)
    assert (result.reason, result.status_code, result.maybe_delivered) == (
        "connection_error",
        None,
        False,
    )
    assert "refused" in result.detail.lower()


def test_unknown_host_is_transient(tenant, settings):
    settings.SENDGRID_API_HOST = "http://sendgrid-emulator.invalid:8025"

    result = _send(tenant)

    assert isinstance(result, Transient)
    assert result.reason == "connection_error"


def test_connection_closed_without_an_answer_may_have_delivered(tenant, settings):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    settings.SENDGRID_API_HOST = f"http://127.0.0.1:{server.getsockname()[1]}"

    def read_then_hang_up() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.close()

    thread = threading.Thread(target=read_then_hang_up, daemon=True)
    thread.start()
    try:
        result = _send(tenant)
    finally:
        thread.join(timeout=10)
        server.close()

    assert isinstance(result, Transient)
    assert result.reason == "connection_lost"
    assert result.maybe_delivered is True


def test_tenant_key_then_platform_key_then_emulator_key(tenant, other_tenant, emulator, settings):
    tenant_sendgrid_key_set(tenant_id=tenant.id, api_key=TENANT_KEY)
    emulator.configure(api_keys=[TENANT_KEY])

    assert isinstance(_send(tenant), Accepted)
    assert isinstance(_send(other_tenant), Permanent)  # it falls back to another key

    settings.SENDGRID_API_KEY = "platform-key-0001"
    emulator.configure(api_keys=["platform-key-0001"])
    assert isinstance(_send(other_tenant), Accepted)

    settings.SENDGRID_API_KEY = ""
    emulator.configure(api_keys=["emulator-local-key"])
    assert isinstance(_send(other_tenant), Accepted)
    assert isinstance(_send(tenant), Permanent)  # a tenant key always wins


def test_no_key_for_real_sendgrid_is_permanent_without_a_call(tenant, settings):
    settings.SENDGRID_API_HOST = "https://api.sendgrid.com"
    settings.SENDGRID_API_KEY = ""

    result = _send(tenant)

    assert isinstance(result, Permanent)
    assert (result.status_code, result.reason) == (None, "missing_api_key")


def test_undecryptable_tenant_key_is_permanent(tenant, emulator):
    tenant.sendgrid_api_key_encrypted = "gAAAAABnot-a-token-of-ours"
    tenant.save()

    result = _send(tenant)

    assert isinstance(result, Permanent)
    assert result.reason == "undecryptable_api_key"
    assert emulator.messages() == []


def test_content_that_looks_like_an_api_key_is_never_sent(tenant, emulator):
    result = _send(tenant, text=f"our key is {TENANT_KEY}")

    assert isinstance(result, Permanent)
    assert result.reason == "invalid_payload"
    assert emulator.messages() == []


def test_the_api_key_never_reaches_the_logs(tenant, emulator, caplog):
    tenant_sendgrid_key_set(tenant_id=tenant.id, api_key=TENANT_KEY)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="python_http_client")
    email = _email(tenant)

    emulator.configure(api_keys=["some-other-key"])
    _send(tenant, email)
    emulator.configure(api_keys=[TENANT_KEY])
    _send(tenant, email)

    assert caplog.records
    for record in caplog.records:
        assert TENANT_KEY not in record.getMessage()
        assert TENANT_KEY not in repr(record.__dict__)
    sends = [r for r in caplog.records if r.getMessage() == "provider.send"]
    assert [(r.outcome, r.status) for r in sends] == [("permanent", 401), ("accepted", 202)]
    assert all(r.tenant_id == tenant.id for r in sends)
    assert all(r.message_public_id == str(email.message_public_id) for r in sends)


def test_clients_are_reused_and_carry_the_timeout(tenant, settings):
    settings.SENDGRID_TIMEOUT_SECONDS = 7
    credentials = provider_credentials_get(tenant_id=tenant.id)

    first = provider_client_get(credentials=credentials)

    assert provider_client_get(credentials=credentials) is first
    assert first.client.timeout == 7


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"headers": {"From": "someone@else.example.com"}}, "header 'From' cannot be set"),
        ({"headers": {"X-Note": "a\r\nBcc: victim@example.com"}}, "line breaks"),
        ({"text": "", "html": ""}, "neither a text nor an HTML body"),
        ({"unsubscribe_url": "https://x.example.com/u/\r\nX: y"}, "line breaks"),
    ],
)
def test_messages_that_cannot_be_built_are_permanent_and_never_sent(
    tenant, emulator, overrides, problem
):
    result = _send(tenant, **overrides)

    assert isinstance(result, Permanent)
    assert result.reason == "invalid_payload"
    assert problem in result.errors[0]
    assert emulator.messages() == []
