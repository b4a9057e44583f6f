"""Records' rows and domain objects: department records, issued proofs, signing keys, and the
access log's entries, tree nodes and signed heads, with the lock that keeps one sequencer."""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, TypeAlias

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.orm import Session

from govmesh import clock, keys
from govmesh import typed_values as values
from govmesh.db import execute_on_driver
from services.records import store
from services.records.domain import access_log, proofs
from services.records.domain.feed import Checked, StoredVersion

#: Keys per IN list when looking many records up at once.
CHUNK = 500
#: What the proof path runs its statements on: a Session, or Database.single_write's connection.
Executor: TypeAlias = Session | sa.Connection

# -- department records ---------------------------------------------------------------------------


def stored_references(session: Session, keys: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (department, source reference) pairs are stored already."""
    table = store.records
    rows = _rows_of_pairs(session, table.c.department_code, table.c.source_reference, keys)
    return {(row.department_code, row.source_reference) for row in rows}


def _rows_of_pairs(
    session: Executor,
    first: sa.Column[Any],
    second: sa.Column[Any],
    pairs: Collection[tuple[Any, Any]],
    *more: sa.Column[Any],
) -> Iterator[sa.Row[Any]]:
    """The rows whose (first, second) is one of ``pairs`` (with ``first``, ``second`` and ``more``
    selected): an IN list per value of ``first``, OR-ed 32 at a time, each a search of the index
    on the pair. Never (first, second) IN pairs: SQLite scans the whole table for a row-value IN
    list (200 ms a proof at a million leaves)."""
    by_first: dict[Any, list[Any]] = {}
    for one, other in sorted(pairs):
        by_first.setdefault(one, []).append(other)
    terms = [
        sa.and_(first == one, second.in_(others[start : start + CHUNK]))
        for one, others in by_first.items()
        for start in range(0, len(others), CHUNK)
    ]
    for start in range(0, len(terms), 32):
        yield from session.execute(sa.select(first, second, *more).where(sa.or_(*terms[start : start + 32])))


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


def add_records(session: Session, rows: list[dict[str, object]], superseded: list[tuple[str, str]]) -> bool:
    """Inserts the rows, then links each replaced record to its correction (old, new); False,
    with the link not made, when another correction replaced the record since it was looked up.
    The link is made only while the record is current: a second correction's UPDATE waits for the
    first's transaction and then finds the record replaced, where a plain UPDATE would overwrite
    the first link and leave two current versions."""
    table = store.records
    session.execute(table.insert(), rows)
    for old, new in superseded:
        current = table.c.record_id == old, table.c.superseded_by.is_(None)
        linked = session.execute(table.update().where(*current).values(superseded_by=new))
        assert isinstance(linked, sa.CursorResult)  # an UPDATE's result counts its rows
        if linked.rowcount != 1:
            return False
    return True


# Built once: every proof runs these, and a statement built per call costs more to build and
# look up in SQLAlchemy's cache than to execute.
_SUBJECT_RECORDS = sa.select(store.records).where(
    store.records.c.subject_id == sa.bindparam("subject_id"),
    sa.tuple_(store.records.c.department_code, store.records.c.record_type).in_(sa.bindparam("kinds", expanding=True)),
)
_ADD_ISSUED_PROOF = store.issued_proofs.insert()
_ADD_ACCESS_ENTRY = store.access_entries.insert().returning(store.access_entries.c.entry_id)


def subject_records(
    session: Executor, subject_id: str, record_types: tuple[tuple[str, str], ...]
) -> tuple[list[proofs.StoredRecord], int | None]:
    """A subject's records of the given (department, record type) pairs, and on PostgreSQL the
    number of the access entry the read will write (record_read's ``entry_id``), taken from its
    sequence in the same statement: a round trip fewer per proof. None on SQLite, which numbers
    the entry as it writes it."""
    if _dialect(session) == "postgresql":
        connection = session if isinstance(session, sa.Connection) else session.connection()
        values: dict[str, object] = {"subject_id": subject_id}
        for n, (department, record_type) in enumerate(record_types):
            values |= {f"department{n}": department, f"record_type{n}": record_type}
        found = execute_on_driver(connection, _numbered_records(len(record_types)), values).fetchall()
        numbered = [_NumberedRecord._make(row) for row in found]
        # The outer join gives the number alone, with no record, when the subject has none.
        return [_stored_record(row) for row in numbered if row.record_id is not None], int(numbered[0].next_entry)
    rows = session.execute(_SUBJECT_RECORDS, {"subject_id": subject_id, "kinds": list(record_types)}).all()
    return [_stored_record(row) for row in rows], None


def _stored_record(row: Any) -> proofs.StoredRecord:
    return proofs.StoredRecord(
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


class _NumberedRecord(NamedTuple):
    """A row of _numbered_records, as psycopg gives it (a tuple), named."""

    next_entry: int
    record_id: str | None
    department_code: str
    record_type: str
    source_reference: str
    fields: str
    effective_from: datetime.date
    effective_to: datetime.date | None
    recorded_at: datetime.datetime
    superseded_by: str | None


#: What a proof reads of each record.
_PROOF_COLUMNS = _NumberedRecord._fields[1:]


_ENTRY_NUMBERS = sa.Sequence("access_entries_entry_id_seq")


@functools.cache
def _numbered_records(kinds: int) -> str:
    """PostgreSQL: the next entry number joined to the subject's records of ``kinds`` (department,
    record type) pairs, compiled once for psycopg. The number is taken once, whatever the number
    of records: its one-row derived table is the outer side of the join."""
    table = store.records
    numbered = sa.select(_ENTRY_NUMBERS.next_value().label("next_entry")).subquery("numbered")
    pairs = [sa.tuple_(sa.bindparam(f"department{n}"), sa.bindparam(f"record_type{n}")) for n in range(kinds)]
    matching = sa.and_(
        table.c.subject_id == sa.bindparam("subject_id"),
        sa.tuple_(table.c.department_code, table.c.record_type).in_(pairs),
    )
    statement = sa.select(numbered.c.next_entry, *(table.c[name] for name in _PROOF_COLUMNS)).select_from(
        numbered.outerjoin(table, matching)
    )
    return str(statement.compile(dialect=psycopg_dialect()))  # type: ignore[no-untyped-call]


# -- issued proofs --------------------------------------------------------------------------------


def issued_proof(session: Session, request_key: str) -> tuple[str, bytes] | None:
    """The fingerprint and the serialised proof issued under a request key, if any."""
    table = store.issued_proofs
    row = session.execute(
        sa.select(table.c.request_fingerprint, table.c.proof).where(table.c.request_key == request_key)
    ).first()
    return None if row is None else (row.request_fingerprint, bytes(row.proof))


# -- signing keys ---------------------------------------------------------------------------------


def record_signing_keys(session: Session, ring: list[keys.RingKey], now: datetime.datetime) -> list[str]:
    """Every key of the proofs ring as a row: a new key added, a known one's status and end updated
    (never its start, which proofs already signed were checked against). A key kept the old way
    (one file, no ring) starts when first recorded. Returns the key ids of rows the ring does not
    vouch for: a public half other than the ring's, or a key the ring does not hold. They are left
    as found (the evidence) and never used (queries.signing_keys)."""
    table = store.signing_keys
    recorded = {row.key_id: row for row in session.execute(sa.select(table)).all()}
    held = {key.key_id for key in ring}
    untrusted = sorted(key_id for key_id in recorded if key_id not in held)
    for key in ring:
        changes = {"status": key.status, "active_until": key.active_until}
        row = recorded.get(key.key_id)
        if row is None:
            since = now if key.active_from == keys.SINCE_EVER else key.active_from
            session.execute(
                table.insert().values(
                    key_id=key.key_id, public_key=keys.public_bytes(key.public), active_from=since, **changes
                )
            )
            continue
        if bytes(row.public_key) != keys.public_bytes(key.public):
            untrusted.append(key.key_id)
        if (row.status, clock.as_utc(row.active_until)) != (key.status, key.active_until):
            session.execute(table.update().where(table.c.key_id == key.key_id).values(**changes))
    return untrusted


# -- the access log (docs/decisions/records-access-log-merkle-tree.md) ------------------------------

#: The key of the PostgreSQL advisory lock the sequencer holds while it seals a batch.
SEQUENCER_LOCK = 0x7265636F72647301  # "records" + 1


@dataclass(frozen=True)
class IssuedProof:
    """A proof's row: kept under its request key (if any), so a repeated request gets it back."""

    proof_id: str
    request_key: str | None
    fingerprint: str
    proof: bytes
    issued_at: datetime.datetime


def record_read(
    session: Executor,
    entry: access_log.Entry,
    issued: IssuedProof | None,
    envelopes: Callable[[access_log.Entry], list[dict[str, object]]],
    entry_id: int | None = None,
) -> access_log.Entry:
    """Writes a read: its access entry (not sealed yet; no shared lock taken, so many reads write
    theirs at once), the proof it issued if any, and the outbox rows ``envelopes`` makes of the
    numbered entry (outbox.outbox_rows); returns the entry with its number. A proof whose request
    key is stored already fails the whole write (IntegrityError): no entry is left behind.

    PostgreSQL: the entry is numbered from its sequence first (``entry_id`` when the read's
    subject_records took the number already), then everything is written in one statement, so
    inside Database.single_write the read commits with no BEGIN or COMMIT of its own (two round
    trips for a proof, where the statements one by one took seven; issue 13). SQLite: one
    statement per table, in the caller's transaction."""
    if _dialect(session) == "postgresql":
        if entry_id is None:
            entry_id = int(session.execute(_NEXT_ENTRY).scalar_one())
        entry = replace(entry, entry_id=entry_id)
        rows = envelopes(entry)
        values = {**_entry_values(entry), "entry_id": entry.entry_id}
        values |= {f"outbox{n}_{name}": value for n, row in enumerate(rows) for name, value in row.items()}
        if issued is not None:
            values |= _issued_values(issued, "issued_")
        connection = session if isinstance(session, sa.Connection) else session.connection()
        execute_on_driver(connection, _read_written(len(rows), issued is not None), values)
        return entry
    if issued is not None:
        session.execute(_ADD_ISSUED_PROOF, _issued_values(issued))
    entry = replace(entry, entry_id=int(session.execute(_ADD_ACCESS_ENTRY, _entry_values(entry)).scalar_one()))
    session.execute(store.outbox.insert(), envelopes(entry))
    return entry


def _entry_values(entry: access_log.Entry) -> dict[str, object]:
    values = {**entry.__dict__, "outcome": entry.outcome.value}
    del values["entry_id"], values["leaf_index"]
    return values


def _issued_values(issued: IssuedProof, prefix: str = "") -> dict[str, object]:
    return {
        f"{prefix}proof_id": issued.proof_id,
        f"{prefix}request_key": issued.request_key,
        f"{prefix}request_fingerprint": issued.fingerprint,
        f"{prefix}proof": issued.proof,
        f"{prefix}issued_at": issued.issued_at,
    }


def _dialect(session: Executor) -> str:
    bind = session if isinstance(session, sa.Connection) else session.get_bind()
    return bind.dialect.name


_NEXT_ENTRY = sa.text("SELECT nextval('access_entries_entry_id_seq')")


def _insert(table: sa.Table, prefix: str = "", leave_out: tuple[str, ...] = ()) -> sa.Insert:
    """An INSERT of one row of ``table`` from bound parameters named as its columns, prefixed."""
    return sa.insert(table).values({c.name: sa.bindparam(prefix + c.name) for c in table.c if c.name not in leave_out})


def _insert_unnested(table: sa.Table, prefix: str, leave_out: tuple[str, ...] = ()) -> sa.Insert:
    """An INSERT of any number of rows of ``table``, given as one array per column (PostgreSQL).
    Strings are cast to text[], not varchar(n)[]: a cast cuts a long string short where the
    column refuses it."""
    columns = [c for c in table.c if c.name not in leave_out]
    arrays = (
        sa.func.unnest(
            *(
                sa.cast(
                    sa.bindparam(prefix + c.name),
                    postgresql.ARRAY(sa.Text() if isinstance(c.type, sa.String) else c.type),
                )
                for c in columns
            )
        )
        .table_valued(*(c.name for c in columns))
        .render_derived(name="given")
    )
    return sa.insert(table).from_select([c.name for c in columns], sa.select(*arrays.c))


_ENTRY = _insert(store.access_entries, leave_out=("leaf_index",)).cte("entry")


@functools.cache
def _read_written(events: int, issuing: bool) -> str:
    """A read's writes as one PostgreSQL statement, compiled once for psycopg: the entry and the
    proof as data-modifying CTEs (which all run, to completion, in the statement's transaction),
    the events as the rows of one VALUES list, in order (the outbox's order is the order they are
    published in; CTEs run in no set order). SQLAlchemy would compile a VALUES of several rows
    at every call: it gives such a statement no cache key."""
    rows: list[dict[str, Any]] = [{c: sa.bindparam(f"outbox{n}_{c}") for c in _OUTBOX_GIVEN} for n in range(events)]
    statement = sa.insert(store.outbox).values(rows).add_cte(_ENTRY)
    if issuing:
        statement = statement.add_cte(_insert(store.issued_proofs, "issued_").cte("proof"))
    return str(statement.compile(dialect=psycopg_dialect()))  # type: ignore[no-untyped-call]


#: The outbox's columns a read gives (the database numbers the rows; the relay marks them sent).
_OUTBOX_GIVEN = [c.name for c in store.outbox.c if c.name not in ("seq", "published_at")]


def access_entry(row: sa.Row[tuple[object, ...]]) -> access_log.Entry:
    m = row._mapping
    return access_log.Entry(
        accessed_at=clock.as_utc(m["accessed_at"]),
        caller_id=m["caller_id"],
        caller_name=m["caller_name"],
        subject_id=m["subject_id"],
        subject_masked_identifier=m["subject_masked_identifier"],
        proof_type=m["proof_type"],
        purpose_kind=m["purpose_kind"],
        purpose_value=m["purpose_value"],
        purpose_note=m["purpose_note"],
        outcome=access_log.Outcome(m["outcome"]),
        proof_id=m["proof_id"],
        entry_id=m["entry_id"],
        leaf_index=m["leaf_index"],
    )


#: How long the sequencer's transaction may sit between two statements before PostgreSQL ends its
#: session, and with it the lock: a step takes well under a second, and a worker frozen in one
#: (stopped, swapped out, a VM paused) would otherwise hold every other worker off the log for as
#: long as its connection stays open.
SEQUENCER_IDLE_LIMIT = "10s"


def become_sequencer(session: Session) -> bool:
    """Whether this transaction may seal: at most one sequencer seals at a time, whatever the
    number of workers. PostgreSQL: a transaction-scoped advisory lock, taken without waiting, by
    a transaction that PostgreSQL ends if it stalls (SEQUENCER_IDLE_LIMIT); SQLite: the write
    transaction (BEGIN IMMEDIATE) already excludes every other writer."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    stall_limit = sa.func.set_config("idle_in_transaction_session_timeout", SEQUENCER_IDLE_LIMIT, True)
    taken = session.execute(sa.select(stall_limit, sa.func.pg_try_advisory_xact_lock(SEQUENCER_LOCK))).one()
    return bool(taken[1])


def pending_entries(session: Session, limit: int) -> list[access_log.Entry]:
    """Entries written but not sealed, in the order they were numbered."""
    table = store.access_entries
    rows = session.execute(
        sa.select(table).where(table.c.leaf_index.is_(None)).order_by(table.c.entry_id).limit(limit)
    ).all()
    return [access_entry(row) for row in rows]


#: PostgreSQL's read of a proof's nodes: the wanted pairs as two arrays joined to the primary key,
#: one statement whatever their number. Built per call, the OR of per-level lists below cost more
#: Python than the query itself (two thirds of a 6.5 ms ListAccesses at 200,000 leaves).
#: A proof's nodes on PostgreSQL in one statement, run on the driver's own connection: through
#: SQLAlchemy's result machinery, this read of ~20 rows cost more Python than the query took in
#: PostgreSQL. Prepared, so it is planned once per connection.
_NODES = (
    "SELECT n.level, n.node_index, n.hash FROM access_log_nodes AS n"
    " JOIN unnest(%s::smallint[], %s::bigint[]) AS w(level, node_index)"
    " ON n.level = w.level AND n.node_index = w.node_index"
)


def tree_nodes(session: Executor, wanted: set[access_log.NodeId]) -> dict[access_log.NodeId, bytes]:
    """The stored nodes among ``wanted``, in one statement."""
    if _dialect(session) == "postgresql":
        connection = session if isinstance(session, sa.Connection) else session.connection()
        levels, indexes = [level for level, _ in wanted], [index for _, index in wanted]
        rows = execute_on_driver(connection, _NODES, (levels, indexes))
        return {(level, index): bytes(digest) for level, index, digest in rows}
    table = store.access_log_nodes
    rows = _rows_of_pairs(session, table.c.level, table.c.node_index, wanted, table.c.hash)
    return {(row.level, row.node_index): bytes(row.hash) for row in rows}


def tree_head(session: Executor, tree_size: int | None = None) -> access_log.TreeHead | None:
    """The kept tree head of a size, or the latest."""
    table = store.access_log_heads
    query = sa.select(table)
    query = query.where(table.c.tree_size == tree_size) if tree_size else query.order_by(table.c.tree_size.desc())
    row = session.execute(query.limit(1)).first()
    return None if row is None else tree_head_of(row)


def tree_heads(session: Session, up_to: int | None = None) -> list[access_log.TreeHead]:
    table = store.access_log_heads
    query = sa.select(table).order_by(table.c.tree_size)
    if up_to is not None:
        query = query.where(table.c.tree_size <= up_to)
    return [tree_head_of(row) for row in session.execute(query)]


def tree_head_of(row: sa.Row[tuple[object, ...]]) -> access_log.TreeHead:
    m = row._mapping
    return access_log.TreeHead(
        log_id=m["log_id"],
        tree_size=m["tree_size"],
        root_hash=bytes(m["root_hash"]),
        timestamp=clock.as_utc(m["signed_at"]),
        key_id=m["key_id"],
        signature=bytes(m["signature"]),
    )


_SEALED = (
    sa.func.unnest(
        sa.cast(sa.bindparam("sealed_ids"), postgresql.ARRAY(sa.BigInteger())),
        sa.cast(sa.bindparam("leaf_indexes"), postgresql.ARRAY(sa.BigInteger())),
    )
    .table_valued("entry_id", "leaf_index")
    .render_derived(name="sealed")
)
_SEAL_ENTRIES = (
    sa.update(store.access_entries)
    .where(store.access_entries.c.entry_id == _SEALED.c.entry_id)
    .values(leaf_index=_SEALED.c.leaf_index)
)
_ADD_NODES = _insert_unnested(store.access_log_nodes, "node_")


def seal(
    session: Session,
    sealed: list[access_log.Entry],
    nodes: list[tuple[access_log.NodeId, bytes]],
    head: access_log.TreeHead,
) -> None:
    """Gives the entries their leaf indexes, stores the tree's new nodes and keeps the head."""
    table = store.access_entries
    if sealed and _dialect(session) == "postgresql":
        # A statement each for the batch's leaf indexes and nodes, given as arrays: row by row,
        # they were a third of the worker's time under load, and as many statements in PostgreSQL.
        session.execute(
            _SEAL_ENTRIES,
            {
                "sealed_ids": [entry.entry_id for entry in sealed],
                "leaf_indexes": [entry.leaf_index for entry in sealed],
            },
        )
        session.execute(
            _ADD_NODES,
            {
                "node_level": [level for (level, _), _ in nodes],
                "node_node_index": [index for (_, index), _ in nodes],
                "node_hash": [digest for _, digest in nodes],
            },
        )
    elif sealed:  # the first head of an empty log seals nothing
        session.execute(
            table.update()
            .where(table.c.entry_id == sa.bindparam("sealed_id"))
            .values(leaf_index=sa.bindparam("index")),
            [{"sealed_id": entry.entry_id, "index": entry.leaf_index} for entry in sealed],
        )
        session.execute(
            store.access_log_nodes.insert(),
            [{"level": level, "node_index": index, "hash": digest} for (level, index), digest in nodes],
        )
    session.execute(
        store.access_log_heads.insert().values(
            tree_size=head.tree_size,
            root_hash=head.root_hash,
            signed_at=head.timestamp,
            log_id=head.log_id,
            key_id=head.key_id,
            signature=head.signature,
        )
    )
