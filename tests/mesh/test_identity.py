"""Identity through its public interfaces: a real grpcio client calling `govmesh api identity`,
a real `govmesh worker identity` relaying events, and a plain pika consumer as the integrator.
Every test runs on SQLite and on PostgreSQL.

Most tests share one identity (api and worker) per database: each registers people of its own
(`new_resident` and friends), counts events by its own subjects and metrics as differences. The
tests that stop, kill or start processes, or need a database not yet migrated, get their own."""

from __future__ import annotations

import itertools
import json
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pika
import pytest
import sqlalchemy as sa
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from govmesh.db import service_database
from govmesh.identity.v1 import events_pb2, identity_pb2, identity_pb2_grpc
from tests.support import people
from tests.support.mesh import (
    ROOT,
    ServiceEnv,
    amqp_connection,
    assert_no_raw_identifiers,
    call_nameko_rpc,
    consumers,
    database_for,
    metrics_text,
    virtual_host,
    wait_for,
)
from tests.support.people import (
    CONTROL_AND_FORMAT_CHARACTERS,
    ENTERPRISE,
    LEGACY_15,
    LEGACY_15_AS_18,
    LUO_FANG,
    RAW_IDS,
    XU_WEI,
    credit_code,
    health_status,
    resident_id,
    with_wrong_check,
)
from tests.support.shared_mesh import Integrators, about, counter, new_resident, receive_own

SERVICE = "govmesh.identity.v1.IdentityService"


def wait_serving(target: str, timeout: float = 30) -> None:
    people.wait_serving(target, SERVICE, timeout)


class Client:
    def __init__(self, env: ServiceEnv, caller: str = "demo-portal") -> None:
        self.channel = grpc.insecure_channel(env.target)
        self.stub = identity_pb2_grpc.IdentityServiceStub(self.channel)
        self.metadata = [("authorization", f"Bearer {env.token(caller)}")]

    def register(self, identifier: str, name: str = "徐伟") -> identity_pb2.RegisterSubjectResponse:
        request = identity_pb2.RegisterSubjectRequest(identifier=identifier, display_name=name)
        return self.stub.RegisterSubject(request, metadata=self.metadata, timeout=10)

    def validate(self, identifier: str) -> identity_pb2.ValidateIdentifierResponse:
        request = identity_pb2.ValidateIdentifierRequest(identifier=identifier)
        return self.stub.ValidateIdentifier(request, metadata=self.metadata, timeout=10)

    def resolve(self, **key: str) -> identity_pb2.ResolveSubjectResponse:
        return self.stub.ResolveSubject(identity_pb2.ResolveSubjectRequest(**key), metadata=self.metadata, timeout=10)


_serials = itertools.count(1)


def new_legacy() -> tuple[str, str]:
    """A legacy 15-digit resident number no other test uses, and its 18-character form."""
    serial = next(_serials) % 1000
    return f"330106930211{serial:03d}", resident_id(f"33010619930211{serial:03d}")


def new_enterprise() -> str:
    return credit_code("330106", 900_000 + next(_serials))


def start(env: ServiceEnv) -> ServiceEnv:
    env.migrate()
    env.process("api")
    env.process("worker").wait_for_log("starting services: identity")
    wait_for(lambda: consumers(env.env["AMQP_URI"], "rpc-identity") > 0)
    wait_serving(env.target)
    return env


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def running(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceEnv]:
    """One identity per database for the tests that can share it, in a virtual host of its own
    (the tests with an identity of their own use the suite's)."""
    tmp_path = tmp_path_factory.mktemp("identity")
    with virtual_host() as amqp:
        env = ServiceEnv("identity", database_for(request, tmp_path), tmp_path, amqp)
        try:
            yield start(env)
        finally:
            env.stop_all()
        assert_no_raw_identifiers(env.all_output(), "identity processes' output")


@pytest.fixture
def alone(identity_env: ServiceEnv) -> ServiceEnv:
    """An identity of the test's own, for a test that stops its processes."""
    return start(identity_env)


@pytest.fixture
def integrators(running: ServiceEnv) -> Iterator[Integrators]:
    with Integrators(running.env["AMQP_URI"]) as opened:
        yield opened


def test_register_publishes_subject_registered_to_integrators(running: ServiceEnv, integrators: Integrators) -> None:
    integrator = integrators.bind("identity.events", "subject_registered")
    person = new_resident()
    response = Client(running).register(person)

    assert response.created
    subject = response.subject
    assert subject.subject_id.startswith("sub_") and person not in subject.subject_id
    assert subject.kind == identity_pb2.SUBJECT_KIND_RESIDENT
    assert subject.masked_identifier == person[:6] + "********" + person[-4:]
    assert subject.display_name == "徐伟"

    [(method, properties, body)] = receive_own(integrator, 1, about({subject.subject_id}))
    headers = properties.headers
    assert method.routing_key == "subject_registered"
    assert properties.delivery_mode == 2  # persistent
    assert properties.content_type == "application/json"
    assert headers["ce-type"] == "govmesh.identity.v1.SubjectRegistered"
    assert headers["ce-source"] == "govmesh/identity"
    assert headers["ce-subject"] == subject.subject_id
    assert len(headers["ce-id"]) == 36 and headers["ce-time"].endswith("Z")
    assert headers["traceparent"].startswith("00-")
    event = json.loads(body)
    assert event["subjectId"] == subject.subject_id
    assert event["maskedIdentifier"] == subject.masked_identifier
    assert event["kind"] == "SUBJECT_KIND_RESIDENT"
    parsed = events_pb2.SubjectRegistered()
    from google.protobuf import json_format

    json_format.Parse(body, parsed)  # the body is canonical proto3 JSON of the event
    for raw in [*RAW_IDS, person]:
        assert raw not in body.decode() and raw not in json.dumps(headers)


def test_registering_again_returns_the_same_subject_and_no_second_event(
    running: ServiceEnv, integrators: Integrators
) -> None:
    integrator = integrators.bind("identity.events")
    client = Client(running)
    person = new_resident(check="X")
    first = client.register(person, "罗舫")
    # Same person, typed differently: lower-case x, spaces, full-width digits.
    full_width = "".join(chr(ord(digit) + 0xFEE0) for digit in person[:6])
    again = client.register(f" {full_width} " + person[6:-1] + person[-1].lower(), "罗 舫")

    assert first.created and not again.created
    assert again.subject == first.subject
    events = [m for m in integrator.drain() if m[1].headers["ce-subject"] == first.subject.subject_id]
    assert len(events) == 1


def test_legacy_15_digit_number_is_the_same_subject_as_its_18_digit_form(running: ServiceEnv) -> None:
    client = Client(running)
    converted = client.validate(LEGACY_15)
    assert converted.valid and converted.converted_from_legacy
    assert converted.normalized == LEGACY_15_AS_18
    assert client.register(LEGACY_15).subject == client.resolve(identifier=LEGACY_15_AS_18).subject


def test_validate_reports_every_problem_as_an_answer_not_an_error(running: ServiceEnv) -> None:
    client = Client(running)
    good = client.validate(XU_WEI)
    assert good.valid and good.kind == identity_pb2.SUBJECT_KIND_RESIDENT
    assert good.resident.birth_date == "1985-07-15"
    assert good.resident.region_code == "330106" and "西湖区" in good.resident.region_name
    assert good.resident.sex in (identity_pb2.SEX_MALE, identity_pb2.SEX_FEMALE)

    bad_check = with_wrong_check(XU_WEI)
    answer = client.validate(bad_check)
    assert not answer.valid
    assert [p.code for p in answer.problems] == [identity_pb2.PROBLEM_CODE_BAD_CHECK_CHARACTER]
    assert answer.problems[0].position == 18

    impossible = client.validate(resident_id("33010619900230123"))
    assert identity_pb2.PROBLEM_CODE_IMPOSSIBLE_BIRTH_DATE in [p.code for p in impossible.problems]

    company = client.validate(ENTERPRISE)
    assert company.valid and company.kind == identity_pb2.SUBJECT_KIND_ENTERPRISE
    assert company.enterprise.organization_code == ENTERPRISE[8:17]

    short = client.validate("12345")
    assert not short.valid and short.problems[0].code == identity_pb2.PROBLEM_CODE_WRONG_LENGTH


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c, person: c.validate(""), "identifier"),
        (lambda c, person: c.validate("3" * 65), "identifier"),
        (lambda c, person: c.register("", "x"), "identifier"),
        (lambda c, person: c.register(with_wrong_check(person)), "identifier"),
        (lambda c, person: c.register(person, "   "), "display_name"),
        (lambda c, person: c.register(person, "名" * 201), "display_name"),
        # the number typed into the name field too: whoever resolves the subject reads its name
        (lambda c, person: c.register(person, person), "display_name"),
        (lambda c, person: c.register(person, f"徐伟 {person[:6]} {person[6:14]} {person[14:]}"), "display_name"),
        # A name is one line of visible text: no control character (C0, DEL, C1, tabs and
        # newlines too), no bidi override or isolate, no zero-width or other format character.
        *(
            (lambda c, person, char=char: c.register(person, f"徐{char}伟"), "display_name")
            for char in CONTROL_AND_FORMAT_CHARACTERS
        ),
        (lambda c, person: c.resolve(), "key"),
    ],
)
def test_bad_requests_name_the_field_and_change_nothing(running: ServiceEnv, call: object, field: str) -> None:
    client = Client(running)
    person = new_resident()
    with pytest.raises(grpc.RpcError) as error:
        call(client, person)  # type: ignore[operator]
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith(f"{field}:")
    assert dict(error.value.trailing_metadata())["govmesh-field"] == field
    assert error.value.details().isprintable()  # the offending text is never echoed
    with pytest.raises(grpc.RpcError) as missing:
        client.resolve(identifier=person)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND  # nothing was registered


def test_resolve_by_identifier_or_subject_id_and_not_found(running: ServiceEnv) -> None:
    client = Client(running)
    registered = client.register(ENTERPRISE, "杭州城市大脑有限公司").subject
    assert client.resolve(identifier=ENTERPRISE.lower()).subject == registered
    assert client.resolve(subject_id=registered.subject_id).subject == registered
    unknown = new_resident()
    with pytest.raises(grpc.RpcError) as error:
        client.resolve(identifier=unknown)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert unknown not in error.value.details()


def test_calls_without_a_valid_token_or_right_are_refused(running: ServiceEnv) -> None:
    channel = grpc.insecure_channel(running.target)
    stub = identity_pb2_grpc.IdentityServiceStub(channel)
    request = identity_pb2.ResolveSubjectRequest(identifier=XU_WEI)

    def code(metadata: list[tuple[str, str]] | None) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as error:
            stub.ResolveSubject(request, metadata=metadata, timeout=10)
        return error.value.code()

    assert code(None) == grpc.StatusCode.UNAUTHENTICATED
    assert code([("authorization", "Basic abc")]) == grpc.StatusCode.UNAUTHENTICATED
    assert code([("authorization", "Bearer not.a.token")]) == grpc.StatusCode.UNAUTHENTICATED
    expired = running.token("demo-portal", ttl_minutes=-1)
    assert code([("authorization", f"Bearer {expired}")]) == grpc.StatusCode.UNAUTHENTICATED
    forged = running.token("demo-portal")
    forged = forged[:-4] + ("AAAA" if not forged.endswith("AAAA") else "BBBB")
    assert code([("authorization", f"Bearer {forged}")]) == grpc.StatusCode.UNAUTHENTICATED
    statistics = running.token("statistics")  # may validate, may not look people up
    assert code([("authorization", f"Bearer {statistics}")]) == grpc.StatusCode.PERMISSION_DENIED
    allowed = stub.ValidateIdentifier(
        identity_pb2.ValidateIdentifierRequest(identifier=XU_WEI),
        metadata=[("authorization", f"Bearer {statistics}")],
        timeout=10,
    )
    assert allowed.valid

    # Health and reflection need no token.
    assert health_status(running.target, SERVICE) == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    [answer] = list(reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    assert SERVICE in [s.name for s in answer.list_services_response.service]
    # The same under grpc.reflection.v1, which tools ask for first (its messages are v1alpha's).
    v1 = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    [answer] = list(v1(iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE)])))
    assert answer.file_descriptor_response.file_descriptor_proto


def test_health_is_not_serving_until_the_database_is_migrated(identity_env: ServiceEnv) -> None:
    api = identity_env.process("api")
    api.wait_for_log("gRPC listening")
    assert health_status(identity_env.target, SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING
    client = Client(identity_env)
    with pytest.raises(grpc.RpcError) as error:
        client.validate(XU_WEI)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE

    identity_env.migrate()
    wait_serving(identity_env.target, timeout=10)
    assert client.validate(XU_WEI).valid


def test_sigterm_drains_and_exits_cleanly(alone: ServiceEnv) -> None:
    api = alone.processes[0]
    assert api.stop() == 0, api.logs()[-6000:]
    assert '"stopped"' in api.logs()


def test_sigusr1_prints_every_threads_stack_and_the_process_serves_on(running: ServiceEnv) -> None:
    api = running.processes[0]
    assert api.popen is not None
    api.popen.send_signal(signal.SIGUSR1)
    wait_for(lambda: 'File "' in api.logs() and "grpcserver.py" in api.logs())
    assert Client(running).validate(XU_WEI).valid


def test_each_call_is_a_log_line_in_its_callers_trace_and_a_refusal_is_kept_at_info(running: ServiceEnv) -> None:
    trace_id = uuid.uuid4().hex
    traceparent = ("traceparent", f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01")
    channel = grpc.insecure_channel(running.target)
    stub = identity_pb2_grpc.IdentityServiceStub(channel)
    statistics = ("authorization", f"Bearer {running.token('statistics')}")
    both = [statistics, traceparent]
    stub.ValidateIdentifier(identity_pb2.ValidateIdentifierRequest(identifier=XU_WEI), metadata=both)
    with pytest.raises(grpc.RpcError):
        stub.ResolveSubject(identity_pb2.ResolveSubjectRequest(identifier=XU_WEI), metadata=both)
    api = running.processes[0]

    def lines() -> list[dict[str, object]]:
        found = [json.loads(line) for line in api.logs().splitlines() if line.startswith("{") and trace_id in line]
        return [line for line in found if "grpc_code" in line]

    wait_for(lambda: len(lines()) == 2)
    allowed, refused = sorted(lines(), key=lambda line: str(line["grpc_method"]) != "ValidateIdentifier")
    assert (allowed["level"], allowed["grpc_code"], allowed["caller"]) == ("DEBUG", "OK", "statistics")
    assert (refused["level"], refused["grpc_code"], refused["caller"]) == ("INFO", "PERMISSION_DENIED", "statistics")
    assert refused["grpc_method"] == "ResolveSubject" and refused["trace_id"] == trace_id
    channel.close()


def test_govmesh_events_tail_prints_each_event_as_it_is_published(running: ServiceEnv) -> None:
    tail = subprocess.Popen(
        [sys.executable, "-m", "govmesh.cli", "events", "tail", "--service", "identity", "--json", "--count", "2"],
        env=running.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert tail.stderr is not None
        assert "tailing identity.events" in tail.stderr.readline()  # bound: what comes now is seen
        people = [new_resident(), new_resident()]
        for person in people:
            Client(running).register(person)
        out, _ = tail.communicate(timeout=30)
    finally:
        tail.kill()
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["event_type"] for e in events] == ["govmesh.identity.v1.SubjectRegistered"] * 2
    assert all(e["routing_key"] == "subject_registered" and e["subject"].startswith("sub_") for e in events)
    assert all(len(e["trace_id"]) == 32 and e["event_id"] for e in events)
    assert {e["body"]["subjectId"] for e in events} == {e["subject"] for e in events}
    for person in people:
        assert person not in out


def integrators_subscriber() -> str:
    """The subscriber of docs/integrators.md exactly as the guide shows it."""
    text = (ROOT / "docs" / "integrators.md").read_text(encoding="utf-8")
    block = text.split("<!-- integrator-subscriber -->\n```python\n", 1)[1].split("```", 1)[0]
    assert "import govmesh" not in block and "from govmesh" not in block
    return block


def test_the_integrators_guide_subscriber_applies_each_event_once_and_refuses_what_the_catalogue_does_not_allow(
    running: ServiceEnv, integrators: Integrators, tmp_path: Path
) -> None:
    script, register = tmp_path / "subscriber.py", tmp_path / "register.db"
    script.write_text(integrators_subscriber(), encoding="utf-8")
    queue = f"test.subject-register-{uuid.uuid4().hex[:6]}"
    amqp = running.env["AMQP_URI"]
    arguments = ["--amqp", amqp, "--queue", queue, "--database", str(register), "--count", "2"]
    environment = {k: v for k, v in running.env.items() if k != "PYTHONPATH"}
    subscriber = subprocess.Popen(
        [sys.executable, str(script), *arguments],
        cwd=ROOT,  # as the guide says: from the repository's root, where the catalogue is
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert subscriber.stdout is not None
        assert subscriber.stdout.readline().startswith(f"bound {queue} ")
        spy = integrators.bind("identity.events", "subject_registered")
        first, second = new_resident(), new_resident()
        first_subject = Client(running).register(first).subject.subject_id
        [(_, properties, body)] = receive_own(spy, 1, about({first_subject}))
        broker = amqp_connection(amqp)
        try:
            channel = broker.channel()
            # Confirmed, so they are in the queue before the second person's event: messages of two
            # channels reach a quorum queue in no set order.
            channel.confirm_delivery()
            # A redelivery of the same event, then two the catalogue does not allow.
            channel.basic_publish("", queue, body, properties)
            wrong_kind = {**json.loads(body), "kind": 42}
            channel.basic_publish("", queue, json.dumps(wrong_kind).encode(), properties)
            for header, value in (("ce-time", "yesterday"), ("ce-type", "govmesh.identity.v1.Nothing")):
                wrong_header = pika.BasicProperties(headers={**properties.headers, header: value})
                channel.basic_publish("", queue, body, wrong_header)
        finally:
            broker.close()
        second_subject = Client(running).register(second).subject.subject_id
        out, err = subscriber.communicate(timeout=30)
    finally:
        subscriber.kill()
    assert subscriber.returncode == 0, err
    lines = out.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["registered", first_subject],
        ["duplicate", first_subject],
        *[["refused", f"{queue}:"]] * 3,
        ["registered", second_subject],
    ], out
    assert "$.payload.kind: 42 is not of type 'string'" in lines[2]
    assert "$.headers['ce-time']: 'yesterday' is not a 'date-time'" in lines[3]
    assert "not an event of the catalogue: KeyError('govmesh.identity.v1.Nothing')" in lines[4]
    with sqlite3.connect(register) as database:
        rows = database.execute("SELECT subject_id, kind, masked_identifier FROM subjects ORDER BY rowid").fetchall()
        assert database.execute("SELECT count(*) FROM seen_events").fetchone() == (2,)
    assert rows == [
        (first_subject, "SUBJECT_KIND_RESIDENT", first[:6] + "********" + first[-4:]),
        (second_subject, "SUBJECT_KIND_RESIDENT", second[:6] + "********" + second[-4:]),
    ]
    broker = amqp_connection(amqp)
    try:
        dead = broker.channel().queue_declare(f"{queue}.dead-letter", passive=True).method.message_count
        broker.channel().queue_delete(queue)
        broker.channel().queue_delete(f"{queue}.dead-letter")
    finally:
        broker.close()
    assert dead == 3
    for person in (first, second):
        assert person not in out


def test_metrics_count_calls_by_method_and_code(running: ServiceEnv) -> None:
    series = (
        'govmesh_grpc_requests_total{code="OK",method="RegisterSubject",service="identity"}',
        'govmesh_grpc_requests_total{code="NOT_FOUND",method="ResolveSubject",service="identity"}',
        'govmesh_identity_registrations_total{created="true",kind="resident"}',
    )
    before = [counter(running.api_metrics_port, name) for name in series]
    client = Client(running)
    client.register(new_resident())
    with pytest.raises(grpc.RpcError):
        client.resolve(identifier=new_resident())
    after = [counter(running.api_metrics_port, name) for name in series]
    assert [now - then for now, then in zip(after, before, strict=True)] == [1.0, 1.0, 1.0]
    worker_metrics = metrics_text(running.worker_metrics_port)
    assert 'govmesh_outbox_backlog{service="identity"}' in worker_metrics


def test_a_worker_deletes_the_events_it_sent_once_its_keep_time_has_passed(identity_env: ServiceEnv) -> None:
    """GOVMESH_OUTBOX_KEEP_SECONDS as an operator sets it: the event reaches its subscriber, then
    leaves the outbox, and the worker's metrics count it."""
    identity_env.env |= {"GOVMESH_OUTBOX_KEEP_SECONDS": "1"}
    env = start(identity_env)
    db = service_database("identity", env.database_url())

    def outbox_rows() -> int:
        with db.read() as session:
            return int(session.execute(sa.text("SELECT count(*) FROM outbox")).scalar_one())

    with Integrators(env.env["AMQP_URI"]) as integrators:
        integrator = integrators.bind("identity.events", "subject_registered")
        try:
            subject_id = Client(env).register(new_resident()).subject.subject_id
            assert len(receive_own(integrator, 1, about({subject_id}))) == 1
            wait_for(lambda: outbox_rows() == 0)
        finally:
            db.dispose()
    wait_for(lambda: counter(env.worker_metrics_port, 'govmesh_outbox_pruned_total{service="identity"}') >= 1)


def test_no_raw_identifier_in_logs_spans_events_or_metrics(running: ServiceEnv, integrators: Integrators) -> None:
    integrator = integrators.bind("identity.events")
    client = Client(running)
    legacy, legacy_as_18 = new_legacy()
    raw_ids = [new_resident(), new_resident(check="X"), new_resident(), legacy, legacy_as_18, new_enterprise()]
    subjects = set()
    for raw in raw_ids:
        client.validate(raw)
        subjects.add(client.register(raw).subject.subject_id)
        client.resolve(identifier=raw)
    for raw in raw_ids[:2]:  # failures too: they are where identifiers leak into messages
        with pytest.raises(grpc.RpcError):
            client.register(with_wrong_check(raw))
    # The legacy number and its 18-digit form are one subject.
    events = receive_own(integrator, len(raw_ids) - 1, about(subjects))
    assert len(events) == len(raw_ids) - 1
    time.sleep(0.5)  # let the console exporter flush the last spans
    output = running.all_output() + metrics_text(running.api_metrics_port) + metrics_text(running.worker_metrics_port)
    output += "".join(body.decode() + json.dumps(props.headers) for _, props, body in events)
    assert '"trace_id"' in running.all_output()  # logs carry trace ids
    assert '"kind": "SpanKind.SERVER"' in running.all_output()  # spans were exported and are checked
    for raw in [*raw_ids, *RAW_IDS]:  # the shared mesh's output holds the other tests' people too
        assert raw not in output, f"raw identifier {raw[:6]}… leaked"
        assert raw.lower() not in output


def test_event_committed_while_the_relay_is_dead_is_published_once_it_returns(
    identity_env: ServiceEnv, integrator_factory: type
) -> None:
    identity_env.migrate()
    identity_env.process("api")
    wait_serving(identity_env.target)
    integrator = integrator_factory.bind("identity.events")
    worker = identity_env.process("worker")
    worker.wait_for_log("starting services: identity")
    worker.stop(signal.SIGKILL)  # the relay dies without any chance to clean up

    subject = Client(identity_env).register(XU_WEI).subject  # committed with its event
    assert integrator.drain(quiet=1.0) == []  # nobody publishes it yet

    identity_env.process("worker")
    events = integrator.receive(1) + integrator.drain(quiet=1.5)
    assert [props.headers["ce-subject"] for _, props, _ in events] == [subject.subject_id]


def test_worker_registers_subjects_for_other_workers_over_nameko_rpc(
    running: ServiceEnv, integrators: Integrators
) -> None:
    integrator = integrators.bind("identity.events")
    amqp = running.env["AMQP_URI"]
    records = f"Bearer {running.token('records')}"  # the caller records' worker uses
    person = new_resident()
    reply = call_nameko_rpc(
        amqp, "identity", "register_subject", authorization=records, identifier=person, display_name="诸暨居民"
    )
    assert reply["error"] is None
    answer = reply["result"]
    assert isinstance(answer, dict) and answer["created"] is True
    assert answer["masked_identifier"] == person[:6] + "********" + person[-4:]
    assert person not in json.dumps(answer)
    # The api sees the same subject, and the worker's registration published its event.
    assert Client(running).resolve(identifier=person).subject.subject_id == answer["subject_id"]
    [(_, props, _)] = receive_own(integrator, 1, about({answer["subject_id"]}))
    assert props.headers["ce-subject"] == answer["subject_id"]

    bad = call_nameko_rpc(
        amqp,
        "identity",
        "register_subject",
        authorization=records,
        identifier=person[:-1] + "Z",
        display_name="x",
    )
    assert bad["error"]["exc_type"] == "RpcServiceError"  # type: ignore[index]
    assert str(bad["error"]["value"]).startswith("INVALID_ARGUMENT: identifier:")  # type: ignore[index]
    assert person[:-1] not in json.dumps(bad)

    # Like gRPC: no token, or a caller without the right, is refused before anything happens.
    for authorization, refusal in (
        ("", "UNAUTHENTICATED"),
        (f"Bearer {running.token('statistics')}", "PERMISSION_DENIED"),
    ):
        refused = call_nameko_rpc(amqp, "identity", "resolve_subject", authorization=authorization, identifier=LUO_FANG)
        assert str(refused["error"]["value"]).startswith(refusal)  # type: ignore[index]
    found = call_nameko_rpc(amqp, "identity", "resolve_subject", authorization=records, subject_id=answer["subject_id"])
    assert found["result"]["masked_identifier"] == answer["masked_identifier"]  # type: ignore[index]


def test_concurrent_registrations_of_one_person_make_one_subject_and_one_event(
    running: ServiceEnv, integrators: Integrators
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    integrator = integrators.bind("identity.events")
    client = Client(running)
    person = new_resident()
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: client.register(person, "罗舫"), range(16)))
    assert len({r.subject.subject_id for r in responses}) == 1
    assert sum(r.created for r in responses) == 1
    events = [m for m in integrator.drain() if m[1].headers["ce-subject"] == responses[0].subject.subject_id]
    assert len(events) == 1


def test_one_trace_runs_from_the_grpc_call_to_the_published_event(
    running: ServiceEnv, integrators: Integrators
) -> None:
    integrator = integrators.bind("identity.events")
    trace_id = uuid.uuid4().hex
    client = Client(running)
    response = client.stub.RegisterSubject(
        identity_pb2.RegisterSubjectRequest(identifier=new_enterprise(), display_name="杭州城市大脑有限公司"),
        metadata=[*client.metadata, ("traceparent", f"00-{trace_id}-{'cd' * 8}-01")],
        timeout=10,
    )
    [(_, props, _)] = receive_own(integrator, 1, about({response.subject.subject_id}))
    assert props.headers["traceparent"].split("-")[1] == trace_id
    # The api's exported server span carries the same trace id.
    wait_for(lambda: f'"trace_id": "0x{trace_id}"' in running.processes[0].logs())


def test_a_request_that_does_not_parse_is_invalid_argument_after_authentication(running: ServiceEnv) -> None:
    channel = grpc.insecure_channel(running.target)
    raw_call = channel.unary_unary(f"/{SERVICE}/ValidateIdentifier")  # sends bytes as they are
    not_utf8 = b"\x0a\x02\xff\xfe"  # field 1 (identifier), a string that is not UTF-8
    with pytest.raises(grpc.RpcError) as anonymous:
        raw_call(not_utf8, timeout=10)
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as error:
        raw_call(not_utf8, metadata=Client(running).metadata, timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith("request:")


@pytest.mark.parametrize(
    ("method", "streaming"),
    [
        ("/grpc.health.v1.Health/Check", False),
        ("/grpc.health.v1.Health/Watch", True),
        ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", True),
    ],
)
def test_health_and_reflection_refuse_a_request_that_does_not_parse_as_invalid_argument(
    running: ServiceEnv, method: str, streaming: bool
) -> None:
    """Probes and tools carry no token, but bytes that are not their request are the caller's
    mistake as much as on the service's own methods: INVALID_ARGUMENT naming the request."""
    not_utf8 = b"\x0a\x02\xff\xfe"  # field 1, a string that is not UTF-8
    with grpc.insecure_channel(running.target) as channel:
        with pytest.raises(grpc.RpcError) as error:
            if method.endswith("ServerReflectionInfo"):
                list(channel.stream_stream(method)(iter([not_utf8]), timeout=10))
            elif streaming:
                list(channel.unary_stream(method)(not_utf8, timeout=10))
            else:
                channel.unary_unary(method)(not_utf8, timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value
    assert error.value.details().startswith("request:")


def register_all(client: Client, *items: tuple[str, str]) -> identity_pb2.RegisterSubjectsResponse:
    request = identity_pb2.RegisterSubjectsRequest(
        subjects=[identity_pb2.RegisterSubjectRequest(identifier=i, display_name=n) for i, n in items]
    )
    return client.stub.RegisterSubjects(request, metadata=client.metadata, timeout=30)


def test_a_batch_registers_its_good_items_refuses_bad_ones_alone_and_announces_each_new_subject_once(
    running: ServiceEnv, integrators: Integrators
) -> None:
    integrator = integrators.bind("identity.events", "subject_registered")
    client = Client(running)
    earlier = new_resident()
    known = client.register(earlier, "罗舫").subject  # registered before the batch
    first, second, bad = new_resident(), new_enterprise(), with_wrong_check(new_resident())
    refused_before = counter(
        running.api_metrics_port,
        'govmesh_identity_registrations_refused_total{field="identifier",reason="INVALID_IDENTIFIER"}',
    )

    response = register_all(
        client,
        (first, "徐伟"),
        (bad, "x"),
        (second, "杭州城市大脑有限公司"),
        (first.lower()[:6] + " " + first[6:], "徐 伟"),  # the same person typed differently
        (first[:6] + "********" + first[-4:], "x"),  # not an identifier at all
        (new_resident(), "徐\u202e伟"),  # a name with a bidi override
        (earlier, "另一个名字"),
    )

    kinds = [result.WhichOneof("result") for result in response.results]
    assert kinds == ["registered", "refused", "registered", "registered", "refused", "refused", "registered"]
    created = [r.registered.created for r in response.results if r.WhichOneof("result") == "registered"]
    assert created == [True, True, False, False]  # a repeat in the batch is the same subject, not new
    subject = response.results[0].registered.subject
    assert response.results[3].registered.subject == subject
    assert response.results[6].registered.subject == known  # registered before: its name stands
    assert subject.display_name == "徐伟" and subject.masked_identifier == first[:6] + "********" + first[-4:]
    assert response.results[2].registered.subject.kind == identity_pb2.SUBJECT_KIND_ENTERPRISE
    refusals = {r.refused.index: r.refused for r in response.results if r.WhichOneof("result") == "refused"}
    assert {i: (r.field, r.reason) for i, r in refusals.items()} == {
        1: ("identifier", "INVALID_IDENTIFIER"),
        4: ("identifier", "INVALID_IDENTIFIER"),
        5: ("display_name", "INVALID"),
    }
    for refusal in refusals.values():
        assert refusal.message.startswith(f"{refusal.field}:") and refusal.message.isprintable()
        assert bad not in refusal.message and bad[:-1] not in refusal.message
    assert "U+202E" in refusals[5].message
    after = counter(
        running.api_metrics_port,
        'govmesh_identity_registrations_refused_total{field="identifier",reason="INVALID_IDENTIFIER"}',
    )
    assert after - refused_before == 2

    # The good items are registered as RegisterSubject would have; the refused ones are not.
    assert client.resolve(identifier=first).subject == subject
    assert client.resolve(identifier=second).subject == response.results[2].registered.subject
    with pytest.raises(grpc.RpcError) as missing:
        client.resolve(identifier=bad[:-1] + resident_id(bad[:17])[-1])
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    # Registering again, one by one or in a batch, creates nothing.
    assert not client.register(second, "x").created
    again = register_all(client, (first, "x"), (second, "x"))
    assert [r.registered.created for r in again.results] == [False, False]

    new = {subject.subject_id, response.results[2].registered.subject.subject_id}
    events = receive_own(integrator, 2, about(new)) + [m for m in integrator.drain(quiet=1.0) if about(new)(m)]
    assert sorted(props.headers["ce-subject"] for _, props, _ in events) == sorted(new)
    assert not [m for m in integrator.drain(quiet=0.2) if about({known.subject_id})(m)]


def test_a_batch_of_more_than_1000_is_refused_naming_the_field_and_registers_nobody(running: ServiceEnv) -> None:
    client = Client(running)
    people = [new_resident() for _ in range(1001)]
    with pytest.raises(grpc.RpcError) as error:
        register_all(client, *((person, "x") for person in people))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith("subjects: at most 1000")
    assert dict(error.value.trailing_metadata())["govmesh-field"] == "subjects"
    with pytest.raises(grpc.RpcError) as missing:
        client.resolve(identifier=people[0])
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert len(register_all(client, *((person, "x") for person in people[:1000])).results) == 1000
    assert not register_all(client).results  # nothing asked, nothing answered


def test_overlapping_batches_at_once_make_each_subject_once_with_one_event(
    running: ServiceEnv, integrators: Integrators
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    integrator = integrators.bind("identity.events", "subject_registered")
    people = [new_resident() for _ in range(400)]
    # Eight callers send the same people at once, each in its own order: whichever inserts a
    # person first creates them, the others find them (identity inserts in subject id order, so
    # that such batches never wait on each other in a cycle on PostgreSQL).
    orders = [people, people[::-1], people[200:] + people[:200], people[::2] + people[1::2]] * 2
    clients = [Client(running) for _ in orders]
    with ThreadPoolExecutor(len(orders)) as pool:
        answers = list(
            pool.map(
                lambda pair: register_all(pair[0], *((p, "x") for p in pair[1])), zip(clients, orders, strict=True)
            )
        )
    by_person: dict[str, list[identity_pb2.RegisterSubjectResponse]] = {}
    for order, answer in zip(orders, answers, strict=True):
        for person, result in zip(order, answer.results, strict=True):
            by_person.setdefault(person, []).append(result.registered)
    assert all(len({r.subject.subject_id for r in results}) == 1 for results in by_person.values())
    assert all(sum(r.created for r in results) == 1 for results in by_person.values())
    subjects = {results[0].subject.subject_id for results in by_person.values()}
    events = receive_own(integrator, len(people), about(subjects), timeout=30)
    events += [m for m in integrator.drain(quiet=1.0) if about(subjects)(m)]
    assert sorted(props.headers["ce-subject"] for _, props, _ in events) == sorted(subjects)


def test_worker_registers_a_batch_for_other_workers_over_nameko_rpc(
    running: ServiceEnv, integrators: Integrators
) -> None:
    integrator = integrators.bind("identity.events", "subject_registered")
    amqp = running.env["AMQP_URI"]
    records = f"Bearer {running.token('records')}"
    person, bad = new_resident(), with_wrong_check(new_resident())
    items = [{"identifier": person, "display_name": "诸暨居民"}, {"identifier": bad, "display_name": "x"}]
    reply = call_nameko_rpc(amqp, "identity", "register_subjects", authorization=records, subjects=items)
    assert reply["error"] is None
    registered, refused = reply["result"]  # type: ignore[misc]
    assert registered["created"] is True
    assert registered["masked_identifier"] == person[:6] + "********" + person[-4:]
    assert refused == {
        "refused": {
            "index": 1,
            "field": "identifier",
            "reason": "INVALID_IDENTIFIER",
            "message": refused["refused"]["message"],
        }
    }
    assert refused["refused"]["message"].startswith("identifier: not a valid identifier")
    assert person not in json.dumps(reply) and bad[:-1] not in json.dumps(reply)
    assert len(receive_own(integrator, 1, about({registered["subject_id"]}))) == 1
    assert Client(running).resolve(identifier=person).subject.subject_id == registered["subject_id"]

    too_many = [{"identifier": person, "display_name": "x"}] * 1001
    for authorization, subjects, refusal in (
        (records, too_many, "INVALID_ARGUMENT: subjects:"),
        (records, "not a list of mappings", "INVALID_ARGUMENT: subjects:"),
        (f"Bearer {running.token('statistics')}", items, "PERMISSION_DENIED"),
        ("", items, "UNAUTHENTICATED"),
    ):
        answer = call_nameko_rpc(amqp, "identity", "register_subjects", authorization=authorization, subjects=subjects)
        assert str(answer["error"]["value"]).startswith(refusal)  # type: ignore[index]
