"""The faults: each scenario streams the load through the real processes, injects one fault, waits
for the mesh to recover and counts (tests/chaos/audit.py)."""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pika
from grpc_health.v1 import health_pb2, health_pb2_grpc

from govmesh import dead_letters
from tests.support.mesh import amqp_connection

from .audit import COPY_HEADER, POISON_HEADER, Count, EventTap, count, settle, unsent_events
from .infra import PrivateBroker, PrivateCluster, PrivatePostgres, sqlite_taken_away
from .load import Load, Rates
from .mesh import GRPC_SERVICES, SERVICES, ChaosMesh, wait_until

#: The mesh's settings under chaos: a case's proof retried soon, a stalled step escalated late
#: enough that a 30 s outage does not send every case to a person.
SETTINGS = {
    "APPROVALS_PROOF_TIMEOUT_SECONDS": "5",
    "APPROVALS_RETRY_SECONDS": "1",
    "LOG_LEVEL": "INFO",
    "OTEL_TRACES_EXPORTER": "none",
}


@dataclass
class Context:
    mesh: ChaosMesh
    broker: PrivateBroker | PrivateCluster
    vhost: str
    database: str
    postgres: PrivatePostgres | None
    load: Load
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    fault: Callable[[Context], None]
    duplicate_broker_readings: bool = False
    #: Runs on a 3-node RabbitMQ cluster instead of one node.
    cluster: bool = False


def broker_killed(ctx: Context) -> None:
    ctx.broker.kill()
    time.sleep(10)
    ctx.broker.start()


def broker_node_killed(ctx: Context) -> None:
    """One node of the cluster killed, and left dead: the mesh goes on with the other two."""
    ctx.broker.kill()


def workers_killed(ctx: Context) -> None:
    for service, kind in (
        ("approvals", "worker"),
        ("records", "worker"),
        ("identity", "worker"),
        ("crowd", "ingest"),
        ("crowd", "worker"),
        ("health", "worker"),
    ):
        ctx.mesh.supervisor.kill(service, kind)
        time.sleep(2)


def apis_killed(ctx: Context) -> None:
    for service in ("approvals", "records", "crowd", "identity", "health"):
        ctx.mesh.supervisor.kill(service, "api")
        time.sleep(2)


def database_gone(ctx: Context, seconds: float = 30) -> None:
    if ctx.postgres is not None:
        ctx.postgres.crash()
        time.sleep(seconds)
        ctx.postgres.start()
        return
    files = [Path(ctx.mesh.database_url(s).removeprefix("sqlite:///")) for s in SERVICES]
    with sqlite_taken_away(files, seconds):
        time.sleep(seconds)


def node_and_database_lost(ctx: Context, seconds: float = 12) -> None:
    """One RabbitMQ node killed and left dead, then the database server restarted underneath the
    same stream (down ``seconds``). Meanwhile each service's health is watched: every one must say
    NOT_SERVING while its database is gone (ctx.notes["not_serving_while_database_gone"])."""
    ctx.broker.kill()
    time.sleep(3)
    if ctx.postgres is None:
        files = [Path(ctx.mesh.database_url(s).removeprefix("sqlite:///")) for s in SERVICES]
        with sqlite_taken_away(files, seconds):
            time.sleep(seconds)
        return
    ctx.postgres.crash()
    seen: set[str] = set()
    deadline = time.monotonic() + seconds
    channels = {service: grpc.insecure_channel(ctx.mesh.env.target_of(service)) for service in GRPC_SERVICES}
    try:
        while time.monotonic() < deadline:
            for service, name in GRPC_SERVICES.items():
                with contextlib.suppress(grpc.RpcError):
                    answer = health_pb2_grpc.HealthStub(channels[service]).Check(
                        health_pb2.HealthCheckRequest(service=name), timeout=1
                    )
                    if answer.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                        seen.add(service)
            time.sleep(0.25)
    finally:
        for channel in channels.values():
            channel.close()
    ctx.postgres.start()
    ctx.notes["not_serving_while_database_gone"] = sorted(seen)


def poison_everywhere(ctx: Context) -> None:
    """A message no handler can take, put on every queue a service consumes: each must be
    dead-lettered (at once, or after the delivery limit) or refused and counted, while the rest
    flows; then every dead letter is replayed where it came from, and comes back once."""
    queues = _consumed_queues(ctx)
    connection = amqp_connection(ctx.mesh.amqp_uri)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for queue in queues:
            channel.basic_publish(
                "",
                queue,
                b"\xff\xfe not a message of any contract",
                pika.BasicProperties(content_type="application/json", delivery_mode=2, headers={POISON_HEADER: queue}),
            )
    finally:
        connection.close()
    ctx.notes["poisoned_queues"] = queues
    wait_until(lambda: not any(ctx.broker.queue_depths(ctx.vhost).get(q) for q in queues), timeout=60)
    ctx.notes["replayed"] = replay_dead_letters(ctx.mesh.amqp_uri, [f"{q}.dead-letter" for q in queues])


def replay_dead_letters(amqp_uri: str, queues: list[str]) -> int:
    """Every message of the dead-letter ``queues`` published again where it first went, as an
    operator does once the cause is mended (`govmesh dlq replay --all`)."""
    replayed = 0
    for queue in queues:
        with contextlib.suppress(dead_letters.DeadLetterError):  # a queue never declared: nothing there
            replayed += len(dead_letters.replay(amqp_uri, queue))
    return replayed


def _consumed_queues(ctx: Context) -> list[str]:
    out = ctx.broker.ctl("list_queues", "-p", ctx.vhost, "--no-table-headers", "name", "consumers", "exclusive")
    queues = []
    for line in out.splitlines():
        name, consumers, exclusive = line.split("\t")
        if int(consumers) and exclusive != "true" and not name.startswith(("chaos-audit.", "amq.")):
            queues.append(name)
    return sorted(queues)


@contextlib.contextmanager
def events_doubled_and_reordered(amqp_uri: str, exchanges: tuple[str, ...]) -> Iterator[dict[str, int]]:
    """Every event on ``exchanges`` published once more, up to two seconds later (so copies
    overtake later events): what a publisher's retry and a broker's redelivery do."""
    copied = {"events": 0}
    stop = threading.Event()

    def copy() -> None:
        connection = amqp_connection(amqp_uri)
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        for exchange in exchanges:
            channel.exchange_declare(exchange, "topic", durable=True)
            channel.queue_bind(queue, exchange, "#")
        later: list[tuple[float, str, str, bytes, pika.BasicProperties]] = []
        while not stop.is_set() or later:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is not None and not (properties.headers or {}).get(COPY_HEADER):
                headers = dict(properties.headers or {}) | {COPY_HEADER: 1}
                properties.headers = headers
                later.append(
                    (time.monotonic() + random.uniform(0, 2), method.exchange, method.routing_key, body, properties)
                )
            due = [m for m in later if m[0] <= time.monotonic()]
            later = [m for m in later if m[0] > time.monotonic()]
            for _, exchange, key, body, properties in due:
                channel.basic_publish(exchange, key, body, properties)
                copied["events"] += 1
            if method is None:
                connection.sleep(0.02)
        connection.close()

    thread = threading.Thread(target=copy, name="doubler", daemon=True)
    thread.start()
    try:
        yield copied
    finally:
        stop.set()
        thread.join(30)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("broker-kill", "RabbitMQ kill -9, started again 10 s later", broker_killed),
        Scenario(
            "broker-node-kill",
            "one node of a 3-node RabbitMQ cluster kill -9, left dead",
            broker_node_killed,
            cluster=True,
        ),
        Scenario("worker-kill", "kill -9 of every worker and the ingest, one by one", workers_killed),
        Scenario("api-kill", "kill -9 of every api mid-call, one by one", apis_killed),
        Scenario("database-gone", "the database gone for 30 s", database_gone),
        Scenario("poison", "a poison message on every consumed queue", poison_everywhere),
        Scenario(
            "node-and-database",
            "one node of a 3-node RabbitMQ cluster kill -9 and left dead, then the database gone for 12 s",
            node_and_database_lost,
            cluster=True,
        ),
        Scenario(
            "duplicate-reorder",
            "every event and every broker reading delivered twice, copies out of order",
            lambda ctx: time.sleep(0),
            duplicate_broker_readings=True,
        ),
    )
}


@dataclass
class Outcome:
    scenario: str
    database: str
    count: Count
    seconds_to_settle: float
    unplanned_restarts: dict[str, int]
    serving: bool
    bugs: int
    answers: dict[str, int]
    notes: dict[str, Any]
    client_errors: list[str]

    @property
    def recovered(self) -> bool:
        return self.serving and not self.unplanned_restarts

    @property
    def clean(self) -> bool:
        totals = self.count.totals()
        return self.recovered and not (
            totals["lost"] or totals["duplicated"] or totals["stuck"] or self.bugs or self.client_errors
        )

    def as_json(self) -> dict[str, Any]:
        totals = self.count.totals()
        return {
            "scenario": self.scenario,
            "database": self.database,
            "lost": totals["lost"],
            "duplicated": totals["duplicated"],
            "stuck": totals["stuck"],
            "redelivered": totals["redelivered"],
            "recovered": self.recovered,
            "internal_or_unknown_answers": self.bugs,
            "client_errors": self.client_errors[:20],
            "accepted": self.count.accepted,
            "detail": {
                "lost": self.count.lost,
                "duplicated": self.count.duplicated,
                "stuck": self.count.stuck,
                "redelivered": self.count.redelivered,
                "poison_dead_lettered": self.count.poison,
                "unreachable_queues": self.count.notes_unreachable,
                "queued": self.count.queued,
            },
            "seconds_to_settle": round(self.seconds_to_settle, 1),
            "unplanned_restarts": self.unplanned_restarts,
            "answers": self.answers,
            "notes": self.notes,
        }


def run(
    scenario: Scenario,
    database: str,
    broker: PrivateBroker | PrivateCluster,
    postgres: PrivatePostgres | None,
    tmp_path: Path,
    rates: Rates,
    seconds: float,
    settle_timeout: float = 180,
    afterwards: Callable[[Context, EventTap], None] | None = None,
) -> Outcome:
    """One scenario on one database: a mesh of its own (virtual host, database), the load for
    ``seconds`` with the fault a third of the way in, then the count; ``afterwards`` is called
    with the mesh still up (a test of the auditor itself recounts with what it changed)."""
    vhost = broker.add_vhost()
    url = postgres.create_database() if postgres is not None else f"sqlite:///{tmp_path / 'service.db'}"
    mesh = ChaosMesh(url, broker.uri_of(vhost), tmp_path, SETTINGS)
    try:
        mesh.start()
        tap = EventTap(mesh.amqp_uri)
        load = Load(mesh, rates, duplicate_broker_readings=scenario.duplicate_broker_readings)
        load.prepare()
        ctx = Context(mesh, broker, vhost, database, postgres, load)
        doubling = (
            events_doubled_and_reordered(mesh.amqp_uri, tuple(f"{s}.events" for s in SERVICES))
            if scenario.duplicate_broker_readings
            else contextlib.nullcontext({})
        )
        with doubling as copied:
            load.start()
            started = time.monotonic()
            time.sleep(seconds / 3)
            scenario.fault(ctx)
            time.sleep(max(0.0, seconds - (time.monotonic() - started)))
            load.stop()
            taken = settle(mesh, load.ledger, settle_timeout)
            # The last events and readings on their way, the outboxes emptied.
            wait_until(lambda: _quiet(ctx), timeout=60)
        ctx.notes |= {"copies_published": copied.get("events", 0)} if copied else {}
        result = count(mesh, broker, vhost, load.ledger, tap)
        if afterwards is not None:
            afterwards(ctx, tap)
        return Outcome(
            scenario.name,
            database,
            result,
            taken,
            mesh.supervisor.unplanned_restarts(),
            mesh.serving(timeout=30),
            load.ledger.bugs(),
            dict(load.ledger.answers),
            ctx.notes,
            load.ledger.client_errors,
        )
    finally:
        mesh.stop()
        if isinstance(broker, PrivateCluster):
            broker.revive()  # the next scenario on the cluster finds three nodes again
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
            broker.ctl("delete_vhost", vhost, timeout=20)


def _quiet(ctx: Context) -> bool:
    """Nothing left on its way: no message waiting in a service's queue, and no event waiting in
    an outbox (a relay that met the broker away retries after a back-off of up to
    outbox.RETRY_AT_MOST_EVERY; counted before it retried, its events would read as lost)."""
    depths = ctx.broker.queue_depths(ctx.vhost)
    queued = any(
        n > 0
        for q, n in depths.items()
        if not q.startswith(("chaos-audit.", "amq.")) and not q.endswith(".dead-letter")
    )
    return not queued and unsent_events(ctx.mesh) == 0


def processes_of(mesh: ChaosMesh) -> dict[str, int]:
    return {w.name: w.process.popen.pid for w in mesh.supervisor.watched if w.process.popen}


def resources(pids: dict[str, int]) -> dict[str, Any]:
    """Resident memory (KiB) and open file descriptors, summed over the mesh's processes, and
    each process's resident memory."""
    rss: dict[str, int] = {}
    fds = 0
    for name, pid in pids.items():
        with contextlib.suppress(OSError, StopIteration):
            status = Path(f"/proc/{pid}/status").read_text()
            rss[name] = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
            fds += len(os.listdir(f"/proc/{pid}/fd"))
    return {"rss_kib": sum(rss.values()), "fds": fds, "rss_kib_by_process": rss}
