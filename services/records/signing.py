"""Signed proofs and signed tree heads: the canonical encoding, Ed25519 signatures and their
verification. What a proof's signature covers, and how anyone verifies a proof offline:
docs/decisions/records-proof-signature-jcs.md; a tree head's: domain/access_log.TreeHead. Not pure
domain: it signs the contract's own (proto3 JSON) form of a proof."""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass, replace
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf import json_format

from govmesh import keys
from govmesh.records.v1 import records_pb2
from services.records.domain.access_log import TreeHead

SCHEME = records_pb2.SIGNATURE_SCHEME_ED25519_JCS
#: A key's stored status and its contract value.
STATUSES = {
    "active": records_pb2.SIGNING_KEY_STATUS_ACTIVE,
    "retired": records_pb2.SIGNING_KEY_STATUS_RETIRED,
    "revoked": records_pb2.SIGNING_KEY_STATUS_REVOKED,
}


def canonical_bytes(proof: records_pb2.Proof) -> bytes:
    """The proof's proto3 JSON less its signature, in RFC 8785 (JCS) form. The stdlib's C encoder
    writes the same bytes as a JCS encoder for JSON with no floating-point number (a Proof has
    none: tests/unit/records/test_signing.py) when no character lies beyond the BMP: JCS orders
    keys by UTF-16 code units, Python by code points, and the two orders differ only there. The
    pure-Python JCS encoder was half the cost of signing a proof."""
    return _encoded(signed_body(proof))


def signed_body(proof: records_pb2.Proof) -> dict[str, Any]:
    """What a proof's signature covers, as its proto3 JSON object: all of it but the signature."""
    body = json_format.MessageToDict(proof)
    body.pop("signature", None)
    return body


def _encoded(body: dict[str, Any]) -> bytes:
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    if text.isascii() or not _BEYOND_BMP.search(text):
        return text.encode()
    return bytes(rfc8785.dumps(body))


_BEYOND_BMP = re.compile("[\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class PublicKey:
    key_id: str
    key: Ed25519PublicKey
    status: records_pb2.SigningKeyStatus.ValueType
    active_from: datetime.datetime
    active_until: datetime.datetime | None = None

    def to_proto(self) -> records_pb2.SigningKey:
        message = records_pb2.SigningKey(
            key_id=self.key_id, signature_scheme=SCHEME, public_key=keys.public_bytes(self.key), status=self.status
        )
        message.active_from.FromDatetime(self.active_from)
        if self.active_until is not None:
            message.active_until.FromDatetime(self.active_until)
        return message


class Signer:
    """Signs with the key of the proofs ring that is in force at the moment signed, so a rotation
    (`govmesh keys rotate proofs`) takes effect in a running process."""

    def __init__(self, ring: keys.KeyRing) -> None:
        self.ring = ring

    def _key(self, moment: datetime.datetime) -> tuple[str, Ed25519PrivateKey]:
        key = self.ring.signer(moment)
        assert key.private is not None  # a key signs only where its private half is
        return key.key_id, key.private

    def sign(self, proof: records_pb2.Proof) -> dict[str, Any]:
        """Names the key and scheme in the proof, then signs everything else in it. Returns what
        it signed (signed_body): the proof's proto3 JSON less the signature, which its caller
        may render the proof's events from rather than print the proof's fields to JSON again."""
        proof.key_id, private = self._key(proof.issued_at.ToDatetime(datetime.UTC))
        proof.signature_scheme = SCHEME
        proof.ClearField("signature")
        body = signed_body(proof)
        proof.signature = private.sign(_encoded(body))
        return body

    def sign_head(self, head: TreeHead) -> TreeHead:
        key_id, private = self._key(head.timestamp)
        return replace(head, key_id=key_id, signature=private.sign(head.signed_bytes()))


def head_signature_fault(head: TreeHead, keys: dict[str, PublicKey]) -> str | None:
    """Why a tree head's signature does not hold as it stands, or None when it does: a revoked
    key's signature vouches for nothing, whatever it signed."""
    key = keys.get(head.key_id)
    if key is None:
        return (
            f"names key {head.key_id!r}, which records' proofs ring does not hold here: forged, or a new key "
            "that has not reached this process yet"
        )
    if key.status == records_pb2.SIGNING_KEY_STATUS_REVOKED:
        return f"was signed by key {head.key_id}, since revoked: it vouches for nothing"
    try:
        key.key.verify(head.signature, head.signed_bytes())
    except InvalidSignature:
        return f"does not verify with key {head.key_id}: it was altered"
    return None


def problem(code: records_pb2.ProofProblemCode.ValueType, message: str) -> records_pb2.ProofProblem:
    return records_pb2.ProofProblem(code=code, message=message)


def verify(
    proof: records_pb2.Proof, keys: dict[str, PublicKey], now: datetime.datetime
) -> list[records_pb2.ProofProblem]:
    """Every reason the proof does not hold at `now`; empty when it is valid."""
    try:
        canonical_bytes(proof)
        proof.issued_at.ToDatetime(datetime.UTC)
        proof.valid_until.ToDatetime(datetime.UTC)
    except (ValueError, OverflowError, json_format.Error):
        return [problem(records_pb2.PROOF_PROBLEM_CODE_MALFORMED, "a time in the proof is not a valid time")]
    problems = []
    if proof.signature_scheme != SCHEME:
        problems.append(
            problem(records_pb2.PROOF_PROBLEM_CODE_UNSUPPORTED_SCHEME, "signature_scheme is not ED25519_JCS")
        )
    if (
        not proof.signature
        or not proof.proof_id
        or not proof.HasField("issued_at")
        or not proof.HasField("valid_until")
    ):
        problems.append(
            problem(
                records_pb2.PROOF_PROBLEM_CODE_MALFORMED, "proof_id, issued_at, valid_until and signature are required"
            )
        )
    elif proof.issued_at.ToDatetime(datetime.UTC) > proof.valid_until.ToDatetime(datetime.UTC):
        problems.append(problem(records_pb2.PROOF_PROBLEM_CODE_MALFORMED, "issued_at lies after valid_until"))
    key = keys.get(proof.key_id)
    if key is None:
        problems.append(
            problem(
                records_pb2.PROOF_PROBLEM_CODE_UNKNOWN_KEY,
                f"no signing key has key_id {proof.key_id!r} (a key rotated in a moment ago may not have "
                "reached this process yet)",
            )
        )
    else:
        issued = proof.issued_at.ToDatetime(datetime.UTC)
        if key.status == records_pb2.SIGNING_KEY_STATUS_REVOKED:
            problems.append(problem(records_pb2.PROOF_PROBLEM_CODE_KEY_NOT_VALID, f"key {key.key_id} was revoked"))
        elif issued < key.active_from or (key.active_until is not None and issued > key.active_until):
            problems.append(
                problem(records_pb2.PROOF_PROBLEM_CODE_KEY_NOT_VALID, f"key {key.key_id} was not active at issued_at")
            )
        if proof.signature:
            try:
                key.key.verify(proof.signature, canonical_bytes(proof))
            except InvalidSignature:
                problems.append(
                    problem(
                        records_pb2.PROOF_PROBLEM_CODE_BAD_SIGNATURE,
                        "the signature does not match the proof's content: it was altered or not signed by this key",
                    )
                )
    if proof.HasField("valid_until") and proof.valid_until.ToDatetime(datetime.UTC) < now:
        problems.append(
            problem(
                records_pb2.PROOF_PROBLEM_CODE_EXPIRED,
                f"valid until {proof.valid_until.ToDatetime(datetime.UTC).isoformat()}, checked at {now.isoformat()}",
            )
        )
    return problems
