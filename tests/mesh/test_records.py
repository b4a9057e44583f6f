"""Records through its public interfaces, with identity beside it: departments publish over gRPC
and over the broker, callers pull signed proofs, citizens see who read their data, and anyone
can check the audit trail. Every test runs on SQLite and on PostgreSQL.

The tests share one mesh per database: each publishes records of people of its own under
references of its own, picks the events, records and trail entries it caused, reads the trail's
length and the figures as differences, and puts back what it tampers with (the trail, the
clock)."""

from __future__ import annotations

import base64
import datetime
import itertools
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from typing import Any

import grpc
import pytest
import rfc8785
import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf import json_format

from govmesh.auth import Policy
from govmesh.config import ROOT
from govmesh.records.v1 import records_pb2, records_pb2_grpc
from tests.support.mesh import (
    Delivery,
    Process,
    ServiceEnv,
    assert_no_raw_identifiers,
    call_nameko_rpc,
    consumers,
    database_for,
    dead_letters,
    free_port,
    govmesh,
    metrics_text,
    virtual_host,
    wait_for,
)
from tests.support.people import (
    CONTROL_AND_FORMAT_CHARACTERS,
    ENTERPRISE,
    LUO_FANG,
    RAW_IDS,
    XU_WEI,
    credit_code,
    licence,
    typed,
    wait_serving,
    with_wrong_check,
)
from tests.support.records_mesh import publish_on_broker, publish_raw
from tests.support.shared_mesh import Integrators, about, counter, new_resident, receive_own

_companies = itertools.count(1)

PROOF_TYPES_FOR_RESIDENTS = [
    "education_level",
    "driving_licence",
    "traffic_safety",
    "criminal_record",
    "household_registration",
    "medical_insurance_enrolment",
    "city_credit_score",
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def mesh(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceEnv]:
    """Identity and records (an api and a worker each) per database, in a virtual host of their
    own, for every test of the module."""
    tmp_path = tmp_path_factory.mktemp("records")
    with virtual_host() as amqp:
        env = ServiceEnv("records", database_for(request, tmp_path), tmp_path, amqp, others=("identity",))
        try:
            env.migrate("identity")
            env.migrate("records")
            env.process("api", "identity")
            env.process("worker", "identity")
            env.process("api", "records")
            env.process("worker", "records")
            wait_for(lambda: consumers(amqp, "rpc-identity") > 0)
            wait_for(lambda: consumers(amqp, "records.records.ingest") > 0)
            wait_for(lambda: consumers(amqp, "rpc-records") > 0)
            wait_serving(env.target_of("identity"), "govmesh.identity.v1.IdentityService")
            wait_serving(env.target, "govmesh.records.v1.RecordsService")
            yield env
        finally:
            env.stop_all()
        assert_no_raw_identifiers(env.all_output(), "identity and records processes' output")


@pytest.fixture
def integrators(mesh: ServiceEnv) -> Iterator[Integrators]:
    with Integrators(mesh.env["AMQP_URI"]) as opened:
        yield opened


class Records:
    def __init__(self, env: ServiceEnv, caller: str = "demo-portal") -> None:
        self.env = env
        self.stub = records_pb2_grpc.RecordsServiceStub(grpc.insecure_channel(env.target))
        self.metadata = [("authorization", f"Bearer {env.token(caller)}")]

    def publish(self, *records: records_pb2.DepartmentRecord) -> records_pb2.PublishRecordsResponse:
        batches = iter([records_pb2.PublishRecordsRequest(records=list(records))])
        return self.stub.PublishRecords(batches, metadata=self.metadata, timeout=30)

    def proof(self, proof_type: str, identifier: str, case_id: str = "case-1", **kwargs: object) -> records_pb2.Proof:
        request = records_pb2.GetProofRequest(
            identifier=identifier, proof_type=proof_type, purpose=records_pb2.Purpose(case_id=case_id), **kwargs
        )
        return self.stub.GetProof(request, metadata=self.metadata, timeout=10).proof

    def verify(self, proof: records_pb2.Proof) -> records_pb2.VerifyProofResponse:
        return self.stub.VerifyProof(records_pb2.VerifyProofRequest(proof=proof), metadata=self.metadata, timeout=10)

    def audit(self) -> records_pb2.VerifyAuditTrailResponse:
        """The log's verification once the worker's sequencer has sealed every entry written."""
        deadline = time.monotonic() + 20
        while True:
            result = self.stub.VerifyAuditTrail(
                records_pb2.VerifyAuditTrailRequest(), metadata=self.metadata, timeout=30
            )
            if result.entries_pending == 0 or time.monotonic() > deadline:
                return result
            time.sleep(0.1)


def stored_records(env: ServiceEnv, references: Collection[str]) -> int:
    """How many of the records with these source references are stored."""
    engine = env.engine("records")
    query = sa.text("SELECT count(*) FROM records WHERE source_reference IN :references")
    try:
        with engine.connect() as connection:
            query = query.bindparams(sa.bindparam("references", expanding=True))
            return int(connection.execute(query, {"references": list(references)}).scalar_one())
    finally:
        engine.dispose()


def references(*records: records_pb2.DepartmentRecord) -> set[str]:
    return {record.source_reference for record in records}


def with_reference(references: Collection[str]) -> Callable[[Delivery], bool]:
    """Picks the record_published events of records with these source references."""
    return lambda message: json.loads(message[2])["sourceReference"] in references


def trail_length(portal: Records) -> int:
    """How many entries the (intact) trail holds: what the test then adds is counted from it."""
    trail = portal.audit()
    assert trail.intact
    return int(trail.entries_checked)


def test_department_feed_is_idempotent_over_grpc_and_the_broker(mesh: ServiceEnv, integrators: Integrators) -> None:
    events = integrators.bind("records.events", "record_published")
    police = Records(mesh, "public_security")
    tag = uuid.uuid4().hex[:8]
    first_reference, second_reference = f"DL-{tag}-0001", f"DL-{tag}-0002"
    record = licence(new_resident(), reference=first_reference)

    first = police.publish(record)
    assert (first.received, first.stored, first.duplicates, first.rejected) == (1, 1, 0, 0)
    again = police.publish(record)
    assert (again.stored, again.duplicates) == (0, 1)
    publish_on_broker(mesh, record)  # the same record on the other path
    publish_on_broker(mesh, licence(new_resident(), reference=second_reference))  # a new one

    own = with_reference({first_reference, second_reference})
    received = receive_own(events, 2, own) + [m for m in events.drain(quiet=1.5) if own(m)]
    bodies = [json.loads(body) for _, _, body in received]
    assert sorted(b["sourceReference"] for b in bodies) == [first_reference, second_reference]
    assert {b["sourceReference"]: b["channel"] for b in bodies} == {
        first_reference: "INGEST_CHANNEL_GRPC",
        second_reference: "INGEST_CHANNEL_BROKER",
    }
    assert stored_records(mesh, {first_reference, second_reference}) == 2
    for body in bodies:
        assert body["subjectId"].startswith("sub_") and "*" in body["subjectMaskedIdentifier"]


def test_a_departments_token_on_the_broker_goes_no_further_than_records(
    mesh: ServiceEnv, integrators: Integrators
) -> None:
    """nameko sends a worker's context (the headers of the message it handles) with every RPC the
    worker makes: the department's bearer token must not ride along to identity."""
    calls_to_identity = integrators.bind("nameko-rpc", "identity.*")
    token = mesh.token("public_security")
    record = licence(new_resident())  # someone identity does not know yet: records must ask it
    publish_raw(mesh, json_format.MessageToJson(record).encode(), token)
    about_them = record.subject_identifier[-6:].encode()
    calls = [call for call in calls_to_identity.receive(1, timeout=30) if about_them in call[2]]
    assert calls, "records asked identity nothing about the new person"
    headers = json.dumps(calls[0][1].headers)
    assert token not in headers and "authorization" not in headers.lower(), sorted(calls[0][1].headers)


def test_a_record_without_a_content_type_on_the_broker_is_read_as_the_json_it_is(
    mesh: ServiceEnv, integrators: Integrators
) -> None:
    """The contract's one body form is proto3 JSON, and the same JSON is fine over gRPC: a
    department's client that sets no content type is not dead-lettered for it. A body without a
    content type that is not JSON is dead-lettered saying so."""
    events = integrators.bind("records.events", "record_published")
    record = licence(new_resident())
    publish_raw(mesh, json_format.MessageToJson(record).encode(), mesh.token("public_security"), content_type=None)
    received = receive_own(events, 1, with_reference({record.source_reference}), timeout=30)
    assert len(received) == 1 and stored_records(mesh, {record.source_reference}) == 1

    tag = uuid.uuid4().hex
    publish_raw(mesh, f"not json {tag}".encode(), mesh.token("public_security"), content_type=None)
    amqp = mesh.env["AMQP_URI"]
    [(_, properties, _)] = dead_letters(amqp, "records.records.ingest", lambda letter: tag.encode() in letter[2])
    assert properties.headers["x-govmesh-refusal-field"] == "body"


def test_a_feed_batch_registers_its_new_people_with_identity_in_one_call(mesh: ServiceEnv) -> None:
    identity = mesh.ports["identity"]
    calls = {
        method: f'govmesh_grpc_requests_total{{code="OK",method="{method}",service="identity"}}'
        for method in ("RegisterSubjects", "RegisterSubject", "ResolveSubject")
    }
    before = {method: counter(identity["api_metrics"], series) for method, series in calls.items()}
    people = [new_resident() for _ in range(40)]
    bad = with_wrong_check(new_resident())
    batch = [licence(person) for person in people] + [licence(person) for person in people[:10]] + [licence(bad)]

    response = Records(mesh, "public_security").publish(*batch)

    assert (response.received, response.stored, response.rejected) == (51, 50, 1)
    [rejection] = response.rejections
    assert rejection.index == 50 and rejection.code == records_pb2.RECORD_REJECTION_CODE_INVALID_SUBJECT
    assert rejection.message.startswith("subject_identifier: not a valid identifier")  # the field named once
    assert bad[:-1] not in rejection.message
    after = {method: counter(identity["api_metrics"], series) for method, series in calls.items()}
    assert {method: after[method] - before[method] for method in calls} == {
        "RegisterSubjects": 1,  # the 41 people the batch brings, in one call
        "RegisterSubject": 0,
        "ResolveSubject": 0,
    }

    # The broker's feed registers through identity's worker in the same way (a batch of one).
    created = 'govmesh_identity_registrations_total{created="true",kind="resident"}'
    registered_before = counter(identity["worker_metrics"], created)
    reference = f"DL-{uuid.uuid4().hex[:10]}"
    publish_on_broker(mesh, licence(new_resident(), reference=reference))
    wait_for(lambda: stored_records(mesh, {reference}) == 1)
    assert counter(identity["worker_metrics"], created) - registered_before == 1


def test_the_same_records_arriving_on_both_paths_at_once_are_stored_once(
    mesh: ServiceEnv, integrators: Integrators
) -> None:
    events = integrators.bind("records.events", "record_published")
    police = Records(mesh, "public_security")
    person, tag = new_resident(), uuid.uuid4().hex[:8]
    police.publish(licence(person, reference=f"warm-up-{tag}"))  # registers the subject once, before the race
    batch = [licence(person, reference=f"RACE-{tag}-{i}") for i in range(20)]
    over_grpc = threading.Thread(target=police.publish, args=batch)
    over_grpc.start()
    for record in batch:
        publish_on_broker(mesh, record)
    over_grpc.join(30)
    expected = [f"warm-up-{tag}"] + [f"RACE-{tag}-{i}" for i in range(20)]
    own = with_reference(expected)
    received = receive_own(events, 21, own, timeout=30) + [m for m in events.drain(quiet=2) if own(m)]
    published = sorted(json.loads(body)["sourceReference"] for _, _, body in received)
    assert published == sorted(expected)
    assert stored_records(mesh, expected) == 21


def test_bad_records_are_refused_one_by_one_with_the_field_and_reason(mesh: ServiceEnv) -> None:
    transport = Records(mesh, "transport")
    person = new_resident()
    good = licence(person)
    good.department_code = "transport"
    unknown_department = licence(person)
    unknown_department.department_code = "ministry_of_magic"
    wrong_type = licence(person)
    wrong_type.department_code, wrong_type.record_type = "transport", "driving_licence_x"
    bad_identifier = licence(with_wrong_check(person))
    bad_field = licence(person)
    bad_field.fields["status"].string_value = "lost in the post"
    missing_date = licence(person)
    missing_date.effective_from = ""

    response = transport.publish(unknown_department, good, wrong_type, bad_identifier, bad_field, missing_date)
    assert (response.received, response.stored, response.rejected) == (6, 0, 6)
    by_index = {r.index: r for r in response.rejections}
    assert by_index[0].code == records_pb2.RECORD_REJECTION_CODE_UNKNOWN_DEPARTMENT
    assert by_index[0].message.startswith("department_code:")
    assert by_index[1].code == records_pb2.RECORD_REJECTION_CODE_UNKNOWN_RECORD_TYPE  # transport owns no licences
    assert by_index[2].code == records_pb2.RECORD_REJECTION_CODE_UNKNOWN_RECORD_TYPE
    for index in (3, 4, 5):  # public security's records: transport may not publish them
        assert by_index[index].code == records_pb2.RECORD_REJECTION_CODE_NOT_PERMITTED

    police = Records(mesh, "public_security")
    response = police.publish(bad_identifier, bad_field, missing_date)
    codes = [r.code for r in response.rejections]
    assert codes == [
        records_pb2.RECORD_REJECTION_CODE_INVALID_SUBJECT,
        records_pb2.RECORD_REJECTION_CODE_INVALID_FIELD,
        records_pb2.RECORD_REJECTION_CODE_INVALID_FIELD,
    ]
    assert response.rejections[1].message.startswith("fields.status:")
    assert response.rejections[2].message.startswith("effective_from:")
    sent = references(good, unknown_department, wrong_type, bad_identifier, bad_field, missing_date)
    assert stored_records(mesh, sent) == 0
    for rejection in response.rejections:
        assert person[:-1] not in rejection.message


def test_a_proof_is_signed_verifiable_offline_and_fails_when_tampered_or_expired(mesh: ServiceEnv) -> None:
    person = new_resident()
    Records(mesh, "public_security").publish(licence(person))
    portal = Records(mesh)
    proof = portal.proof("driving_licence", person)
    assert proof.proof_type == "driving_licence" and proof.issuing_department_code == "public_security"
    assert proof.subject_masked_identifier == person[:6] + "********" + person[-4:]
    claims = {name: json_format.MessageToDict(value) for name, value in proof.claims.items()}
    assert claims["held"] == {"boolValue": True}
    assert claims["licence_class"] == {"stringValue": "C1"}
    assert portal.verify(proof).valid

    # Offline, with nothing but the published key (the README's recipe).
    keys = portal.stub.ListSigningKeys(records_pb2.ListSigningKeysRequest(), metadata=portal.metadata).keys
    key = next(k for k in keys if k.key_id == proof.key_id)
    body = json_format.MessageToDict(proof)
    body.pop("signature")
    Ed25519PublicKey.from_public_bytes(key.public_key).verify(proof.signature, rfc8785.dumps(body))

    tampered = records_pb2.Proof()
    tampered.CopyFrom(proof)
    tampered.claims["licence_class"].string_value = "A1"
    answer = portal.verify(tampered)
    assert not answer.valid
    assert [p.code for p in answer.problems] == [records_pb2.PROOF_PROBLEM_CODE_BAD_SIGNATURE]

    ten_years = datetime.timedelta(days=3650)
    mesh.travel(ten_years)
    try:
        expired = portal.verify(proof)
    finally:
        mesh.travel(-ten_years)  # the other tests live in the present
    assert not expired.valid and [p.code for p in expired.problems] == [records_pb2.PROOF_PROBLEM_CODE_EXPIRED]


def test_a_negative_proof_is_a_proof_like_any_other(mesh: ServiceEnv) -> None:
    person = new_resident()
    Records(mesh, "public_security").publish(licence(person))  # registers them; no criminal record
    portal = Records(mesh)
    proof = portal.proof("criminal_record", person)
    assert proof.claims["has_record"].bool_value is False
    assert portal.verify(proof).valid


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (records_pb2.GetProofRequest(identifier=XU_WEI, proof_type="criminal_record"), "purpose"),
        (
            records_pb2.GetProofRequest(
                identifier=XU_WEI, proof_type="criminal_record", purpose=records_pb2.Purpose(case_id="  ")
            ),
            "purpose.case_id",
        ),
        (
            records_pb2.GetProofRequest(
                identifier=XU_WEI, proof_type="flying_licence", purpose=records_pb2.Purpose(case_id="c")
            ),
            "proof_type",
        ),
        (
            records_pb2.GetProofRequest(
                identifier=XU_WEI,
                proof_type="traffic_safety",
                purpose=records_pb2.Purpose(case_id="c"),
                parameters={"colour": "red"},
            ),
            "parameters.colour",
        ),
        (
            records_pb2.GetProofRequest(proof_type="criminal_record", purpose=records_pb2.Purpose(case_id="c")),
            "subject",
        ),
        (
            records_pb2.GetProofRequest(
                identifier=XU_WEI,
                proof_type="criminal_record",
                purpose=records_pb2.Purpose(case_id="c", note=f"asked by {LUO_FANG}"),
            ),
            "purpose.note",
        ),
    ],
)
def test_bad_proof_requests_name_the_field(mesh: ServiceEnv, request_: records_pb2.GetProofRequest, field: str) -> None:
    portal = Records(mesh)
    trail_before = trail_length(portal)
    with pytest.raises(grpc.RpcError) as error:
        portal.stub.GetProof(request_, metadata=portal.metadata, timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith(f"{field}:")
    if field == "proof_type":
        assert "flying_licence" in error.value.details()
    assert portal.audit().entries_checked == trail_before  # nothing was read, nothing audited


def test_an_unknown_subject_is_not_found_and_reveals_nothing_to_the_unentitled(mesh: ServiceEnv) -> None:
    unknown = new_resident()
    with pytest.raises(grpc.RpcError) as error:
        Records(mesh).proof("criminal_record", identifier=unknown)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as refused:
        Records(mesh, "education").proof("criminal_record", identifier=unknown)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_every_caller_gets_exactly_the_proofs_the_policy_grants(mesh: ServiceEnv) -> None:
    person = new_resident()
    Records(mesh, "public_security").publish(licence(person))
    trail_before = trail_length(Records(mesh))
    registered = Records(mesh, "market_regulation").publish(enterprise_registration(ENTERPRISE))
    assert registered.stored == 1, registered.rejections
    policy = Policy.load(ROOT / "policy" / "dev.yaml")
    allowed = denied = 0
    for caller in sorted(policy.callers.values(), key=lambda c: c.caller_id):
        if not caller.may_call("/govmesh.records.v1.RecordsService/GetProof"):
            continue
        client = Records(mesh, caller.caller_id)
        for proof_type in [*PROOF_TYPES_FOR_RESIDENTS, "enterprise_registration"]:
            subject = ENTERPRISE if proof_type == "enterprise_registration" else person
            expected = caller.may_read_proof(proof_type, "case_id", "case-9")
            try:
                client.proof(proof_type, identifier=subject, case_id="case-9")
                outcome = True
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.PERMISSION_DENIED, (
                    caller.caller_id,
                    proof_type,
                    error.details(),
                )
                outcome = False
            assert outcome == expected, (caller.caller_id, proof_type)
            allowed += outcome
            denied += not outcome
    assert allowed > 10 and denied > 100
    trail = Records(mesh).audit()
    assert trail.intact and trail.entries_checked == trail_before + allowed + denied  # refusals are audited too


def enterprise_fields() -> dict[str, records_pb2.TypedValue]:
    return {
        "registered_name": typed("杭州城市大脑有限公司"),
        "entity_type": typed("limited_liability_company"),
        "registered_capital_fen": typed(100_000_000_00),
        "established_on": typed(datetime.date(2018, 5, 4)),
        "status": typed("active"),
        "business_scope": typed("城市数据智能服务"),
        "legal_representative": typed("330106********4312"),
        "region_code": typed("330106"),
    }


def test_the_citizen_sees_who_read_their_data_and_anyone_can_check_the_trail(mesh: ServiceEnv) -> None:
    figures = (
        'govmesh_records_proofs_total{caller="transport",outcome="issued",proof_type="driving_licence"}',
        'govmesh_records_proofs_total{caller="education",outcome="refused",proof_type="criminal_record"}',
        "govmesh_records_paper_copies_avoided_total",
    )
    before = [counter(mesh.api_metrics_port, figure) for figure in figures]
    citizen, someone_else = new_resident(), new_resident()
    Records(mesh, "public_security").publish(licence(citizen), licence(someone_else))
    transport, education = Records(mesh, "transport"), Records(mesh, "education")
    for case in range(3):
        transport.proof("driving_licence", citizen, case_id=f"网约车-{case}")
    with pytest.raises(grpc.RpcError):
        education.proof("criminal_record", citizen, case_id="enrolment-1")
    transport.proof("driving_licence", identifier=someone_else, case_id="someone-else")

    portal = Records(mesh)
    page = portal.stub.ListAccesses(
        records_pb2.ListAccessesRequest(identifier=citizen, page_size=3), metadata=portal.metadata
    )
    assert [e.caller_id for e in page.entries] == ["education", "transport", "transport"]  # newest first
    assert page.entries[0].outcome == records_pb2.ACCESS_OUTCOME_DENIED
    assert page.entries[1].purpose.case_id == "网约车-2"
    after = [counter(mesh.api_metrics_port, figure) for figure in figures]
    assert [now - then for now, then in zip(after, before, strict=True)] == [4.0, 1.0, 4.0]
    rest = portal.stub.ListAccesses(
        records_pb2.ListAccessesRequest(identifier=citizen, page_size=3, page_token=page.next_page_token),
        metadata=portal.metadata,
    )
    assert [e.purpose.case_id for e in rest.entries] == ["网约车-0"] and not rest.next_page_token
    assert portal.audit().intact


def test_verify_audit_trail_names_the_first_altered_removed_or_moved_entry(mesh: ServiceEnv) -> None:
    person = new_resident()
    Records(mesh, "public_security").publish(licence(person))
    transport = Records(mesh, "transport")
    portal = Records(mesh)
    first = trail_length(portal)  # this test's six entries are leaves first .. first + 5
    for case in range(6):
        transport.proof("driving_licence", person, case_id=f"case-{case}")
    assert portal.audit().intact and portal.audit().entries_checked == first + 6
    engine = mesh.engine("records")

    def tamper(*statements: str) -> records_pb2.AuditBreak:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(sa.text(statement))
        result = portal.audit()
        assert not result.intact
        return result.first_break

    with engine.connect() as connection:
        saved = [dict(row._mapping) for row in connection.execute(sa.text("SELECT * FROM access_entries"))]

    def restore() -> None:
        with engine.begin() as connection:
            connection.execute(sa.text("DELETE FROM access_entries"))
            connection.execute(sa.table("access_entries", *[sa.column(c) for c in saved[0]]).insert(), saved)
        assert portal.audit().intact

    second, third, fourth = first + 1, first + 2, first + 3
    try:
        altered = tamper(f"UPDATE access_entries SET caller_id = 'education' WHERE leaf_index = {third}")
        assert (altered.leaf_index, altered.kind) == (third, records_pb2.AUDIT_BREAK_KIND_ALTERED)
        restore()
        removed = tamper(f"DELETE FROM access_entries WHERE leaf_index = {fourth}")
        assert (removed.leaf_index, removed.kind) == (fourth, records_pb2.AUDIT_BREAK_KIND_REMOVED)
        restore()
        moved = tamper(
            f"UPDATE access_entries SET leaf_index = -2 WHERE leaf_index = {second}",
            f"UPDATE access_entries SET leaf_index = {second} WHERE leaf_index = {third}",
            f"UPDATE access_entries SET leaf_index = {third} WHERE leaf_index = -2",
        )
        assert (moved.leaf_index, moved.kind) == (second, records_pb2.AUDIT_BREAK_KIND_REORDERED)
    finally:
        restore()  # the log is whole again for the tests that follow
        engine.dispose()


def test_no_raw_identifier_reaches_the_records_database_or_its_events(
    mesh: ServiceEnv, integrators: Integrators
) -> None:
    events = integrators.bind("records.events")
    people = [new_resident(), new_resident(check="X"), new_resident()]
    police = Records(mesh, "public_security")
    published = [licence(people[0]), licence(people[1]), licence(people[2])]
    police.publish(*published[:2])
    publish_on_broker(mesh, published[2])
    wait_for(lambda: stored_records(mesh, references(*published)) == 3)
    portal = Records(mesh)
    subjects = set()
    for identifier in people:
        subjects.add(portal.proof("driving_licence", identifier=identifier).subject_id)
        portal.proof("criminal_record", identifier=identifier)
    received = receive_own(events, 3 + 6 * 2, about(subjects))  # published, then issued + accessed per proof
    assert len(received) == 15
    engine = mesh.engine("records")
    dump = []
    with engine.connect() as connection:
        for table in sa.inspect(engine).get_table_names():
            for row in connection.execute(sa.text(f"SELECT * FROM {table}")):
                dump.append(" ".join(map(str, row)))
    engine.dispose()
    text = "\n".join(dump) + "".join(body.decode() + json.dumps(p.headers) for _, p, body in received)
    text += metrics_text(mesh.api_metrics_port) + metrics_text(mesh.worker_metrics_port)
    for raw in [*people, *RAW_IDS]:  # the shared database holds the other tests' people too
        assert raw not in text and raw.lower() not in text
    assert_no_raw_identifiers(text, "records database and events")


def test_seeding_a_population_goes_through_the_feeds_and_is_idempotent(mesh: ServiceEnv) -> None:
    from services.records.tools import synthetic
    from tests.support.mesh import govmesh

    first = govmesh("records", "seed", "--subjects", "60", "--quiet", "--no-samples", env=mesh.env)
    assert first.returncode == 0, first.stdout + first.stderr
    people = list(synthetic.population(60))
    expected = sum(len(p.records) for p in people)
    assert f"60 subjects, {expected} department records" in first.stdout
    assert f"{expected} stored, 0 already there, 0 refused" in first.stdout
    again = govmesh("records", "seed", "--subjects", "60", "--quiet", env=mesh.env)
    assert f"0 stored, {expected} already there, 0 refused" in again.stdout
    assert stored_records(mesh, {r.source_reference for p in people for r in p.records}) == expected

    # A seeded resident's records make proofs like any department's.
    driver = next(p for p in people if any(r.record_type == "driving_licence" for r in p.records))
    proof = Records(mesh).proof("driving_licence", identifier=driver.identifier)
    assert proof.claims["licence_class"].string_value
    for person in people:
        assert person.identifier not in first.stdout + first.stderr

    # Without --no-samples, a newcomer is given someone to try per kind of record, who holds it.
    samples = {
        line.split()[0]: line.split()[1]
        for line in again.stdout.splitlines()
        if line.startswith("  ") and "refused" not in line
    }
    holding = {(r.record_type, p.identifier) for p in people for r in p.records}
    assert samples and all((kind, identifier) in holding for kind, identifier in samples.items())
    assert samples["driving_licence"] in {p.identifier for p in people}


def test_seeding_sends_a_chunk_again_when_records_is_away_for_a_moment(mesh: ServiceEnv) -> None:
    """An operator's seed of a million people runs for an hour: a moment of UNAVAILABLE (here, a
    records api not listening yet) costs a retry, not the run."""
    from services.records.tools import synthetic

    port = free_port()
    seed = ["records", "seed", "--subjects", "12", "--seed", "7", "--quiet", "--no-samples"]
    seeding = subprocess.Popen(
        [sys.executable, "-m", "govmesh.cli", *seed],
        env=mesh.env | {"RECORDS_GRPC_TARGET": f"127.0.0.1:{port}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    late = None
    try:
        time.sleep(1)
        late = Process(
            ["api", "records"],
            mesh.env | {"RECORDS_GRPC_PORT": str(port), "RECORDS_API_METRICS_PORT": str(free_port())},
            mesh.tmp_path / "late-records-api.log",
        ).start()
        output, _ = seeding.communicate(timeout=120)
    finally:
        seeding.kill()
        if late is not None:
            late.stop()
    people = list(synthetic.population(12, seed=7))
    expected = sum(len(p.records) for p in people)
    assert seeding.returncode == 0, output
    assert "answered UNAVAILABLE" in output and "sending them again" in output
    assert f"{expected} department records" in output and "0 refused" in output
    assert "sent a department's chunk again after the mesh was away or slow" in output
    for person in people:
        assert person.identifier not in output
    assert stored_records(mesh, {r.source_reference for p in people for r in p.records}) == expected


def test_other_workers_pull_proofs_over_rpc_with_the_same_rights_and_audit(mesh: ServiceEnv) -> None:
    person = new_resident()
    Records(mesh, "public_security").publish(licence(person))
    trail_before = trail_length(Records(mesh))
    amqp = mesh.env["AMQP_URI"]
    request = {
        "identifier": person,
        "proofType": "driving_licence",
        "purpose": {"caseId": "case-rpc-1"},
        "requestId": "case-rpc-1/driving_licence/applicant",
    }
    transport = f"Bearer {mesh.token('transport')}"
    reply = call_nameko_rpc(amqp, "records", "get_proof", authorization=transport, request=request)
    assert reply["error"] is None, reply["error"]
    proof = json_format.ParseDict(reply["result"], records_pb2.Proof())
    assert proof.issued_to == "transport" and proof.purpose.case_id == "case-rpc-1"
    assert Records(mesh).verify(proof).valid
    again = call_nameko_rpc(amqp, "records", "get_proof", authorization=transport, request=request)
    assert again["result"]["proofId"] == proof.proof_id  # type: ignore[index]  # a redelivered step issues nothing new

    refused = call_nameko_rpc(
        amqp, "records", "get_proof", authorization=f"Bearer {mesh.token('education')}", request=request
    )
    assert str(refused["error"]["value"]).startswith("PERMISSION_DENIED")  # type: ignore[index]
    forged = call_nameko_rpc(amqp, "records", "get_proof", authorization="Bearer x.y.z", request=request)
    assert str(forged["error"]["value"]).startswith("UNAUTHENTICATED")  # type: ignore[index]
    trail = Records(mesh).audit()
    # One granted, one refused; the repeat is no new read.
    assert trail.intact and trail.entries_checked == trail_before + 2


def test_a_batch_of_proofs_over_rpc_is_each_proof_read_on_its_own(mesh: ServiceEnv) -> None:
    person = new_resident()
    Records(mesh, "public_security").publish(licence(person))
    portal = Records(mesh)
    trail_before = trail_length(portal)
    amqp = mesh.env["AMQP_URI"]
    requests = [
        {
            "identifier": person,
            "proofType": kind,
            "purpose": {"caseId": "case-batch-1"},
            "requestId": f"case-batch-1/{kind}",
        }
        for kind in ("driving_licence", "criminal_record", "traffic_safety")
    ]
    transport = f"Bearer {mesh.token('transport')}"
    reply = call_nameko_rpc(amqp, "records", "get_proofs", authorization=transport, requests=requests)
    assert reply["error"] is None, reply["error"]
    granted, refused, safety = reply["result"]  # type: ignore[misc]
    proof = json_format.ParseDict(granted["proof"], records_pb2.Proof())
    assert proof.proof_type == "driving_licence" and proof.purpose.case_id == "case-batch-1"
    assert portal.verify(proof).valid
    # The proof transport has no right to is refused alone, and says so as get_proof would.
    assert set(refused) == {"refused"} and refused["refused"].startswith("PERMISSION_DENIED")
    assert json_format.ParseDict(safety["proof"], records_pb2.Proof()).proof_type == "traffic_safety"
    again = call_nameko_rpc(amqp, "records", "get_proofs", authorization=transport, requests=requests[:1])
    assert again["result"][0]["proof"]["proofId"] == proof.proof_id  # type: ignore[index]  # nothing read anew
    # The same proof in its wire form, as approvals asks for it: the same message, no new read.
    wire = call_nameko_rpc(
        amqp, "records", "get_proofs", authorization=transport, requests=requests[:1], encoding="binary"
    )
    assert wire["error"] is None, wire["error"]
    (as_wire,) = wire["result"]  # type: ignore[misc]
    assert set(as_wire) == {"proof_binary"}
    assert records_pb2.Proof.FromString(base64.b64decode(as_wire["proof_binary"])) == proof
    unknown = call_nameko_rpc(
        amqp, "records", "get_proofs", authorization=transport, requests=requests[:1], encoding="xml"
    )
    assert str(unknown["error"]["value"]).startswith("INVALID_ARGUMENT: encoding")  # type: ignore[index]

    forged = call_nameko_rpc(amqp, "records", "get_proofs", authorization="Bearer x.y.z", requests=requests)
    assert str(forged["error"]["value"]).startswith("UNAUTHENTICATED")  # type: ignore[index]
    # Each read is its own entry on the subject's tracker: two granted, one refused.
    page = portal.stub.ListAccesses(records_pb2.ListAccessesRequest(identifier=person), metadata=portal.metadata)
    read = sorted((e.proof_type, e.outcome) for e in page.entries if e.purpose.case_id == "case-batch-1")
    assert read == [
        ("criminal_record", records_pb2.ACCESS_OUTCOME_DENIED),
        ("driving_licence", records_pb2.ACCESS_OUTCOME_GRANTED),
        ("traffic_safety", records_pb2.ACCESS_OUTCOME_GRANTED),
    ]
    trail = portal.audit()
    assert trail.intact and trail.entries_checked == trail_before + 3


def test_what_goes_into_the_trail_and_the_store_is_clean(mesh: ServiceEnv) -> None:
    police = Records(mesh, "public_security")
    person, other_person, tag = new_resident(), new_resident(), uuid.uuid4().hex[:8]
    # A repeated record whose first copy is refused: the good copy is stored, not lost.
    bad_copy = licence(with_wrong_check(person), reference=f"DL-REPEAT-{tag}")
    good_copy = licence(person, reference=f"DL-REPEAT-{tag}")
    answer = police.publish(bad_copy, good_copy)
    assert (answer.stored, answer.duplicates, answer.rejected) == (1, 0, 1)
    # References and purposes never carry an identifier or a control character.
    for reference in (f"DL-{LUO_FANG}", "DL-\x00"):
        refused = police.publish(licence(person, reference=reference))
        assert refused.rejections[0].message.startswith("source_reference:")
    # A correction must be about the same subject and of the same type.
    other = licence(other_person, reference=f"DL-OTHER-{tag}")
    police.publish(other)
    hijack = licence(person, reference=f"DL-HIJACK-{tag}")
    hijack.supersedes_source_reference = f"DL-OTHER-{tag}"
    assert police.publish(hijack).rejections[0].code == records_pb2.RECORD_REJECTION_CODE_UNKNOWN_SUPERSEDED

    portal = Records(mesh)
    for case_id in ("case-\x00", "case-" + "7" * 300):
        with pytest.raises(grpc.RpcError) as error:
            portal.proof("driving_licence", person, case_id=case_id)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.value.details().startswith("purpose.case_id:")
    proof = portal.proof("driving_licence", person, case_id="  case-8" + " " * 1000)
    assert proof.purpose.case_id == "case-8"  # the purpose kept, signed and audited is the trimmed one
    assert portal.audit().intact


def enterprise_registration(identifier: str, **fields: records_pb2.TypedValue) -> records_pb2.DepartmentRecord:
    return records_pb2.DepartmentRecord(
        department_code="market_regulation",
        record_type="enterprise_registration",
        subject_identifier=identifier,
        subject_display_name="杭州城市大脑有限公司",
        source_reference=f"REG-{uuid.uuid4().hex[:8]}",
        effective_from="2018-05-04",
        fields={**enterprise_fields(), **fields},
    )


def assert_nothing_about(portal: Records, identifier: str, proof_type: str) -> None:
    """A read shows nothing of the refused record: identity was never asked to register its
    subject, so there is no one to issue a proof about."""
    with pytest.raises(grpc.RpcError) as error:
        portal.proof(proof_type, identifier)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("char", CONTROL_AND_FORMAT_CHARACTERS, ids=lambda char: f"U+{ord(char):04X}")
def test_control_and_formatting_characters_are_refused_naming_the_field(mesh: ServiceEnv, char: str) -> None:
    police, market, portal = Records(mesh, "public_security"), Records(mesh, "market_regulation"), Records(mesh)
    person, company = new_resident(), credit_code("330106", 800_000 + next(_companies))
    bad_authority = licence(person)
    bad_authority.fields["issuing_authority"].CopyFrom(typed(f"杭州市公安局{char}交通警察支队"))
    bad_name = licence(person)
    bad_name.subject_display_name = f"徐{char}伟"
    bad_correction = licence(person)
    bad_correction.supersedes_source_reference = f"DL-{char}1"
    cases = [
        (police, bad_authority, "fields.issuing_authority"),
        (police, bad_name, "subject_display_name"),
        (police, bad_correction, "supersedes_source_reference"),
        (
            market,
            enterprise_registration(company, registered_name=typed(f"杭州{char}城市大脑有限公司")),
            "fields.registered_name",
        ),
    ]
    if char not in "\n\t":  # a multi-line field keeps newlines and tabs, and only those
        scope = typed(f"城市数据智能服务{char}软件开发")
        cases.append((market, enterprise_registration(company, business_scope=scope), "fields.business_scope"))
    for client, record, field in cases:
        answer = client.publish(record)
        assert (answer.stored, answer.rejected) == (0, 1), field
        rejection = answer.rejections[0]
        assert rejection.code == records_pb2.RECORD_REJECTION_CODE_INVALID_FIELD
        assert rejection.message.startswith(f"{field}: must not contain"), rejection.message
        assert f"U+{ord(char):04X}" in rejection.message and rejection.message.isprintable()
    assert stored_records(mesh, references(*(record for _, record, _ in cases))) == 0
    assert_nothing_about(portal, person, "driving_licence")
    assert_nothing_about(portal, company, "enterprise_registration")


def test_a_subjects_name_is_refused_as_subject_display_name_before_identity_is_asked(mesh: ServiceEnv) -> None:
    police, portal = Records(mesh, "public_security"), Records(mesh)
    person = new_resident()
    too_long = licence(person)
    too_long.subject_display_name = "名" * 201
    answer = police.publish(too_long)
    assert (answer.stored, answer.rejected) == (0, 1)
    rejection = answer.rejections[0]
    assert rejection.code == records_pb2.RECORD_REJECTION_CODE_INVALID_FIELD
    assert rejection.message == "subject_display_name: is 201 characters; at most 200"
    assert_nothing_about(portal, person, "driving_licence")  # identity registered no one
    # The same rule as identity's: white space collapsed, so 200 characters and spaces pass.
    fits = licence(person)
    fits.subject_display_name = "  " + "名" * 200 + "\u3000 "
    assert police.publish(fits).stored == 1


def test_a_multi_line_field_keeps_its_newlines_and_tabs(mesh: ServiceEnv) -> None:
    company = credit_code("330106", 800_000 + next(_companies))
    scope = typed("城市数据智能服务；\n\t软件开发；\n信息系统集成")
    answer = Records(mesh, "market_regulation").publish(enterprise_registration(company, business_scope=scope))
    assert answer.stored == 1, answer.rejections
    assert Records(mesh).proof("enterprise_registration", company).claims["has_record"].bool_value


REFUSAL_HEADERS = ("x-govmesh-refusal-code", "x-govmesh-refusal-field", "x-govmesh-refusal-message")


def refusal_of(letter: Delivery, token: str) -> tuple[str, str, str]:
    """A dead letter's code, field and message, after checking that it carries no credential
    and says where it came from."""
    headers = letter[1].headers or {}
    assert not {name.lower() for name in headers} & {"authorization", "nameko.authorization"}, headers
    assert token not in json.dumps(headers, default=str)
    assert headers["x-govmesh-original-exchange"] == "records.ingest"
    code, field, message = (str(headers[name]) for name in REFUSAL_HEADERS)
    assert message.startswith(f"{field}: ")
    return code, field, message


def test_a_record_refused_on_the_broker_is_dead_lettered_once_saying_why_without_its_token(mesh: ServiceEnv) -> None:
    amqp, token = mesh.env["AMQP_URI"], mesh.token("public_security")
    person = new_resident()
    record = licence(person)
    record.fields["issuing_authority"].CopyFrom(typed("杭州市公安局\u202e支队"))
    publish_on_broker(mesh, record)
    reference = record.source_reference
    dead = dead_letters(amqp, "records.records.ingest", lambda letter: reference.encode() in letter[2])
    assert len(dead) == 1  # exactly once
    code, field, message = refusal_of(dead[0], token)
    assert (code, field) == ("RECORD_REJECTION_CODE_INVALID_FIELD", "fields.issuing_authority")
    assert "U+202E" in message
    assert dead[0][1].headers["x-govmesh-original-routing-key"] == "public_security"
    assert json_format.Parse(dead[0][2], records_pb2.DepartmentRecord()) == record  # the record, to replay
    assert stored_records(mesh, {reference}) == 0
    assert_nothing_about(Records(mesh), person, "driving_licence")

    # A body that is not JSON, and a token that is not one, are dead-lettered the same way.
    tag = uuid.uuid4().hex
    publish_raw(mesh, f"{{not json {tag}".encode(), token)
    publish_raw(mesh, json_format.MessageToJson(licence(new_resident(), reference=tag)).encode(), "x.y.z")
    dead = dead_letters(amqp, "records.records.ingest", lambda letter: tag.encode() in letter[2], count=2)
    assert len(dead) == 2
    refusals = sorted(refusal_of(letter, token)[:2] for letter in dead)
    assert refusals == [("INVALID_ARGUMENT", "body"), ("UNAUTHENTICATED", "authorization")]
    # The worker goes on: the next record is stored.
    good = licence(new_resident())
    publish_on_broker(mesh, good)
    wait_for(lambda: stored_records(mesh, references(good)) == 1)
    worker = next(p for p in mesh.processes if p.args == ["worker", "records"])
    assert token not in worker.logs() and person not in worker.logs()


def test_removing_the_newest_entries_is_found_against_the_signed_head(mesh: ServiceEnv) -> None:
    person = new_resident()
    Records(mesh, "public_security").publish(licence(person))
    portal = Records(mesh)
    newest = trail_length(portal) + 2
    for case in range(3):
        portal.proof("driving_licence", person, case_id=f"case-{case}")
    assert portal.audit().entries_checked == newest + 1
    engine = mesh.engine("records")
    with engine.begin() as connection:
        removed = connection.execute(sa.text(f"SELECT * FROM access_entries WHERE leaf_index = {newest}"))
        saved = [dict(row._mapping) for row in removed]
        connection.execute(sa.text(f"DELETE FROM access_entries WHERE leaf_index = {newest}"))
    try:
        result = portal.audit()
        assert not result.intact
        found = result.first_break
        assert (found.leaf_index, found.kind) == (newest, records_pb2.AUDIT_BREAK_KIND_REMOVED)
    finally:
        with engine.begin() as connection:  # put the entry back for the tests that follow
            connection.execute(sa.table("access_entries", *[sa.column(c) for c in saved[0]]).insert(), saved)
        engine.dispose()
    assert portal.audit().intact


def test_odd_values_are_refused_with_the_field_not_a_crash(mesh: ServiceEnv) -> None:
    portal = Records(mesh)
    person = new_resident()
    Records(mesh, "public_security").publish(licence(person))
    request = records_pb2.ListAccessesRequest(identifier=person, page_token="OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5")
    with pytest.raises(grpc.RpcError) as error:
        portal.stub.ListAccesses(request, metadata=portal.metadata)
    assert (error.value.code(), error.value.details().split(":")[0]) == (grpc.StatusCode.INVALID_ARGUMENT, "page_token")
    late = records_pb2.ListAccessesRequest(identifier=person)
    late.start_time.seconds = 10**13
    with pytest.raises(grpc.RpcError) as error:
        portal.stub.ListAccesses(late, metadata=portal.metadata)
    assert error.value.details().startswith("start_time:")
    odd = licence(person)
    odd.recorded_at.seconds = 10**13
    assert Records(mesh, "public_security").publish(odd).rejections[0].message.startswith("recorded_at:")
    broken = records_pb2.Proof(proof_id="p")
    broken.issued_at.seconds = 10**13
    answer = portal.verify(broken)
    assert not answer.valid and answer.problems[0].code == records_pb2.PROOF_PROBLEM_CODE_MALFORMED


def test_one_trace_runs_from_a_department_feed_into_identity(mesh: ServiceEnv) -> None:
    trace_id = uuid.uuid4().hex
    police = Records(mesh, "public_security")
    # Someone records has never asked identity about, so this feed must.
    request = records_pb2.PublishRecordsRequest(records=[licence(new_resident())])
    police.stub.PublishRecords(
        iter([request]), metadata=[*police.metadata, ("traceparent", f"00-{trace_id}-{'ef' * 8}-01")], timeout=30
    )
    identity_api = next(p for p in mesh.processes if p.args == ["api", "identity"])
    wait_for(lambda: f'"trace_id": "0x{trace_id}"' in identity_api.logs())  # identity's server span


def readme_verifier() -> dict[str, Any]:
    """The access log verifier exactly as the README shows it (it imports nothing of govmesh)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- access-log-verifier -->\n```python\n", 1)[1].split("```", 1)[0]
    assert "govmesh" not in block and len(block.splitlines()) < 40
    namespace: dict[str, Any] = {}
    exec(compile(block, "README.md", "exec"), namespace)
    return namespace


def sealed_page(portal: Records, identifier: str) -> records_pb2.ListAccessesResponse:
    deadline = time.monotonic() + 20
    while True:
        page = portal.stub.ListAccesses(
            records_pb2.ListAccessesRequest(identifier=identifier), metadata=portal.metadata, timeout=10
        )
        if all(entry.sealed for entry in page.entries) or time.monotonic() > deadline:
            return page
        time.sleep(0.1)


def test_the_readme_verifier_proves_each_entry_and_that_the_log_only_grew(
    mesh: ServiceEnv, integrators: Integrators
) -> None:
    verify = readme_verifier()
    witness = integrators.bind("records.events", "tree_head_signed")
    person = new_resident()
    Records(mesh, "public_security").publish(licence(person))
    transport, portal = Records(mesh, "transport"), Records(mesh)
    for case in range(3):
        transport.proof("driving_licence", person, case_id=f"case-{case}")
    old = sealed_page(portal, person).tree_head
    with pytest.raises(grpc.RpcError):
        Records(mesh, "statistics").proof("driving_licence", person)  # no right to GetProof at all
    transport.proof("driving_licence", person, case_id="case-3")
    page = sealed_page(portal, person)
    new = page.tree_head
    assert len(page.entries) == 5 and all(entry.sealed for entry in page.entries)
    assert page.entries[1].caller_id == "statistics" and page.entries[1].outcome == records_pb2.ACCESS_OUTCOME_DENIED
    keys = portal.stub.ListSigningKeys(records_pb2.ListSigningKeysRequest(), metadata=portal.metadata).keys
    public_key = next(key.public_key for key in keys if key.key_id == new.key_id)
    verify["head_is_signed"](old, public_key)
    verify["head_is_signed"](new, public_key)
    for entry in page.entries:
        assert verify["entry_is_in_log"](entry, new)
        leaf = json.loads(entry.leaf_bytes)
        assert (leaf["leaf_index"], leaf["caller_id"], leaf["subject_id"]) == (
            entry.leaf_index,
            entry.caller_id,
            entry.subject_id,
        )
    consistency = portal.stub.GetConsistencyProof(
        records_pb2.GetConsistencyProofRequest(first_size=old.tree_size, second_size=new.tree_size),
        metadata=portal.metadata,
    )
    assert new.tree_size > old.tree_size and verify["log_only_grew"](old, new, list(consistency.proof))
    # ... and each says no when it should.
    altered = records_pb2.AccessEntry()
    altered.CopyFrom(page.entries[0])
    altered.leaf_bytes = altered.leaf_bytes.replace(b'"granted"', b'"denied"')
    assert not verify["entry_is_in_log"](altered, new)
    forged = records_pb2.SignedTreeHead()
    forged.CopyFrom(old)
    forged.root_hash = new.root_hash
    with pytest.raises(InvalidSignature):
        verify["head_is_signed"](forged, public_key)
    assert not verify["log_only_grew"](forged, new, list(consistency.proof))
    # The witness heard of every head, the newest included.
    # (proto3 JSON leaves a zero out: the empty log's first head has no treeSize.)
    heard = receive_own(
        witness, 1, lambda message: json.loads(message[2])["treeHead"].get("treeSize", "0") == str(new.tree_size)
    )
    assert heard and json.loads(heard[0][2])["treeHead"]["rootHash"] == base64.b64encode(new.root_hash).decode()


def dlq(env: ServiceEnv, *args: str) -> subprocess.CompletedProcess[str]:
    return govmesh("dlq", *args, "--service", "records", env=env.env)


def letters_about(env: ServiceEnv, reference: str) -> list[dict[str, Any]]:
    shown = dlq(env, "show", "--json")
    assert shown.returncode == 0, shown.stderr
    letters = [json.loads(line) for line in shown.stdout.splitlines()]
    return [letter for letter in letters if reference in letter["body"]]


def test_govmesh_dlq_lists_shows_replays_and_drops_a_services_dead_letters(mesh: ServiceEnv) -> None:
    person = new_resident()
    record = licence(person)
    record.fields["issuing_authority"].CopyFrom(typed("杭州市公安局\u202e支队"))
    publish_on_broker(mesh, record)
    reference = record.source_reference
    wait_for(lambda: letters_about(mesh, reference), timeout=20)

    listed = dlq(mesh, "list")
    assert listed.returncode == 0, listed.stderr
    counts = {line.split()[1]: int(line.split()[0]) for line in listed.stdout.splitlines()}
    assert counts["records.records.ingest.dead-letter"] >= 1

    [letter] = letters_about(mesh, reference)  # shown, and left where it was
    assert (letter["code"], letter["field"]) == ("RECORD_REJECTION_CODE_INVALID_FIELD", "fields.issuing_authority")
    assert (letter["exchange"], letter["routing_key"]) == ("records.ingest", "public_security")
    assert letter["reason"].startswith("fields.issuing_authority: ")
    assert person not in json.dumps(letter, ensure_ascii=False)  # the body is shown masked
    assert [letter] == letters_about(mesh, reference)

    # Replayed where it came from: the consumer takes it again, refuses it again (the record is still
    # bad, and its token was never kept), and it is back once, not twice.
    replayed = dlq(mesh, "replay", "--id", letter["message_id"])
    assert replayed.returncode == 0, replayed.stderr
    assert "1 replayed" in replayed.stderr
    wait_for(lambda: len(letters_about(mesh, reference)) == 1, timeout=20)
    [again] = letters_about(mesh, reference)
    assert (again["code"], again["field"]) == ("UNAUTHENTICATED", "authorization")

    refused = dlq(mesh, "drop", "--all")
    assert refused.returncode == 2 and "--reason" in refused.stderr  # a drop says why
    nothing_named = dlq(mesh, "replay")
    assert nothing_named.returncode == 2 and "--id ID" in nothing_named.stderr
    dropped = dlq(mesh, "drop", "--id", again["message_id"], "--reason", "department re-sent it (ticket 4711)")
    assert dropped.returncode == 0, dropped.stderr
    assert letters_about(mesh, reference) == []
    [logged] = [json.loads(line) for line in dropped.stderr.splitlines() if line.startswith("{")]
    assert logged["message"] == "dead letter dropped: department re-sent it (ticket 4711)"
    assert logged["message_id"] == again["message_id"] and logged["refusal_code"] == "UNAUTHENTICATED"
