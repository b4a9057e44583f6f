"""The double-entry ledger (services/health/domain/ledger.py): every business event's posting balances,
an unbalanced one cannot be built, verify() finds tampering and mismatches, and seeded random
lives of bills (driven by the real bill state machine) never lose a fen.

Figures follow the seed: the patient had 55,000 yuan of inpatient charges, over half of it
reimbursed by medical insurance."""

from __future__ import annotations

import dataclasses
import datetime
import random
import zoneinfo
from collections.abc import Callable

import pytest

from services.health.domain import billing, ledger
from services.health.domain.ledger import (
    CREDIT_FUND_ADVANCES,
    CREDIT_FUND_DEFAULTED,
    INSURANCE_FUND_ID,
    Account,
    BillOutstanding,
    Entry,
    LedgerAccountKind,
    LedgerError,
    Transaction,
    TransactionKind,
    verify,
)

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
AT = datetime.datetime(2019, 3, 10, 16, 0, tzinfo=SHANGHAI)
PATIENT = Account(LedgerAccountKind.PATIENT, "acct-1")
HOSPITAL = Account(LedgerAccountKind.HOSPITAL, "H330100")
FUND = Account(LedgerAccountKind.INSURANCE_FUND, INSURANCE_FUND_ID)
ADVANCES = Account(LedgerAccountKind.CREDIT_FUND, CREDIT_FUND_ADVANCES)
DEFAULTED = Account(LedgerAccountKind.CREDIT_FUND, CREDIT_FUND_DEFAULTED)
# 55,000 yuan in all, 30,250 yuan reimbursed (55%), 24,750 yuan the patient's own share.
TOTAL, INSURANCE, SELF_PAY = 5_500_000, 3_025_000, 2_475_000


def charge(bill_id: str = "bill-1", insurance: int = INSURANCE, self_pay: int = SELF_PAY) -> Transaction:
    return ledger.charge(
        bill_id=bill_id,
        patient_account_id=PATIENT.id,
        hospital_id=HOSPITAL.id,
        insurance_fen=insurance,
        self_pay_fen=self_pay,
        at=AT,
    )


def payment(amount: int, request_id: str = "req-1", bill_id: str = "bill-1") -> Transaction:
    return ledger.payment(
        bill_id=bill_id, patient_account_id=PATIENT.id, amount_fen=amount, request_id=request_id, at=AT
    )


def recovery(amount: int, request_id: str = "req-r", bill_id: str = "bill-1") -> Transaction:
    return ledger.recovery(
        bill_id=bill_id, patient_account_id=PATIENT.id, amount_fen=amount, request_id=request_id, at=AT
    )


def default(outstanding: int, bill_id: str = "bill-1") -> Transaction:
    return ledger.default(bill_id=bill_id, outstanding_fen=outstanding, at=AT)


def net(transaction: Transaction) -> dict[Account, int]:
    amounts: dict[Account, int] = {}
    for entry in transaction.entries:
        amounts[entry.account] = amounts.get(entry.account, 0) + entry.amount_fen
    return {account: amount for account, amount in amounts.items() if amount}


# --- the postings of each business event -------------------------------------------------------


def test_charge_pays_the_hospital_in_full_and_leaves_the_patient_owing_the_self_pay_share() -> None:
    transaction = charge()
    assert transaction.imbalance_fen == 0
    assert transaction.kind is TransactionKind.CHARGE
    assert transaction.posting_id == "bill:bill-1:charge"
    assert net(transaction) == {PATIENT: SELF_PAY, ADVANCES: -SELF_PAY}
    # The flows are all there: the hospital is owed the total and paid it by the two funds.
    assert sum(e.credit_fen for e in transaction.entries if e.account == HOSPITAL) == TOTAL
    assert sum(e.debit_fen for e in transaction.entries if e.account == HOSPITAL) == TOTAL
    assert sum(e.credit_fen for e in transaction.entries if e.account == FUND) == INSURANCE
    assert transaction.amount_on(ADVANCES) == -SELF_PAY


@pytest.mark.parametrize(("insurance", "self_pay"), [(0, 100), (100, 0), (1, 1), (3_025_000, 2_475_000)])
def test_every_helper_balances(insurance: int, self_pay: int) -> None:
    transactions = [charge(insurance=insurance, self_pay=self_pay)]
    if self_pay:
        transactions += [payment(self_pay), default(self_pay), recovery(self_pay)]
    for transaction in transactions:
        assert transaction.imbalance_fen == 0
        assert sum(e.debit_fen for e in transaction.entries) == sum(e.credit_fen for e in transaction.entries)
        assert all(isinstance(e.amount_fen, int) and e.amount_fen for e in transaction.entries)


def test_payment_default_and_recovery_move_the_credit_funds_money() -> None:
    assert net(payment(100)) == {PATIENT: -100, ADVANCES: 100}
    assert net(default(100)) == {ADVANCES: 100, DEFAULTED: -100}
    assert net(recovery(100)) == {PATIENT: -100, DEFAULTED: 100}
    assert payment(100).kind is TransactionKind.PAYMENT
    assert default(100).posting_id == "bill:bill-1:default"


def test_a_payment_and_a_recovery_of_one_request_share_a_posting_id() -> None:
    # So that a store refusing duplicate posting ids never posts one PayBill twice.
    assert payment(100, "req-9").posting_id == recovery(100, "req-9").posting_id == "payment:req-9"
    assert payment(100, "req-9").request_id == "req-9"
    assert charge().request_id == ""


def test_an_unbalanced_transaction_cannot_be_built() -> None:
    with pytest.raises(LedgerError, match="do not balance"):
        Transaction(
            posting_id="p",
            kind=TransactionKind.PAYMENT,
            bill_id="bill-1",
            request_id="r",
            posted_at=AT,
            entries=(Entry(PATIENT, -100), Entry(ADVANCES, 99)),
        )
    with pytest.raises(LedgerError, match="at least two entries"):
        Transaction(
            posting_id="p",
            kind=TransactionKind.PAYMENT,
            bill_id="bill-1",
            request_id="r",
            posted_at=AT,
            entries=(),
        )


@pytest.mark.parametrize("amount", [0, True, 1.0, 10**15 + 1, -(10**15) - 1])
def test_bad_entries_are_refused(amount: object) -> None:
    with pytest.raises(LedgerError):
        Entry(PATIENT, amount)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "build",
    [
        lambda: charge(insurance=0, self_pay=0),
        lambda: charge(self_pay=-1),
        lambda: charge(insurance=10**15, self_pay=1),
        lambda: payment(0),
        lambda: payment(-5),
        lambda: payment(True),
        lambda: default(0),
        lambda: recovery(1.5),  # type: ignore[arg-type]
        lambda: payment(100, request_id=""),
        lambda: charge(bill_id=""),
    ],
)
def test_helpers_refuse_bad_values(build: Callable[[], Transaction]) -> None:
    with pytest.raises(LedgerError):
        build()


def test_naive_times_and_empty_account_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.default(bill_id="b", outstanding_fen=1, at=datetime.datetime(2019, 3, 10, 16, 0))
    with pytest.raises(LedgerError):
        Account(LedgerAccountKind.PATIENT, "")


def test_account_kinds_are_the_contracts() -> None:
    from govmesh.health.v1 import medical_credit_pb2

    names = {
        name.removeprefix("LEDGER_ACCOUNT_KIND_")
        for name in medical_credit_pb2.LedgerAccountKind.keys()
        if name != "LEDGER_ACCOUNT_KIND_UNSPECIFIED"
    }
    assert names == {kind.name for kind in LedgerAccountKind}


# --- verify ------------------------------------------------------------------------------------


def test_verify_proves_a_sound_ledger() -> None:
    transactions = [charge(), payment(475_000), default(2_000_000), recovery(1_500_000)]
    bills = {"bill-1": BillOutstanding(PATIENT.id, 500_000, defaulted=True)}
    result = verify(transactions, bills=bills)
    assert result.ok, result.message
    assert result.balanced
    assert result.postings_checked == 4
    assert result.first_unbalanced_posting_id == ""
    assert result.balances_by_kind == {
        LedgerAccountKind.PATIENT: 500_000,
        LedgerAccountKind.HOSPITAL: 0,
        LedgerAccountKind.INSURANCE_FUND: 0,
        LedgerAccountKind.CREDIT_FUND: -500_000,
    }
    assert result.balances_by_account[DEFAULTED] == -500_000
    assert result.balances_by_account[ADVANCES] == 0
    assert "4 postings checked" in result.message


def test_verify_of_an_empty_ledger() -> None:
    result = verify([], bills={})
    assert result.ok and result.postings_checked == 0
    assert set(result.balances_by_kind.values()) == {0}


def test_verify_catches_a_tampered_transaction() -> None:
    tampered = payment(100, "req-2")
    # Someone edits the stored row: the patient is credited 1 fen more than the fund is debited.
    object.__setattr__(tampered, "entries", (Entry(PATIENT, -101), Entry(ADVANCES, 100)))
    result = verify([charge(), payment(50), tampered], bills={"bill-1": BillOutstanding(PATIENT.id, SELF_PAY - 151)})
    assert not result.balanced and not result.ok
    assert result.first_unbalanced_posting_id == "payment:req-2"
    codes = {problem.code for problem in result.problems}
    assert {"UNBALANCED_POSTING", "BALANCES_DO_NOT_SUM_TO_ZERO"} <= codes


def test_verify_reports_an_unbalanced_row_read_back_from_storage() -> None:
    stored = Transaction.stored(
        posting_id="bill:bill-2:default",
        kind=TransactionKind.DEFAULT,
        bill_id="bill-2",
        request_id="",
        posted_at=AT,
        entries=[Entry(ADVANCES, 100)],
    )
    result = verify([charge(), stored, payment(1)])
    assert result.first_unbalanced_posting_id == "bill:bill-2:default"
    assert not result.balanced


def test_verify_catches_a_receivable_mismatch() -> None:
    transactions = [charge(), payment(475_000)]
    result = verify(transactions, bills={"bill-1": BillOutstanding(PATIENT.id, 2_000_001)})
    assert result.balanced and not result.ok
    codes = [problem.code for problem in result.problems]
    assert "BILL_RECEIVABLE_MISMATCH" in codes
    assert "PATIENT_RECEIVABLE_MISMATCH" in codes
    assert "CREDIT_FUND_MISMATCH" in codes
    assert "2000000 fen" in result.message


def test_verify_catches_a_patient_owing_on_a_bill_it_does_not_know() -> None:
    result = verify([charge(), charge("bill-2", 0, 700)], bills={"bill-1": BillOutstanding(PATIENT.id, SELF_PAY)})
    codes = [problem.code for problem in result.problems]
    assert codes == ["UNKNOWN_BILL", "PATIENT_RECEIVABLE_MISMATCH"]


def test_verify_catches_a_default_that_was_never_posted() -> None:
    result = verify(
        [charge(), payment(75_000)], bills={"bill-1": BillOutstanding(PATIENT.id, 2_400_000, defaulted=True)}
    )
    assert [problem.code for problem in result.problems] == ["CREDIT_FUND_MISMATCH"]


def test_verify_catches_duplicates_and_over_payment() -> None:
    result = verify([charge(insurance=0, self_pay=100), payment(60, "r"), payment(60, "r")])
    codes = [problem.code for problem in result.problems]
    assert "DUPLICATE_POSTING" in codes
    assert "NEGATIVE_RECEIVABLE" in codes
    assert result.balanced  # each posting balances; the ledger is still wrong


def test_verify_catches_a_hospital_left_unpaid() -> None:
    unpaid = Transaction(
        posting_id="x",
        kind=TransactionKind.CHARGE,
        bill_id="bill-1",
        request_id="",
        posted_at=AT,
        entries=(Entry(HOSPITAL, -100), Entry(PATIENT, 100)),
    )
    result = verify([unpaid])
    assert [problem.code for problem in result.problems] == ["NOT_SQUARE"]


# --- random lives of bills ---------------------------------------------------------------------


class _Store:
    """What a storage layer does: refuse a posting id it already holds."""

    def __init__(self) -> None:
        self.transactions: list[Transaction] = []
        self.ids: set[str] = set()

    def post(self, transaction: Transaction) -> bool:
        if transaction.posting_id in self.ids:
            return False
        self.ids.add(transaction.posting_id)
        self.transactions.append(transaction)
        return True


def _expected(bills: dict[str, tuple[str, billing.Bill]]) -> dict[str, BillOutstanding]:
    return {
        bill_id: BillOutstanding(patient, bill.outstanding_fen, defaulted=bill.ever_defaulted)
        for bill_id, (patient, bill) in bills.items()
    }


def _simulate(seed: int) -> None:
    rng = random.Random(seed)
    store = _Store()
    bills: dict[str, tuple[str, billing.Bill]] = {}
    patients = [f"acct-{n}" for n in range(rng.randint(1, 4))]
    hospitals = [f"H33010{n}" for n in range(3)]
    now = datetime.datetime(2019, 1, 1, 8, 0, tzinfo=SHANGHAI)
    repaid = credit = defaulted_total = 0
    requests: list[tuple[str, int]] = []  # (request id, amount), for retries
    for step in range(rng.randint(5, 60)):
        now += datetime.timedelta(minutes=rng.choice((1, 30, 600, 2_880, 10_080)))
        action = rng.random()
        if action < 0.35 or not bills:
            bill_id = f"bill-{seed}-{step}"
            total = rng.choice((1, 2, 99, 15_000, rng.randint(1, 1_500_000)))
            insurance = rng.randint(0, total)
            issued = billing.issue(
                bill_id=bill_id,
                visit_kind=rng.choice(list(billing.VisitKind)),
                total_fen=total,
                insurance_fen=insurance,
                self_pay_fen=total - insurance,
                closed_at=now,
            )
            patient = rng.choice(patients)
            assert store.post(
                ledger.charge(
                    bill_id=bill_id,
                    patient_account_id=patient,
                    hospital_id=rng.choice(hospitals),
                    insurance_fen=insurance,
                    self_pay_fen=total - insurance,
                    at=now,
                )
            )
            bills[bill_id] = (patient, issued.bill)
            credit += total - insurance
        elif action < 0.75:
            bill_id = rng.choice(sorted(bills))
            patient, bill = bills[bill_id]
            if bill.state is billing.BillState.SETTLED:
                continue
            # A timer run from the real worker would post defaults it finds due; pay() may find one too.
            amount = rng.choice((bill.outstanding_fen, 1, rng.randint(1, bill.outstanding_fen)))
            paid = billing.pay(bill, amount, now)
            for transition in paid.transitions:
                if transition.event is billing.BillEvent.DEFAULTED:
                    assert store.post(
                        ledger.default(bill_id=bill_id, outstanding_fen=transition.outstanding_fen, at=now)
                    )
                    defaulted_total += transition.outstanding_fen
            request_id = f"req-{seed}-{step}"
            post = ledger.recovery if paid.recovery else ledger.payment
            assert store.post(
                post(bill_id=bill_id, patient_account_id=patient, amount_fen=amount, request_id=request_id, at=now)
            )
            requests.append((request_id, amount))
            bills[bill_id] = (patient, paid.bill)
            repaid += amount
        elif action < 0.9:
            # The worker's timer sweeps every bill.
            for bill_id, (patient, bill) in sorted(bills.items()):
                update = billing.due_transitions(bill, now)
                for transition in update.transitions:
                    if transition.event is billing.BillEvent.DEFAULTED:
                        assert store.post(
                            ledger.default(bill_id=bill_id, outstanding_fen=transition.outstanding_fen, at=now)
                        )
                        defaulted_total += transition.outstanding_fen
                bills[bill_id] = (patient, update.bill)
        elif requests:
            # A retried PayBill (or a redelivered event) posts nothing the second time.
            request_id, amount = rng.choice(requests)
            bill_id = rng.choice(sorted(bills))
            retry = ledger.payment(
                bill_id=bill_id, patient_account_id=bills[bill_id][0], amount_fen=amount, request_id=request_id, at=now
            )
            assert not store.post(retry)
        # The ledger check passes after every step.
        check = verify(store.transactions, bills=_expected(bills))
        assert check.ok, f"seed {seed} step {step}: {check.message}"

    # Not a fen lost: what was lent is what was repaid plus what is still owed, and the credit
    # fund is out exactly what the patients owe, the defaulted part in its defaulted account.
    outstanding = sum(bill.outstanding_fen for _, bill in bills.values())
    assert credit == repaid + outstanding
    assert sum(bill.paid_fen for _, bill in bills.values()) == repaid
    check = verify(store.transactions, bills=_expected(bills))
    assert check.balances_by_kind[LedgerAccountKind.PATIENT] == outstanding
    assert check.balances_by_kind[LedgerAccountKind.CREDIT_FUND] == -outstanding
    assert check.balances_by_kind[LedgerAccountKind.HOSPITAL] == 0
    assert check.balances_by_kind[LedgerAccountKind.INSURANCE_FUND] == 0
    still_defaulted = sum(b.outstanding_fen for _, b in bills.values() if b.ever_defaulted)
    assert -check.balances_by_account.get(DEFAULTED, 0) == still_defaulted
    assert still_defaulted <= defaulted_total
    for patient in patients:
        owed = sum(b.outstanding_fen for p, b in bills.values() if p == patient)
        assert check.balances_by_account.get(Account(LedgerAccountKind.PATIENT, patient), 0) == owed


@pytest.mark.parametrize("block", range(10))
def test_random_lives_of_bills_never_lose_a_fen(block: int) -> None:
    for seed in range(block * 50, block * 50 + 50):
        _simulate(seed)


def test_a_tampered_random_ledger_is_caught() -> None:
    rng = random.Random(2019)
    transactions = [charge(f"b{n}", rng.randint(0, 1000), rng.randint(1, 1000)) for n in range(20)]
    victim = rng.randrange(len(transactions))
    entries = list(transactions[victim].entries)
    entries[0] = dataclasses.replace(entries[0], amount_fen=entries[0].amount_fen - 1)
    object.__setattr__(transactions[victim], "entries", tuple(entries))
    result = verify(transactions)
    assert result.first_unbalanced_posting_id == f"bill:b{victim}:charge"
