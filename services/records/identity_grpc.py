"""Identity's gRPC api as records' api process reaches it (never imported by the worker)."""

from __future__ import annotations

from govmesh.auth import ServiceCredentials
from govmesh.identity.v1 import identity_pb2
from govmesh.identity_client import IdentifierRefused, IdentityClient
from services.records.subjects import KINDS, InvalidSubject, SubjectRef


def _ref(subject: identity_pb2.Subject) -> SubjectRef:
    return SubjectRef(subject.subject_id, subject.masked_identifier, KINDS[subject.kind])


class IdentityOverGrpc:
    """Identity's gRPC api, called with records' own credentials."""

    def __init__(self, target: str, credentials: ServiceCredentials, timeout: float = 5.0) -> None:
        self.client = IdentityClient(target, credentials, timeout)

    def register(self, identifier: str, display_name: str) -> SubjectRef:
        try:
            return _ref(self.client.register(identifier, display_name))
        except IdentifierRefused as exc:
            raise InvalidSubject(str(exc)) from None

    def resolve(self, *, identifier: str = "", subject_id: str = "") -> SubjectRef | None:
        try:
            subject = self.client.resolve(identifier=identifier, subject_id=subject_id)
        except IdentifierRefused as exc:
            raise InvalidSubject(str(exc)) from None
        return None if subject is None else _ref(subject)

    def close(self) -> None:
        self.client.close()
