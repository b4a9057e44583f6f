"""Identity's rows and subjects: a subject row to the domain's Subject, and the one write."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from govmesh import clock
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


def add(session: Session, subject: domain.Subject, normalized_identifier: str) -> None:
    """Inserts the subject; IntegrityError when the identifier is registered already."""
    session.execute(
        store.subjects.insert().values(
            subject_id=subject.subject_id,
            kind=subject.kind.value,
            identifier=normalized_identifier,
            masked_identifier=subject.masked_identifier,
            display_name=subject.display_name,
            created_at=subject.created_at,
        )
    )
