"""A department feed's records as records takes them in: each is checked, then stored, refused
with a reason, or found stored already; a publish call's outcome is counted (pure)."""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass, field
from typing import NoReturn

from govmesh.parties import Party
from services.records.domain.catalogue import RecordTypeSpec, SubjectKind, Value

#: Longest reference, purpose or request id kept, and how much of a refused record's department
#: code and reference is echoed back.
MAX_TEXT = 200
#: Most rejections one PublishRecords answer lists (every one is counted).
MAX_REJECTIONS_REPORTED = 1000


class RejectionCode(enum.Enum):
    """Names equal govmesh.records.v1.RecordRejectionCode without the RECORD_REJECTION_CODE_ prefix."""

    UNKNOWN_DEPARTMENT = 1
    UNKNOWN_RECORD_TYPE = 2
    INVALID_SUBJECT = 3
    INVALID_FIELD = 4
    NOT_PERMITTED = 5
    UNKNOWN_SUPERSEDED = 6


class Refused(Exception):
    """A record refused on its own; the message starts with the field's name."""

    def __init__(self, code: RejectionCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Checked:
    """A record that passed every check that needs neither storage nor identity; its subject is
    filled in once identity has answered."""

    department: str
    spec: RecordTypeSpec
    reference: str
    fields: dict[str, Value]
    effective_from: datetime.date
    effective_to: datetime.date | None
    recorded_at: datetime.datetime | None
    supersedes: str
    subject: Party | None = None


class Duplicate:
    """A record already stored when its batch was checked."""


DUPLICATE = Duplicate()

#: What became of one record of a batch on its way in.
Outcome = Checked | Refused | Duplicate


def check_subject_kind(spec: RecordTypeSpec, kind: SubjectKind) -> None:
    if kind not in spec.subject_kinds:
        raise Refused(RejectionCode.INVALID_SUBJECT, f"subject: {spec.code!r} records are not about {kind.value}s")


@dataclass(frozen=True)
class StoredVersion:
    """The stored record a correction names."""

    record_id: str
    subject_id: str
    record_type: str
    superseded_by: str | None


def superseded_record(item: Checked, named: StoredVersion | None) -> str:
    """The id of the record a correction replaces: the same department's (the caller looked it up
    there), about the same subject, of the same type, and not replaced already (a record has one
    current version)."""
    if named is None:
        problem = "no record of this department has that reference"
    elif item.subject is None or named.subject_id != item.subject.subject_id or named.record_type != item.spec.code:
        problem = "names a record about another subject or of another record type"
    elif named.superseded_by is not None:
        replaced_already()
    else:
        return named.record_id
    raise Refused(RejectionCode.UNKNOWN_SUPERSEDED, f"supersedes_source_reference: {problem}")


def replaced_already() -> NoReturn:
    """Refuses a correction of a record that another correction replaced: found at the look-up,
    or at the write when two corrections of one record were looked up at once."""
    raise Refused(
        RejectionCode.UNKNOWN_SUPERSEDED,
        "supersedes_source_reference: names a record that a later one already replaced; correct the latest version",
    )


@dataclass(frozen=True)
class Rejection:
    index: int
    department_code: str
    source_reference: str
    code: RejectionCode
    message: str


@dataclass
class PublishSummary:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    def count(
        self, index: int, department_code: str, source_reference: str, result: Refused | Duplicate | None
    ) -> None:
        """Counts one record: stored (None), found stored already, or refused."""
        if result is None:
            self.stored += 1
        elif isinstance(result, Duplicate):
            self.duplicates += 1
        else:
            self.refuse(index, department_code, source_reference, result)

    def refuse(self, index: int, department_code: str, source_reference: str, refusal: Refused) -> None:
        self.rejected += 1
        if len(self.rejections) < MAX_REJECTIONS_REPORTED:
            self.rejections.append(
                Rejection(index, department_code[:MAX_TEXT], source_reference[:MAX_TEXT], refusal.code, refusal.message)
            )
