"""Approvals' saga (services/approvals/domain/saga.py) driven by hand, without a database or a
process: each step is called with the case and the facts it needs, and what it returns (the new
case, its events, its next look, the rows it keeps or drops) is applied the way the use cases
save it. Records is stood in for by records' own code deriving each proof's claims from the
scenario's department records (tests/support/approvals_scenarios.py)."""

from __future__ import annotations

import dataclasses
import datetime
from collections import defaultdict
from collections.abc import Callable, Mapping

import pytest
from google.protobuf.message import Message

from govmesh import typed_values as values
from govmesh.approvals.v1 import approvals_pb2 as pb
from govmesh.approvals.v1 import events_pb2
from govmesh.clock import shanghai_date
from govmesh.errors import FailedPrecondition
from govmesh.identity.v1 import identity_pb2
from govmesh.parties import Party
from govmesh.privacy import mask_identifiers
from services.approvals import contract
from services.approvals.domain import saga, submission
from services.approvals.domain.casetypes import CaseTypeSpec, ParameterType, ReviewStepSpec
from services.approvals.domain.rules import APPLICANT
from services.approvals.domain.saga import FINAL, Claims, Keep, Proof, ProofNotIssued, ProofRequest, SagaSettings
from services.records import contract as records_contract
from services.records.domain import proofs
from tests.support.approvals_scenarios import Scenario, accepted, scenarios
from tests.support.standins import subject_of

NOW = datetime.datetime(2026, 3, 2, 1, 0, tzinfo=datetime.UTC)  # a Monday, 09:00 in Hangzhou
SCENARIOS = scenarios(shanghai_date(NOW))
SAGA = SagaSettings()
DEPARTMENTS = contract.catalogue(records_contract.proof_types(), records_contract.departments()).departments
SECOND = datetime.timedelta(seconds=1)


def scenario(case_type: str, name: str = "qualifies") -> Scenario:
    return next(s for s in SCENARIOS if s.case_type == case_type and s.name == name)


class Records:
    """Issues proofs from a scenario's records; ``failures`` are answered first, in order."""

    def __init__(self, s: Scenario) -> None:
        self.stored: defaultdict[str, list[proofs.StoredRecord]] = defaultdict(list)
        for record in s.records:
            self.stored[subject_of(record.subject_identifier)].append(accepted(record, shanghai_date(NOW)))
        self.failures: list[ProofNotIssued] = []
        self.validity: dict[str, datetime.timedelta] = {}
        self.issued = 0

    def answer(self, request: ProofRequest, now: datetime.datetime) -> Proof | ProofNotIssued:
        if self.failures:
            return self.failures.pop(0)
        spec = proofs.proof_type(request.proof_type)
        assert spec is not None
        sources = [
            r for r in self.stored[request.subject_id] if (r.department_code, r.record_type) in spec.source_record_types
        ]
        parameters = proofs.resolve_parameters(spec, dict(request.parameters))
        derived = proofs.derive_claims(spec, sources, parameters, shanghai_date(now))
        self.issued += 1
        return Proof(
            proof_id=f"proof-{self.issued}",
            proof_type=spec.code,
            subject_id=request.subject_id,
            issuing_department_code=spec.issuing_department_code,
            issued_at=now,
            valid_until=now + self.validity.get(spec.code, spec.validity),
            # As approvals reads records' answer and keeps its claims.
            claims=values.fields_from_json(
                values.fields_to_json(values.fields_from_proto(values.fields_to_proto(derived)))
            ),
        )


@dataclasses.dataclass
class Run:
    """One case through the saga, with what the use cases would keep beside it."""

    spec: CaseTypeSpec
    records: Records
    subjects: dict[str, str]
    case: pb.Case
    now: datetime.datetime
    due: datetime.datetime | None
    held: list[str]
    events: list[Message] = dataclasses.field(default_factory=list)
    claims: dict[str, Claims] = dataclasses.field(default_factory=dict)
    tasks: dict[str, pb.ReviewTask] = dataclasses.field(default_factory=dict)

    @classmethod
    def submitted(cls, spec: CaseTypeSpec, s: Scenario) -> Run:
        parameters = submission.parameters(spec, s.parameters)
        applicant = Party(subject_of(s.applicant), mask_identifiers(s.applicant), identity_pb2.SUBJECT_KIND_RESIDENT)
        subjects, shown = {APPLICANT: applicant.subject_id}, dict(parameters)
        for p in spec.parameters:
            if p.type is ParameterType.IDENTIFIER and p.name in parameters:
                subjects[p.name] = subject_of(parameters[p.name])
                shown[p.name] = mask_identifiers(parameters[p.name])
        case, event = saga.open_case(spec, "case-1", applicant, shown, "demo-portal", NOW)
        held = list(submission.holds(spec, parameters).values())
        return cls(spec, Records(s), subjects, case, NOW, NOW + SAGA.stall_after, held, [event])

    def apply(self, change: saga.Change | None) -> saga.Change | None:
        """Save ``change`` the way the use cases do."""
        if change is None:
            return None
        assert change.case.revision == self.case.revision + 1
        self.case = change.case
        # Every event is about the applicant (its ce-subject), never another party.
        assert {subject for _, subject in change.events} <= {self.case.applicant_subject_id}
        self.events += [event for event, _ in change.events]
        for step_id in change.claims_dropped:
            del self.claims[step_id]
        self.claims |= change.claims_kept
        self.tasks |= {t.task_id: t for t in [*change.tasks_opened, *change.tasks_updated]}
        if change.next_look is not Keep.SCHEDULE:
            self.due = change.next_look
        if self.case.state in FINAL:
            self.held, self.claims = [], {}
        return change

    def pull(self) -> None:
        """Start pulling the outstanding proofs and record records' answers."""
        outstanding = saga.outstanding_proofs(self.case)
        self.apply(saga.start_pulls(self.case, outstanding, self.now, SAGA))
        asked = saga.proof_requests(self.case, self.spec, outstanding, self.subjects)
        answers = {request.step_id: (proof, self.records.answer(request, self.now)) for proof, request in asked}
        self.apply(saga.record_proofs(self.case, answers, self.subjects, DEPARTMENTS, self.now, SAGA))

    def decide(self) -> saga.Change | None:
        return self.apply(saga.decide(self.case, self.spec, self.claims, DEPARTMENTS, self.now))

    def drive(self) -> pb.Case:
        """What the worker does with the case: pull what is outstanding, then decide."""
        if saga.outstanding_proofs(self.case):
            self.pull()
        if saga.proofs_in(self.case):
            self.decide()
        return self.case

    def review(self, decision: pb.ReviewDecision.ValueType, note: str = "", official: str = "culture_tourism") -> None:
        task = next(t for t in self.tasks.values() if t.state == pb.REVIEW_TASK_STATE_OPEN)
        done, change = saga.complete_review(self.case, task, decision, note, official, self.spec, DEPARTMENTS, self.now)
        assert done.state == pb.REVIEW_TASK_STATE_COMPLETED and done.decision == decision
        self.apply(change)

    def step(self, step_id: str) -> pb.CaseStep:
        return next(s for s in self.case.steps if s.step_id == step_id)

    def of(self, event_type: type[Message]) -> list[Message]:
        return [e for e in self.events if isinstance(e, event_type)]


@pytest.fixture
def run(case_types: Mapping[str, CaseTypeSpec]) -> Callable[..., Run]:
    def start(case_type: str, name: str = "qualifies") -> Run:
        return Run.submitted(case_types[case_type], scenario(case_type, name))

    return start


def states(case: pb.Case) -> list[int]:
    return [t.to_state for t in case.transitions]


# ---------------------------------------------------------------------------------------------
# A new case


def test_a_case_is_planned_proofs_then_rules_then_sign_offs_then_reviews(
    case_types: Mapping[str, CaseTypeSpec],
) -> None:
    steps = saga.plan_steps(case_types["tour_guide_licence"])
    assert [s.step_id for s in steps] == [
        "proof:criminal_record",
        "proof:education_level",
        "proof:enterprise_registration:employer_identifier",
        "rules:public_security",
        "rules:education",
        "rules:market_regulation",
        "sign_off:culture_tourism",
        "review:1:culture_tourism",
    ]
    assert {s.state for s in steps} == {pb.CASE_STEP_STATE_PENDING}


def test_a_submitted_case_has_its_deadline_and_is_looked_at_if_nobody_takes_it_up(run: Callable[..., Run]) -> None:
    r = run("second_hand_housing_transfer")
    assert r.case.state == pb.CASE_STATE_SUBMITTED and r.case.revision == 1
    # 9 working days from Monday 2 March 2026: Friday 13 March.
    assert (r.case.deadline_date, r.case.deadline_provisional) == ("2026-03-13", False)
    (event,) = r.events
    assert isinstance(event, events_pb2.CaseSubmitted) and event.case_id == "case-1"
    assert r.held == [f"property_unit={scenario('second_hand_housing_transfer').parameters['property_unit']}"]
    assert "seller_identifier" in r.subjects and r.case.parameters["seller_identifier"].count("*") == 8


# ---------------------------------------------------------------------------------------------
# Decided automatically


@pytest.mark.parametrize(
    "s", [s for s in SCENARIOS if s.case_type != "tour_guide_licence" or s.failing_rules], ids=Scenario.id
)
def test_each_applicant_is_decided_as_the_scenario_says(case_types: Mapping[str, CaseTypeSpec], s: Scenario) -> None:
    r = Run.submitted(case_types[s.case_type], s)
    case = r.drive()
    expected = pb.CASE_STATE_REJECTED if s.failing_rules else pb.CASE_STATE_APPROVED
    assert case.state == expected, case.decision.message_en
    assert set(case.decision.failing_rule_ids) == s.failing_rules
    assert states(case) == [pb.CASE_STATE_SUBMITTED, pb.CASE_STATE_IN_PROGRESS, expected]
    (decided,) = r.of(events_pb2.CaseDecided)
    assert isinstance(decided, events_pb2.CaseDecided)
    assert decided.outcome == case.decision.outcome and decided.decided_by == pb.DECISION_MAKER_AUTOMATIC
    assert r.due is None


def test_a_qualifying_applicant_is_approved_with_every_proof_drawn_for_the_case(run: Callable[..., Run]) -> None:
    r = run("business_licence_change")
    r.pull()
    step = r.step("proof:enterprise_registration")
    assert (step.state, step.attempts, step.proof_id) == (pb.CASE_STEP_STATE_SUCCEEDED, 1, "proof-1")
    assert "浙江省市场监督管理局" in step.message_zh and "the applicant brought nothing" in step.message_en
    assert set(r.claims) == {"proof:enterprise_registration"} and r.claims[step.step_id].proof_id == "proof-1"
    assert [p.proof_id for p in r.case.proofs] == ["proof-1"]
    r.decide()
    case = r.case
    assert case.state == pb.CASE_STATE_APPROVED
    assert case.decision.message_en == "Approved: every rule passed"
    assert case.decision_duration.ToTimedelta() == datetime.timedelta(0)
    assert all(result.outcome == pb.RULE_OUTCOME_PASSED for result in case.rule_results)
    assert {e.proof_id for result in case.rule_results for e in result.evidence} == {"proof-1"}
    (decided,) = r.of(events_pb2.CaseDecided)
    assert isinstance(decided, events_pb2.CaseDecided) and list(decided.proof_ids) == ["proof-1"]


def test_a_failing_rule_rejects_the_case_with_its_explanation(run: Callable[..., Run]) -> None:
    r = run("second_hand_housing_transfer", "no_seizure")
    case = r.drive()
    assert case.state == pb.CASE_STATE_REJECTED
    assert list(case.decision.failing_rule_ids) == ["no_seizure"]
    (failed,) = [result for result in case.rule_results if result.outcome == pb.RULE_OUTCOME_FAILED]
    assert failed.message_en and failed.message_en in case.decision.message_en
    assert case.decision.message_en.startswith("Rejected: ")
    seller_proofs = {s.proof_id for s in case.steps if s.step_id.endswith(":seller_identifier")}
    assert failed.evidence and {e.proof_id for e in failed.evidence} <= seller_proofs
    rules_step = r.step("rules:natural_resources")
    assert rules_step.state == pb.CASE_STEP_STATE_FAILED and rules_step.message_en.startswith("1 of ")
    # Nobody signs off a rejected case.
    sign_offs = [s for s in case.steps if s.kind == pb.CASE_STEP_KIND_SIGN_OFF]
    assert [s.state for s in sign_offs] == [pb.CASE_STEP_STATE_SKIPPED] * 3
    (decided,) = r.of(events_pb2.CaseDecided)
    assert isinstance(decided, events_pb2.CaseDecided)
    assert [(f.rule_id, f.message_en) for f in decided.failed_rules] == [("no_seizure", failed.message_en)]


def test_every_department_signs_off_in_order_once_its_rules_passed(run: Callable[..., Run]) -> None:
    r = run("second_hand_housing_transfer")
    case = r.drive()
    sign_offs = [s for s in case.steps if s.kind == pb.CASE_STEP_KIND_SIGN_OFF]
    assert [s.department_code for s in sign_offs] == ["taxation", "natural_resources", "housing"]
    assert all(s.state == pb.CASE_STEP_STATE_SUCCEEDED and s.attempts == 1 for s in sign_offs)
    tax_service = "Zhejiang Provincial Tax Service, State Taxation Administration"
    assert sign_offs[0].message_en == f"Signed off by {tax_service}: all its rules passed"
    completed = [e.step_id for e in r.of(events_pb2.CaseStepCompleted) if isinstance(e, events_pb2.CaseStepCompleted)]
    # Each step's end recorded once, in the order the saga took them.
    assert completed == [s.step_id for s in case.steps]


# ---------------------------------------------------------------------------------------------
# Human review


def test_a_review_step_waits_for_the_official_who_approves(run: Callable[..., Run]) -> None:
    r = run("tour_guide_licence")
    case = r.drive()
    assert case.state == pb.CASE_STATE_IN_REVIEW and r.due is None
    (task,) = r.tasks.values()
    assert (task.department_code, task.state, task.deadline_date) == (
        "culture_tourism",
        pb.REVIEW_TASK_STATE_OPEN,
        case.deadline_date,
    )
    step = r.step("review:1:culture_tourism")
    assert step.state == pb.CASE_STEP_STATE_WAITING and step.review_task_id == task.task_id
    assert not r.of(events_pb2.CaseDecided)
    # The saga has nothing to do while the case waits on a person.
    assert saga.settled(case) and saga.decide(case, r.spec, r.claims, DEPARTMENTS, r.now) is None
    r.now += datetime.timedelta(hours=2)
    r.review(pb.REVIEW_DECISION_APPROVE)
    case = r.case
    assert case.state == pb.CASE_STATE_APPROVED
    assert (case.decision.decided_by, case.decision.official_id) == (pb.DECISION_MAKER_HUMAN_REVIEW, "culture_tourism")
    assert case.decision.message_en == "Approved: every rule passed and the review approved"
    assert case.decision_duration.ToTimedelta() == datetime.timedelta(hours=2)
    assert states(case)[-3:] == [pb.CASE_STATE_IN_REVIEW, pb.CASE_STATE_IN_PROGRESS, pb.CASE_STATE_APPROVED]
    assert r.step("review:1:culture_tourism").state == pb.CASE_STEP_STATE_SUCCEEDED


def test_a_reviewer_rejects_with_a_note_the_applicant_reads(run: Callable[..., Run]) -> None:
    r = run("tour_guide_licence")
    r.drive()
    r.review(pb.REVIEW_DECISION_REJECT, note="资格证书编号不在合格名单中")
    case = r.case
    assert case.state == pb.CASE_STATE_REJECTED
    assert (case.decision.message_en, case.decision.note) == ("Rejected by review", "资格证书编号不在合格名单中")
    step = r.step("review:1:culture_tourism")
    assert step.state == pb.CASE_STEP_STATE_FAILED and step.message_zh.endswith("：资格证书编号不在合格名单中")
    assert list(case.decision.failing_rule_ids) == []


def test_a_review_decided_again_the_same_is_no_change_and_otherwise_refused(run: Callable[..., Run]) -> None:
    r = run("tour_guide_licence")
    r.drive()
    r.review(pb.REVIEW_DECISION_APPROVE)
    (task,) = r.tasks.values()
    done, change = saga.complete_review(
        r.case, task, pb.REVIEW_DECISION_APPROVE, "", "culture_tourism", r.spec, DEPARTMENTS, r.now
    )
    assert change is None and done == task
    with pytest.raises(FailedPrecondition, match="already decided otherwise"):
        saga.complete_review(
            r.case, task, pb.REVIEW_DECISION_REJECT, "no", "culture_tourism", r.spec, DEPARTMENTS, r.now
        )


def test_an_approval_opens_the_next_review_step(case_types: Mapping[str, CaseTypeSpec]) -> None:
    guide = case_types["tour_guide_licence"]
    spec = dataclasses.replace(
        guide,
        review_steps=(*guide.review_steps, ReviewStepSpec("human_resources", "核对劳动合同", "Check the contract")),
    )
    r = Run.submitted(spec, scenario("tour_guide_licence"))
    r.drive()
    r.review(pb.REVIEW_DECISION_APPROVE)
    assert r.case.state == pb.CASE_STATE_IN_REVIEW and r.due is None
    second = r.step("review:2:human_resources")
    assert second.state == pb.CASE_STEP_STATE_WAITING and r.tasks[second.review_task_id].instructions_en == (
        "Check the contract"
    )
    r.review(pb.REVIEW_DECISION_APPROVE, official="human_resources")
    assert r.case.state == pb.CASE_STATE_APPROVED and r.case.decision.official_id == "human_resources"
    assert states(r.case)[2:] == [
        pb.CASE_STATE_IN_REVIEW,
        pb.CASE_STATE_IN_PROGRESS,
        pb.CASE_STATE_IN_REVIEW,
        pb.CASE_STATE_IN_PROGRESS,
        pb.CASE_STATE_APPROVED,
    ]


# ---------------------------------------------------------------------------------------------
# Records does not answer, refuses, or the proof expires


def test_a_proof_not_answered_is_retried_with_backoff_escalated_once_then_drawn(run: Callable[..., Run]) -> None:
    r = run("business_licence_change")
    r.records.failures = [ProofNotIssued("records did not answer within 5 s", retryable=True)] * 4
    for attempt in range(1, 5):
        r.pull()
        step = r.step("proof:enterprise_registration")
        assert step.attempts == attempt and "did not answer" in step.message_en
        escalated = attempt >= SAGA.max_attempts
        assert step.state == (pb.CASE_STEP_STATE_ESCALATED if escalated else pb.CASE_STEP_STATE_PENDING)
        if attempt == SAGA.max_attempts:
            assert "浙江省市场监督管理局未能提供证明" in step.message_zh and "escalated to staff" in step.message_en
        # Backoff doubles: 2, 4, 8, 16 s after the attempt.
        assert r.due == r.now + datetime.timedelta(seconds=2**attempt)
        assert saga.decide(r.case, r.spec, r.claims, DEPARTMENTS, r.now) is None  # nothing to decide on yet
        r.now = r.due
    (escalation,) = r.of(events_pb2.CaseEscalated)
    assert isinstance(escalation, events_pb2.CaseEscalated)
    assert (escalation.attempts, escalation.department_code) == (3, "market_regulation")
    assert r.drive().state == pb.CASE_STATE_APPROVED
    assert r.step("proof:enterprise_registration").attempts == 5


def test_a_refusal_is_escalated_at_once_and_asked_again_hourly(run: Callable[..., Run]) -> None:
    r = run("business_licence_change")
    r.records.failures = [ProofNotIssued("records PERMISSION_DENIED: approvals may not read", retryable=False)]
    r.pull()
    step = r.step("proof:enterprise_registration")
    assert (step.state, step.attempts) == (pb.CASE_STEP_STATE_ESCALATED, 1)
    assert r.due == r.now + datetime.timedelta(hours=1)
    assert len(r.of(events_pb2.CaseEscalated)) == 1
    r.now += datetime.timedelta(hours=1)
    assert r.drive().state == pb.CASE_STATE_APPROVED


def test_a_proof_of_another_subject_is_not_taken(run: Callable[..., Run]) -> None:
    r = run("business_licence_change")
    outstanding = saga.outstanding_proofs(r.case)
    r.apply(saga.start_pulls(r.case, outstanding, r.now, SAGA))
    ((required, request),) = saga.proof_requests(r.case, r.spec, outstanding, r.subjects)
    drawn = r.records.answer(request, r.now)
    assert isinstance(drawn, Proof)
    stranger = dataclasses.replace(drawn, subject_id="sub_somebody_else")
    r.apply(saga.record_proofs(r.case, {request.step_id: (required, stranger)}, r.subjects, DEPARTMENTS, r.now, SAGA))
    step = r.step(request.step_id)
    assert step.state == pb.CASE_STEP_STATE_ESCALATED and "another proof" in step.message_en
    assert r.claims == {} and list(r.case.proofs) == []


def test_retries_back_off_up_to_their_cap() -> None:
    delays = [SAGA.retry_delay(attempts) for attempts in (1, 2, 3, 8, 9, 30)]
    assert delays == [2 * SECOND, 4 * SECOND, 8 * SECOND, 256 * SECOND, 300 * SECOND, 300 * SECOND]


def test_a_proof_that_expired_while_the_case_waited_is_drawn_afresh(run: Callable[..., Run]) -> None:
    r = run("second_hand_housing_transfer")
    # Encumbrances are valid a week; the deed tax proof does not come for eight days.
    r.records.validity["property_encumbrances"] = datetime.timedelta(days=7)
    r.records.failures = [ProofNotIssued("records did not answer", retryable=True)]
    r.pull()
    encumbrances = "proof:property_encumbrances:seller_identifier"
    first = r.step(encumbrances).proof_id
    assert first and r.case.state == pb.CASE_STATE_IN_PROGRESS
    r.now += datetime.timedelta(days=8)
    r.pull()
    assert saga.proofs_in(r.case)
    renewing = r.decide()
    assert renewing is not None and renewing.claims_dropped == [encumbrances]
    step = r.step(encumbrances)
    assert (step.state, step.proof_id) == (pb.CASE_STEP_STATE_PENDING, "") and "expired" in step.message_en
    assert r.case.state == pb.CASE_STATE_IN_PROGRESS and r.due == r.now  # drawn again at once
    ((_, request),) = saga.proof_requests(r.case, r.spec, saga.outstanding_proofs(r.case), r.subjects)
    assert request.request_id == f"case-1/{encumbrances}/1"
    case = r.drive()
    assert case.state == pb.CASE_STATE_APPROVED
    fresh = r.step(encumbrances).proof_id
    assert fresh != first and {first, fresh} <= {p.proof_id for p in case.proofs}
    (decided,) = r.of(events_pb2.CaseDecided)
    assert isinstance(decided, events_pb2.CaseDecided) and first not in decided.proof_ids


# ---------------------------------------------------------------------------------------------
# Cancellation, deadlines, stalled cases


def test_cancelling_a_case_in_progress_releases_what_it_holds(run: Callable[..., Run]) -> None:
    r = run("second_hand_housing_transfer")
    r.records.failures = [ProofNotIssued("records did not answer", retryable=True)]
    r.pull()
    unit = scenario("second_hand_housing_transfer").parameters["property_unit"]
    r.apply(saga.cancel(r.case, "买卖双方解除合同", "demo-portal", r.held, [], DEPARTMENTS, r.now))
    case = r.case
    assert case.state == pb.CASE_STATE_CANCELLED and r.due is None and r.held == []
    assert case.transitions[-1].reason == "买卖双方解除合同" and case.transitions[-1].actor == "demo-portal"
    released = [s for s in case.steps if s.kind == pb.CASE_STEP_KIND_COMPENSATION]
    assert [(s.step_id, s.state) for s in released] == [
        ("compensation:hold:property_unit", pb.CASE_STEP_STATE_COMPENSATED)
    ]
    assert unit in released[0].message_en
    assert not [s for s in case.steps if s.state in saga.OPEN_STEP]
    told = [type(e) for e in r.events if not isinstance(e, events_pb2.CaseStepCompleted)]
    assert told == [events_pb2.CaseSubmitted, events_pb2.CaseCancelled]
    # CaseCancelled comes first, then the steps it ends and the compensation.
    (cancelled,) = r.of(events_pb2.CaseCancelled)
    after = r.events[r.events.index(cancelled) + 1 :]
    assert [e.step_id for e in after if isinstance(e, events_pb2.CaseStepCompleted)] == [
        *(s.step_id for s in case.steps if s.state == pb.CASE_STEP_STATE_SKIPPED),
        "compensation:hold:property_unit",
    ]
    assert saga.cancel(case, "", "demo-portal", [], [], DEPARTMENTS, r.now) is None  # cancelled before


def test_cancelling_a_case_in_review_withdraws_its_task(run: Callable[..., Run]) -> None:
    r = run("tour_guide_licence")
    r.drive()
    (task,) = r.tasks.values()
    r.apply(saga.cancel(r.case, "申请人撤回", "demo-portal", [], [task], DEPARTMENTS, r.now))
    assert r.case.state == pb.CASE_STATE_CANCELLED
    assert r.tasks[task.task_id].state == pb.REVIEW_TASK_STATE_CANCELLED
    (withdrawn,) = [s for s in r.case.steps if s.kind == pb.CASE_STEP_KIND_COMPENSATION]
    assert withdrawn.review_task_id == task.task_id and "浙江省文化和旅游厅" in withdrawn.message_zh
    assert r.step("review:1:culture_tourism").state == pb.CASE_STEP_STATE_SKIPPED
    with pytest.raises(FailedPrecondition, match="cancelled"):
        saga.complete_review(
            r.case, r.tasks[task.task_id], pb.REVIEW_DECISION_APPROVE, "", "culture_tourism", r.spec, DEPARTMENTS, r.now
        )


def test_a_decided_case_cannot_be_cancelled(run: Callable[..., Run]) -> None:
    r = run("business_licence_change")
    r.drive()
    with pytest.raises(FailedPrecondition, match=r"already decided \(approved\)"):
        saga.cancel(r.case, "", "demo-portal", [], [], DEPARTMENTS, r.now)


def test_a_case_past_its_deadline_is_marked_once(run: Callable[..., Run]) -> None:
    r = run("tour_guide_licence")
    r.drive()
    r.now += datetime.timedelta(days=30)
    r.apply(saga.mark_deadline_breached(r.case, r.now))
    assert r.case.deadline_breached
    (breached,) = r.of(events_pb2.DeadlineBreached)
    assert isinstance(breached, events_pb2.DeadlineBreached)
    assert list(breached.waiting_department_codes) == ["culture_tourism"]
    assert (breached.state, breached.deadline_date) == (pb.CASE_STATE_IN_REVIEW, r.case.deadline_date)
    assert saga.mark_deadline_breached(r.case, r.now) is None
    # Decided late, the decision says so too.
    r.review(pb.REVIEW_DECISION_APPROVE)
    (decided,) = r.of(events_pb2.CaseDecided)
    assert isinstance(decided, events_pb2.CaseDecided) and decided.deadline_breached
    assert saga.mark_deadline_breached(r.case, r.now) is None  # final


def test_a_case_decided_after_its_deadline_is_marked_breached(run: Callable[..., Run]) -> None:
    r = run("business_licence_change")
    r.now += datetime.timedelta(days=10)  # 3 working days are long past
    case = r.drive()
    assert case.state == pb.CASE_STATE_APPROVED and case.deadline_breached


def test_a_stalled_case_is_picked_up_where_it_was_left(run: Callable[..., Run]) -> None:
    r = run("ride_hailing_driver_permit")
    outstanding = saga.outstanding_proofs(r.case)
    # A worker started pulling, then died: the timer is to look again once the case stalled.
    r.apply(saga.start_pulls(r.case, outstanding, r.now, SAGA))
    assert r.due == r.now + SAGA.stall_after
    assert {r.step(step_id).state for step_id in outstanding} == {pb.CASE_STEP_STATE_RUNNING}
    started = r.step(next(iter(outstanding))).started_at.ToDatetime(datetime.UTC)
    r.now += SAGA.stall_after
    assert saga.outstanding_proofs(r.case) == outstanding  # RUNNING steps are still outstanding
    case = r.drive()
    assert case.state == pb.CASE_STATE_APPROVED
    assert states(case).count(pb.CASE_STATE_IN_PROGRESS) == 1  # work started once
    assert r.step(next(iter(outstanding))).started_at.ToDatetime(datetime.UTC) == started
    assert all(r.step(step_id).attempts == 1 for step_id in outstanding)


def test_answers_for_steps_done_meanwhile_by_another_worker_are_ignored(run: Callable[..., Run]) -> None:
    r = run("business_licence_change")
    outstanding = saga.outstanding_proofs(r.case)
    r.apply(saga.start_pulls(r.case, outstanding, r.now, SAGA))
    asked = saga.proof_requests(r.case, r.spec, outstanding, r.subjects)
    answers = {request.step_id: (proof, r.records.answer(request, r.now)) for proof, request in asked}
    r.apply(saga.record_proofs(r.case, answers, r.subjects, DEPARTMENTS, r.now, SAGA))
    late = saga.record_proofs(r.case, answers, r.subjects, DEPARTMENTS, r.now, SAGA)
    assert late is not None and late.claims_kept == {} and late.events == []
    assert [s.attempts for s in late.case.steps if s.kind == pb.CASE_STEP_KIND_PROOF] == [1]


def test_a_case_type_version_nobody_can_read_is_escalated_to_staff(run: Callable[..., Run]) -> None:
    r = run("business_licence_change")
    r.apply(saga.escalate_unreadable_case_type(r.case, r.now, SAGA))
    step = r.step("proof:enterprise_registration")
    assert step.state == pb.CASE_STEP_STATE_ESCALATED and "cannot be read" in step.message_en
    assert r.due == r.now + SAGA.retry_cap and len(r.of(events_pb2.CaseEscalated)) == 1
    r.now += SAGA.retry_cap
    r.apply(saga.escalate_unreadable_case_type(r.case, r.now, SAGA))
    assert r.due == r.now + SAGA.retry_cap and len(r.of(events_pb2.CaseEscalated)) == 1  # told once


def test_a_step_leaves_the_case_it_was_given_as_it_was(run: Callable[..., Run]) -> None:
    r = run("tour_guide_licence")
    before = r.case.SerializeToString(deterministic=True)
    change = saga.start_pulls(r.case, saga.outstanding_proofs(r.case), r.now, SAGA)
    assert change is not None and change.case.revision == 2
    assert r.case.SerializeToString(deterministic=True) == before
    r.drive()
    (task,) = r.tasks.values()
    given = r.case.SerializeToString(deterministic=True)
    cancelled = saga.cancel(r.case, "", "demo-portal", [], [task], DEPARTMENTS, r.now)
    assert cancelled is not None and cancelled.case.state == pb.CASE_STATE_CANCELLED
    assert r.case.SerializeToString(deterministic=True) == given and task.state == pb.REVIEW_TASK_STATE_OPEN
