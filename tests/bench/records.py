"""Records: proofs pulled by many callers at once, the access log's sealing delay, and a log of a
million entries, beside a bare baseline measured in the same run.

    .venv/bin/python -m tests.bench.records [--database sqlite|postgresql] [--seconds S] [--log-size N]

1. GetProof with 1, 4, 8 and 16 concurrent callers (a thread and a connection each), S seconds at
   each, on the real mesh (identity and records, an api and a worker each): proofs/s, p50, p99.
   With --api-processes 1 2 3, records runs 3 api processes sharing its port (SO_REUSEPORT) and
   the load is measured with 3, then 2, then 1 of them (the others stopped).
   Baseline: a bare grpcio server answering GetProof with a constant proof, same clients.
2. Read -> sealed: for every access entry written in (1), from the read (its accessed_at) to the
   first signed tree head that holds it (the head's timestamp), as records stored them.
3. A log of N entries: reads of the people of (1) written straight into records' database, as
   GetProof leaves them for the sequencer; how fast records' worker seals them, VerifyAuditTrail
   over the whole log, and, in that log, ListAccesses of one entry with its inclusion proof and
   GetConsistencyProof between two heads (p50/p99 over 300 calls each). Baseline: the bare
   server's constant answer to ListAccesses.
Figures vary with the machine; read them side by side, never as absolutes.
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import resource
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import sqlalchemy as sa

from govmesh.quantiles import percentile
from govmesh.records.v1 import records_pb2, records_pb2_grpc
from services.records import store
from tests.bench import results
from tests.bench.identity import latencies, report
from tests.support.mesh import PostgresDatabases, Process, ServiceEnv, consumers, virtual_host, wait_for
from tests.support.people import licence, resident_id, wait_serving

CALLERS = (1, 4, 8, 16)
PEOPLE = 200


class Bare(records_pb2_grpc.RecordsServiceServicer):
    """What grpcio alone costs: the same messages, answered with constants."""

    def __init__(self, proof: records_pb2.Proof, page: records_pb2.ListAccessesResponse) -> None:
        self.proof = records_pb2.GetProofResponse(proof=proof)
        self.page = page

    def GetProof(self, request: object, context: object) -> records_pb2.GetProofResponse:
        return self.proof

    def ListAccesses(self, request: object, context: object) -> records_pb2.ListAccessesResponse:
        return self.page


@dataclass(frozen=True)
class CpuSeconds:
    """CPU time of this machine's cores together: what the servers (api, worker, identity, the
    database) burned, the callers (this process) left out; and what the host running this
    machine took from its cores for others (steal), which is no one's here and slows everything:
    a load measured while the host stole is slower for it, and says so."""

    servers: float
    stolen: float

    @classmethod
    def now(cls) -> CpuSeconds:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (
            int(f) / os.sysconf("SC_CLK_TCK") for f in Path("/proc/stat").read_text().split()[1:9]
        )
        own = resource.getrusage(resource.RUSAGE_SELF)
        return cls(user + nice + system + irq + softirq - own.ru_utime - own.ru_stime, steal)

    def __sub__(self, before: CpuSeconds) -> CpuSeconds:
        return CpuSeconds(self.servers - before.servers, self.stolen - before.stolen)


def under_load(
    call: Callable[[int, int], object], callers: int, seconds: float
) -> tuple[list[float], float, CpuSeconds]:
    """Each caller calls in a loop for ``seconds``: every call's latency, the time they took and
    the CPU seconds meanwhile."""
    cpu = CpuSeconds.now()
    stop = time.monotonic() + seconds
    samples: list[list[float]] = [[] for _ in range(callers)]

    def caller(number: int) -> None:
        own, n = samples[number], 0
        while time.monotonic() < stop:
            started = time.perf_counter()
            call(number, n)
            own.append(time.perf_counter() - started)
            n += 1

    started = time.perf_counter()
    with futures.ThreadPoolExecutor(callers) as pool:
        list(pool.map(caller, range(callers)))
    return [s for own in samples for s in own], time.perf_counter() - started, CpuSeconds.now() - cpu


def report_load(name: str, samples: list[float], elapsed: float, cpu: CpuSeconds | None, section: str) -> float:
    """Prints and records one load's figures, with the servers' CPU per call (on a machine whose
    cores are all busy, throughput is cores / CPU per call, whatever the concurrency) and the
    share of the cores the host stole meanwhile. No CPU when the server runs in this process
    (the bare baseline), whose CPU is the callers'."""
    samples = sorted(samples)
    p50 = statistics.median(samples) * 1000
    p99 = percentile(samples, 99) * 1000
    rate = len(samples) / elapsed
    line = f"  {name:<52} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   {rate:6.0f} calls/s"
    figures = {"p50_ms": round(p50, 2), "p99_ms": round(p99, 2), "per_second": round(rate)}
    if cpu is not None:
        figures["cpu_ms_per_call"] = round(cpu.servers * 1000 / len(samples), 2)
        figures["stolen_percent"] = round(100 * cpu.stolen / (elapsed * (os.cpu_count() or 1)), 1)
        line += f"   servers' cpu {figures['cpu_ms_per_call']:5.2f} ms/call   stolen {figures['stolen_percent']:4.1f}%"
    print(line)
    results.record(section, name, **figures)
    return rate


class Mesh:
    def __init__(self, env: ServiceEnv) -> None:
        self.env = env
        self.metadata = [("authorization", f"Bearer {env.token('demo-portal')}")]
        self.engine = records_engine(env)

    def stub(self, target: str | None = None) -> records_pb2_grpc.RecordsServiceStub:
        # A connection of its own, as a caller in another process would have: grpcio otherwise
        # shares one connection between channels to one target, and the kernel spreads
        # connections, not calls, over api processes sharing a port.
        channel = grpc.insecure_channel(target or self.env.target, options=[("grpc.use_local_subchannel_pool", 1)])
        return records_pb2_grpc.RecordsServiceStub(channel)

    def head(self, stub: records_pb2_grpc.RecordsServiceStub) -> records_pb2.SignedTreeHead:
        request = records_pb2.GetTreeHeadRequest()
        return stub.GetTreeHead(request, metadata=self.metadata, timeout=10).tree_head

    def entries(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(store.access_entries)).scalar_one())


def records_engine(env: ServiceEnv) -> sa.Engine:
    url = env.database_url("records")
    if url.startswith("sqlite"):
        # The bulk fill writes beside the worker sealing what it wrote: a seal of a big batch holds
        # SQLite's write lock longer than pysqlite's default 5 s wait ("database is locked").
        return sa.create_engine(url, connect_args={"timeout": 600})
    return sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1), connect_args={"options": "-csearch_path=records"}
    )


def proof_request(person: str, case: str) -> records_pb2.GetProofRequest:
    return records_pb2.GetProofRequest(
        identifier=person, proof_type="driving_licence", purpose=records_pb2.Purpose(case_id=case)
    )


def bench_proofs(
    mesh: Mesh,
    people: list[str],
    bare_target: str | None,
    seconds: float,
    counts: tuple[int, ...] = CALLERS,
    api_processes: int = 1,
) -> None:
    """GetProof at each number of callers, beside the bare server unless ``bare_target`` is None."""
    print(f"GetProof, {seconds:g} s at each number of concurrent callers, {api_processes} api process(es)")
    ours = "records api GetProof" + ("" if api_processes == 1 else f" ({api_processes} api processes)")
    for callers in counts:
        targets = [("bare grpcio server (baseline)", bare_target)] if bare_target else []
        for name, target in (*targets, (ours, mesh.env.target)):
            stubs = [mesh.stub(target) for _ in range(callers)]

            def call(number: int, n: int, stubs: list[records_pb2_grpc.RecordsServiceStub] = stubs) -> object:
                person = people[(number * 37 + n) % len(people)]
                return stubs[number].GetProof(
                    proof_request(person, f"bench-{number}-{n}"), metadata=mesh.metadata, timeout=30
                )

            for n in range(20):  # warm up the channels
                call(n % callers, n)
            samples, elapsed, cpu = under_load(call, callers, seconds)
            in_process = target == bare_target
            section = "GetProof under concurrency"
            report_load(f"{name}, {callers} callers", samples, elapsed, None if in_process else cpu, section)


def bench_sealing_delay(mesh: Mesh, first_entry: int) -> None:
    entries, heads = store.access_entries, store.access_log_heads
    stub = mesh.stub()
    wait_for(lambda: mesh.head(stub).tree_size >= mesh.entries(), timeout=120)
    first_head = (
        sa.select(sa.func.min(heads.c.signed_at)).where(heads.c.tree_size > entries.c.leaf_index).scalar_subquery()
    )
    query = sa.select(entries.c.accessed_at, first_head).where(entries.c.entry_id > first_entry)
    with mesh.engine.connect() as connection:
        rows = connection.execute(query).all()
    delays = sorted((_utc(signed) - _utc(read)).total_seconds() * 1000 for read, signed in rows)
    p50, p99 = statistics.median(delays), percentile(delays, 99)
    print(f"read -> sealed in a signed tree head, {len(delays)} entries")
    print(f"  {'as records stored them':<44} p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   max {delays[-1]:7.1f} ms")
    results.record(
        "read -> sealed",
        f"{len(delays)} entries of the GetProof load",
        p50_ms=round(p50, 1),
        p99_ms=round(p99, 1),
        max_ms=round(delays[-1], 1),
    )


def _utc(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def fill_log(mesh: Mesh, size: int) -> None:
    """Reads of the people already on the log, written as GetProof writes them and left for the
    sequencer, until the log holds ``size`` entries."""
    entries = store.access_entries
    with mesh.engine.connect() as connection:
        sample = (
            connection.execute(sa.select(entries).where(entries.c.outcome == "granted").limit(PEOPLE * 4))
            .mappings()
            .all()
        )
    missing = max(0, size - mesh.entries())
    moment = datetime.datetime.now(datetime.UTC)
    started = time.perf_counter()
    chunk = 20_000
    for at in range(0, missing, chunk):
        rows = []
        for n in range(at, min(missing, at + chunk)):
            like = sample[n % len(sample)]
            rows.append(
                {
                    **{k: v for k, v in like.items() if k not in ("entry_id", "leaf_index")},
                    "accessed_at": moment,
                    "purpose_value": f"bulk-{n}",
                    "proof_id": str(uuid.UUID(int=n)),
                }
            )
        with mesh.engine.begin() as connection:
            connection.execute(entries.insert(), rows)
    print(f"  {missing} entries written in {time.perf_counter() - started:.0f} s")


def bench_large_log(mesh: Mesh, size: int, bare_target: str) -> None:
    print(f"a log of {size} entries")
    stub = mesh.stub()
    before = mesh.head(stub).tree_size
    fill_log(mesh, size)
    started = time.perf_counter()
    wait_for(lambda: mesh.head(stub).tree_size >= size, timeout=3600)
    sealed = mesh.head(stub).tree_size - before
    elapsed = time.perf_counter() - started
    print(f"  {'sealed by the worker':<44} {sealed / elapsed:8.0f} entries/s ({sealed} in {elapsed:.0f} s)")
    results.record("a large log", "sealed by records' worker", per_second=round(sealed / elapsed), entries=sealed)

    started = time.perf_counter()
    verified = stub.VerifyAuditTrail(records_pb2.VerifyAuditTrailRequest(), metadata=mesh.metadata, timeout=3600)
    elapsed = time.perf_counter() - started
    assert verified.intact and verified.entries_checked >= size, verified
    print(
        f"  {'VerifyAuditTrail':<44} {elapsed:8.1f} s for {verified.entries_checked} entries, "
        f"{verified.tree_heads_checked} tree heads"
    )
    results.record(
        "a large log",
        "VerifyAuditTrail",
        seconds=round(elapsed, 1),
        entries=verified.entries_checked,
        tree_heads=verified.tree_heads_checked,
    )

    people = list(mesh_people(mesh))
    bare = mesh.stub(bare_target)
    pick = random.Random(12)

    def page(chosen: records_pb2_grpc.RecordsServiceStub) -> Callable[[], object]:
        return lambda: chosen.ListAccesses(
            records_pb2.ListAccessesRequest(subject_id=pick.choice(people), page_size=1),
            metadata=mesh.metadata,
            timeout=30,
        )

    answer = page(stub)()
    assert isinstance(answer, records_pb2.ListAccessesResponse) and answer.entries[0].sealed, answer
    for name, chosen in (
        ("bare grpcio server ListAccesses (baseline)", bare),
        ("ListAccesses, 1 entry + inclusion proof", stub),
    ):
        report(name, latencies(page(chosen), 300), "a large log")
    latest = mesh.head(stub).tree_size
    report(
        "GetConsistencyProof",
        latencies(
            lambda: stub.GetConsistencyProof(
                records_pb2.GetConsistencyProofRequest(first_size=pick.randrange(1, latest), second_size=latest),
                metadata=mesh.metadata,
                timeout=30,
            ),
            300,
        ),
        "a large log",
    )


def mesh_people(mesh: Mesh) -> set[str]:
    with mesh.engine.connect() as connection:
        return set(connection.execute(sa.select(store.access_entries.c.subject_id).distinct().limit(PEOPLE)).scalars())


def start(env: ServiceEnv, amqp: str, api_processes: int) -> list[Process]:
    """Identity's api and worker, records' worker and ``api_processes`` records api processes
    (sharing its port when more than one); returns records' api processes."""
    env.migrate("identity")
    env.migrate("records")
    env.process("api", "identity")
    env.process("worker", "identity")
    env.process("worker", "records")
    shared = api_processes > 1
    apis = [
        env.process("api", "records", instance=(k, api_processes) if shared else None) for k in range(api_processes)
    ]
    wait_for(lambda: consumers(amqp, "rpc-identity") > 0, timeout=30)
    wait_for(lambda: consumers(amqp, "rpc-records") > 0, timeout=30)
    wait_serving(env.target_of("identity"), "govmesh.identity.v1.IdentityService")
    wait_serving(env.target, "govmesh.records.v1.RecordsService")
    return apis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--log-size", type=int, default=1_000_000)
    parser.add_argument(
        "--callers", type=int, nargs="+", default=list(CALLERS), help="numbers of concurrent GetProof callers"
    )
    parser.add_argument(
        "--api-processes",
        type=int,
        nargs="+",
        default=[1],
        help="numbers of records api processes to measure GetProof with (most first, then fewer)",
    )
    args = parser.parse_args()
    databases = PostgresDatabases()
    with tempfile.TemporaryDirectory() as tmp, virtual_host() as amqp:
        url = f"sqlite:///{Path(tmp) / 'service.db'}" if args.database == "sqlite" else databases.create()
        print(f"on {args.database}")
        env = ServiceEnv("records", url, Path(tmp), amqp, others=("identity",))
        env.env |= {"OTEL_TRACES_EXPORTER": "none", "LOG_LEVEL": "WARNING"}
        bare_server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        try:
            apis = start(env, amqp, max(args.api_processes))
            mesh = Mesh(env)
            people = [
                resident_id(f"330106{19600101 + i % 28 + i // 28 * 100:08d}{i % 1000:03d}") for i in range(PEOPLE)
            ]
            police = [("authorization", f"Bearer {env.token('public_security')}")]
            published = mesh.stub().PublishRecords(
                iter([records_pb2.PublishRecordsRequest(records=[licence(p) for p in people])]),
                metadata=police,
                timeout=120,
            )
            assert published.stored == PEOPLE, published
            proof = mesh.stub().GetProof(proof_request(people[0], "bench-warm-up"), metadata=mesh.metadata).proof
            wait_for(lambda: mesh.head(mesh.stub()).tree_size >= 1, timeout=30)
            page = mesh.stub().ListAccesses(
                records_pb2.ListAccessesRequest(subject_id=proof.subject_id, page_size=1), metadata=mesh.metadata
            )
            records_pb2_grpc.add_RecordsServiceServicer_to_server(Bare(proof, page), bare_server)
            bare_target = f"127.0.0.1:{bare_server.add_insecure_port('127.0.0.1:0')}"
            bare_server.start()

            first_entry = mesh.entries()
            for n, count in enumerate(sorted(set(args.api_processes), reverse=True)):
                for extra in apis[count:]:
                    extra.stop()
                baseline = bare_target if n == 0 else None
                bench_proofs(mesh, people, baseline, args.seconds, tuple(args.callers), count)
            bench_sealing_delay(mesh, first_entry)
            if args.log_size:
                bench_large_log(mesh, args.log_size, bare_target)
            results.keep(f"records-{args.database}", vars(args))
        finally:
            bare_server.stop(0)
            env.stop_all()
            databases.drop_all()


if __name__ == "__main__":
    main()
