"""The api process: a grpcio server with health, reflection and one call pipeline.

Every call passes one pipeline: a server span continuing the caller's traceparent, readiness
(UNAVAILABLE while the database is not migrated), authentication and rights (UNAUTHENTICATED /
PERMISSION_DENIED), RED metrics, and error mapping (a ServiceError becomes its status code;
anything else is a bug: INTERNAL, logged with the trace). Health and reflection skip
authentication: probes and tools carry no token.

The span is the pipeline's own, not opentelemetry-instrumentation-grpc's server interceptor,
which wrapped every call's handler and context a second time and parsed the peer's address
(docs/decisions/runtime-server-span-in-the-pipeline.md).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from govmesh import metrics
from govmesh.auth import Caller, PermissionDenied, TokenVerifier, Unauthenticated
from govmesh.collector import freeze_start_up
from govmesh.db import Database, database_unavailable, watch_readiness
from govmesh.errors import InvalidArgument, ServiceError
from govmesh.logs import mask_identifiers

log = logging.getLogger(__name__)

_UNGUARDED = ("/grpc.health.v1.Health/", "/grpc.reflection.")
#: The grpc.health.v1 service name that says the process is alive (answers), not that it is ready.
LIVENESS = "govmesh.liveness"
_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("govmesh_caller", default=None)


def current_caller() -> Caller:
    """The authenticated caller of the gRPC call being handled (for rights beyond the method and
    for audit trails)."""
    caller = _caller.get()
    if caller is None:
        raise RuntimeError("current_caller() outside an authenticated gRPC call")
    return caller


class Readiness:
    """Tracks whether the service's database answers and is migrated; drives health status."""

    def __init__(self, db: Database, health_servicer: health.HealthServicer, service_names: list[str]) -> None:
        self.db = db
        self.health = health_servicer
        self.service_names = service_names
        self.reason: str | None = "not checked yet"
        self._stop = threading.Event()
        self._recheck = threading.Event()
        self._set(serving=False)

    def _set(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ["", *self.service_names]:
            self.health.set(name, status)

    def check(self, process: str) -> None:
        self._report(process, self.db.readiness())

    def _report(self, process: str, reason: str | None) -> None:
        if reason != self.reason:
            if reason is None:
                log.info("ready: database reachable and migrated")
            else:
                log.warning("not ready: %s", reason)
        self.reason = reason
        metrics.READY.labels(self.db.schema, process).set(1 if reason is None else 0)
        self._set(serving=reason is None)

    def watch(self, process: str) -> None:
        report = functools.partial(self._report, process)
        watch_readiness(self.db.readiness, report, stop=self._stop, recheck=self._recheck)

    def recheck(self) -> None:
        """Look at the database now rather than at the next interval (a call just lost it)."""
        self._recheck.set()

    def stop(self) -> None:
        self._stop.set()
        self._recheck.set()
        self.health.enter_graceful_shutdown()


def _status(name: str) -> grpc.StatusCode:
    status: grpc.StatusCode = getattr(grpc.StatusCode, name, grpc.StatusCode.UNKNOWN)
    return status


#: Server-side gRPC codes that make the call's span an error (OpenTelemetry's semantic
#: conventions for RPC servers): the caller's own mistakes (INVALID_ARGUMENT, NOT_FOUND,
#: PERMISSION_DENIED, ...) are answers, not failures of the server.
_SERVER_ERRORS = frozenset({"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"})


def _metadata(context: grpc.ServicerContext) -> dict[str, str | bytes]:
    """The call's metadata by key (gRPC gives keys in lower case)."""
    return {key: value for key, value in context.invocation_metadata() or ()}


class CallPipeline(grpc.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(
        self,
        service: str,
        verifier: TokenVerifier,
        readiness: Readiness,
        authorized_inside: frozenset[str] = frozenset(),
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.service = service
        self.verifier = verifier
        self.readiness = readiness
        # Full method paths ("/pkg.Service/Method") whose rights the method checks itself.
        self.authorized_inside = authorized_inside
        self.tracer = tracer or trace.get_tracer(__name__)
        # grpcio asks the interceptor for every call's handler, on its one thread that takes
        # calls in: each method's handler is wrapped once, then reused (a method's handler never
        # changes once the server runs; the check of identity keeps that an assumption no more).
        self._wrapped: dict[str, tuple[Any, Any]] = {}
        self._in_flight = metrics.GRPC_IN_FLIGHT.labels(service)

    def intercept_service(self, continuation: Callable[..., Any], details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None:
            return handler  # an unknown method: grpcio answers UNIMPLEMENTED; nothing kept for it
        method: str = details.method
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        if method.startswith(_UNGUARDED):
            scope = functools.partial(self._unguarded, method, _span_attributes(method))
        else:
            scope = functools.partial(self._call, _Method(self.service, method))
        wrapped = _wrap_handler(handler, _enclosed(scope))
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _start_span(
        self, method: str, attributes: dict[str, str], metadata: dict[str, str | bytes]
    ) -> tuple[trace.Span, contextvars.Token[otel_context.Context]]:
        """The call's server span, a child of the caller's (W3C traceparent, or whatever
        OTEL_PROPAGATORS names, from the metadata), made current; and the token to detach it."""
        parent = propagate.extract(metadata)
        span = self.tracer.start_span(method, parent, kind=SpanKind.SERVER, attributes=attributes)
        return span, otel_context.attach(trace.set_span_in_context(span, parent))

    @contextlib.contextmanager
    def _unguarded(self, method: str, attributes: dict[str, str], context: grpc.ServicerContext) -> Iterator[None]:
        span, attached = self._start_span(method, attributes, _metadata(context))
        code, message = "OK", ""
        try:
            with _refusing_undecodable(context):
                yield
        except Exception as exc:
            if type(exc) is not Exception:  # not grpc's own abort: a bug of the servicer
                span.record_exception(exc)
            code, message = _aborted_with(context)
            raise
        finally:
            _end_span(span, code, message)
            otel_context.detach(attached)

    @contextlib.contextmanager
    def _call(self, called: _Method, context: grpc.ServicerContext) -> Iterator[None]:
        started = time.perf_counter()
        method = called.path
        metadata = _metadata(context)
        span, attached = self._start_span(method, called.span_attributes, metadata)
        raw = metadata.get("authorization")
        authorization = raw.decode() if isinstance(raw, bytes) else raw
        code, message = "OK", ""
        self._in_flight.inc()
        token = None
        caller_id = ""
        try:
            if self.readiness.reason is not None:
                raise _Refused("UNAVAILABLE", f"{self.service} is not ready: {self.readiness.reason}")
            try:
                caller = self.verifier.caller(authorization)
                caller_id = caller.caller_id
                if method not in self.authorized_inside:
                    caller.check_may_call(method)
            except Unauthenticated as exc:
                raise _Refused("UNAUTHENTICATED", str(exc)) from None
            except PermissionDenied as exc:
                raise _Refused("PERMISSION_DENIED", str(exc)) from None
            token = _caller.set(caller)
            yield
        except _Refused as refused:
            code, message = refused.code, refused.message
            context.abort(_status(code), refused.message)
        except ServiceError as exc:
            code, message = exc.status, mask_identifiers(exc.message)
            if exc.field:
                context.set_trailing_metadata((("govmesh-field", exc.field), ("govmesh-reason", exc.reason)))
            context.abort(_status(code), message)
        except Exception as exc:
            if type(exc) is Exception:  # grpc's own abort, already carrying its status
                code, message = _aborted_with(context)
                raise
            if database_unavailable(exc):
                # Not a bug: the database went away (before readiness noticed) or is busy. The
                # caller may try again; readiness looks at once.
                code, message = "UNAVAILABLE", f"{self.service}'s database is unavailable; try again"
                log.warning("database unavailable while handling %s: %s", method, type(exc).__name__)
                self.readiness.recheck()
                context.abort(grpc.StatusCode.UNAVAILABLE, message)
            span.record_exception(exc)  # scrubbed on export, as every span is
            trace_id = format(span.get_span_context().trace_id, "032x")
            code, message = "INTERNAL", f"internal error; trace id {trace_id}"
            log.exception("bug while handling %s", method)
            context.abort(grpc.StatusCode.INTERNAL, message)
        finally:
            if token is not None:
                _caller.reset(token)
            self._in_flight.dec()
            name = called.name
            elapsed = time.perf_counter() - started
            called.requests(code).inc()
            called.latency.observe(elapsed)
            # One line per call at DEBUG; a refused credential or right at INFO (who was refused
            # what is worth keeping). In the call's span, so the line carries its trace id.
            level = logging.INFO if code in ("UNAUTHENTICATED", "PERMISSION_DENIED") else logging.DEBUG
            if log.isEnabledFor(level):
                where = {"grpc_method": name, "grpc_code": code, "caller": caller_id, "ms": round(elapsed * 1000, 1)}
                log.log(level, "%s %s", name, code, extra=where)
            _end_span(span, code, message)
            otel_context.detach(attached)


class _Method:
    """One method of the service as the pipeline meets it at every call: its names, its span's
    first attributes, and its metric series, looked up once (prometheus' labels() takes a lock and
    a lookup at every use)."""

    def __init__(self, service: str, path: str) -> None:
        self.path = path
        self.span_attributes = _span_attributes(path)
        self.name = self.span_attributes["rpc.method"]
        self.latency = metrics.GRPC_LATENCY.labels(service, self.name)
        self._service = service
        self._requests: dict[str, Any] = {}

    def requests(self, code: str) -> Any:
        """The requests counter of this method's calls that ended with ``code``."""
        counter = self._requests.get(code)
        if counter is None:
            counter = self._requests[code] = metrics.GRPC_REQUESTS.labels(self._service, self.name, code)
        return counter


def _aborted_with(context: grpc.ServicerContext) -> tuple[str, str]:
    """The status code (by name) and details a call was aborted with."""
    status = context.code()  # type: ignore[attr-defined]
    details = context.details()  # type: ignore[attr-defined]
    return (status.name if status else "UNKNOWN"), (details.decode(errors="replace") if details else "")


def _span_attributes(method: str) -> dict[str, str]:
    """The attributes a call's server span starts with (OpenTelemetry's RPC conventions), from
    the method's full path "/pkg.Service/Method"; the status code is added as the call ends."""
    service, _, name = method.lstrip("/").partition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


def _end_span(span: trace.Span, code: str, message: str) -> None:
    span.set_attribute("rpc.grpc.status_code", _status(code).value[0])
    if code in _SERVER_ERRORS:
        span.set_status(Status(StatusCode.ERROR, f"{code}: {message}"))
    span.end()


class _Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Undecodable:
    """Stands for a request message whose bytes did not parse (e.g. a string that is not UTF-8),
    so the pipeline can refuse it with INVALID_ARGUMENT instead of grpcio's INTERNAL."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError as error:
            return _Undecodable(error)

    return parse


def _checked(request: Any) -> Any:
    if isinstance(request, _Undecodable):
        raise InvalidArgument("request", "UNDECODABLE", f"is not a valid protobuf message: {request.error}")
    return request


def _checked_stream(requests: Iterator[Any]) -> Iterator[Any]:
    for request in requests:
        yield _checked(request)


@contextlib.contextmanager
def _refusing_undecodable(context: grpc.ServicerContext) -> Iterator[None]:
    """Health and reflection: no token asked, but bytes that are not their request are refused
    as the service's own methods refuse them (INVALID_ARGUMENT naming the request), not INTERNAL."""
    try:
        yield
    except InvalidArgument as exc:
        context.set_trailing_metadata((("govmesh-field", exc.field), ("govmesh-reason", exc.reason)))
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)


def _enclosed(scope: Callable[[grpc.ServicerContext], contextlib.AbstractContextManager[None]]) -> Any:
    """Makes a handler's behaviour run inside ``scope(context)``, its request refused when it did
    not decode (a streamed one as it comes)."""

    def guarded(behaviour: Callable[..., Any], streaming_request: bool, streaming_response: bool) -> Any:
        def checked(request: Any) -> Any:
            return _checked_stream(request) if streaming_request else _checked(request)

        if streaming_response:

            def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                with scope(context):
                    yield from behaviour(checked(request), context)

            return stream

        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            with scope(context):
                return behaviour(checked(request), context)

        return unary

    return guarded


def _wrap_handler(handler: Any, guarded: Callable[..., Callable[..., Any]]) -> Any:
    kinds = (
        ("unary_unary", grpc.unary_unary_rpc_method_handler, False, False),
        ("unary_stream", grpc.unary_stream_rpc_method_handler, False, True),
        ("stream_unary", grpc.stream_unary_rpc_method_handler, True, False),
        ("stream_stream", grpc.stream_stream_rpc_method_handler, True, True),
    )
    for attribute, make, streaming_request, streaming_response in kinds:
        behaviour = getattr(handler, attribute)
        if behaviour is not None:
            return make(
                guarded(behaviour, streaming_request, streaming_response),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
    return handler


@dataclass(frozen=True)
class ApiDefinition:
    """What a service gives the bootstrap: its gRPC service name and how to add its servicer."""

    service: str
    full_name: str
    add_servicer: Callable[[grpc.Server], None]
    #: Methods (by name) that authenticate here but check the caller's right themselves, so that
    #: a refusal can be recorded where it belongs (records audits every refused read of a person).
    authorized_inside: frozenset[str] = frozenset()
    #: Streams (watchers) the servicer serves at once, each holding a server thread of its own
    #: beside the threads for unary calls.
    streams: int = 0


#: grpc.reflection.v1 is v1alpha renamed, message for message: tools ask for v1 first (grpcurl,
#: Postman, grpcui) and grpcio-reflection serves only v1alpha.
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def serve_reflection(server: grpc.Server, service_names: tuple[str, ...]) -> None:
    """Server reflection under grpc.reflection.v1alpha and grpc.reflection.v1 alike."""
    servicer = reflection.ReflectionServicer(service_names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    same_messages = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": same_messages}),)
    )


def serve(
    definition: ApiDefinition,
    db: Database,
    verifier: TokenVerifier,
    bind: str,
    max_workers: int = 16,
    grace_seconds: float = 10.0,
    share_port: bool = False,
) -> None:
    """Run until SIGTERM or SIGINT, then stop taking calls and drain those in flight.
    ``share_port``: other api processes of the service listen on the same port (SO_REUSEPORT), the
    kernel spreading new connections over them; otherwise a port already taken stops the start."""
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    readiness = Readiness(db, health_servicer, [definition.full_name])
    server = grpc.server(
        # Threads are made as calls come: a parked watcher costs a thread, never a unary call's.
        futures.ThreadPoolExecutor(
            max_workers=max_workers + definition.streams, thread_name_prefix=f"{definition.service}-grpc"
        ),
        interceptors=[
            CallPipeline(
                definition.service,
                verifier,
                readiness,
                frozenset(f"/{definition.full_name}/{name}" for name in definition.authorized_inside),
            ),
        ],
        options=[("grpc.max_receive_message_length", 8 * 1024 * 1024), ("grpc.so_reuseport", int(share_port))],
    )
    definition.add_servicer(server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    serve_reflection(server, (definition.full_name, health.SERVICE_NAME, reflection.SERVICE_NAME))
    port = server.add_insecure_port(bind)
    if port == 0:
        raise OSError(f"cannot listen on {bind} (is another process using the port?)")
    readiness.check("api")
    readiness.watch("api")
    # Liveness apart from readiness: SERVING while the process answers at all, whatever its
    # database does (a database away makes it NOT_SERVING for its services, and it recovers by
    # itself: a restart would not help). Kubernetes' liveness probe asks for this name.
    health_servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
    server.start()
    freeze_start_up()
    log.info("gRPC listening", extra={"grpc_address": bind, "grpc_service": definition.full_name})

    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s: draining in-flight calls (up to %ss)", signal.Signals(signum).name, grace_seconds)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stopping.wait()
    readiness.stop()
    server.stop(grace_seconds).wait()
    db.dispose()
    log.info("stopped")
