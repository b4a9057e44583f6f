"""Every gRPC call an api process takes is a server span of the call pipeline's own
(govmesh.grpcserver.CallPipeline): a child of the caller's traceparent, named by the method, with
OpenTelemetry's RPC attributes and the call's status code, an error only where the server failed,
and exported with identifiers masked. A real grpcio server with the pipeline answers over gRPC:
the synchronous one, and grpc.aio (what an api that streams runs) with plain handlers (its unary
calls, in its thread pool) and with coroutines (as its streams are)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from grpc_health.v1 import _async as health_async
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from govmesh import auth
from govmesh.config import ROOT
from govmesh.db import service_database
from govmesh.errors import InvalidArgument
from govmesh.grpcserver import AioCallPipeline, CallPipeline, Readiness
from govmesh.identity.v1 import identity_pb2, identity_pb2_grpc
from govmesh.tracing import ScrubbingSpanExporter
from tests.support.people import XU_WEI

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"
SERVICE = "govmesh.identity.v1.IdentityService"


class Answering(identity_pb2_grpc.IdentityServiceServicer):
    """Answers one method, refuses one as a service does, and has a bug in a third."""

    def ValidateIdentifier(
        self, request: identity_pb2.ValidateIdentifierRequest, context: grpc.ServicerContext
    ) -> identity_pb2.ValidateIdentifierResponse:
        return identity_pb2.ValidateIdentifierResponse(valid=True)

    def ResolveSubject(
        self, request: identity_pb2.ResolveSubjectRequest, context: grpc.ServicerContext
    ) -> identity_pb2.ResolveSubjectResponse:
        raise InvalidArgument("identifier", "INVALID_IDENTIFIER", "not a valid identifier")

    def RegisterSubject(
        self, request: identity_pb2.RegisterSubjectRequest, context: grpc.ServicerContext
    ) -> identity_pb2.RegisterSubjectResponse:
        raise LookupError(f"no subject {request.identifier}")  # a bug that names the person


class AnsweringOnTheLoop(identity_pb2_grpc.IdentityServiceServicer):
    """Answering's behaviour as coroutines, as grpc.aio runs a stream's handler."""

    def __init__(self) -> None:
        self.plain = Answering()

    async def ValidateIdentifier(  # type: ignore[override]
        self, request: identity_pb2.ValidateIdentifierRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> identity_pb2.ValidateIdentifierResponse:
        return self.plain.ValidateIdentifier(request, context)  # type: ignore[arg-type]

    async def ResolveSubject(  # type: ignore[override]
        self, request: identity_pb2.ResolveSubjectRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> identity_pb2.ResolveSubjectResponse:
        return self.plain.ResolveSubject(request, context)  # type: ignore[arg-type]

    async def RegisterSubject(  # type: ignore[override]
        self, request: identity_pb2.RegisterSubjectRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> identity_pb2.RegisterSubjectResponse:
        return self.plain.RegisterSubject(request, context)  # type: ignore[arg-type]


T = TypeVar("T")


class Loop:
    """An event loop in a thread of its own, as an aio api's main thread runs one."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Served:
    stub: identity_pb2_grpc.IdentityServiceStub
    health: health_pb2_grpc.HealthStub
    authorization: tuple[str, str]
    spans: InMemorySpanExporter

    def only_span(self) -> ReadableSpan:
        (span,) = self.spans.get_finished_spans()
        self.spans.clear()
        return span


@pytest.fixture(params=["sync", "aio plain handlers", "aio coroutines"])
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Served]:
    policy = auth.Policy.load(ROOT / "policy" / "dev.yaml")
    token = auth.TokenIssuer.from_key_dir(policy, tmp_path).issue("demo-portal")
    db = service_database("identity", f"sqlite:///{tmp_path / 'identity.db'}")
    db.migrate()
    on_aio = request.param != "sync"
    loop = Loop() if on_aio else None
    health_servicer = health_async.HealthServicer() if loop else health.HealthServicer()
    readiness = Readiness(db, health_servicer, [SERVICE], loop=loop.loop if loop else None)
    readiness.check("api")
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ScrubbingSpanExporter(spans)))
    pipeline = CallPipeline(
        "identity", auth.TokenVerifier.from_key_dir(policy, tmp_path), readiness, tracer=provider.get_tracer("test")
    )
    servicer = AnsweringOnTheLoop() if request.param == "aio coroutines" else Answering()
    if loop is None:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), interceptors=[pipeline])
    else:
        server = loop.run(_aio_server(pipeline))
    identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    if loop is None:
        server.start()
    else:
        loop.run(server.start())
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Served(
                identity_pb2_grpc.IdentityServiceStub(channel),
                health_pb2_grpc.HealthStub(channel),
                ("authorization", f"Bearer {token}"),
                spans,
            )
    finally:
        if loop is None:
            server.stop(0)
        else:
            loop.run(server.stop(0))
            loop.close()
        db.dispose()


async def _aio_server(pipeline: CallPipeline) -> grpc.aio.Server:
    """Made on the loop, which grpc.aio binds the server to."""
    pool = futures.ThreadPoolExecutor(max_workers=2)
    return grpc.aio.server(migration_thread_pool=pool, interceptors=[AioCallPipeline(pipeline)])


def test_a_call_is_a_server_span_under_the_callers_traceparent(served: Served) -> None:
    for _ in range(2):  # the second call goes through the handler the pipeline kept
        served.stub.ValidateIdentifier(
            identity_pb2.ValidateIdentifierRequest(identifier=XU_WEI),
            metadata=[served.authorization, ("traceparent", f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01")],
        )
        span = served.only_span()
        assert span.name == f"/{SERVICE}/ValidateIdentifier"
        assert span.kind is SpanKind.SERVER
        assert span.context is not None and format(span.context.trace_id, "032x") == TRACE_ID
        assert span.parent is not None and format(span.parent.span_id, "016x") == CALLER_SPAN_ID
        assert span.parent.is_remote
        assert dict(span.attributes or {}) == {
            "rpc.system": "grpc",
            "rpc.service": SERVICE,
            "rpc.method": "ValidateIdentifier",
            "rpc.grpc.status_code": 0,
        }
        assert span.status.status_code is StatusCode.UNSET


def test_a_call_without_traceparent_starts_a_trace(served: Served) -> None:
    served.stub.ValidateIdentifier(identity_pb2.ValidateIdentifierRequest(), metadata=[served.authorization])
    span = served.only_span()
    assert span.parent is None and span.context is not None and span.context.trace_id != 0


def test_a_refusal_is_an_answer_not_a_failure_of_the_server(served: Served) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        served.stub.ResolveSubject(
            identity_pb2.ResolveSubjectRequest(identifier=XU_WEI), metadata=[served.authorization]
        )
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    span = served.only_span()
    assert span.attributes is not None and span.attributes["rpc.grpc.status_code"] == 3
    assert span.status.status_code is StatusCode.UNSET

    with pytest.raises(grpc.RpcError) as unauthenticated:
        served.stub.ValidateIdentifier(identity_pb2.ValidateIdentifierRequest())
    assert unauthenticated.value.code() is grpc.StatusCode.UNAUTHENTICATED
    span = served.only_span()
    assert span.attributes is not None and span.attributes["rpc.grpc.status_code"] == 16


def test_a_bug_is_an_error_span_with_its_exception_masked_and_the_callers_trace_id(served: Served) -> None:
    with pytest.raises(grpc.RpcError) as failed:
        served.stub.RegisterSubject(
            identity_pb2.RegisterSubjectRequest(identifier=XU_WEI, display_name="徐伟"), metadata=[served.authorization]
        )
    assert failed.value.code() is grpc.StatusCode.INTERNAL
    span = served.only_span()
    assert span.context is not None
    assert format(span.context.trace_id, "032x") in str(failed.value.details())
    assert span.attributes is not None and span.attributes["rpc.grpc.status_code"] == 13
    assert span.status.status_code is StatusCode.ERROR
    (exception,) = span.events
    assert exception.name == "exception" and exception.attributes is not None
    assert exception.attributes["exception.type"] == "LookupError"
    assert exception.attributes["exception.message"] == f"no subject {XU_WEI[:6]}********{XU_WEI[-4:]}"
    assert XU_WEI not in span.to_json()


def test_a_health_check_is_a_span_too_without_a_token(served: Served) -> None:
    answer = served.health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    span = served.only_span()
    assert span.name == "/grpc.health.v1.Health/Check"
    assert span.attributes is not None
    assert (span.attributes["rpc.service"], span.attributes["rpc.grpc.status_code"]) == ("grpc.health.v1.Health", 0)
