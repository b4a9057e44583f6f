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

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import _async as health_async
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import _async as reflection_async
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
    """Tracks whether the service's database answers and is migrated; drives health status.
    ``loop``: the health servicer is grpc.aio's, whose statuses are set on that loop."""

    def __init__(
        self,
        db: Database,
        health_servicer: health.HealthServicer | health_async.HealthServicer,
        service_names: list[str],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.db = db
        self.health = health_servicer
        self.service_names = service_names
        self.loop = loop
        self.reason: str | None = "not checked yet"
        self._stop = threading.Event()
        self._recheck = threading.Event()
        self._set(serving=False)

    def _set(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ["", *self.service_names]:
            self._on_health("set", name, status)

    def _on_health(self, method: str, *args: Any) -> None:
        """Calls the health servicer's ``method``: at once, or on the aio server's loop (from the
        readiness thread, or from the loop before the server starts: never waited for)."""
        done = getattr(self.health, method)(*args)
        if self.loop is not None:
            asyncio.run_coroutine_threadsafe(done, self.loop)

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
        self._on_health("enter_graceful_shutdown")


def _status(name: str) -> grpc.StatusCode:
    status: grpc.StatusCode = getattr(grpc.StatusCode, name, grpc.StatusCode.UNKNOWN)
    return status


#: Server-side gRPC codes that make the call's span an error (OpenTelemetry's semantic
#: conventions for RPC servers): the caller's own mistakes (INVALID_ARGUMENT, NOT_FOUND,
#: PERMISSION_DENIED, ...) are answers, not failures of the server.
_SERVER_ERRORS = frozenset({"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"})


def _metadata(context: Any) -> dict[str, str | bytes]:
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
        return self._wrap(details.method, continuation(details))

    def _wrap(self, method: str, handler: Any) -> Any:
        if handler is None:
            return handler  # an unknown method: grpcio answers UNIMPLEMENTED; nothing kept for it
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        if method.startswith(_UNGUARDED):
            attributes = _span_attributes(method)
            scopes = _Scopes(
                functools.partial(self._unguarded, method, attributes),
                functools.partial(self._unguarded_async, method, attributes),
            )
        else:
            called = _Method(self.service, method)
            scopes = _Scopes(functools.partial(self._call, called), functools.partial(self._call_async, called))
        wrapped = _wrap_handler(handler, _enclosed(scopes))
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
            try:
                yield
            except InvalidArgument as exc:
                context.abort(*_refusal_of_undecodable(exc, context))
        except Exception as exc:
            code, message = _unguarded_failure(exc, span, context)
            raise
        finally:
            _end_span(span, code, message)
            otel_context.detach(attached)

    @contextlib.asynccontextmanager
    async def _unguarded_async(
        self, method: str, attributes: dict[str, str], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[None]:
        span, attached = self._start_span(method, attributes, _metadata(context))
        code, message = "OK", ""
        try:
            try:
                yield
            except InvalidArgument as exc:
                await context.abort(*_refusal_of_undecodable(exc, context))
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        except Exception as exc:
            code, message = _unguarded_failure(exc, span, context)
            raise
        finally:
            _end_span(span, code, message)
            otel_context.detach(attached)

    @contextlib.contextmanager
    def _call(self, called: _Method, context: grpc.ServicerContext) -> Iterator[None]:
        passage = _Passage(self, called, context)
        try:
            passage.admit()
            yield
        except Exception as exc:
            abort = passage.failed(exc, context)
            if abort is None:
                raise
            passage.close()  # before abort, which on grpc.aio sends the status at once
            context.abort(*abort)
        finally:
            passage.close()

    @contextlib.asynccontextmanager
    async def _call_async(self, called: _Method, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
        """_call for a coroutine or async generator handler (grpc.aio): the same passage, the
        abort awaited."""
        passage = _Passage(self, called, context)
        try:
            passage.admit()
            yield
        except asyncio.CancelledError:  # the caller went away (or the server stopped after its grace)
            passage.code = "CANCELLED"
            raise
        except Exception as exc:
            abort = passage.failed(exc, context)
            if abort is None:
                raise
            passage.close()  # the caller, once answered, finds the call's span and metrics
            await context.abort(*abort)
        finally:
            passage.close()


class AioCallPipeline(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """CallPipeline on a grpc.aio server: coroutine and async generator handlers (the streams)
    pass its pipeline on the event loop; plain handlers (the unary calls) pass it in the server's
    thread pool, as on the synchronous server."""

    def __init__(self, pipeline: CallPipeline) -> None:
        self.pipeline = pipeline

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]], details: grpc.HandlerCallDetails
    ) -> Any:
        return self.pipeline._wrap(details.method, await continuation(details))


class _Passage:
    """One call's way through the pipeline, the same on both servers: the span, readiness,
    authentication and rights, what a failure answers, and the metrics and log line at the end.
    The scopes around it differ only in how they abort (grpc.aio's abort is awaited)."""

    def __init__(self, pipeline: CallPipeline, called: _Method, context: Any) -> None:
        self.started = time.perf_counter()
        self.pipeline = pipeline
        self.called = called
        metadata = _metadata(context)
        self.span, self.attached = pipeline._start_span(called.path, called.span_attributes, metadata)
        raw = metadata.get("authorization")
        self.authorization = raw.decode() if isinstance(raw, bytes) else raw
        self.code, self.message = "OK", ""
        self.token: contextvars.Token[Caller | None] | None = None
        self.caller_id = ""
        self.closed = False
        pipeline._in_flight.inc()

    def admit(self) -> None:
        """Readiness, then the caller and their right to the method; the caller made current."""
        pipeline = self.pipeline
        method = self.called.path
        if pipeline.readiness.reason is not None:
            raise _Refused("UNAVAILABLE", f"{pipeline.service} is not ready: {pipeline.readiness.reason}")
        try:
            caller = pipeline.verifier.caller(self.authorization)
            self.caller_id = caller.caller_id
            if method not in pipeline.authorized_inside:
                caller.check_may_call(method)
        except Unauthenticated as exc:
            raise _Refused("UNAUTHENTICATED", str(exc)) from None
        except PermissionDenied as exc:
            raise _Refused("PERMISSION_DENIED", str(exc)) from None
        self.token = _caller.set(caller)

    def failed(self, exc: Exception, context: Any) -> tuple[grpc.StatusCode, str] | None:
        """The status and details to abort the call with after ``exc``; None when ``exc`` is
        grpc's own abort, already carrying its status."""
        if isinstance(exc, _Refused):
            self.code, self.message = exc.code, exc.message
            return _status(exc.code), exc.message
        if isinstance(exc, ServiceError):
            self.code, self.message = exc.status, mask_identifiers(exc.message)
            if exc.field:
                context.set_trailing_metadata((("govmesh-field", exc.field), ("govmesh-reason", exc.reason)))
            return _status(self.code), self.message
        if _is_abort(exc):
            self.code, self.message = _aborted_with(context)
            return None
        method = self.called.path
        if database_unavailable(exc):
            # Not a bug: the database went away (before readiness noticed) or is busy. The
            # caller may try again; readiness looks at once.
            self.code = "UNAVAILABLE"
            self.message = f"{self.pipeline.service}'s database is unavailable; try again"
            log.warning("database unavailable while handling %s: %s", method, type(exc).__name__)
            self.pipeline.readiness.recheck()
            return grpc.StatusCode.UNAVAILABLE, self.message
        self.span.record_exception(exc)  # scrubbed on export, as every span is
        trace_id = format(self.span.get_span_context().trace_id, "032x")
        self.code, self.message = "INTERNAL", f"internal error; trace id {trace_id}"
        log.exception("bug while handling %s", method)
        return grpc.StatusCode.INTERNAL, self.message

    def close(self) -> None:
        """Ends the call's span and counts it, once."""
        if self.closed:
            return
        self.closed = True
        if self.token is not None:
            _caller.reset(self.token)
        self.pipeline._in_flight.dec()
        called, code = self.called, self.code
        elapsed = time.perf_counter() - self.started
        called.requests(code).inc()
        called.latency.observe(elapsed)
        # One line per call at DEBUG; a refused credential or right at INFO (who was refused
        # what is worth keeping). In the call's span, so the line carries its trace id.
        level = logging.INFO if code in ("UNAUTHENTICATED", "PERMISSION_DENIED") else logging.DEBUG
        if log.isEnabledFor(level):
            where = {
                "grpc_method": called.name,
                "grpc_code": code,
                "caller": self.caller_id,
                "ms": round(elapsed * 1000, 1),
            }
            log.log(level, "%s %s", called.name, code, extra=where)
        _end_span(self.span, code, self.message)
        otel_context.detach(self.attached)


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


def _is_abort(exc: Exception) -> bool:
    """Whether ``exc`` is grpc's own abort (the synchronous server's bare Exception, or
    grpc.aio's AbortError, also what a plain handler on grpc.aio gets), the status already set."""
    return type(exc) is Exception or isinstance(exc, grpc.aio.AbortError)


def _aborted_with(context: Any) -> tuple[str, str]:
    """The status code (by name) and details a call was aborted with; grpc.aio does not tell a
    plain handler's context (UNKNOWN then: no servicer aborts by itself, the pipeline does)."""
    if not hasattr(context, "code"):
        return "UNKNOWN", ""
    status = context.code()
    details = context.details()
    if isinstance(details, bytes):
        details = details.decode(errors="replace")
    return (status.name if status else "UNKNOWN"), (details or "")


def _unguarded_failure(exc: Exception, span: trace.Span, context: Any) -> tuple[str, str]:
    """The code and details an unguarded call (health, reflection) ended with after ``exc``."""
    if not _is_abort(exc):  # a bug of the servicer
        span.record_exception(exc)
    return _aborted_with(context)


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


async def _checked_async_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield _checked(request)


def _refusal_of_undecodable(exc: InvalidArgument, context: Any) -> tuple[grpc.StatusCode, str]:
    """Health and reflection: no token asked, but bytes that are not their request are refused
    as the service's own methods refuse them (INVALID_ARGUMENT naming the request), not INTERNAL."""
    context.set_trailing_metadata((("govmesh-field", exc.field), ("govmesh-reason", exc.reason)))
    return grpc.StatusCode.INVALID_ARGUMENT, exc.message


@dataclass(frozen=True)
class _Scopes:
    """A method's pipeline as a context manager of its call's context: ``plain`` around a plain
    handler (a server thread), ``aio`` around a coroutine or async generator (grpc.aio's loop)."""

    plain: Callable[[Any], contextlib.AbstractContextManager[None]]
    aio: Callable[[Any], contextlib.AbstractAsyncContextManager[None]]


def _enclosed(scopes: _Scopes) -> Any:
    """Makes a handler's behaviour run inside its scope, its request refused when it did not
    decode (a streamed one as it comes)."""

    def guarded(behaviour: Callable[..., Any], streaming_request: bool, streaming_response: bool) -> Any:
        if inspect.iscoroutinefunction(behaviour) or inspect.isasyncgenfunction(behaviour):
            return _guarded_async(scopes.aio, behaviour, streaming_request, streaming_response)
        scope = scopes.plain

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


def _guarded_async(
    scope: Callable[[Any], contextlib.AbstractAsyncContextManager[None]],
    behaviour: Callable[..., Any],
    streaming_request: bool,
    streaming_response: bool,
) -> Any:
    def checked(request: Any) -> Any:
        return _checked_async_stream(request) if streaming_request else _checked(request)

    if streaming_response:

        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            async with scope(context):
                async for response in behaviour(checked(request), context):
                    yield response

        return stream

    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        async with scope(context):
            return await behaviour(checked(request), context)

    return unary


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
    add_servicer: Callable[[grpc.Server | grpc.aio.Server], None]
    #: Methods (by name) that authenticate here but check the caller's right themselves, so that
    #: a refusal can be recorded where it belongs (records audits every refused read of a person).
    authorized_inside: frozenset[str] = frozenset()
    #: Streams (watchers) the servicer serves at once. With any, the api runs grpc.aio: its
    #: streams are coroutines on the event loop (a thread each would cost three thread hand-offs
    #: per message sent), its unary calls stay plain handlers in the thread pool
    #: (docs/decisions/runtime-watchers-share-one-poller.md).
    streams: int = 0


#: grpc.reflection.v1 is v1alpha renamed, message for message: tools ask for v1 first (grpcurl,
#: Postman, grpcui) and grpcio-reflection serves only v1alpha.
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def serve_reflection(
    server: grpc.Server | grpc.aio.Server,
    service_names: tuple[str, ...],
    servicer: reflection.ReflectionServicer | reflection_async.ReflectionServicer | None = None,
) -> None:
    """Server reflection under grpc.reflection.v1alpha and grpc.reflection.v1 alike."""
    servicer = servicer or reflection.ReflectionServicer(service_names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    same_messages = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": same_messages}),)
    )


def _options(share_port: bool) -> list[tuple[str, int]]:
    return [("grpc.max_receive_message_length", 8 * 1024 * 1024), ("grpc.so_reuseport", int(share_port))]


def _pipeline(definition: ApiDefinition, verifier: TokenVerifier, readiness: Readiness) -> CallPipeline:
    inside = frozenset(f"/{definition.full_name}/{name}" for name in definition.authorized_inside)
    return CallPipeline(definition.service, verifier, readiness, inside)


def _listen(server: grpc.Server | grpc.aio.Server, bind: str) -> None:
    if server.add_insecure_port(bind) == 0:
        raise OSError(f"cannot listen on {bind} (is another process using the port?)")


def _say_draining(signum: int, grace_seconds: float) -> None:
    log.info("received %s: draining in-flight calls (up to %ss)", signal.Signals(signum).name, grace_seconds)


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
    kernel spreading new connections over them; otherwise a port already taken stops the start.
    A service that streams runs grpc.aio (``ApiDefinition.streams``)."""
    if definition.streams:
        asyncio.run(_serve_aio(definition, db, verifier, bind, max_workers, grace_seconds, share_port))
        return
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    readiness = Readiness(db, health_servicer, [definition.full_name])
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"{definition.service}-grpc"),
        interceptors=[_pipeline(definition, verifier, readiness)],
        options=_options(share_port),
    )
    definition.add_servicer(server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    serve_reflection(server, (definition.full_name, health.SERVICE_NAME, reflection.SERVICE_NAME))
    _listen(server, bind)
    readiness.check("api")
    readiness.watch("api")
    # Liveness apart from readiness: SERVING while the process answers at all, whatever its
    # database does (a database away makes it NOT_SERVING for its services, and it recovers by
    # itself: a restart would not help). Kubernetes' liveness probe asks for this name.
    health_servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
    freeze_start_up()
    server.start()
    log.info("gRPC listening", extra={"grpc_address": bind, "grpc_service": definition.full_name})

    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        _say_draining(signum, grace_seconds)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stopping.wait()
    readiness.stop()
    server.stop(grace_seconds).wait()
    db.dispose()
    log.info("stopped")


async def _serve_aio(
    definition: ApiDefinition,
    db: Database,
    verifier: TokenVerifier,
    bind: str,
    max_workers: int,
    grace_seconds: float,
    share_port: bool,
) -> None:
    """serve() on grpc.aio: the same pipeline, health, reflection, liveness and drain."""
    loop = asyncio.get_running_loop()
    pool = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"{definition.service}-grpc")
    # The streams' blocking reads (asyncio.to_thread) share the unary calls' threads, so a crowd
    # of new watchers cannot make threads without bound.
    loop.set_default_executor(pool)
    health_servicer = health_async.HealthServicer()
    readiness = Readiness(db, health_servicer, [definition.full_name], loop=loop)
    server = grpc.aio.server(
        migration_thread_pool=pool,
        interceptors=[AioCallPipeline(_pipeline(definition, verifier, readiness))],
        options=_options(share_port),
    )
    definition.add_servicer(server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (definition.full_name, health.SERVICE_NAME, reflection.SERVICE_NAME)
    serve_reflection(server, names, reflection_async.ReflectionServicer(names))
    _listen(server, bind)
    await loop.run_in_executor(None, readiness.check, "api")
    readiness.watch("api")
    await health_servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
    freeze_start_up()
    await server.start()
    log.info("gRPC listening", extra={"grpc_address": bind, "grpc_service": definition.full_name})

    stopping = asyncio.Event()

    def on_signal(signum: int) -> None:
        _say_draining(signum, grace_seconds)
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await stopping.wait()
    readiness.stop()
    await server.stop(grace_seconds)
    db.dispose()
    log.info("stopped")
