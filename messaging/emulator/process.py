"""Start the emulator as a real subprocess and talk to its control endpoints.

Used by the pytest fixtures (``messaging/tests/emulator_fixtures.py``), the benchmarks and the
demo. The process runs in its own process group so stopping it also ends anything it started.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_READY = re.compile(r"sendgrid-emulator listening on (http://\S+)")
_KEY = re.compile(r"sendgrid-emulator webhook public key (\S+)")


def _flag(name: str, value: Any) -> list[str]:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return [flag if value else "--no-" + name.replace("_", "-")]
    if isinstance(value, list | tuple):
        value = ",".join(map(str, value))
    return [flag, str(value)]


class EmulatorProcess:
    """A running emulator: ``.host``, ``.public_key`` and helpers over ``/_emulator/``.

    ``options`` are the emulator's options by field name (``open_rate=0.5``,
    ``events_url_template="http://..."``, ``tags_only=True``); see ``--help``.
    """

    def __init__(self, *, port: int = 0, host: str = "127.0.0.1", **options: Any):
        self.options = {"host": host, "port": port, "exit_with_parent": True, **options}
        self.host = ""
        self.public_key = ""
        self.log_path = Path(tempfile.mkstemp(prefix="sendgrid-emulator-", suffix=".log")[1])
        self._process: subprocess.Popen | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> EmulatorProcess:
        command = [sys.executable, "-m", "messaging.emulator"]
        for name, value in self.options.items():
            command += _flag(name, value)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SENDGRID_EMULATOR_")}
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                command,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"emulator exited early:\n{self.log()}")
            text = self.log()
            ready, key = _READY.search(text), _KEY.search(text)
            if ready and key:
                self.host, self.public_key = ready.group(1), key.group(1)
                break
            time.sleep(0.02)
        else:
            self.stop()
            raise RuntimeError(f"emulator did not start within {timeout}s:\n{self.log()}")
        # The log line comes after bind; still confirm the port answers before handing it out.
        while time.monotonic() < deadline:
            try:
                self.control("GET", "/_emulator/health")
                return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"emulator port never answered:\n{self.log()}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
        except ProcessLookupError:
            pass

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    # --- control endpoints --------------------------------------------------------------

    def control(self, method: str, path: str, data: Any = None) -> Any:
        body = None if data is None else json.dumps(data).encode()
        request = urllib.request.Request(  # noqa: S310 - self.host is http:// by construction
            self.host + path,
            data=body,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: {exc.code} {exc.read()!r}") from exc
        return json.loads(raw) if raw else None

    def messages(self, to: str | None = None, **filters: str) -> list[dict[str, Any]]:
        """Accepted messages (one per personalization), newest first.

        Filters: ``to`` (any of to/cc/bcc), ``x_message_id``, ``limit``, and
        ``arg_<name>=value`` for a custom arg (``arg_outreach_message_id=...``).
        """
        query = {"to": to} if to else {}
        for key, value in filters.items():
            query["arg." + key[4:] if key.startswith("arg_") else key] = value
        suffix = "?" + urllib.parse.urlencode(query) if query else ""
        return self.control("GET", "/_emulator/messages" + suffix)["messages"]

    def reset(self) -> None:
        """Back to the start-up state: messages, tenant routes, options, counters, pending."""
        self.control("POST", "/_emulator/reset")

    def clear_messages(self) -> None:
        self.control("DELETE", "/_emulator/messages")

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change runtime options (rates, faults, delays, URL templates...) until ``reset``."""
        return self.control("POST", "/_emulator/config", changes)

    def register_tenant(
        self,
        tenant: str,
        *,
        events_url: str = "",
        inbound_url: str = "",
        inbound_secret: str = "",
    ) -> None:
        self.control(
            "POST",
            "/_emulator/tenants",
            {
                "tenant": str(tenant),
                "events_url": events_url,
                "inbound_url": inbound_url,
                "inbound_secret": inbound_secret,
            },
        )

    def stats(self) -> dict[str, Any]:
        return self.control("GET", "/_emulator/stats")

    def deliveries(self) -> list[dict[str, Any]]:
        return self.control("GET", "/_emulator/deliveries")["deliveries"]

    def flush(self) -> None:
        self.control("POST", "/_emulator/flush")

    # --- SMS (messaging.emulator.twilio) ------------------------------------------------

    def sms_messages(self, to: str | None = None, direction: str = "") -> list[dict[str, Any]]:
        """Texts, newest first: ``outbound-api`` (sent through the API), ``inbound`` (from a
        person), ``outbound-reply`` (our TwiML answers, e.g. a STOP confirmation)."""
        query = {key: value for key, value in (("to", to), ("direction", direction)) if value}
        suffix = "?" + urllib.parse.urlencode(query) if query else ""
        return self.control("GET", "/_emulator/sms/messages" + suffix)["messages"]

    def sms_register_number(self, number: str, sms_url: str) -> None:
        """Where texts to ``number`` (one of ours) are posted, like a number's SMS URL."""
        self.control("POST", "/_emulator/sms/numbers", {"number": number, "sms_url": sms_url})

    def sms_inbound(self, *, person: str, to: str, body: str) -> str:
        """A person texts ``body`` to our number ``to``; returns the inbound message SID."""
        return self.control(
            "POST", "/_emulator/sms/inbound", {"from": person, "to": to, "body": body}
        )["sid"]

    def sms_configure(self, **changes: Any) -> dict[str, Any]:
        """``latency_ms``, ``rate_per_second``, ``fault_429_share``, ``fault_500_share``."""
        return self.control("POST", "/_emulator/sms/config", changes)

    def sms_stats(self) -> dict[str, Any]:
        return self.control("GET", "/_emulator/sms/stats")

    def sms_wait_idle(self, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            stats = self.sms_stats()
            if stats["pending"] == 0:
                return stats
            if time.monotonic() > deadline:
                raise TimeoutError(f"SMS emulator still has {stats['pending']} pending")
            time.sleep(0.05)

    def wait_idle(self, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until every planned event and reply has been posted (or given up)."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if stats["pending"] == 0:
                return stats
            if time.monotonic() > deadline:
                raise TimeoutError(f"emulator still has {stats['pending']} pending: {stats}")
            time.sleep(0.05)
