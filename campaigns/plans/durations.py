"""Durations as plans write them: ``30m``, ``4h``, ``3d``, ``2 business_days``."""

import datetime
import re
from dataclasses import dataclass
from typing import Literal

from outreach.common.errors import ApplicationError

DurationUnit = Literal["minutes", "hours", "days", "business_days"]

_DURATION_RE = re.compile(
    r"(?P<amount>[1-9][0-9]*)(?:(?P<unit>[mhd])| (?P<business>business_days?))"
)
_UNITS: dict[str, DurationUnit] = {"m": "minutes", "h": "hours", "d": "days"}

# About a year, whatever the unit: longer delays are typos, not campaigns.
MAX_AMOUNT: dict[DurationUnit, int] = {
    "minutes": 365 * 24 * 60,
    "hours": 365 * 24,
    "days": 365,
    "business_days": 260,
}

DURATION_SHAPE_MESSAGE = (
    'expected a duration like "3d": a whole number followed by m, h or d '
    '(minutes, hours, days), or "2 business_days"'
)
DURATION_TOO_LONG_MESSAGE = "too long: a duration is at most 365 days (or 260 business_days)"


@dataclass(frozen=True)
class Duration:
    amount: int
    unit: DurationUnit

    def fixed_timedelta(self) -> datetime.timedelta | None:
        """The wall-clock length, or None for business days (those depend on calendar and lead)."""
        if self.unit == "business_days":
            return None
        return datetime.timedelta(**{self.unit: self.amount})


def duration_problem(text: object) -> str | None:
    """Why ``text`` is not a valid duration, or None when it is."""
    if not isinstance(text, str):
        return DURATION_SHAPE_MESSAGE
    match = _DURATION_RE.fullmatch(text)
    if match is None:
        return DURATION_SHAPE_MESSAGE
    digits = match["amount"]
    unit: DurationUnit = "business_days" if match["business"] else _UNITS[match["unit"]]
    # Compare digit counts before int(): huge digit strings are refused by int() itself.
    if len(digits) > 7 or int(digits) > MAX_AMOUNT[unit]:
        return DURATION_TOO_LONG_MESSAGE
    return None


def plan_duration_parse(*, text: str) -> Duration:
    """Parse a plan duration; raises ApplicationError(code="invalid_duration") when it is not one."""
    problem = duration_problem(text)
    if problem is not None:
        raise ApplicationError(f"{problem}, got {text!r}", code="invalid_duration")
    match = _DURATION_RE.fullmatch(text)
    assert match is not None
    unit: DurationUnit = "business_days" if match["business"] else _UNITS[match["unit"]]
    return Duration(amount=int(match["amount"]), unit=unit)
