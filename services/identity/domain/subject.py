"""A subject as identity keeps it: the pseudonymous id every other service knows it by, never the
raw identifier (which only identity's own table holds)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from govmesh.errors import InvalidArgument
from services.identity.domain.identifiers import IdentifierKind

MAX_DISPLAY_NAME = 200


@dataclass(frozen=True)
class Subject:
    subject_id: str
    kind: IdentifierKind
    masked_identifier: str
    display_name: str
    #: None for the subject an unregistered identifier would be.
    created_at: datetime.datetime | None


def display_name(raw: str) -> str:
    """The name as it is kept: white space collapsed; INVALID_ARGUMENT naming display_name when
    nothing is left or it is too long."""
    name = " ".join(raw.split())
    if not name:
        raise InvalidArgument("display_name", "EMPTY", "must not be empty")
    if len(name) > MAX_DISPLAY_NAME:
        raise InvalidArgument("display_name", "TOO_LONG", f"is {len(name)} characters; at most {MAX_DISPLAY_NAME}")
    return name
