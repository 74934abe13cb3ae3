"""When a send may happen: the sender's window in the lead's local time, waits, holidays, jitter.

The sending window (weekdays and hours of a ``SenderIdentity``) is applied in the **lead's**
time zone, falling back to the identity's zone when the lead has none (or an unknown one). A
lead with a country gets that country's public holidays (the ``holidays`` package, observed
days included); a lead without one gets no holiday calendar.

Local times that a DST change makes special are resolved the same way everywhere:

- A **nonexistent** local time (the spring-forward gap) is shifted forward by the length of the
  gap: 02:30 on 2026-03-08 in America/New_York is 03:30 EDT. A window never opens before its
  wall-clock time, and a "same time N days later" wait lands at the first real instant after.
- An **ambiguous** local time (the fall-back hour) means its first occurrence (``fold=0``): 01:30
  on 2026-11-01 in America/New_York is 01:30 EDT. A window therefore never grows by an hour.

All returned datetimes are aware and in UTC.
"""

import datetime as dt
import hashlib
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from outreach.common.errors import ApplicationError

if TYPE_CHECKING:
    from messaging.models import SenderIdentity

logger = logging.getLogger(__name__)

UTC = dt.UTC
WEEKEND = frozenset({5, 6})
# Any window with at least one weekday finds an open day within weeks, even across a run of
# holidays; a longer search means the window can never open.
MAX_SEARCH_DAYS = 400

DurationUnit = Literal["minutes", "hours", "days", "business_days"]

_DURATION_RE = re.compile(r"^\s*(\d{1,6})\s*(m|h|d|business_days?)\s*$")
_UNITS: dict[str, DurationUnit] = {
    "m": "minutes",
    "h": "hours",
    "d": "days",
    "business_day": "business_days",
    "business_days": "business_days",
}
# About a year in each unit: a plan waiting longer is almost certainly a typo.
_MAX_AMOUNT: dict[DurationUnit, int] = {
    "minutes": 366 * 24 * 60,
    "hours": 366 * 24,
    "days": 366,
    "business_days": 262,
}
_SUFFIX: dict[DurationUnit, str] = {
    "minutes": "m",
    "hours": "h",
    "days": "d",
    "business_days": " business_days",
}


@dataclass(frozen=True)
class SendWindow:
    """Weekdays (0 = Monday … 6 = Sunday) and local hours ``[start, end)`` a sender sends in."""

    days: frozenset[int]
    start: dt.time
    end: dt.time


@dataclass(frozen=True)
class Duration:
    amount: int
    unit: DurationUnit

    def __str__(self) -> str:
        return f"{self.amount}{_SUFFIX[self.unit]}"


def send_window_for(*, identity: "SenderIdentity") -> SendWindow:
    return SendWindow(
        days=frozenset(identity.window_days),
        start=identity.window_start,
        end=identity.window_end,
    )


def zone_get(*, name: str) -> ZoneInfo:
    """The IANA zone called ``name``; an unknown name is a 400, not a 500."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ApplicationError(
            f"unknown time zone {name!r}: expected an IANA name like 'Europe/Berlin'",
            code="invalid_timezone",
            extra={"timezone": ["unknown time zone"]},
        ) from None


def lead_zone_resolve(*, lead_timezone: str, identity_timezone: str) -> ZoneInfo:
    """The zone the window applies in: the lead's if it has a valid one, else the identity's."""
    if lead_timezone:
        try:
            return ZoneInfo(lead_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            logger.warning("send_time.lead_zone_unknown", extra={"timezone": lead_timezone})
    return zone_get(name=identity_timezone or "UTC")


def local_to_utc(*, day: dt.date, at: dt.time, zone: ZoneInfo) -> dt.datetime:
    """The UTC instant of wall-clock ``at`` on ``day`` in ``zone`` (gap and fold rules above).

    ``fold=0`` gives both rules: for a time in the gap zoneinfo applies the offset in force
    before the transition, which lands exactly one gap-length later on the new offset; for an
    ambiguous time it picks the first occurrence.
    """
    local = dt.datetime.combine(day, at.replace(tzinfo=None, fold=0), tzinfo=zone)
    return local.astimezone(UTC)


@lru_cache(maxsize=256)
def _holiday_calendar(country: str) -> holidays.HolidayBase | None:
    try:
        return holidays.country_holidays(country)
    except NotImplementedError:
        logger.warning("send_time.holiday_calendar_unknown", extra={"country": country})
        return None


def holiday_check(*, day: dt.date, country: str) -> bool:
    """Is ``day`` a public holiday (or an observed one) in ``country``? No country: never."""
    if not country:
        return False
    calendar = _holiday_calendar(country.strip().upper())
    return calendar is not None and day in calendar


def business_day_check(*, day: dt.date, country: str) -> bool:
    """Monday to Friday and not a public holiday of ``country``."""
    return day.weekday() not in WEEKEND and not holiday_check(day=day, country=country)


def _sending_day(day: dt.date, window: SendWindow, country: str) -> bool:
    return day.weekday() in window.days and not holiday_check(day=day, country=country)


def send_window_bounds(
    *, day: dt.date, window: SendWindow, zone: ZoneInfo
) -> tuple[dt.datetime, dt.datetime]:
    """UTC ``[open, close)`` of the window on local ``day`` (whether or not it sends that day)."""
    return (
        local_to_utc(day=day, at=window.start, zone=zone),
        local_to_utc(day=day, at=window.end, zone=zone),
    )


def _require_aware(value: dt.datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def send_window_check(
    *, at: dt.datetime, window: SendWindow, zone: ZoneInfo, country: str = ""
) -> bool:
    """Is ``at`` inside the window: a window weekday, not a holiday, ``start <= time < end``?

    Used again at send time, because a row due inside the window may be claimed late.
    """
    _require_aware(at, "at")
    day = at.astimezone(zone).date()
    if not _sending_day(day, window, country):
        return False
    opens, closes = send_window_bounds(day=day, window=window, zone=zone)
    return opens <= at < closes


def _open_days(start: dt.date, window: SendWindow, country: str):
    if not window.days:
        raise ApplicationError("the sending window has no weekdays", code="window_never_opens")
    for offset in range(MAX_SEARCH_DAYS):
        day = start + dt.timedelta(days=offset)
        if _sending_day(day, window, country):
            yield day
    raise ApplicationError(
        f"the sending window does not open within {MAX_SEARCH_DAYS} days",
        code="window_never_opens",
    )


def send_window_next_open(
    *, after: dt.datetime, window: SendWindow, zone: ZoneInfo, country: str = ""
) -> dt.datetime:
    """The first window opening strictly after ``after``."""
    _require_aware(after, "after")
    for day in _open_days(after.astimezone(zone).date(), window, country):
        opens, _ = send_window_bounds(day=day, window=window, zone=zone)
        if opens > after:
            return opens
    raise AssertionError("unreachable: _open_days raises when exhausted")


def send_window_current_close(
    *, at: dt.datetime, window: SendWindow, zone: ZoneInfo, country: str = ""
) -> dt.datetime | None:
    """When the window ``at`` is in closes, or ``None`` when ``at`` is outside the window."""
    if not send_window_check(at=at, window=window, zone=zone, country=country):
        return None
    _, closes = send_window_bounds(day=at.astimezone(zone).date(), window=window, zone=zone)
    return closes


def jitter_offset(*, key: str, max_seconds: int) -> int:
    """A stable offset in ``[0, max_seconds]`` for ``key`` (same key, same offset, any process)."""
    if max_seconds <= 0:
        return 0
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (max_seconds + 1)


def send_time_next(
    *,
    due_at: dt.datetime,
    window: SendWindow,
    zone: ZoneInfo,
    country: str = "",
    jitter_seconds: int = 0,
    jitter_key: str = "",
) -> dt.datetime:
    """The first allowed send instant at or after ``due_at``, plus a deterministic jitter.

    Allowed means: a window weekday in ``zone``, not a public holiday of ``country``, and
    ``window.start <= local time < window.end``. The jitter (seeded by ``jitter_key``, e.g.
    ``f"{enrollment_id}:{step_seq}"``) spreads a campaign's sends over up to ``jitter_seconds``
    so it does not fire in one burst; it never pushes a send past the window's close (the
    offset wraps around the room left in the window, so it stays deterministic).
    """
    _require_aware(due_at, "due_at")
    due_at = due_at.astimezone(UTC)
    for day in _open_days((due_at.astimezone(zone)).date(), window, country):
        opens, closes = send_window_bounds(day=day, window=window, zone=zone)
        if due_at >= closes:
            continue
        start = max(due_at, opens)
        offset = jitter_offset(key=jitter_key, max_seconds=jitter_seconds)
        room = (closes - start).total_seconds()
        if offset >= room:
            offset = offset % int(room) if room >= 1 else 0
        return start + dt.timedelta(seconds=offset)
    raise AssertionError("unreachable: _open_days raises when exhausted")


def duration_parse(*, text: str) -> Duration:
    """``30m``, ``4h``, ``3d``, ``2 business_days`` (or ``1 business_day``)."""
    match = _DURATION_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ApplicationError(
            f'expected a duration like "30m", "4h", "3d" or "2 business_days", got {text!r}',
            code="invalid_duration",
        )
    amount, unit = int(match.group(1)), _UNITS[match.group(2)]
    if amount > _MAX_AMOUNT[unit]:
        raise ApplicationError(
            f"duration {text.strip()!r} is longer than a year", code="invalid_duration"
        )
    return Duration(amount=amount, unit=unit)


def duration_add(
    *, start: dt.datetime, duration: Duration | str, zone: ZoneInfo, country: str = ""
) -> dt.datetime:
    """``start`` plus a plan wait, in UTC.

    - minutes and hours are elapsed time: ``4h`` is four real hours, even across a DST change;
    - days are calendar days in ``zone``: ``3d`` from Friday 10:00 is Monday 10:00 local time,
      whether the days in between last 23, 24 or 25 hours;
    - business days skip Saturdays, Sundays and the public holidays of ``country`` (counted in
      ``zone``) and keep the local time of day: ``1 business_day`` from Friday 10:00 is Monday
      10:00, and from Saturday it is also Monday.
    """
    _require_aware(start, "start")
    if isinstance(duration, str):
        duration = duration_parse(text=duration)
    start = start.astimezone(UTC)
    if duration.unit == "minutes":
        return start + dt.timedelta(minutes=duration.amount)
    if duration.unit == "hours":
        return start + dt.timedelta(hours=duration.amount)
    local = start.astimezone(zone)
    day = local.date()
    if duration.unit == "days":
        day += dt.timedelta(days=duration.amount)
    else:
        remaining = duration.amount
        while remaining:
            day += dt.timedelta(days=1)
            if business_day_check(day=day, country=country):
                remaining -= 1
    return local_to_utc(day=day, at=local.time(), zone=zone)


def send_time_after_wait(
    *,
    start: dt.datetime,
    wait: Duration | str | None,
    window: SendWindow,
    zone: ZoneInfo,
    country: str = "",
    jitter_seconds: int = 0,
    jitter_key: str = "",
) -> dt.datetime:
    """The due time of an email step reached after ``wait``: the wait, then the window."""
    due = (
        start
        if wait is None
        else duration_add(start=start, duration=wait, zone=zone, country=country)
    )
    return send_time_next(
        due_at=due,
        window=window,
        zone=zone,
        country=country,
        jitter_seconds=jitter_seconds,
        jitter_key=jitter_key,
    )
