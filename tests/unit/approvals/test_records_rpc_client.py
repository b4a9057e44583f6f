"""Approvals' worker client of records' worker RPC: a case's proofs in one get_proofs call in
their wire form, each answer read on its own; from a records worker that predates the wire form,
in JSON, and from one that predates get_proofs, one get_proof per proof (side-by-side upgrades)."""

from __future__ import annotations

import base64
import datetime
from typing import Any, cast

from google.protobuf import json_format
from nameko.exceptions import RemoteError

from govmesh.auth import ServiceCredentials
from govmesh.records.v1 import records_pb2
from services.approvals.clients import RecordsOverRpc
from services.approvals.domain.saga import Proof, ProofNotIssued, ProofRequest

NOW = datetime.datetime(2026, 3, 2, 1, 0, tzinfo=datetime.UTC)


class Credentials:
    def authorization(self) -> str:
        return "Bearer approvals-token"


class Reply:
    def __init__(self, answer: object) -> None:
        self.answer = answer

    def result(self) -> object:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class Method:
    def __init__(self, proxy: Proxy, name: str) -> None:
        self.proxy, self.name = proxy, name

    def call_async(self, **kwargs: Any) -> Reply:
        self.proxy.calls.append((self.name, kwargs))
        return Reply(self.proxy.answers[self.name](**kwargs))


class Proxy:
    """A worker's RpcProxy("records"), answering each method with the function given for it."""

    def __init__(self, **answers: Any) -> None:
        self.answers = answers
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Method:
        return Method(self, name)


def request(step: str, proof_type: str) -> ProofRequest:
    return ProofRequest(
        step_id=step,
        subject_id="subject-1",
        proof_type=proof_type,
        case_id="case-1",
        note=f"ride_hailing_driver_permit {step}",
        parameters={},
        request_id=f"case-1/{step}",
    )


def issued(proof_type: str, proof_id: str) -> records_pb2.Proof:
    proof = records_pb2.Proof(proof_id=proof_id, proof_type=proof_type, subject_id="subject-1")
    proof.issued_at.FromDatetime(NOW)
    proof.valid_until.FromDatetime(NOW + datetime.timedelta(days=30))
    return proof


def proof_json(proof_type: str, proof_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = json_format.MessageToDict(issued(proof_type, proof_id))
    return answer


def proof_binary(proof_type: str, proof_id: str) -> str:
    return base64.b64encode(issued(proof_type, proof_id).SerializeToString()).decode("ascii")


def client(proxy: Proxy) -> RecordsOverRpc:
    return RecordsOverRpc("amqp://unused", cast(ServiceCredentials, Credentials()), timeout=5).through(proxy)


ASKED = [request("a", "driving_licence"), request("b", "criminal_record"), request("c", "traffic_safety")]


def test_a_cases_proofs_are_asked_in_one_call_and_each_answer_read_on_its_own() -> None:
    proxy = Proxy(
        get_proofs=lambda authorization, requests, encoding: [
            {"proof_binary": proof_binary("driving_licence", "p-1")},
            {"refused": "PERMISSION_DENIED: caller 'approvals' has no right to 'criminal_record' proofs"},
            {"refused": "UNAVAILABLE: records' database is unavailable; try again"},
        ]
    )
    granted, refused, unavailable = client(proxy).get_proofs(ASKED)
    assert [name for name, _ in proxy.calls] == ["get_proofs"]
    sent = proxy.calls[0][1]
    assert sent["authorization"] == "Bearer approvals-token" and sent["encoding"] == "binary"
    assert [r["requestId"] for r in sent["requests"]] == ["case-1/a", "case-1/b", "case-1/c"]
    assert isinstance(granted, Proof) and (granted.proof_id, granted.proof_type) == ("p-1", "driving_licence")
    assert granted.valid_until == NOW + datetime.timedelta(days=30)
    assert isinstance(refused, ProofNotIssued) and not refused.retryable
    assert refused.reason.startswith("records PERMISSION_DENIED")
    assert isinstance(unavailable, ProofNotIssued) and unavailable.retryable


def test_a_refusal_of_the_whole_call_is_every_proofs_and_an_answer_out_of_shape_is_retried() -> None:
    forged = Proxy(get_proofs=lambda **_: RemoteError("RpcServiceError", "UNAUTHENTICATED: token expired"))
    answers = client(forged).get_proofs(ASKED)
    assert all(isinstance(a, ProofNotIssued) and not a.retryable for a in answers) and len(answers) == 3
    short = Proxy(get_proofs=lambda **_: [{"proof": proof_json("driving_licence", "p-1")}])
    answers = client(short).get_proofs(ASKED)
    assert all(isinstance(a, ProofNotIssued) and a.retryable for a in answers) and len(answers) == 3


def test_a_records_worker_without_get_proofs_is_asked_one_proof_at_a_time() -> None:
    issued = {"case-1/a": proof_json("driving_licence", "p-1"), "case-1/c": proof_json("traffic_safety", "p-3")}

    def one(authorization: str, request: dict[str, Any]) -> object:
        found = issued.get(request["requestId"])
        return found or RemoteError("RpcServiceError", "PERMISSION_DENIED: no right to 'criminal_record' proofs")

    proxy = Proxy(get_proofs=lambda **_: RemoteError("MethodNotFound", "get_proofs"), get_proof=one)
    answers = client(proxy).get_proofs(ASKED)
    assert [name for name, _ in proxy.calls] == ["get_proofs", "get_proof", "get_proof", "get_proof"]
    assert [a.proof_id if isinstance(a, Proof) else a.reason[:25] for a in answers] == [
        "p-1",
        "records PERMISSION_DENIED",
        "p-3",
    ]


def test_a_records_worker_without_the_wire_form_is_asked_again_for_json() -> None:
    def answer(authorization: str, requests: list[dict[str, Any]], **options: str) -> object:
        if options:  # as nameko refuses an argument the method does not take, before running it
            return RemoteError("IncorrectSignature", "get_proofs() got an unexpected keyword argument 'encoding'")
        return [
            {"proof": proof_json("driving_licence", "p-1")},
            {"refused": "NOT_FOUND: no such subject"},
            {"proof": proof_json("traffic_safety", "p-3")},
        ]

    proxy = Proxy(get_proofs=answer)
    answers = client(proxy).get_proofs(ASKED)
    assert [(name, "encoding" in sent) for name, sent in proxy.calls] == [("get_proofs", True), ("get_proofs", False)]
    assert [a.proof_id if isinstance(a, Proof) else a.reason[:17] for a in answers] == [
        "p-1",
        "records NOT_FOUND",
        "p-3",
    ]


def test_a_proof_whose_wire_form_does_not_read_is_retried_alone() -> None:
    proxy = Proxy(
        get_proofs=lambda **_: [
            {"proof_binary": "not base64!"},
            {"proof_binary": base64.b64encode(b"\xff\xff\xff").decode("ascii")},
            {"proof_binary": proof_binary("traffic_safety", "p-3")},
        ]
    )
    broken, garbled, good = client(proxy).get_proofs(ASKED)
    assert isinstance(broken, ProofNotIssued) and broken.retryable and "out of shape" in broken.reason
    assert isinstance(garbled, ProofNotIssued) and garbled.retryable and "out of shape" in garbled.reason
    assert isinstance(good, Proof) and good.proof_id == "p-3"
