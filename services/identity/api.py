"""Identity's gRPC servicer: translates between the contract and the use cases, nothing more."""

from __future__ import annotations

import grpc

from govmesh.config import Settings
from govmesh.db import Database
from govmesh.grpcserver import ApiDefinition
from govmesh.identity.v1 import identity_pb2, identity_pb2_grpc
from services.identity import bootstrap, contract
from services.identity.app import IdentityApp
from services.identity.metrics import REGISTRATIONS, VALIDATIONS, count_registration, count_registrations

__all__ = ["REGISTRATIONS", "VALIDATIONS", "IdentityServicer", "build"]


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, app: IdentityApp) -> None:
        self.app = app

    def ValidateIdentifier(
        self, request: identity_pb2.ValidateIdentifierRequest, context: grpc.ServicerContext
    ) -> identity_pb2.ValidateIdentifierResponse:
        validation = self.app.validate(request.identifier)
        VALIDATIONS.labels(validation.kind.value if validation.kind else "unknown", str(validation.valid).lower()).inc()
        return contract.validation_to_proto(validation)

    def RegisterSubject(
        self, request: identity_pb2.RegisterSubjectRequest, context: grpc.ServicerContext
    ) -> identity_pb2.RegisterSubjectResponse:
        subject, created = self.app.register(request.identifier, request.display_name)
        count_registration(subject, created)
        return contract.registration_to_proto((subject, created))

    def RegisterSubjects(
        self, request: identity_pb2.RegisterSubjectsRequest, context: grpc.ServicerContext
    ) -> identity_pb2.RegisterSubjectsResponse:
        outcomes = self.app.register_many([(item.identifier, item.display_name) for item in request.subjects])
        count_registrations(outcomes)
        return contract.registrations_to_proto(outcomes)

    def ResolveSubject(
        self, request: identity_pb2.ResolveSubjectRequest, context: grpc.ServicerContext
    ) -> identity_pb2.ResolveSubjectResponse:
        subject, registered = self.app.resolve_or_pseudonym(
            identifier=request.identifier, subject_id=request.subject_id, allow=request.allow_unregistered
        )
        return identity_pb2.ResolveSubjectResponse(
            subject=contract.subject_to_proto(subject), unregistered=not registered
        )


def build(settings: Settings, db: Database) -> ApiDefinition:
    servicer = IdentityServicer(bootstrap.build(settings, db, "api").identity)
    return ApiDefinition(
        service="identity",
        full_name=identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name,
        add_servicer=lambda server: identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server),
    )
