"""Every knob of the emulator, in one table: CLI flag, environment variable and runtime patch.

A field ``open_rate`` is ``--open-rate`` on the command line, ``SENDGRID_EMULATOR_OPEN_RATE`` in
the environment (the flag wins) and ``{"open_rate": 0.5}`` in ``POST /_emulator/config``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

ENV_PREFIX = "SENDGRID_EMULATOR_"

# Rates a recipient's outcome is drawn from when its address carries no outcome tag.
RATE_FIELDS = (
    "drop_rate",
    "bounce_rate",
    "blocked_rate",
    "defer_rate",
    "open_rate",
    "machine_open_share",
    "click_rate",
    "reply_rate",
    "ooo_rate",
    "spam_rate",
    "unsubscribe_rate",
)

# Fields that only make sense at start-up (sockets, keys, buffers).
STARTUP_ONLY = frozenset(
    {
        "host",
        "port",
        "signing_key_file",
        "store_size",
        "tenants_file",
        "webhook_concurrency",
        "exit_with_parent",
        "twilio_account_sid",
        "twilio_auth_token",
    }
)


def _csv(value: str | list[str]) -> list[str]:
    if isinstance(value, list):
        return [str(item) for item in value]
    return [item.strip() for item in value.split(",") if item.strip()]


def _bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected a boolean, got {value!r}")


def _opt(default: Any, help: str, *, kind: Any = None) -> Any:
    return field(default=default, metadata={"help": help, "kind": kind})


@dataclass
class EmulatorConfig:
    host: str = _opt("127.0.0.1", "interface to listen on")
    port: int = _opt(8025, "port to listen on (0 picks a free one; the log says which)")
    api_keys: list[str] = field(
        default=(),
        metadata={
            "help": "comma-separated bearer keys accepted; empty accepts any non-empty key",
            "kind": _csv,
        },
    )
    max_body_bytes: int = _opt(30 * 1024 * 1024, "requests larger than this get 413")
    store_size: int = _opt(20_000, "accepted requests kept in memory (oldest dropped first)")
    # X-RateLimit-* headers on every response, and optional enforcement.
    rate_limit: int = _opt(10_000, "X-RateLimit-Limit: requests per rate-limit window")
    rate_limit_window: int = _opt(1, "rate-limit window in seconds (X-RateLimit-Reset)")
    enforce_rate_limit: bool = _opt(False, "answer 429 beyond rate_limit per window", kind=_bool)
    # Fault injection on /v3/ endpoints, applied after authentication.
    fault_429_share: float = _opt(0.0, "share of authenticated requests answered 429")
    fault_500_share: float = _opt(0.0, "share of authenticated requests answered 500")
    latency_ms: float = _opt(0.0, "added latency before every /v3/ answer, milliseconds")
    fault_retry_after: int = _opt(0, "Retry-After seconds on injected 429s (0: no header)")
    # Faults where the client cannot know the outcome (the chaos suite, docs/reliability.md).
    fault_timeout_share: float = _opt(
        0.0, "share of mail sends accepted, then answered only after fault_timeout_seconds"
    )
    fault_timeout_seconds: float = _opt(30.0, "how late a fault_timeout_share answer comes")
    fault_drop_share: float = _opt(
        0.0, "share of mail sends accepted, then the connection closed without an answer"
    )
    fault_reset_share: float = _opt(
        0.0, "share of mail sends refused by closing the connection before accepting them"
    )
    seed: int = _opt(0, "seed for outcome draws and fault injection")
    # Engagement, per recipient, when the address carries no outcome tag.
    drop_rate: float = _opt(0.005, "share of recipients dropped")
    bounce_rate: float = _opt(0.02, "share of recipients hard-bounced")
    blocked_rate: float = _opt(0.01, "share of recipients blocked (soft bounce)")
    defer_rate: float = _opt(0.03, "share of deliveries deferred once or twice first")
    open_rate: float = _opt(0.45, "share of delivered recipients who open")
    machine_open_share: float = _opt(0.25, "share of opens that are machine opens (Apple MPP)")
    click_rate: float = _opt(0.25, "share of human opens followed by a click")
    reply_rate: float = _opt(0.04, "share of delivered recipients who reply")
    ooo_rate: float = _opt(0.02, "share of delivered recipients who auto-reply out of office")
    spam_rate: float = _opt(0.001, "share of delivered recipients who report spam")
    unsubscribe_rate: float = _opt(0.005, "share of delivered recipients who unsubscribe")
    tags_only: bool = _opt(False, "zero every rate: only address tags cause outcomes", kind=_bool)
    delay_min: float = _opt(1.0, "minimum seconds between two steps of a recipient's events")
    delay_max: float = _opt(3.0, "maximum seconds between two steps of a recipient's events")
    # Where engagement goes. {tenant} is custom_args.outreach_tenant; {secret} comes from the
    # tenant registry (POST /_emulator/tenants or --tenants-file) because it is not in the mail.
    events_url_template: str = _opt("", "Event Webhook URL, e.g. http://h/webhooks/{tenant}/")
    inbound_url_template: str = _opt("", "Inbound Parse URL, e.g. http://h/in/{tenant}/{secret}/")
    tenants_file: str = _opt("", "JSON list of {tenant, events_url, inbound_url, inbound_secret}")
    signing_key_file: str = _opt(
        "",
        "PEM EC P-256 private key (created there if missing) or the PEM text itself; "
        "empty generates a key for this run",
    )
    webhook_batch_size: int = _opt(100, "most events in one Event Webhook POST")
    webhook_tick: float = _opt(0.1, "seconds between two webhook dispatch rounds")
    webhook_duplicate_share: float = _opt(0.0, "share of webhook batches posted twice")
    webhook_reorder: bool = _opt(False, "shuffle due events across batches", kind=_bool)
    webhook_retries: int = _opt(3, "retries of a failed webhook POST")
    webhook_retry_backoff: float = _opt(2.0, "seconds before the first retry, doubled each time")
    webhook_timeout: float = _opt(10.0, "seconds before a webhook POST gives up")
    webhook_concurrency: int = _opt(4, "webhook POSTs in flight at once")
    # Twilio (messaging.emulator.twilio): the account it accepts and signs callbacks with.
    twilio_account_sid: str = _opt("AC" + "0" * 32, "Twilio account SID the SMS API accepts")
    twilio_auth_token: str = _opt(
        "emulator-twilio-auth-token", "Twilio auth token: API basic auth and callback signatures"
    )
    quiet: bool = _opt(False, "log only warnings", kind=_bool)
    exit_with_parent: bool = _opt(
        False, "stop when the process that started it goes away (tests, scripts)", kind=_bool
    )

    def __post_init__(self) -> None:
        self.api_keys = list(self.api_keys)
        if self.tags_only:
            for name in RATE_FIELDS:
                setattr(self, name, 0.0)

    def update(self, changes: dict[str, Any]) -> list[str]:
        """Apply a runtime patch all or nothing; returns the problems, one per bad field."""
        problems = []
        candidate = dataclasses.replace(self)
        fields_by_name = {f.name: f for f in dataclasses.fields(self)}
        for name, raw in changes.items():
            spec = fields_by_name.get(name)
            if spec is None:
                problems.append(f"{name}: unknown option")
                continue
            if name in STARTUP_ONLY:
                problems.append(f"{name}: can only be set at start-up")
                continue
            try:
                setattr(candidate, name, _coerce(spec, raw))
            except (TypeError, ValueError) as exc:
                problems.append(f"{name}: {exc}")
        if changes.get("tags_only"):
            for name in RATE_FIELDS:
                setattr(candidate, name, 0.0)
        try:
            config_check(candidate)
        except ValueError as exc:
            flags, _, reason = str(exc).partition(": ")
            problems.append(f"{flags.replace('--', '').replace('-', '_')}: {reason}")
        if not problems:
            for spec in dataclasses.fields(self):
                setattr(self, spec.name, getattr(candidate, spec.name))
        return problems

    def public_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["api_keys"] = [f"...{key[-4:]}" for key in self.api_keys]
        if data["signing_key_file"].startswith("-----BEGIN"):
            data["signing_key_file"] = "(inline PEM)"
        return data


def _coerce(spec: dataclasses.Field, raw: Any) -> Any:
    kind = spec.metadata.get("kind")
    if kind is not None:
        return kind(raw)
    default = spec.default
    if isinstance(default, bool):
        return _bool(raw)
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return str(raw)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per field; defaults come from the environment, then the table."""
    for spec in dataclasses.fields(EmulatorConfig):
        flag = "--" + spec.name.replace("_", "-")
        env = ENV_PREFIX + spec.name.upper()
        help_text = f"{spec.metadata['help']} (env {env})"
        if isinstance(spec.default, bool):
            parser.add_argument(
                flag, dest=spec.name, action=argparse.BooleanOptionalAction, help=help_text
            )
        else:
            parser.add_argument(flag, dest=spec.name, metavar="VALUE", help=help_text)


def config_from_options(
    options: dict[str, Any], environ: dict[str, str] | None = None
) -> EmulatorConfig:
    """Build the configuration from parsed flags (None = not given) and the environment.

    Raises ValueError with a one-line reason naming the option.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for spec in dataclasses.fields(EmulatorConfig):
        raw = options.get(spec.name)
        source = "--" + spec.name.replace("_", "-")
        if raw is None:
            env = ENV_PREFIX + spec.name.upper()
            if env not in environ:
                continue
            raw, source = environ[env], env
        try:
            values[spec.name] = _coerce(spec, raw)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: {exc}") from exc
    config = EmulatorConfig(**values)
    config_check(config)
    return config


def config_check(config: EmulatorConfig) -> None:
    """Raises ValueError naming the first bad option; clamps delay_min to delay_max."""
    shares = ("fault_429_share", "fault_500_share", "fault_timeout_share", "fault_drop_share")
    for name in (*RATE_FIELDS, *shares, "fault_reset_share", "webhook_duplicate_share"):
        value = getattr(config, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"--{name.replace('_', '-')}: expected a share between 0 and 1")
    if config.fault_retry_after < 0 or config.fault_timeout_seconds < 0:
        raise ValueError("--fault-retry-after/--fault-timeout-seconds: expected seconds >= 0")
    if config.delay_min < 0 or config.delay_max < 0:
        raise ValueError("--delay-min/--delay-max: expected seconds >= 0")
    # "--delay-max 0" alone means "no delays", not a clash with the default minimum.
    config.delay_min = min(config.delay_min, config.delay_max)
    if config.rate_limit < 1 or config.rate_limit_window < 1:
        raise ValueError("--rate-limit/--rate-limit-window: expected positive integers")
