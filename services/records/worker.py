"""Records' worker: the outbox relay; the access log's sequencer; and the broker feed, where
departments publish one DepartmentRecord (proto3 JSON) per message on the exchange records.ingest,
routing key = their department code, with `authorization: Bearer <token>` in the headers like a
gRPC call."""

from __future__ import annotations

import base64
from typing import Any

from google.protobuf import json_format
from nameko.rpc import RpcProxy, rpc
from nameko.timer import timer

from govmesh.auth import Caller
from govmesh.errors import ServiceError
from govmesh.outbox import Outbox
from govmesh.records.v1 import records_pb2
from govmesh.worker import (
    Application,
    MessageHeaders,
    OutboxRelayRunner,
    Rejected,
    RpcAuthorizer,
    RpcServiceError,
    RpcSpans,
    queue_handler,
)
from services.records import bootstrap, contract, store
from services.records.app import SEAL_BATCH
from services.records.bootstrap import Parts
from services.records.clients import IdentityOverRpc
from services.records.metrics import PAPER_AVOIDED, PROOFS, count_ingest, observe_seal

INGEST_EXCHANGE = "records.ingest"
PUBLISH_RECORDS = "govmesh.records.v1.RecordsService/PublishRecords"
LIST_PROOF_TYPES = "govmesh.records.v1.RecordsService/ListProofTypes"
LIST_DEPARTMENTS = "govmesh.records.v1.RecordsService/ListDepartments"
#: How often the sequencer looks for entries to seal: an entry is in a signed tree head about
#: this long after its read, plus the step itself (docs/decisions/records-access-log-merkle-tree.md).
#: A step costs about the same for 1 entry as for 200 (its lock, the head, the waiting entries, the
#: signature): every 0.25 s it was a seventh of records' worker at 50 cases/s (issue 13), and the
#: target for read -> sealed is 2 s.
SEAL_INTERVAL_SECONDS = 0.5
#: The most proofs one get_proofs call asks for (a case type pulls a handful).
MAX_PROOFS_PER_CALL = 50
#: How get_proofs answers a proof: "json" (proto3 JSON, the default, which callers from before
#: "binary" get) or "binary" (the Proof's wire form in base64).
PROOF_ENCODINGS = ("json", "binary")


class Worker:
    name = "records"

    parts: Parts = Application(bootstrap.build)
    authorize = RpcAuthorizer()
    rpc_spans = RpcSpans()
    outbox_relay = OutboxRelayRunner(Outbox("records", store.outbox, store.inbox))
    identity_rpc = RpcProxy("identity")
    headers: dict[str, Any] = MessageHeaders()

    def _identity(self) -> IdentityOverRpc:
        """Identity for this call, through this entrypoint's own RPC proxy."""
        identity = self.parts.identity
        assert isinstance(identity, IdentityOverRpc)
        return identity.through(self.identity_rpc)

    @timer(interval=SEAL_INTERVAL_SECONDS, eager=True)  # type: ignore[untyped-decorator]
    def seal_access_log(self) -> None:
        """The access log's sequencer: seals what waits, a batch at a time, until nothing does.
        Every worker runs it; one seals at a time (repository.become_sequencer)."""
        while True:
            sealed = self.parts.records.seal()
            if sealed is None:
                return
            observe_seal(sealed.head, sealed.entries)
            if len(sealed.entries) < SEAL_BATCH:
                return

    @queue_handler(INGEST_EXCHANGE, "#")  # type: ignore[untyped-decorator]
    def ingest(self, body: Any) -> None:
        """One DepartmentRecord; a refused one is dead-lettered by the runtime with the code, the
        field and the reason, and without the department's token."""
        try:
            caller = self.authorize(str(self.headers.get("authorization", "")), PUBLISH_RECORDS)
        except RpcServiceError as exc:
            status, _, reason = str(exc).partition(": ")
            raise Rejected(status, "authorization", reason) from None
        try:
            record = json_format.ParseDict(body, records_pb2.DepartmentRecord(), ignore_unknown_fields=False)
        except (json_format.ParseError, TypeError) as exc:
            raise Rejected("INVALID_ARGUMENT", "body", f"is not a DepartmentRecord: {str(exc)[:200]}") from None
        summary = self.parts.records.publish([[record]], caller, "broker", self._identity())
        count_ingest(summary, "broker")
        if summary.rejected:
            rejection = summary.rejections[0]
            field, _, reason = rejection.message.partition(": ")
            raise Rejected(contract.rejection_code_name(rejection.code), field, reason)

    @rpc  # type: ignore[untyped-decorator]
    def get_proof(self, authorization: str, request: dict[str, Any]) -> dict[str, Any]:
        """GetProof for other services' workers, with the caller's bearer token like a gRPC call:
        same rights, same audit trail. The request and the answer are the contract's
        GetProofRequest and Proof in proto3 JSON."""
        caller = self.authorize(authorization, None)  # GetProof checks the right itself, on the log
        answer: dict[str, Any] = json_format.MessageToDict(self._proof(caller, request))
        return answer

    @rpc  # type: ignore[untyped-decorator]
    def get_proofs(
        self, authorization: str, requests: list[dict[str, Any]], encoding: str = "json"
    ) -> list[dict[str, Any]]:
        """get_proof for each of ``requests`` in one message (approvals pulls a case's proofs),
        answered in order, each {"proof": Proof} or {"refused": "<STATUS>: <message>"}. Each
        request is read exactly as one get_proof call would read it: its own transaction, its
        own entry on the access log, granted or refused alone. One message and one token check
        instead of one per proof: a proof's RPC round trip cost records' worker more CPU than the
        proof itself (docs/decisions/records-batch-proof-rpc.md). With ``encoding="binary"`` a
        proof is answered as {"proof_binary": base64 of the Proof's wire form}: the same message
        as its JSON, which took both workers about a millisecond a case to print and parse
        (docs/decisions/records-proofs-in-wire-form.md)."""
        caller = self.authorize(authorization, None)
        if encoding not in PROOF_ENCODINGS:
            raise RpcServiceError(f"INVALID_ARGUMENT: encoding: one of {', '.join(PROOF_ENCODINGS)}")
        if not isinstance(requests, list):
            raise RpcServiceError("INVALID_ARGUMENT: requests: must be a list of GetProofRequest")
        if len(requests) > MAX_PROOFS_PER_CALL:
            raise RpcServiceError(f"INVALID_ARGUMENT: requests: at most {MAX_PROOFS_PER_CALL} a call")
        answers: list[dict[str, Any]] = []
        for request in requests:
            try:
                proof = self._proof(caller, request)
            except RpcServiceError as exc:
                answers.append({"refused": str(exc)})
                continue
            if encoding == "binary":
                answers.append({"proof_binary": base64.b64encode(proof.SerializeToString()).decode("ascii")})
            else:
                answers.append({"proof": json_format.MessageToDict(proof)})
        return answers

    def _proof(self, caller: Caller, request: Any) -> records_pb2.Proof:
        try:
            message = json_format.ParseDict(request, records_pb2.GetProofRequest())
        except (json_format.ParseError, TypeError, AttributeError) as exc:  # not a JSON object at all
            raise RpcServiceError(f"INVALID_ARGUMENT: request: {str(exc)[:200]}") from None
        try:
            proof = self.parts.records.get_proof(message, caller, self._identity())
        except ServiceError as exc:
            if exc.status == "PERMISSION_DENIED":
                PROOFS.labels(message.proof_type[:64], caller.caller_id, "refused").inc()
            raise RpcServiceError(f"{exc.status}: {exc.message}") from None
        PROOFS.labels(proof.proof_type, caller.caller_id, "issued").inc()
        PAPER_AVOIDED.inc()
        return proof

    @rpc  # type: ignore[untyped-decorator]
    def describe_catalogue(self, authorization: str) -> dict[str, Any]:
        """ListProofTypes and ListDepartments for other services' workers (approvals checks its
        case types against them at start), as {"proof_types": ..., "departments": ...} in the
        contract's proto3 JSON."""
        self.authorize(authorization, LIST_PROOF_TYPES)
        self.authorize(authorization, LIST_DEPARTMENTS)
        return {
            "proof_types": json_format.MessageToDict(contract.proof_types()),
            "departments": json_format.MessageToDict(contract.departments()),
        }
