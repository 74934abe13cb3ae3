"""The Redis limiter: all-or-nothing across buckets, when to retry, the follow-up reserve,
refunds, and real processes racing for the last sends of a cap."""

import datetime as dt
import multiprocessing

import pytest

from messaging.services.ratelimit import (
    GLOBAL_SECOND,
    IDENTITY_DAY,
    IDENTITY_HOUR,
    KEY_PREFIX,
    TENANT_DAY,
    CapacityGrant,
    CapacityRequest,
    CapacityUsage,
    capacity_acquire,
    capacity_acquire_many,
    capacity_release,
    capacity_release_by_id,
    capacity_usage_get,
)
from outreach.common.errors import NotFound
from outreach.testing.factories import SenderIdentityFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("redis_client")]

UTC = dt.UTC
# Wednesday 2026-03-04, 10:15 in New York (EST).
NOW = dt.datetime(2026, 3, 4, 15, 15, tzinfo=UTC)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def make_identity(tenant, **fields):
    defaults = {
        "timezone": "America/New_York",
        "daily_cap": 10,
        "hourly_cap": 5,
        "warmup_enabled": False,
    }
    return SenderIdentityFactory(tenant=tenant, **{**defaults, **fields})


def take(tenant, identity, now=NOW, **kwargs) -> CapacityGrant:
    kwargs.setdefault("tenant_daily_quota", 1000)
    kwargs.setdefault("follow_up", True)
    return capacity_acquire(tenant_id=tenant.id, identity=identity, now=now, **kwargs)


def usage(tenant, identity, now=NOW):
    return capacity_usage_get(tenant_id=tenant.id, identity=identity, now=now)


def test_a_full_hour_refuses_and_answers_the_end_of_the_local_hour(tenant):
    ae = make_identity(tenant)
    granted = [take(tenant, ae).granted for _ in range(5)]
    refused = take(tenant, ae)

    assert granted == [True] * 5
    assert not refused.granted
    assert refused.blocked_by == (IDENTITY_HOUR,)
    assert refused.reason == "identity_hour full"
    assert refused.retry_at == utc(2026, 3, 4, 16, 0)  # 11:00 in New York
    assert take(tenant, ae, now=refused.retry_at).granted


def test_a_refusal_takes_nothing_from_any_bucket(tenant):
    ae = make_identity(tenant, hourly_cap=10)
    other = make_identity(tenant, hourly_cap=10)
    for _ in range(7):
        assert take(tenant, ae, tenant_daily_quota=9).granted
    for _ in range(2):
        assert take(tenant, other, tenant_daily_quota=9).granted

    refused = take(tenant, ae, tenant_daily_quota=9)

    assert not refused.granted
    assert refused.blocked_by == (TENANT_DAY,)
    assert refused.retry_at == utc(2026, 3, 5)  # the tenant quota's day is the UTC day
    after = usage(tenant, ae)
    assert (after.sent_this_hour, after.sent_today, after.tenant_sent_today) == (7, 7, 9)


def test_a_batch_is_taken_whole_or_not_at_all(tenant):
    ae = make_identity(tenant)
    assert take(tenant, ae, count=3).granted
    refused = take(tenant, ae, count=3)
    assert not refused.granted
    assert usage(tenant, ae).sent_this_hour == 3
    assert take(tenant, ae, count=2).granted
    assert usage(tenant, ae).sent_this_hour == 5


def test_a_full_day_answers_the_next_local_midnight_even_on_a_dst_day(tenant):
    # Sunday 2026-03-08 in New York is 23 hours long: it ends at 04:00 UTC, not 05:00.
    ae = make_identity(tenant, daily_cap=3, hourly_cap=3)
    sunday = utc(2026, 3, 8, 18, 0)
    for _ in range(3):
        assert take(tenant, ae, now=sunday).granted

    refused = take(tenant, ae, now=sunday + dt.timedelta(hours=2))

    assert refused.blocked_by == (IDENTITY_DAY,)
    assert refused.retry_at == utc(2026, 3, 9, 4, 0)
    assert not take(tenant, ae, now=utc(2026, 3, 9, 3, 59)).granted
    assert take(tenant, ae, now=utc(2026, 3, 9, 4, 0)).granted


def test_when_hour_and_day_are_both_full_the_answer_is_the_later_of_the_two(tenant):
    ae = make_identity(tenant, daily_cap=5, hourly_cap=5)
    for _ in range(5):
        assert take(tenant, ae).granted
    refused = take(tenant, ae)
    assert set(refused.blocked_by) == {IDENTITY_HOUR, IDENTITY_DAY}
    assert refused.retry_at == utc(2026, 3, 5, 5, 0)  # midnight EST


def test_the_global_per_second_bucket_answers_the_next_second(tenant):
    ae = make_identity(tenant, daily_cap=100, hourly_cap=100)
    now = utc(2026, 3, 4, 15, 15, 7) + dt.timedelta(milliseconds=250)
    for _ in range(3):
        assert take(tenant, ae, now=now, global_per_second=3).granted
    refused = take(tenant, ae, now=now, global_per_second=3)
    assert refused.blocked_by == (GLOBAL_SECOND,)
    assert refused.retry_at == utc(2026, 3, 4, 15, 15, 8)
    assert take(tenant, ae, now=refused.retry_at, global_per_second=3).granted
    # 0 lifts the global limit altogether.
    assert take(tenant, ae, now=now, global_per_second=0).granted


def test_warmup_limits_the_day_and_grows_the_next_day(tenant):
    ae = make_identity(
        tenant,
        daily_cap=100,
        hourly_cap=50,
        warmup_enabled=True,
        warmup_start_volume=3,
        warmup_daily_increase=2,
        warmup_started_on=dt.date(2026, 3, 4),
    )
    assert [take(tenant, ae).granted for _ in range(4)] == [True, True, True, False]
    next_day = utc(2026, 3, 5, 15, 15)
    assert [take(tenant, ae, now=next_day).granted for _ in range(6)] == [True] * 5 + [False]


def test_first_touches_leave_the_reserve_to_follow_ups(tenant):
    ae = make_identity(tenant, daily_cap=10, hourly_cap=10)
    first_touches = [
        take(tenant, ae, follow_up=False, reserve_ratio=0.2).granted for _ in range(10)
    ]
    assert first_touches == [True] * 8 + [False] * 2
    refused = take(tenant, ae, follow_up=False, reserve_ratio=0.2)
    assert set(refused.blocked_by) == {IDENTITY_HOUR, IDENTITY_DAY}

    follow_ups = [take(tenant, ae, follow_up=True, reserve_ratio=0.2).granted for _ in range(3)]
    assert follow_ups == [True, True, False]
    assert usage(tenant, ae).sent_today == 10


def test_the_reserve_also_holds_on_the_tenant_quota(tenant):
    ae = make_identity(tenant, daily_cap=100, hourly_cap=100)
    quota = {"tenant_daily_quota": 5, "reserve_ratio": 0.4}
    assert [take(tenant, ae, follow_up=False, **quota).granted for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]
    assert take(tenant, ae, follow_up=False, **quota).blocked_by == (TENANT_DAY,)
    assert [take(tenant, ae, follow_up=True, **quota).granted for _ in range(3)] == [
        True,
        True,
        False,
    ]


def test_by_default_a_send_is_a_first_touch_and_respects_the_settings_reserve(tenant, settings):
    settings.SEND_FOLLOWUP_RESERVE_RATIO = 0.5
    ae = make_identity(tenant, daily_cap=4, hourly_cap=4)
    grants = [
        capacity_acquire(tenant_id=tenant.id, identity=ae, now=NOW, tenant_daily_quota=100)
        for _ in range(3)
    ]
    assert [g.granted for g in grants] == [True, True, False]


def test_a_release_gives_the_sends_back_once(tenant):
    ae = make_identity(tenant)
    grant = take(tenant, ae, count=2)
    take(tenant, ae)
    assert usage(tenant, ae).sent_today == 3

    assert capacity_release(grant=grant) is True
    assert capacity_release(grant=grant) is False
    assert capacity_release_by_id(tenant_id=tenant.id, grant_id=grant.grant_id) is False

    after = usage(tenant, ae)
    assert (after.sent_this_hour, after.sent_today, after.tenant_sent_today) == (1, 1, 1)


def test_a_refused_grant_releases_nothing(tenant):
    ae = make_identity(tenant, hourly_cap=1)
    assert take(tenant, ae).granted
    refused = take(tenant, ae)
    assert capacity_release(grant=refused) is False
    assert usage(tenant, ae).sent_today == 1


def test_a_release_never_drives_a_counter_below_zero_or_revives_an_expired_one(
    tenant, redis_client
):
    ae = make_identity(tenant)
    grant = take(tenant, ae, count=3)
    hour_keys = list(redis_client.scan_iter(f"{KEY_PREFIX}i:{ae.pk}:h:*"))
    day_keys = list(redis_client.scan_iter(f"{KEY_PREFIX}i:{ae.pk}:d:*"))
    redis_client.delete(*hour_keys)  # as if the hour ended and its counter expired
    redis_client.set(day_keys[0], 1, keepttl=True)  # as if only one were left counted

    assert capacity_release(grant=grant) is True

    assert redis_client.exists(*hour_keys) == 0
    assert redis_client.get(day_keys[0]) == "0"


def test_a_grant_id_makes_a_repeated_acquire_count_once(tenant):
    ae = make_identity(tenant)
    first = take(tenant, ae, grant_id="message-7f3a")
    again = take(tenant, ae, grant_id="message-7f3a")
    assert first.granted and again.granted
    assert usage(tenant, ae).sent_today == 1
    assert capacity_release(grant=again) is True
    assert usage(tenant, ae).sent_today == 0


def test_many_requests_in_one_round_trip_are_granted_as_one_by_one_calls_would_be(tenant):
    ae = make_identity(tenant)
    requests = [
        CapacityRequest(
            tenant_id=tenant.id,
            identity=ae,
            now=NOW,
            follow_up=True,
            tenant_daily_quota=1000,
            grant_id=f"send:{index % 4}",
        )
        for index in range(8)
    ]
    # Ids send:0..send:3 take four sends, their repeats take nothing; then a fifth and a
    # sixth distinct send: the hour (5) has room for one of them only.
    requests += [
        CapacityRequest(tenant_id=tenant.id, identity=ae, now=NOW, follow_up=True, grant_id=i)
        for i in ("send:4", "send:5")
    ]

    grants = capacity_acquire_many(requests=requests)

    assert [g.granted for g in grants] == [True] * 9 + [False]
    assert grants[-1].blocked_by == (IDENTITY_HOUR,)
    assert grants[-1].retry_at == utc(2026, 3, 4, 16, 0)
    assert usage(tenant, ae).sent_this_hour == 5
    assert capacity_acquire_many(requests=[]) == []


def test_counters_expire_shortly_after_their_window(tenant, redis_client):
    ae = make_identity(tenant)
    grant = take(tenant, ae)

    def ttl(pattern: str) -> int:
        (key,) = redis_client.scan_iter(f"{KEY_PREFIX}{pattern}")
        return redis_client.pttl(key)

    ttls = {
        "h": ttl(f"i:{ae.pk}:h:*"),
        "d": ttl(f"i:{ae.pk}:d:*"),
        "t": ttl(f"t:{tenant.id}:d:*"),
        "s": ttl("g:s:*"),
    }
    slack = 5 * 60 * 1000
    hour_left = 45 * 60 * 1000  # 10:15 → 11:00 in New York
    day_left = (13 * 3600 + 45 * 60) * 1000  # → midnight
    assert hour_left < ttls["h"] <= hour_left + slack
    assert day_left < ttls["d"] <= day_left + slack
    tenant_left = (8 * 3600 + 45 * 60) * 1000  # 15:15 UTC → UTC midnight
    assert tenant_left < ttls["t"] <= tenant_left + slack
    assert 0 < ttls["s"] <= 1000 + slack  # the global second
    grant_ttl = redis_client.pttl(f"{KEY_PREFIX}grant:{tenant.id}:{grant.grant_id}")
    assert day_left < grant_ttl


def test_counters_of_another_tenants_identity_are_not_touched(tenant, other_tenant):
    theirs = make_identity(other_tenant)
    with pytest.raises(NotFound):
        take(tenant, theirs)
    assert usage(other_tenant, theirs).sent_today == 0


def test_without_a_quota_argument_the_tenants_own_quota_applies(tenant):
    tenant.daily_send_quota = 2
    tenant.save()
    ae = make_identity(tenant)
    grants = [
        capacity_acquire(tenant_id=tenant.id, identity=ae, now=NOW, follow_up=True)
        for _ in range(3)
    ]
    assert [g.granted for g in grants] == [True, True, False]
    assert grants[-1].blocked_by == (TENANT_DAY,)


# --- real processes racing -------------------------------------------------------------------


def _hammer(tenant_id, identity, attempts, quota, start, results):
    start.wait()
    granted = 0
    for _ in range(attempts):
        grant = capacity_acquire(
            tenant_id=tenant_id,
            identity=identity,
            now=NOW,
            follow_up=True,
            tenant_daily_quota=quota,
            global_per_second=0,
        )
        granted += grant.granted
    results.put((identity.pk, granted))


def _race(workers):
    """Run ``(tenant_id, identity, attempts, quota)`` workers as real processes, all at once."""
    # The counters exist before the race (seeding them reads the ledger, which a forked
    # child must not do on its parent's database connection): one send taken and given back.
    for tenant_id, identity, _, quota in {(w[0], w[1].pk): w for w in workers}.values():
        warm = capacity_acquire(
            tenant_id=tenant_id, identity=identity, now=NOW, follow_up=True,
            tenant_daily_quota=quota, global_per_second=0,
        )  # fmt: skip
        assert capacity_release(grant=warm)
    context = multiprocessing.get_context("fork")
    start = context.Event()
    results = context.Queue()
    processes = [
        context.Process(target=_hammer, args=(*worker, start, results)) for worker in workers
    ]
    for process in processes:
        process.start()
    start.set()
    granted = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return granted


def test_eight_processes_never_take_more_than_the_cap(tenant):
    ae = make_identity(tenant, daily_cap=250, hourly_cap=250)

    granted = _race([(tenant.id, ae, 100, 100_000)] * 8)

    assert sum(count for _, count in granted) == 250
    assert usage(tenant, ae).sent_today == 250
    assert take(tenant, ae).granted is False


def test_eight_processes_on_two_identities_share_the_tenant_quota_exactly(tenant):
    first = make_identity(tenant, daily_cap=120, hourly_cap=120)
    second = make_identity(tenant, daily_cap=120, hourly_cap=120)

    granted = _race([(tenant.id, first, 60, 150)] * 4 + [(tenant.id, second, 60, 150)] * 4)

    per_identity = {first.pk: 0, second.pk: 0}
    for identity_id, count in granted:
        per_identity[identity_id] += count
    assert sum(per_identity.values()) == 150
    assert all(count <= 120 for count in per_identity.values())
    assert usage(tenant, first).tenant_sent_today == 150
    assert usage(tenant, first).sent_today == per_identity[first.pk]


def test_counters_lost_with_redis_are_seeded_from_the_send_ledger(tenant, redis_client):
    """Found by the chaos suite: Redis restarted empty mid-wave, and an identity whose
    counters were gone sent its whole daily cap a second time."""
    from django.utils import timezone

    from messaging.models import Message
    from messaging.tests.webhook_support import message_make

    now = timezone.now()
    ae = make_identity(tenant, daily_cap=5, hourly_cap=5)
    for status in ("accepted", "delivered", "sending", "failed"):
        message_make(tenant, sender_identity=ae, status=status)
    Message.objects.filter(tenant=tenant).update(created_at=now)
    assert usage(tenant, ae, now=now).sent_today == 0  # Redis knows nothing of them

    # Three of those count (a failed send gave its capacity back): two more fit today.
    assert take(tenant, ae, now=now, follow_up=True).granted
    assert usage(tenant, ae, now=now).sent_today == 4
    assert take(tenant, ae, now=now, follow_up=True).granted
    refused = take(tenant, ae, now=now, follow_up=True)
    assert not refused.granted and set(refused.blocked_by) == {IDENTITY_HOUR, IDENTITY_DAY}

    # Redis loses everything again: the ledger still says five (three, plus the two taken
    # above once their rows exist).
    for _ in range(2):
        message_make(tenant, sender_identity=ae, status="accepted")
    Message.objects.filter(tenant=tenant).update(created_at=now)
    redis_client.delete(*redis_client.scan_iter(f"{KEY_PREFIX}*"))
    assert not take(tenant, ae, now=now, follow_up=True).granted
    assert usage(tenant, ae, now=now).sent_today == 5


def test_texts_in_the_ledger_do_not_count_on_the_email_counters_seeded_after_a_loss(
    tenant, redis_client
):
    """Texts take capacity from the SMS day only: seeding the email counters from a ledger
    that also holds the identity's texts would cut its email for the rest of the day."""
    from django.utils import timezone

    from messaging.models import Message
    from messaging.tests.webhook_support import message_make

    now = timezone.now()
    ae = make_identity(tenant, daily_cap=5, hourly_cap=5)
    message_make(tenant, sender_identity=ae, status="accepted")
    for _ in range(4):
        message_make(tenant, sender_identity=ae, channel="sms", to_phone="+15551230100")
    Message.objects.filter(tenant=tenant).update(created_at=now)

    assert take(tenant, ae, now=now).granted
    assert usage(tenant, ae, now=now) == CapacityUsage(
        sent_this_hour=2, sent_today=2, tenant_sent_today=2
    )
