"""Approvals' use cases: submitting, reading and watching cases, review tasks, cancellation, and
the saga that decides a case, driven by the worker (the case_submitted event and a timer).

The saga is idempotent by design rather than by message: every step reads the case as stored,
does only what is still outstanding, and writes under the case row's lock, so a redelivered or
duplicated event, a second worker or a worker killed halfway leaves one decision. Proofs are
pulled with a request id per case step, so records returns the same proof to every retry.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa
from google.protobuf.message import Message
from sqlalchemy.orm import Session

from govmesh import clock as govmesh_clock
from govmesh import config, paging, texts, typed_values, workdays
from govmesh.approvals.v1 import approvals_pb2 as pb
from govmesh.approvals.v1 import events_pb2
from govmesh.auth import Caller, Policy
from govmesh.clock import as_utc, timestamp
from govmesh.db import Database
from govmesh.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    StartupError,
)
from govmesh.identity.v1 import identity_pb2
from govmesh.outbox import Outbox
from govmesh.parameters import ParameterError
from govmesh.parties import Parties, Party
from govmesh.records.v1 import records_pb2
from services.approvals import rules, store
from services.approvals.casetypes import (
    ApplicantKind,
    CaseTypeError,
    CaseTypeSpec,
    ParameterType,
    ProofTypeInfo,
    RequiredProof,
    load_case_types,
    parse_case_type,
    validate_parameters,
)

MAX_TEXT = 200
MAX_NOTE = 1000
FINAL = frozenset({pb.CASE_STATE_APPROVED, pb.CASE_STATE_REJECTED, pb.CASE_STATE_CANCELLED})
OPEN_STEP = frozenset(
    {pb.CASE_STEP_STATE_PENDING, pb.CASE_STEP_STATE_RUNNING, pb.CASE_STEP_STATE_WAITING, pb.CASE_STEP_STATE_ESCALATED}
)
SYSTEM = "system"

STATE_NAMES = {value: pb.CaseState.Name(value).removeprefix("CASE_STATE_").lower() for value in pb.CaseState.values()}
KIND_OF_APPLICANT = {
    ApplicantKind.RESIDENT: identity_pb2.SUBJECT_KIND_RESIDENT,
    ApplicantKind.ENTERPRISE: identity_pb2.SUBJECT_KIND_ENTERPRISE,
}


@dataclass(frozen=True)
class SagaSettings:
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


class ProofNotIssued(Exception):
    """Records did not issue a proof. ``retryable``: it did not answer (timeout, unavailable);
    otherwise it refused (a rights or configuration problem a person must fix)."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class ProofSource(Protocol):
    """Records, as the worker reaches it: one answer per request, in order, each a Proof or the
    ProofNotIssued that says why not."""

    def get_proofs(
        self, requests: Sequence[records_pb2.GetProofRequest]
    ) -> list[records_pb2.Proof | ProofNotIssued]: ...


@dataclass(frozen=True)
class Department:
    code: str
    name_zh: str
    name_en: str


@dataclass
class Draft:
    """A case being changed inside one transaction: the events to publish with it, and when the
    saga must next be driven (``next_attempt_at``; unchanged unless ``reschedule`` is set)."""

    case: pb.Case
    now: datetime.datetime
    events: list[tuple[Message, str]] = field(default_factory=list)
    reschedule: bool = False
    next_attempt_at: datetime.datetime | None = None

    def due(self, at: datetime.datetime | None) -> None:
        self.reschedule = True
        self.next_attempt_at = at

    def transition(self, to_state: pb.CaseState.ValueType, actor: str, reason: str) -> None:
        case = self.case
        case.transitions.append(
            pb.CaseTransition(
                from_state=case.state,
                to_state=to_state,
                at=timestamp(self.now),
                actor=actor,
                reason=reason,
            )
        )
        case.state = to_state

    def escalated(self, step: pb.CaseStep, reason: str) -> None:
        """``step`` was just escalated to staff: tell them (CaseEscalated)."""
        self.events.append(
            (
                events_pb2.CaseEscalated(
                    case_id=self.case.case_id,
                    case_type=self.case.case_type,
                    applicant_subject_id=self.case.applicant_subject_id,
                    step_id=step.step_id,
                    kind=step.kind,
                    department_code=step.department_code,
                    attempts=step.attempts,
                    reason=reason,
                    escalated_at=timestamp(self.now),
                ),
                self.case.applicant_subject_id,
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
        self.events.append(
            (
                events_pb2.CaseStepCompleted(
                    case_id=self.case.case_id,
                    case_type=self.case.case_type,
                    applicant_subject_id=self.case.applicant_subject_id,
                    step_id=step.step_id,
                    kind=step.kind,
                    department_code=step.department_code,
                    state=step.state,
                    proof_id=step.proof_id,
                    attempts=step.attempts,
                    completed_at=step.completed_at,
                ),
                self.case.applicant_subject_id,
            )
        )


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


def _request_id(case: pb.Case, proof: RequiredProof, subject_id: str) -> str:
    drawn = sum(1 for p in case.proofs if p.proof_type == proof.proof_type and p.subject_id == subject_id)
    base = f"{case.case_id}/{proof_step_id(proof)}"
    return base if drawn == 0 else f"{base}/{drawn}"


def proof_step_id(proof: RequiredProof) -> str:
    suffix = "" if proof.subject == rules.APPLICANT else f":{proof.subject}"
    return f"proof:{proof.proof_type}{suffix}"


class ApprovalsApp:
    def __init__(
        self,
        db: Database,
        case_types: Mapping[str, CaseTypeSpec],
        departments: Mapping[str, Department],
        saga: SagaSettings = SagaSettings(),
        catalogue: Mapping[str, ProofTypeInfo] | None = None,
        clock: Callable[[], datetime.datetime] = govmesh_clock.now,
        on_events: Callable[[Sequence[Message]], None] = lambda events: None,
    ) -> None:
        self.db = db
        self.case_types = dict(case_types)
        self.departments = dict(departments)
        self.saga = saga
        # Records' proof types, as the case types were checked against them.
        self.catalogue = dict(catalogue or {})
        self._versions: dict[tuple[str, str], CaseTypeSpec] = {(s.code, s.version): s for s in case_types.values()}
        self._versions_remembered = False
        self.clock = clock
        # Told of every event after it committed (the metrics count them).
        self.on_events = on_events
        self.outbox = Outbox("approvals", store.outbox, store.inbox)

    # ----------------------------------------------------------------------------------------
    # Case types

    def remember_versions(self) -> None:
        """Store the loaded case types' versions (once each), so any process can decide a case by
        the version it was submitted under. Done at the first submission or saga step, not at
        start: the database may not be migrated yet when the process starts."""
        if self._versions_remembered:
            return
        table = store.case_type_versions
        for spec in self.case_types.values():
            with self.db.read() as session:
                known = session.execute(
                    sa.select(table.c.version).where(table.c.code == spec.code, table.c.version == spec.version)
                ).first()
            if known is not None:
                continue
            try:
                with self.db.transaction() as session:
                    session.execute(
                        table.insert().values(
                            code=spec.code, version=spec.version, source=spec.source, first_loaded_at=self.clock()
                        )
                    )
            except sa.exc.IntegrityError:
                pass  # another process stored the same version at the same moment
        self._versions_remembered = True

    def spec_for(self, case: pb.Case) -> CaseTypeSpec | None:
        """The case type at the version the case was submitted under; None when no process ever
        stored it (or it no longer reads against records' catalogue)."""
        key = (case.case_type, case.case_type_version)
        spec = self._versions.get(key)
        if spec is not None:
            return spec
        with self.db.read() as session:
            source = session.execute(
                sa.select(store.case_type_versions.c.source).where(
                    store.case_type_versions.c.code == key[0], store.case_type_versions.c.version == key[1]
                )
            ).scalar_one_or_none()
        if source is None:
            return None
        try:
            spec = parse_case_type(
                Path(f"stored/{key[1]}/{key[0]}.yaml"), source, self.catalogue, frozenset(self.departments)
            )
        except CaseTypeError:
            return None
        self._versions[key] = spec
        return spec

    def list_case_types(self) -> list[pb.CaseType]:
        return [case_type_to_proto(spec) for spec in sorted(self.case_types.values(), key=lambda s: s.code)]

    def _department_name(self, code: str, language: str) -> str:
        department = self.departments.get(code)
        if department is None:
            return code
        return department.name_zh if language == "zh" else department.name_en

    # ----------------------------------------------------------------------------------------
    # Submission

    def submit(self, request: pb.SubmitCaseRequest, caller: Caller, parties: Parties) -> tuple[pb.Case, bool]:
        """The case and whether this call created it."""
        spec = self.case_types.get(request.case_type)
        if spec is None:
            known = ", ".join(sorted(self.case_types))
            raise InvalidArgument("case_type", "UNKNOWN", f"{request.case_type[:64]!r} is not a case type ({known})")
        request_id = request.request_id.strip()
        if not request_id:
            raise InvalidArgument(
                "request_id", "MISSING", "is required (e.g. a UUID), so a retried submission is not a second case"
            )
        texts.checked_text(request_id, "request_id", MAX_TEXT)
        try:
            parameters = validate_parameters(spec, dict(request.parameters))
        except ParameterError as exc:
            raise InvalidArgument(f"parameters.{exc.parameter}", "INVALID_PARAMETER", exc.reason) from None
        applicant = self._applicant(request, spec, parties)
        subjects = {rules.APPLICANT: applicant.subject_id}
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
            self._check_party_kind(spec, parameter.name, party)
            subjects[parameter.name] = party.subject_id
            shown[parameter.name] = party.masked_identifier
        fingerprint = hashlib.sha256(
            json.dumps([spec.code, subjects, sorted(shown.items())], sort_keys=True).encode()
        ).hexdigest()
        self.remember_versions()
        request_key = f"{caller.caller_id}:{request_id}"
        existing = self._by_request(request_key, fingerprint)
        if existing is not None:
            return existing, False
        holds = {name: f"{name}={parameters[name]}" for name in spec.holds}
        self._check_holds(holds)
        now = self.clock()
        deadline = workdays.add_working_days(now, spec.deadline_working_days)
        case = pb.Case(
            case_id=str(uuid.uuid4()),
            case_type=spec.code,
            case_type_version=spec.version,
            applicant_subject_id=applicant.subject_id,
            applicant_masked_identifier=applicant.masked_identifier,
            parameters=shown,
            state=pb.CASE_STATE_SUBMITTED,
            steps=plan_steps(spec),
            submitted_at=timestamp(now),
            deadline_date=deadline.isoformat(),
            deadline_working_days=spec.deadline_working_days,
            deadline_provisional=not workdays.calendar_covers(govmesh_clock.shanghai_date(now), deadline),
            revision=1,
            updated_at=timestamp(now),
        )
        case.transitions.append(
            pb.CaseTransition(
                from_state=pb.CASE_STATE_UNSPECIFIED,
                to_state=pb.CASE_STATE_SUBMITTED,
                at=timestamp(now),
                actor=caller.caller_id,
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
        try:
            with self.db.transaction() as session:
                session.execute(
                    store.cases.insert().values(
                        case_id=case.case_id,
                        request_key=request_key,
                        request_fingerprint=fingerprint,
                        submitted_by=caller.caller_id,
                        case_type=case.case_type,
                        applicant_subject_id=case.applicant_subject_id,
                        state=STATE_NAMES[case.state],
                        submitted_at=now,
                        deadline_date=datetime.date.fromisoformat(case.deadline_date),
                        deadline_breached=False,
                        next_attempt_at=now + self.saga.stall_after,
                        revision=case.revision,
                        subjects=json.dumps(subjects, sort_keys=True),
                        document=case.SerializeToString(),
                    )
                )
                self._keep_revision(session, case, now)
                for resource in holds.values():
                    session.execute(
                        store.case_holds.insert().values(resource=resource, case_id=case.case_id, held_since=now)
                    )
                self.outbox.add(session, event, subject=case.applicant_subject_id)
            self.on_events([event])
        except sa.exc.IntegrityError:
            # A concurrent submission won the race: the same request id (theirs stands), or
            # another case taking the same hold (refused as if it had come first).
            winner = self._by_request(request_key, fingerprint)
            if winner is None:
                self._check_holds(holds)
                raise
            return winner, False
        return case, True

    def _check_holds(self, holds: Mapping[str, str]) -> None:
        if not holds:
            return
        with self.db.read() as session:
            rows = session.execute(
                sa.select(store.case_holds).where(store.case_holds.c.resource.in_(list(holds.values())))
            ).all()
        held = {row.resource: row for row in rows}
        for name, resource in holds.items():
            if resource in held:
                raise FailedPrecondition(
                    f"parameters.{name}: case {held[resource].case_id} is open for the same {name}; "
                    "a new case can be submitted once it is decided or cancelled"
                )

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
        wanted = KIND_OF_APPLICANT[spec.applicant_kind]
        if party.kind != wanted:
            raise InvalidArgument(
                which,
                "WRONG_KIND",
                f"{spec.code} is for {spec.applicant_kind.value} applicants; this one is not",
            )
        return party

    def _check_party_kind(self, spec: CaseTypeSpec, parameter: str, party: Party) -> None:
        """The party must be a kind of subject records issues its proofs about: a resident's ID
        number where a criminal record is pulled, an enterprise's credit code where a registration
        is (otherwise records would refuse the proof and the case could never be decided)."""
        kinds: set[str] | None = None
        for proof in spec.proofs:
            info = self.catalogue.get(proof.proof_type)
            known = None if info is None else info.subject_kinds
            if proof.subject == parameter and known is not None:
                kinds = set(known) if kinds is None else kinds & known
        if kinds is not None and SUBJECT_KIND_NAMES.get(party.kind) not in kinds:
            wanted = " or ".join(IDENTIFIER_OF_KIND[kind] for kind in sorted(kinds)) or "nobody records knows"
            raise InvalidArgument(f"parameters.{parameter}", "WRONG_KIND", f"must be {wanted}")

    def _by_request(self, request_key: str, fingerprint: str) -> pb.Case | None:
        with self.db.read() as session:
            row = session.execute(
                sa.select(store.cases.c.request_fingerprint, store.cases.c.document).where(
                    store.cases.c.request_key == request_key
                )
            ).first()
        if row is None:
            return None
        if row.request_fingerprint != fingerprint:
            raise AlreadyExists("request_id: was already used for a different submission")
        return pb.Case.FromString(row.document)

    # ----------------------------------------------------------------------------------------
    # Reading

    def get(self, case_id: str) -> pb.Case:
        texts.checked_text(case_id, "case_id", 36, required=True)
        with self.db.read() as session:
            document = session.execute(
                sa.select(store.cases.c.document).where(store.cases.c.case_id == case_id)
            ).scalar_one_or_none()
        if document is None:
            raise NotFound(f"case_id: no case {case_id!r}")
        return pb.Case.FromString(document)

    def read(self, case_id: str, caller: Caller) -> pb.Case:
        """The case, for a caller who may see it: the caller that submitted it, a department that
        signs it off or reviews it, or the all-rights portal. A case shows every department's
        evidence (criminal record categories among them), so a department that only contributes a
        proof does not read the others' evidence through it."""
        case = self.get(case_id)
        if not self._may_read(caller, case):
            raise PermissionDenied(f"case_id: {caller.caller_id} may not read this case")
        return case

    def _may_read(self, caller: Caller, case: pb.Case) -> bool:
        if "*" in caller.rights:
            return True
        deciding = {
            s.department_code for s in case.steps if s.kind in (pb.CASE_STEP_KIND_SIGN_OFF, pb.CASE_STEP_KIND_REVIEW)
        }
        return caller.caller_id in deciding or caller.caller_id == self._submitter(case.case_id)

    def _submitter(self, case_id: str) -> str:
        with self.db.read() as session:
            submitter: str = session.execute(
                sa.select(store.cases.c.submitted_by).where(store.cases.c.case_id == case_id)
            ).scalar_one()
        return submitter

    def list_cases(
        self, request: pb.ListCasesRequest, applicant_subject_id: str | None, caller: Caller
    ) -> pb.ListCasesResponse:
        """Cases the caller submitted (every case for the all-rights portal)."""
        size = paging.page_size(request.page_size)
        table = store.cases
        query = sa.select(table.c.submitted_at, table.c.case_id, table.c.document)
        if "*" not in caller.rights:
            query = query.where(table.c.submitted_by == caller.caller_id)
        if applicant_subject_id is not None:
            query = query.where(table.c.applicant_subject_id == applicant_subject_id)
        if request.case_type:
            if request.case_type not in self.case_types:
                raise InvalidArgument("case_type", "UNKNOWN", f"{request.case_type[:64]!r} is not a case type")
            query = query.where(table.c.case_type == request.case_type)
        if request.states:
            unknown = [s for s in request.states if s not in STATE_NAMES or s == pb.CASE_STATE_UNSPECIFIED]
            if unknown:
                raise InvalidArgument("states", "UNKNOWN", f"{unknown[0]} is not a case state")
            query = query.where(table.c.state.in_([STATE_NAMES[s] for s in request.states]))
        if request.page_token:
            at, last_id = paging.decode_token(request.page_token)
            query = query.where(
                sa.or_(table.c.submitted_at < at, sa.and_(table.c.submitted_at == at, table.c.case_id < last_id))
            )
        query = query.order_by(table.c.submitted_at.desc(), table.c.case_id.desc()).limit(size + 1)
        with self.db.read() as session:
            rows = session.execute(query).all()
        response = pb.ListCasesResponse(cases=[pb.Case.FromString(row.document) for row in rows[:size]])
        if len(rows) > size:
            last = rows[size - 1]
            response.next_page_token = paging.encode_token(as_utc(last.submitted_at), last.case_id)
        return response

    def watch(self, case_id: str, caller: Caller, active: Callable[[], bool], poll: float = 0.05) -> Iterator[pb.Case]:
        """The case now, then every later revision in order, until it is final or ``active()``
        is false. Changes come from other processes (the workers), so new revisions are polled:
        one indexed read per interval per watcher."""
        case = self.read(case_id, caller)
        yield case
        seen = case.revision
        while case.state not in FINAL and active():
            time.sleep(poll)
            with self.db.read() as session:
                rows = session.execute(
                    sa.select(store.case_revisions.c.revision, store.case_revisions.c.document)
                    .where(store.case_revisions.c.case_id == case_id, store.case_revisions.c.revision > seen)
                    .order_by(store.case_revisions.c.revision)
                ).all()
            for row in rows:
                case = pb.Case.FromString(row.document)
                seen = row.revision
                yield case

    # ----------------------------------------------------------------------------------------
    # Changing a case

    def _change(self, case_id: str, change: Callable[[Session, Draft], bool]) -> pb.Case:
        """Apply ``change`` to the stored case under its row lock; it returns whether it changed
        anything. The case, its events and its schedule commit together."""
        with self.db.transaction() as session:
            row = session.execute(
                sa.select(store.cases.c.document).where(store.cases.c.case_id == case_id).with_for_update()
            ).first()
            if row is None:
                raise NotFound(f"case_id: no case {case_id!r}")
            draft = Draft(pb.Case.FromString(row.document), self.clock())
            if not change(session, draft):
                return draft.case
            case = draft.case
            case.revision += 1
            case.updated_at.CopyFrom(timestamp(draft.now))
            values: dict[str, object] = {
                "state": STATE_NAMES[case.state],
                "revision": case.revision,
                "deadline_breached": case.deadline_breached,
                "document": case.SerializeToString(),
            }
            if case.state in FINAL or case.state == pb.CASE_STATE_IN_REVIEW:
                values["next_attempt_at"] = None
            elif draft.reschedule:
                values["next_attempt_at"] = draft.next_attempt_at
            session.execute(store.cases.update().where(store.cases.c.case_id == case_id).values(**values))
            self._keep_revision(session, case, draft.now)
            if case.state in FINAL:
                # A final case holds nothing (a cancelled one released its holds as compensation),
                # and the claims its rules read are not kept: the evidence stays in the case.
                session.execute(store.case_holds.delete().where(store.case_holds.c.case_id == case_id))
                session.execute(store.case_claims.delete().where(store.case_claims.c.case_id == case_id))
            if draft.events:
                self.outbox.add_many(session, draft.events)
        if draft.events:
            self.on_events([event for event, _ in draft.events])
        return case

    @staticmethod
    def _keep_revision(session: Session, case: pb.Case, at: datetime.datetime) -> None:
        session.execute(
            store.case_revisions.insert().values(
                case_id=case.case_id, revision=case.revision, changed_at=at, document=case.SerializeToString()
            )
        )

    def _subjects(self, case_id: str) -> dict[str, str]:
        with self.db.read() as session:
            text = session.execute(
                sa.select(store.cases.c.subjects).where(store.cases.c.case_id == case_id)
            ).scalar_one()
        subjects: dict[str, str] = json.loads(text)
        return subjects

    # ----------------------------------------------------------------------------------------
    # The saga

    def advance(self, case_id: str, proofs: ProofSource) -> pb.Case:
        """Do whatever the case still needs: pull its outstanding proofs, then evaluate, sign off
        and decide, or open the next review task. Safe to call any number of times, at once."""
        case = self.get(case_id)
        if case.state in FINAL or case.state == pb.CASE_STATE_IN_REVIEW:
            return case
        spec = self.spec_for(case)
        if spec is None:
            return self._escalate_case_type(case_id)
        outstanding = {
            step.step_id for step in case.steps if step.kind == pb.CASE_STEP_KIND_PROOF and step.state in OPEN_STEP
        }
        if outstanding:
            case = self._change(case_id, lambda session, draft: self._start_pulls(draft, outstanding))
            if case.state in FINAL:
                return case
            # Only what is still open now: another drive may have recorded some meanwhile, and
            # asking again would count as drawing a fresh proof.
            outstanding = {s.step_id for s in case.steps if s.step_id in outstanding and s.state in OPEN_STEP}
            if outstanding:
                case = self._pull(case, spec, outstanding, proofs)
            if any(s.kind == pb.CASE_STEP_KIND_PROOF and s.state != pb.CASE_STEP_STATE_SUCCEEDED for s in case.steps):
                return case
        return self._change(case_id, lambda session, draft: self._decide(session, draft, spec))

    def _start_pulls(self, draft: Draft, outstanding: set[str]) -> bool:
        if draft.case.state in FINAL:
            return False
        if draft.case.state == pb.CASE_STATE_SUBMITTED:
            draft.transition(pb.CASE_STATE_IN_PROGRESS, SYSTEM, "work started")
        for step in draft.case.steps:
            if step.step_id in outstanding and step.state in OPEN_STEP:
                if step.state != pb.CASE_STEP_STATE_ESCALATED:
                    step.state = pb.CASE_STEP_STATE_RUNNING
                if not step.HasField("started_at"):
                    step.started_at.CopyFrom(timestamp(draft.now))
        # If this worker dies while pulling, the timer drives the case again.
        draft.due(draft.now + self.saga.stall_after)
        return True

    def _pull(self, case: pb.Case, spec: CaseTypeSpec, outstanding: set[str], source: ProofSource) -> pb.Case:
        subjects = self._subjects(case.case_id)
        wanted = [proof for proof in spec.proofs if proof_step_id(proof) in outstanding]
        requests = [
            records_pb2.GetProofRequest(
                subject_id=subjects[proof.subject],
                proof_type=proof.proof_type,
                purpose=records_pb2.Purpose(case_id=case.case_id, note=f"{case.case_type} {proof_step_id(proof)}"),
                parameters=proof.request_parameters(case.parameters),
                # One request id per case step: every retry, by any worker, gets the same proof;
                # a proof that expired before the decision is drawn afresh under the next one.
                request_id=_request_id(case, proof, subjects[proof.subject]),
            )
            for proof in wanted
        ]
        answers = source.get_proofs(requests)
        results = dict(zip((proof_step_id(p) for p in wanted), zip(wanted, answers, strict=True), strict=True))
        return self._change(case.case_id, lambda session, draft: self._record_proofs(session, draft, results, subjects))

    def _record_proofs(
        self,
        session: Session,
        draft: Draft,
        results: Mapping[str, tuple[RequiredProof, records_pb2.Proof | ProofNotIssued]],
        subjects: Mapping[str, str],
    ) -> bool:
        case = draft.case
        if case.state in FINAL:
            return False
        failures = 0
        for step in case.steps:
            if step.step_id not in results or step.state not in OPEN_STEP:
                continue  # done meanwhile, by another worker
            required, answer = results[step.step_id]
            # Counted when an answer (or the lack of one) is in, so concurrent drives of one case
            # do not count attempts nobody made.
            step.attempts += 1
            if isinstance(answer, ProofNotIssued):
                failures += 1
                self._proof_failed(draft, step, answer)
                continue
            if answer.proof_type != required.proof_type or answer.subject_id != subjects[required.subject]:
                failures += 1
                self._proof_failed(draft, step, ProofNotIssued("records answered with another proof", retryable=False))
                continue
            step.state = pb.CASE_STEP_STATE_SUCCEEDED
            step.proof_id = answer.proof_id
            department = self._department_name(step.department_code, "zh")
            step.message_zh = f"已向{department}调取{required.proof_type}证明 {answer.proof_id}，申请人无需提交材料"
            step.message_en = (
                f"Proof {answer.proof_id} ({required.proof_type}) drawn from "
                f"{self._department_name(step.department_code, 'en')}; the applicant brought nothing"
            )
            case.proofs.append(
                pb.ProofUsed(
                    proof_id=answer.proof_id,
                    proof_type=answer.proof_type,
                    issuing_department_code=answer.issuing_department_code,
                    subject_id=answer.subject_id,
                    issued_at=answer.issued_at,
                    valid_until=answer.valid_until,
                )
            )
            claims = typed_values.fields_from_proto(answer.claims)
            session.execute(
                store.case_claims.insert().values(
                    case_id=case.case_id,
                    step_id=step.step_id,
                    proof_id=answer.proof_id,
                    claims=typed_values.fields_to_json(claims),
                )
            )
            draft.step_ended(step)
        if failures:
            attempts = max(s.attempts for s in case.steps if s.step_id in results)
            refused = any(isinstance(a, ProofNotIssued) and not a.retryable for _, a in results.values())
            delay = self.saga.refusal_retry if refused else self.saga.retry_delay(attempts)
            draft.due(draft.now + delay)
        return True

    def _proof_failed(self, draft: Draft, step: pb.CaseStep, failure: ProofNotIssued) -> None:
        reason = failure.reason[:MAX_TEXT]
        department_zh = self._department_name(step.department_code, "zh")
        step.message_zh = f"第 {step.attempts} 次调取未成功（{reason}），将自动重试"
        step.message_en = f"Attempt {step.attempts} did not succeed ({reason}); retrying automatically"
        if step.state == pb.CASE_STEP_STATE_ESCALATED:
            return
        if step.attempts < self.saga.max_attempts and failure.retryable:
            step.state = pb.CASE_STEP_STATE_PENDING
            return
        step.state = pb.CASE_STEP_STATE_ESCALATED
        step.message_zh = f"{department_zh}未能提供证明（{reason}），已升级人工处理，系统继续重试"
        step.message_en = (
            f"{self._department_name(step.department_code, 'en')} did not provide the proof ({reason}); "
            "escalated to staff, and still retried"
        )
        draft.escalated(step, reason)

    def _escalate_case_type(self, case_id: str) -> pb.Case:
        """The case's type at its version is known to no process (or no longer reads against
        records' catalogue): a person must take it up. It is never decided by other rules than
        those it was submitted under."""

        def change(session: Session, draft: Draft) -> bool:
            case = draft.case
            if case.state in FINAL:
                return False
            pending = next((s for s in case.steps if s.state in OPEN_STEP), None)
            if pending is None or pending.state == pb.CASE_STEP_STATE_ESCALATED:
                draft.due(draft.now + self.saga.retry_cap)
                return True
            pending.state = pb.CASE_STEP_STATE_ESCALATED
            pending.message_zh = "该事项类型的规则已变更，需人工处理"
            pending.message_en = f"case type {case.case_type} version {case.case_type_version} cannot be read"
            draft.escalated(pending, pending.message_en)
            draft.due(draft.now + self.saga.retry_cap)
            return True

        return self._change(case_id, change)

    def _decide(self, session: Session, draft: Draft, spec: CaseTypeSpec) -> bool:
        """Rules, sign-offs, then the decision or the next review task; once every proof is in."""
        case = draft.case
        if case.state in FINAL or case.state == pb.CASE_STATE_IN_REVIEW:
            return False
        if any(s.kind == pb.CASE_STEP_KIND_PROOF and s.state != pb.CASE_STEP_STATE_SUCCEEDED for s in case.steps):
            return False
        if case.state == pb.CASE_STATE_SUBMITTED:
            draft.transition(pb.CASE_STATE_IN_PROGRESS, SYSTEM, "work started")
        if self._renew_expired(session, draft):
            return True
        claims, proof_ids = self._claims(session, case.case_id, spec)
        results = rules.evaluate(spec, claims, dict(case.parameters))
        failed = [r for r in results if not r.passed]
        for result in results:
            proof_id = proof_ids.get((result.proof_type, result.subject), "")
            case.rule_results.append(
                pb.RuleResult(
                    rule_id=result.rule_id,
                    department_code=result.department_code,
                    outcome=pb.RULE_OUTCOME_PASSED if result.passed else pb.RULE_OUTCOME_FAILED,
                    evidence=[
                        pb.RuleEvidence(proof_id=proof_id, claim=name, value=rules.show(value, "en"))
                        for name, value in result.evidence.items()
                    ],
                    message_zh=result.message_zh,
                    message_en=result.message_en,
                    evaluated_at=timestamp(draft.now),
                )
            )
        for step in case.steps:
            if step.kind != pb.CASE_STEP_KIND_RULES:
                continue
            mine = [r for r in results if r.department_code == step.department_code]
            bad = [r for r in mine if not r.passed]
            step.attempts += 1
            step.started_at.CopyFrom(timestamp(draft.now))
            step.state = pb.CASE_STEP_STATE_FAILED if bad else pb.CASE_STEP_STATE_SUCCEEDED
            step.message_zh = f"{len(mine)} 条规则中 {len(bad)} 条未通过" if bad else f"{len(mine)} 条规则全部通过"
            step.message_en = f"{len(bad)} of {len(mine)} rules failed" if bad else f"all {len(mine)} rules passed"
            draft.step_ended(step)
        if failed:
            self._conclude(draft, approved=False, failed=failed)
            return True
        for step in case.steps:
            if step.kind != pb.CASE_STEP_KIND_SIGN_OFF:
                continue
            step.attempts += 1
            step.started_at.CopyFrom(timestamp(draft.now))
            step.state = pb.CASE_STEP_STATE_SUCCEEDED
            step.message_zh = f"{self._department_name(step.department_code, 'zh')}已依据其规则全部通过予以签章确认"
            step.message_en = f"Signed off by {self._department_name(step.department_code, 'en')}: all its rules passed"
            draft.step_ended(step)
        if not self._open_review(session, draft, spec):
            self._conclude(draft, approved=True, failed=[])
        return True

    def _renew_expired(self, session: Session, draft: Draft) -> bool:
        """A decision rests only on proofs valid when it is made: a proof that expired while the
        case waited (a retry, an escalation) is drawn afresh first. True when one was."""
        case = draft.case
        valid_until = {p.proof_id: p.valid_until.ToDatetime(datetime.UTC) for p in case.proofs}
        expired = [
            step
            for step in case.steps
            if step.kind == pb.CASE_STEP_KIND_PROOF and valid_until.get(step.proof_id, draft.now) < draft.now
        ]
        for step in expired:
            session.execute(
                store.case_claims.delete().where(
                    store.case_claims.c.case_id == case.case_id, store.case_claims.c.step_id == step.step_id
                )
            )
            step.state = pb.CASE_STEP_STATE_PENDING
            step.message_zh = f"证明 {step.proof_id} 已过有效期，重新调取"
            step.message_en = f"Proof {step.proof_id} expired before the decision; drawing a fresh one"
            step.proof_id = ""
        if expired:
            draft.due(draft.now)
        return bool(expired)

    def _claims(
        self, session: Session, case_id: str, spec: CaseTypeSpec
    ) -> tuple[dict[tuple[str, str], dict[str, typed_values.Value]], dict[tuple[str, str], str]]:
        rows = session.execute(sa.select(store.case_claims).where(store.case_claims.c.case_id == case_id)).all()
        by_step = {row.step_id: row for row in rows}
        claims: dict[tuple[str, str], dict[str, typed_values.Value]] = {}
        proof_ids: dict[tuple[str, str], str] = {}
        for proof in spec.proofs:
            row = by_step.get(proof_step_id(proof))
            if row is not None:
                claims[(proof.proof_type, proof.subject)] = typed_values.fields_from_json(row.claims)
                proof_ids[(proof.proof_type, proof.subject)] = row.proof_id
        return claims, proof_ids

    def _open_review(self, session: Session, draft: Draft, spec: CaseTypeSpec) -> bool:
        """Open the next review task; False when no review step is left."""
        case = draft.case
        step = next(
            (s for s in case.steps if s.kind == pb.CASE_STEP_KIND_REVIEW and s.state == pb.CASE_STEP_STATE_PENDING),
            None,
        )
        if step is None:
            return False
        index = int(step.step_id.split(":")[1]) - 1
        review = spec.review_steps[index]
        task = pb.ReviewTask(
            task_id=str(uuid.uuid4()),
            case_id=case.case_id,
            case_type=case.case_type,
            department_code=review.department_code,
            state=pb.REVIEW_TASK_STATE_OPEN,
            applicant_masked_identifier=case.applicant_masked_identifier,
            instructions_zh=review.instructions_zh,
            instructions_en=review.instructions_en,
            created_at=timestamp(draft.now),
            deadline_date=case.deadline_date,
        )
        session.execute(
            store.review_tasks.insert().values(
                task_id=task.task_id,
                case_id=case.case_id,
                department_code=task.department_code,
                state="open",
                created_at=draft.now,
                document=task.SerializeToString(),
            )
        )
        step.state = pb.CASE_STEP_STATE_WAITING
        step.review_task_id = task.task_id
        step.attempts += 1
        step.started_at.CopyFrom(timestamp(draft.now))
        department = review.department_code
        step.message_zh = f"等待{self._department_name(department, 'zh')}工作人员审核"
        step.message_en = f"Waiting for an official of {self._department_name(department, 'en')}"
        if case.state != pb.CASE_STATE_IN_REVIEW:
            draft.transition(pb.CASE_STATE_IN_REVIEW, SYSTEM, f"review by {department}")
        return True

    def _conclude(
        self,
        draft: Draft,
        *,
        approved: bool,
        failed: Sequence[rules.RuleResult],
        official: str = "",
        note: str = "",
    ) -> None:
        case = draft.case
        for step in case.steps:
            if step.state in (pb.CASE_STEP_STATE_PENDING, pb.CASE_STEP_STATE_RUNNING):
                step.state = pb.CASE_STEP_STATE_SKIPPED
                step.message_zh = "案件已作出决定，此步骤无需进行"
                step.message_en = "not needed: the case was decided"
                draft.step_ended(step)
        submitted = case.submitted_at.ToDatetime(datetime.UTC)
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
            decided_at=timestamp(draft.now),
            failing_rule_ids=[r.rule_id for r in failed],
            message_zh=zh,
            message_en=en,
            note=note,
        )
        case.decision.CopyFrom(decision)
        case.decision_duration.FromTimedelta(draft.now - submitted)
        draft.transition(
            pb.CASE_STATE_APPROVED if approved else pb.CASE_STATE_REJECTED, official or SYSTEM, en[:MAX_TEXT]
        )
        if govmesh_clock.shanghai_date(draft.now) > datetime.date.fromisoformat(case.deadline_date):
            case.deadline_breached = True
        draft.events.append(
            (
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
                ),
                case.applicant_subject_id,
            )
        )

    # ----------------------------------------------------------------------------------------
    # Timers

    def claim_due_cases(self, limit: int = 50) -> list[str]:
        """Undecided cases whose saga must be driven now (retries, and the safety net for cases
        nobody is working on), leased to the caller for ``stall_after`` so that several workers'
        timers do not all drive the same case."""
        now = self.clock()
        table = store.cases
        # Most ticks find nothing: look first, so an idle timer never takes the write lock.
        with self.db.read() as session:
            if (
                session.execute(sa.select(table.c.case_id).where(table.c.next_attempt_at <= now).limit(1)).first()
                is None
            ):
                return []
        with self.db.transaction() as session:
            due = list(
                session.execute(
                    sa.select(table.c.case_id)
                    .where(table.c.next_attempt_at <= now)
                    .order_by(table.c.next_attempt_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                ).scalars()
            )
            if due:
                session.execute(
                    table.update().where(table.c.case_id.in_(due)).values(next_attempt_at=now + self.saga.stall_after)
                )
        return due

    def check_deadlines(self, limit: int = 500) -> int:
        """Mark undecided cases past their statutory deadline, once each; how many were marked."""
        now = self.clock()
        today = govmesh_clock.shanghai_date(now)
        open_states = [STATE_NAMES[s] for s in STATE_NAMES if s not in FINAL]
        with self.db.read() as session:
            late = list(
                session.execute(
                    sa.select(store.cases.c.case_id)
                    .where(
                        store.cases.c.deadline_breached.is_(False),
                        store.cases.c.deadline_date < today,
                        store.cases.c.state.in_(open_states),
                    )
                    .limit(limit)
                ).scalars()
            )
        marked = 0

        def change(session: Session, draft: Draft) -> bool:
            nonlocal marked
            case = draft.case
            if case.deadline_breached or case.state in FINAL:
                return False
            case.deadline_breached = True
            waiting = dict.fromkeys(s.department_code for s in case.steps if s.state in OPEN_STEP)
            draft.events.append(
                (
                    events_pb2.DeadlineBreached(
                        case_id=case.case_id,
                        case_type=case.case_type,
                        applicant_subject_id=case.applicant_subject_id,
                        state=case.state,
                        waiting_department_codes=list(waiting),
                        deadline_date=case.deadline_date,
                        deadline_working_days=case.deadline_working_days,
                        submitted_at=case.submitted_at,
                        detected_at=timestamp(draft.now),
                    ),
                    case.applicant_subject_id,
                )
            )
            marked += 1
            return True

        for case_id in late:
            self._change(case_id, change)
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
        self._check_department(caller, department)
        states = list(request.states) or [pb.REVIEW_TASK_STATE_OPEN]
        names = []
        for state in states:
            if state not in TASK_STATE_NAMES:
                raise InvalidArgument("states", "UNKNOWN", f"{state} is not a review task state")
            names.append(TASK_STATE_NAMES[state])
        size = paging.page_size(request.page_size)
        table = store.review_tasks
        query = sa.select(table.c.created_at, table.c.task_id, table.c.document).where(
            table.c.department_code == department, table.c.state.in_(names)
        )
        if request.page_token:
            at, last_id = paging.decode_token(request.page_token)
            query = query.where(
                sa.or_(table.c.created_at > at, sa.and_(table.c.created_at == at, table.c.task_id > last_id))
            )
        query = query.order_by(table.c.created_at, table.c.task_id).limit(size + 1)
        with self.db.read() as session:
            rows = session.execute(query).all()
        response = pb.ListReviewTasksResponse(tasks=[pb.ReviewTask.FromString(r.document) for r in rows[:size]])
        if len(rows) > size:
            last = rows[size - 1]
            response.next_page_token = paging.encode_token(as_utc(last.created_at), last.task_id)
        return response

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
        with self.db.read() as session:
            row = session.execute(
                sa.select(store.review_tasks).where(store.review_tasks.c.task_id == request.task_id)
            ).first()
        if row is None:
            raise NotFound(f"task_id: no review task {request.task_id!r}")
        self._check_department(caller, row.department_code)
        result: dict[str, pb.ReviewTask] = {}

        def change(session: Session, draft: Draft) -> bool:
            stored = session.execute(
                sa.select(store.review_tasks.c.document).where(store.review_tasks.c.task_id == request.task_id)
            ).scalar_one()
            task = pb.ReviewTask.FromString(stored)
            result["task"] = task
            if task.state == pb.REVIEW_TASK_STATE_COMPLETED:
                if task.decision == request.decision:
                    return False
                raise FailedPrecondition("task_id: the task was already decided otherwise")
            if task.state == pb.REVIEW_TASK_STATE_CANCELLED:
                raise FailedPrecondition("task_id: the case was cancelled; the task is closed")
            task.state = pb.REVIEW_TASK_STATE_COMPLETED
            task.decision = request.decision
            task.note = note
            task.official_id = caller.caller_id
            task.completed_at.CopyFrom(timestamp(draft.now))
            session.execute(
                store.review_tasks.update()
                .where(store.review_tasks.c.task_id == task.task_id)
                .values(state="completed", document=task.SerializeToString())
            )
            case = draft.case
            step = next(s for s in case.steps if s.review_task_id == task.task_id)
            approved = request.decision == pb.REVIEW_DECISION_APPROVE
            step.state = pb.CASE_STEP_STATE_SUCCEEDED if approved else pb.CASE_STEP_STATE_FAILED
            verdict_zh, verdict_en = ("同意", "approved") if approved else ("不同意", "rejected")
            step.message_zh = f"审核{verdict_zh}（{caller.caller_id}）" + (f"：{note}" if note else "")
            step.message_en = f"Review {verdict_en} by {caller.caller_id}" + (f": {note}" if note else "")
            draft.step_ended(step)
            if case.state == pb.CASE_STATE_IN_REVIEW:
                draft.transition(pb.CASE_STATE_IN_PROGRESS, caller.caller_id, f"review {verdict_en}")
            spec = self.spec_for(case)
            if approved and spec is not None and self._open_review(session, draft, spec):
                return True
            self._conclude(draft, approved=approved, failed=[], official=caller.caller_id, note=note)
            return True

        case = self._change(row.case_id, change)
        return result["task"], case

    # ----------------------------------------------------------------------------------------
    # Cancellation

    def cancel(self, request: pb.CancelCaseRequest, caller: Caller) -> tuple[pb.Case, bool]:
        """The case, and whether this call cancelled it (False: it was cancelled before)."""
        texts.checked_text(request.case_id, "case_id", 36, required=True)
        reason = request.reason.strip()
        texts.checked_text(reason, "reason", MAX_TEXT)
        cancelled_now = False

        def change(session: Session, draft: Draft) -> bool:
            nonlocal cancelled_now
            case = draft.case
            if "*" not in caller.rights and caller.caller_id != self._submitter(case.case_id):
                raise PermissionDenied("case_id: only the caller that submitted the case may cancel it")
            if case.state == pb.CASE_STATE_CANCELLED:
                return False
            if case.state in FINAL:
                raise FailedPrecondition(f"case_id: the case was already decided ({STATE_NAMES[case.state]})")
            # CaseCancelled first: the steps it ends and the compensation follow it.
            draft.events.append(
                (
                    events_pb2.CaseCancelled(
                        case_id=case.case_id,
                        case_type=case.case_type,
                        applicant_subject_id=case.applicant_subject_id,
                        applicant_masked_identifier=case.applicant_masked_identifier,
                        previous_state=case.state,
                        reason=reason,
                        cancelled_by=caller.caller_id,
                        cancelled_at=timestamp(draft.now),
                    ),
                    case.applicant_subject_id,
                )
            )
            for step in case.steps:
                if step.state in OPEN_STEP:
                    step.state = pb.CASE_STEP_STATE_SKIPPED
                    step.message_zh = "案件已撤回，此步骤不再进行"
                    step.message_en = "not needed: the case was cancelled"
                    draft.step_ended(step)
            self._compensate(session, draft)
            draft.transition(pb.CASE_STATE_CANCELLED, caller.caller_id, reason or "cancelled")
            cancelled_now = True
            return True

        return self._change(request.case_id, change), cancelled_now

    def _compensate(self, session: Session, draft: Draft) -> None:
        """Release what the case holds: its open review tasks are withdrawn from the
        departments' queues, so no official decides a withdrawn case, and the values it held
        (e.g. a property unit) are free for another case."""
        case = draft.case
        held = session.execute(
            sa.select(store.case_holds.c.resource).where(store.case_holds.c.case_id == case.case_id)
        ).scalars()
        for resource in sorted(held):
            name = resource.split("=", 1)[0]
            draft.compensated(
                pb.CaseStep(
                    step_id=f"compensation:hold:{name}",
                    message_zh=f"已释放本案占用的 {resource}，其他案件可以办理",
                    message_en=f"Released {resource}, which this case held: another case may take it",
                )
            )
        session.execute(store.case_holds.delete().where(store.case_holds.c.case_id == case.case_id))
        rows = session.execute(
            sa.select(store.review_tasks.c.task_id, store.review_tasks.c.document).where(
                store.review_tasks.c.case_id == case.case_id, store.review_tasks.c.state == "open"
            )
        ).all()
        for row in rows:
            task = pb.ReviewTask.FromString(row.document)
            task.state = pb.REVIEW_TASK_STATE_CANCELLED
            task.completed_at.CopyFrom(timestamp(draft.now))
            session.execute(
                store.review_tasks.update()
                .where(store.review_tasks.c.task_id == row.task_id)
                .values(state="cancelled", document=task.SerializeToString())
            )
            draft.compensated(
                pb.CaseStep(
                    step_id=f"compensation:review_task:{task.task_id}",
                    department_code=task.department_code,
                    review_task_id=task.task_id,
                    message_zh=f"已从{self._department_name(task.department_code, 'zh')}的审核队列撤回审核任务",
                    message_en=f"Review task withdrawn from {self._department_name(task.department_code, 'en')}",
                )
            )


TASK_STATE_NAMES = {
    pb.REVIEW_TASK_STATE_OPEN: "open",
    pb.REVIEW_TASK_STATE_COMPLETED: "completed",
    pb.REVIEW_TASK_STATE_CANCELLED: "cancelled",
}


PARAMETER_TYPES = {kind: pb.ParameterType.Value(f"PARAMETER_TYPE_{kind.name}") for kind in ParameterType}


def case_type_to_proto(spec: CaseTypeSpec) -> pb.CaseType:
    return pb.CaseType(
        code=spec.code,
        version=spec.version,
        name_zh=spec.name_zh,
        name_en=spec.name_en,
        applicant_kind=KIND_OF_APPLICANT[spec.applicant_kind],
        parameters=[
            pb.ParameterSpec(
                name=p.name,
                type=PARAMETER_TYPES[p.type],
                required=p.required,
                description_zh=p.description_zh,
                description_en=p.description_en,
            )
            for p in spec.parameters
        ],
        proofs=[
            pb.RequiredProof(
                proof_type=p.proof_type,
                department_code=p.department_code,
                subject=p.subject,
                parameters=dict(p.parameters),
            )
            for p in spec.proofs
        ],
        rules=[
            pb.RuleSpec(
                rule_id=r.rule_id,
                department_code=r.department_code,
                description_zh=r.description_zh,
                description_en=r.description_en,
            )
            for r in spec.rules
        ],
        sign_off_department_codes=list(spec.sign_off_department_codes),
        review_steps=[
            pb.ReviewStepSpec(
                department_code=r.department_code, instructions_zh=r.instructions_zh, instructions_en=r.instructions_en
            )
            for r in spec.review_steps
        ],
        deadline_working_days=spec.deadline_working_days,
        held_parameters=list(spec.holds),
    )


def check_rights(case_types: Mapping[str, CaseTypeSpec], policy: Policy) -> None:
    """Every proof a case type needs must be one approvals may pull for a case: otherwise its
    cases could never be decided, and each attempt would be a refusal on a citizen's trail."""
    caller = policy.callers.get("approvals")
    missing = sorted(
        f"{spec.code} needs {proof.proof_type}"
        for spec in case_types.values()
        for proof in spec.proofs
        if caller is None or not caller.may_read_proof(proof.proof_type, "case_id", "")
    )
    if missing:
        raise StartupError(
            "the rights policy does not let approvals pull these proofs for cases (give the caller "
            f"'approvals' proofs: {{<type>: [case]}}): {'; '.join(missing)}"
        )


def saga_settings() -> SagaSettings:
    return SagaSettings(
        retry_base=datetime.timedelta(seconds=config.env_seconds("APPROVALS_RETRY_SECONDS", 2)),
        stall_after=datetime.timedelta(seconds=config.env_seconds("APPROVALS_STALL_SECONDS", 30)),
    )


def case_types_dir() -> Path:
    return config.env_path("APPROVALS_CASE_TYPES_DIR", config.ROOT / "services" / "approvals" / "case_types")


def build(
    db: Database,
    proof_types: records_pb2.ListProofTypesResponse,
    departments: records_pb2.ListDepartmentsResponse,
    on_events: Callable[[Sequence[Message]], None] = lambda events: None,
) -> ApprovalsApp:
    """The use cases over the case type files, checked against records' catalogue as records
    describes it (ListProofTypes, ListDepartments). A malformed file is a StartupError naming the
    file and line."""
    catalogue = {
        p.code: ProofTypeInfo(
            claim_names=frozenset(p.claim_names),
            parameter_names=frozenset(parameter.name for parameter in p.parameters),
            department_codes=frozenset(p.department_codes),
            subject_kinds=frozenset(SUBJECT_KIND_NAMES[k] for k in p.subject_kinds if k in SUBJECT_KIND_NAMES),
        )
        for p in proof_types.proof_types
    }
    known = {d.code: Department(d.code, d.name_zh, d.name_en) for d in departments.departments}
    try:
        specs = load_case_types(case_types_dir(), catalogue, frozenset(known))
    except CaseTypeError as exc:
        raise StartupError(f"case type file {exc}") from None
    return ApprovalsApp(db, specs, known, saga_settings(), catalogue=catalogue, on_events=on_events)


SUBJECT_KIND_NAMES = {kind: name.value for name, kind in KIND_OF_APPLICANT.items()}
IDENTIFIER_OF_KIND = {
    "resident": "a resident identity number",
    "enterprise": "an enterprise's unified social credit code",
}
