"""Crowd: sensor readings ingested per second, and reading-to-level_changed latency, through the
crowd service as it runs (api, worker and `govmesh ingest crowd` processes, SQLite or PostgreSQL,
RabbitMQ), beside bare baselines measured in the same run on the same broker.

    .venv/bin/python -m tests.bench.crowd [--readings N] [--zones N] [--samples K] [--load RATE]
                                          [--batch B] [--database sqlite|postgresql] [--no-latency]

1. Ingestion. N readings (four gate counters per zone, each counting up its own sequence,
   observed over the last hour as a crowd builds and disperses, some zones through level I) are
   published to crowd.readings while no ingest process runs, so what is timed is ingestion alone:
   1 ingest process is started and timed from its first committed batch to its last (the
   govmesh_crowd_readings_total counter of its metrics port), then the same again for 2
   processes (GOVMESH_INSTANCES=2) on a second set of zones. Every zone is then checked through
   GetZoneStatus: occupancy exact, each sensor's last sequence the last one published, and no
   reading late, duplicated or refused (per-zone order kept). The same for the forms a gateway
   may send (a run and a set of zones each, 1 process): one reading a message in binary protobuf,
   and SensorReadingBatch messages of B readings of one zone in proto3 JSON and in binary, and the
   binary batches with 2 processes too.
   Baselines: the same bodies published to a plain quorum queue (py-amqp, confirms collected as
   they come, at most 2,000 unconfirmed; the same publisher feeds crowd.readings), and drained by
   a bare pika consumer (prefetch 1000, one multiple ack per 500) that does nothing with them;
   for one reading a message and for the binary batches (in readings/s).
2. Latency. A zone at NONE (capacity 100, dwell 1 ms, hysteresis 1 %) gets one reading observed
   now that takes it to 60 %, level III; timed from publishing it to an integrator's consumer
   (bound to crowd.events level_changed) receiving the event; then a reading lowers it back
   (not timed) and, after a random pause (so samples do not lock to the relay's poll), again:
   K times. Split by the event's own stamps into the service's figure (changed_at -
   triggered_by_observed_at; changed_at is the wall clock as the reading's batch begins: the
   broker hop in, the ingest's wait for more readings, any batch ahead) and the rest (changed_at to
   receipt: the batch's transaction, the outbox relay's poll, publication, the hop out). Idle,
   then with RATE readings a second of 20 other zones flowing (published by another process),
   for at most LOAD_BUDGET seconds, reporting whether ingestion kept up. Both with the 2 ingest
   processes of section 1 running.
   Baseline: one message published to a quorum queue and received by a pika consumer (one
   broker hop; crowd's path has two).
Figures vary with the machine; read them side by side, never as absolutes.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import math
import multiprocessing
import os
import random
import re
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import amqp
import pika
from google.protobuf import json_format

from govmesh.crowd.v1 import crowd_pb2 as pb
from govmesh.crowd.v1 import events_pb2
from govmesh.messaging import connect
from govmesh.outbox import COMMIT_LOOK_SECONDS
from govmesh.quantiles import percentile
from services.crowd.bootstrap import EVENT_RELAY_INTERVAL
from services.crowd.contract import reading_from_pb
from services.crowd.ingest import (
    BATCH_TYPE,
    BATCH_WAIT,
    DEFAULT_SHARDS,
    JSON,
    PROTOBUF,
    QUIET,
    READINGS_EXCHANGE,
    TRICKLE_WAIT,
    parse_message,
    shard_queue,
)
from tests.bench import results
from tests.support.crowd_mesh import Crowd, duration, reading, start_crowd, zone
from tests.support.mesh import (
    PostgresDatabases,
    Process,
    ServiceEnv,
    consumers,
    metrics_text,
    virtual_host,
    wait_for,
)

UTC = datetime.UTC
GATES = 4
#: A gate reading: (observed at, zone id, sensor id, sequence, delta).
Gate = tuple[datetime.datetime, str, str, int, int]
CAPACITY = 10_000
LATENCY_ZONE = "latency"
#: The crowd worker's outbox relay poll and the ingest's partial-batch waits, quoted in the notes.
RELAY_IDLE_INTERVAL = EVENT_RELAY_INTERVAL
#: Seconds of samples under load at most: if ingestion falls behind, each sample waits longer.
LOAD_BUDGET = 40.0


def body(zone_id: str, sensor_id: str, sequence: int, at: datetime.datetime, delta: int) -> str:
    """A gate reading in proto3 JSON, as json_format writes it (main checks that the ingest reads
    it as the contract's message), built without protobuf: 100,000 take a tenth of the time."""
    return (
        f'{{"zoneId": "{zone_id}", "sensorId": "{sensor_id}", "sensorKind": "SENSOR_KIND_GATE_COUNTER", '
        f'"sequence": "{sequence}", "observedAt": "{at:%Y-%m-%dT%H:%M:%S.%f}Z", "delta": "{delta}"}}'
    )


def check_body() -> None:
    """Every form's bodies read as the contract's readings."""
    at = datetime.datetime.now(UTC).replace(microsecond=123456)
    ours = parse_message(body("zone_x", "gate_1", 7, at, -3), "zone_x")
    contract = json_format.MessageToJson(reading("zone_x", "gate_1", 7, at, delta=-3), indent=None)
    assert ours == [reading_from_pb(json_format.Parse(contract, pb.SensorReading()))], (ours, contract)
    gate = [(at, "zone_x", "gate_1", 7, -3), (at, "zone_x", "gate_2", 8, 2)]
    for form in (Form(1, True), Form(2, False), Form(2, True)):
        readings = [r for _, text in encode(gate, form) for r in parse_message(text, "zone_x", *form.properties)]
        assert readings == [ours[0], *parse_message(body("zone_x", "gate_2", 8, at, 2), "zone_x")], form


class Publisher:
    """Persistent publishes whose confirms are collected as they come, at most WINDOW unconfirmed:
    how a gateway with a rate to keep publishes (py-amqp, as govmesh's own publisher)."""

    WINDOW = 2000

    def __init__(self, amqp_uri: str, name: str) -> None:
        self.connection = connect(amqp_uri, name)
        self.channel = self.connection.channel()
        self.channel.confirm_select()
        self.channel.events["basic_ack"].add(self._on_ack)
        self.channel.events["basic_nack"].add(self._on_nack)
        self.unconfirmed: collections.deque[int] = collections.deque()
        self.acked: set[int] = set()
        self.acked_up_to = 0
        self.tag = 0

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        if multiple:
            self.acked_up_to = max(self.acked_up_to, delivery_tag)
        else:
            self.acked.add(delivery_tag)
        while self.unconfirmed and (self.unconfirmed[0] <= self.acked_up_to or self.unconfirmed[0] in self.acked):
            self.acked.discard(self.unconfirmed.popleft())

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        raise RuntimeError(f"the broker refused (nacked) message {delivery_tag}")

    def publish(
        self, exchange: str, routing_key: str, text: str | bytes, content_type: str = JSON, kind: str | None = None
    ) -> None:
        """``kind``: the AMQP type property (none: one SensorReading)."""
        properties = {"type": kind} if kind else {}
        message = amqp.Message(text, content_type=content_type, delivery_mode=2, **properties)
        self.channel.basic_publish(message, exchange=exchange, routing_key=routing_key)
        self.tag += 1
        self.unconfirmed.append(self.tag)
        if len(self.unconfirmed) > self.WINDOW:
            self.wait(self.WINDOW // 2)

    def wait(self, at_most: int = 0) -> None:
        """Until at most `at_most` publishes are unconfirmed."""
        while len(self.unconfirmed) > at_most:
            self.connection.drain_events(timeout=30)

    def close(self) -> None:
        self.wait()
        self.connection.close()


def publish_all(
    amqp_uri: str,
    exchange: str,
    messages: Sequence[tuple[str, str | bytes]],
    content_type: str = JSON,
    kind: str | None = None,
) -> float:
    """Publishes (routing key, body) pairs, every one confirmed; returns messages a second."""
    publisher = Publisher(amqp_uri, "bench-publisher")
    started = time.perf_counter()
    for routing_key, text in messages:
        publisher.publish(exchange, routing_key, text, content_type, kind)
    publisher.wait()
    elapsed = time.perf_counter() - started
    publisher.close()
    return len(messages) / elapsed


# ------------------------------------------------------------------------------------------------
# Readings


@dataclass
class Replay:
    """An hour of readings of a set of zones, in the order a live stream would bring them."""

    zone_ids: list[str]
    #: (observed at, zone id, sensor id, sequence, delta), in the order a live stream brings them.
    readings: list[Gate] = field(default_factory=list)
    #: One proto3 JSON reading a message: (routing key, body).
    messages: list[tuple[str, str]] = field(default_factory=list)
    occupancy: dict[str, int] = field(default_factory=dict)
    last_sequences: dict[str, dict[str, int]] = field(default_factory=dict)


def replay(prefix: str, zones: int, readings: int, rng: random.Random) -> Replay:
    """Each zone's crowd builds from 200 to a peak of 30-110 % of capacity and disperses over the
    hour (a squared sine, with a little noise); its gates report in turn, each reading the change
    since the previous one, so a gate reports every ~7 s at the defaults."""
    end = datetime.datetime.now(UTC) - datetime.timedelta(seconds=30)
    start = end - datetime.timedelta(hours=1)
    result = Replay([f"{prefix}_{i:03d}" for i in range(zones)])
    timed: list[Gate] = []
    for index, zone_id in enumerate(result.zone_ids):
        count = readings // zones + (1 if index < readings % zones else 0)
        peak = rng.uniform(0.3, 1.1) * CAPACITY
        step = (end - start) / max(1, count)
        offset = step * rng.random()
        occupancy = 0
        sequences: dict[str, int] = {}
        for i in range(count):
            target = 200 + int((peak - 200) * math.sin(math.pi * (i + 1) / count) ** 2) + rng.randint(-3, 3)
            sensor = f"gate_{i % GATES}"
            sequences[sensor] = sequences.get(sensor, 0) + 1
            at = start + offset + step * i
            timed.append((at, zone_id, sensor, sequences[sensor], target - occupancy))
            occupancy = target
        result.occupancy[zone_id] = max(0, occupancy)
        result.last_sequences[zone_id] = sequences
    timed.sort(key=lambda item: item[0])  # stable: one zone's readings keep their order
    result.readings = timed
    result.messages = [(gate[1], body(*gate[1:4], gate[0], gate[4])) for gate in timed]
    return result


@dataclass(frozen=True)
class Form:
    """How a gateway sends readings: `per_message` a message (more than one: SensorReadingBatch
    messages of one zone), in proto3 JSON or binary protobuf."""

    per_message: int
    binary: bool

    @property
    def properties(self) -> tuple[str, str | None]:
        """(content type, AMQP type); one JSON reading a message goes as before batches, untyped."""
        return (PROTOBUF if self.binary else JSON, BATCH_TYPE if self.per_message > 1 else None)

    @property
    def label(self) -> str:
        count = "1 reading a message" if self.per_message == 1 else f"batches of {self.per_message}"
        return f"{count}, {'binary' if self.binary else 'JSON'}"


SINGLE_JSON = Form(1, False)


def encode(readings: Sequence[Gate], form: Form) -> list[tuple[str, str | bytes]]:
    """(routing key, body) of each message of the readings in `form`. A batch holds the next
    `per_message` readings of one zone; batches go in the order of their first reading, so each
    zone's readings keep their order."""
    if form.per_message == 1:
        if form.binary:
            return [(g[1], reading(*g[1:4], g[0], delta=g[4]).SerializeToString()) for g in readings]
        return [(g[1], body(*g[1:4], g[0], g[4])) for g in readings]
    open_batches: dict[str, list[Gate]] = {}
    batches: list[list[Gate]] = []
    for gate in readings:
        batch = open_batches.get(gate[1])
        if batch is None or len(batch) == form.per_message:
            batch = open_batches[gate[1]] = []
            batches.append(batch)
        batch.append(gate)
    if form.binary:
        return [
            (
                batch[0][1],
                pb.SensorReadingBatch(readings=[reading(*g[1:4], g[0], delta=g[4]) for g in batch]).SerializeToString(),
            )
            for batch in batches
        ]
    return [
        (batch[0][1], '{"readings": [' + ", ".join(body(*g[1:4], g[0], g[4]) for g in batch) + "]}")
        for batch in batches
    ]


# ------------------------------------------------------------------------------------------------
# Ingestion


def bare_baseline(amqp_uri: str, messages: Sequence[tuple[str, str | bytes]]) -> tuple[float, float]:
    """(publish rate, drain rate) of the bodies through a plain quorum queue, in messages/s."""
    queue = "bench.bare"
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    published = publish_all(amqp_uri, "", [(queue, text) for _, text in messages])
    channel.basic_qos(prefetch_count=1000)
    total = len(messages)
    received = 0

    def on_message(
        ch: pika.adapters.blocking_connection.BlockingChannel,
        method: pika.spec.Basic.Deliver,
        _properties: pika.BasicProperties,
        _body: bytes,
    ) -> None:
        nonlocal received
        received += 1
        if received % 500 == 0 or received == total:
            ch.basic_ack(method.delivery_tag, multiple=True)
        if received == total:
            ch.stop_consuming()

    channel.basic_consume(queue, on_message)
    started = time.perf_counter()
    channel.start_consuming()
    elapsed = time.perf_counter() - started
    channel.queue_delete(queue)
    connection.close()
    return published, total / elapsed


_READINGS = re.compile(r'^govmesh_crowd_readings_total\{[^}]*outcome="(\w+)"[^}]*\} (\S+)$', re.M)
_BATCH = re.compile(r'^govmesh_crowd_ingest_batch_size_(sum|count)\{path="broker"\} (\S+)$', re.M)


def ingest_counters(port: int) -> dict[str, float] | None:
    """The ingest process's readings by outcome, and batch_sum / batch_count; None while it does
    not answer yet."""
    try:
        text = metrics_text(port)
    except OSError:
        return None
    counters = {outcome: float(value) for outcome, value in _READINGS.findall(text)}
    counters |= {f"batch_{kind}": float(value) for kind, value in _BATCH.findall(text)}
    return counters


def start_ingest(env: ServiceEnv, count: int) -> list[tuple[Process, int]]:
    """`count` ingest processes, each with its share of the shards and a metrics port of its own,
    as start_crowd starts them."""
    started = []
    for index in range(count):
        process = env.process("ingest", "crowd", instance=(index, count))
        started.append((process, env.metrics_port_of(process, "ingest")))
    return started


@dataclass
class IngestRun:
    processes: int
    rate: float
    seconds: float
    mean_batch: float
    shares: list[float]


def ingest_run(
    env: ServiceEnv, crowd: Crowd, amqp_uri: str, data: Replay, processes: int, form: Form
) -> tuple[float, IngestRun, list[tuple[Process, int]]]:
    """Publishes the readings in `form` with no ingest process running, then times `processes`
    of them draining the shards. Returns the publish rate (readings/s), the run, and the
    processes (left running)."""
    for zone_id in data.zone_ids:
        crowd.upsert(zone(zone_id, capacity=CAPACITY))
    messages = data.messages if form == SINGLE_JSON else encode(data.readings, form)
    total = len(data.readings)
    published = publish_all(amqp_uri, READINGS_EXCHANGE, messages, *form.properties) * total / len(messages)
    ingest = start_ingest(env, processes)
    first: tuple[float, float] | None = None
    deadline = time.monotonic() + 900
    while True:
        time.sleep(0.05)
        now = time.perf_counter()
        counters = [ingest_counters(port) or {} for _, port in ingest]
        counted = sum(c.get(o, 0.0) for c in counters for o in ("accepted", "late", "duplicate", "rejected"))
        if first is None and counted > 0:
            first = (now, counted)
        if counted >= total:
            break
        for process, _ in ingest:
            assert process.popen is not None
            if process.popen.poll() is not None:
                raise AssertionError(f"an ingest process exited ({process.popen.returncode}):\n{process.logs()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{counted:.0f} of {total} readings ingested in 15 minutes")
    assert first is not None
    outcomes = {o: sum(c.get(o, 0.0) for c in counters) for o in ("accepted", "late", "duplicate", "rejected")}
    assert outcomes == {"accepted": total, "late": 0, "duplicate": 0, "rejected": 0}, (
        f"every reading accepted in its sensor's order: {outcomes}"
    )
    check_zones(crowd, data)
    seconds = now - first[0]
    batches = sum(c.get("batch_count", 0.0) for c in counters)
    return (
        published,
        IngestRun(
            processes,
            (total - first[1]) / seconds if seconds > 0 else math.inf,
            seconds,
            sum(c.get("batch_sum", 0.0) for c in counters) / max(1.0, batches),
            [c.get("accepted", 0.0) / total for c in counters],
        ),
        ingest,
    )


def check_zones(crowd: Crowd, data: Replay) -> None:
    for zone_id in data.zone_ids:
        status = crowd.status(zone_id)
        assert status.occupancy == data.occupancy[zone_id], (zone_id, status.occupancy, data.occupancy[zone_id])
        sequences = {s.sensor_id: s.last_sequence for s in status.sensors}
        assert sequences == data.last_sequences[zone_id], (zone_id, sequences)


def stop(processes: Sequence[tuple[Process, int]]) -> None:
    for process, _ in processes:
        process.signal()
    for process, _ in processes:
        process.stop()


# ------------------------------------------------------------------------------------------------
# Latency


class LevelEvents:
    """An integrator's queue bound to crowd.events level_changed, consumed (not polled), each
    event stamped with the wall time it arrived."""

    def __init__(self, amqp_uri: str) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
        channel = self.connection.channel()
        channel.exchange_declare("crowd.events", "topic", durable=True)
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(queue, "crowd.events", "level_changed")
        channel.basic_consume(queue, self._on_message, auto_ack=True)
        self.arrived: list[tuple[float, bytes]] = []

    def _on_message(self, _ch: object, _method: object, _properties: object, data: bytes) -> None:
        self.arrived.append((time.time(), data))

    def next(self, zone_id: str, level: pb.ResponseLevel.ValueType, timeout: float = 120) -> tuple[float, bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while self.arrived:
                arrived, data = self.arrived.pop(0)
                event = json_format.Parse(data, events_pb2.LevelChanged())
                if event.zone_id == zone_id and event.level == level:
                    return arrived, data
            self.connection.process_data_events(time_limit=0.5)
        raise AssertionError(f"no level_changed to {pb.ResponseLevel.Name(level)} for {zone_id} in {timeout} s")

    def close(self) -> None:
        self.connection.close()


@dataclass
class Latencies:
    end_to_end: list[float] = field(default_factory=list)
    service: list[float] = field(default_factory=list)
    after_decision: list[float] = field(default_factory=list)


class LatencyProbe:
    def __init__(self, amqp_uri: str) -> None:
        self.publisher = Publisher(amqp_uri, "bench-latency")
        self.events = LevelEvents(amqp_uri)
        self.sequence = 0
        self.rng = random.Random(11)

    def _send(self, delta: int) -> float:
        self.sequence += 1
        sent = time.time()
        at = datetime.datetime.fromtimestamp(sent, UTC)
        self.publisher.publish(READINGS_EXCHANGE, LATENCY_ZONE, body(LATENCY_ZONE, "gate", self.sequence, at, delta))
        return sent

    def measure(self, samples: int, budget: float = math.inf) -> Latencies:
        """`samples` raises, fewer if `budget` seconds run out first (a backlog that grows makes
        each one slower than the last)."""
        result = Latencies()
        deadline = time.monotonic() + budget
        for _ in range(samples):
            if time.monotonic() > deadline:
                break
            sent = self._send(60)
            arrived, data = self.events.next(LATENCY_ZONE, pb.RESPONSE_LEVEL_III)
            event = json_format.Parse(data, events_pb2.LevelChanged())
            changed = event.changed_at.ToDatetime(UTC).timestamp()
            result.end_to_end.append(arrived - sent)
            result.service.append(changed - event.triggered_by_observed_at.ToDatetime(UTC).timestamp())
            result.after_decision.append(arrived - changed)
            self._send(-60)
            self.events.next(LATENCY_ZONE, pb.RESPONSE_LEVEL_NONE)
            self.publisher.wait()
            time.sleep(self.rng.uniform(0.0, RELAY_IDLE_INTERVAL))
        return result

    def close(self) -> None:
        self.events.close()
        self.publisher.close()


def bare_round_trips(amqp_uri: str, samples: int) -> list[float]:
    """One broker hop: publish (persistent) to a quorum queue, received by a pika consumer."""
    queue = "bench.bare.latency"
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    arrived: list[float] = []
    channel.basic_consume(queue, lambda *_: arrived.append(time.time()), auto_ack=True)
    publisher = Publisher(amqp_uri, "bench-bare-latency")
    rng = random.Random(5)
    text = body(LATENCY_ZONE, "gate", 1, datetime.datetime.now(UTC), 60)
    result = []
    for _ in range(samples + 5):
        sent = time.time()
        publisher.publish("", queue, text)
        while not arrived:
            connection.process_data_events(time_limit=1)
        result.append(arrived.pop() - sent)
        publisher.wait()
        time.sleep(rng.uniform(0.0, 0.02))
    publisher.close()
    channel.queue_delete(queue)
    connection.close()
    return result[5:]  # the first few warm the connections up


def _background(amqp_uri: str, zone_ids: list[str], rate: float, halt: EventType, published: Synchronized[int]) -> None:
    """Another process (its own interpreter, so the probe's timing is not this one's GIL): other
    zones' gate readings, observed now, at `rate` a second."""
    publisher = Publisher(amqp_uri, "bench-background")
    rng = random.Random(3)
    sensors = [(zone_id, f"gate_{gate}") for zone_id in zone_ids for gate in range(GATES)]
    sequences = dict.fromkeys(sensors, 0)
    started = time.monotonic()
    sent = 0
    while not halt.is_set():
        due = int((time.monotonic() - started) * rate)
        if sent >= due:
            time.sleep(0.002)
            continue
        at = datetime.datetime.now(UTC)
        for _ in range(min(due - sent, 200)):
            sensor = sensors[sent % len(sensors)]
            sequences[sensor] += 1
            delta = rng.choice((-1, 0, 0, 1, 1, 2))
            publisher.publish(READINGS_EXCHANGE, sensor[0], body(*sensor, sequences[sensor], at, delta))
            sent += 1
        published.value = sent
    publisher.close()


def ingested(ports: Sequence[int]) -> float:
    counters = [ingest_counters(port) or {} for port in ports]
    return sum(c.get(o, 0.0) for c in counters for o in ("accepted", "late", "duplicate", "rejected"))


# ------------------------------------------------------------------------------------------------
# Output


def rate_row(name: str, rate: float, note: str = "") -> None:
    print(f"  {name:<58} {rate:9,.0f} /s   {note}")
    results.record("ingestion", name, per_second=round(rate), note=note)


def latency_row(name: str, samples: list[float], section: str) -> None:
    ordered = sorted(samples)
    p50, p95, p99, most = (
        statistics.median(ordered) * 1000,
        percentile(ordered, 95) * 1000,
        percentile(ordered, 99) * 1000,
        ordered[-1] * 1000,
    )
    mean = statistics.fmean(ordered) * 1000
    print(f"  {name:<58} {p50:7.1f} {p95:7.1f} {p99:7.1f} {most:7.1f} {mean:7.1f} {len(ordered):5d}")
    results.record(
        section,
        name,
        p50_ms=round(p50, 1),
        p95_ms=round(p95, 1),
        p99_ms=round(p99, 1),
        max_ms=round(most, 1),
        mean_ms=round(mean, 1),
        n=len(ordered),
    )


def latency_header(title: str) -> None:
    print(f" {title:<59} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7} {'mean':>7} {'n':>5}  (ms)")


def latency_block(title: str, measured: Latencies) -> None:
    print(f" {title}")
    latency_row("publish -> level_changed received", measured.end_to_end, title)
    latency_row("service: changed_at - triggered_by_observed_at", measured.service, title)
    latency_row("rest: changed_at -> received (transaction, relay, hop out)", measured.after_decision, title)


def bench_ingestion(
    env: ServiceEnv, crowd: Crowd, amqp_uri: str, runs: Sequence[tuple[int, Form, Replay]]
) -> list[tuple[Process, int]]:
    """Section 1; returns the ingest processes of the last run, left running."""
    print(f" ingestion{'readings/s':>71}")
    bare_publish, bare_drain = bare_baseline(amqp_uri, runs[0][2].messages)
    rate_row("bare: publish to a quorum queue (py-amqp, async confirms)", bare_publish)
    rate_row("bare: pika consumer, prefetch 1000, ack per 500 (baseline)", bare_drain)
    bare: dict[Form, float] = {SINGLE_JSON: bare_drain}
    for form in sorted({f for _, f, _ in runs if f.per_message > 1 and f.binary}, key=str):
        batches = encode(runs[0][2].readings, form)
        per_message = len(runs[0][2].readings) / len(batches)
        bare[form] = bare_baseline(amqp_uri, batches)[1] * per_message
        rate_row(f"bare: pika consumer, {form.label} (baseline)", bare[form])
    ingest: list[tuple[Process, int]] = []
    for count, form, data in runs:
        stop(ingest)
        published, run, ingest = ingest_run(env, crowd, amqp_uri, data, count, form)
        what = "" if form == SINGLE_JSON else f", {form.label}"
        rate_row(f"publish to crowd.readings ({len(data.zone_ids)} new zones{what})", published)
        shares = " / ".join(f"{share:.0%}" for share in run.shares)
        baseline = bare.get(form, bare_drain)
        rate_row(
            f"crowd: {count} ingest process{'es' if count > 1 else ''}{what}",
            run.rate,
            f"{run.rate / baseline:4.0%} of bare{'' if form in bare else ' (1 a message)'}; {run.seconds:.1f} s, "
            f"mean batch {run.mean_batch:.0f}" + (f", shares {shares}" if count > 1 else ""),
        )
    print("  checked: every zone's occupancy exact, every sensor at its last sequence, none late, none refused")
    return ingest


def bench_latency(crowd: Crowd, amqp_uri: str, ports: list[int], samples: int, load: float) -> None:
    """Section 2."""
    latency_header("reading -> level_changed (a raise to III)")
    latency_row(
        "bare: one broker hop, quorum queue -> pika (baseline)", bare_round_trips(amqp_uri, samples), "bare broker hop"
    )
    crowd.upsert(zone(LATENCY_ZONE, capacity=100, min_dwell=duration(0.001), hysteresis_bp=100))
    background = [f"background_{i:02d}" for i in range(20)]
    for zone_id in background:
        crowd.upsert(zone(zone_id, capacity=100_000))
    probe = LatencyProbe(amqp_uri)
    context = multiprocessing.get_context("spawn")
    halt = context.Event()
    sent = context.Value("q", 0)
    feeder = context.Process(target=_background, args=(amqp_uri, background, load, halt, sent), daemon=True)
    try:
        probe.measure(3)  # warm up
        latency_block(f"idle ({len(ports)} ingest processes)", probe.measure(samples))
        feeder.start()
        time.sleep(2)
        before, sent_before, started = ingested(ports), sent.value, time.perf_counter()
        under_load = probe.measure(samples, budget=LOAD_BUDGET)
        elapsed = time.perf_counter() - started
        applied, offered = ingested(ports) - before, sent.value - sent_before
        behind = "" if applied >= 0.97 * offered else ": FALLING BEHIND, the backlog grows"
        latency_block(
            f"under load: {len(background)} other zones' readings {offered / elapsed:,.0f}/s published, "
            f"{applied / elapsed:,.0f}/s ingested{behind}",
            under_load,
        )
    finally:
        halt.set()
        if feeder.is_alive():
            feeder.join(30)
        probe.close()
    relay, look, quiet = RELAY_IDLE_INTERVAL * 1000, COMMIT_LOOK_SECONDS * 1000, QUIET * 1000
    trickle, batch_wait = TRICKLE_WAIT * 1000, BATCH_WAIT * 1000
    print(
        "  notes: changed_at is the wall clock as the reading's batch begins (CrowdApp.ingest), so the service's\n"
        f"  figure is the hop in, the ingest's wait for more (a lone reading: {quiet:.0f} ms; a trickle at most\n"
        f"  {trickle:.0f} ms, a stream {batch_wait:.0f} ms) and any batch ahead of it; the rest is its batch's\n"
        f"  transaction, the outbox relay's wait (on SQLite it looks for commits every {look:.0f} ms, else polls\n"
        f"  every {relay:.0f} ms) and the hop out."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readings", type=int, default=100_000, help="readings per ingestion run")
    parser.add_argument("--zones", type=int, default=50)
    parser.add_argument("--samples", type=int, default=50, help="level changes timed per latency row")
    parser.add_argument("--load", type=float, default=2000, help="background readings a second")
    parser.add_argument("--batch", type=int, default=100, help="readings per SensorReadingBatch message")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--no-latency", action="store_true", help="ingestion only (section 1)")
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="latency only (section 2), with 2 ingest processes started for it instead of section 1's",
    )
    args = parser.parse_args()
    check_body()
    rng = random.Random(7)
    batch_json, batch_binary = Form(args.batch, False), Form(args.batch, True)
    plan = [
        (1, SINGLE_JSON),
        (1, Form(1, True)),
        (1, batch_json),
        (1, batch_binary),
        (2, batch_binary),
        (2, SINGLE_JSON),
    ]
    runs = [
        (count, form, replay(f"run{i}", args.zones, args.readings, rng))
        for i, (count, form) in enumerate([] if args.latency_only else plan)
    ]
    databases = PostgresDatabases()
    with tempfile.TemporaryDirectory() as tmp, virtual_host() as amqp_uri:
        url = f"sqlite:///{Path(tmp) / 'service.db'}" if args.database == "sqlite" else databases.create()
        env = ServiceEnv("crowd", url, Path(tmp), amqp_uri)
        env.env |= {"OTEL_TRACES_EXPORTER": "none", "LOG_LEVEL": "WARNING"}
        crowd: Crowd | None = None
        try:
            start_crowd(env, amqp_uri)
            # The topology is declared; readings are published with no ingest process running.
            stop([(p, 0) for p in env.processes if p.args[0] == "ingest"])
            crowd = Crowd(env)
            print(
                f"crowd on {args.database}: {args.readings:,} readings a run, {args.zones} zones x {GATES} gates,"
                f" observed over the last hour ({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})"
            )
            if args.latency_only:
                ingest = start_ingest(env, 2)
                wait_for(lambda: all(consumers(amqp_uri, shard_queue(s)) > 0 for s in range(DEFAULT_SHARDS)), 60)
            else:
                ingest = bench_ingestion(env, crowd, amqp_uri, runs)
            if not args.no_latency:
                bench_latency(crowd, amqp_uri, [port for _, port in ingest], args.samples, args.load)
            print(f" load average at the end {os.getloadavg()[0]:.1f}")
            results.keep("crowd", vars(args))
        finally:
            if crowd is not None:
                crowd.close()
            env.stop_all()
            if databases.created:
                databases.drop_all()


if __name__ == "__main__":
    main()
