"""Crowd's mesh for tests and benchmarks: the api, worker and ingest processes, an operator's and
the sensors' gRPC calls, readings published as the sensor gateway publishes them."""

from __future__ import annotations

import datetime
import multiprocessing
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection

import grpc
import pika
from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration

from govmesh.crowd.v1 import crowd_pb2 as pb
from govmesh.crowd.v1 import crowd_pb2_grpc, events_pb2
from tests.support.mesh import Integrator, ServiceEnv, consumers, metrics_text, wait_for
from tests.support.people import wait_serving

OPERATOR = "city_brain"


SENSORS = "crowd_sensors"


UTC = datetime.UTC


class Crowd:
    """A client of the crowd service as a caller of the policy."""

    def __init__(self, env: ServiceEnv, caller: str = OPERATOR) -> None:
        self.channel = grpc.insecure_channel(env.target_of("crowd"))
        self.stub = crowd_pb2_grpc.CrowdServiceStub(self.channel)
        self.metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {env.token(caller)}"),)

    def upsert(self, zone: pb.Zone) -> pb.UpsertZoneResponse:
        return self.stub.UpsertZone(pb.UpsertZoneRequest(zone=zone), metadata=self.metadata, timeout=10)

    def status(self, zone_id: str) -> pb.ZoneStatus:
        return self.stub.GetZoneStatus(
            pb.GetZoneStatusRequest(zone_id=zone_id), metadata=self.metadata, timeout=10
        ).status

    def report(self, batches: Sequence[Sequence[pb.SensorReading]]) -> pb.ReportReadingsResponse:
        requests = (pb.ReportReadingsRequest(readings=list(batch)) for batch in batches)
        return self.stub.ReportReadings(requests, metadata=self.metadata, timeout=30)

    def close(self) -> None:
        self.channel.close()


def all_zone_ids(crowd: Crowd, page_size: int = 0) -> list[str]:
    """Every zone id, page by page."""
    ids: list[str] = []
    token = ""
    while True:
        page = crowd.stub.ListZones(
            pb.ListZonesRequest(page_size=page_size, page_token=token), metadata=crowd.metadata, timeout=10
        )
        ids += [z.zone_id for z in page.zones]
        token = page.next_page_token
        if not token:
            return ids


def duration(seconds: float) -> Duration:
    value = Duration()
    value.FromTimedelta(datetime.timedelta(seconds=seconds))
    return value


def zone(zone_id: str, capacity: int = 1000, **fields: object) -> pb.Zone:
    defaults: dict[str, object] = {
        "name_zh": f"测试区{zone_id}",
        "name_en": f"Test zone {zone_id}",
        "capacity": capacity,
        "silence_after": duration(600),
        "min_dwell": duration(60),
        "hysteresis_bp": 500,
    }
    return pb.Zone(zone_id=zone_id, **(defaults | fields))  # type: ignore[arg-type]


def reading(
    zone_id: str,
    sensor_id: str,
    sequence: int,
    at: datetime.datetime,
    *,
    delta: int | None = None,
    count: int | None = None,
    kind: pb.SensorKind.ValueType | None = None,
) -> pb.SensorReading:
    message = pb.SensorReading(zone_id=zone_id, sensor_id=sensor_id, sequence=sequence)
    if kind is None:
        kind = pb.SENSOR_KIND_GATE_COUNTER if delta is not None else pb.SENSOR_KIND_CAMERA
    message.sensor_kind = kind
    message.observed_at.FromDatetime(at)
    if delta is not None:
        message.delta = delta
    if count is not None:
        message.absolute_count = count
    return message


class Publisher:
    """A sensor gateway publishing readings on the broker as the contract says: exchange
    crowd.readings, routing key = zone id, proto3 JSON, persistent, confirmed."""

    def __init__(self, amqp_uri: str) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()

    def publish(self, readings: Sequence[pb.SensorReading]) -> None:
        for message in readings:
            self.channel.basic_publish(
                "crowd.readings",
                message.zone_id,
                json_format.MessageToJson(message, indent=None),
                pika.BasicProperties(content_type="application/json", delivery_mode=2),
                mandatory=True,
            )

    def publish_raw(self, routing_key: str, body: bytes) -> None:
        self.channel.basic_publish("crowd.readings", routing_key, body, pika.BasicProperties(delivery_mode=2))

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()


def start_crowd(env: ServiceEnv, amqp: str, ingest: int = 1) -> list[int]:
    """Starts crowd's api, worker and `ingest` ingest processes; returns their metrics ports."""
    env.migrate("crowd")
    env.process("api", "crowd")
    env.process("worker", "crowd")
    ports = []
    for index in range(ingest):
        process = env.process("ingest", "crowd", instance=(index, ingest))
        ports.append(env.metrics_port_of(process, "ingest"))
    wait_for(lambda: consumers(amqp, "crowd.readings.shard.0") > 0, timeout=60)
    wait_serving(env.target_of("crowd"), "govmesh.crowd.v1.CrowdService", timeout=60)
    return ports


def level_events(
    integrator: Integrator, zone_id: str, count: int, timeout: float = 30
) -> list[events_pb2.LevelChanged]:
    """The first `count` level changes of one zone (other tests' zones share the exchange)."""
    found: list[events_pb2.LevelChanged] = []
    deadline = time.monotonic() + timeout
    while len(found) < count and time.monotonic() < deadline:
        for _, _, body in integrator.receive(1, timeout=max(0.1, deadline - time.monotonic())):
            event = json_format.Parse(body, events_pb2.LevelChanged())
            if event.zone_id == zone_id:
                found.append(event)
    return found


def metric(port: int, name: str, labels: str = "") -> float:
    text = metrics_text(port)
    series = f"{name}{{{labels}}}" if labels else name
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(series + " ")]
    assert values, f"no {series} in the metrics"
    return values[0]


@dataclass
class Deliveries:
    """What watch_deliveries saw: the seconds from each report to each receipt of it by a watcher
    of its zone (every delivery), how many watchers got every change of their zone, and the CPU
    seconds the client processes and the server (as ``server_cpu`` tells it) spent from the moment
    every stream had its snapshot to the last receipt."""

    delays: list[float]
    complete: int
    client_cpu: float
    server_cpu: float


def watch_deliveries(
    env: ServiceEnv,
    zone_ids: Sequence[str],
    watchers: int,
    changes: int,
    spacing: float = 0.3,
    clients: int = 1,
    server_cpu: Callable[[], float] = lambda: 0.0,
    while_held: Callable[[], None] = lambda: None,
) -> Deliveries:
    """``watchers`` WatchZones streams on one api process, watcher n on zone n % len(zone_ids),
    held by ``clients`` client processes (grpc.aio, one thread each, as a control room's gateway
    would hold them), then ``changes`` occupancy changes reported by the sensors' gRPC call from
    this process, ``spacing`` apart, change c to zone c % len(zone_ids); ``while_held`` runs once
    every stream has its snapshot, before the first change. A watcher that falls
    behind is sent the latest status, as a screen wants, so it may skip a change. Receipts and
    reports are stamped with time.perf_counter, the system's monotonic clock in every process."""
    operator = f"Bearer {env.token(OPERATOR)}"
    sensors = (("authorization", f"Bearer {env.token(SENSORS)}"),)
    spawn = multiprocessing.get_context("spawn")  # this process already runs grpc: no fork
    shares = []
    for share in range(clients):
        ours, theirs = spawn.Pipe()
        numbers = range(share, watchers, clients)
        process = spawn.Process(
            target=_watch_share, args=(env.target_of("crowd"), operator, list(zone_ids), numbers, theirs), daemon=True
        )
        process.start()
        shares.append((process, ours))
    received: dict[int, dict[int, float]] = {}
    client_cpu = 0.0
    try:
        for _, orders in shares:
            assert orders.poll(180) and orders.recv() == "ready", "a client's watchers never got their snapshots"
        while_held()
        reported: dict[int, float] = {}  # by occupancy, new with each change
        now = datetime.datetime.now(UTC)
        server_before = server_cpu()
        with grpc.insecure_channel(env.target_of("crowd")) as channel:
            stub = crowd_pb2_grpc.CrowdServiceStub(channel)
            for change in range(changes):
                zone_id, count = zone_ids[change % len(zone_ids)], 10 + change
                message = pb.ReportReadingsRequest(
                    readings=[reading(zone_id, "camera", change + 1, now, count=count, kind=pb.SENSOR_KIND_CAMERA)]
                )
                reported[count] = time.perf_counter()
                stub.ReportReadings(iter([message]), metadata=sensors, timeout=30)
                time.sleep(spacing)
        time.sleep(2)
        server_spent = server_cpu() - server_before
        for _, orders in shares:
            orders.send("stop")
        for _, orders in shares:
            assert orders.poll(60), "a client never answered"
            got, cpu = orders.recv()
            received |= got
            client_cpu += cpu
    finally:
        for process, _ in shares:
            process.join(10)
            if process.is_alive():
                process.kill()
    delays = [at - reported[count] for got in received.values() for count, at in got.items() if count in reported]
    wanted = [{10 + c for c in range(changes) if c % len(zone_ids) == n % len(zone_ids)} for n in range(watchers)]
    complete = sum(1 for n in range(watchers) if wanted[n] <= set(received.get(n, {})))
    return Deliveries(delays, complete, client_cpu, server_spent)


def _watch_share(target: str, authorization: str, zone_ids: list[str], numbers: range, orders: Connection) -> None:
    """One client process of watch_deliveries: opens its watchers, says "ready" once each has its
    snapshot, stamps every change received until told to stop, then sends what it received and
    the CPU it spent meanwhile."""
    import asyncio

    # A file descriptor per stream: the default limit is not enough for a thousand.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    metadata = (("authorization", authorization),)

    async def run() -> tuple[dict[int, dict[int, float]], float]:
        received: dict[int, dict[int, float]] = {number: {} for number in numbers}
        async with grpc.aio.insecure_channel(target) as channel:
            stub = crowd_pb2_grpc.CrowdServiceStub(channel)
            snapshots = asyncio.Semaphore(0)

            async def watch(number: int) -> None:
                request = pb.WatchZonesRequest(zone_ids=[zone_ids[number % len(zone_ids)]], min_interval=duration(0))
                mine = received[number]
                async for update in stub.WatchZones(request, metadata=metadata, timeout=600):
                    if update.kind == pb.ZONE_UPDATE_KIND_SNAPSHOT:
                        snapshots.release()
                    else:
                        mine.setdefault(update.status.occupancy, time.perf_counter())

            tasks = [asyncio.ensure_future(watch(number)) for number in numbers]
            for _ in numbers:
                await asyncio.wait_for(snapshots.acquire(), timeout=120)
            orders.send("ready")
            ready = time.process_time()
            await asyncio.get_running_loop().run_in_executor(None, orders.recv)
            spent = time.process_time() - ready
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return received, spent

    orders.send(asyncio.run(run()))
