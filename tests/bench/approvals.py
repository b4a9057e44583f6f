"""Approvals: how long a case whose checks are all automatic takes from submission to decision,
in the whole mesh (identity, records and approvals, api and worker each, SQLite, RabbitMQ),
beside a bare baseline measured in the same run.

    .venv/bin/python -m tests.bench.approvals [--cases N] [--burst N] [--database sqlite|postgresql]

1. One case at a time: SubmitCase, then WatchCase until it is decided, for the ride-hailing
   permit (4 proofs, 2 departments' rules, 1 sign-off) and the housing transfer (4 proofs, 3
   departments' rules, 3 sign-offs). Reported: the time the client waited, and the case's own
   decision_duration (submitted_at to decided_at, as the service records it).
   Baseline: the same four proofs pulled by hand, one GetProof after another over records' gRPC
   api, which is the least a caller would wait to have the data in hand, with nothing decided.
2. A burst: N cases submitted at once; the time until the last is decided, and cases per second;
   then again with a second approvals worker competing for the same queue (--workers 2).
3. Offered load (--offered R --offered-seconds S): R ride-hailing cases a second submitted for S
   seconds, at their times whatever the mesh does (an open loop, as citizens arrive); then how
   many were decided (none may be lost) and submit -> decided p50 / p99 / max (decision_duration).
Figures vary with the machine; read them side by side, never as absolutes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from concurrent import futures
from pathlib import Path

import grpc

from govmesh import clock
from govmesh.approvals.v1 import approvals_pb2 as pb
from govmesh.approvals.v1 import approvals_pb2_grpc
from govmesh.quantiles import percentile
from govmesh.records.v1 import records_pb2, records_pb2_grpc
from tests.bench import cpu, results
from tests.bench.identity import report
from tests.support.approvals_mesh import publish, start_mesh
from tests.support.approvals_scenarios import Scenario, scenarios
from tests.support.mesh import PostgresDatabases, ServiceEnv, consumers, virtual_host, wait_for

FINAL = (pb.CASE_STATE_APPROVED, pb.CASE_STATE_REJECTED, pb.CASE_STATE_CANCELLED)
CASE_QUEUE = "evt-approvals-case_submitted--approvals.on_case_submitted"


def qualifying(case_type: str) -> Scenario:
    return next(s for s in scenarios(clock.shanghai_date()) if s.case_type == case_type and not s.failing_rules)


class Client:
    def __init__(self, env: ServiceEnv) -> None:
        self.approvals = approvals_pb2_grpc.ApprovalsServiceStub(grpc.insecure_channel(env.target_of("approvals")))
        self.records = records_pb2_grpc.RecordsServiceStub(grpc.insecure_channel(env.target_of("records")))
        self.metadata = [("authorization", f"Bearer {env.token('demo-portal')}")]

    def submit(self, scenario: Scenario) -> pb.Case:
        request = pb.SubmitCaseRequest(
            case_type=scenario.case_type,
            applicant_identifier=scenario.applicant,
            parameters=scenario.parameters,
            request_id=str(uuid.uuid4()),
        )
        return self.approvals.SubmitCase(request, metadata=self.metadata, timeout=30).case

    def get(self, case_id: str) -> pb.Case:
        return self.approvals.GetCase(pb.GetCaseRequest(case_id=case_id), metadata=self.metadata, timeout=30).case

    def decided(self, case_id: str) -> pb.Case:
        stream = self.approvals.WatchCase(pb.WatchCaseRequest(case_id=case_id), metadata=self.metadata, timeout=120)
        last = pb.Case()
        for message in stream:
            last = message.case
        assert last.state in FINAL, last
        return last

    def pull_by_hand(self, scenario: Scenario, case_type: pb.CaseType) -> None:
        """The case type's proofs, one GetProof after another, as a caller would without approvals."""
        for proof in case_type.proofs:
            identifier = scenario.applicant if proof.subject == "applicant" else scenario.parameters[proof.subject]
            parameters = {k: scenario.parameters.get(v.strip("{}"), v) for k, v in proof.parameters.items()}
            self.records.GetProof(
                records_pb2.GetProofRequest(
                    identifier=identifier,
                    proof_type=proof.proof_type,
                    purpose=records_pb2.Purpose(case_id="bench-baseline"),
                    parameters=parameters,
                ),
                metadata=self.metadata,
                timeout=30,
            )


def bench_one_at_a_time(client: Client, cases: int) -> None:
    types = {
        t.code: t
        for t in client.approvals.ListCaseTypes(pb.ListCaseTypesRequest(), metadata=client.metadata).case_types
    }
    print(f"one case at a time, {cases} cases per case type")
    for case_type in ("ride_hailing_driver_permit", "second_hand_housing_transfer"):
        scenario = qualifying(case_type)
        for _ in range(5):  # warm up
            client.decided(client.submit(scenario).case_id)
            client.pull_by_hand(scenario, types[case_type])
        baseline = []
        for _ in range(cases):
            started = time.perf_counter()
            client.pull_by_hand(scenario, types[case_type])
            baseline.append(time.perf_counter() - started)
        waited, recorded = [], []
        for _ in range(cases):
            started = time.perf_counter()
            case = client.decided(client.submit(scenario).case_id)
            waited.append(time.perf_counter() - started)
            assert case.state == pb.CASE_STATE_APPROVED, case.decision.message_en
            recorded.append(case.decision_duration.ToTimedelta().total_seconds())
        print(f" {case_type}")
        report("baseline: its 4 proofs by hand (records gRPC)", baseline, case_type)
        report("submit -> decided, as the client waited", waited, case_type)
        report("submit -> decided, decision_duration", recorded, case_type)


def bench_burst(client: Client, env: ServiceEnv, burst: int, section: str = "burst") -> None:
    scenario = qualifying("ride_hailing_driver_permit")
    print(f"{section}: {burst} ride-hailing cases submitted at once (8 client threads)")
    cpu_before = cpu.snapshot(env)
    started = time.perf_counter()
    with futures.ThreadPoolExecutor(8) as pool:
        submitted = list(pool.map(lambda _: client.submit(scenario).case_id, range(burst)))
        cases = list(pool.map(client.decided, submitted))
    elapsed = time.perf_counter() - started
    spent = cpu.per_unit(cpu_before, cpu.snapshot(env), burst)
    assert all(c.state == pb.CASE_STATE_APPROVED for c in cases)
    durations = sorted(c.decision_duration.ToTimedelta().total_seconds() for c in cases)
    print(
        f"  all decided in {elapsed:.2f} s: {burst / elapsed:.0f} cases/s; decision_duration "
        f"p50 {durations[len(durations) // 2] * 1000:.0f} ms, max {durations[-1] * 1000:.0f} ms"
    )
    results.record(
        section,
        f"{burst} ride-hailing cases at once",
        seconds=round(elapsed, 2),
        per_second=round(burst / elapsed, 1),
        decision_p50_ms=round(durations[len(durations) // 2] * 1000),
        decision_max_ms=round(durations[-1] * 1000),
    )
    print("  CPU per case, ms: " + ", ".join(f"{name} {ms:g}" for name, ms in spent.items()))
    results.record(f"{section}: CPU per case", "ms of CPU per case, by process", **spent)


def bench_offered(client: Client, rate: float, seconds: float, section: str = "offered load") -> None:
    """An open loop: case i is submitted at start + i / rate by a pool of submitters, however long
    the mesh takes; then every case is awaited and its decision_duration read."""
    scenario = qualifying("ride_hailing_driver_permit")
    count = int(rate * seconds)
    print(f"offered load: {rate:g} ride-hailing cases/s for {seconds:g} s ({count} cases)")
    start = time.monotonic() + 0.5
    late: list[float] = []

    def submit_at(i: int) -> str:
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            late.append(-delay)
        return str(client.submit(scenario).case_id)

    with futures.ThreadPoolExecutor(32) as pool:
        submitted = list(pool.map(submit_at, range(count)))
    offered_for = time.monotonic() - start
    deadline = time.monotonic() + 120
    cases: dict[str, pb.Case] = {}
    while len(cases) < len(submitted) and time.monotonic() < deadline:
        for case_id in submitted:
            if case_id not in cases:
                case = client.get(case_id)
                if case.state in FINAL:
                    cases[case_id] = case
        if len(cases) < len(submitted):
            time.sleep(0.5)
    lost = len(submitted) - len(cases)
    durations = sorted(c.decision_duration.ToTimedelta().total_seconds() * 1000 for c in cases.values())
    p50, p99 = percentile(durations, 50), percentile(durations, 99)
    print(
        f"  {count} submitted in {offered_for:.1f} s ({count / offered_for:.1f}/s; {len(late)} late), "
        f"{len(cases)} decided, {lost} not decided within 120 s; submit -> decided p50 {p50:.0f} ms, "
        f"p99 {p99:.0f} ms, max {durations[-1]:.0f} ms"
    )
    results.record(
        section,
        f"{rate:g} ride-hailing cases/s offered",
        offered_per_second=round(count / offered_for, 1),
        seconds=seconds,
        submitted=count,
        lost=lost,
        p50_ms=round(p50),
        p99_ms=round(p99),
        max_ms=round(durations[-1]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--workers", type=int, choices=(1, 2), default=2, help="burst again with 2 approvals workers")
    parser.add_argument("--offered", type=float, default=0, help="cases/s offered in an open loop (0: none)")
    parser.add_argument("--offered-seconds", type=float, default=60)
    args = parser.parse_args()
    databases = PostgresDatabases()
    with tempfile.TemporaryDirectory() as tmp, virtual_host() as amqp:
        url = f"sqlite:///{Path(tmp) / 'service.db'}" if args.database == "sqlite" else databases.create()
        print(f"on {args.database}")
        env = ServiceEnv("approvals", url, Path(tmp), amqp, others=("identity", "records"))
        env.env |= {"OTEL_TRACES_EXPORTER": "none", "LOG_LEVEL": "WARNING"}
        try:
            start_mesh(env, amqp)
            publish(env, [r for s in scenarios(clock.shanghai_date()) for r in s.records])
            client = Client(env)
            bench_one_at_a_time(client, args.cases)
            bench_burst(client, env, args.burst)
            if args.offered:
                bench_offered(client, args.offered, args.offered_seconds)
            if args.workers == 2:
                env.process("worker", "approvals", instance=(1, 2))
                wait_for(lambda: consumers(amqp, CASE_QUEUE) == 2, timeout=60)
                bench_burst(client, env, args.burst, "burst, 2 workers")
            results.keep(f"approvals-{args.database}", vars(args))
        finally:
            env.stop_all()
            databases.drop_all()


if __name__ == "__main__":
    main()
