"""The engine's view of time for one enrollment: the lead's zone and calendar, the sender's
window. Thin glue over ``campaigns.services.send_time`` so the engine reads in domain terms."""

import datetime
from dataclasses import dataclass

from django.conf import settings

from campaigns.services import send_time
from messaging.models import SenderIdentity


@dataclass(frozen=True)
class LeadTiming:
    timezone: str
    country: str
    identity: SenderIdentity


def _zone(context: LeadTiming):
    return send_time.lead_zone_resolve(
        lead_timezone=context.timezone, identity_timezone=context.identity.timezone
    )


def send_time_next(
    *, context: LeadTiming, earliest: datetime.datetime, jitter_key: str
) -> datetime.datetime:
    """When an email step entered at ``earliest`` may go out: inside the sender's window in the
    lead's local time, on a business day of the lead's country, spread by a small jitter."""
    return send_time.send_time_next(
        due_at=earliest,
        window=send_time.send_window_for(identity=context.identity),
        zone=_zone(context),
        country=context.country,
        jitter_seconds=settings.SEND_JITTER_SECONDS,
        jitter_key=jitter_key,
    )


def send_window_open(*, context: LeadTiming, at: datetime.datetime) -> bool:
    return send_time.send_window_check(
        at=at,
        window=send_time.send_window_for(identity=context.identity),
        zone=_zone(context),
        country=context.country,
    )


def duration_add(
    *, context: LeadTiming, start: datetime.datetime, duration: str
) -> datetime.datetime:
    return send_time.duration_add(
        start=start, duration=duration, zone=_zone(context), country=context.country
    )


# SMS quiet hours: whatever the sender's window says, no text reaches a lead before 08:00 or
# from 21:00 on in the lead's own time zone (TCPA-style calling hours), DST included.
SMS_QUIET_END = datetime.time(8, 0)
SMS_QUIET_START = datetime.time(21, 0)


def _sms_window(context: LeadTiming) -> send_time.SendWindow:
    """The sender's window narrowed to the hours a text may arrive. A sender window that
    does not overlap them at all (a night shift) gives way to the quiet hours alone."""
    window = send_time.send_window_for(identity=context.identity)
    start = max(window.start, SMS_QUIET_END)
    end = min(window.end, SMS_QUIET_START)
    if start >= end or not window.days:
        return send_time.SendWindow(
            days=frozenset(range(7)), start=SMS_QUIET_END, end=SMS_QUIET_START
        )
    return send_time.SendWindow(days=window.days, start=start, end=end)


def sms_send_time_next(
    *, context: LeadTiming, earliest: datetime.datetime, jitter_key: str
) -> datetime.datetime:
    """When an SMS step entered at ``earliest`` may go out: inside the sender's window and
    outside quiet hours, both in the lead's local time, spread by the send jitter."""
    return send_time.send_time_next(
        due_at=earliest,
        window=_sms_window(context),
        zone=_zone(context),
        country=context.country,
        jitter_seconds=settings.SEND_JITTER_SECONDS,
        jitter_key=jitter_key,
    )


def sms_window_open(*, context: LeadTiming, at: datetime.datetime) -> bool:
    """May a text reach the lead at ``at``? The send path asks again right before sending."""
    return send_time.send_window_check(
        at=at, window=_sms_window(context), zone=_zone(context), country=context.country
    )
