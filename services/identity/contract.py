"""Identity's contract: domain values to protobuf messages (answers and events), values only."""

from __future__ import annotations

from collections.abc import Sequence

from govmesh import clock, enums
from govmesh.errors import InvalidArgument
from govmesh.identity.v1 import events_pb2, identity_pb2
from services.identity import domain


def kind_to_proto(kind: domain.IdentifierKind) -> identity_pb2.SubjectKind.ValueType:
    return identity_pb2.SubjectKind.ValueType(enums.to_proto(identity_pb2.SubjectKind, "SUBJECT_KIND_", kind))


def subject_to_proto(subject: domain.Subject) -> identity_pb2.Subject:
    return identity_pb2.Subject(
        subject_id=subject.subject_id,
        kind=kind_to_proto(subject.kind),
        masked_identifier=subject.masked_identifier,
        display_name=subject.display_name,
        created_at=clock.timestamp(subject.created_at),
    )


def registration_to_proto(registration: domain.Registration) -> identity_pb2.RegisterSubjectResponse:
    subject, created = registration
    return identity_pb2.RegisterSubjectResponse(subject=subject_to_proto(subject), created=created)


def registrations_to_proto(
    outcomes: Sequence[domain.Registration | InvalidArgument],
) -> identity_pb2.RegisterSubjectsResponse:
    """A batch's answers in its order: each registration, or the item's refusal by index."""
    results = []
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, InvalidArgument):
            refusal = identity_pb2.RegistrationRefusal(
                index=index, field=outcome.field, reason=outcome.reason, message=outcome.message
            )
            results.append(identity_pb2.RegisterSubjectsResult(refused=refusal))
        else:
            results.append(identity_pb2.RegisterSubjectsResult(registered=registration_to_proto(outcome)))
    return identity_pb2.RegisterSubjectsResponse(results=results)


def subject_registered(subject: domain.Subject) -> events_pb2.SubjectRegistered:
    assert subject.created_at is not None, "only a registered subject is announced"
    return events_pb2.SubjectRegistered(
        subject_id=subject.subject_id,
        kind=kind_to_proto(subject.kind),
        masked_identifier=subject.masked_identifier,
        registered_at=clock.timestamp(subject.created_at),
    )


def validation_to_proto(v: domain.Validation) -> identity_pb2.ValidateIdentifierResponse:
    response = identity_pb2.ValidateIdentifierResponse(
        valid=v.valid,
        kind=kind_to_proto(v.kind) if v.kind else identity_pb2.SUBJECT_KIND_UNSPECIFIED,
        normalized=v.normalized,
        problems=[
            identity_pb2.Problem(
                code=identity_pb2.ProblemCode.ValueType(
                    enums.to_proto(identity_pb2.ProblemCode, "PROBLEM_CODE_", p.code)
                ),
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
                sex=identity_pb2.Sex.ValueType(enums.to_proto(identity_pb2.Sex, "SEX_", v.resident.sex)),
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
