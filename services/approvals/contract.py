"""Approvals' contract and records' and identity's, as approvals reads them, to domain values and
back. Values only: never a session or a query."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass

from govmesh import enums, typed_values
from govmesh.approvals.v1 import approvals_pb2 as pb
from govmesh.identity.v1 import identity_pb2
from govmesh.parties import Party
from govmesh.records.v1 import records_pb2
from services.approvals.domain.casetypes import ApplicantKind, CaseTypeSpec, ParameterType, ProofTypeInfo
from services.approvals.domain.saga import Department, Proof, ProofRequest


@dataclass(frozen=True)
class Catalogue:
    """Records' catalogue, as the case types are checked against it: its proof types by code
    (ListProofTypes) and its departments by code (ListDepartments)."""

    proof_types: Mapping[str, ProofTypeInfo]
    departments: Mapping[str, Department]


def catalogue(
    proof_types: records_pb2.ListProofTypesResponse, departments: records_pb2.ListDepartmentsResponse
) -> Catalogue:
    return Catalogue(
        proof_types={
            p.code: ProofTypeInfo(
                claim_names=frozenset(p.claim_names),
                parameter_names=frozenset(parameter.name for parameter in p.parameters),
                department_codes=frozenset(p.department_codes),
                subject_kinds=frozenset(kind.value for k in p.subject_kinds if (kind := subject_kind(k)) is not None),
            )
            for p in proof_types.proof_types
        },
        departments={d.code: Department(d.code, d.name_zh, d.name_en) for d in departments.departments},
    )


def subject_kind(kind: identity_pb2.SubjectKind.ValueType) -> ApplicantKind | None:
    """The kind of a subject, as case types name applicants' (None for one they do not name)."""
    return enums.from_proto(ApplicantKind, identity_pb2.SubjectKind, "SUBJECT_KIND_", kind)


def party_kind(party: Party) -> ApplicantKind | None:
    return subject_kind(party.kind)


def case_type_to_proto(spec: CaseTypeSpec) -> pb.CaseType:
    return pb.CaseType(
        code=spec.code,
        version=spec.version,
        name_zh=spec.name_zh,
        name_en=spec.name_en,
        applicant_kind=identity_pb2.SubjectKind.ValueType(
            enums.to_proto(identity_pb2.SubjectKind, "SUBJECT_KIND_", spec.applicant_kind)
        ),
        parameters=[
            pb.ParameterSpec(
                name=p.name,
                type=parameter_type(p.type),
                required=p.required,
                description_zh=p.description_zh,
                description_en=p.description_en,
            )
            for p in spec.parameters
        ],
        proofs=[
            pb.RequiredProof(
                proof_type=p.proof_type,
                department_code=p.department_code,
                subject=p.subject,
                parameters=dict(p.parameters),
            )
            for p in spec.proofs
        ],
        rules=[
            pb.RuleSpec(
                rule_id=r.rule_id,
                department_code=r.department_code,
                description_zh=r.description_zh,
                description_en=r.description_en,
            )
            for r in spec.rules
        ],
        sign_off_department_codes=list(spec.sign_off_department_codes),
        review_steps=[
            pb.ReviewStepSpec(
                department_code=r.department_code, instructions_zh=r.instructions_zh, instructions_en=r.instructions_en
            )
            for r in spec.review_steps
        ],
        deadline_working_days=spec.deadline_working_days,
        held_parameters=list(spec.holds),
    )


def parameter_type(kind: ParameterType) -> pb.ParameterType.ValueType:
    return pb.ParameterType.ValueType(enums.to_proto(pb.ParameterType, "PARAMETER_TYPE_", kind))


def proof_request(request: ProofRequest) -> records_pb2.GetProofRequest:
    return records_pb2.GetProofRequest(
        subject_id=request.subject_id,
        proof_type=request.proof_type,
        purpose=records_pb2.Purpose(case_id=request.case_id, note=request.note),
        parameters=dict(request.parameters),
        request_id=request.request_id,
    )


def proof(answer: records_pb2.Proof) -> Proof:
    return Proof(
        proof_id=answer.proof_id,
        proof_type=answer.proof_type,
        subject_id=answer.subject_id,
        issuing_department_code=answer.issuing_department_code,
        issued_at=answer.issued_at.ToDatetime(datetime.UTC),
        valid_until=answer.valid_until.ToDatetime(datetime.UTC),
        claims=typed_values.fields_from_proto(answer.claims),
    )
