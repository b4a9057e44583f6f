"""A zone's sensors and its fused occupancy (services/crowd/domain/occupancy.py): every rejection at its
boundary, duplicates, late and out-of-order readings, the bound on missing ranges, silence once
per silence and recovery, estimates ageing out, the zone clock live and in replay, and a
randomized run of shuffled, duplicated gate deltas that must add up exactly."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import random

import pytest

from services.crowd.domain.occupancy import (
    FRESH,
    MAX_LATENESS,
    MAX_MISSING_RANGES,
    MAX_SEQUENCE,
    ApplyResult,
    Outcome,
    Reading,
    Rejection,
    SensorKind,
    SensorState,
    ZoneLive,
    apply,
    detect_silence,
    freshness,
    fuse,
    missing_from_json,
    missing_to_json,
    recompute,
    sensors_healthy,
    sensors_total,
    tick,
    unknown_zone,
    validate,
    zone_now,
)
from services.crowd.domain.zones import SHANGHAI
from tests.support.hubin import SILENCE_AFTER as SILENCE
from tests.support.hubin import hubin

UTC = datetime.UTC
US = datetime.timedelta(microseconds=1)
MS = datetime.timedelta(milliseconds=1)
SECOND = datetime.timedelta(seconds=1)
MINUTE = datetime.timedelta(minutes=1)
HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)
CAPACITY = 1_000
# National Day 2024, the evening fountain show at Hubin.
T0 = datetime.datetime(2024, 10, 1, 19, 0, tzinfo=SHANGHAI)


CONFIG = hubin(capacity=CAPACITY)


def gate(sensor: str, sequence: int, delta: int, at: datetime.datetime = T0) -> Reading:
    return Reading("hubin", sensor, SensorKind.GATE_COUNTER, sequence, at, delta=delta)


def camera(sensor: str, sequence: int, count: int, at: datetime.datetime = T0) -> Reading:
    return Reading("hubin", sensor, SensorKind.CAMERA, sequence, at, absolute_count=count)


def phone(sensor: str, sequence: int, count: int, at: datetime.datetime = T0) -> Reading:
    return Reading("hubin", sensor, SensorKind.PHONE_SIGNAL, sequence, at, absolute_count=count)


def feed(live: ZoneLive, *readings: Reading, wall: datetime.datetime | None = None) -> list[ApplyResult]:
    """Applies readings in order, each at the wall time it was observed (live) unless ``wall``."""
    results = []
    for reading in readings:
        assert reading.observed_at is not None
        results.append(apply(CONFIG, live, reading, wall or reading.observed_at))
    return results


def rejected(reading: Reading, live: ZoneLive | None = None, wall: datetime.datetime = T0) -> Rejection | None:
    """The rejection of ``reading`` (None if applied), checking that a rejection changes nothing."""
    live = live if live is not None else ZoneLive()
    before = copy.deepcopy(live)
    result = apply(CONFIG, live, reading, wall)
    if result.rejection is None:
        assert result.outcome is not None
        return None
    assert result.outcome is None and not result.occupancy_changed
    assert live == before
    return result.rejection.reason


# --- validation ------------------------------------------------------------------------------------


def test_a_reading_without_a_sensor_id_is_a_missing_field_naming_sensor_id() -> None:
    live = ZoneLive()
    result = apply(CONFIG, live, gate("", 1, 1), T0)
    assert result.rejection is not None
    assert result.rejection.reason is Rejection.MISSING_FIELD
    assert result.rejection.message.startswith("sensor_id is not set")


def test_sensor_ids_of_128_characters_pass_and_129_or_non_printable_are_absurd() -> None:
    assert rejected(gate("g" * 128, 1, 1)) is None
    assert rejected(gate("g" * 129, 1, 1)) is Rejection.ABSURD_VALUE
    assert rejected(gate("gate\n1", 1, 1)) is Rejection.ABSURD_VALUE
    assert rejected(gate("湖滨闸机 1", 1, 1)) is None  # printable, space and Chinese included


def test_a_reading_without_a_kind_is_a_missing_field_naming_sensor_kind() -> None:
    reading = Reading("hubin", "gate-1", None, 1, T0, delta=1)
    result = validate(CONFIG, ZoneLive(), reading, T0)
    assert result is not None
    assert result.reason is Rejection.MISSING_FIELD
    assert "sensor_kind" in result.message


def test_sequence_zero_is_missing_negative_or_beyond_2_53_is_absurd() -> None:
    assert rejected(gate("gate-1", 0, 1)) is Rejection.MISSING_FIELD
    assert rejected(gate("gate-1", -1, 1)) is Rejection.ABSURD_VALUE
    assert rejected(gate("gate-1", MAX_SEQUENCE + 1, 1)) is Rejection.ABSURD_VALUE
    assert rejected(gate("gate-1", MAX_SEQUENCE, 1)) is None
    assert rejected(gate("gate-1", 1, 1)) is None
    result = validate(CONFIG, ZoneLive(), gate("gate-1", 0, 1), T0)
    assert result is not None and result.message.startswith("sequence is not set")


def test_a_reading_without_an_observation_time_is_a_missing_field() -> None:
    result = validate(CONFIG, ZoneLive(), Reading("hubin", "gate-1", SensorKind.GATE_COUNTER, 1, None, delta=1), T0)
    assert result is not None
    assert result.reason is Rejection.MISSING_FIELD
    assert result.message.startswith("observed_at is not set")


def test_a_reading_without_a_value_is_a_missing_field_naming_both_fields() -> None:
    result = validate(CONFIG, ZoneLive(), Reading("hubin", "cam-1", SensorKind.CAMERA, 1, T0), T0)
    assert result is not None
    assert result.reason is Rejection.MISSING_FIELD
    assert "delta" in result.message and "absolute_count" in result.message


def test_the_wrong_value_for_the_kind_is_a_missing_field_naming_the_one_that_should_be_set() -> None:
    gate_with_count = Reading("hubin", "gate-1", SensorKind.GATE_COUNTER, 1, T0, absolute_count=5)
    result = validate(CONFIG, ZoneLive(), gate_with_count, T0)
    assert result is not None and result.reason is Rejection.MISSING_FIELD
    assert result.message.startswith("delta is not set: a gate counter")
    for kind, label in ((SensorKind.CAMERA, "a camera"), (SensorKind.PHONE_SIGNAL, "a phone-signal estimate")):
        result = validate(CONFIG, ZoneLive(), Reading("hubin", "s-1", kind, 1, T0, delta=5), T0)
        assert result is not None and result.reason is Rejection.MISSING_FIELD
        assert result.message.startswith(f"absolute_count is not set: {label}")


def test_a_negative_count_is_rejected_and_zero_is_a_count() -> None:
    result = validate(CONFIG, ZoneLive(), camera("cam-1", 1, -5), T0)
    assert result is not None
    assert result.reason is Rejection.NEGATIVE_COUNT
    assert result.message == "absolute_count -5 is negative: a camera cannot count fewer than zero people"
    assert rejected(camera("cam-1", 1, -1)) is Rejection.NEGATIVE_COUNT
    assert rejected(phone("phone-1", 1, -1)) is Rejection.NEGATIVE_COUNT
    assert rejected(camera("cam-1", 1, 0)) is None


def test_a_count_of_ten_times_capacity_passes_and_one_more_is_absurd() -> None:
    assert rejected(camera("cam-1", 1, 10 * CAPACITY)) is None
    assert rejected(camera("cam-1", 1, 10 * CAPACITY + 1)) is Rejection.ABSURD_VALUE
    assert rejected(phone("phone-1", 1, 10 * CAPACITY + 1)) is Rejection.ABSURD_VALUE


def test_a_delta_of_the_whole_capacity_passes_either_way_and_one_more_is_absurd() -> None:
    assert rejected(gate("gate-1", 1, CAPACITY)) is None
    assert rejected(gate("gate-1", 1, -CAPACITY)) is None
    assert rejected(gate("gate-1", 1, CAPACITY + 1)) is Rejection.ABSURD_VALUE
    assert rejected(gate("gate-1", 1, -CAPACITY - 1)) is Rejection.ABSURD_VALUE
    result = validate(CONFIG, ZoneLive(), gate("gate-1", 1, CAPACITY + 1), T0)
    assert result is not None and result.message.startswith("delta 1001 moves more people than the zone's capacity")


def test_five_minutes_ahead_of_the_server_passes_and_a_microsecond_more_is_future_time() -> None:
    assert rejected(gate("gate-1", 1, 1, T0 + 5 * MINUTE), wall=T0) is None
    assert rejected(gate("gate-1", 1, 1, T0 + 5 * MINUTE + US), wall=T0) is Rejection.FUTURE_TIME


def test_twenty_four_hours_behind_the_zone_clock_passes_and_a_microsecond_more_is_too_old() -> None:
    live = ZoneLive()
    feed(live, gate("gate-1", 1, 1, T0))
    assert zone_now(live, T0) == T0
    assert rejected(gate("gate-2", 1, 1, T0 - MAX_LATENESS), live) is None
    assert rejected(gate("gate-3", 1, 1, T0 - MAX_LATENESS - US), live) is Rejection.TOO_OLD
    # A late reading that fills a gap is judged by time too.
    feed(live, gate("gate-1", 3, 1, T0))
    assert rejected(gate("gate-1", 2, 1, T0 - MAX_LATENESS - US), live) is Rejection.TOO_OLD
    assert MAX_LATENESS == DAY


def test_a_fresh_zone_accepts_its_first_reading_however_old_then_judges_age_by_it() -> None:
    live = ZoneLive()
    year_ago = T0 - 365 * DAY
    assert rejected(gate("gate-1", 1, 1, year_ago), live, wall=T0) is None
    assert zone_now(live, T0) == year_ago
    assert rejected(gate("gate-2", 1, 1, year_ago - DAY - US), live, wall=T0) is Rejection.TOO_OLD


def test_a_sensor_reporting_another_kind_than_before_is_a_kind_mismatch() -> None:
    live = ZoneLive()
    feed(live, gate("sensor-1", 1, 3))
    result = apply(CONFIG, live, camera("sensor-1", 2, 40), T0)
    assert result.rejection is not None
    assert result.rejection.reason is Rejection.SENSOR_KIND_MISMATCH
    assert "gate_counter" in result.rejection.message and "camera" in result.rejection.message
    assert live.sensors["sensor-1"].last_sequence == 1
    assert live.gate_total == 3


def test_the_first_failure_in_validation_order_is_the_reason() -> None:
    no_kind_no_sequence = Reading("hubin", "x", None, 0, None)
    result = validate(CONFIG, ZoneLive(), no_kind_no_sequence, T0)
    assert result is not None and "sensor_kind" in result.message
    # Negative and absurdly far in the future: the count is checked first.
    assert rejected(camera("cam-1", 1, -1, T0 + DAY)) is Rejection.NEGATIVE_COUNT
    # Absurd and too far ahead: the value first.
    assert rejected(gate("gate-1", 1, CAPACITY + 1, T0 + DAY)) is Rejection.ABSURD_VALUE
    # Future and of the wrong kind: time first.
    live = ZoneLive()
    feed(live, gate("sensor-1", 1, 1))
    assert rejected(camera("sensor-1", 2, 1, T0 + DAY), live) is Rejection.FUTURE_TIME


def test_a_reading_for_another_zone_is_a_caller_bug_and_unknown_zones_are_named() -> None:
    with pytest.raises(ValueError, match=r"reading\.zone_id 'gushan'"):
        apply(CONFIG, ZoneLive(), dataclasses.replace(gate("gate-1", 1, 1), zone_id="gushan"), T0)
    assert unknown_zone("gushan").reason is Rejection.UNKNOWN_ZONE
    assert unknown_zone("gushan").message == "zone_id 'gushan' names no zone"
    assert unknown_zone("").message.startswith("zone_id is not set")


def test_readings_the_contract_cannot_produce_raise() -> None:
    with pytest.raises(ValueError, match="oneof"):
        Reading("hubin", "gate-1", SensorKind.GATE_COUNTER, 1, T0, delta=1, absolute_count=1)
    with pytest.raises(ValueError, match="timezone-aware"):
        Reading("hubin", "gate-1", SensorKind.GATE_COUNTER, 1, datetime.datetime(2024, 10, 1, 19), delta=1)
    with pytest.raises(TypeError, match="delta"):
        Reading("hubin", "gate-1", SensorKind.GATE_COUNTER, 1, T0, delta=True)
    with pytest.raises(ValueError, match="wall_now"):
        apply(CONFIG, ZoneLive(), gate("gate-1", 1, 1), datetime.datetime(2024, 10, 1, 19))


# --- duplicates, late and out-of-order readings ----------------------------------------------------


def test_the_same_sequence_twice_is_a_duplicate_with_no_effect_even_with_another_value() -> None:
    live = ZoneLive()
    first, second = feed(live, gate("gate-1", 1, 7), camera("cam-1", 1, 30))
    assert first.outcome is Outcome.ACCEPTED and second.outcome is Outcome.ACCEPTED
    before = copy.deepcopy(live)
    for reading in (gate("gate-1", 1, 7), gate("gate-1", 1, 99), camera("cam-1", 1, 500), camera("cam-1", 1, 30)):
        result = apply(CONFIG, live, dataclasses.replace(reading, observed_at=T0 + SECOND), T0 + SECOND)
        assert result.outcome is Outcome.DUPLICATE
        assert not result.applied and not result.occupancy_changed and not result.new_sensor
    assert live == before
    assert live.gate_total == 7 and live.sensors["cam-1"].value == 30


def test_late_and_out_of_order_gate_deltas_give_the_exact_sum() -> None:
    live = ZoneLive()
    results = feed(live, gate("gate-1", 3, 5), gate("gate-1", 1, 10), gate("gate-1", 4, -2), gate("gate-1", 2, -4))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.LATE, Outcome.ACCEPTED, Outcome.LATE]
    state = live.sensors["gate-1"]
    assert state.value == 9 and live.gate_total == 9 and live.occupancy == 9
    assert state.last_sequence == 4 and state.missing == []


def test_an_out_of_order_absolute_reading_is_late_and_keeps_the_newest_value() -> None:
    live = ZoneLive()
    results = feed(live, camera("cam-1", 2, 50), camera("cam-1", 1, 80))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.LATE]
    assert live.sensors["cam-1"].value == 50
    assert live.occupancy == 50
    assert not results[1].occupancy_changed


def test_the_sequence_orders_readings_even_when_a_lower_one_was_observed_later() -> None:
    live = ZoneLive()
    feed(live, camera("cam-1", 2, 50, T0), camera("cam-1", 1, 80, T0 + 30 * SECOND))
    state = live.sensors["cam-1"]
    assert state.value == 50 and state.last_sequence == 2
    # The sensor was heard from at the later time.
    assert state.last_observed_at == T0 + 30 * SECOND


def test_gaps_are_recorded_and_filled_late_and_a_filled_one_is_then_a_duplicate() -> None:
    live = ZoneLive()
    feed(live, gate("gate-1", 1, 1), gate("gate-1", 5, 1))
    state = live.sensors["gate-1"]
    assert state.missing == [(2, 4)] and state.missing_count() == 3
    assert feed(live, gate("gate-1", 3, 1))[0].outcome is Outcome.LATE
    assert state.missing == [(2, 2), (4, 4)]
    assert [r.outcome for r in feed(live, gate("gate-1", 2, 1), gate("gate-1", 4, 1))] == [Outcome.LATE] * 2
    assert state.missing == [] and live.gate_total == 5
    assert feed(live, gate("gate-1", 3, 1))[0].outcome is Outcome.DUPLICATE
    assert live.gate_total == 5


def test_a_sensor_first_seen_mid_count_awaits_its_earlier_sequences() -> None:
    live = ZoneLive()
    assert feed(live, gate("gate-1", 10, 2))[0].new_sensor
    assert live.sensors["gate-1"].missing == [(1, 9)]
    result = feed(live, gate("gate-1", 4, 3))[0]
    assert result.outcome is Outcome.LATE and not result.new_sensor
    assert live.sensors["gate-1"].missing == [(1, 3), (5, 9)]
    assert live.gate_total == 5


def test_missing_ranges_are_bounded_and_the_forgotten_ones_are_too_old() -> None:
    live = ZoneLive()
    # Every other sequence: 1, 3, 5, ... leaves a gap of one after each.
    for sequence in range(1, 2 * MAX_MISSING_RANGES + 2, 2):
        feed(live, gate("gate-1", sequence, 1))
    state = live.sensors["gate-1"]
    assert len(state.missing) == MAX_MISSING_RANGES and state.floor_sequence == 0
    feed(live, gate("gate-1", 2 * MAX_MISSING_RANGES + 3, 1))  # one gap more: the lowest, 2, is forgotten
    assert len(state.missing) == MAX_MISSING_RANGES
    assert state.missing[0] == (4, 4) and state.floor_sequence == 2
    total = live.gate_total
    for sequence in (1, 2):  # one received, one forgotten: neither can be told from a duplicate
        result = feed(live, gate("gate-1", sequence, 1))[0]
        assert result.rejection is not None and result.rejection.reason is Rejection.TOO_OLD
        assert "sequence" in result.rejection.message
    assert feed(live, gate("gate-1", 4, 1))[0].outcome is Outcome.LATE
    assert live.gate_total == total + 1


def test_filling_the_middle_of_a_range_at_the_bound_forgets_the_lowest() -> None:
    live = ZoneLive()
    for sequence in range(1, 2 * (MAX_MISSING_RANGES - 1) + 2, 2):
        feed(live, gate("gate-1", sequence, 1))
    top = 2 * (MAX_MISSING_RANGES - 1) + 1
    feed(live, gate("gate-1", top + 10, 1))
    state = live.sensors["gate-1"]
    assert len(state.missing) == MAX_MISSING_RANGES and state.missing[-1] == (top + 1, top + 9)
    assert feed(live, gate("gate-1", top + 5, 1))[0].outcome is Outcome.LATE
    assert len(state.missing) == MAX_MISSING_RANGES
    assert state.missing[-2:] == [(top + 1, top + 4), (top + 6, top + 9)]
    assert state.floor_sequence == 2 and state.missing[0] == (4, 4)


def test_missing_ranges_round_trip_through_json_and_bad_ones_are_refused() -> None:
    live = ZoneLive()
    feed(live, gate("gate-1", 2, 1), gate("gate-1", 6, 1), gate("gate-1", 4, 1))
    state = live.sensors["gate-1"]
    stored = missing_to_json(state.missing)
    assert stored == [[1, 1], [3, 3], [5, 5]]
    restored = dataclasses.replace(state, missing=missing_from_json(stored))
    assert restored == state
    for bad in ([[3, 3], [1, 1]], [[1, 3], [3, 5]], [[1, 2], [3, 3]], [[5, 6]], [[0, 1]], [[2, 1]]):
        with pytest.raises(ValueError, match="missing"):
            dataclasses.replace(state, missing=missing_from_json(bad))
    with pytest.raises(ValueError, match="pair"):
        missing_from_json([[1, "2"]])
    too_many = [[2 * i, 2 * i] for i in range(1, MAX_MISSING_RANGES + 2)]
    with pytest.raises(ValueError, match="at most 256"):
        dataclasses.replace(state, last_sequence=10_000, missing=missing_from_json(too_many))


def test_a_stored_sensor_state_is_checked() -> None:
    good = SensorState("gate-1", SensorKind.GATE_COUNTER, 5, T0, -3)
    assert good.last_observed_at.tzinfo is UTC
    with pytest.raises(ValueError, match="silent_since"):
        dataclasses.replace(good, silent=True)
    with pytest.raises(ValueError, match="floor_sequence"):
        dataclasses.replace(good, floor_sequence=5)
    with pytest.raises(ValueError, match="must not be negative"):
        SensorState("cam-1", SensorKind.CAMERA, 5, T0, -3)


# --- fusion ----------------------------------------------------------------------------------------


def test_a_gate_only_zone_shows_exactly_the_gate_sum_and_never_below_zero() -> None:
    live = ZoneLive()
    feed(live, gate("gate-1", 1, 400), gate("gate-2", 1, 333), gate("gate-3", 1, -100))
    assert live.occupancy == 633 and not live.blind
    feed(live, gate("gate-1", 2, -1000), gate("gate-2", 2, 0))
    assert live.gate_total == -367
    assert live.occupancy == 0 and not live.blind


def test_sources_are_weighted_by_kind_and_rounded_half_up() -> None:
    live = ZoneLive()
    feed(live, gate("gate-1", 1, 100), camera("cam-1", 1, 200), phone("phone-1", 1, 700))
    estimate = fuse(CONFIG, live, T0)
    assert [(s.kind, s.weight) for s in estimate.sources] == [
        (SensorKind.GATE_COUNTER, 4 * FRESH),
        (SensorKind.CAMERA, 2 * FRESH),
        (SensorKind.PHONE_SIGNAL, FRESH),
    ]
    # (4 x 100 + 2 x 200 + 700) / 7 = 214.28...
    assert live.occupancy == 214 == estimate.occupancy
    two_cameras = ZoneLive()
    feed(two_cameras, camera("cam-1", 1, 10), camera("cam-2", 1, 11))
    assert two_cameras.occupancy == 11  # 10.5 rounds up
    feed(two_cameras, camera("cam-2", 2, 12))
    assert two_cameras.occupancy == 11
    feed(two_cameras, camera("cam-2", 3, 9))
    assert two_cameras.occupancy == 10  # 9.5 rounds up


def test_freshness_is_full_up_to_silence_after_then_falls_linearly_to_zero() -> None:
    state = SensorState("cam-1", SensorKind.CAMERA, 1, T0, 10)
    assert freshness(CONFIG, state, T0 - MINUTE) == FRESH  # a clock slightly ahead is still fresh
    assert freshness(CONFIG, state, T0 + SILENCE) == FRESH
    assert freshness(CONFIG, state, T0 + SILENCE + US) == 999
    assert freshness(CONFIG, state, T0 + SILENCE * 5 / 4) == 750
    assert freshness(CONFIG, state, T0 + SILENCE * 3 / 2) == 500
    assert freshness(CONFIG, state, T0 + 2 * SILENCE - MS) == 0  # rounded down
    assert freshness(CONFIG, state, T0 + 2 * SILENCE - SILENCE / 1000) == 1
    assert freshness(CONFIG, state, T0 + 2 * SILENCE) == 0


def test_an_ageing_camera_hands_the_estimate_over_to_the_healthy_gates() -> None:
    live = ZoneLive()
    feed(live, gate("gate-1", 1, 100), camera("cam-1", 1, 300))
    assert live.occupancy == 167  # (400 + 600) / 6 = 166.67
    # The gate keeps reporting (heartbeats); the camera stops.
    at = T0 + SILENCE * 3 / 2
    feed(live, gate("gate-1", 2, 0, at))
    # Gate 4 x 1000, camera 2 x 500: (4000 x 100 + 1000 x 300) / 5000.
    assert live.occupancy == 140
    at = T0 + 2 * SILENCE
    result = feed(live, gate("gate-1", 3, 0, at))[0]
    assert result.occupancy_changed and live.occupancy == 100


def test_one_silent_gate_makes_the_whole_gate_sum_age() -> None:
    live = ZoneLive()
    feed(live, gate("gate-1", 1, 60), gate("gate-2", 1, 40), camera("cam-1", 1, 400))
    at = T0 + SILENCE * 3 / 2
    feed(live, gate("gate-1", 2, 0, at), camera("cam-1", 2, 400, at))
    gates = fuse(CONFIG, live, at).sources[0]
    assert gates.kind is SensorKind.GATE_COUNTER and gates.sensor_ids == ("gate-1", "gate-2")
    assert gates.estimate == 100 and gates.freshness == 500 and gates.weight == 2000
    # (2000 x 100 + 2000 x 400) / 4000
    assert live.occupancy == 250
    at = T0 + 2 * SILENCE
    feed(live, gate("gate-1", 3, 0, at), camera("cam-1", 3, 400, at))
    assert live.occupancy == 400


def test_a_zone_whose_sensors_all_aged_out_is_blind_at_zero() -> None:
    live = ZoneLive()
    assert recompute(CONFIG, live, T0) == 0 and live.blind
    feed(live, gate("gate-1", 1, 300), camera("cam-1", 1, 280))
    assert live.occupancy == 293 and not live.blind
    assert recompute(CONFIG, live, T0 + 2 * SILENCE - SECOND) > 0 and not live.blind
    assert recompute(CONFIG, live, T0 + 2 * SILENCE) == 0
    assert live.blind
    assert fuse(CONFIG, live, T0 + 2 * SILENCE).total_weight == 0


def test_a_stored_zone_recomputes_its_gate_total_from_its_sensors() -> None:
    live = ZoneLive()
    feed(live, gate("gate-1", 1, 30), gate("gate-2", 1, 12), camera("cam-1", 1, 50))
    restored = ZoneLive(
        sensors=copy.deepcopy(live.sensors), watermark=live.watermark, watermark_wall=live.watermark_wall
    )
    assert restored.gate_total == 42
    assert recompute(CONFIG, restored, T0) == live.occupancy
    with pytest.raises(ValueError, match="set together"):
        ZoneLive(watermark=T0)


# --- silence ---------------------------------------------------------------------------------------


def test_a_sensor_is_silent_strictly_after_silence_after_once_per_silence() -> None:
    live = ZoneLive()
    feed(live, gate("gate-1", 7, 1), camera("cam-1", 3, 20))
    feed(live, camera("cam-1", 4, 20, T0 + SILENCE))
    assert detect_silence(CONFIG, live, T0 + SILENCE) == []
    assert not live.sensors["gate-1"].silent
    events = detect_silence(CONFIG, live, T0 + SILENCE + US)
    assert len(events) == 1
    event = events[0]
    assert (event.zone_id, event.sensor_id, event.kind) == ("hubin", "gate-1", SensorKind.GATE_COUNTER)
    assert event.last_sequence == 7 and event.last_observed_at == T0
    assert event.silence_after == SILENCE and event.detected_at == T0 + SILENCE + US
    assert (event.sensors_healthy, event.sensors_total) == (1, 2)
    assert live.sensors["gate-1"].silent and live.sensors["gate-1"].silent_since == T0 + SILENCE + US
    assert detect_silence(CONFIG, live, T0 + SILENCE + US) == []
    assert detect_silence(CONFIG, live, T0 + 10 * SILENCE) != []  # the camera, now
    assert detect_silence(CONFIG, live, T0 + 20 * SILENCE) == []
    assert sensors_healthy(live) == 0 and sensors_total(live) == 2


def test_sensors_silent_at_once_give_one_event_each_with_the_counts_after_each() -> None:
    live = ZoneLive()
    feed(live, gate("gate-b", 1, 1), gate("gate-a", 1, 1), camera("cam-1", 1, 5))
    feed(live, camera("cam-1", 2, 5, T0 + 3 * MINUTE))
    events = detect_silence(CONFIG, live, T0 + 3 * MINUTE)
    assert [(e.sensor_id, e.sensors_healthy, e.sensors_total) for e in events] == [("gate-a", 2, 3), ("gate-b", 1, 3)]


def test_a_fresh_reading_recovers_a_silent_sensor_and_a_new_silence_is_reported_again() -> None:
    live = ZoneLive()
    feed(live, camera("cam-1", 1, 50))
    assert len(detect_silence(CONFIG, live, T0 + SILENCE + US)) == 1
    result = feed(live, camera("cam-1", 2, 60, T0 + 3 * MINUTE))[0]
    assert result.recovered and result.sensors_changed and not result.new_sensor
    state = live.sensors["cam-1"]
    assert not state.silent and state.silent_since is None
    assert sensors_healthy(live) == 1
    assert detect_silence(CONFIG, live, T0 + 3 * MINUTE + SILENCE) == []
    assert len(detect_silence(CONFIG, live, T0 + 3 * MINUTE + SILENCE + US)) == 1


def test_a_late_backfill_of_old_readings_does_not_recover_a_silent_sensor() -> None:
    live = ZoneLive()
    feed(live, gate("gate-1", 1, 1), gate("gate-1", 3, 1), camera("cam-1", 1, 5))
    at = T0 + 10 * MINUTE
    feed(live, camera("cam-1", 2, 5, at))
    assert [e.sensor_id for e in detect_silence(CONFIG, live, at)] == ["gate-1"]
    result = apply(CONFIG, live, gate("gate-1", 2, 1, T0 + SECOND), at)
    assert result.outcome is Outcome.LATE and not result.recovered
    assert live.sensors["gate-1"].silent and live.gate_total == 3
    # A duplicate, however fresh, is no sign of life either: it has no effect at all.
    assert not apply(CONFIG, live, gate("gate-1", 3, 1, at), at).recovered
    assert apply(CONFIG, live, gate("gate-1", 4, 0, at), at).recovered


def test_tick_flags_silence_and_lets_the_estimate_age() -> None:
    live = ZoneLive()
    feed(live, gate("gate-1", 1, 100), camera("cam-1", 1, 400))
    feed(live, camera("cam-1", 2, 400, T0 + SILENCE * 3 / 2))
    assert live.occupancy == 250  # the gate is already half aged: (2000 x 100 + 2000 x 400) / 4000
    result = tick(CONFIG, live, T0 + SILENCE * 3 / 2)
    assert [e.sensor_id for e in result.silences] == ["gate-1"]
    assert not result.occupancy_changed
    result = tick(CONFIG, live, T0 + 2 * SILENCE)
    assert result.silences == () and result.occupancy_changed and result.occupancy == 400
    result = tick(CONFIG, live, T0 + SILENCE * 7 / 2)
    assert [e.sensor_id for e in result.silences] == ["cam-1"]
    assert result.occupancy == 0 and result.blind


# --- the zone clock --------------------------------------------------------------------------------


def test_a_zone_without_readings_runs_on_the_wall_clock() -> None:
    assert zone_now(ZoneLive(), T0) == T0


def test_live_the_zone_clock_follows_the_wall_clock_a_transit_delay_behind() -> None:
    live = ZoneLive()
    apply(CONFIG, live, gate("gate-1", 1, 1, T0), T0 + 50 * MS)
    assert live.watermark == T0 and live.watermark_wall == T0 + 50 * MS
    assert zone_now(live, T0 + 10 * SECOND + 50 * MS) == T0 + 10 * SECOND
    # A wall clock stepped backwards does not take the zone before its watermark.
    assert zone_now(live, T0 - HOUR) == T0


def test_the_zone_clock_never_runs_backwards_nor_ahead_of_the_wall_clock() -> None:
    live = ZoneLive()
    apply(CONFIG, live, gate("gate-1", 1, 1, T0), T0)
    # Observed at T0 + 1 s but delayed 3 s in transit: the clock, at T0 + 4 s, stays there.
    apply(CONFIG, live, gate("gate-2", 1, 1, T0 + SECOND), T0 + 4 * SECOND)
    assert zone_now(live, T0 + 4 * SECOND) == T0 + 4 * SECOND
    assert live.watermark == T0
    # A sensor whose clock is 4 minutes fast moves the zone only up to the wall clock...
    lagging = ZoneLive()
    apply(CONFIG, lagging, gate("gate-1", 1, 1, T0), T0 + 2 * SECOND)
    assert zone_now(lagging, T0 + 2 * SECOND) == T0
    apply(CONFIG, lagging, gate("gate-3", 1, 1, T0 + 4 * MINUTE), T0 + 2 * SECOND)
    assert lagging.watermark == T0 + 2 * SECOND == zone_now(lagging, T0 + 2 * SECOND)
    assert zone_now(lagging, T0 + 3 * MINUTE) == T0 + 3 * MINUTE
    # ... so the punctual gate is not made to look late: it is still healthy 2 minutes after T0.
    assert detect_silence(CONFIG, lagging, T0 + SILENCE) == []
    assert [e.sensor_id for e in detect_silence(CONFIG, lagging, T0 + SILENCE + US)] == ["gate-1"]


def test_a_replayed_evening_moves_the_zone_clock_by_the_readings_own_times() -> None:
    live = ZoneLive()
    wall = datetime.datetime(2025, 6, 1, 9, 0, tzinfo=UTC)  # the machine replays last year's National Day
    start = T0
    # A camera reports once; the gates every minute for an hour, all applied within a second.
    assert apply(CONFIG, live, camera("cam-1", 1, 900, start), wall).outcome is Outcome.ACCEPTED
    for minute in range(61):
        result = apply(CONFIG, live, gate("gate-1", minute + 1, 10, start + minute * MINUTE), wall + minute * MS)
        assert result.outcome is Outcome.ACCEPTED
    end = start + HOUR
    assert zone_now(live, wall + 60 * MS) == end
    # The camera went silent by the readings' clock, though the machine's has barely moved.
    events = detect_silence(CONFIG, live, wall + 60 * MS)
    assert [(e.sensor_id, e.detected_at) for e in events] == [("cam-1", end)]
    # Its estimate aged out: the gates alone count.
    assert live.occupancy == 610 and recompute(CONFIG, live, wall + 60 * MS) == 610
    # A reading a day older than the replayed evening is too old, whatever the machine's date.
    assert rejected(gate("gate-2", 1, 1, end - DAY - US), live, wall + 60 * MS) is Rejection.TOO_OLD
    assert rejected(gate("gate-2", 1, 1, end - DAY), live, wall + 60 * MS) is None
    # When the replay stops, the zone clock runs on from the last reading at the machine's pace.
    assert zone_now(live, wall + 60 * MS + MINUTE) == end + MINUTE


# --- randomized: shuffled, duplicated gate deltas add up exactly -------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3, 20241001, 99])
def test_shuffled_and_duplicated_gate_deltas_add_up_exactly(seed: int) -> None:
    rng = random.Random(seed)
    readings: list[Reading] = []
    for g in range(6):
        for sequence in range(1, 301):
            at = T0 + sequence * SECOND + g * MS
            readings.append(gate(f"gate-{g}", sequence, rng.randint(-20, 30), at))
    true_sum = sum(r.delta or 0 for r in readings)
    # Exact copies: a copy with another value would win if it came first (the same sequence is the
    # same reading), which the duplicate test above covers.
    duplicates = rng.sample(readings, len(readings) // 10)
    stream = readings + duplicates
    rng.shuffle(stream)
    live = ZoneLive()
    wall = T0 + 301 * SECOND
    outcomes = {outcome: 0 for outcome in Outcome}
    for reading in stream:
        result = apply(CONFIG, live, reading, wall)
        assert result.rejection is None
        assert result.outcome is not None
        outcomes[result.outcome] += 1
    assert outcomes[Outcome.ACCEPTED] + outcomes[Outcome.LATE] == len(readings)
    assert outcomes[Outcome.DUPLICATE] == len(duplicates)
    assert outcomes[Outcome.LATE] > 0
    assert live.gate_total == true_sum == sum(s.value for s in live.sensors.values())
    assert live.occupancy == max(0, true_sum) and not live.blind
    assert all(s.missing == [] and s.last_sequence == 300 for s in live.sensors.values())


@pytest.mark.parametrize("seed", [7, 8])
def test_shuffled_camera_readings_keep_the_count_of_the_highest_sequence(seed: int) -> None:
    rng = random.Random(seed)
    readings = [
        camera("cam-1", sequence, rng.randint(0, 2 * CAPACITY), T0 + sequence * SECOND) for sequence in range(1, 201)
    ]
    stream = readings + rng.sample(readings, 20)
    rng.shuffle(stream)
    live = ZoneLive()
    for reading in stream:
        apply(CONFIG, live, reading, T0 + 201 * SECOND)
    assert live.sensors["cam-1"].value == readings[-1].absolute_count == live.occupancy


def test_a_time_before_2000_is_an_unset_clock_not_a_replay() -> None:
    from services.crowd.domain.occupancy import EARLIEST_OBSERVATION

    config = CONFIG
    live = ZoneLive()
    wall = datetime.datetime(2026, 11, 27, 12, tzinfo=datetime.UTC)
    before = Reading(
        "hubin", "g1", SensorKind.GATE_COUNTER, 1, EARLIEST_OBSERVATION - datetime.timedelta(microseconds=1), delta=1
    )
    refused = apply(config, live, before, wall)
    assert refused.rejection is not None and refused.rejection.reason is Rejection.TOO_OLD
    assert live.watermark is None, "a refused reading does not set the zone's clock"
    at = Reading("hubin", "g1", SensorKind.GATE_COUNTER, 1, EARLIEST_OBSERVATION, delta=1)
    assert apply(config, live, at, wall).outcome is Outcome.ACCEPTED


def test_the_highest_last_count_is_what_a_blind_zone_may_rise_on() -> None:
    from services.crowd.domain.occupancy import highest_last_count

    config = CONFIG
    live = ZoneLive()
    wall = datetime.datetime(2026, 11, 27, 12, tzinfo=datetime.UTC)
    assert highest_last_count(live) == 0
    apply(config, live, Reading("hubin", "g1", SensorKind.GATE_COUNTER, 1, wall, delta=300), wall)
    apply(config, live, Reading("hubin", "g2", SensorKind.GATE_COUNTER, 1, wall, delta=-500), wall)
    assert highest_last_count(live) == 0, "a negative gate sum counts as nobody"
    apply(config, live, Reading("hubin", "cam", SensorKind.CAMERA, 1, wall, absolute_count=120), wall)
    assert highest_last_count(live) == 120
    apply(config, live, Reading("hubin", "g1", SensorKind.GATE_COUNTER, 2, wall, delta=900), wall)
    assert highest_last_count(live) == 700
