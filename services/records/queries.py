"""Records' read side: the signing keys, a subject's page of the access log with its proofs, tree
heads and consistency proofs, and the walk that verifies the whole log."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from dataclasses import replace

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from govmesh import clock, keys
from govmesh.db import Database
from services.records import repository, signing, store
from services.records.domain import access_log

#: Entries read per round trip while the trail is walked.
WALK_BATCH = 1000


def signing_keys(db: Database, now: datetime.datetime) -> dict[str, signing.PublicKey]:
    """The keys as they stand at ``now``: an active key whose end has passed is retired."""
    table = store.signing_keys
    with db.read() as session:
        rows = session.execute(sa.select(table).order_by(table.c.active_from)).all()
    found = {}
    for row in rows:
        until = clock.as_utc(row.active_until)
        status = keys.RETIRED if row.status == keys.ACTIVE and until is not None and until <= now else row.status
        found[row.key_id] = signing.PublicKey(
            row.key_id,
            Ed25519PublicKey.from_public_bytes(row.public_key),
            signing.STATUSES[status],
            clock.as_utc(row.active_from),
            until,
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
    table = store.access_entries
    query = sa.select(table).where(table.c.subject_id == subject_id)
    if before is not None:
        query = query.where(table.c.entry_id < before)
    if start is not None:
        query = query.where(table.c.accessed_at >= start)
    if end is not None:
        query = query.where(table.c.accessed_at < end)
    with db.read() as session:
        # The head first: an entry sealed after it (READ COMMITTED) is shown as not sealed yet.
        head = repository.tree_head(session)
        rows = session.execute(query.order_by(table.c.entry_id.desc()).limit(limit)).all()
        entries = [repository.access_entry(row) for row in rows]
        size = head.tree_size if head else 0
        sealed = [e for e in entries if e.leaf_index is not None and e.leaf_index < size]
        ranges = {e.entry_id: access_log.inclusion_ranges(_leaf(e), size) for e in sealed}
        wanted = access_log.nodes_for(r for path in ranges.values() for r in path)
        wanted |= {(0, _leaf(e)) for e in sealed}
        nodes = repository.tree_nodes(session, wanted)
    paths = {entry_id: access_log.hashes(path, nodes) for entry_id, path in ranges.items()}
    leaves = {e.entry_id: nodes[(0, _leaf(e))] for e in sealed}
    shown = [e if e.entry_id in paths else replace(e, leaf_index=None) for e in entries]
    return access_log.TrackerPage(shown, head, paths, leaves)


def _leaf(entry: access_log.Entry) -> int:
    assert entry.leaf_index is not None
    return entry.leaf_index


def tree_head(db: Database, tree_size: int | None = None) -> access_log.TreeHead | None:
    with db.read() as session:
        return repository.tree_head(session, tree_size)


def consistency_proof(db: Database, first: int, second: int) -> list[bytes]:
    ranges = access_log.consistency_ranges(first, second)
    with db.read() as session:
        nodes = repository.tree_nodes(session, access_log.nodes_for(ranges))
    return access_log.hashes(ranges, nodes)


def verify_access_log(
    db: Database, signature_holds: Callable[[access_log.TreeHead], bool]
) -> tuple[access_log.Verification, int]:
    """Recomputes the tree from every sealed entry and holds it against every kept tree head;
    also counts the entries not sealed yet."""
    entries, nodes = store.access_entries, store.access_log_nodes
    with db.read(snapshot=True) as session:
        heads = repository.tree_heads(session)
        size = heads[-1].tree_size if heads else 0
        leaves = (
            sa.select(entries, nodes.c.hash)
            .outerjoin(nodes, sa.and_(nodes.c.level == 0, nodes.c.node_index == entries.c.leaf_index))
            .where(entries.c.leaf_index.is_not(None), entries.c.leaf_index < size)
            .order_by(entries.c.leaf_index)
        )

        def stored() -> Iterator[access_log.StoredLeaf]:
            for row in session.execute(leaves).yield_per(WALK_BATCH):
                yield access_log.StoredLeaf(repository.access_entry(row), None if row.hash is None else bytes(row.hash))

        def leaf_hash_at(index: int) -> bytes | None:
            return repository.tree_nodes(session, {(0, index)}).get((0, index))

        verification = access_log.verify(stored(), heads, signature_holds, leaf_hash_at)
        pending = session.execute(
            sa.select(sa.func.count()).select_from(entries).where(entries.c.leaf_index.is_(None))
        ).scalar_one()
    return verification, int(pending)
