"""What health keeps, as the use cases load and save it (pure): a patient's credit account, a
visit and its charges, the bill of a visit and its payments, and the scheme's figures.

The rules live in the other domain modules (credit, insurance, billing, ledger); these records
carry their results and the few facts about an account that follow from them (what is available,
what a new assessment changes)."""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from govmesh.errors import FailedPrecondition
from services.health.domain import billing, credit, insurance

#: The figures' default rate is in parts per billion (the contract's default_rate_ppb).
PPB = 1_000_000_000


class VisitState(enum.Enum):
    """Names match govmesh.health.v1.VisitState without the VISIT_STATE_ prefix."""

    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True)
class Account:
    """A patient's credit account: what enrolment granted (re-assessed as defaults come and go)
    and the self-pay share outstanding over all their visits."""

    account_id: str
    subject_id: str
    masked_identifier: str
    status: credit.AccountStatus
    tier: credit.CreditTier
    no_credit_reason: credit.NoCreditReason | None
    #: None: records holds no usable score (the account is re-assessed from it and insurance).
    credit_score: int | None
    credit_score_proof_id: str
    insurance_enrolled: bool
    insurance_proof_id: str
    outpatient_limit_fen: int
    inpatient_limit_fen: int
    #: The self-pay share of every charge on an open visit plus everything billed and not repaid.
    outstanding_fen: int
    enrolled_at: datetime.datetime
    updated_at: datetime.datetime
    suspended_at: datetime.datetime | None = None

    @classmethod
    def enrolled(
        cls,
        account_id: str,
        subject_id: str,
        masked_identifier: str,
        assessment: credit.Assessment,
        credit_score: int | None,
        proof_ids: tuple[str, str],
        at: datetime.datetime,
    ) -> Account:
        """A new account as ``assessment`` grants it, owing nothing; ``proof_ids`` are the
        credit score's and the insurance enrolment's proofs it was assessed from."""
        return cls(
            account_id=account_id,
            subject_id=subject_id,
            masked_identifier=masked_identifier,
            status=assessment.status,
            tier=assessment.tier,
            no_credit_reason=assessment.reason,
            credit_score=credit_score,
            credit_score_proof_id=proof_ids[0],
            insurance_enrolled=assessment.insured,
            insurance_proof_id=proof_ids[1],
            outpatient_limit_fen=assessment.outpatient_limit_fen,
            inpatient_limit_fen=assessment.inpatient_limit_fen,
            outstanding_fen=0,
            enrolled_at=at,
            updated_at=at,
        )

    @property
    def active(self) -> bool:
        return self.status is credit.AccountStatus.ACTIVE

    def limit_fen(self, kind: credit.VisitKind) -> int:
        return self.outpatient_limit_fen if kind is credit.VisitKind.OUTPATIENT else self.inpatient_limit_fen

    def available_fen(self, kind: credit.VisitKind) -> int:
        """The credit a visit of ``kind`` may still use: nothing unless ACTIVE."""
        return credit.available_credit(self.limit_fen(kind), self.outstanding_fen) if self.active else 0

    def owing(self, change_fen: int, at: datetime.datetime) -> Account:
        """The account after its outstanding changed by ``change_fen`` (a charge adds, a payment
        subtracts)."""
        return dataclasses.replace(self, outstanding_fen=self.outstanding_fen + change_fen, updated_at=at)

    def reassessed(self, assessment: credit.Assessment, at: datetime.datetime) -> Account:
        """The account with the status and limits of ``assessment`` (its history of defaults
        changed); a suspension keeps the time it began."""
        suspended = assessment.status is credit.AccountStatus.SUSPENDED
        return dataclasses.replace(
            self,
            status=assessment.status,
            tier=assessment.tier,
            no_credit_reason=assessment.reason,
            outpatient_limit_fen=assessment.outpatient_limit_fen,
            inpatient_limit_fen=assessment.inpatient_limit_fen,
            suspended_at=(self.suspended_at or at) if suspended else None,
            updated_at=at,
        )


@dataclass(frozen=True)
class Charge:
    """One charge on a visit, with its insurance split (what AddCharge reported, never changed)."""

    charge_id: str
    visit_id: str
    #: The charge's position on the visit: the insurance split takes charges in this order.
    seq: int
    request_id: str
    item: str
    category: insurance.ChargeCategory
    amount_fen: int
    insurance_fen: int
    self_pay_fen: int
    added_at: datetime.datetime

    @classmethod
    def added(
        cls,
        charge_id: str,
        visit: Visit,
        seq: int,
        request_id: str,
        item: str,
        share: insurance.ChargeShare,
        at: datetime.datetime,
    ) -> Charge:
        """The ``seq``-th charge of ``visit``, split as ``share`` says."""
        return cls(
            charge_id=charge_id,
            visit_id=visit.visit_id,
            seq=seq,
            request_id=request_id,
            item=item,
            category=share.category,
            amount_fen=share.amount_fen,
            insurance_fen=share.insurance_fen,
            self_pay_fen=share.self_pay_fen,
            added_at=at,
        )


@dataclass(frozen=True)
class Visit:
    """An outpatient visit or an inpatient stay of an account at a hospital, and its totals."""

    visit_id: str
    account_id: str
    subject_id: str
    hospital_id: str
    kind: credit.VisitKind
    state: VisitState
    total_fen: int
    insurance_fen: int
    self_pay_fen: int
    charge_count: int
    opened_at: datetime.datetime
    closed_at: datetime.datetime | None = None
    bill_id: str | None = None

    @classmethod
    def opened(
        cls, visit_id: str, account: Account, hospital_id: str, kind: credit.VisitKind, at: datetime.datetime
    ) -> Visit:
        """A new visit of ``account``, with no charges yet."""
        return cls(
            visit_id=visit_id,
            account_id=account.account_id,
            subject_id=account.subject_id,
            hospital_id=hospital_id,
            kind=kind,
            state=VisitState.OPEN,
            total_fen=0,
            insurance_fen=0,
            self_pay_fen=0,
            charge_count=0,
            opened_at=at,
        )

    @property
    def open(self) -> bool:
        return self.state is VisitState.OPEN

    def charged(self, split: insurance.Split) -> Visit:
        """The visit with one more charge, its totals those of ``split`` (all its charges)."""
        return dataclasses.replace(
            self,
            total_fen=split.total_fen,
            insurance_fen=split.insurance_fen,
            self_pay_fen=split.self_pay_fen,
            charge_count=self.charge_count + 1,
        )

    def closed(self, bill_id: str, at: datetime.datetime) -> Visit:
        return dataclasses.replace(self, state=VisitState.CLOSED, closed_at=at, bill_id=bill_id)


def price_charge(
    account: Account,
    visit: Visit,
    earlier: Sequence[Charge],
    charge: insurance.ChargeLine,
    policy: insurance.InsurancePolicy,
) -> insurance.Split:
    """The split of ``visit`` with ``charge`` added after its ``earlier`` charges, so the
    deductible and the cap apply (the last share is the new charge's). Refused, naming the
    field, when the visit is closed or full, or the charge's self-pay share is more than the
    account's credit available for the visit's kind; a charge with no self-pay share needs none
    (docs/decisions/health-outstanding-and-available-credit.md)."""
    if not visit.open:
        raise FailedPrecondition(
            f"visit_id: visit {visit.visit_id} is closed and billed; no charge can be added",
            field="visit_id",
            reason="VISIT_CLOSED",
        )
    insurance.validate_charge(charge.category, charge.amount_fen, visit_total_fen=visit.total_fen, policy=policy)
    if len(earlier) >= policy.max_charges:
        raise FailedPrecondition(
            f"visit_id: a visit has at most {policy.max_charges} charges", field="visit_id", reason="TOO_MANY_CHARGES"
        )
    split = insurance.split([*earlier, charge], visit.kind, policy)
    self_pay, available = split.charges[-1].self_pay_fen, account.available_fen(visit.kind)
    if self_pay > available:
        raise FailedPrecondition(
            f"amount_fen: the self-pay share of this charge ({self_pay} fen) is more than the "
            f"{available} fen of {visit.kind.value} credit available; the patient pays at the counter",
            field="amount_fen",
            reason="CREDIT_LIMIT_EXCEEDED",
        )
    return split


@dataclass(frozen=True)
class VisitBill:
    """The bill of a visit: where it stands (billing.Bill), whose it is, where it was run up, and
    its split by category."""

    bill: billing.Bill
    visit_id: str
    account_id: str
    subject_id: str
    masked_identifier: str
    hospital_id: str
    categories: tuple[insurance.CategoryShare, ...]

    @property
    def bill_id(self) -> str:
        return self.bill.bill_id

    def now(self, bill: billing.Bill) -> VisitBill:
        """This bill after a transition of the state machine."""
        return dataclasses.replace(self, bill=bill)


@dataclass(frozen=True)
class Payment:
    """A payment towards a bill; ``recovery`` when the bill had defaulted (posted as a recovery)."""

    payment_id: str
    request_id: str
    bill_id: str
    amount_fen: int
    recovery: bool
    paid_at: datetime.datetime


@dataclass(frozen=True)
class BillTotals:
    """The bills in one state: how many, and their self-pay, repaid and insurance shares."""

    bills: int = 0
    self_pay_fen: int = 0
    paid_fen: int = 0
    insurance_fen: int = 0


@dataclass(frozen=True)
class Figures:
    """The scheme's figures over all time (the contract's GetStatsResponse)."""

    accounts: Mapping[credit.AccountStatus, int]
    outstanding_fen: int
    visits: int
    bills: Mapping[billing.BillState, BillTotals]
    overdue_bills: int
    overdue_fen: int
    #: Every default over the scheme's life: (count, fen owed when it defaulted), all and repaid.
    defaults_ever: tuple[int, int] = (0, 0)
    defaults_repaid: tuple[int, int] = (0, 0)

    def accounts_in(self, status: credit.AccountStatus) -> int:
        return self.accounts.get(status, 0)

    def bills_in(self, state: billing.BillState) -> BillTotals:
        return self.bills.get(state, BillTotals())

    @property
    def credit_fen(self) -> int:
        """The self-pay share of every bill: the credit the scheme gave."""
        return sum(totals.self_pay_fen for totals in self.bills.values())

    @property
    def defaulted_fen(self) -> int:
        """What defaulted bills still owe."""
        defaulted = self.bills_in(billing.BillState.DEFAULTED)
        return defaulted.self_pay_fen - defaulted.paid_fen

    @property
    def default_rate_ppb(self) -> int:
        return self.defaulted_fen * PPB // self.credit_fen if self.credit_fen else 0
