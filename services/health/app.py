"""Health's use cases: enrolment and accounts, visits and charges, bills and payments, the timers
that remind, mark overdue and default bills, and the scheme's figures and ledger check.

A change locks the patient's account row (repository.py), loads what it decides on, lets the
domain decide (credit, insurance, billing, ledger), saves the result and records its events in
the outbox, in one transaction. The decisions a reader should know are in
docs/decisions/health-*.md."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from google.protobuf.message import Message
from sqlalchemy.orm import Session

from govmesh import clock as govmesh_clock
from govmesh import idempotency, paging, texts
from govmesh.auth import Caller
from govmesh.db import Database
from govmesh.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from govmesh.health.v1 import medical_credit_pb2 as pb
from govmesh.identity.v1 import identity_pb2
from govmesh.outbox import Outbox
from govmesh.parties import Parties, Party
from services.health import contract, queries, store
from services.health import hospitals as hospital_catalogue
from services.health.domain import billing, credit, insurance, ledger
from services.health.domain.model import Account, Charge, Payment, Visit, VisitBill, price_charge
from services.health.repository import Repository

#: What enrolment asks records for, and why (the purpose in records' audit trail).
LEGAL_BASIS = "medical_credit_enrolment"
CREDIT_SCORE_PROOF = "city_credit_score"
INSURANCE_PROOF = "medical_insurance_enrolment"
MAX_ITEM = 200
MAX_ID = 64
#: Longer than govmesh.idempotency's default: health took 200 before it adopted the runtime's.
MAX_REQUEST_ID = 200
#: The scope of PayBill's request ids: the service, not the caller, since a payment's ledger
#: posting id is "payment:<request id>" (store.payments.request_id is unique over the service).
PAYMENTS = "payments"

#: Events a transaction queues: (event, subject id).
Events = list[tuple[Message, str]]


@dataclass(frozen=True)
class ProofClaims:
    """A proof records issued: its id and its claims, as plain values (typed JSON read back)."""

    proof_id: str
    claims: dict[str, object]


class EnrolmentProofs(Protocol):
    """Records, as enrolment reaches it (clients.RecordsOverGrpc): the proof of ``proof_type``
    about ``subject_id``, drawn for the legal basis ``legal_basis``. Raises
    govmesh.errors.Unavailable when records does not answer (the enrolment then changes nothing
    and may be retried)."""

    def get(self, subject_id: str, proof_type: str, legal_basis: str) -> ProofClaims: ...


class HealthApp:
    def __init__(
        self,
        db: Database,
        credit_policy: credit.CreditPolicy = credit.DEFAULT_CREDIT_POLICY,
        insurance_policy: insurance.InsurancePolicy = insurance.DEFAULT_INSURANCE_POLICY,
        billing_policy: billing.BillingPolicy = billing.DEFAULT_POLICY,
        clock: Callable[[], datetime.datetime] = govmesh_clock.now,
        on_events: Callable[[Sequence[Message]], None] = lambda events: None,
        hospitals: Mapping[str, str] | None = None,
    ) -> None:
        self.db = db
        #: The deployment's hospitals, code -> name (services/health/hospitals.py).
        self.hospitals = hospital_catalogue.configured() if hospitals is None else hospitals
        self.credit_policy = credit_policy
        self.insurance_policy = insurance_policy
        self.billing_policy = billing_policy
        self.clock = clock
        # Told of every event after it committed (the metrics count them).
        self.on_events = on_events
        self.outbox = Outbox("health", store.outbox, store.inbox)

    # --------------------------------------------------------------------------------------------
    # Enrolment and accounts

    def enroll(
        self, request: pb.EnrollRequest, caller: Caller, parties: Parties, proofs: EnrolmentProofs
    ) -> pb.EnrollResponse:
        # A valid resident identity has never seen is enrolled too, without credit (no score on
        # record): a hospital enrols whoever comes in (docs/decisions/health-no-credit-reasons.md).
        party = self._patient(request.WhichOneof("patient"), request, parties, allow_unregistered=True)
        # Asking twice changes nothing (docs/decisions/health-re-enrolment.md).
        enrolled = self._enrolled(party.subject_id)
        if enrolled is not None:
            return enrolled
        with self.db.transaction() as session:
            # Two first enrolments at once: the second waits here and finds the first's account,
            # so the patient's data is read once (each read is an entry on their tracker).
            rows = Repository(session)
            rows.lock_enrolment(party.subject_id)
            if rows.account_of(party.subject_id) is None:
                account = self._new_account(party, proofs)
                rows.add_account(account)
                return pb.EnrollResponse(account=contract.account(account, []), created=True)
        enrolled = self._enrolled(party.subject_id)
        assert enrolled is not None  # made by the enrolment this one waited for
        return enrolled

    def _new_account(self, party: Party, proofs: EnrolmentProofs) -> Account:
        if party.registered:
            score = proofs.get(party.subject_id, CREDIT_SCORE_PROOF, LEGAL_BASIS)
            insured = proofs.get(party.subject_id, INSURANCE_PROOF, LEGAL_BASIS)
            assessment = credit.assess(score.claims, insured.claims, [], policy=self.credit_policy)
            credit_score, proof_ids = credit.read_score(score.claims), (score.proof_id, insured.proof_id)
        else:
            # Nobody has published anything about this resident (identity registers whoever a
            # department publishes about): no proof to draw, and no credit (NO_SCORE).
            assessment, credit_score, proof_ids = credit.nothing_on_record(), None, ("", "")
        return Account.enrolled(
            account_id=str(uuid.uuid4()),
            subject_id=party.subject_id,
            masked_identifier=party.masked_identifier,
            assessment=assessment,
            credit_score=credit_score,
            proof_ids=proof_ids,
            at=self.clock(),
        )

    def _enrolled(self, subject_id: str) -> pb.EnrollResponse | None:
        with self.db.read() as session:
            rows = Repository(session)
            account = rows.account_of(subject_id)
            return None if account is None else pb.EnrollResponse(account=queries.account(rows, account), created=False)

    def get_account(self, request: pb.GetAccountRequest, parties: Parties) -> pb.GetAccountResponse:
        which = request.WhichOneof("key")
        if which is None:
            raise InvalidArgument("key", "MISSING", "give identifier, subject_id or account_id")
        account = self._account_for(which, request, parties)
        with self.db.read() as session:
            return pb.GetAccountResponse(account=queries.account(Repository(session), account))

    def _patient(self, which: str | None, request: Any, parties: Parties, allow_unregistered: bool = False) -> Party:
        if which == "identifier":
            party = parties.resolve("identifier", identifier=request.identifier, allow_unregistered=allow_unregistered)
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

    def _account_for(self, which: str | None, request: Any, parties: Parties) -> Account:
        """The account a request names by identifier, subject_id or account_id."""
        if which == "account_id":
            texts.checked_text(request.account_id, "account_id", MAX_ID, required=True)
            with self.db.read() as session:
                account = Repository(session).account(request.account_id)
            if account is None:
                raise NotFound(f"account_id: no credit account {request.account_id!r}")
            return account
        party = self._patient(which, request, parties)
        with self.db.read() as session:
            account = Repository(session).account_of(party.subject_id)
        if account is None:
            raise NotFound(f"{which}: the patient is not enrolled in medical credit")
        return account

    # --------------------------------------------------------------------------------------------
    # Visits and charges

    def open_visit(self, request: pb.OpenVisitRequest, caller: Caller, parties: Parties) -> pb.OpenVisitResponse:
        hospital_id = self._acting_for(caller, request.hospital_id)
        kind = contract.visit_kind_of(request.kind)
        account = self._account_for(request.WhichOneof("patient"), request, parties)
        asked = _visit_asked(account.account_id, hospital_id, kind)
        ask = idempotency.request(caller.caller_id, request.request_id, *asked, max_length=MAX_REQUEST_ID)
        try:
            return self._open_visit(ask, account, hospital_id, kind)
        except sa.exc.IntegrityError:
            # The key is looked up under the patient's account lock, so only a visit opened at the
            # same moment for another patient under the same key gets here: now it is found.
            return self._open_visit(ask, account, hospital_id, kind)

    def _open_visit(
        self,
        ask: idempotency.IdempotentRequest,
        account: Account,
        hospital_id: str,
        kind: credit.VisitKind,
    ) -> pb.OpenVisitResponse:
        with self.db.transaction() as session:
            rows = Repository(session)
            account = rows.lock_account(account.account_id)
            opened = rows.visit_for(ask.key)
            if opened is not None:
                asked = _visit_asked(opened.account_id, opened.hospital_id, opened.kind)
                ask.replay_of(*asked, what="visit")
                return pb.OpenVisitResponse(visit=queries.visit(rows, opened), created=False)
            if not account.active:
                raise FailedPrecondition(
                    f"patient: the credit account is {account.status.value}; the patient pays at the counter",
                    field="patient",
                    reason="ACCOUNT_NOT_ACTIVE",
                )
            visit = Visit.opened(str(uuid.uuid4()), account, hospital_id, kind, self.clock())
            rows.add_visit(visit, ask.key, ask.fingerprint)
            return pb.OpenVisitResponse(visit=contract.visit(visit, []), created=True)

    def add_charge(self, request: pb.AddChargeRequest, caller: Caller) -> pb.AddChargeResponse:
        texts.checked_text(request.visit_id, "visit_id", MAX_ID, required=True)
        item = texts.checked_text(request.item.strip(), "item", MAX_ITEM, required=True)
        category = contract.category_of(request.category)
        amount = request.amount_fen
        insurance.validate_charge(category, amount, policy=self.insurance_policy)
        assert category is not None  # validate_charge refused a missing category, naming the field
        # A charge's request id is the visit's (store.charges): the visit is its scope.
        asked = _charge_asked(item, category, amount)
        ask = idempotency.request(request.visit_id, request.request_id, *asked, max_length=MAX_REQUEST_ID)
        account_id = self._owner_of_visit(request.visit_id, caller)
        now = self.clock()
        with self.db.transaction() as session:
            rows = Repository(session)
            account = rows.lock_account(account_id)
            visit = rows.visit(request.visit_id)
            charges = rows.charges(visit.visit_id)
            earlier = next((c for c in charges if c.request_id == ask.request_id), None)
            if earlier is not None:
                asked = _charge_asked(earlier.item, earlier.category, earlier.amount_fen)
                ask.replay_of(*asked, what="charge on this visit")
                return pb.AddChargeResponse(
                    charge=contract.charge(earlier), visit=contract.visit(visit, charges), created=False
                )
            split = price_charge(account, visit, charges, insurance.ChargeLine(category, amount), self.insurance_policy)
            charge = Charge.added(str(uuid.uuid4()), visit, len(charges), ask.request_id, item, split.charges[-1], now)
            rows.add_charge(charge)
            visit = visit.charged(split)
            rows.save_visit(visit)
            if charge.self_pay_fen:
                rows.save_account(account.owing(charge.self_pay_fen, now))
            return pb.AddChargeResponse(
                charge=contract.charge(charge), visit=contract.visit(visit, [*charges, charge]), created=True
            )

    def close_visit(self, request: pb.CloseVisitRequest, caller: Caller) -> pb.CloseVisitResponse:
        account_id = self._owner_of_visit(request.visit_id, caller)
        now = self.clock()
        events: Events = []
        with self.db.transaction() as session:
            rows = Repository(session)
            account = rows.lock_account(account_id)
            visit = rows.visit(request.visit_id)
            if not visit.open:
                # Closed already: its bill again.
                assert visit.bill_id is not None
                billed = queries.bill(rows, rows.bill(visit.bill_id))
                return pb.CloseVisitResponse(bill=billed, visit=queries.visit(rows, visit))
            charges = rows.charges(visit.visit_id)
            bill, transitions = self._issue(rows, account, visit, charges, now)
            self._apply(rows, account, bill, transitions, events)
            visit = visit.closed(bill.bill_id, now)
            rows.save_visit(visit)
            self._add_to_outbox(session, events)
            response = pb.CloseVisitResponse(bill=contract.bill(bill, []), visit=contract.visit(visit, charges))
        self._after_commit(events)
        return response

    def _issue(
        self, rows: Repository, account: Account, visit: Visit, charges: Sequence[Charge], now: datetime.datetime
    ) -> tuple[VisitBill, tuple[billing.Transition, ...]]:
        """The visit's bill, stored, and its charge posted; the split is the one AddCharge
        reported charge by charge (docs/decisions/health-charge-split-at-add-charge.md)."""
        split = insurance.split(charges, visit.kind, self.insurance_policy)
        if split.self_pay_fen != visit.self_pay_fen or split.total_fen != visit.total_fen:
            raise AssertionError(f"visit {visit.visit_id}: the split changed since its charges were added")
        issued = billing.issue(
            bill_id=str(uuid.uuid4()),
            visit_kind=visit.kind,
            total_fen=split.total_fen,
            insurance_fen=split.insurance_fen,
            self_pay_fen=split.self_pay_fen,
            closed_at=now,
            policy=self.billing_policy,
        )
        bill = VisitBill(
            bill=issued.bill,
            visit_id=visit.visit_id,
            account_id=account.account_id,
            subject_id=account.subject_id,
            masked_identifier=account.masked_identifier,
            hospital_id=visit.hospital_id,
            categories=split.categories,
        )
        rows.add_bill(bill)
        # A zero bill posts nothing: the ledger has no zero postings (docs/decisions/health-zero-bill.md).
        if split.total_fen:
            rows.post(
                ledger.charge(
                    bill_id=bill.bill_id,
                    patient_account_id=account.account_id,
                    hospital_id=visit.hospital_id,
                    insurance_fen=split.insurance_fen,
                    self_pay_fen=split.self_pay_fen,
                    at=now,
                )
            )
        return bill, issued.transitions

    def _owner_of_visit(self, visit_id: str, caller: Caller) -> str:
        """The account a visit belongs to (the account whose lock its changes take), once the
        caller is known to act for the visit's hospital."""
        texts.checked_text(visit_id, "visit_id", MAX_ID, required=True)
        with self.db.read() as session:
            owner = Repository(session).owner_of_visit(visit_id)
        if owner is None:
            raise NotFound(f"visit_id: no visit {visit_id!r}")
        account_id, hospital_id = owner
        self._refuse_unless_acting(caller, hospital_id)
        return account_id

    def _acting_for(self, caller: Caller, hospital_id: str, field: str = "hospital_id") -> str:
        """``hospital_id``, once it is known to be a hospital of the deployment the caller acts for."""
        texts.checked_text(hospital_id, field, MAX_ID, required=True)
        if hospital_id not in self.hospitals:
            raise InvalidArgument(field, "UNKNOWN_HOSPITAL", f"{hospital_id!r} is not a hospital of this deployment")
        self._refuse_unless_acting(caller, hospital_id)
        return hospital_id

    @staticmethod
    def _refuse_unless_acting(caller: Caller, hospital_id: str) -> None:
        if not caller.acts_for_hospital(hospital_id):
            raise PermissionDenied(f"caller {caller.caller_id!r} does not act for hospital {hospital_id}")

    # --------------------------------------------------------------------------------------------
    # Bills and payments

    def get_bill(self, request: pb.GetBillRequest, caller: Caller) -> pb.GetBillResponse:
        texts.checked_text(request.bill_id, "bill_id", MAX_ID, required=True)
        with self.db.read() as session:
            rows = Repository(session)
            bill = rows.bill(request.bill_id)
            self._refuse_unless_acting(caller, bill.hospital_id)
            return pb.GetBillResponse(bill=queries.bill(rows, bill))

    def list_bills(self, request: pb.ListBillsRequest, caller: Caller, parties: Parties) -> pb.ListBillsResponse:
        size = paging.page_size(request.page_size)
        if not request.hospital_id and not caller.acts_for_hospital("*"):
            # A hospital's system reads its own bills only: it says which of its hospitals.
            acting = ", ".join(sorted(caller.hospitals)) or "none"
            raise InvalidArgument(
                "hospital_id", "REQUIRED", f"required for a caller acting for some hospitals only ({acting})"
            )
        which = request.WhichOneof("patient")
        account = None if which is None else self._account_for(which, request, parties)
        listing = queries.BillListing(
            page_size=size,
            page_token=request.page_token,
            account_id=None if account is None else account.account_id,
            hospital_id=self._acting_for(caller, request.hospital_id) if request.hospital_id else None,
            states=contract.bill_states_of(request.states),
        )
        with self.db.read() as session:
            return queries.bills(session, listing)

    def pay_bill(self, request: pb.PayBillRequest) -> pb.PayBillResponse:
        bill_id = texts.checked_text(request.bill_id, "bill_id", MAX_ID, required=True)
        amount = request.amount_fen
        if amount <= 0:
            raise InvalidArgument("amount_fen", "NOT_POSITIVE", f"must be positive (got {amount} fen)")
        if amount > ledger.MAX_FEN:
            raise InvalidArgument("amount_fen", "OUT_OF_RANGE", f"{amount} fen is more than any bill")
        ask = idempotency.request(PAYMENTS, request.request_id, bill_id, amount, max_length=MAX_REQUEST_ID)
        with self.db.read() as session:
            account_id = Repository(session).account_of_bill(bill_id)
        if account_id is None:
            raise NotFound(f"bill_id: no bill {bill_id!r}")
        try:
            return self._pay_bill(ask, account_id, bill_id, amount)
        except sa.exc.IntegrityError:
            # The request id is looked up under the bill's account lock, so only a payment of
            # another account's bill at the same moment under the same id gets here: now it is found.
            return self._pay_bill(ask, account_id, bill_id, amount)

    def _pay_bill(
        self, ask: idempotency.IdempotentRequest, account_id: str, bill_id: str, amount: int
    ) -> pb.PayBillResponse:
        now = self.clock()
        events: Events = []
        with self.db.transaction() as session:
            rows = Repository(session)
            account = rows.lock_account(account_id)
            paid = rows.payment_for(ask.request_id)
            if paid is not None:
                ask.replay_of(paid.bill_id, paid.amount_fen, what="payment")
                billed = queries.bill(rows, rows.bill(bill_id))
                return pb.PayBillResponse(bill=billed, payment=contract.payment(paid), created=False)
            bill = rows.bill(bill_id)
            result = billing.pay(bill.bill, amount, now)
            bill = bill.now(result.bill)
            rows.save_bill(bill.bill)
            payment = Payment(str(uuid.uuid4()), ask.request_id, bill_id, amount, result.recovery, now)
            rows.add_payment(payment)
            account = account.owing(-amount, now)
            rows.save_account(account)
            self._paid(rows, account, bill, result, payment, events)
            self._add_to_outbox(session, events)
            response = pb.PayBillResponse(
                bill=queries.bill(rows, bill), payment=contract.payment(payment), created=True
            )
        self._after_commit(events)
        return response

    def _paid(
        self,
        rows: Repository,
        account: Account,
        bill: VisitBill,
        result: billing.PaymentResult,
        payment: Payment,
        events: Events,
    ) -> None:
        """Posts the payment (a recovery when the bill had defaulted) between the overdue and
        default it caught up with (docs/decisions/health-late-payment.md) and what it caused."""
        caught_up = (billing.BillEvent.OVERDUE, billing.BillEvent.DEFAULTED)
        before = [t for t in result.transitions if t.event in caught_up]
        after = [t for t in result.transitions if t not in before]
        account = self._apply(rows, account, bill, before, events)
        posting = ledger.recovery if result.recovery else ledger.payment
        rows.post(
            posting(
                bill_id=bill.bill_id,
                patient_account_id=account.account_id,
                amount_fen=payment.amount_fen,
                request_id=payment.request_id,
                at=payment.paid_at,
            )
        )
        self._apply(rows, account, bill, after, events)

    # --------------------------------------------------------------------------------------------
    # What a bill's transitions do to the account, the ledger and the outbox

    def _apply(
        self,
        rows: Repository,
        account: Account,
        bill: VisitBill,
        transitions: Sequence[billing.Transition],
        events: Events,
    ) -> Account:
        """Records what each transition does and queues its event; returns the account after."""
        for transition in transitions:
            account, event = self._transition(rows, account, bill, transition)
            if event is not None:
                events.append((event, account.subject_id))
        return account

    def _transition(
        self, rows: Repository, account: Account, bill: VisitBill, transition: billing.Transition
    ) -> tuple[Account, Message | None]:
        if transition.event is billing.BillEvent.DEFAULTED:
            rows.add_default(account.account_id, bill.bill_id, transition.outstanding_fen, transition.at)
            rows.post(
                ledger.default(bill_id=bill.bill_id, outstanding_fen=transition.outstanding_fen, at=transition.at)
            )
            account = self._reassess(rows, account, transition.at)
        elif transition.event is billing.BillEvent.CREDIT_RESTORED:
            rows.default_repaid(bill.bill_id, transition.at)
            was_active = account.active
            account = self._reassess(rows, account, transition.at)
            # Only a return to ACTIVE is published (docs/decisions/health-credit-restored.md).
            if was_active or not account.active:
                return account, None
            return account, contract.bill_event(transition, bill, account, rows.count_defaults(account.account_id))
        return account, contract.bill_event(transition, bill, account)

    def _reassess(self, rows: Repository, account: Account, at: datetime.datetime) -> Account:
        """The account after its history of defaults changed: status and limits per domain/credit.py."""
        history = rows.defaults(account.account_id)
        assessment = credit.assess_values(
            account.credit_score, account.insurance_enrolled, history, policy=self.credit_policy
        )
        account = account.reassessed(assessment, at)
        rows.save_account(account)
        return account

    def _add_to_outbox(self, session: Session, events: Events) -> None:
        if events:
            self.outbox.add_many(session, events)

    def _after_commit(self, events: Events) -> None:
        if events:
            self.on_events([event for event, _ in events])

    # --------------------------------------------------------------------------------------------
    # Timers

    def run_timers(self, now: datetime.datetime | None = None, batch: int = 500) -> int:
        """Reminders, overdue notices and defaults due by ``now`` (default: the clock), each once:
        the bill remembers what it emitted, under its account's lock. Returns the events queued."""
        at = self.clock() if now is None else now
        with self.db.read() as session:
            due = Repository(session).bills_due(at, batch)
        return sum(self._run_timer(bill_id, account_id, at) for bill_id, account_id in due)

    def _run_timer(self, bill_id: str, account_id: str, at: datetime.datetime) -> int:
        events: Events = []
        with self.db.transaction() as session:
            rows = Repository(session)
            account = rows.lock_account(account_id)
            bill = rows.bill(bill_id)
            update = billing.due_transitions(bill.bill, at)
            bill = bill.now(update.bill)
            rows.save_bill(bill.bill)
            self._apply(rows, account, bill, update.transitions, events)
            self._add_to_outbox(session, events)
        self._after_commit(events)
        return len(events)

    # --------------------------------------------------------------------------------------------
    # Figures and the ledger check

    def get_stats(self) -> pb.GetStatsResponse:
        now = self.clock()
        with self.db.read() as session:
            figures = queries.figures(session, now)
        return contract.stats(figures, now)

    def verify_ledger(self) -> pb.VerifyLedgerResponse:
        """Every posting and the bills, read in one snapshot, proved by ledger.verify (and each
        account's outstanding against its bills and open visits): queries.ledger_check."""
        now = self.clock()
        with self.db.read() as session:
            verification, problems = queries.ledger_check(session)
        return contract.ledger_check(verification, problems, now)


# ------------------------------------------------------------------------------------------------
# What a request with a request id asked (govmesh.idempotency). A replay compares the fingerprint
# of what the first attempt stored, computed from the stored row: charges and payments keep no
# fingerprint, and visits opened before health adopted govmesh.idempotency keep one of another
# formula, so every stored request replays alike.


def _visit_asked(account_id: str, hospital_id: str, kind: credit.VisitKind) -> tuple[object, ...]:
    return (account_id, hospital_id, kind.value)


def _charge_asked(item: str, category: insurance.ChargeCategory, amount_fen: int) -> tuple[object, ...]:
    return (item, category.value, amount_fen)
