"""The medical credit ledger: double entry in integer fen (pure domain logic).

Every movement of money in "treat first, pay later" is a :class:`Transaction` (a posting, in the
contract's words): a set of :class:`Entry` lines, each a signed amount on one :class:`Account`,
that sums to zero. A transaction that does not balance cannot be built. The business events have
one pure function each that returns their transaction (:func:`charge`, :func:`payment`,
:func:`default`, :func:`recovery`), and :func:`verify` walks a whole ledger and proves it.

The decisions behind these rules are in docs/decisions/: health-ledger-accounts.md,
health-ledger-postings.md, health-ledger-posting-ids.md, health-ledger-invariants.md,
health-integer-money.md.
"""

from __future__ import annotations

import datetime
import enum
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "CREDIT_FUND_ADVANCES",
    "CREDIT_FUND_DEFAULTED",
    "INSURANCE_FUND_ID",
    "MAX_FEN",
    "Account",
    "BillOutstanding",
    "Entry",
    "LedgerAccountKind",
    "LedgerError",
    "Problem",
    "Transaction",
    "TransactionKind",
    "Verification",
    "charge",
    "credit_fund_advances",
    "credit_fund_defaulted",
    "default",
    "payment",
    "payment_posting_id",
    "recovery",
    "verify",
]

#: Largest amount on one entry (10 trillion yuan), as records' MAX_FEN: beyond it is a bug.
MAX_FEN: Final = 10**15
#: The medical insurance fund's account id when the caller names none.
INSURANCE_FUND_ID: Final = "medical_insurance"
#: The credit fund's account of advances on bills in good standing.
CREDIT_FUND_ADVANCES: Final = "advances"
#: The credit fund's account of advances on defaulted bills not yet recovered: its loss.
CREDIT_FUND_DEFAULTED: Final = "defaulted"


class LedgerError(ValueError):
    """A transaction or entry that must not exist (unbalanced, empty, bad amount): a bug in the
    caller, never bad user input, which the application checks before it posts."""


class LedgerAccountKind(enum.Enum):
    """Names match govmesh.health.v1.LedgerAccountKind without the LEDGER_ACCOUNT_KIND_ prefix."""

    PATIENT = "patient"
    HOSPITAL = "hospital"
    INSURANCE_FUND = "insurance_fund"
    CREDIT_FUND = "credit_fund"


class TransactionKind(enum.Enum):
    """The business event a transaction records."""

    CHARGE = "charge"
    PAYMENT = "payment"
    DEFAULT = "default"
    RECOVERY = "recovery"


@dataclass(frozen=True)
class Account:
    kind: LedgerAccountKind
    id: str

    def __post_init__(self) -> None:
        if not isinstance(self.kind, LedgerAccountKind):
            raise LedgerError(f"account kind must be a LedgerAccountKind, not {self.kind!r}")
        if not isinstance(self.id, str) or not self.id:
            raise LedgerError(f"{self.kind.name} account id must be a non-empty string")

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.id}"


def credit_fund_advances() -> Account:
    return Account(LedgerAccountKind.CREDIT_FUND, CREDIT_FUND_ADVANCES)


def credit_fund_defaulted() -> Account:
    return Account(LedgerAccountKind.CREDIT_FUND, CREDIT_FUND_DEFAULTED)


def _check_fen(name: str, value: object, *, allow_zero: bool = False) -> int:
    # bool is an int in Python; True fen is a bug, not one fen.
    if isinstance(value, bool) or not isinstance(value, int):
        raise LedgerError(f"{name} must be an int number of fen, not {type(value).__name__}")
    low = 0 if allow_zero else 1
    if not low <= value <= MAX_FEN:
        raise LedgerError(f"{name} must be {low} to {MAX_FEN} fen (got {value})")
    return value


def _check_aware(name: str, value: object) -> datetime.datetime:
    if not isinstance(value, datetime.datetime):
        raise TypeError(f"{name} must be an aware datetime.datetime")
    if value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (a naive datetime could be UTC or Asia/Shanghai)")
    return value


@dataclass(frozen=True)
class Entry:
    """One line of a transaction: positive ``amount_fen`` debits ``account``, negative credits it."""

    account: Account
    amount_fen: int

    def __post_init__(self) -> None:
        if not isinstance(self.account, Account):
            raise LedgerError("entry account must be an Account")
        if isinstance(self.amount_fen, bool) or not isinstance(self.amount_fen, int):
            raise LedgerError(f"entry amount must be an int number of fen, not {type(self.amount_fen).__name__}")
        # A zero line records nothing and would only hide a missing amount.
        if self.amount_fen == 0 or abs(self.amount_fen) > MAX_FEN:
            raise LedgerError(
                f"entry amount must be non-zero and at most {MAX_FEN} fen either way (got {self.amount_fen})"
            )

    @property
    def debit_fen(self) -> int:
        return max(self.amount_fen, 0)

    @property
    def credit_fen(self) -> int:
        return max(-self.amount_fen, 0)


@dataclass(frozen=True)
class Transaction:
    """A balanced set of entries recording one business event.

    ``posting_id`` is the ledger-wide idempotency key (docs/decisions/health-ledger-posting-ids.md); ``request_id``
    the caller's request id, empty for a timer's posting; ``bill_id`` the bill it concerns.
    Building one that does not balance raises :class:`LedgerError`; :meth:`stored` rebuilds one
    read back from storage without that check, so that :func:`verify` can report a damaged row
    instead of failing on it.
    """

    posting_id: str
    kind: TransactionKind
    bill_id: str
    request_id: str
    posted_at: datetime.datetime
    entries: tuple[Entry, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.posting_id, str) or not self.posting_id:
            raise LedgerError("posting_id must be a non-empty string")
        if not isinstance(self.kind, TransactionKind):
            raise LedgerError(f"kind must be a TransactionKind, not {self.kind!r}")
        if not isinstance(self.bill_id, str) or not self.bill_id:
            raise LedgerError("bill_id must be a non-empty string")
        if not isinstance(self.request_id, str):
            raise LedgerError("request_id must be a string")
        _check_aware("posted_at", self.posted_at)
        if not isinstance(self.entries, tuple) or not all(isinstance(e, Entry) for e in self.entries):
            raise LedgerError("entries must be a tuple of Entry")
        # Two lines at least: one debit and one credit, or it records no movement.
        if len(self.entries) < 2:
            raise LedgerError(f"{self.posting_id}: a transaction needs at least two entries")
        imbalance = self.imbalance_fen
        if imbalance:
            raise LedgerError(f"{self.posting_id}: entries do not balance (debits - credits = {imbalance} fen)")

    @classmethod
    def stored(
        cls,
        *,
        posting_id: str,
        kind: TransactionKind,
        bill_id: str,
        request_id: str,
        posted_at: datetime.datetime,
        entries: Iterable[Entry],
    ) -> Transaction:
        """A transaction as read from storage, unchecked: verify() is what judges it."""
        transaction = object.__new__(cls)
        for name, value in (
            ("posting_id", posting_id),
            ("kind", kind),
            ("bill_id", bill_id),
            ("request_id", request_id),
            ("posted_at", posted_at),
            ("entries", tuple(entries)),
        ):
            object.__setattr__(transaction, name, value)
        return transaction

    @property
    def imbalance_fen(self) -> int:
        """Debits less credits: zero for a sound transaction."""
        return sum(entry.amount_fen for entry in self.entries)

    def amount_on(self, account: Account) -> int:
        """The net amount this transaction puts on ``account`` (debit positive)."""
        return sum(entry.amount_fen for entry in self.entries if entry.account == account)


def payment_posting_id(request_id: str) -> str:
    """The posting id of a payment or recovery: the same PayBill request posts once, whichever."""
    return f"payment:{request_id}"


def _required(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise LedgerError(f"{name} must be a non-empty string")
    return value


def charge(
    *,
    bill_id: str,
    patient_account_id: str,
    hospital_id: str,
    insurance_fen: int,
    self_pay_fen: int,
    at: datetime.datetime,
    insurance_fund_id: str = INSURANCE_FUND_ID,
) -> Transaction:
    """A bill issued on credit: the hospital is paid the total at once, insurance its share and the
    credit fund the self-pay share, which the patient now owes. Either share may be zero, not both.
    """
    _check_fen("insurance_fen", insurance_fen, allow_zero=True)
    _check_fen("self_pay_fen", self_pay_fen, allow_zero=True)
    total = _check_fen("total (insurance_fen + self_pay_fen)", insurance_fen + self_pay_fen)
    patient = Account(LedgerAccountKind.PATIENT, _required("patient_account_id", patient_account_id))
    hospital = Account(LedgerAccountKind.HOSPITAL, _required("hospital_id", hospital_id))
    fund = Account(LedgerAccountKind.INSURANCE_FUND, _required("insurance_fund_id", insurance_fund_id))
    entries = [Entry(hospital, -total)]  # the hospital is owed the total ...
    if insurance_fen:
        # ... the insurance fund owes its share and pays it to the hospital directly ...
        entries += [Entry(fund, insurance_fen), Entry(hospital, insurance_fen), Entry(fund, -insurance_fen)]
    if self_pay_fen:
        # ... the patient owes the self-pay share, which the credit fund pays the hospital now.
        entries += [
            Entry(patient, self_pay_fen),
            Entry(hospital, self_pay_fen),
            Entry(credit_fund_advances(), -self_pay_fen),
        ]
    return Transaction(
        posting_id=f"bill:{_required('bill_id', bill_id)}:charge",
        kind=TransactionKind.CHARGE,
        bill_id=bill_id,
        request_id="",
        posted_at=at,
        entries=tuple(entries),
    )


def payment(
    *, bill_id: str, patient_account_id: str, amount_fen: int, request_id: str, at: datetime.datetime
) -> Transaction:
    """The patient pays towards a bill in good standing (OPEN or OVERDUE): the credit fund's
    advance is repaid. Whether the amount fits the bill is billing's check, made before this."""
    _check_fen("amount_fen", amount_fen)
    patient = Account(LedgerAccountKind.PATIENT, _required("patient_account_id", patient_account_id))
    return Transaction(
        posting_id=payment_posting_id(_required("request_id", request_id)),
        kind=TransactionKind.PAYMENT,
        bill_id=_required("bill_id", bill_id),
        request_id=request_id,
        posted_at=at,
        entries=(Entry(patient, -amount_fen), Entry(credit_fund_advances(), amount_fen)),
    )


def default(*, bill_id: str, outstanding_fen: int, at: datetime.datetime) -> Transaction:
    """A bill defaults: what the credit fund advanced and was not repaid is recognised as its loss
    (moved from advances to defaulted). The patient's receivable is unchanged: it is still owed."""
    _check_fen("outstanding_fen", outstanding_fen)
    return Transaction(
        posting_id=f"bill:{_required('bill_id', bill_id)}:default",
        kind=TransactionKind.DEFAULT,
        bill_id=bill_id,
        request_id="",
        posted_at=at,
        entries=(Entry(credit_fund_advances(), outstanding_fen), Entry(credit_fund_defaulted(), -outstanding_fen)),
    )


def recovery(
    *, bill_id: str, patient_account_id: str, amount_fen: int, request_id: str, at: datetime.datetime
) -> Transaction:
    """The patient pays towards a defaulted bill: the credit fund recovers part of its loss."""
    _check_fen("amount_fen", amount_fen)
    patient = Account(LedgerAccountKind.PATIENT, _required("patient_account_id", patient_account_id))
    return Transaction(
        posting_id=payment_posting_id(_required("request_id", request_id)),
        kind=TransactionKind.RECOVERY,
        bill_id=_required("bill_id", bill_id),
        request_id=request_id,
        posted_at=at,
        entries=(Entry(patient, -amount_fen), Entry(credit_fund_defaulted(), amount_fen)),
    )


@dataclass(frozen=True)
class BillOutstanding:
    """A bill as the bill store sees it, for :func:`verify` to check the ledger against.

    ``defaulted`` is true when the bill ever defaulted (including one repaid since): its advance
    then lives in the credit fund's defaulted account, not in advances."""

    patient_account_id: str
    outstanding_fen: int
    defaulted: bool = False


@dataclass(frozen=True)
class Problem:
    """One thing :func:`verify` found wrong: a code, what it concerns (a posting id, an account or
    a bill id) and a sentence."""

    code: str
    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.code} {self.subject}: {self.message}"


@dataclass(frozen=True)
class Verification:
    """What :func:`verify` proved. ``balanced`` mirrors the contract's VerifyLedgerResponse (every
    posting balances and the balances sum to zero); ``ok`` also needs every other invariant."""

    balanced: bool
    postings_checked: int
    first_unbalanced_posting_id: str
    balances_by_kind: Mapping[LedgerAccountKind, int]
    balances_by_account: Mapping[Account, int]
    problems: tuple[Problem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.balanced and not self.problems

    @property
    def message(self) -> str:
        if self.ok:
            return f"{self.postings_checked} postings checked; every one balances and every invariant holds"
        return "; ".join(str(problem) for problem in self.problems)


def verify(transactions: Iterable[Transaction], *, bills: Mapping[str, BillOutstanding] | None = None) -> Verification:
    """Walks every transaction (in the order given) and proves the ledger.

    Never raises on a damaged ledger: each fault is a :class:`Problem`. With ``bills`` (bill id ->
    the bill store's view), also checks each bill's and each patient's receivable and the credit
    fund's per-bill advances and defaulted amounts against them, and that the ledger knows no
    other bill. Every patient must appear through their bills: a patient account with a balance
    and no bill in ``bills`` is a problem.
    """
    problems: list[Problem] = []
    by_account: dict[Account, int] = defaultdict(int)
    # Per bill: the patient receivable, the advance and the defaulted amount it put in the ledger.
    per_bill: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    bill_patients: dict[str, set[str]] = defaultdict(set)
    seen: set[str] = set()
    first_unbalanced = ""
    checked = 0
    for transaction in transactions:
        checked += 1
        posting_id = transaction.posting_id or f"#{checked}"
        if posting_id in seen:
            problems.append(Problem("DUPLICATE_POSTING", posting_id, "posted more than once"))
        seen.add(posting_id)
        entries = transaction.entries
        valid = [entry for entry in entries if isinstance(entry, Entry) and isinstance(entry.amount_fen, int)]
        if len(valid) != len(entries):
            problems.append(Problem("MALFORMED_POSTING", posting_id, "has an entry that is not an amount of fen"))
        imbalance = sum(entry.amount_fen for entry in valid)
        if imbalance or len(valid) < 2:
            if not first_unbalanced:
                first_unbalanced = posting_id
            problems.append(
                Problem(
                    "UNBALANCED_POSTING", posting_id, f"debits - credits = {imbalance} fen over {len(valid)} entries"
                )
            )
        for entry in valid:
            by_account[entry.account] += entry.amount_fen
            sums = per_bill[transaction.bill_id]
            if entry.account.kind is LedgerAccountKind.PATIENT:
                sums["receivable"] += entry.amount_fen
                bill_patients[transaction.bill_id].add(entry.account.id)
            elif entry.account == credit_fund_advances():
                sums["advances"] += entry.amount_fen
            elif entry.account == credit_fund_defaulted():
                sums["defaulted"] += entry.amount_fen

    by_kind = {kind: 0 for kind in LedgerAccountKind}
    for account, balance in by_account.items():
        by_kind[account.kind] += balance
    total = sum(by_kind.values())
    if total:
        problems.append(Problem("BALANCES_DO_NOT_SUM_TO_ZERO", "ledger", f"the balances sum to {total} fen"))
    for account, balance in sorted(by_account.items(), key=lambda item: str(item[0])):
        if account.kind in (LedgerAccountKind.HOSPITAL, LedgerAccountKind.INSURANCE_FUND) and balance:
            # Hospitals are paid in full, by insurance and the credit fund, when a bill is issued.
            problems.append(Problem("NOT_SQUARE", str(account), f"balance {balance} fen; it should be 0"))
        if account.kind is LedgerAccountKind.PATIENT and balance < 0:
            problems.append(Problem("NEGATIVE_RECEIVABLE", str(account), f"owes {balance} fen (over-paid)"))
    for bill_id, patients in sorted(bill_patients.items()):
        if len(patients) > 1:
            problems.append(Problem("BILL_OF_MANY_PATIENTS", bill_id, f"posted to patients {sorted(patients)}"))

    if bills is not None:
        problems += _check_bills(bills, per_bill, by_account)

    return Verification(
        balanced=not first_unbalanced and total == 0,
        postings_checked=checked,
        first_unbalanced_posting_id=first_unbalanced,
        balances_by_kind=by_kind,
        balances_by_account=dict(by_account),
        problems=tuple(problems),
    )


def _check_bills(
    bills: Mapping[str, BillOutstanding],
    per_bill: Mapping[str, Mapping[str, int]],
    by_account: Mapping[Account, int],
) -> list[Problem]:
    problems: list[Problem] = []
    for bill_id in sorted(set(per_bill) - set(bills)):
        problems.append(Problem("UNKNOWN_BILL", bill_id, "is in the ledger but not among the bills"))
    expected_by_patient: dict[str, int] = defaultdict(int)
    empty: Mapping[str, int] = {}
    for bill_id, bill in sorted(bills.items()):
        expected_by_patient[bill.patient_account_id] += bill.outstanding_fen
        sums = per_bill.get(bill_id, empty)
        receivable = sums.get("receivable", 0)
        if receivable != bill.outstanding_fen:
            problems.append(
                Problem(
                    "BILL_RECEIVABLE_MISMATCH",
                    bill_id,
                    f"the ledger says {receivable} fen outstanding, the bill {bill.outstanding_fen} fen",
                )
            )
        # The credit fund's side of the same bill: still advanced, or lost to a default.
        advanced = -sums.get("advances", 0)
        defaulted = -sums.get("defaulted", 0)
        want_advanced, want_defaulted = (0, bill.outstanding_fen) if bill.defaulted else (bill.outstanding_fen, 0)
        if (advanced, defaulted) != (want_advanced, want_defaulted):
            problems.append(
                Problem(
                    "CREDIT_FUND_MISMATCH",
                    bill_id,
                    f"the credit fund has {advanced} fen advanced and {defaulted} fen defaulted on it; "
                    f"the bill says {want_advanced} and {want_defaulted}",
                )
            )
    patients = {
        account.id: balance for account, balance in by_account.items() if account.kind is LedgerAccountKind.PATIENT
    }
    for patient_id in sorted(set(patients) | set(expected_by_patient)):
        actual = patients.get(patient_id, 0)
        expected = expected_by_patient.get(patient_id, 0)
        if actual != expected:
            problems.append(
                Problem(
                    "PATIENT_RECEIVABLE_MISMATCH",
                    f"{LedgerAccountKind.PATIENT.value}:{patient_id}",
                    f"the ledger says {actual} fen owed, the bills {expected} fen outstanding",
                )
            )
    return problems
