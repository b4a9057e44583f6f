"""The parties of a service's requests as identity knows them: a pseudonymous subject id, the
masked identifier and the kind. Services resolve identifiers through identity and keep only these.
(Plain Python, no grpc: workers import it too.)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from govmesh.identity.v1 import identity_pb2


@dataclass(frozen=True)
class Party:
    """A subject as identity knows it."""

    subject_id: str
    masked_identifier: str
    kind: identity_pb2.SubjectKind.ValueType


class Parties(Protocol):
    """Identity, as an api process reaches it. resolve() returns None for an unknown subject and
    raises InvalidArgument (naming ``field``) for an identifier identity refuses."""

    def resolve(self, field: str, *, identifier: str = "", subject_id: str = "") -> Party | None: ...
