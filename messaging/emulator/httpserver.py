"""A small HTTP/1.1 server on a bare asyncio protocol.

The emulator must accept thousands of sends per second on two cores so it never bounds a
benchmark; ``http.server`` manages a few hundred. This parser handles what SendGrid clients send:
Content-Length or chunked bodies, keep-alive and pipelining, ``Connection: close`` (urllib).
Answers on one connection always leave in request order, even when one of them is delayed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

logger = logging.getLogger("sendgrid_emulator")

MAX_HEAD_BYTES = 64 * 1024
_REASONS = {status.value: status.phrase for status in HTTPStatus}


@dataclass(slots=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    peer: str
    _path: str | None = None
    _query: dict[str, list[str]] | None = None

    @property
    def path(self) -> str:
        if self._path is None:
            self._split()
        return self._path  # type: ignore[return-value]

    @property
    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            self._split()
        return self._query  # type: ignore[return-value]

    def _split(self) -> None:
        parts = urlsplit(self.target)
        self._path = parts.path
        self._query = parse_qs(parts.query, keep_blank_values=True)


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str | None = None
    delay: float = 0.0  # seconds to hold the answer (latency injection)
    close: bool = False
    abort: bool = False  # close the connection without answering (fault injection)


Handler = Callable[[Request], Response]


def _encode(response: Response, keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Unknown')}"]
    if response.content_type:
        lines.append(f"Content-Type: {response.content_type}")
    lines.append(f"Content-Length: {len(response.body)}")
    for name, value in response.headers:
        lines.append(f"{name}: {value}")
    lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
    head = "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n"
    return head + response.body


class HttpProtocol(asyncio.Protocol):
    def __init__(self, handler: Handler, max_body_bytes: Callable[[], int], too_large: Handler):
        self._handler = handler
        self._max_body = max_body_bytes
        self._too_large = too_large
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._busy = False  # a delayed answer is pending; later requests wait their turn
        self._closing = False
        self._discard = 0  # body bytes of a refused request still to swallow before closing
        self._continued = False  # "100 Continue" already sent for the request being read
        self._peer = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self._peer = peer[0] if peer else ""

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._transport = None

    def data_received(self, data: bytes) -> None:
        if self._discard:
            # Reading the rest of a refused body lets the client finish writing it and read
            # the 413, instead of failing with a reset mid-upload.
            self._discard = max(0, self._discard - len(data))
            if not self._discard and self._transport is not None:
                self._transport.close()
            return
        self._buffer += data
        if not self._busy:
            self._process()

    def _process(self) -> None:
        while not self._closing and self._transport is not None:
            request = self._parse_one()
            if request is None:
                return
            keep_alive = request.headers.get("connection", "").lower() != "close"
            try:
                response = self._handler(request)
            except Exception:
                logger.exception("emulator.handler_failed", extra={"path": request.target})
                response = Response(
                    500,
                    b'{"errors":[{"message":"internal server error","field":null,"help":null}]}',
                    content_type="application/json",
                )
            keep_alive = keep_alive and not response.close
            if response.delay > 0:
                self._busy = True
                asyncio.get_running_loop().call_later(
                    response.delay, self._send_delayed, response, keep_alive
                )
                return
            self._send(response, keep_alive)

    def _send_delayed(self, response: Response, keep_alive: bool) -> None:
        self._busy = False
        self._send(response, keep_alive)
        self._process()

    def _send(self, response: Response, keep_alive: bool) -> None:
        if self._transport is None:
            return
        if response.abort:
            self._closing = True
            self._transport.close()
            return
        self._transport.write(_encode(response, keep_alive))
        if not keep_alive:
            self._closing = True
            self._transport.close()

    def _fail(self, status: int, message: str) -> None:
        body = json.dumps({"errors": [{"message": message, "field": None, "help": None}]})
        self._send(
            Response(status, body.encode(), content_type="application/json"), keep_alive=False
        )

    def _parse_one(self) -> Request | None:
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                self._fail(431, "request header fields too large")
            return None
        try:
            head = bytes(buffer[:end]).decode("latin-1")
            request_line, *header_lines = head.split("\r\n")
            method, target, version = request_line.split(" ", 2)
            headers: dict[str, str] = {}
            for line in header_lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or "0")
            if length < 0:
                raise ValueError("negative Content-Length")
        except ValueError:
            self._fail(400, "bad request")
            return None
        start = end + 4
        if headers.get("transfer-encoding", "").lower() == "chunked":
            try:
                decoded = _dechunk(buffer, start, self._max_body())
            except ValueError:
                self._fail(400, "bad chunked encoding")
                return None
            if decoded is None:
                return None
            if decoded == -1:
                self._send(self._too_large(_stub(method, target, headers, self._peer)), False)
                return None
            body, consumed = decoded  # type: ignore[misc]
            del buffer[:consumed]
        else:
            if length > self._max_body():
                # Answer at once, then swallow the body and close: the connection is spent.
                response = self._too_large(_stub(method, target, headers, self._peer))
                if self._transport is not None:
                    self._transport.write(_encode(response, keep_alive=False))
                self._closing = True
                self._discard = max(0, length - (len(buffer) - start))
                buffer.clear()
                if not self._discard and self._transport is not None:
                    self._transport.close()
                return None
            if len(buffer) - start < length:
                if not self._continued and headers.get("expect", "").lower() == "100-continue":
                    # curl waits for this before sending bodies over 1 KB.
                    self._continued = True
                    if self._transport is not None:
                        self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                return None
            self._continued = False
            body = bytes(buffer[start : start + length])
            del buffer[: start + length]
        if version == "HTTP/1.0" and headers.get("connection", "").lower() != "keep-alive":
            headers["connection"] = "close"
        return Request(method, target, headers, body, self._peer)


def _stub(method: str, target: str, headers: dict[str, str], peer: str) -> Request:
    return Request(method, target, headers, b"", peer)


def _dechunk(buffer: bytearray, start: int, limit: int) -> tuple[bytes, int] | int | None:
    """Decode a complete chunked body: (body, bytes consumed), None if incomplete, -1 if too big."""
    body = bytearray()
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(bytes(buffer[position:line_end]).split(b";")[0].strip() or b"0", 16)
        position = line_end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n", position)
            if trailer_end < 0:
                return None
            return bytes(body), trailer_end + 2
        if len(body) + size > limit:
            return -1
        if len(buffer) < position + size + 2:
            return None
        body += buffer[position : position + size]
        position += size + 2


async def serve(
    handler: Handler,
    *,
    host: str,
    port: int,
    max_body_bytes: Callable[[], int],
    too_large: Handler,
) -> asyncio.base_events.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: HttpProtocol(handler, max_body_bytes, too_large),
        host=host,
        port=port,
        reuse_address=True,
        backlog=1024,
    )
