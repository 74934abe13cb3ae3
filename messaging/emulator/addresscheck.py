"""`POST /v3/validations/email`: SendGrid's response shape, verdicts derived from the address.

Deterministic, so tests can rely on it: bad syntax, a ``.invalid``/``.test`` domain or a
``+invalid`` tag are Invalid; a ``+bounce`` tag is Invalid with known bounces; disposable
domains, role local parts (``info@``, ``sales@``...) and a ``+risky`` tag are Risky; anything
else is Valid. A few common domain typos get a ``suggestion``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .mailsend import address_valid

DISPOSABLE_DOMAINS = frozenset(
    {
        "mailinator.com",
        "guerrillamail.com",
        "sharklasers.com",
        "10minutemail.com",
        "yopmail.com",
        "trashmail.com",
        "tempmail.com",
        "temp-mail.org",
        "getnada.com",
        "dispostable.com",
        "throwawaymail.com",
        "maildrop.cc",
    }
)
ROLE_LOCAL_PARTS = frozenset(
    {
        "abuse",
        "admin",
        "billing",
        "contact",
        "help",
        "hello",
        "hr",
        "info",
        "jobs",
        "marketing",
        "no-reply",
        "noreply",
        "office",
        "postmaster",
        "sales",
        "support",
        "team",
        "webmaster",
    }
)
TYPO_DOMAINS = {
    "gmial.com": "gmail.com",
    "gmai.com": "gmail.com",
    "gnail.com": "gmail.com",
    "hotmial.com": "hotmail.com",
    "yaho.com": "yahoo.com",
    "outlok.com": "outlook.com",
}
NO_MX_SUFFIXES = (".invalid", ".test", ".example", ".localhost")


def _score(email: str, low: float, high: float) -> float:
    digest = hashlib.sha256(email.encode()).digest()
    return round(low + (high - low) * digest[0] / 255, 5)


def email_verdict(email: str, *, source: str | None, ip_address: str) -> dict[str, Any]:
    local, _, host = email.rpartition("@")
    syntax_ok = address_valid(email)
    base_local, *tags = local.lower().split("+")
    tags_set = set(tags)
    host_lower = host.lower()
    has_mx = syntax_ok and not host_lower.endswith(NO_MX_SUFFIXES) and "invalid" not in tags_set
    disposable = host_lower in DISPOSABLE_DOMAINS
    role = base_local in ROLE_LOCAL_PARTS
    known_bounces = "bounce" in tags_set
    suspected_bounces = "risky" in tags_set

    if not syntax_ok or not has_mx or known_bounces:
        verdict, score = "Invalid", _score(email, 0.0, 0.1)
    elif disposable or role or suspected_bounces:
        verdict, score = "Risky", _score(email, 0.3, 0.6)
    else:
        verdict, score = "Valid", _score(email, 0.85, 0.99)

    result: dict[str, Any] = {
        "email": email,
        "verdict": verdict,
        "score": score,
        "local": local,
        "host": host,
        "checks": {
            "domain": {
                "has_valid_address_syntax": syntax_ok,
                "has_mx_or_a_record": has_mx,
                "is_suspected_disposable_address": disposable,
            },
            "local_part": {"is_suspected_role_address": role},
            "additional": {
                "has_known_bounces": known_bounces,
                "has_suspected_bounces": suspected_bounces,
            },
        },
        "ip_address": ip_address,
    }
    if host_lower in TYPO_DOMAINS:
        result["suggestion"] = TYPO_DOMAINS[host_lower]
    if source is not None:
        result["source"] = source
    return {"result": result}
