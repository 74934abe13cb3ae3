"""Signed Event Webhook batches posted to the web process, as SendGrid's servers would.

Bounded: every POST has a timeout, every batch a bounded number of retries (SendGrid retries
for 72 hours; here a few seconds apart), and the run stops when the list is done.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from messaging.emulator.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, Signer


class StormPoster:
    def __init__(self, *, url: str, signer: Signer, threads: int = 4, retries: int = 20):
        self.url = urlsplit(url)
        self.signer = signer
        self.threads = threads
        self.retries = retries
        self.statuses: Counter = Counter()
        self.given_up = 0
        self._lock = threading.Lock()
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=30)
            self._local.connection = connection
        return connection

    def _post_once(self, body: bytes) -> int | None:
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "SendGrid Event API",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: self.signer.sign(timestamp, body),
        }
        connection = self._connection()
        try:
            connection.request("POST", self.url.path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.will_close:
                connection.close()
                self._local.connection = None
            return response.status
        except (OSError, http.client.HTTPException):
            connection.close()
            self._local.connection = None
            return None

    def post(self, batch: list[dict]) -> bool:
        body = json.dumps(batch, separators=(",", ":")).encode()
        for attempt in range(self.retries + 1):
            status = self._post_once(body)
            with self._lock:
                self.statuses[status or "no answer"] += 1
            if status is not None and 200 <= status < 300:
                return True
            time.sleep(min(0.5 * 2**attempt, 5.0))
        with self._lock:
            self.given_up += 1
        return False

    def post_all(self, batches: list[list[dict]]) -> None:
        pool = ThreadPoolExecutor(max_workers=self.threads)
        try:
            list(pool.map(self.post, batches))
        finally:
            # Cut short (the run's deadline): the batches not yet started are dropped.
            pool.shutdown(wait=True, cancel_futures=True)
