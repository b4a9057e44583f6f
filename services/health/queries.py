"""Health's read side: an account, a visit or a bill as the contract shows it, the listing of bills,
the scheme's figures and the ledger's verification walk. Each reads in the caller's session
(one snapshot) and in as few queries as the answer needs: a page of bills and all their
payments are two."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from govmesh import paging
from govmesh.clock import as_utc
from govmesh.health.v1 import medical_credit_pb2 as pb
from services.health import contract, repository, store
from services.health.domain import billing, credit, ledger
from services.health.domain.model import Account, BillTotals, Figures, Visit, VisitBill, VisitState
from services.health.repository import Repository


def account(rows: Repository, values: Account) -> pb.CreditAccount:
    return contract.account(values, rows.defaults(values.account_id))


def visit(rows: Repository, values: Visit) -> pb.Visit:
    return contract.visit(values, rows.charges(values.visit_id))


def bill(rows: Repository, values: VisitBill) -> pb.Bill:
    return contract.bill(values, rows.payments([values.bill_id]).get(values.bill_id, []))


@dataclass(frozen=True)
class BillListing:
    """Which bills a ListBills request asks for (every filter given must hold), and which page."""

    page_size: int
    page_token: str = ""
    account_id: str | None = None
    hospital_id: str | None = None
    states: Sequence[billing.BillState] = ()


def bills(session: Session, listing: BillListing) -> pb.ListBillsResponse:
    """Newest first, by (issued_at, bill_id) from the page token on; INVALID_ARGUMENT naming
    page_token for a token this service did not give."""
    table = store.bills
    query = sa.select(table)
    if listing.account_id is not None:
        query = query.where(table.c.account_id == listing.account_id)
    if listing.hospital_id is not None:
        query = query.where(table.c.hospital_id == listing.hospital_id)
    if listing.states:
        query = query.where(table.c.state.in_([state.value for state in listing.states]))
    if listing.page_token:
        at, last_id = paging.decode_token(listing.page_token)
        query = query.where(sa.or_(table.c.issued_at < at, sa.and_(table.c.issued_at == at, table.c.bill_id < last_id)))
    size = listing.page_size
    rows = session.execute(query.order_by(table.c.issued_at.desc(), table.c.bill_id.desc()).limit(size + 1)).all()
    page = [repository.visit_bill(row) for row in rows[:size]]
    payments = Repository(session).payments(b.bill_id for b in page)
    response = pb.ListBillsResponse(bills=[contract.bill(b, payments.get(b.bill_id, [])) for b in page])
    if len(rows) > size:
        last = rows[size - 1]
        response.next_page_token = paging.encode_token(as_utc(last.issued_at), last.bill_id)
    return response


def figures(session: Session, now: datetime.datetime) -> Figures:
    """The scheme's figures as of ``now`` (a bill past its due time and not settled is overdue)."""
    accounts, bills = store.accounts, store.bills
    by_status = session.execute(sa.select(accounts.c.status, sa.func.count()).group_by(accounts.c.status)).all()
    outstanding = session.execute(sa.select(sa.func.coalesce(sa.func.sum(accounts.c.outstanding_fen), 0))).scalar_one()
    visits = session.execute(sa.select(sa.func.count()).select_from(store.visits)).scalar_one()
    by_state = session.execute(
        sa.select(
            bills.c.state,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(bills.c.self_pay_fen), 0),
            sa.func.coalesce(sa.func.sum(bills.c.paid_fen), 0),
            sa.func.coalesce(sa.func.sum(bills.c.insurance_fen), 0),
        ).group_by(bills.c.state)
    ).all()
    overdue_bills, overdue_fen = session.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(bills.c.self_pay_fen - bills.c.paid_fen), 0)).where(
            bills.c.state != billing.BillState.SETTLED.value, bills.c.due_at <= now
        )
    ).one()
    defaults = store.defaults
    ever, ever_fen, repaid, repaid_fen = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(defaults.c.amount_fen), 0),
            sa.func.count(defaults.c.repaid_at),
            sa.func.coalesce(sa.func.sum(sa.case((defaults.c.repaid_at.is_not(None), defaults.c.amount_fen))), 0),
        )
    ).one()
    return Figures(
        defaults_ever=(int(ever), int(ever_fen)),
        defaults_repaid=(int(repaid), int(repaid_fen)),
        accounts={credit.AccountStatus(status): int(count) for status, count in by_status},
        outstanding_fen=int(outstanding),
        visits=int(visits),
        bills={
            billing.BillState(state): BillTotals(int(count), int(self_pay), int(paid), int(insured))
            for state, count, self_pay, paid, insured in by_state
        },
        overdue_bills=int(overdue_bills),
        overdue_fen=int(overdue_fen),
    )


def ledger_check(session: Session) -> tuple[ledger.Verification, list[str]]:
    """Every posting and the bills, read in the caller's one snapshot, proved by ledger.verify;
    the problems are ledger.verify's (the bills' and patients' receivables, the credit fund per
    bill) and each account whose outstanding is not its bills' and open visits' self-pay."""
    bill_rows = session.execute(
        sa.select(
            store.bills.c.bill_id,
            store.bills.c.account_id,
            store.bills.c.self_pay_fen,
            store.bills.c.paid_fen,
            store.bills.c.defaulted_at,
        )
    ).all()
    verification = ledger.verify(
        Repository(session).postings(),
        bills={
            b.bill_id: ledger.BillOutstanding(b.account_id, b.self_pay_fen - b.paid_fen, b.defaulted_at is not None)
            for b in bill_rows
        },
    )
    owed: dict[str, int] = {}
    for b in bill_rows:
        owed[b.account_id] = owed.get(b.account_id, 0) + b.self_pay_fen - b.paid_fen
    visits = store.visits
    on_open_visits = session.execute(
        sa.select(visits.c.account_id, sa.func.sum(visits.c.self_pay_fen))
        .where(visits.c.state == VisitState.OPEN.value)
        .group_by(visits.c.account_id)
    ).all()
    for account_id, self_pay in on_open_visits:
        owed[account_id] = owed.get(account_id, 0) + int(self_pay or 0)
    problems = [str(p) for p in verification.problems]
    for account_id, outstanding in session.execute(
        sa.select(store.accounts.c.account_id, store.accounts.c.outstanding_fen)
    ):
        expected = owed.get(account_id, 0)
        if outstanding != expected:
            problems.append(
                f"ACCOUNT_OUTSTANDING_MISMATCH {account_id}: the account says {outstanding} "
                f"fen outstanding, its bills and open visits {expected} fen"
            )
    return verification, problems
