"""Health's contract mappings (services/health/contract.py): every domain enum has its contract
value and back, and each bill transition publishes the event the contract names, from values
alone."""

from __future__ import annotations

import datetime
import enum

import pytest

from govmesh.enums import from_proto
from govmesh.errors import InvalidArgument
from govmesh.health.v1 import events_pb2
from govmesh.health.v1 import medical_credit_pb2 as pb
from services.health import contract
from services.health.domain import billing, credit, insurance, ledger
from services.health.domain.model import Account, VisitBill, VisitState

AT = datetime.datetime(2019, 3, 10, 8, 0, tzinfo=datetime.UTC)

ENUMS: list[tuple[type[enum.Enum], object, str]] = [
    (credit.AccountStatus, pb.AccountStatus, "ACCOUNT_STATUS_"),
    (credit.CreditTier, pb.CreditTier, "CREDIT_TIER_"),
    (credit.NoCreditReason, pb.NoCreditReason, "NO_CREDIT_REASON_"),
    (credit.VisitKind, pb.VisitKind, "VISIT_KIND_"),
    (VisitState, pb.VisitState, "VISIT_STATE_"),
    (insurance.ChargeCategory, pb.ChargeCategory, "CHARGE_CATEGORY_"),
    (billing.BillState, pb.BillState, "BILL_STATE_"),
    (ledger.LedgerAccountKind, pb.LedgerAccountKind, "LEDGER_ACCOUNT_KIND_"),
]


@pytest.mark.parametrize(("domain", "proto", "prefix"), ENUMS, ids=[e[2].rstrip("_") for e in ENUMS])
def test_every_domain_enum_is_exactly_the_contract_s_without_unspecified(
    domain: type[enum.Enum], proto: object, prefix: str
) -> None:
    names = {name.removeprefix(prefix) for name in proto.keys()}  # type: ignore[attr-defined]
    assert names == {member.name for member in domain} | {"UNSPECIFIED"}
    for member in domain:
        assert from_proto(domain, proto, prefix, proto.Value(prefix + member.name)) is member  # type: ignore[attr-defined]


def test_requests_name_the_field_of_a_value_that_names_nothing() -> None:
    assert contract.visit_kind_of(pb.VISIT_KIND_INPATIENT) is credit.VisitKind.INPATIENT
    with pytest.raises(InvalidArgument) as unspecified:
        contract.visit_kind_of(pb.VISIT_KIND_UNSPECIFIED)
    assert unspecified.value.field == "kind"
    assert contract.category_of(99) is None
    assert contract.bill_states_of([pb.BILL_STATE_OPEN]) == [billing.BillState.OPEN]
    with pytest.raises(InvalidArgument) as unknown:
        contract.bill_states_of([pb.BILL_STATE_OPEN, 42])
    assert unknown.value.field == "states"


def account(status: credit.AccountStatus = credit.AccountStatus.ACTIVE) -> Account:
    return Account(
        account_id="a1",
        subject_id="sub_1",
        masked_identifier="330183********242X",
        status=status,
        tier=credit.CreditTier.STANDARD,
        no_credit_reason=None,
        credit_score=650,
        credit_score_proof_id="p1",
        insurance_enrolled=True,
        insurance_proof_id="p2",
        outpatient_limit_fen=200_000,
        inpatient_limit_fen=1_000_000,
        outstanding_fen=150_000,
        enrolled_at=AT,
        updated_at=AT,
    )


def bill() -> VisitBill:
    issued = billing.issue(
        bill_id="b1",
        visit_kind=credit.VisitKind.OUTPATIENT,
        total_fen=100_000,
        insurance_fen=70_000,
        self_pay_fen=30_000,
        closed_at=AT,
    )
    share = insurance.CategoryShare(insurance.ChargeCategory.CONSULTATION, 7_000, 100_000, 70_000, 30_000)
    return VisitBill(issued.bill, "v1", "a1", "sub_1", "330183********242X", "H330100001", (share,))


def test_an_account_shows_what_is_available_only_while_active() -> None:
    active = contract.account(account(), [])
    assert (active.available_outpatient_fen, active.available_inpatient_fen) == (50_000, 850_000)
    assert active.status == pb.ACCOUNT_STATUS_ACTIVE and active.tier == pb.CREDIT_TIER_STANDARD
    assert not active.HasField("suspended_at") and active.no_credit_reason == pb.NO_CREDIT_REASON_UNSPECIFIED
    history = [credit.DefaultRecord("b0", 9_000, AT, None)]
    suspended = contract.account(account(credit.AccountStatus.SUSPENDED), history)
    assert (suspended.available_outpatient_fen, suspended.available_inpatient_fen) == (0, 0)
    assert [(d.bill_id, d.amount_fen, d.HasField("repaid_at")) for d in suspended.defaults] == [("b0", 9_000, False)]


def test_each_transition_publishes_its_event_with_the_bill_and_the_account() -> None:
    of = bill()
    transitions = {
        event: billing.Transition(event, AT, billing.BillState.OPEN, billing.BillState.OPEN, 30_000)
        for event in billing.BillEvent
    }
    published = {event: contract.bill_event(t, of, account(), defaults=1) for event, t in transitions.items()}
    expected = {
        billing.BillEvent.DUE_SOON: events_pb2.BillDueSoon,
        billing.BillEvent.OVERDUE: events_pb2.BillOverdue,
        billing.BillEvent.DEFAULTED: events_pb2.BillDefaulted,
        billing.BillEvent.SETTLED: events_pb2.BillSettled,
        billing.BillEvent.CREDIT_RESTORED: events_pb2.CreditRestored,
    }
    assert {event: type(message) for event, message in published.items()} == expected
    for message in published.values():
        assert (message.bill_id, message.account_id, message.subject_id) == ("b1", "a1", "sub_1")  # type: ignore[attr-defined]
    defaulted = published[billing.BillEvent.DEFAULTED]
    assert isinstance(defaulted, events_pb2.BillDefaulted)
    assert (defaulted.hospital_id, defaulted.outstanding_fen, defaulted.tier) == (
        "H330100001",
        30_000,
        pb.CREDIT_TIER_STANDARD,
    )
    restored = published[billing.BillEvent.CREDIT_RESTORED]
    assert isinstance(restored, events_pb2.CreditRestored) and restored.defaults == 1
    settled = published[billing.BillEvent.SETTLED]
    assert isinstance(settled, events_pb2.BillSettled) and settled.previous_state == pb.BILL_STATE_OPEN


def test_a_bill_shows_its_categories_and_payments() -> None:
    message = contract.bill(bill(), [])
    assert message.outstanding_fen == 30_000 and message.state == pb.BILL_STATE_OPEN
    [share] = message.category_shares
    assert (share.category, share.insurance_ratio_bp) == (pb.CHARGE_CATEGORY_CONSULTATION, 7_000)
    assert not message.HasField("settled_at") and not message.payments
