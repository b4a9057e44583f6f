"""What health keeps, as its use cases load and save it (services/health/domain/model.py): a
charge is priced against the visit and the account's credit, an account takes a new assessment,
and the scheme's figures derive their totals."""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from govmesh.errors import FailedPrecondition
from services.health.domain import billing, credit, insurance
from services.health.domain.model import Account, BillTotals, Charge, Figures, Visit, price_charge

AT = datetime.datetime(2019, 3, 10, 8, 0, tzinfo=datetime.UTC)
C = insurance.ChargeCategory
POLICY = insurance.DEFAULT_INSURANCE_POLICY


def account(outstanding_fen: int = 0, status: credit.AccountStatus = credit.AccountStatus.ACTIVE) -> Account:
    assessment = credit.assess_values(720, True, [])  # HIGH: 5,000 / 15,000 yuan
    enrolled = Account.enrolled("a1", "sub_1", "330183********242X", assessment, 720, ("p1", "p2"), AT)
    return dataclasses.replace(enrolled, outstanding_fen=outstanding_fen, status=status)


def visit(kind: credit.VisitKind = credit.VisitKind.OUTPATIENT) -> Visit:
    return Visit.opened("v1", account(), "H330100001", kind, AT)


def charged(of: Visit, *lines: insurance.ChargeLine) -> tuple[Visit, list[Charge]]:
    charges: list[Charge] = []
    for line in lines:
        split = price_charge(account(), of, charges, line, POLICY)
        charges.append(
            Charge.added(f"c{len(charges)}", of, len(charges), f"r{len(charges)}", "x", split.charges[-1], AT)
        )
        of = of.charged(split)
    return of, charges


def test_a_charge_is_priced_with_the_visit_s_earlier_charges() -> None:
    # The 800-yuan inpatient deductible is met by the first covered charge, then 90% of the rest.
    stay, (surgery, medicine) = charged(
        visit(credit.VisitKind.INPATIENT),
        insurance.ChargeLine(C.SURGERY, 100_000),
        insurance.ChargeLine(C.MEDICINE, 100_000),
    )
    assert (surgery.seq, surgery.insurance_fen, surgery.self_pay_fen) == (0, 18_000, 82_000)
    assert (medicine.seq, medicine.insurance_fen, medicine.self_pay_fen) == (1, 90_000, 10_000)
    assert (stay.charge_count, stay.total_fen, stay.insurance_fen, stay.self_pay_fen) == (2, 200_000, 108_000, 92_000)


def test_a_charge_past_the_available_credit_is_refused_unless_it_has_no_self_pay_share() -> None:
    owing = account(outstanding_fen=500_000 - 100)  # 1 yuan of outpatient credit left
    with pytest.raises(FailedPrecondition) as refused:
        price_charge(owing, visit(), [], insurance.ChargeLine(C.OTHER, 101), POLICY)
    assert (refused.value.field, refused.value.reason) == ("amount_fen", "CREDIT_LIMIT_EXCEEDED")
    assert price_charge(owing, visit(), [], insurance.ChargeLine(C.OTHER, 100), POLICY).self_pay_fen == 100
    suspended = account(status=credit.AccountStatus.SUSPENDED)
    with pytest.raises(FailedPrecondition):
        price_charge(suspended, visit(), [], insurance.ChargeLine(C.OTHER, 1), POLICY)
    free = insurance.InsurancePolicy(outpatient=insurance.Coverage({c: 10_000 for c in C}))
    assert price_charge(suspended, visit(), [], insurance.ChargeLine(C.OTHER, 1), free).self_pay_fen == 0


def test_no_charge_goes_on_a_closed_or_full_visit() -> None:
    with pytest.raises(FailedPrecondition) as closed:
        price_charge(account(), visit().closed("b1", AT), [], insurance.ChargeLine(C.OTHER, 1), POLICY)
    assert closed.value.reason == "VISIT_CLOSED"
    small = dataclasses.replace(POLICY, max_charges=1)
    full, charges = charged(visit(), insurance.ChargeLine(C.OTHER, 1))
    with pytest.raises(FailedPrecondition) as too_many:
        price_charge(account(), full, charges, insurance.ChargeLine(C.OTHER, 1), small)
    assert too_many.value.reason == "TOO_MANY_CHARGES"


def test_a_reassessed_account_keeps_when_its_suspension_began() -> None:
    first = credit.DefaultRecord("b1", 100, AT)
    suspended = account().reassessed(credit.assess_values(720, True, [first]), AT)
    assert suspended.status is credit.AccountStatus.SUSPENDED and suspended.suspended_at == AT
    later = AT + datetime.timedelta(days=1)
    second = credit.DefaultRecord("b2", 100, later)
    closed = suspended.reassessed(credit.assess_values(720, True, [first, second]), later)
    assert closed.status is credit.AccountStatus.CLOSED and closed.suspended_at is None
    again = suspended.reassessed(credit.assess_values(720, True, [first]), later)
    assert again.suspended_at == AT
    repaid = dataclasses.replace(first, repaid_at=later)
    restored = suspended.reassessed(credit.assess_values(720, True, [repaid]), later)
    assert restored.active and restored.suspended_at is None and restored.outpatient_limit_fen == 250_000
    assert restored.updated_at == later


def test_figures_derive_the_credit_the_defaults_and_the_rate() -> None:
    figures = Figures(
        accounts={credit.AccountStatus.ACTIVE: 3},
        outstanding_fen=0,
        visits=4,
        bills={
            billing.BillState.SETTLED: BillTotals(2, 1_000, 1_000, 500),
            billing.BillState.DEFAULTED: BillTotals(1, 1_000, 400, 0),
        },
        overdue_bills=1,
        overdue_fen=600,
    )
    assert (figures.credit_fen, figures.defaulted_fen) == (2_000, 600)
    assert figures.default_rate_ppb == 600 * 1_000_000_000 // 2_000
    assert figures.accounts_in(credit.AccountStatus.SUSPENDED) == 0
    assert figures.bills_in(billing.BillState.OPEN) == BillTotals()
    empty = Figures({}, 0, 0, {}, 0, 0)
    assert empty.default_rate_ppb == 0
