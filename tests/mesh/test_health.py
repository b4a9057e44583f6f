"""Health through its public interfaces, in the whole mesh: identity, records and health, each api
and worker a real process, over a real RabbitMQ in a virtual host of its own, on SQLite and on
PostgreSQL.

A department (through the demo portal, which holds every right) publishes a patient's city credit
score and insurance enrolment; the patient enrols, is treated on credit, pays one bill on time
(through the citizen portal's production caller) and lets the next one default (the services'
clock is moved past the due time and the grace period); the default suspends the account and
reaches records as the health commission's negative credit record; repaying the bill restores the
account with halved limits, and the health commission's ledger check proves it."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format
from prometheus_client.utils import floatToGoString

from govmesh.health.v1 import events_pb2
from govmesh.health.v1 import medical_credit_pb2 as pb
from govmesh.records.v1 import events_pb2 as records_events
from govmesh.records.v1 import records_pb2, records_pb2_grpc
from tests.support.health_mesh import HOSPITAL, YUAN, Events, Health, accesses, department_records, start_mesh
from tests.support.mesh import (
    Integrator,
    ServiceEnv,
    assert_no_raw_identifiers,
    metrics_text,
    virtual_host,
)
from tests.support.people import LUO_FANG, XU_WEI


@pytest.fixture
def mesh(database_url: str, tmp_path: Path) -> Iterator[tuple[ServiceEnv, str]]:
    with virtual_host() as amqp:
        env = ServiceEnv("health", database_url, tmp_path, amqp, others=("identity", "records"))
        try:
            start_mesh(env, amqp)
            yield env, amqp
        finally:
            env.stop_all()
        assert_no_raw_identifiers(env.all_output(), "the mesh's output")


def test_treat_first_pay_later_through_default_and_restoration(mesh: tuple[ServiceEnv, str]) -> None:
    env, amqp = mesh
    events = Events(amqp, "health.events")
    records_events_seen = Events(amqp, "records.events")
    try:
        stub = records_pb2_grpc.RecordsServiceStub(grpc.insecure_channel(env.target_of("records")))
        portal = [("authorization", f"Bearer {env.token('demo-portal')}")]
        published = stub.PublishRecords(
            iter([records_pb2.PublishRecordsRequest(records=department_records())]), metadata=portal, timeout=60
        )
        assert published.rejected == 0, published.rejections
        health = Health(env)
        # Enrolment: the score and the insurance are pulled from records, not brought by the patient.
        enrolled = health.call("Enroll", pb.EnrollRequest(identifier=LUO_FANG))
        assert isinstance(enrolled, pb.EnrollResponse) and enrolled.created
        account = enrolled.account
        assert account.status == pb.ACCOUNT_STATUS_ACTIVE and account.tier == pb.CREDIT_TIER_HIGH
        assert account.credit_score == 720 and account.insurance_enrolled
        assert (account.outpatient_limit_fen, account.inpatient_limit_fen) == (5_000 * YUAN, 15_000 * YUAN)
        assert account.masked_identifier != LUO_FANG and account.subject_id.startswith("sub_")
        again = health.call("Enroll", pb.EnrollRequest(identifier=LUO_FANG))
        assert isinstance(again, pb.EnrollResponse) and not again.created
        assert again.account.account_id == account.account_id

        # A hospital's system (policy/dev.yaml) opens visits at its own hospital only, and only at a
        # hospital of the deployment (services/health/hospitals.yaml).
        his = Health(env, "hospital-h330106004")
        elsewhere = pb.OpenVisitRequest(identifier=LUO_FANG, hospital_id=HOSPITAL, kind=1, request_id="his-1")
        refused = his.refused("OpenVisit", elsewhere)
        assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "does not act for hospital H330100001" in (refused.details() or "")
        unknown = pb.OpenVisitRequest(identifier=LUO_FANG, hospital_id="H000000000", kind=1, request_id="his-2")
        refused = his.refused("OpenVisit", unknown)
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert dict(refused.trailing_metadata() or ())["govmesh-field"] == "hospital_id"
        refused = his.refused("ListBills", pb.ListBillsRequest())
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT  # a hospital names its own
        assert his.refused("PayBill", pb.PayBillRequest()).code() == grpc.StatusCode.PERMISSION_DENIED

        tracker = accesses(env, account.subject_id)
        reads = {
            (a.proof_type, a.proof_id)
            for a in tracker
            if a.caller_id == "health" and a.purpose.legal_basis == "medical_credit_enrolment"
        }
        assert reads == {
            ("city_credit_score", account.credit_score_proof_id),
            ("medical_insurance_enrolment", account.insurance_proof_id),
        }, "each proof read once, for the legal basis, and the re-enrolment read nothing"

        # No score: enrolled, without credit, with the reason.
        unscored = health.call("Enroll", pb.EnrollRequest(identifier=XU_WEI))
        assert isinstance(unscored, pb.EnrollResponse)
        assert unscored.account.tier == pb.CREDIT_TIER_NONE
        assert unscored.account.no_credit_reason == pb.NO_CREDIT_REASON_NO_SCORE
        assert unscored.account.outpatient_limit_fen == 0

        # A visit paid on time, in two payments; a charge past the available credit is refused.
        visit = health.visit(LUO_FANG)
        health.charge(visit.visit_id, 1_200 * YUAN)
        medicine = health.charge(visit.visit_id, 300 * YUAN, pb.CHARGE_CATEGORY_MEDICINE)
        assert medicine.charge.insurance_fen + medicine.charge.self_pay_fen == 300 * YUAN
        available = health.account(account.account_id).available_outpatient_fen
        assert available == 5_000 * YUAN - medicine.visit.self_pay_fen
        over = health.refused("AddCharge", _charge_request(visit.visit_id, available + 1))
        assert over.code() == grpc.StatusCode.FAILED_PRECONDITION, over.details()
        assert "counter" in str(over.details())
        zero = health.refused("AddCharge", _charge_request(visit.visit_id, 0))
        assert zero.code() == grpc.StatusCode.INVALID_ARGUMENT and str(zero.details()).startswith("amount_fen")
        first = health.close(visit.visit_id)
        assert first.total_fen == 1_500 * YUAN and first.insurance_fen + first.self_pay_fen == first.total_fen
        assert first.due_at.ToDatetime() - first.issued_at.ToDatetime() == datetime.timedelta(hours=48)
        # The patient pays through the citizen portal, production's caller (policy/dev.yaml), which
        # reads bills at any hospital and treats at none.
        portal = Health(env, "zhelibao")
        assert portal.bill(first.bill_id).self_pay_fen == first.self_pay_fen
        treat = pb.OpenVisitRequest(identifier=LUO_FANG, hospital_id=HOSPITAL, kind=1, request_id="portal-1")
        assert portal.refused("OpenVisit", treat).code() == grpc.StatusCode.PERMISSION_DENIED
        request_id = str(uuid.uuid4())
        part = portal.pay(first.bill_id, 200 * YUAN, request_id)
        repeated = portal.pay(first.bill_id, 200 * YUAN, request_id)
        assert part.created and not repeated.created and repeated.payment.payment_id == part.payment.payment_id
        paid = portal.pay(first.bill_id, first.self_pay_fen - 200 * YUAN)
        assert paid.bill.state == pb.BILL_STATE_SETTLED
        settled = events.wait("bill_settled")
        assert [e["billId"] for e in settled] == [first.bill_id]
        assert settled[0]["previousState"] == "BILL_STATE_OPEN"

        # A bill left unpaid: overdue at its due time, defaulted after the grace period.
        visit = health.visit(LUO_FANG)
        health.charge(visit.visit_id, 800 * YUAN)
        second = health.close(visit.visit_id)
        assert second.self_pay_fen == 800 * YUAN
        env.travel(datetime.timedelta(hours=48, minutes=1))
        overdue = events.wait("bill_overdue")
        assert [e["billId"] for e in overdue] == [second.bill_id]
        assert overdue[0]["subjectId"] == account.subject_id
        assert health.bill(second.bill_id).state == pb.BILL_STATE_OVERDUE
        assert not events.of("bill_defaulted")
        env.travel(datetime.timedelta(days=7))
        defaulted = events.wait("bill_defaulted")
        assert [e["billId"] for e in defaulted] == [second.bill_id]
        suspended = health.account(account.account_id)
        assert suspended.status == pb.ACCOUNT_STATUS_SUSPENDED
        assert [(d.bill_id, d.amount_fen) for d in suspended.defaults] == [(second.bill_id, 800 * YUAN)]
        assert suspended.outpatient_limit_fen == 2_500 * YUAN  # what it will return with
        closed_out = health.refused(
            "OpenVisit",
            pb.OpenVisitRequest(
                identifier=LUO_FANG, hospital_id=HOSPITAL, kind=pb.VISIT_KIND_OUTPATIENT, request_id=str(uuid.uuid4())
            ),
        )
        assert closed_out.code() == grpc.StatusCode.FAILED_PRECONDITION

        # The negative credit record reached records, as the health commission's, by subject id.
        stored = [
            json_format.ParseDict(body, records_events.RecordPublished(), ignore_unknown_fields=True)
            for body in records_events_seen.wait("record_published", count=4)
        ]
        default_records = [r for r in stored if r.record_type == "medical_credit_default"]
        assert len(default_records) == 1, stored
        record = default_records[0]
        assert record.department_code == "health_commission"
        assert record.source_reference == second.bill_id
        assert record.subject_id == account.subject_id
        assert record.channel == records_events.INGEST_CHANNEL_BROKER

        # The same default again (as a redelivery would bring it): records stores nothing new.
        integrator = Integrator(amqp, "health.events")
        method, properties, body = next((m, p, b) for m, p, b in events.seen if m.routing_key == "bill_defaulted")
        integrator.channel.basic_publish("health.events", method.routing_key, body, properties)
        integrator.close()
        records_events_seen.settle(quiet=4)
        assert len([r for r in records_events_seen.of("record_published")]) == 4, "a duplicate stores nothing"

        # Repaid in full: settled, and the account is back with the halved limits.
        repaid = portal.pay(second.bill_id, 800 * YUAN)
        assert repaid.bill.state == pb.BILL_STATE_SETTLED
        settled = events.wait("bill_settled", count=2)
        assert settled[1]["billId"] == second.bill_id and settled[1]["previousState"] == "BILL_STATE_DEFAULTED"
        restored = events.wait("credit_restored")
        restoration = json_format.ParseDict(restored[0], events_pb2.CreditRestored())
        assert restoration.bill_id == second.bill_id and restoration.account_status == pb.ACCOUNT_STATUS_ACTIVE
        back = health.account(account.account_id)
        assert back.status == pb.ACCOUNT_STATUS_ACTIVE and back.outpatient_limit_fen == 2_500 * YUAN
        assert back.outstanding_fen == 0 and back.defaults[0].HasField("repaid_at")

        commission = Health(env, "health_commission")  # the scheme's overseer in production
        ledger = commission.call("VerifyLedger", pb.VerifyLedgerRequest())
        assert isinstance(ledger, pb.VerifyLedgerResponse)
        assert ledger.balanced and "every invariant holds" in ledger.message, ledger.message
        stats = commission.call("GetStats", pb.GetStatsRequest())
        assert isinstance(stats, pb.GetStatsResponse)
        assert (stats.enrolled_accounts, stats.bills, stats.settled_bills) == (2, 2, 2)
        assert stats.total_repaid_fen == first.self_pay_fen + 800 * YUAN and stats.total_defaulted_fen == 0

        api = metrics_text(env.ports["health"]["api_metrics"])
        assert 'govmesh_health_enrolments_total{tier="high"} 1.0' in api
        assert 'govmesh_health_bills_issued_total{kind="outpatient"} 2.0' in api
        assert f"govmesh_health_repaid_fen_total {floatToGoString(first.self_pay_fen + 800 * YUAN)}" in api
        worker = metrics_text(env.ports["health"]["worker_metrics"])
        assert "govmesh_health_defaults_total 1.0" in worker
        assert f"govmesh_health_defaulted_fen_total {floatToGoString(800 * YUAN)}" in worker
        assert "govmesh_health_bills_overdue_total 1.0" in worker
        assert "govmesh_health_default_records_published_total 2.0" in worker  # the redelivery too
    finally:
        events.close()
        records_events_seen.close()


def _charge_request(visit_id: str, amount_fen: int) -> pb.AddChargeRequest:
    return pb.AddChargeRequest(
        visit_id=visit_id,
        item="自费药品",
        category=pb.CHARGE_CATEGORY_OTHER,
        amount_fen=amount_fen,
        request_id=str(uuid.uuid4()),
    )
