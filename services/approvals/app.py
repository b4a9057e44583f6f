"""Approvals' use cases: submitting, reading and watching cases, review tasks, cancellation, and
driving the saga (domain/saga.py) for the worker (the case_submitted event and a timer). Each
loads what it needs, calls the domain, and saves the change with its events in one transaction."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

import sqlalchemy as sa
from google.protobuf.message import Message

from govmesh import clock as govmesh_clock
from govmesh import idempotency, texts
from govmesh.approvals.v1 import approvals_pb2 as pb
from govmesh.auth import Caller
from govmesh.db import Database
from govmesh.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from govmesh.outbox import Outbox, outbox_rows
from govmesh.parties import Parties, Party
from services.approvals import contract, queries, repository, store
from services.approvals.clients import ProofSource
from services.approvals.contract import Catalogue
from services.approvals.domain import saga, submission
from services.approvals.domain.casetypes import CaseTypeSpec, ParameterType
from services.approvals.domain.rules import APPLICANT
from services.approvals.domain.saga import FINAL, MAX_TEXT, Change, SagaSettings
from services.approvals.repository import Cases

MAX_NOTE = 1000
DEFAULT_SAGA = SagaSettings()

#: A step of a use case under the case row's lock: the cases as the transaction sees them, the
#: case as stored, and now; it returns the change to save, or None when nothing changed.
Step = Callable[[Cases, pb.Case, datetime.datetime], Change | None]


def checked_case_id(case_id: str) -> str:
    """``case_id`` when it may name a case; INVALID_ARGUMENT naming the field if not."""
    return texts.checked_text(case_id, "case_id", 36, required=True)


@dataclasses.dataclass(frozen=True)
class _Pull:
    """The proofs a drive of the saga pulls: of which case type version, which steps, whose."""

    spec: CaseTypeSpec
    outstanding: set[str]
    subjects: dict[str, str]


class ApprovalsApp:
    def __init__(
        self,
        db: Database,
        case_types: Mapping[str, CaseTypeSpec],
        catalogue: Catalogue,
        saga_settings: SagaSettings = DEFAULT_SAGA,
        clock: Callable[[], datetime.datetime] = govmesh_clock.now,
        on_events: Callable[[Sequence[Message]], None] = lambda events: None,
    ) -> None:
        self.db = db
        self.case_types = dict(case_types)
        # Records' proof types and departments, as the case types were checked against them.
        self.catalogue = catalogue
        self.departments = catalogue.departments
        self.saga = saga_settings
        self.versions = repository.CaseTypeVersions(
            db, case_types.values(), catalogue.proof_types, catalogue.departments
        )
        self.clock = clock
        # Told of every event after it committed (the metrics count them).
        self.on_events = on_events
        self.outbox = Outbox("approvals", store.outbox, store.inbox)

    def list_case_types(self) -> list[pb.CaseType]:
        return [contract.case_type_to_proto(spec) for spec in sorted(self.case_types.values(), key=lambda s: s.code)]

    # ----------------------------------------------------------------------------------------
    # Submission

    def submit(self, request: pb.SubmitCaseRequest, caller: Caller, parties: Parties) -> tuple[pb.Case, bool]:
        """The case and whether this call created it."""
        spec = self.case_types.get(request.case_type)
        if spec is None:
            known = ", ".join(sorted(self.case_types))
            raise InvalidArgument("case_type", "UNKNOWN", f"{request.case_type[:64]!r} is not a case type ({known})")
        # The id is checked first; its fingerprint (submission.fingerprint, the stored formula) once
        # the parties are resolved.
        attempt = idempotency.request(caller.caller_id, request.request_id, max_length=MAX_TEXT)
        parameters = submission.parameters(spec, dict(request.parameters))
        applicant = self._applicant(request, spec, parties)
        subjects, shown = self._parties(spec, parameters, applicant, parties)
        attempt = dataclasses.replace(attempt, fingerprint=submission.fingerprint(spec.code, subjects, shown))
        self.versions.remember(self.clock())
        holds = submission.holds(spec, parameters)
        now = self.clock()
        # An earlier attempt of the request, or an open case holding the same value, is not looked
        # for first: both are rare, and their unique keys refuse the new case's statement, which
        # then finds them below; every first submission saves three round trips (issue 13).
        case, event = saga.open_case(spec, str(uuid.uuid4()), applicant, shown, caller.caller_id, now)
        try:
            # One statement on PostgreSQL (Cases.flush), which commits by itself.
            with self.db.single_write() as session:
                cases = Cases(session)
                cases.add(case, attempt, caller.caller_id, subjects, holds.values(), now + self.saga.stall_after)
                cases.flush(outbox_rows(self.outbox.envelopes([(event, case.applicant_subject_id)])))
            self.on_events([event])
        except sa.exc.IntegrityError:
            # An earlier or concurrent submission of the same request id (it stands), or another
            # case holding the same value (refused as if it had come first).
            winner = repository.by_request(self.db, attempt)
            if winner is None:
                self._check_holds(holds)
                raise
            return winner, False
        return case, True

    def _applicant(self, request: pb.SubmitCaseRequest, spec: CaseTypeSpec, parties: Parties) -> Party:
        which = request.WhichOneof("applicant")
        if which == "applicant_identifier":
            party = parties.resolve("applicant_identifier", identifier=request.applicant_identifier)
        elif which == "applicant_subject_id":
            texts.checked_text(request.applicant_subject_id, "applicant_subject_id", 64)
            party = parties.resolve("applicant_subject_id", subject_id=request.applicant_subject_id)
        else:
            raise InvalidArgument("applicant", "MISSING", "give applicant_identifier or applicant_subject_id")
        if party is None:
            raise NotFound(f"{which}: no subject is registered under it")
        submission.check_applicant(spec, which, contract.party_kind(party))
        return party

    def _parties(
        self, spec: CaseTypeSpec, parameters: Mapping[str, str], applicant: Party, parties: Parties
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Whose proofs the case pulls (subject ids by "applicant" and identifier parameter), and
        its parameters as shown (identifiers masked)."""
        subjects = {APPLICANT: applicant.subject_id}
        shown = dict(parameters)
        for parameter in spec.parameters:
            if parameter.type is not ParameterType.IDENTIFIER or parameter.name not in parameters:
                continue
            name = f"parameters.{parameter.name}"
            party = parties.resolve(name, identifier=parameters[parameter.name])
            if party is None:
                raise NotFound(f"{name}: no subject is registered under that identifier")
            if party.subject_id == applicant.subject_id:
                raise InvalidArgument(name, "SAME_AS_APPLICANT", "must name another party than the applicant")
            submission.check_party(spec, self.catalogue.proof_types, parameter.name, contract.party_kind(party))
            subjects[parameter.name] = party.subject_id
            shown[parameter.name] = party.masked_identifier
        return subjects, shown

    def _check_holds(self, holds: Mapping[str, str]) -> None:
        held = repository.holders(self.db, holds.values())
        for name, resource in holds.items():
            if resource in held:
                raise FailedPrecondition(
                    f"parameters.{name}: case {held[resource]} is open for the same {name}; "
                    "a new case can be submitted once it is decided or cancelled"
                )

    # ----------------------------------------------------------------------------------------
    # Reading

    def get(self, case_id: str) -> pb.Case:
        return self._find(case_id).case

    def _find(self, case_id: str) -> queries.StoredCase:
        checked_case_id(case_id)
        found = queries.find(self.db, case_id)
        if found is None:
            raise NotFound(f"case_id: no case {case_id!r}")
        return found

    def read(self, case_id: str, caller: Caller) -> pb.Case:
        """The case, for a caller who may see it: the caller that submitted it, a department that
        signs it off or reviews it, or the all-rights portal. A case shows every department's
        evidence (criminal record categories among them), so a department that only contributes a
        proof does not read the others' evidence through it."""
        found = self._find(case_id)
        deciding = {
            s.department_code
            for s in found.case.steps
            if s.kind in (pb.CASE_STEP_KIND_SIGN_OFF, pb.CASE_STEP_KIND_REVIEW)
        }
        if "*" not in caller.rights and caller.caller_id not in (*deciding, found.submitted_by):
            raise PermissionDenied(f"case_id: {caller.caller_id} may not read this case")
        return found.case

    def list_cases(
        self, request: pb.ListCasesRequest, applicant_subject_id: str | None, caller: Caller
    ) -> pb.ListCasesResponse:
        """Cases the caller submitted (every case for the all-rights portal)."""
        return queries.list_cases(
            self.db,
            request,
            submitted_by=None if "*" in caller.rights else caller.caller_id,
            applicant_subject_id=applicant_subject_id,
            case_types=self.case_types,
        )

    async def watch(
        self, case_id: str, caller: Caller, moved: Callable[[int], Awaitable[object]]
    ) -> AsyncIterator[pb.Case]:
        """The case now, then every later revision in order, until it is final (or the watcher
        is cancelled: its client left). Changes come from other processes (the workers):
        ``moved(revision)`` returns once the case may be past ``revision`` (or after a while), and
        only then are its new revisions read. The reads run in the loop's thread pool."""
        case = await asyncio.to_thread(self.read, case_id, caller)
        yield case
        while case.state not in FINAL:
            await moved(case.revision)
            for revision in await asyncio.to_thread(queries.revisions_after, self.db, case_id, case.revision):
                case = revision
                yield case

    def latest_revisions(self, case_ids: list[str] | None) -> dict[str, int]:
        """Each case's latest revision: what the api's watchers' feed polls, for all at once."""
        return queries.latest_revisions(self.db, case_ids)

    # ----------------------------------------------------------------------------------------
    # Changing a case

    def _change(self, case_id: str, *steps: Step) -> tuple[pb.Case, bool]:
        """The unit of work around steps: the case locked, each step's change saved with its
        events (the outbox) and handed to the next step, in one transaction, the metrics told once
        it committed. The case as it is now, and whether a step changed it. Each change is its own
        revision, as if each step had had a transaction of its own."""
        changes: list[Change] = []
        with self.db.transaction() as session:
            cases = Cases(session)
            case = cases.lock(case_id)
            now = self.clock()
            for step in steps:
                change = step(cases, case, now)
                if change is None:
                    continue
                cases.save(change)
                changes.append(change)
                case = change.case
            # The steps' writes and events in one go, in the steps' order.
            cases.flush(outbox_rows(self.outbox.envelopes([pair for change in changes for pair in change.events])))
        events = [event for change in changes for event, _ in change.events]
        if events:
            self.on_events(events)
        return case, bool(changes)

    # ----------------------------------------------------------------------------------------
    # The saga

    def start(self, case_id: str, proofs: ProofSource) -> pb.Case:
        """advance, for the case's submission event: a case never driven is started; one driven
        already is left as it is. The event comes again (a redelivery, a publisher's retry, a replay
        from the dead letters) long after the case started, and driving it then would break its
        schedule: pull a proof whose pull is still under way, or ask a department that refused
        again at once, not in an hour, with one more refusal on the citizen's tracker. A case
        under way is the timer's: due once its retry's wait is over or its pull stalled (a worker
        that died mid-pull), and claimed by one worker then (claim_due_cases)."""
        return self.advance(case_id, proofs, only_if_new=True)

    def advance(self, case_id: str, proofs: ProofSource, only_if_new: bool = False) -> pb.Case:
        """Do whatever the case still needs: pull its outstanding proofs, then evaluate, sign off
        and decide, or open the next review task. Safe to call any number of times, at once.

        Two transactions around the pull (the CPU of a case is mostly its round trips to the
        database): one that looks at the case under its lock and starts the pulls (or decides, or
        escalates, when nothing is to be pulled), committed before records is asked, so a worker
        dying mid-pull leaves the case to the timer; and one that records the proofs and decides."""
        pulling: list[_Pull] = []

        def begin(cases: Cases, case: pb.Case, now: datetime.datetime) -> Change | None:
            if saga.settled(case) or (only_if_new and not saga.never_driven(case)):
                return None
            spec = self.versions.spec_for(case)
            if spec is None:
                return saga.escalate_unreadable_case_type(case, now, self.saga)
            # Open under the lock: another drive may have recorded some meanwhile, and asking
            # again would count as drawing a fresh proof.
            outstanding = saga.outstanding_proofs(case)
            if not outstanding:
                return saga.decide(case, spec, cases.claims(case.case_id), self.departments, now)
            pulling.append(_Pull(spec, outstanding, cases.subjects(case.case_id)))
            return saga.start_pulls(case, outstanding, now, self.saga)

        case, _ = self._change(case_id, begin)
        if not pulling or case.state in FINAL:
            return case
        return self._pull(case, pulling[0], proofs)

    def _pull(self, case: pb.Case, pull: _Pull, source: ProofSource) -> pb.Case:
        asked = saga.proof_requests(case, pull.spec, pull.outstanding, pull.subjects)
        answers = source.get_proofs([request for _, request in asked])
        by_step = {request.step_id: (proof, answer) for (proof, request), answer in zip(asked, answers, strict=True)}

        def record(_: Cases, case: pb.Case, now: datetime.datetime) -> Change | None:
            return saga.record_proofs(case, by_step, pull.subjects, self.departments, now, self.saga)

        def decide(cases: Cases, case: pb.Case, now: datetime.datetime) -> Change | None:
            if not saga.proofs_in(case):
                return None
            return saga.decide(case, pull.spec, cases.claims(case.case_id), self.departments, now)

        recorded, _ = self._change(case.case_id, record, decide)
        return recorded

    # ----------------------------------------------------------------------------------------
    # Timers

    def claim_due_cases(self, limit: int = 50) -> list[str]:
        """Undecided cases whose saga must be driven now (retries, and the safety net for cases
        nobody is working on), leased to the caller for ``stall_after``."""
        return repository.claim_due(self.db, self.clock(), self.saga.stall_after, limit)

    def check_deadlines(self, limit: int = 500) -> int:
        """Mark undecided cases past their statutory deadline, once each; how many were marked."""
        late = queries.late_cases(self.db, govmesh_clock.shanghai_date(self.clock()), limit)
        marked = 0
        for case_id in late:
            _, changed = self._change(case_id, lambda _, case, now: saga.mark_deadline_breached(case, now))
            marked += changed
        return marked

    # ----------------------------------------------------------------------------------------
    # Review tasks

    @staticmethod
    def _check_department(caller: Caller, department: str) -> None:
        # A department's caller id is its department code; only it (or the all-rights portal)
        # sees and decides its review tasks.
        if caller.caller_id != department and "*" not in caller.rights:
            raise PermissionDenied(f"department_code: {caller.caller_id} may not act for {department[:64]}")

    def list_review_tasks(self, request: pb.ListReviewTasksRequest, caller: Caller) -> pb.ListReviewTasksResponse:
        department = request.department_code
        if not department:
            raise InvalidArgument("department_code", "MISSING", "is required")
        texts.checked_text(department, "department_code", 64)
        if department not in self.departments:
            # A typo must not read as "no tasks": the queue a department watches would look empty.
            raise InvalidArgument(
                "department_code", "UNKNOWN_DEPARTMENT", "names no department (records' ListDepartments lists them)"
            )
        self._check_department(caller, department)
        return queries.list_review_tasks(self.db, department, request)

    def complete_review_task(
        self, request: pb.CompleteReviewTaskRequest, caller: Caller
    ) -> tuple[pb.ReviewTask, pb.Case]:
        texts.checked_text(request.task_id, "task_id", 36, required=True)
        if request.decision not in (pb.REVIEW_DECISION_APPROVE, pb.REVIEW_DECISION_REJECT):
            raise InvalidArgument("decision", "MISSING", "must be REVIEW_DECISION_APPROVE or REVIEW_DECISION_REJECT")
        note = request.note.strip()
        texts.checked_text(note, "note", MAX_NOTE, multiline=True)
        if request.decision == pb.REVIEW_DECISION_REJECT and not note:
            raise InvalidArgument("note", "MISSING", "is required when rejecting: the applicant is told why")
        owner = queries.task_owner(self.db, request.task_id)
        if owner is None:
            raise NotFound(f"task_id: no review task {request.task_id!r}")
        self._check_department(caller, owner.department_code)
        decided: list[pb.ReviewTask] = []

        def step(cases: Cases, case: pb.Case, now: datetime.datetime) -> Change | None:
            task, change = saga.complete_review(
                case,
                cases.task(request.task_id),
                request.decision,
                note,
                caller.caller_id,
                self.versions.spec_for(case),
                self.departments,
                now,
            )
            decided.append(task)
            return change

        case, _ = self._change(owner.case_id, step)
        return decided[0], case

    # ----------------------------------------------------------------------------------------
    # Cancellation

    def cancel(self, request: pb.CancelCaseRequest, caller: Caller) -> tuple[pb.Case, bool]:
        """The case, and whether this call cancelled it (False: it was cancelled before)."""
        checked_case_id(request.case_id)
        reason = request.reason.strip()
        texts.checked_text(reason, "reason", MAX_TEXT)

        def step(cases: Cases, case: pb.Case, now: datetime.datetime) -> Change | None:
            if "*" not in caller.rights and caller.caller_id != cases.submitter(case.case_id):
                raise PermissionDenied("case_id: only the caller that submitted the case may cancel it")
            held, tasks = cases.holds(case.case_id), cases.open_tasks(case.case_id)
            return saga.cancel(case, reason, caller.caller_id, held, tasks, self.departments, now)

        return self._change(request.case_id, step)
