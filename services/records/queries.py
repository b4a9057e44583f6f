"""Records' read side: the signing keys, a subject's page of the access log with its proofs, tree
heads and consistency proofs, and the walk that verifies the whole log."""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace

import sqlalchemy as sa

from govmesh import clock, keys
from govmesh.db import Database
from services.records import repository, signing, store
from services.records.domain import access_log

#: Entries read per round trip while the trail is walked.
WALK_BATCH = 1000


#: A key's statuses from least to most severe: of the ring's and the table's, the worse holds.
_SEVERITY = (keys.ACTIVE, keys.RETIRED, keys.REVOKED)


def _severity(status: str) -> int:
    return _SEVERITY.index(status) if status in _SEVERITY else len(_SEVERITY) - 1  # one unheard of: revoked


def signing_keys(
    db: Database, now: datetime.datetime, ring: Mapping[str, keys.RingKey]
) -> dict[str, signing.PublicKey]:
    """The keys as they stand at ``now``, each only as the proofs ring vouches for it: the ring
    (a Secret, which whoever writes the database does not hold) gives its public half, so a row
    put in or altered in the table cannot make a forged proof or tree head verify, and a row the
    ring does not hold is no key (repository.record_signing_keys reports it). The table keeps
    what vouches for nothing: the worse status of the two (the first process to re-read the ring
    records a revocation, and it holds at once everywhere, before every process has re-read it),
    and the start recorded when the key was first published (never moved: a key kept the old way
    has none in the ring, and proofs were checked against it)."""
    table = store.signing_keys
    with db.read() as session:
        rows = {
            row.key_id: row for row in session.execute(sa.select(table.c.key_id, table.c.status, table.c.active_from))
        }
    found = {}
    for key in sorted(ring.values(), key=lambda k: k.active_from):
        row = rows.get(key.key_id)
        if row is None:
            continue  # not published yet: nothing it signed has been handed out
        status = _SEVERITY[max(_severity(key.status_at(now)), _severity(row.status))]
        found[key.key_id] = signing.PublicKey(
            key.key_id, key.public, signing.STATUSES[status], clock.as_utc(row.active_from), key.active_until
        )
    return found


def accesses(
    db: Database,
    subject_id: str,
    limit: int,
    before: int | None = None,
    start: datetime.datetime | None = None,
    end: datetime.datetime | None = None,
) -> access_log.TrackerPage:
    """A subject's entries, newest first: at most ``limit``, numbered below ``before``, accessed
    in [start, end); each entry sealed under the latest tree head with its inclusion proof."""
    query = _subject_entries(before is not None, start is not None, end is not None)
    given = {"subject_id": subject_id, "before": before, "start": start, "end": end, "limit": limit}
    if db.is_sqlite:
        with db.read() as session:
            # The head first: an entry sealed after it is shown as not sealed yet.
            head = repository.tree_head(session)
            entries = [repository.access_entry(row) for row in session.execute(query, given)]
            return _page(entries, head, lambda wanted: repository.tree_nodes(session, wanted))
    with db.statement_reads() as connection:
        # One statement reads the head and the page, so both are of one snapshot; the nodes need
        # no transaction with them: a head is committed with every node its proofs use, and a
        # node, once written, never changes.
        rows = connection.execute(_head_and_page(query), given).all()
        head = None if rows[0].tree_size is None else repository.tree_head_of(rows[0])
        entries = [repository.access_entry(row) for row in rows if row.entry_id is not None]
        return _page(entries, head, lambda wanted: repository.tree_nodes(connection, wanted))


@functools.cache
def _subject_entries(before: bool, start: bool, end: bool) -> sa.Select[tuple[object, ...]]:
    """A subject's entries, newest first, with the filters given, as bound parameters: built once
    per kind of page, as building the statement (its subqueries' columns) per call cost a fifth of
    a ListAccesses' Python."""
    table = store.access_entries
    query = sa.select(table).where(table.c.subject_id == sa.bindparam("subject_id"))
    if before:
        query = query.where(table.c.entry_id < sa.bindparam("before"))
    if start:
        query = query.where(table.c.accessed_at >= sa.bindparam("start"))
    if end:
        query = query.where(table.c.accessed_at < sa.bindparam("end"))
    return query.order_by(table.c.entry_id.desc()).limit(sa.bindparam("limit", type_=sa.Integer()))


@functools.cache
def _head_and_page(entries: sa.Select[tuple[object, ...]]) -> sa.Select[tuple[object, ...]]:
    page = entries.lateral("page")
    return sa.select(_LATEST_HEAD, page).select_from(
        _ONE_ROW.outerjoin(_LATEST_HEAD, sa.true()).outerjoin(page, sa.true())
    )


#: The base of the page's statement: one row, so the head is read even when the page is empty.
_ONE_ROW = sa.select(sa.literal(1).label("one")).subquery("one")
_LATEST_HEAD = (
    sa.select(store.access_log_heads).order_by(store.access_log_heads.c.tree_size.desc()).limit(1).lateral("head")
)


def _page(
    entries: list[access_log.Entry],
    head: access_log.TreeHead | None,
    read_nodes: Callable[[set[access_log.NodeId]], dict[access_log.NodeId, bytes]],
) -> access_log.TrackerPage:
    size = head.tree_size if head else 0
    sealed = [e for e in entries if e.leaf_index is not None and e.leaf_index < size]
    ranges = {e.entry_id: access_log.inclusion_ranges(_leaf(e), size) for e in sealed}
    wanted = access_log.nodes_for(r for path in ranges.values() for r in path)
    wanted |= {(0, _leaf(e)) for e in sealed}
    nodes = read_nodes(wanted) if wanted else {}
    paths = {entry_id: access_log.hashes(path, nodes) for entry_id, path in ranges.items()}
    leaves = {e.entry_id: nodes[(0, _leaf(e))] for e in sealed}
    shown = [e if e.entry_id in paths else replace(e, leaf_index=None) for e in entries]
    return access_log.TrackerPage(shown, head, paths, leaves)


def _leaf(entry: access_log.Entry) -> int:
    assert entry.leaf_index is not None
    return entry.leaf_index


def tree_head(db: Database, tree_size: int | None = None) -> access_log.TreeHead | None:
    with db.statement_reads() as session:
        return repository.tree_head(session, tree_size)


def consistency_proof(db: Database, first: int, second: int) -> list[bytes]:
    ranges = access_log.consistency_ranges(first, second)
    with db.statement_reads() as session:
        nodes = repository.tree_nodes(session, access_log.nodes_for(ranges))
    return access_log.hashes(ranges, nodes)


def verify_access_log(
    db: Database, signature_fault: Callable[[access_log.TreeHead], str | None]
) -> tuple[access_log.Verification, int]:
    """Recomputes the tree from every sealed entry and holds it against every kept tree head;
    also counts the entries not sealed yet."""
    entries, nodes = store.access_entries, store.access_log_nodes
    with db.read(snapshot=True) as session:
        heads = repository.tree_heads(session)
        # Every sealed leaf, those beyond the newest head too: none may be (access_log.verify).
        leaves = (
            sa.select(entries, nodes.c.hash)
            .outerjoin(nodes, sa.and_(nodes.c.level == 0, nodes.c.node_index == entries.c.leaf_index))
            .where(entries.c.leaf_index.is_not(None))
            .order_by(entries.c.leaf_index)
        )

        def stored() -> Iterator[access_log.StoredLeaf]:
            for row in session.execute(leaves).yield_per(WALK_BATCH):
                yield access_log.StoredLeaf(repository.access_entry(row), None if row.hash is None else bytes(row.hash))

        def leaf_hash_at(index: int) -> bytes | None:
            return repository.tree_nodes(session, {(0, index)}).get((0, index))

        verification = access_log.verify(stored(), heads, signature_fault, leaf_hash_at)
        pending = session.execute(
            sa.select(sa.func.count()).select_from(entries).where(entries.c.leaf_index.is_(None))
        ).scalar_one()
    return verification, int(pending)
