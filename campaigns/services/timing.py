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
