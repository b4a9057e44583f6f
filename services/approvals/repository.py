"""Approvals' rows to domain objects and back: the case row (its document, lock and schedule),
its revisions, holds, kept claims and review tasks, and the case types' stored versions."""

from __future__ import annotations

import datetime
import functools
import json
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
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
        #: A new case's row and holds (add).
        self._added: dict[str, object] | None = None
        self._holds: list[dict[str, object]] = []

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
        self._case_id = case.case_id
        self._added = {
            "case_id": case.case_id,
            "request_key": request.key,
            "request_fingerprint": request.fingerprint,
            "submitted_by": submitted_by,
            "case_type": case.case_type,
            "applicant_subject_id": case.applicant_subject_id,
            "state": STATE_NAMES[case.state],
            "submitted_at": now,
            "deadline_date": datetime.date.fromisoformat(case.deadline_date),
            "deadline_breached": False,
            "next_attempt_at": next_look,
            "revision": case.revision,
            "subjects": json.dumps(dict(subjects), sort_keys=True),
            "document": case.SerializeToString(),
        }
        self._keep_revision(case, now)
        self._holds = [{"resource": resource, "case_id": case.case_id, "held_since": now} for resource in holds]

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
        claims: list[dict[str, object]] = [
            {
                "case_id": self._case_id,
                "step_id": step_id,
                "proof_id": kept.proof_id,
                "claims": typed_values.fields_to_json(kept.values),
            }
            for step_id, kept in self._claims.items()
        ]
        writes = _Writes(
            self._case_id, self._added, self._holds, self._values, self._revisions, claims, self._release, outbox_rows
        )
        self._added, self._holds, self._values, self._revisions = None, [], {}, []
        self._claims, self._release = {}, False
        if writes.empty:
            return
        if isinstance(self.session, sa.Connection):
            bind: sa.Connection | sa.Engine = self.session
        else:
            bind = self.session.get_bind()
        if bind.dialect.name == "postgresql":
            connection = self.session if isinstance(self.session, sa.Connection) else self.session.connection()
            connection.exec_driver_sql(_together(writes.shape), writes.parameters())
            return
        for statement, rows in writes.statements():
            self.session.execute(statement, rows)

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


@dataclass(frozen=True)
class _Shape:
    """What a flush writes, as far as its statement's text depends on it."""

    adds: bool
    holds: int
    sets: tuple[str, ...]
    revisions: int
    claims: int
    release: bool
    events: tuple[str, ...] | None
    outbox: int


@dataclass(frozen=True)
class _Writes:
    """A flush's rows: a new case and its holds, the case row's new values, its revisions and
    claims, whether it released its holds and claims, and the events' outbox rows."""

    case_id: str
    added: Mapping[str, object] | None
    holds: list[dict[str, object]]
    values: Mapping[str, object]
    revisions: list[dict[str, object]]
    claims: list[dict[str, object]]
    release: bool
    outbox: list[dict[str, object]]

    @property
    def empty(self) -> bool:
        return not (self.added or self.holds or self.values or self.revisions or self.claims or self.outbox)

    @property
    def shape(self) -> _Shape:
        return _Shape(
            self.added is not None,
            len(self.holds),
            tuple(self.values),
            len(self.revisions),
            len(self.claims),
            self.release,
            tuple(self.outbox[0]) if self.outbox else None,
            len(self.outbox),
        )

    def parameters(self) -> dict[str, object]:
        """The bound values of the statement ``_together`` makes for the shape."""
        bound: dict[str, object] = {"case_id": self.case_id}
        bound |= {f"new_{name}": value for name, value in (self.added or {}).items()}
        bound |= {f"set_{name}": value for name, value in self.values.items()}
        listed = (("hold", self.holds), ("rev", self.revisions), ("claim", self.claims), ("event", self.outbox))
        for prefix, rows in listed:
            bound |= {f"{prefix}{n}_{name}": value for n, row in enumerate(rows) for name, value in row.items()}
        return bound

    def statements(self) -> Iterator[tuple[sa.Executable, list[dict[str, object]] | None]]:
        """The writes one statement at a time, in order (SQLite)."""
        if self.added is not None:
            yield store.cases.insert(), [dict(self.added)]
        for table, rows in ((store.case_holds, self.holds), (store.case_revisions, self.revisions)):
            if rows:
                yield table.insert(), rows
        if self.values:
            yield store.cases.update().where(store.cases.c.case_id == self.case_id).values(dict(self.values)), None
        if self.claims:
            yield store.case_claims.insert(), self.claims
        if self.release:
            yield store.case_holds.delete().where(store.case_holds.c.case_id == self.case_id), None
            yield store.case_claims.delete().where(store.case_claims.c.case_id == self.case_id), None
        if self.outbox:
            yield store.outbox.insert(), self.outbox


def _rows(table: sa.Table, prefix: str, count: int, columns: Iterable[str] | None = None) -> sa.Insert:
    names = [c.name for c in table.c] if columns is None else list(columns)
    rows: list[dict[str, Any]] = [{name: sa.bindparam(f"{prefix}{n}_{name}") for name in names} for n in range(count)]
    return sa.insert(table).values(rows)


@functools.cache
def _together(shape: _Shape) -> str:
    """A flush's writes as ONE PostgreSQL statement, compiled once per shape for psycopg: each
    write a data-modifying CTE (all run, to completion, in the statement's transaction, and see
    the snapshot from before it: Cases never lets two of them touch one row), the events as the
    rows of one VALUES list, in order. SQLAlchemy would compile a VALUES of several rows at every
    call (such a statement has no cache key): that was a seventh of the worker's CPU."""
    case_id: sa.BindParameter[str] = sa.bindparam("case_id")
    writes: list[sa.Insert | sa.Update | sa.Delete] = []
    if shape.adds:
        writes.append(sa.insert(store.cases).values({c.name: sa.bindparam(f"new_{c.name}") for c in store.cases.c}))
    if shape.holds:
        writes.append(_rows(store.case_holds, "hold", shape.holds))
    if shape.sets:
        values: dict[str, Any] = {name: sa.bindparam(f"set_{name}") for name in shape.sets}
        writes.append(store.cases.update().where(store.cases.c.case_id == case_id).values(values))
    if shape.revisions:
        writes.append(_rows(store.case_revisions, "rev", shape.revisions))
    if shape.claims:
        writes.append(_rows(store.case_claims, "claim", shape.claims))
    if shape.release:
        writes.append(store.case_holds.delete().where(store.case_holds.c.case_id == case_id))
        writes.append(store.case_claims.delete().where(store.case_claims.c.case_id == case_id))
    if shape.outbox:
        writes.append(_rows(store.outbox, "event", shape.outbox, shape.events))
    statement: sa.Select[Any] = sa.select(sa.literal_column("1"))
    for n, write in enumerate(writes):
        statement = statement.add_cte(write.cte(f"write{n}"))
    return str(statement.compile(dialect=psycopg_dialect()))  # type: ignore[no-untyped-call]


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
    # Most ticks find nothing: look first, so an idle timer never takes the write lock. Ordered by
    # the due time, as the claim is, so the look reads ix_cases_due whatever PostgreSQL's statistics
    # say: unordered, statistics taken before the cases came (1 in 3 due, by default) made it a
    # scan of every case each second (60 ms at 12,000 cases, and growing with every case decided).
    look = sa.select(table.c.case_id).where(table.c.next_attempt_at <= now).order_by(table.c.next_attempt_at)
    with db.read() as session:
        if session.execute(look.limit(1)).first() is None:
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
