"""Caps and warm-up arithmetic in the identity's zone, and the capacity endpoint."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from messaging.models import SenderIdentity
from messaging.services.capacity import (
    followup_reserve,
    identity_daily_ceiling,
    identity_day_window,
    identity_hour_window,
    identity_hourly_ceiling,
    identity_local_day,
    identity_warmup_allowance,
    identity_warmup_day,
    tenant_day_window,
)
from messaging.services.ratelimit import KEY_PREFIX, capacity_acquire
from outreach.testing.factories import SenderIdentityFactory

UTC = dt.UTC
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def identity(**fields) -> SenderIdentity:
    """An unsaved identity: the arithmetic needs no database."""
    defaults = {
        "daily_cap": 150,
        "hourly_cap": 40,
        "warmup_enabled": True,
        "warmup_start_volume": 20,
        "warmup_daily_increase": 10,
        "warmup_ceiling": 200,
        "warmup_started_on": dt.date(2026, 3, 1),
        "timezone": "America/New_York",
    }
    return SenderIdentity(**{**defaults, **fields})


# --- warm-up and caps --------------------------------------------------------------------------


def test_warmup_ramps_by_the_daily_increase_up_to_the_smallest_ceiling():
    ae = identity()
    allowances = {
        n: identity_warmup_allowance(identity=ae, day=dt.date(2026, 3, n)) for n in (1, 2, 5, 14)
    }
    assert allowances == {1: 20, 2: 30, 5: 60, 14: 150}  # day 14 would be 150; cap is 150
    assert identity_warmup_allowance(identity=ae, day=dt.date(2026, 4, 30)) == 150
    lower_ceiling = identity(warmup_ceiling=75)
    assert identity_daily_ceiling(identity=lower_ceiling, day=dt.date(2026, 3, 20)) == 75


def test_warmup_day_counts_from_the_start_date_as_day_one():
    ae = identity()
    assert identity_warmup_day(identity=ae, day=dt.date(2026, 3, 1)) == 1
    assert identity_warmup_day(identity=ae, day=dt.date(2026, 3, 8)) == 8
    assert identity_warmup_day(identity=ae, day=dt.date(2026, 4, 1)) == 32


def test_a_ramp_not_started_yet_allows_the_first_days_volume():
    for started in (None, dt.date(2026, 3, 10)):
        ae = identity(warmup_started_on=started)
        assert identity_warmup_day(identity=ae, day=dt.date(2026, 3, 5)) == 1
        assert identity_daily_ceiling(identity=ae, day=dt.date(2026, 3, 5)) == 20


def test_without_warmup_the_daily_cap_is_the_ceiling():
    ae = identity(warmup_enabled=False)
    assert identity_warmup_day(identity=ae, day=dt.date(2026, 3, 1)) is None
    assert identity_warmup_allowance(identity=ae, day=dt.date(2026, 3, 1)) is None
    assert identity_daily_ceiling(identity=ae, day=dt.date(2026, 3, 1)) == 150
    assert identity_hourly_ceiling(identity=ae, day=dt.date(2026, 3, 1)) == 40


def test_the_hour_ceiling_never_exceeds_the_days():
    ae = identity()
    assert identity_hourly_ceiling(identity=ae, day=dt.date(2026, 3, 1)) == 20
    assert identity_hourly_ceiling(identity=ae, day=dt.date(2026, 3, 10)) == 40


def test_the_warmup_day_turns_at_midnight_in_the_identitys_zone_not_utc():
    ae = identity()
    late_evening_in_new_york = utc(2026, 3, 3, 4, 59)  # 23:59 EST on March 2nd
    midnight_in_new_york = utc(2026, 3, 3, 5, 0)
    assert identity_local_day(identity=ae, now=late_evening_in_new_york) == dt.date(2026, 3, 2)
    day = identity_local_day(identity=ae, now=late_evening_in_new_york)
    assert identity_daily_ceiling(identity=ae, day=day) == 30
    day = identity_local_day(identity=ae, now=midnight_in_new_york)
    assert identity_daily_ceiling(identity=ae, day=day) == 40
    tokyo = identity(timezone="Asia/Tokyo")
    assert identity_local_day(identity=tokyo, now=late_evening_in_new_york) == dt.date(2026, 3, 3)


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        ("America/New_York", dt.date(2026, 3, 8), 23),
        ("America/New_York", dt.date(2026, 11, 1), 25),
        ("America/New_York", dt.date(2026, 11, 2), 24),
        ("Europe/Berlin", dt.date(2026, 3, 29), 23),
        ("Europe/Berlin", dt.date(2026, 10, 25), 25),
    ],
)
def test_a_dst_day_is_still_one_day(zone, day, hours):
    ae = identity(timezone=zone)
    noon = dt.datetime.combine(day, dt.time(12), tzinfo=ZoneInfo(zone))
    window = identity_day_window(identity=ae, now=noon)
    assert window.label == day.isoformat()
    assert window.ends_at - window.starts_at == dt.timedelta(hours=hours)
    assert window.starts_at.astimezone(ZoneInfo(zone)).time() == dt.time(0)
    assert window.ends_at.astimezone(ZoneInfo(zone)).date() == day + dt.timedelta(days=1)
    # The warm-up still advances by exactly one day across it.
    before = identity_warmup_day(identity=ae, day=day)
    after = identity_warmup_day(identity=ae, day=day + dt.timedelta(days=1))
    assert after == before + 1


def test_the_repeated_fall_back_hour_counts_as_two_hours():
    ae = identity()
    first = identity_hour_window(identity=ae, now=utc(2026, 11, 1, 5, 30))  # 01:30 EDT
    second = identity_hour_window(identity=ae, now=utc(2026, 11, 1, 6, 30))  # 01:30 EST
    assert first.label != second.label
    assert (first.starts_at, first.ends_at) == (utc(2026, 11, 1, 5), utc(2026, 11, 1, 6))
    assert (second.starts_at, second.ends_at) == (utc(2026, 11, 1, 6), utc(2026, 11, 1, 7))


def test_the_spring_forward_hour_ends_when_the_clock_jumps():
    ae = identity()
    last_est = identity_hour_window(identity=ae, now=utc(2026, 3, 8, 6, 59))  # 01:59 EST
    first_edt = identity_hour_window(identity=ae, now=utc(2026, 3, 8, 7, 0))  # 03:00 EDT
    assert last_est.ends_at == first_edt.starts_at == utc(2026, 3, 8, 7)


def test_hours_follow_local_wall_clock_in_half_hour_zones():
    kolkata = identity(timezone="Asia/Kolkata")
    window = identity_hour_window(identity=kolkata, now=utc(2026, 3, 4, 10, 10))  # 15:40 IST
    assert window.starts_at == utc(2026, 3, 4, 9, 30)
    assert window.ends_at == utc(2026, 3, 4, 10, 30)


def test_the_tenant_quota_counts_per_utc_day():
    window = tenant_day_window(now=dt.datetime(2026, 3, 2, 23, 30, tzinfo=NEW_YORK))
    assert window.label == "2026-03-03"
    assert (window.starts_at, window.ends_at) == (utc(2026, 3, 3), utc(2026, 3, 4))


def test_the_followup_reserve_rounds_down():
    assert followup_reserve(ceiling=10, ratio=0.2) == 2
    assert followup_reserve(ceiling=4, ratio=0.2) == 0
    assert followup_reserve(ceiling=200, ratio=0.0) == 0
    with pytest.raises(ValueError):
        followup_reserve(ceiling=10, ratio=1.5)


# --- GET /api/v1/sender-identities/{id}/capacity/ ---------------------------------------------


@pytest.fixture
def clean_counters():
    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(f"{KEY_PREFIX}*", count=1000))
    if keys:
        client.delete(*keys)
    return client


def _url(identity_id: int) -> str:
    return f"/api/v1/sender-identities/{identity_id}/capacity/"


@pytest.mark.django_db
def test_capacity_reports_what_is_left_today_and_this_hour(api, tenant, clean_counters):
    zone = ZoneInfo("Europe/Berlin")
    today = timezone.now().astimezone(zone).date()
    ae = SenderIdentityFactory(
        tenant=tenant,
        timezone="Europe/Berlin",
        daily_cap=500,
        hourly_cap=50,
        warmup_enabled=True,
        warmup_start_volume=20,
        warmup_daily_increase=10,
        warmup_started_on=today - dt.timedelta(days=4),
        window_days=list(range(7)),
        window_start=dt.time(0),
        window_end=dt.time(23, 59, 59, 999999),
    )
    tenant.daily_send_quota = 1000
    tenant.save()
    for _ in range(3):
        assert capacity_acquire(
            tenant_id=tenant.id, identity=ae, now=timezone.now(), follow_up=True
        ).granted

    response = api.get(_url(ae.id))

    assert response.status_code == 200
    body = response.json()
    assert body["local_date"] == today.isoformat()
    assert dt.datetime.fromisoformat(body["local_time"]).utcoffset() == (
        timezone.now().astimezone(zone).utcoffset()
    )
    assert body["warmup_day"] == 5
    assert body["warmup_allowance"] == 60
    assert body["today_ceiling"] == 60
    assert body["hour_ceiling"] == 50
    assert body["sent_today"] == 3
    assert body["sent_this_hour"] == 3
    assert body["remaining_today"] == 57
    assert body["remaining_this_hour"] == 47
    assert body["followup_reserve_today"] == 12
    assert body["tenant_daily_quota"] == 1000
    assert body["tenant_remaining_today"] == 997
    assert body["in_window"] is True
    assert body["window_closes_at"] is not None
    day_resets_at = dt.datetime.fromisoformat(body["day_resets_at"]).astimezone(zone)
    assert (day_resets_at.date(), day_resets_at.time()) == (
        today + dt.timedelta(days=1),
        dt.time(0),
    )


@pytest.mark.django_db
def test_capacity_names_the_next_window_opening_when_outside_it(api, tenant, clean_counters):
    weekday = timezone.now().weekday()
    ae = SenderIdentityFactory(
        tenant=tenant,
        timezone="UTC",
        warmup_enabled=False,
        window_days=[d for d in range(7) if d != weekday],
        window_start=dt.time(9),
        window_end=dt.time(17),
    )

    body = api.get(_url(ae.id)).json()

    assert body["warmup_day"] is None
    assert body["today_ceiling"] == ae.daily_cap
    assert body["remaining_today"] == ae.daily_cap
    assert body["in_window"] is False
    assert body["window_closes_at"] is None
    tomorrow = dt.date.fromisoformat(body["local_date"]) + dt.timedelta(days=1)
    assert dt.datetime.fromisoformat(body["next_window_opens_at"]) == dt.datetime.combine(
        tomorrow, dt.time(9), tzinfo=UTC
    )


@pytest.mark.django_db
def test_another_tenants_identity_is_not_found(api, other_tenant):
    theirs = SenderIdentityFactory(tenant=other_tenant)
    response = api.get(_url(theirs.id))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert api.get(_url(theirs.id + 10_000)).status_code == 404


@pytest.mark.django_db
def test_capacity_requires_an_api_key(client, tenant):
    ae = SenderIdentityFactory(tenant=tenant)
    assert client.get(_url(ae.id)).status_code == 401


@pytest.mark.django_db
def test_capacity_is_documented_in_the_openapi_schema(client):
    schema = client.get("/api/schema/?format=json").json()
    operation = schema["paths"]["/api/v1/sender-identities/{id}/capacity/"]["get"]
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    component = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"remaining_today", "remaining_this_hour", "warmup_day", "today_ceiling"} <= set(
        component["properties"]
    )
