"""Records' contract: protobuf messages read into domain values (and refused with the field and
reason when they cannot be), and domain values built into answers and events. Values only:
never a session or a query."""

from __future__ import annotations

import base64
import datetime
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from govmesh import clock, enums, texts
from govmesh import typed_values as values
from govmesh.errors import InvalidArgument
from govmesh.identity.v1 import identity_pb2
from govmesh.messaging import RenderedEvent
from govmesh.parties import Party
from govmesh.records.v1 import events_pb2, records_pb2
from govmesh.texts import text_problem
from services.records.domain import access_log, catalogue, proofs
from services.records.domain.feed import MAX_TEXT, Checked, PublishSummary, Refused, RejectionCode

#: Longest note a purpose may carry.
MAX_NOTE = 500

# -- subjects -------------------------------------------------------------------------------------


def subject_kind(party: Party) -> catalogue.SubjectKind:
    kind = enums.from_proto(catalogue.SubjectKind, identity_pb2.SubjectKind, "SUBJECT_KIND_", party.kind)
    if kind is None:
        raise ValueError(f"identity named no subject kind records knows ({party.kind})")
    return kind


def kind_to_proto(kind: catalogue.SubjectKind) -> identity_pb2.SubjectKind.ValueType:
    return identity_pb2.SubjectKind.ValueType(enums.to_proto(identity_pb2.SubjectKind, "SUBJECT_KIND_", kind))


# -- the catalogue (ListDepartments, ListProofTypes) ----------------------------------------------


def department_to_proto(spec: catalogue.DepartmentSpec) -> records_pb2.Department:
    return records_pb2.Department(
        code=spec.code,
        name_zh=spec.name_zh,
        name_en=spec.name_en,
        record_types=[
            records_pb2.RecordType(
                code=rt.code,
                name_zh=rt.name_zh,
                name_en=rt.name_en,
                subject_kinds=sorted(kind_to_proto(k) for k in rt.subject_kinds),
            )
            for rt in spec.record_types
        ],
    )


def proof_type_to_proto(spec: proofs.ProofTypeSpec) -> records_pb2.ProofType:
    validity = Duration()
    validity.FromTimedelta(spec.validity)
    return records_pb2.ProofType(
        code=spec.code,
        name_zh=spec.name_zh,
        name_en=spec.name_en,
        description=spec.description,
        department_codes=list(spec.department_codes),
        subject_kinds=sorted(kind_to_proto(k) for k in spec.subject_kinds),
        parameters=[
            records_pb2.ProofParameter(
                name=p.name,
                description_zh=p.description_zh,
                description_en=p.description_en,
                required=p.required,
                default_value=p.default,
            )
            for p in spec.parameters
        ],
        validity=validity,
        claim_names=list(spec.claim_names),
    )


def departments() -> records_pb2.ListDepartmentsResponse:
    return records_pb2.ListDepartmentsResponse(departments=[department_to_proto(d) for d in catalogue.DEPARTMENTS])


def proof_types() -> records_pb2.ListProofTypesResponse:
    return records_pb2.ListProofTypesResponse(proof_types=[proof_type_to_proto(p) for p in proofs.PROOF_TYPES])


# -- department feeds -----------------------------------------------------------------------------


def subject_key(record: records_pb2.DepartmentRecord) -> tuple[str, str]:
    """Which subject field the record uses and its value: what identity is asked about."""
    which = record.WhichOneof("subject") or ""
    return which, str(getattr(record, which)) if which else ""


def display_name(record: records_pb2.DepartmentRecord) -> str:
    """The subject's name as identity would keep it, "" when none is given; Refused naming
    subject_display_name when it holds what no name may (identity's own rule, checked here so
    that identity is never asked with it)."""
    try:
        return texts.display_name(record.subject_display_name, "subject_display_name", required=False)
    except InvalidArgument as exc:
        raise Refused(RejectionCode.INVALID_FIELD, exc.message) from None


def read_record(record: records_pb2.DepartmentRecord, department: catalogue.DepartmentSpec) -> Checked:
    """A record of a known department read into domain values and checked against the catalogue;
    Refused naming the first field that does not hold."""
    spec = catalogue.record_type(department.code, record.record_type)
    if spec is None:
        raise Refused(
            RejectionCode.UNKNOWN_RECORD_TYPE,
            f"record_type: {record.record_type[:64]!r} is not a record type of {department.code!r}",
        )
    reference = record.source_reference.strip()
    for name, text in (
        ("source_reference", reference),
        ("supersedes_source_reference", record.supersedes_source_reference),
    ):
        problem = "is required" if name == "source_reference" and not text else text_problem(text, MAX_TEXT)
        if problem:
            raise Refused(RejectionCode.INVALID_FIELD, f"{name}: {problem}")
    display_name(record)
    effective_from = _date(record.effective_from, "effective_from")
    effective_to = _date(record.effective_to, "effective_to") if record.effective_to else None
    if effective_to and effective_to < effective_from:
        raise Refused(RejectionCode.INVALID_FIELD, "effective_to: lies before effective_from")
    try:
        fields = values.fields_from_proto(record.fields, "fields.")
    except values.UnreadableValue as exc:
        raise Refused(RejectionCode.INVALID_FIELD, str(exc)) from None
    problems = catalogue.validate_fields(spec, fields)
    if problems:
        raise Refused(RejectionCode.INVALID_FIELD, "; ".join(f"fields.{p.message}" for p in problems[:5]))
    recorded_at = None
    if record.HasField("recorded_at"):
        try:
            recorded_at = record.recorded_at.ToDatetime(datetime.UTC)
        except (ValueError, OverflowError):
            raise Refused(RejectionCode.INVALID_FIELD, "recorded_at: is not a valid time") from None
    return Checked(
        department.code,
        spec,
        reference,
        fields,
        effective_from,
        effective_to,
        recorded_at,
        record.supersedes_source_reference,
    )


def _date(text: str, name: str) -> datetime.date:
    if not text:
        raise Refused(RejectionCode.INVALID_FIELD, f"{name}: is required (YYYY-MM-DD)")
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise Refused(RejectionCode.INVALID_FIELD, f"{name}: {text[:40]!r} is not a date") from None


def rejection_code(code: RejectionCode) -> records_pb2.RecordRejectionCode.ValueType:
    return records_pb2.RecordRejectionCode.ValueType(
        enums.to_proto(records_pb2.RecordRejectionCode, "RECORD_REJECTION_CODE_", code)
    )


def rejection_code_name(code: RejectionCode) -> str:
    """The contract's name of a rejection code (RECORD_REJECTION_CODE_INVALID_FIELD)."""
    return records_pb2.RecordRejectionCode.Name(rejection_code(code))


def publish_response(summary: PublishSummary) -> records_pb2.PublishRecordsResponse:
    return records_pb2.PublishRecordsResponse(
        received=summary.received,
        stored=summary.stored,
        duplicates=summary.duplicates,
        rejected=summary.rejected,
        rejections=[
            records_pb2.RecordRejection(
                index=r.index,
                department_code=r.department_code,
                source_reference=r.source_reference,
                code=rejection_code(r.code),
                message=r.message,
            )
            for r in summary.rejections
        ],
    )


def record_published_json(
    record_id: str, item: Checked, supersedes: str | None, channel: str, now: datetime.datetime
) -> RenderedEvent:
    """The RecordPublished event of a stored record, as its proto3 JSON written directly: a feed
    publishes one per record, and protobuf's pure-Python printer took 15 of an event's 40 µs
    (about 4% of records' api per record in a seed). What json_format.MessageToDict makes of the
    message, field for field: one at its default value is left out, an enum is its name, a time
    RFC 3339 (tests/unit/records/test_events_json.py holds the two equal)."""
    assert item.subject is not None
    given = {
        "recordId": record_id,
        "departmentCode": item.department,
        "recordType": item.spec.code,
        "sourceReference": item.reference,
        "subjectId": item.subject.subject_id,
        "subjectMaskedIdentifier": item.subject.masked_identifier,
        "subjectKind": _SUBJECT_KIND_NAMES.get(item.subject.kind, ""),
        "effectiveFrom": item.effective_from.isoformat(),
        "effectiveTo": item.effective_to.isoformat() if item.effective_to else "",
        "supersedesRecordId": supersedes or "",
        "channel": _CHANNEL_NAMES[channel],
        "publishedAt": clock.timestamp(now).ToJsonString(),
    }
    return RenderedEvent(events_pb2.RecordPublished.DESCRIPTOR, {name: value for name, value in given.items() if value})


_SUBJECT_KIND_NAMES = {number: name for name, number in identity_pb2.SubjectKind.items() if number}
_CHANNEL_NAMES = {
    "grpc": events_pb2.IngestChannel.Name(events_pb2.INGEST_CHANNEL_GRPC),
    "broker": events_pb2.IngestChannel.Name(events_pb2.INGEST_CHANNEL_BROKER),
}


# -- proofs ---------------------------------------------------------------------------------------


def read_purpose(purpose: records_pb2.Purpose | None) -> records_pb2.Purpose:
    """The purpose as it will be kept (trimmed), after refusing what must not be kept. The same
    object is checked for rights, audited, signed into the proof and published."""
    kind = purpose.WhichOneof("basis") if purpose is not None else None
    if purpose is None or kind is None:
        raise InvalidArgument("purpose", "MISSING", "is required: give a case_id or a legal_basis")
    value = getattr(purpose, kind).strip()
    if not value:
        raise InvalidArgument(f"purpose.{kind}", "EMPTY", "must not be empty")
    note = purpose.note.strip()
    for name, text, limit in ((f"purpose.{kind}", value, MAX_TEXT), ("purpose.note", note, MAX_NOTE)):
        problem = text_problem(text, limit)
        if problem:
            raise InvalidArgument(name, "INVALID", problem)
    cleaned = records_pb2.Purpose(note=note)
    setattr(cleaned, kind, value)
    return cleaned


def new_proof(
    proof_id: str,
    spec: proofs.ProofTypeSpec,
    subject: Party,
    claims: dict[str, catalogue.Value],
    parameters: dict[str, str],
    issued_to: str,
    purpose: records_pb2.Purpose,
    now: datetime.datetime,
) -> records_pb2.Proof:
    """The proof, not yet signed."""
    return records_pb2.Proof(
        proof_id=proof_id,
        subject_id=subject.subject_id,
        subject_masked_identifier=subject.masked_identifier,
        subject_kind=subject.kind,
        proof_type=spec.code,
        issuing_department_code=spec.issuing_department_code,
        claims=values.fields_to_proto(claims),
        parameters=parameters,
        issued_to=issued_to,
        purpose=purpose,
        issued_at=clock.timestamp(now),
        valid_until=clock.timestamp(now + spec.validity),
    )


#: ProofIssued's fields by their JSON names: each is the proof's field of the same name and type
#: (tests/unit/records/test_events_json.py).
_ISSUED_FIELDS = tuple(field.json_name for field in events_pb2.ProofIssued.DESCRIPTOR.fields)


def proof_issued_json(signed: dict[str, Any]) -> RenderedEvent:
    """The ProofIssued event of a proof as its proto3 JSON, taken from the proof's own (signing.Signer.sign's
    answer) rather than printed again field by field."""
    fields = {name: signed[name] for name in _ISSUED_FIELDS if name in signed}
    return RenderedEvent(events_pb2.ProofIssued.DESCRIPTOR, fields)


def proof_verification(
    problems: list[records_pb2.ProofProblem], now: datetime.datetime
) -> records_pb2.VerifyProofResponse:
    return records_pb2.VerifyProofResponse(valid=not problems, problems=problems, checked_at=clock.timestamp(now))


# -- the audit trail ------------------------------------------------------------------------------


def time_of(stamp: Timestamp, name: str) -> datetime.datetime:
    try:
        return stamp.ToDatetime(datetime.UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(name, "INVALID", "is not a valid time") from None


def outcome_to_proto(outcome: access_log.Outcome) -> records_pb2.AccessOutcome.ValueType:
    return records_pb2.AccessOutcome.ValueType(enums.to_proto(records_pb2.AccessOutcome, "ACCESS_OUTCOME_", outcome))


def purpose_of(entry: access_log.Entry) -> records_pb2.Purpose:
    purpose = records_pb2.Purpose(note=entry.purpose_note)
    if entry.purpose_kind:
        setattr(purpose, entry.purpose_kind, entry.purpose_value)
    return purpose


def data_accessed_json(entry: access_log.Entry) -> RenderedEvent:
    """The DataAccessed event of an access entry as its proto3 JSON, written directly (json_format.MessageToDict of the
    message makes the same object, 5 times slower): a field at its default value is left out,
    a 64-bit integer is a string, an enum its name, a time RFC 3339."""
    purpose: dict[str, str] = {_PURPOSE_NAMES[entry.purpose_kind]: entry.purpose_value} if entry.purpose_kind else {}
    if entry.purpose_note:
        purpose["note"] = entry.purpose_note
    given = {
        "sequence": str(entry.entry_id) if entry.entry_id else "",
        "subjectId": entry.subject_id,
        "subjectMaskedIdentifier": entry.subject_masked_identifier,
        "callerId": entry.caller_id,
        "callerName": entry.caller_name,
        "proofType": entry.proof_type,
        "outcome": _OUTCOME_NAMES[entry.outcome],
        "proofId": entry.proof_id,
        "accessedAt": clock.timestamp(entry.accessed_at).ToJsonString(),
    }
    fields: dict[str, Any] = {name: value for name, value in given.items() if value}
    fields["purpose"] = purpose  # a message field that is set: {} when empty
    return RenderedEvent(events_pb2.DataAccessed.DESCRIPTOR, fields)


_PURPOSE_NAMES = {field.name: field.json_name for field in records_pb2.Purpose.DESCRIPTOR.fields}
_OUTCOME_NAMES = {
    outcome: records_pb2.AccessOutcome.Name(outcome_to_proto(outcome)) if outcome_to_proto(outcome) else ""
    for outcome in access_log.Outcome
}


def _entry_fields(entry: access_log.Entry) -> dict[str, Any]:
    """What a ListAccesses entry says of an access entry."""
    return {
        "sequence": entry.entry_id,
        "subject_id": entry.subject_id,
        "subject_masked_identifier": entry.subject_masked_identifier,
        "caller_id": entry.caller_id,
        "caller_name": entry.caller_name,
        "proof_type": entry.proof_type,
        "purpose": purpose_of(entry),
        "outcome": outcome_to_proto(entry.outcome),
        "proof_id": entry.proof_id,
        "accessed_at": clock.timestamp(entry.accessed_at),
    }


def accesses_page(view: access_log.TrackerPage, size: int) -> records_pb2.ListAccessesResponse:
    """A page of the tracker: each sealed entry with its leaf and its audit path to the head."""
    response = records_pb2.ListAccessesResponse()
    if view.head is not None:
        response.tree_head.CopyFrom(signed_tree_head(view.head))
    for entry in view.entries[:size]:
        message = records_pb2.AccessEntry(**_entry_fields(entry))
        path = view.paths.get(entry.entry_id)
        if path is not None and entry.leaf_index is not None:
            message.sealed = True
            message.leaf_index = entry.leaf_index
            message.leaf_bytes = entry.leaf_bytes()
            message.entry_hash = view.leaf_hashes[entry.entry_id]
            message.inclusion_proof.extend(path)
        response.entries.append(message)
    return response


def signed_tree_head(head: access_log.TreeHead) -> records_pb2.SignedTreeHead:
    return records_pb2.SignedTreeHead(
        log_id=head.log_id,
        tree_size=head.tree_size,
        root_hash=head.root_hash,
        timestamp=access_log.rfc3339(head.timestamp),
        key_id=head.key_id,
        signature=head.signature,
    )


def tree_head_signed(head: access_log.TreeHead) -> events_pb2.TreeHeadSigned:
    return events_pb2.TreeHeadSigned(tree_head=signed_tree_head(head))


def log_verification(
    verification: access_log.Verification, pending: int, now: datetime.datetime
) -> records_pb2.VerifyAuditTrailResponse:
    latest = verification.latest
    response = records_pb2.VerifyAuditTrailResponse(
        intact=verification.intact,
        entries_checked=verification.entries_checked,
        tree_heads_checked=verification.tree_heads_checked,
        entries_pending=pending,
        head_hash=latest.root_hash if latest else b"",
        checked_at=clock.timestamp(now),
    )
    if latest is not None:
        response.tree_head.CopyFrom(signed_tree_head(latest))
    found = verification.first_break
    if found is not None:
        kind = enums.to_proto(records_pb2.AuditBreakKind, "AUDIT_BREAK_KIND_", found.kind)
        response.first_break.CopyFrom(
            records_pb2.AuditBreak(
                sequence=found.entry_id,
                kind=records_pb2.AuditBreakKind.ValueType(kind),
                message=found.message,
                leaf_index=found.leaf_index or 0,
                tree_size=found.tree_size,
            )
        )
    return response


def page_token(entry_id: int) -> str:
    return base64.urlsafe_b64encode(str(entry_id).encode()).decode()


def read_page_token(token: str) -> int:
    """The entry number a page token names; INVALID_ARGUMENT naming page_token when it names none."""
    try:
        before = int(base64.urlsafe_b64decode(token.encode()).decode())
    except (ValueError, UnicodeDecodeError):
        before = 0
    if not 0 < before < 2**63:
        raise InvalidArgument("page_token", "INVALID", "is not a token this service gave out")
    return before
