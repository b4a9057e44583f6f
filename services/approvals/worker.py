"""Approvals' worker: the saga. The case_submitted event starts a case's work; a timer drives
the cases that wait for a retry (or that nobody is working on) and raises deadline_breached. Proofs
are pulled from records over its worker RPC, with approvals' own credentials and the case id as
purpose."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import eventlet
from google.protobuf import json_format
from nameko.exceptions import RemoteError
from nameko.rpc import RpcProxy
from nameko.standalone.rpc import ClusterRpcProxy
from nameko.timer import timer

from govmesh import config
from govmesh.approvals.v1 import events_pb2
from govmesh.auth import Policy, ServiceCredentials, TokenIssuer
from govmesh.config import ProcessKind, Settings
from govmesh.db import Database
from govmesh.errors import StartupError
from govmesh.outbox import Outbox
from govmesh.records.v1 import records_pb2
from govmesh.worker import Application, CurrentEvent, OutboxRelayRunner, event_handler, parse_event, rpc_result
from services.approvals import app, metrics, store
from services.approvals.app import ApprovalsApp, ProofNotIssued

log = logging.getLogger(__name__)

#: Read once: the proxy changes per worker, the setting does not.
PROOF_TIMEOUT_SECONDS = config.env_seconds("APPROVALS_PROOF_TIMEOUT_SECONDS", 5)

#: records' refusals worth retrying; any other is a rights or configuration problem.
TRANSIENT = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "RESOURCE_EXHAUSTED", "INTERNAL", "UNKNOWN")


class RecordsOverRpc:
    """Records' worker RPC get_proof, all of a case's proofs at once, under one deadline."""

    def __init__(self, proxy: Any, credentials: ServiceCredentials, timeout: float) -> None:
        self.proxy = proxy
        self.credentials = credentials
        self.timeout = timeout

    def get_proofs(self, requests: Sequence[records_pb2.GetProofRequest]) -> list[records_pb2.Proof | ProofNotIssued]:
        authorization = self.credentials.authorization()
        replies: list[Any] = []
        for request in requests:
            try:
                replies.append(
                    self.proxy.get_proof.call_async(
                        authorization=authorization, request=json_format.MessageToDict(request)
                    )
                )
            except Exception as exc:  # noqa: BLE001 - e.g. no records queue yet: retried later
                replies.append(ProofNotIssued(f"records unreachable ({type(exc).__name__})", retryable=True))
        deadline = time.monotonic() + self.timeout
        return [self._answer(reply, deadline) for reply in replies]

    def _answer(self, reply: Any, deadline: float) -> records_pb2.Proof | ProofNotIssued:
        if isinstance(reply, ProofNotIssued):
            return reply
        try:
            answer = rpc_result(reply, deadline - time.monotonic())
        except TimeoutError:
            return ProofNotIssued(f"records did not answer within {self.timeout:g} s", retryable=True)
        except RemoteError as error:
            if error.exc_type != "RpcServiceError":
                return ProofNotIssued(f"records failed ({error.exc_type})", retryable=True)
            message = str(error.value)
            return ProofNotIssued(f"records {message[:200]}", retryable=message.split(":", 1)[0] in TRANSIENT)
        return json_format.ParseDict(answer, records_pb2.Proof(), ignore_unknown_fields=True)


def _records_catalogue(
    settings: Settings, credentials: ServiceCredentials
) -> tuple[records_pb2.ListProofTypesResponse, records_pb2.ListDepartmentsResponse]:
    """Records' catalogue over its worker RPC, waiting for records to come up (processes start
    in any order) at most GOVMESH_STARTUP_WAIT_SECONDS."""
    deadline = time.monotonic() + config.env_seconds("GOVMESH_STARTUP_WAIT_SECONDS", 120)
    while True:
        try:
            with ClusterRpcProxy({"AMQP_URI": settings.amqp_uri}, timeout=5) as proxy:
                answer = proxy.records.describe_catalogue(authorization=credentials.authorization())
            return (
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


def _build(settings: Settings, db: Database, process: ProcessKind) -> tuple[ApprovalsApp, ServiceCredentials]:
    policy = Policy.load(settings.policy_path)
    credentials = ServiceCredentials(TokenIssuer.from_key_dir(policy, settings.key_dir), "approvals")
    proof_types, departments = _records_catalogue(settings, credentials)
    approvals = app.build(db, proof_types, departments, on_events=metrics.count)
    app.check_rights(approvals.case_types, policy)
    metrics.prime(approvals.case_types.values())
    return approvals, credentials


class Worker:
    name = "approvals"

    parts: tuple[ApprovalsApp, ServiceCredentials] = Application(_build)
    outbox_relay = OutboxRelayRunner(Outbox("approvals", store.outbox, store.inbox))
    records = RpcProxy("records")
    event = CurrentEvent()

    def _records(self) -> RecordsOverRpc:
        return RecordsOverRpc(self.records, self.parts[1], PROOF_TIMEOUT_SECONDS)

    @event_handler("approvals", "case_submitted")  # type: ignore[untyped-decorator]
    def on_case_submitted(self, body: Any) -> None:
        submitted = parse_event(body, events_pb2.CaseSubmitted)
        self.parts[0].advance(submitted.case_id, self._records())

    @timer(interval=1)  # type: ignore[untyped-decorator]
    def drive(self) -> None:
        """Retries and stalled cases, then deadlines. Cases are driven side by side: one whose
        department does not answer must not hold up the others."""
        approvals = self.parts[0]
        records = self._records()
        pool = eventlet.GreenPool(10)
        for case_id in approvals.claim_due_cases():
            pool.spawn_n(self._drive_one, approvals, records, case_id)
        pool.waitall()
        approvals.check_deadlines()

    @staticmethod
    def _drive_one(approvals: ApprovalsApp, records: RecordsOverRpc, case_id: str) -> None:
        try:
            approvals.advance(case_id, records)
        except Exception:
            # The case stays due (its lease runs out), so the next ticks try it again.
            log.exception("driving case %s failed", case_id)
