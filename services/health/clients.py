"""The services health calls, behind the protocols its use cases depend on:

* ``IdentityOverGrpc`` (api): identity resolves patients, by identifier or subject id
  (govmesh.parties.Parties);
* ``RecordsOverGrpc`` (api): records issues the two enrolment proofs over its GetProof, by subject
  id (health never sends an identifier on), with the legal basis enrolment gives as purpose, so
  each read is in records' audit trail and the patient's data tracker (app.EnrolmentProofs);
* ``RecordsFeedOverBroker`` (worker): the negative credit record a default leaves, published to
  records as a department feed of the health commission (``default_record``).

Each calls with health's own credentials. A worker imports this module too and must never load
grpc: the gRPC clients import it when they are built."""

from __future__ import annotations

import datetime
import threading
from typing import TYPE_CHECKING

import amqp
from google.protobuf import json_format

from govmesh import clock, tracing
from govmesh.auth import ServiceCredentials
from govmesh.errors import FailedPrecondition, Unavailable
from govmesh.health.v1 import events_pb2
from govmesh.messaging import CONTENT_TYPE, ConfirmingPublisher
from govmesh.parties import Party
from govmesh.records.v1 import records_pb2
from govmesh.typed_values import UnreadableValue, Value, fields_from_proto, fields_to_proto, from_proto
from services.health.app import ProofClaims

if TYPE_CHECKING:
    import grpc

#: The health commission's record of a default, on records' ingest exchange
#: (services/records/domain/catalogue.py: medical_credit_default).
INGEST_EXCHANGE = "records.ingest"
DEPARTMENT = "health_commission"
RECORD_TYPE = "medical_credit_default"


# ------------------------------------------------------------------------------------------------
# Identity


class IdentityOverGrpc:
    """Identity's ResolveSubject as health's Parties: identity's refusal of an identifier becomes
    INVALID_ARGUMENT naming the request's field; identity not answering, UNAVAILABLE."""

    def __init__(self, target: str, credentials: ServiceCredentials) -> None:
        from govmesh.identity_client import IdentityClient, PartiesOverGrpc

        self.client = IdentityClient(target, credentials)
        self.parties = PartiesOverGrpc(self.client)

    def resolve(
        self, field: str, *, identifier: str = "", subject_id: str = "", allow_unregistered: bool = False
    ) -> Party | None:
        return self.parties.resolve(
            field, identifier=identifier, subject_id=subject_id, allow_unregistered=allow_unregistered
        )

    def close(self) -> None:
        self.client.close()


# ------------------------------------------------------------------------------------------------
# Records: the enrolment proofs


class RecordsOverGrpc:
    """Records' GetProof as enrolment reaches it (EnrolmentProofs). A refusal by records becomes
    FAILED_PRECONDITION naming the proof type and records' reason (health's rights in the policy
    are the usual cause); records not answering (a transient status) becomes UNAVAILABLE."""

    def __init__(self, target: str, credentials: ServiceCredentials, timeout: float = 5.0) -> None:
        import grpc
        from opentelemetry.instrumentation.grpc import client_interceptor
        from opentelemetry.instrumentation.grpc.grpcext import intercept_channel

        from govmesh.records.v1 import records_pb2_grpc

        # The client interceptor carries the trace (traceparent) from the Enroll call into records'.
        self.channel = intercept_channel(grpc.insecure_channel(target), client_interceptor())  # type: ignore[no-untyped-call]
        self.stub = records_pb2_grpc.RecordsServiceStub(self.channel)
        self.credentials = credentials
        self.timeout = timeout
        # records' answers that mean "not now"; any other refusal is a rights or configuration
        # problem of the mesh, not of the caller's request.
        self.transient = (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.ABORTED,
            grpc.StatusCode.INTERNAL,
            grpc.StatusCode.UNKNOWN,
        )

    def get(self, subject_id: str, proof_type: str, legal_basis: str) -> ProofClaims:
        import grpc

        request = records_pb2.GetProofRequest(
            subject_id=subject_id, proof_type=proof_type, purpose=records_pb2.Purpose(legal_basis=legal_basis)
        )
        try:
            response = self.stub.GetProof(request, metadata=self.credentials.metadata(), timeout=self.timeout)
        except grpc.RpcError as error:
            raise self._refusal(error, proof_type, legal_basis) from None
        return ProofClaims(response.proof.proof_id, read_claims(response.proof))

    def _refusal(self, error: grpc.RpcError, proof_type: str, legal_basis: str) -> Exception:
        code = error.code()
        details = error.details()
        if code in self.transient:
            return Unavailable(f"records did not issue the {proof_type} proof ({code.name}): {details}; retry later")
        return FailedPrecondition(
            f"records refused the {proof_type} proof for {legal_basis} ({code.name}): {details}",
            reason="PROOF_REFUSED",
        )

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


# ------------------------------------------------------------------------------------------------
# Records: the feed of defaults


def default_record(event: events_pb2.BillDefaulted) -> records_pb2.DepartmentRecord:
    """The health commission's record of a defaulted bill, dated in the province's calendar, by
    the subject's pseudonymous id (never an identifier). Its ``source_reference`` is the bill id:
    records' idempotency key (department, source reference) makes every publication after the
    first a duplicate it ignores."""
    defaulted_on = clock.shanghai_date(event.defaulted_at.ToDatetime(datetime.UTC))
    fields: dict[str, Value] = {
        "bill_reference": event.bill_id,
        "amount_fen": event.outstanding_fen,
        "defaulted_on": defaulted_on,
    }
    if event.hospital_id:
        fields["hospital"] = event.hospital_id
    record = records_pb2.DepartmentRecord(
        department_code=DEPARTMENT,
        record_type=RECORD_TYPE,
        subject_id=event.subject_id,
        source_reference=event.bill_id,
        fields=fields_to_proto(fields),
        effective_from=defaulted_on.isoformat(),
    )
    record.recorded_at.CopyFrom(event.defaulted_at)
    return record


class RecordsFeedOverBroker:
    """Publishes department records on records.ingest as the caller of ``credentials``, one
    persistent message per record, returning once the broker confirmed it; a record no queue
    would take yet (records' feed queue not declared) raises BrokerUnavailable."""

    def __init__(self, amqp_uri: str, credentials: ServiceCredentials, confirm_timeout: float = 10.0) -> None:
        self.credentials = credentials
        self.publisher = ConfirmingPublisher(amqp_uri, "health", confirm_timeout)
        # One channel, one confirm at a time: handlers run side by side in the worker.
        self._lock = threading.Lock()

    def publish(self, record: records_pb2.DepartmentRecord) -> None:
        headers: dict[str, object] = {"authorization": self.credentials.authorization()}
        tracing.inject_headers(headers)
        message = amqp.Message(
            json_format.MessageToJson(record, indent=None, sort_keys=True),
            content_type=CONTENT_TYPE,
            content_encoding="utf-8",
            delivery_mode=2,
            message_id=f"{record.department_code}:{record.source_reference}",
            type=record.DESCRIPTOR.full_name,
            application_headers=headers,
        )
        with self._lock:
            self.publisher.publish_mandatory(INGEST_EXCHANGE, record.department_code, message)

    def close(self) -> None:
        self.publisher.close()
