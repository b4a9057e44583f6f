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
    #: False for the subject a valid identifier would be registered under, not registered yet
    #: (only with resolve's allow_unregistered): no department has published anything about it.
    registered: bool = True


class Parties(Protocol):
    """Identity, as an api process reaches it. resolve() returns None for an unknown subject and
    raises InvalidArgument (naming ``field``) for an identifier identity refuses; with
    ``allow_unregistered``, a valid identifier identity has not registered yet gives the subject it
    would be registered under (the same subject id a later registration gives)."""

    def resolve(
        self, field: str, *, identifier: str = "", subject_id: str = "", allow_unregistered: bool = False
    ) -> Party | None: ...
