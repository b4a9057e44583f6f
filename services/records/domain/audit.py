"""The audit trail's hash chain: every read of personal data, allowed or refused, is an entry
whose hash covers its content and the previous entry's hash, so altering, removing or moving an
entry breaks the chain at that point (docs/decisions/records-audit-hash-chain.md). Pure: no
storage, no clock."""

from __future__ import annotations

import datetime
import enum
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import rfc8785

GENESIS = bytes(32)


class Outcome(enum.Enum):
    GRANTED = "granted"
    DENIED = "denied"


class BreakKind(enum.Enum):
    ALTERED = "altered"
    REMOVED = "removed"
    REORDERED = "reordered"


@dataclass(frozen=True)
class Entry:
    sequence: int
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
    previous_hash: bytes
    entry_hash: bytes = b""

    def content(self) -> bytes:
        """What the hash covers: every field but the hash itself, canonically encoded."""
        return bytes(
            rfc8785.dumps(
                {
                    "sequence": self.sequence,
                    "accessed_at": self.accessed_at.astimezone(datetime.UTC).isoformat(timespec="microseconds"),
                    "caller_id": self.caller_id,
                    "caller_name": self.caller_name,
                    "subject_id": self.subject_id,
                    "subject_masked_identifier": self.subject_masked_identifier,
                    "proof_type": self.proof_type,
                    "purpose": [self.purpose_kind, self.purpose_value, self.purpose_note],
                    "outcome": self.outcome.value,
                    "proof_id": self.proof_id,
                    "previous_hash": self.previous_hash.hex(),
                }
            )
        )

    def computed_hash(self) -> bytes:
        return hashlib.sha256(self.content()).digest()


def chain(entry: Entry) -> Entry:
    """The entry with its hash filled in (its previous_hash must already be set)."""
    return Entry(**{**entry.__dict__, "entry_hash": entry.computed_hash()})


@dataclass(frozen=True)
class Break:
    sequence: int
    kind: BreakKind
    message: str


@dataclass(frozen=True)
class Verification:
    entries_checked: int
    head_hash: bytes
    first_break: Break | None

    @property
    def intact(self) -> bool:
        return self.first_break is None


def verify(entries: Iterable[Entry], hash_exists: Callable[[bytes], bool]) -> Verification:
    """Walk the chain in stored order (by sequence) and name the first entry that does not hold.

    `hash_exists` tells whether some stored entry has a given hash: it tells an entry moved
    from its place (its previous hash names another entry) from one whose predecessor is gone."""
    previous_hash, expected_sequence, checked = GENESIS, 1, 0
    for entry in entries:
        found: Break | None = None
        if entry.sequence != expected_sequence:
            found = Break(
                entry.sequence,
                BreakKind.REMOVED if entry.sequence > expected_sequence else BreakKind.REORDERED,
                f"expected entry {expected_sequence} here, found entry {entry.sequence}",
            )
        elif entry.previous_hash != previous_hash:
            moved = hash_exists(entry.previous_hash)
            found = Break(
                entry.sequence,
                BreakKind.REORDERED if moved else BreakKind.REMOVED,
                "its previous hash names another entry of the trail"
                if moved
                else "its previous hash names no entry: the entry before it was removed or replaced",
            )
        elif entry.computed_hash() != entry.entry_hash:
            found = Break(entry.sequence, BreakKind.ALTERED, "its content no longer matches its hash")
        if found is not None:
            return Verification(checked, previous_hash, found)
        previous_hash, expected_sequence, checked = entry.entry_hash, entry.sequence + 1, checked + 1
    return Verification(checked, previous_hash, None)


def against_head(verification: Verification, head_sequence: int, head_hash: bytes) -> Verification:
    """The walk's verdict checked against the trail's head: a chain that holds but ends before
    the head says it does lost its newest entries."""
    if not verification.intact or (head_sequence, head_hash) == (verification.entries_checked, verification.head_hash):
        return verification
    return Verification(
        verification.entries_checked,
        verification.head_hash,
        Break(
            verification.entries_checked + 1,
            BreakKind.REMOVED,
            f"the trail ends at entry {verification.entries_checked}, its head says {head_sequence}",
        ),
    )
