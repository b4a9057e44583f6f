"""Health's use cases: enrolment, accounts, visits and charges, bills and payments, the scheme's
figures, the ledger check, and the timers that remind, mark overdue and default bills.

Proto messages in, proto messages out; the rules are the pure domain modules' (credit,
insurance, billing, ledger), this module stores what they decide. Every change and the events it
causes commit in one transaction (the outbox).

Concurrency: the credit account row is the lock of everything the account owns (store.py). Each
use case that changes anything reads what it needs to find the account, then locks the account
row and reads everything again under the lock, so concurrent charges never overdraw an account,
a payment and the timer never both decide a bill, and a retried request finds what its first
attempt did. Exactly one account row is locked per transaction, so there is no lock order to get
wrong.

Decisions a reader should know:

* Re-enrolling returns the account as it is (created false) without pulling the proofs again: a
  second enrolment is no purpose to read the patient's data again, and the account's standing
  (defaults, suspension) must not be reset by asking twice.
* Outstanding (what available credit is measured against) is the self-pay share of every charge
  on an open visit plus everything billed and not repaid: a charge counts against the limit when
  it is added, not only when its visit is billed, or one visit could run past the limit.
* AddCharge computes the charge's split with the visit's earlier charges (insurance.split), so
  the deductible and the cap apply; the split of earlier charges never changes, so the bill at
  CloseVisit is exactly the sum of what AddCharge reported.
* A charge whose self-pay share is zero is accepted whatever the available credit.
* Closing a visit with no charges issues a zero bill, settled at once (bill_settled is
  published, as the contract says for a bill with no self-pay share); nothing is posted to the
  ledger, which has no zero postings.
* credit_restored is published only when repaying a defaulted bill returns the account to
  ACTIVE, as the contract's CreditRestored says; the billing module reports a per-bill restoration,
  which for an account with another unpaid default, or closed after its second default, restores
  nothing.
* A payment after the grace period, before the timer noticed, defaults the bill first (billing.pay
  catches up): the default is recorded, posted and published in the same transaction, then the
  payment is a recovery.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from google.protobuf.message import Message
from sqlalchemy.orm import Session

from govmesh import clock as govmesh_clock
from govmesh import paging, texts
from govmesh.auth import Caller
from govmesh.clock import as_utc, timestamp
from govmesh.db import Database
from govmesh.enums import from_proto
from govmesh.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from govmesh.health.v1 import events_pb2
from govmesh.health.v1 import medical_credit_pb2 as pb
from govmesh.identity.v1 import identity_pb2
from govmesh.outbox import Outbox
from govmesh.parties import Parties, Party
from services.health import store
from services.health.domain import billing, credit, insurance, ledger

LEGAL_BASIS = "medical_credit_enrolment"
CREDIT_SCORE_PROOF = "city_credit_score"
INSURANCE_PROOF = "medical_insurance_enrolment"
MAX_ITEM = 200
MAX_ID = 64
MAX_REQUEST_ID = 200
PPB = 1_000_000_000


@dataclass(frozen=True)
class ProofClaims:
    """A proof records issued: its id and its claims, as plain values (typed JSON read back)."""

    proof_id: str
    claims: dict[str, object]


class EnrolmentProofs(Protocol):
    """Records, as enrolment reaches it: the proof of ``proof_type`` about ``subject_id``, drawn
    for the legal basis ``legal_basis``. Raises govmesh.errors.Unavailable when records does not
    answer (the enrolment then changes nothing and may be retried)."""

    def get(self, subject_id: str, proof_type: str, legal_basis: str) -> ProofClaims: ...


# ------------------------------------------------------------------------------------------------
# Enum mappings: the domain enums' names are the contract's without the prefix.


def _status_pb(status: str) -> pb.AccountStatus.ValueType:
    return pb.AccountStatus.Value(f"ACCOUNT_STATUS_{credit.AccountStatus(status).name}")


def _tier_pb(tier: str) -> pb.CreditTier.ValueType:
    return pb.CreditTier.Value(f"CREDIT_TIER_{credit.CreditTier(tier).name}")


def _kind_pb(kind: str) -> pb.VisitKind.ValueType:
    return pb.VisitKind.Value(f"VISIT_KIND_{credit.VisitKind(kind).name}")


def _bill_state_pb(state: str | billing.BillState) -> pb.BillState.ValueType:
    member = state if isinstance(state, billing.BillState) else billing.BillState(state)
    return pb.BillState.Value(f"BILL_STATE_{member.name}")


def _category_pb(category: str) -> pb.ChargeCategory.ValueType:
    return pb.ChargeCategory.Value(f"CHARGE_CATEGORY_{insurance.ChargeCategory(category).name}")


def _opt(moment: datetime.datetime | None) -> datetime.datetime | None:
    return None if moment is None else as_utc(moment)


def _bill_domain(row: Any) -> billing.Bill:
    return billing.Bill(
        bill_id=row.bill_id,
        visit_kind=credit.VisitKind(row.visit_kind),
        total_fen=row.total_fen,
        insurance_fen=row.insurance_fen,
        self_pay_fen=row.self_pay_fen,
        issued_at=as_utc(row.issued_at),
        reminder_at=as_utc(row.reminder_at),
        due_at=as_utc(row.due_at),
        grace_until=as_utc(row.grace_until),
        state=billing.BillState(row.state),
        paid_fen=row.paid_fen,
        payments=row.payments,
        reminded_at=_opt(row.reminded_at),
        overdue_at=_opt(row.overdue_at),
        defaulted_at=_opt(row.defaulted_at),
        defaulted_fen=row.defaulted_fen,
        settled_at=_opt(row.settled_at),
    )


def _next_timer(bill: billing.Bill) -> datetime.datetime | None:
    """When the timer next has something to do for ``bill``."""
    if bill.state is billing.BillState.OPEN:
        return bill.reminder_at if bill.reminded_at is None else bill.due_at
    if bill.state is billing.BillState.OVERDUE:
        return bill.grace_until
    return None


def _bill_values(bill: billing.Bill) -> dict[str, object]:
    return {
        "state": bill.state.value,
        "paid_fen": bill.paid_fen,
        "payments": bill.payments,
        "reminded_at": bill.reminded_at,
        "overdue_at": bill.overdue_at,
        "defaulted_at": bill.defaulted_at,
        "defaulted_fen": bill.defaulted_fen,
        "settled_at": bill.settled_at,
        "next_timer_at": _next_timer(bill),
    }


class HealthApp:
    def __init__(
        self,
        db: Database,
        credit_policy: credit.CreditPolicy = credit.DEFAULT_CREDIT_POLICY,
        insurance_policy: insurance.InsurancePolicy = insurance.DEFAULT_INSURANCE_POLICY,
        billing_policy: billing.BillingPolicy = billing.DEFAULT_POLICY,
        clock: Callable[[], datetime.datetime] = govmesh_clock.now,
        on_events: Callable[[Sequence[Message]], None] = lambda events: None,
    ) -> None:
        self.db = db
        self.credit_policy = credit_policy
        self.insurance_policy = insurance_policy
        self.billing_policy = billing_policy
        self.clock = clock
        # Told of every event after it committed (the metrics count them).
        self.on_events = on_events
        self.outbox = Outbox("health", store.outbox, store.inbox)

    # --------------------------------------------------------------------------------------------
    # Enrolment and accounts

    def _patient(self, which: str | None, request: Any, parties: Parties) -> Party:
        if which == "identifier":
            party = parties.resolve("identifier", identifier=request.identifier)
        elif which == "subject_id":
            texts.checked_text(request.subject_id, "subject_id", MAX_ID, required=True)
            party = parties.resolve("subject_id", subject_id=request.subject_id)
        else:
            raise InvalidArgument("patient", "MISSING", "give identifier or subject_id")
        if party is None:
            raise NotFound(f"{which}: no subject is registered under it")
        if party.kind != identity_pb2.SUBJECT_KIND_RESIDENT:
            raise InvalidArgument(which, "WRONG_KIND", "medical credit is for residents (a resident identity number)")
        return party

    def enroll(
        self, request: pb.EnrollRequest, caller: Caller, parties: Parties, proofs: EnrolmentProofs
    ) -> pb.EnrollResponse:
        party = self._patient(request.WhichOneof("patient"), request, parties)
        existing = self._account_row_by("subject_id", party.subject_id)
        if existing is not None:
            return pb.EnrollResponse(account=self._account_proto(existing), created=False)
        score_proof = proofs.get(party.subject_id, CREDIT_SCORE_PROOF, LEGAL_BASIS)
        insurance_proof = proofs.get(party.subject_id, INSURANCE_PROOF, LEGAL_BASIS)
        assessment = credit.assess(score_proof.claims, insurance_proof.claims, [], policy=self.credit_policy)
        now = self.clock()
        account_id = str(uuid.uuid4())
        try:
            with self.db.transaction() as session:
                session.execute(
                    store.accounts.insert().values(
                        account_id=account_id,
                        subject_id=party.subject_id,
                        masked_identifier=party.masked_identifier,
                        status=assessment.status.value,
                        tier=assessment.tier.value,
                        no_credit_reason=None if assessment.reason is None else assessment.reason.value,
                        credit_score=credit.read_score(score_proof.claims),
                        credit_score_proof_id=score_proof.proof_id,
                        insurance_enrolled=assessment.insured,
                        insurance_proof_id=insurance_proof.proof_id,
                        outpatient_limit_fen=assessment.outpatient_limit_fen,
                        inpatient_limit_fen=assessment.inpatient_limit_fen,
                        outstanding_fen=0,
                        enrolled_at=now,
                        updated_at=now,
                        suspended_at=None,
                    )
                )
        except sa.exc.IntegrityError:
            # A concurrent enrolment of the same patient won: its account stands.
            winner = self._account_row_by("subject_id", party.subject_id)
            if winner is None:
                raise
            return pb.EnrollResponse(account=self._account_proto(winner), created=False)
        row = self._account_row_by("account_id", account_id)
        assert row is not None
        return pb.EnrollResponse(account=self._account_proto(row), created=True)

    def _account_row_by(self, column: str, value: str, session: Session | None = None) -> Any:
        query = sa.select(store.accounts).where(store.accounts.c[column] == value)
        if session is not None:
            return session.execute(query).first()
        with self.db.read() as reading:
            return reading.execute(query).first()

    def _lock_account(self, session: Session, account_id: str) -> Any:
        row = session.execute(
            sa.select(store.accounts).where(store.accounts.c.account_id == account_id).with_for_update()
        ).first()
        if row is None:
            raise NotFound(f"account_id: no credit account {account_id!r}")
        return row

    def _account_proto(self, row: Any, session: Session | None = None) -> pb.CreditAccount:
        query = (
            sa.select(store.defaults)
            .where(store.defaults.c.account_id == row.account_id)
            .order_by(store.defaults.c.defaulted_at, store.defaults.c.bill_id)
        )
        if session is not None:
            history = session.execute(query).all()
        else:
            with self.db.read() as reading:
                history = reading.execute(query).all()
        active = row.status == credit.AccountStatus.ACTIVE.value
        account = pb.CreditAccount(
            account_id=row.account_id,
            subject_id=row.subject_id,
            masked_identifier=row.masked_identifier,
            status=_status_pb(row.status),
            tier=_tier_pb(row.tier),
            credit_score=row.credit_score or 0,
            credit_score_proof_id=row.credit_score_proof_id,
            insurance_enrolled=row.insurance_enrolled,
            insurance_proof_id=row.insurance_proof_id,
            outpatient_limit_fen=row.outpatient_limit_fen,
            inpatient_limit_fen=row.inpatient_limit_fen,
            available_outpatient_fen=credit.available_credit(row.outpatient_limit_fen, row.outstanding_fen)
            if active
            else 0,
            available_inpatient_fen=credit.available_credit(row.inpatient_limit_fen, row.outstanding_fen)
            if active
            else 0,
            outstanding_fen=row.outstanding_fen,
            enrolled_at=timestamp(row.enrolled_at),
            updated_at=timestamp(row.updated_at),
        )
        if row.no_credit_reason is not None:
            account.no_credit_reason = pb.NoCreditReason.Value(
                f"NO_CREDIT_REASON_{credit.NoCreditReason(row.no_credit_reason).name}"
            )
        if row.suspended_at is not None:
            account.suspended_at.CopyFrom(timestamp(row.suspended_at))
        for record in history:
            entry = pb.DefaultRecord(
                bill_id=record.bill_id,
                amount_fen=record.amount_fen,
                defaulted_at=timestamp(record.defaulted_at),
            )
            if record.repaid_at is not None:
                entry.repaid_at.CopyFrom(timestamp(record.repaid_at))
            account.defaults.append(entry)
        return account

    def _account_for(self, which: str | None, request: Any, parties: Parties, *, required: bool = True) -> Any:
        """The account row a request names by identifier, subject_id or account_id."""
        if which == "account_id":
            texts.checked_text(request.account_id, "account_id", MAX_ID, required=True)
            row = self._account_row_by("account_id", request.account_id)
            if row is None:
                raise NotFound(f"account_id: no credit account {request.account_id!r}")
            return row
        if which is None and not required:
            return None
        party = self._patient(which, request, parties)
        row = self._account_row_by("subject_id", party.subject_id)
        if row is None:
            raise NotFound(f"{which}: the patient is not enrolled in medical credit")
        return row

    def get_account(self, request: pb.GetAccountRequest, parties: Parties) -> pb.GetAccountResponse:
        if request.WhichOneof("key") is None:
            raise InvalidArgument("key", "MISSING", "give identifier, subject_id or account_id")
        row = self._account_for(request.WhichOneof("key"), request, parties)
        return pb.GetAccountResponse(account=self._account_proto(row))

    # --------------------------------------------------------------------------------------------
    # Visits and charges

    def open_visit(self, request: pb.OpenVisitRequest, caller: Caller, parties: Parties) -> pb.OpenVisitResponse:
        try:
            return self._open_visit(request, caller, parties)
        except sa.exc.IntegrityError:
            # The request id is checked under the patient's account lock; only a visit opened at
            # the same moment for another patient with the same request id gets here.
            raise AlreadyExists("request_id: was already used to open a different visit") from None

    def _open_visit(self, request: pb.OpenVisitRequest, caller: Caller, parties: Parties) -> pb.OpenVisitResponse:
        hospital_id = texts.checked_text(request.hospital_id, "hospital_id", MAX_ID, required=True)
        kind = from_proto(credit.VisitKind, pb.VisitKind, "VISIT_KIND_", request.kind)
        if kind is None:
            raise InvalidArgument("kind", "UNSPECIFIED", "must be VISIT_KIND_OUTPATIENT or VISIT_KIND_INPATIENT")
        request_id = texts.checked_text(request.request_id.strip(), "request_id", MAX_REQUEST_ID, required=True)
        account = self._account_for(request.WhichOneof("patient"), request, parties)
        fingerprint = hashlib.sha256(json.dumps([account.account_id, hospital_id, kind.value]).encode()).hexdigest()
        request_key = f"{caller.caller_id}:{request_id}"
        now = self.clock()
        with self.db.transaction() as session:
            account = self._lock_account(session, account.account_id)
            existing = session.execute(
                sa.select(store.visits.c.visit_id, store.visits.c.request_fingerprint).where(
                    store.visits.c.request_key == request_key
                )
            ).first()
            if existing is not None:
                if existing.request_fingerprint != fingerprint:
                    raise AlreadyExists("request_id: was already used to open a different visit")
                return pb.OpenVisitResponse(visit=self._visit_proto(session, existing.visit_id), created=False)
            if account.status != credit.AccountStatus.ACTIVE.value:
                raise FailedPrecondition(
                    f"patient: the credit account is {account.status}; the patient pays at the counter",
                    field="patient",
                    reason="ACCOUNT_NOT_ACTIVE",
                )
            visit_id = str(uuid.uuid4())
            session.execute(
                store.visits.insert().values(
                    visit_id=visit_id,
                    request_key=request_key,
                    request_fingerprint=fingerprint,
                    account_id=account.account_id,
                    subject_id=account.subject_id,
                    hospital_id=hospital_id,
                    kind=kind.value,
                    state="open",
                    total_fen=0,
                    insurance_fen=0,
                    self_pay_fen=0,
                    charge_count=0,
                    opened_at=now,
                )
            )
            return pb.OpenVisitResponse(visit=self._visit_proto(session, visit_id), created=True)

    def _visit_row(self, session: Session, visit_id: str) -> Any:
        row = session.execute(sa.select(store.visits).where(store.visits.c.visit_id == visit_id)).first()
        if row is None:
            raise NotFound(f"visit_id: no visit {visit_id!r}")
        return row

    def _charges(self, session: Session, visit_id: str) -> list[Any]:
        return list(
            session.execute(
                sa.select(store.charges).where(store.charges.c.visit_id == visit_id).order_by(store.charges.c.seq)
            ).all()
        )

    @staticmethod
    def _charge_proto(row: Any) -> pb.Charge:
        return pb.Charge(
            charge_id=row.charge_id,
            visit_id=row.visit_id,
            item=row.item,
            category=_category_pb(row.category),
            amount_fen=row.amount_fen,
            insurance_fen=row.insurance_fen,
            self_pay_fen=row.self_pay_fen,
            added_at=timestamp(row.added_at),
        )

    def _visit_proto(self, session: Session, visit_id: str) -> pb.Visit:
        row = self._visit_row(session, visit_id)
        visit = pb.Visit(
            visit_id=row.visit_id,
            account_id=row.account_id,
            subject_id=row.subject_id,
            hospital_id=row.hospital_id,
            kind=_kind_pb(row.kind),
            state=pb.VISIT_STATE_OPEN if row.state == "open" else pb.VISIT_STATE_CLOSED,
            charges=[self._charge_proto(charge) for charge in self._charges(session, visit_id)],
            total_fen=row.total_fen,
            insurance_fen=row.insurance_fen,
            self_pay_fen=row.self_pay_fen,
            opened_at=timestamp(row.opened_at),
            bill_id=row.bill_id or "",
        )
        if row.closed_at is not None:
            visit.closed_at.CopyFrom(timestamp(row.closed_at))
        return visit

    def _visit_account(self, visit_id: str) -> str:
        texts.checked_text(visit_id, "visit_id", MAX_ID, required=True)
        with self.db.read() as session:
            account_id: str | None = session.execute(
                sa.select(store.visits.c.account_id).where(store.visits.c.visit_id == visit_id)
            ).scalar_one_or_none()
        if account_id is None:
            raise NotFound(f"visit_id: no visit {visit_id!r}")
        return account_id

    def add_charge(self, request: pb.AddChargeRequest) -> pb.AddChargeResponse:
        texts.checked_text(request.visit_id, "visit_id", MAX_ID, required=True)
        item = texts.checked_text(request.item.strip(), "item", MAX_ITEM, required=True)
        category = from_proto(insurance.ChargeCategory, pb.ChargeCategory, "CHARGE_CATEGORY_", request.category)
        amount = request.amount_fen
        insurance.validate_charge(category, amount, policy=self.insurance_policy)
        assert category is not None  # validate_charge refused a missing category, naming the field
        request_id = texts.checked_text(request.request_id.strip(), "request_id", MAX_REQUEST_ID, required=True)
        account_id = self._visit_account(request.visit_id)
        now = self.clock()
        with self.db.transaction() as session:
            account = self._lock_account(session, account_id)
            visit = self._visit_row(session, request.visit_id)
            existing = session.execute(
                sa.select(store.charges).where(
                    store.charges.c.visit_id == visit.visit_id, store.charges.c.request_id == request_id
                )
            ).first()
            if existing is not None:
                if (existing.item, existing.category, existing.amount_fen) != (item, category.value, amount):
                    raise AlreadyExists("request_id: was already used for a different charge on this visit")
                return pb.AddChargeResponse(
                    charge=self._charge_proto(existing),
                    visit=self._visit_proto(session, visit.visit_id),
                    created=False,
                )
            if visit.state != "open":
                raise FailedPrecondition(
                    f"visit_id: visit {visit.visit_id} is closed and billed; no charge can be added",
                    field="visit_id",
                    reason="VISIT_CLOSED",
                )
            kind = credit.VisitKind(visit.kind)
            earlier = [
                insurance.ChargeLine(insurance.ChargeCategory(c.category), c.amount_fen)
                for c in self._charges(session, visit.visit_id)
            ]
            insurance.validate_charge(category, amount, visit_total_fen=visit.total_fen, policy=self.insurance_policy)
            if len(earlier) >= self.insurance_policy.max_charges:
                raise FailedPrecondition(
                    f"visit_id: a visit has at most {self.insurance_policy.max_charges} charges",
                    field="visit_id",
                    reason="TOO_MANY_CHARGES",
                )
            share = insurance.split([*earlier, insurance.ChargeLine(category, amount)], kind, self.insurance_policy)
            charge = share.charges[-1]
            limit = account.outpatient_limit_fen if kind is credit.VisitKind.OUTPATIENT else account.inpatient_limit_fen
            available = (
                credit.available_credit(limit, account.outstanding_fen)
                if account.status == credit.AccountStatus.ACTIVE.value
                else 0
            )
            if charge.self_pay_fen > available:
                raise FailedPrecondition(
                    f"amount_fen: the self-pay share of this charge ({charge.self_pay_fen} fen) is more than the "
                    f"{available} fen of {kind.value} credit available; the patient pays at the counter",
                    field="amount_fen",
                    reason="CREDIT_LIMIT_EXCEEDED",
                )
            charge_id = str(uuid.uuid4())
            session.execute(
                store.charges.insert().values(
                    charge_id=charge_id,
                    visit_id=visit.visit_id,
                    seq=len(earlier),
                    request_id=request_id,
                    item=item,
                    category=category.value,
                    amount_fen=amount,
                    insurance_fen=charge.insurance_fen,
                    self_pay_fen=charge.self_pay_fen,
                    added_at=now,
                )
            )
            session.execute(
                store.visits.update()
                .where(store.visits.c.visit_id == visit.visit_id)
                .values(
                    total_fen=share.total_fen,
                    insurance_fen=share.insurance_fen,
                    self_pay_fen=share.self_pay_fen,
                    charge_count=len(earlier) + 1,
                )
            )
            if charge.self_pay_fen:
                session.execute(
                    store.accounts.update()
                    .where(store.accounts.c.account_id == account.account_id)
                    .values(outstanding_fen=account.outstanding_fen + charge.self_pay_fen, updated_at=now)
                )
            stored = session.execute(sa.select(store.charges).where(store.charges.c.charge_id == charge_id)).one()
            return pb.AddChargeResponse(
                charge=self._charge_proto(stored), visit=self._visit_proto(session, visit.visit_id), created=True
            )

    def close_visit(self, request: pb.CloseVisitRequest) -> pb.CloseVisitResponse:
        account_id = self._visit_account(request.visit_id)
        now = self.clock()
        events: list[tuple[Message, str]] = []
        with self.db.transaction() as session:
            account = self._lock_account(session, account_id)
            visit = self._visit_row(session, request.visit_id)
            if visit.state != "open":
                return pb.CloseVisitResponse(
                    bill=self._bill_proto(session, visit.bill_id), visit=self._visit_proto(session, visit.visit_id)
                )
            kind = credit.VisitKind(visit.kind)
            rows = self._charges(session, visit.visit_id)
            share = insurance.split(
                [insurance.ChargeLine(insurance.ChargeCategory(c.category), c.amount_fen) for c in rows],
                kind,
                self.insurance_policy,
            )
            if share.self_pay_fen != visit.self_pay_fen or share.total_fen != visit.total_fen:
                raise AssertionError(f"visit {visit.visit_id}: the split changed since its charges were added")
            bill_id = str(uuid.uuid4())
            issued = billing.issue(
                bill_id=bill_id,
                visit_kind=kind,
                total_fen=share.total_fen,
                insurance_fen=share.insurance_fen,
                self_pay_fen=share.self_pay_fen,
                closed_at=now,
                policy=self.billing_policy,
            )
            bill = issued.bill
            session.execute(
                store.bills.insert().values(
                    bill_id=bill_id,
                    visit_id=visit.visit_id,
                    account_id=account.account_id,
                    subject_id=account.subject_id,
                    masked_identifier=account.masked_identifier,
                    hospital_id=visit.hospital_id,
                    visit_kind=kind.value,
                    total_fen=bill.total_fen,
                    insurance_fen=bill.insurance_fen,
                    self_pay_fen=bill.self_pay_fen,
                    category_shares=json.dumps(
                        [
                            [c.category.value, c.insurance_ratio_bp, c.total_fen, c.insurance_fen, c.self_pay_fen]
                            for c in share.categories
                        ]
                    ),
                    issued_at=bill.issued_at,
                    reminder_at=bill.reminder_at,
                    due_at=bill.due_at,
                    grace_until=bill.grace_until,
                    **_bill_values(bill),
                )
            )
            session.execute(
                store.visits.update()
                .where(store.visits.c.visit_id == visit.visit_id)
                .values(state="closed", closed_at=now, bill_id=bill_id)
            )
            if bill.total_fen:
                self._post(
                    session,
                    ledger.charge(
                        bill_id=bill_id,
                        patient_account_id=account.account_id,
                        hospital_id=visit.hospital_id,
                        insurance_fen=bill.insurance_fen,
                        self_pay_fen=bill.self_pay_fen,
                        at=now,
                    ),
                )
            self._apply(session, account, bill_id, issued.transitions, events)
            if events:
                self.outbox.add_many(session, events)
            response = pb.CloseVisitResponse(
                bill=self._bill_proto(session, bill_id), visit=self._visit_proto(session, visit.visit_id)
            )
        if events:
            self.on_events([event for event, _ in events])
        return response

    # --------------------------------------------------------------------------------------------
    # Bills and payments

    def _bill_row(self, session: Session, bill_id: str) -> Any:
        row = session.execute(sa.select(store.bills).where(store.bills.c.bill_id == bill_id)).first()
        if row is None:
            raise NotFound(f"bill_id: no bill {bill_id!r}")
        return row

    @staticmethod
    def _payment_proto(row: Any) -> pb.Payment:
        return pb.Payment(
            payment_id=row.payment_id,
            bill_id=row.bill_id,
            amount_fen=row.amount_fen,
            request_id=row.request_id,
            paid_at=timestamp(row.paid_at),
        )

    def _bill_proto(self, session: Session, bill_id: str, row: Any = None) -> pb.Bill:
        row = row if row is not None else self._bill_row(session, bill_id)
        payments = session.execute(
            sa.select(store.payments)
            .where(store.payments.c.bill_id == row.bill_id)
            .order_by(store.payments.c.paid_at, store.payments.c.payment_id)
        ).all()
        bill = pb.Bill(
            bill_id=row.bill_id,
            visit_id=row.visit_id,
            account_id=row.account_id,
            subject_id=row.subject_id,
            masked_identifier=row.masked_identifier,
            hospital_id=row.hospital_id,
            visit_kind=_kind_pb(row.visit_kind),
            state=_bill_state_pb(row.state),
            total_fen=row.total_fen,
            insurance_fen=row.insurance_fen,
            self_pay_fen=row.self_pay_fen,
            category_shares=[
                pb.CategoryShare(
                    category=_category_pb(category),
                    insurance_ratio_bp=ratio,
                    total_fen=total,
                    insurance_fen=insured,
                    self_pay_fen=self_pay,
                )
                for category, ratio, total, insured, self_pay in json.loads(row.category_shares)
            ],
            paid_fen=row.paid_fen,
            outstanding_fen=row.self_pay_fen - row.paid_fen,
            payments=[self._payment_proto(p) for p in payments],
            issued_at=timestamp(row.issued_at),
            due_at=timestamp(row.due_at),
            grace_until=timestamp(row.grace_until),
        )
        if row.defaulted_at is not None:
            bill.defaulted_at.CopyFrom(timestamp(row.defaulted_at))
        if row.settled_at is not None:
            bill.settled_at.CopyFrom(timestamp(row.settled_at))
        return bill

    def get_bill(self, request: pb.GetBillRequest) -> pb.GetBillResponse:
        texts.checked_text(request.bill_id, "bill_id", MAX_ID, required=True)
        with self.db.read() as session:
            return pb.GetBillResponse(bill=self._bill_proto(session, request.bill_id))

    def list_bills(self, request: pb.ListBillsRequest, parties: Parties) -> pb.ListBillsResponse:
        size = paging.page_size(request.page_size)
        table = store.bills
        query = sa.select(table)
        account = self._account_for(request.WhichOneof("patient"), request, parties, required=False)
        if account is not None:
            query = query.where(table.c.account_id == account.account_id)
        if request.hospital_id:
            query = query.where(
                table.c.hospital_id == texts.checked_text(request.hospital_id, "hospital_id", MAX_ID, required=True)
            )
        if request.states:
            names = []
            for state in request.states:
                member = from_proto(billing.BillState, pb.BillState, "BILL_STATE_", state)
                if member is None:
                    raise InvalidArgument("states", "UNKNOWN", f"{state} is not a bill state")
                names.append(member.value)
            query = query.where(table.c.state.in_(names))
        if request.page_token:
            at, last_id = paging.decode_token(request.page_token)
            query = query.where(
                sa.or_(table.c.issued_at < at, sa.and_(table.c.issued_at == at, table.c.bill_id < last_id))
            )
        query = query.order_by(table.c.issued_at.desc(), table.c.bill_id.desc()).limit(size + 1)
        with self.db.read() as session:
            rows = session.execute(query).all()
            response = pb.ListBillsResponse(bills=[self._bill_proto(session, r.bill_id, r) for r in rows[:size]])
        if len(rows) > size:
            last = rows[size - 1]
            response.next_page_token = paging.encode_token(as_utc(last.issued_at), last.bill_id)
        return response

    def pay_bill(self, request: pb.PayBillRequest) -> pb.PayBillResponse:
        try:
            return self._pay_bill(request)
        except sa.exc.IntegrityError:
            # The request id is checked under the bill's account lock; only a payment of another
            # account's bill at the same moment with the same request id gets here.
            raise AlreadyExists("request_id: was already used for a different payment") from None

    def _pay_bill(self, request: pb.PayBillRequest) -> pb.PayBillResponse:
        bill_id = texts.checked_text(request.bill_id, "bill_id", MAX_ID, required=True)
        amount = request.amount_fen
        if amount <= 0:
            raise InvalidArgument("amount_fen", "NOT_POSITIVE", f"must be positive (got {amount} fen)")
        if amount > ledger.MAX_FEN:
            raise InvalidArgument("amount_fen", "OUT_OF_RANGE", f"{amount} fen is more than any bill")
        request_id = texts.checked_text(request.request_id.strip(), "request_id", MAX_REQUEST_ID, required=True)
        with self.db.read() as session:
            account_id: str | None = session.execute(
                sa.select(store.bills.c.account_id).where(store.bills.c.bill_id == bill_id)
            ).scalar_one_or_none()
        if account_id is None:
            raise NotFound(f"bill_id: no bill {bill_id!r}")
        now = self.clock()
        events: list[tuple[Message, str]] = []
        with self.db.transaction() as session:
            account = self._lock_account(session, account_id)
            existing = session.execute(
                sa.select(store.payments).where(store.payments.c.request_id == request_id)
            ).first()
            if existing is not None:
                if (existing.bill_id, existing.amount_fen) != (bill_id, amount):
                    raise AlreadyExists("request_id: was already used for a different payment")
                return pb.PayBillResponse(
                    bill=self._bill_proto(session, bill_id), payment=self._payment_proto(existing), created=False
                )
            row = self._bill_row(session, bill_id)
            result = billing.pay(_bill_domain(row), amount, now)
            session.execute(
                store.bills.update().where(store.bills.c.bill_id == bill_id).values(**_bill_values(result.bill))
            )
            payment_id = str(uuid.uuid4())
            session.execute(
                store.payments.insert().values(
                    payment_id=payment_id,
                    request_id=request_id,
                    bill_id=bill_id,
                    amount_fen=amount,
                    recovery=result.recovery,
                    paid_at=now,
                )
            )
            session.execute(
                store.accounts.update()
                .where(store.accounts.c.account_id == account.account_id)
                .values(outstanding_fen=account.outstanding_fen - amount, updated_at=now)
            )
            # The overdue and default the payment caught up with come first, then the payment.
            before = [
                t for t in result.transitions if t.event in (billing.BillEvent.OVERDUE, billing.BillEvent.DEFAULTED)
            ]
            after = [t for t in result.transitions if t not in before]
            account = self._apply(session, account, bill_id, before, events)
            posting = ledger.recovery if result.recovery else ledger.payment
            self._post(
                session,
                posting(
                    bill_id=bill_id,
                    patient_account_id=account.account_id,
                    amount_fen=amount,
                    request_id=request_id,
                    at=now,
                ),
            )
            self._apply(session, account, bill_id, after, events)
            if events:
                self.outbox.add_many(session, events)
            payment = session.execute(sa.select(store.payments).where(store.payments.c.payment_id == payment_id)).one()
            response = pb.PayBillResponse(
                bill=self._bill_proto(session, bill_id), payment=self._payment_proto(payment), created=True
            )
        if events:
            self.on_events([event for event, _ in events])
        return response

    # --------------------------------------------------------------------------------------------
    # What a bill's transitions do to the account, the ledger and the outbox

    def _post(self, session: Session, transaction: ledger.Transaction) -> None:
        session.execute(
            store.ledger_transactions.insert().values(
                posting_id=transaction.posting_id,
                kind=transaction.kind.value,
                bill_id=transaction.bill_id,
                request_id=transaction.request_id,
                posted_at=transaction.posted_at,
            )
        )
        session.execute(
            store.ledger_entries.insert(),
            [
                {
                    "posting_id": transaction.posting_id,
                    "line": line,
                    "account_kind": entry.account.kind.value,
                    "account_id": entry.account.id,
                    "amount_fen": entry.amount_fen,
                }
                for line, entry in enumerate(transaction.entries)
            ],
        )

    def _reassess(self, session: Session, account: Any, now: datetime.datetime) -> Any:
        """The account after its history of defaults changed: status and limits per domain/credit.py."""
        history = [
            credit.DefaultRecord(r.bill_id, r.amount_fen, as_utc(r.defaulted_at), _opt(r.repaid_at))
            for r in session.execute(sa.select(store.defaults).where(store.defaults.c.account_id == account.account_id))
        ]
        assessment = credit.assess_values(
            account.credit_score, account.insurance_enrolled, history, policy=self.credit_policy
        )
        suspended = assessment.status is credit.AccountStatus.SUSPENDED
        values = {
            "status": assessment.status.value,
            "tier": assessment.tier.value,
            "no_credit_reason": None if assessment.reason is None else assessment.reason.value,
            "outpatient_limit_fen": assessment.outpatient_limit_fen,
            "inpatient_limit_fen": assessment.inpatient_limit_fen,
            "suspended_at": (account.suspended_at or now) if suspended else None,
            "updated_at": now,
        }
        session.execute(
            store.accounts.update().where(store.accounts.c.account_id == account.account_id).values(**values)
        )
        return session.execute(sa.select(store.accounts).where(store.accounts.c.account_id == account.account_id)).one()

    def _apply(
        self,
        session: Session,
        account: Any,
        bill_id: str,
        transitions: Sequence[billing.Transition],
        events: list[tuple[Message, str]],
    ) -> Any:
        """Records what each transition does and queues its event; returns the account row after."""
        if not transitions:
            return account
        bill = self._bill_row(session, bill_id)
        common = {
            "bill_id": bill.bill_id,
            "account_id": account.account_id,
            "subject_id": account.subject_id,
            "masked_identifier": account.masked_identifier,
        }
        for transition in transitions:
            event: Message | None = None
            if transition.event is billing.BillEvent.DUE_SOON:
                event = events_pb2.BillDueSoon(
                    **common,
                    hospital_id=bill.hospital_id,
                    self_pay_fen=bill.self_pay_fen,
                    outstanding_fen=transition.outstanding_fen,
                    due_at=timestamp(bill.due_at),
                    reminded_at=timestamp(transition.at),
                )
            elif transition.event is billing.BillEvent.OVERDUE:
                event = events_pb2.BillOverdue(
                    **common,
                    hospital_id=bill.hospital_id,
                    outstanding_fen=transition.outstanding_fen,
                    due_at=timestamp(bill.due_at),
                    grace_until=timestamp(bill.grace_until),
                )
            elif transition.event is billing.BillEvent.DEFAULTED:
                session.execute(
                    store.defaults.insert().values(
                        bill_id=bill.bill_id,
                        account_id=account.account_id,
                        amount_fen=transition.outstanding_fen,
                        defaulted_at=transition.at,
                    )
                )
                self._post(
                    session,
                    ledger.default(bill_id=bill.bill_id, outstanding_fen=transition.outstanding_fen, at=transition.at),
                )
                account = self._reassess(session, account, transition.at)
                event = events_pb2.BillDefaulted(
                    **common,
                    hospital_id=bill.hospital_id,
                    outstanding_fen=transition.outstanding_fen,
                    due_at=timestamp(bill.due_at),
                    defaulted_at=timestamp(transition.at),
                    account_status=_status_pb(account.status),
                    tier=_tier_pb(account.tier),
                    outpatient_limit_fen=account.outpatient_limit_fen,
                    inpatient_limit_fen=account.inpatient_limit_fen,
                )
            elif transition.event is billing.BillEvent.SETTLED:
                event = events_pb2.BillSettled(
                    **common,
                    hospital_id=bill.hospital_id,
                    total_fen=bill.total_fen,
                    insurance_fen=bill.insurance_fen,
                    self_pay_fen=bill.self_pay_fen,
                    payments=bill.payments,
                    due_at=timestamp(bill.due_at),
                    settled_at=timestamp(transition.at),
                    previous_state=_bill_state_pb(transition.previous_state),
                )
            elif transition.event is billing.BillEvent.CREDIT_RESTORED:
                session.execute(
                    store.defaults.update()
                    .where(store.defaults.c.bill_id == bill.bill_id)
                    .values(repaid_at=transition.at)
                )
                was = account.status
                account = self._reassess(session, account, transition.at)
                if was != account.status and account.status == credit.AccountStatus.ACTIVE.value:
                    defaults = session.execute(
                        sa.select(sa.func.count())
                        .select_from(store.defaults)
                        .where(store.defaults.c.account_id == account.account_id)
                    ).scalar_one()
                    event = events_pb2.CreditRestored(
                        **common,
                        account_status=_status_pb(account.status),
                        tier=_tier_pb(account.tier),
                        outpatient_limit_fen=account.outpatient_limit_fen,
                        inpatient_limit_fen=account.inpatient_limit_fen,
                        defaults=defaults,
                        restored_at=timestamp(transition.at),
                    )
            if event is not None:
                events.append((event, account.subject_id))
        return account

    # --------------------------------------------------------------------------------------------
    # Timers

    def run_timers(self, now: datetime.datetime | None = None, batch: int = 500) -> int:
        """Reminders, overdue notices and defaults due by ``now`` (default: the clock), each once:
        the bill remembers what it emitted, under its account's lock. Returns the events queued."""
        at = self.clock() if now is None else now
        with self.db.read() as session:
            due = session.execute(
                sa.select(store.bills.c.bill_id, store.bills.c.account_id)
                .where(store.bills.c.next_timer_at <= at)
                .order_by(store.bills.c.next_timer_at, store.bills.c.bill_id)
                .limit(batch)
            ).all()
        published = 0
        for bill_id, account_id in due:
            events: list[tuple[Message, str]] = []
            with self.db.transaction() as session:
                account = self._lock_account(session, account_id)
                update = billing.due_transitions(_bill_domain(self._bill_row(session, bill_id)), at)
                session.execute(
                    store.bills.update().where(store.bills.c.bill_id == bill_id).values(**_bill_values(update.bill))
                )
                self._apply(session, account, bill_id, update.transitions, events)
                if events:
                    self.outbox.add_many(session, events)
            if events:
                self.on_events([event for event, _ in events])
            published += len(events)
        return published

    # --------------------------------------------------------------------------------------------
    # Figures and the ledger check

    def get_stats(self) -> pb.GetStatsResponse:
        now = self.clock()
        accounts, bills = store.accounts, store.bills
        with self.db.read() as session:
            by_status: dict[str, int] = dict(
                session.execute(sa.select(accounts.c.status, sa.func.count()).group_by(accounts.c.status)).all()
            )
            outstanding = session.execute(
                sa.select(sa.func.coalesce(sa.func.sum(accounts.c.outstanding_fen), 0))
            ).scalar_one()
            visits = session.execute(sa.select(sa.func.count()).select_from(store.visits)).scalar_one()
            by_state = {
                row.state: row
                for row in session.execute(
                    sa.select(
                        bills.c.state,
                        sa.func.count().label("bills"),
                        sa.func.coalesce(sa.func.sum(bills.c.self_pay_fen), 0).label("self_pay"),
                        sa.func.coalesce(sa.func.sum(bills.c.paid_fen), 0).label("paid"),
                        sa.func.coalesce(sa.func.sum(bills.c.insurance_fen), 0).label("insurance"),
                    ).group_by(bills.c.state)
                ).all()
            }
            overdue = session.execute(
                sa.select(
                    sa.func.count(), sa.func.coalesce(sa.func.sum(bills.c.self_pay_fen - bills.c.paid_fen), 0)
                ).where(bills.c.state != billing.BillState.SETTLED.value, bills.c.due_at <= now)
            ).one()
        credit_fen = sum(int(r.self_pay) for r in by_state.values())
        defaulted = by_state.get(billing.BillState.DEFAULTED.value)
        defaulted_fen = 0 if defaulted is None else int(defaulted.self_pay) - int(defaulted.paid)
        settled = by_state.get(billing.BillState.SETTLED.value)
        return pb.GetStatsResponse(
            as_of=timestamp(now),
            enrolled_accounts=sum(by_status.values()),
            active_accounts=by_status.get(credit.AccountStatus.ACTIVE.value, 0),
            suspended_accounts=by_status.get(credit.AccountStatus.SUSPENDED.value, 0),
            visits=visits,
            bills=sum(int(r.bills) for r in by_state.values()),
            settled_bills=0 if settled is None else int(settled.bills),
            defaulted_bills=0 if defaulted is None else int(defaulted.bills),
            total_credit_fen=credit_fen,
            total_repaid_fen=sum(int(r.paid) for r in by_state.values()),
            total_defaulted_fen=defaulted_fen,
            total_insurance_fen=sum(int(r.insurance) for r in by_state.values()),
            default_rate_ppb=defaulted_fen * PPB // credit_fen if credit_fen else 0,
            overdue_bills=int(overdue[0]),
            overdue_fen=int(overdue[1]),
            outstanding_fen=int(outstanding),
        )

    def verify_ledger(self) -> pb.VerifyLedgerResponse:
        """Every posting and the bills, read in one snapshot, proved by ledger.verify. ``balanced``
        is the contract's (every posting balances, the balances sum to zero); ``message`` names
        every other invariant that fails (the bills' and patients' receivables, the credit fund
        per bill, and each account's outstanding against its bills and open visits)."""
        now = self.clock()
        with self.db.read() as session:
            postings = session.execute(
                sa.select(store.ledger_transactions).order_by(store.ledger_transactions.c.seq)
            ).all()
            lines: dict[str, list[ledger.Entry]] = {}
            for entry in session.execute(
                sa.select(store.ledger_entries).order_by(store.ledger_entries.c.posting_id, store.ledger_entries.c.line)
            ):
                lines.setdefault(entry.posting_id, []).append(
                    ledger.Entry(
                        ledger.Account(ledger.LedgerAccountKind(entry.account_kind), entry.account_id), entry.amount_fen
                    )
                )
            bill_rows = session.execute(sa.select(store.bills)).all()
            account_rows = session.execute(
                sa.select(store.accounts.c.account_id, store.accounts.c.outstanding_fen)
            ).all()
            open_visits = dict(
                session.execute(
                    sa.select(store.visits.c.account_id, sa.func.sum(store.visits.c.self_pay_fen))
                    .where(store.visits.c.state == "open")
                    .group_by(store.visits.c.account_id)
                ).all()
            )
        transactions = [
            ledger.Transaction.stored(
                posting_id=p.posting_id,
                kind=ledger.TransactionKind(p.kind),
                bill_id=p.bill_id,
                request_id=p.request_id,
                posted_at=as_utc(p.posted_at),
                entries=lines.get(p.posting_id, []),
            )
            for p in postings
        ]
        bills = {
            b.bill_id: ledger.BillOutstanding(b.account_id, b.self_pay_fen - b.paid_fen, b.defaulted_at is not None)
            for b in bill_rows
        }
        verification = ledger.verify(transactions, bills=bills)
        billed: dict[str, int] = {}
        for b in bill_rows:
            billed[b.account_id] = billed.get(b.account_id, 0) + b.self_pay_fen - b.paid_fen
        problems = [str(p) for p in verification.problems]
        for account in account_rows:
            expected = billed.get(account.account_id, 0) + int(open_visits.get(account.account_id) or 0)
            if account.outstanding_fen != expected:
                problems.append(
                    f"ACCOUNT_OUTSTANDING_MISMATCH {account.account_id}: the account says {account.outstanding_fen} "
                    f"fen outstanding, its bills and open visits {expected} fen"
                )
        return pb.VerifyLedgerResponse(
            balanced=verification.balanced,
            postings_checked=verification.postings_checked,
            balances=[
                pb.LedgerBalance(
                    kind=pb.LedgerAccountKind.Value(f"LEDGER_ACCOUNT_KIND_{kind.name}"), balance_fen=balance
                )
                for kind, balance in verification.balances_by_kind.items()
            ],
            first_unbalanced_posting_id=verification.first_unbalanced_posting_id,
            message="; ".join(problems) if problems else verification.message,
            checked_at=timestamp(now),
        )
