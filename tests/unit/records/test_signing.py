"""Proof signatures: what is signed, what breaks them, and that an outsider can verify one with
nothing but the public key, protobuf's JSON encoder and a JCS encoder."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf import descriptor_pb2, json_format
from google.protobuf.descriptor import Descriptor

from govmesh import keys
from govmesh.records.v1 import records_pb2
from services.records import signing

NOW = datetime.datetime(2026, 11, 27, 8, 0, tzinfo=datetime.UTC)


def new_signer(key_dir: Path) -> signing.Signer:
    return signing.Signer(keys.KeyRing(key_dir, "proofs"))


@pytest.fixture
def signer(tmp_path: Path) -> signing.Signer:
    return new_signer(tmp_path / "ours")


def key_of(signer: signing.Signer) -> keys.RingKey:
    return signer.ring.signer(NOW)


def keys_of(
    signer: signing.Signer, status: int = records_pb2.SIGNING_KEY_STATUS_ACTIVE
) -> dict[str, signing.PublicKey]:
    key = key_of(signer)
    return {key.key_id: signing.PublicKey(key.key_id, key.public, status, NOW - datetime.timedelta(days=1))}


def make_proof(signer: signing.Signer) -> records_pb2.Proof:
    proof = records_pb2.Proof(
        proof_id="3f0c6c1e-2f43-4c07-9a64-6f3d2c1b0a99",
        subject_id="sub_abc",
        subject_masked_identifier="330106********123X",
        proof_type="criminal_record",
        issuing_department_code="public_security",
        issued_to="transport",
        purpose=records_pb2.Purpose(case_id="case-1"),
        parameters={"years": "3"},
    )
    proof.claims["has_record"].bool_value = False
    proof.claims["as_of"].date_value = "2026-11-27"
    proof.issued_at.FromDatetime(NOW)
    proof.valid_until.FromDatetime(NOW + datetime.timedelta(days=90))
    signer.sign(proof)
    return proof


def codes(problems: list[records_pb2.ProofProblem]) -> list[int]:
    return [p.code for p in problems]


def test_a_signed_proof_verifies(signer: signing.Signer) -> None:
    assert signing.verify(make_proof(signer), keys_of(signer), NOW) == []


def test_an_outsider_verifies_offline_with_the_documented_recipe(signer: signing.Signer) -> None:
    proof = records_pb2.Proof.FromString(make_proof(signer).SerializeToString())  # as received
    public = Ed25519PublicKey.from_public_bytes(keys.public_bytes(key_of(signer).public))
    body = json_format.MessageToDict(proof)
    body.pop("signature", None)
    public.verify(proof.signature, rfc8785.dumps(body))  # raises if invalid


@pytest.mark.parametrize(
    "tamper",
    [
        lambda p: p.claims["has_record"].__setattr__("bool_value", True),
        lambda p: p.claims["as_of"].__setattr__("date_value", "2027-01-01"),
        lambda p: p.parameters.__setitem__("years", "5"),
        lambda p: setattr(p, "subject_id", "sub_other"),
        lambda p: setattr(p, "issued_to", "someone"),
        lambda p: p.purpose.__setattr__("case_id", "case-2"),
        lambda p: p.valid_until.__setattr__("seconds", p.valid_until.seconds + 86400 * 365),
    ],
)
def test_changing_any_claim_or_field_breaks_the_signature(signer: signing.Signer, tamper: object) -> None:
    proof = make_proof(signer)
    tamper(proof)  # type: ignore[operator]
    assert records_pb2.PROOF_PROBLEM_CODE_BAD_SIGNATURE in codes(signing.verify(proof, keys_of(signer), NOW))


def test_expired_unknown_key_revoked_and_malformed(signer: signing.Signer, tmp_path: Path) -> None:
    proof = make_proof(signer)
    later = NOW + datetime.timedelta(days=91)
    assert codes(signing.verify(proof, keys_of(signer), later)) == [records_pb2.PROOF_PROBLEM_CODE_EXPIRED]
    assert codes(signing.verify(proof, {}, NOW)) == [records_pb2.PROOF_PROBLEM_CODE_UNKNOWN_KEY]
    revoked = keys_of(signer, records_pb2.SIGNING_KEY_STATUS_REVOKED)
    assert records_pb2.PROOF_PROBLEM_CODE_KEY_NOT_VALID in codes(signing.verify(proof, revoked, NOW))
    forged = make_proof(new_signer(tmp_path / "other"))
    forged.key_id = key_of(signer).key_id  # claims to be ours
    assert codes(signing.verify(forged, keys_of(signer), NOW)) == [records_pb2.PROOF_PROBLEM_CODE_BAD_SIGNATURE]
    empty = records_pb2.Proof()
    assert records_pb2.PROOF_PROBLEM_CODE_MALFORMED in codes(signing.verify(empty, keys_of(signer), NOW))
    unsigned = make_proof(signer)
    unsigned.signature_scheme = records_pb2.SIGNATURE_SCHEME_UNSPECIFIED
    assert records_pb2.PROOF_PROBLEM_CODE_UNSUPPORTED_SCHEME in codes(signing.verify(unsigned, keys_of(signer), NOW))


def test_key_ids_are_stable_and_distinct(signer: signing.Signer, tmp_path: Path) -> None:
    key_id = key_of(signer).key_id
    assert key_id == keys.key_id_for(key_of(signer).public)
    assert key_id != key_of(new_signer(tmp_path / "other")).key_id
    assert key_id.startswith("ed25519-") and len(key_id) == len("ed25519-") + 16


def test_a_proof_has_no_floating_point_number() -> None:
    """canonical_bytes writes JCS with the stdlib's encoder, which is JCS only without floats."""
    floats = {descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT, descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE}
    seen: set[str] = set()

    def kinds(message: Descriptor) -> set[int]:
        if message.full_name in seen:
            return set()
        seen.add(message.full_name)
        found = {field.type for field in message.fields}
        for field in message.fields:
            if field.message_type is not None:
                found |= kinds(field.message_type)
        return found

    assert kinds(records_pb2.Proof.DESCRIPTOR).isdisjoint(floats)


@pytest.mark.parametrize(
    "text",
    [
        "plain",
        'quote " backslash \\ slash /',
        "controls \x00 \x01 \x08 \t \n \x0b \x0c \r \x1f \x7f",
        "张三 é \u2028 \ufeff \uffff",
        "beyond the BMP \U0001f600",
    ],
)
def test_canonical_bytes_are_those_of_a_jcs_encoder(signer: signing.Signer, text: str) -> None:
    proof = make_proof(signer)
    proof.purpose.note = text
    proof.parameters[text] = text
    # Keys JCS orders by UTF-16 code units otherwise than Python orders them by code point.
    proof.claims["\uffff"].string_value = text
    proof.claims["\U00010000" if "\U0001f600" in text else "\ufffe"].int_value = -(2**63)
    body = json_format.MessageToDict(proof)
    del body["signature"]
    assert signing.canonical_bytes(proof) == rfc8785.dumps(body)
