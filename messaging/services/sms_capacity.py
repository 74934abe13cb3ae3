"""SMS capacity: a sender number's per-second rate and its identity's daily SMS cap.

The same all-or-nothing Redis script as email capacity (``capacity_acquire.lua``), with two
buckets of its own:

========================  =====================================  ===========================
bucket                    window                                 limit
========================  =====================================  ===========================
``sms_number_second``     the current UTC second, per number     ``sms_per_second``
``sms_identity_day``      the identity's local calendar day      ``sms_daily_cap``
========================  =====================================  ===========================

Grants are idempotent by id (one per step entry and attempt) and are recorded where
``ratelimit.capacity_release_by_id`` finds them, so a refused text gives its place back.

The day counter is a quota, and Redis may come back empty mid-day: like email's capped
counters it is never created by an increment. When it is missing the script takes nothing
and says so, it is seeded (``SET NX``) from the send ledger — the identity's texts created
in its local day, failed ones apart — and the call is made again. The per-second counter is
a throughput limit and starts from zero.
"""

import datetime as dt
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import redis
from django.conf import settings

from messaging.services.capacity import CapacityWindow, identity_day_window
from messaging.services.ratelimit import (
    KEY_PREFIX,
    KEY_SLACK,
    SEED_NEEDED,
    CapacityGrant,
    ledger_sent,
)

if TYPE_CHECKING:
    from messaging.models import SenderIdentity

SMS_NUMBER_SECOND = "sms_number_second"
SMS_IDENTITY_DAY = "sms_identity_day"
_ACQUIRE_LUA = (Path(__file__).resolve().parent / "capacity_acquire.lua").read_text()


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, decode_responses=True, socket_timeout=5, socket_connect_timeout=2
    )


@lru_cache(maxsize=4)
def _script(url: str):
    return _client(url).register_script(_ACQUIRE_LUA)


def _ms(delta: dt.timedelta) -> int:
    return max(1000, int(delta.total_seconds() * 1000))


def sms_sender_key(identity: "SenderIdentity") -> str:
    """What the per-second rate is counted on: the number, else the Messaging Service."""
    return identity.sms_from_number or identity.sms_messaging_service_sid


def sms_capacity_acquire(
    *, tenant_id: int, identity: "SenderIdentity", now: dt.datetime, grant_id: str
) -> CapacityGrant:
    """Take one text from the number's current second and the identity's SMS day, or
    nothing; a refusal says when to try again (the next second, or the next local day)."""
    second = int(now.timestamp())
    second_end = dt.datetime.fromtimestamp(second + 1, tz=dt.UTC)
    day = identity_day_window(identity=identity, now=now)
    day_key = f"{KEY_PREFIX}sms:i:{identity.pk}:d:{day.label}"
    buckets = [
        (
            SMS_NUMBER_SECOND,
            f"{KEY_PREFIX}sms:n:{sms_sender_key(identity)}:{second}",
            max(1, identity.sms_per_second),
            second_end,
        ),
        (
            SMS_IDENTITY_DAY,
            day_key,
            identity.sms_daily_cap,
            day.ends_at,
        ),
    ]
    ttls = [_ms(ends_at - now + KEY_SLACK) for *_, ends_at in buckets]
    args: list[int] = [1, max(ttls)]
    for (name, _, limit, ends_at), ttl in zip(buckets, ttls, strict=True):
        # Four values per bucket, as the script reads them; the last asks for the counter to
        # be seeded from the ledger when it is missing (the day's, see the module).
        args += [limit, ttl, int(ends_at.timestamp() * 1000), int(name == SMS_IDENTITY_DAY)]
    grant_key = f"{KEY_PREFIX}grant:{tenant_id}:{grant_id}"
    keys = [grant_key, *(key for _, key, _, _ in buckets)]
    for _ in range(3):
        status, retry_at_ms, blocked, *_ = _script(settings.REDIS_URL)(keys=keys, args=args)
        if status != SEED_NEEDED:
            break
        _day_seed(tenant_id=tenant_id, identity_id=identity.pk, key=day_key, window=day)
    else:  # a counter that vanishes as fast as it is seeded: refuse, retry later
        raise redis.RedisError("SMS capacity counter could not be seeded")
    if status in (1, 2):
        return CapacityGrant(granted=True, tenant_id=tenant_id, grant_id=grant_id)
    return CapacityGrant(
        granted=False,
        tenant_id=tenant_id,
        grant_id=None,
        retry_at=dt.datetime.fromtimestamp(int(retry_at_ms) / 1000, tz=dt.UTC),
        blocked_by=tuple(name for i, (name, *_) in enumerate(buckets) if int(blocked) & (1 << i)),
    )


def _day_seed(*, tenant_id: int, identity_id: int, key: str, window: CapacityWindow) -> None:
    """``SET NX`` the identity's SMS day counter to the texts the ledger has for that day
    (a concurrent seeder or an increment that got there first wins, never a second seed)."""
    from messaging.models import Message

    sent = ledger_sent(
        tenant_id=tenant_id, channel=Message.Channel.SMS, window=window, identity_id=identity_id
    )
    ttl = _ms(window.ends_at - dt.datetime.now(dt.UTC) + KEY_SLACK)
    _client(settings.REDIS_URL).set(key, sent, nx=True, px=ttl)
