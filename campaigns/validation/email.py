"""Local email-address validation and normalisation (no network unless asked for).

The stored form of an address is what every other part of the product compares against:
lead de-duplication (unique per tenant), suppression checks at send time, matching webhook
events and replies back to leads. So normalisation is deliberately aggressive:

* syntax and domain rules come from ``email-validator`` (RFC 5322/6531, IDNA 2008);
* the domain is stored in its ASCII (IDNA/punycode) form, because that is the form SMTP
  envelopes, SendGrid and its webhook events carry, so an event for ``a@xn--mnchen-3ya.de``
  finds the lead created as ``a@München.de``;
* the whole address is lower-cased. RFC 5321 lets a server treat the local part as
  case-sensitive, but no mainstream mailbox provider does, and a suppression for
  ``Jane@x.com`` that failed to stop a send to ``jane@x.com`` would be a compliance bug.
  Case-insensitive matching is the safe side.

Role addresses (``info@``, ``sales@``...) and disposable domains are deliverable but poor
prospects: they are flagged and the verdict is ``risky`` rather than ``invalid``.
"""

import re
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

import email_validator

MAX_LENGTH = 320

ROLE_LOCAL_PARTS = frozenset(
    {
        "abuse",
        "accounting",
        "accounts",
        "admin",
        "administrator",
        "all",
        "billing",
        "careers",
        "contact",
        "customercare",
        "customerservice",
        "do-not-reply",
        "donotreply",
        "enquiries",
        "enquiry",
        "everyone",
        "feedback",
        "finance",
        "hello",
        "help",
        "helpdesk",
        "hostmaster",
        "hr",
        "info",
        "information",
        "inquiries",
        "inquiry",
        "it",
        "jobs",
        "legal",
        "mail",
        "mailer-daemon",
        "marketing",
        "media",
        "newsletter",
        "no-reply",
        "noreply",
        "office",
        "orders",
        "postmaster",
        "press",
        "privacy",
        "recruiting",
        "reception",
        "root",
        "sales",
        "security",
        "service",
        "support",
        "sysadmin",
        "team",
        "webmaster",
    }
)

_DISPOSABLE_FILE = Path(__file__).with_name("disposable_domains.txt")


class Status(StrEnum):
    VALID = "valid"
    RISKY = "risky"
    INVALID = "invalid"


class Flag(StrEnum):
    ROLE_ADDRESS = "role_address"
    DISPOSABLE = "disposable"
    NO_MX = "no_mx"


@dataclass(frozen=True)
class EmailCheck:
    """The verdict on one address. ``email`` is the normalised form when the syntax is valid,
    otherwise the input stripped of surrounding whitespace."""

    email: str
    status: Status
    reason: str = ""
    flags: frozenset[Flag] = field(default_factory=frozenset)

    @property
    def is_valid_syntax(self) -> bool:
        return self.status != Status.INVALID

    @property
    def is_role_address(self) -> bool:
        return Flag.ROLE_ADDRESS in self.flags

    @property
    def is_disposable(self) -> bool:
        return Flag.DISPOSABLE in self.flags


class InvalidEmail(ValueError):
    """Raised by ``email_normalize`` with a reason fit to show to the person who typed it."""


@lru_cache(maxsize=1)
def disposable_domains() -> frozenset[str]:
    lines = _DISPOSABLE_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(
        line.strip().lower() for line in lines if line.strip() and not line.startswith("#")
    )


def _is_disposable(domain: str) -> bool:
    """The domain or any parent of it is listed (``x.mailinator.com`` is disposable too)."""
    listed = disposable_domains()
    labels = domain.split(".")
    return any(".".join(labels[i:]) in listed for i in range(len(labels) - 1))


def _is_role(local_part: str) -> bool:
    # ``sales+eu@`` and ``Sales.Team@`` are still the sales inbox.
    base = local_part.split("+", 1)[0]
    return base in ROLE_LOCAL_PARTS or base.replace(".", "") in ROLE_LOCAL_PARTS


def _syntax(email: object, *, check_mx: bool) -> email_validator.ValidatedEmail:
    if not isinstance(email, str):
        raise InvalidEmail("Must be a string.")
    candidate = email.strip()
    if not candidate:
        raise InvalidEmail("This field may not be blank.")
    if len(candidate) > MAX_LENGTH:
        raise InvalidEmail(f"Ensure this field has no more than {MAX_LENGTH} characters.")
    try:
        return email_validator.validate_email(
            candidate,
            check_deliverability=check_mx,
            allow_display_name=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            # Also enforce the 64-octet local-part limit of RFC 5321: mail servers do.
            strict=True,
        )
    except email_validator.EmailUndeliverableError:
        raise
    except email_validator.EmailNotValidError as exc:
        raise InvalidEmail(f"Enter a valid email address: {exc}") from None


def _normalized(validated: email_validator.ValidatedEmail) -> str:
    return f"{validated.local_part}@{validated.ascii_domain}".lower()


# RFC 5322 dot-atom of ASCII characters: a local part of this shape needs no Unicode work.
_ASCII_DOT_ATOM = re.compile(
    r"[a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~]+(?:\.[a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~]+)*"
)
_MAX_LOCAL = 64  # RFC 5321 4.5.3.1.1
_MAX_ADDRESS = 254  # RFC 3696 errata 1690, as email-validator enforces


@lru_cache(maxsize=16_384)
def _ascii_domain(domain: str) -> str | None:
    """The domain's validated ASCII form, or None. Domain checks (IDNA, special-use names,
    TLD shape) are the costly part of validation, and a bulk import repeats a few domains
    thousands of times."""
    try:
        return email_validator.validate_email(
            f"postmaster@{domain}", check_deliverability=False, strict=True
        ).ascii_domain.lower()
    except email_validator.EmailNotValidError:
        return None


def _fast_normalized(candidate: str) -> str | None:
    """The stored form of a plain ASCII address, or None to take the full path. Gives the
    same answer as ``email_validator`` for the addresses it accepts (tested side by side)."""
    local, at, domain = candidate.rpartition("@")
    if not at or len(local) > _MAX_LOCAL or not _ASCII_DOT_ATOM.fullmatch(local):
        return None
    ascii_domain = _ascii_domain(domain.lower())
    if ascii_domain is None:
        return None
    normalized = f"{local.lower()}@{ascii_domain}"
    return normalized if len(normalized) <= _MAX_ADDRESS else None


def email_normalize(*, email: object) -> str:
    """The stored form of an address (syntax-checked, ASCII domain, lower case).

    Raises ``InvalidEmail`` with a human-readable reason.
    """
    if isinstance(email, str) and (fast := _fast_normalized(email.strip())):
        return fast
    return _normalized(_syntax(email, check_mx=False))


def email_validate(*, email: object, check_mx: bool = False) -> EmailCheck:
    """Check one address locally. With ``check_mx`` the domain's MX/A records are looked up
    (a DNS query: off by default, and never used by tests, which run offline)."""
    fast = None if check_mx or not isinstance(email, str) else _fast_normalized(email.strip())
    try:
        normalized = fast or _normalized(_syntax(email, check_mx=check_mx))
    except InvalidEmail as exc:
        return EmailCheck(
            email=email.strip() if isinstance(email, str) else "",
            status=Status.INVALID,
            reason=str(exc),
        )
    except email_validator.EmailUndeliverableError as exc:
        # Syntax is fine (the exception is raised after it): keep the normalised form so the
        # caller can still report and de-duplicate it.
        normalized = email_normalize(email=email)
        return EmailCheck(
            email=normalized,
            status=Status.INVALID,
            reason=f"The domain does not accept email: {exc}",
            flags=frozenset({Flag.NO_MX}),
        )

    local, _, domain = normalized.rpartition("@")
    flags: set[Flag] = set()
    reasons: list[str] = []
    if _is_role(local):
        flags.add(Flag.ROLE_ADDRESS)
        reasons.append("role address (a shared inbox, not a person)")
    if _is_disposable(domain):
        flags.add(Flag.DISPOSABLE)
        reasons.append("disposable email domain")
    if flags:
        return EmailCheck(
            email=normalized, status=Status.RISKY, reason="; ".join(reasons), flags=frozenset(flags)
        )
    return EmailCheck(email=normalized, status=Status.VALID)
