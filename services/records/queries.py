"""Records' read side: the signing keys, a subject's page of the audit trail, and the walk that
verifies the whole trail."""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from govmesh import clock
from govmesh.db import Database
from services.records import signing, store
from services.records.domain import audit
from services.records.repository import audit_entry

#: Entries read per round trip while the trail is walked.
WALK_BATCH = 1000


def signing_keys(db: Database) -> dict[str, signing.PublicKey]:
    table = store.signing_keys
    with db.read() as session:
        rows = session.execute(sa.select(table).order_by(table.c.active_from)).all()
    return {
        row.key_id: signing.PublicKey(
            row.key_id,
            Ed25519PublicKey.from_public_bytes(row.public_key),
            signing.STATUSES[row.status],
            clock.as_utc(row.active_from),
            clock.as_utc(row.active_until),
        )
        for row in rows
    }


def accesses(
    db: Database,
    subject_id: str,
    limit: int,
    before: int | None = None,
    start: datetime.datetime | None = None,
    end: datetime.datetime | None = None,
) -> list[audit.Entry]:
    """A subject's entries, newest first: at most ``limit``, older than sequence ``before``, accessed
    in [start, end)."""
    table = store.audit_entries
    query = sa.select(table).where(table.c.subject_id == subject_id)
    if before is not None:
        query = query.where(table.c.sequence < before)
    if start is not None:
        query = query.where(table.c.accessed_at >= start)
    if end is not None:
        query = query.where(table.c.accessed_at < end)
    with db.read() as session:
        rows = session.execute(query.order_by(table.c.sequence.desc()).limit(limit)).all()
    return [audit_entry(row) for row in rows]


def verify_audit_trail(db: Database) -> audit.Verification:
    """Walks the whole trail in order, then holds its end against the head."""
    table = store.audit_entries
    with db.read() as session:

        def entries() -> Iterator[audit.Entry]:
            for row in session.execute(sa.select(table).order_by(table.c.sequence)).yield_per(WALK_BATCH):
                yield audit_entry(row)

        def hash_exists(entry_hash: bytes) -> bool:
            found = session.execute(sa.select(table.c.sequence).where(table.c.entry_hash == entry_hash).limit(1))
            return found.first() is not None

        verification = audit.verify(entries(), hash_exists)
        head = session.execute(sa.select(store.audit_head).where(store.audit_head.c.id == 1)).one()
    return audit.against_head(verification, head.sequence, head.entry_hash)
