"""Send-time planning: windows, gaps, round times, weekdays, blackouts, DST, determinism."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwarm._models import SendingWindow
from mailwarm.strategies import local_instant, plan_send_times, window_bounds
from mailwarm.strategies._timing import send_offsets

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
ALL_DAYS = frozenset(range(7))
OFFICE = SendingWindow(start=time(8, 30), end=time(18, 0))
MONDAY = date(2026, 3, 2)

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Kathmandu",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "America/St_Johns",
    "Pacific/Chatham",
]


def check_plan(
    times: list[datetime],
    day: date,
    window: SendingWindow,
    zone: ZoneInfo,
    min_gap: timedelta,
) -> None:
    """The invariants every plan must hold."""
    start, end = window_bounds(day, window, zone)
    assert times == sorted(times)
    for t in times:
        assert t.tzinfo is UTC
        assert t.microsecond == 0
        assert start <= t < end
        local = t.astimezone(zone)
        assert local.date() == day
        wall = local.time().replace(tzinfo=None)
        if local.fold == 0:
            assert window.start <= wall < window.end
        else:
            # The second pass of a repeated hour (a DST fall-back) is inside the window's
            # instants, checked above, even where its wall time reads earlier than the start
            # (Pacific/Chatham, 2026-04-05: a window from 02:46:53 holds 02:46:23 fold=1).
            assert wall < window.end
        # the local wall time (with its fold) maps back to the same instant
        assert local_instant(day, local.time(), zone) == t
    gap = min_gap.total_seconds()
    for a, b in itertools.pairwise(times):
        assert (b - a).total_seconds() >= gap


def local_seconds(t: datetime, zone: ZoneInfo) -> int:
    local = t.astimezone(zone)
    return local.hour * 3600 + local.minute * 60 + local.second


def assert_not_round(times: list[datetime], zone: ZoneInfo) -> None:
    for t in times:
        seconds = local_seconds(t, zone)
        assert seconds % 60 != 0, t.astimezone(zone)
        assert seconds % 900 >= 60, t.astimezone(zone)


# --- basic invariants --------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 5, 20, 40, 57])
def test_plan_inside_window_sorted_and_spaced(count: int) -> None:
    gap = timedelta(minutes=10)
    times = plan_send_times(count, MONDAY, OFFICE, BERLIN, random.Random(count), min_gap=gap)
    assert len(times) == count
    check_plan(times, MONDAY, OFFICE, BERLIN, gap)


def test_plan_accepts_zone_name() -> None:
    by_name = plan_send_times(5, MONDAY, OFFICE, "Europe/Berlin", random.Random(1))
    by_zone = plan_send_times(5, MONDAY, OFFICE, BERLIN, random.Random(1))
    assert by_name == by_zone


def test_window_bounds_are_local() -> None:
    start, end = window_bounds(MONDAY, OFFICE, BERLIN)
    assert start == datetime(2026, 3, 2, 7, 30, tzinfo=UTC)
    assert end == datetime(2026, 3, 2, 17, 0, tzinfo=UTC)
    start, end = window_bounds(MONDAY, OFFICE, ZoneInfo("Asia/Kathmandu"))
    assert start == datetime(2026, 3, 2, 2, 45, tzinfo=UTC)


def test_sends_spread_over_window() -> None:
    # stratified: one send per equal slice, so a big plan covers the whole window
    times = plan_send_times(20, MONDAY, OFFICE, BERLIN, random.Random(3))
    start, end = window_bounds(MONDAY, OFFICE, BERLIN)
    assert times[0] - start < timedelta(minutes=60)
    assert end - times[-1] < timedelta(minutes=60)


@pytest.mark.parametrize("count", [0, -3])
def test_no_sends_for_zero_count(count: int) -> None:
    assert plan_send_times(count, MONDAY, OFFICE, BERLIN, random.Random(1)) == []


def test_count_reduced_when_window_too_small() -> None:
    window = SendingWindow(start=time(9, 0), end=time(10, 0))
    gap = timedelta(minutes=10)
    times = plan_send_times(10, MONDAY, window, BERLIN, random.Random(5), min_gap=gap)
    assert len(times) == 6
    check_plan(times, MONDAY, window, BERLIN, gap)


def test_count_zero_when_gap_longer_than_window() -> None:
    window = SendingWindow(start=time(9, 0), end=time(9, 5))
    assert plan_send_times(3, MONDAY, window, BERLIN, random.Random(5)) == []


def test_exact_min_gap_when_packed() -> None:
    window = SendingWindow(start=time(9, 0), end=time(9, 30))
    gap = timedelta(minutes=10)
    times = plan_send_times(3, MONDAY, window, BERLIN, random.Random(9), min_gap=gap)
    assert len(times) == 3
    check_plan(times, MONDAY, window, BERLIN, gap)


def test_fractional_min_gap_still_respected() -> None:
    window = SendingWindow(start=time(9, 0), end=time(10, 0))
    gap = timedelta(seconds=599.5)
    for seed in range(30):
        times = plan_send_times(10, MONDAY, window, BERLIN, random.Random(seed), min_gap=gap)
        check_plan(times, MONDAY, window, BERLIN, gap)


def test_zero_min_gap_keeps_count() -> None:
    window = SendingWindow(start=time(9, 0), end=time(9, 1))
    times = plan_send_times(30, MONDAY, window, BERLIN, random.Random(1), min_gap=timedelta(0))
    assert len(times) == 30
    check_plan(times, MONDAY, window, BERLIN, timedelta(0))


@pytest.mark.parametrize("seed", range(40))
def test_no_round_local_times_when_there_is_room(seed: int) -> None:
    zone = ZoneInfo(ZONES[seed % len(ZONES)])
    count = 1 + seed % 25
    times = plan_send_times(count, MONDAY, OFFICE, zone, random.Random(seed))
    assert len(times) == count
    assert_not_round(times, zone)


def test_no_round_times_even_when_crowded() -> None:
    # 40 sends at least 60 s apart in 2 hours: slots of 180 s, neighbours often in the way
    window = SendingWindow(start=time(9, 0), end=time(11, 0))
    gap = timedelta(seconds=60)
    for seed in range(200):
        times = plan_send_times(40, MONDAY, window, BERLIN, random.Random(seed), min_gap=gap)
        assert len(times) == 40
        check_plan(times, MONDAY, window, BERLIN, gap)
        assert_not_round(times, BERLIN)


def test_send_offsets_avoid_round_times_with_offset() -> None:
    # utc_offset shifts which instants are round: +05:45 makes UTC :15 a local :00
    start = datetime(2026, 3, 2, 3, 0, tzinfo=UTC).timestamp()
    for seed in range(50):
        times = send_offsets(12, start, start + 6 * 3600, 20_700, random.Random(seed))
        for t in times:
            local = int(t) + 20_700
            assert local % 60 != 0
            assert local % 900 >= 60


def test_send_offsets_edge_cases() -> None:
    rng = random.Random(1)
    assert send_offsets(0, 0.0, 3600.0, 0.0, rng) == []
    assert send_offsets(5, 3600.0, 3600.0, 0.0, rng) == []
    assert send_offsets(5, 3600.0, 0.0, 0.0, rng) == []
    assert len(send_offsets(5, 0.0, 3600.0, 0.0, rng, min_gap=0)) == 5
    assert send_offsets(2, 0.0, 599.0, 0.0, rng, min_gap=600) == []


def test_send_offsets_fractional_start() -> None:
    for seed in range(50):
        times = send_offsets(6, 1000.25, 4600.75, 0.0, random.Random(seed), jitter=1.0)
        assert all(1000.25 <= t < 4600.75 for t in times)
        assert all(t == int(t) for t in times)


# --- weekdays and blackouts --------------------------------------------------------------


def test_no_sends_on_non_window_weekdays() -> None:
    for offset in range(7):
        day = MONDAY + timedelta(days=offset)
        times = plan_send_times(5, day, OFFICE, BERLIN, random.Random(offset))
        assert (len(times) == 5) is (day.weekday() < 5)


def test_weekend_only_window() -> None:
    window = SendingWindow(weekdays=frozenset({5, 6}))
    assert plan_send_times(5, MONDAY, window, BERLIN, random.Random(1)) == []
    assert len(plan_send_times(5, date(2026, 3, 7), window, BERLIN, random.Random(1))) == 5


def test_weekday_is_local_not_utc() -> None:
    # Monday 00:30 in Auckland is still Sunday in UTC: the local weekday decides
    window = SendingWindow(start=time(0, 30), end=time(11, 0), weekdays=frozenset({0}))
    zone = ZoneInfo("Pacific/Auckland")
    times = plan_send_times(5, MONDAY, window, zone, random.Random(1))
    assert len(times) == 5
    assert any(t.weekday() == 6 for t in times)  # some fall on Sunday in UTC
    assert all(t.astimezone(zone).weekday() == 0 for t in times)


def test_blackout_dates() -> None:
    blackout = [MONDAY, date(2026, 12, 25)]
    assert plan_send_times(5, MONDAY, OFFICE, BERLIN, random.Random(1), blackout=blackout) == []
    tuesday = MONDAY + timedelta(days=1)
    times = plan_send_times(5, tuesday, OFFICE, BERLIN, random.Random(1), blackout=blackout)
    assert len(times) == 5
    # a one-shot iterator works too
    gen = (d for d in [MONDAY])
    assert plan_send_times(5, MONDAY, OFFICE, BERLIN, random.Random(1), blackout=gen) == []


# --- determinism -------------------------------------------------------------------------


def test_deterministic_for_same_seed() -> None:
    first = plan_send_times(15, MONDAY, OFFICE, BERLIN, random.Random(42))
    second = plan_send_times(15, MONDAY, OFFICE, BERLIN, random.Random(42))
    assert first == second
    assert plan_send_times(15, MONDAY, OFFICE, BERLIN, random.Random(43)) != first


def test_depends_on_rng_state() -> None:
    rng = random.Random(42)
    first = plan_send_times(15, MONDAY, OFFICE, BERLIN, rng)
    assert plan_send_times(15, MONDAY, OFFICE, BERLIN, rng) != first


# --- DST ---------------------------------------------------------------------------------

NIGHT = SendingWindow(start=time(1, 0), end=time(5, 0), weekdays=ALL_DAYS)

DST_DAYS = [
    # zone, day, true length of 01:00-05:00, nonexistent local hour (or None)
    (BERLIN, date(2026, 3, 29), timedelta(hours=3), (time(2, 0), time(3, 0))),
    (BERLIN, date(2026, 10, 25), timedelta(hours=5), None),
    (NEW_YORK, date(2026, 3, 8), timedelta(hours=3), (time(2, 0), time(3, 0))),
    (NEW_YORK, date(2026, 11, 1), timedelta(hours=5), None),
]


@pytest.mark.parametrize(("zone", "day", "length", "gap"), DST_DAYS)
def test_dst_window_has_true_length(
    zone: ZoneInfo, day: date, length: timedelta, gap: tuple[time, time] | None
) -> None:
    start, end = window_bounds(day, NIGHT, zone)
    assert end - start == length
    assert start.astimezone(zone).time() == time(1, 0)
    assert end.astimezone(zone).time() == time(5, 0)


@pytest.mark.parametrize(("zone", "day", "length", "gap"), DST_DAYS)
def test_dst_plan_fits_true_length(
    zone: ZoneInfo, day: date, length: timedelta, gap: tuple[time, time] | None
) -> None:
    min_gap = timedelta(minutes=10)
    fits = int(length / min_gap)
    for seed in range(20):
        times = plan_send_times(40, day, NIGHT, zone, random.Random(seed), min_gap=min_gap)
        assert len(times) == fits  # 18 on spring-forward days, 30 on fall-back days
        check_plan(times, day, NIGHT, zone, min_gap)
        if gap is not None:
            for t in times:
                assert not gap[0] <= t.astimezone(zone).time().replace(tzinfo=None) < gap[1]


@pytest.mark.parametrize(("zone", "day", "length", "gap"), DST_DAYS)
def test_dst_sparse_plan_spreads_and_avoids_round_times(
    zone: ZoneInfo, day: date, length: timedelta, gap: tuple[time, time] | None
) -> None:
    min_gap = timedelta(minutes=10)
    end = window_bounds(day, NIGHT, zone)[1]
    for seed in range(20):
        times = plan_send_times(8, day, NIGHT, zone, random.Random(seed), min_gap=min_gap)
        assert len(times) == 8
        check_plan(times, day, NIGHT, zone, min_gap)
        assert_not_round(times, zone)
        # stratified over the true length: the last send is in the last slice
        assert end - times[-1] <= length / 8
        if gap is not None:
            for t in times:
                assert not gap[0] <= t.astimezone(zone).time().replace(tzinfo=None) < gap[1]


def test_fall_back_uses_both_occurrences_of_repeated_hour() -> None:
    day = date(2026, 10, 25)
    times = plan_send_times(30, day, NIGHT, BERLIN, random.Random(3))
    in_repeated_hour = [t for t in times if t.astimezone(BERLIN).hour == 2]
    offsets = {t.astimezone(BERLIN).utcoffset() for t in in_repeated_hour}
    assert offsets == {timedelta(hours=2), timedelta(hours=1)}


@pytest.mark.parametrize(
    ("zone", "day", "at", "expected_utc"),
    [
        (BERLIN, date(2026, 3, 29), time(2, 0), datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
        (BERLIN, date(2026, 3, 29), time(2, 30), datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
        (BERLIN, date(2026, 3, 29), time(2, 59, 59), datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
        (NEW_YORK, date(2026, 3, 8), time(2, 30), datetime(2026, 3, 8, 7, 0, tzinfo=UTC)),
        (
            ZoneInfo("Australia/Lord_Howe"),
            date(2026, 10, 4),
            time(2, 10),
            datetime(2026, 10, 3, 15, 30, tzinfo=UTC),
        ),
    ],
)
def test_nonexistent_time_maps_just_after_gap(
    zone: ZoneInfo, day: date, at: time, expected_utc: datetime
) -> None:
    instant = local_instant(day, at, zone)
    assert instant == expected_utc
    local = instant.astimezone(zone)
    assert local.time() > at  # after the gap, never before it
    assert local.date() == day


@pytest.mark.parametrize(
    ("zone", "day", "at", "expected_utc"),
    [
        (BERLIN, date(2026, 10, 25), time(2, 30), datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
        (NEW_YORK, date(2026, 11, 1), time(1, 30), datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),
        (BERLIN, date(2026, 7, 1), time(12, 0), datetime(2026, 7, 1, 10, 0, tzinfo=UTC)),
    ],
)
def test_ambiguous_and_plain_times(
    zone: ZoneInfo, day: date, at: time, expected_utc: datetime
) -> None:
    assert local_instant(day, at, zone) == expected_utc  # ambiguous: first occurrence


def test_window_starting_inside_gap_starts_at_gap_end() -> None:
    window = SendingWindow(start=time(2, 30), end=time(4, 0), weekdays=ALL_DAYS)
    start, end = window_bounds(date(2026, 3, 29), window, BERLIN)
    assert start.astimezone(BERLIN).time() == time(3, 0)
    assert end - start == timedelta(hours=1)


def test_window_inside_gap_is_empty_not_inverted() -> None:
    window = SendingWindow(start=time(2, 15), end=time(2, 45), weekdays=ALL_DAYS)
    start, end = window_bounds(date(2026, 3, 29), window, BERLIN)
    assert start == end
    assert plan_send_times(5, date(2026, 3, 29), window, BERLIN, random.Random(1)) == []


@pytest.mark.parametrize("zone_name", ZONES)
@pytest.mark.parametrize(
    "day", [date(2026, 3, 8), date(2026, 3, 29), date(2026, 9, 27), date(2026, 10, 4)]
)
def test_local_instant_monotone(zone_name: str, day: date) -> None:
    zone = ZoneInfo(zone_name)
    previous = None
    for minute in range(0, 24 * 60, 5):
        instant = local_instant(day, time(minute // 60, minute % 60), zone)
        if previous is not None:
            assert instant >= previous
        previous = instant


# --- property ----------------------------------------------------------------------------


@st.composite
def windows(draw: st.DrawFn) -> SendingWindow:
    start = draw(st.integers(0, 86_398))
    end = draw(st.integers(start + 1, 86_399))
    weekdays = draw(st.frozensets(st.integers(0, 6), min_size=1))

    def as_time(s: int) -> time:
        return time(s // 3600, s // 60 % 60, s % 60)

    return SendingWindow(start=as_time(start), end=as_time(end), weekdays=weekdays)


DST_DATES = [d for _, d, _, _ in DST_DAYS] + [
    date(2026, 4, 5),
    date(2026, 10, 4),
    date(2026, 9, 27),
]


@settings(deadline=None, max_examples=250)
@given(
    count=st.integers(0, 80),
    day=st.sampled_from(DST_DATES) | st.dates(date(2025, 1, 1), date(2027, 12, 31)),
    window=windows(),
    zone_name=st.sampled_from(ZONES),
    gap_seconds=st.integers(0, 3_600),
    jitter=st.floats(0, 1, allow_nan=False),
    seed=st.integers(0, 2**32),
    blackout=st.sets(st.dates(date(2025, 1, 1), date(2027, 12, 31)), max_size=3),
)
def test_plan_invariants(
    count: int,
    day: date,
    window: SendingWindow,
    zone_name: str,
    gap_seconds: int,
    jitter: float,
    seed: int,
    blackout: set[date],
) -> None:
    zone = ZoneInfo(zone_name)
    gap = timedelta(seconds=gap_seconds)
    kw = {"min_gap": gap, "jitter": jitter, "blackout": blackout}
    times = plan_send_times(count, day, window, zone, random.Random(seed), **kw)  # type: ignore[arg-type]
    assert times == plan_send_times(count, day, window, zone, random.Random(seed), **kw)  # type: ignore[arg-type]
    if day.weekday() not in window.weekdays or day in blackout:
        assert times == []
        return
    start, end = window_bounds(day, window, zone)
    duration = (end - start).total_seconds()
    if gap_seconds:
        assert len(times) == min(max(count, 0), int(duration // gap_seconds))
    else:
        assert len(times) == (max(count, 0) if duration > 0 else 0)
    check_plan(times, day, window, zone, gap)
    # plenty of room on both sides of every send: no round local times
    if times and gap_seconds >= 600 and duration >= 4 * len(times) * gap_seconds:
        assert_not_round(times, zone)
