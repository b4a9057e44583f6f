"""GetProof renders its events' proto3 JSON itself (contract.proof_issued_json,
data_accessed_json): what it publishes must be what protobuf's printer makes of the messages."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from google.protobuf import json_format

from govmesh.messaging import Envelope
from govmesh.records.v1 import events_pb2, records_pb2
from services.records import contract
from services.records.domain import access_log
from tests.unit.records.test_signing import NOW, make_proof, new_signer

MOMENTS = [
    NOW,
    NOW + datetime.timedelta(microseconds=123_000),
    NOW + datetime.timedelta(microseconds=123_456),
    NOW + datetime.timedelta(microseconds=1),
]


def entry(**changes: object) -> access_log.Entry:
    given: dict[str, object] = {
        "accessed_at": NOW,
        "caller_id": "demo-portal",
        "caller_name": "Demo portal 演示",
        "subject_id": "sub_abc",
        "subject_masked_identifier": "330106********123X",
        "proof_type": "driving_licence",
        "purpose_kind": "case_id",
        "purpose_value": "case-1",
        "purpose_note": "",
        "outcome": access_log.Outcome.GRANTED,
        "proof_id": "3f0c6c1e-2f43-4c07-9a64-6f3d2c1b0a99",
        "entry_id": 12,
    }
    return access_log.Entry(**(given | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes",
    [
        {},
        *({"accessed_at": moment} for moment in MOMENTS),
        {"outcome": access_log.Outcome.DENIED, "proof_id": ""},
        {"purpose_kind": "legal_basis", "purpose_value": "medical_credit_enrolment", "purpose_note": "a note"},
        {"purpose_kind": "", "purpose_value": "", "purpose_note": ""},
        {"purpose_kind": "", "purpose_value": "", "purpose_note": "only a note"},
        {"entry_id": 0, "caller_name": "", "subject_masked_identifier": ""},
        {"entry_id": 2**62},
    ],
)
def test_data_accessed_json_is_what_protobuf_prints(changes: dict[str, object]) -> None:
    read = entry(**changes)
    rendered = contract.data_accessed_json(read)
    message = contract.data_accessed(read)
    assert rendered.descriptor is events_pb2.DataAccessed.DESCRIPTOR
    assert rendered.fields == json_format.MessageToDict(message)
    ours = Envelope.for_event("records", rendered, read.subject_id, {})
    theirs = Envelope.for_event("records", message, read.subject_id, {})
    assert (ours.body, ours.event_type, ours.routing_key) == (theirs.body, theirs.event_type, theirs.routing_key)


def test_every_field_of_proof_issued_is_the_proofs_own() -> None:
    proof = records_pb2.Proof.DESCRIPTOR.fields_by_name
    for field in events_pb2.ProofIssued.DESCRIPTOR.fields:
        same = proof[field.name]
        assert (same.json_name, same.type, same.is_repeated) == (field.json_name, field.type, field.is_repeated)
        assert (same.message_type and same.message_type.full_name) == (
            field.message_type and field.message_type.full_name
        )


@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize(
    "purpose",
    [
        records_pb2.Purpose(case_id="case-1"),
        records_pb2.Purpose(legal_basis="medical_credit_enrolment", note="a note 备注"),
    ],
)
def test_proof_issued_json_is_what_protobuf_prints(
    tmp_path: Path, moment: datetime.datetime, purpose: records_pb2.Purpose
) -> None:
    signer = new_signer(tmp_path)
    proof = make_proof(signer)
    proof.purpose.CopyFrom(purpose)
    proof.issued_at.FromDatetime(moment)
    proof.issued_to = ""
    signed = signer.sign(proof)
    rendered = contract.proof_issued_json(signed)
    assert rendered.descriptor is events_pb2.ProofIssued.DESCRIPTOR
    assert rendered.fields == json_format.MessageToDict(contract.proof_issued(proof))
    assert Envelope.for_event("records", rendered, "s", {}).body == json_format.MessageToJson(
        contract.proof_issued(proof), indent=None, sort_keys=True
    )
