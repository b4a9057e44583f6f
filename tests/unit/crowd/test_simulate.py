"""The crowd simulator's pure parts: its arguments and window, the figures it compares, the zone it
creates, the bytes it publishes and the report it prints (the mesh run needs `make run`)."""

from __future__ import annotations

import argparse
import datetime
import itertools
import re

import pytest
from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration

from govmesh import cli, config
from govmesh.crowd.v1 import crowd_pb2 as pb
from services.crowd import tools as crowd_tools
from services.crowd.domain.zones import SensorKind
from services.crowd.tools import demand, simulate
from services.crowd.tools.simulate import ArgumentError, Figures, Sent, Window

D = datetime.date
UTC = datetime.UTC
TODAY = D(2026, 11, 27)


def arguments(*argv: str) -> argparse.Namespace:
    return cli.parser().parse_args(["crowd", "simulate", *argv])


# -- arguments and the window ---------------------------------------------------------------------------------


def test_the_command_defaults_to_a_year_of_hubin_with_the_seed_2019() -> None:
    args = arguments()
    assert (args.zone, args.days, args.start, args.seed, args.quiet) == ("hubin", 365, None, 2019, False)
    assert args.run is crowd_tools.run_simulate
    args = arguments("--zone", "hubin_east", "--days", "30", "--start", "2019-10-01", "--seed", "7", "--quiet")
    assert (args.zone, args.days, args.start, args.seed, args.quiet) == ("hubin_east", 30, "2019-10-01", 7, True)
    window = simulate.check_arguments(args, TODAY)
    assert (window.start, window.last, window.days) == (D(2019, 10, 1), D(2019, 10, 30), 30)


def test_the_default_window_is_the_days_ending_yesterday() -> None:
    window = simulate.compute_window(TODAY, 365, None)
    assert (window.start, window.last) == (D(2025, 11, 27), D(2026, 11, 26))
    assert len(window.dates()) == 365 and window.dates()[-1] == D(2026, 11, 26)
    one = simulate.compute_window(TODAY, 1, None)
    assert one.start == one.last == D(2026, 11, 26)
    # Local midnights, as UTC instants: Shanghai is 8 hours ahead.
    assert window.start_time == datetime.datetime(2025, 11, 26, 16, tzinfo=UTC)
    assert window.end_time == datetime.datetime(2026, 11, 26, 16, tzinfo=UTC)


def test_a_window_must_end_by_yesterday_and_last_at_most_400_days() -> None:
    assert simulate.compute_window(TODAY, 2, D(2026, 11, 25)).last == D(2026, 11, 26)
    with pytest.raises(ArgumentError, match=r"--start/--days.*2026-11-27"):
        simulate.compute_window(TODAY, 2, D(2026, 11, 26))
    assert simulate.compute_window(TODAY, 400, None).days == 400
    with pytest.raises(ArgumentError, match=r"--days.*401"):
        simulate.compute_window(TODAY, 401, None)
    with pytest.raises(ArgumentError, match=r"--days.*got 0"):
        simulate.compute_window(TODAY, 0, None)


def test_bad_zone_and_start_arguments_are_named() -> None:
    with pytest.raises(ArgumentError, match="--zone"):
        simulate.check_arguments(arguments("--zone", "Hubin"), TODAY)
    with pytest.raises(ArgumentError, match="--zone"):
        simulate.check_arguments(arguments("--zone", "h" * 41), TODAY)
    assert simulate.check_arguments(arguments("--zone", "h" * 40), TODAY).days == 365
    with pytest.raises(ArgumentError, match=r"--start.*2019-13-01"):
        simulate.check_arguments(arguments("--start", "2019-13-01"), TODAY)


def test_main_refuses_bad_arguments_with_exit_code_2_before_touching_the_mesh(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = config.load("crowd")
    assert simulate.main(settings, arguments("--days", "0")) == 2
    error = capsys.readouterr().err
    assert "govmesh crowd simulate: --days" in error and "Traceback" not in error


def test_the_simulation_zone_id_carries_the_zone_and_the_local_wall_clock() -> None:
    started = datetime.datetime(2026, 11, 27, 3, 4, 5, tzinfo=UTC)
    assert simulate.simulation_zone_id("hubin", started) == "sim_hubin_20261127110405"
    with pytest.raises(ValueError, match="started"):
        simulate.simulation_zone_id("hubin", datetime.datetime(2026, 11, 27, 3, 4, 5))


# -- the figures -------------------------------------------------------------------------------------------


def test_the_calendar_policy_counts_the_official_days_off() -> None:
    assert simulate.calendar_policy_days(Window(D(2019, 1, 1), 365)) == 115
    # September and October 2019: Mid-autumn and National Day off, 29 September and 12 October worked.
    assert simulate.calendar_policy_days(Window(D(2019, 9, 1), 61)) == 21
    assert simulate.calendar_policy_days(Window(D(2019, 10, 12), 1)) == 0
    assert simulate.calendar_policy_days(Window(D(2019, 10, 13), 1)) == 1
    # A year chinese-calendar does not know: its weekends.
    assert simulate.calendar_policy_days(Window(D(2027, 1, 1), 31)) == 10


def test_a_peak_reaches_level_ii_at_the_threshold_and_not_one_person_below() -> None:
    assert simulate.reaches(16_000, 20_000, 8_000)
    assert not simulate.reaches(15_999, 20_000, 8_000)
    assert simulate.reaches(16_001, 20_001, 8_000)  # 80.004%
    assert not simulate.reaches(16_000, 20_001, 8_000)  # 79.996%


def test_the_level_ii_threshold_is_the_zones_or_the_default() -> None:
    zone = pb.Zone(
        levels=[
            pb.ZoneLevel(level=pb.RESPONSE_LEVEL_III, threshold_bp=5_000),
            pb.ZoneLevel(level=pb.RESPONSE_LEVEL_II, threshold_bp=7_500),
            pb.ZoneLevel(level=pb.RESPONSE_LEVEL_I, threshold_bp=9_500),
        ]
    )
    assert simulate.level_ii_threshold(zone) == 7_500
    assert simulate.level_ii_threshold(pb.Zone()) == 8_000


# -- the zone ---------------------------------------------------------------------------------------------------


def test_the_builtin_zone_is_the_fountain_with_default_levels_and_its_schedule() -> None:
    zone = simulate.builtin_zone("sim_hubin_20261127110405", Window(D(2019, 1, 1), 365))
    assert (zone.zone_id, zone.name_zh, zone.name_en) == (
        "sim_hubin_20261127110405",
        "湖滨音乐喷泉",
        "Hubin music fountain",
    )
    assert zone.capacity == demand.CAPACITY == 20_000
    assert not zone.levels  # the server's defaults
    assert zone.silence_after.seconds == 15 * 60
    assert [(e.name, e.start_time, e.duration.seconds) for e in zone.schedule] == [
        ("音乐喷泉 19:00", "19:00", 900),
        ("音乐喷泉 20:00", "20:00", 900),
        ("音乐喷泉 21:00 暑期", "21:00", 900),
    ]
    assert (zone.schedule[2].valid_from, zone.schedule[2].valid_to) == ("2019-07-01", "2019-08-31")
    assert zone.schedule[0].valid_from == "" and not zone.schedule[0].iso_weekdays
    winter = simulate.builtin_zone("sim_x_1", Window(D(2019, 11, 1), 30))
    assert len(winter.schedule) == 2


def test_a_copied_zone_keeps_the_configuration_under_its_own_id() -> None:
    source = pb.Zone(
        zone_id="hubin",
        name_zh="湖滨",
        name_en="Hubin",
        capacity=25_000,
        levels=[pb.ZoneLevel(level=pb.RESPONSE_LEVEL_II, threshold_bp=7_000, measures=[pb.MEASURE_BARRIERS_UP])],
        hysteresis_bp=300,
        min_dwell=Duration(seconds=600),
    )
    source.created_at.FromDatetime(datetime.datetime(2026, 1, 1, tzinfo=UTC))
    copy = simulate.copied_zone(source, "sim_hubin_20261127110405")
    assert copy.zone_id == "sim_hubin_20261127110405" and source.zone_id == "hubin"
    assert copy.name_zh == "湖滨（模拟）" and copy.name_en == "Hubin (simulation)"
    assert (copy.capacity, copy.hysteresis_bp, copy.min_dwell.seconds) == (25_000, 300, 600)
    assert list(copy.levels) == list(source.levels)
    assert not copy.HasField("created_at") and source.HasField("created_at")


# -- the readings on the wire -----------------------------------------------------------------------------------


def test_the_fast_encoding_is_byte_for_byte_json_format_and_parses_back() -> None:
    day = next(iter(demand.simulate(D(2019, 10, 1), 1, 2019, "sim_hubin_20261127110405")))
    readings = list(day.readings)
    assert any(r.delta is not None and r.delta < 0 for r in readings)
    assert any(r.delta == 0 for r in readings)
    assert any(r.absolute_count is not None for r in readings)
    for reading in readings:
        body = simulate.encode(reading)
        assert body == simulate.canonical_json(reading)
        assert json_format.Parse(body, pb.SensorReading()) == simulate.to_proto(reading)
    first = simulate.encode(readings[0])
    assert first.startswith(b'{"zoneId":"sim_hubin_20261127110405","sensorId":"sim_hubin_20261127110405-gate-e1",')
    assert b'"sensorKind":"SENSOR_KIND_GATE_COUNTER","sequence":"1","observedAt":"2019-09-30T16:00:00Z"' in first


def test_a_time_with_a_fraction_of_a_second_takes_the_reference_path() -> None:
    at = datetime.datetime(2019, 10, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    reading = demand.Reading("hubin", "hubin-camera-1", SensorKind.CAMERA, 3, at, None, 0)
    assert simulate.encode(reading) == simulate.canonical_json(reading)
    assert b'"observedAt":"2019-10-01T12:00:00.250Z","absoluteCount":"0"' in simulate.encode(reading)


# -- waiting for the service ----------------------------------------------------------------------------------


class FakeMesh:
    def __init__(self, statuses: list[pb.ZoneStatus]) -> None:
        self.statuses = iter(statuses)
        self.calls = 0

    def status(self, zone_id: str) -> pb.ZoneStatus:
        self.calls += 1
        return next(self.statuses)


def status(updated: datetime.datetime, sensors: dict[str, datetime.datetime]) -> pb.ZoneStatus:
    message = pb.ZoneStatus(zone_id="z")
    message.updated_at.FromDatetime(updated)
    for sensor_id, at in sensors.items():
        entry = message.sensors.add(sensor_id=sensor_id)
        entry.last_observed_at.FromDatetime(at)
    return message


def test_waiting_ends_when_every_sensor_reached_its_last_reading() -> None:
    window = Window(D(2019, 10, 1), 2)
    end = window.end_time - demand.STEP
    expected = {"a": end, "b": end - demand.STEP}
    behind = status(end, {"a": end, "b": end - 2 * demand.STEP})
    done = status(end, {"a": end, "b": end - demand.STEP})
    mesh = FakeMesh([behind, behind, done, done])
    simulate.wait_applied(mesh, "z", expected, window, stall_seconds=60, progress=False, poll_seconds=0)
    assert mesh.calls == 3


def test_waiting_fails_clearly_when_the_service_stops_moving() -> None:
    window = Window(D(2019, 10, 1), 2)
    end = window.end_time - demand.STEP
    stuck = status(end - demand.STEP, {"a": end - demand.STEP})
    mesh = FakeMesh(list(itertools.repeat(stuck, 10_000)))
    with pytest.raises(TimeoutError, match=r"applied nothing for 0 s.*1 sensors lag, e\.g\. a .*crowd worker"):
        simulate.wait_applied(mesh, "z", {"a": end}, window, stall_seconds=0.01, progress=False, poll_seconds=0.001)


# -- the report ---------------------------------------------------------------------------------------------


def figures(**changes: object) -> Figures:
    values: dict[str, object] = dict(
        zone_id="sim_hubin_20261127110405",
        name_zh="湖滨音乐喷泉",
        name_en="Hubin music fountain",
        source="built-in configuration",
        capacity=20_000,
        level_ii_bp=8_000,
        window=Window(D(2025, 11, 27), 365),
        seed=2019,
        sent=Sent(readings=1_051_833, duplicates=1_062, out_of_order=1_041, withheld=429, seconds=80.0),
        calendar_policy_days=119,
        live_barrier_days=["2026-05-01", "2026-05-02", "2026-10-01"],
        true_days=["2026-05-01", "2026-10-01", "2026-10-02", "2026-10-03"],
        time_at_level={
            pb.RESPONSE_LEVEL_NONE: datetime.timedelta(hours=8_600),
            pb.RESPONSE_LEVEL_III: datetime.timedelta(hours=120, minutes=5),
            pb.RESPONSE_LEVEL_II: datetime.timedelta(hours=30),
        },
        peak=31_234,
        peak_load_bp=15_617,
        peak_level=pb.RESPONSE_LEVEL_I,
        peak_at=datetime.datetime(2026, 10, 3, 12, 5, tzinfo=UTC),
        true_peak=31_500,
        true_peak_at=datetime.datetime(2026, 10, 3, 12, 10, tzinfo=UTC),
    )
    values.update(changes)
    return Figures(**values)  # type: ignore[arg-type]


def test_the_report_prints_the_barrier_days_of_each_policy_beside_the_seed() -> None:
    text = simulate.report(figures())
    lines = text.splitlines()
    assert "capacity 20,000, level II at 80.00% (16,000 people)" in lines[0]
    assert "2025-11-27 .. 2026-11-26 (365 days, Asia/Shanghai), seed 2019" in text
    assert "1,051,833 in 80 s (13,148/s): 1,062 re-sent (duplicates), 1,041 out of order; 429 never sent" in text
    # The first whole number of each policy's row is its count of barrier days.
    count = {line.split()[0]: int(re.findall(r"\s(\d+)(?:\s|$)", line)[0]) for line in lines if line.startswith("  ")}
    assert count == {"常年固定": 365, "按日历": 119, "实时响应": 3, "模型真值": 4, "种子": 365}
    assert "(the model: 2 of them with barriers, 2 missed; barriers on 1 days below it)" in text
    assert next(line for line in lines if line.startswith("  种子")).endswith("365 -> 36")
    assert "无 none 8,600 h 00 min  三级 III 120 h 05 min  二级 II 30 h 00 min  一级 I 0 h 00 min" in text
    assert "31,234 (156.17%, 一级 I) at 2026-10-03 20:05; the model's true peak 31,500 at 2026-10-03 20:10" in text
    assert "chinese-calendar" not in text


def test_the_report_says_when_nothing_peaked_and_when_the_calendar_is_unknown() -> None:
    text = simulate.report(figures(peak_at=None, unknown_years=[2027], sent=Sent()))
    assert "峰值 peak                  none recorded" in text
    assert "0 in 0 s (0/s)" in text
    assert "chinese-calendar knows no holidays for 2027" in text
