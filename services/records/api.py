"""Records' gRPC servicer: translates between the contract and the use cases."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from govmesh.config import Settings
from govmesh.db import Database
from govmesh.errors import ServiceError
from govmesh.grpcserver import ApiDefinition, current_caller
from govmesh.records.v1 import records_pb2, records_pb2_grpc
from services.records import bootstrap, contract
from services.records.app import RecordsApp
from services.records.clients import IdentityOverGrpc
from services.records.domain import proofs
from services.records.metrics import PAPER_AVOIDED, PROOFS, count_ingest


class RecordsServicer(records_pb2_grpc.RecordsServiceServicer):
    def __init__(self, records: RecordsApp, identity: IdentityOverGrpc) -> None:
        self.records = records
        self.identity = identity
        self.departments = contract.departments()
        self.proof_types = contract.proof_types()

    def ListDepartments(
        self, request: records_pb2.ListDepartmentsRequest, context: grpc.ServicerContext
    ) -> records_pb2.ListDepartmentsResponse:
        return self.departments

    def ListProofTypes(
        self, request: records_pb2.ListProofTypesRequest, context: grpc.ServicerContext
    ) -> records_pb2.ListProofTypesResponse:
        return self.proof_types

    def PublishRecords(
        self, request_iterator: Iterator[records_pb2.PublishRecordsRequest], context: grpc.ServicerContext
    ) -> records_pb2.PublishRecordsResponse:
        batches = (batch.records for batch in request_iterator)
        summary = self.records.publish(batches, current_caller(), "grpc", self.identity)
        count_ingest(summary, "grpc")
        return contract.publish_response(summary)

    def GetProof(
        self, request: records_pb2.GetProofRequest, context: grpc.ServicerContext
    ) -> records_pb2.GetProofResponse:
        caller = current_caller()
        proof_type = request.proof_type if proofs.proof_type(request.proof_type) else "unknown"
        try:
            proof = self.records.get_proof(request, caller, self.identity)
        except ServiceError as exc:
            if exc.status == "PERMISSION_DENIED":
                PROOFS.labels(proof_type, caller.caller_id, "refused").inc()
            raise
        PROOFS.labels(proof_type, caller.caller_id, "issued").inc()
        PAPER_AVOIDED.inc()
        return records_pb2.GetProofResponse(proof=proof)

    def VerifyProof(
        self, request: records_pb2.VerifyProofRequest, context: grpc.ServicerContext
    ) -> records_pb2.VerifyProofResponse:
        return self.records.verify_proof(request.proof)

    def ListSigningKeys(
        self, request: records_pb2.ListSigningKeysRequest, context: grpc.ServicerContext
    ) -> records_pb2.ListSigningKeysResponse:
        return records_pb2.ListSigningKeysResponse(keys=[k.to_proto() for k in self.records.signing_keys().values()])

    def ListAccesses(
        self, request: records_pb2.ListAccessesRequest, context: grpc.ServicerContext
    ) -> records_pb2.ListAccessesResponse:
        return self.records.list_accesses(request, self.identity)

    def VerifyAuditTrail(
        self, request: records_pb2.VerifyAuditTrailRequest, context: grpc.ServicerContext
    ) -> records_pb2.VerifyAuditTrailResponse:
        return self.records.verify_audit_trail()

    def GetTreeHead(
        self, request: records_pb2.GetTreeHeadRequest, context: grpc.ServicerContext
    ) -> records_pb2.GetTreeHeadResponse:
        return self.records.tree_head(request)

    def GetConsistencyProof(
        self, request: records_pb2.GetConsistencyProofRequest, context: grpc.ServicerContext
    ) -> records_pb2.GetConsistencyProofResponse:
        return self.records.consistency_proof(request)


def build(settings: Settings, db: Database) -> ApiDefinition:
    parts = bootstrap.build(settings, db, "api")
    assert isinstance(parts.identity, IdentityOverGrpc)
    servicer = RecordsServicer(parts.records, parts.identity)
    return ApiDefinition(
        service="records",
        full_name=records_pb2.DESCRIPTOR.services_by_name["RecordsService"].full_name,
        add_servicer=lambda server: records_pb2_grpc.add_RecordsServiceServicer_to_server(servicer, server),
        # GetProof checks the caller's right itself: a caller with none is refused there, on the
        # subject's access log, like any other refused read.
        authorized_inside=frozenset({"GetProof"}),
    )
