"""A subject as identity keeps it: the pseudonymous id every other service knows it by, never the
raw identifier (which only identity's own table holds)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from services.identity.domain.identifiers import IdentifierKind


@dataclass(frozen=True)
class Subject:
    subject_id: str
    kind: IdentifierKind
    masked_identifier: str
    display_name: str
    #: None for the subject an unregistered identifier would be.
    created_at: datetime.datetime | None


#: A registration's answer: the subject, and whether that registration created it.
Registration = tuple[Subject, bool]
