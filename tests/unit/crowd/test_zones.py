"""A zone's configuration (services/crowd/domain/zones.py): defaults, every validation rule with its
contract field path and at its exact bounds, several problems reported together, the measures in
force at each level, and which show of the schedule runs when (midnight, season, weekday).

The zone is West Lake's 湖滨 (Hubin) lakeside by the music fountain, whose evening shows draw the
crowd; the fountain runs from spring to autumn, with a late show on Saturdays."""

from __future__ import annotations

import dataclasses
import datetime
import zoneinfo
from typing import Any

import pytest

from services.crowd.domain.zones import (
    DEFAULT_HYSTERESIS_BP,
    DEFAULT_LEVELS,
    DEFAULT_MIN_DWELL,
    DEFAULT_SILENCE_AFTER,
    MAX_SCHEDULE_ENTRIES,
    SHANGHAI,
    FieldProblem,
    Level,
    LevelRule,
    Measure,
    RawScheduleEntry,
    ScheduleEntry,
    ZoneConfig,
    ZoneProblem,
    aware_utc,
    build_zone,
    format_local_time,
    is_int,
    local_instant,
    measures_in_force,
    parse_local_time,
    parse_season_date,
    schedule_occurrences,
    schedule_running,
    threshold_bp,
)

UTC = datetime.UTC
US = datetime.timedelta(microseconds=1)
MINUTE = datetime.timedelta(minutes=1)
HOUR = datetime.timedelta(hours=1)

EVENING_SHOW = RawScheduleEntry("音乐喷泉 19:00", "19:00", 15 * MINUTE, (), "2024-04-01", "2024-10-31")
LATE_SHOW = RawScheduleEntry("周六夜场", "23:30", HOUR, (6,), "", "2024-08-31")

BASE: dict[str, Any] = {
    "zone_id": "hubin",
    "name_zh": "湖滨",
    "name_en": "Hubin lakeside",
    "capacity": 60_000,
}


def zone(**overrides: Any) -> ZoneConfig:
    return build_zone(**{**BASE, **overrides})


def problems_of(**overrides: Any) -> list[FieldProblem]:
    with pytest.raises(ZoneProblem) as caught:
        zone(**overrides)
    return list(caught.value.problems)


def fields_of(**overrides: Any) -> list[str]:
    return [problem.field for problem in problems_of(**overrides)]


def levels(
    t3: int = 6_000, t2: int = 8_000, t1: int = 10_000
) -> list[tuple[Level | None, int, tuple[Measure | None, ...]]]:
    return [
        (Level.III, t3, (Measure.ANNOUNCE,)),
        (Level.II, t2, (Measure.BARRIERS_UP,)),
        (Level.I, t1, (Measure.ENTRY_CLOSED,)),
    ]


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime.datetime:
    return datetime.datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


# --- defaults ---------------------------------------------------------------------------------


def test_defaults_are_the_contract_and_guideline_defaults() -> None:
    assert [(rule.level, rule.threshold_bp) for rule in DEFAULT_LEVELS] == [
        (Level.III, 6_000),
        (Level.II, 8_000),
        (Level.I, 10_000),
    ]
    assert (DEFAULT_HYSTERESIS_BP, DEFAULT_MIN_DWELL, DEFAULT_SILENCE_AFTER) == (
        500,
        datetime.timedelta(minutes=10),
        datetime.timedelta(minutes=5),
    )
    # LB/T 034-2014 at 80%: announce (in force from III), stop ticket sales, start the emergency plan.
    at_ii = measures_in_force(zone(), Level.II)
    for measure in (Measure.ANNOUNCE, Measure.TICKET_SALES_STOP, Measure.EMERGENCY_PLAN):
        assert measure in at_ii
    assert Measure.NAVIGATION_AREA_FULL not in measures_in_force(zone(), Level.III)
    assert Measure.ENTRY_CLOSED not in at_ii
    # Every measure of the contract is used by some default level, and only once.
    declared = [measure for rule in DEFAULT_LEVELS for measure in rule.measures]
    assert sorted(declared, key=lambda m: m.value) == sorted(Measure, key=lambda m: m.value)


def test_minimal_zone_takes_every_default() -> None:
    config = zone()
    assert config == ZoneConfig(
        zone_id="hubin",
        name_zh="湖滨",
        name_en="Hubin lakeside",
        capacity=60_000,
        levels=DEFAULT_LEVELS,
        hysteresis_bp=500,
        min_dwell=datetime.timedelta(minutes=10),
        silence_after=datetime.timedelta(minutes=5),
        schedule=(),
    )


def test_zero_values_take_the_defaults_as_proto3_unset_fields_do() -> None:
    config = zone(levels=[], hysteresis_bp=0, min_dwell=datetime.timedelta(0), silence_after=datetime.timedelta(0))
    assert config.levels == DEFAULT_LEVELS
    assert config.hysteresis_bp == DEFAULT_HYSTERESIS_BP
    assert config.min_dwell == DEFAULT_MIN_DWELL
    assert config.silence_after == DEFAULT_SILENCE_AFTER


def test_name_en_is_optional() -> None:
    assert zone(name_en=None).name_en == ""
    assert zone(name_en="").name_en == ""


def test_explicit_values_are_kept() -> None:
    config = zone(
        levels=levels(5_000, 7_000, 9_000),
        hysteresis_bp=1,
        min_dwell=US,
        silence_after=datetime.timedelta(seconds=10),
        schedule=[EVENING_SHOW],
    )
    assert [rule.threshold_bp for rule in config.levels] == [5_000, 7_000, 9_000]
    assert config.levels[1] == LevelRule(Level.II, 7_000, (Measure.BARRIERS_UP,))
    assert (config.hysteresis_bp, config.min_dwell, config.silence_after) == (1, US, datetime.timedelta(seconds=10))
    assert config.schedule == (
        ScheduleEntry(
            "音乐喷泉 19:00",
            datetime.time(19, 0),
            15 * MINUTE,
            frozenset(),
            datetime.date(2024, 4, 1),
            datetime.date(2024, 10, 31),
        ),
    )


def test_level_rules_tuples_schedule_entries_and_raw_tuples_give_the_same_zone() -> None:
    from_tuples = zone(levels=levels(), schedule=[EVENING_SHOW, tuple(LATE_SHOW)])
    from_objects = zone(levels=list(from_tuples.levels), schedule=list(from_tuples.schedule))
    assert from_objects == from_tuples
    assert from_tuples.schedule[1].iso_weekdays == frozenset({6})
    assert from_tuples.schedule[1].valid_from is None


# --- validation: every rule, with its field path ----------------------------------------------


@pytest.mark.parametrize("zone_id", ["ab", "hubin", "west_lake_2", "a" + "b" * 62])
def test_zone_id_accepted(zone_id: str) -> None:
    assert zone(zone_id=zone_id).zone_id == zone_id


@pytest.mark.parametrize("zone_id", ["", "a", "Hubin", "1hubin", "_hubin", "hu-bin", "hubin\n", "湖滨", "a" * 64, None])
def test_zone_id_refused(zone_id: object) -> None:
    assert fields_of(zone_id=zone_id) == ["zone.zone_id"]


@pytest.mark.parametrize(("field", "value"), [("name_zh", ""), ("name_zh", "   "), ("name_zh", None)])
def test_name_zh_required(field: str, value: object) -> None:
    (problem,) = problems_of(**{field: value})
    assert problem == FieldProblem("zone.name_zh", "is required")


@pytest.mark.parametrize("field", ["name_zh", "name_en"])
def test_names_at_most_100_characters(field: str) -> None:
    assert getattr(zone(**{field: "湖" * 100}), field) == "湖" * 100
    (problem,) = problems_of(**{field: "湖" * 101})
    assert problem == FieldProblem(f"zone.{field}", "must be at most 100 characters (got 101)")


@pytest.mark.parametrize("capacity", [1, 10_000_000])
def test_capacity_bounds_accepted(capacity: int) -> None:
    assert zone(capacity=capacity).capacity == capacity


@pytest.mark.parametrize("capacity", [0, -1, 10_000_001, True, "60000", 60_000.0])
def test_capacity_refused(capacity: object) -> None:
    assert fields_of(capacity=capacity) == ["zone.capacity"]


@pytest.mark.parametrize("count", [1, 2, 4])
def test_levels_must_be_exactly_three(count: int) -> None:
    given = [*levels(), (Level.I, 12_000, (Measure.ANNOUNCE,))][:count]
    assert fields_of(levels=given) == ["zone.levels"]


def test_levels_in_the_wrong_order_name_each_misplaced_level() -> None:
    given = levels()
    given[0], given[1] = (Level.II, 6_000, (Measure.ANNOUNCE,)), (Level.III, 8_000, (Measure.BARRIERS_UP,))
    assert fields_of(levels=given) == ["zone.levels[0].level", "zone.levels[1].level"]


@pytest.mark.parametrize("level", [None, Level.NONE, 2])
def test_level_must_be_iii_ii_or_i(level: object) -> None:
    given: list[Any] = levels()
    given[1] = (level, 8_000, (Measure.BARRIERS_UP,))
    assert fields_of(levels=given) == ["zone.levels[1].level"]


def test_a_level_that_is_not_a_rule_is_refused() -> None:
    given: list[Any] = levels()
    given[2] = "I at 100%"
    assert fields_of(levels=given) == ["zone.levels[2]"]


@pytest.mark.parametrize(("index", "value"), [(0, 99), (2, 50_001), (1, True), (1, "8000")])
def test_threshold_out_of_range_refused(index: int, value: object) -> None:
    given: list[Any] = levels()
    level, _, measures = given[index]
    given[index] = (level, value, measures)
    assert fields_of(levels=given) == [f"zone.levels[{index}].threshold_bp"]


def test_threshold_bounds_accepted() -> None:
    config = zone(levels=levels(100, 8_000, 50_000), hysteresis_bp=99)
    assert [rule.threshold_bp for rule in config.levels] == [100, 8_000, 50_000]


@pytest.mark.parametrize(
    ("thresholds", "field"),
    [((6_000, 6_000, 10_000), "zone.levels[1].threshold_bp"), ((6_000, 8_000, 7_000), "zone.levels[2].threshold_bp")],
)
def test_thresholds_must_increase_strictly(thresholds: tuple[int, int, int], field: str) -> None:
    (problem,) = problems_of(levels=levels(*thresholds), hysteresis_bp=1)
    assert problem.field == field
    assert "above the previous level's threshold" in problem.reason
    assert zone(levels=levels(6_000, 6_002, 6_004), hysteresis_bp=1).levels[1].threshold_bp == 6_002


def test_a_level_must_trigger_a_measure() -> None:
    given: list[Any] = levels()
    given[1] = (Level.II, 8_000, ())
    assert fields_of(levels=given) == ["zone.levels[1].measures"]


def test_measures_are_refused_twice_within_a_level_and_unspecified() -> None:
    given: list[Any] = levels()
    given[0] = (Level.III, 6_000, (Measure.ANNOUNCE, Measure.STAFF_DEPLOYED, Measure.ANNOUNCE))
    given[2] = (Level.I, 10_000, (None, Measure.ENTRY_CLOSED))
    problems = problems_of(levels=given)
    assert [problem.field for problem in problems] == ["zone.levels[0].measures[2]", "zone.levels[2].measures[0]"]
    assert "ANNOUNCE is listed twice" in problems[0].reason


def test_the_same_measure_at_two_levels_is_allowed() -> None:
    given: list[Any] = levels()
    given[1] = (Level.II, 8_000, (Measure.ANNOUNCE, Measure.BARRIERS_UP))
    assert zone(levels=given).levels[1].measures == (Measure.ANNOUNCE, Measure.BARRIERS_UP)


def test_hysteresis_must_be_below_the_lowest_threshold() -> None:
    assert zone(levels=levels(1_000, 8_000, 10_000), hysteresis_bp=999).hysteresis_bp == 999
    (problem,) = problems_of(levels=levels(1_000, 8_000, 10_000), hysteresis_bp=1_000)
    assert problem.field == "zone.hysteresis_bp"
    assert "level III's threshold (1000 bp)" in problem.reason


def test_hysteresis_must_be_below_every_gap_between_thresholds() -> None:
    assert zone(hysteresis_bp=1_999).hysteresis_bp == 1_999
    (problem,) = problems_of(hysteresis_bp=2_000)
    assert problem.field == "zone.hysteresis_bp"
    assert "2000 bp between level III's and level II's" in problem.reason
    assert zone(levels=levels(6_000, 8_000, 8_500), hysteresis_bp=499).hysteresis_bp == 499
    (problem,) = problems_of(levels=levels(6_000, 8_000, 8_500), hysteresis_bp=500)
    assert "500 bp between level II's and level I's" in problem.reason


@pytest.mark.parametrize("value", [-1, True, "500"])
def test_hysteresis_refused(value: object) -> None:
    assert fields_of(hysteresis_bp=value) == ["zone.hysteresis_bp"]


def test_hysteresis_against_invalid_levels_adds_no_second_guess() -> None:
    assert fields_of(levels=levels(6_000, 5_000, 10_000), hysteresis_bp=3_000) == ["zone.levels[1].threshold_bp"]


@pytest.mark.parametrize("value", [US, datetime.timedelta(hours=24)])
def test_min_dwell_bounds_accepted(value: datetime.timedelta) -> None:
    assert zone(min_dwell=value).min_dwell == value


@pytest.mark.parametrize("value", [-US, datetime.timedelta(hours=24) + US, 600])
def test_min_dwell_refused(value: object) -> None:
    assert fields_of(min_dwell=value) == ["zone.min_dwell"]


@pytest.mark.parametrize("value", [datetime.timedelta(seconds=10), datetime.timedelta(hours=24)])
def test_silence_after_bounds_accepted(value: datetime.timedelta) -> None:
    assert zone(silence_after=value).silence_after == value


@pytest.mark.parametrize("value", [datetime.timedelta(seconds=10) - US, datetime.timedelta(hours=24) + US, -US])
def test_silence_after_refused(value: datetime.timedelta) -> None:
    assert fields_of(silence_after=value) == ["zone.silence_after"]


def test_schedule_at_most_50_entries() -> None:
    assert len(zone(schedule=[EVENING_SHOW] * MAX_SCHEDULE_ENTRIES).schedule) == 50
    assert fields_of(schedule=[EVENING_SHOW] * 51) == ["zone.schedule"]


def show(**changes: Any) -> RawScheduleEntry:
    return EVENING_SHOW._replace(**changes)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ""}, "zone.schedule[1].name"),
        ({"name": " "}, "zone.schedule[1].name"),
        ({"name": "喷" * 101}, "zone.schedule[1].name"),
        ({"start_time": "7:00"}, "zone.schedule[1].start_time"),
        ({"start_time": "24:00"}, "zone.schedule[1].start_time"),
        ({"start_time": "19:60"}, "zone.schedule[1].start_time"),
        ({"start_time": "19:00:00"}, "zone.schedule[1].start_time"),
        ({"start_time": "19:00\n"}, "zone.schedule[1].start_time"),
        ({"start_time": ""}, "zone.schedule[1].start_time"),
        ({"start_time": datetime.time(19, 0, 30)}, "zone.schedule[1].start_time"),
        ({"start_time": datetime.time(19, 0, tzinfo=SHANGHAI)}, "zone.schedule[1].start_time"),
        ({"duration": None}, "zone.schedule[1].duration"),
        ({"duration": MINUTE - US}, "zone.schedule[1].duration"),
        ({"duration": 24 * HOUR + US}, "zone.schedule[1].duration"),
        ({"iso_weekdays": (0,)}, "zone.schedule[1].iso_weekdays[0]"),
        ({"iso_weekdays": (6, 8)}, "zone.schedule[1].iso_weekdays[1]"),
        ({"iso_weekdays": (6, True)}, "zone.schedule[1].iso_weekdays[1]"),
        ({"iso_weekdays": (6, 7, 6)}, "zone.schedule[1].iso_weekdays[2]"),
        ({"iso_weekdays": "67"}, "zone.schedule[1].iso_weekdays"),
        ({"valid_from": "2024-13-01"}, "zone.schedule[1].valid_from"),
        ({"valid_from": "2024-02-30"}, "zone.schedule[1].valid_from"),
        ({"valid_from": "20240401"}, "zone.schedule[1].valid_from"),
        ({"valid_to": datetime.datetime(2024, 10, 31, tzinfo=UTC)}, "zone.schedule[1].valid_to"),
        ({"valid_to": "2024-03-31"}, "zone.schedule[1].valid_to"),
    ],
)
def test_schedule_entry_rule_refused(changes: dict[str, Any], field: str) -> None:
    assert fields_of(schedule=[LATE_SHOW, show(**changes)]) == [field]


def test_schedule_entry_that_is_not_an_entry_is_refused() -> None:
    assert fields_of(schedule=[LATE_SHOW, "19:00 fountain"]) == ["zone.schedule[1]"]


@pytest.mark.parametrize(
    "changes",
    [
        {"start_time": "00:00"},
        {"start_time": "23:59"},
        {"start_time": datetime.time(19, 0)},
        {"duration": MINUTE},
        {"duration": 24 * HOUR},
        {"iso_weekdays": (1, 2, 3, 4, 5, 6, 7)},
        {"valid_from": "", "valid_to": ""},
        {"valid_from": None, "valid_to": None},
        {"valid_from": "2024-10-31", "valid_to": "2024-10-31"},
        {"valid_from": datetime.date(2024, 4, 1)},
    ],
)
def test_schedule_entry_bounds_accepted(changes: dict[str, Any]) -> None:
    (entry,) = zone(schedule=[show(**changes)]).schedule
    assert entry.name == "音乐喷泉 19:00"


def test_every_problem_is_reported_together_in_field_order() -> None:
    given: list[Any] = levels()
    given[1] = (Level.II, 5_000, ())
    problem = problems_of(
        zone_id="Hubin",
        name_zh="",
        capacity=0,
        levels=given,
        min_dwell=-US,
        silence_after=US,
        schedule=[show(start_time="7pm"), show(iso_weekdays=(9,), valid_to="2024-01-01")],
    )
    assert [p.field for p in problem] == [
        "zone.zone_id",
        "zone.name_zh",
        "zone.capacity",
        "zone.levels[1].threshold_bp",
        "zone.levels[1].measures",
        "zone.min_dwell",
        "zone.silence_after",
        "zone.schedule[0].start_time",
        "zone.schedule[1].iso_weekdays[0]",
        "zone.schedule[1].valid_to",
    ]
    with pytest.raises(ZoneProblem) as caught:
        zone(zone_id="Hubin", capacity=0)
    assert isinstance(caught.value, ValueError)
    assert str(caught.value).startswith("invalid zone (2 problems): zone.zone_id: must be lower_snake_case")
    assert "; zone.capacity: must be 1 to 10000000 persons (got 0)" in str(caught.value)


# --- parse helpers ------------------------------------------------------------------------------


def test_every_minute_of_the_day_round_trips() -> None:
    for minute in range(24 * 60):
        text = f"{minute // 60:02d}:{minute % 60:02d}"
        parsed = parse_local_time(text)
        assert parsed == datetime.time(minute // 60, minute % 60)
        assert format_local_time(parsed) == text


def test_season_dates() -> None:
    assert parse_season_date("") is None
    assert parse_season_date(None) is None
    assert parse_season_date("2024-02-29") == datetime.date(2024, 2, 29)
    with pytest.raises(ValueError, match="not a calendar date"):
        parse_season_date("2023-02-29")
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        parse_season_date("2024-W01-1")


# --- measures in force --------------------------------------------------------------------------


def test_measures_in_force_accumulate_by_level_in_declared_order() -> None:
    config = zone()
    assert measures_in_force(config, Level.NONE) == ()
    assert measures_in_force(config, Level.III) == (Measure.ANNOUNCE, Measure.STAFF_DEPLOYED)
    assert measures_in_force(config, Level.II) == (
        Measure.ANNOUNCE,
        Measure.STAFF_DEPLOYED,
        Measure.TICKET_SALES_STOP,
        Measure.EMERGENCY_PLAN,
        Measure.BARRIERS_UP,
        Measure.NAVIGATION_AREA_FULL,
    )
    assert measures_in_force(config, Level.I) == (
        *measures_in_force(config, Level.II),
        Measure.METRO_SKIPS_STATION,
        Measure.BUSES_SKIP_STOPS,
        Measure.ENTRY_CLOSED,
    )


def test_measures_in_force_list_a_measure_of_two_levels_once_at_the_lower() -> None:
    given: list[Any] = levels()
    given[1] = (Level.II, 8_000, (Measure.BARRIERS_UP, Measure.ANNOUNCE))
    given[2] = (Level.I, 10_000, (Measure.ANNOUNCE, Measure.ENTRY_CLOSED))
    config = zone(levels=given)
    assert measures_in_force(config, Level.II) == (Measure.ANNOUNCE, Measure.BARRIERS_UP)
    assert measures_in_force(config, Level.I) == (Measure.ANNOUNCE, Measure.BARRIERS_UP, Measure.ENTRY_CLOSED)


def test_threshold_of_each_level() -> None:
    config = zone(levels=levels(5_000, 7_000, 9_000), hysteresis_bp=100)
    assert [threshold_bp(config, level) for level in Level] == [0, 5_000, 7_000, 9_000]
    broken = dataclasses.replace(config, levels=config.levels[:2])
    with pytest.raises(ValueError, match="no level I"):
        threshold_bp(broken, Level.I)


# --- the schedule -------------------------------------------------------------------------------


@pytest.fixture
def fountain() -> ZoneConfig:
    return zone(schedule=[EVENING_SHOW, LATE_SHOW])


def test_show_runs_from_its_start_inclusive_to_its_end_exclusive(fountain: ZoneConfig) -> None:
    evening = fountain.schedule[0]
    assert schedule_running(fountain, local(2024, 7, 10, 19, 0)) is evening
    assert schedule_running(fountain, local(2024, 7, 10, 19, 0) - US) is None
    assert schedule_running(fountain, local(2024, 7, 10, 19, 15) - US) is evening
    assert schedule_running(fountain, local(2024, 7, 10, 19, 15)) is None


def test_show_times_are_shanghai_local_whatever_the_instants_zone(fountain: ZoneConfig) -> None:
    evening = fountain.schedule[0]
    assert schedule_running(fountain, datetime.datetime(2024, 7, 10, 11, 5, tzinfo=UTC)) is evening
    assert schedule_running(fountain, datetime.datetime(2024, 7, 10, 19, 5, tzinfo=UTC)) is None
    new_york = zoneinfo.ZoneInfo("America/New_York")
    assert schedule_running(fountain, datetime.datetime(2024, 7, 10, 7, 5, tzinfo=new_york)) is evening


def test_season_is_inclusive_at_both_ends(fountain: ZoneConfig) -> None:
    evening = fountain.schedule[0]
    assert schedule_running(fountain, local(2024, 3, 31, 19, 5)) is None
    assert schedule_running(fountain, local(2024, 4, 1, 19, 5)) is evening
    assert schedule_running(fountain, local(2024, 10, 31, 19, 5)) is evening
    assert schedule_running(fountain, local(2024, 11, 1, 19, 5)) is None


def test_late_show_runs_past_midnight_on_the_weekday_it_started(fountain: ZoneConfig) -> None:
    late = fountain.schedule[1]
    # Saturday 1 June 2024, 23:30, one hour: it is still running at 00:29 on Sunday.
    assert schedule_running(fountain, local(2024, 6, 1, 23, 30)) is late
    assert schedule_running(fountain, local(2024, 6, 2, 0, 15)) is late
    assert schedule_running(fountain, local(2024, 6, 2, 0, 30) - US) is late
    assert schedule_running(fountain, local(2024, 6, 2, 0, 30)) is None
    # Sunday is not a late-show day, nor is Friday: nothing runs at their 23:45 or after midnight.
    assert schedule_running(fountain, local(2024, 6, 2, 23, 45)) is None
    assert schedule_running(fountain, local(2024, 6, 3, 0, 15)) is None
    assert schedule_running(fountain, local(2024, 5, 31, 23, 45)) is None
    assert schedule_running(fountain, local(2024, 6, 1, 0, 15)) is None


def test_season_counts_on_the_start_day(fountain: ZoneConfig) -> None:
    late = fountain.schedule[1]
    # The season ends on Saturday 31 August: its show runs into 1 September, out of season.
    assert schedule_running(fountain, local(2024, 9, 1, 0, 10)) is late
    assert schedule_running(fountain, local(2024, 9, 7, 23, 45)) is None
    # A nightly show whose season starts on 2 June: the 1 June show does not exist, even after midnight.
    nightly = zone(schedule=[RawScheduleEntry("夜场", "23:30", HOUR, (), "2024-06-02", "")])
    assert schedule_running(nightly, local(2024, 6, 2, 0, 10)) is None
    assert schedule_running(nightly, local(2024, 6, 2, 23, 40)) is nightly.schedule[0]
    assert schedule_running(nightly, local(2024, 6, 3, 0, 10)) is nightly.schedule[0]


def test_of_shows_running_together_the_later_started_wins_ties_by_declared_order() -> None:
    config = zone(
        schedule=[
            RawScheduleEntry("灯光秀", "18:30", 2 * HOUR),
            RawScheduleEntry("音乐喷泉 19:00", "19:00", 15 * MINUTE),
            RawScheduleEntry("音乐喷泉 19:00 (重复)", "19:00", 30 * MINUTE),
        ]
    )
    lights, fountain_show, duplicate = config.schedule
    assert schedule_running(config, local(2024, 7, 10, 18, 59)) is lights
    assert schedule_running(config, local(2024, 7, 10, 19, 5)) is fountain_show
    assert schedule_running(config, local(2024, 7, 10, 19, 20)) is duplicate
    assert schedule_running(config, local(2024, 7, 10, 19, 40)) is lights


def test_occurrences_in_a_window(fountain: ZoneConfig) -> None:
    runs = schedule_occurrences(fountain, local(2024, 6, 1, 12, 0), local(2024, 6, 2, 12, 0))
    assert [(run.entry.name, run.start, run.end) for run in runs] == [
        ("音乐喷泉 19:00", local(2024, 6, 1, 19, 0), local(2024, 6, 1, 19, 15)),
        ("周六夜场", local(2024, 6, 1, 23, 30), local(2024, 6, 2, 0, 30)),
    ]
    assert all(run.start.tzinfo is UTC for run in runs)
    # A window that begins inside a run still finds it; one that ends at its start does not.
    (running,) = schedule_occurrences(fountain, local(2024, 6, 2, 0, 0), local(2024, 6, 2, 1, 0))
    assert running.entry.name == "周六夜场"
    assert schedule_occurrences(fountain, local(2024, 6, 1, 18, 0), local(2024, 6, 1, 19, 0)) == ()


def test_naive_or_reversed_times_are_refused(fountain: ZoneConfig) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule_running(fountain, datetime.datetime(2024, 6, 1, 19, 5))
    with pytest.raises(ValueError, match="end must not be before start"):
        schedule_occurrences(fountain, local(2024, 6, 2), local(2024, 6, 1))


# --- the helpers the crowd modules share --------------------------------------------------------


def test_is_int_refuses_bools_and_floats() -> None:
    assert is_int(0) and is_int(-3) and is_int(2**70)
    assert not is_int(True) and not is_int(False)
    assert not is_int(1.0) and not is_int("1") and not is_int(None)


def test_aware_utc_converts_and_names_the_field() -> None:
    evening = datetime.datetime(2024, 6, 1, 19, 5, tzinfo=SHANGHAI)
    converted = aware_utc("at", evening)
    assert converted == evening and converted.tzinfo is UTC
    assert converted == datetime.datetime(2024, 6, 1, 11, 5, tzinfo=UTC)
    with pytest.raises(ValueError, match=r"^observed_at must be timezone-aware"):
        aware_utc("observed_at", datetime.datetime(2024, 6, 1, 19, 5))
    with pytest.raises(TypeError, match=r"^observed_at must be an aware datetime\.datetime, not date"):
        aware_utc("observed_at", datetime.date(2024, 6, 1))


def test_local_instant_is_the_shanghai_wall_clock_in_utc() -> None:
    midnight = local_instant(datetime.date(2024, 6, 1), datetime.time())
    assert midnight == datetime.datetime(2024, 5, 31, 16, 0, tzinfo=UTC) and midnight.tzinfo is UTC
    assert local_instant(datetime.date(2024, 6, 1), datetime.time(23, 30)) == local(2024, 6, 1, 23, 30)
