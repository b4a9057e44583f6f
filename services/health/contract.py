"""Health's contract (govmesh.health.v1) to domain values and back: values in, values out, never a
session or a query. The domain enums' names are the contract's without the prefix
(govmesh.enums maps them); money is fen and times UTC on both sides."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from typing import Any

from google.protobuf.message import Message

from govmesh.clock import timestamp
from govmesh.enums import from_proto, to_proto
from govmesh.errors import InvalidArgument
from govmesh.health.v1 import events_pb2
from govmesh.health.v1 import medical_credit_pb2 as pb
from services.health.domain import billing, credit, insurance, ledger
from services.health.domain.model import Account, Charge, Figures, Payment, Visit, VisitBill, VisitState

# ------------------------------------------------------------------------------------------------
# Enums


def account_status(status: credit.AccountStatus) -> pb.AccountStatus.ValueType:
    return pb.AccountStatus.ValueType(to_proto(pb.AccountStatus, "ACCOUNT_STATUS_", status))


def credit_tier(tier: credit.CreditTier) -> pb.CreditTier.ValueType:
    return pb.CreditTier.ValueType(to_proto(pb.CreditTier, "CREDIT_TIER_", tier))


def bill_state(state: billing.BillState) -> pb.BillState.ValueType:
    return pb.BillState.ValueType(to_proto(pb.BillState, "BILL_STATE_", state))


def _no_credit_reason(reason: credit.NoCreditReason) -> pb.NoCreditReason.ValueType:
    return pb.NoCreditReason.ValueType(to_proto(pb.NoCreditReason, "NO_CREDIT_REASON_", reason))


def _visit_kind(kind: credit.VisitKind) -> pb.VisitKind.ValueType:
    return pb.VisitKind.ValueType(to_proto(pb.VisitKind, "VISIT_KIND_", kind))


def _visit_state(state: VisitState) -> pb.VisitState.ValueType:
    return pb.VisitState.ValueType(to_proto(pb.VisitState, "VISIT_STATE_", state))


def _category(category: insurance.ChargeCategory) -> pb.ChargeCategory.ValueType:
    return pb.ChargeCategory.ValueType(to_proto(pb.ChargeCategory, "CHARGE_CATEGORY_", category))


def _ledger_kind(kind: ledger.LedgerAccountKind) -> pb.LedgerAccountKind.ValueType:
    return pb.LedgerAccountKind.ValueType(to_proto(pb.LedgerAccountKind, "LEDGER_ACCOUNT_KIND_", kind))


def visit_kind_of(value: int) -> credit.VisitKind:
    """A request's visit kind; INVALID_ARGUMENT naming ``kind`` when it names none."""
    kind = from_proto(credit.VisitKind, pb.VisitKind, "VISIT_KIND_", value)
    if kind is None:
        raise InvalidArgument("kind", "UNSPECIFIED", "must be VISIT_KIND_OUTPATIENT or VISIT_KIND_INPATIENT")
    return kind


def category_of(value: int) -> insurance.ChargeCategory | None:
    """A request's charge category; None when it names none (insurance.validate_charge refuses
    that, naming the field)."""
    return from_proto(insurance.ChargeCategory, pb.ChargeCategory, "CHARGE_CATEGORY_", value)


def bill_states_of(values: Iterable[int]) -> list[billing.BillState]:
    """A listing's bill states; INVALID_ARGUMENT naming ``states`` for a value that is none."""
    states = []
    for value in values:
        state = from_proto(billing.BillState, pb.BillState, "BILL_STATE_", value)
        if state is None:
            raise InvalidArgument("states", "UNKNOWN", f"{value} is not a bill state")
        states.append(state)
    return states


# ------------------------------------------------------------------------------------------------
# Messages


def account(values: Account, defaults: Sequence[credit.DefaultRecord]) -> pb.CreditAccount:
    """The account as the contract shows it, with its history of defaults (oldest first)."""
    message = pb.CreditAccount(
        account_id=values.account_id,
        subject_id=values.subject_id,
        masked_identifier=values.masked_identifier,
        status=account_status(values.status),
        tier=credit_tier(values.tier),
        credit_score=values.credit_score or 0,
        credit_score_proof_id=values.credit_score_proof_id,
        insurance_enrolled=values.insurance_enrolled,
        insurance_proof_id=values.insurance_proof_id,
        outpatient_limit_fen=values.outpatient_limit_fen,
        inpatient_limit_fen=values.inpatient_limit_fen,
        available_outpatient_fen=values.available_fen(credit.VisitKind.OUTPATIENT),
        available_inpatient_fen=values.available_fen(credit.VisitKind.INPATIENT),
        outstanding_fen=values.outstanding_fen,
        enrolled_at=timestamp(values.enrolled_at),
        updated_at=timestamp(values.updated_at),
        defaults=[_default(record) for record in defaults],
    )
    if values.no_credit_reason is not None:
        message.no_credit_reason = _no_credit_reason(values.no_credit_reason)
    if values.suspended_at is not None:
        message.suspended_at.CopyFrom(timestamp(values.suspended_at))
    return message


def _default(record: credit.DefaultRecord) -> pb.DefaultRecord:
    message = pb.DefaultRecord(
        bill_id=record.bill_id, amount_fen=record.amount_fen, defaulted_at=timestamp(record.defaulted_at)
    )
    if record.repaid_at is not None:
        message.repaid_at.CopyFrom(timestamp(record.repaid_at))
    return message


def charge(values: Charge) -> pb.Charge:
    return pb.Charge(
        charge_id=values.charge_id,
        visit_id=values.visit_id,
        item=values.item,
        category=_category(values.category),
        amount_fen=values.amount_fen,
        insurance_fen=values.insurance_fen,
        self_pay_fen=values.self_pay_fen,
        added_at=timestamp(values.added_at),
    )


def visit(values: Visit, charges: Sequence[Charge]) -> pb.Visit:
    """The visit with its charges, in the order they were added."""
    message = pb.Visit(
        visit_id=values.visit_id,
        account_id=values.account_id,
        subject_id=values.subject_id,
        hospital_id=values.hospital_id,
        kind=_visit_kind(values.kind),
        state=_visit_state(values.state),
        charges=[charge(c) for c in charges],
        total_fen=values.total_fen,
        insurance_fen=values.insurance_fen,
        self_pay_fen=values.self_pay_fen,
        opened_at=timestamp(values.opened_at),
        bill_id=values.bill_id or "",
    )
    if values.closed_at is not None:
        message.closed_at.CopyFrom(timestamp(values.closed_at))
    return message


def payment(values: Payment) -> pb.Payment:
    return pb.Payment(
        payment_id=values.payment_id,
        bill_id=values.bill_id,
        amount_fen=values.amount_fen,
        request_id=values.request_id,
        paid_at=timestamp(values.paid_at),
    )


def bill(values: VisitBill, payments: Sequence[Payment]) -> pb.Bill:
    """The bill with its payments, oldest first."""
    state = values.bill
    message = pb.Bill(
        bill_id=state.bill_id,
        visit_id=values.visit_id,
        account_id=values.account_id,
        subject_id=values.subject_id,
        masked_identifier=values.masked_identifier,
        hospital_id=values.hospital_id,
        visit_kind=_visit_kind(state.visit_kind),
        state=bill_state(state.state),
        total_fen=state.total_fen,
        insurance_fen=state.insurance_fen,
        self_pay_fen=state.self_pay_fen,
        category_shares=[_category_share(share) for share in values.categories],
        paid_fen=state.paid_fen,
        outstanding_fen=state.outstanding_fen,
        payments=[payment(p) for p in payments],
        issued_at=timestamp(state.issued_at),
        due_at=timestamp(state.due_at),
        grace_until=timestamp(state.grace_until),
    )
    if state.defaulted_at is not None:
        message.defaulted_at.CopyFrom(timestamp(state.defaulted_at))
    if state.settled_at is not None:
        message.settled_at.CopyFrom(timestamp(state.settled_at))
    return message


def _category_share(share: insurance.CategoryShare) -> pb.CategoryShare:
    return pb.CategoryShare(
        category=_category(share.category),
        insurance_ratio_bp=share.insurance_ratio_bp,
        total_fen=share.total_fen,
        insurance_fen=share.insurance_fen,
        self_pay_fen=share.self_pay_fen,
    )


def stats(figures: Figures, as_of: datetime.datetime) -> pb.GetStatsResponse:
    totals = figures.bills.values()
    return pb.GetStatsResponse(
        as_of=timestamp(as_of),
        enrolled_accounts=sum(figures.accounts.values()),
        active_accounts=figures.accounts_in(credit.AccountStatus.ACTIVE),
        suspended_accounts=figures.accounts_in(credit.AccountStatus.SUSPENDED),
        visits=figures.visits,
        bills=sum(t.bills for t in totals),
        settled_bills=figures.bills_in(billing.BillState.SETTLED).bills,
        defaulted_bills=figures.bills_in(billing.BillState.DEFAULTED).bills,
        total_credit_fen=figures.credit_fen,
        total_repaid_fen=sum(t.paid_fen for t in totals),
        total_defaulted_fen=figures.defaulted_fen,
        total_insurance_fen=sum(t.insurance_fen for t in totals),
        default_rate_ppb=figures.default_rate_ppb,
        overdue_bills=figures.overdue_bills,
        overdue_fen=figures.overdue_fen,
        outstanding_fen=figures.outstanding_fen,
        defaults_ever=figures.defaults_ever[0],
        defaulted_ever_fen=figures.defaults_ever[1],
        defaults_repaid=figures.defaults_repaid[0],
        repaid_after_default_fen=figures.defaults_repaid[1],
    )


def ledger_check(
    verification: ledger.Verification, problems: Sequence[str], checked_at: datetime.datetime
) -> pb.VerifyLedgerResponse:
    """``balanced`` is the contract's (every posting balances, the balances sum to zero);
    ``message`` names every other invariant that fails, or says that every one holds."""
    return pb.VerifyLedgerResponse(
        balanced=verification.balanced,
        postings_checked=verification.postings_checked,
        balances=[
            pb.LedgerBalance(kind=_ledger_kind(kind), balance_fen=balance)
            for kind, balance in verification.balances_by_kind.items()
        ],
        first_unbalanced_posting_id=verification.first_unbalanced_posting_id,
        message="; ".join(problems) if problems else verification.message,
        checked_at=timestamp(checked_at),
    )


# ------------------------------------------------------------------------------------------------
# Events: billing.BillEvent values are their routing keys.


def bill_event(transition: billing.Transition, bill: VisitBill, account: Account, defaults: int = 0) -> Message:
    """The event ``transition`` of ``bill`` publishes, ``account`` as it stands after it
    (``defaults``: how many the account has had, for credit_restored)."""
    state = bill.bill
    about: dict[str, Any] = {
        "bill_id": state.bill_id,
        "account_id": account.account_id,
        "subject_id": account.subject_id,
        "masked_identifier": account.masked_identifier,
    }
    if transition.event is billing.BillEvent.CREDIT_RESTORED:
        return events_pb2.CreditRestored(
            **about, **_standing(account), defaults=defaults, restored_at=timestamp(transition.at)
        )
    about["hospital_id"] = bill.hospital_id
    if transition.event is billing.BillEvent.DUE_SOON:
        return events_pb2.BillDueSoon(
            **about,
            self_pay_fen=state.self_pay_fen,
            outstanding_fen=transition.outstanding_fen,
            due_at=timestamp(state.due_at),
            reminded_at=timestamp(transition.at),
        )
    if transition.event is billing.BillEvent.OVERDUE:
        return events_pb2.BillOverdue(
            **about,
            outstanding_fen=transition.outstanding_fen,
            due_at=timestamp(state.due_at),
            grace_until=timestamp(state.grace_until),
        )
    if transition.event is billing.BillEvent.DEFAULTED:
        return events_pb2.BillDefaulted(
            **about,
            **_standing(account),
            outstanding_fen=transition.outstanding_fen,
            due_at=timestamp(state.due_at),
            defaulted_at=timestamp(transition.at),
        )
    assert transition.event is billing.BillEvent.SETTLED, transition.event
    return events_pb2.BillSettled(
        **about,
        total_fen=state.total_fen,
        insurance_fen=state.insurance_fen,
        self_pay_fen=state.self_pay_fen,
        payments=state.payments,
        due_at=timestamp(state.due_at),
        settled_at=timestamp(transition.at),
        previous_state=bill_state(transition.previous_state),
    )


def _standing(account: Account) -> dict[str, Any]:
    """The account's status, tier and limits, as the default and restoration events carry them."""
    return {
        "account_status": account_status(account.status),
        "tier": credit_tier(account.tier),
        "outpatient_limit_fen": account.outpatient_limit_fen,
        "inpatient_limit_fen": account.inpatient_limit_fen,
    }
