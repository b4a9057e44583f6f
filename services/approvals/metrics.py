"""Approvals' business figures, shared by the api and the worker (no gRPC here)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from google.protobuf.message import Message
from prometheus_client import Counter, Histogram

from govmesh.approvals.v1 import approvals_pb2 as pb
from govmesh.approvals.v1 import events_pb2
from services.approvals.domain.casetypes import CaseTypeSpec

CASES_SUBMITTED = Counter(
    "govmesh_approvals_cases_submitted_total", "Cases submitted (first time), by type.", ["case_type"]
)
CASES_DECIDED = Counter(
    "govmesh_approvals_cases_decided_total",
    "Cases decided, by type, outcome (approved, rejected) and who decided (automatic, human_review).",
    ["case_type", "outcome", "decided_by"],
)
# From a fraction of a second (every check automatic) to the statutory weeks of a review.
DECISION_SECONDS = Histogram(
    "govmesh_approvals_decision_seconds",
    "Time from submission to decision, by case type.",
    ["case_type"],
    buckets=(
        0.05,
        0.1,
        0.25,
        0.5,
        1,
        2.5,
        5,
        10,
        30,
        60,
        300,
        900,
        3600,
        4 * 3600,
        86400,
        3 * 86400,
        9 * 86400,
        30 * 86400,
    ),
)
CASES_CANCELLED = Counter("govmesh_approvals_cases_cancelled_total", "Cases cancelled, by type.", ["case_type"])
STEPS_ESCALATED = Counter(
    "govmesh_approvals_steps_escalated_total",
    "Case steps escalated to staff after their retries, by case type and department.",
    ["case_type", "department"],
)
DEADLINES_BREACHED = Counter(
    "govmesh_approvals_deadlines_breached_total", "Cases that passed their statutory deadline undecided.", ["case_type"]
)


def count(events: Sequence[Message]) -> None:
    """Counts the figures the events of one committed change stand for."""
    for event in events:
        if isinstance(event, events_pb2.CaseSubmitted):
            CASES_SUBMITTED.labels(event.case_type).inc()
        elif isinstance(event, events_pb2.CaseDecided):
            outcome = pb.DecisionOutcome.Name(event.outcome).removeprefix("DECISION_OUTCOME_").lower()
            maker = pb.DecisionMaker.Name(event.decided_by).removeprefix("DECISION_MAKER_").lower()
            CASES_DECIDED.labels(event.case_type, outcome, maker).inc()
            DECISION_SECONDS.labels(event.case_type).observe(event.decision_duration.ToTimedelta().total_seconds())
        elif isinstance(event, events_pb2.CaseCancelled):
            CASES_CANCELLED.labels(event.case_type).inc()
        elif isinstance(event, events_pb2.CaseEscalated):
            STEPS_ESCALATED.labels(event.case_type, event.department_code).inc()
        elif isinstance(event, events_pb2.DeadlineBreached):
            DEADLINES_BREACHED.labels(event.case_type).inc()


def prime(specs: Iterable[CaseTypeSpec]) -> None:
    """Create every series at zero, so an alert on increase() sees the first event after a
    restart (a series born at 1 shows no increase)."""
    for spec in specs:
        for counter in (CASES_SUBMITTED, CASES_CANCELLED, DEADLINES_BREACHED):
            counter.labels(spec.code)
        for outcome in ("approved", "rejected"):
            for maker in ("automatic", "human_review"):
                CASES_DECIDED.labels(spec.code, outcome, maker)
        DECISION_SECONDS.labels(spec.code)
        for department in {proof.department_code for proof in spec.proofs}:
            STEPS_ESCALATED.labels(spec.code, department)
