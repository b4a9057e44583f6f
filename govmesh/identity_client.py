"""Identity's gRPC api as other services' api processes reach it (never a worker: grpcio and
eventlet do not mix), with the calling service's own credentials, remembering the answers that
can never change."""

from __future__ import annotations

import collections
import hashlib
import os
import threading

import grpc
from opentelemetry.instrumentation.grpc import client_interceptor
from opentelemetry.instrumentation.grpc.grpcext import intercept_channel

from govmesh.auth import ServiceCredentials
from govmesh.errors import InvalidArgument, Unavailable
from govmesh.identity.v1 import identity_pb2, identity_pb2_grpc
from govmesh.parties import Party


class IdentifierRefused(Exception):
    """Identity refused the identifier (INVALID_ARGUMENT); the message says why and never
    contains the identifier."""


#: How many lookups an api process remembers (about 200 bytes each).
KNOWN_SUBJECTS = 100_000


class KnownSubjects:
    """Identity's answers that can never change, so that a busy api asks identity once per
    person rather than once per call (records' GetProof spent 40% of its time waiting on it).

    A registered subject is never changed or removed (identity registers idempotently and has
    no other write), so its answer holds for ever. The would-be subject of an unregistered
    identifier (ResolveSubject with allow_unregistered) holds for callers that accept one, but
    not for those that need a registration, which may since have happened: they ask again.
    Refusals and "not found" are never kept. Keys are a keyed hash of the identifier under a
    key of this process, so the cache holds no identifier. Thread-safe, least recently used
    out first."""

    def __init__(self, size: int = KNOWN_SUBJECTS) -> None:
        self.size = size
        self._salt = os.urandom(16)
        self._answers: collections.OrderedDict[bytes, tuple[identity_pb2.Subject, bool]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def _key(self, identifier: str, subject_id: str) -> bytes:
        kind, value = (b"identifier", identifier) if identifier else (b"subject_id", subject_id)
        return hashlib.blake2b(value.encode(), key=self._salt, person=kind, digest_size=16).digest()

    def get(self, identifier: str, subject_id: str, allow_unregistered: bool) -> identity_pb2.Subject | None:
        key = self._key(identifier, subject_id)
        with self._lock:
            found = self._answers.get(key)
            if found is None or not (found[1] or allow_unregistered):
                return None
            self._answers.move_to_end(key)
            return found[0]

    def keep(self, identifier: str, subject_id: str, subject: identity_pb2.Subject, registered: bool) -> None:
        key = self._key(identifier, subject_id)
        with self._lock:
            self._answers[key] = (subject, registered)
            self._answers.move_to_end(key)
            while len(self._answers) > self.size:
                self._answers.popitem(last=False)


class IdentityClient:
    def __init__(
        self, target: str, credentials: ServiceCredentials, timeout: float = 5.0, known: KnownSubjects | None = None
    ) -> None:
        # The client interceptor carries the trace (traceparent) from the caller's call into identity's.
        self.channel = intercept_channel(grpc.insecure_channel(target), client_interceptor())  # type: ignore[no-untyped-call]
        self.stub = identity_pb2_grpc.IdentityServiceStub(self.channel)
        self.credentials = credentials
        self.timeout = timeout
        self.known = known if known is not None else KnownSubjects()

    def _call(self, method: str, request: object) -> object | None:
        try:
            answer: object = getattr(self.stub, method)(
                request, metadata=self.credentials.metadata(), timeout=self.timeout
            )
            return answer
        except grpc.RpcError as error:
            code = error.code()
            if code == grpc.StatusCode.NOT_FOUND:
                return None
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                raise IdentifierRefused(error.details()) from None
            raise Unavailable(f"identity did not answer ({code.name}): {error.details()}") from None

    def register(self, identifier: str, display_name: str) -> identity_pb2.Subject:
        request = identity_pb2.RegisterSubjectRequest(identifier=identifier, display_name=display_name)
        response = self._call("RegisterSubject", request)
        assert isinstance(response, identity_pb2.RegisterSubjectResponse)
        self.known.keep(identifier, "", response.subject, registered=True)
        return response.subject

    def resolve(
        self, *, identifier: str = "", subject_id: str = "", allow_unregistered: bool = False
    ) -> identity_pb2.Subject | None:
        """The subject, or None when identity knows no such subject (with allow_unregistered,
        an unregistered identifier's would-be subject)."""
        known = self.known.get(identifier, subject_id, allow_unregistered)
        if known is not None:
            return known
        if identifier:
            request = identity_pb2.ResolveSubjectRequest(identifier=identifier, allow_unregistered=allow_unregistered)
        else:
            request = identity_pb2.ResolveSubjectRequest(subject_id=subject_id, allow_unregistered=allow_unregistered)
        response = self._call("ResolveSubject", request)
        if response is None:
            return None
        assert isinstance(response, identity_pb2.ResolveSubjectResponse)
        self.known.keep(identifier, subject_id, response.subject, registered=not response.unregistered)
        return response.subject

    def close(self) -> None:
        self.channel.close()


class PartiesOverGrpc:
    """Identity as the Parties of a use case (govmesh.parties): identity's refusal of an
    identifier becomes INVALID_ARGUMENT naming the request's field."""

    def __init__(self, identity: IdentityClient) -> None:
        self.identity = identity

    def resolve(self, field: str, *, identifier: str = "", subject_id: str = "") -> Party | None:
        try:
            subject = self.identity.resolve(identifier=identifier, subject_id=subject_id)
        except IdentifierRefused as exc:
            raise InvalidArgument(field, "INVALID_IDENTIFIER", str(exc).removeprefix("identifier: ")) from None
        if subject is None:
            return None
        return Party(subject.subject_id, subject.masked_identifier, subject.kind)
