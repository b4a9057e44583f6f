"""The worker process: a nameko service (eventlet) for events, timers and the outbox relay.

nameko stays behind this seam: services declare their worker as a nameko service class using
the providers here, and domain code never imports nameko, so the framework could be replaced
without touching it. This module must only be imported after eventlet.monkey_patch(), and
grpcio must never be imported in such a process (its C core breaks under eventlet).
"""

from __future__ import annotations

import importlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextvars import Token
from dataclasses import dataclass
from typing import Any, TypeVar

import eventlet
import eventlet.event
import eventlet.greenthread
from google.protobuf import json_format
from google.protobuf.message import Message
from kombu.entity import Exchange as KombuExchange
from kombu.entity import Queue
from nameko.containers import ServiceContainer
from nameko.events import EventHandler as NamekoEventHandler
from nameko.extensions import DependencyProvider
from nameko.messaging import Consumer, QueueConsumer
from nameko.rpc import Rpc
from nameko.runners import ServiceRunner
from opentelemetry import context, trace
from opentelemetry.context import Context

from govmesh import metrics, probes, tracing
from govmesh.auth import Caller, PermissionDenied, Policy, TokenVerifier, Unauthenticated
from govmesh.collector import freeze_start_up
from govmesh.config import ProcessKind, Settings
from govmesh.db import POOL_SIZE, Database, database_unavailable, service_database
from govmesh.messaging import (
    DELIVERY_LIMIT,
    BrokerUnavailable,
    ConfirmingPublisher,
    Publisher,
    Refusal,
    connect,
    dead_letter,
    declare_consumer_queue,
    shown_brokers,
)
from govmesh.outbox import Outbox, OutboxRelay

log = logging.getLogger(__name__)

SETTINGS_KEY = "GOVMESH_SETTINGS"
M = TypeVar("M", bound=Message)


def assert_no_grpc() -> None:
    if "grpc" in sys.modules:
        raise RuntimeError("grpcio was imported into an eventlet worker process; it cannot work there")


class Application(DependencyProvider):  # type: ignore[misc]
    """Gives entrypoints the service's parts, built once per worker process by the service's
    composition root, ``bootstrap.build(settings, database, "worker")`` (the function the api
    process calls with "api")."""

    def __init__(self, build: Callable[[Settings, Database, ProcessKind], Any]) -> None:
        self.build = build

    def setup(self) -> None:
        settings: Settings = self.container.config[SETTINGS_KEY]
        # Every entrypoint running at once may hold a connection (the relay has its own).
        pool_size = max(POOL_SIZE, settings.worker_concurrency + 2)
        self.db = service_database(settings.service, settings.database_url, pool_size)
        self.app = self.build(settings, self.db, "worker")

    def stop(self) -> None:
        self.db.dispose()

    def get_dependency(self, worker_ctx: Any) -> Any:
        return self.app


def rpc_result(reply: Any, seconds: float) -> Any:
    """The answer to a nameko RPC started with ``call_async``, waiting at most ``seconds``.
    nameko waits for ever: a service that went away mid-call must not hold its caller (and the
    caller's shutdown) hostage. TimeoutError when no answer came in time."""
    with eventlet.Timeout(max(0.0, seconds), TimeoutError(f"no answer within {seconds:g} s")):
        return reply.result()


class RpcServiceError(Exception):
    """A refusal carried over nameko RPC (RemoteError exc_type 'RpcServiceError'). Its message
    starts with the gRPC status name, e.g. "INVALID_ARGUMENT: identifier: ...", and never
    contains a raw identifier."""


class RpcAuthorizer(DependencyProvider):  # type: ignore[misc]
    """RPC between workers is authorised like a gRPC call: the caller passes its bearer token
    and needs the right to the contract method the RPC stands for. ``authorize(token, None)``
    only authenticates, for a method that checks the right itself (as in ApiDefinition's
    authorized_inside)."""

    def setup(self) -> None:
        settings: Settings = self.container.config[SETTINGS_KEY]
        self.verifier = TokenVerifier.from_key_dir(Policy.load(settings.policy_path), settings.key_dir)

    def get_dependency(self, worker_ctx: Any) -> Callable[[str, str | None], Caller]:
        def authorize(authorization: str, method: str | None) -> Caller:
            try:
                if method is None:
                    return self.verifier.caller(authorization or None)
                return self.verifier.authorize(authorization or None, f"/{method}")
            except Unauthenticated as exc:
                raise RpcServiceError(f"UNAUTHENTICATED: {exc}") from None
            except PermissionDenied as exc:
                raise RpcServiceError(f"PERMISSION_DENIED: {exc}") from None

        return authorize


class OutboxRelayRunner(DependencyProvider):  # type: ignore[misc]
    """Runs the service's outbox relay in a managed green thread for the container's life."""

    def __init__(self, outbox: Outbox, idle_interval: float = 0.1) -> None:
        self.outbox = outbox
        # How often an idle relay looks for new events: the longest an event waits after commit.
        self.idle_interval = idle_interval

    def setup(self) -> None:
        settings: Settings = self.container.config[SETTINGS_KEY]
        self.db = service_database(settings.service, settings.database_url)
        self.publisher = ConfirmingPublisher(settings.amqp_uri, settings.service)
        self.relay = OutboxRelay(self.db, self.outbox, self.publisher, keep_sent_seconds=settings.outbox_keep_seconds)

    def start(self) -> None:
        try:
            self.publisher.open()  # declares the service's exchanges before any event exists
        except BrokerUnavailable as exc:
            log.warning("cannot declare exchanges yet (the relay keeps trying): %s", exc)
        self.relay.watch_backlog()
        self.container.spawn_managed_thread(lambda: self.relay.run(idle_interval=self.idle_interval))
        self.container.spawn_managed_thread(self.relay.run_pruning)

    def stop(self) -> None:
        self.relay.stop()
        self.db.dispose()

    def get_dependency(self, worker_ctx: Any) -> OutboxRelay:
        return self.relay


def run(settings: Settings) -> None:
    """Run services.<service>.worker.Worker until SIGTERM or Ctrl-C."""
    assert_no_grpc()
    service_class = importlib.import_module(f"services.{settings.service}.worker").Worker
    assert_no_grpc()
    _serve_probes(settings)
    log.info("worker starting", extra={"amqp": shown_brokers(settings.amqp_uri)})
    config = {"AMQP_URI": settings.amqp_uri, "max_workers": settings.worker_concurrency, SETTINGS_KEY: settings}
    _run_until_stopped(ServiceRunner(config), service_class, settings.worker_stop_seconds)


def _run_until_stopped(runner: ServiceRunner, service_class: type, stop_seconds: float) -> None:
    """nameko's own run loop (nameko.cli.run), with its stop bounded: a graceful stop waits for
    the queue consumers to stop, and a consumer that lost the broker waits for it to come back, so
    a worker told to stop during an outage would never stop by itself. After ``stop_seconds`` its
    handlers are killed and the process ends: a message they held was not acknowledged and is
    delivered again (its handler's key keeps the effect single), and a transaction they held is rolled
    back with its connection."""
    runner.add_service(service_class)
    finished = eventlet.event.Event()

    def stop_within_bound() -> None:
        stopping = eventlet.spawn(runner.stop)
        try:
            with eventlet.Timeout(stop_seconds):
                stopping.wait()
        except eventlet.Timeout:
            log.warning(
                "did not stop within %g s (the broker away?): killing the handlers; what they held is delivered again",
                stop_seconds,
            )
            # nameko's kill does not end a consumer that is reconnecting either; the process ends
            # after it all the same.
            with eventlet.Timeout(2, False):
                runner.kill()
        if not finished.ready():
            finished.send(None)

    def on_signal(signum: int, _frame: object) -> None:
        # Signal handlers run outside the hub and cannot use eventlet's primitives but spawn.
        log.info("received %s: letting the handlers in hand finish", signal.Signals(signum).name)
        eventlet.spawn_n(stop_within_bound)

    def runner_stopped(waiting: eventlet.greenthread.GreenThread) -> None:
        if not finished.ready():
            finished.send(waiting)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    runner.start()
    freeze_start_up()
    eventlet.spawn(runner.wait).link(runner_stopped)
    while True:
        try:
            # A signal arriving while the hub waits on a socket interrupts this wait (EINTR).
            waiting = finished.wait()
            break
        except InterruptedError:
            continue
    if waiting is not None:
        waiting.wait()  # raises what a container died of


#: What /livez and /readyz report for this worker process; None until run() starts them.
_health: probes.Health | None = None


def _serve_probes(settings: Settings) -> None:
    """/metrics, /livez and /readyz (govmesh.probes). A green thread turns the heartbeat: when it
    stops turning, the hub is stuck (a call blocking it, a green thread that never yields).
    Another renders the metrics, whose waits are not the hub's."""
    global _health
    if settings.worker_metrics_port == 0:
        return
    health = _health = probes.Health("worker's event loop")
    health.check("entrypoints", "not started yet")
    renderer = probes.HubRenderer()

    def heartbeat() -> None:
        while True:
            health.turn()
            eventlet.sleep(0.1)

    def metrics() -> None:
        # Its own green thread: a metric's function may wait on the database (the outbox
        # backlog), and a database that does not answer must not stop the heartbeat.
        while True:
            renderer.tick()
            eventlet.sleep(0.1)  # also how long a scrape of /metrics waits for the hub at most

    eventlet.spawn_n(heartbeat)
    eventlet.spawn_n(metrics)
    db = service_database(settings.service, settings.database_url, pool_size=1)
    probes.watch_database(health, db.readiness)
    probes.serve(settings.bind_host, settings.worker_metrics_port, health, renderer.render)


def _report(check: str, reason: str | None) -> None:
    if _health is not None:
        _health.check(check, reason)


def _report_broker(consumer: QueueConsumer, reason: str | None) -> None:
    # nameko's own consumer serves the RPC entrypoints; ours, the event and queue handlers.
    kind = "events" if isinstance(consumer, _DecodingQueueConsumer) else "rpc"
    _report(f"broker ({kind} consumer)", reason)


def _watch_nameko() -> None:
    """Has the service's container say whether its entrypoints have started, and every queue
    consumer (nameko's, which the RPC entrypoints share, and _DecodingQueueConsumer) whether it
    consumes, through kombu's hooks on its connection: a worker is ready once it consumes its
    queues, and not while it has lost the broker. nameko's classes are wrapped rather than
    subclassed because nameko instantiates them itself (the runner, nameko.rpc)."""
    container_start, container_stop = ServiceContainer.start, ServiceContainer.stop

    def container_started(self: ServiceContainer) -> None:
        _report("entrypoints", "starting")
        container_start(self)
        _report("entrypoints", None)

    def container_stopped(self: ServiceContainer) -> None:
        _report("entrypoints", "stopping")
        container_stop(self)

    ServiceContainer.start, ServiceContainer.stop = container_started, container_stopped
    start, on_connection_error, on_consume_ready, consume = (
        QueueConsumer.start,
        QueueConsumer.on_connection_error,
        QueueConsumer.on_consume_ready,
        QueueConsumer.consume,
    )

    def started(self: QueueConsumer) -> None:
        if not self._starting:  # each of its entrypoints starts it
            _report_broker(self, "not consuming yet")
        start(self)

    def connection_failed(self: QueueConsumer, exc: Exception, interval: float) -> None:
        _report_broker(self, f"cannot connect ({type(exc).__name__}: {exc}), trying again in {interval:g} s")
        on_connection_error(self, exc, interval)

    def consuming(self: QueueConsumer, *args: Any, **kwargs: Any) -> None:
        on_consume_ready(self, *args, **kwargs)
        _report_broker(self, None)

    def consumption(self: QueueConsumer, *args: Any, **kwargs: Any) -> Any:
        try:
            yield from consume(self, *args, **kwargs)
        except Exception as exc:
            _report_broker(self, f"connection lost ({type(exc).__name__}: {exc}), reconnecting")
            raise
        _report_broker(self, "stopping")

    QueueConsumer.start = started
    QueueConsumer.on_connection_error = connection_failed
    QueueConsumer.on_consume_ready = consuming
    QueueConsumer.consume = consumption


_watch_nameko()


@dataclass(frozen=True)
class EventMeta:
    """The CloudEvents-style headers of the event being handled."""

    event_id: str
    event_type: str
    source: str
    subject: str
    time: str


class _EntrypointSpans(DependencyProvider):  # type: ignore[misc]
    """Wraps an entrypoint's run in a span continuing the trace its message carries
    (`traceparent` in its headers, which nameko hands over as the worker's context data).

    The span's own context is written back into the context data: nameko sends a worker's
    context data with every RPC it makes, so a call continues this span, not the one before it."""

    def setup(self) -> None:
        self._spans: dict[Any, tuple[trace.Span, Token[Context], float]] = {}

    def _begin(self, worker_ctx: Any, name: str, kind: trace.SpanKind, attributes: dict[str, str]) -> None:
        data = worker_ctx.data  # context_data is a copy of it
        span = tracing.tracer(__name__).start_span(
            name, context=tracing.extract_context(data), kind=kind, attributes=attributes
        )
        token = context.attach(trace.set_span_in_context(span))
        data.pop("tracestate", None)  # the caller's, unless the span's own replaces it below
        tracing.inject_headers(data)
        self._spans[worker_ctx] = (span, token, time.perf_counter())

    def worker_teardown(self, worker_ctx: Any) -> None:
        entry = self._spans.pop(worker_ctx, None)
        if entry is not None:
            entry[0].end()
            context.detach(entry[1])


class RpcSpans(_EntrypointSpans):
    """Wraps each nameko RPC the worker answers in a SERVER span continuing its caller's trace,
    as a gRPC call's is; a refusal or failure marks it an error with the status name or the
    exception's type (never its message, which may quote the request)."""

    def worker_setup(self, worker_ctx: Any) -> None:
        if not isinstance(worker_ctx.entrypoint, Rpc):
            return
        method = worker_ctx.entrypoint.method_name
        attributes = {"rpc.system": "nameko", "rpc.service": worker_ctx.service_name, "rpc.method": method}
        self._begin(worker_ctx, f"{worker_ctx.service_name}.{method}", trace.SpanKind.SERVER, attributes)

    def worker_result(self, worker_ctx: Any, result: Any = None, exc_info: Any = None) -> None:
        entry = self._spans.get(worker_ctx)
        if entry is not None and exc_info is not None:
            error = exc_info[1]
            why = str(error).split(":", 1)[0] if isinstance(error, RpcServiceError) else type(error).__name__
            entry[0].set_status(trace.Status(trace.StatusCode.ERROR, why))


class CurrentEvent(_EntrypointSpans):
    """Gives a handler the headers of its event, and wraps each handled event in a CONSUMER span
    continuing the publisher's trace, with RED metrics per handler.

    Use it beside `event_handler` handlers. A handler keeps its effect single by a key of its
    domain, or applies its effect and claims the event id in the inbox in one transaction
    (`Outbox.claim`, the ce-id from here), so a redelivery has no second effect
    (docs/decisions/runtime-effects-single-by-each-handlers-key.md)."""

    def worker_setup(self, worker_ctx: Any) -> None:
        data = worker_ctx.context_data
        # An RPC made while handling an event carries the event's headers too: not an event.
        if "ce-id" not in data or isinstance(worker_ctx.entrypoint, Rpc):
            return
        name = f"{data.get('ce-source', '?')} {worker_ctx.entrypoint.method_name} process"
        attributes = {
            "messaging.system": "rabbitmq",
            "messaging.message.id": str(data["ce-id"]),
            "cloudevents.event_type": str(data.get("ce-type", "")),
        }
        self._begin(worker_ctx, name, trace.SpanKind.CONSUMER, attributes)

    @staticmethod
    def _log_failure(handler: str, exc_info: Any) -> None:
        """A refusal (Rejected) is logged by its dead-lettering, one WARNING line; the database away
        is a WARNING without a traceback (the message is held and tried again); anything else is a
        bug, an ERROR with its traceback."""
        error = exc_info[1]
        if isinstance(error, Rejected):
            return
        if database_unavailable(error):
            log.warning("event handler %s met the database away (%s): tried again", handler, type(error).__name__)
            return
        log.error("event handler %s failed", handler, exc_info=exc_info)

    def worker_result(self, worker_ctx: Any, result: Any = None, exc_info: Any = None) -> None:
        entry = self._spans.get(worker_ctx)
        if entry is None:
            return
        outcome = "failed" if exc_info is not None else ("duplicate" if result == DUPLICATE else "applied")
        if exc_info is not None:
            entry[0].set_status(trace.Status(trace.StatusCode.ERROR, type(exc_info[1]).__name__))
            self._log_failure(worker_ctx.entrypoint.method_name, exc_info)
        service, handler = worker_ctx.service_name, worker_ctx.entrypoint.method_name
        metrics.EVENTS_HANDLED.labels(service, handler, outcome).inc()
        metrics.EVENT_HANDLER_LATENCY.labels(service, handler).observe(time.perf_counter() - entry[2])

    def get_dependency(self, worker_ctx: Any) -> EventMeta:
        data = worker_ctx.context_data
        return EventMeta(
            event_id=str(data.get("ce-id", "")),
            event_type=str(data.get("ce-type", "")),
            source=str(data.get("ce-source", "")),
            subject=str(data.get("ce-subject", "")),
            time=str(data.get("ce-time", "")),
        )


class MessageHeaders(DependencyProvider):  # type: ignore[misc]
    """Gives a handler the AMQP headers of the message it handles.

    nameko keeps those headers as the worker's context data and sends them with every RPC the
    worker makes, so a credential among them (a department's bearer token on records.ingest)
    would reach every service the handler calls. The handler gets it here; the context loses it."""

    CREDENTIALS = ("authorization",)

    def get_dependency(self, worker_ctx: Any) -> dict[str, Any]:
        headers = dict(worker_ctx.context_data)
        for name in self.CREDENTIALS:
            worker_ctx.data.pop(name, None)  # context_data is a copy: data is what RPCs send
        return headers


# A handler returns this when the inbox showed the event was already applied.
DUPLICATE = "duplicate"


class Rejected(Exception):
    """A message that can never be handled (malformed, refused): dead-lettered at once, saying
    why, instead of being redelivered up to the limit. Any other exception means "try again".
    ``code`` is a gRPC status name (INVALID_ARGUMENT, UNAUTHENTICATED, ...) or the contract's own
    rejection code; ``reason`` says what is wrong with ``field``."""

    def __init__(self, code: str, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.refusal = Refusal(code, field, f"{field}: {reason}")


class _DecodingQueueConsumer(QueueConsumer):  # type: ignore[misc]
    """nameko's queue consumer, except that a message whose body cannot be decoded (not JSON)
    goes to its provider's ``undecodable`` instead of raising in the consumer's loop, which
    would stop the worker and leave the message to come back to the next one."""

    def get_consumers(self, consumer_cls: Any, channel: Any) -> Any:
        consumers = super().get_consumers(consumer_cls, channel)
        for provider, consumer in self._consumers.items():
            consumer.on_decode_error = getattr(provider, "undecodable", None)
        return consumers


class _ExpectedFailures(logging.Filter):
    """nameko logs every handler that raised at ERROR with its traceback. Two failures are expected
    and said better elsewhere: a refusal (Rejected), which its dead-lettering logs in one WARNING
    line with the queue, code, field and message, so nameko's line goes; and the database away
    (the message is held and tried again), whose line stays as a WARNING without the traceback, so
    a restarting database does not page anyone with a screen of stack per message."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, Rejected):
            return False
        if error is not None and database_unavailable(error):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


logging.getLogger("nameko.containers").addFilter(_ExpectedFailures())


class _DeadLettering:
    """Shared by the consumers below: quorum queue with a dead-letter exchange and a delivery
    limit. A Rejected message, and one whose body is not JSON, is dead-lettered here at once:
    published to the queue's own dead-letter destination with why (messaging.dead_letter, no
    credential kept), and acknowledged only once the broker confirmed the copy, so it is never
    lost (and doubled only if the connection drops between the two). A message whose handler
    fails otherwise is redelivered up to the limit, then the broker dead-letters it itself
    (x-death says why); a poison message never loops and never blocks the queue
    (docs/decisions/runtime-dead-letters-say-why.md)."""

    container: Any
    queue: Any
    delivery_limit: int
    queue_consumer = _DecodingQueueConsumer()
    #: A handler that met the database away is tried again in place, the message held (a requeue
    #: would spend a delivery of the queue's limit in milliseconds, and a database restarting for
    #: a few seconds would dead-letter every event in flight): after these pauses, the last one
    #: repeated, for up to DATABASE_AWAY_SECONDS; then the message goes back to its queue.
    DATABASE_PAUSES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0)
    DATABASE_AWAY_SECONDS = 600.0
    _database_waits: dict[int, tuple[float, int]]

    def declare_dead_lettering(self, exchange: str, exchange_type: str, routing_key: str) -> None:
        name = self.queue.name
        settings: Settings = self.container.config[SETTINGS_KEY]
        connection = connect(settings.amqp_uri, f"govmesh-{settings.service}-topology")
        try:
            channel = connection.channel()
            channel.exchange_declare(exchange, exchange_type, durable=True, auto_delete=False)
            arguments = declare_consumer_queue(
                channel, self.container.service_name, name, [(exchange, routing_key)], self.delivery_limit
            )
        finally:
            connection.close()
        # nameko re-declares the queue when it consumes: the arguments must be the same.
        self.queue = Queue(  # type: ignore[no-untyped-call]
            name,
            exchange=KombuExchange(exchange, type=exchange_type, durable=True),  # type: ignore[no-untyped-call]
            routing_key=routing_key,
            durable=True,
            auto_delete=False,
            queue_arguments=arguments,
        )
        self._dead_letters = Publisher(settings.amqp_uri, f"govmesh-{settings.service}-dead-letters")
        self._dead_letters_lock = threading.Lock()  # one publisher, one worker at a time

    def stop(self) -> None:
        super().stop()  # type: ignore[misc]
        self._dead_letters.close()

    def handle_message_processed(self, message: Any, result: Any = None, exc_info: Any = None) -> None:
        if exc_info is not None and database_unavailable(exc_info[1]) and self._tried_again_later(message):
            return
        self._waits().pop(id(message), None)
        if exc_info is not None and isinstance(exc_info[1], Rejected):
            self.dead_letter(message, exc_info[1].refusal)
        elif exc_info is not None:
            self.queue_consumer.requeue_message(message)
        else:
            self.queue_consumer.ack_message(message)

    def _waits(self) -> dict[int, tuple[float, int]]:
        if not hasattr(self, "_database_waits"):
            self._database_waits = {}
        return self._database_waits

    def _tried_again_later(self, message: Any) -> bool:
        """Whether the message, whose handler met the database away, will be handled again in a
        moment (held meanwhile); False once it has waited DATABASE_AWAY_SECONDS."""
        waits = self._waits()
        first, tries = waits.get(id(message), (time.monotonic(), 0))
        if time.monotonic() - first > self.DATABASE_AWAY_SECONDS:
            return False
        waits[id(message)] = (first, tries + 1)
        pause = self.DATABASE_PAUSES[min(tries, len(self.DATABASE_PAUSES) - 1)]
        log.warning(
            "database away: the message is held and handled again in %ss", pause, extra={"queue": self.queue.name}
        )

        def again() -> None:
            time.sleep(pause)  # eventlet's, in a patched worker: other handlers go on meanwhile
            if message.channel.connection:
                self.handle_message(message.payload, message)
            else:  # the broker took it back with the connection: it comes again, anew
                self._waits().pop(id(message), None)

        self.container.spawn_managed_thread(again)
        return True

    def handle_message(self, body: Any, message: Any) -> None:
        """A message without a content type arrives as its raw bytes (kombu decodes only what
        names its type): the contract has one body form, JSON, so it is read as JSON, and one
        that is not JSON is dead-lettered saying so, as a message that names JSON and is not."""
        if not message.content_type and isinstance(body, bytes | str):
            try:
                body = json.loads(body)
            except ValueError as exc:
                self.undecodable(message, exc)
                return
        super().handle_message(body, message)  # type: ignore[misc]

    def undecodable(self, message: Any, exc: Exception) -> None:
        """kombu's on_decode_error, in the consumer's loop: dead-lettered in a thread of its own."""
        refusal = Refusal("INVALID_ARGUMENT", "body", f"body: is not JSON ({str(exc)[:200]})")
        self.container.spawn_managed_thread(lambda: self.dead_letter(message, refusal))

    def dead_letter(self, message: Any, refusal: Refusal) -> None:
        if not message.channel.connection:
            return  # the broker took the message back with the connection: it comes again
        arguments = self.queue.queue_arguments
        copy = dead_letter(message.body, message.properties, message.headers or {}, message.delivery_info, refusal)
        where = {"queue": self.queue.name, "code": refusal.code, "field": refusal.field}
        try:
            with self._dead_letters_lock:
                self._dead_letters.publish_to(
                    arguments["x-dead-letter-exchange"],
                    [(arguments["x-dead-letter-routing-key"], copy)],
                    mandatory=True,
                )
        except BrokerUnavailable as exc:
            # Kept in its queue: it comes again, and after the delivery limit the broker parks it.
            log.warning("cannot dead-letter a refused message yet: %s", exc, extra=where)
            self.queue_consumer.requeue_message(message)
            return
        log.warning("message dead-lettered: %s", refusal.message, extra=where)
        self.queue_consumer.ack_message(message)


class EventHandler(_DeadLettering, NamekoEventHandler):  # type: ignore[misc]
    """nameko's event handler (`<source>.events`, routing key = event type) on a dead-lettering
    quorum queue. Queue names are nameko's own (`evt-<source>-<event>--<service>.<method>`), so
    competing workers of one service share one queue."""

    def __init__(self, source_service: str, event_type: str, delivery_limit: int = DELIVERY_LIMIT) -> None:
        super().__init__(source_service, event_type, requeue_on_error=True)
        self.delivery_limit = delivery_limit
        self.queue: Any = None  # set in setup(), as nameko does

    def setup(self) -> None:
        super().setup()
        self.declare_dead_lettering(self.queue.exchange.name, "topic", self.event_type)


class QueueHandler(_DeadLettering, Consumer):  # type: ignore[misc]
    """Consumes an inbound exchange that is not a service's events (e.g. records.ingest, where
    departments publish), from the queue `<service>.<exchange>` bound with `routing_key`."""

    def __init__(self, exchange: str, routing_key: str = "#", delivery_limit: int = DELIVERY_LIMIT) -> None:
        super().__init__(queue=None, requeue_on_error=True)
        self.exchange = exchange
        self.routing_key = routing_key
        self.delivery_limit = delivery_limit

    def setup(self) -> None:
        self.queue = Queue(f"{self.container.service_name}.{self.exchange}")  # type: ignore[no-untyped-call]
        self.declare_dead_lettering(self.exchange, "topic", self.routing_key)
        super().setup()


event_handler = EventHandler.decorator
queue_handler = QueueHandler.decorator


def parse_event(body: Any, message_class: type[M]) -> M:
    """The protobuf event from a handler's body (nameko hands over the decoded JSON)."""
    return json_format.ParseDict(body, message_class(), ignore_unknown_fields=True)
