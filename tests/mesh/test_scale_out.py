"""More processes, no double effects: records and approvals each run two api processes (sharing
their port, SO_REUSEPORT) and two workers (competing for their queues) on PostgreSQL, beside
identity's one of each, as `GOVMESH_SCALE=records-api=2,records-worker=2,approvals-api=2,
approvals-worker=2 make run` starts them.

Cases are submitted over many connections (so both approvals apis take them), each twice with one
request id; proofs are pulled straight from records' two apis, each twice with one request id. Then
every case is decided once, every proof issued once, every event published once, and records'
access log, sealed by whichever sequencer held the lock, verifies whole."""

from __future__ import annotations

import collections
import itertools
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from govmesh import clock
from govmesh.approvals.v1 import approvals_pb2 as pb
from govmesh.approvals.v1 import approvals_pb2_grpc
from govmesh.records.v1 import records_pb2, records_pb2_grpc
from tests.support.approvals_mesh import FINAL, accesses, publish
from tests.support.approvals_scenarios import scenarios
from tests.support.mesh import (
    Integrator,
    PostgresDatabases,
    Process,
    ServiceEnv,
    consumers,
    virtual_host,
    wait_for,
)
from tests.support.people import licence, wait_serving
from tests.support.records_mesh import publish_on_broker
from tests.support.shared_mesh import counter, new_resident

CASES = 30
PROOFS = 40
CORRECTED = 30
#: Records taken off records.ingest by records' workers, by what became of them.
INGESTED = 'govmesh_records_ingested_total{{channel="broker",outcome="{}"}}'
OUTCOMES = ("stored", "duplicate", "rejected")
CASE_QUEUE = "evt-approvals-case_submitted--approvals.on_case_submitted"


def own_connection(target: str) -> grpc.Channel:
    """A channel with a connection of its own, as a caller in another process has: grpcio would
    otherwise share one connection between channels, and the kernel spreads connections, not
    calls, over the processes sharing a port."""
    return grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])


def each_twice(call: Callable[[str], str], count: int) -> tuple[list[str], list[str]]:
    """``count`` calls from 8 threads, each with a request id of its own, then all again with the
    same ids: what each call answered, the first time and the second."""
    request_ids = [str(uuid.uuid4()) for _ in range(count)]
    with futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(call, request_ids)), list(pool.map(call, request_ids))


class ScaledMesh:
    def __init__(self, env: ServiceEnv, amqp: str) -> None:
        self.env = env
        self.amqp = amqp
        self.scaled: dict[tuple[str, str], list[Process]] = {}

    def start(self) -> None:
        env = self.env
        with futures.ThreadPoolExecutor(3) as pool:
            list(pool.map(env.migrate, ("identity", "records", "approvals")))
        env.process("api", "identity")
        env.process("worker", "identity")
        for service in ("records", "approvals"):
            for kind in ("worker", "api"):
                self.scaled[service, kind] = [env.process(kind, service, instance=(k, 2)) for k in range(2)]
        wait_for(lambda: consumers(self.amqp, "rpc-records") == 2, timeout=60)
        wait_for(lambda: consumers(self.amqp, CASE_QUEUE) == 2, timeout=60)
        for service in ("identity", "records", "approvals"):
            wait_serving(env.target_of(service), f"govmesh.{service}.v1.{service.capitalize()}Service", timeout=60)
        # A shared port serves as soon as one of its processes listens: wait for each, or every
        # connection may go to the first one up (seen under load).
        for service in ("records", "approvals"):
            for api in self.scaled[service, "api"]:
                api.wait_for_log("ready: database reachable and migrated", timeout=60)
                api.wait_for_log("gRPC listening", timeout=60)

    def each_counts(self, service: str, kind: str, series: str) -> list[float]:
        """A counter's value in each of the service's processes of ``kind``, from its own /metrics."""
        return [counter(self.env.metrics_port_of(p, kind), series) for p in self.scaled[service, kind]]

    def calls_handled(self, service: str, method: str) -> list[float]:
        """Each api process's count of ``method`` calls answered OK."""
        series = f'govmesh_grpc_requests_total{{code="OK",method="{method}",service="{service}"}}'
        return self.each_counts(service, "api", series)

    def ingested(self) -> dict[str, list[float]]:
        """Each records worker's count of the records it took off records.ingest, by outcome."""
        return {outcome: self.each_counts("records", "worker", INGESTED.format(outcome)) for outcome in OUTCOMES}

    def events_applied(self, handler: str) -> list[float]:
        series = f'govmesh_events_handled_total{{handler="{handler}",outcome="applied",service="approvals"}}'
        return self.each_counts("approvals", "worker", series)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresDatabases) -> Iterator[ScaledMesh]:
    tmp_path: Path = tmp_path_factory.mktemp("scale-out")
    with virtual_host() as amqp:
        env = ServiceEnv("approvals", postgres.create(), tmp_path, amqp, others=("identity", "records"))
        env.env |= {"OTEL_TRACES_EXPORTER": "none", "LOG_LEVEL": "INFO"}
        scaled = ScaledMesh(env, amqp)
        try:
            scaled.start()
            yield scaled
        finally:
            env.stop_all()


def test_two_apis_and_two_workers_decide_every_case_once_and_publish_every_event_once(mesh: ScaledMesh) -> None:
    env = mesh.env
    permits = (s for s in scenarios(clock.shanghai_date()) if s.case_type == "ride_hailing_driver_permit")
    scenario = next(s for s in permits if not s.failing_rules)
    publish(env, list(scenario.records))
    decided = Integrator(mesh.amqp, "approvals.events", "case_decided")
    metadata = [("authorization", f"Bearer {env.token('demo-portal')}")]

    def submit(request_id: str) -> str:
        stub = approvals_pb2_grpc.ApprovalsServiceStub(own_connection(env.target_of("approvals")))
        request = pb.SubmitCaseRequest(
            case_type=scenario.case_type,
            applicant_identifier=scenario.applicant,
            parameters=scenario.parameters,
            request_id=request_id,
        )
        return str(stub.SubmitCase(request, metadata=metadata, timeout=30).case.case_id)

    first, again = each_twice(submit, CASES)
    assert first == again, "a request id names one case, whichever api process took it"
    assert len(set(first)) == CASES

    stub = approvals_pb2_grpc.ApprovalsServiceStub(own_connection(env.target_of("approvals")))

    def all_final() -> bool:
        return all(stub.GetCase(pb.GetCaseRequest(case_id=c), metadata=metadata).case.state in FINAL for c in first)

    wait_for(all_final, timeout=120)
    cases = [stub.GetCase(pb.GetCaseRequest(case_id=c), metadata=metadata).case for c in first]
    assert {c.state for c in cases} == {pb.CASE_STATE_APPROVED}, [c.decision.message_en for c in cases]

    decisions = decided.drain(quiet=3)
    ids = [properties.headers["ce-id"] for _, properties, _ in decisions]
    decided_cases = collections.Counter(json.loads(body)["caseId"] for _, _, body in decisions)
    assert len(ids) == len(set(ids)) == CASES, "every case_decided published once"
    assert decided_cases == dict.fromkeys(first, 1), "every case decided once"

    # Four proofs per case, each pulled once: one granted entry per proof on the applicant's tracker.
    subject = cases[0].applicant_subject_id
    per_case = collections.Counter(e.purpose.case_id for e in accesses(env, subject) if e.purpose.case_id in first)
    assert per_case == dict.fromkeys(first, 4), "no proof pulled twice by two workers"

    assert all(n > 0 for n in mesh.calls_handled("approvals", "SubmitCase")), "both approvals apis took cases"
    assert all(n > 0 for n in mesh.events_applied("on_case_submitted")), "both approvals workers worked cases"
    decided.close()


def test_two_records_apis_issue_each_proof_once_and_two_sequencers_seal_one_log(mesh: ScaledMesh) -> None:
    env = mesh.env
    scenario = next(s for s in scenarios(clock.shanghai_date()) if s.case_type == "ride_hailing_driver_permit")
    publish(env, list(scenario.records))
    issued = Integrator(mesh.amqp, "records.events", "proof_issued")
    metadata = [("authorization", f"Bearer {env.token('demo-portal')}")]

    def pull(request_id: str) -> str:
        stub = records_pb2_grpc.RecordsServiceStub(own_connection(env.target_of("records")))
        request = records_pb2.GetProofRequest(
            identifier=scenario.applicant,
            proof_type="driving_licence",
            purpose=records_pb2.Purpose(case_id="scale-out"),
            request_id=request_id,
        )
        return str(stub.GetProof(request, metadata=metadata, timeout=30).proof.proof_id)

    first, again = each_twice(pull, PROOFS)
    assert first == again, "a request id names one proof, whichever api process took it"
    assert all(n > 0 for n in mesh.calls_handled("records", "GetProof")), "both records apis issued proofs"

    events = issued.drain(quiet=3)
    proof_ids = collections.Counter(json.loads(body)["proofId"] for _, _, body in events)
    assert proof_ids == dict.fromkeys(first, 1), "every proof_issued published once, by one of two relays"
    issued.close()

    records = records_pb2_grpc.RecordsServiceStub(own_connection(env.target_of("records")))
    subject = records.GetProof(
        records_pb2.GetProofRequest(
            identifier=scenario.applicant, proof_type="driving_licence", purpose=records_pb2.Purpose(case_id="x")
        ),
        metadata=metadata,
    ).proof.subject_id
    entries = [e for e in accesses(env, subject) if e.purpose.case_id == "scale-out"]
    assert len(entries) == PROOFS, "one access entry per proof, none for an idempotent repeat"

    def sealed() -> bool:
        return all(e.sealed for e in accesses(env, subject))

    wait_for(sealed, timeout=30)
    leaves = [e.leaf_index for e in accesses(env, subject)]
    assert len(leaves) == len(set(leaves)), "two sequencers never gave two entries one leaf"
    verified = records.VerifyAuditTrail(records_pb2.VerifyAuditTrailRequest(), metadata=metadata, timeout=60)
    assert verified.intact, verified


def test_two_corrections_of_one_record_at_once_leave_it_one_current_version(mesh: ScaledMesh) -> None:
    """Two departments' systems (or one retrying on another connection) correct the same record at
    the same moment, each reaching one of the two records apis: one correction is stored, the other
    is refused as naming a record already replaced, and the record keeps one current version."""
    env = mesh.env
    metadata = [("authorization", f"Bearer {env.token('public_security')}")]
    person, tag = new_resident(), uuid.uuid4().hex[:8]
    originals = [licence(person, reference=f"DL-{tag}-{n}") for n in range(CORRECTED)]
    publish(env, originals)

    def correct(original: records_pb2.DepartmentRecord, version: str, ready: threading.Barrier) -> int:
        correction = licence(person, reference=f"{original.source_reference}-{version}")
        correction.supersedes_source_reference = original.source_reference
        stub = records_pb2_grpc.RecordsServiceStub(own_connection(env.target_of("records")))
        request = records_pb2.PublishRecordsRequest(records=[correction])
        ready.wait(10)
        answer = stub.PublishRecords(iter([request]), metadata=metadata, timeout=30)
        for rejection in answer.rejections:
            assert rejection.code == records_pb2.RECORD_REJECTION_CODE_UNKNOWN_SUPERSEDED, rejection
            assert "already replaced" in rejection.message, rejection
        return int(answer.stored)

    with futures.ThreadPoolExecutor(2) as pool:
        for original in originals:
            ready = threading.Barrier(2)
            stored = list(pool.map(correct, [original, original], ["a", "b"], [ready, ready]))
            assert sorted(stored) == [0, 1], f"{original.source_reference}: one correction stored, one refused"

    assert stored_versions(env, tag) == (CORRECTED * 2, CORRECTED), "each record has one current version"


def test_two_records_workers_store_each_record_once_and_one_correction_of_it(mesh: ScaledMesh) -> None:
    """A department's system sends two corrections of each record on the broker, and each of them
    twice (a resend); the two records workers take them at once: each record gets one correction
    (the other, both copies, refused and dead-lettered), one record_published each, one current
    version."""
    env = mesh.env
    person, tag = new_resident(), uuid.uuid4().hex[:8]
    originals = [licence(person, reference=f"DL-{tag}-{n}") for n in range(CORRECTED)]
    published = Integrator(mesh.amqp, "records.events", "record_published")
    publish(env, originals)
    before = mesh.ingested()
    corrections = []
    for original, version in itertools.product(originals, "ab"):
        correction = licence(person, reference=f"{original.source_reference}-{version}")
        correction.supersedes_source_reference = original.source_reference
        corrections.append(correction)
    for correction in corrections + corrections:
        publish_on_broker(env, correction)

    def taken() -> dict[str, int]:
        return {outcome: int(sum(counts) - sum(before[outcome])) for outcome, counts in mesh.ingested().items()}

    wait_for(lambda: sum(taken().values()) == 4 * CORRECTED, timeout=60)
    # One of each pair stored, its resend a duplicate; the other refused, its resend too.
    assert taken() == {"stored": CORRECTED, "duplicate": CORRECTED, "rejected": 2 * CORRECTED}
    assert stored_versions(env, tag) == (CORRECTED * 2, CORRECTED), "one correction each, one current version"
    events = [json.loads(body)["sourceReference"] for _, _, body in published.drain(quiet=3)]
    ours = collections.Counter(reference for reference in events if reference.startswith(f"DL-{tag}-"))
    assert len(ours) == 2 * CORRECTED and set(ours.values()) == {1}, "one record_published per record stored"
    published.close()
    after = mesh.ingested()
    by_worker = [sum(after[o][k] - before[o][k] for o in OUTCOMES) for k in range(len(after["stored"]))]
    assert len(by_worker) == 2 and all(n > 0 for n in by_worker), "both records workers took records"


def stored_versions(env: ServiceEnv, tag: str) -> tuple[int, int]:
    """How many records tagged ``tag`` (DL-<tag>-...) records stores, and how many are current."""
    engine = env.engine("records")
    try:
        with engine.connect() as connection:
            stored, current = connection.execute(
                sa.text(
                    "SELECT count(*), count(*) FILTER (WHERE superseded_by IS NULL) FROM records"
                    " WHERE department_code = 'public_security' AND source_reference LIKE :tagged"
                ),
                {"tagged": f"DL-{tag}-%"},
            ).one()
    finally:
        engine.dispose()
    return int(stored), int(current)
