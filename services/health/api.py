"""Health's gRPC servicer: translates between the contract and the use cases.

Identity resolves patients (identifier or subject id) with health's own credentials; enrolment
pulls the city credit score and the medical insurance enrolment from records over its gRPC
GetProof, by subject id (health never sends an identifier on), with the legal basis
``medical_credit_enrolment`` as purpose, so each read is in records' audit trail and the patient's
data tracker."""

from __future__ import annotations

import grpc
from opentelemetry.instrumentation.grpc import client_interceptor
from opentelemetry.instrumentation.grpc.grpcext import intercept_channel

from govmesh.auth import Policy, ServiceCredentials, TokenIssuer
from govmesh.config import Settings
from govmesh.config import load as load_settings
from govmesh.db import Database
from govmesh.errors import FailedPrecondition, Unavailable
from govmesh.grpcserver import ApiDefinition, current_caller
from govmesh.health.v1 import medical_credit_pb2 as pb
from govmesh.health.v1 import medical_credit_pb2_grpc
from govmesh.identity_client import IdentityClient, PartiesOverGrpc
from govmesh.records.v1 import records_pb2, records_pb2_grpc
from govmesh.typed_values import UnreadableValue, fields_from_proto, from_proto
from services.health import metrics
from services.health.app import HealthApp, ProofClaims

#: records' answers that mean "not now" (enrolment changes nothing and may be retried); any other
#: refusal is a rights or configuration problem of the mesh, not of the caller's request.
TRANSIENT = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
)


class RecordsProofs:
    """Records' GetProof as enrolment reaches it (HealthApp's EnrolmentProofs), with health's own
    credentials. A refusal by records becomes FAILED_PRECONDITION naming the proof type and
    records' reason (health's rights in the policy are the usual cause); records not answering
    becomes UNAVAILABLE."""

    def __init__(self, target: str, credentials: ServiceCredentials, timeout: float = 5.0) -> None:
        # The client interceptor carries the trace (traceparent) from the Enroll call into records'.
        self.channel = intercept_channel(grpc.insecure_channel(target), client_interceptor())  # type: ignore[no-untyped-call]
        self.stub = records_pb2_grpc.RecordsServiceStub(self.channel)
        self.credentials = credentials
        self.timeout = timeout

    def get(self, subject_id: str, proof_type: str, legal_basis: str) -> ProofClaims:
        request = records_pb2.GetProofRequest(
            subject_id=subject_id, proof_type=proof_type, purpose=records_pb2.Purpose(legal_basis=legal_basis)
        )
        try:
            response = self.stub.GetProof(request, metadata=self.credentials.metadata(), timeout=self.timeout)
        except grpc.RpcError as error:
            code = error.code()
            if code in TRANSIENT:
                raise Unavailable(
                    f"records did not issue the {proof_type} proof ({code.name}): {error.details()}; retry later"
                ) from None
            raise FailedPrecondition(
                f"records refused the {proof_type} proof for {legal_basis} ({code.name}): {error.details()}",
                reason="PROOF_REFUSED",
            ) from None
        return ProofClaims(response.proof.proof_id, read_claims(response.proof))

    def close(self) -> None:
        self.channel.close()


def read_claims(proof: records_pb2.Proof) -> dict[str, object]:
    """The proof's claims as plain values; a claim that cannot be read is left out (absent), as
    the credit policy reads a malformed claim: it never grants credit, never fails enrolment."""
    try:
        return dict(fields_from_proto(proof.claims))
    except UnreadableValue:
        pass
    claims: dict[str, object] = {}
    for name, value in proof.claims.items():
        try:
            claims[name] = from_proto(value, name)
        except UnreadableValue:
            continue
    return claims


class MedicalCreditServicer(medical_credit_pb2_grpc.MedicalCreditServiceServicer):
    def __init__(self, health: HealthApp, parties: PartiesOverGrpc, proofs: RecordsProofs) -> None:
        self.health = health
        self.parties = parties
        self.proofs = proofs

    def Enroll(self, request: pb.EnrollRequest, context: grpc.ServicerContext) -> pb.EnrollResponse:
        response = self.health.enroll(request, current_caller(), self.parties, self.proofs)
        metrics.count_enrolment(response)
        return response

    def GetAccount(self, request: pb.GetAccountRequest, context: grpc.ServicerContext) -> pb.GetAccountResponse:
        return self.health.get_account(request, self.parties)

    def OpenVisit(self, request: pb.OpenVisitRequest, context: grpc.ServicerContext) -> pb.OpenVisitResponse:
        return self.health.open_visit(request, current_caller(), self.parties)

    def AddCharge(self, request: pb.AddChargeRequest, context: grpc.ServicerContext) -> pb.AddChargeResponse:
        response = self.health.add_charge(request)
        metrics.count_charge(response)
        return response

    def CloseVisit(self, request: pb.CloseVisitRequest, context: grpc.ServicerContext) -> pb.CloseVisitResponse:
        started = self.health.clock()
        response = self.health.close_visit(request)
        # Closing a closed visit returns its bill again: only a bill issued by this call counts.
        if response.bill.issued_at.ToDatetime(started.tzinfo) >= started:
            metrics.count_bill(response.bill)
        return response

    def GetBill(self, request: pb.GetBillRequest, context: grpc.ServicerContext) -> pb.GetBillResponse:
        return self.health.get_bill(request)

    def ListBills(self, request: pb.ListBillsRequest, context: grpc.ServicerContext) -> pb.ListBillsResponse:
        return self.health.list_bills(request, self.parties)

    def PayBill(self, request: pb.PayBillRequest, context: grpc.ServicerContext) -> pb.PayBillResponse:
        response = self.health.pay_bill(request)
        metrics.count_payment(response)
        return response

    def GetStats(self, request: pb.GetStatsRequest, context: grpc.ServicerContext) -> pb.GetStatsResponse:
        return self.health.get_stats()

    def VerifyLedger(self, request: pb.VerifyLedgerRequest, context: grpc.ServicerContext) -> pb.VerifyLedgerResponse:
        return self.health.verify_ledger()


def build(settings: Settings, db: Database) -> ApiDefinition:
    policy = Policy.load(settings.policy_path)
    credentials = ServiceCredentials(TokenIssuer.from_key_dir(policy, settings.key_dir), "health")
    health = HealthApp(db, on_events=metrics.count)
    metrics.prime()
    identity = IdentityClient(load_settings("identity").grpc_target, credentials)
    proofs = RecordsProofs(load_settings("records").grpc_target, credentials)
    servicer = MedicalCreditServicer(health, PartiesOverGrpc(identity), proofs)
    return ApiDefinition(
        service="health",
        full_name=pb.DESCRIPTOR.services_by_name["MedicalCreditService"].full_name,
        add_servicer=lambda server: medical_credit_pb2_grpc.add_MedicalCreditServiceServicer_to_server(
            servicer, server
        ),
    )
