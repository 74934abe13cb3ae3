"""Kept-alive provider connections over real sockets: reuse, expiry, and what a failure says
about whether the request may have reached the provider."""

import http.server
import socket
import threading
import time
import uuid

import pytest

from messaging.providers import transport
from messaging.providers.transport import HttpFailure, HttpReply, http_post


class KeepAliveServer:
    """An HTTP/1.1 server that keeps connections open, counts them, and can hang up on an
    idle connection after answering (as a load balancer's idle timeout does)."""

    def __init__(self, *, close_idle_after: float | None = None) -> None:
        self.connections = 0
        self.requests = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                server.connections += 1
                if close_idle_after is not None:
                    self.request.settimeout(close_idle_after)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                server.requests += 1
                self.send_response(202)
                self.send_header("X-Message-Id", uuid.uuid4().hex[:22])
                self.send_header("Content-Length", "0")
                self.end_headers()

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except TimeoutError:  # idle past the server's timeout: hang up
                    self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v3/mail/send"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def fresh_connections():
    transport.http_connections_close()
    yield
    transport.http_connections_close()


def _post(url: str, timeout: float = 5.0):
    return http_post(
        url=url, body=b"{}", headers={"Content-Type": "application/json"}, timeout=timeout
    )


def test_one_thread_sends_many_requests_on_one_connection():
    server = KeepAliveServer()
    try:
        replies = [_post(server.url) for _ in range(50)]
    finally:
        server.close()
    assert all(isinstance(r, HttpReply) and r.status == 202 for r in replies)
    assert server.requests == 50
    assert server.connections == 1


def test_threads_keep_a_connection_each():
    server = KeepAliveServer()
    results: list = []

    def sender() -> None:
        results.extend(_post(server.url) for _ in range(20))
        transport.http_connections_close()

    threads = [threading.Thread(target=sender) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        server.close()
    assert len(results) == 80 and all(r.status == 202 for r in results)
    assert server.connections == 4


def test_a_connection_the_server_closed_while_idle_is_replaced_before_sending():
    server = KeepAliveServer(close_idle_after=0.2)
    try:
        first = _post(server.url)
        time.sleep(0.6)  # the server hangs up on the idle connection meanwhile
        second = _post(server.url)
    finally:
        server.close()
    # No unknown outcome: the dead socket was seen before anything was written on it.
    assert isinstance(first, HttpReply) and isinstance(second, HttpReply)
    assert server.requests == 2
    assert server.connections == 2


def test_a_connection_idle_too_long_is_not_reused(monkeypatch):
    monkeypatch.setattr(transport, "MAX_IDLE_SECONDS", 0.1)
    server = KeepAliveServer()
    try:
        _post(server.url)
        _post(server.url)
        time.sleep(0.3)
        _post(server.url)
    finally:
        server.close()
    assert server.connections == 2


def test_refused_connection_was_not_sent():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()

    result = _post(f"http://127.0.0.1:{port}/v3/mail/send")

    assert isinstance(result, HttpFailure)
    assert (result.reason, result.sent) == ("connection_error", False)


def test_no_answer_after_the_request_was_written_may_have_been_sent():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        result = _post(f"http://127.0.0.1:{silent.getsockname()[1]}/v3/mail/send", timeout=0.3)
    finally:
        silent.close()
    assert isinstance(result, HttpFailure)
    assert (result.reason, result.sent) == ("timeout", True)


def test_after_a_failure_the_next_request_uses_a_new_connection():
    server = KeepAliveServer()
    hang_up = socket.socket()
    hang_up.bind(("127.0.0.1", 0))
    hang_up.listen(1)
    bad_url = f"http://127.0.0.1:{hang_up.getsockname()[1]}/v3/mail/send"

    def read_then_close() -> None:
        conn, _ = hang_up.accept()
        conn.recv(65536)
        conn.close()

    thread = threading.Thread(target=read_then_close, daemon=True)
    thread.start()
    try:
        lost = _post(bad_url)
        fine = [_post(server.url) for _ in range(3)]
    finally:
        thread.join(timeout=10)
        hang_up.close()
        server.close()
    assert isinstance(lost, HttpFailure)
    assert (lost.reason, lost.sent) == ("connection_lost", True)
    assert all(r.status == 202 for r in fine)
    assert server.connections == 1
