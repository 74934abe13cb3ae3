"""Pytest fixtures for the SendGrid emulator, available to every test in the project.

The root ``conftest.py`` loads this module (``pytest_plugins``). The emulator runs as a real
subprocess (``python -m messaging.emulator``) on a free loopback port, in its own process group
that teardown kills.

``sendgrid_emulator`` (function scope)
    One emulator process shared by the whole session and reset to its start-up state before
    each test. Started with ``tags_only=True`` (no random outcomes: only address tags such as
    ``+open``, ``+bounce``, ``+reply`` cause events), no event delays, fast webhook retries, and
    any non-empty bearer key accepted. The object (``EmulatorProcess``) has:

    - ``.host``: ``"http://127.0.0.1:PORT"``, to pass as ``SENDGRID_API_HOST`` /
      ``SendGridAPIClient(host=...)``;
    - ``.public_key``: base64 DER SPKI of the webhook signing key (a tenant's
      ``webhook_public_key``);
    - ``.messages(to=None, **filters)``: accepted messages (one dict per personalization,
      newest first) with ``x_message_id``, ``to``, ``subject``, ``text``, ``html``, ``headers``,
      ``custom_args``, ``categories``...; filters ``x_message_id=``, ``limit=``,
      ``arg_<custom_arg>=``;
    - ``.reset()``: forget messages, tenant routes, option changes, counters, pending events;
    - ``.register_tenant(tenant, events_url=..., inbound_url=..., inbound_secret=...)``: where
      events and replies for ``custom_args.outreach_tenant == tenant`` are posted;
    - ``.configure(**options)``: change runtime options (``open_rate``, ``fault_429_share``,
      ``latency_ms``, ``webhook_duplicate_share``, ``events_url_template``...) until reset;
    - ``.flush()``, ``.wait_idle(timeout)``: make pending events due / wait until all posted;
    - ``.stats()``, ``.deliveries()``: counters and the recent webhook POSTs with statuses.

``sendgrid_emulator_factory(**options)`` (function scope)
    Starts a fresh emulator with start-up options (same names as the CLI flags, e.g.
    ``api_keys="k1,k2"``, ``max_body_bytes=2000``, ``signing_key_file=path``, ``seed=7``) and
    returns it started; every process it started is stopped at teardown.

``webhook_sink`` (function scope)
    A small threaded HTTP server recording every POST: ``.url`` (base URL), ``.requests``
    (list of ``SinkRequest(path, headers, body)``), ``.wait_for(count, timeout, prefix="")``,
    and ``.fail_next(status, times)`` to answer the next POSTs with an error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from messaging.emulator.process import EmulatorProcess

TEST_DEFAULTS: dict[str, Any] = {
    "tags_only": True,
    "delay_max": 0,
    "webhook_tick": 0.02,
    "webhook_retry_backoff": 0.1,
    "quiet": True,
}


@pytest.fixture(scope="session")
def sendgrid_emulator_session() -> Iterator[EmulatorProcess]:
    emulator = EmulatorProcess(**TEST_DEFAULTS).start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def sendgrid_emulator(sendgrid_emulator_session: EmulatorProcess) -> EmulatorProcess:
    sendgrid_emulator_session.reset()
    return sendgrid_emulator_session


@pytest.fixture
def sendgrid_emulator_factory() -> Iterator[Callable[..., EmulatorProcess]]:
    started: list[EmulatorProcess] = []

    def start(**options: Any) -> EmulatorProcess:
        emulator = EmulatorProcess(**{**TEST_DEFAULTS, **options})
        started.append(emulator)
        return emulator.start()

    try:
        yield start
    finally:
        for emulator in started:
            emulator.stop()


@dataclass
class SinkRequest:
    path: str
    headers: dict[str, str]
    body: bytes


class WebhookSink:
    def __init__(self) -> None:
        self.requests: list[SinkRequest] = []
        self._failures: list[int] = []
        self._lock = threading.Condition()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with sink._lock:
                    status = sink._failures.pop(0) if sink._failures else 200
                    if status < 300:
                        sink.requests.append(SinkRequest(self.path, dict(self.headers), body))
                    sink._lock.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def fail_next(self, status: int, times: int = 1) -> None:
        with self._lock:
            self._failures.extend([status] * times)

    def matching(self, prefix: str = "") -> list[SinkRequest]:
        with self._lock:
            return [request for request in self.requests if request.path.startswith(prefix)]

    def wait_for(self, count: int, timeout: float = 10.0, prefix: str = "") -> list[SinkRequest]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [r for r in self.requests if r.path.startswith(prefix)]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"sink got {len(found)} POSTs under {prefix!r}, not {count}")
                self._lock.wait(remaining)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def webhook_sink() -> Iterator[WebhookSink]:
    sink = WebhookSink()
    try:
        yield sink
    finally:
        sink.close()
