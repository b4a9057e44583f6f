"""The services approvals calls: records (its catalogue at start, and the proofs a case needs)
and identity (who an applicant or party is). From the api over gRPC, from the worker over
records' worker RPC. Both process kinds import this module, so grpc, nameko and eventlet are
imported only where a client uses them: a worker must never load grpcio."""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from govmesh import config
from govmesh.auth import ServiceCredentials
from govmesh.errors import StartupError
from govmesh.parties import Parties
from govmesh.records.v1 import records_pb2
from services.approvals import contract
from services.approvals.contract import Catalogue
from services.approvals.domain.saga import Proof, ProofNotIssued, ProofRequest

if TYPE_CHECKING:
    import grpc

log = logging.getLogger(__name__)

#: records' refusals worth retrying; any other is a rights or configuration problem.
TRANSIENT = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "RESOURCE_EXHAUSTED", "INTERNAL", "UNKNOWN")


class Records(Protocol):
    """Records, as a process of approvals starts: its catalogue, waiting for records to come up
    (processes start in any order) at most GOVMESH_STARTUP_WAIT_SECONDS."""

    def catalogue(self) -> Catalogue: ...


class ProofSource(Protocol):
    """Records, as the saga draws proofs: one answer per request, in order, each a Proof or the
    ProofNotIssued that says why not."""

    def get_proofs(self, requests: Sequence[ProofRequest]) -> list[Proof | ProofNotIssued]: ...


def startup_wait() -> float:
    return config.env_seconds("GOVMESH_STARTUP_WAIT_SECONDS", 120)


class RecordsOverGrpc:
    """Records' gRPC api, from approvals' api process."""

    def __init__(self, target: str, credentials: ServiceCredentials) -> None:
        self.target = target
        self.credentials = credentials

    def catalogue(self) -> Catalogue:
        import grpc
        from opentelemetry.instrumentation.grpc import client_interceptor
        from opentelemetry.instrumentation.grpc.grpcext import intercept_channel

        from govmesh.records.v1 import records_pb2_grpc

        channel = intercept_channel(grpc.insecure_channel(self.target), client_interceptor())  # type: ignore[no-untyped-call]
        stub = records_pb2_grpc.RecordsServiceStub(channel)
        try:
            options = {"metadata": self.credentials.metadata(), "timeout": startup_wait(), "wait_for_ready": True}
            proof_types = stub.ListProofTypes(records_pb2.ListProofTypesRequest(), **options)
            departments = stub.ListDepartments(records_pb2.ListDepartmentsRequest(), **options)
        except grpc.RpcError as error:
            raise StartupError(self._refused(error)) from None
        finally:
            channel.close()
        return contract.catalogue(proof_types, departments)

    def _refused(self, error: grpc.RpcError) -> str:
        return (
            f"records' catalogue at {self.target} is needed to check the case types: "
            f"{error.code().name} {error.details()}"
        )


class RecordsOverRpc:
    """Records' worker RPC, from approvals' worker: the catalogue over a connection of its own
    at start, and proofs through the worker's RPC proxy (``through``), all of a case's proofs
    at once, under one deadline."""

    def __init__(self, amqp_uri: str, credentials: ServiceCredentials, timeout: float, proxy: Any = None) -> None:
        self.amqp_uri = amqp_uri
        self.credentials = credentials
        self.timeout = timeout
        self.proxy = proxy

    def through(self, proxy: Any) -> RecordsOverRpc:
        """This client calling through a worker's RpcProxy("records") dependency."""
        return RecordsOverRpc(self.amqp_uri, self.credentials, self.timeout, proxy)

    def catalogue(self) -> Catalogue:
        import eventlet
        from nameko.exceptions import RemoteError
        from nameko.standalone.rpc import ClusterRpcProxy

        deadline = time.monotonic() + startup_wait()
        while True:
            try:
                with ClusterRpcProxy({"AMQP_URI": self.amqp_uri}, timeout=5) as proxy:
                    answer = proxy.records.describe_catalogue(authorization=self.credentials.authorization())
                return contract.catalogue(
                    json_format.ParseDict(answer["proof_types"], records_pb2.ListProofTypesResponse()),
                    json_format.ParseDict(answer["departments"], records_pb2.ListDepartmentsResponse()),
                )
            except RemoteError as error:
                raise StartupError(f"records refused its catalogue: {error.value}") from None
            except Exception as exc:  # noqa: BLE001 - records not up yet: wait for it
                if time.monotonic() > deadline:
                    raise StartupError(f"records' catalogue is needed to check the case types: {exc!r}") from None
                log.info("waiting for records' catalogue (%s)", type(exc).__name__)
                eventlet.sleep(1)

    def get_proofs(self, requests: Sequence[ProofRequest]) -> list[Proof | ProofNotIssued]:
        """All of a case's proofs in one get_proofs call (one message each way, one token check);
        records reads each as its own GetProof, refusing one alone. A records worker from before
        get_proofs (a side-by-side upgrade) is asked one get_proof per proof instead."""
        assert self.proxy is not None, "proofs are drawn through a worker's proxy (through())"
        from nameko.exceptions import RemoteError

        if not requests:
            return []
        authorization = self.credentials.authorization()
        bodies = [json_format.MessageToDict(contract.proof_request(request)) for request in requests]
        deadline = time.monotonic() + self.timeout
        try:
            answers = self._ask(authorization, bodies, deadline)
        except RemoteError as error:
            if error.exc_type == "MethodNotFound":
                return self._one_by_one(authorization, bodies, deadline)
            return [self._remote_error(error)] * len(requests)
        except TimeoutError:
            return [self._no_answer()] * len(requests)
        except Exception as exc:  # noqa: BLE001 - e.g. no records queue yet: retried later
            return [ProofNotIssued(f"records unreachable ({type(exc).__name__})", retryable=True)] * len(requests)
        if not isinstance(answers, list) or len(answers) != len(requests):
            return [ProofNotIssued("records answered get_proofs out of shape", retryable=True)] * len(requests)
        return [self._batch_answer(answer) for answer in answers]

    def _ask(self, authorization: str, bodies: list[dict[str, Any]], deadline: float) -> Any:
        """get_proofs' answers with the proofs in their wire form: printing and parsing them as
        JSON cost records' worker and this one about a millisecond a case
        (docs/decisions/records-proofs-in-wire-form.md). A records worker from before the
        encoding refuses the argument before it reads anything (IncorrectSignature), and is
        asked again for JSON."""
        from nameko.exceptions import RemoteError

        from govmesh.worker import rpc_result

        assert self.proxy is not None
        try:
            reply = self.proxy.get_proofs.call_async(authorization=authorization, requests=bodies, encoding="binary")
            return rpc_result(reply, deadline - time.monotonic())
        except RemoteError as error:
            if error.exc_type != "IncorrectSignature":
                raise
        reply = self.proxy.get_proofs.call_async(authorization=authorization, requests=bodies)
        return rpc_result(reply, deadline - time.monotonic())

    def _one_by_one(
        self, authorization: str, bodies: list[dict[str, Any]], deadline: float
    ) -> list[Proof | ProofNotIssued]:
        replies: list[Any] = []
        for body in bodies:
            try:
                replies.append(self.proxy.get_proof.call_async(authorization=authorization, request=body))
            except Exception as exc:  # noqa: BLE001 - e.g. no records queue yet: retried later
                replies.append(ProofNotIssued(f"records unreachable ({type(exc).__name__})", retryable=True))
        return [self._answer(reply, deadline) for reply in replies]

    def _answer(self, reply: Any, deadline: float) -> Proof | ProofNotIssued:
        from nameko.exceptions import RemoteError

        from govmesh.worker import rpc_result

        if isinstance(reply, ProofNotIssued):
            return reply
        try:
            answer = rpc_result(reply, deadline - time.monotonic())
        except TimeoutError:
            return self._no_answer()
        except RemoteError as error:
            return self._remote_error(error)
        return _proof(answer)

    @staticmethod
    def _batch_answer(answer: Any) -> Proof | ProofNotIssued:
        if isinstance(answer, dict) and "refused" in answer:
            return _refused(str(answer["refused"]))
        if isinstance(answer, dict) and isinstance(answer.get("proof_binary"), str):
            try:
                wire = base64.b64decode(answer["proof_binary"], validate=True)
                return contract.proof(records_pb2.Proof.FromString(wire))
            except (binascii.Error, DecodeError):
                return ProofNotIssued("records answered a proof out of shape", retryable=True)
        if isinstance(answer, dict) and isinstance(answer.get("proof"), dict):
            return _proof(answer["proof"])
        return ProofNotIssued("records answered a proof out of shape", retryable=True)

    def _no_answer(self) -> ProofNotIssued:
        return ProofNotIssued(f"records did not answer within {self.timeout:g} s", retryable=True)

    @staticmethod
    def _remote_error(error: Any) -> ProofNotIssued:
        if error.exc_type != "RpcServiceError":
            return ProofNotIssued(f"records failed ({error.exc_type})", retryable=True)
        return _refused(str(error.value))


def _refused(message: str) -> ProofNotIssued:
    """Records' refusal ("<STATUS>: <message>"), retryable when its status is transient."""
    return ProofNotIssued(f"records {message[:200]}", retryable=message.split(":", 1)[0] in TRANSIENT)


def _proof(answer: dict[str, Any]) -> Proof:
    return contract.proof(json_format.ParseDict(answer, records_pb2.Proof(), ignore_unknown_fields=True))


def identity_over_grpc(target: str, credentials: ServiceCredentials) -> Parties:
    """Identity's gRPC api, from approvals' api process, as the parties of a submission."""
    from govmesh.identity_client import IdentityClient, PartiesOverGrpc

    return PartiesOverGrpc(IdentityClient(target, credentials))
