"""Records' rows and domain objects: department records, issued proofs, signing keys and the
audit trail's entries, and the row lock that orders the trail (its head)."""

from __future__ import annotations

import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from govmesh import clock
from govmesh import typed_values as values
from services.records import store
from services.records.domain import audit, proofs
from services.records.domain.feed import Checked, StoredVersion

#: Keys per IN list when looking many records up at once.
CHUNK = 500

# -- department records ---------------------------------------------------------------------------


def stored_references(session: Session, keys: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (department, source reference) pairs are stored already."""
    table = store.records
    found: set[tuple[str, str]] = set()
    ordered = sorted(keys)
    for start in range(0, len(ordered), CHUNK):
        chunk = ordered[start : start + CHUNK]
        rows = session.execute(
            sa.select(table.c.department_code, table.c.source_reference).where(
                sa.tuple_(table.c.department_code, table.c.source_reference).in_(chunk)
            )
        )
        found.update((row.department_code, row.source_reference) for row in rows)
    return found


def is_stored(session: Session, department: str, reference: str) -> bool:
    table = store.records
    row = session.execute(
        sa.select(table.c.record_id).where(table.c.department_code == department, table.c.source_reference == reference)
    ).first()
    return row is not None


def stored_version(session: Session, department: str, reference: str) -> StoredVersion | None:
    table = store.records
    row = session.execute(
        sa.select(table.c.record_id, table.c.subject_id, table.c.record_type, table.c.superseded_by).where(
            table.c.department_code == department, table.c.source_reference == reference
        )
    ).first()
    if row is None:
        return None
    return StoredVersion(str(row.record_id), row.subject_id, row.record_type, row.superseded_by)


def record_row(
    record_id: str, item: Checked, subject_kind: str, supersedes: str | None, channel: str, now: datetime.datetime
) -> dict[str, object]:
    subject = item.subject
    assert subject is not None
    return {
        "record_id": record_id,
        "department_code": item.department,
        "record_type": item.spec.code,
        "source_reference": item.reference,
        "subject_id": subject.subject_id,
        "subject_masked_identifier": subject.masked_identifier,
        "subject_kind": subject_kind,
        "fields": values.fields_to_json(item.fields),
        "effective_from": item.effective_from,
        "effective_to": item.effective_to,
        "recorded_at": item.recorded_at or now,
        "supersedes_record_id": supersedes,
        "superseded_by": None,
        "channel": channel,
        "stored_at": now,
    }


def add_records(session: Session, rows: list[dict[str, object]], superseded: list[tuple[str, str]]) -> None:
    """Inserts the rows, then links each replaced record to its correction (old, new)."""
    session.execute(store.records.insert(), rows)
    for old, new in superseded:
        session.execute(store.records.update().where(store.records.c.record_id == old).values(superseded_by=new))


def subject_records(
    session: Session, subject_id: str, record_types: tuple[tuple[str, str], ...]
) -> list[proofs.StoredRecord]:
    """A subject's records of the given (department, record type) pairs."""
    table = store.records
    rows = session.execute(
        sa.select(table).where(
            table.c.subject_id == subject_id,
            sa.tuple_(table.c.department_code, table.c.record_type).in_(list(record_types)),
        )
    ).all()
    return [
        proofs.StoredRecord(
            record_id=row.record_id,
            department_code=row.department_code,
            record_type=row.record_type,
            source_reference=row.source_reference,
            fields=values.fields_from_json(row.fields),
            effective_from=row.effective_from,
            effective_to=row.effective_to,
            recorded_at=clock.as_utc(row.recorded_at),
            superseded=row.superseded_by is not None,
        )
        for row in rows
    ]


# -- issued proofs --------------------------------------------------------------------------------


def issued_proof(session: Session, request_key: str) -> tuple[str, bytes] | None:
    """The fingerprint and the serialised proof issued under a request key, if any."""
    table = store.issued_proofs
    row = session.execute(
        sa.select(table.c.request_fingerprint, table.c.proof).where(table.c.request_key == request_key)
    ).first()
    return None if row is None else (row.request_fingerprint, bytes(row.proof))


def add_issued_proof(
    session: Session,
    proof_id: str,
    request_key: str | None,
    fingerprint: str,
    proof: bytes,
    issued_at: datetime.datetime,
) -> None:
    session.execute(
        store.issued_proofs.insert().values(
            proof_id=proof_id,
            request_key=request_key,
            request_fingerprint=fingerprint,
            proof=proof,
            issued_at=issued_at,
        )
    )


# -- signing keys ---------------------------------------------------------------------------------


def add_signing_key(session: Session, key_id: str, public_key: bytes, active_from: datetime.datetime) -> None:
    """Records an active key unless it is recorded already."""
    table = store.signing_keys
    if session.execute(sa.select(table.c.key_id).where(table.c.key_id == key_id)).first() is None:
        session.execute(
            table.insert().values(key_id=key_id, public_key=public_key, status="active", active_from=active_from)
        )


# -- the audit trail ------------------------------------------------------------------------------


def lock_audit_head(session: Session) -> tuple[int, bytes]:
    """The trail's head (last sequence, last hash), locked until the transaction ends: appending
    takes it, so entries get consecutive sequences."""
    head = session.execute(sa.select(store.audit_head).where(store.audit_head.c.id == 1).with_for_update()).one()
    return int(head.sequence), bytes(head.entry_hash)


def append_audit_entry(session: Session, entry: audit.Entry) -> None:
    """Stores the entry and moves the head to it (the head must be locked)."""
    session.execute(store.audit_entries.insert().values(**{**entry.__dict__, "outcome": entry.outcome.value}))
    session.execute(
        store.audit_head.update()
        .where(store.audit_head.c.id == 1)
        .values(sequence=entry.sequence, entry_hash=entry.entry_hash)
    )


def audit_entry(row: sa.Row[tuple[object, ...]]) -> audit.Entry:
    m = row._mapping
    return audit.Entry(
        **{**dict(m), "accessed_at": clock.as_utc(m["accessed_at"]), "outcome": audit.Outcome(m["outcome"])}
    )
