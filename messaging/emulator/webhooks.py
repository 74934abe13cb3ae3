"""Signed Event Webhook batches and Inbound Parse posts, off the send path.

The mail-send handler only appends to ``Dispatcher.intake``; a background thread plans each
message's events, keeps them in a heap by due time, batches the due ones per destination and
hands the POSTs to a small thread pool. A POST answered with a non-2xx status (events) or 5xx
(inbound, as SendGrid documents) is retried with doubling backoff, then logged and counted.
"""

from __future__ import annotations

import base64
import heapq
import http.client
import itertools
import json
import logging
import os
import random
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .config import EmulatorConfig
from .engagement import PlannedEvent, PlannedReply, message_plan, multipart_encode

logger = logging.getLogger("sendgrid_emulator")

PLAN_PER_ROUND = 500
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


class Signer:
    """ECDSA P-256 over ``timestamp + raw body``, as SendGrid's Signed Event Webhook."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey):
        self._key = private_key
        der = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key = base64.b64encode(der).decode("ascii")

    @classmethod
    def from_setting(cls, setting: str) -> Signer:
        """PEM text, a PEM file (created when missing, so restarts keep the key) or empty."""
        if setting.strip().startswith("-----BEGIN"):
            return cls(_load_pem(setting.encode()))
        if not setting:
            return cls(ec.generate_private_key(ec.SECP256R1()))
        path = Path(setting)
        if path.exists():
            return cls(_load_pem(path.read_bytes()))
        key = ec.generate_private_key(ec.SECP256R1())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)
        return cls(key)

    def sign(self, timestamp: str, body: bytes) -> str:
        signature = self._key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(signature).decode("ascii")


def _load_pem(data: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("--signing-key-file: expected an EC P-256 private key")
    return key


@dataclass
class TenantRoute:
    tenant: str
    events_url: str = ""
    inbound_url: str = ""
    inbound_secret: str = ""
    sms_url: str = ""  # where texts to the tenant's numbers go (messaging.emulator.twilio)
    sms_numbers: list[str] = field(default_factory=list)


class TenantRegistry:
    """Where each tenant's events and replies go, when the URL templates are not enough."""

    def __init__(self) -> None:
        self._routes: dict[str, TenantRoute] = {}
        self._lock = threading.Lock()
        self._file = ""
        self._file_mtime: int | None = None
        self._file_checked = 0.0

    def watch_file(self, path: str) -> None:
        """Load routes from a JSON file, and again whenever it changes (a demo seeds it).

        A missing file is fine (it may be written later); a malformed one at start-up is not.
        """
        self._file = path
        self._file_mtime = None
        self.refresh(strict=True)

    def refresh(self, *, strict: bool = False) -> None:
        if not self._file:
            return
        now = time.monotonic()
        if not strict and now - self._file_checked < 1.0:
            return
        self._file_checked = now
        try:
            mtime = os.stat(self._file).st_mtime_ns
        except FileNotFoundError:
            if strict:
                logger.warning("emulator.tenants_file_missing", extra={"path": self._file})
            return
        if mtime == self._file_mtime:
            return
        try:
            entries = json.loads(Path(self._file).read_text())
            if not isinstance(entries, list):
                raise ValueError("expected a JSON list of {tenant, events_url, inbound_url, ...}")
            routes = [_route(entry) for entry in entries]
        except (OSError, ValueError, AttributeError) as exc:
            if strict:
                raise ValueError(f"--tenants-file {self._file}: {exc}") from exc
            logger.warning("emulator.tenants_file_invalid", extra={"error": str(exc)})
            return
        self._file_mtime = mtime
        with self._lock:
            for route in routes:
                self._routes[route.tenant] = route

    def register(self, entry: dict[str, Any]) -> TenantRoute:
        route = _route(entry)
        with self._lock:
            self._routes[route.tenant] = route
        return route

    def clear(self) -> None:
        """Forget every route, then take the file's routes again."""
        with self._lock:
            self._routes.clear()
        if self._file:
            self._file_mtime, self._file_checked = None, 0.0
            self.refresh(strict=False)

    def all(self) -> list[dict[str, str]]:
        with self._lock:
            return [vars(route).copy() for route in self._routes.values()]

    def __bool__(self) -> bool:
        return bool(self._routes)

    @property
    def watching(self) -> bool:
        return bool(self._file)

    def events_url(self, tenant: str | None, config: EmulatorConfig) -> str | None:
        route = self._routes.get(tenant or "")
        if route and route.events_url:
            return route.events_url
        return _fill(config.events_url_template, tenant, route)

    def inbound_url(self, tenant: str | None, config: EmulatorConfig) -> str | None:
        route = self._routes.get(tenant or "")
        if route and route.inbound_url:
            return route.inbound_url
        return _fill(config.inbound_url_template, tenant, route)


def _route(entry: dict[str, Any]) -> TenantRoute:
    tenant = entry.get("tenant")
    if not isinstance(tenant, str) or not tenant:
        raise ValueError("tenant: required")
    for name in ("events_url", "inbound_url", "inbound_secret", "sms_url"):
        if not isinstance(entry.get(name, ""), str):
            raise ValueError(f"{name}: expected a string")
    numbers = entry.get("sms_numbers", [])
    if not isinstance(numbers, list) or not all(isinstance(n, str) for n in numbers):
        raise ValueError("sms_numbers: expected a list of strings")
    return TenantRoute(
        tenant=tenant,
        events_url=entry.get("events_url", ""),
        inbound_url=entry.get("inbound_url", ""),
        inbound_secret=entry.get("inbound_secret", ""),
        sms_url=entry.get("sms_url", ""),
        sms_numbers=list(numbers),
    )


def _fill(template: str, tenant: str | None, route: TenantRoute | None) -> str | None:
    if not template:
        return None
    if "{tenant}" in template and not tenant:
        return None
    if "{secret}" in template and not (route and route.inbound_secret):
        return None
    return template.replace("{tenant}", tenant or "").replace(
        "{secret}", route.inbound_secret if route else ""
    )


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self.failures: deque[dict[str, Any]] = deque(maxlen=100)
        self.deliveries: deque[dict[str, Any]] = deque(maxlen=1000)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + amount

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()
        self.failures.clear()
        self.deliveries.clear()


@dataclass(slots=True)
class _Post:
    kind: str  # "events" or "inbound"
    url: str
    body: bytes
    content_type: str
    attempt: int = 0
    event_count: int = 0
    generation: int = 0


class Dispatcher:
    def __init__(
        self,
        *,
        config: EmulatorConfig,
        signer: Signer,
        registry: TenantRegistry,
        stats: Stats,
    ):
        self.config = config
        self.signer = signer
        self.registry = registry
        self.stats = stats
        self.intake: deque[tuple[str, float, dict[str, Any]]] = deque()
        self._heap: list[tuple[float, int, int, Any]] = []
        self._sequence = itertools.count()
        # Bumped by clear(): work planned before a reset is dropped, never posted after it.
        self._generation = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flush = threading.Event()
        self._in_flight = 0
        self._staged = 0
        self._rng = random.Random(config.seed)
        self._pool = ThreadPoolExecutor(
            max_workers=config.webhook_concurrency, thread_name_prefix="webhook-post"
        )
        self._thread = threading.Thread(target=self._run, name="webhook-dispatch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def routable(self) -> bool:
        config = self.config
        return bool(
            config.events_url_template
            or config.inbound_url_template
            or self.registry
            or self.registry.watching
        )

    def submit(self, x_message_id: str, received_at: float, payload: dict[str, Any]) -> None:
        # deque.append is atomic: the send path never takes a lock or wakes a thread.
        self.intake.append((x_message_id, received_at, payload))

    def flush(self) -> None:
        """Make everything pending due now (tests that configured long delays)."""
        self._flush.set()
        self._wake.set()

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self.intake.clear()
            self._heap.clear()

    def pending(self) -> int:
        with self._lock:
            return len(self.intake) + len(self._heap) + self._in_flight + self._staged

    def _push(self, due: float, item: Any, generation: int) -> None:
        with self._lock:
            if generation == self._generation:
                heapq.heappush(self._heap, (due, next(self._sequence), generation, item))

    def _run(self) -> None:
        while not self._stop.is_set():
            if len(self.intake) < PLAN_PER_ROUND:  # behind: go straight on to the next round
                self._wake.wait(self.config.webhook_tick)
            self._wake.clear()
            try:
                self._round()
            except Exception:
                logger.exception("emulator.dispatch_failed")

    def _round(self) -> None:
        config = self.config
        self.registry.refresh()
        # Peek, plan, then pop: ``pending()`` never sees a message in neither place.
        generation = self._generation
        # A bounded share per round: under a steady stream of sends, due events still go out.
        for _ in range(min(len(self.intake), PLAN_PER_ROUND)):
            x_message_id, received_at, payload = self.intake[0]
            for item in message_plan(
                config=config,
                x_message_id=x_message_id,
                received_at=received_at,
                payload=payload,
            ):
                self._push(item.due, item, generation)
                self.stats.add(
                    "events_planned" if isinstance(item, PlannedEvent) else "replies_planned"
                )
            with self._lock:
                if generation != self._generation:
                    break  # cleared meanwhile: the deque holds only newer messages
                self.intake.popleft()
            # Hand the GIL back to the event loop between messages: without this the loop
            # waits a whole switch interval (5 ms) each time it wakes, halving accepted sends/s.
            time.sleep(0)
        now = float("inf") if self._flush.is_set() else time.time()
        self._flush.clear()
        due: list[Any] = []
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                due.append(heapq.heappop(self._heap)[3])
            self._staged = len(due)
            generation = self._generation
        if not due:
            return
        try:
            self._dispatch(due, generation)
        finally:
            with self._lock:
                self._staged = 0

    def _dispatch(self, due: list[Any], generation: int) -> None:
        config = self.config
        events_by_url: dict[str, list[dict[str, Any]]] = {}
        for item in due:
            if isinstance(item, _Post):
                self._start(item)
            elif isinstance(item, PlannedEvent):
                url = self.registry.events_url(item.tenant, config)
                if url is None:
                    self.stats.add("events_unroutable")
                    continue
                events_by_url.setdefault(url, []).append(item.event)
            elif isinstance(item, PlannedReply):
                url = self.registry.inbound_url(item.tenant, config)
                if url is None:
                    self.stats.add("replies_unroutable")
                    continue
                body, content_type = multipart_encode(item.fields)
                self._start(_Post("inbound", url, body, content_type, generation=generation))
        for url, events in events_by_url.items():
            for batch in self._batches(events):
                body = json.dumps(batch, separators=(",", ":")).encode() + b"\r\n"
                copies = 2 if self._rng.random() < config.webhook_duplicate_share else 1
                for _ in range(copies):
                    self._start(
                        _Post("events", url, body, "application/json", 0, len(batch), generation)
                    )

    def _batches(self, events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        size = max(1, self.config.webhook_batch_size)
        if self.config.webhook_reorder and len(events) > 1:
            events = events[:]
            self._rng.shuffle(events)
            # Uneven cuts, so one recipient's events also land in different POSTs.
            batches, start = [], 0
            while start < len(events):
                cut = self._rng.randint(1, min(size, max(1, (len(events) - start + 1) // 2)))
                batches.append(events[start : start + cut])
                start += cut
            self._rng.shuffle(batches)
            return batches
        return [events[i : i + size] for i in range(0, len(events), size)]

    def _start(self, post: _Post) -> None:
        with self._lock:
            self._in_flight += 1
        self._pool.submit(self._deliver, post)

    def _deliver(self, post: _Post) -> None:
        try:
            self._attempt(post)
        except Exception:
            logger.exception("emulator.webhook_failed", extra={"url": post.url})
        finally:
            # Only now: a retry is already back in the heap, so pending() never dips to 0.
            with self._lock:
                self._in_flight -= 1

    def _attempt(self, post: _Post) -> None:
        status, error = self._post(post)
        ok = status is not None and 200 <= status < 300
        retryable = not ok and (post.kind == "events" or status is None or status >= 500)
        record = {
            "kind": post.kind,
            "url": post.url,
            "status": status,
            "error": error,
            "attempt": post.attempt,
            "events": post.event_count,
            "at": time.time(),
        }
        self.stats.deliveries.append(record)
        if ok:
            self.stats.add(f"{post.kind}_posts_ok")
            if post.kind == "events":
                self.stats.add("events_posted", post.event_count)
            return
        self.stats.add(f"{post.kind}_posts_failed")
        if retryable and post.attempt < self.config.webhook_retries:
            backoff = self.config.webhook_retry_backoff * (2**post.attempt)
            post.attempt += 1
            self._push(time.time() + backoff, post, post.generation)
            self._wake.set()
            return
        self.stats.add(f"{post.kind}_posts_given_up")
        self.stats.failures.append(record)
        logger.warning(
            "emulator.webhook_given_up",
            extra={"url": post.url, "status": status, "error": error, "attempts": post.attempt + 1},
        )

    def _post(self, post: _Post) -> tuple[int | None, str | None]:
        parts = urlsplit(post.url)
        connection_class = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": post.content_type,
            "User-Agent": "SendGrid Event API" if post.kind == "events" else "Sendlib/1.0",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: self.signer.sign(timestamp, post.body),
        }
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        connection = connection_class(
            parts.hostname or "127.0.0.1", parts.port, timeout=self.config.webhook_timeout
        )
        try:
            connection.request("POST", path, body=post.body, headers=headers)
            response = connection.getresponse()
            response.read()
            return response.status, None
        except (OSError, http.client.HTTPException) as exc:
            return None, f"{type(exc).__name__}: {exc}"
        finally:
            connection.close()
