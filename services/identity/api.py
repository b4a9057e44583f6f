"""Identity's gRPC servicer: translates between the contract and the use cases, nothing more."""

from __future__ import annotations

import grpc
from prometheus_client import Counter

from govmesh.config import Settings
from govmesh.db import Database
from govmesh.grpcserver import ApiDefinition
from govmesh.identity.v1 import identity_pb2, identity_pb2_grpc
from services.identity import app, domain
from services.identity.app import KIND_TO_PROTO, IdentityApp

VALIDATIONS = Counter(
    "govmesh_identity_validations_total", "Identifiers validated, by kind read and outcome.", ["kind", "valid"]
)
REGISTRATIONS = Counter(
    "govmesh_identity_registrations_total", "RegisterSubject calls, by kind and whether new.", ["kind", "created"]
)

SEX_TO_PROTO = {domain.Sex.MALE: identity_pb2.SEX_MALE, domain.Sex.FEMALE: identity_pb2.SEX_FEMALE}


def validation_to_proto(v: domain.Validation) -> identity_pb2.ValidateIdentifierResponse:
    response = identity_pb2.ValidateIdentifierResponse(
        valid=v.valid,
        kind=KIND_TO_PROTO[v.kind] if v.kind else identity_pb2.SUBJECT_KIND_UNSPECIFIED,
        normalized=v.normalized,
        problems=[
            identity_pb2.Problem(
                code=identity_pb2.ProblemCode.Value(f"PROBLEM_CODE_{p.code.name}"),
                message=p.message,
                position=p.position,
            )
            for p in v.problems
        ],
        converted_from_legacy=v.converted_from_legacy,
        masked=v.masked,
    )
    if v.resident is not None:
        response.resident.CopyFrom(
            identity_pb2.ResidentFacts(
                birth_date=v.resident.birth_date.isoformat(),
                sex=SEX_TO_PROTO[v.resident.sex],
                region_code=v.resident.region_code,
                region_name=v.resident.region_name,
            )
        )
    if v.enterprise is not None:
        e = v.enterprise
        response.enterprise.CopyFrom(
            identity_pb2.EnterpriseFacts(
                registration_authority_code=e.registration_authority_code,
                registration_authority_name=e.registration_authority_name,
                entity_type_code=e.entity_type_code,
                entity_type_name=e.entity_type_name,
                region_code=e.region_code,
                region_name=e.region_name,
                organization_code=e.organization_code,
            )
        )
    return response


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, app: IdentityApp) -> None:
        self.app = app

    def ValidateIdentifier(
        self, request: identity_pb2.ValidateIdentifierRequest, context: grpc.ServicerContext
    ) -> identity_pb2.ValidateIdentifierResponse:
        validation = self.app.validate(request.identifier)
        VALIDATIONS.labels(validation.kind.value if validation.kind else "unknown", str(validation.valid).lower()).inc()
        return validation_to_proto(validation)

    def RegisterSubject(
        self, request: identity_pb2.RegisterSubjectRequest, context: grpc.ServicerContext
    ) -> identity_pb2.RegisterSubjectResponse:
        subject, created = self.app.register(request.identifier, request.display_name)
        REGISTRATIONS.labels(subject.kind.value, str(created).lower()).inc()
        return identity_pb2.RegisterSubjectResponse(subject=subject.to_proto(), created=created)

    def ResolveSubject(
        self, request: identity_pb2.ResolveSubjectRequest, context: grpc.ServicerContext
    ) -> identity_pb2.ResolveSubjectResponse:
        subject = self.app.resolve(identifier=request.identifier, subject_id=request.subject_id)
        return identity_pb2.ResolveSubjectResponse(subject=subject.to_proto())


def build(settings: Settings, db: Database) -> ApiDefinition:
    servicer = IdentityServicer(app.build(settings, db))
    return ApiDefinition(
        service="identity",
        full_name=identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name,
        add_servicer=lambda server: identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server),
    )
