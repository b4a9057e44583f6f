"""The life of a bill's self-pay share, as a pure state machine (pure domain logic).

A bill is issued when its visit closes: the total, the insurance share and the self-pay share
arrive from the insurance split (computed elsewhere, in integer fen). Insurance pays its share at
once, so the bill's state is about the self-pay share the patient owes:

    OPEN --(due time)--> OVERDUE --(end of grace)--> DEFAULTED
      \\________________________\\______________________\\____(paid in full)--> SETTLED

The functions take a :class:`Bill` and return a new one with the events to publish
(:class:`Transition`): :func:`issue`, :func:`pay` and :func:`due_transitions` (the worker's
timer). Names of :class:`BillState` and :class:`VisitKind` match the contract's enums without
their prefixes; :class:`BillEvent` values are the routing keys of the events in events.proto.

The decisions behind these rules are in docs/decisions/: health-bill-due-times.md,
health-bill-boundaries.md, health-bill-reminder.md, health-bill-event-times.md,
health-late-payment.md, health-partial-payments.md, health-zero-bill.md.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from dataclasses import dataclass
from typing import Final

from govmesh.errors import FailedPrecondition, InvalidArgument
from services.health.domain.credit import VisitKind
from services.health.domain.ledger import MAX_FEN

__all__ = [
    "DEFAULT_POLICY",
    "MAX_FEN",
    "Bill",
    "BillEvent",
    "BillState",
    "BillingPolicy",
    "DueUpdate",
    "Issued",
    "PaymentResult",
    "Transition",
    "VisitKind",
    "due_at",
    "due_transitions",
    "issue",
    "pay",
]

_UTC: Final = datetime.UTC


class BillState(enum.Enum):
    """Names match govmesh.health.v1.BillState without the BILL_STATE_ prefix."""

    OPEN = "open"
    OVERDUE = "overdue"
    DEFAULTED = "defaulted"
    SETTLED = "settled"


class BillEvent(enum.Enum):
    """What a transition publishes; values are the routing keys on health.events."""

    DUE_SOON = "bill_due_soon"
    OVERDUE = "bill_overdue"
    DEFAULTED = "bill_defaulted"
    SETTLED = "bill_settled"
    CREDIT_RESTORED = "credit_restored"


@dataclass(frozen=True)
class BillingPolicy:
    """The time rules a bill is issued with (docs/decisions/health-bill-due-times.md)."""

    outpatient_due_after: datetime.timedelta = datetime.timedelta(hours=48)
    inpatient_settlement_window: datetime.timedelta = datetime.timedelta(hours=24)
    reminder_before: datetime.timedelta = datetime.timedelta(hours=24)
    grace_period: datetime.timedelta = datetime.timedelta(days=7)

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if not isinstance(value, datetime.timedelta):
                raise TypeError(f"{item.name} must be a datetime.timedelta")
            # Zero would make two events happen at one instant (due at issue, default at due).
            if value <= datetime.timedelta(0):
                raise ValueError(f"{item.name} must be positive (got {value})")


DEFAULT_POLICY: Final = BillingPolicy()


def _aware(name: str, value: object) -> datetime.datetime:
    if not isinstance(value, datetime.datetime):
        raise TypeError(f"{name} must be an aware datetime.datetime")
    if value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (a naive datetime could be UTC or Asia/Shanghai)")
    return value.astimezone(_UTC)


def _fen(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int number of fen, not {type(value).__name__}")
    if not 0 <= value <= MAX_FEN:
        raise ValueError(f"{name} must be 0 to {MAX_FEN} fen (got {value})")
    return value


def due_at(
    visit_kind: VisitKind, closed_at: datetime.datetime, policy: BillingPolicy = DEFAULT_POLICY
) -> datetime.datetime:
    """When the self-pay share of a visit closed at ``closed_at`` is due (UTC)."""
    closed = _aware("closed_at", closed_at)
    if visit_kind is VisitKind.OUTPATIENT:
        return closed + policy.outpatient_due_after
    if visit_kind is VisitKind.INPATIENT:
        return closed + policy.inpatient_settlement_window
    raise TypeError(f"visit_kind must be a VisitKind, not {visit_kind!r}")


@dataclass(frozen=True)
class Bill:
    """A bill's self-pay share and where it stands. Times are UTC. ``defaulted_fen`` is what was
    outstanding when it defaulted (the contract's DefaultRecord.amount_fen), 0 if it never did."""

    bill_id: str
    visit_kind: VisitKind
    total_fen: int
    insurance_fen: int
    self_pay_fen: int
    issued_at: datetime.datetime
    reminder_at: datetime.datetime
    due_at: datetime.datetime
    grace_until: datetime.datetime
    state: BillState = BillState.OPEN
    paid_fen: int = 0
    payments: int = 0
    reminded_at: datetime.datetime | None = None
    overdue_at: datetime.datetime | None = None
    defaulted_at: datetime.datetime | None = None
    defaulted_fen: int = 0
    settled_at: datetime.datetime | None = None

    def __post_init__(self) -> None:
        # A bill read back from storage is checked as hard as a new one: a bill that breaks these
        # is a bug, and it must stop here rather than emit wrong events or post wrong amounts.
        if not isinstance(self.bill_id, str) or not self.bill_id:
            raise ValueError("bill_id must be a non-empty string")
        if not isinstance(self.visit_kind, VisitKind) or not isinstance(self.state, BillState):
            raise TypeError("visit_kind and state must be a VisitKind and a BillState")
        for name in ("total_fen", "insurance_fen", "self_pay_fen", "paid_fen", "payments", "defaulted_fen"):
            _fen(name, getattr(self, name))
        if self.insurance_fen + self.self_pay_fen != self.total_fen:
            raise ValueError(
                f"insurance_fen {self.insurance_fen} + self_pay_fen {self.self_pay_fen} != total_fen {self.total_fen}"
            )
        if self.paid_fen > self.self_pay_fen:
            raise ValueError(f"paid_fen {self.paid_fen} exceeds self_pay_fen {self.self_pay_fen}")
        for name in (
            "issued_at",
            "reminder_at",
            "due_at",
            "grace_until",
            "reminded_at",
            "overdue_at",
            "defaulted_at",
            "settled_at",
        ):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _aware(name, value))
        if not self.issued_at <= self.reminder_at < self.due_at < self.grace_until:
            raise ValueError("times must satisfy issued_at <= reminder_at < due_at < grace_until")
        if (self.state is BillState.SETTLED) != (self.paid_fen == self.self_pay_fen):
            raise ValueError(
                f"a {self.state.name} bill with {self.outstanding_fen} fen outstanding: a bill is SETTLED "
                "exactly when its self-pay share is paid in full"
            )
        if (self.state is BillState.SETTLED) != (self.settled_at is not None):
            raise ValueError("settled_at is set exactly when the bill is SETTLED")
        if self.state is BillState.DEFAULTED and self.defaulted_at is None:
            raise ValueError("a DEFAULTED bill needs defaulted_at")
        if self.state in (BillState.OVERDUE, BillState.DEFAULTED) and self.overdue_at is None:
            raise ValueError(f"an {self.state.name} bill needs overdue_at")

    @property
    def outstanding_fen(self) -> int:
        return self.self_pay_fen - self.paid_fen

    @property
    def ever_defaulted(self) -> bool:
        """True for a DEFAULTED bill and for one settled after defaulting."""
        return self.defaulted_at is not None


@dataclass(frozen=True)
class Transition:
    """One event to publish: what happened, when, the state before and after and what was then
    outstanding."""

    event: BillEvent
    at: datetime.datetime
    previous_state: BillState
    state: BillState
    outstanding_fen: int


@dataclass(frozen=True)
class Issued:
    bill: Bill
    transitions: tuple[Transition, ...]


@dataclass(frozen=True)
class DueUpdate:
    """The bill after the timer, and the events to publish (empty when nothing was due)."""

    bill: Bill
    transitions: tuple[Transition, ...]


@dataclass(frozen=True)
class PaymentResult:
    """The bill after a payment. ``transitions`` holds, in order, the overdue and default that
    were due before the payment (see :func:`pay`) and then bill_settled and credit_restored.
    ``previous_state`` is the state the payment found (after that catch-up): DEFAULTED means the
    payment is a recovery, for the ledger."""

    bill: Bill
    amount_fen: int
    previous_state: BillState
    transitions: tuple[Transition, ...]

    @property
    def recovery(self) -> bool:
        return self.previous_state is BillState.DEFAULTED

    @property
    def settled(self) -> bool:
        return self.bill.state is BillState.SETTLED

    @property
    def credit_restored(self) -> bool:
        return self.settled and self.recovery


def issue(
    *,
    bill_id: str,
    visit_kind: VisitKind,
    total_fen: int,
    insurance_fen: int,
    self_pay_fen: int,
    closed_at: datetime.datetime,
    policy: BillingPolicy = DEFAULT_POLICY,
) -> Issued:
    """The bill of a visit closed at ``closed_at``, with its due, reminder and grace times. A bill
    with no self-pay share is settled at once."""
    issued_at = _aware("closed_at", closed_at)
    due = due_at(visit_kind, issued_at, policy)
    bill = Bill(
        bill_id=bill_id,
        visit_kind=visit_kind,
        total_fen=total_fen,
        insurance_fen=insurance_fen,
        self_pay_fen=self_pay_fen,
        issued_at=issued_at,
        reminder_at=max(issued_at, due - policy.reminder_before),
        due_at=due,
        grace_until=due + policy.grace_period,
        state=BillState.SETTLED if self_pay_fen == 0 else BillState.OPEN,
        settled_at=issued_at if self_pay_fen == 0 else None,
    )
    if bill.state is BillState.SETTLED:
        return Issued(bill, (Transition(BillEvent.SETTLED, issued_at, BillState.OPEN, BillState.SETTLED, 0),))
    return Issued(bill, ())


def next_timer_at(bill: Bill) -> datetime.datetime | None:
    """When :func:`due_transitions` next has something to do for ``bill`` (the reminder, the due
    time or the end of grace); None once it is DEFAULTED or SETTLED."""
    if bill.state is BillState.OPEN:
        return bill.reminder_at if bill.reminded_at is None else bill.due_at
    if bill.state is BillState.OVERDUE:
        return bill.grace_until
    return None


def _advance(bill: Bill, now: datetime.datetime, *, remind: bool) -> DueUpdate:
    transitions: list[Transition] = []
    if remind and bill.state is BillState.OPEN and bill.reminded_at is None and bill.reminder_at <= now < bill.due_at:
        bill = dataclasses.replace(bill, reminded_at=now)
        transitions.append(Transition(BillEvent.DUE_SOON, now, BillState.OPEN, BillState.OPEN, bill.outstanding_fen))
    if bill.state is BillState.OPEN and now >= bill.due_at:
        bill = dataclasses.replace(bill, state=BillState.OVERDUE, overdue_at=bill.due_at)
        transitions.append(
            Transition(BillEvent.OVERDUE, bill.due_at, BillState.OPEN, BillState.OVERDUE, bill.outstanding_fen)
        )
    if bill.state is BillState.OVERDUE and now >= bill.grace_until:
        bill = dataclasses.replace(
            bill, state=BillState.DEFAULTED, defaulted_at=bill.grace_until, defaulted_fen=bill.outstanding_fen
        )
        transitions.append(
            Transition(
                BillEvent.DEFAULTED, bill.grace_until, BillState.OVERDUE, BillState.DEFAULTED, bill.outstanding_fen
            )
        )
    return DueUpdate(bill, tuple(transitions))


def due_transitions(bill: Bill, now: datetime.datetime) -> DueUpdate:
    """What the timer does at ``now``: the reminder, overdue and default that have come due and
    were not emitted yet. Idempotent: a second call at the same or a later time emits nothing
    already emitted, and an earlier ``now`` undoes nothing."""
    return _advance(bill, _aware("now", now), remind=True)


def pay(bill: Bill, amount_fen: int, at: datetime.datetime) -> PaymentResult:
    """Pays ``amount_fen`` towards the bill's outstanding self-pay share at ``at``.

    Raises InvalidArgument (amount_fen) for a non-int, zero, negative or absurd amount, and
    FailedPrecondition for a settled bill (bill_id) or more than is outstanding (amount_fen);
    nothing changes then. Applies the overdue and default due by ``at`` first (docs/decisions/health-late-payment.md).
    """
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int):
        raise InvalidArgument("amount_fen", "NOT_AN_INTEGER", f"must be an integer number of fen, not {amount_fen!r}")
    if amount_fen <= 0:
        raise InvalidArgument("amount_fen", "NOT_POSITIVE", f"must be positive (got {amount_fen} fen)")
    if amount_fen > MAX_FEN:
        raise InvalidArgument(
            "amount_fen", "OUT_OF_RANGE", f"{amount_fen} fen is more than any bill (at most {MAX_FEN})"
        )
    paid_at = _aware("at", at)
    if paid_at < bill.issued_at:
        raise ValueError(f"at {paid_at.isoformat()} is before the bill was issued ({bill.issued_at.isoformat()})")
    if bill.state is BillState.SETTLED:
        raise FailedPrecondition(
            f"bill_id: bill {bill.bill_id} is already settled; nothing is owed",
            field="bill_id",
            reason="ALREADY_SETTLED",
        )
    if amount_fen > bill.outstanding_fen:
        raise FailedPrecondition(
            f"amount_fen: {amount_fen} fen is more than the {bill.outstanding_fen} fen outstanding on bill "
            f"{bill.bill_id}; over-payment is refused",
            field="amount_fen",
            reason="OVERPAYMENT",
        )
    caught_up = _advance(bill, paid_at, remind=False)
    before = caught_up.bill
    transitions = list(caught_up.transitions)
    paid = before.paid_fen + amount_fen
    if paid < before.self_pay_fen:
        after = dataclasses.replace(before, paid_fen=paid, payments=before.payments + 1)
    else:
        after = dataclasses.replace(
            before, paid_fen=paid, payments=before.payments + 1, state=BillState.SETTLED, settled_at=paid_at
        )
        transitions.append(Transition(BillEvent.SETTLED, paid_at, before.state, BillState.SETTLED, 0))
        if before.state is BillState.DEFAULTED:
            transitions.append(Transition(BillEvent.CREDIT_RESTORED, paid_at, before.state, BillState.SETTLED, 0))
    return PaymentResult(after, amount_fen, before.state, tuple(transitions))
