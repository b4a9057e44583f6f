"""The audit trail's hash chain, without storage: any alteration, removal or move of an entry
is found, and the first bad entry is named."""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from services.records.domain import audit


def trail(length: int) -> list[audit.Entry]:
    entries, previous = [], audit.GENESIS
    start = datetime.datetime(2026, 11, 27, 1, 0, tzinfo=datetime.UTC)
    for sequence in range(1, length + 1):
        entry = audit.chain(
            audit.Entry(
                sequence=sequence,
                accessed_at=start + datetime.timedelta(minutes=sequence),
                caller_id="transport" if sequence % 2 else "approvals",
                caller_name="浙江省交通运输厅",
                subject_id=f"sub_{sequence % 3}",
                subject_masked_identifier="330106********123X",
                proof_type="driving_licence",
                purpose_kind="case_id",
                purpose_value=f"case-{sequence}",
                purpose_note="",
                outcome=audit.Outcome.GRANTED if sequence % 4 else audit.Outcome.DENIED,
                proof_id=f"proof-{sequence}" if sequence % 4 else "",
                previous_hash=previous,
            )
        )
        entries.append(entry)
        previous = entry.entry_hash
    return entries


def check(entries: list[audit.Entry]) -> audit.Verification:
    hashes = {e.entry_hash for e in entries}
    return audit.verify(entries, hashes.__contains__)


def test_an_untouched_trail_is_intact_and_its_head_is_the_last_hash() -> None:
    entries = trail(10)
    result = check(entries)
    assert result.intact and result.entries_checked == 10
    assert result.head_hash == entries[-1].entry_hash
    assert check([]).intact and check([]).head_hash == audit.GENESIS


@pytest.mark.parametrize("field", ["caller_id", "subject_id", "purpose_value", "proof_id", "accessed_at", "outcome"])
@pytest.mark.parametrize("position", [0, 4, 9])
def test_altering_any_field_of_any_entry_names_that_entry(field: str, position: int) -> None:
    entries = trail(10)
    original = entries[position]
    changed = {
        "accessed_at": original.accessed_at + datetime.timedelta(seconds=1),
        "outcome": audit.Outcome.DENIED if original.outcome is audit.Outcome.GRANTED else audit.Outcome.GRANTED,
    }.get(field, "tampered")
    entries[position] = dataclasses.replace(original, **{field: changed})
    result = check(entries)
    assert result.first_break == audit.Break(position + 1, audit.BreakKind.ALTERED, result.first_break.message)  # type: ignore[union-attr]
    assert result.entries_checked == position


def test_removing_an_entry_names_the_one_after_the_gap() -> None:
    entries = trail(10)
    del entries[3]
    result = check(entries)
    assert result.first_break is not None
    assert (result.first_break.sequence, result.first_break.kind) == (5, audit.BreakKind.REMOVED)


def test_removing_the_last_entries_is_caught_only_by_the_published_head() -> None:
    entries = trail(10)
    result = check(entries[:8])
    assert result.intact and result.head_hash != entries[-1].entry_hash  # why the head is anchored


def test_swapping_two_entries_places_names_the_first_moved_one() -> None:
    # Storage returns entries by sequence, so moving two entries means swapping their sequences.
    entries = trail(10)
    a, b = entries[2], entries[3]
    entries[2] = dataclasses.replace(b, sequence=3)
    entries[3] = dataclasses.replace(a, sequence=4)
    result = check(entries)
    assert result.first_break is not None
    assert (result.first_break.sequence, result.first_break.kind) == (3, audit.BreakKind.REORDERED)


def test_rewriting_an_entry_with_a_fresh_hash_breaks_the_link_after_it() -> None:
    entries = trail(10)
    entries[4] = audit.chain(dataclasses.replace(entries[4], caller_id="someone-else"))
    result = check(entries)
    assert result.first_break is not None
    assert (result.first_break.sequence, result.first_break.kind) == (6, audit.BreakKind.REMOVED)
