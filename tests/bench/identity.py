"""Benchmarks of the foundation, each beside a bare baseline measured in the same run.

    .venv/bin/python -m tests.bench.identity [--parts unary registration events] [--calls N] [--events N]
        [--registration-databases sqlite postgresql] [--callers N] [--batch N] [--subjects N] [--singles N]

`--parts unary` runs section 1 and 2 alone (a minute, where the whole bench takes several).

1. Sequential unary gRPC latency: `ValidateIdentifier` on the real identity api (auth, metrics,
   tracing, error mapping, domain validation) against a bare grpcio server answering the same
   method with a constant, same client, same proto; the bare server both in this process and in
   a process of its own (as the api is, so crossing the same process boundary).
2. RegisterSubject (a write: a subject row and an outbox row in one transaction) on SQLite.
3. Registration under load, on each of --registration-databases (PostgreSQL by default): N
   callers (a thread and a connection each) registering new residents with RegisterSubject one
   at a time, then with RegisterSubjects in batches, in subjects/s, beside a bare grpcio server
   answering both with constants. Identity's api alone (no worker relaying the events).
4. Event publication: the outbox relay (read, publish with batched confirms, mark sent) against
   bare pika publishing the same messages with one confirm per message; then the same events,
   sent, deleted as a worker prunes its outbox once their keep time has passed, against one bare
   DELETE of as many sent rows (SQLite).
Figures vary with the machine; read them side by side, never as absolutes.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pika

from govmesh.db import Database, service_database
from govmesh.identity.v1 import events_pb2, identity_pb2, identity_pb2_grpc
from govmesh.messaging import ConfirmingPublisher
from govmesh.outbox import PRUNE_BATCH_SQLITE, Outbox, OutboxRelay
from govmesh.quantiles import percentile
from services.identity import store
from tests.bench import results
from tests.support.mesh import AMQP_URI, PostgresDatabases, ServiceEnv
from tests.support.people import XU_WEI, resident_id, wait_serving


class Bare(identity_pb2_grpc.IdentityServiceServicer):
    def ValidateIdentifier(self, request: object, context: object) -> identity_pb2.ValidateIdentifierResponse:
        return identity_pb2.ValidateIdentifierResponse(valid=True)

    def RegisterSubject(self, request: object, context: object) -> identity_pb2.RegisterSubjectResponse:
        return BARE_REGISTRATION

    def RegisterSubjects(
        self, request: identity_pb2.RegisterSubjectsRequest, context: object
    ) -> identity_pb2.RegisterSubjectsResponse:
        result = identity_pb2.RegisterSubjectsResult(registered=BARE_REGISTRATION)
        return identity_pb2.RegisterSubjectsResponse(results=[result] * len(request.subjects))


#: What the bare server answers a registration with: a subject of the real answer's size.
BARE_REGISTRATION = identity_pb2.RegisterSubjectResponse(
    subject=identity_pb2.Subject(
        subject_id="sub_" + "a" * 52,
        kind=identity_pb2.SUBJECT_KIND_RESIDENT,
        masked_identifier="330106********1234",
        display_name="徐伟",
    ),
    created=True,
)


def latencies(call: object, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        call()  # type: ignore[operator]
        out.append(time.perf_counter() - started)
    return out


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_timed(call: Callable[[], object], n: int, pid: int) -> tuple[list[float], float]:
    """``latencies`` of ``call``, with the CPU the server process ``pid`` spent per call (s):
    steadier than calls/s on a machine whose other work comes and goes."""
    before = cpu_seconds(pid)
    samples = latencies(call, n)
    return samples, (cpu_seconds(pid) - before) / n


def report(
    name: str, samples: list[float], section: str = "sequential unary gRPC", server_cpu: float | None = None
) -> None:
    samples = sorted(samples)
    p50 = statistics.median(samples) * 1000
    p99 = percentile(samples, 99) * 1000
    rate = len(samples) / sum(samples)
    cpu = f"   server CPU {server_cpu * 1e6:5.0f} µs/call" if server_cpu is not None else ""
    print(f"  {name:<44} p50 {p50:7.3f} ms   p99 {p99:7.3f} ms   {rate:8.0f} calls/s{cpu}")
    more = {} if server_cpu is None else {"server_cpu_us": round(server_cpu * 1e6)}
    results.record(section, name, p50_ms=round(p50, 3), p99_ms=round(p99, 3), per_second=round(rate), **more)


def serve_bare() -> None:
    """The bare server in a process of its own, as the identity api is: prints its port, serves
    until its stdin closes."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    identity_pb2_grpc.add_IdentityServiceServicer_to_server(Bare(), server)
    print(server.add_insecure_port("127.0.0.1:0"), flush=True)
    server.start()
    sys.stdin.read()
    server.stop(0)


@contextlib.contextmanager
def bare_process() -> Iterator[tuple[str, int]]:
    """The bare server beside the in-process one: the identity api is a process of its own, so
    this baseline crosses the same process boundary (the in-process one shares the caller's).
    Yields its address and its process id."""
    code = "from tests.bench.identity import serve_bare; serve_bare()"
    process = subprocess.Popen(
        [sys.executable, "-c", code], cwd=results.ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield f"127.0.0.1:{process.stdout.readline().strip()}", process.pid
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(10)


def bench_grpc(calls: int, tmp: Path) -> None:
    print(f"sequential unary gRPC, {calls} calls each")
    bare = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    identity_pb2_grpc.add_IdentityServiceServicer_to_server(Bare(), bare)
    port = bare.add_insecure_port("127.0.0.1:0")
    bare.start()
    env = ServiceEnv("identity", f"sqlite:///{tmp / 'identity.db'}", tmp, AMQP_URI)
    env.env["OTEL_TRACES_EXPORTER"] = "none"
    env.env["LOG_LEVEL"] = "WARNING"
    env.migrate()
    api = env.process("api")
    try:
        wait_serving(env.target, "govmesh.identity.v1.IdentityService")
        assert api.popen is not None
        api_pid = api.popen.pid
        metadata = [("authorization", f"Bearer {env.token('demo-portal')}")]
        request = identity_pb2.ValidateIdentifierRequest(identifier=XU_WEI)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as c1, grpc.insecure_channel(env.target) as c2:
            bare_stub, real_stub = identity_pb2_grpc.IdentityServiceStub(c1), identity_pb2_grpc.IdentityServiceStub(c2)
            for _ in range(200):  # warm up both
                bare_stub.ValidateIdentifier(request)
                real_stub.ValidateIdentifier(request, metadata=metadata)
            report("bare grpcio server (baseline)", latencies(lambda: bare_stub.ValidateIdentifier(request), calls))
            with bare_process() as (target, bare_pid), grpc.insecure_channel(target) as c3:
                apart = identity_pb2_grpc.IdentityServiceStub(c3)
                for _ in range(200):
                    apart.ValidateIdentifier(request)
                samples, cpu = server_timed(lambda: apart.ValidateIdentifier(request), calls, bare_pid)
                report("bare grpcio server, own process (baseline)", samples, server_cpu=cpu)
            samples, cpu = server_timed(
                lambda: real_stub.ValidateIdentifier(request, metadata=metadata), calls, api_pid
            )
            report("identity api ValidateIdentifier", samples, server_cpu=cpu)
            ids = iter(resident_id(f"330106{19500101 + i % 28:08d}{i % 1000:03d}") for i in range(10**6))
            report(
                "identity api RegisterSubject (SQLite write)",
                latencies(
                    lambda: real_stub.RegisterSubject(
                        identity_pb2.RegisterSubjectRequest(identifier=next(ids), display_name="x"), metadata=metadata
                    ),
                    min(calls, 1000),
                ),
            )
    finally:
        env.stop_all()
        bare.stop(0)


def new_people(count: int, first_day: int) -> list[str]:
    """``count`` residents of Xihu district, a thousand per birth date from 1 January 1950 plus
    ``first_day`` days: a later run of the bench on the same database registers other people."""
    start = datetime.date(1950, 1, 1) + datetime.timedelta(days=first_day)
    return [
        resident_id(f"330106{start + datetime.timedelta(days=n // 1000):%Y%m%d}{n % 1000:03d}") for n in range(count)
    ]


def by_callers(
    stubs: list[identity_pb2_grpc.IdentityServiceStub], call: Callable[..., object], work: list[object]
) -> float:
    """Each stub's caller (a thread and a channel each) takes the next request until none is
    left; the seconds they took together."""
    queue, lock = iter(work), threading.Lock()

    def caller(stub: identity_pb2_grpc.IdentityServiceStub) -> None:
        while True:
            with lock:
                request = next(queue, None)
            if request is None:
                return
            call(stub, request)

    started = time.perf_counter()
    with futures.ThreadPoolExecutor(len(stubs)) as pool:
        list(pool.map(caller, stubs))
    return time.perf_counter() - started


def bench_registration(
    database: str, url: str, tmp: Path, callers: int, batch: int, subjects: int, singles: int
) -> None:
    section = f"registration, {callers} callers, {database}"
    print(f"{section}: {singles} RegisterSubject calls, {subjects} subjects in RegisterSubjects of {batch}")
    bare = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    identity_pb2_grpc.add_IdentityServiceServicer_to_server(Bare(), bare)
    bare_target = f"127.0.0.1:{bare.add_insecure_port('127.0.0.1:0')}"
    bare.start()
    env = ServiceEnv("identity", url, tmp, AMQP_URI)
    env.env |= {"OTEL_TRACES_EXPORTER": "none", "LOG_LEVEL": "WARNING"}
    env.migrate()
    env.process("api")
    try:
        wait_serving(env.target, "govmesh.identity.v1.IdentityService")
        metadata = [("authorization", f"Bearer {env.token('records')}")]
        people = new_people(singles + subjects, first_day=0)
        one_by_one = [identity_pb2.RegisterSubjectRequest(identifier=p, display_name="徐伟") for p in people[:singles]]
        batches = [
            identity_pb2.RegisterSubjectsRequest(
                subjects=[
                    identity_pb2.RegisterSubjectRequest(identifier=p, display_name="徐伟")
                    for p in people[start : start + batch]
                ]
            )
            for start in range(singles, len(people), batch)
        ]
        created = collections.Counter[bool]()

        def register(stub: identity_pb2_grpc.IdentityServiceStub, request: object) -> None:
            created[stub.RegisterSubject(request, metadata=metadata, timeout=60).created] += 1

        def register_all(stub: identity_pb2_grpc.IdentityServiceStub, request: object) -> None:
            answer = stub.RegisterSubjects(request, metadata=metadata, timeout=120)
            created.update(result.registered.created for result in answer.results)

        def row(name: str, count: int, seconds: float) -> None:
            print(f"  {name:<52} {count / seconds:8.0f} subjects/s")
            results.record(section, name, per_second=round(count / seconds), unit="subjects/s")

        channels = [grpc.insecure_channel(target) for target in [bare_target] * callers + [env.target] * callers]
        bare_stubs = [identity_pb2_grpc.IdentityServiceStub(c) for c in channels[:callers]]
        real_stubs = [identity_pb2_grpc.IdentityServiceStub(c) for c in channels[callers:]]
        for stub in real_stubs:  # every channel connected and the token verified once
            stub.ResolveSubject(
                identity_pb2.ResolveSubjectRequest(identifier=XU_WEI, allow_unregistered=True), metadata=metadata
            )
        row("bare grpcio server, RegisterSubject (baseline)", singles, by_callers(bare_stubs, register, one_by_one))
        row(
            f"bare grpcio server, RegisterSubjects of {batch} (baseline)",
            subjects,
            by_callers(bare_stubs, register_all, batches),
        )
        created.clear()
        row("identity api RegisterSubject, one at a time", singles, by_callers(real_stubs, register, one_by_one))
        row(
            f"identity api RegisterSubjects, batches of {batch}",
            subjects,
            by_callers(real_stubs, register_all, batches),
        )
        assert created == {True: singles + subjects}, created  # every one new, none refused
        for channel in channels:
            channel.close()
    finally:
        env.stop_all()
        bare.stop(0)


def bench_events(events: int, tmp: Path) -> None:
    print(f"publishing {events} events to identity.events")
    body = '{"subjectId":"sub_bench"}'
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URI))
    channel = connection.channel()
    channel.exchange_declare("identity.events", "topic", durable=True)
    channel.confirm_delivery()
    started = time.perf_counter()
    for _ in range(events):
        channel.basic_publish(
            "identity.events", "bench_event", body, pika.BasicProperties(delivery_mode=2, message_id=str(uuid.uuid4()))
        )
    bare = time.perf_counter() - started
    connection.close()
    print(f"  {'bare pika, one confirm per message':<44} {events / bare:8.0f} events/s")
    results.record("event publication", "bare pika, one confirm per message", per_second=round(events / bare))

    db = service_database("identity", f"sqlite:///{tmp / 'relay.db'}")
    db.migrate()
    outbox = Outbox("identity", store.outbox, store.inbox)
    queue_bench_events(db, outbox, events)
    relay = OutboxRelay(db, outbox, ConfirmingPublisher(AMQP_URI, "identity"))
    started = time.perf_counter()
    while relay.publish_pending():
        pass
    elapsed = time.perf_counter() - started
    relay.stop()
    print(f"  {'outbox relay (read, batch confirm, mark sent)':<44} {events / elapsed:8.0f} events/s")
    results.record(
        "event publication", "outbox relay (read, batch confirm, mark sent)", per_second=round(events / elapsed)
    )
    bench_pruning(db, outbox, relay, events)


def queue_bench_events(db: Database, outbox: Outbox, events: int) -> None:
    with db.transaction() as session:
        outbox.add_many(session, [(events_pb2.SubjectRegistered(subject_id="sub_bench"), "sub_bench")] * events)


def bench_pruning(db: Database, outbox: Outbox, relay: OutboxRelay, events: int) -> None:
    """The sent events deleted once their keep time has passed (every one of them here): as the
    relay prunes, beside one bare DELETE of the same rows, freshly written and marked sent."""
    print(f"deleting {events} sent events from identity's outbox")
    relay.keep_sent_seconds = 1e-6
    started = time.perf_counter()
    deleted = 0
    while pruned := relay.prune_sent():
        deleted += pruned
    elapsed = time.perf_counter() - started
    assert deleted == events, f"pruned {deleted} of {events}"
    table = outbox.outbox
    queue_bench_events(db, outbox, events)
    with db.transaction() as session:
        session.execute(table.update().values(published_at=datetime.datetime.now(datetime.UTC)))
    started = time.perf_counter()
    with db.transaction() as session:
        session.execute(table.delete().where(table.c.published_at < datetime.datetime.now(datetime.UTC)))
    bare = time.perf_counter() - started
    for name, seconds in (
        ("bare DELETE of the sent rows", bare),
        (f"outbox relay prune ({PRUNE_BATCH_SQLITE} oldest a statement)", elapsed),
    ):
        print(f"  {name:<44} {events / seconds:8.0f} events/s")
        results.record("event pruning", name, per_second=round(events / seconds))


PARTS = ("unary", "registration", "events")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=PARTS,
        default=list(PARTS),
        help="which sections to run: unary (1, 2), registration (3), events (4)",
    )
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--registration-databases", nargs="*", choices=("sqlite", "postgresql"), default=["postgresql"])
    parser.add_argument("--callers", type=int, default=16, help="concurrent registering callers")
    parser.add_argument("--batch", type=int, default=500, help="subjects per RegisterSubjects call")
    parser.add_argument("--subjects", type=int, default=32_000, help="subjects registered in batches")
    parser.add_argument("--singles", type=int, default=2_400, help="subjects registered one at a time")
    args = parser.parse_args()
    registering = "registration" in args.parts
    databases = PostgresDatabases() if registering and "postgresql" in args.registration_databases else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if "unary" in args.parts:
                bench_grpc(args.calls, Path(tmp))
            for database in args.registration_databases if registering else ():
                place = Path(tmp) / database
                place.mkdir()
                url = databases.create() if databases and database == "postgresql" else f"sqlite:///{place / 'id.db'}"
                bench_registration(database, url, place, args.callers, args.batch, args.subjects, args.singles)
            if "events" in args.parts:
                bench_events(args.events, Path(tmp))
    finally:
        if databases:
            databases.drop_all()
    results.keep("identity", vars(args))


if __name__ == "__main__":
    main()
