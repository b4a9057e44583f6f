"""Records' catalogue as the contract describes it (ListDepartments, ListProofTypes), for the
gRPC api and for other services' workers over RPC alike."""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration

from govmesh.records.v1 import records_pb2
from services.records import catalogue, proofs
from services.records.subjects import KIND_TO_PROTO


def department_to_proto(spec: catalogue.DepartmentSpec) -> records_pb2.Department:
    return records_pb2.Department(
        code=spec.code,
        name_zh=spec.name_zh,
        name_en=spec.name_en,
        record_types=[
            records_pb2.RecordType(
                code=rt.code,
                name_zh=rt.name_zh,
                name_en=rt.name_en,
                subject_kinds=sorted(KIND_TO_PROTO[k] for k in rt.subject_kinds),
            )
            for rt in spec.record_types
        ],
    )


def proof_type_to_proto(spec: proofs.ProofTypeSpec) -> records_pb2.ProofType:
    validity = Duration()
    validity.FromTimedelta(spec.validity)
    return records_pb2.ProofType(
        code=spec.code,
        name_zh=spec.name_zh,
        name_en=spec.name_en,
        description=spec.description,
        department_codes=list(spec.department_codes),
        subject_kinds=sorted(KIND_TO_PROTO[k] for k in spec.subject_kinds),
        parameters=[
            records_pb2.ProofParameter(
                name=p.name,
                description_zh=p.description_zh,
                description_en=p.description_en,
                required=p.required,
                default_value=p.default,
            )
            for p in spec.parameters
        ],
        validity=validity,
        claim_names=list(spec.claim_names),
    )


def departments() -> records_pb2.ListDepartmentsResponse:
    return records_pb2.ListDepartmentsResponse(departments=[department_to_proto(d) for d in catalogue.DEPARTMENTS])


def proof_types() -> records_pb2.ListProofTypesResponse:
    return records_pb2.ListProofTypesResponse(proof_types=[proof_type_to_proto(p) for p in proofs.PROOF_TYPES])
