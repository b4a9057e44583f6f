"""The Hubin fountain model: calibrated on the seed story (a few thousand on ordinary days, tens of
thousands on holidays, level II on about 36 days a year), exact gate arithmetic, sensors that read
what they should, faults at their rates, and the same seed giving the same world."""

from __future__ import annotations

import collections
import datetime
import itertools
import statistics
from collections.abc import Iterable

import pytest

from services.crowd.domain.zones import SensorKind
from services.crowd.tools import demand
from services.crowd.tools.demand import DayKind, Faults, Reading, SimulatedDay, TrueDay, Weather

D = datetime.date
UTC = datetime.UTC
SEED = 2019
LEVEL_II = demand.CAPACITY * 8_000 // 10_000


def over_level_ii(days: Iterable[TrueDay]) -> list[TrueDay]:
    return [d for d in days if d.peak * 10_000 >= 8_000 * demand.CAPACITY]


@pytest.fixture(scope="module")
def year_2019() -> list[TrueDay]:
    return list(demand.truth(D(2019, 1, 1), 365, SEED))


@pytest.fixture(scope="module")
def perfect_month() -> list[SimulatedDay]:
    """July-August 2019 without faults: three shows a day, the biggest flows."""
    return list(demand.simulate(D(2019, 7, 1), 62, SEED, "hubin", demand.NO_FAULTS))


@pytest.fixture(scope="module")
def faulty_year() -> list[SimulatedDay]:
    """2019 with the default faults."""
    return list(demand.simulate(D(2019, 1, 1), 365, SEED, "hubin"))


# -- calibration -------------------------------------------------------------------------------------------


def test_level_ii_is_reached_on_about_36_days_of_2019(year_2019: list[TrueDay]) -> None:
    over = over_level_ii(year_2019)
    assert 25 <= len(over) <= 50, len(over)
    # All of Golden Week's busy days, and summer weekends, are among them; no ordinary working day is.
    national = [d for d in year_2019 if d.plan.calendar.holiday == "National Day"]
    assert len(national) == 7
    assert max(d.peak for d in national) > demand.CAPACITY * 9 // 10
    assert sum(d in over for d in national) >= 5
    summer_rest = [d for d in over if d.date.month in (7, 8) and d.plan.calendar.kind is DayKind.REST_DAY]
    assert len(summer_rest) >= 5
    assert not [d for d in over if d.plan.calendar.kind is DayKind.WORKDAY and d.date.isoweekday() <= 4]


def test_level_ii_days_hold_for_the_365_days_ending_2026_11_26_and_for_other_seeds() -> None:
    counts = [len(over_level_ii(demand.truth(D(2025, 11, 27), 365, seed))) for seed in (SEED, 1, 2, 3)]
    counts += [len(over_level_ii(demand.truth(D(2019, 1, 1), 365, seed))) for seed in (1, 2, 3)]
    assert all(25 <= n <= 50 for n in counts), counts
    assert 30 <= statistics.mean(counts) <= 45, counts


def test_ordinary_days_peak_at_a_few_thousand_and_winter_weekdays_at_about_a_thousand(
    year_2019: list[TrueDay],
) -> None:
    ordinary = [d for d in year_2019 if d.plan.calendar.kind is DayKind.WORKDAY and d.date.isoweekday() <= 4]
    january = [d.peak for d in ordinary if d.date.month == 1]
    assert max(january) < 4_000
    assert 1_000 <= statistics.median(january) <= 2_500  # 一千余人 off-season
    assert min(january) >= 300
    season = [d.peak for d in ordinary if 4 <= d.date.month <= 10]
    assert 3_000 <= statistics.median(season) <= 8_000
    assert max(season) < 12_000
    assert max(d.peak for d in year_2019) >= demand.CAPACITY  # tens of thousands at the top: level I


def test_the_2019_national_day_holiday_peaks_above_ninety_percent_and_golden_week_beats_an_ordinary_week(
    year_2019: list[TrueDay],
) -> None:
    by_date = {d.date: d for d in year_2019}
    golden = [by_date[D(2019, 10, n)].peak for n in range(1, 8)]
    assert max(golden) * 10 > demand.CAPACITY * 9
    later = [by_date[D(2019, 10, n)].peak for n in range(21, 25)]  # Monday-Thursday
    assert min(golden[:5]) > max(later)


def test_a_clear_days_peak_is_at_a_show_and_the_crowd_gathers_before_and_disperses_after() -> None:
    day = demand.true_day(SEED, D(2019, 10, 2))
    assert day.plan.weather is Weather.CLEAR and day.plan.shows == (datetime.time(19), datetime.time(20))
    local = {t.astimezone(demand.SHANGHAI).strftime("%H:%M"): n for t, n in zip(day.times, day.occupancy, strict=True)}
    assert day.peak_at.astimezone(demand.SHANGHAI).strftime("%H:%M") in ("20:00", "20:05", "20:10", "20:15")
    assert local["19:30"] < local["19:45"] < local["19:55"] < local["20:05"]  # gathering for 20:00
    assert local["20:40"] < local["20:15"] * 3 // 4  # dispersed within 20 minutes of the end
    assert local["04:00"] < day.peak // 20  # a quiet night
    assert local["09:00"] < local["15:00"] < local["18:30"]  # morning, afternoon strolling, evening rise


def test_a_storm_cancels_the_shows_and_rain_cuts_the_crowd() -> None:
    plans = [demand.day_plan(SEED, D(2019, 1, 1) + datetime.timedelta(days=n)) for n in range(365 * 3)]
    storms = [p for p in plans if p.weather is Weather.STORM]
    assert storms and all(p.shows == () for p in storms)
    day = demand.true_day(SEED, storms[0].calendar.date)
    assert day.peak < day.plan.scale  # no show lifts it to its scale
    rainy = [p.scale for p in plans if p.weather is Weather.RAIN and p.calendar.kind is DayKind.WORKDAY]
    clear = [p.scale for p in plans if p.weather is Weather.CLEAR and p.calendar.kind is DayKind.WORKDAY]
    assert statistics.mean(rainy) < statistics.mean(clear) * 0.8
    # The wettest month is June (plum rains).
    june = [p for p in plans if p.calendar.date.month == 6]
    october = [p for p in plans if p.calendar.date.month == 10]
    assert sum(p.weather is Weather.RAIN for p in june) > sum(p.weather is Weather.RAIN for p in october)


def test_midnight_is_continuous() -> None:
    days = list(demand.truth(D(2019, 9, 28), 10, SEED))
    for before, after in itertools.pairwise(days):
        assert abs(after.occupancy[0] - before.occupancy[-1]) <= max(100, before.occupancy[-1] // 5)


# -- the calendar and the schedule ---------------------------------------------------------------------------


def test_the_official_calendar_with_holidays_and_adjusted_working_weekends() -> None:
    assert demand.calendar_day(D(2019, 10, 1)) == demand.CalendarDay(
        D(2019, 10, 1), DayKind.HOLIDAY, "National Day", True
    )
    assert demand.calendar_day(D(2019, 10, 5)).kind is DayKind.HOLIDAY  # a Saturday within the holiday
    assert demand.calendar_day(D(2019, 9, 29)).kind is DayKind.WORKDAY  # an adjusted working Sunday
    assert demand.calendar_day(D(2019, 10, 12)).kind is DayKind.WORKDAY  # an adjusted working Saturday
    assert demand.calendar_day(D(2019, 10, 13)).kind is DayKind.REST_DAY
    assert demand.calendar_day(D(2019, 10, 13)).rest and not demand.calendar_day(D(2019, 10, 12)).rest
    assert demand.calendar_day(D(2019, 10, 14)).kind is DayKind.WORKDAY


def test_years_the_calendar_does_not_know_fall_back_to_weekends() -> None:
    assert demand.calendar_day(D(2026, 12, 31)).calendar_known
    friday, saturday = demand.calendar_day(D(2027, 1, 1)), demand.calendar_day(D(2027, 1, 2))
    assert not friday.calendar_known and friday.kind is DayKind.WORKDAY  # New Year's Day, unknown
    assert not saturday.calendar_known and saturday.kind is DayKind.REST_DAY
    assert demand.calendar_day(D(2027, 10, 1)).kind is DayKind.WORKDAY  # no National Day without the data


def test_the_fountain_plays_at_19_and_20_and_at_21_in_the_summer_holidays() -> None:
    two = (datetime.time(19), datetime.time(20))
    assert demand.shows_on(D(2019, 6, 30)) == two
    assert demand.shows_on(D(2019, 7, 1)) == (*two, datetime.time(21))
    assert demand.shows_on(D(2019, 8, 31)) == (*two, datetime.time(21))
    assert demand.shows_on(D(2019, 9, 1)) == two


def test_the_schedule_entries_cover_each_summer_the_days_touch() -> None:
    year = demand.fountain_schedule(D(2019, 1, 1), D(2019, 12, 31))
    assert [e.name for e in year] == ["音乐喷泉 19:00", "音乐喷泉 20:00", "音乐喷泉 21:00 暑期"]
    assert all(e.duration == datetime.timedelta(minutes=15) and not e.iso_weekdays for e in year)
    assert (year[2].valid_from, year[2].valid_to) == (D(2019, 7, 1), D(2019, 8, 31))
    assert year[0].valid_from is None and year[0].valid_to is None
    assert len(demand.fountain_schedule(D(2019, 9, 1), D(2020, 6, 30))) == 2  # between two summers
    assert len(demand.fountain_schedule(D(2019, 8, 31), D(2019, 8, 31))) == 3  # the summer's last day
    assert len(demand.fountain_schedule(D(2019, 9, 1), D(2019, 9, 1))) == 2  # the day after
    assert len(demand.fountain_schedule(D(2018, 1, 1), D(2019, 12, 31))) == 4
    with pytest.raises(ValueError, match="last"):
        demand.fountain_schedule(D(2019, 2, 1), D(2019, 1, 31))


# -- the sensors -------------------------------------------------------------------------------------------


def test_the_layout_is_seven_gates_two_cameras_and_a_phone_estimate_prefixed_with_the_zone() -> None:
    layout = demand.sensors("sim_hubin_20261127120000")
    kinds = collections.Counter(s.kind for s in layout)
    assert kinds == {SensorKind.GATE_COUNTER: 7, SensorKind.CAMERA: 2, SensorKind.PHONE_SIGNAL: 1}
    assert all(s.sensor_id.startswith("sim_hubin_20261127120000-") for s in layout)
    assert len({s.sensor_id for s in layout}) == 10
    assert [s.kind for s in layout[:7]] == [SensorKind.GATE_COUNTER] * 7


def test_gate_deltas_sum_to_the_change_of_true_occupancy_at_every_step(perfect_month: list[SimulatedDay]) -> None:
    previous = 0  # the counters start at zero with the window
    for day in perfect_month:
        by_time: dict[datetime.datetime, int] = collections.defaultdict(int)
        for r in day.readings:
            if r.kind is SensorKind.GATE_COUNTER:
                assert r.delta is not None and r.absolute_count is None
                by_time[r.observed_at] += r.delta
        assert len(by_time) == demand.STEPS_PER_DAY
        for at, now in zip(day.truth.times, day.truth.occupancy, strict=True):
            assert by_time[at] == now - previous, (at, by_time[at], now, previous)
            previous = now
    # Gates see people both ways: at some steps some gates count a net outflow while the zone fills.
    mixed = [
        r
        for r in perfect_month[10].readings
        if r.kind is SensorKind.GATE_COUNTER and r.delta is not None and r.delta < 0
    ]
    assert mixed


def test_without_faults_every_sensor_reads_every_step_in_order_with_sequences_from_one(
    perfect_month: list[SimulatedDay],
) -> None:
    readings = [r for day in perfect_month for r in day.readings]
    assert len(readings) == 62 * demand.STEPS_PER_DAY * 10
    per_sensor: dict[str, list[Reading]] = collections.defaultdict(list)
    for r in readings:
        per_sensor[r.sensor_id].append(r)
    for sensor_readings in per_sensor.values():
        assert [r.sequence for r in sensor_readings] == list(range(1, 62 * demand.STEPS_PER_DAY + 1))
        times = [r.observed_at for r in sensor_readings]
        assert all(b - a == demand.STEP for a, b in itertools.pairwise(times))
    first = perfect_month[0].readings[0]
    assert first.observed_at == datetime.datetime(2019, 6, 30, 16, 0, tzinfo=UTC)  # local midnight, 1 July
    assert first.observed_at.utcoffset() == datetime.timedelta(0)
    assert all(day.faults == demand.FaultCounts() and day.resent == () for day in perfect_month)


def test_cameras_count_within_five_percent_and_undercount_at_night_and_the_phone_estimate_is_coarse(
    perfect_month: list[SimulatedDay],
) -> None:
    night_ratios = []
    previous_day_end: int | None = None  # the window's first reading has nothing to lag behind
    for day in perfect_month[:20]:
        truth = dict(zip(day.truth.times, day.truth.occupancy, strict=True))
        earlier = {t + demand.STEP: n for t, n in truth.items()}
        for r in day.readings:
            if r.kind is SensorKind.GATE_COUNTER:
                continue
            assert r.absolute_count is not None and r.delta is None and r.absolute_count >= 0
            hour = r.observed_at.astimezone(demand.SHANGHAI).hour
            true = truth[r.observed_at]
            if r.kind is SensorKind.CAMERA:
                dim = 0.85 if hour >= 23 or hour < 5 else 1.0
                assert abs(r.absolute_count - true * dim) <= true * dim * 0.05 + 1
                if dim < 1 and true >= 200:
                    night_ratios.append(r.absolute_count / true)
            else:
                assert r.absolute_count % 50 == 0
                lagged = earlier.get(r.observed_at, previous_day_end if previous_day_end is not None else true)
                assert abs(r.absolute_count - lagged) <= lagged * 0.10 + 25
        previous_day_end = day.truth.occupancy[-1]
    assert night_ratios and max(night_ratios) < 0.9


# -- faults --------------------------------------------------------------------------------------------------


def test_faults_withhold_resend_and_reorder_but_never_change_a_value() -> None:
    often = Faults(
        gate_silence_per_day=0.2,
        camera_silence_per_day=0.3,
        phone_silence_per_day=0.3,
        duplicate_rate=0.01,
        out_of_order_rate=0.01,
    )
    faulty = list(demand.simulate(D(2019, 4, 1), 30, SEED, "hubin", often))
    perfect = {
        (r.sensor_id, r.sequence): r
        for day in demand.simulate(D(2019, 4, 1), 30, SEED, "hubin", demand.NO_FAULTS)
        for r in day.readings
    }
    delivered = [r for day in faulty for r in day.readings]
    withheld = sum(d.faults.withheld for d in faulty)
    duplicates = sum(d.faults.duplicates for d in faulty)
    late = sum(d.faults.out_of_order for d in faulty)
    assert withheld and duplicates and late
    assert len(delivered) == len(perfect) - withheld + duplicates
    assert all(perfect[(r.sensor_id, r.sequence)] == r for r in delivered)  # same values, times, kinds
    counts = collections.Counter((r.sensor_id, r.sequence) for r in delivered)
    assert sum(n - 1 for n in counts.values()) == duplicates
    assert len(perfect) - len(counts) == withheld
    # The positions of re-sends are exactly the second deliveries.
    seen: set[tuple[str, int]] = set()
    for day in faulty:
        resent = set(day.resent)
        for index, r in enumerate(day.readings):
            key = (r.sensor_id, r.sequence)
            assert (index in resent) == (key in seen)
            seen.add(key)
    # Out of order: a late reading arrives after the same sensor's next one (unless that one was withheld).
    inversions = 0
    highest: dict[str, int] = {}
    firsts: set[tuple[str, int]] = set()
    for r in delivered:
        if (r.sensor_id, r.sequence) in firsts:
            continue
        firsts.add((r.sensor_id, r.sequence))
        if r.sequence < highest.get(r.sensor_id, 0):
            inversions += 1
        highest[r.sensor_id] = max(highest.get(r.sensor_id, 0), r.sequence)
    assert late * 9 // 10 <= inversions <= late


def test_the_default_fault_rates_over_a_year(faulty_year: list[SimulatedDay]) -> None:
    readings = sum(len(d.readings) for d in faulty_year)
    duplicates = sum(d.faults.duplicates for d in faulty_year)
    late = sum(d.faults.out_of_order for d in faulty_year)
    withheld = sum(d.faults.withheld for d in faulty_year)
    assert readings == 365 * demand.STEPS_PER_DAY * 10 - withheld + duplicates
    # 0.1% re-sent and 0.1% late of about a million readings; silences are rare.
    assert 700 <= duplicates <= 1_400, duplicates
    assert 700 <= late <= 1_400, late
    assert 100 <= withheld <= 2_000, withheld
    assert sum(len(d.resent) for d in faulty_year) == duplicates


def test_gate_silences_are_short_and_rare(faulty_year: list[SimulatedDay]) -> None:
    delivered: dict[str, set[int]] = collections.defaultdict(set)
    for day in faulty_year:
        for r in day.readings:
            if r.kind is SensorKind.GATE_COUNTER:
                delivered[r.sensor_id].add(r.sequence)
    total = 365 * demand.STEPS_PER_DAY
    gaps = []
    for sequences in delivered.values():
        run = 0
        for n in range(1, total + 1):
            if n in sequences:
                if run:
                    gaps.append(run)
                run = 0
            else:
                run += 1
    assert gaps and len(gaps) <= 40  # 7 gates x 365 days x 0.5%: about 13
    assert max(gaps) <= 6  # at most 30 minutes


def test_a_silence_or_lateness_spans_a_day_boundary_only_by_delivery_and_the_window_end_flushes() -> None:
    faults = Faults(duplicate_rate=0.2, out_of_order_rate=0.2)
    days = list(demand.simulate(D(2019, 5, 1), 2, SEED, "hubin", faults))
    perfect = [r for d in demand.simulate(D(2019, 5, 1), 2, SEED, "hubin", demand.NO_FAULTS) for r in d.readings]
    delivered = [r for d in days for r in d.readings]
    withheld = sum(d.faults.withheld for d in days)
    assert len({(r.sensor_id, r.sequence) for r in delivered}) == len(perfect) - withheld
    # Some of day one's readings were delivered with day two's (held over midnight).
    first_day_end = days[0].truth.times[-1]
    assert any(r.observed_at <= first_day_end for r in days[1].readings)


def test_fault_rates_are_checked() -> None:
    with pytest.raises(ValueError, match="duplicate_rate"):
        Faults(duplicate_rate=1.5)
    with pytest.raises(ValueError, match="out_of_order_rate"):
        Faults(out_of_order_rate=-0.1)
    with pytest.raises(ValueError, match="gate_silence_steps"):
        Faults(gate_silence_steps=(0, 3))
    with pytest.raises(ValueError, match="camera_silence_steps"):
        Faults(camera_silence_steps=(5, 4))
    assert Faults(duplicate_rate=1.0, gate_silence_steps=(1, demand.STEPS_PER_DAY)).duplicate_rate == 1.0


# -- determinism and arguments -----------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_world_and_a_day_does_not_depend_on_its_window() -> None:
    a = list(demand.simulate(D(2019, 10, 1), 3, SEED, "hubin"))
    b = list(demand.simulate(D(2019, 10, 1), 3, SEED, "hubin"))
    assert [d.readings for d in a] == [d.readings for d in b]
    other = list(demand.simulate(D(2019, 10, 1), 3, SEED + 1, "hubin"))
    assert [d.truth.occupancy for d in a] != [d.truth.occupancy for d in other]
    longer = list(demand.truth(D(2019, 9, 1), 31, SEED))
    assert longer[-1].date == D(2019, 10, 1) and longer[-1].occupancy == a[0].truth.occupancy


def test_a_year_holds_over_a_million_readings(faulty_year: list[SimulatedDay]) -> None:
    # How long a year takes to generate is not asserted: a timed assert fails on a busy machine
    # (20.8 s once, 3-4 s alone), and speed belongs to the benchmarks.
    assert sum(len(d.readings) for d in faulty_year) > 1_000_000


def test_bad_arguments_name_the_field() -> None:
    with pytest.raises(ValueError, match="days"):
        demand.simulate(D(2019, 1, 1), 0, SEED)
    with pytest.raises(TypeError, match="start"):
        demand.simulate(datetime.datetime(2019, 1, 1, tzinfo=UTC), 1, SEED)
    with pytest.raises(TypeError, match="seed"):
        demand.truth(D(2019, 1, 1), 1, "7")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="zone_id"):
        demand.simulate(D(2019, 1, 1), 1, SEED, "")
    with pytest.raises(TypeError, match="faults"):
        demand.simulate(D(2019, 1, 1), 1, SEED, "hubin", {})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="date"):
        demand.calendar_day("2019-01-01")
    assert len(list(demand.simulate(D(2019, 1, 1), 1, SEED))) == 1
