"""The api process: a grpcio server with health, reflection and one call pipeline.

Every call passes, in order: OpenTelemetry (a server span continuing the caller's traceparent),
then the pipeline: readiness (UNAVAILABLE while the database is not migrated), authentication
and rights (UNAUTHENTICATED / PERMISSION_DENIED), RED metrics, and error mapping (a
ServiceError becomes its status code; anything else is a bug: INTERNAL, logged with the trace).
Health and reflection skip authentication: probes and tools carry no token.
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
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import server_interceptor

from govmesh import metrics
from govmesh.auth import Caller, PermissionDenied, TokenVerifier, Unauthenticated
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


class CallPipeline(grpc.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(
        self,
        service: str,
        verifier: TokenVerifier,
        readiness: Readiness,
        authorized_inside: frozenset[str] = frozenset(),
    ) -> None:
        self.service = service
        self.verifier = verifier
        self.readiness = readiness
        # Full method paths ("/pkg.Service/Method") whose rights the method checks itself.
        self.authorized_inside = authorized_inside

    def intercept_service(self, continuation: Callable[..., Any], details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        method: str = details.method
        if handler is None:
            return handler
        if method.startswith(_UNGUARDED):
            return _wrap_handler(handler, _enclosed(_refusing_undecodable))
        raw = dict(details.invocation_metadata or ()).get("authorization")
        authorization = raw.decode() if isinstance(raw, bytes) else raw

        return _wrap_handler(handler, _enclosed(lambda context: self._call(method, authorization, context)))

    @contextlib.contextmanager
    def _call(self, method: str, authorization: str | None, context: grpc.ServicerContext) -> Iterator[None]:
        started = time.perf_counter()
        code = "OK"
        metrics.GRPC_IN_FLIGHT.labels(self.service).inc()
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
            code = refused.code
            context.abort(_status(code), refused.message)
        except ServiceError as exc:
            code = exc.status
            if exc.field:
                context.set_trailing_metadata((("govmesh-field", exc.field), ("govmesh-reason", exc.reason)))
            context.abort(_status(code), mask_identifiers(exc.message))
        except Exception as exc:
            if type(exc) is Exception:  # grpc's own abort, already carrying its status
                status = context.code()  # type: ignore[attr-defined]
                code = status.name if status else "UNKNOWN"
                raise
            if database_unavailable(exc):
                # Not a bug: the database went away (before readiness noticed) or is busy. The
                # caller may try again; readiness looks at once.
                code = "UNAVAILABLE"
                log.warning("database unavailable while handling %s: %s", method, type(exc).__name__)
                self.readiness.recheck()
                context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.service}'s database is unavailable; try again")
            code = "INTERNAL"
            trace_id = format(trace.get_current_span().get_span_context().trace_id, "032x")
            log.exception("bug while handling %s", method)
            context.abort(grpc.StatusCode.INTERNAL, f"internal error; trace id {trace_id}")
        finally:
            if token is not None:
                _caller.reset(token)
            metrics.GRPC_IN_FLIGHT.labels(self.service).dec()
            name = method.rsplit("/", 1)[-1]
            elapsed = time.perf_counter() - started
            metrics.GRPC_REQUESTS.labels(self.service, name, code).inc()
            metrics.GRPC_LATENCY.labels(self.service, name).observe(elapsed)
            # One line per call at DEBUG; a refused credential or right at INFO (who was refused
            # what is worth keeping). In the call's span, so the line carries its trace id.
            level = logging.INFO if code in ("UNAUTHENTICATED", "PERMISSION_DENIED") else logging.DEBUG
            if log.isEnabledFor(level):
                where = {"grpc_method": name, "grpc_code": code, "caller": caller_id, "ms": round(elapsed * 1000, 1)}
                log.log(level, "%s %s", name, code, extra=where)


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
            server_interceptor(),  # type: ignore[no-untyped-call]
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
