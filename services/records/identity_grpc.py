"""Identity's gRPC api as records' api process reaches it (never imported by the worker)."""

from __future__ import annotations

import grpc
from opentelemetry.instrumentation.grpc import client_interceptor
from opentelemetry.instrumentation.grpc.grpcext import intercept_channel

from govmesh.auth import ServiceCredentials
from govmesh.errors import Unavailable
from govmesh.identity.v1 import identity_pb2, identity_pb2_grpc
from services.records.subjects import KINDS, InvalidSubject, SubjectRef


def _ref(subject: identity_pb2.Subject) -> SubjectRef:
    return SubjectRef(subject.subject_id, subject.masked_identifier, KINDS[subject.kind])


class IdentityOverGrpc:
    """Identity's gRPC api, called with records' own credentials."""

    def __init__(self, target: str, credentials: ServiceCredentials, timeout: float = 5.0) -> None:
        # The client interceptor carries the trace (traceparent) from records' call into identity's.
        self.channel = intercept_channel(grpc.insecure_channel(target), client_interceptor())  # type: ignore[no-untyped-call]
        self.stub = identity_pb2_grpc.IdentityServiceStub(self.channel)
        self.credentials = credentials
        self.timeout = timeout

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
                raise InvalidSubject(error.details()) from None
            raise Unavailable(f"identity did not answer ({code.name}): {error.details()}") from None

    def register(self, identifier: str, display_name: str) -> SubjectRef:
        request = identity_pb2.RegisterSubjectRequest(identifier=identifier, display_name=display_name)
        response = self._call("RegisterSubject", request)
        assert isinstance(response, identity_pb2.RegisterSubjectResponse)
        return _ref(response.subject)

    def resolve(self, *, identifier: str = "", subject_id: str = "") -> SubjectRef | None:
        if identifier:
            request = identity_pb2.ResolveSubjectRequest(identifier=identifier)
        else:
            request = identity_pb2.ResolveSubjectRequest(subject_id=subject_id)
        response = self._call("ResolveSubject", request)
        return None if response is None else _ref(response.subject)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.channel.close()
