"""Records' worker: the outbox relay, and the broker feed, where departments publish one
DepartmentRecord (proto3 JSON) per message on the exchange records.ingest, routing key = their
department code, with `authorization: Bearer <token>` in the headers like a gRPC call."""

from __future__ import annotations

import logging
from typing import Any

from google.protobuf import json_format
from nameko.exceptions import RemoteError
from nameko.rpc import RpcProxy, rpc

from govmesh.auth import Policy, ServiceCredentials, TokenIssuer
from govmesh.config import ProcessKind, Settings
from govmesh.errors import ServiceError, Unavailable
from govmesh.outbox import Outbox
from govmesh.records.v1 import records_pb2
from govmesh.worker import (
    Application,
    MessageHeaders,
    OutboxRelayRunner,
    Rejected,
    RpcAuthorizer,
    RpcServiceError,
    queue_handler,
    rpc_result,
)
from services.records import app, described, store
from services.records.app import RecordsApp
from services.records.catalogue import SubjectKind
from services.records.metrics import PAPER_AVOIDED, PROOFS, count_ingest
from services.records.subjects import InvalidSubject, SubjectRef

log = logging.getLogger(__name__)
INGEST_EXCHANGE = "records.ingest"
GET_PROOF = "govmesh.records.v1.RecordsService/GetProof"
PUBLISH_RECORDS = "govmesh.records.v1.RecordsService/PublishRecords"
LIST_PROOF_TYPES = "govmesh.records.v1.RecordsService/ListProofTypes"
IDENTITY_TIMEOUT_SECONDS = 5
LIST_DEPARTMENTS = "govmesh.records.v1.RecordsService/ListDepartments"


class IdentityOverNameko:
    """Identity's worker RPC, for the broker path (a worker cannot use gRPC), called with
    records' own credentials."""

    def __init__(self, proxy: Any, credentials: ServiceCredentials) -> None:
        self.proxy = proxy
        self.credentials = credentials

    def _call(self, method: str, **kwargs: str) -> dict[str, Any] | None:
        reply = getattr(self.proxy, method).call_async(authorization=self.credentials.authorization(), **kwargs)
        try:
            answer: dict[str, Any] | None = rpc_result(reply, IDENTITY_TIMEOUT_SECONDS)
        except TimeoutError:
            raise Unavailable(f"identity did not answer within {IDENTITY_TIMEOUT_SECONDS} s") from None
        except RemoteError as error:
            if error.exc_type == "RpcServiceError" and str(error.value).startswith("INVALID_ARGUMENT"):
                raise InvalidSubject(str(error.value).removeprefix("INVALID_ARGUMENT: identifier: ")) from None
            raise
        return answer

    @staticmethod
    def _ref(answer: dict[str, Any]) -> SubjectRef:
        return SubjectRef(answer["subject_id"], answer["masked_identifier"], SubjectKind(answer["kind"]))

    def register(self, identifier: str, display_name: str) -> SubjectRef:
        answer = self._call("register_subject", identifier=identifier, display_name=display_name)
        assert answer is not None
        return self._ref(answer)

    def resolve(self, *, identifier: str = "", subject_id: str = "") -> SubjectRef | None:
        answer = self._call("resolve_subject", identifier=identifier, subject_id=subject_id)
        return None if answer is None else self._ref(answer)


class Unused:
    """The worker reaches identity per call through its RPC proxy, never through this."""

    def register(self, identifier: str, display_name: str) -> SubjectRef:
        raise AssertionError("records worker: identity is reached through the RPC proxy")

    def resolve(self, *, identifier: str = "", subject_id: str = "") -> SubjectRef | None:
        raise AssertionError("records worker: identity is reached through the RPC proxy")


def _build(settings: Settings, db: Any, process: ProcessKind) -> tuple[RecordsApp, ServiceCredentials]:
    """The use cases, and records' own credentials for calling identity."""
    issuer = TokenIssuer.from_key_dir(Policy.load(settings.policy_path), settings.key_dir)
    return app.build(settings, db, subjects=Unused()), ServiceCredentials(issuer, "records")


class Worker:
    name = "records"

    parts: tuple[RecordsApp, ServiceCredentials] = Application(_build)
    authorize = RpcAuthorizer()
    outbox_relay = OutboxRelayRunner(Outbox("records", store.outbox, store.inbox))
    identity = RpcProxy("identity")
    headers: dict[str, Any] = MessageHeaders()

    @queue_handler(INGEST_EXCHANGE, "#")  # type: ignore[untyped-decorator]
    def ingest(self, body: Any) -> None:
        records, credentials = self.parts
        try:
            caller = self.authorize(str(self.headers.get("authorization", "")), PUBLISH_RECORDS)
        except RpcServiceError as exc:
            log.warning("records.ingest: message refused: %s", exc)
            raise Rejected(str(exc)) from None
        try:
            record = json_format.ParseDict(body, records_pb2.DepartmentRecord(), ignore_unknown_fields=False)
        except (json_format.ParseError, TypeError) as exc:
            log.warning("records.ingest: message is not a DepartmentRecord: %s", str(exc)[:200])
            raise Rejected("not a DepartmentRecord") from None
        summary = records.publish([[record]], caller, "broker", subjects=IdentityOverNameko(self.identity, credentials))
        count_ingest(summary, "broker")
        if summary.rejected:
            reason = summary.rejections[0].message
            log.warning("records.ingest: record refused (%s): %s", caller.caller_id, reason)
            raise Rejected(reason)

    @rpc  # type: ignore[untyped-decorator]
    def get_proof(self, authorization: str, request: dict[str, Any]) -> dict[str, Any]:
        """GetProof for other services' workers (approvals pulls a case's proofs), with the
        caller's bearer token like a gRPC call: same rights, same audit trail. The request and
        the answer are the contract's GetProofRequest and Proof in proto3 JSON."""
        records, credentials = self.parts
        caller = self.authorize(authorization, GET_PROOF)
        try:
            message = json_format.ParseDict(request, records_pb2.GetProofRequest())
            proof = records.get_proof(message, caller, subjects=IdentityOverNameko(self.identity, credentials))
        except json_format.ParseError as exc:
            raise RpcServiceError(f"INVALID_ARGUMENT: request: {str(exc)[:200]}") from None
        except ServiceError as exc:
            if exc.status == "PERMISSION_DENIED":
                PROOFS.labels(message.proof_type[:64], caller.caller_id, "refused").inc()
            raise RpcServiceError(f"{exc.status}: {exc.message}") from None
        PROOFS.labels(proof.proof_type, caller.caller_id, "issued").inc()
        PAPER_AVOIDED.inc()
        answer: dict[str, Any] = json_format.MessageToDict(proof)
        return answer

    @rpc  # type: ignore[untyped-decorator]
    def describe_catalogue(self, authorization: str) -> dict[str, Any]:
        """ListProofTypes and ListDepartments for other services' workers (approvals checks its
        case types against them at start), as {"proof_types": ..., "departments": ...} in the
        contract's proto3 JSON."""
        self.authorize(authorization, LIST_PROOF_TYPES)
        self.authorize(authorization, LIST_DEPARTMENTS)
        return {
            "proof_types": json_format.MessageToDict(described.proof_types()),
            "departments": json_format.MessageToDict(described.departments()),
        }
