"""Health's use cases against its real database (SQLite and PostgreSQL), with identity and
records stood in for: they are outside the service under test, and standing in for them lets
each test choose a patient's score and insurance, and move the clock through the 48-hour window,
the grace period, the default and the repayment.

After every test the ledger is walked and proved (every posting balances, every bill's and
patient's receivable and the credit fund per bill match the bills, every account's outstanding
matches its bills and open visits), and every event the test saw is in the outbox exactly once."""

from __future__ import annotations

import datetime
import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures

import pytest
import sqlalchemy as sa

from govmesh.auth import Caller
from govmesh.db import Database, service_database
from govmesh.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, ServiceError
from govmesh.health.v1 import medical_credit_pb2 as pb
from govmesh.identity.v1 import identity_pb2
from govmesh.parties import Party
from govmesh.privacy import mask_identifiers
from services.health import store
from services.health.app import HealthApp, ProofClaims
from tests.support.people import ENTERPRISE, LUO_FANG, XU_WEI, ZHUJI_RESIDENT, resident_id
from tests.support.standins import Clock, subject_of

START = datetime.datetime(2019, 3, 10, 8, 0, tzinfo=datetime.UTC)  # 16:00 in Hangzhou
HOSPITAL = "H330100001"  # one of services/health/hospitals.yaml
CALLER = Caller("demo-portal", "portal", frozenset({"*"}), hospitals=frozenset({"*"}))
HOUR = datetime.timedelta(hours=1)
TICK = datetime.timedelta(microseconds=1)
YUAN = 100

# Patients by score: each identifier gets the city credit score shown (None: no score) and is
# insured unless named in UNINSURED.
SCORES: dict[str, int | None] = {
    LUO_FANG: 720,  # HIGH
    XU_WEI: 550,  # BASIC, exactly on the boundary
    ZHUJI_RESIDENT: 600,  # STANDARD
    resident_id("33010619900101123"): 549,  # one below BASIC
    resident_id("33010619800202234"): None,  # records holds no score
    resident_id("33010619700303345"): 950,  # the best score there is, but not insured
    resident_id("33010619600404456"): 699,  # STANDARD, one below HIGH
    resident_id("33010619500505567"): 700,  # HIGH, exactly on the boundary
}
UNINSURED = {resident_id("33010619700303345")}


class Identity:
    """Resolves the known identifiers (and subject ids) to parties, as identity would."""

    def __init__(self) -> None:
        self.parties = {
            identifier: Party(subject_of(identifier), mask_identifiers(identifier), identity_pb2.SUBJECT_KIND_RESIDENT)
            for identifier in SCORES
        }
        self.parties[ENTERPRISE] = Party(
            subject_of(ENTERPRISE), mask_identifiers(ENTERPRISE), identity_pb2.SUBJECT_KIND_ENTERPRISE
        )

    def resolve(
        self, field: str, *, identifier: str = "", subject_id: str = "", allow_unregistered: bool = False
    ) -> Party | None:
        if identifier:
            if len(identifier) != 18:
                raise InvalidArgument(field, "INVALID_IDENTIFIER", "is not a valid identifier")
            found = self.parties.get(identifier)
            if found is None and allow_unregistered:
                # The subject it would be registered under, as identity answers.
                kind = identity_pb2.SUBJECT_KIND_RESIDENT
                return Party(subject_of(identifier), mask_identifiers(identifier), kind, registered=False)
            return found
        return next((p for p in self.parties.values() if p.subject_id == subject_id), None)


class Records:
    """Issues the two enrolment proofs from SCORES, and counts what it was asked."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()

    def get(self, subject_id: str, proof_type: str, legal_basis: str) -> ProofClaims:
        with self.lock:
            self.requests.append((subject_id, proof_type, legal_basis))
        identifier = next(i for i in SCORES if subject_of(i) == subject_id)
        if proof_type == "city_credit_score":
            score = SCORES[identifier]
            claims: dict[str, object] = (
                {"has_score": False} if score is None else {"has_score": True, "score": score, "band": "good"}
            )
        else:
            assert proof_type == "medical_insurance_enrolment"
            insured = identifier not in UNINSURED
            claims = {"enrolled": insured, "scheme": "employee", "status": "active" if insured else "none"}
        return ProofClaims(str(uuid.uuid4()), claims)


class Health:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.clock = Clock(START)
        self.identity = Identity()
        self.records = Records()
        self.app = HealthApp(db, clock=self.clock)
        # routing key -> how many events of it the test has caused so far (checked at the end).
        self.expected: dict[str, int] = {}

    def expect(self, routing_key: str, count: int = 1) -> None:
        self.expected[routing_key] = self.expected.get(routing_key, 0) + count

    def enroll(self, identifier: str) -> pb.EnrollResponse:
        return self.app.enroll(pb.EnrollRequest(identifier=identifier), CALLER, self.identity, self.records)

    def account(self, account_id: str) -> pb.CreditAccount:
        return self.app.get_account(pb.GetAccountRequest(account_id=account_id), self.identity).account

    def open_visit(self, identifier: str, kind: int = pb.VISIT_KIND_OUTPATIENT, request_id: str = "") -> pb.Visit:
        request = pb.OpenVisitRequest(
            identifier=identifier, hospital_id=HOSPITAL, kind=kind, request_id=request_id or str(uuid.uuid4())
        )
        return self.app.open_visit(request, CALLER, self.identity).visit

    def charge(
        self,
        visit_id: str,
        amount_fen: int,
        category: int = pb.CHARGE_CATEGORY_OTHER,
        item: str = "自费药品",
        request_id: str = "",
    ) -> pb.AddChargeResponse:
        return self.app.add_charge(
            pb.AddChargeRequest(
                visit_id=visit_id,
                item=item,
                category=category,
                amount_fen=amount_fen,
                request_id=request_id or str(uuid.uuid4()),
            ),
            CALLER,
        )

    def close(self, visit_id: str) -> pb.Bill:
        return self.app.close_visit(pb.CloseVisitRequest(visit_id=visit_id), CALLER).bill

    def pay(self, bill_id: str, amount_fen: int, request_id: str = "") -> pb.PayBillResponse:
        return self.app.pay_bill(
            pb.PayBillRequest(bill_id=bill_id, amount_fen=amount_fen, request_id=request_id or str(uuid.uuid4()))
        )

    def bill(self, bill_id: str) -> pb.Bill:
        return self.app.get_bill(pb.GetBillRequest(bill_id=bill_id), CALLER).bill

    def billed(self, identifier: str, self_pay_fen: int) -> tuple[pb.CreditAccount, pb.Bill]:
        """An enrolled patient's outpatient visit of one OTHER (uninsured) charge, closed now."""
        account = self.enroll(identifier).account
        visit = self.open_visit(identifier)
        self.charge(visit.visit_id, self_pay_fen)
        return account, self.close(visit.visit_id)

    def outbox(self, routing_key: str | None = None) -> list[dict[str, object]]:
        table = store.outbox
        query = sa.select(table.c.routing_key, table.c.body).order_by(table.c.seq)
        if routing_key is not None:
            query = query.where(table.c.routing_key == routing_key)
        with self.db.read() as session:
            return [{"routing_key": r.routing_key, **json.loads(r.body)} for r in session.execute(query)]

    def snapshot(self) -> dict[str, list[tuple[object, ...]]]:
        """Every row of every table of the service (for "nothing changed")."""
        tables = {}
        with self.db.read() as session:
            for table in store.metadata.sorted_tables:
                rows = session.execute(sa.select(table)).all()
                tables[table.name] = sorted((tuple(row) for row in rows), key=repr)
        return tables

    def check_ledger(self) -> None:
        verification = self.app.verify_ledger()
        assert verification.balanced, verification.message
        assert "every invariant holds" in verification.message, verification.message
        assert {b.kind: b.balance_fen for b in verification.balances}[pb.LEDGER_ACCOUNT_KIND_HOSPITAL] == 0


@pytest.fixture
def health(database_url: str) -> Iterator[Health]:
    db = service_database("health", database_url)
    db.migrate()
    h = Health(db)
    yield h
    h.check_ledger()
    counts: dict[str, int] = {}
    for event in h.outbox():
        key = str(event["routing_key"])
        counts[key] = counts.get(key, 0) + 1
    assert counts == h.expected
    # No raw identifier anywhere in the service's database (events included).
    dump = repr(h.snapshot())
    for identifier in [*SCORES, ENTERPRISE]:
        assert identifier not in dump
    db.dispose()


def raises(kind: type[ServiceError], call: Callable[[], object], *, match: str = "") -> ServiceError:
    with pytest.raises(kind) as caught:
        call()
    assert match in caught.value.message, caught.value.message
    return caught.value


# ------------------------------------------------------------------------------------------------
# Enrolment


def test_enrolment_sets_the_tier_and_limits_from_the_score_or_says_why_there_is_no_credit(health: Health) -> None:
    expected = {
        LUO_FANG: (pb.CREDIT_TIER_HIGH, 5_000, 15_000, pb.NO_CREDIT_REASON_UNSPECIFIED, 720),
        XU_WEI: (pb.CREDIT_TIER_BASIC, 500, 5_000, pb.NO_CREDIT_REASON_UNSPECIFIED, 550),
        ZHUJI_RESIDENT: (pb.CREDIT_TIER_STANDARD, 2_000, 10_000, pb.NO_CREDIT_REASON_UNSPECIFIED, 600),
        resident_id("33010619900101123"): (pb.CREDIT_TIER_NONE, 0, 0, pb.NO_CREDIT_REASON_SCORE_TOO_LOW, 549),
        resident_id("33010619800202234"): (pb.CREDIT_TIER_NONE, 0, 0, pb.NO_CREDIT_REASON_NO_SCORE, 0),
        resident_id("33010619700303345"): (pb.CREDIT_TIER_NONE, 0, 0, pb.NO_CREDIT_REASON_NOT_INSURED, 950),
        resident_id("33010619600404456"): (
            pb.CREDIT_TIER_STANDARD,
            2_000,
            10_000,
            pb.NO_CREDIT_REASON_UNSPECIFIED,
            699,
        ),
        resident_id("33010619500505567"): (pb.CREDIT_TIER_HIGH, 5_000, 15_000, pb.NO_CREDIT_REASON_UNSPECIFIED, 700),
    }
    for identifier, (tier, outpatient, inpatient, reason, score) in expected.items():
        enrolled = health.enroll(identifier)
        account = enrolled.account
        assert enrolled.created
        assert account.status == pb.ACCOUNT_STATUS_ACTIVE, identifier[-4:]
        assert (account.tier, account.no_credit_reason, account.credit_score) == (tier, reason, score)
        assert account.outpatient_limit_fen == outpatient * YUAN == account.available_outpatient_fen
        assert account.inpatient_limit_fen == inpatient * YUAN == account.available_inpatient_fen
        assert account.subject_id == subject_of(identifier)
        assert account.masked_identifier == mask_identifiers(identifier) != identifier
        assert account.credit_score_proof_id and account.insurance_proof_id
        assert account.insurance_enrolled == (identifier not in UNINSURED)
    # Both proofs, for the legal basis, once per patient.
    assert len(health.records.requests) == 2 * len(expected)
    assert {basis for _, _, basis in health.records.requests} == {"medical_credit_enrolment"}
    assert health.app.get_stats().enrolled_accounts == len(expected)


def test_re_enrolling_returns_the_same_account_without_reading_records_again(health: Health) -> None:
    first = health.enroll(LUO_FANG)
    again = health.enroll(LUO_FANG)
    by_subject = health.app.enroll(
        pb.EnrollRequest(subject_id=subject_of(LUO_FANG)), CALLER, health.identity, health.records
    )
    assert not again.created and not by_subject.created
    assert again.account == first.account == by_subject.account
    assert len(health.records.requests) == 2
    for request in (
        pb.GetAccountRequest(identifier=LUO_FANG),
        pb.GetAccountRequest(subject_id=subject_of(LUO_FANG)),
        pb.GetAccountRequest(account_id=first.account.account_id),
    ):
        assert health.app.get_account(request, health.identity).account == first.account


def test_concurrent_enrolments_of_one_patient_make_one_account(health: Health) -> None:
    with futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: health.enroll(XU_WEI), range(8)))
    assert len({a.account.account_id for a in answers}) == 1
    assert sum(a.created for a in answers) == 1
    # The patient's data read once, by the enrolment that made the account: every read is an
    # entry on the patient's tracker (issue 14: two first enrolments at once read it twice).
    assert len(health.records.requests) == 2
    assert health.app.get_stats().enrolled_accounts == 1


def test_a_resident_nobody_has_published_about_is_enrolled_without_credit(health: Health) -> None:
    """Identity has never seen them (no department published anything): enrolled, no credit,
    NO_SCORE, and records is not asked for proofs it cannot have (issue 14: NOT_FOUND, which made
    `govmesh health simulate` fail for most populations)."""
    stranger = resident_id("11010119900101123")
    enrolled = health.enroll(stranger)
    assert enrolled.created
    account = enrolled.account
    assert account.tier == pb.CREDIT_TIER_NONE and account.no_credit_reason == pb.NO_CREDIT_REASON_NO_SCORE
    assert account.outpatient_limit_fen == 0 and account.inpatient_limit_fen == 0
    assert health.records.requests == []
    assert not health.enroll(stranger).created  # asking again changes nothing


def test_enrolment_refuses_an_enterprise_and_a_missing_patient(health: Health) -> None:
    raises(InvalidArgument, lambda: health.enroll(ENTERPRISE), match="residents")
    raises(InvalidArgument, lambda: health.enroll("123"))
    raises(InvalidArgument, lambda: health.app.enroll(pb.EnrollRequest(), CALLER, health.identity, health.records))
    raises(NotFound, lambda: health.account(str(uuid.uuid4())))
    raises(
        NotFound,
        lambda: health.app.get_account(pb.GetAccountRequest(identifier=XU_WEI), health.identity),
        match="not enrolled",
    )
    assert health.records.requests == []


# ------------------------------------------------------------------------------------------------
# Limits, insurance and bills


def test_a_charge_past_the_available_credit_is_refused_and_the_patient_pays_at_the_counter(health: Health) -> None:
    account = health.enroll(XU_WEI).account  # BASIC: 500 yuan outpatient
    visit = health.open_visit(XU_WEI)
    health.charge(visit.visit_id, 400 * YUAN)  # OTHER: all self-pay
    before = health.snapshot()
    error = raises(
        FailedPrecondition, lambda: health.charge(visit.visit_id, 100 * YUAN + 1), match="pays at the counter"
    )
    assert error.field == "amount_fen"
    assert health.snapshot() == before
    # Insured categories count only their self-pay share: 70% of a 300-yuan consultation is paid by
    # insurance, so its 90 yuan fits in the 100 left.
    consultation = health.charge(visit.visit_id, 300 * YUAN, pb.CHARGE_CATEGORY_CONSULTATION, "专家门诊诊查费")
    assert (consultation.charge.insurance_fen, consultation.charge.self_pay_fen) == (210 * YUAN, 90 * YUAN)
    last = health.charge(visit.visit_id, 10 * YUAN)
    assert health.account(account.account_id).available_outpatient_fen == 0
    assert last.visit.self_pay_fen == 500 * YUAN and last.visit.total_fen == 710 * YUAN
    # The inpatient limit is a separate ceiling on the same outstanding amount: 5,000 - 500 left.
    assert health.account(account.account_id).available_inpatient_fen == 4_500 * YUAN
    raises(FailedPrecondition, lambda: health.charge(visit.visit_id, 1), match="pays at the counter")
    # A patient with no credit can open a visit but not charge anything self-pay to it.
    poor = resident_id("33010619900101123")
    health.enroll(poor)
    raises(FailedPrecondition, lambda: health.charge(health.open_visit(poor).visit_id, 1), match="pays at the counter")


def test_closing_a_visit_issues_the_bill_with_the_insurance_split_and_posts_the_charge(health: Health) -> None:
    account = health.enroll(LUO_FANG).account  # HIGH: 15,000 yuan inpatient
    visit = health.open_visit(LUO_FANG, pb.VISIT_KIND_INPATIENT)
    health.charge(visit.visit_id, 20_000 * YUAN, pb.CHARGE_CATEGORY_SURGERY, "腹腔镜手术")
    health.charge(visit.visit_id, 15_000 * YUAN, pb.CHARGE_CATEGORY_MEDICINE, "西药")
    health.charge(visit.visit_id, 1_234_56, pb.CHARGE_CATEGORY_BED, "床位费")
    health.charge(visit.visit_id, 999, pb.CHARGE_CATEGORY_OTHER, "陪护餐费")
    closed = health.app.close_visit(pb.CloseVisitRequest(visit_id=visit.visit_id), CALLER)
    bill = closed.bill
    assert closed.visit.state == pb.VISIT_STATE_CLOSED and closed.visit.bill_id == bill.bill_id
    assert bill.total_fen == 35_000 * YUAN + 1_234_56 + 999 == bill.insurance_fen + bill.self_pay_fen
    # The 800-yuan inpatient deductible is met by the surgery, then 90% of the rest.
    # In the contract's order of categories, not the order the charges were added.
    medicine, surgery, bed, other = bill.category_shares
    assert (surgery.category, surgery.insurance_ratio_bp) == (pb.CHARGE_CATEGORY_SURGERY, 9_000)
    assert surgery.insurance_fen == (20_000 - 800) * YUAN * 9 // 10
    assert medicine.insurance_fen == 15_000 * YUAN * 9 // 10
    assert bed.insurance_fen == 1_234_56 * 9 // 10
    assert (other.insurance_fen, other.self_pay_fen) == (0, 999)
    assert sum(c.insurance_fen for c in bill.category_shares) == bill.insurance_fen
    assert bill.self_pay_fen == sum(c.self_pay_fen for c in bill.category_shares) == closed.visit.self_pay_fen
    assert bill.state == pb.BILL_STATE_OPEN and bill.outstanding_fen == bill.self_pay_fen
    # Inpatients: due at discharge plus the settlement window; the grace period after that.
    assert bill.due_at.ToDatetime(datetime.UTC) == START + 24 * HOUR
    assert bill.grace_until.ToDatetime(datetime.UTC) == START + 24 * HOUR + 7 * 24 * HOUR
    assert health.account(account.account_id).outstanding_fen == bill.self_pay_fen
    # Closing again returns the same bill and posts nothing more; no charge goes on a closed visit.
    assert health.close(visit.visit_id) == bill
    raises(FailedPrecondition, lambda: health.charge(visit.visit_id, 100), match="closed")
    verification = health.app.verify_ledger()
    assert verification.postings_checked == 1
    listed = health.app.list_bills(pb.ListBillsRequest(identifier=LUO_FANG), CALLER, health.identity)
    assert [b.bill_id for b in listed.bills] == [bill.bill_id]
    stats = health.app.get_stats()
    assert (stats.bills, stats.total_credit_fen, stats.total_insurance_fen) == (
        1,
        bill.self_pay_fen,
        bill.insurance_fen,
    )


def test_an_empty_visit_closes_with_a_settled_zero_bill(health: Health) -> None:
    health.enroll(XU_WEI)
    bill = health.close(health.open_visit(XU_WEI).visit_id)
    assert (bill.state, bill.total_fen) == (pb.BILL_STATE_SETTLED, 0)
    health.expect("bill_settled")
    assert health.app.run_timers(START + 30 * 24 * HOUR) == 0


def test_bills_are_listed_newest_first_page_by_page_and_filtered(health: Health) -> None:
    health.enroll(LUO_FANG)
    health.enroll(ZHUJI_RESIDENT)
    issued = []
    for index in range(5):
        health.clock.now = START + index * HOUR
        who = LUO_FANG if index % 2 == 0 else ZHUJI_RESIDENT
        visit = health.open_visit(who)
        health.charge(visit.visit_id, 10 * YUAN)
        issued.append(health.close(visit.visit_id).bill_id)
    seen, token = [], ""
    while True:
        page = health.app.list_bills(pb.ListBillsRequest(page_size=2, page_token=token), CALLER, health.identity)
        seen += [b.bill_id for b in page.bills]
        token = page.next_page_token
        if not token:
            break
    assert seen == issued[::-1]
    mine = health.app.list_bills(pb.ListBillsRequest(subject_id=subject_of(LUO_FANG)), CALLER, health.identity)
    assert [b.bill_id for b in mine.bills] == [issued[4], issued[2], issued[0]]
    none = health.app.list_bills(pb.ListBillsRequest(states=[pb.BILL_STATE_SETTLED]), CALLER, health.identity)
    assert list(none.bills) == []
    raises(InvalidArgument, lambda: health.app.list_bills(pb.ListBillsRequest(page_token="x"), CALLER, health.identity))


# ------------------------------------------------------------------------------------------------
# Concurrency and idempotency


def test_sixteen_concurrent_charges_on_one_account_never_overdraw_it(health: Health) -> None:
    account = health.enroll(XU_WEI).account  # 500 yuan outpatient
    visits = [health.open_visit(XU_WEI).visit_id for _ in range(2)]
    barrier = threading.Barrier(16)

    def charge(index: int) -> str:
        barrier.wait()
        try:
            health.charge(visits[index % 2], 45 * YUAN)
        except FailedPrecondition as exc:
            assert "pays at the counter" in exc.message
            return "refused"
        return "charged"

    with futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(charge, range(16)))
    assert results.count("charged") == 11  # 11 x 45 = 495 yuan; a 12th would be 540
    after = health.account(account.account_id)
    assert after.outstanding_fen == 495 * YUAN and after.available_outpatient_fen == 5 * YUAN
    totals = [health.close(v).self_pay_fen for v in visits]
    assert sum(totals) == 495 * YUAN


def test_sixteen_concurrent_payments_never_over_pay_and_settle_once(health: Health) -> None:
    account, bill = health.billed(LUO_FANG, 100 * YUAN)
    barrier = threading.Barrier(16)

    def pay(_: int) -> str:
        barrier.wait()
        try:
            health.pay(bill.bill_id, 9 * YUAN)
        except FailedPrecondition as exc:
            return str(exc.reason)
        return "paid"

    with futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(pay, range(16)))
    # 11 x 9 = 99 yuan; then 1 yuan is outstanding, and 9 is refused as over-payment.
    assert results.count("paid") == 11 and set(results) == {"paid", "OVERPAYMENT"}
    paid = health.bill(bill.bill_id)
    assert (paid.paid_fen, paid.outstanding_fen, len(paid.payments)) == (99 * YUAN, 1 * YUAN, 11)
    settled = health.pay(bill.bill_id, 1 * YUAN).bill
    assert settled.state == pb.BILL_STATE_SETTLED
    health.expect("bill_settled")
    raises(FailedPrecondition, lambda: health.pay(bill.bill_id, 1), match="already settled")
    assert health.account(account.account_id).outstanding_fen == 0


def test_duplicate_request_ids_have_no_second_effect(health: Health) -> None:
    account = health.enroll(ZHUJI_RESIDENT).account
    first_visit = health.open_visit(ZHUJI_RESIDENT, request_id="visit-1")
    assert health.open_visit(ZHUJI_RESIDENT, request_id="visit-1") == first_visit
    reused = raises(
        AlreadyExists,
        lambda: health.open_visit(ZHUJI_RESIDENT, pb.VISIT_KIND_INPATIENT, request_id="visit-1"),
    )
    assert (reused.field, reused.reason) == ("request_id", "REUSED")
    first = health.charge(first_visit.visit_id, 300 * YUAN, request_id="charge-1")
    again = health.charge(first_visit.visit_id, 300 * YUAN, request_id="charge-1")
    assert first.created and not again.created and again.charge == first.charge
    assert len(again.visit.charges) == 1
    reused = raises(AlreadyExists, lambda: health.charge(first_visit.visit_id, 301 * YUAN, request_id="charge-1"))
    assert reused.field == "request_id" and reused.message.endswith("a different charge on this visit")
    # Concurrent retries of one charge: one charge.
    with futures.ThreadPoolExecutor(8) as pool:
        retries = list(
            pool.map(lambda _: health.charge(first_visit.visit_id, 5 * YUAN, request_id="charge-2"), range(8))
        )
    assert sum(r.created for r in retries) == 1 and len({r.charge.charge_id for r in retries}) == 1
    assert health.account(account.account_id).outstanding_fen == 305 * YUAN
    bill = health.close(first_visit.visit_id)
    paid = health.pay(bill.bill_id, 100 * YUAN, request_id="pay-1")
    repeat = health.pay(bill.bill_id, 100 * YUAN, request_id="pay-1")
    assert paid.created and not repeat.created and repeat.payment == paid.payment
    assert repeat.bill.paid_fen == 100 * YUAN
    reused = raises(AlreadyExists, lambda: health.pay(bill.bill_id, 50 * YUAN, request_id="pay-1"))
    assert reused.field == "request_id" and reused.message.endswith("a different payment")
    with futures.ThreadPoolExecutor(8) as pool:
        retried = list(pool.map(lambda _: health.pay(bill.bill_id, 205 * YUAN, request_id="pay-2"), range(8)))
    assert sum(r.created for r in retried) == 1
    assert health.bill(bill.bill_id).state == pb.BILL_STATE_SETTLED
    health.expect("bill_settled")
    # A retry after settlement still answers with the payment it made.
    assert not health.pay(bill.bill_id, 205 * YUAN, request_id="pay-2").created
    assert health.account(account.account_id).outstanding_fen == 0


def test_a_visit_opened_under_the_earlier_fingerprint_formula_replays_as_before(health: Health) -> None:
    # Visits opened before health took its request ids through govmesh.idempotency store the
    # SHA-256 of [account, hospital, kind] as JSON: their retries find them all the same.
    account = health.enroll(LUO_FANG).account
    visit = health.open_visit(LUO_FANG, request_id="visit-before")
    earlier = hashlib.sha256(json.dumps([account.account_id, HOSPITAL, "outpatient"]).encode()).hexdigest()
    with health.db.transaction() as session:
        session.execute(
            store.visits.update().where(store.visits.c.visit_id == visit.visit_id).values(request_fingerprint=earlier)
        )
    again = health.app.open_visit(
        pb.OpenVisitRequest(
            identifier=LUO_FANG, hospital_id=HOSPITAL, kind=pb.VISIT_KIND_OUTPATIENT, request_id="visit-before"
        ),
        CALLER,
        health.identity,
    )
    assert not again.created and again.visit == visit
    raises(AlreadyExists, lambda: health.open_visit(LUO_FANG, pb.VISIT_KIND_INPATIENT, request_id="visit-before"))


def test_a_page_of_bills_and_their_payments_is_two_queries_whatever_its_size(health: Health) -> None:
    for _ in range(6):
        _, bill = health.billed(LUO_FANG, 10 * YUAN)
        health.pay(bill.bill_id, 3 * YUAN)
        health.pay(bill.bill_id, 4 * YUAN)
    selects: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    sa.event.listen(health.db.engine, "before_cursor_execute", count)
    try:
        for size in (1, 3, 6):
            selects.clear()
            page = health.app.list_bills(pb.ListBillsRequest(page_size=size), CALLER, health.identity)
            assert len(page.bills) == size and all(len(b.payments) == 2 for b in page.bills)
            assert len(selects) == 2, selects
    finally:
        sa.event.remove(health.db.engine, "before_cursor_execute", count)


# ------------------------------------------------------------------------------------------------
# Bad input


def test_bad_input_is_refused_clearly_and_changes_nothing(health: Health) -> None:
    health.enroll(LUO_FANG)
    visit = health.open_visit(LUO_FANG)
    health.charge(visit.visit_id, 10 * YUAN)
    closed = health.open_visit(LUO_FANG)
    bill = health.close(closed.visit_id)
    before = health.snapshot()
    cases: list[tuple[type[ServiceError], Callable[[], object], str]] = [
        (InvalidArgument, lambda: health.charge(visit.visit_id, 0), "amount_fen"),
        (InvalidArgument, lambda: health.charge(visit.visit_id, -100), "amount_fen"),
        (InvalidArgument, lambda: health.charge(visit.visit_id, 10**12), "amount_fen"),
        (InvalidArgument, lambda: health.charge(visit.visit_id, 2**63 - 1), "amount_fen"),
        (InvalidArgument, lambda: health.charge(visit.visit_id, 100, pb.CHARGE_CATEGORY_UNSPECIFIED), "category"),
        (InvalidArgument, lambda: health.charge(visit.visit_id, 100, 99), "category"),
        (InvalidArgument, lambda: health.charge(visit.visit_id, 100, item=""), "item"),
        (InvalidArgument, lambda: health.charge(visit.visit_id, 100, item="x" * 201), "item"),
        (InvalidArgument, lambda: health.charge(visit.visit_id, 100, item=f"药 {LUO_FANG}"), "item"),
        (InvalidArgument, lambda: health.charge(visit.visit_id, 100, item="a\x00b"), "item"),
        (
            InvalidArgument,
            lambda: health.app.add_charge(
                pb.AddChargeRequest(visit_id=visit.visit_id, item="x", category=1, amount_fen=1), CALLER
            ),
            "request_id",
        ),
        (InvalidArgument, lambda: health.charge("", 100), "visit_id"),
        (NotFound, lambda: health.charge(str(uuid.uuid4()), 100), "visit_id"),
        (FailedPrecondition, lambda: health.charge(closed.visit_id, 100), "closed"),
        (NotFound, lambda: health.close(str(uuid.uuid4())), "visit_id"),
        (InvalidArgument, lambda: health.open_visit(LUO_FANG, pb.VISIT_KIND_UNSPECIFIED), "kind"),
        (
            InvalidArgument,
            lambda: health.app.open_visit(
                pb.OpenVisitRequest(identifier=LUO_FANG, kind=1, request_id="r"), CALLER, health.identity
            ),
            "hospital_id",
        ),
        (
            InvalidArgument,
            lambda: health.app.open_visit(
                pb.OpenVisitRequest(identifier=LUO_FANG, hospital_id="H999999999", kind=1, request_id="r"),
                CALLER,
                health.identity,
            ),
            "hospital_id: 'H999999999' is not a hospital of this deployment",
        ),
        (NotFound, lambda: health.open_visit(XU_WEI), "not enrolled"),
        (InvalidArgument, lambda: health.pay(bill.bill_id, 0), "amount_fen"),
        (InvalidArgument, lambda: health.pay(bill.bill_id, -1), "amount_fen"),
        (InvalidArgument, lambda: health.pay(bill.bill_id, 2**63 - 1), "amount_fen"),
        (FailedPrecondition, lambda: health.pay(bill.bill_id, 1), "already settled"),
        (NotFound, lambda: health.pay(str(uuid.uuid4()), 100), "bill_id"),
        (NotFound, lambda: health.bill(str(uuid.uuid4())), "bill_id"),
    ]
    for kind, call, match in cases:
        raises(kind, call, match=match)
    assert health.snapshot() == before
    # An over-payment of an open bill changes nothing either.
    other = health.open_visit(LUO_FANG)
    health.charge(other.visit_id, 10 * YUAN)
    open_bill = health.close(other.visit_id)
    before = health.snapshot()
    error = raises(FailedPrecondition, lambda: health.pay(open_bill.bill_id, 10 * YUAN + 1), match="over-payment")
    assert error.field == "amount_fen"
    assert health.snapshot() == before
    health.expect("bill_settled")  # the empty visit's zero bill


# ------------------------------------------------------------------------------------------------
# Time travel: the 48-hour window, grace, default, suspension and restoration


def test_a_bill_paid_within_48_hours_is_settled_on_time_after_one_reminder(health: Health) -> None:
    _, bill = health.billed(LUO_FANG, 300 * YUAN)
    assert bill.due_at.ToDatetime(datetime.UTC) == START + 48 * HOUR
    assert health.app.run_timers(START + 24 * HOUR - TICK) == 0
    assert health.app.run_timers(START + 24 * HOUR) == 1
    assert health.app.run_timers(START + 30 * HOUR) == 0
    health.expect("bill_due_soon")
    [reminder] = health.outbox("bill_due_soon")
    assert reminder["outstandingFen"] == str(300 * YUAN) and reminder["billId"] == bill.bill_id
    health.clock.now = START + 48 * HOUR - TICK
    paid = health.pay(bill.bill_id, 300 * YUAN).bill
    assert paid.state == pb.BILL_STATE_SETTLED
    health.expect("bill_settled")
    [settled] = health.outbox("bill_settled")
    assert settled["previousState"] == "BILL_STATE_OPEN" and settled["payments"] == "1"
    assert health.app.run_timers(START + 30 * 24 * HOUR) == 0


def test_an_unpaid_bill_goes_overdue_defaults_suspends_and_is_restored_by_repayment(health: Health) -> None:
    account, bill = health.billed(ZHUJI_RESIDENT, 1_500 * YUAN)  # STANDARD: 2,000 / 10,000 yuan
    due = START + 48 * HOUR
    grace_until = due + 7 * 24 * HOUR
    assert bill.grace_until.ToDatetime(datetime.UTC) == grace_until
    # The reminder goes out a day before the due time; the overdue notice at it.
    assert health.app.run_timers(due - TICK) == 1
    health.expect("bill_due_soon")
    assert health.bill(bill.bill_id).state == pb.BILL_STATE_OPEN
    assert health.app.run_timers(due) == 1
    health.expect("bill_overdue")
    assert health.bill(bill.bill_id).state == pb.BILL_STATE_OVERDUE
    health.clock.now = due + HOUR
    stats = health.app.get_stats()
    assert (stats.overdue_bills, stats.overdue_fen) == (1, 1_500 * YUAN)
    # A partial payment within grace keeps it overdue.
    health.pay(bill.bill_id, 500 * YUAN)
    assert health.app.run_timers(grace_until - TICK) == 0
    assert health.account(account.account_id).status == pb.ACCOUNT_STATUS_ACTIVE
    # The grace period ends unpaid: default, suspension, halved limits.
    assert health.app.run_timers(grace_until) == 1
    assert health.app.run_timers(grace_until + HOUR) == 0
    health.expect("bill_defaulted")
    [defaulted] = health.outbox("bill_defaulted")
    assert defaulted["accountStatus"] == "ACCOUNT_STATUS_SUSPENDED"
    assert defaulted["outstandingFen"] == str(1_000 * YUAN)
    assert defaulted["outpatientLimitFen"] == str(1_000 * YUAN) and defaulted["inpatientLimitFen"] == str(5_000 * YUAN)
    suspended = health.account(account.account_id)
    assert suspended.status == pb.ACCOUNT_STATUS_SUSPENDED and suspended.HasField("suspended_at")
    assert (suspended.available_outpatient_fen, suspended.available_inpatient_fen) == (0, 0)
    assert [(d.bill_id, d.amount_fen, d.HasField("repaid_at")) for d in suspended.defaults] == [
        (bill.bill_id, 1_000 * YUAN, False)
    ]
    health.clock.now = grace_until + HOUR
    raises(FailedPrecondition, lambda: health.open_visit(ZHUJI_RESIDENT), match="suspended")
    stats = health.app.get_stats()
    assert (stats.defaulted_bills, stats.total_defaulted_fen, stats.suspended_accounts) == (1, 1_000 * YUAN, 1)
    assert (stats.defaults_ever, stats.defaulted_ever_fen, stats.defaults_repaid) == (1, 1_000 * YUAN, 0)
    assert stats.default_rate_ppb == 1_000 * YUAN * 1_000_000_000 // (1_500 * YUAN)
    health.check_ledger()
    # Repayment: a partial recovery first, then the rest settles the bill and restores credit.
    assert health.pay(bill.bill_id, 400 * YUAN).bill.state == pb.BILL_STATE_DEFAULTED
    assert health.account(account.account_id).status == pb.ACCOUNT_STATUS_SUSPENDED
    health.clock.now = grace_until + 2 * HOUR
    settled = health.pay(bill.bill_id, 600 * YUAN).bill
    assert settled.state == pb.BILL_STATE_SETTLED and settled.HasField("defaulted_at")
    health.expect("bill_settled")
    health.expect("credit_restored")
    [settled_event] = health.outbox("bill_settled")
    assert settled_event["previousState"] == "BILL_STATE_DEFAULTED" and settled_event["payments"] == "3"
    [restored] = health.outbox("credit_restored")
    assert restored["accountStatus"] == "ACCOUNT_STATUS_ACTIVE" and restored["defaults"] == "1"
    after = health.account(account.account_id)
    assert after.status == pb.ACCOUNT_STATUS_ACTIVE and not after.HasField("suspended_at")
    assert (after.tier, after.outpatient_limit_fen, after.inpatient_limit_fen) == (
        pb.CREDIT_TIER_STANDARD,
        1_000 * YUAN,
        5_000 * YUAN,
    )
    assert after.defaults[0].repaid_at.ToDatetime(datetime.UTC) == grace_until + 2 * HOUR
    stats = health.app.get_stats()
    assert (stats.total_defaulted_fen, stats.total_repaid_fen, stats.settled_bills) == (0, 1_500 * YUAN, 1)
    # Repaid, the default leaves the current figures but stays in the scheme's history (issue 14:
    # GetStats forgot it).
    assert (stats.defaults_ever, stats.defaulted_ever_fen) == (1, 1_000 * YUAN)
    assert (stats.defaults_repaid, stats.repaid_after_default_fen) == (1, 1_000 * YUAN)
    assert health.open_visit(ZHUJI_RESIDENT).state == pb.VISIT_STATE_OPEN
    assert health.app.run_timers(grace_until + 30 * 24 * HOUR) == 0


def test_a_payment_after_grace_before_the_timer_defaults_the_bill_first_and_recovers_it(health: Health) -> None:
    account, bill = health.billed(LUO_FANG, 80 * YUAN)
    health.clock.now = bill.grace_until.ToDatetime(datetime.UTC) + HOUR
    paid = health.pay(bill.bill_id, 80 * YUAN)
    assert paid.bill.state == pb.BILL_STATE_SETTLED
    assert [e["routing_key"] for e in health.outbox()] == [
        "bill_overdue",
        "bill_defaulted",
        "bill_settled",
        "credit_restored",
    ]
    for key in ("bill_overdue", "bill_defaulted", "bill_settled", "credit_restored"):
        health.expect(key)
    after = health.account(account.account_id)
    assert after.status == pb.ACCOUNT_STATUS_ACTIVE and after.outpatient_limit_fen == 2_500 * YUAN
    assert health.app.run_timers(health.clock.now + 30 * 24 * HOUR) == 0


def test_a_second_default_closes_the_account(health: Health) -> None:
    account = health.enroll(LUO_FANG).account
    for round_ in range(2):
        visit = health.open_visit(LUO_FANG)
        health.charge(visit.visit_id, 10 * YUAN)
        bill = health.close(visit.visit_id)
        health.clock.now = bill.grace_until.ToDatetime(datetime.UTC)
        # The timer first runs after the due time: the overdue notice replaces the reminder.
        assert health.app.run_timers() == 2
        for key in ("bill_overdue", "bill_defaulted"):
            health.expect(key)
        if round_ == 0:
            health.pay(bill.bill_id, 10 * YUAN)
            health.expect("bill_settled")
            health.expect("credit_restored")
    closed = health.account(account.account_id)
    assert closed.status == pb.ACCOUNT_STATUS_CLOSED and closed.outpatient_limit_fen == 0
    assert len(closed.defaults) == 2
    # Repaying the second default settles the bill but restores nothing: the account stays closed.
    health.pay(bill.bill_id, 10 * YUAN)
    health.expect("bill_settled")
    assert health.account(account.account_id).status == pb.ACCOUNT_STATUS_CLOSED


def test_one_request_id_on_two_patients_bills_at_once_is_one_payment_and_a_clear_refusal(health: Health) -> None:
    # Each bill is locked under its own account, so only the unique key sees the clash.
    _, first = health.billed(XU_WEI, 100 * YUAN)
    _, second = health.billed(LUO_FANG, 100 * YUAN)
    barrier = threading.Barrier(2)

    def pay(bill_id: str) -> str:
        barrier.wait()
        try:
            health.pay(bill_id, 10 * YUAN, request_id="shared-request")
        except AlreadyExists as exc:
            assert exc.message.startswith("request_id:")
            return "refused"
        return "paid"

    for _ in range(5):
        with futures.ThreadPoolExecutor(2) as pool:
            outcomes = sorted(pool.map(pay, [first.bill_id, second.bill_id]))
        # Each race: the payment the request id stands for (made once, then repeated without a
        # second effect) and a refusal for the other bill.
        assert outcomes == ["paid", "refused"]
    paid = [health.bill(first.bill_id).paid_fen, health.bill(second.bill_id).paid_fen]
    assert sorted(paid) == [0, 10 * YUAN]


def test_a_hospitals_system_acts_for_its_own_hospital_only(health: Health) -> None:
    ours = Caller("hospital-a", "HIS", frozenset({"*"}), hospitals=frozenset({HOSPITAL}))
    theirs = Caller("hospital-b", "HIS", frozenset({"*"}), hospitals=frozenset({"H330106004"}))
    health.enroll(LUO_FANG)
    request = pb.OpenVisitRequest(identifier=LUO_FANG, hospital_id=HOSPITAL, kind=1, request_id="visit-a")
    visit = health.app.open_visit(request, ours, health.identity).visit
    with pytest.raises(PermissionDenied, match="caller 'hospital-b' does not act for hospital H330100001"):
        health.app.open_visit(request, theirs, health.identity)
    charge = pb.AddChargeRequest(visit_id=visit.visit_id, item="x", category=1, amount_fen=100, request_id="c1")
    with pytest.raises(PermissionDenied):
        health.app.add_charge(charge, theirs)
    with pytest.raises(PermissionDenied):
        health.app.close_visit(pb.CloseVisitRequest(visit_id=visit.visit_id), theirs)
    assert health.app.add_charge(charge, ours).created
    bill = health.app.close_visit(pb.CloseVisitRequest(visit_id=visit.visit_id), ours).bill
    assert health.app.get_bill(pb.GetBillRequest(bill_id=bill.bill_id), ours).bill == bill
    with pytest.raises(PermissionDenied):
        health.app.get_bill(pb.GetBillRequest(bill_id=bill.bill_id), theirs)
    # A hospital lists its own bills, and says which hospital: never everyone's.
    with pytest.raises(InvalidArgument, match=r"hospital_id: required for a caller acting for some hospitals only"):
        health.app.list_bills(pb.ListBillsRequest(), theirs, health.identity)
    with pytest.raises(PermissionDenied):
        health.app.list_bills(pb.ListBillsRequest(hospital_id=HOSPITAL), theirs, health.identity)
    listed = health.app.list_bills(pb.ListBillsRequest(hospital_id=HOSPITAL), ours, health.identity).bills
    assert [b.bill_id for b in listed] == [bill.bill_id]
    # Nothing the refusals asked for changed anything: one visit, one charge, one bill.
    assert len(health.app.list_bills(pb.ListBillsRequest(identifier=LUO_FANG), CALLER, health.identity).bills) == 1
