"""Health's business figures, shared by the api and the worker (no gRPC here).

Counters of what happened are counted where it happens: enrolments, charges, bills and payments in
the api process (from the answers of the use cases, first time only: a retried request with the
same request id counts nothing), overdue bills, defaults, settlements and restorations from the
events each committed change causes (in whichever process committed it: the worker's timers, or
the api when a late payment defaults a bill first). Prometheus sums the processes. The gauges of
what stands now (overdue bills, outstanding credit, the default rate) are read from the database
by the worker, so they are right however many processes there are and after a restart."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.message import Message
from prometheus_client import Counter, Gauge

from govmesh.health.v1 import events_pb2
from govmesh.health.v1 import medical_credit_pb2 as pb

ENROLMENTS = Counter(
    "govmesh_health_enrolments_total",
    "Patients enrolled in medical credit (first time), by tier (none: enrolled without credit).",
    ["tier"],
)
CHARGES = Counter("govmesh_health_charges_total", "Charges added to visits, by category.", ["category"])
CHARGED_FEN = Counter(
    "govmesh_health_charged_fen_total", "Amount charged in fen (insurance and self-pay), by category.", ["category"]
)
BILLS_ISSUED = Counter("govmesh_health_bills_issued_total", "Bills issued (visits closed), by visit kind.", ["kind"])
BILLED_SELF_PAY_FEN = Counter(
    "govmesh_health_billed_self_pay_fen_total", "Self-pay share billed on credit in fen, by visit kind.", ["kind"]
)
REPAID_FEN = Counter("govmesh_health_repaid_fen_total", "Self-pay share repaid in fen (every payment, first time).")
BILLS_OVERDUE = Counter("govmesh_health_bills_overdue_total", "Bills that passed their due time unpaid.")
DEFAULTS = Counter("govmesh_health_defaults_total", "Bills that defaulted (unpaid after the grace period).")
DEFAULTED_FEN = Counter("govmesh_health_defaulted_fen_total", "Self-pay share outstanding at default, in fen.")
BILLS_SETTLED = Counter(
    "govmesh_health_bills_settled_total",
    "Bills paid in full, by the state they were in before (open: on time, overdue, defaulted).",
    ["previous_state"],
)
CREDIT_RESTORED = Counter(
    "govmesh_health_credit_restored_total", "Accounts returned to ACTIVE after repaying a defaulted bill."
)
DEFAULT_RECORDS_PUBLISHED = Counter(
    "govmesh_health_default_records_published_total",
    "Negative credit records (medical_credit_default) published to records for the health commission.",
)

OVERDUE_BILLS = Gauge("govmesh_health_overdue_bills", "Bills past their due time and not settled, now.")
OVERDUE_FEN = Gauge("govmesh_health_overdue_fen", "What the overdue bills still owe, in fen, now.")
OUTSTANDING_FEN = Gauge("govmesh_health_outstanding_fen", "All self-pay credit outstanding now, in fen.")
DEFAULT_RATE_PPB = Gauge(
    "govmesh_health_default_rate_ppb",
    "Unpaid defaulted credit over all credit extended, in parts per billion (the seed: under 10,000).",
)

TIERS = [name.removeprefix("CREDIT_TIER_").lower() for name in pb.CreditTier.keys() if not name.endswith("UNSPECIFIED")]
CATEGORIES = [
    name.removeprefix("CHARGE_CATEGORY_").lower()
    for name in pb.ChargeCategory.keys()
    if not name.endswith("UNSPECIFIED")
]
KINDS = [name.removeprefix("VISIT_KIND_").lower() for name in pb.VisitKind.keys() if not name.endswith("UNSPECIFIED")]
SETTLED_FROM = ("open", "overdue", "defaulted")


def _name(enum_type: object, value: int, prefix: str) -> str:
    try:
        return str(enum_type.Name(value)).removeprefix(prefix).lower()  # type: ignore[attr-defined]
    except ValueError:
        return "unspecified"


def count_enrolment(response: pb.EnrollResponse) -> None:
    if response.created:
        ENROLMENTS.labels(_name(pb.CreditTier, response.account.tier, "CREDIT_TIER_")).inc()


def count_charge(response: pb.AddChargeResponse) -> None:
    if response.created:
        category = _name(pb.ChargeCategory, response.charge.category, "CHARGE_CATEGORY_")
        CHARGES.labels(category).inc()
        CHARGED_FEN.labels(category).inc(response.charge.amount_fen)


def count_bill(bill: pb.Bill) -> None:
    kind = _name(pb.VisitKind, bill.visit_kind, "VISIT_KIND_")
    BILLS_ISSUED.labels(kind).inc()
    BILLED_SELF_PAY_FEN.labels(kind).inc(bill.self_pay_fen)


def count_payment(response: pb.PayBillResponse) -> None:
    if response.created:
        REPAID_FEN.inc(response.payment.amount_fen)


def count(events: Sequence[Message]) -> None:
    """Counts the figures the events of one committed change stand for."""
    for event in events:
        if isinstance(event, events_pb2.BillOverdue):
            BILLS_OVERDUE.inc()
        elif isinstance(event, events_pb2.BillDefaulted):
            DEFAULTS.inc()
            DEFAULTED_FEN.inc(event.outstanding_fen)
        elif isinstance(event, events_pb2.BillSettled):
            BILLS_SETTLED.labels(_name(pb.BillState, event.previous_state, "BILL_STATE_")).inc()
        elif isinstance(event, events_pb2.CreditRestored):
            CREDIT_RESTORED.inc()


def observe(stats: pb.GetStatsResponse) -> None:
    """The gauges, from the scheme's figures as the database has them now."""
    OVERDUE_BILLS.set(stats.overdue_bills)
    OVERDUE_FEN.set(stats.overdue_fen)
    OUTSTANDING_FEN.set(stats.outstanding_fen)
    DEFAULT_RATE_PPB.set(stats.default_rate_ppb)


def prime() -> None:
    """Create every series at zero, so an alert on increase() sees the first event after a
    restart (a series born at 1 shows no increase)."""
    for tier in TIERS:
        ENROLMENTS.labels(tier)
    for category in CATEGORIES:
        CHARGES.labels(category)
        CHARGED_FEN.labels(category)
    for kind in KINDS:
        BILLS_ISSUED.labels(kind)
        BILLED_SELF_PAY_FEN.labels(kind)
    for state in SETTLED_FROM:
        BILLS_SETTLED.labels(state)
