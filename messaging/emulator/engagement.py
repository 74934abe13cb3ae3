"""What happens to each recipient after SendGrid accepted a message.

A recipient's outcome is fixed by tags in the local part of its address (``ann+open+click@x``);
an address without a known tag draws its outcome from the configured rates, seeded by
(seed, address, our message id) so a run is reproducible. Events carry SendGrid's field names.

Tags: ``drop``, ``bounce`` (hard), ``blocked`` (soft), ``defer`` (deferred twice, then the
rest), ``open``, ``machineopen`` (Apple MPP open, ``sg_machine_open: true``), ``click`` (implies
an open), ``noopen``, ``spam``, ``unsub``, ``reply`` (human reply through Inbound Parse) and
``ooo`` (out-of-office auto-reply).
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
import os
import random
import re
import uuid
from dataclasses import dataclass
from email.utils import format_datetime, formataddr, make_msgid
from typing import Any

from .config import EmulatorConfig

KNOWN_TAGS = frozenset(
    {
        "drop",
        "bounce",
        "blocked",
        "defer",
        "open",
        "machineopen",
        "click",
        "noopen",
        "spam",
        "unsub",
        "reply",
        "ooo",
    }
)
MTA_IP = "149.72.154.232"
HUMAN_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36"
)
MACHINE_UA = "Mozilla/5.0"
HUMAN_IP = "203.0.113.24"
MACHINE_IP = "17.58.63.10"
_POD = "p3mdw1-756b745b58-kmzbl-18"
_event_counter = itertools.count(1)
_HREF = re.compile(r"""href\s*=\s*["'](https?://[^"']+)["']""", re.IGNORECASE)
_URL = re.compile(r"https?://\S+")


@dataclass(slots=True)
class PlannedEvent:
    due: float
    tenant: str | None
    event: dict[str, Any]


@dataclass(slots=True)
class PlannedReply:
    due: float
    tenant: str | None
    fields: dict[str, str]  # Inbound Parse form fields, raw mode


def address_tags(email: str) -> set[str]:
    local = email.rpartition("@")[0].lower()
    return set(local.split("+")[1:]) & KNOWN_TAGS


def event_id_new(event: str, x_message_id: str) -> str:
    """URL-safe like SendGrid's ``sg_event_id`` (base64url of a readable token).

    Unique because ``x_message_id`` is 128 random bits and the counter never repeats within it.
    """
    token = f"{event}-{next(_event_counter)}-{x_message_id}"
    return base64.urlsafe_b64encode(token.encode()).rstrip(b"=").decode("ascii")


def smtp_id(x_message_id: str) -> str:
    return f"<{x_message_id}@ismtpd0039p1iad1.sendgrid.net>"


def _first_link(payload: dict[str, Any]) -> str:
    content = {b.get("type"): b.get("value") for b in payload.get("content") or []}
    html, text = content.get("text/html", ""), content.get("text/plain", "")
    for candidate in _HREF.findall(html or "") + _URL.findall(text or ""):
        if "unsubscribe" not in candidate.lower():
            return candidate
    return "https://example.com/"


@dataclass(slots=True)
class _Outcome:
    drop: bool = False
    bounce: bool = False
    blocked: bool = False
    defer: bool = False
    human_open: bool = False
    machine_open: bool = False
    click: bool = False
    spam: bool = False
    unsub: bool = False
    reply: bool = False
    ooo: bool = False


def _outcome(tags: set[str], rng: random.Random, config: EmulatorConfig) -> _Outcome:
    if tags:
        outcome = _Outcome(
            drop="drop" in tags,
            bounce="bounce" in tags,
            blocked="blocked" in tags,
            defer="defer" in tags,
            human_open=("open" in tags or "click" in tags) and "noopen" not in tags,
            machine_open="machineopen" in tags and "noopen" not in tags,
            click="click" in tags and "noopen" not in tags,
            spam="spam" in tags,
            unsub="unsub" in tags,
            reply="reply" in tags,
            ooo="ooo" in tags,
        )
        return outcome
    outcome = _Outcome()
    draw = rng.random()
    if draw < config.drop_rate:
        outcome.drop = True
        return outcome
    draw -= config.drop_rate
    if draw < config.bounce_rate:
        outcome.bounce = True
        return outcome
    draw -= config.bounce_rate
    if draw < config.blocked_rate:
        outcome.blocked = True
        return outcome
    outcome.defer = rng.random() < config.defer_rate
    if rng.random() < config.open_rate:
        if rng.random() < config.machine_open_share:
            outcome.machine_open = True
        else:
            outcome.human_open = True
            outcome.click = rng.random() < config.click_rate
    outcome.spam = rng.random() < config.spam_rate
    outcome.unsub = rng.random() < config.unsubscribe_rate
    outcome.reply = rng.random() < config.reply_rate
    outcome.ooo = not outcome.reply and rng.random() < config.ooo_rate
    return outcome


def message_plan(
    *, config: EmulatorConfig, x_message_id: str, received_at: float, payload: dict[str, Any]
) -> list[PlannedEvent | PlannedReply]:
    """Every event and inbound reply the accepted request will cause, each with its due time."""
    planned: list[PlannedEvent | PlannedReply] = []
    categories = payload.get("categories")
    top_args = payload.get("custom_args") or {}
    asm = payload.get("asm")
    asm_group_id = asm.get("group_id") if isinstance(asm, dict) else None
    recipient_index = 0

    def add(
        event: str,
        extra: dict[str, Any],
        when: float,
        common: dict[str, Any],
        custom_args: dict[str, str],
        tenant: str | None,
    ) -> None:
        body = {**common, **extra, "event": event, "timestamp": int(when)}
        body["sg_event_id"] = event_id_new(event, x_message_id)
        for key, value in custom_args.items():
            body.setdefault(key, value)  # SendGrid's own keys win on collision
        planned.append(PlannedEvent(due=when, tenant=tenant, event=body))

    for personalization in payload.get("personalizations") or []:
        custom_args = {**top_args, **(personalization.get("custom_args") or {})}
        tenant = custom_args.get("outreach_tenant")
        recipients = [
            entry["email"]
            for kind in ("to", "cc", "bcc")
            for entry in personalization.get(kind) or []
        ]
        for email in recipients:
            rng = random.Random(
                f"{config.seed}|{email.lower()}|"
                f"{custom_args.get('outreach_message_id') or x_message_id}"
            )
            outcome = _outcome(address_tags(email), rng, config)
            common = {
                "email": email,
                "smtp-id": smtp_id(x_message_id),
                "sg_message_id": (
                    f"{x_message_id}.filterdrecv-{_POD}-{int(received_at):X}-{recipient_index}.0"
                ),
            }
            if categories:
                common["category"] = categories
            if asm_group_id is not None:
                common["asm_group_id"] = asm_group_id
            clock = _Clock(received_at, rng, config)
            context = (common, custom_args, tenant)

            add("processed", {}, clock.step(), *context)
            recipient_index += 1
            if outcome.drop:
                add(
                    "dropped",
                    {"reason": "Bounced Address", "status": "5.0.0"},
                    clock.step(),
                    *context,
                )
                continue
            if outcome.defer:
                for attempt in ("1", "2"):
                    add(
                        "deferred",
                        {
                            "response": "421 4.7.0 Try again later, closing connection.",
                            "attempt": attempt,
                            "domain": email.rpartition("@")[2],
                        },
                        clock.step(),
                        *context,
                    )
            if outcome.bounce or outcome.blocked:
                add("bounce", _bounce_fields(hard=outcome.bounce), clock.step(), *context)
                continue
            delivered_at = clock.step()
            add(
                "delivered",
                {"response": "250 2.0.0 OK  accepted for delivery", "ip": MTA_IP, "tls": 1},
                delivered_at,
                *context,
            )
            if outcome.machine_open:
                add(
                    "open",
                    {"useragent": MACHINE_UA, "ip": MACHINE_IP, "sg_machine_open": True},
                    clock.step(),
                    *context,
                )
            if outcome.human_open:
                add(
                    "open",
                    {"useragent": HUMAN_UA, "ip": HUMAN_IP, "sg_machine_open": False},
                    clock.step(),
                    *context,
                )
            if outcome.click:
                add(
                    "click",
                    {
                        "url": _first_link(payload),
                        "url_offset": {"index": 0, "type": "html"},
                        "useragent": HUMAN_UA,
                        "ip": HUMAN_IP,
                    },
                    clock.step(),
                    *context,
                )
            if outcome.spam:
                add("spamreport", {}, clock.step(), *context)
            if outcome.unsub:
                add("unsubscribe", {"useragent": HUMAN_UA, "ip": HUMAN_IP}, clock.step(), *context)
            if outcome.ooo:
                planned.append(
                    PlannedReply(
                        due=clock.step(),
                        tenant=tenant,
                        fields=reply_fields(
                            payload=payload,
                            personalization=personalization,
                            x_message_id=x_message_id,
                            recipient=email,
                            auto=True,
                            sent_at=delivered_at,
                        ),
                    )
                )
            if outcome.reply:
                planned.append(
                    PlannedReply(
                        due=clock.step(),
                        tenant=tenant,
                        fields=reply_fields(
                            payload=payload,
                            personalization=personalization,
                            x_message_id=x_message_id,
                            recipient=email,
                            auto=False,
                            sent_at=delivered_at,
                        ),
                    )
                )
    return planned


class _Clock:
    def __init__(self, start: float, rng: random.Random, config: EmulatorConfig):
        self.now = start
        self.rng = rng
        self.low = config.delay_min
        self.high = config.delay_max

    def step(self) -> float:
        if self.high > 0:
            self.now += self.rng.uniform(self.low, self.high)
        return self.now


def _bounce_fields(*, hard: bool) -> dict[str, Any]:
    if hard:
        return {
            "type": "bounce",
            "status": "5.1.1",
            "reason": (
                "550 5.1.1 The email account that you tried to reach does not exist. "
                "Please try double-checking the recipient's email address for typos."
            ),
            "bounce_classification": "Invalid Address",
            "ip": MTA_IP,
            "tls": 1,
        }
    return {
        "type": "blocked",
        "status": "5.7.1",
        "reason": "550 5.7.1 Service unavailable; client host blocked using a reputation list",
        "bounce_classification": "Reputation",
        "ip": MTA_IP,
        "tls": 1,
    }


def _header(headers: dict[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def return_date(sent_at: float) -> dt.date:
    """Out-of-office return date: a week after the mail, moved to a weekday."""
    day = dt.datetime.fromtimestamp(sent_at, dt.UTC).date() + dt.timedelta(days=7)
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


def reply_fields(
    *,
    payload: dict[str, Any],
    personalization: dict[str, Any],
    x_message_id: str,
    recipient: str,
    auto: bool,
    sent_at: float,
) -> dict[str, str]:
    """The raw-mode Inbound Parse form fields of a reply from ``recipient`` to the message."""
    headers = {**(payload.get("headers") or {}), **(personalization.get("headers") or {})}
    original_id = _header(headers, "Message-ID") or smtp_id(x_message_id)
    references = " ".join(
        part for part in (_header(headers, "References"), original_id) if part
    ).strip()
    sender = personalization.get("from") or payload.get("from") or {}
    reply_to = payload.get("reply_to") or (payload.get("reply_to_list") or [None])[0] or sender
    reply_to_address = reply_to.get("email", "")
    recipient_name = next(
        (
            entry.get("name")
            for entry in personalization.get("to") or []
            if entry.get("email") == recipient and entry.get("name")
        ),
        "",
    )
    subject = personalization.get("subject") or payload.get("subject") or ""
    content = {b.get("type"): b.get("value") for b in payload.get("content") or []}
    original_text = content.get("text/plain") or re.sub(
        r"<[^>]+>", "", content.get("text/html", "")
    )
    when = dt.datetime.fromtimestamp(sent_at, dt.UTC)
    quoted = "\n".join("> " + line for line in original_text.splitlines()[:20])
    if auto:
        back = return_date(sent_at)
        reply_subject = f"Automatic reply: {subject}"
        text = (
            "Thank you for your message. I am out of the office with limited access to email.\n"
            f"I will be back on {back.isoformat()} ({back.strftime('%A %d %B %Y')}).\n"
        )
    else:
        reply_subject = subject if subject.lower().startswith("re:") else f"Re: {subject}"
        text = (
            "Thanks for reaching out, this sounds interesting. "
            "Could we talk next Tuesday afternoon?\n\n"
            f"On {format_datetime(when)}, {formataddr((sender.get('name') or '', sender.get('email', '')))} wrote:\n"
            f"{quoted}\n"
        )
    domain = recipient.rpartition("@")[2] or "example.com"
    lines = [
        f"From: {formataddr((recipient_name, recipient))}",
        f"To: {formataddr((reply_to.get('name') or '', reply_to_address))}",
        f"Subject: {reply_subject}",
        f"Date: {format_datetime(dt.datetime.now(dt.UTC))}",
        f"Message-ID: {make_msgid(idstring=uuid.uuid4().hex[:12], domain=domain)}",
        f"In-Reply-To: {original_id}",
        f"References: {references}",
        "MIME-Version: 1.0",
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: 8bit",
    ]
    if auto:
        lines += ["Auto-Submitted: auto-replied", "X-Autoreply: yes", "Precedence: auto_reply"]
    raw = "\r\n".join(lines) + "\r\n\r\n" + text.replace("\n", "\r\n")
    return {
        "email": raw,
        "to": formataddr((reply_to.get("name") or "", reply_to_address)),
        "from": formataddr((recipient_name, recipient)),
        "subject": reply_subject,
        "sender_ip": HUMAN_IP,
        "envelope": json.dumps({"to": [reply_to_address], "from": recipient}),
        "SPF": "pass",
        "dkim": f"{{@{domain} : pass}}",
        "charsets": json.dumps(
            {"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8", "email": "UTF-8"}
        ),
    }


def multipart_encode(fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = "xYzZY" + os.urandom(12).hex()
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode("utf-8")
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"
