"""Send-time arithmetic: windows in the lead's zone, DST, holidays, jitter, plan waits."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from campaigns.services.send_time import (
    Duration,
    SendWindow,
    duration_add,
    duration_parse,
    lead_zone_resolve,
    local_to_utc,
    send_time_after_wait,
    send_time_next,
    send_window_check,
    send_window_current_close,
    send_window_next_open,
)
from outreach.common.errors import ApplicationError

UTC = dt.UTC
NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
TOKYO = ZoneInfo("Asia/Tokyo")
WEEKDAYS_9_TO_5 = SendWindow(days=frozenset(range(5)), start=dt.time(9), end=dt.time(17))
EVERY_DAY_9_TO_5 = SendWindow(days=frozenset(range(7)), start=dt.time(9), end=dt.time(17))


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def local(zone: ZoneInfo, *args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=zone)


# --- the window, in the lead's zone ------------------------------------------------------------


def test_a_due_time_inside_the_window_is_kept():
    due = local(NEW_YORK, 2026, 3, 4, 11, 15)  # Wednesday
    assert send_time_next(due_at=due, window=WEEKDAYS_9_TO_5, zone=NEW_YORK) == due


def test_a_due_time_before_the_window_moves_to_its_opening_the_same_day():
    due = local(NEW_YORK, 2026, 3, 4, 6, 0)
    assert send_time_next(due_at=due, window=WEEKDAYS_9_TO_5, zone=NEW_YORK) == utc(
        2026, 3, 4, 14, 0
    )


def test_friday_evening_lands_on_monday_0900_after_the_spring_forward_weekend():
    # New York switches to EDT on Sunday 2026-03-08: Friday's 09:00 was 14:00 UTC, Monday's
    # 09:00 is 13:00 UTC.
    due = local(NEW_YORK, 2026, 3, 6, 17, 30)
    result = send_time_next(due_at=due, window=WEEKDAYS_9_TO_5, zone=NEW_YORK)
    assert result == utc(2026, 3, 9, 13, 0)
    assert result.astimezone(NEW_YORK).replace(tzinfo=None) == dt.datetime(2026, 3, 9, 9, 0)


def test_friday_evening_lands_on_monday_0900_after_the_fall_back_weekend():
    due = local(NEW_YORK, 2026, 10, 30, 18, 0)
    result = send_time_next(due_at=due, window=WEEKDAYS_9_TO_5, zone=NEW_YORK)
    assert result == utc(2026, 11, 2, 14, 0)


def test_berlin_window_after_its_own_dst_change():
    # Europe/Berlin moves to CEST on 2026-03-29 (three weeks after New York).
    due = local(BERLIN, 2026, 3, 27, 17, 0)
    assert send_time_next(due_at=due, window=WEEKDAYS_9_TO_5, zone=BERLIN) == utc(2026, 3, 30, 7, 0)
    due = local(BERLIN, 2026, 10, 23, 17, 0)
    assert send_time_next(due_at=due, window=WEEKDAYS_9_TO_5, zone=BERLIN) == utc(
        2026, 10, 26, 8, 0
    )


def test_the_window_applies_in_the_leads_zone_not_the_senders():
    window_zone = lead_zone_resolve(
        lead_timezone="Asia/Tokyo", identity_timezone="America/New_York"
    )
    due = utc(2026, 3, 4, 15, 0)  # 10:00 in New York, but midnight in Tokyo
    assert send_time_next(due_at=due, window=WEEKDAYS_9_TO_5, zone=window_zone) == utc(
        2026, 3, 5, 0, 0
    )


def test_a_lead_without_a_valid_zone_uses_the_identitys():
    for lead_timezone in ("", "Mars/Olympus_Mons"):
        zone = lead_zone_resolve(lead_timezone=lead_timezone, identity_timezone="Europe/Berlin")
        assert zone == BERLIN


def test_an_unknown_identity_zone_is_a_clear_error():
    with pytest.raises(ApplicationError) as caught:
        lead_zone_resolve(lead_timezone="", identity_timezone="Europe/Atlantis")
    assert caught.value.code == "invalid_timezone"


def test_a_window_opening_in_the_spring_forward_gap_opens_when_the_clock_gets_there():
    # 02:30 does not exist on 2026-03-08 in New York: the window opens at 03:30 EDT.
    window = SendWindow(days=frozenset(range(7)), start=dt.time(2, 30), end=dt.time(6))
    due = local(NEW_YORK, 2026, 3, 8, 0, 0)
    result = send_time_next(due_at=due, window=window, zone=NEW_YORK)
    assert result == utc(2026, 3, 8, 7, 30)
    assert result.astimezone(NEW_YORK).hour == 3


def test_an_ambiguous_window_opening_means_its_first_occurrence():
    # 01:30 happens twice on 2026-11-01 in New York; the window opens at the first (EDT).
    window = SendWindow(days=frozenset(range(7)), start=dt.time(1, 30), end=dt.time(6))
    due = local(NEW_YORK, 2026, 11, 1, 0, 0)
    assert send_time_next(due_at=due, window=window, zone=NEW_YORK) == utc(2026, 11, 1, 5, 30)
    assert local_to_utc(day=dt.date(2026, 11, 1), at=dt.time(1, 30), zone=NEW_YORK) == utc(
        2026, 11, 1, 5, 30
    )


def test_window_edges_start_is_inside_end_is_outside():
    monday = dt.date(2026, 3, 9)
    opens = local_to_utc(day=monday, at=dt.time(9), zone=NEW_YORK)
    closes = local_to_utc(day=monday, at=dt.time(17), zone=NEW_YORK)
    check = {"window": WEEKDAYS_9_TO_5, "zone": NEW_YORK}
    assert send_window_check(at=opens, **check)
    assert not send_window_check(at=opens - dt.timedelta(microseconds=1), **check)
    assert send_window_check(at=closes - dt.timedelta(microseconds=1), **check)
    assert not send_window_check(at=closes, **check)
    assert send_time_next(due_at=closes, **check) == utc(2026, 3, 10, 13, 0)


def test_window_check_refuses_weekends_and_the_leads_holidays():
    saturday_noon = local(NEW_YORK, 2026, 3, 7, 12, 0)
    assert not send_window_check(at=saturday_noon, window=WEEKDAYS_9_TO_5, zone=NEW_YORK)
    independence_day = local(NEW_YORK, 2026, 7, 4, 12, 0)
    assert send_window_check(at=independence_day, window=EVERY_DAY_9_TO_5, zone=NEW_YORK)
    assert not send_window_check(
        at=independence_day, window=EVERY_DAY_9_TO_5, zone=NEW_YORK, country="US"
    )


def test_us_independence_day_and_its_observed_friday_are_skipped():
    # 2026-07-04 is a Saturday, observed on Friday 07-03.
    due = local(NEW_YORK, 2026, 7, 2, 18, 0)
    with_holidays = send_time_next(due_at=due, window=WEEKDAYS_9_TO_5, zone=NEW_YORK, country="US")
    assert with_holidays == local(NEW_YORK, 2026, 7, 6, 9, 0)
    no_country = send_time_next(due_at=due, window=WEEKDAYS_9_TO_5, zone=NEW_YORK)
    assert no_country == local(NEW_YORK, 2026, 7, 3, 9, 0)
    every_day = send_time_next(
        due_at=local(NEW_YORK, 2026, 7, 4, 8, 0),
        window=EVERY_DAY_9_TO_5,
        zone=NEW_YORK,
        country="us",
    )
    assert every_day == local(NEW_YORK, 2026, 7, 5, 9, 0)


def test_german_unity_day_is_skipped_for_a_german_lead():
    # Friday 2025-10-03, Tag der Deutschen Einheit.
    due = local(BERLIN, 2025, 10, 2, 17, 30)
    assert send_time_next(due_at=due, window=WEEKDAYS_9_TO_5, zone=BERLIN, country="DE") == local(
        BERLIN, 2025, 10, 6, 9, 0
    )


def test_an_unknown_country_means_no_holiday_calendar():
    due = local(NEW_YORK, 2026, 7, 3, 10, 0)
    assert send_time_next(due_at=due, window=WEEKDAYS_9_TO_5, zone=NEW_YORK, country="ZZ") == due


def test_a_window_without_weekdays_is_refused_not_looped_on():
    with pytest.raises(ApplicationError) as caught:
        send_time_next(
            due_at=utc(2026, 3, 4, 12),
            window=SendWindow(days=frozenset(), start=dt.time(9), end=dt.time(17)),
            zone=NEW_YORK,
        )
    assert caught.value.code == "window_never_opens"


def test_next_opening_and_current_close():
    inside = local(NEW_YORK, 2026, 3, 6, 16, 0)  # Friday
    assert send_window_current_close(at=inside, window=WEEKDAYS_9_TO_5, zone=NEW_YORK) == local(
        NEW_YORK, 2026, 3, 6, 17, 0
    )
    assert send_window_next_open(after=inside, window=WEEKDAYS_9_TO_5, zone=NEW_YORK) == utc(
        2026, 3, 9, 13, 0
    )
    assert (
        send_window_current_close(at=inside.replace(hour=8), window=WEEKDAYS_9_TO_5, zone=NEW_YORK)
        is None
    )
    assert send_window_next_open(
        after=inside.replace(hour=8), window=WEEKDAYS_9_TO_5, zone=NEW_YORK
    ) == local(NEW_YORK, 2026, 3, 6, 9, 0)


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        send_time_next(due_at=dt.datetime(2026, 3, 4, 12), window=WEEKDAYS_9_TO_5, zone=NEW_YORK)


# --- jitter ------------------------------------------------------------------------------------


def test_jitter_is_deterministic_per_key_and_spreads_a_campaign():
    due = local(NEW_YORK, 2026, 3, 4, 6, 0)
    opens = local(NEW_YORK, 2026, 3, 4, 9, 0)
    times = [
        send_time_next(
            due_at=due,
            window=WEEKDAYS_9_TO_5,
            zone=NEW_YORK,
            jitter_seconds=600,
            jitter_key=f"enrollment-{n}:1",
        )
        for n in range(200)
    ]
    again = send_time_next(
        due_at=due,
        window=WEEKDAYS_9_TO_5,
        zone=NEW_YORK,
        jitter_seconds=600,
        jitter_key="enrollment-7:1",
    )
    assert again == times[7]
    assert all(opens <= t <= opens + dt.timedelta(seconds=600) for t in times)
    assert len(set(times)) > 150  # not one burst at 09:00:00


def test_jitter_never_pushes_a_send_past_the_windows_close():
    closes = local(NEW_YORK, 2026, 3, 4, 17, 0)
    due = closes - dt.timedelta(seconds=90)
    for n in range(300):
        result = send_time_next(
            due_at=due,
            window=WEEKDAYS_9_TO_5,
            zone=NEW_YORK,
            jitter_seconds=3600,
            jitter_key=f"{n}:2",
        )
        assert due <= result < closes
        assert send_window_check(at=result, window=WEEKDAYS_9_TO_5, zone=NEW_YORK)


# --- plan waits --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", Duration(30, "minutes")),
        ("4h", Duration(4, "hours")),
        ("3d", Duration(3, "days")),
        ("2 business_days", Duration(2, "business_days")),
        ("1 business_day", Duration(1, "business_days")),
        (" 2business_days ", Duration(2, "business_days")),
    ],
)
def test_durations_parse(text, expected):
    assert duration_parse(text=text) == expected


@pytest.mark.parametrize("text", ["", "3", "3 days", "-1d", "1.5h", "3w", "2 weekdays", "400d"])
def test_bad_durations_are_clear_errors(text):
    with pytest.raises(ApplicationError) as caught:
        duration_parse(text=text)
    assert caught.value.code == "invalid_duration"


def test_duration_is_printed_back_in_plan_syntax():
    assert str(duration_parse(text="2 business_days")) == "2 business_days"
    assert str(duration_parse(text="30m")) == "30m"


def test_hours_are_elapsed_time_across_a_dst_change():
    start = local(NEW_YORK, 2026, 3, 8, 0, 30)
    result = duration_add(start=start, duration="4h", zone=NEW_YORK)
    assert result - start == dt.timedelta(hours=4)
    assert result.astimezone(NEW_YORK).hour == 5  # the clock skipped 02:00-03:00


def test_days_are_calendar_days_in_the_leads_zone():
    friday = local(NEW_YORK, 2026, 3, 6, 10, 0)
    monday = duration_add(start=friday, duration="3d", zone=NEW_YORK)
    assert monday == local(NEW_YORK, 2026, 3, 9, 10, 0)
    assert monday - friday == dt.timedelta(days=3, hours=-1)  # a 23-hour Sunday
    saturday = local(NEW_YORK, 2026, 10, 31, 10, 0)
    assert duration_add(start=saturday, duration="1d", zone=NEW_YORK) - saturday == dt.timedelta(
        hours=25
    )


def test_business_days_skip_the_weekend():
    thursday = local(BERLIN, 2026, 3, 5, 10, 0)
    assert duration_add(start=thursday, duration="2 business_days", zone=BERLIN) == local(
        BERLIN, 2026, 3, 9, 10, 0
    )
    saturday = local(BERLIN, 2026, 3, 7, 10, 0)
    assert duration_add(start=saturday, duration="1 business_day", zone=BERLIN) == local(
        BERLIN, 2026, 3, 9, 10, 0
    )


def test_business_days_skip_the_leads_public_holidays():
    thursday = local(NEW_YORK, 2026, 7, 2, 10, 0)
    assert duration_add(
        start=thursday, duration="1 business_day", zone=NEW_YORK, country="US"
    ) == local(NEW_YORK, 2026, 7, 6, 10, 0)
    thursday_de = local(BERLIN, 2025, 10, 2, 10, 0)
    assert duration_add(
        start=thursday_de, duration="2 business_days", zone=BERLIN, country="DE"
    ) == local(BERLIN, 2025, 10, 7, 10, 0)


def test_business_days_are_counted_in_the_leads_zone():
    # Friday 23:30 UTC is still Friday evening in New York but already Saturday in Tokyo.
    start = utc(2026, 3, 6, 23, 30)
    in_new_york = duration_add(start=start, duration="1 business_day", zone=NEW_YORK)
    in_tokyo = duration_add(start=start, duration="1 business_day", zone=TOKYO)
    assert in_new_york == local(NEW_YORK, 2026, 3, 9, 18, 30)
    assert in_tokyo == local(TOKYO, 2026, 3, 9, 8, 30)


def test_a_wait_then_the_window_gives_the_due_time_of_a_follow_up():
    sent = local(NEW_YORK, 2026, 3, 5, 15, 0)  # Thursday
    due = send_time_after_wait(
        start=sent, wait="1 business_day", window=WEEKDAYS_9_TO_5, zone=NEW_YORK
    )
    assert due == local(NEW_YORK, 2026, 3, 6, 15, 0)
    due = send_time_after_wait(start=sent, wait="4h", window=WEEKDAYS_9_TO_5, zone=NEW_YORK)
    assert due == local(NEW_YORK, 2026, 3, 6, 9, 0)  # 19:00 is after hours
