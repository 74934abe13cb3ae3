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


class FakeSendGrid:
    """A stand-in SendGrid: records every request and answers from a script."""

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


def test_payload_as_the_provider_receives_it(tenant, fake_sendgrid):
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
    [request] = fake_sendgrid.requests
    assert request["path"] == "/v3/mail/send"
    assert request["headers"]["Authorization"] == "Bearer emulator-local-key"
    body = request["json"]
    assert body["personalizations"] == [
        {"to": [{"email": "lead@prospect.example.com", "name": "Lee Lead"}]}
    ]
    assert body["from"] == {"email": "ae@sender.example.com", "name": "Alex AE"}
    assert body["reply_to"] == {"email": "reply+tok@reply.example.com"}
    assert body["subject"] == "Quick question"
    assert [part["type"] for part in body["content"]] == ["text/plain", "text/html"]
    assert body["custom_args"] == {
        CUSTOM_ARG_MESSAGE_ID: str(email.message_public_id),
        CUSTOM_ARG_TENANT: str(tenant.public_id),
    }
    assert body["categories"] == ["campaign-42", "step-followup"]
    headers = body["headers"]
    assert headers["List-Unsubscribe"] == "<https://outreach.example.com/u/tok123/>"
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["Message-ID"] == f"<{email.message_public_id}@sender.example.com>"
    assert headers["In-Reply-To"] == f"<{first}@sender.example.com>"
    assert headers["References"] == f"<{first}@sender.example.com>"
    assert headers["X-Outreach-Step"] == "followup"
    assert body["tracking_settings"]["open_tracking"] == {"enable": False}
    assert body["tracking_settings"]["click_tracking"]["enable"] is True
    assert body["tracking_settings"]["subscription_tracking"] == {"enable": False}


def test_first_message_of_a_thread_has_no_reply_headers(tenant, fake_sendgrid):
    _send(tenant, reply_to="")

    body = fake_sendgrid.requests[0]["json"]
    assert "In-Reply-To" not in body["headers"]
    assert "References" not in body["headers"]
    assert "reply_to" not in body
    assert "categories" not in body


def test_accepted_carries_the_x_message_id(tenant, fake_sendgrid):
    fake_sendgrid.reply(202, None, X_Message_Id="Pz8Jc1QgRj6qJx2bB0C3sA")

    result = _send(tenant)

    assert result == Accepted(provider_message_id="Pz8Jc1QgRj6qJx2bB0C3sA", status_code=202)


def test_429_is_transient_until_the_rate_limit_reset(tenant, fake_sendgrid):
    reset = int(time.time()) + 37
    fake_sendgrid.reply(
        429,
        {"errors": [{"field": None, "message": "too many requests"}]},
        X_RateLimit_Limit="600",
        X_RateLimit_Remaining="0",
        X_RateLimit_Reset=str(reset),
    )

    result = _send(tenant)

    assert isinstance(result, Transient)
    assert result.reason == "rate_limited"
    assert result.status_code == 429
    assert result.retry_after == datetime.datetime.fromtimestamp(reset, tz=datetime.UTC)
    assert result.maybe_delivered is False


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(tenant, fake_sendgrid, status):
    fake_sendgrid.reply(status, {"errors": [{"field": None, "message": "internal error"}]})

    result = _send(tenant)

    assert isinstance(result, Transient)
    assert (result.reason, result.status_code, result.retry_after) == ("server_error", status, None)


@pytest.mark.parametrize(
    ("status", "reason", "message"),
    [
        (400, "bad_request", "Does not contain a valid address."),
        (401, "unauthorized", "The provided authorization grant is invalid, expired, or revoked"),
        (
            403,
            "forbidden",
            "The from address does not match a verified Sender Identity. Mail cannot be sent "
            "until this error is resolved.",
        ),
        (404, "not_found", "resource not found"),
        (413, "payload_too_large", "The request body is too large."),
    ],
)
def test_client_errors_are_permanent_with_sendgrids_messages(
    tenant, fake_sendgrid, status, reason, message
):
    fake_sendgrid.reply(
        status,
        {
            "errors": [
                {"message": message, "field": "from", "help": None},
                {"message": "second problem", "field": None, "help": None},
            ]
        },
    )

    result = _send(tenant)

    assert result == Permanent(
        status_code=status, errors=[message, "second problem"], reason=reason
    )


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


def test_tenant_key_then_platform_key_then_emulator_key(
    tenant, other_tenant, fake_sendgrid, settings
):
    tenant_sendgrid_key_set(tenant_id=tenant.id, api_key=TENANT_KEY)

    _send(tenant)
    _send(other_tenant)
    settings.SENDGRID_API_KEY = "platform-key-0001"
    _send(other_tenant)

    assert [r["headers"]["Authorization"] for r in fake_sendgrid.requests] == [
        f"Bearer {TENANT_KEY}",
        "Bearer emulator-local-key",
        "Bearer platform-key-0001",
    ]


def test_no_key_for_real_sendgrid_is_permanent_without_a_call(tenant, settings):
    settings.SENDGRID_API_HOST = "https://api.sendgrid.com"
    settings.SENDGRID_API_KEY = ""

    result = _send(tenant)

    assert isinstance(result, Permanent)
    assert (result.status_code, result.reason) == (None, "missing_api_key")


def test_undecryptable_tenant_key_is_permanent(tenant, fake_sendgrid):
    tenant.sendgrid_api_key_encrypted = "gAAAAABnot-a-token-of-ours"
    tenant.save()

    result = _send(tenant)

    assert isinstance(result, Permanent)
    assert result.reason == "undecryptable_api_key"
    assert fake_sendgrid.requests == []


def test_content_that_looks_like_an_api_key_is_never_sent(tenant, fake_sendgrid):
    result = _send(tenant, text=f"our key is {TENANT_KEY}")

    assert isinstance(result, Permanent)
    assert result.reason == "invalid_payload"
    assert fake_sendgrid.requests == []


def test_the_api_key_never_reaches_the_logs(tenant, fake_sendgrid, caplog):
    tenant_sendgrid_key_set(tenant_id=tenant.id, api_key=TENANT_KEY)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="python_http_client")
    fake_sendgrid.reply(401, {"errors": [{"message": "bad key", "field": None}]})

    email = _email(tenant)
    _send(tenant, email)
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
