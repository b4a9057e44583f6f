"""Crowd's contract mappings (services/crowd/contract.py): every domain enum value has its contract
value and back, a zone survives the trip through the contract, and a unit of work's decisions
become their events in order, each with the zone as subject."""

from __future__ import annotations

import datetime
import enum
import random

import pytest

from govmesh.crowd.v1 import crowd_pb2 as pb
from govmesh.crowd.v1 import events_pb2
from govmesh.enums import from_proto
from govmesh.errors import InvalidArgument
from services.crowd import contract
from services.crowd.domain.decisions import LevelChanged
from services.crowd.domain.levels import MeasuresChange
from services.crowd.domain.occupancy import Reading, RejectedReading, Rejection, SilenceEvent
from services.crowd.domain.zones import Level, Measure, SensorKind, ZoneRecord, build_zone
from tests.support.hubin import hubin

UTC = datetime.UTC
T0 = datetime.datetime(2024, 10, 1, 11, 0, tzinfo=UTC)

ENUMS = [
    (Level, pb.ResponseLevel, "RESPONSE_LEVEL_", contract.level_pb),
    (Measure, pb.Measure, "MEASURE_", contract.measure_pb),
    (SensorKind, pb.SensorKind, "SENSOR_KIND_", contract.kind_pb),
    (Rejection, pb.ReadingRejectionReason, "READING_REJECTION_REASON_", contract.rejection_reason_pb),
]


@pytest.mark.parametrize(("domain", "proto", "prefix", "to_pb"), ENUMS, ids=lambda v: getattr(v, "__name__", ""))
def test_every_enum_value_maps_both_ways(domain: type[enum.Enum], proto: object, prefix: str, to_pb: object) -> None:
    for member in domain:
        value = to_pb(member)  # type: ignore[operator]
        assert from_proto(domain, proto, prefix, value) is member
    contract_names = {name.removeprefix(prefix) for name in proto.keys()}  # type: ignore[attr-defined]
    assert contract_names - {"UNSPECIFIED"} == {member.name for member in domain}


def test_a_zone_survives_the_trip_through_the_contract() -> None:
    config = build_zone("hubin", "湖滨", "Hubin", 20_000)
    message = contract.zone_pb(ZoneRecord(config, T0, T0 + datetime.timedelta(hours=1)))
    assert contract.config_from_pb(message) == config
    assert message.updated_at.ToDatetime(UTC) == T0 + datetime.timedelta(hours=1)


def test_a_zone_that_breaks_the_rules_names_its_first_field() -> None:
    with pytest.raises(InvalidArgument) as raised:
        contract.config_from_pb(pb.Zone(zone_id="Hubin!", capacity=-1))
    assert raised.value.field == "zone.zone_id"


def test_decisions_become_their_events_in_order() -> None:
    silence = SilenceEvent("hubin", "gate_1", SensorKind.GATE_COUNTER, 7, T0, hubin().silence_after, T0, 0, 1)
    change = LevelChanged(
        zone_id="hubin",
        zone_name_zh="湖滨",
        capacity=10_000,
        at=T0,
        previous=Level.III,
        level=Level.II,
        occupancy=8000,
        load_bp=8000,
        measures=MeasuresChange((Measure.BARRIERS_UP,), ()),
        triggered_by_observed_at=None,
        decided_at=T0 + datetime.timedelta(seconds=1),
    )
    events = contract.events_pb([silence, change])
    assert [subject for _, subject in events] == ["hubin", "hubin"]
    silent, changed = (event for event, _ in events)
    assert isinstance(silent, events_pb2.SensorSilent) and silent.sensor_kind == pb.SENSOR_KIND_GATE_COUNTER
    assert isinstance(changed, events_pb2.LevelChanged)
    assert (changed.previous_level, changed.level) == (pb.RESPONSE_LEVEL_III, pb.RESPONSE_LEVEL_II)
    assert list(changed.measures_to_take) == [pb.MEASURE_BARRIERS_UP]
    assert changed.changed_at.ToDatetime(UTC) == T0 + datetime.timedelta(seconds=1)
    assert not changed.HasField("triggered_by_observed_at"), "a timer's decision has no triggering reading"


def _reading_as_protobuf_reads_it(message: pb.SensorReading) -> Reading | RejectedReading:
    """reading_from_pb as it was written before its hot path: protobuf's own conversions."""
    observed_at = None
    if message.HasField("observed_at"):
        try:
            observed_at = message.observed_at.ToDatetime(UTC)
        except (ValueError, OverflowError):
            return RejectedReading(
                Rejection.ABSURD_VALUE,
                f"observed_at ({message.observed_at.seconds} s, {message.observed_at.nanos} ns) is not a time",
            )
    value = message.WhichOneof("value")
    return Reading(
        zone_id=message.zone_id,
        sensor_id=message.sensor_id,
        kind=from_proto(SensorKind, pb.SensorKind, "SENSOR_KIND_", message.sensor_kind),
        sequence=message.sequence,
        observed_at=observed_at,
        delta=message.delta if value == "delta" else None,
        absolute_count=message.absolute_count if value == "absolute_count" else None,
    )


def test_a_reading_is_read_as_protobufs_own_conversions_read_it() -> None:
    rng = random.Random(5)
    edges = [-62_135_596_801, -62_135_596_800, -1, 0, 1_800_000_000, 253_402_300_799, 253_402_300_800, 2**62]
    for _ in range(3000):
        message = pb.SensorReading(zone_id="hubin", sensor_id="g", sequence=rng.randint(-5, 2**40))
        message.sensor_kind = rng.choice([0, 1, 2, 3, 9])  # 9: a number no kind has
        if rng.random() < 0.9:
            message.observed_at.seconds = rng.choice([*edges, rng.randint(-(2**40), 2**40)])
            message.observed_at.nanos = rng.choice([0, 999, 1000, 123_456_789, 999_999_999, 10**9, -1])
        arm = rng.random()
        if arm < 0.4:
            message.delta = rng.randint(-(2**40), 2**40)
        elif arm < 0.8:
            message.absolute_count = rng.randint(-5, 2**40)
        assert contract.reading_from_pb(message) == _reading_as_protobuf_reads_it(message), message
