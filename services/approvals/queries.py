"""Approvals' read side: a case and who submitted it, lists of cases and review tasks, the
revisions a watcher has not seen, and the cases past their deadline."""

from __future__ import annotations

import datetime
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from govmesh import paging
from govmesh.approvals.v1 import approvals_pb2 as pb
from govmesh.clock import as_utc
from govmesh.db import Database
from govmesh.errors import InvalidArgument
from services.approvals import store
from services.approvals.domain.saga import FINAL
from services.approvals.repository import STATE_NAMES, TASK_STATE_NAMES


@dataclass(frozen=True)
class StoredCase:
    case: pb.Case
    #: The caller that submitted it (e.g. the portal): it may read and cancel the case.
    submitted_by: str


def find(db: Database, case_id: str) -> StoredCase | None:
    with db.read() as session:
        row = session.execute(
            sa.select(store.cases.c.document, store.cases.c.submitted_by).where(store.cases.c.case_id == case_id)
        ).first()
    return None if row is None else StoredCase(pb.Case.FromString(row.document), row.submitted_by)


def list_cases(
    db: Database,
    request: pb.ListCasesRequest,
    *,
    submitted_by: str | None,
    applicant_subject_id: str | None,
    case_types: Collection[str],
) -> pb.ListCasesResponse:
    """Cases newest first, of one submitter (None: anyone's) and applicant (None: any), filtered
    by the request's case type and states (INVALID_ARGUMENT naming an unknown one)."""
    size = paging.page_size(request.page_size)
    table = store.cases
    query = sa.select(table.c.submitted_at, table.c.case_id, table.c.document)
    if submitted_by is not None:
        query = query.where(table.c.submitted_by == submitted_by)
    if applicant_subject_id is not None:
        query = query.where(table.c.applicant_subject_id == applicant_subject_id)
    if request.case_type:
        if request.case_type not in case_types:
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
    with db.read() as session:
        rows = session.execute(query).all()
    return pb.ListCasesResponse(
        cases=[pb.Case.FromString(row.document) for row in rows[:size]], next_page_token=_next_page(rows, size)
    )


def latest_revisions(db: Database, case_ids: list[str] | None) -> dict[str, int]:
    """Each case's latest revision (what WatchCase's feed polls for every watched case at once);
    every case when ``case_ids`` is None."""
    table = store.cases
    query = sa.select(table.c.case_id, table.c.revision)
    if case_ids is not None:
        query = query.where(table.c.case_id.in_(case_ids))
    with db.read() as session:
        return {row.case_id: int(row.revision) for row in session.execute(query)}


def revisions_after(db: Database, case_id: str, seen: int) -> list[pb.Case]:
    """The case's revisions after ``seen``, in order."""
    table = store.case_revisions
    with db.read() as session:
        documents = session.execute(
            sa.select(table.c.document)
            .where(table.c.case_id == case_id, table.c.revision > seen)
            .order_by(table.c.revision)
        ).scalars()
        return [pb.Case.FromString(document) for document in documents]


def list_review_tasks(db: Database, department: str, request: pb.ListReviewTasksRequest) -> pb.ListReviewTasksResponse:
    """A department's review tasks, oldest first, in the request's states (open by default)."""
    names = []
    for state in list(request.states) or [pb.REVIEW_TASK_STATE_OPEN]:
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
    with db.read() as session:
        rows = session.execute(query).all()
    return pb.ListReviewTasksResponse(
        tasks=[pb.ReviewTask.FromString(r.document) for r in rows[:size]], next_page_token=_next_page(rows, size)
    )


def _next_page(rows: Sequence[sa.Row[Any, Any, Any]], size: int) -> str:
    """The token of the page after ``size`` rows, when one more row was read; "" otherwise. Rows
    are selected (time, id, ...), the key a page token holds."""
    if len(rows) <= size:
        return ""
    last = rows[size - 1]
    return paging.encode_token(as_utc(last[0]), last[1])


@dataclass(frozen=True)
class TaskOwner:
    case_id: str
    department_code: str


def task_owner(db: Database, task_id: str) -> TaskOwner | None:
    table = store.review_tasks
    with db.read() as session:
        row = session.execute(
            sa.select(table.c.case_id, table.c.department_code).where(table.c.task_id == task_id)
        ).first()
    return None if row is None else TaskOwner(row.case_id, row.department_code)


def late_cases(db: Database, today: datetime.date, limit: int) -> list[str]:
    """Undecided cases past their deadline (``today`` in Asia/Shanghai) not yet marked so."""
    table = store.cases
    open_states = [name for state, name in STATE_NAMES.items() if state not in FINAL]
    with db.read() as session:
        return list(
            session.execute(
                sa.select(table.c.case_id)
                .where(
                    table.c.deadline_breached.is_(False),
                    table.c.deadline_date < today,
                    table.c.state.in_(open_states),
                )
                .limit(limit)
            ).scalars()
        )
