"""Health's gRPC servicer: translates between the contract and the use cases (the clients of
identity and records it hands them are bootstrap's)."""

from __future__ import annotations

import grpc

from govmesh.config import Settings
from govmesh.db import Database
from govmesh.grpcserver import ApiDefinition, current_caller
from govmesh.health.v1 import medical_credit_pb2 as pb
from govmesh.health.v1 import medical_credit_pb2_grpc
from govmesh.parties import Parties
from services.health import bootstrap, metrics
from services.health.app import EnrolmentProofs, HealthApp


class MedicalCreditServicer(medical_credit_pb2_grpc.MedicalCreditServiceServicer):
    def __init__(self, health: HealthApp, parties: Parties, proofs: EnrolmentProofs) -> None:
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
        response = self.health.add_charge(request, current_caller())
        metrics.count_charge(response)
        return response

    def CloseVisit(self, request: pb.CloseVisitRequest, context: grpc.ServicerContext) -> pb.CloseVisitResponse:
        started = self.health.clock()
        response = self.health.close_visit(request, current_caller())
        # Closing a closed visit returns its bill again: only a bill issued by this call counts.
        if response.bill.issued_at.ToDatetime(started.tzinfo) >= started:
            metrics.count_bill(response.bill)
        return response

    def GetBill(self, request: pb.GetBillRequest, context: grpc.ServicerContext) -> pb.GetBillResponse:
        return self.health.get_bill(request, current_caller())

    def ListBills(self, request: pb.ListBillsRequest, context: grpc.ServicerContext) -> pb.ListBillsResponse:
        return self.health.list_bills(request, current_caller(), self.parties)

    def PayBill(self, request: pb.PayBillRequest, context: grpc.ServicerContext) -> pb.PayBillResponse:
        response = self.health.pay_bill(request)
        metrics.count_payment(response)
        return response

    def GetStats(self, request: pb.GetStatsRequest, context: grpc.ServicerContext) -> pb.GetStatsResponse:
        return self.health.get_stats()

    def VerifyLedger(self, request: pb.VerifyLedgerRequest, context: grpc.ServicerContext) -> pb.VerifyLedgerResponse:
        return self.health.verify_ledger()


def build(settings: Settings, db: Database) -> ApiDefinition:
    parts = bootstrap.build(settings, db, "api")
    assert parts.parties is not None and parts.proofs is not None  # built for the api
    servicer = MedicalCreditServicer(parts.health, parts.parties, parts.proofs)
    return ApiDefinition(
        service="health",
        full_name=pb.DESCRIPTOR.services_by_name["MedicalCreditService"].full_name,
        add_servicer=lambda server: medical_credit_pb2_grpc.add_MedicalCreditServiceServicer_to_server(
            servicer, server
        ),
    )
