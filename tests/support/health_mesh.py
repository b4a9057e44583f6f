"""Health's mesh for tests and tools that drive it: identity, records and health as real processes,
a hospital's and a patient's calls, the events an integrator sees."""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Callable

import grpc
import pytest

from govmesh.health.v1 import medical_credit_pb2 as pb
from govmesh.health.v1 import medical_credit_pb2_grpc
from govmesh.records.v1 import records_pb2, records_pb2_grpc
from govmesh.typed_values import Value, fields_to_proto
from tests.support.mesh import (
    Delivery,
    Integrator,
    ServiceEnv,
    consumers,
    wait_for,
)
from tests.support.people import LUO_FANG, XU_WEI, wait_serving

HOSPITAL = "H330100001"


YUAN = 100
#: The queue health's workers take bill_defaulted from (each sends the bill's default record).
DEFAULTED_QUEUE = "evt-health-bill_defaulted--health.on_bill_defaulted"


def start_mesh(env: ServiceEnv, amqp: str) -> None:
    for service in ("identity", "records", "health"):
        env.migrate(service)
    for service in ("identity", "records"):
        env.process("api", service)
        env.process("worker", service)
    # Records' broker feed, where health reports defaults, exists before health can default.
    wait_for(lambda: consumers(amqp, "records.records.ingest") > 0, timeout=60)
    env.process("api", "health")
    env.process("worker", "health")
    wait_for(lambda: consumers(amqp, DEFAULTED_QUEUE) > 0, timeout=60)
    wait_serving(env.target_of("identity"), "govmesh.identity.v1.IdentityService")
    wait_serving(env.target_of("records"), "govmesh.records.v1.RecordsService")
    wait_serving(env.target_of("health"), "govmesh.health.v1.MedicalCreditService", timeout=60)


def department_records() -> list[records_pb2.DepartmentRecord]:
    """Luo Fang's score (HIGH) and insurance; Xu Wei is insured and has no score."""

    def record(
        department: str, record_type: str, identifier: str, name: str, fields: dict[str, Value]
    ) -> records_pb2.DepartmentRecord:
        return records_pb2.DepartmentRecord(
            department_code=department,
            record_type=record_type,
            subject_identifier=identifier,
            subject_display_name=name,
            source_reference=f"{record_type}-{uuid.uuid4().hex[:12]}",
            fields=fields_to_proto(fields),
            effective_from="2018-01-01",
        )

    insurance: dict[str, Value] = {
        "scheme": "employee",
        "enrolled_since": datetime.date(2010, 7, 1),
        "status": "active",
    }
    return [
        record(
            "credit_center",
            "city_credit_score",
            LUO_FANG,
            "骆芳",
            {"score": 720, "band": "very_good", "scored_on": datetime.date(2019, 1, 15)},
        ),
        record(
            "healthcare_security",
            "medical_insurance_enrolment",
            LUO_FANG,
            "骆芳",
            {**insurance, "insured_region": "330183"},
        ),
        record(
            "healthcare_security",
            "medical_insurance_enrolment",
            XU_WEI,
            "徐伟",
            {**insurance, "insured_region": "330106"},
        ),
    ]


class Events:
    """Every event of an exchange as an integrator receives it, kept, so a test can wait for one
    kind while others arrive."""

    def __init__(self, amqp: str, exchange: str) -> None:
        self.integrator = Integrator(amqp, exchange)
        self.seen: list[Delivery] = []

    def of(self, routing_key: str) -> list[dict[str, object]]:
        return [json.loads(body) for method, _, body in self.seen if method.routing_key == routing_key]

    def wait(self, routing_key: str, count: int = 1, timeout: float = 30) -> list[dict[str, object]]:
        def arrived() -> bool:
            self.seen.extend(self.integrator.receive(1, timeout=0.2))
            return len(self.of(routing_key)) >= count

        wait_for(arrived, timeout)
        return self.of(routing_key)

    def settle(self, quiet: float = 3) -> None:
        self.seen.extend(self.integrator.drain(quiet=quiet))

    def close(self) -> None:
        self.integrator.close()


class Health:
    def __init__(self, env: ServiceEnv, caller: str = "demo-portal") -> None:
        self.stub = medical_credit_pb2_grpc.MedicalCreditServiceStub(grpc.insecure_channel(env.target_of("health")))
        self.metadata = [("authorization", f"Bearer {env.token(caller)}")]

    def call(self, method: str, request: object) -> object:
        rpc: Callable[..., object] = getattr(self.stub, method)
        return rpc(request, metadata=self.metadata, timeout=15)

    def refused(self, method: str, request: object) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as refusal:
            self.call(method, request)
        return refusal.value

    def account(self, account_id: str) -> pb.CreditAccount:
        answer = self.call("GetAccount", pb.GetAccountRequest(account_id=account_id))
        assert isinstance(answer, pb.GetAccountResponse)
        return answer.account

    def bill(self, bill_id: str) -> pb.Bill:
        answer = self.call("GetBill", pb.GetBillRequest(bill_id=bill_id))
        assert isinstance(answer, pb.GetBillResponse)
        return answer.bill

    def visit(self, identifier: str) -> pb.Visit:
        answer = self.call(
            "OpenVisit",
            pb.OpenVisitRequest(
                identifier=identifier, hospital_id=HOSPITAL, kind=pb.VISIT_KIND_OUTPATIENT, request_id=str(uuid.uuid4())
            ),
        )
        assert isinstance(answer, pb.OpenVisitResponse) and answer.created
        return answer.visit

    def charge(self, visit_id: str, amount_fen: int, category: int = pb.CHARGE_CATEGORY_OTHER) -> pb.AddChargeResponse:
        answer = self.call(
            "AddCharge",
            pb.AddChargeRequest(
                visit_id=visit_id,
                item="单人病房",
                category=category,
                amount_fen=amount_fen,
                request_id=str(uuid.uuid4()),
            ),
        )
        assert isinstance(answer, pb.AddChargeResponse)
        return answer

    def close(self, visit_id: str) -> pb.Bill:
        answer = self.call("CloseVisit", pb.CloseVisitRequest(visit_id=visit_id))
        assert isinstance(answer, pb.CloseVisitResponse)
        return answer.bill

    def pay(self, bill_id: str, amount_fen: int, request_id: str = "") -> pb.PayBillResponse:
        answer = self.call(
            "PayBill",
            pb.PayBillRequest(bill_id=bill_id, amount_fen=amount_fen, request_id=request_id or str(uuid.uuid4())),
        )
        assert isinstance(answer, pb.PayBillResponse)
        return answer


def accesses(env: ServiceEnv, subject_id: str) -> list[records_pb2.AccessEntry]:
    stub = records_pb2_grpc.RecordsServiceStub(grpc.insecure_channel(env.target_of("records")))
    metadata = [("authorization", f"Bearer {env.token('demo-portal')}")]
    page = stub.ListAccesses(
        records_pb2.ListAccessesRequest(subject_id=subject_id, page_size=500), metadata=metadata, timeout=10
    )
    return list(page.entries)

