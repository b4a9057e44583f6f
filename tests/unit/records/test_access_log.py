"""The access log's tree, held against RFC 9162 written out independently (tests/support/rfc9162):
MTH by its recursive definition, and the RFC's own algorithms for verifying inclusion and
consistency proofs. The service's code computes; those only check."""

from __future__ import annotations

import datetime
import json

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from services.records.domain import access_log
from services.records.domain.access_log import BreakKind, Entry, Frontier, Outcome, StoredLeaf, TreeHead
from tests.support.rfc9162 import mth, verify_consistency, verify_inclusion


def grown(leaves: list[bytes]) -> tuple[Frontier, dict[access_log.NodeId, bytes]]:
    frontier, nodes = Frontier(), {}
    for leaf in leaves:
        nodes.update(frontier.append(access_log.leaf_hash(leaf)))
    return frontier, nodes


def leaves_of(n: int) -> list[bytes]:
    return [f"leaf {i}".encode() for i in range(n)]


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=300))
def test_the_root_is_rfc_9162s_merkle_tree_hash(n: int) -> None:
    frontier, _ = grown(leaves_of(n))
    assert frontier.root() == mth(leaves_of(n))


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=200), st.integers(min_value=1, max_value=120))
def test_a_frontier_rebuilt_from_stored_nodes_grows_the_same_tree(first: int, more: int) -> None:
    leaves = leaves_of(first + more)
    _, nodes = grown(leaves[:first])
    edge = Frontier.edge_nodes(first)
    resumed = Frontier(first, [nodes[node] for node in edge])
    for leaf in leaves[first:]:
        resumed.append(access_log.leaf_hash(leaf))
    assert resumed.root() == mth(leaves)


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_every_inclusion_proof_verifies_by_the_rfc_and_fails_for_another_leaf(data: st.DataObject) -> None:
    size = data.draw(st.integers(min_value=1, max_value=260))
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    leaves = leaves_of(size + 5)  # nodes beyond the head exist and must not be used
    _, nodes = grown(leaves)
    path = access_log.hashes(access_log.inclusion_ranges(index, size), nodes)
    root = mth(leaves[:size])
    assert verify_inclusion(index, size, leaves[index], path, root)
    assert not verify_inclusion(index, size, b"another leaf", path, root)
    if size > 1:
        assert not verify_inclusion((index + 1) % size, size, leaves[index], path, root)


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_every_consistency_proof_verifies_by_the_rfc_and_fails_for_a_forked_log(data: st.DataObject) -> None:
    second = data.draw(st.integers(min_value=1, max_value=260))
    first = data.draw(st.integers(min_value=1, max_value=second))
    leaves = leaves_of(second)
    _, nodes = grown(leaves)
    proof = access_log.hashes(access_log.consistency_ranges(first, second), nodes)
    assert verify_consistency(first, second, proof, mth(leaves[:first]), mth(leaves))
    forked = [*leaves[: first - 1], b"rewritten", *leaves[first:]]
    if first < second:
        assert not verify_consistency(first, second, proof, mth(forked[:first]), mth(leaves))


def test_the_rfcs_example_sizes_need_the_proofs_the_rfc_lists() -> None:
    """RFC 9162 2.1.5's example tree of 7 leaves: the audit path of leaf 3 (d) is [c, g, l]."""
    assert access_log.inclusion_ranges(3, 7) == [(2, 3), (0, 2), (4, 7)]
    assert access_log.inclusion_ranges(0, 7) == [(1, 2), (2, 4), (4, 7)]
    assert access_log.consistency_ranges(3, 7) == [(2, 3), (3, 4), (0, 2), (4, 7)]
    assert access_log.consistency_ranges(4, 7) == [(4, 7)]
    assert access_log.consistency_ranges(6, 7) == [(4, 6), (6, 7), (0, 4)]


@pytest.mark.parametrize(("index", "size"), [(-1, 3), (3, 3), (0, 0)])
def test_an_inclusion_proof_outside_the_tree_is_refused(index: int, size: int) -> None:
    with pytest.raises(ValueError, match="not in a tree"):
        access_log.inclusion_ranges(index, size)


# -- the leaf and the head, as bytes anyone can rebuild --------------------------------------------

MOMENT = datetime.datetime(2026, 12, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)


def entry(n: int, **changes: object) -> Entry:
    fields: dict[str, object] = {
        "accessed_at": MOMENT + datetime.timedelta(seconds=n),
        "caller_id": "housing",
        "caller_name": "住房和城乡建设厅",
        "subject_id": f"sub_{n}",
        "subject_masked_identifier": "330106********123X",
        "proof_type": "property_title",
        "purpose_kind": "case_id",
        "purpose_value": f"case-{n}",
        "purpose_note": "",
        "outcome": Outcome.GRANTED,
        "proof_id": f"proof-{n}",
        "entry_id": n + 1,
        "leaf_index": n,
    }
    fields.update(changes)
    return Entry(**fields)  # type: ignore[arg-type]


def test_the_leaf_is_the_canonical_json_of_what_the_citizen_sees() -> None:
    assert (
        entry(0).leaf_bytes()
        == (
            '{"accessed_at":"2026-12-05T06:07:08.000009Z","caller_id":"housing","caller_name":"住房和城乡建设厅",'
            '"leaf_index":0,"outcome":"granted","proof_id":"proof-0","proof_type":"property_title",'
            '"purpose":{"kind":"case_id","note":"","value":"case-0"},"subject_id":"sub_0",'
            '"subject_masked_identifier":"330106********123X"}'
        ).encode()
    )
    with pytest.raises(ValueError, match="sealed"):
        entry(0, leaf_index=None).leaf_bytes()


def test_the_signed_head_is_the_canonical_json_the_contract_names() -> None:
    head = TreeHead("govmesh-dev/records/access-log", 7, bytes(range(32)), MOMENT)
    assert head.signed_bytes() == (
        b'{"log_id":"govmesh-dev/records/access-log","root_hash":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",'
        b'"timestamp":"2026-12-05T06:07:08.000009Z","tree_size":7}'
    )


@settings(max_examples=300, deadline=None)
@given(
    st.text(),
    st.text(),
    st.text(),
    st.integers(min_value=0, max_value=2**53 - 1),
    st.datetimes(timezones=st.just(datetime.UTC)),
)
def test_leaves_and_heads_are_exactly_what_the_rfc8785_package_makes(
    caller_name: str, purpose_value: str, purpose_note: str, index: int, moment: datetime.datetime
) -> None:
    """access_log.canonical_json is the standard library's JSON, for speed: held to a JCS
    implementation on any text a caller could put in an entry (control characters, quotes,
    astral planes) and any leaf index."""
    sealed = entry(
        0,
        caller_name=caller_name,
        purpose_value=purpose_value,
        purpose_note=purpose_note,
        leaf_index=index,
        accessed_at=moment,
    )
    leaf = json.loads(sealed.leaf_bytes())
    assert sealed.leaf_bytes() == rfc8785.dumps(leaf)
    assert leaf["caller_name"] == caller_name and leaf["purpose"]["note"] == purpose_note
    head = TreeHead(caller_name, index, bytes(32), moment)
    assert head.signed_bytes() == rfc8785.dumps(json.loads(head.signed_bytes()))


# -- verifying the whole log ------------------------------------------------------------------------


class Log:
    """A log of n entries sealed under heads at the given sizes, as the sequencer leaves it."""

    def __init__(self, n: int, head_sizes: list[int]) -> None:
        self.entries = [entry(i) for i in range(n)]
        self.leaf_hashes = [access_log.leaf_hash(e.leaf_bytes()) for e in self.entries]
        self.heads = [
            TreeHead("log", size, mth([e.leaf_bytes() for e in self.entries[:size]]), MOMENT, "k", b"signed")
            for size in head_sizes
        ]

    def verify(self) -> access_log.Verification:
        stored = [StoredLeaf(e, self.leaf_hashes[e.leaf_index or 0]) for e in self.entries]
        stored.sort(key=lambda leaf: leaf.entry.leaf_index or 0)
        return access_log.verify(
            stored,
            self.heads,
            lambda head: None if head.signature == b"signed" else "does not verify: it was altered",
            lambda index: self.leaf_hashes[index] if index < len(self.leaf_hashes) else None,
        )


def test_an_untouched_log_is_intact_and_every_head_is_checked() -> None:
    result = Log(20, [0, 3, 8, 20]).verify()
    assert result.intact and result.entries_checked == 20 and result.tree_heads_checked == 4


def test_an_altered_entry_is_named() -> None:
    log = Log(20, [8, 20])
    log.entries[11] = entry(11, caller_id="education")
    found = log.verify().first_break
    assert found is not None and found.kind is BreakKind.ALTERED and found.leaf_index == 11


def test_a_removed_entry_is_named_and_so_is_a_removed_tail() -> None:
    log = Log(20, [8, 20])
    del log.entries[5]
    found = log.verify().first_break
    assert found is not None and (found.kind, found.leaf_index) == (BreakKind.REMOVED, 5)
    tail = Log(20, [8, 20])
    del tail.entries[18:]
    found = tail.verify().first_break
    assert found is not None and (found.kind, found.leaf_index) == (BreakKind.REMOVED, 18)


def test_two_swapped_entries_are_named_as_moved() -> None:
    log = Log(20, [20])
    a, b = log.entries[4], log.entries[9]
    log.entries[4], log.entries[9] = (
        Entry(**{**b.__dict__, "leaf_index": 4}),
        Entry(**{**a.__dict__, "leaf_index": 9}),
    )
    found = log.verify().first_break
    assert found is not None and (found.kind, found.leaf_index) == (BreakKind.REORDERED, 4)


def test_an_altered_head_and_a_rewritten_log_are_named() -> None:
    log = Log(20, [8, 20])
    log.heads[1] = TreeHead("log", 20, log.heads[1].root_hash, MOMENT, "k", b"forged")
    found = log.verify().first_break
    assert found is not None and (found.kind, found.tree_size) == (BreakKind.TREE_HEAD_ALTERED, 20)
    rewritten = Log(20, [8, 20])
    rewritten.entries[12] = entry(12, outcome=Outcome.DENIED)
    rewritten.leaf_hashes[12] = access_log.leaf_hash(rewritten.entries[12].leaf_bytes())  # the tree, too
    found = rewritten.verify().first_break
    assert found is not None and (found.kind, found.tree_size, found.leaf_index) == (BreakKind.REWRITTEN, 20, 8)


def test_removed_newest_heads_are_named_though_a_leaf_they_held_was_altered() -> None:
    log = Log(20, [5, 10, 15, 20])
    del log.heads[2:]
    log.entries[17] = entry(17, caller_id="education")
    found = log.verify().first_break
    assert found is not None and (found.kind, found.leaf_index, found.tree_size) == (
        BreakKind.TREE_HEAD_REMOVED,
        10,
        10,
    )
    headless = Log(20, [5, 20])
    headless.heads.clear()
    found = headless.verify().first_break
    assert found is not None and (found.kind, found.leaf_index) == (BreakKind.TREE_HEAD_REMOVED, 0)
