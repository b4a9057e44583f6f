"""Identity's rows and subjects: a subject row to the domain's Subject, and the one write."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from govmesh import clock
from govmesh.db import insert_new
from services.identity import domain, store


def to_subject(row: sa.Row[tuple[object, ...]]) -> domain.Subject:
    m = row._mapping
    return domain.Subject(
        subject_id=m["subject_id"],
        kind=domain.IdentifierKind(m["kind"]),
        masked_identifier=m["masked_identifier"],
        display_name=m["display_name"],
        created_at=clock.as_utc(m["created_at"]),
    )


def add_new(session: Session, subjects: Sequence[tuple[domain.Subject, str]]) -> set[str]:
    """Inserts each (subject, normalized identifier) not registered yet, in one statement, and
    returns the subject ids it inserted; a registered one is left as it is. Rows go in subject id
    order: two batches meeting on the same new people then wait for each other's rows in one
    order, never in a cycle (PostgreSQL would abort one of them as a deadlock)."""
    if not subjects:
        return set()
    rows = [
        {
            "subject_id": subject.subject_id,
            "kind": subject.kind.value,
            "identifier": normalized,
            "masked_identifier": subject.masked_identifier,
            "display_name": subject.display_name,
            "created_at": subject.created_at,
        }
        for subject, normalized in sorted(subjects, key=lambda pair: pair[0].subject_id)
    ]
    # Rows as executemany parameters, not as the statement's VALUES: the statement is then
    # compiled once per process (compiling 6,000 bound values took a fifth of a batch's time),
    # and SQLAlchemy still sends the rows as one multi-row INSERT (its "insertmanyvalues").
    statement = insert_new(session, store.subjects).returning(store.subjects.c.subject_id)
    return set(session.scalars(statement, rows))


def subjects(session: Session, subject_ids: Collection[str]) -> dict[str, domain.Subject]:
    """The registered subjects among ``subject_ids``, by id, in one query."""
    if not subject_ids:
        return {}
    rows = session.execute(sa.select(store.subjects).where(store.subjects.c.subject_id.in_(subject_ids)))
    return {row.subject_id: to_subject(row) for row in rows}
