"""Who a record or a proof is about, as identity knows them. Records never keeps a raw
identifier: it asks identity for the pseudonymous subject id and forgets the identifier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from govmesh.identity.v1 import identity_pb2
from services.records.catalogue import SubjectKind

KINDS = {
    identity_pb2.SUBJECT_KIND_RESIDENT: SubjectKind.RESIDENT,
    identity_pb2.SUBJECT_KIND_ENTERPRISE: SubjectKind.ENTERPRISE,
}
KIND_TO_PROTO = {kind: value for value, kind in KINDS.items()}


@dataclass(frozen=True)
class SubjectRef:
    subject_id: str
    masked_identifier: str
    kind: SubjectKind


class InvalidSubject(Exception):
    """Identity refused the identifier; the message says why and never contains it."""


class Subjects(Protocol):
    def register(self, identifier: str, display_name: str) -> SubjectRef: ...

    def resolve(self, *, identifier: str = "", subject_id: str = "") -> SubjectRef | None: ...
