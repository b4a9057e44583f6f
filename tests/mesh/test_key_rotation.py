"""The runbook's key rotation, end to end (docs/runbook.md, "Rotate the signing keys"): identity and
records running, `govmesh keys` rotating the proofs and the tokens keys under them. No process is
restarted; proofs signed before the rotation still verify; tokens of the retired key are accepted
through their grace period and refused after it; a revoked key's proofs no longer verify."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import jwt
import pytest

from govmesh.records.v1 import records_pb2, records_pb2_grpc
from tests.support.mesh import (
    PostgresDatabases,
    ServiceEnv,
    assert_no_raw_identifiers,
    consumers,
    govmesh,
    virtual_host,
    wait_for,
)
from tests.support.people import licence, wait_serving
from tests.support.shared_mesh import new_resident

GRACE_SECONDS = 6


@pytest.fixture
def mesh(postgres: PostgresDatabases, tmp_path: Path) -> Iterator[ServiceEnv]:
    """Identity and records on PostgreSQL, of the test's own: their keys are about to change."""
    with virtual_host() as amqp:
        env = ServiceEnv("records", postgres.create(), tmp_path, amqp, others=("identity",))
        try:
            env.migrate("identity")
            env.migrate("records")
            for service in ("identity", "records"):
                env.process("api", service)
                env.process("worker", service)
            wait_for(lambda: consumers(amqp, "rpc-identity") > 0 and consumers(amqp, "rpc-records") > 0)
            wait_serving(env.target_of("identity"), "govmesh.identity.v1.IdentityService")
            wait_serving(env.target, "govmesh.records.v1.RecordsService")
            yield env
        finally:
            env.stop_all()
        assert_no_raw_identifiers(env.all_output(), "identity and records processes' output")


class Records:
    def __init__(self, env: ServiceEnv, token: str) -> None:
        self.stub = records_pb2_grpc.RecordsServiceStub(grpc.insecure_channel(env.target))
        self.metadata = [("authorization", f"Bearer {token}")]

    def proof(self, person: str) -> records_pb2.Proof:
        request = records_pb2.GetProofRequest(
            identifier=person, proof_type="driving_licence", purpose=records_pb2.Purpose(case_id="case-rotation")
        )
        return self.stub.GetProof(request, metadata=self.metadata, timeout=10).proof

    def verify(self, proof: records_pb2.Proof) -> records_pb2.VerifyProofResponse:
        return self.stub.VerifyProof(records_pb2.VerifyProofRequest(proof=proof), metadata=self.metadata, timeout=10)

    def keys(self) -> dict[str, records_pb2.SigningKey]:
        listed = self.stub.ListSigningKeys(records_pb2.ListSigningKeysRequest(), metadata=self.metadata, timeout=10)
        return {key.key_id: key for key in listed.keys}


def licensed_person(env: ServiceEnv) -> str:
    """A new resident whose driving licence public security has published."""
    person = new_resident()
    publisher = Records(env, fresh_token(env, "public_security"))
    batches = iter([records_pb2.PublishRecordsRequest(records=[licence(person)])])
    publisher.stub.PublishRecords(batches, metadata=publisher.metadata, timeout=30)
    return person


def keys_tool(env: ServiceEnv, *args: str) -> str:
    result = govmesh("keys", *args, env=env.env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def fresh_token(env: ServiceEnv, caller: str) -> str:
    return env.token(caller, ttl_minutes=60)  # minted now, with the key signing now


def test_keys_rotate_and_retire_under_running_processes(mesh: ServiceEnv) -> None:
    pids = [process.popen.pid for process in mesh.processes if process.popen is not None]
    old_token = fresh_token(mesh, "demo-portal")
    portal = Records(mesh, old_token)
    person = licensed_person(mesh)
    before = portal.proof(person)
    old_proof_key = before.key_id
    old_token_key = jwt.get_unverified_header(old_token)["kid"]

    assert "signs from" in keys_tool(mesh, "rotate", "proofs", "--after-seconds", "3")
    keys_tool(mesh, "rotate", "tokens", "--after-seconds", "3", "--grace-seconds", str(GRACE_SECONDS))
    switched = time.monotonic() + 3

    # The running api signs with the new key once it is in force, without a restart.
    wait_for(lambda: portal.proof(person).key_id != old_proof_key, timeout=20)
    after = portal.proof(person)
    assert portal.verify(before).valid and portal.verify(after).valid
    listed = portal.keys()
    assert listed[old_proof_key].status == records_pb2.SIGNING_KEY_STATUS_RETIRED
    assert listed[old_proof_key].HasField("active_until")
    assert listed[after.key_id].status == records_pb2.SIGNING_KEY_STATUS_ACTIVE

    # Tokens: a new one carries the new key; the old one holds through the grace period only.
    time.sleep(max(0.0, switched - time.monotonic()))
    new_token = fresh_token(mesh, "demo-portal")
    assert jwt.get_unverified_header(new_token)["kid"] != old_token_key
    assert portal.verify(before).valid  # the old token, still within its grace
    time.sleep(max(0.0, switched + GRACE_SECONDS + 1 - time.monotonic()))
    with pytest.raises(grpc.RpcError) as refused:
        portal.verify(before)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "grace period ended" in (refused.value.details() or "")
    renewed = Records(mesh, new_token)
    # Records calls identity with its own token, renewed when the key changed: a new person's proof
    # (identity asked) still works after the old key's grace.
    assert renewed.verify(renewed.proof(licensed_person(mesh))).valid

    # The old proofs key leaked: revoked, what it signed no longer verifies.
    keys_tool(mesh, "revoke", "proofs", old_proof_key)
    wait_for(lambda: not renewed.verify(before).valid, timeout=10)
    problems = renewed.verify(before).problems
    assert [p.code for p in problems] == [records_pb2.PROOF_PROBLEM_CODE_KEY_NOT_VALID]
    assert renewed.keys()[old_proof_key].status == records_pb2.SIGNING_KEY_STATUS_REVOKED
    assert renewed.verify(after).valid

    assert [process.popen.pid for process in mesh.processes if process.popen is not None] == pids
    assert all(process.popen is not None and process.popen.poll() is None for process in mesh.processes)
