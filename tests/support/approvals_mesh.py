"""Approvals' mesh for tests and benchmarks: identity, records and approvals as real processes,
departments' records published, the portal's calls."""

from __future__ import annotations

import uuid
from concurrent import futures

import grpc

from govmesh.approvals.v1 import approvals_pb2 as pb
from govmesh.approvals.v1 import approvals_pb2_grpc
from govmesh.records.v1 import records_pb2, records_pb2_grpc
from tests.support.mesh import (
    ServiceEnv,
    consumers,
    wait_for,
)
from tests.support.people import wait_serving

FINAL = (pb.CASE_STATE_APPROVED, pb.CASE_STATE_REJECTED, pb.CASE_STATE_CANCELLED)

class Approvals:
    def __init__(self, env: ServiceEnv, caller: str = "demo-portal") -> None:
        self.env = env
        self.stub = approvals_pb2_grpc.ApprovalsServiceStub(grpc.insecure_channel(env.target_of("approvals")))
        self.metadata = [("authorization", f"Bearer {env.token(caller)}")]

    def submit(
        self, case_type: str, applicant: str, parameters: dict[str, str], request_id: str = ""
    ) -> pb.SubmitCaseResponse:
        request = pb.SubmitCaseRequest(
            case_type=case_type,
            applicant_identifier=applicant,
            parameters=parameters,
            request_id=request_id or str(uuid.uuid4()),
        )
        return self.stub.SubmitCase(request, metadata=self.metadata, timeout=10)

    def get(self, case_id: str) -> pb.Case:
        return self.stub.GetCase(pb.GetCaseRequest(case_id=case_id), metadata=self.metadata, timeout=10).case

    def wait_final(self, case_id: str, states: tuple[int, ...] = FINAL, timeout: float = 30) -> pb.Case:
        found: list[pb.Case] = []

        def reached() -> bool:
            found[:] = [self.get(case_id)]
            return found[0].state in states

        wait_for(reached, timeout)
        return found[0]


def start_mesh(env: ServiceEnv, amqp: str) -> None:
    # Each service has a database (or a schema) of its own: migrated side by side.
    with futures.ThreadPoolExecutor(3) as pool:
        list(pool.map(env.migrate, ("identity", "records", "approvals")))
    for service in ("identity", "records"):
        env.process("api", service)
        env.process("worker", service)
    wait_for(lambda: consumers(amqp, "rpc-records") > 0, timeout=30)
    env.process("api", "approvals")
    env.process("worker", "approvals")
    wait_for(lambda: consumers(amqp, "rpc-identity") > 0, timeout=30)
    wait_for(lambda: consumers(amqp, "evt-approvals-case_submitted--approvals.on_case_submitted") > 0, timeout=60)
    wait_serving(env.target_of("records"), "govmesh.records.v1.RecordsService")
    wait_serving(env.target_of("approvals"), "govmesh.approvals.v1.ApprovalsService", timeout=60)


def publish(env: ServiceEnv, records: list[records_pb2.DepartmentRecord]) -> None:
    stub = records_pb2_grpc.RecordsServiceStub(grpc.insecure_channel(env.target_of("records")))
    metadata = [("authorization", f"Bearer {env.token('demo-portal')}")]
    answer = stub.PublishRecords(
        iter([records_pb2.PublishRecordsRequest(records=records)]), metadata=metadata, timeout=120
    )
    assert answer.rejected == 0, answer.rejections


def accesses(env: ServiceEnv, subject_id: str) -> list[records_pb2.AccessEntry]:
    """Every entry of a subject's data tracker in records (all pages)."""
    stub = records_pb2_grpc.RecordsServiceStub(grpc.insecure_channel(env.target_of("records")))
    metadata = [("authorization", f"Bearer {env.token('demo-portal')}")]
    entries: list[records_pb2.AccessEntry] = []
    page_token = ""
    while True:
        page = stub.ListAccesses(
            records_pb2.ListAccessesRequest(subject_id=subject_id, page_size=500, page_token=page_token),
            metadata=metadata,
            timeout=10,
        )
        entries.extend(page.entries)
        page_token = page.next_page_token
        if not page_token:
            return entries
