"""Health under concurrency and repetition, through its public gRPC interface, in the whole mesh
(identity, records and health, each api and worker a real process, over a real RabbitMQ in a
virtual host of its own), on SQLite and on PostgreSQL.

The use-case tests (test_health_app.py) prove these properties on HealthApp in one process; here
every racing call comes from a thread of its own, over a gRPC channel of its own, into the health
api process, as hospitals' counters and patients' phones would call it:

* sixteen charges at once on one patient's visits, more than the credit allows: each is accepted
  or refused with "pays at the counter", the account never shows more outstanding than its limit,
  and its figures are exactly the accepted charges' self-pay shares;
* sixteen payments at once on one bill, more than it owes: no over-payment, no fen lost;
* a request id sent again, one after the other or eight at once, has one effect, and the same id
  with different content is ALREADY_EXISTS naming request_id (OpenVisit, AddCharge, PayBill:
  the requests of the contract that carry one);
* health's own bill_defaulted event delivered again (as an integrator's replay would) leaves
  records with one medical_credit_default record of the bill.

One mesh per database serves the module's tests (starting one takes ten seconds); each test
enrols patients of its own, and reads only what its own patients, visits and bills did, except
VerifyLedger, which proves the whole ledger each time."""

from __future__ import annotations

import datetime
import itertools
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass

import grpc
import pika
import pytest
import sqlalchemy as sa
from google.protobuf import json_format
from google.protobuf.message import Message

from govmesh.db import service_database
from govmesh.health.v1 import medical_credit_pb2 as pb
from govmesh.health.v1 import medical_credit_pb2_grpc
from govmesh.records.v1 import events_pb2 as records_events
from govmesh.records.v1 import records_pb2, records_pb2_grpc
from govmesh.typed_values import Value, fields_to_proto
from tests.support.health_mesh import DEFAULTED_QUEUE, HOSPITAL, YUAN, Events, Health, start_mesh
from tests.support.mesh import (
    ServiceEnv,
    assert_no_raw_identifiers,
    consumers,
    database_for,
    metrics_text,
    virtual_host,
    wait_for,
)
from tests.support.people import resident_id

#: A HIGH-tier patient's outpatient limit (a city credit score of 720).
OUTPATIENT_LIMIT = 5_000 * YUAN
RACERS = 16
RETRIES = 8


@dataclass(frozen=True)
class Mesh:
    env: ServiceEnv
    amqp: str
    health: Health


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def mesh(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """The whole mesh, once per database for the module (tests.support.mesh.database_for: a SQLite file,
    or a fresh PostgreSQL database)."""
    tmp_path = tmp_path_factory.mktemp(f"health-concurrency-{request.param}")
    database_url = database_for(request, tmp_path)
    with virtual_host() as amqp:
        env = ServiceEnv("health", database_url, tmp_path, amqp, others=("identity", "records"))
        try:
            start_mesh(env, amqp)
            yield Mesh(env, amqp, Health(env))
        finally:
            env.stop_all()
        assert_no_raw_identifiers(env.all_output(), "the mesh's output")


# ------------------------------------------------------------------------------------------------
# Helpers

_patients = itertools.count(100)


def enrolled_patient(mesh: Mesh) -> tuple[str, pb.CreditAccount]:
    """A new resident with a city credit score of 720 (HIGH) and employee insurance, published by
    the departments to records and enrolled; their identifier and account."""
    identifier = resident_id(f"33010619900101{next(_patients):03d}")

    def record(department: str, record_type: str, fields: dict[str, Value]) -> records_pb2.DepartmentRecord:
        return records_pb2.DepartmentRecord(
            department_code=department,
            record_type=record_type,
            subject_identifier=identifier,
            subject_display_name="测试",
            source_reference=f"{record_type}-{uuid.uuid4().hex[:12]}",
            fields=fields_to_proto(fields),
            effective_from="2018-01-01",
        )

    records = [
        record(
            "credit_center",
            "city_credit_score",
            {"score": 720, "band": "very_good", "scored_on": datetime.date(2019, 1, 15)},
        ),
        record(
            "healthcare_security",
            "medical_insurance_enrolment",
            {
                "scheme": "employee",
                "enrolled_since": datetime.date(2010, 7, 1),
                "status": "active",
                "insured_region": "330106",
            },
        ),
    ]
    stub = records_pb2_grpc.RecordsServiceStub(grpc.insecure_channel(mesh.env.target_of("records")))
    published = stub.PublishRecords(
        iter([records_pb2.PublishRecordsRequest(records=records)]), metadata=tuple(mesh.health.metadata), timeout=60
    )
    assert published.rejected == 0, published.rejections
    enrolled = mesh.health.call("Enroll", pb.EnrollRequest(identifier=identifier))
    assert isinstance(enrolled, pb.EnrollResponse) and enrolled.created
    assert enrolled.account.tier == pb.CREDIT_TIER_HIGH
    assert enrolled.account.outpatient_limit_fen == OUTPATIENT_LIMIT
    return identifier, enrolled.account


@dataclass(frozen=True)
class Outcome:
    """One call's answer: the response, or the refusal's code, details and the field and reason
    health puts in the trailing metadata (govmesh-field, govmesh-reason)."""

    response: Message | None
    code: grpc.StatusCode | None = None
    details: str = ""
    field: str = ""
    reason: str = ""


def race(mesh: Mesh, calls: list[tuple[str, Message]]) -> list[Outcome]:
    """Each call from a thread of its own over a channel of its own, connected first and then
    released together by a barrier; the outcomes in the order of ``calls``."""
    target = mesh.env.target_of("health")
    barrier = threading.Barrier(len(calls))

    def run(call: tuple[str, Message]) -> Outcome:
        method, request = call
        with grpc.insecure_channel(target) as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
            rpc: Callable[..., Message] = getattr(medical_credit_pb2_grpc.MedicalCreditServiceStub(channel), method)
            barrier.wait(timeout=30)
            try:
                return Outcome(rpc(request, metadata=tuple(mesh.health.metadata), timeout=30))
            except grpc.RpcError as error:
                trailers = {entry.key: entry.value for entry in error.trailing_metadata() or ()}
                return Outcome(
                    None,
                    error.code(),
                    str(error.details()),
                    str(trailers.get("govmesh-field", "")),
                    str(trailers.get("govmesh-reason", "")),
                )

    with futures.ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def refusal(mesh: Mesh, method: str, request: Message) -> Outcome:
    (outcome,) = race(mesh, [(method, request)])
    assert outcome.response is None, f"{method} was not refused: {outcome.response}"
    return outcome


def verify_ledger(mesh: Mesh) -> None:
    ledger = mesh.health.call("VerifyLedger", pb.VerifyLedgerRequest())
    assert isinstance(ledger, pb.VerifyLedgerResponse)
    assert ledger.balanced and "every invariant holds" in ledger.message, ledger.message
    assert not ledger.first_unbalanced_posting_id


def visit_request(
    identifier: str, request_id: str, kind: pb.VisitKind.ValueType = pb.VISIT_KIND_OUTPATIENT
) -> pb.OpenVisitRequest:
    return pb.OpenVisitRequest(identifier=identifier, hospital_id=HOSPITAL, kind=kind, request_id=request_id)


def charge_request(
    visit_id: str,
    amount_fen: int,
    request_id: str,
    category: pb.ChargeCategory.ValueType = pb.CHARGE_CATEGORY_OTHER,
    item: str = "单人病房",
) -> pb.AddChargeRequest:
    return pb.AddChargeRequest(
        visit_id=visit_id, item=item, category=category, amount_fen=amount_fen, request_id=request_id
    )


def billed(mesh: Mesh, identifier: str, amount_fen: int) -> pb.Bill:
    """A closed outpatient visit with one self-pay charge (OTHER: no insurance share) of
    ``amount_fen``: its bill."""
    visit = mesh.health.visit(identifier)
    mesh.health.charge(visit.visit_id, amount_fen)
    bill = mesh.health.close(visit.visit_id)
    assert bill.self_pay_fen == amount_fen and bill.state == pb.BILL_STATE_OPEN
    return bill


def wait_event(events: Events, routing_key: str, matches: Callable[[dict[str, object]], bool]) -> None:
    def arrived() -> bool:
        events.seen.extend(events.integrator.receive(1, timeout=0.2))
        return any(matches(body) for body in events.of(routing_key))

    wait_for(arrived, timeout=30)


# ------------------------------------------------------------------------------------------------
# 1. Concurrent charges against one credit limit


def test_sixteen_concurrent_charges_never_take_the_account_past_its_limit(mesh: Mesh) -> None:
    health = mesh.health
    identifier, account = enrolled_patient(mesh)
    visits = [health.visit(identifier).visit_id for _ in range(4)]
    # Every charge's self-pay share is 400 yuan: MEDICINE of 2,000 yuan (80% insured) or OTHER of
    # 400 yuan (not insured), each visit getting both. 16 x 400 = 6,400 yuan against 5,000: twelve
    # fit (4,800), the thirteenth would make 5,200, whichever order they come in.
    self_pay = 400 * YUAN
    calls: list[tuple[str, Message]] = []
    for index in range(RACERS):
        medicine = (index // 4) % 2 == 0
        calls.append(
            (
                "AddCharge",
                charge_request(
                    visits[index % 4],
                    2_000 * YUAN if medicine else self_pay,
                    f"charge-{uuid.uuid4()}",
                    pb.CHARGE_CATEGORY_MEDICINE if medicine else pb.CHARGE_CATEGORY_OTHER,
                ),
            )
        )

    # A watcher reads the account for as long as the charges race: what it ever shows.
    seen: list[tuple[int, int]] = []
    done = threading.Event()

    def watch() -> None:
        with grpc.insecure_channel(mesh.env.target_of("health")) as channel:
            stub = medical_credit_pb2_grpc.MedicalCreditServiceStub(channel)
            while not done.is_set():
                answer = stub.GetAccount(
                    pb.GetAccountRequest(account_id=account.account_id), metadata=tuple(health.metadata), timeout=30
                )
                seen.append((answer.account.outstanding_fen, answer.account.available_outpatient_fen))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        outcomes = race(mesh, calls)
    finally:
        done.set()
        watcher.join(timeout=60)

    refused = [o for o in outcomes if o.response is None]
    assert {(o.code, o.field, o.reason) for o in refused} == {
        (grpc.StatusCode.FAILED_PRECONDITION, "amount_fen", "CREDIT_LIMIT_EXCEEDED")
    }, [(o.code, o.details) for o in refused]
    assert all("pays at the counter" in o.details for o in refused), [o.details for o in refused]
    accepted = [o.response for o in outcomes if isinstance(o.response, pb.AddChargeResponse)]
    assert (len(accepted), len(refused)) == (12, 4)
    assert all(a.created for a in accepted)
    charges = {a.charge.charge_id: a.charge for a in accepted}
    assert len(charges) == 12
    for charge in charges.values():
        assert charge.self_pay_fen == self_pay and charge.insurance_fen + charge.self_pay_fen == charge.amount_fen
    accepted_self_pay = sum(c.self_pay_fen for c in charges.values())
    assert accepted_self_pay == 4_800 * YUAN

    assert seen, "the watcher read the account at least once"
    assert all(outstanding <= OUTPATIENT_LIMIT and available >= 0 for outstanding, available in seen), seen
    after = health.account(account.account_id)
    assert after.outstanding_fen == accepted_self_pay
    assert after.available_outpatient_fen == OUTPATIENT_LIMIT - accepted_self_pay == 200 * YUAN

    # The visits hold exactly the accepted charges, and bill exactly their shares.
    bills = [health.close(visit_id) for visit_id in visits]
    billed_charges: dict[str, pb.Charge] = {}
    for visit_id in visits:
        closed = health.call("CloseVisit", pb.CloseVisitRequest(visit_id=visit_id))  # again: the same bill
        assert isinstance(closed, pb.CloseVisitResponse)
        billed_charges |= {c.charge_id: c for c in closed.visit.charges}
        assert closed.visit.self_pay_fen == sum(c.self_pay_fen for c in closed.visit.charges)
    assert billed_charges == charges
    assert sum(b.self_pay_fen for b in bills) == accepted_self_pay
    assert sum(b.total_fen for b in bills) == sum(c.amount_fen for c in charges.values())
    assert health.account(account.account_id).outstanding_fen == accepted_self_pay
    verify_ledger(mesh)


# ------------------------------------------------------------------------------------------------
# 2. Concurrent payments of one bill


def test_sixteen_concurrent_payments_never_over_pay_a_bill_and_lose_no_fen(mesh: Mesh) -> None:
    health = mesh.health
    identifier, account = enrolled_patient(mesh)
    bill = billed(mesh, identifier, 1_000 * YUAN)
    # Sixteen different amounts, 61.73 to 93.38 yuan, 1,240.88 yuan together against 1,000 owed,
    # no subset of which adds up to 1,000 yuan exactly: whatever order they come in, some are paid,
    # the bill is never settled by them, and every refusal is an over-payment.
    amounts = [6_173 + 211 * index for index in range(RACERS)]
    assert sum(amounts) > bill.self_pay_fen
    reachable = {0}
    for amount in amounts:
        reachable |= {total + amount for total in reachable if total + amount <= bill.self_pay_fen}
    assert bill.self_pay_fen not in reachable
    request_ids = [f"pay-{uuid.uuid4()}" for _ in amounts]
    outcomes = race(
        mesh,
        [
            ("PayBill", pb.PayBillRequest(bill_id=bill.bill_id, amount_fen=amount, request_id=request_id))
            for amount, request_id in zip(amounts, request_ids, strict=True)
        ],
    )

    paid = [
        (amount, outcome.response)
        for amount, outcome in zip(amounts, outcomes, strict=True)
        if isinstance(outcome.response, pb.PayBillResponse)
    ]
    refused = [(amount, outcome) for amount, outcome in zip(amounts, outcomes, strict=True) if outcome.response is None]
    assert paid and refused
    assert all(response.created and response.payment.amount_fen == amount for amount, response in paid)
    for amount, outcome in refused:
        assert (outcome.code, outcome.field, outcome.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "amount_fen",
            "OVERPAYMENT",
        ), (outcome.code, outcome.details)
        assert outcome.details.startswith(f"amount_fen: {amount} fen is more than"), outcome.details

    after = health.bill(bill.bill_id)
    paid_total = sum(amount for amount, _ in paid)
    assert after.paid_fen == paid_total < after.self_pay_fen, "never over-paid, no fen lost"
    assert after.state == pb.BILL_STATE_OPEN and after.outstanding_fen == after.self_pay_fen - paid_total
    assert Counter(p.amount_fen for p in after.payments) == Counter(amount for amount, _ in paid)
    assert {p.payment_id for p in after.payments} == {response.payment.payment_id for _, response in paid}
    assert {p.request_id for p in after.payments} <= set(request_ids)
    # No refusal was needless: each refused amount was more than is outstanding even now.
    assert all(amount > after.outstanding_fen for amount, _ in refused), (after.outstanding_fen, refused)
    assert health.account(account.account_id).outstanding_fen == after.outstanding_fen
    verify_ledger(mesh)

    # The rest settles the bill, once.
    events = Events(mesh.amqp, "health.events")
    try:
        settled = health.pay(bill.bill_id, after.outstanding_fen).bill
        assert settled.state == pb.BILL_STATE_SETTLED and settled.paid_fen == settled.self_pay_fen
        wait_event(events, "bill_settled", lambda body: body["billId"] == bill.bill_id)
        events.settle(quiet=2)
        assert [e["billId"] for e in events.of("bill_settled")].count(bill.bill_id) == 1
    finally:
        events.close()
    assert health.account(account.account_id).outstanding_fen == 0
    verify_ledger(mesh)


# ------------------------------------------------------------------------------------------------
# 3. Duplicate request ids


def test_a_request_id_sent_again_has_one_effect_and_with_other_content_is_already_exists(mesh: Mesh) -> None:
    health = mesh.health
    identifier, account = enrolled_patient(mesh)

    def already_exists(outcome: Outcome) -> None:
        assert outcome.code == grpc.StatusCode.ALREADY_EXISTS, (outcome.code, outcome.details)
        # Named in the message, as every refusal is, and in the govmesh-field trailer.
        assert outcome.details.startswith("request_id:"), outcome.details
        assert (outcome.field, outcome.reason) == ("request_id", "REUSED"), (outcome.field, outcome.reason)

    # OpenVisit: again, one after the other and eight at once.
    opened = health.call("OpenVisit", visit_request(identifier, "visit-1"))
    again = health.call("OpenVisit", visit_request(identifier, "visit-1"))
    assert isinstance(opened, pb.OpenVisitResponse) and isinstance(again, pb.OpenVisitResponse)
    assert opened.created and not again.created and again.visit == opened.visit
    already_exists(refusal(mesh, "OpenVisit", visit_request(identifier, "visit-1", pb.VISIT_KIND_INPATIENT)))
    elsewhere = visit_request(identifier, "visit-1")
    elsewhere.hospital_id = "H330100002"
    already_exists(refusal(mesh, "OpenVisit", elsewhere))
    retried_visits = race(mesh, [("OpenVisit", visit_request(identifier, "visit-2"))] * RETRIES)
    opens = [o.response for o in retried_visits if isinstance(o.response, pb.OpenVisitResponse)]
    assert len(opens) == RETRIES, [(o.code, o.details) for o in retried_visits]
    assert sum(o.created for o in opens) == 1 and len({o.visit.visit_id for o in opens}) == 1
    second_visit = opens[0].visit.visit_id
    assert second_visit != opened.visit.visit_id
    no_bills = health.call("ListBills", pb.ListBillsRequest(account_id=account.account_id))
    assert isinstance(no_bills, pb.ListBillsResponse) and not no_bills.bills

    # AddCharge: again, one after the other and eight at once.
    visit_id = opened.visit.visit_id
    first = health.call("AddCharge", charge_request(visit_id, 300 * YUAN, "charge-1"))
    repeat = health.call("AddCharge", charge_request(visit_id, 300 * YUAN, "charge-1"))
    assert isinstance(first, pb.AddChargeResponse) and isinstance(repeat, pb.AddChargeResponse)
    assert first.created and not repeat.created and repeat.charge == first.charge
    assert len(repeat.visit.charges) == 1 and repeat.visit.self_pay_fen == 300 * YUAN
    already_exists(refusal(mesh, "AddCharge", charge_request(visit_id, 301 * YUAN, "charge-1")))
    already_exists(refusal(mesh, "AddCharge", charge_request(visit_id, 300 * YUAN, "charge-1", item="床位")))
    already_exists(
        refusal(
            mesh, "AddCharge", charge_request(visit_id, 300 * YUAN, "charge-1", category=pb.CHARGE_CATEGORY_MEDICINE)
        )
    )
    retried_charges = race(mesh, [("AddCharge", charge_request(visit_id, 5 * YUAN, "charge-2"))] * RETRIES)
    charges = [o.response for o in retried_charges if isinstance(o.response, pb.AddChargeResponse)]
    assert len(charges) == RETRIES, [(o.code, o.details) for o in retried_charges]
    assert sum(c.created for c in charges) == 1 and len({c.charge.charge_id for c in charges}) == 1
    assert all(c.charge == charges[0].charge for c in charges)
    assert health.account(account.account_id).outstanding_fen == 305 * YUAN

    # CloseVisit carries no request id: closing again is naturally the same bill, at once too.
    closes = race(mesh, [("CloseVisit", pb.CloseVisitRequest(visit_id=visit_id))] * RETRIES)
    closed = [o.response for o in closes if isinstance(o.response, pb.CloseVisitResponse)]
    assert len(closed) == RETRIES, [(o.code, o.details) for o in closes]
    assert len({c.bill.bill_id for c in closed}) == 1
    bill = closed[0].bill
    assert (bill.self_pay_fen, len(closed[0].visit.charges)) == (305 * YUAN, 2)
    other_bill = billed(mesh, identifier, 50 * YUAN)  # on a visit of its own
    assert health.call("CloseVisit", pb.CloseVisitRequest(visit_id=second_visit))
    bills = health.call("ListBills", pb.ListBillsRequest(account_id=account.account_id))
    assert isinstance(bills, pb.ListBillsResponse) and len(bills.bills) == 3

    # PayBill: again, one after the other and eight at once; a request id is the service's, so
    # reused on another bill it is ALREADY_EXISTS too.
    pay_1 = f"pay-{uuid.uuid4()}"
    paid = health.pay(bill.bill_id, 100 * YUAN, pay_1)
    repaid = health.pay(bill.bill_id, 100 * YUAN, pay_1)
    assert paid.created and not repaid.created and repaid.payment == paid.payment
    assert repaid.bill.paid_fen == 100 * YUAN and len(repaid.bill.payments) == 1
    already_exists(
        refusal(mesh, "PayBill", pb.PayBillRequest(bill_id=bill.bill_id, amount_fen=50 * YUAN, request_id=pay_1))
    )
    already_exists(
        refusal(mesh, "PayBill", pb.PayBillRequest(bill_id=other_bill.bill_id, amount_fen=100 * YUAN, request_id=pay_1))
    )
    assert health.bill(other_bill.bill_id).paid_fen == 0
    pay_2 = f"pay-{uuid.uuid4()}"
    rest = pb.PayBillRequest(bill_id=bill.bill_id, amount_fen=205 * YUAN, request_id=pay_2)
    retried_payments = race(mesh, [("PayBill", rest)] * RETRIES)
    payments = [o.response for o in retried_payments if isinstance(o.response, pb.PayBillResponse)]
    assert len(payments) == RETRIES, [(o.code, o.details) for o in retried_payments]
    assert sum(p.created for p in payments) == 1 and len({p.payment.payment_id for p in payments}) == 1
    settled = health.bill(bill.bill_id)
    assert settled.state == pb.BILL_STATE_SETTLED
    assert (settled.paid_fen, len(settled.payments)) == (305 * YUAN, 2)
    # A retry after settlement still answers with the payment it made, not "already settled".
    late = health.pay(bill.bill_id, 205 * YUAN, pay_2)
    assert not late.created and late.payment == payments[0].payment
    assert health.account(account.account_id).outstanding_fen == other_bill.self_pay_fen
    verify_ledger(mesh)


# ------------------------------------------------------------------------------------------------
# 4. A duplicate bill_defaulted event


def test_a_redelivered_bill_defaulted_event_leaves_one_default_record_in_records(mesh: Mesh) -> None:
    env, health = mesh.env, mesh.health
    identifier, account = enrolled_patient(mesh)
    bill = billed(mesh, identifier, 800 * YUAN)
    worker = next(p for p in env.processes if p.args == ["worker", "health"])
    published_line = f"default record of bill {bill.bill_id} published to records"
    health_events = Events(mesh.amqp, "health.events")
    records_seen = Events(mesh.amqp, "records.events")
    try:
        # Past the due time and the grace period: the worker's timer defaults the bill.
        env.travel(datetime.timedelta(hours=48, days=7, minutes=1))
        wait_event(health_events, "bill_defaulted", lambda body: body["billId"] == bill.bill_id)

        def default_records() -> list[records_events.RecordPublished]:
            stored = [
                json_format.ParseDict(body, records_events.RecordPublished(), ignore_unknown_fields=True)
                for body in records_seen.of("record_published")
            ]
            return [
                r for r in stored if r.record_type == "medical_credit_default" and r.source_reference == bill.bill_id
            ]

        wait_event(
            records_seen,
            "record_published",
            lambda body: (
                body.get("recordType") == "medical_credit_default" and body.get("sourceReference") == bill.bill_id
            ),
        )
        wait_for(lambda: worker.logs().count(published_line) == 1, timeout=30)
        duplicates_before = ingested(env, "duplicate")

        # The same event again, exactly as health published it (same ce-id), as a replay would.
        properties, body = defaulted_event(health_events, bill.bill_id)
        assert properties.headers and properties.headers.get("ce-id"), properties.headers
        health_events.integrator.channel.basic_publish("health.events", "bill_defaulted", body, properties)

        # Health's worker published the record again; records took it as a duplicate.
        wait_for(lambda: worker.logs().count(published_line) == 2, timeout=30)
        wait_for(lambda: ingested(env, "duplicate") >= duplicates_before + 1, timeout=30)
        records_seen.settle(quiet=2)
        (record,) = default_records()
        assert record.department_code == "health_commission" and record.subject_id == account.subject_id
        assert stored_records(env, bill.bill_id) == 1
    finally:
        health_events.close()
        records_seen.close()

    # Health itself: one default of the bill, the account suspended once, the ledger proved.
    suspended = health.account(account.account_id)
    assert suspended.status == pb.ACCOUNT_STATUS_SUSPENDED
    assert [(d.bill_id, d.amount_fen) for d in suspended.defaults] == [(bill.bill_id, 800 * YUAN)]
    assert health.bill(bill.bill_id).state == pb.BILL_STATE_DEFAULTED
    verify_ledger(mesh)


def test_copies_of_a_bill_defaulted_event_taken_by_two_health_workers_leave_one_default_record(mesh: Mesh) -> None:
    """A second health worker beside the first, both taking health's bill_defaulted queue, and ten
    copies of one bill's event (a replay, a publisher's retries): each worker sends the default
    record of every copy it takes, and records keeps one, by the bill id it is referenced by
    (docs/decisions/runtime-effects-single-by-each-handlers-key.md)."""
    env = mesh.env
    identifier, _ = enrolled_patient(mesh)
    bill = billed(mesh, identifier, 300 * YUAN)
    published_line = f"default record of bill {bill.bill_id} published to records"
    health_events = Events(mesh.amqp, "health.events")
    first = next(p for p in env.processes if p.args == ["worker", "health"])
    second = env.process("worker", "health", instance=(1, 2))
    try:
        wait_for(lambda: consumers(mesh.amqp, DEFAULTED_QUEUE) == 2, timeout=60)
        env.travel(datetime.timedelta(hours=48, days=7, minutes=1))
        wait_event(health_events, "bill_defaulted", lambda body: body["billId"] == bill.bill_id)
        wait_for(lambda: stored_records(env, bill.bill_id) == 1, timeout=30)
        duplicates_before = ingested(env, "duplicate")
        properties, body = defaulted_event(health_events, bill.bill_id)
        for _ in range(10):
            health_events.integrator.channel.basic_publish("health.events", "bill_defaulted", body, properties)

        def sent() -> list[int]:
            return [worker.logs().count(published_line) for worker in (first, second)]

        # Each copy's record sent and taken by records as a duplicate. On SQLite the two workers'
        # relays may both publish the first event (one relay per SQLite database is the rule):
        # one more record sent, one more duplicate, still one record.
        def all_taken() -> bool:
            return sum(sent()) >= 11 and ingested(env, "duplicate") >= duplicates_before + 10

        wait_for(all_taken, timeout=30)  # the first default, then each copy
        assert stored_records(env, bill.bill_id) == 1
        assert all(n > 0 for n in sent()), f"both workers took copies: {sent()}"
    finally:
        health_events.close()
        second.stop()


def defaulted_event(events: Events, bill_id: str) -> tuple[pika.BasicProperties, bytes]:
    """The bill_defaulted event of ``bill_id`` among ``events``, as health published it (its ce-id
    and all), for a test to publish again as a replay or a retry would."""
    return next((p, b) for m, p, b in events.seen if m.routing_key == "bill_defaulted" and bill_id in b.decode())


def ingested(env: ServiceEnv, outcome: str) -> float:
    """Records' worker's count of department records taken from the broker with ``outcome``."""
    port = env.ports["records"]["worker_metrics"]
    text = metrics_text(port)
    found = re.search(
        rf'^govmesh_records_ingested_total\{{channel="broker",outcome="{outcome}"\}} (\S+)$', text, re.MULTILINE
    )
    return float(found.group(1)) if found else 0.0


def stored_records(env: ServiceEnv, bill_id: str) -> int:
    """How many records records' own database holds under the health commission's reference
    ``bill_id`` (read straight from its table: no RPC lists records)."""
    database = service_database("records", env.database_url("records"))
    try:
        with database.read() as session:
            return int(
                session.execute(
                    sa.text(
                        "SELECT count(*) FROM records WHERE department_code = 'health_commission' "
                        "AND record_type = 'medical_credit_default' AND source_reference = :bill_id"
                    ),
                    {"bill_id": bill_id},
                ).scalar_one()
            )
    finally:
        database.dispose()
