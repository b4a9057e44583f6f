"""Identity's read side: a subject by its pseudonymous id (what ResolveSubject and an idempotent
RegisterSubject look up)."""

from __future__ import annotations

import sqlalchemy as sa

from govmesh.db import Database
from services.identity import domain, store
from services.identity.repository import to_subject


def subject(db: Database, subject_id: str) -> domain.Subject | None:
    with db.read() as session:
        row = session.execute(sa.select(store.subjects).where(store.subjects.c.subject_id == subject_id)).first()
    return None if row is None else to_subject(row)
