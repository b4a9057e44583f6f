"""Approvals' rows to domain objects and back: the case row (its document, lock and schedule),
its revisions, holds, kept claims and review tasks, and the case types' stored versions."""

from __future__ import annotations

import datetime
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

import sqlalchemy as sa
from sqlalchemy.orm import Session

from govmesh import typed_values
from govmesh.approvals.v1 import approvals_pb2 as pb
from govmesh.db import Database
from govmesh.errors import NotFound
from govmesh.idempotency import IdempotentRequest
from services.approvals import store
from services.approvals.domain.casetypes import CaseTypeError, CaseTypeSpec, ProofTypeInfo, parse_case_type
from services.approvals.domain.saga import FINAL, Change, Claims, Keep

#: A case's state as its row stores it ("submitted", "in_review", ...).
STATE_NAMES: Final = {
    value: pb.CaseState.Name(value).removeprefix("CASE_STATE_").lower() for value in pb.CaseState.values()
}
TASK_STATE_NAMES: Final = {
    pb.REVIEW_TASK_STATE_OPEN: "open",
    pb.REVIEW_TASK_STATE_COMPLETED: "completed",
    pb.REVIEW_TASK_STATE_CANCELLED: "cancelled",
}


class Cases:
    """The cases as one transaction sees them. A case is one aggregate: ``lock`` reads its row
    for update, and every change to it and its other rows is written under that lock.

    Writes wait in the unit until ``flush`` (the end of the use case), which sends them with the
    events' outbox rows: on PostgreSQL in ONE statement (data-modifying CTEs), so a case's
    transaction costs a few round trips rather than one per row and step (issue 13,
    docs/decisions/approvals-fewer-round-trips-per-case.md). What the unit reads back
    (``claims``) includes what waits."""

    def __init__(self, session: Session | sa.Connection) -> None:
        self.session = session
        #: The case row's new values, the steps' revisions, the claims kept (by step id), and
        #: whether the case became final (its holds and stored claims go), waiting for flush.
        self._case_id = ""
        self._values: dict[str, object] = {}
        self._revisions: list[dict[str, object]] = []
        self._claims: dict[str, Claims] = {}
        self._release = False
        self._subjects: dict[str, str] | None = None
        self._added: list[sa.Insert] = []

    def lock(self, case_id: str) -> pb.Case:
        row = self.session.execute(
            sa.select(store.cases.c.document, store.cases.c.subjects)
            .where(store.cases.c.case_id == case_id)
            .with_for_update()
        ).first()
        if row is None:
            raise NotFound(f"case_id: no case {case_id!r}")
        self._case_id = case_id
        self._subjects = json.loads(row.subjects)
        return pb.Case.FromString(row.document)

    def add(
        self,
        case: pb.Case,
        request: IdempotentRequest,
        submitted_by: str,
        subjects: Mapping[str, str],
        holds: Iterable[str],
        next_look: datetime.datetime,
    ) -> None:
        """A new case and the values it holds, written at flush; IntegrityError there when the
        request key or a hold is taken (by a submission that won the race)."""
        now = case.submitted_at.ToDatetime(datetime.UTC)
        self._added.append(
            store.cases.insert().values(
                case_id=case.case_id,
                request_key=request.key,
                request_fingerprint=request.fingerprint,
                submitted_by=submitted_by,
                case_type=case.case_type,
                applicant_subject_id=case.applicant_subject_id,
                state=STATE_NAMES[case.state],
                submitted_at=now,
                deadline_date=datetime.date.fromisoformat(case.deadline_date),
                deadline_breached=False,
                next_attempt_at=next_look,
                revision=case.revision,
                subjects=json.dumps(dict(subjects), sort_keys=True),
                document=case.SerializeToString(),
            )
        )
        self._keep_revision(case, now)
        rows = [{"resource": resource, "case_id": case.case_id, "held_since": now} for resource in holds]
        if rows:
            self._added.append(store.case_holds.insert().values(rows))

    def save(self, change: Change) -> None:
        """The changed case, its new revision, schedule and other rows (at flush; review tasks
        at once). A final case holds nothing (a cancelled one released its holds as
        compensation), and the claims its rules read are not kept: the evidence stays in the case."""
        case = change.case
        self._case_id = case.case_id
        self._values |= {
            "state": STATE_NAMES[case.state],
            "revision": case.revision,
            "deadline_breached": case.deadline_breached,
            "document": case.SerializeToString(),
        }
        if change.next_look is not Keep.SCHEDULE:
            self._values["next_attempt_at"] = change.next_look
        self._keep_revision(case, change.now)
        self._save_claims(case.case_id, change)
        for task in change.tasks_opened:
            self.session.execute(
                store.review_tasks.insert().values(
                    task_id=task.task_id,
                    case_id=task.case_id,
                    department_code=task.department_code,
                    state=TASK_STATE_NAMES[task.state],
                    created_at=change.now,
                    document=task.SerializeToString(),
                )
            )
        for task in change.tasks_updated:
            self.session.execute(
                store.review_tasks.update()
                .where(store.review_tasks.c.task_id == task.task_id)
                .values(state=TASK_STATE_NAMES[task.state], document=task.SerializeToString())
            )
        if case.state in FINAL:
            self._release = True
            self._claims.clear()

    def _save_claims(self, case_id: str, change: Change) -> None:
        claims = store.case_claims
        for step_id in change.claims_dropped:
            # At once (rare: an expired proof drawn again): a row deleted and inserted again in
            # one statement would meet its own primary key.
            self._claims.pop(step_id, None)
            self.session.execute(claims.delete().where(claims.c.case_id == case_id, claims.c.step_id == step_id))
        self._claims |= change.claims_kept

    def _keep_revision(self, case: pb.Case, at: datetime.datetime) -> None:
        """Every revision is kept, as GetCase showed it then: WatchCase streams each change in
        order, and the case's history stays accountable."""
        self._revisions.append(
            {"case_id": case.case_id, "revision": case.revision, "changed_at": at, "document": case.SerializeToString()}
        )

    def flush(self, outbox_rows: list[dict[str, object]]) -> None:
        """Writes what waits, with ``outbox_rows`` (the events' rows, outbox.outbox_rows)."""
        statements: list[sa.Insert | sa.Update | sa.Delete] = list(self._added)
        case_id = self._case_id
        if self._values:
            statements.append(store.cases.update().where(store.cases.c.case_id == case_id).values(self._values))
        if self._revisions:
            statements.append(store.case_revisions.insert().values(self._revisions))
        if self._claims:
            rows = [
                {
                    "case_id": case_id,
                    "step_id": step_id,
                    "proof_id": kept.proof_id,
                    "claims": typed_values.fields_to_json(kept.values),
                }
                for step_id, kept in self._claims.items()
            ]
            statements.append(store.case_claims.insert().values(rows))
        if self._release:
            statements.append(store.case_holds.delete().where(store.case_holds.c.case_id == case_id))
            statements.append(store.case_claims.delete().where(store.case_claims.c.case_id == case_id))
        if outbox_rows:
            statements.append(store.outbox.insert().values(outbox_rows))
        self._added, self._values, self._revisions, self._claims, self._release = [], {}, [], {}, False
        execute_together(self.session, statements)

    def submitter(self, case_id: str) -> str:
        submitter: str = self.session.execute(
            sa.select(store.cases.c.submitted_by).where(store.cases.c.case_id == case_id)
        ).scalar_one()
        return submitter

    def holds(self, case_id: str) -> list[str]:
        """The values (e.g. "property_unit=...") the case holds."""
        return list(
            self.session.execute(
                sa.select(store.case_holds.c.resource).where(store.case_holds.c.case_id == case_id)
            ).scalars()
        )

    def open_tasks(self, case_id: str) -> list[pb.ReviewTask]:
        tasks = store.review_tasks
        documents = self.session.execute(
            sa.select(tasks.c.document).where(tasks.c.case_id == case_id, tasks.c.state == "open")
        ).scalars()
        return [pb.ReviewTask.FromString(document) for document in documents]

    def task(self, task_id: str) -> pb.ReviewTask:
        document = self.session.execute(
            sa.select(store.review_tasks.c.document).where(store.review_tasks.c.task_id == task_id)
        ).scalar_one()
        return pb.ReviewTask.FromString(document)

    def subjects(self, case_id: str) -> dict[str, str]:
        """Whose proofs the case pulls: {"applicant": subject_id, "<identifier parameter>": subject_id}."""
        if self._subjects is not None and case_id == self._case_id:
            return dict(self._subjects)  # read with the lock
        text = self.session.execute(
            sa.select(store.cases.c.subjects).where(store.cases.c.case_id == case_id)
        ).scalar_one()
        found: dict[str, str] = json.loads(text)
        return found

    def claims(self, case_id: str) -> dict[str, Claims]:
        """The claims kept for the case, by proof step id."""
        rows = self.session.execute(sa.select(store.case_claims).where(store.case_claims.c.case_id == case_id)).all()
        stored = {row.step_id: Claims(row.proof_id, typed_values.fields_from_json(row.claims)) for row in rows}
        return stored | (self._claims if case_id == self._case_id else {})


def execute_together(session: Session | sa.Connection, statements: Sequence[sa.Executable]) -> None:
    """``statements`` in order, as if one by one: on PostgreSQL as ONE statement, each a
    data-modifying CTE (they all see the snapshot from before it, so none may touch a row another
    writes: Cases.flush makes them so), one round trip; on SQLite, one after another."""
    if not statements:
        return
    bind = session if isinstance(session, sa.Connection) else session.get_bind()
    if bind.dialect.name != "postgresql" or len(statements) == 1:
        for statement in statements:
            session.execute(statement)
        return
    together = sa.select(sa.literal(1))
    for n, statement in enumerate(statements):
        together = together.add_cte(statement.cte(f"write{n}"))  # type: ignore[attr-defined]
    session.execute(together)


def by_request(db: Database, request: IdempotentRequest) -> pb.Case | None:
    """The case an earlier attempt of ``request`` created; ALREADY_EXISTS naming request_id when
    that attempt asked for something else."""
    with db.read() as session:
        row = session.execute(
            sa.select(store.cases.c.request_fingerprint, store.cases.c.document).where(
                store.cases.c.request_key == request.key
            )
        ).first()
    if row is None:
        return None
    request.replay(row.request_fingerprint, "submission")
    return pb.Case.FromString(row.document)


def holders(db: Database, resources: Collection[str]) -> dict[str, str]:
    """The open case holding each of ``resources`` that one holds."""
    if not resources:
        return {}
    with db.read() as session:
        rows = session.execute(sa.select(store.case_holds).where(store.case_holds.c.resource.in_(list(resources))))
        return {row.resource: row.case_id for row in rows}


def claim_due(db: Database, now: datetime.datetime, lease: datetime.timedelta, limit: int) -> list[str]:
    """Undecided cases whose saga must be driven now, leased to the caller until ``now + lease``
    so that several workers' timers do not all drive the same case."""
    table = store.cases
    # Most ticks find nothing: look first, so an idle timer never takes the write lock.
    with db.read() as session:
        if session.execute(sa.select(table.c.case_id).where(table.c.next_attempt_at <= now).limit(1)).first() is None:
            return []
    with db.transaction() as session:
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
            session.execute(table.update().where(table.c.case_id.in_(due)).values(next_attempt_at=now + lease))
    return due


class CaseTypeVersions:
    """Every version of every case type any process loaded, so a case is decided by the version
    it was submitted under even after its file changed (or while processes run different ones)."""

    def __init__(
        self,
        db: Database,
        loaded: Iterable[CaseTypeSpec],
        catalogue: Mapping[str, ProofTypeInfo],
        departments: Collection[str],
    ) -> None:
        self.db = db
        self.loaded = list(loaded)
        self.catalogue = catalogue
        self.departments = frozenset(departments)
        self._known: dict[tuple[str, str], CaseTypeSpec] = {(s.code, s.version): s for s in self.loaded}
        self._remembered = False

    def remember(self, now: datetime.datetime) -> None:
        """Store the loaded versions (once each). Done at the first submission or saga step, not
        at start: the database may not be migrated yet when the process starts."""
        if self._remembered:
            return
        table = store.case_type_versions
        for spec in self.loaded:
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
                            code=spec.code, version=spec.version, source=spec.source, first_loaded_at=now
                        )
                    )
            except sa.exc.IntegrityError:
                pass  # another process stored the same version at the same moment
        self._remembered = True

    def spec_for(self, case: pb.Case) -> CaseTypeSpec | None:
        """The case type at the version the case was submitted under; None when no process ever
        stored it (or it no longer reads against records' catalogue)."""
        key = (case.case_type, case.case_type_version)
        spec = self._known.get(key)
        if spec is not None:
            return spec
        table = store.case_type_versions
        with self.db.read() as session:
            source = session.execute(
                sa.select(table.c.source).where(table.c.code == key[0], table.c.version == key[1])
            ).scalar_one_or_none()
        if source is None:
            return None
        try:
            spec = parse_case_type(Path(f"stored/{key[1]}/{key[0]}.yaml"), source, self.catalogue, self.departments)
        except CaseTypeError:
            return None
        self._known[key] = spec
        return spec
