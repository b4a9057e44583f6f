"""The ingest process's pure parts: reading a broker message (the fast path must read exactly what
protobuf's proto3 JSON parser reads, and leave everything else to it; a batch and binary protobuf
read as the same readings; what cannot be read is refused naming the property or field) and the
shard settings."""

from __future__ import annotations

import datetime
import json
import random

import pytest
from google.protobuf import json_format

from govmesh import config
from govmesh.config import ConfigError
from govmesh.crowd.v1 import crowd_pb2 as pb
from services.crowd.contract import reading_from_pb
from services.crowd.domain.occupancy import Reading, RejectedReading, Rejection
from services.crowd.ingest import (
    BATCH,
    BATCH_TYPE,
    MAX_READINGS_PER_MESSAGE,
    PROTOBUF,
    READING_TYPE,
    Sharding,
    _Pending,
    parse_message,
)

KINDS = [pb.SENSOR_KIND_UNSPECIFIED, pb.SENSOR_KIND_GATE_COUNTER, pb.SENSOR_KIND_CAMERA, pb.SENSOR_KIND_PHONE_SIGNAL]


def random_reading(rng: random.Random) -> pb.SensorReading:
    message = pb.SensorReading()
    if rng.random() < 0.9:
        message.zone_id = rng.choice(["hubin", "xihu_north", "a" * 60])
    if rng.random() < 0.95:
        message.sensor_id = rng.choice(["gate-1", "相机-东", "x"])
    message.sensor_kind = rng.choice(KINDS)
    message.sequence = rng.choice([0, 1, 7, 2**53, -3, 2**62])
    if rng.random() < 0.9:
        at = datetime.datetime(2026, 11, 27, 12, tzinfo=datetime.UTC) + datetime.timedelta(
            microseconds=rng.randrange(10**12)
        )
        message.observed_at.FromDatetime(at)
        if rng.random() < 0.2:
            message.observed_at.nanos = rng.randrange(10**9)  # beyond microseconds: the slow path
    arm = rng.random()
    if arm < 0.45:
        message.delta = rng.randint(-5000, 5000)
    elif arm < 0.9:
        message.absolute_count = rng.randint(-5, 50_000)
    return message


def bodies(message: pb.SensorReading, rng: random.Random) -> list[str]:
    """The same reading as different clients may write it in proto3 JSON."""
    camel = json_format.MessageToJson(message, indent=None)
    snake = json_format.MessageToJson(message, indent=None, preserving_proto_field_name=True)
    numeric = json.loads(camel)
    for key in ("sequence", "delta", "absoluteCount"):
        if key in numeric:
            numeric[key] = int(numeric[key])  # int64 as a JSON number, also valid
    if "sensorKind" in numeric and rng.random() < 0.5:
        numeric["sensorKind"] = pb.SensorKind.Value(numeric["sensorKind"])  # the enum by number
    return [camel, snake, json.dumps(numeric, ensure_ascii=False)]


def test_the_fast_path_reads_exactly_what_protobuf_reads() -> None:
    rng = random.Random(34)
    for _ in range(2000):
        message = random_reading(rng)
        for body in bodies(message, rng):
            expected_message = json_format.Parse(body, pb.SensorReading())
            routing_key = expected_message.zone_id or "routed"
            expected_message.zone_id = routing_key
            assert parse_message(body, routing_key) == [reading_from_pb(expected_message)], body


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"zoneId": "hubin", "colour": "red"}',
        b'{"zoneId": "hubin", "delta": "1", "absoluteCount": "2"}',
        b'{"zoneId": "hubin", "sequence": "one"}',
        b'{"zoneId": "hubin", "sensorKind": "SENSOR_KIND_RADAR"}',
        b'{"zoneId": "hubin", "observedAt": "yesterday"}',
        b'{"zoneId": 7}',
        b"\xff\xfe",
    ],
)
def test_a_body_that_is_not_a_reading_is_refused_with_the_parsers_reason(body: bytes) -> None:
    [refused] = parse_message(body, "hubin")
    assert isinstance(refused, RejectedReading)
    assert refused.reason is Rejection.MISSING_FIELD
    assert refused.message.startswith("the message body is not a SensorReading in proto3 JSON: ")
    assert len(refused.message) < 300


def test_an_empty_zone_id_is_the_routing_keys_and_other_offsets_are_read_by_protobuf() -> None:
    [parsed] = parse_message(b'{"sensorId": "g", "observedAt": "2026-11-27T20:00:00+08:00", "delta": "2"}', "hubin")
    assert isinstance(parsed, Reading)
    assert parsed.zone_id == "hubin"
    assert parsed.observed_at == datetime.datetime(2026, 11, 27, 12, tzinfo=datetime.UTC)
    assert parsed.delta == 2 and parsed.absolute_count is None and parsed.kind is None


def expected(message: pb.SensorReading, routing_key: str) -> Reading | RejectedReading:
    copy = pb.SensorReading()
    copy.CopyFrom(message)
    copy.zone_id = copy.zone_id or routing_key
    return reading_from_pb(copy)


def test_a_batch_in_json_or_binary_and_a_binary_reading_read_as_the_same_readings() -> None:
    rng = random.Random(13)
    for _ in range(300):
        readings = [random_reading(rng) for _ in range(rng.randint(0, 6))]
        for reading in readings:
            reading.zone_id = rng.choice(["hubin", ""])  # the routing key's zone, named or not
        batch = pb.SensorReadingBatch(readings=readings)
        want = [expected(reading, "hubin") for reading in readings]
        for body, content_type in [
            (json_format.MessageToJson(batch, indent=None).encode(), "application/json"),
            (json_format.MessageToJson(batch, preserving_proto_field_name=True).encode(), "application/json"),
            (batch.SerializeToString(), PROTOBUF),
            (batch.SerializeToString(), "application/protobuf"),
        ]:
            assert parse_message(body, "hubin", content_type, BATCH_TYPE) == want, body
        for reading in readings:
            for message_type in (None, READING_TYPE):
                binary = parse_message(reading.SerializeToString(), "hubin", PROTOBUF, message_type)
                assert binary == [expected(reading, "hubin")]


def test_a_reading_of_another_zone_than_the_routing_key_is_refused_and_the_others_kept() -> None:
    at = "2026-11-27T12:00:00Z"
    batch = {
        "readings": [
            {"zoneId": "hubin", "sensorId": "g", "sequence": "1", "observedAt": at, "delta": "1"},
            {"zoneId": "xihu_north", "sensorId": "g", "sequence": "2", "observedAt": at, "delta": "1"},
            {"sensorId": "g", "sequence": "3", "observedAt": at, "delta": "1"},
        ]
    }
    first, refused, third = parse_message(json.dumps(batch), "hubin", None, BATCH_TYPE)
    assert isinstance(first, Reading) and isinstance(third, Reading)
    assert (first.sequence, third.sequence, third.zone_id) == (1, 3, "hubin")
    assert isinstance(refused, RejectedReading) and refused.reason is Rejection.MISROUTED
    assert refused.message.startswith("readings[1].zone_id is not the message's routing key")
    assert "xihu_north" not in refused.message
    [single] = parse_message(json.dumps(batch["readings"][1]), "hubin")
    assert isinstance(single, RejectedReading) and single.reason is Rejection.MISROUTED
    assert single.message.startswith("zone_id is not the message's routing key")


GOOD = {"zoneId": "hubin", "sensorId": "g", "sequence": "1", "observedAt": "2026-11-27T12:00:00Z", "delta": "1"}


@pytest.mark.parametrize(
    ("body", "content_type", "message_type", "reason", "start"),
    [
        (json.dumps(GOOD), None, "govmesh.crowd.v1.Zone", Rejection.MISSING_FIELD, "type 'govmesh.crowd.v1.Zone' is"),
        (json.dumps(GOOD), "text/plain", None, Rejection.MISSING_FIELD, "content_type 'text/plain' is neither"),
        (b"\xff\xff\xff", PROTOBUF, None, Rejection.MISSING_FIELD, "the message body is not a SensorReading in binary"),
        (b"\x0a\xff", PROTOBUF, BATCH_TYPE, Rejection.MISSING_FIELD, "the message body is not a SensorReadingBatch in"),
        (
            json.dumps(GOOD),
            None,
            BATCH_TYPE,
            Rejection.MISSING_FIELD,
            "the message body is not a SensorReadingBatch in",
        ),
        (
            json.dumps({"readings": [], "colour": "red"}),
            "application/json",
            BATCH_TYPE,
            Rejection.MISSING_FIELD,
            "the message body is not a SensorReadingBatch in proto3 JSON: ",
        ),
        (
            pb.SensorReadingBatch(
                readings=[pb.SensorReading(zone_id="hubin")] * (MAX_READINGS_PER_MESSAGE + 1)
            ).SerializeToString(),
            PROTOBUF,
            BATCH_TYPE,
            Rejection.ABSURD_VALUE,
            f"readings: {MAX_READINGS_PER_MESSAGE + 1} readings in one message",
        ),
    ],
    ids=[
        "wrong-type",
        "wrong-content-type",
        "bad-binary",
        "bad-binary-batch",
        "reading-as-batch",
        "batch-field",
        "too-many",
    ],
)
def test_a_message_that_cannot_be_read_as_what_it_says_is_refused_whole_naming_why(
    body: bytes | str, content_type: str | None, message_type: str | None, reason: Rejection, start: str
) -> None:
    [refused] = parse_message(body, "hubin", content_type, message_type)
    assert isinstance(refused, RejectedReading)
    assert refused.reason is reason
    assert refused.message.startswith(start), refused.message
    assert len(refused.message) < 300


def test_a_bad_reading_of_a_json_batch_is_refused_by_its_place_and_the_others_kept() -> None:
    body = json.dumps({"readings": [GOOD, {**GOOD, "colour": "red"}, {**GOOD, "sequence": "2"}]})
    good, refused, also_good = parse_message(body, "hubin", "application/json; charset=utf-8", BATCH_TYPE)
    assert isinstance(good, Reading) and isinstance(also_good, Reading) and also_good.sequence == 2
    assert isinstance(refused, RejectedReading) and refused.reason is Rejection.MISSING_FIELD
    assert refused.message.startswith("readings[1] is not a SensorReading in proto3 JSON: "), refused.message
    assert "colour" in refused.message, "the parser's reason names the field"


def test_shards_are_split_between_ingest_processes_and_bad_settings_are_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def sharding(environ: dict[str, str]) -> Sharding:
        for name in ("GOVMESH_INSTANCE", "GOVMESH_INSTANCES", "CROWD_INGEST_SHARDS"):
            monkeypatch.setenv(name, environ.get(name, ""))
        return Sharding.from_settings(config.load("crowd"))

    assert sharding({}).own() == list(range(8))
    first, second, third = (sharding({"GOVMESH_INSTANCES": "3", "GOVMESH_INSTANCE": str(i)}) for i in range(3))
    assert sorted(first.own() + second.own() + third.own()) == list(range(8)), "every shard has one owner"
    assert first.standby() == [1, 2, 4, 5, 7]
    for environ, name in [
        ({"CROWD_INGEST_SHARDS": "0"}, "CROWD_INGEST_SHARDS"),
        ({"GOVMESH_INSTANCES": "2", "GOVMESH_INSTANCE": "2"}, "GOVMESH_INSTANCE"),
        ({"GOVMESH_INSTANCES": "two"}, "GOVMESH_INSTANCES"),
    ]:
        with pytest.raises(ConfigError, match=name):
            sharding(environ)


def test_a_transaction_takes_whole_messages_up_to_a_batch_of_readings_and_a_bigger_one_alone() -> None:
    pending = _Pending()
    refusal = RejectedReading(Rejection.MISSING_FIELD, "x")
    sizes = [600, 300, 200, BATCH + 500, 10, 0]
    for tag, size in enumerate(sizes):
        pending.add(tag, [refusal] * size)  # type: ignore[arg-type]  # a message stands in by its tag
    taken = []
    while pending.messages:
        messages, readings = pending.take()
        assert [len(r) for r in readings] == [sizes[m] for m in messages]
        taken.append(messages)
        assert pending.count == sum(sizes[m] for m in pending.messages)
    assert taken == [[0, 1], [2], [3], [4, 5]]


def test_a_binary_batch_or_a_keyless_message_naming_a_zone_is_refused_as_misrouted() -> None:
    """Issue 14: every reading of a batch must be the routing key's zone, binary bodies as JSON
    ones; a routing key naming no zone leaves every reading that names one misrouted."""
    reading = pb.SensorReading(zone_id="hubin", sensor_id="g", sequence=1, delta=1)
    reading.observed_at.FromJsonString("2026-11-27T12:00:00Z")
    stray = pb.SensorReading()
    stray.CopyFrom(reading)
    stray.zone_id, stray.sequence = "xihu_north", 2
    body = pb.SensorReadingBatch(readings=[reading, stray]).SerializeToString()
    applied, refused = parse_message(body, "hubin", PROTOBUF, BATCH_TYPE)
    assert isinstance(applied, Reading) and applied.zone_id == "hubin"
    assert isinstance(refused, RejectedReading) and refused.reason is Rejection.MISROUTED
    assert refused.message.startswith("readings[1].zone_id")
    for routing_key, misrouted in (("", [0, 1]), ("xihu_north", [0])):
        outcomes = parse_message(body, routing_key, PROTOBUF, BATCH_TYPE)
        reasons = [o.reason if isinstance(o, RejectedReading) else None for o in outcomes]
        assert [i for i, reason in enumerate(reasons) if reason is Rejection.MISROUTED] == misrouted
    [keyless] = parse_message(reading.SerializeToString(), "", PROTOBUF)
    assert isinstance(keyless, RejectedReading) and keyless.reason is Rejection.MISROUTED
