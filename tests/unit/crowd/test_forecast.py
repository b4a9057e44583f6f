"""The forecast (services/crowd/domain/forecast.py): persistence without history, the evening fountain show
in 8 weeks of history, working days against weekends and holidays, today's ratio and its fading,
the likely range, and validation.

The zone is 湖滨 (hubin) by the West Lake music fountain, capacity 10,000 (so an occupancy is also
its load in basis points), with default-style levels: III at 60%, II at 80%, I at 100%.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable, Iterable

import pytest

from services.crowd.domain.forecast import (
    DEFAULT_STEP_MINUTES,
    LOOKBACK_DAYS,
    Basis,
    ForecastPoint,
    forecast,
)
from services.crowd.domain.history import BUCKET, OccupancyBucket
from services.crowd.domain.zones import SHANGHAI, Level, ScheduleEntry
from tests.support.hubin import I_MEASURES, II_MEASURES, III_MEASURES, hubin

UTC = datetime.UTC
ONE_DAY = datetime.timedelta(days=1)
# Wednesday 12 June 2024; Saturday 15 June; Monday 17 June.
WEDNESDAY = datetime.date(2024, 6, 12)
SATURDAY = datetime.date(2024, 6, 15)
MONDAY = datetime.date(2024, 6, 17)


def show(valid_from: datetime.date | None = None, valid_to: datetime.date | None = None) -> ScheduleEntry:
    return ScheduleEntry(
        name="音乐喷泉",
        start_time=datetime.time(19, 0),
        duration=datetime.timedelta(minutes=30),
        iso_weekdays=frozenset(),
        valid_from=valid_from,
        valid_to=valid_to,
    )


def local(day: datetime.date, hour: int, minute: int = 0, second: int = 0) -> datetime.datetime:
    """An Asia/Shanghai wall-clock time, as UTC."""
    return datetime.datetime.combine(day, datetime.time(hour, minute, second), tzinfo=SHANGHAI).astimezone(UTC)


def history(
    before: datetime.date, occupancy: Callable[[datetime.date, datetime.time], int | None], days: int = LOOKBACK_DAYS
) -> list[OccupancyBucket]:
    """Buckets every 5 minutes over the ``days`` days before ``before``; None: no bucket."""
    buckets = []
    for back in range(1, days + 1):
        day = before - back * ONE_DAY
        midnight = local(day, 0)
        for index in range(24 * 60 // 5):
            start = midnight + index * BUCKET
            value = occupancy(day, start.astimezone(SHANGHAI).time())
            if value is not None:
                buckets.append(OccupancyBucket(start, value + 50, start + datetime.timedelta(minutes=1), value, value))
    return buckets


def by_time(points: Iterable[ForecastPoint]) -> dict[datetime.time, ForecastPoint]:
    return {point.at.astimezone(SHANGHAI).time(): point for point in points}


def evening(day: datetime.date, at: datetime.time) -> int:
    """3,000 people all day, 8,500 (level II) while the fountain plays, 19:00 to 19:30."""
    return 8_500 if datetime.time(19) <= at < datetime.time(19, 30) else 3_000


# --- persistence -------------------------------------------------------------------------------


def test_without_history_the_forecast_is_persistence_and_says_so() -> None:
    now = local(WEDNESDAY, 10, 3, 7)
    result = forecast(hubin(), now, 6_000, Level.NONE, [], 60, 5)
    assert result.basis is Basis.PERSISTENCE
    assert result.ratio_permille == 1000
    assert [point.at for point in result.points] == [now + datetime.timedelta(minutes=5 * k) for k in range(1, 13)]
    for point in result.points:
        assert (point.expected_occupancy, point.low_occupancy, point.high_occupancy) == (6_000, 6_000, 6_000)
        assert point.basis is Basis.PERSISTENCE and point.comparable_days == 0
        assert point.expected_load_bp == 6000 and point.expected_level is Level.III
        assert point.scheduled_event == ""
    assert result.peak == result.points[0]  # all equal: the earliest
    assert result.max_expected_level is Level.III
    # At the threshold the zone is expected at III: its measures, not yet in force at NONE.
    assert result.measures_to_prepare == III_MEASURES
    assert result.generated_at == now and result.zone_id == "hubin"


def test_expected_level_uses_entering_thresholds_at_their_exact_boundary() -> None:
    now = local(WEDNESDAY, 10)
    below = forecast(hubin(capacity=12_000), now, 7_199, Level.NONE, [], 5)  # 5999 bp
    at = forecast(hubin(capacity=12_000), now, 7_200, Level.NONE, [], 5)  # 6000 bp
    assert (below.peak.expected_load_bp, below.peak.expected_level) == (5999, Level.NONE)
    assert below.measures_to_prepare == ()
    assert (at.peak.expected_load_bp, at.peak.expected_level) == (6000, Level.III)
    full = forecast(hubin(), now, 10_000, Level.III, [], 5)
    assert full.max_expected_level is Level.I
    assert full.measures_to_prepare == II_MEASURES + I_MEASURES  # III's are in force already


# --- the evening fountain show -----------------------------------------------------------------


def test_eight_weeks_of_show_evenings_forecast_the_1900_peak_and_its_level_from_1830() -> None:
    config = hubin(schedule=(show(),))
    now = local(WEDNESDAY, 18, 30)
    result = forecast(config, now, 3_000, Level.NONE, history(WEDNESDAY, evening), 120, 5)
    assert len(result.points) == 24
    points = by_time(result.points)
    assert result.basis is Basis.HISTORY and result.ratio_permille == 1000
    # Working days of the 8 weeks before a Wednesday: 40.
    assert points[datetime.time(18, 55)].comparable_days == 40
    assert points[datetime.time(18, 55)].expected_occupancy == 3_000
    assert points[datetime.time(18, 55)].expected_level is Level.NONE
    assert points[datetime.time(18, 55)].scheduled_event == ""
    for minute in range(0, 30, 5):
        point = points[datetime.time(19, minute)]
        assert point.scheduled_event == "音乐喷泉 19:00"
        assert point.expected_occupancy > 8_000  # faded ratio 1000 keeps 8,500
        assert point.expected_level is Level.II
    assert points[datetime.time(19, 30)].scheduled_event == ""
    assert points[datetime.time(19, 30)].expected_level is Level.NONE
    assert result.peak.at == local(WEDNESDAY, 19)
    assert result.peak.expected_occupancy == 8_500
    assert result.peak.expected_load_bp == 8500
    assert result.max_expected_level is Level.II
    assert result.measures_to_prepare == III_MEASURES + II_MEASURES
    # Already at III: only II's measures remain to prepare.
    at_iii = forecast(config, now, 3_000, Level.III, history(WEDNESDAY, evening), 120, 5)
    assert at_iii.measures_to_prepare == II_MEASURES
    # Already at II: nothing.
    assert forecast(config, now, 3_000, Level.II, history(WEDNESDAY, evening), 120, 5).measures_to_prepare == ()


def test_show_evenings_compare_with_show_evenings_only() -> None:
    # The season opened 14 days ago: 10 working-day show evenings at 8,500, 30 evenings without
    # a show at 3,000. All 40 together would give a median of 3,000.
    opened = WEDNESDAY - 14 * ONE_DAY

    def occupancy(day: datetime.date, at: datetime.time) -> int:
        return evening(day, at) if day >= opened else 3_000

    config = hubin(schedule=(show(valid_from=opened),))
    result = forecast(config, local(WEDNESDAY, 18, 30), 3_000, Level.NONE, history(WEDNESDAY, occupancy), 60, 30)
    points = by_time(result.points)
    assert points[datetime.time(19)].comparable_days == 10
    assert points[datetime.time(19)].expected_occupancy == 8_500
    assert points[datetime.time(19)].expected_level is Level.II
    # 19:30 is after the show on every day: all 40 evenings.
    assert points[datetime.time(19, 30)].comparable_days == 40

    # The day after the season closed: no show tonight, so tonight compares with the evenings
    # without a show (the 30 before the season), not with the show evenings.
    closed = hubin(schedule=(show(valid_from=opened, valid_to=WEDNESDAY - ONE_DAY),))
    after = forecast(closed, local(WEDNESDAY, 18, 30), 3_000, Level.NONE, history(WEDNESDAY, occupancy), 60, 30)
    tonight = by_time(after.points)[datetime.time(19)]
    assert tonight.scheduled_event == ""
    assert tonight.comparable_days == 30
    assert tonight.expected_occupancy == 3_000
    assert after.max_expected_level is Level.NONE and after.measures_to_prepare == ()


def test_of_two_events_running_together_the_one_that_started_last_is_named() -> None:
    # A light show from 18:30 to 20:30, declared first, and the fountain from 19:00 to 19:30.
    lights = ScheduleEntry("灯光秀", datetime.time(18, 30), datetime.timedelta(hours=2), frozenset(), None, None)
    result = forecast(hubin(schedule=(lights, show())), local(WEDNESDAY, 18, 50), 0, Level.NONE, [], 45, 5)
    events = {at: point.scheduled_event for at, point in by_time(result.points).items()}
    assert events[datetime.time(18, 55)] == "灯光秀 18:30"
    assert events[datetime.time(19, 0)] == "音乐喷泉 19:00"
    assert events[datetime.time(19, 25)] == "音乐喷泉 19:00"
    assert events[datetime.time(19, 30)] == "灯光秀 18:30"


def test_a_point_between_bucket_starts_reads_the_bucket_containing_it() -> None:
    config = hubin(schedule=(show(),))
    now = local(WEDNESDAY, 18, 32, 30)
    result = forecast(config, now, 3_000, Level.NONE, history(WEDNESDAY, evening), 60, 5)
    points = by_time(result.points)
    assert points[datetime.time(18, 57, 30)].expected_occupancy == 3_000  # the 18:55 bucket
    assert points[datetime.time(19, 2, 30)].expected_occupancy == 8_500  # the 19:00 bucket
    assert points[datetime.time(19, 27, 30)].expected_occupancy == 8_500  # the 19:25 bucket
    assert points[datetime.time(19, 32, 30)].expected_occupancy == 3_000
    assert result.peak.at == local(WEDNESDAY, 19, 2, 30)


# --- working days, weekends and holidays -------------------------------------------------------


def weekly(day: datetime.date, at: datetime.time) -> int:
    return 7_000 if day.isoweekday() >= 6 else 2_000


def test_a_saturday_compares_with_weekends_and_a_monday_with_working_days() -> None:
    saturday = forecast(hubin(), local(SATURDAY, 12), 7_000, Level.III, history(SATURDAY, weekly), 30, 10)
    assert [point.expected_occupancy for point in saturday.points] == [7_000] * 3
    assert {point.comparable_days for point in saturday.points} == {16}
    monday = forecast(hubin(), local(MONDAY, 12), 2_000, Level.NONE, history(MONDAY, weekly), 30, 10)
    assert [point.expected_occupancy for point in monday.points] == [2_000] * 3
    assert {point.comparable_days for point in monday.points} == {40}


def test_the_day_type_is_each_points_own_across_midnight() -> None:
    friday = SATURDAY - ONE_DAY
    result = forecast(hubin(), local(friday, 23, 30), 2_000, Level.NONE, history(friday, weekly), 60, 15)
    assert [point.expected_occupancy for point in result.points] == [2_000, 7_000, 7_000, 7_000]
    assert result.max_expected_level is Level.III
    assert result.peak.at == local(SATURDAY, 0)


def test_is_holiday_decides_the_day_type_when_given() -> None:
    # 17 June is made a holiday and Sunday 9 June an adjusted working day.
    holiday, working_sunday = MONDAY, datetime.date(2024, 6, 9)

    def is_holiday(day: datetime.date) -> bool:
        return day == holiday or (day.isoweekday() >= 6 and day != working_sunday)

    def occupancy(day: datetime.date, at: datetime.time) -> int:
        return 7_000 if is_holiday(day) else 2_000

    buckets = history(MONDAY, occupancy)
    result = forecast(hubin(), local(MONDAY, 12), 7_000, Level.III, buckets, 10, 10, is_holiday)
    assert result.points[0].expected_occupancy == 7_000
    assert result.points[0].comparable_days == 15  # 16 weekend days less the working Sunday
    # Without the calendar, a Monday is a working day (and the working Sunday a weekend day).
    plain = forecast(hubin(), local(MONDAY, 12), 2_000, Level.NONE, buckets, 10, 10)
    assert plain.points[0].expected_occupancy == 2_000
    assert plain.points[0].comparable_days == 40


# --- today's ratio -----------------------------------------------------------------------------


def flat(day: datetime.date, at: datetime.time) -> int:
    return 4_000


def test_todays_ratio_scales_short_term_and_fades_over_three_hours() -> None:
    now = local(WEDNESDAY, 12)
    result = forecast(hubin(), now, 8_000, Level.III, history(WEDNESDAY, flat), 240, 30)
    assert result.ratio_permille == 2000
    # Per mille at lead 30: (2000*150 + 1000*30) // 180 = 1833; 60: 1666; 90: 1500; 120: 1333; 150: 1166;
    # 180 and later: 1000.
    assert [point.expected_occupancy for point in result.points] == [
        7_332,
        6_664,
        6_000,
        5_332,
        4_664,
        4_000,
        4_000,
        4_000,
    ]
    assert result.points[0].expected_level is Level.III
    assert result.max_expected_level is Level.III
    assert result.peak == result.points[0]


def test_todays_ratio_is_clamped_to_half_and_double() -> None:
    now = local(WEDNESDAY, 12)
    buckets = history(WEDNESDAY, flat)
    assert forecast(hubin(), now, 40_000, Level.I, buckets, 90, 30).ratio_permille == 2000
    assert forecast(hubin(), now, 8_004, Level.I, buckets, 90, 30).ratio_permille == 2000
    assert forecast(hubin(), now, 7_996, Level.I, buckets, 90, 30).ratio_permille == 1999
    assert forecast(hubin(), now, 2_000, Level.NONE, buckets, 90, 30).ratio_permille == 500
    assert forecast(hubin(), now, 2_004, Level.NONE, buckets, 90, 30).ratio_permille == 501
    low = forecast(hubin(), now, 100, Level.NONE, buckets, 90, 30)
    assert low.ratio_permille == 500
    assert low.points[-1].expected_occupancy == 3_000  # lead 90: (500*90 + 1000*90) // 180 = 750 per mille


def test_no_history_at_now_leaves_the_ratio_neutral() -> None:
    # History only from 13:00: nothing to compare 12:00 with.
    def afternoon(day: datetime.date, at: datetime.time) -> int | None:
        return 4_000 if at >= datetime.time(13) else None

    result = forecast(hubin(), local(WEDNESDAY, 12), 9_000, Level.II, history(WEDNESDAY, afternoon), 120, 30)
    assert result.ratio_permille == 1000
    assert [point.basis for point in result.points] == [Basis.PERSISTENCE, Basis.HISTORY] + [Basis.HISTORY] * 2
    assert [point.expected_occupancy for point in result.points] == [9_000, 4_000, 4_000, 4_000]
    assert result.basis is Basis.MIXED
    assert result.peak == result.points[0]


def test_days_without_the_bucket_are_skipped() -> None:
    def every_other_day(day: datetime.date, at: datetime.time) -> int | None:
        return 5_000 if day.toordinal() % 2 else None

    result = forecast(hubin(), local(WEDNESDAY, 12), 5_000, Level.NONE, history(WEDNESDAY, every_other_day), 5, 5)
    assert result.points[0].comparable_days == 20
    assert result.points[0].expected_occupancy == 5_000


def test_history_older_than_eight_weeks_is_not_used() -> None:
    old = [
        bucket
        for bucket in history(WEDNESDAY, flat, days=LOOKBACK_DAYS + 7)
        if bucket.start < local(WEDNESDAY - LOOKBACK_DAYS * ONE_DAY, 0)
    ]
    assert old
    result = forecast(hubin(), local(WEDNESDAY, 12), 1_234, Level.NONE, old, 5, 5)
    assert result.basis is Basis.PERSISTENCE
    assert result.points[0].expected_occupancy == 1_234


# --- the likely range --------------------------------------------------------------------------


def test_low_and_high_are_the_10th_and_90th_nearest_rank_percentiles() -> None:
    # 40 working days, each with its own occupancy at every time: 1,000, 1,100, .. 4,900.
    days = [WEDNESDAY - back * ONE_DAY for back in range(1, LOOKBACK_DAYS + 1)]
    rank = {day: index for index, day in enumerate(day for day in days if day.isoweekday() < 6)}

    def spread(day: datetime.date, at: datetime.time) -> int | None:
        return 1_000 + 100 * rank[day] if day in rank else None

    buckets = history(WEDNESDAY, spread)
    # current 2,900 is the median (rank 20 of 40): ratio 1000.
    result = forecast(hubin(), local(WEDNESDAY, 12), 2_900, Level.NONE, buckets, 10, 5)
    assert result.ratio_permille == 1000
    point = result.points[0]
    assert (point.low_occupancy, point.expected_occupancy, point.high_occupancy) == (1_300, 2_900, 4_500)
    # Scaled by today's ratio like the expectation: current 5,800 gives 2000, at lead 5: 1972 per mille.
    scaled = forecast(hubin(), local(WEDNESDAY, 12), 5_800, Level.NONE, buckets, 10, 5).points[0]
    assert (scaled.low_occupancy, scaled.expected_occupancy, scaled.high_occupancy) == (
        1_300 * 1972 // 1000,
        2_900 * 1972 // 1000,
        4_500 * 1972 // 1000,
    )


def test_low_never_exceeds_expected_nor_expected_high() -> None:
    rng = random.Random(20240612)
    noise = {day: rng.randint(0, 9_000) for day in (WEDNESDAY - back * ONE_DAY for back in range(1, 57))}

    def noisy(day: datetime.date, at: datetime.time) -> int | None:
        if rng.random() < 0.1:
            return None
        return max(0, noise[day] + rng.randint(-2_000, 2_000) + (4_000 if at.hour >= 19 else 0))

    buckets = history(WEDNESDAY, noisy)
    for current in (0, 1, 2_500, 9_999, 30_000):
        result = forecast(hubin(schedule=(show(),)), local(WEDNESDAY, 17, 3), current, Level.NONE, buckets, 300, 7)
        for point in result.points:
            assert 0 <= point.low_occupancy <= point.expected_occupancy <= point.high_occupancy
        assert result.peak.expected_occupancy == max(point.expected_occupancy for point in result.points)


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("horizon", "step", "message"),
    [
        (0, 5, "horizon_minutes must be from 1 to 1440"),
        (1441, 5, "horizon_minutes must be from 1 to 1440"),
        (True, 1, "horizon_minutes must be from 1 to 1440"),
        (60, 0, "step_minutes must be from 1 to 60"),
        (120, 61, "step_minutes must be from 1 to 60"),
        (4, 5, "step_minutes must not exceed horizon_minutes"),
    ],
)
def test_horizon_and_step_are_validated(horizon: int, step: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        forecast(hubin(), local(WEDNESDAY, 12), 0, Level.NONE, [], horizon, step)


def test_the_extreme_horizons_and_steps_are_accepted() -> None:
    now = local(WEDNESDAY, 12)
    assert len(forecast(hubin(), now, 0, Level.NONE, [], 1, 1).points) == 1
    assert len(forecast(hubin(), now, 0, Level.NONE, [], 1440, 60).points) == 24
    assert len(forecast(hubin(), now, 0, Level.NONE, [], 1440, 1).points) == 1440
    # The last point falls on or before the horizon: 62 minutes at step 5 gives 12 points.
    last = forecast(hubin(), now, 0, Level.NONE, [], 62, DEFAULT_STEP_MINUTES).points[-1]
    assert last.at == now + datetime.timedelta(minutes=60)


def test_other_inputs_are_validated() -> None:
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        forecast(hubin(), datetime.datetime(2024, 6, 12, 12), 0, Level.NONE, [], 60)
    with pytest.raises(TypeError, match="now must be an aware datetime"):
        forecast(hubin(), WEDNESDAY, 0, Level.NONE, [], 60)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"capacity must be positive \(got 0\)"):
        forecast(hubin(capacity=0), local(WEDNESDAY, 12), 0, Level.NONE, [], 60)
    with pytest.raises(ValueError, match="current_occupancy must be a non-negative int"):
        forecast(hubin(), local(WEDNESDAY, 12), -1, Level.NONE, [], 60)
    unaligned = OccupancyBucket(local(WEDNESDAY, 11, 1), 10, local(WEDNESDAY, 11, 1), 10, 10)
    with pytest.raises(ValueError, match=r"buckets\[0\]\.start must be aligned"):
        forecast(hubin(), local(WEDNESDAY, 12), 0, Level.NONE, [unaligned], 60)


def test_todays_own_buckets_are_not_a_comparable_day() -> None:
    # Today's buckets so far (the store may hand them over) are what today's ratio already
    # measures; the comparable days are the 8 weeks before today.
    tuesday = WEDNESDAY - ONE_DAY
    now = local(tuesday, 23, 30)
    today = [
        OccupancyBucket(start, 9_000, start, 9_000, 9_000)
        for start in (local(tuesday, 0) + i * BUCKET for i in range(282))
    ]
    result = forecast(hubin(), now, 4_000, Level.NONE, history(tuesday, flat) + today, 60, 30)
    assert result.ratio_permille == 1000
    assert [point.comparable_days for point in result.points] == [40, 40]
    assert [point.expected_occupancy for point in result.points] == [4_000, 4_000]
