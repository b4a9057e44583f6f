"""The access log: every read of personal data, allowed or refused, is an entry; a sequencer makes
the entries leaves of a Merkle tree hashed exactly as RFC 9162 section 2.1 and signs its heads, so
anyone holding the public key can check that an entry is in the log (an inclusion proof) and that
the log only ever grew (a consistency proof). docs/decisions/records-access-log-merkle-tree.md.

Pure: no storage, no clock, no keys. A node is named (level, index): the hash of the leaves
[index * 2**level, (index + 1) * 2**level); level 0 is a leaf hash."""

from __future__ import annotations

import base64
import datetime
import enum
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

NodeId = tuple[int, int]

#: The root hash of the empty tree (RFC 9162 2.1.1: the hash of an empty string).
EMPTY_ROOT = hashlib.sha256(b"").digest()


class Outcome(enum.Enum):
    GRANTED = "granted"
    DENIED = "denied"


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def canonical_json(value: Mapping[str, object]) -> bytes:
    """RFC 8785 (JCS) canonical JSON of what a leaf holds: objects with ASCII keys, strings, and
    integers below 2**53. For those, JCS is the standard library's sorted, compact JSON that keeps
    non-ASCII text as it is: both escape only the quote, the backslash and control characters
    (short forms for \\b \\f \\n \\r \\t, lowercase \\u00xx for the rest), and sorting ASCII keys by
    UTF-16 unit is sorting them by code point. It runs in C, several times faster than the rfc8785
    package, which matters when VerifyAuditTrail rebuilds a million leaves; the unit tests hold
    the two equal on arbitrary text."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def rfc3339(moment: datetime.datetime) -> str:
    """UTC with microseconds and a Z: one spelling, so signed bytes can be rebuilt from it."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Entry:
    """One read of one subject's data. ``entry_id`` numbers entries in the order they were
    written (0 until stored); ``leaf_index`` is the entry's place in the tree, set when sealed."""

    accessed_at: datetime.datetime
    caller_id: str
    caller_name: str
    subject_id: str
    subject_masked_identifier: str
    proof_type: str
    purpose_kind: str  # "case_id" or "legal_basis"
    purpose_value: str
    purpose_note: str
    outcome: Outcome
    proof_id: str
    entry_id: int = 0
    leaf_index: int | None = None

    def leaf_bytes(self, leaf_index: int | None = None) -> bytes:
        """The leaf: the RFC 8785 canonical JSON of what the citizen sees of the entry."""
        index = self.leaf_index if leaf_index is None else leaf_index
        if index is None:
            raise ValueError("an entry becomes a leaf when it is sealed")
        return canonical_json(
            {
                "leaf_index": index,
                "accessed_at": rfc3339(self.accessed_at),
                "caller_id": self.caller_id,
                "caller_name": self.caller_name,
                "subject_id": self.subject_id,
                "subject_masked_identifier": self.subject_masked_identifier,
                "proof_type": self.proof_type,
                "purpose": {"kind": self.purpose_kind, "value": self.purpose_value, "note": self.purpose_note},
                "outcome": self.outcome.value,
                "proof_id": self.proof_id,
            }
        )

    def sealed_as(self, leaf_index: int) -> Entry:
        return replace(self, leaf_index=leaf_index)


@dataclass(frozen=True)
class TreeHead:
    """A signed statement of the log's size and root at a moment (the signature is made over
    ``signed_bytes`` by records' signing key, named by ``key_id``)."""

    log_id: str
    tree_size: int
    root_hash: bytes
    timestamp: datetime.datetime
    key_id: str = ""
    signature: bytes = b""

    def signed_bytes(self) -> bytes:
        return canonical_json(
            {
                "log_id": self.log_id,
                "tree_size": self.tree_size,
                "root_hash": base64.b64encode(self.root_hash).decode(),
                "timestamp": rfc3339(self.timestamp),
            }
        )


@dataclass(frozen=True)
class TrackerPage:
    """A page of a subject's entries with what proves each sealed one: the tree head the proofs
    lead to, and by entry number, each sealed entry's leaf hash and audit path."""

    entries: list[Entry]
    head: TreeHead | None
    paths: dict[int, list[bytes]]
    leaf_hashes: dict[int, bytes]


# -- the tree's shape (RFC 9162 2.1.1: split at the largest power of two smaller than n) ------------


def split(size: int) -> int:
    """The largest power of two smaller than ``size`` (size >= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def pieces(start: int, end: int) -> list[NodeId]:
    """The stored (perfect) subtrees whose hashes make up the subtree over [start, end), left to
    right. Every subtree of an RFC 9162 tree starts at a multiple of its largest piece."""
    size = end - start
    if size & (size - 1) == 0:
        level = size.bit_length() - 1
        return [(level, start >> level)]
    k = split(size)
    return pieces(start, start + k) + pieces(start + k, end)


def subtree_hash(start: int, end: int, nodes: Mapping[NodeId, bytes]) -> bytes:
    """MTH(D[start:end]) from stored perfect subtrees (``nodes`` must hold ``pieces(start, end)``)."""
    size = end - start
    if size & (size - 1) == 0:
        level = size.bit_length() - 1
        return nodes[(level, start >> level)]
    k = split(size)
    return node_hash(subtree_hash(start, start + k, nodes), subtree_hash(start + k, end, nodes))


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The subtrees of RFC 9162 2.1.3.1's PATH(index, D[0:size]), leaf side first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    path: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = split(end - start)
        if index < start + k:
            path.append((start + k, end))
            end = start + k
        else:
            path.append((start, start + k))
            start += k
    return path[::-1]


def consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """The subtrees of RFC 9162 2.1.4.1's PROOF(first, D[0:second]), in proof order."""
    if not 0 < first <= second:
        raise ValueError(f"no consistency proof from size {first} to size {second}")
    proof: list[tuple[int, int]] = []
    start, end, m, whole = 0, second, first, True
    while m != end - start:
        k = split(end - start)
        if m <= k:
            proof.append((start + k, end))
            end = start + k
        else:
            proof.append((start, start + k))
            start, m, whole = start + k, m - k, False
    if not whole:
        proof.append((start, end))
    return proof[::-1]


def nodes_for(ranges: Iterable[tuple[int, int]]) -> set[NodeId]:
    return {node for start, end in ranges for node in pieces(start, end)}


def hashes(ranges: Sequence[tuple[int, int]], nodes: Mapping[NodeId, bytes]) -> list[bytes]:
    return [subtree_hash(start, end, nodes) for start, end in ranges]


# -- growing the tree -------------------------------------------------------------------------------


class Frontier:
    """The right edge of the tree (the perfect subtrees of its size's binary decomposition): all
    that appending a leaf and computing the root need."""

    def __init__(self, size: int = 0, edge: Sequence[bytes] = ()) -> None:
        self.size = size
        levels = [level for level, _ in pieces(0, size)] if size else []
        if len(levels) != len(edge):
            raise ValueError(f"a tree of size {size} has {len(levels)} edge subtrees, not {len(edge)}")
        self._edge: list[tuple[int, bytes]] = list(zip(levels, edge, strict=True))

    @staticmethod
    def edge_nodes(size: int) -> list[NodeId]:
        return pieces(0, size) if size else []

    def append(self, leaf: bytes) -> list[tuple[NodeId, bytes]]:
        """Adds a leaf hash; returns the nodes that now exist for the first time (the leaf and
        every subtree it completes)."""
        index = self.size
        self.size += 1
        made = [((0, index), leaf)]
        self._edge.append((0, leaf))
        while len(self._edge) > 1 and self._edge[-1][0] == self._edge[-2][0]:
            (level, right), (_, left) = self._edge.pop(), self._edge.pop()
            merged = (level + 1, node_hash(left, right))
            self._edge.append(merged)
            made.append(((level + 1, (self.size >> (level + 1)) - 1), merged[1]))
        return made

    def seal(
        self, waiting: Iterable[Entry], pause: Callable[[], None], every: int = 250
    ) -> tuple[list[Entry], list[tuple[NodeId, bytes]]]:
        """Appends the entries at the next leaf indexes: the entries as sealed, and the nodes
        that now exist. ``pause`` is called every ``every`` entries (about 5 ms of hashing),
        where a worker's sequencer lets its other work run."""
        sealed, made = [], []
        for n, entry in enumerate(waiting, 1):
            entry = entry.sealed_as(self.size)
            made += self.append(leaf_hash(entry.leaf_bytes()))
            sealed.append(entry)
            if n % every == 0:
                pause()
        return sealed, made

    def root(self) -> bytes:
        if not self._edge:
            return EMPTY_ROOT
        acc = self._edge[-1][1]
        for _, left in reversed(self._edge[:-1]):
            acc = node_hash(left, acc)
        return acc


# -- verifying the whole log ------------------------------------------------------------------------


class BreakKind(enum.Enum):
    ALTERED = "altered"
    REMOVED = "removed"
    REORDERED = "reordered"
    TREE_HEAD_ALTERED = "tree_head_altered"
    REWRITTEN = "rewritten"
    TREE_HEAD_REMOVED = "tree_head_removed"


@dataclass(frozen=True)
class Break:
    kind: BreakKind
    message: str
    leaf_index: int | None = None
    entry_id: int = 0
    tree_size: int = 0


@dataclass(frozen=True)
class Verification:
    entries_checked: int
    tree_heads_checked: int
    latest: TreeHead | None
    first_break: Break | None

    @property
    def intact(self) -> bool:
        return self.first_break is None


@dataclass(frozen=True)
class StoredLeaf:
    """A sealed entry as stored, with the leaf hash the tree keeps at its index (None when the
    tree has no node there)."""

    entry: Entry
    stored_hash: bytes | None


#: How many mismatching leaves the walk keeps to tell a moved entry from an altered one.
MISMATCHES_KEPT = 1000


def verify(
    leaves: Iterable[StoredLeaf],
    heads: Sequence[TreeHead],
    signature_fault: Callable[[TreeHead], str | None],
    stored_leaf_hash: Callable[[int], bytes | None],
) -> Verification:
    """Recompute the tree from the entries, in leaf order, and hold it against every signed tree
    head (sorted by size); name the first place the log does not hold.

    ``stored_leaf_hash(i)`` is the tree's stored leaf hash at index i: an entry whose content
    hashes to the stored leaf of another index was moved there from that index."""
    walk = _Walk(heads, signature_fault)
    for leaf in leaves:
        walk.leaf(leaf)
    return walk.finish(stored_leaf_hash)


class _Walk:
    def __init__(self, heads: Sequence[TreeHead], signature_fault: Callable[[TreeHead], str | None]) -> None:
        self.heads = list(heads)
        self.signature_fault = signature_fault
        self.frontier = Frontier()
        self.next_head = 0
        self.heads_checked = 0
        self.leaf_break: Break | None = None
        self.head_break: Break | None = None
        self.mismatched: list[Entry] = []
        self._check_heads_at(0)

    def leaf(self, leaf: StoredLeaf) -> None:
        entry, expected = leaf.entry, self.frontier.size
        assert entry.leaf_index is not None
        if entry.leaf_index != expected and self.leaf_break is None:
            self.leaf_break = Break(
                BreakKind.REMOVED,
                f"leaf {expected} is missing: the next stored entry is leaf {entry.leaf_index}",
                expected,
            )
        computed = leaf_hash(entry.leaf_bytes(expected))
        if computed != leaf.stored_hash and len(self.mismatched) < MISMATCHES_KEPT:
            self.mismatched.append(entry)
        self.frontier.append(computed)
        self._check_heads_at(self.frontier.size)

    def _check_heads_at(self, size: int) -> None:
        while self.next_head < len(self.heads) and self.heads[self.next_head].tree_size <= size:
            head = self.heads[self.next_head]
            self.next_head += 1
            if head.tree_size < size:
                continue  # two heads of one size cannot be stored; a smaller one was passed
            self.heads_checked += 1
            if self.head_break is not None:
                continue
            fault = self.signature_fault(head)
            if fault is not None:
                self.head_break = Break(
                    BreakKind.TREE_HEAD_ALTERED,
                    f"the tree head of size {head.tree_size} signed at {rfc3339(head.timestamp)} {fault}",
                    tree_size=head.tree_size,
                )
            elif self.frontier.root() != head.root_hash:
                earlier = self.heads[self.next_head - 2].tree_size if self.next_head >= 2 else 0
                self.head_break = Break(
                    BreakKind.REWRITTEN,
                    f"leaves {earlier} to {head.tree_size - 1} no longer hash to the root signed at size "
                    f"{head.tree_size} ({rfc3339(head.timestamp)}): the log was rewritten",
                    earlier,
                    tree_size=head.tree_size,
                )

    def finish(self, stored_leaf_hash: Callable[[int], bytes | None]) -> Verification:
        size = self.frontier.size
        latest = self.heads[-1] if self.heads else None
        if latest is not None and latest.tree_size > size and self.leaf_break is None:
            self.leaf_break = Break(
                BreakKind.REMOVED,
                f"the log ends at leaf {size - 1}; its tree head of size {latest.tree_size} says it holds "
                f"{latest.tree_size} leaves",
                size,
            )
        held, heads_removed = (latest.tree_size if latest else 0), None
        if size > held:
            # The sequencer seals leaves and signs the head that holds them in one transaction,
            # so a sealed leaf beyond the newest head means heads were taken away; unchecked, the
            # leaves they held could be altered unseen.
            newest = f"the newest is of size {held}" if latest else "none is kept"
            heads_removed = Break(
                BreakKind.TREE_HEAD_REMOVED,
                f"leaves {held} to {size - 1} are sealed but no kept tree head holds them ({newest}): "
                "tree heads were removed",
                held,
                tree_size=held,
            )
        content_break = self._content_break(stored_leaf_hash)
        found = [b for b in (self.leaf_break, content_break, self.head_break, heads_removed) if b is not None]
        first = min(found, key=_position) if found else None
        return Verification(min(size, held), self.heads_checked, latest, first)

    def _content_break(self, stored_leaf_hash: Callable[[int], bytes | None]) -> Break | None:
        if not self.mismatched:
            return None
        entry = self.mismatched[0]
        assert entry.leaf_index is not None
        for other in self.mismatched:
            assert other.leaf_index is not None
            if other.leaf_index != entry.leaf_index and stored_leaf_hash(other.leaf_index) == leaf_hash(
                entry.leaf_bytes(other.leaf_index)
            ):
                return Break(
                    BreakKind.REORDERED,
                    f"leaf {entry.leaf_index} holds the entry sealed as leaf {other.leaf_index}: it was moved",
                    entry.leaf_index,
                    entry.entry_id,
                )
        return Break(
            BreakKind.ALTERED,
            f"leaf {entry.leaf_index} no longer matches the leaf hash sealed in the tree",
            entry.leaf_index,
            entry.entry_id,
        )


def _position(found: Break) -> tuple[int, int]:
    """Where a break lies in the log: an entry's break at its leaf comes before a head's break
    at any larger size."""
    if found.leaf_index is not None and found.kind is not BreakKind.REWRITTEN:
        return (found.leaf_index, 0)
    return (found.tree_size - 1, 1)
