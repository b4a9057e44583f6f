"""The bill state machine (services/health/domain/billing.py): due times at their exact boundaries, the
reminder, overdue and default each emitted once, payments, and repayment after a default.

The seed's scheme: the patient's own share is paid within 48 hours of the visit or at discharge;
missing the deadline is a default that suspends the service until it is repaid."""

from __future__ import annotations

import dataclasses
import datetime
import zoneinfo

import pytest

from govmesh.errors import FailedPrecondition, InvalidArgument
from services.health.domain.billing import (
    DEFAULT_POLICY,
    Bill,
    BillEvent,
    BillingPolicy,
    BillState,
    Transition,
    VisitKind,
    due_at,
    due_transitions,
    issue,
    next_timer_at,
    pay,
)

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
UTC = datetime.UTC
US = datetime.timedelta(microseconds=1)
HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)
# An outpatient visit in Hangzhou closes at 9:30 on Friday 1 March 2019.
CLOSED = datetime.datetime(2019, 3, 1, 9, 30, tzinfo=SHANGHAI)


def outpatient(self_pay_fen: int = 30_000, insurance_fen: int = 70_000, closed: datetime.datetime = CLOSED) -> Bill:
    return issue(
        bill_id="bill-1",
        visit_kind=VisitKind.OUTPATIENT,
        total_fen=self_pay_fen + insurance_fen,
        insurance_fen=insurance_fen,
        self_pay_fen=self_pay_fen,
        closed_at=closed,
    ).bill


def events(transitions: tuple[Transition, ...]) -> list[BillEvent]:
    return [t.event for t in transitions]


# --- due times ---------------------------------------------------------------------------------


def test_outpatient_bill_is_due_48_hours_after_the_visit_closes() -> None:
    bill = outpatient()
    assert bill.state is BillState.OPEN
    assert bill.issued_at == CLOSED
    assert bill.due_at == CLOSED + 48 * HOUR
    assert bill.due_at.tzinfo is UTC
    assert bill.reminder_at == bill.due_at - 24 * HOUR
    assert bill.grace_until == bill.due_at + 7 * DAY
    assert bill.outstanding_fen == 30_000


def test_inpatient_bill_is_due_at_discharge_plus_the_settlement_window() -> None:
    discharged = datetime.datetime(2019, 3, 10, 16, 0, tzinfo=SHANGHAI)
    bill = issue(
        bill_id="bill-in",
        visit_kind=VisitKind.INPATIENT,
        total_fen=5_500_000,
        insurance_fen=3_025_000,
        self_pay_fen=2_475_000,
        closed_at=discharged,
    ).bill
    assert bill.due_at == discharged + 24 * HOUR
    # The window is no longer than the reminder lead: the reminder goes out at discharge.
    assert bill.reminder_at == discharged
    update = due_transitions(bill, discharged)
    assert events(update.transitions) == [BillEvent.DUE_SOON]
    assert due_transitions(update.bill, bill.due_at - US).transitions == ()
    assert events(due_transitions(update.bill, bill.due_at).transitions) == [BillEvent.OVERDUE]


def test_inpatient_window_is_configurable() -> None:
    policy = BillingPolicy(inpatient_settlement_window=6 * HOUR, reminder_before=2 * HOUR)
    assert due_at(VisitKind.INPATIENT, CLOSED, policy) == CLOSED + 6 * HOUR
    bill = issue(
        bill_id="b",
        visit_kind=VisitKind.INPATIENT,
        total_fen=100,
        insurance_fen=0,
        self_pay_fen=100,
        closed_at=CLOSED,
        policy=policy,
    ).bill
    assert bill.reminder_at == CLOSED + 4 * HOUR
    assert bill.grace_until == CLOSED + 6 * HOUR + 7 * DAY


def test_48_hours_are_elapsed_hours_across_a_daylight_saving_change() -> None:
    new_york = zoneinfo.ZoneInfo("America/New_York")
    # Clocks went forward at 02:00 on 10 March 2019: 48 elapsed hours end at 10:00 wall time.
    closed = datetime.datetime(2019, 3, 9, 9, 0, tzinfo=new_york)
    assert due_at(VisitKind.OUTPATIENT, closed) - closed.astimezone(UTC) == 48 * HOUR
    assert due_at(VisitKind.OUTPATIENT, closed).astimezone(new_york).hour == 10


def test_the_same_instant_in_any_zone_gives_the_same_bill() -> None:
    assert outpatient(closed=CLOSED) == outpatient(closed=CLOSED.astimezone(UTC))


@pytest.mark.parametrize(
    ("offset", "state", "emitted"),
    [
        pytest.param(-US, BillState.OPEN, [BillEvent.DUE_SOON], id="one-microsecond-before"),
        pytest.param(datetime.timedelta(0), BillState.OVERDUE, [BillEvent.OVERDUE], id="exactly-at"),
        pytest.param(US, BillState.OVERDUE, [BillEvent.OVERDUE], id="one-microsecond-after"),
    ],
)
def test_48_hour_window_at_its_boundary(offset: datetime.timedelta, state: BillState, emitted: list[BillEvent]) -> None:
    bill = outpatient()
    update = due_transitions(bill, CLOSED + 48 * HOUR + offset)
    assert update.bill.state is state
    assert events(update.transitions) == emitted


@pytest.mark.parametrize(
    ("offset", "previous"),
    [
        pytest.param(-US, BillState.OPEN, id="one-microsecond-before"),
        pytest.param(datetime.timedelta(0), BillState.OVERDUE, id="exactly-at"),
        pytest.param(US, BillState.OVERDUE, id="one-microsecond-after"),
    ],
)
def test_payment_at_the_48_hour_boundary_is_on_time_only_before_it(
    offset: datetime.timedelta, previous: BillState
) -> None:
    # The timer has not run: pay() alone decides, so the outcome never depends on the timer.
    bill = outpatient()
    result = pay(bill, 30_000, CLOSED + 48 * HOUR + offset)
    assert result.previous_state is previous
    assert result.settled
    late = [BillEvent.OVERDUE] if previous is BillState.OVERDUE else []
    assert events(result.transitions) == [*late, BillEvent.SETTLED]
    assert result.transitions[-1].previous_state is previous


@pytest.mark.parametrize(
    ("offset", "state"),
    [
        pytest.param(-US, BillState.OVERDUE, id="one-microsecond-before"),
        pytest.param(datetime.timedelta(0), BillState.DEFAULTED, id="exactly-at"),
        pytest.param(US, BillState.DEFAULTED, id="one-microsecond-after"),
    ],
)
def test_grace_period_boundary(offset: datetime.timedelta, state: BillState) -> None:
    bill = due_transitions(outpatient(), CLOSED + 48 * HOUR).bill
    update = due_transitions(bill, bill.grace_until + offset)
    assert update.bill.state is state


@pytest.mark.parametrize(
    ("offset", "reminded"),
    [(-US, False), (datetime.timedelta(0), True), (US, True)],
    ids=["one-microsecond-before", "exactly-at", "one-microsecond-after"],
)
def test_reminder_boundary(offset: datetime.timedelta, reminded: bool) -> None:
    bill = outpatient()
    update = due_transitions(bill, bill.reminder_at + offset)
    assert events(update.transitions) == ([BillEvent.DUE_SOON] if reminded else [])
    assert (update.bill.reminded_at is not None) is reminded


# --- each event once ---------------------------------------------------------------------------


def test_a_timer_ticking_every_ten_minutes_emits_reminder_overdue_and_default_once_each() -> None:
    bill = outpatient()
    emitted: list[Transition] = []
    now = CLOSED
    while now < CLOSED + 12 * DAY:
        update = due_transitions(bill, now)
        emitted += update.transitions
        bill = update.bill
        # Idempotent: the same tick again emits nothing.
        assert due_transitions(bill, now).transitions == ()
        now += 10 * datetime.timedelta(minutes=1)
    assert events(tuple(emitted)) == [BillEvent.DUE_SOON, BillEvent.OVERDUE, BillEvent.DEFAULTED]
    reminder, overdue, defaulted = emitted
    assert reminder.at == bill.reminder_at  # the reminder_at lands on a tick
    assert overdue.at == bill.due_at and overdue.outstanding_fen == 30_000
    assert defaulted.at == bill.grace_until and defaulted.state is BillState.DEFAULTED
    assert bill.state is BillState.DEFAULTED
    assert bill.defaulted_at == bill.grace_until
    assert bill.defaulted_fen == 30_000
    assert bill.overdue_at == bill.due_at


def test_a_late_timer_skips_the_reminder_and_dates_events_by_the_rules() -> None:
    bill = outpatient()
    late = bill.grace_until + 3 * DAY
    update = due_transitions(bill, late)
    assert events(update.transitions) == [BillEvent.OVERDUE, BillEvent.DEFAULTED]
    assert [t.at for t in update.transitions] == [bill.due_at, bill.grace_until]
    assert due_transitions(update.bill, late + DAY).transitions == ()
    # An earlier clock undoes nothing and emits nothing.
    assert due_transitions(update.bill, bill.reminder_at).transitions == ()
    assert due_transitions(update.bill, bill.reminder_at).bill == update.bill


def test_the_timer_next_looks_at_a_bill_at_its_reminder_due_time_and_end_of_grace() -> None:
    bill = outpatient()
    assert next_timer_at(bill) == bill.reminder_at
    reminded = due_transitions(bill, bill.reminder_at).bill
    assert next_timer_at(reminded) == bill.due_at
    overdue = due_transitions(reminded, bill.due_at).bill
    assert next_timer_at(overdue) == bill.grace_until
    assert next_timer_at(due_transitions(overdue, bill.grace_until).bill) is None
    assert next_timer_at(pay(bill, bill.self_pay_fen, CLOSED).bill) is None


def test_no_reminder_for_a_settled_bill() -> None:
    bill = pay(outpatient(), 30_000, CLOSED + HOUR).bill
    assert due_transitions(bill, bill.reminder_at).transitions == ()
    assert due_transitions(bill, bill.grace_until + DAY).transitions == ()


def test_a_partly_paid_bill_is_still_reminded_with_what_it_owes() -> None:
    bill = pay(outpatient(), 10_000, CLOSED + HOUR).bill
    update = due_transitions(bill, bill.reminder_at)
    assert [(t.event, t.outstanding_fen) for t in update.transitions] == [(BillEvent.DUE_SOON, 20_000)]


def test_bill_without_self_pay_is_settled_at_issue() -> None:
    issued = issue(
        bill_id="b0",
        visit_kind=VisitKind.OUTPATIENT,
        total_fen=500,
        insurance_fen=500,
        self_pay_fen=0,
        closed_at=CLOSED,
    )
    assert issued.bill.state is BillState.SETTLED
    assert issued.bill.settled_at == CLOSED
    assert events(issued.transitions) == [BillEvent.SETTLED]
    assert due_transitions(issued.bill, CLOSED + 30 * DAY).transitions == ()
    with pytest.raises(FailedPrecondition):
        pay(issued.bill, 1, CLOSED + HOUR)


# --- payments ----------------------------------------------------------------------------------


def test_partial_payments_add_up_to_a_settlement() -> None:
    bill = outpatient()
    for step, amount in enumerate((10_000, 15_000, 4_999), start=1):
        result = pay(bill, amount, CLOSED + step * HOUR)
        bill = result.bill
        assert result.transitions == ()
        assert bill.state is BillState.OPEN
        assert bill.payments == step
    assert bill.paid_fen == 29_999 and bill.outstanding_fen == 1
    result = pay(bill, 1, CLOSED + 5 * HOUR)
    assert result.settled and not result.recovery and not result.credit_restored
    assert result.bill.settled_at == CLOSED + 5 * HOUR
    assert result.bill.payments == 4
    assert [(t.event, t.previous_state) for t in result.transitions] == [(BillEvent.SETTLED, BillState.OPEN)]


def test_over_payment_is_refused_naming_amount_fen_and_changes_nothing() -> None:
    bill = pay(outpatient(), 10_000, CLOSED + HOUR).bill
    before = dataclasses.replace(bill)
    with pytest.raises(FailedPrecondition) as caught:
        pay(bill, 20_001, CLOSED + 2 * HOUR)
    assert caught.value.field == "amount_fen"
    assert caught.value.reason == "OVERPAYMENT"
    assert caught.value.message.startswith("amount_fen: 20001 fen")
    assert "20000 fen outstanding" in caught.value.message
    assert bill == before
    assert pay(bill, 20_000, CLOSED + 2 * HOUR).settled


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        (0, "NOT_POSITIVE"),
        (-1, "NOT_POSITIVE"),
        (-30_000, "NOT_POSITIVE"),
        (10**16, "OUT_OF_RANGE"),
        (True, "NOT_AN_INTEGER"),
        (100.0, "NOT_AN_INTEGER"),
        ("100", "NOT_AN_INTEGER"),
    ],
)
def test_bad_amounts_are_invalid_arguments(amount: object, reason: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        pay(outpatient(), amount, CLOSED + HOUR)  # type: ignore[arg-type]
    assert caught.value.field == "amount_fen"
    assert caught.value.reason == reason
    assert caught.value.message.startswith("amount_fen: ")


def test_paying_a_settled_bill_is_refused() -> None:
    bill = pay(outpatient(), 30_000, CLOSED + HOUR).bill
    with pytest.raises(FailedPrecondition) as caught:
        pay(bill, 1, CLOSED + 2 * HOUR)
    assert caught.value.reason == "ALREADY_SETTLED"


def test_default_then_repayment_settles_and_restores_credit() -> None:
    bill = pay(outpatient(), 5_000, CLOSED + HOUR).bill
    update = due_transitions(bill, bill.grace_until)
    assert events(update.transitions) == [BillEvent.OVERDUE, BillEvent.DEFAULTED]
    bill = update.bill
    assert bill.defaulted_fen == 25_000
    partial = pay(bill, 20_000, bill.grace_until + DAY)
    assert partial.recovery and not partial.settled and not partial.credit_restored
    assert partial.bill.state is BillState.DEFAULTED
    assert partial.transitions == ()
    final = pay(partial.bill, 5_000, bill.grace_until + 2 * DAY)
    assert final.settled and final.recovery and final.credit_restored
    assert final.bill.state is BillState.SETTLED
    assert final.bill.ever_defaulted and final.bill.defaulted_fen == 25_000
    assert [(t.event, t.previous_state) for t in final.transitions] == [
        (BillEvent.SETTLED, BillState.DEFAULTED),
        (BillEvent.CREDIT_RESTORED, BillState.DEFAULTED),
    ]
    assert due_transitions(final.bill, bill.grace_until + 30 * DAY).transitions == ()


def test_a_payment_after_the_grace_period_catches_up_before_settling() -> None:
    bill = outpatient()
    result = pay(bill, 30_000, bill.grace_until + HOUR)
    assert result.previous_state is BillState.DEFAULTED
    assert events(result.transitions) == [
        BillEvent.OVERDUE,
        BillEvent.DEFAULTED,
        BillEvent.SETTLED,
        BillEvent.CREDIT_RESTORED,
    ]
    assert result.credit_restored


def test_overdue_payment_settles_without_restoring() -> None:
    bill = due_transitions(outpatient(), CLOSED + 50 * HOUR).bill
    result = pay(bill, 30_000, CLOSED + 60 * HOUR)
    assert result.previous_state is BillState.OVERDUE
    assert result.settled and not result.credit_restored
    assert events(result.transitions) == [BillEvent.SETTLED]


# --- refused input -----------------------------------------------------------------------------


def test_naive_datetimes_are_refused() -> None:
    naive = datetime.datetime(2019, 3, 1, 9, 30)
    with pytest.raises(ValueError, match="timezone-aware"):
        outpatient(closed=naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        due_transitions(outpatient(), naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        pay(outpatient(), 1, naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        due_at(VisitKind.OUTPATIENT, naive)


def test_payment_before_issue_is_refused() -> None:
    with pytest.raises(ValueError, match="before the bill was issued"):
        pay(outpatient(), 1, CLOSED - US)


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(BillingPolicy)])
def test_policy_durations_must_be_positive(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        BillingPolicy(**{name: datetime.timedelta(0)})


def test_inconsistent_bills_are_refused() -> None:
    with pytest.raises(ValueError, match="total_fen"):
        issue(
            bill_id="b",
            visit_kind=VisitKind.OUTPATIENT,
            total_fen=100,
            insurance_fen=60,
            self_pay_fen=41,
            closed_at=CLOSED,
        )
    with pytest.raises(ValueError, match="self_pay_fen"):
        issue(
            bill_id="b",
            visit_kind=VisitKind.OUTPATIENT,
            total_fen=100,
            insurance_fen=101,
            self_pay_fen=-1,
            closed_at=CLOSED,
        )
    with pytest.raises(ValueError, match="paid_fen"):
        dataclasses.replace(outpatient(), paid_fen=30_001)
    with pytest.raises(ValueError, match="SETTLED"):
        dataclasses.replace(outpatient(), paid_fen=30_000)


def test_default_policy_is_the_seed_scheme() -> None:
    assert DEFAULT_POLICY.outpatient_due_after == 48 * HOUR
    assert DEFAULT_POLICY.reminder_before == 24 * HOUR
    assert DEFAULT_POLICY.grace_period == 7 * DAY


def test_the_contract_and_the_readme_state_the_due_times_the_policy_gives() -> None:
    """Issue 14: the contract and the README said an inpatient bill is due "at discharge" while
    the policy gives a settlement window after it. Both now state the policy's figures."""
    from pathlib import Path

    from services.health.domain.billing import DEFAULT_POLICY

    root = Path(__file__).resolve().parents[3]
    contract = (root / "proto/govmesh/health/v1/medical_credit.proto").read_text()
    readme = (root / "README.md").read_text()
    window = int(DEFAULT_POLICY.inpatient_settlement_window.total_seconds() // 3600)
    outpatient = int(DEFAULT_POLICY.outpatient_due_after.total_seconds() // 3600)
    assert f"{window} hours by default" in contract and f"within {window} hours of discharge" in readme
    assert f"{outpatient} hours" in contract and f"due {outpatient} hours after an outpatient" in readme
    assert "at discharge for inpatients" not in contract and "Self-pay share due at discharge." not in contract
