"""The saga that decides a case, as pure functions of the case (the contract's document).

Each step takes the case and the facts it needs (the proofs records answered with, the claims
kept for the case, the review task, the clock's now) and returns a Change: the new case, the
events to record, when the saga must next look at the case, and what the case's other rows
become (claims kept or dropped, review tasks opened or closed). A step with nothing to do returns
None. The use cases (app.py) load the facts and save the Change under the case row's lock, so
the saga is idempotent by design: every step reads the case as stored and does only what is
still outstanding (docs/decisions/approvals-idempotent-saga.md).
"""

from __future__ import annotations

import datetime
import enum
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from google.protobuf.message import Message

from govmesh import clock, workdays
from govmesh.approvals.v1 import approvals_pb2 as pb
from govmesh.approvals.v1 import events_pb2
from govmesh.clock import timestamp
from govmesh.errors import FailedPrecondition
from govmesh.parties import Party
from govmesh.typed_values import Value
from services.approvals.domain import rules
from services.approvals.domain.casetypes import CaseTypeSpec, RequiredProof

#: Longest reason or message text kept from a caller or from records.
MAX_TEXT: Final = 200
FINAL: Final = frozenset({pb.CASE_STATE_APPROVED, pb.CASE_STATE_REJECTED, pb.CASE_STATE_CANCELLED})
OPEN_STEP: Final = frozenset(
    {pb.CASE_STEP_STATE_PENDING, pb.CASE_STEP_STATE_RUNNING, pb.CASE_STEP_STATE_WAITING, pb.CASE_STEP_STATE_ESCALATED}
)
#: The actor of the transitions the saga makes by itself.
SYSTEM: Final = "system"


@dataclass(frozen=True)
class SagaSettings:
    """How proofs that do not come are retried and escalated
    (docs/decisions/approvals-retries-and-escalation.md)."""

    #: Attempts at a proof before the step is escalated (it is still retried afterwards).
    max_attempts: int = 3
    #: The first retry waits this long; each further retry twice as long, up to retry_cap.
    retry_base: datetime.timedelta = datetime.timedelta(seconds=2)
    retry_cap: datetime.timedelta = datetime.timedelta(minutes=5)
    #: A submitted case whose event was not handled by then is driven by the timer instead.
    stall_after: datetime.timedelta = datetime.timedelta(seconds=30)
    #: A refusal (rights, configuration) waits for a person to fix it: asked again this seldom,
    #: so the fix is picked up without filling the citizen's audit trail with refusals.
    refusal_retry: datetime.timedelta = datetime.timedelta(hours=1)

    def retry_delay(self, attempts: int) -> datetime.timedelta:
        delay: datetime.timedelta = min(self.retry_cap, self.retry_base * (2 ** max(0, attempts - 1)))
        return delay


@dataclass(frozen=True)
class Department:
    code: str
    name_zh: str
    name_en: str


def department_name(departments: Mapping[str, Department], code: str, language: str) -> str:
    department = departments.get(code)
    if department is None:
        return code
    return department.name_zh if language == "zh" else department.name_en


# --------------------------------------------------------------------------------------------
# What the saga asks records for, and what comes back


@dataclass(frozen=True)
class ProofRequest:
    """One proof step's request to records, for this case as the purpose."""

    step_id: str
    subject_id: str
    proof_type: str
    case_id: str
    note: str
    parameters: Mapping[str, str]
    #: One per case step: every retry, by any worker, gets the same proof; a proof that expired
    #: before the decision is drawn afresh under the next one.
    request_id: str


@dataclass(frozen=True)
class Proof:
    """A proof records issued, with the claims its rules read."""

    proof_id: str
    proof_type: str
    subject_id: str
    issuing_department_code: str
    issued_at: datetime.datetime
    valid_until: datetime.datetime
    claims: Mapping[str, Value]


class ProofNotIssued(Exception):
    """Records did not issue a proof. ``retryable``: it did not answer (timeout, unavailable);
    otherwise it refused (a rights or configuration problem a person must fix)."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


@dataclass(frozen=True)
class Claims:
    """The claims of a proof a case drew, kept (beside the case) until its rules are evaluated."""

    proof_id: str
    values: Mapping[str, Value]


# --------------------------------------------------------------------------------------------
# A change to a case


class Keep(enum.Enum):
    """The case's next look stays as it was scheduled."""

    SCHEDULE = "keep"


@dataclass
class Change:
    """What one step did to a case: the new case and its events, when the saga must next look at
    the case (``due``), and the case's other rows to write."""

    case: pb.Case
    now: datetime.datetime
    events: list[tuple[Message, str]] = field(default_factory=list)
    due: datetime.datetime | Literal[Keep.SCHEDULE] | None = Keep.SCHEDULE
    #: Claims of proofs just drawn, by step id; and steps whose claims are dropped (expired).
    claims_kept: dict[str, Claims] = field(default_factory=dict)
    claims_dropped: list[str] = field(default_factory=list)
    tasks_opened: list[pb.ReviewTask] = field(default_factory=list)
    tasks_updated: list[pb.ReviewTask] = field(default_factory=list)

    @classmethod
    def of(cls, case: pb.Case, now: datetime.datetime) -> Change:
        """A change of a copy of ``case``: the case given stays as it was."""
        copy = pb.Case()
        copy.CopyFrom(case)
        return cls(copy, now)

    def revised(self) -> Change:
        """The change as it is saved: the case's next revision, updated now."""
        self.case.revision += 1
        self.case.updated_at.CopyFrom(timestamp(self.now))
        return self

    @property
    def next_look(self) -> datetime.datetime | Literal[Keep.SCHEDULE] | None:
        """When the worker's timer must drive the case: never once it is final or waits on a
        person; otherwise as this change scheduled (or as it was)."""
        if self.case.state in FINAL or self.case.state == pb.CASE_STATE_IN_REVIEW:
            return None
        return self.due

    def transition(self, to_state: pb.CaseState.ValueType, actor: str, reason: str) -> None:
        case = self.case
        case.transitions.append(
            pb.CaseTransition(
                from_state=case.state, to_state=to_state, at=timestamp(self.now), actor=actor, reason=reason
            )
        )
        case.state = to_state

    def record(self, event: Message) -> None:
        self.events.append((event, self.case.applicant_subject_id))

    def escalated(self, step: pb.CaseStep, reason: str) -> None:
        """``step`` was just escalated to staff: tell them (CaseEscalated)."""
        case = self.case
        self.record(
            events_pb2.CaseEscalated(
                case_id=case.case_id,
                case_type=case.case_type,
                applicant_subject_id=case.applicant_subject_id,
                step_id=step.step_id,
                kind=step.kind,
                department_code=step.department_code,
                attempts=step.attempts,
                reason=reason,
                escalated_at=timestamp(self.now),
            )
        )

    def compensated(self, step: pb.CaseStep) -> None:
        """Add ``step`` to the case as a compensation done now (CaseStepCompleted)."""
        step.kind = pb.CASE_STEP_KIND_COMPENSATION
        step.state = pb.CASE_STEP_STATE_COMPENSATED
        step.attempts = 1
        step.started_at.CopyFrom(timestamp(self.now))
        self.case.steps.append(step)
        self.step_ended(self.case.steps[-1])

    def step_ended(self, step: pb.CaseStep) -> None:
        step.completed_at.CopyFrom(timestamp(self.now))
        case = self.case
        self.record(
            events_pb2.CaseStepCompleted(
                case_id=case.case_id,
                case_type=case.case_type,
                applicant_subject_id=case.applicant_subject_id,
                step_id=step.step_id,
                kind=step.kind,
                department_code=step.department_code,
                state=step.state,
                proof_id=step.proof_id,
                attempts=step.attempts,
                completed_at=step.completed_at,
            )
        )


# --------------------------------------------------------------------------------------------
# A new case


def plan_steps(spec: CaseTypeSpec) -> list[pb.CaseStep]:
    """The steps of a case of ``spec``, in the order the saga takes them, all PENDING."""
    steps = [
        pb.CaseStep(
            step_id=proof_step_id(proof),
            kind=pb.CASE_STEP_KIND_PROOF,
            department_code=proof.department_code,
            proof_type=proof.proof_type,
        )
        for proof in spec.proofs
    ]
    for department in dict.fromkeys(rule.department_code for rule in spec.rules):
        steps.append(
            pb.CaseStep(step_id=f"rules:{department}", kind=pb.CASE_STEP_KIND_RULES, department_code=department)
        )
    for department in spec.sign_off_department_codes:
        steps.append(
            pb.CaseStep(step_id=f"sign_off:{department}", kind=pb.CASE_STEP_KIND_SIGN_OFF, department_code=department)
        )
    for index, review in enumerate(spec.review_steps, start=1):
        steps.append(
            pb.CaseStep(
                step_id=f"review:{index}:{review.department_code}",
                kind=pb.CASE_STEP_KIND_REVIEW,
                department_code=review.department_code,
            )
        )
    for step in steps:
        step.state = pb.CASE_STEP_STATE_PENDING
    return steps


def proof_step_id(proof: RequiredProof) -> str:
    suffix = "" if proof.subject == rules.APPLICANT else f":{proof.subject}"
    return f"proof:{proof.proof_type}{suffix}"


def open_case(
    spec: CaseTypeSpec,
    case_id: str,
    applicant: Party,
    parameters: Mapping[str, str],
    actor: str,
    now: datetime.datetime,
) -> tuple[pb.Case, events_pb2.CaseSubmitted]:
    """A case of ``spec`` submitted now by ``actor`` (its parameters as shown: identifiers
    masked), and the CaseSubmitted event that starts its saga."""
    deadline = workdays.add_working_days(now, spec.deadline_working_days)
    case = pb.Case(
        case_id=case_id,
        case_type=spec.code,
        case_type_version=spec.version,
        applicant_subject_id=applicant.subject_id,
        applicant_masked_identifier=applicant.masked_identifier,
        parameters=parameters,
        state=pb.CASE_STATE_SUBMITTED,
        steps=plan_steps(spec),
        submitted_at=timestamp(now),
        deadline_date=deadline.isoformat(),
        deadline_working_days=spec.deadline_working_days,
        deadline_provisional=not workdays.calendar_covers(clock.shanghai_date(now), deadline),
        revision=1,
        updated_at=timestamp(now),
    )
    case.transitions.append(
        pb.CaseTransition(
            from_state=pb.CASE_STATE_UNSPECIFIED,
            to_state=pb.CASE_STATE_SUBMITTED,
            at=timestamp(now),
            actor=actor,
            reason="submitted",
        )
    )
    event = events_pb2.CaseSubmitted(
        case_id=case.case_id,
        case_type=case.case_type,
        case_type_version=case.case_type_version,
        applicant_subject_id=case.applicant_subject_id,
        applicant_masked_identifier=case.applicant_masked_identifier,
        submitted_at=case.submitted_at,
        deadline_date=case.deadline_date,
        deadline_working_days=case.deadline_working_days,
        deadline_provisional=case.deadline_provisional,
    )
    return case, event


# --------------------------------------------------------------------------------------------
# Proofs


def never_driven(case: pb.Case) -> bool:
    """As submitted: nothing has changed the case since (its first revision). A case whose type
    could not be read is escalated and stays SUBMITTED: driven, all the same."""
    return case.state == pb.CASE_STATE_SUBMITTED and case.revision == 1


def settled(case: pb.Case) -> bool:
    """Nothing for the saga to do: the case is final or waits on a reviewer."""
    return case.state in FINAL or case.state == pb.CASE_STATE_IN_REVIEW


def outstanding_proofs(case: pb.Case, among: Collection[str] | None = None) -> set[str]:
    """The proof steps still open (of ``among``, when given)."""
    return {
        step.step_id
        for step in case.steps
        if step.kind == pb.CASE_STEP_KIND_PROOF and step.state in OPEN_STEP and (among is None or step.step_id in among)
    }


def proofs_in(case: pb.Case) -> bool:
    return all(s.state == pb.CASE_STEP_STATE_SUCCEEDED for s in case.steps if s.kind == pb.CASE_STEP_KIND_PROOF)


def start_pulls(
    case: pb.Case, outstanding: Collection[str], now: datetime.datetime, saga: SagaSettings
) -> Change | None:
    """The outstanding proof steps are being pulled: the case is in progress, and if the worker
    pulling dies, the timer drives the case again once it stalled."""
    if case.state in FINAL:
        return None
    change = Change.of(case, now)
    if change.case.state == pb.CASE_STATE_SUBMITTED:
        change.transition(pb.CASE_STATE_IN_PROGRESS, SYSTEM, "work started")
    for step in change.case.steps:
        if step.step_id in outstanding and step.state in OPEN_STEP:
            if step.state != pb.CASE_STEP_STATE_ESCALATED:
                step.state = pb.CASE_STEP_STATE_RUNNING
            if not step.HasField("started_at"):
                step.started_at.CopyFrom(timestamp(now))
    change.due = now + saga.stall_after
    return change.revised()


def proof_requests(
    case: pb.Case, spec: CaseTypeSpec, outstanding: Collection[str], subjects: Mapping[str, str]
) -> list[tuple[RequiredProof, ProofRequest]]:
    """What to ask records for the outstanding proof steps; ``subjects`` names each party's
    subject id ("applicant" and the identifier parameters)."""
    return [
        (
            proof,
            ProofRequest(
                step_id=proof_step_id(proof),
                subject_id=subjects[proof.subject],
                proof_type=proof.proof_type,
                case_id=case.case_id,
                note=f"{case.case_type} {proof_step_id(proof)}",
                parameters=proof.request_parameters(case.parameters),
                request_id=_request_id(case, proof, subjects[proof.subject]),
            ),
        )
        for proof in spec.proofs
        if proof_step_id(proof) in outstanding
    ]


def _request_id(case: pb.Case, proof: RequiredProof, subject_id: str) -> str:
    drawn = sum(1 for p in case.proofs if p.proof_type == proof.proof_type and p.subject_id == subject_id)
    base = f"{case.case_id}/{proof_step_id(proof)}"
    return base if drawn == 0 else f"{base}/{drawn}"


def record_proofs(
    case: pb.Case,
    answers: Mapping[str, tuple[RequiredProof, Proof | ProofNotIssued]],
    subjects: Mapping[str, str],
    departments: Mapping[str, Department],
    now: datetime.datetime,
    saga: SagaSettings,
) -> Change | None:
    """Records' answers, by step id: each proof drawn completes its step; each failure is retried
    with backoff, escalated to staff after ``max_attempts`` (a refusal at once) and asked again
    hourly when it was a refusal."""
    if case.state in FINAL:
        return None
    change = Change.of(case, now)
    failures = 0
    for step in change.case.steps:
        if step.step_id not in answers or step.state not in OPEN_STEP:
            continue  # done meanwhile, by another worker
        required, answer = answers[step.step_id]
        # Counted when an answer (or the lack of one) is in, so concurrent drives of one case
        # do not count attempts nobody made.
        step.attempts += 1
        if isinstance(answer, Proof) and (
            answer.proof_type != required.proof_type or answer.subject_id != subjects[required.subject]
        ):
            answer = ProofNotIssued("records answered with another proof", retryable=False)
        if isinstance(answer, ProofNotIssued):
            failures += 1
            _proof_failed(change, step, answer, departments, saga)
        else:
            _proof_drawn(change, step, answer, departments)
    if failures:
        attempts = max(s.attempts for s in change.case.steps if s.step_id in answers)
        refused = any(isinstance(a, ProofNotIssued) and not a.retryable for _, a in answers.values())
        change.due = now + (saga.refusal_retry if refused else saga.retry_delay(attempts))
    return change.revised()


def _proof_drawn(change: Change, step: pb.CaseStep, proof: Proof, departments: Mapping[str, Department]) -> None:
    step.state = pb.CASE_STEP_STATE_SUCCEEDED
    step.proof_id = proof.proof_id
    step.message_zh = (
        f"已向{department_name(departments, step.department_code, 'zh')}调取{proof.proof_type}证明 "
        f"{proof.proof_id}，申请人无需提交材料"
    )
    step.message_en = (
        f"Proof {proof.proof_id} ({proof.proof_type}) drawn from "
        f"{department_name(departments, step.department_code, 'en')}; the applicant brought nothing"
    )
    change.case.proofs.append(
        pb.ProofUsed(
            proof_id=proof.proof_id,
            proof_type=proof.proof_type,
            issuing_department_code=proof.issuing_department_code,
            subject_id=proof.subject_id,
            issued_at=timestamp(proof.issued_at),
            valid_until=timestamp(proof.valid_until),
        )
    )
    change.claims_kept[step.step_id] = Claims(proof.proof_id, proof.claims)
    change.step_ended(step)


def _proof_failed(
    change: Change,
    step: pb.CaseStep,
    failure: ProofNotIssued,
    departments: Mapping[str, Department],
    saga: SagaSettings,
) -> None:
    reason = failure.reason[:MAX_TEXT]
    step.message_zh = f"第 {step.attempts} 次调取未成功（{reason}），将自动重试"
    step.message_en = f"Attempt {step.attempts} did not succeed ({reason}); retrying automatically"
    if step.state == pb.CASE_STEP_STATE_ESCALATED:
        return
    if step.attempts < saga.max_attempts and failure.retryable:
        step.state = pb.CASE_STEP_STATE_PENDING
        return
    step.state = pb.CASE_STEP_STATE_ESCALATED
    department_zh = department_name(departments, step.department_code, "zh")
    step.message_zh = f"{department_zh}未能提供证明（{reason}），已升级人工处理，系统继续重试"
    step.message_en = (
        f"{department_name(departments, step.department_code, 'en')} did not provide the proof ({reason}); "
        "escalated to staff, and still retried"
    )
    change.escalated(step, reason)


def escalate_unreadable_case_type(case: pb.Case, now: datetime.datetime, saga: SagaSettings) -> Change | None:
    """The case's type at its version is known to no process (or no longer reads against
    records' catalogue): a person must take it up. It is never decided by other rules than
    those it was submitted under; the saga looks again every ``retry_cap``."""
    if case.state in FINAL:
        return None
    change = Change.of(case, now)
    pending = next((s for s in change.case.steps if s.state in OPEN_STEP), None)
    if pending is not None and pending.state != pb.CASE_STEP_STATE_ESCALATED:
        pending.state = pb.CASE_STEP_STATE_ESCALATED
        pending.message_zh = "该事项类型的规则已变更，需人工处理"
        pending.message_en = f"case type {case.case_type} version {case.case_type_version} cannot be read"
        change.escalated(pending, pending.message_en)
    change.due = now + saga.retry_cap
    return change.revised()


# --------------------------------------------------------------------------------------------
# The decision


def decide(
    case: pb.Case,
    spec: CaseTypeSpec,
    claims: Mapping[str, Claims],
    departments: Mapping[str, Department],
    now: datetime.datetime,
) -> Change | None:
    """Once every proof is in: rules, sign-offs, then the decision or the first review task.
    ``claims`` are those kept for the case, by proof step id. A proof that expired while the
    case waited is drawn afresh first: a decision rests only on proofs valid when it is made
    (docs/decisions/approvals-fresh-proofs.md)."""
    if settled(case) or not proofs_in(case):
        return None
    change = Change.of(case, now)
    if change.case.state == pb.CASE_STATE_SUBMITTED:
        change.transition(pb.CASE_STATE_IN_PROGRESS, SYSTEM, "work started")
    if _renew_expired(change):
        return change.revised()
    results = _evaluate(change, spec, claims)
    failed = [r for r in results if not r.passed]
    if failed:
        _conclude(change, approved=False, failed=failed)
        return change.revised()
    for step in change.case.steps:
        if step.kind == pb.CASE_STEP_KIND_SIGN_OFF:
            step.attempts += 1
            step.started_at.CopyFrom(timestamp(now))
            step.state = pb.CASE_STEP_STATE_SUCCEEDED
            step.message_zh = (
                f"{department_name(departments, step.department_code, 'zh')}已依据其规则全部通过予以签章确认"
            )
            step.message_en = (
                f"Signed off by {department_name(departments, step.department_code, 'en')}: all its rules passed"
            )
            change.step_ended(step)
    if not _open_review(change, spec, departments):
        _conclude(change, approved=True, failed=[])
    return change.revised()


def _renew_expired(change: Change) -> bool:
    """Proof steps whose proof expired go back to PENDING, their claims dropped, to be drawn
    afresh at once. True when one did."""
    case, now = change.case, change.now
    valid_until = {p.proof_id: p.valid_until.ToDatetime(datetime.UTC) for p in case.proofs}
    expired = [
        step
        for step in case.steps
        if step.kind == pb.CASE_STEP_KIND_PROOF and valid_until.get(step.proof_id, now) < now
    ]
    for step in expired:
        change.claims_dropped.append(step.step_id)
        step.state = pb.CASE_STEP_STATE_PENDING
        step.message_zh = f"证明 {step.proof_id} 已过有效期，重新调取"
        step.message_en = f"Proof {step.proof_id} expired before the decision; drawing a fresh one"
        step.proof_id = ""
    if expired:
        change.due = now
    return bool(expired)


def _evaluate(change: Change, spec: CaseTypeSpec, claims: Mapping[str, Claims]) -> tuple[rules.RuleResult, ...]:
    """Every rule over the kept claims, each result with its evidence on the case, and each
    department's RULES step ended."""
    case = change.case
    by_proof = {(p.proof_type, p.subject): claims[proof_step_id(p)] for p in spec.proofs if proof_step_id(p) in claims}
    results = rules.evaluate(spec, {key: kept.values for key, kept in by_proof.items()}, dict(case.parameters))
    for result in results:
        kept = by_proof.get((result.proof_type, result.subject))
        case.rule_results.append(
            pb.RuleResult(
                rule_id=result.rule_id,
                department_code=result.department_code,
                outcome=pb.RULE_OUTCOME_PASSED if result.passed else pb.RULE_OUTCOME_FAILED,
                evidence=[
                    pb.RuleEvidence(proof_id=kept.proof_id if kept else "", claim=name, value=rules.show(value, "en"))
                    for name, value in result.evidence.items()
                ],
                message_zh=result.message_zh,
                message_en=result.message_en,
                evaluated_at=timestamp(change.now),
            )
        )
    for step in case.steps:
        if step.kind != pb.CASE_STEP_KIND_RULES:
            continue
        mine = [r for r in results if r.department_code == step.department_code]
        bad = [r for r in mine if not r.passed]
        step.attempts += 1
        step.started_at.CopyFrom(timestamp(change.now))
        step.state = pb.CASE_STEP_STATE_FAILED if bad else pb.CASE_STEP_STATE_SUCCEEDED
        step.message_zh = f"{len(mine)} 条规则中 {len(bad)} 条未通过" if bad else f"{len(mine)} 条规则全部通过"
        step.message_en = f"{len(bad)} of {len(mine)} rules failed" if bad else f"all {len(mine)} rules passed"
        change.step_ended(step)
    return results


def _open_review(change: Change, spec: CaseTypeSpec, departments: Mapping[str, Department]) -> bool:
    """Open the next review task; False when no review step is left."""
    case, now = change.case, change.now
    step = next(
        (s for s in case.steps if s.kind == pb.CASE_STEP_KIND_REVIEW and s.state == pb.CASE_STEP_STATE_PENDING),
        None,
    )
    if step is None:
        return False
    review = spec.review_steps[int(step.step_id.split(":")[1]) - 1]
    task = pb.ReviewTask(
        task_id=str(uuid.uuid4()),
        case_id=case.case_id,
        case_type=case.case_type,
        department_code=review.department_code,
        state=pb.REVIEW_TASK_STATE_OPEN,
        applicant_masked_identifier=case.applicant_masked_identifier,
        instructions_zh=review.instructions_zh,
        instructions_en=review.instructions_en,
        created_at=timestamp(now),
        deadline_date=case.deadline_date,
    )
    change.tasks_opened.append(task)
    step.state = pb.CASE_STEP_STATE_WAITING
    step.review_task_id = task.task_id
    step.attempts += 1
    step.started_at.CopyFrom(timestamp(now))
    department = review.department_code
    step.message_zh = f"等待{department_name(departments, department, 'zh')}工作人员审核"
    step.message_en = f"Waiting for an official of {department_name(departments, department, 'en')}"
    if case.state != pb.CASE_STATE_IN_REVIEW:
        change.transition(pb.CASE_STATE_IN_REVIEW, SYSTEM, f"review by {department}")
    return True


def _conclude(
    change: Change,
    *,
    approved: bool,
    failed: Sequence[rules.RuleResult],
    official: str = "",
    note: str = "",
) -> None:
    case, now = change.case, change.now
    for step in case.steps:
        if step.state in (pb.CASE_STEP_STATE_PENDING, pb.CASE_STEP_STATE_RUNNING):
            step.state = pb.CASE_STEP_STATE_SKIPPED
            step.message_zh = "案件已作出决定，此步骤无需进行"
            step.message_en = "not needed: the case was decided"
            change.step_ended(step)
    if approved:
        zh = "准予许可：全部规则通过" + ("，审核同意" if official else "")
        en = "Approved: every rule passed" + (" and the review approved" if official else "")
    elif failed:
        zh = "不予许可：" + "；".join(r.message_zh for r in failed)
        en = "Rejected: " + "; ".join(r.message_en for r in failed)
    else:
        zh, en = "不予许可：审核未同意", "Rejected by review"
    decision = pb.Decision(
        outcome=pb.DECISION_OUTCOME_APPROVED if approved else pb.DECISION_OUTCOME_REJECTED,
        decided_by=pb.DECISION_MAKER_HUMAN_REVIEW if official else pb.DECISION_MAKER_AUTOMATIC,
        official_id=official,
        decided_at=timestamp(now),
        failing_rule_ids=[r.rule_id for r in failed],
        message_zh=zh,
        message_en=en,
        note=note,
    )
    case.decision.CopyFrom(decision)
    case.decision_duration.FromTimedelta(now - case.submitted_at.ToDatetime(datetime.UTC))
    change.transition(pb.CASE_STATE_APPROVED if approved else pb.CASE_STATE_REJECTED, official or SYSTEM, en[:MAX_TEXT])
    if clock.shanghai_date(now) > datetime.date.fromisoformat(case.deadline_date):
        case.deadline_breached = True
    change.record(
        events_pb2.CaseDecided(
            case_id=case.case_id,
            case_type=case.case_type,
            applicant_subject_id=case.applicant_subject_id,
            applicant_masked_identifier=case.applicant_masked_identifier,
            outcome=decision.outcome,
            decided_by=decision.decided_by,
            failed_rules=[
                events_pb2.FailedRule(
                    rule_id=r.rule_id,
                    department_code=r.department_code,
                    message_zh=r.message_zh,
                    message_en=r.message_en,
                )
                for r in failed
            ],
            proof_ids=[s.proof_id for s in case.steps if s.kind == pb.CASE_STEP_KIND_PROOF and s.proof_id],
            submitted_at=case.submitted_at,
            decided_at=decision.decided_at,
            decision_duration=case.decision_duration,
            deadline_breached=case.deadline_breached,
        )
    )


# --------------------------------------------------------------------------------------------
# People: a reviewer's decision, a cancellation; and the deadline


def complete_review(
    case: pb.Case,
    task: pb.ReviewTask,
    decision: pb.ReviewDecision.ValueType,
    note: str,
    official: str,
    spec: CaseTypeSpec | None,
    departments: Mapping[str, Department],
    now: datetime.datetime,
) -> tuple[pb.ReviewTask, Change | None]:
    """The reviewer's decision on ``task``: the task as it is now, and the change to the case
    (None when the same decision was recorded before). An approval opens the next review step,
    if any; otherwise the case is decided. FAILED_PRECONDITION when the task was decided
    otherwise or withdrawn."""
    if task.state == pb.REVIEW_TASK_STATE_COMPLETED:
        if task.decision == decision:
            return task, None
        raise FailedPrecondition("task_id: the task was already decided otherwise")
    if task.state == pb.REVIEW_TASK_STATE_CANCELLED:
        raise FailedPrecondition("task_id: the case was cancelled; the task is closed")
    change = Change.of(case, now)
    done = pb.ReviewTask()
    done.CopyFrom(task)
    done.state = pb.REVIEW_TASK_STATE_COMPLETED
    done.decision = decision
    done.note = note
    done.official_id = official
    done.completed_at.CopyFrom(timestamp(now))
    change.tasks_updated.append(done)
    step = next(s for s in change.case.steps if s.review_task_id == task.task_id)
    approved = decision == pb.REVIEW_DECISION_APPROVE
    step.state = pb.CASE_STEP_STATE_SUCCEEDED if approved else pb.CASE_STEP_STATE_FAILED
    verdict_zh, verdict_en = ("同意", "approved") if approved else ("不同意", "rejected")
    step.message_zh = f"审核{verdict_zh}（{official}）" + (f"：{note}" if note else "")
    step.message_en = f"Review {verdict_en} by {official}" + (f": {note}" if note else "")
    change.step_ended(step)
    if change.case.state == pb.CASE_STATE_IN_REVIEW:
        change.transition(pb.CASE_STATE_IN_PROGRESS, official, f"review {verdict_en}")
    if not (approved and spec is not None and _open_review(change, spec, departments)):
        _conclude(change, approved=approved, failed=[], official=official, note=note)
    return done, change.revised()


def cancel(
    case: pb.Case,
    reason: str,
    actor: str,
    held: Sequence[str],
    open_tasks: Sequence[pb.ReviewTask],
    departments: Mapping[str, Department],
    now: datetime.datetime,
) -> Change | None:
    """``actor`` withdraws the case: its open steps end, and what it holds is released as
    compensation: the values it held (``held``, e.g. a property unit) and its open review tasks,
    withdrawn from the departments' queues so no official decides a withdrawn case. None when it
    was cancelled before; FAILED_PRECONDITION once it is decided."""
    if case.state == pb.CASE_STATE_CANCELLED:
        return None
    if case.state in FINAL:
        state = pb.CaseState.Name(case.state).removeprefix("CASE_STATE_").lower()
        raise FailedPrecondition(f"case_id: the case was already decided ({state})")
    change = Change.of(case, now)
    # CaseCancelled first: the steps it ends and the compensation follow it.
    change.record(
        events_pb2.CaseCancelled(
            case_id=case.case_id,
            case_type=case.case_type,
            applicant_subject_id=case.applicant_subject_id,
            applicant_masked_identifier=case.applicant_masked_identifier,
            previous_state=case.state,
            reason=reason,
            cancelled_by=actor,
            cancelled_at=timestamp(now),
        )
    )
    for step in change.case.steps:
        if step.state in OPEN_STEP:
            step.state = pb.CASE_STEP_STATE_SKIPPED
            step.message_zh = "案件已撤回，此步骤不再进行"
            step.message_en = "not needed: the case was cancelled"
            change.step_ended(step)
    _compensate(change, held, open_tasks, departments)
    change.transition(pb.CASE_STATE_CANCELLED, actor, reason or "cancelled")
    return change.revised()


def _compensate(
    change: Change, held: Sequence[str], open_tasks: Sequence[pb.ReviewTask], departments: Mapping[str, Department]
) -> None:
    for resource in sorted(held):
        name = resource.split("=", 1)[0]
        change.compensated(
            pb.CaseStep(
                step_id=f"compensation:hold:{name}",
                message_zh=f"已释放本案占用的 {resource}，其他案件可以办理",
                message_en=f"Released {resource}, which this case held: another case may take it",
            )
        )
    for open_task in open_tasks:
        task = pb.ReviewTask()
        task.CopyFrom(open_task)
        task.state = pb.REVIEW_TASK_STATE_CANCELLED
        task.completed_at.CopyFrom(timestamp(change.now))
        change.tasks_updated.append(task)
        change.compensated(
            pb.CaseStep(
                step_id=f"compensation:review_task:{task.task_id}",
                department_code=task.department_code,
                review_task_id=task.task_id,
                message_zh=f"已从{department_name(departments, task.department_code, 'zh')}的审核队列撤回审核任务",
                message_en=f"Review task withdrawn from {department_name(departments, task.department_code, 'en')}",
            )
        )


def mark_deadline_breached(case: pb.Case, now: datetime.datetime) -> Change | None:
    """An undecided case past its statutory deadline, marked once (DeadlineBreached, naming the
    departments it waits on)."""
    if case.deadline_breached or case.state in FINAL:
        return None
    change = Change.of(case, now)
    change.case.deadline_breached = True
    waiting = dict.fromkeys(s.department_code for s in case.steps if s.state in OPEN_STEP)
    change.record(
        events_pb2.DeadlineBreached(
            case_id=case.case_id,
            case_type=case.case_type,
            applicant_subject_id=case.applicant_subject_id,
            state=case.state,
            waiting_department_codes=list(waiting),
            deadline_date=case.deadline_date,
            deadline_working_days=case.deadline_working_days,
            submitted_at=case.submitted_at,
            detected_at=timestamp(now),
        )
    )
    return change.revised()
