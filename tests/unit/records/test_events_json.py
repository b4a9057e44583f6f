"""GetProof and the feeds render their events' proto3 JSON themselves (contract.proof_issued_json,
data_accessed_json, record_published_json): what they publish must be what protobuf's printer
makes of the messages."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from google.protobuf import json_format
from hypothesis import given
from hypothesis import strategies as st

from govmesh import clock
from govmesh.identity.v1 import identity_pb2
from govmesh.messaging import Envelope
from govmesh.parties import Party
from govmesh.records.v1 import events_pb2, records_pb2
from services.records import contract
from services.records.domain import access_log, catalogue
from services.records.domain.feed import Checked
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


def data_accessed(entry: access_log.Entry) -> events_pb2.DataAccessed:
    """The event as protobuf makes it, field by field: what the rendered JSON is held to."""
    return events_pb2.DataAccessed(
        sequence=entry.entry_id,
        subject_id=entry.subject_id,
        subject_masked_identifier=entry.subject_masked_identifier,
        caller_id=entry.caller_id,
        caller_name=entry.caller_name,
        proof_type=entry.proof_type,
        purpose=contract.purpose_of(entry),
        outcome=contract.outcome_to_proto(entry.outcome),
        proof_id=entry.proof_id,
        accessed_at=clock.timestamp(entry.accessed_at),
    )


def proof_issued(proof: records_pb2.Proof) -> events_pb2.ProofIssued:
    return events_pb2.ProofIssued(
        proof_id=proof.proof_id,
        proof_type=proof.proof_type,
        issuing_department_code=proof.issuing_department_code,
        subject_id=proof.subject_id,
        subject_masked_identifier=proof.subject_masked_identifier,
        issued_to=proof.issued_to,
        purpose=proof.purpose,
        issued_at=proof.issued_at,
        valid_until=proof.valid_until,
        key_id=proof.key_id,
    )


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
    message = data_accessed(read)
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
    assert rendered.fields == json_format.MessageToDict(proof_issued(proof))
    assert Envelope.for_event("records", rendered, "s", {}).body == json_format.MessageToJson(
        proof_issued(proof), indent=None, sort_keys=True
    )


TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
DATES = st.dates(datetime.date(1900, 1, 1), datetime.date(2200, 12, 31))


@given(
    texts=st.tuples(TEXT, TEXT, TEXT, TEXT),
    kind=st.sampled_from(identity_pb2.SubjectKind.values()),
    effective=st.tuples(DATES, st.none() | DATES),
    supersedes=st.none() | TEXT,
    channel=st.sampled_from(["grpc", "broker"]),
    now=st.datetimes(datetime.datetime(1970, 1, 1), datetime.datetime(2200, 1, 1), timezones=st.just(datetime.UTC)),
)
def test_record_published_json_is_what_protobuf_prints(
    texts: tuple[str, str, str, str],
    kind: int,
    effective: tuple[datetime.date, datetime.date | None],
    supersedes: str | None,
    channel: str,
    now: datetime.datetime,
) -> None:
    record_id, reference, subject_id, masked = texts
    department = catalogue.DEPARTMENTS[0]
    spec = department.record_types[0]
    subject = Party(subject_id, masked, identity_pb2.SubjectKind.ValueType(kind))
    item = Checked(department.code, spec, reference, {}, effective[0], effective[1], None, "", subject)
    rendered = contract.record_published_json(record_id, item, supersedes, channel, now)
    message = events_pb2.RecordPublished(
        record_id=record_id,
        department_code=department.code,
        record_type=spec.code,
        source_reference=reference,
        subject_id=subject_id,
        subject_masked_identifier=masked,
        subject_kind=identity_pb2.SubjectKind.ValueType(kind),
        effective_from=effective[0].isoformat(),
        effective_to=effective[1].isoformat() if effective[1] else "",
        supersedes_record_id=supersedes or "",
        channel=events_pb2.INGEST_CHANNEL_GRPC if channel == "grpc" else events_pb2.INGEST_CHANNEL_BROKER,
        published_at=clock.timestamp(now),
    )
    assert rendered.descriptor is events_pb2.RecordPublished.DESCRIPTOR
    assert rendered.fields == json_format.MessageToDict(message)
    assert Envelope.for_event("records", rendered, subject_id, {}).body == json_format.MessageToJson(
        message, indent=None, sort_keys=True
    )
