"""Hostile input past the front door (issue 14): every gRPC method of every service, found in the
generated descriptors, is called with a valid seed request mutated one or a few fields at a time
(huge strings, control characters, random unicode, extreme integers, unknown enum numbers, huge
repeated fields, nested messages). No call may end INTERNAL or UNKNOWN, an INVALID_ARGUMENT names
its field, and every process is still alive afterwards. One mesh of all five services on
PostgreSQL. GOVMESH_PROPERTY_EXAMPLES sets the examples per method (20 in `make test`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as d
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from govmesh.approvals.v1 import approvals_pb2, approvals_pb2_grpc
from govmesh.crowd.v1 import crowd_pb2, crowd_pb2_grpc
from govmesh.health.v1 import medical_credit_pb2, medical_credit_pb2_grpc
from govmesh.identity.v1 import identity_pb2, identity_pb2_grpc
from govmesh.records.v1 import records_pb2, records_pb2_grpc
from tests.support.mesh import ServiceEnv, consumers, virtual_host, wait_for
from tests.support.people import wait_serving
from tests.support.shared_mesh import new_resident

EXAMPLES = int(os.environ.get("GOVMESH_PROPERTY_EXAMPLES", "20"))
SERVICES = {
    "identity": (identity_pb2, identity_pb2_grpc),
    "records": (records_pb2, records_pb2_grpc),
    "approvals": (approvals_pb2, approvals_pb2_grpc),
    "health": (medical_credit_pb2, medical_credit_pb2_grpc),
    "crowd": (crowd_pb2, crowd_pb2_grpc),
}
RESIDENT = new_resident()
# One valid seed per method (proto3 JSON-like dicts of field values); a method without one fails
# test_every_method_has_a_seed, so a new method is never silently left out.
SEEDS: dict[str, dict[str, Any]] = {
    "ValidateIdentifier": {"identifier": RESIDENT},
    "RegisterSubject": {"identifier": RESIDENT, "display_name": "Zhang San"},
    "RegisterSubjects": {"subjects": [{"identifier": RESIDENT, "display_name": "Zhang San"}]},
    "ResolveSubject": {"identifier": RESIDENT},
    "ListDepartments": {},
    "ListProofTypes": {},
    "PublishRecords": {
        "records": [
            {
                "department_code": "public_security",
                "record_type": "driving_licence",
                "subject_identifier": RESIDENT,
                "subject_display_name": "Zhang San",
                "source_reference": "DL-property-1",
                "effective_from": "2015-03-01",
            }
        ]
    },
    "GetProof": {"identifier": RESIDENT, "proof_type": "household_registration"},
    "VerifyProof": {"proof": {}},
    "ListSigningKeys": {},
    "ListAccesses": {"identifier": RESIDENT, "page_size": 10},
    "VerifyAuditTrail": {},
    "GetTreeHead": {"tree_size": 0},
    "GetConsistencyProof": {"first_size": 0, "second_size": 0},
    "ListCaseTypes": {},
    "SubmitCase": {"case_type": "ride_hailing_driver_permit", "applicant_identifier": RESIDENT, "request_id": "r-1"},
    "GetCase": {"case_id": "00000000-0000-0000-0000-000000000000"},
    "ListCases": {"applicant_identifier": RESIDENT, "page_size": 10},
    "WatchCase": {"case_id": "00000000-0000-0000-0000-000000000000"},
    "ListReviewTasks": {"department_code": "public_security", "page_size": 10},
    "CompleteReviewTask": {"task_id": "00000000-0000-0000-0000-000000000000", "decision": 1, "note": "ok"},
    "CancelCase": {"case_id": "00000000-0000-0000-0000-000000000000", "reason": "test"},
    "Enroll": {"identifier": RESIDENT},
    "GetAccount": {"identifier": RESIDENT},
    "OpenVisit": {"identifier": RESIDENT, "hospital_id": "H330100001", "kind": 1, "request_id": "v-1"},
    "AddCharge": {"visit_id": "00000000-0000-0000-0000-000000000000", "item": "x", "amount_fen": 100},
    "CloseVisit": {"visit_id": "00000000-0000-0000-0000-000000000000"},
    "GetBill": {"bill_id": "00000000-0000-0000-0000-000000000000"},
    "ListBills": {"identifier": RESIDENT, "page_size": 10},
    "PayBill": {"bill_id": "00000000-0000-0000-0000-000000000000", "amount_fen": 100, "request_id": "p-1"},
    "GetStats": {},
    "VerifyLedger": {},
    "UpsertZone": {"zone": {"zone_id": "west-lake", "name_zh": "西湖", "name_en": "West Lake", "capacity": 1000}},
    "ListZones": {"page_size": 10},
    "ReportReadings": {"readings": [{"zone_id": "west-lake"}]},
    "GetZoneStatus": {"zone_id": "west-lake"},
    "WatchZones": {"zone_ids": ["west-lake"]},
    "GetZoneHistory": {"zone_id": "west-lake"},
    "Forecast": {"zone_id": "west-lake", "horizon_minutes": 30, "step_minutes": 5},
}


def methods() -> list[tuple[str, d.ServiceDescriptor, d.MethodDescriptor]]:
    found = []
    for name, (pb2, _) in SERVICES.items():
        for service in pb2.DESCRIPTOR.services_by_name.values():
            found.extend((name, service, method) for method in service.methods)
    return found


METHODS = methods()


def seed(method: d.MethodDescriptor, cls: type[Message]) -> Message:
    message = cls()
    for key, value in SEEDS[method.name].items():
        field = method.input_type.fields_by_name[key]
        assign(message, field, value)
    return message


def assign(message: Message, field: d.FieldDescriptor, value: Any) -> None:
    if field.type == d.FieldDescriptor.TYPE_MESSAGE:
        if field.is_repeated:
            for item in value:
                sub = getattr(message, field.name).add()
                for k, v in item.items():
                    assign(sub, field.message_type.fields_by_name[k], v)
        else:
            sub = getattr(message, field.name)
            sub.SetInParent()
            for k, v in value.items():
                assign(sub, field.message_type.fields_by_name[k], v)
    elif field.is_repeated:
        getattr(message, field.name).extend(value)
    else:
        setattr(message, field.name, value)


INT_BOUNDS = {
    d.FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    d.FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    d.FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    d.FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}
HOSTILE_TEXT = st.one_of(
    st.just("x" * 100_000),
    st.just("\x00"),
    st.text(alphabet=st.characters(max_codepoint=0x1F), min_size=1, max_size=20),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200),
    st.just("\\ud800"),
    st.just(" "),
    st.just(""),
)


def scalar(field: d.FieldDescriptor) -> st.SearchStrategy[Any]:
    cpp = field.cpp_type
    if cpp in INT_BOUNDS:
        low, high = INT_BOUNDS[cpp]
        return st.one_of(st.sampled_from([low, high, -1, 0, 1]), st.integers(low, high))
    if cpp == d.FieldDescriptor.CPPTYPE_ENUM:
        return st.one_of(st.sampled_from([v.number for v in field.enum_type.values]), st.integers(-(2**31), 2**31 - 1))
    if cpp == d.FieldDescriptor.CPPTYPE_BOOL:
        return st.booleans()
    if cpp in (d.FieldDescriptor.CPPTYPE_DOUBLE, d.FieldDescriptor.CPPTYPE_FLOAT):
        return st.floats(
            allow_nan=True, allow_infinity=True, width=32 if cpp == d.FieldDescriptor.CPPTYPE_FLOAT else 64
        )
    if field.type == d.FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=100), st.just(b"\x00" * 100_000))
    return HOSTILE_TEXT


@st.composite
def mutate(draw: st.DrawFn, message: Message, depth: int = 0) -> Message:
    """One to three fields of ``message`` replaced by hostile values, recursively into messages."""
    fields = message.DESCRIPTOR.fields
    if not fields:
        return message
    for field in draw(st.lists(st.sampled_from(list(fields)), min_size=1, max_size=3, unique_by=lambda f: f.name)):
        repeated = field.is_repeated
        if field.type == d.FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                continue
            target = getattr(message, field.name)
            if repeated:
                count = draw(st.sampled_from([1, 3, 10_000]))
                template = target[0] if len(target) else None
                del target[:]
                for _ in range(count if count < 10_000 else 1):
                    item = target.add()
                    if template is not None:
                        item.CopyFrom(template)
                    if depth < 2:
                        item.CopyFrom(draw(mutate(item, depth + 1)))
                if count == 10_000:
                    target.extend([target[0]] * (count - 1))
            elif depth < 2:
                target.SetInParent()
                target.CopyFrom(draw(mutate(target, depth + 1)))
        elif repeated:
            values = draw(st.lists(scalar(field), max_size=5))
            if draw(st.booleans()) and values:
                values = values * (10_000 // len(values))
            del getattr(message, field.name)[:]
            getattr(message, field.name).extend(values)
        else:
            setattr(message, field.name, draw(scalar(field)))
    return message


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, postgres: Any) -> Iterator[ServiceEnv]:
    tmp_path = tmp_path_factory.mktemp("property")
    names = tuple(SERVICES)
    with virtual_host() as amqp:
        env = ServiceEnv(names[0], postgres.create(), tmp_path, amqp, others=names[1:])
        try:
            with futures.ThreadPoolExecutor(3) as pool:
                list(pool.map(env.migrate, names))
            for name in names:
                env.process("api", name)
                env.process("worker", name)
            wait_for(lambda: consumers(amqp, "rpc-identity") > 0, timeout=60)
            for name, (pb2, _) in SERVICES.items():
                for service in pb2.DESCRIPTOR.services_by_name.values():
                    wait_serving(env.target_of(name), service.full_name, timeout=60)
            yield env
        finally:
            alive = {" ".join(p.args): p.popen.poll() if p.popen else None for p in env.processes}
            env.stop_all()
        dead = {name: code for name, code in alive.items() if code is not None}
        assert not dead, f"processes died under hostile input: {dead}"


def test_every_method_has_a_seed() -> None:
    registered = set()
    for _, grpc_module in SERVICES.values():
        for servicer in (v for k, v in vars(grpc_module).items() if k.endswith("Servicer")):
            registered |= {k for k in vars(servicer) if not k.startswith("_")}
    enumerated = {method.name for _, _, method in METHODS}
    assert registered == enumerated, registered ^ enumerated
    assert enumerated <= set(SEEDS), f"methods without a seed: {enumerated - set(SEEDS)}"
    assert len(enumerated) >= 39


def call(
    env: ServiceEnv, name: str, service: d.ServiceDescriptor, method: d.MethodDescriptor, request: Message
) -> None:
    path = f"/{service.full_name}/{method.name}"
    metadata = (("authorization", f"Bearer {env.token('demo-portal')}"),)
    with grpc.insecure_channel(env.target_of(name), options=[("grpc.max_send_message_length", -1)]) as channel:
        serialize = type(request).SerializeToString
        try:
            if method.server_streaming:
                # A stream that took the request and is silent for 2 s has not broken.
                stream = channel.unary_stream(path, request_serializer=serialize)(request, metadata=metadata, timeout=2)
                try:
                    next(iter(stream))
                except StopIteration:
                    pass
                finally:
                    stream.cancel()
            else:
                channel.unary_unary(path, request_serializer=serialize)(request, metadata=metadata, timeout=30)
        except grpc.RpcError as error:
            code = error.code()
            if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED) and method.server_streaming:
                return
            assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (
                f"{method.full_name} answered {code.name}: {error.details()} to {request!r:.500}"
            )
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                trailers = dict(error.trailing_metadata() or ())
                assert trailers.get("govmesh-field"), f"{method.full_name} INVALID_ARGUMENT names no field"


@pytest.mark.broker
@pytest.mark.parametrize(("name", "service", "method"), METHODS, ids=[m.full_name for _, _, m in METHODS])
def test_hostile_requests_never_break_a_method(
    mesh: ServiceEnv, name: str, service: d.ServiceDescriptor, method: d.MethodDescriptor
) -> None:
    pb2 = SERVICES[name][0]
    cls = getattr(pb2, method.input_type.name)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def run(data: st.DataObject) -> None:
        call(mesh, name, service, method, data.draw(mutate(seed(method, cls))))

    run()


@pytest.mark.broker
def test_a_subject_id_with_a_nul_is_invalid_argument_not_internal(mesh: ServiceEnv) -> None:
    """Found by the property test: PostgreSQL refuses NUL in a text parameter, which was INTERNAL."""
    metadata = (("authorization", f"Bearer {mesh.token('demo-portal')}"),)
    with grpc.insecure_channel(mesh.target_of("identity")) as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.ResolveSubject(identity_pb2.ResolveSubjectRequest(subject_id="\x00"), metadata=metadata, timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(raised.value.trailing_metadata() or ())["govmesh-field"] == "subject_id"
