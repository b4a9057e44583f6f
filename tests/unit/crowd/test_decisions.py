"""A batch of readings and the timer's pass over loaded zones (services/crowd/domain/decisions.py),
without a database: outcomes keep the readings' places, a level is decided at the reading that
crosses a threshold, a blind zone holds its level, and the timer announces silences and records
the aged estimate."""

from __future__ import annotations

import datetime

from services.crowd.domain import decisions
from services.crowd.domain.decisions import LevelChanged, ZoneState
from services.crowd.domain.levels import LevelState
from services.crowd.domain.occupancy import (
    Outcome,
    Reading,
    RejectedReading,
    Rejection,
    SensorKind,
    SilenceEvent,
    ZoneLive,
)
from services.crowd.domain.zones import Level, Measure
from tests.support.hubin import SILENCE_AFTER, hubin

UTC = datetime.UTC
T0 = datetime.datetime(2024, 10, 1, 11, 0, tzinfo=UTC)
SECOND = datetime.timedelta(seconds=1)


def zone(level: Level = Level.NONE, since: datetime.datetime = T0 - datetime.timedelta(hours=1)) -> ZoneState:
    return ZoneState(config=hubin(), live=ZoneLive(), level=LevelState(level, since), version=1, readings_applied=0)


def gate(sequence: int, delta: int, at: datetime.datetime, sensor: str = "gate_1") -> Reading:
    return Reading("hubin", sensor, SensorKind.GATE_COUNTER, sequence, at, delta=delta)


def test_outcomes_keep_the_readings_places_and_an_unknown_zone_is_refused() -> None:
    hubin_zone = zone()
    refused = RejectedReading(Rejection.MISSING_FIELD, "unreadable")
    stray = Reading("nowhere", "gate_1", SensorKind.GATE_COUNTER, 1, T0, delta=1)
    report, decided = decisions.apply_readings(
        {"hubin": hubin_zone}, [gate(1, 10, T0), refused, stray, gate(1, 10, T0)], T0
    )
    assert report.outcomes[0] is Outcome.ACCEPTED
    assert report.outcomes[1] is refused
    assert isinstance(report.outcomes[2], RejectedReading) and report.outcomes[2].reason is Rejection.UNKNOWN_ZONE
    assert report.outcomes[3] is Outcome.DUPLICATE
    assert [index for index, _ in report.rejected] == [1, 2]
    assert hubin_zone.applied == 1 and hubin_zone.dirty_sensors == {"gate_1"}
    assert hubin_zone.live.occupancy == 10
    assert decided.happenings == []


def test_a_level_is_decided_at_the_reading_that_crosses_its_threshold() -> None:
    hubin_zone = zone()
    readings = [gate(1, 5000, T0), gate(2, 1500, T0 + SECOND), gate(3, 100, T0 + 2 * SECOND)]
    _, decided = decisions.apply_readings({"hubin": hubin_zone}, readings, T0 + 2 * SECOND)
    (change,) = decided.level_changes
    assert isinstance(change, LevelChanged)
    assert (change.previous, change.level, change.occupancy) == (Level.NONE, Level.III, 6500)
    assert change.triggered_by_observed_at == T0 + SECOND
    assert change.measures.to_take == (Measure.ANNOUNCE, Measure.STAFF_DEPLOYED)
    assert hubin_zone.level.level is Level.III
    (tally,) = decided.tallies.values()
    assert (tally.samples, tally.max_occupancy, tally.last_occupancy) == (3, 6600, 6600)


def test_a_blind_zone_holds_its_level() -> None:
    hubin_zone = zone(Level.II)
    decisions.apply_readings({"hubin": hubin_zone}, [gate(1, 8500, T0)], T0)
    assert hubin_zone.level.level is Level.II
    # Long after its only sensor fell silent and its estimate aged out, the zone sees nobody.
    later = T0 + 3 * SILENCE_AFTER
    decided = decisions.review(hubin_zone, later)
    assert hubin_zone.live.blind
    assert [type(h) for h in decided.happenings] == [SilenceEvent]
    assert hubin_zone.level.level is Level.II, "no evidence is no reason to lift barriers"


def test_the_timer_announces_a_silence_and_records_the_aged_estimate() -> None:
    hubin_zone = zone()
    camera = Reading("hubin", "camera_1", SensorKind.CAMERA, 1, T0 + SILENCE_AFTER, absolute_count=200)
    decisions.apply_readings({"hubin": hubin_zone}, [gate(1, 100, T0)], T0)
    decisions.apply_readings({"hubin": hubin_zone}, [camera], T0 + SILENCE_AFTER)
    hubin_zone.stored_occupancy = hubin_zone.live.occupancy
    hubin_zone.dirty_sensors.clear()
    # The gate falls silent; its weight then ages while the camera's stays whole.
    decided = decisions.review(hubin_zone, T0 + SILENCE_AFTER * 3 / 2)
    (silence,) = decided.happenings
    assert isinstance(silence, SilenceEvent) and silence.sensor_id == "gate_1"
    assert hubin_zone.dirty_sensors == {"gate_1"}
    assert hubin_zone.live.occupancy > hubin_zone.stored_occupancy
    (tally,) = decided.tallies.values()
    assert tally.last_occupancy == hubin_zone.live.occupancy


def test_review_is_due_when_a_sensor_may_fall_silent() -> None:
    hubin_zone = zone()
    decisions.apply_readings({"hubin": hubin_zone}, [gate(1, 100, T0)], T0)
    assert hubin_zone.review_at(T0) == T0 + SILENCE_AFTER
    assert hubin_zone.next_silence() == T0 + SILENCE_AFTER
