"""Crowd through its public interfaces: the api, the worker and the ingest process(es) as real
processes, readings over gRPC (ReportReadings) and over the broker (crowd.readings), events as an
integrator receives them, on SQLite and on PostgreSQL.

Readings carry their own observation times and the zone decides by them (event time), so a surge
that took an evening is fed in seconds as readings observed over the last hour or so."""

from __future__ import annotations

import datetime
import random
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import pika
import pytest
from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from govmesh.clock import SHANGHAI
from govmesh.crowd.v1 import crowd_pb2 as pb
from govmesh.crowd.v1 import crowd_pb2_grpc, events_pb2
from tests.support.crowd_mesh import (
    SENSORS,
    UTC,
    Crowd,
    Publisher,
    all_zone_ids,
    duration,
    level_events,
    metric,
    reading,
    start_crowd,
    watch_deliveries,
    zone,
)
from tests.support.mesh import Integrator, Process, ServiceEnv, database_for, free_port, virtual_host, wait_for


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def mesh(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceEnv, str]]:
    """One crowd (api, worker, ingest) per database for the tests of this module that can share
    it: each uses zones of its own, and reads counters as differences."""
    tmp_path = tmp_path_factory.mktemp("crowd")
    with virtual_host() as amqp:
        env = ServiceEnv("crowd", database_for(request, tmp_path), tmp_path, amqp)
        try:
            start_crowd(env, amqp)
            yield env, amqp
        finally:
            env.stop_all()


@pytest.fixture
def crowd(mesh: tuple[ServiceEnv, str]) -> Iterator[Crowd]:
    """The city brain's operators, who configure and watch zones."""
    client = Crowd(mesh[0])
    yield client
    client.close()


@pytest.fixture
def sensors(mesh: tuple[ServiceEnv, str]) -> Iterator[Crowd]:
    """The sensor gateway, which may only report readings."""
    client = Crowd(mesh[0], SENSORS)
    yield client
    client.close()


@pytest.fixture
def publisher(mesh: tuple[ServiceEnv, str]) -> Iterator[Publisher]:
    client = Publisher(mesh[1])
    yield client
    client.close()


def test_readings_over_grpc_are_deduplicated_ordered_and_refused_with_reasons(
    mesh: tuple[ServiceEnv, str], crowd: Crowd, sensors: Crowd
) -> None:
    env, _ = mesh
    created = crowd.upsert(zone("gate_test", capacity=1000))
    assert created.created
    assert [lvl.threshold_bp for lvl in created.zone.levels] == [6000, 8000, 10000], "the default levels"
    assert pb.MEASURE_BARRIERS_UP in created.zone.levels[1].measures
    assert not crowd.upsert(zone("gate_test", capacity=1000)).created, "a second upsert replaces"

    now = datetime.datetime.now(UTC)
    t = [now - datetime.timedelta(minutes=30) + datetime.timedelta(seconds=10 * i) for i in range(20)]
    first = [reading("gate_test", "g1", seq, t[seq], delta=5) for seq in (1, 2, 4)]  # 3 is late
    second = [
        reading("gate_test", "g1", 2, t[2], delta=5),  # duplicate
        reading("gate_test", "g2", 1, t[4], delta=-2),
        reading("gate_test", "g1", 3, t[3], delta=5),  # late, fills the gap
        reading("gate_test", "g1", 5, t[5], delta=0),
        reading("gate_test", "nowhere", 1, t[5], delta=1),  # sensor fine, zone below is unknown
        reading("gate_test", "cam", 1, t[5], count=-1),  # negative count
        reading("gate_test", "g3", 1, t[5], delta=1001),  # more than the zone holds
        reading("gate_test", "g4", 1, now + datetime.timedelta(hours=1), delta=1),  # future
        pb.SensorReading(zone_id="gate_test", sensor_id="g5", sequence=1),  # no kind, time, value
    ]
    second[4].zone_id = "no_such_zone"
    response = sensors.report([first, second])
    assert (response.received, response.accepted, response.late, response.duplicates, response.rejected) == (
        12,
        6,
        1,
        1,
        5,
    )
    reasons = {r.index: r.reason for r in response.rejections}
    assert reasons == {
        7: pb.READING_REJECTION_REASON_UNKNOWN_ZONE,
        8: pb.READING_REJECTION_REASON_NEGATIVE_COUNT,
        9: pb.READING_REJECTION_REASON_ABSURD_VALUE,
        10: pb.READING_REJECTION_REASON_FUTURE_TIME,
        11: pb.READING_REJECTION_REASON_MISSING_FIELD,
    }
    assert all(r.message for r in response.rejections), "every refusal says why"

    status = crowd.status("gate_test")
    assert status.occupancy == 5 * 4 - 2, "each delta applied once, the late one too"
    assert (status.sensors_total, status.sensors_healthy) == (2, 2), "refused readings create no sensor"
    assert {s.sensor_id: s.last_sequence for s in status.sensors} == {"g1": 5, "g2": 1}
    assert status.level == pb.RESPONSE_LEVEL_NONE

    again = sensors.report([first, second])
    assert (again.accepted, again.duplicates, again.rejected) == (0, 7, 5), "a resent stream changes nothing"
    assert crowd.status("gate_test").occupancy == 18
    assert metric(env.api_metrics_port, "govmesh_crowd_readings_rejected_total", 'reason="negative_count"') >= 2


def test_bad_zones_are_refused_naming_the_field_and_rights_are_enforced(crowd: Crowd, sensors: Crowd) -> None:
    bad = zone("Bad Zone", capacity=0)
    with pytest.raises(grpc.RpcError) as refused:
        crowd.upsert(bad)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith("zone.zone_id"), refused.value.details()
    assert "zone.capacity" in refused.value.details(), "every problem is named at once"
    levels = [
        pb.ZoneLevel(level=pb.RESPONSE_LEVEL_III, threshold_bp=8000, measures=[pb.MEASURE_ANNOUNCE]),
        pb.ZoneLevel(level=pb.RESPONSE_LEVEL_II, threshold_bp=7000, measures=[pb.MEASURE_BARRIERS_UP]),
        pb.ZoneLevel(level=pb.RESPONSE_LEVEL_I, threshold_bp=10000, measures=[pb.MEASURE_ENTRY_CLOSED]),
    ]
    with pytest.raises(grpc.RpcError) as refused:
        crowd.upsert(zone("levels_wrong", levels=levels))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "zone.levels[1].threshold_bp" in refused.value.details()
    assert not {"Bad Zone", "levels_wrong"} & set(all_zone_ids(crowd)), "nothing was stored"

    with pytest.raises(grpc.RpcError) as denied:
        sensors.upsert(zone("sensor_made"))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as missing:
        crowd.status("no_such_zone")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    for index in range(3):
        crowd.upsert(zone(f"listed_{index}"))
    listed = all_zone_ids(crowd, page_size=2)
    assert listed == sorted(listed) and len(listed) == len(set(listed)), "each zone once, by zone id"
    assert [z for z in listed if z.startswith("listed_")] == ["listed_0", "listed_1", "listed_2"]
    with pytest.raises(grpc.RpcError) as bad_token:
        crowd.stub.ListZones(pb.ListZonesRequest(page_token="nonsense"), metadata=crowd.metadata, timeout=10)
    assert bad_token.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def surge(
    zone_id: str, start: datetime.datetime, profile: Sequence[int], step: datetime.timedelta
) -> list[pb.SensorReading]:
    """Gate readings (two gates, entries and exits) that take the zone through `profile`, one
    occupancy per step, each reading observed at its step."""
    readings: list[pb.SensorReading] = []
    occupancy = 0
    for index, target in enumerate(profile):
        change = target - occupancy
        half = change // 2
        at = start + index * step
        readings.append(reading(zone_id, "east_gate", index + 1, at, delta=half))
        readings.append(reading(zone_id, "west_gate", index + 1, at, delta=change - half))
        occupancy = target
    return readings


def test_a_surge_raises_three_two_one_and_lowers_back_with_one_event_per_change(
    mesh: tuple[ServiceEnv, str], crowd: Crowd, publisher: Publisher
) -> None:
    _, amqp = mesh
    events = Integrator(amqp, "crowd.events", "level_changed")
    try:
        crowd.upsert(zone("hubin", capacity=10_000, min_dwell=duration(300)))
        # An evening at the fountain, one step a minute over the last ~2 hours: the crowd builds to
        # 105% at the show, wobbles around each threshold (no flapping), then disperses.
        profile = (
            [1000, 3000, 5000, 5990, 6000, 5800, 6100, 7000, 7990, 8000, 7600, 8100, 9000, 9990, 10000]
            + [10500] * 5
            + [9600, 9400, 8000, 7600, 7400, 7000, 6000, 5600, 5400, 5000]
            + [5000] * 10
            + [3000, 1000, 500]
        )
        start = datetime.datetime.now(UTC) - datetime.timedelta(minutes=len(profile) + 5)
        publisher.publish(surge("hubin", start, profile, datetime.timedelta(minutes=1)))
        changes = level_events(events, "hubin", 6)
        assert [
            (pb.ResponseLevel.Name(c.previous_level)[15:], pb.ResponseLevel.Name(c.level)[15:]) for c in changes
        ] == [
            ("NONE", "III"),
            ("III", "II"),
            ("II", "I"),
            ("I", "II"),
            ("II", "III"),
            ("III", "NONE"),
        ]
        up_loads = [c.load_bp for c in changes[:3]]
        assert up_loads == [6000, 8000, 10000], "each level is entered exactly at its threshold"
        assert pb.MEASURE_BARRIERS_UP in changes[1].measures_to_take
        assert pb.MEASURE_ENTRY_CLOSED in changes[2].measures_to_take
        assert pb.MEASURE_ENTRY_CLOSED in changes[3].measures_to_lift
        assert pb.MEASURE_BARRIERS_UP in changes[4].measures_to_lift
        for change in changes:
            assert change.zone_name_zh == "测试区hubin"
            assert change.HasField("triggered_by_observed_at") and change.HasField("changed_at")
        # Down moves waited for the 5-minute dwell and the 5% hysteresis band.
        observed = [c.triggered_by_observed_at.ToDatetime(UTC) for c in changes]
        assert observed[3] - observed[2] >= datetime.timedelta(minutes=5)
        assert changes[3].load_bp < 9500 and changes[4].load_bp < 7500 and changes[5].load_bp < 5500
        later = [json_format.Parse(body, events_pb2.LevelChanged()) for _, _, body in events.drain(quiet=2)]
        assert [e for e in later if e.zone_id == "hubin"] == [], "one event per change, nothing more"

        status = crowd.status("hubin")
        assert status.level == pb.RESPONSE_LEVEL_NONE and status.occupancy == 500
        assert list(status.active_measures) == []
    finally:
        events.close()


def test_watchers_see_a_snapshot_then_each_level_change(crowd: Crowd, publisher: Publisher) -> None:
    crowd.upsert(zone("lake", capacity=100))
    crowd.upsert(zone("other", capacity=100))
    received: list[pb.WatchZonesResponse] = []
    stream = crowd.stub.WatchZones(
        pb.WatchZonesRequest(zone_ids=["lake"], min_interval=duration(0)), metadata=crowd.metadata, timeout=60
    )

    def watch() -> None:
        try:
            for update in stream:
                received.append(update)
        except grpc.RpcError:
            pass

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(received) >= 1, timeout=15)
        assert received[0].kind == pb.ZONE_UPDATE_KIND_SNAPSHOT and received[0].status.zone_id == "lake"
        start = datetime.datetime.now(UTC) - datetime.timedelta(minutes=5)
        publisher.publish(surge("lake", start, [30, 65], datetime.timedelta(seconds=30)))
        wait_for(lambda: any(u.kind == pb.ZONE_UPDATE_KIND_LEVEL for u in received), timeout=15)
        level_update = next(u for u in received if u.kind == pb.ZONE_UPDATE_KIND_LEVEL)
        assert level_update.status.level == pb.RESPONSE_LEVEL_III and level_update.status.occupancy == 65
        publisher.publish(surge("other", start, [90], datetime.timedelta(seconds=30)))
        time.sleep(1.5)
        assert all(u.status.zone_id == "lake" for u in received), "only the zones asked for"
    finally:
        stream.cancel()
        thread.join(5)


def test_a_thousand_watchers_of_one_api_process_each_see_every_change_and_the_next_is_told_to_retry(
    mesh: tuple[ServiceEnv, str], crowd: Crowd
) -> None:
    """Issue 13's 1,000 concurrent watchers per api process, over gRPC: one feed for all on the
    grpc.aio server, every watcher sent every change; while they are held, the 1,001st is refused
    UNAVAILABLE, saying why and what to do, rather than left waiting. (The old limit was 8: the
    server had a thread per stream.)"""
    env, _ = mesh
    crowd.upsert(zone("screens", capacity=100_000))
    refused: list[grpc.RpcError] = []

    def one_more() -> None:
        with grpc.insecure_channel(env.target_of("crowd")) as channel:
            stream = crowd_pb2_grpc.CrowdServiceStub(channel).WatchZones(
                pb.WatchZonesRequest(zone_ids=["screens"]), metadata=crowd.metadata, timeout=30
            )
            with pytest.raises(grpc.RpcError) as error:
                next(stream)
            refused.append(error.value)

    seen = watch_deliveries(env, ["screens"], 1000, changes=2, spacing=1.0, while_held=one_more)
    assert seen.complete == 1000, f"only {seen.complete} of 1,000 watchers got every change"
    assert len(seen.delays) == 2000
    assert [e.code() for e in refused] == [grpc.StatusCode.UNAVAILABLE]
    assert "already streams to 1000 watchers; retry shortly or poll" in (refused[0].details() or "")


def test_a_silent_sensor_is_flagged_once_and_its_estimate_ages_out(
    mesh: tuple[ServiceEnv, str], crowd: Crowd, sensors: Crowd
) -> None:
    env, amqp = mesh
    silent = Integrator(amqp, "crowd.events", "sensor_silent")
    try:
        crowd.upsert(zone("square", capacity=1000, silence_after=duration(60)))
        now = datetime.datetime.now(UTC)
        sensors.report(
            [
                [
                    reading("square", "camera_north", 1, now, count=400, kind=pb.SENSOR_KIND_CAMERA),
                    reading("square", "phone", 1, now, count=100, kind=pb.SENSOR_KIND_PHONE_SIGNAL),
                ]
            ]
        )
        # Camera weight 2, phone weight 1: (2*400 + 100) / 3 = 300.
        assert crowd.status("square").occupancy == 300
        env.travel(datetime.timedelta(seconds=61))
        keep_phone = now + datetime.timedelta(seconds=61)
        sensors.report([[reading("square", "phone", 2, keep_phone, count=100, kind=pb.SENSOR_KIND_PHONE_SIGNAL)]])
        deliveries = [json_format.Parse(d[2], events_pb2.SensorSilent()) for d in silent.receive(1, timeout=15)]
        assert len(deliveries) == 1
        event = deliveries[0]
        assert (event.sensor_id, event.sensors_healthy, event.sensors_total) == ("camera_north", 1, 2)
        status = crowd.status("square")
        assert {s.sensor_id: s.state for s in status.sensors} == {
            "camera_north": pb.SENSOR_STATE_SILENT,
            "phone": pb.SENSOR_STATE_HEALTHY,
        }
        env.travel(datetime.timedelta(seconds=61))
        sensors.report(
            [
                [
                    reading(
                        "square",
                        "phone",
                        3,
                        keep_phone + datetime.timedelta(seconds=61),
                        count=100,
                        kind=pb.SENSOR_KIND_PHONE_SIGNAL,
                    )
                ]
            ]
        )
        wait_for(lambda: crowd.status("square").occupancy == 100, timeout=15)
        later = [json_format.Parse(d[2], events_pb2.SensorSilent()) for d in silent.drain(quiet=2)]
        assert [e for e in later if e.zone_id == "square"] == [], "one event per silence"
    finally:
        silent.close()


@pytest.mark.timeout(300)
def test_two_ingest_processes_keep_every_zone_exact_and_one_takes_over_when_the_other_dies(
    database_url: str, tmp_path: Path
) -> None:
    with virtual_host() as amqp:
        env = ServiceEnv("crowd", database_url, tmp_path, amqp)
        try:
            ports = start_crowd(env, amqp, ingest=2)
            # Both take their share before any reading is sent; each stands by for the other's.
            ingest = [p for p in env.processes if p.args[0] == "ingest"]
            for process in ingest:
                process.wait_for_log("standing by for the other shards", timeout=30)
            crowd = Crowd(env)
            zone_ids = [f"zone_{i}" for i in range(8)]
            for zone_id in zone_ids:
                crowd.upsert(zone(zone_id, capacity=100_000))
            rng = random.Random(7)
            start = datetime.datetime.now(UTC) - datetime.timedelta(hours=2)
            truth = dict.fromkeys(zone_ids, 0)
            streams: list[list[pb.SensorReading]] = [[] for _ in range(4)]
            for zone_id in zone_ids:
                for gate in range(4):
                    for seq in range(1, 251):
                        delta = rng.randint(-3, 6)
                        truth[zone_id] += delta
                        message = reading(
                            zone_id, f"gate_{gate}", seq, start + datetime.timedelta(seconds=seq), delta=delta
                        )
                        stream = streams[rng.randrange(4)]
                        stream.append(message)
                        if rng.random() < 0.1:
                            streams[rng.randrange(4)].append(message)  # a gateway's resend
            for stream in streams:
                rng.shuffle(stream[: len(stream) // 3])  # some arrive out of order
            threads = [threading.Thread(target=_publish_all, args=(amqp, stream)) for stream in streams]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            wait_for(lambda: all(crowd.status(z).occupancy == truth[z] for z in zone_ids), timeout=120)
            time.sleep(1)
            assert {z: crowd.status(z).occupancy for z in zone_ids} == truth
            assert '"shards": [0, 2, 4, 6]' in ingest[0].logs()
            assert '"shards": [1, 3, 5, 7]' in ingest[1].logs()
            applied = [
                metric(port, "govmesh_crowd_readings_total", 'outcome="accepted",path="broker"')
                + metric(port, "govmesh_crowd_readings_total", 'outcome="late",path="broker"')
                for port in ports
            ]
            assert all(count > 0 for count in applied), f"both processes applied readings: {applied}"
            assert sum(applied) == 8 * 4 * 250, "every distinct reading applied exactly once"

            # One dies without a goodbye: its unacknowledged messages go back, and the other one,
            # standing by, takes its shards over.
            ingest[0].stop(sig=9)
            later = start + datetime.timedelta(seconds=300)
            _publish_all(
                amqp,
                [
                    reading(z, "gate_0", 250 + s, later + datetime.timedelta(seconds=s), delta=1)
                    for z in zone_ids
                    for s in range(1, 51)
                ],
            )
            wait_for(lambda: all(crowd.status(z).occupancy == truth[z] + 50 for z in zone_ids), timeout=60)
            crowd.close()
        finally:
            env.stop_all()


def _publish_all(amqp: str, readings: Sequence[pb.SensorReading]) -> None:
    publisher = Publisher(amqp)
    try:
        publisher.publish(readings)
    finally:
        publisher.close()


def test_a_held_down_move_is_made_by_the_timer_once_the_dwell_has_passed(crowd: Crowd, sensors: Crowd) -> None:
    crowd.upsert(zone("pier", capacity=100, min_dwell=duration(3)))
    now = datetime.datetime.now(UTC)
    sensors.report([[reading("pier", "gate", 1, now, delta=70), reading("pier", "gate", 2, now, delta=-40)]])
    status = crowd.status("pier")
    assert (status.occupancy, status.level) == (30, pb.RESPONSE_LEVEL_III), "held: the dwell has not passed"
    wait_for(lambda: crowd.status("pier").level == pb.RESPONSE_LEVEL_NONE, timeout=15)
    lowered = crowd.status("pier").level_since.ToDatetime(UTC)
    assert lowered - status.level_since.ToDatetime(UTC) >= datetime.timedelta(seconds=3)


def test_history_and_forecast_over_grpc(crowd: Crowd, sensors: Crowd) -> None:
    show = pb.ScheduleEntry(name="音乐喷泉", start_time="19:00", duration=duration(900))
    crowd.upsert(zone("fountain", capacity=1000, min_dwell=duration(600), schedule=[show]))
    # Three evenings replayed, 5-minute steps (Asia/Shanghai days): the second one's show
    # draws a crowd past 80% for half an hour, the others stay below 60%.
    today = datetime.datetime.now(UTC).astimezone(SHANGHAI).date()
    first_day = today - datetime.timedelta(days=3)
    start = datetime.datetime.combine(first_day, datetime.time(0), tzinfo=SHANGHAI).astimezone(UTC)
    step = datetime.timedelta(minutes=5)
    profile = []
    for day in range(3):
        for index in range(288):
            minute = index * 5
            evening = 18 * 60 + 30 <= minute < 19 * 60 + 30
            profile.append((850 if day == 1 else 500) if evening else 200)
    readings = surge("fountain", start, profile, step)
    response = sensors.report([readings[i : i + 500] for i in range(0, len(readings), 500)])
    assert response.accepted == len(readings) and response.rejected == 0

    history = crowd.stub.GetZoneHistory(
        pb.GetZoneHistoryRequest(zone_id="fountain", start_time=_ts(start), end_time=_ts(start + 3 * 288 * step)),
        metadata=crowd.metadata,
        timeout=30,
    )
    second = (first_day + datetime.timedelta(days=1)).isoformat()
    assert list(history.barrier_days) == [second] and history.barrier_day_count == 1
    assert [d.date for d in history.days] == [(first_day + datetime.timedelta(days=i)).isoformat() for i in range(3)]
    assert sum(d.duration.ToTimedelta().total_seconds() for d in history.time_at_level) == 3 * 86400
    assert history.peak.occupancy == 850 and history.peak.level == pb.RESPONSE_LEVEL_II
    # The second evening: NONE -> II, then down one level at a time, II -> III -> NONE (never a
    # level skipped on the way down); the others: none.
    assert history.level_changes == 3
    assert [d.max_level for d in history.days] == [
        pb.RESPONSE_LEVEL_NONE,
        pb.RESPONSE_LEVEL_II,
        pb.RESPONSE_LEVEL_NONE,
    ]

    forecast = crowd.stub.Forecast(
        pb.ForecastRequest(zone_id="fountain", horizon_minutes=120, step_minutes=10),
        metadata=crowd.metadata,
        timeout=30,
    )
    assert len(forecast.points) == 12
    times = [p.at.ToDatetime(UTC) for p in forecast.points]
    assert times == sorted(times) and times[1] - times[0] == datetime.timedelta(minutes=10)
    assert all(p.low_occupancy <= p.expected_occupancy <= p.high_occupancy for p in forecast.points)
    assert forecast.peak.expected_occupancy == max(p.expected_occupancy for p in forecast.points)

    for request, field in [
        (pb.ForecastRequest(zone_id="fountain", horizon_minutes=0), "horizon_minutes"),
        (pb.ForecastRequest(zone_id="fountain", horizon_minutes=60, step_minutes=90), "step_minutes"),
    ]:
        with pytest.raises(grpc.RpcError) as refused:
            crowd.stub.Forecast(request, metadata=crowd.metadata, timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details().startswith(field), refused.value.details()
    with pytest.raises(grpc.RpcError) as refused:
        crowd.stub.GetZoneHistory(
            pb.GetZoneHistoryRequest(
                zone_id="fountain", start_time=_ts(start), end_time=_ts(start + datetime.timedelta(days=401))
            ),
            metadata=crowd.metadata,
            timeout=10,
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _ts(moment: datetime.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def test_a_message_that_is_not_a_reading_is_refused_counted_and_never_redelivered(
    mesh: tuple[ServiceEnv, str], crowd: Crowd, publisher: Publisher
) -> None:
    env, _ = mesh
    crowd.upsert(zone("quay", capacity=100))
    port = env.ports["crowd"]["ingest_metrics"]
    refused_before = metric(port, "govmesh_crowd_readings_rejected_total", 'reason="missing_field"')
    rejected_before = metric(port, "govmesh_crowd_readings_total", 'outcome="rejected",path="broker"')
    publisher.publish_raw("quay", b"{not json")
    publisher.publish_raw("quay", b'{"zoneId": "quay", "colour": "red"}')
    publisher.publish([reading("quay", "gate", 1, datetime.datetime.now(UTC), delta=12)])
    wait_for(lambda: crowd.status("quay").occupancy == 12, timeout=15)
    wait_for(
        lambda: metric(port, "govmesh_crowd_readings_rejected_total", 'reason="missing_field"') == refused_before + 2,
        timeout=10,
    )
    time.sleep(1)
    rejected = metric(port, "govmesh_crowd_readings_total", 'outcome="rejected",path="broker"') - rejected_before
    assert rejected == 2, "counted once each, never redelivered"


def test_a_gateways_batches_in_json_and_binary_are_applied_and_bad_parts_refused_and_counted(
    mesh: tuple[ServiceEnv, str], crowd: Crowd
) -> None:
    """A sensor gateway publishing as the contract says, with pika and the contract's messages
    only: batches (AMQP type govmesh.crowd.v1.SensorReadingBatch) in proto3 JSON and in binary
    protobuf, and a single binary reading. A reading of another zone than the routing key and a
    message of an unknown type are refused and counted by reason; the batch's other readings are
    applied, once, and the other zone is left as it was."""
    env, amqp = mesh
    crowd.upsert(zone("jetty", capacity=1000))
    crowd.upsert(zone("jetty_other", capacity=1000))
    port = env.ports["crowd"]["ingest_metrics"]

    def refused(reason: str) -> float:
        return metric(port, "govmesh_crowd_readings_rejected_total", f'reason="{reason}"')

    before = {reason: refused(reason) for reason in ("misrouted", "missing_field")}
    now = datetime.datetime.now(UTC)
    json_batch = pb.SensorReadingBatch(
        readings=[
            reading("jetty", "east", 1, now, delta=10),
            reading("jetty_other", "east", 2, now, delta=500),  # not the routing key's zone
            reading("", "east", 3, now, delta=5),  # empty: the routing key's
        ]
    )
    binary_batch = pb.SensorReadingBatch(readings=[reading("jetty", "west", seq, now, delta=2) for seq in (1, 2, 3)])
    single = reading("jetty", "north", 1, now, delta=7)
    connection = pika.BlockingConnection(pika.URLParameters(amqp))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for body, content_type, message_type in [
            (
                json_format.MessageToJson(json_batch, indent=None),
                "application/json",
                "govmesh.crowd.v1.SensorReadingBatch",
            ),
            (binary_batch.SerializeToString(), "application/x-protobuf", "govmesh.crowd.v1.SensorReadingBatch"),
            # resent, as a gateway does when a confirm is lost: duplicates
            (binary_batch.SerializeToString(), "application/x-protobuf", "govmesh.crowd.v1.SensorReadingBatch"),
            (single.SerializeToString(), "application/x-protobuf", "govmesh.crowd.v1.SensorReading"),
            (single.SerializeToString(), "application/x-protobuf", "govmesh.crowd.v1.Zone"),  # not a reading type
        ]:
            properties = pika.BasicProperties(content_type=content_type, type=message_type, delivery_mode=2)
            channel.basic_publish("crowd.readings", "jetty", body, properties, mandatory=True)
    finally:
        connection.close()
    wait_for(lambda: refused("missing_field") == before["missing_field"] + 1, timeout=15)
    wait_for(lambda: refused("misrouted") == before["misrouted"] + 1, timeout=15)
    status = crowd.status("jetty")
    assert status.occupancy == 10 + 5 + 3 * 2 + 7, "every good reading applied once, the resent batch not again"
    assert {s.sensor_id: s.last_sequence for s in status.sensors} == {"east": 3, "west": 3, "north": 1}
    other = crowd.status("jetty_other")
    assert (other.occupancy, other.sensors_total) == (0, 0), "the misrouted reading changed nothing"
    time.sleep(1)
    assert refused("misrouted") == before["misrouted"] + 1, "counted once, never redelivered"
    assert refused("missing_field") == before["missing_field"] + 1


def test_absurd_requests_are_refused_naming_the_field_never_internal(crowd: Crowd, sensors: Crowd) -> None:
    crowd.upsert(zone("absurd", capacity=100))

    def refused(call: object, *args: object) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as error:
            call(*args)  # type: ignore[operator]
        return error.value

    huge = Duration(seconds=2**62)
    for field, bad in [
        ("zone.min_dwell", zone("absurd", min_dwell=huge)),
        ("zone.silence_after", zone("absurd", silence_after=huge)),
        ("zone.name_zh", zone("absurd", name_zh="湖滨\x00喷泉")),
    ]:
        error = refused(crowd.upsert, bad)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith(field), (
            field,
            error.details(),
        )
    for request, field in [
        (
            pb.GetZoneHistoryRequest(
                zone_id="absurd",
                start_time=Timestamp(seconds=-62135596800),
                end_time=_ts(datetime.datetime.now(UTC)),
            ),
            "start_time",
        ),
        (
            pb.GetZoneHistoryRequest(
                zone_id="absurd",
                start_time=_ts(datetime.datetime.now(UTC)),
                end_time=Timestamp(seconds=253402300799),
            ),
            "end_time",
        ),
    ]:
        error = refused(crowd.stub.GetZoneHistory, request, None, crowd.metadata, None, 10)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith(field)
    for zone_id in ["no\x00zone", "x" * 100_000]:
        error = refused(crowd.status, zone_id)
        assert error.code() == grpc.StatusCode.NOT_FOUND and len(error.details()) < 200
    stream = crowd.stub.WatchZones(
        pb.WatchZonesRequest(zone_ids=["absurd"], min_interval=huge), metadata=crowd.metadata, timeout=10
    )
    error = refused(next, stream)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("min_interval")

    now = datetime.datetime.now(UTC)
    year_one = reading("absurd", "gate", 1, now, delta=5)
    year_one.observed_at.seconds = -62135596800  # 0001-01-01, a sensor's zero time
    beyond = reading("absurd", "gate", 2, now, delta=5)
    beyond.observed_at.seconds = 2**62
    nul = reading("no\x00zone", "gate", 1, now, delta=5)
    good = reading("absurd", "gate", 3, now, delta=7)
    response = sensors.report([[year_one, beyond, nul, good]])
    assert (response.accepted, response.rejected) == (1, 3), "a bad reading does not fail the stream"
    assert [r.reason for r in response.rejections] == [
        pb.READING_REJECTION_REASON_TOO_OLD,
        pb.READING_REJECTION_REASON_ABSURD_VALUE,
        pb.READING_REJECTION_REASON_UNKNOWN_ZONE,
    ]
    assert crowd.status("absurd").occupancy == 7


def test_a_blind_zone_holds_its_level_and_still_rises_on_the_last_counts(crowd: Crowd, sensors: Crowd) -> None:
    crowd.upsert(zone("lakeshore", capacity=100, silence_after=duration(10)))
    # The east gate died an hour ago; the west gate keeps counting arrivals, a minute apart:
    # with one gate silent the gates' sum is no evidence (the zone is blind), yet arrivals keep
    # raising what the sensors last counted.
    hour_ago = datetime.datetime.now(UTC) - datetime.timedelta(hours=1)

    def west(first: int, last: int) -> list[pb.SensorReading]:
        return [
            reading("lakeshore", "west", s, hour_ago + datetime.timedelta(minutes=s), delta=10)
            for s in range(first, last + 1)
        ]

    sensors.report([[reading("lakeshore", "east", 1, hour_ago, delta=20)], west(1, 4)])
    status = crowd.status("lakeshore")
    assert (status.sensors_healthy, status.sensors_total) == (1, 2)
    assert (status.occupancy, status.level) == (0, pb.RESPONSE_LEVEL_III), "blind, and risen on 60 counted"
    sensors.report([west(5, 9)])
    assert crowd.status("lakeshore").level == pb.RESPONSE_LEVEL_I, "110 counted: level I"
    leaving = reading("lakeshore", "west", 10, hour_ago + datetime.timedelta(minutes=40), delta=-100)
    sensors.report([[leaving]])
    assert crowd.status("lakeshore").level == pb.RESPONSE_LEVEL_I, "blind: never lowered on no evidence"


def test_sigterm_lets_a_stream_in_flight_finish_and_the_api_exits_0_within_its_grace(
    mesh: tuple[ServiceEnv, str], crowd: Crowd
) -> None:
    """A rolling update's SIGTERM (the image's STOPSIGNAL) while a sensor gateway's ReportReadings
    stream is open: the api takes no new call, keeps reading the open stream, answers it, and exits
    0 within its 10 s grace (govmesh/grpcserver.py)."""
    env, _ = mesh
    crowd.upsert(zone("drain_test", capacity=1000))
    port = free_port()
    api = Process(
        ["api", "crowd"],
        env.env | {"CROWD_GRPC_PORT": str(port), "CROWD_API_METRICS_PORT": str(free_port())},
        env.tmp_path / "drain-api.log",
    ).start()
    try:
        api.wait_for_log("gRPC listening")
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = crowd_pb2_grpc.CrowdServiceStub(channel)
        metadata = (("authorization", f"Bearer {env.token(SENSORS)}"),)
        first_sent, resume = threading.Event(), threading.Event()
        now = datetime.datetime.now(UTC)

        def requests() -> Iterator[pb.ReportReadingsRequest]:
            yield pb.ReportReadingsRequest(readings=[reading("drain_test", "d1", 1, now, delta=3)])
            first_sent.set()
            resume.wait(10)
            yield pb.ReportReadingsRequest(readings=[reading("drain_test", "d1", 2, now, delta=4)])

        answer = stub.ReportReadings.future(requests(), metadata=metadata, timeout=30)
        assert first_sent.wait(10)
        time.sleep(0.5)  # the first batch is in the server's hands
        signalled = time.monotonic()
        api.signal()
        api.wait_for_log("draining in-flight calls")
        time.sleep(1)
        assert not answer.done(), "the stream in flight was cut at SIGTERM"
        resume.set()
        response = answer.result(timeout=15)
        assert (response.received, response.accepted) == (2, 2)
        assert api.stop(timeout=15) == 0
        assert time.monotonic() - signalled < 10 + 2, "exited after its grace"
        assert '"stopped"' in api.logs()
        channel.close()
    finally:
        api.stop()
