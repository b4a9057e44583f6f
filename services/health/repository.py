"""Health's rows (store.py) as domain objects and back, within the caller's session, and the
account row lock.

The credit account row is the lock of everything the account owns: a use case that changes a
visit, a charge, a bill, a payment or a posting of an account first takes ``lock_account``
(SELECT ... FOR UPDATE on PostgreSQL; SQLite serialises writers at BEGIN IMMEDIATE) and then
reads again what it decides on. Exactly one account row is locked per transaction, so there is
no lock order to get wrong (docs/decisions/health-account-row-lock.md)."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from govmesh.clock import as_utc
from govmesh.errors import NotFound
from services.health import store
from services.health.domain import billing, credit, insurance, ledger
from services.health.domain.model import Account, Charge, Payment, Visit, VisitBill, VisitState


class Repository:
    """The rows one transaction (or one read) sees. Lookups by id raise NotFound naming the
    request's field; lookups by a request key return None when there is none."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # --------------------------------------------------------------------------------------------
    # Accounts and their defaults

    def account(self, account_id: str) -> Account | None:
        row = self.session.execute(sa.select(store.accounts).where(store.accounts.c.account_id == account_id)).first()
        return None if row is None else account(row)

    def lock_enrolment(self, subject_id: str) -> None:
        """Until this transaction ends, no other enrolment of ``subject_id`` proceeds: the first
        reads the patient's data and makes the account, the others then find it. PostgreSQL: a
        transaction-scoped advisory lock on the subject; SQLite: the write transaction already
        holds the database's one write lock."""
        if self.session.get_bind().dialect.name == "postgresql":
            key = sa.func.hashtextextended(sa.literal(f"health-enrolment:{subject_id}"), 0)
            self.session.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))

    def account_of(self, subject_id: str) -> Account | None:
        row = self.session.execute(sa.select(store.accounts).where(store.accounts.c.subject_id == subject_id)).first()
        return None if row is None else account(row)

    def lock_account(self, account_id: str) -> Account:
        """The account, locked until the transaction ends."""
        row = self.session.execute(
            sa.select(store.accounts).where(store.accounts.c.account_id == account_id).with_for_update()
        ).first()
        if row is None:
            raise NotFound(f"account_id: no credit account {account_id!r}")
        return account(row)

    def add_account(self, values: Account) -> None:
        """Raises IntegrityError when the subject already has an account."""
        self.session.execute(
            store.accounts.insert().values(
                account_id=values.account_id,
                subject_id=values.subject_id,
                masked_identifier=values.masked_identifier,
                credit_score=values.credit_score,
                credit_score_proof_id=values.credit_score_proof_id,
                insurance_enrolled=values.insurance_enrolled,
                insurance_proof_id=values.insurance_proof_id,
                enrolled_at=values.enrolled_at,
                **_standing(values),
            )
        )

    def save_account(self, values: Account) -> None:
        """Writes what changes on a locked account: its standing and what it owes."""
        self.session.execute(
            store.accounts.update().where(store.accounts.c.account_id == values.account_id).values(**_standing(values))
        )

    def defaults(self, account_id: str) -> list[credit.DefaultRecord]:
        """The account's defaulted bills, oldest first."""
        table = store.defaults
        rows = self.session.execute(
            sa.select(table).where(table.c.account_id == account_id).order_by(table.c.defaulted_at, table.c.bill_id)
        )
        return [
            credit.DefaultRecord(r.bill_id, r.amount_fen, as_utc(r.defaulted_at), as_utc(r.repaid_at)) for r in rows
        ]

    def add_default(self, account_id: str, bill_id: str, amount_fen: int, at: datetime.datetime) -> None:
        self.session.execute(
            store.defaults.insert().values(
                bill_id=bill_id, account_id=account_id, amount_fen=amount_fen, defaulted_at=at
            )
        )

    def default_repaid(self, bill_id: str, at: datetime.datetime) -> None:
        self.session.execute(store.defaults.update().where(store.defaults.c.bill_id == bill_id).values(repaid_at=at))

    def count_defaults(self, account_id: str) -> int:
        count: int = self.session.execute(
            sa.select(sa.func.count()).select_from(store.defaults).where(store.defaults.c.account_id == account_id)
        ).scalar_one()
        return count

    # --------------------------------------------------------------------------------------------
    # Visits and charges

    def visit(self, visit_id: str) -> Visit:
        row = self.session.execute(sa.select(store.visits).where(store.visits.c.visit_id == visit_id)).first()
        if row is None:
            raise NotFound(f"visit_id: no visit {visit_id!r}")
        return visit(row)

    def owner_of_visit(self, visit_id: str) -> tuple[str, str] | None:
        """The visit's account and hospital."""
        table = store.visits
        row = self.session.execute(
            sa.select(table.c.account_id, table.c.hospital_id).where(table.c.visit_id == visit_id)
        ).first()
        return None if row is None else (row.account_id, row.hospital_id)

    def visit_for(self, request_key: str) -> Visit | None:
        """The visit an OpenVisit request key opened."""
        row = self.session.execute(sa.select(store.visits).where(store.visits.c.request_key == request_key)).first()
        return None if row is None else visit(row)

    def add_visit(self, values: Visit, request_key: str, fingerprint: str) -> None:
        """Raises IntegrityError when the request key opened another visit meanwhile."""
        self.session.execute(
            store.visits.insert().values(
                visit_id=values.visit_id,
                request_key=request_key,
                request_fingerprint=fingerprint,
                account_id=values.account_id,
                subject_id=values.subject_id,
                hospital_id=values.hospital_id,
                kind=values.kind.value,
                opened_at=values.opened_at,
                **_visit_progress(values),
            )
        )

    def save_visit(self, values: Visit) -> None:
        self.session.execute(
            store.visits.update().where(store.visits.c.visit_id == values.visit_id).values(**_visit_progress(values))
        )

    def charges(self, visit_id: str) -> list[Charge]:
        """The visit's charges in the order they were added."""
        rows = self.session.execute(
            sa.select(store.charges).where(store.charges.c.visit_id == visit_id).order_by(store.charges.c.seq)
        )
        return [charge(r) for r in rows]

    def charge_for(self, visit_id: str, request_id: str) -> Charge | None:
        row = self.session.execute(
            sa.select(store.charges).where(
                store.charges.c.visit_id == visit_id, store.charges.c.request_id == request_id
            )
        ).first()
        return None if row is None else charge(row)

    def add_charge(self, values: Charge) -> None:
        self.session.execute(
            store.charges.insert().values(
                charge_id=values.charge_id,
                visit_id=values.visit_id,
                seq=values.seq,
                request_id=values.request_id,
                item=values.item,
                category=values.category.value,
                amount_fen=values.amount_fen,
                insurance_fen=values.insurance_fen,
                self_pay_fen=values.self_pay_fen,
                added_at=values.added_at,
            )
        )

    # --------------------------------------------------------------------------------------------
    # Bills, payments and the ledger

    def bill(self, bill_id: str) -> VisitBill:
        row = self.session.execute(sa.select(store.bills).where(store.bills.c.bill_id == bill_id)).first()
        if row is None:
            raise NotFound(f"bill_id: no bill {bill_id!r}")
        return visit_bill(row)

    def account_of_bill(self, bill_id: str) -> str | None:
        account_id: str | None = self.session.execute(
            sa.select(store.bills.c.account_id).where(store.bills.c.bill_id == bill_id)
        ).scalar_one_or_none()
        return account_id

    def bills_due(self, at: datetime.datetime, batch: int) -> list[tuple[str, str]]:
        """(bill id, account id) of the bills the timer has something to do for by ``at``, the
        longest due first."""
        bills = store.bills
        rows = self.session.execute(
            sa.select(bills.c.bill_id, bills.c.account_id)
            .where(bills.c.next_timer_at <= at)
            .order_by(bills.c.next_timer_at, bills.c.bill_id)
            .limit(batch)
        )
        return [(bill_id, account_id) for bill_id, account_id in rows]

    def add_bill(self, values: VisitBill) -> None:
        state = values.bill
        self.session.execute(
            store.bills.insert().values(
                bill_id=state.bill_id,
                visit_id=values.visit_id,
                account_id=values.account_id,
                subject_id=values.subject_id,
                masked_identifier=values.masked_identifier,
                hospital_id=values.hospital_id,
                visit_kind=state.visit_kind.value,
                total_fen=state.total_fen,
                insurance_fen=state.insurance_fen,
                self_pay_fen=state.self_pay_fen,
                category_shares=json.dumps(
                    [
                        [c.category.value, c.insurance_ratio_bp, c.total_fen, c.insurance_fen, c.self_pay_fen]
                        for c in values.categories
                    ]
                ),
                issued_at=state.issued_at,
                reminder_at=state.reminder_at,
                due_at=state.due_at,
                grace_until=state.grace_until,
                **_bill_progress(state),
            )
        )

    def save_bill(self, state: billing.Bill) -> None:
        self.session.execute(
            store.bills.update().where(store.bills.c.bill_id == state.bill_id).values(**_bill_progress(state))
        )

    def payments(self, bill_ids: Iterable[str]) -> dict[str, list[Payment]]:
        """The payments of each bill, oldest first, in one query (a bill without one is absent)."""
        table = store.payments
        rows = self.session.execute(
            sa.select(table).where(table.c.bill_id.in_(list(bill_ids))).order_by(table.c.paid_at, table.c.payment_id)
        )
        found: dict[str, list[Payment]] = {}
        for row in rows:
            found.setdefault(row.bill_id, []).append(payment(row))
        return found

    def payment_for(self, request_id: str) -> Payment | None:
        row = self.session.execute(sa.select(store.payments).where(store.payments.c.request_id == request_id)).first()
        return None if row is None else payment(row)

    def add_payment(self, values: Payment) -> None:
        """Raises IntegrityError when the request id paid another account's bill meanwhile."""
        self.session.execute(
            store.payments.insert().values(
                payment_id=values.payment_id,
                request_id=values.request_id,
                bill_id=values.bill_id,
                amount_fen=values.amount_fen,
                recovery=values.recovery,
                paid_at=values.paid_at,
            )
        )

    def post(self, transaction: ledger.Transaction) -> None:
        self.session.execute(
            store.ledger_transactions.insert().values(
                posting_id=transaction.posting_id,
                kind=transaction.kind.value,
                bill_id=transaction.bill_id,
                request_id=transaction.request_id,
                posted_at=transaction.posted_at,
            )
        )
        self.session.execute(
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

    def postings(self) -> list[ledger.Transaction]:
        """The whole ledger, in the order it was posted."""
        lines: dict[str, list[ledger.Entry]] = {}
        entries = store.ledger_entries
        for entry in self.session.execute(sa.select(entries).order_by(entries.c.posting_id, entries.c.line)):
            lines.setdefault(entry.posting_id, []).append(
                ledger.Entry(
                    ledger.Account(ledger.LedgerAccountKind(entry.account_kind), entry.account_id), entry.amount_fen
                )
            )
        transactions = store.ledger_transactions
        return [
            ledger.Transaction.stored(
                posting_id=p.posting_id,
                kind=ledger.TransactionKind(p.kind),
                bill_id=p.bill_id,
                request_id=p.request_id,
                posted_at=as_utc(p.posted_at),
                entries=lines.get(p.posting_id, []),
            )
            for p in self.session.execute(sa.select(transactions).order_by(transactions.c.seq))
        ]


# ------------------------------------------------------------------------------------------------
# Rows to domain objects (the read side reads them too) and what changes back to columns


def account(row: Any) -> Account:
    return Account(
        account_id=row.account_id,
        subject_id=row.subject_id,
        masked_identifier=row.masked_identifier,
        status=credit.AccountStatus(row.status),
        tier=credit.CreditTier(row.tier),
        no_credit_reason=None if row.no_credit_reason is None else credit.NoCreditReason(row.no_credit_reason),
        credit_score=row.credit_score,
        credit_score_proof_id=row.credit_score_proof_id,
        insurance_enrolled=row.insurance_enrolled,
        insurance_proof_id=row.insurance_proof_id,
        outpatient_limit_fen=row.outpatient_limit_fen,
        inpatient_limit_fen=row.inpatient_limit_fen,
        outstanding_fen=row.outstanding_fen,
        enrolled_at=as_utc(row.enrolled_at),
        updated_at=as_utc(row.updated_at),
        suspended_at=as_utc(row.suspended_at),
    )


def _standing(values: Account) -> dict[str, object]:
    return {
        "status": values.status.value,
        "tier": values.tier.value,
        "no_credit_reason": None if values.no_credit_reason is None else values.no_credit_reason.value,
        "outpatient_limit_fen": values.outpatient_limit_fen,
        "inpatient_limit_fen": values.inpatient_limit_fen,
        "outstanding_fen": values.outstanding_fen,
        "updated_at": values.updated_at,
        "suspended_at": values.suspended_at,
    }


def visit(row: Any) -> Visit:
    return Visit(
        visit_id=row.visit_id,
        account_id=row.account_id,
        subject_id=row.subject_id,
        hospital_id=row.hospital_id,
        kind=credit.VisitKind(row.kind),
        state=VisitState(row.state),
        total_fen=row.total_fen,
        insurance_fen=row.insurance_fen,
        self_pay_fen=row.self_pay_fen,
        charge_count=row.charge_count,
        opened_at=as_utc(row.opened_at),
        closed_at=as_utc(row.closed_at),
        bill_id=row.bill_id,
    )


def _visit_progress(values: Visit) -> dict[str, object]:
    return {
        "state": values.state.value,
        "total_fen": values.total_fen,
        "insurance_fen": values.insurance_fen,
        "self_pay_fen": values.self_pay_fen,
        "charge_count": values.charge_count,
        "closed_at": values.closed_at,
        "bill_id": values.bill_id,
    }


def charge(row: Any) -> Charge:
    return Charge(
        charge_id=row.charge_id,
        visit_id=row.visit_id,
        seq=row.seq,
        request_id=row.request_id,
        item=row.item,
        category=insurance.ChargeCategory(row.category),
        amount_fen=row.amount_fen,
        insurance_fen=row.insurance_fen,
        self_pay_fen=row.self_pay_fen,
        added_at=as_utc(row.added_at),
    )


def visit_bill(row: Any) -> VisitBill:
    state = billing.Bill(
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
        reminded_at=as_utc(row.reminded_at),
        overdue_at=as_utc(row.overdue_at),
        defaulted_at=as_utc(row.defaulted_at),
        defaulted_fen=row.defaulted_fen,
        settled_at=as_utc(row.settled_at),
    )
    return VisitBill(
        bill=state,
        visit_id=row.visit_id,
        account_id=row.account_id,
        subject_id=row.subject_id,
        masked_identifier=row.masked_identifier,
        hospital_id=row.hospital_id,
        categories=tuple(
            insurance.CategoryShare(insurance.ChargeCategory(category), ratio, total, insured, self_pay)
            for category, ratio, total, insured, self_pay in json.loads(row.category_shares)
        ),
    )


def _bill_progress(state: billing.Bill) -> dict[str, object]:
    return {
        "state": state.state.value,
        "paid_fen": state.paid_fen,
        "payments": state.payments,
        "reminded_at": state.reminded_at,
        "overdue_at": state.overdue_at,
        "defaulted_at": state.defaulted_at,
        "defaulted_fen": state.defaulted_fen,
        "settled_at": state.settled_at,
        "next_timer_at": billing.next_timer_at(state),
    }


def payment(row: Any) -> Payment:
    return Payment(
        payment_id=row.payment_id,
        request_id=row.request_id,
        bill_id=row.bill_id,
        amount_fen=row.amount_fen,
        recovery=row.recovery,
        paid_at=as_utc(row.paid_at),
    )
