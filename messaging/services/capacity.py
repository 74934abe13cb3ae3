"""How much a sender identity may send: caps, the warm-up ramp and the windows they count in.

Pure arithmetic (no I/O); ``messaging.services.ratelimit`` enforces it with Redis counters.

- The identity's **day** is the calendar day in its own time zone: local midnight to local
  midnight, so a DST day is one day of 23 or 25 hours. Its **hour** is a wall-clock hour in that
  zone; during the fall-back repeat, each of the two 01:00 hours is its own hour.
- **Warm-up** day N counts from ``warmup_started_on`` (day 1) in the identity's zone and allows
  ``min(start + (N - 1) * increase, ceiling, daily_cap)``. A ramp not started yet
  (``warmup_started_on`` empty or in the future) allows the day-1 volume: the safest answer.
- **Today's ceiling** is ``min(daily_cap, warm-up allowance)``; the hour's ceiling is
  ``min(hourly_cap, today's ceiling)``. The tenant's ``daily_send_quota`` is a separate bucket,
  counted per UTC day because a tenant has no time zone of its own.
- **Follow-ups before first touches**: a first touch may only use ``ceiling - reserve`` of a
  window, where ``reserve = floor(ceiling * ratio)``; follow-ups may use all of it. So however
  many new leads are queued, the last ``reserve`` sends of every hour and day are kept for
  leads already in conversation.
"""

import datetime as dt
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from campaigns.services.send_time import local_to_utc, zone_get

if TYPE_CHECKING:
    from messaging.models import SenderIdentity

UTC = dt.UTC


@dataclass(frozen=True)
class CapacityWindow:
    """One counting window: ``[starts_at, ends_at)`` in UTC, and a label unique per window."""

    label: str
    starts_at: dt.datetime
    ends_at: dt.datetime


def identity_zone(*, identity: "SenderIdentity") -> ZoneInfo:
    return zone_get(name=identity.timezone or "UTC")


def identity_local_day(*, identity: "SenderIdentity", now: dt.datetime) -> dt.date:
    return now.astimezone(identity_zone(identity=identity)).date()


def identity_warmup_day(*, identity: "SenderIdentity", day: dt.date) -> int | None:
    """Warm-up day number (1-based) on the identity's local ``day``; ``None`` without warm-up."""
    if not identity.warmup_enabled:
        return None
    started = identity.warmup_started_on
    if started is None or day < started:
        return 1
    return (day - started).days + 1


def identity_warmup_allowance(*, identity: "SenderIdentity", day: dt.date) -> int | None:
    """What the ramp allows on ``day`` (already capped by ``daily_cap``); ``None`` without it."""
    number = identity_warmup_day(identity=identity, day=day)
    if number is None:
        return None
    ramp = identity.warmup_start_volume + (number - 1) * identity.warmup_daily_increase
    return min(ramp, identity.warmup_ceiling, identity.daily_cap)


def identity_daily_ceiling(*, identity: "SenderIdentity", day: dt.date) -> int:
    allowance = identity_warmup_allowance(identity=identity, day=day)
    return identity.daily_cap if allowance is None else min(identity.daily_cap, allowance)


def identity_hourly_ceiling(*, identity: "SenderIdentity", day: dt.date) -> int:
    return min(identity.hourly_cap, identity_daily_ceiling(identity=identity, day=day))


def followup_reserve(*, ceiling: int, ratio: float) -> int:
    """Sends of a window kept for follow-ups: ``floor(ceiling * ratio)``, ratio in [0, 1]."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError("the follow-up reserve ratio must be between 0 and 1")
    return math.floor(ceiling * ratio)


def identity_day_window(*, identity: "SenderIdentity", now: dt.datetime) -> CapacityWindow:
    """The identity's local calendar day containing ``now`` (23, 24 or 25 hours long)."""
    zone = identity_zone(identity=identity)
    day = now.astimezone(zone).date()
    return CapacityWindow(
        label=day.isoformat(),
        starts_at=local_to_utc(day=day, at=dt.time(0), zone=zone),
        ends_at=local_to_utc(day=day + dt.timedelta(days=1), at=dt.time(0), zone=zone),
    )


def identity_hour_window(*, identity: "SenderIdentity", now: dt.datetime) -> CapacityWindow:
    """The identity's local wall-clock hour containing ``now``.

    Aligned to local hours, so a zone at +05:30 counts from :30 UTC. ``astimezone`` sets
    ``fold`` for the repeated fall-back hour, so each occurrence starts at its own instant.
    """
    zone = identity_zone(identity=identity)
    local = now.astimezone(zone)
    starts_at = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    return CapacityWindow(
        label=str(int(starts_at.timestamp())),
        starts_at=starts_at,
        ends_at=starts_at + dt.timedelta(hours=1),
    )


def tenant_day_window(*, now: dt.datetime) -> CapacityWindow:
    """The tenant quota's day: the UTC calendar day containing ``now``."""
    day = now.astimezone(UTC).date()
    starts_at = dt.datetime.combine(day, dt.time(0), tzinfo=UTC)
    return CapacityWindow(
        label=day.isoformat(), starts_at=starts_at, ends_at=starts_at + dt.timedelta(days=1)
    )


def global_second_window(*, now: dt.datetime) -> CapacityWindow:
    starts_at = now.astimezone(UTC).replace(microsecond=0)
    return CapacityWindow(
        label=str(int(starts_at.timestamp())),
        starts_at=starts_at,
        ends_at=starts_at + dt.timedelta(seconds=1),
    )
