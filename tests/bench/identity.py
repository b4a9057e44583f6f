"""Benchmarks of the foundation, each beside a bare baseline measured in the same run.

    .venv/bin/python -m tests.bench.identity [--calls N] [--events N]

1. Sequential unary gRPC latency: `ValidateIdentifier` on the real identity api (auth, metrics,
   tracing, error mapping, domain validation) against a bare grpcio server answering the same
   method with a constant, same client, same proto.
2. RegisterSubject (a write: a subject row and an outbox row in one transaction) on SQLite.
3. Event publication: the outbox relay (read, publish with batched confirms, mark sent) against
   bare pika publishing the same messages with one confirm per message.
Figures vary with the machine; read them side by side, never as absolutes.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from concurrent import futures
from pathlib import Path

import grpc
import pika

from govmesh.db import service_database
from govmesh.identity.v1 import events_pb2, identity_pb2, identity_pb2_grpc
from govmesh.messaging import ConfirmingPublisher
from govmesh.outbox import Outbox, OutboxRelay
from services.identity import store
from tests.bench import results
from tests.support.mesh import AMQP_URI, ServiceEnv
from tests.support.people import XU_WEI, resident_id, wait_serving


class Bare(identity_pb2_grpc.IdentityServiceServicer):
    def ValidateIdentifier(self, request: object, context: object) -> identity_pb2.ValidateIdentifierResponse:
        return identity_pb2.ValidateIdentifierResponse(valid=True)


def latencies(call: object, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        call()  # type: ignore[operator]
        out.append(time.perf_counter() - started)
    return out


def report(name: str, samples: list[float], section: str = "sequential unary gRPC") -> None:
    samples = sorted(samples)
    p50 = statistics.median(samples) * 1000
    p99 = samples[int(len(samples) * 0.99) - 1] * 1000
    rate = len(samples) / sum(samples)
    print(f"  {name:<44} p50 {p50:7.3f} ms   p99 {p99:7.3f} ms   {rate:8.0f} calls/s")
    results.record(section, name, p50_ms=round(p50, 3), p99_ms=round(p99, 3), per_second=round(rate))


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
    env.process("api")
    try:
        wait_serving(env.target, "govmesh.identity.v1.IdentityService")
        metadata = [("authorization", f"Bearer {env.token('demo-portal')}")]
        request = identity_pb2.ValidateIdentifierRequest(identifier=XU_WEI)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as c1, grpc.insecure_channel(env.target) as c2:
            bare_stub, real_stub = identity_pb2_grpc.IdentityServiceStub(c1), identity_pb2_grpc.IdentityServiceStub(c2)
            for _ in range(200):  # warm up both
                bare_stub.ValidateIdentifier(request)
                real_stub.ValidateIdentifier(request, metadata=metadata)
            report("bare grpcio server (baseline)", latencies(lambda: bare_stub.ValidateIdentifier(request), calls))
            report(
                "identity api ValidateIdentifier",
                latencies(lambda: real_stub.ValidateIdentifier(request, metadata=metadata), calls),
            )
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
    with db.transaction() as session:
        for _ in range(events):
            outbox.add(session, events_pb2.SubjectRegistered(subject_id="sub_bench"), subject="sub_bench")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--events", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_grpc(args.calls, Path(tmp))
        bench_events(args.events, Path(tmp))
    results.keep("identity", vars(args))


if __name__ == "__main__":
    main()
