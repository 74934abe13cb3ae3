"""Keep-alive HTTP for provider calls: one persistent connection per thread and host.

The official ``sendgrid`` client speaks urllib, which builds an opener (reading every proxy
variable of the environment) and opens a new TCP connection for every request: about 1.2 ms
of CPU per send, more than the rest of the send path. Here each sending thread keeps its
connection open between requests (``http.client``, HTTP/1.1 keep-alive), so a send costs one
write and one read on a warm socket. ``urllib3`` pools the same way but costs 2.3x the CPU
per request (255 µs against 110 µs on the emulator, measured); the part we need, reuse with
a dropped-connection check, is small enough to keep here.

What the caller must know to keep the send ledger honest is *whether the request may have
reached the provider*, so errors are split by phase:

- connecting (refused, unknown host, connect timeout): nothing was sent;
- after the connection was up (a write, the wait for the answer, reading it): the provider
  may have taken the message, so the caller must not resend blindly.

A connection idle in the pool is checked before reuse: if the server closed it (its idle
timeout), it is readable (EOF) and is replaced before anything is written, so an ordinary
keep-alive expiry never turns into an unknown outcome. Connections idle longer than
``MAX_IDLE_SECONDS`` are not reused at all.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

MAX_IDLE_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class HttpReply:
    status: int
    headers: Any  # http.client.HTTPMessage: case-insensitive .get()
    body: bytes


@dataclass(frozen=True, slots=True)
class HttpFailure:
    """No HTTP answer. ``sent`` is False only when the request cannot have left."""

    reason: str  # connection_error, connect_timeout, timeout, connection_lost
    detail: str
    sent: bool


class _Pooled:
    __slots__ = ("connection", "idle_since")

    def __init__(self, connection: http.client.HTTPConnection) -> None:
        self.connection = connection
        self.idle_since = time.monotonic()


_local = threading.local()


@lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    # Building a context loads the CA bundle: once per process, not per connection.
    return ssl.create_default_context()


@lru_cache(maxsize=64)
def _origin(url: str) -> tuple[str, str, int, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return scheme, parts.hostname or "", port, path


def _dropped(sock: socket.socket | None) -> bool:
    """An idle keep-alive socket that is readable was closed by the server (or has bytes
    nobody asked for): either way it must not carry the next request."""
    if sock is None:
        return True
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


def _pool() -> dict[tuple[str, str, int, float], _Pooled]:
    pool = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = {}
    return pool


def _checkout(scheme: str, host: str, port: int, timeout: float) -> http.client.HTTPConnection:
    key = (scheme, host, port, timeout)
    pooled = _pool().pop(key, None)
    if pooled is not None:
        idle = time.monotonic() - pooled.idle_since
        if idle <= MAX_IDLE_SECONDS and not _dropped(pooled.connection.sock):
            return pooled.connection
        pooled.connection.close()
    if scheme == "https":
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=_tls_context())
    return http.client.HTTPConnection(host, port, timeout=timeout)


def _checkin(
    scheme: str, host: str, port: int, timeout: float, connection: http.client.HTTPConnection
) -> None:
    key = (scheme, host, port, timeout)
    previous = _pool().get(key)
    if previous is not None:
        previous.connection.close()
    _pool()[key] = _Pooled(connection)


def http_post(
    *, url: str, body: bytes, headers: dict[str, str], timeout: float
) -> HttpReply | HttpFailure:
    """POST ``body`` on this thread's kept-alive connection to the URL's origin.

    Never raises for network trouble: it comes back as :class:`HttpFailure` with ``sent``
    telling whether the provider may have received the request.
    """
    scheme, host, port, path = _origin(url)
    connection = _checkout(scheme, host, port, timeout)
    if connection.sock is None:
        try:
            connection.connect()
        except TimeoutError:
            connection.close()
            return HttpFailure("connect_timeout", f"no connection within {timeout}s", sent=False)
        except OSError as exc:  # refused, unreachable, unknown host, TLS handshake refused
            connection.close()
            return HttpFailure("connection_error", f"{exc}"[:500], sent=False)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
    except TimeoutError:
        connection.close()
        return HttpFailure("timeout", f"no answer within {timeout}s", sent=True)
    except (http.client.HTTPException, OSError) as exc:
        connection.close()
        return HttpFailure("connection_lost", f"{type(exc).__name__}: {exc}"[:500], sent=True)
    if response.will_close:
        connection.close()
    else:
        _checkin(scheme, host, port, timeout, connection)
    return HttpReply(response.status, response.headers, data)


def http_connections_close() -> None:
    """Close this thread's kept-alive connections (tests, and a worker shutting down)."""
    pool = _pool()
    for pooled in pool.values():
        pooled.connection.close()
    pool.clear()
