"""Sending capacity shared by every worker: Redis counters taken all-or-nothing in one Lua call.

Four buckets stand between a due send and the provider:

========================  =====================================  ===============================
bucket                    window                                 limit
========================  =====================================  ===============================
``identity_hour``         the identity's local wall-clock hour   today's hourly ceiling
``identity_day``          the identity's local calendar day      today's ceiling (cap, warm-up)
``tenant_day``            the UTC calendar day                   ``Tenant.daily_send_quota``
``global_second``         the current UTC second                 ``settings.SEND_GLOBAL_PER_SECOND``
========================  =====================================  ===============================

(arithmetic in ``messaging.services.capacity``). Each bucket is a fixed-window counter whose key
names its window, so a new hour or day simply starts at zero; keys expire a few minutes after
their window ends. ``capacity_acquire`` runs one Lua script (EVALSHA, loading the script
again if Redis has forgotten it): either every bucket has room and all are incremented, or
nothing is taken and the answer says when the fullest bucket's window ends, so the caller
reschedules instead of failing. Redis runs scripts one at a time, which is what makes the check
and the increments atomic across any number of worker processes.

A first touch may use at most ``ceiling - floor(ceiling * reserve_ratio)`` of each capped
bucket (hour, day, tenant day); follow-ups may use all of it. The global per-second bucket is a
throughput limit, not a quota, and has no reserve.

Redis being unreachable raises ``redis.RedisError``: the caller treats it as a transient error
and retries later; it never sends without capacity.

Redis may also come back empty (a restart without persistence, a failover): counting the
rest of the day from zero would let a capped identity send its whole cap again. So a capped
counter (identity hour and day, tenant day) is never created by an increment: when one is
missing, the script takes nothing and says so, the counter is seeded (``SET NX``) from the
send ledger — the emails of that identity or tenant created in that window, failed ones
apart (texts have counters of their own, ``sms_capacity``) — and the call is made again. A
new window costs one such count. (Sends whose capacity was taken just before the loss and
whose ledger rows commit just after the count are the only ones not seen: a prepare
transaction lasts milliseconds, a restart seconds.)
"""

import datetime as dt
import secrets
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import redis
from django.conf import settings

from campaigns.services.send_time import (
    send_window_current_close,
    send_window_for,
    send_window_next_open,
)
from messaging.services.capacity import (
    CapacityWindow,
    followup_reserve,
    global_second_window,
    identity_daily_ceiling,
    identity_day_window,
    identity_hour_window,
    identity_hourly_ceiling,
    identity_warmup_allowance,
    identity_warmup_day,
    identity_zone,
    tenant_day_window,
)
from outreach.common.errors import ApplicationError, NotFound
from outreach.metrics import metrics_add
from outreach.tenancy.models import Tenant

if TYPE_CHECKING:
    from messaging.models import SenderIdentity

KEY_PREFIX = "outreach:cap:"
# Counters outlive their window a little, so a worker whose clock lags by a few seconds still
# finds the counter the others are using.
KEY_SLACK = dt.timedelta(minutes=5)

IDENTITY_HOUR = "identity_hour"
IDENTITY_DAY = "identity_day"
TENANT_DAY = "tenant_day"
GLOBAL_SECOND = "global_second"

_HERE = Path(__file__).resolve().parent
_ACQUIRE_LUA = (_HERE / "capacity_acquire.lua").read_text()
_RELEASE_LUA = (_HERE / "capacity_release.lua").read_text()


@dataclass(frozen=True)
class CapacityGrant:
    """The answer of ``capacity_acquire``.

    ``granted``: the sends were taken from every bucket; pass the grant to ``capacity_release``
    to give them back if the send is not made. Otherwise nothing was taken; ``retry_at`` is the
    earliest instant the buckets in ``blocked_by`` have room again (the end of their window).
    """

    granted: bool
    tenant_id: int
    grant_id: str | None
    retry_at: dt.datetime | None = None
    blocked_by: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        """``"identity_day full"``-style text for logs and held actions; empty when granted."""
        return f"{', '.join(self.blocked_by)} full" if self.blocked_by else ""


@dataclass(frozen=True)
class CapacityUsage:
    sent_this_hour: int
    sent_today: int
    tenant_sent_today: int


@dataclass(frozen=True)
class _Bucket:
    name: str
    key: str
    limit: int
    window: CapacityWindow


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    # redis-py's pool notices a fork and reconnects, so one client per process is safe.
    return redis.Redis.from_url(
        url, decode_responses=True, socket_timeout=5, socket_connect_timeout=2
    )


def _redis() -> redis.Redis:
    return _client(settings.REDIS_URL)


@lru_cache(maxsize=4)
def _scripts(url: str) -> tuple:
    # ``Script`` calls EVALSHA and falls back to SCRIPT LOAD + EVALSHA on NOSCRIPT (a Redis
    # restart or failover forgets loaded scripts), so the body travels only when needed.
    client = _client(url)
    return client.register_script(_ACQUIRE_LUA), client.register_script(_RELEASE_LUA)


def _identity_key(identity_id: int, kind: str, label: str) -> str:
    return f"{KEY_PREFIX}i:{identity_id}:{kind}:{label}"


def _tenant_key(tenant_id: int, label: str) -> str:
    return f"{KEY_PREFIX}t:{tenant_id}:d:{label}"


def _grant_key(tenant_id: int, grant_id: str) -> str:
    return f"{KEY_PREFIX}grant:{tenant_id}:{grant_id}"


def _ms(delta: dt.timedelta) -> int:
    return max(1000, int(delta.total_seconds() * 1000))


def _check_identity(tenant_id: int, identity: "SenderIdentity") -> None:
    if identity.tenant_id != tenant_id:
        raise NotFound("Sender identity not found.")


def _tenant_quota(tenant_id: int) -> int:
    quota = Tenant.objects.filter(pk=tenant_id).values_list("daily_send_quota", flat=True).first()
    if quota is None:
        raise NotFound("Tenant not found.")
    return quota


def _buckets(
    *,
    tenant_id: int,
    identity: "SenderIdentity",
    now: dt.datetime,
    tenant_daily_quota: int,
    global_per_second: int,
) -> list[_Bucket]:
    hour = identity_hour_window(identity=identity, now=now)
    day = identity_day_window(identity=identity, now=now)
    tenant_day = tenant_day_window(now=now)
    local_day = now.astimezone(identity_zone(identity=identity)).date()
    buckets = [
        _Bucket(
            IDENTITY_HOUR,
            _identity_key(identity.pk, "h", hour.label),
            identity_hourly_ceiling(identity=identity, day=local_day),
            hour,
        ),
        _Bucket(
            IDENTITY_DAY,
            _identity_key(identity.pk, "d", day.label),
            identity_daily_ceiling(identity=identity, day=local_day),
            day,
        ),
        _Bucket(
            TENANT_DAY, _tenant_key(tenant_id, tenant_day.label), tenant_daily_quota, tenant_day
        ),
    ]
    if global_per_second > 0:
        second = global_second_window(now=now)
        buckets.append(
            _Bucket(GLOBAL_SECOND, f"{KEY_PREFIX}g:s:{second.label}", global_per_second, second)
        )
    return buckets


def capacity_acquire(
    *,
    tenant_id: int,
    identity: "SenderIdentity",
    now: dt.datetime,
    count: int = 1,
    follow_up: bool = False,
    tenant_daily_quota: int | None = None,
    reserve_ratio: float | None = None,
    global_per_second: int | None = None,
    grant_id: str | None = None,
) -> CapacityGrant:
    """Take ``count`` sends from the identity's hour and day, the tenant's day and the global
    second, all or none, in one atomic Redis call.

    ``now`` decides which windows count (pass the worker's ``timezone.now()``).
    A send that is not a ``follow_up`` (a first touch, the default) leaves the follow-up reserve
    untouched (``reserve_ratio``, default ``settings.SEND_FOLLOWUP_RESERVE_RATIO``). ``tenant_daily_quota`` saves a query when the
    caller already holds the tenant. ``grant_id`` makes the call idempotent: while a grant with
    that id lives (until its day ends), calling again takes nothing more and answers granted,
    so a send task delivered twice is charged once. Warm-up and caps are read from
    ``identity`` as given; pausing is the caller's check, not a capacity question.
    """
    call = _acquire_call(
        tenant_id=tenant_id,
        identity=identity,
        now=now,
        count=count,
        follow_up=follow_up,
        tenant_daily_quota=tenant_daily_quota,
        reserve_ratio=reserve_ratio,
        global_per_second=global_per_second,
        grant_id=grant_id,
    )
    return _acquire([call])[0]


@dataclass(frozen=True)
class CapacityRequest:
    """The arguments of one ``capacity_acquire`` call, for ``capacity_acquire_many``."""

    tenant_id: int
    identity: "SenderIdentity"
    now: dt.datetime
    follow_up: bool = False
    tenant_daily_quota: int | None = None
    grant_id: str | None = None


def capacity_acquire_many(*, requests: list[CapacityRequest]) -> list[CapacityGrant]:
    """``capacity_acquire`` for several sends in one Redis round trip, one grant per request.

    Each request is its own all-or-nothing script call and they run in order: a pipeline,
    not a transaction, so another worker's call may run between two of them, exactly as
    between two separate ``capacity_acquire`` calls.
    """
    if not requests:
        return []
    calls = [
        _acquire_call(
            tenant_id=request.tenant_id,
            identity=request.identity,
            now=request.now,
            follow_up=request.follow_up,
            tenant_daily_quota=request.tenant_daily_quota,
            grant_id=request.grant_id,
        )
        for request in requests
    ]
    grants = _acquire(calls)
    refused = Counter(bucket for grant in grants for bucket in grant.blocked_by)
    if refused:  # only when something was refused: one more round trip, then
        metrics_add(
            [("capacity_rejections", {"bucket": bucket}, n) for bucket, n in refused.items()]
        )
    return grants


SEED_NEEDED = 3


def _acquire(calls: list["_AcquireCall"]) -> list[CapacityGrant]:
    """Run the acquire script for each call in one pipeline; calls that found a capped
    counter missing get it seeded from the ledger and run again (see the module)."""
    acquire, _ = _scripts(settings.REDIS_URL)
    replies: list = [None] * len(calls)
    todo = list(range(len(calls)))
    for _ in range(3):
        pipeline = _redis().pipeline(transaction=False)
        for index in todo:
            acquire(keys=calls[index].keys, args=calls[index].args, client=pipeline)
        for index, reply in zip(todo, pipeline.execute(), strict=True):
            replies[index] = reply
        todo = [index for index in todo if replies[index][0] == SEED_NEEDED]
        if not todo:
            break
        _counters_seed([(calls[index], replies[index][2]) for index in todo])
    if todo:  # counters that vanish as fast as they are seeded: refuse, retry later
        raise redis.RedisError("capacity counters could not be seeded")
    return [call.grant(reply) for call, reply in zip(calls, replies, strict=True)]


def ledger_sent(
    *, tenant_id: int, channel: str, window: CapacityWindow, identity_id: int | None = None
) -> int:
    """What the send ledger says went out in ``window`` on ``channel`` (for the tenant, or
    one identity of it), failed sends apart: the value a lost capped counter is seeded with."""
    from messaging.models import Message

    sent = Message.objects.filter(
        tenant_id=tenant_id,
        channel=channel,
        created_at__gte=window.starts_at,
        created_at__lt=window.ends_at,
    ).exclude(status=Message.Status.FAILED)
    if identity_id is not None:
        sent = sent.filter(sender_identity_id=identity_id)
    return sent.count()


def _counters_seed(missing: list[tuple["_AcquireCall", int]]) -> None:
    """``SET NX`` each missing counter to what the ledger says was sent in its window: a
    concurrent seeder or an increment that got there first wins, never a second seed."""
    from messaging.models import Message

    wanted: dict[str, tuple[int, int]] = {}
    for call, mask in missing:
        for position, bucket in enumerate(call.buckets):
            if not mask & (1 << position) or bucket.key in wanted:
                continue
            sent = ledger_sent(
                tenant_id=call.tenant_id,
                channel=Message.Channel.EMAIL,  # texts count on SMS counters of their own
                window=bucket.window,
                identity_id=None if bucket.name == TENANT_DAY else call.identity_id,
            )
            ttl = _ms(bucket.window.ends_at - dt.datetime.now(dt.UTC) + KEY_SLACK)
            wanted[bucket.key] = (sent, ttl)
    pipeline = _redis().pipeline(transaction=False)
    for key, (value, ttl) in wanted.items():
        pipeline.set(key, value, nx=True, px=ttl)
    pipeline.execute()


@dataclass(frozen=True)
class _AcquireCall:
    tenant_id: int
    identity_id: int
    grant_id: str
    buckets: list[_Bucket]
    keys: list[str]
    args: list[int]

    def grant(self, reply: list[int]) -> CapacityGrant:
        status, retry_at_ms, blocked, *_used = reply
        if status in (1, 2):
            return CapacityGrant(granted=True, tenant_id=self.tenant_id, grant_id=self.grant_id)
        return CapacityGrant(
            granted=False,
            tenant_id=self.tenant_id,
            grant_id=None,
            retry_at=dt.datetime.fromtimestamp(retry_at_ms / 1000, tz=dt.UTC),
            blocked_by=tuple(b.name for i, b in enumerate(self.buckets) if blocked & (1 << i)),
        )


def _acquire_call(
    *,
    tenant_id: int,
    identity: "SenderIdentity",
    now: dt.datetime,
    count: int = 1,
    follow_up: bool = False,
    tenant_daily_quota: int | None = None,
    reserve_ratio: float | None = None,
    global_per_second: int | None = None,
    grant_id: str | None = None,
) -> _AcquireCall:
    """The keys and arguments of the acquire script for one ``capacity_acquire`` call."""
    _check_identity(tenant_id, identity)
    if count < 1:
        raise ValueError("count must be at least 1")
    if tenant_daily_quota is None:
        tenant_daily_quota = _tenant_quota(tenant_id)
    if reserve_ratio is None:
        reserve_ratio = settings.SEND_FOLLOWUP_RESERVE_RATIO
    if global_per_second is None:
        global_per_second = settings.SEND_GLOBAL_PER_SECOND

    buckets = _buckets(
        tenant_id=tenant_id,
        identity=identity,
        now=now,
        tenant_daily_quota=tenant_daily_quota,
        global_per_second=global_per_second,
    )
    grant_id = grant_id or secrets.token_hex(12)
    ttls = [_ms(bucket.window.ends_at - now + KEY_SLACK) for bucket in buckets]
    args: list[int] = [count, max(ttls)]
    for bucket, ttl in zip(buckets, ttls, strict=True):
        limit = bucket.limit
        if not follow_up and bucket.name != GLOBAL_SECOND:
            limit -= followup_reserve(ceiling=limit, ratio=reserve_ratio)
        seeded = int(bucket.name != GLOBAL_SECOND)  # a throughput limit, not a quota
        args += [limit, ttl, int(bucket.window.ends_at.timestamp() * 1000), seeded]
    return _AcquireCall(
        tenant_id=tenant_id,
        identity_id=identity.pk,
        grant_id=grant_id,
        buckets=buckets,
        keys=[_grant_key(tenant_id, grant_id), *(b.key for b in buckets)],
        args=args,
    )


def capacity_release(*, grant: CapacityGrant) -> bool:
    """Give back the sends of a grant that did not turn into a send (e.g. the provider refused
    the message permanently before accepting it). True when something was given back.

    Safe to call twice, concurrently or from another process: the grant record is deleted in
    the same atomic step that refunds the counters, so only one call refunds. A refused grant,
    or one whose windows are over, refunds nothing, and no counter goes below zero.
    """
    if not grant.granted or not grant.grant_id:
        return False
    return capacity_release_by_id(tenant_id=grant.tenant_id, grant_id=grant.grant_id)


def capacity_release_by_id(*, tenant_id: int, grant_id: str) -> bool:
    """``capacity_release`` for a caller that kept only the grant's id."""
    client = _redis()
    key = _grant_key(tenant_id, grant_id)
    _, release = _scripts(settings.REDIS_URL)
    for _ in range(3):
        keys_field = client.hget(key, "keys")
        if keys_field is None:
            return False
        result = release(keys=[key, *keys_field.split(" ")], args=[keys_field])
        if result != -1:
            return result == 1
    return False


def capacity_usage_get(
    *, tenant_id: int, identity: "SenderIdentity", now: dt.datetime
) -> CapacityUsage:
    """What was taken in the windows containing ``now`` (identity hour and day, tenant day)."""
    _check_identity(tenant_id, identity)
    hour = identity_hour_window(identity=identity, now=now)
    day = identity_day_window(identity=identity, now=now)
    tenant_day = tenant_day_window(now=now)
    values = _redis().mget(
        _identity_key(identity.pk, "h", hour.label),
        _identity_key(identity.pk, "d", day.label),
        _tenant_key(tenant_id, tenant_day.label),
    )
    sent_hour, sent_day, tenant_day_sent = (int(v or 0) for v in values)
    return CapacityUsage(
        sent_this_hour=sent_hour, sent_today=sent_day, tenant_sent_today=tenant_day_sent
    )


def tenant_sent_today(*, tenant_id: int, now: dt.datetime) -> int:
    """Sends taken from the tenant's daily quota in the UTC day containing ``now``."""
    value = _redis().get(_tenant_key(tenant_id, tenant_day_window(now=now).label))
    return int(value or 0)


@dataclass(frozen=True)
class IdentityCapacity:
    """What ``GET /sender-identities/{id}/capacity/`` reports."""

    identity_id: int
    timezone: str
    local_time: dt.datetime
    local_date: dt.date
    paused: bool
    warmup_enabled: bool
    warmup_day: int | None
    warmup_allowance: int | None
    daily_cap: int
    hourly_cap: int
    today_ceiling: int
    hour_ceiling: int
    sent_today: int
    sent_this_hour: int
    remaining_today: int
    remaining_this_hour: int
    followup_reserve_today: int
    day_resets_at: dt.datetime
    hour_resets_at: dt.datetime
    tenant_daily_quota: int
    tenant_sent_today: int
    tenant_remaining_today: int
    in_window: bool
    window_closes_at: dt.datetime | None
    next_window_opens_at: dt.datetime | None


def identity_capacity_get(
    *, tenant_id: int, identity: "SenderIdentity", now: dt.datetime
) -> IdentityCapacity:
    """The identity's capacity right now: caps, warm-up, what is left, and its window.

    The window is shown in the identity's own zone; each lead's send also respects the lead's
    zone and holidays (``campaigns.services.send_time``).
    """
    _check_identity(tenant_id, identity)
    zone = identity_zone(identity=identity)
    local = now.astimezone(zone)
    day = local.date()
    usage = capacity_usage_get(tenant_id=tenant_id, identity=identity, now=now)
    today_ceiling = identity_daily_ceiling(identity=identity, day=day)
    hour_ceiling = identity_hourly_ceiling(identity=identity, day=day)
    remaining_today = max(0, today_ceiling - usage.sent_today)
    quota = _tenant_quota(tenant_id)
    window = send_window_for(identity=identity)
    closes = send_window_current_close(at=now, window=window, zone=zone)
    try:
        next_open = send_window_next_open(after=now, window=window, zone=zone)
    except ApplicationError:  # a window with no weekdays never opens
        next_open = None
    return IdentityCapacity(
        identity_id=identity.pk,
        timezone=str(zone.key),
        local_time=local,
        local_date=day,
        paused=identity.paused,
        warmup_enabled=identity.warmup_enabled,
        warmup_day=identity_warmup_day(identity=identity, day=day),
        warmup_allowance=identity_warmup_allowance(identity=identity, day=day),
        daily_cap=identity.daily_cap,
        hourly_cap=identity.hourly_cap,
        today_ceiling=today_ceiling,
        hour_ceiling=hour_ceiling,
        sent_today=usage.sent_today,
        sent_this_hour=usage.sent_this_hour,
        remaining_today=remaining_today,
        remaining_this_hour=max(0, min(hour_ceiling - usage.sent_this_hour, remaining_today)),
        followup_reserve_today=followup_reserve(
            ceiling=today_ceiling, ratio=settings.SEND_FOLLOWUP_RESERVE_RATIO
        ),
        day_resets_at=identity_day_window(identity=identity, now=now).ends_at,
        hour_resets_at=identity_hour_window(identity=identity, now=now).ends_at,
        tenant_daily_quota=quota,
        tenant_sent_today=usage.tenant_sent_today,
        tenant_remaining_today=max(0, quota - usage.tenant_sent_today),
        in_window=closes is not None,
        window_closes_at=closes,
        next_window_opens_at=next_open,
    )
