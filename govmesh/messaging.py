"""Events on RabbitMQ: naming, the CloudEvents-style envelope, topology and a confirming publisher.

Conventions every service and integrator relies on (see docs/architecture.md, Events):
- each service publishes to the durable topic exchange `<service>.events`;
- the routing key is the event's protobuf message name in snake_case (`subject_registered`),
  which is also nameko's convention, so nameko handlers and plain AMQP clients bind alike;
- the body is the message's canonical proto3 JSON; headers carry ce-id, ce-type, ce-source,
  ce-time, ce-subject (a pseudonymous subject id, never a raw identifier) and traceparent.

Everything outside nameko speaks AMQP through py-amqp, the client nameko's kombu already runs on
(docs/decisions/runtime-amqp-client.md); Publisher below is the one publisher with confirms.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import amqp
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from govmesh.privacy import mask_identifiers

CONTENT_TYPE = "application/json"
DELIVERY_LIMIT = 5


def events_exchange(service: str) -> str:
    return f"{service}.events"


def dead_letter_exchange(service: str) -> str:
    return f"{service}.dead-letter"


def routing_key_for(message_name: str) -> str:
    """`SubjectRegistered` -> `subject_registered`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", message_name).lower()


@dataclass(frozen=True)
class RenderedEvent:
    """An event given as its proto3 JSON object, exactly what json_format.MessageToDict makes of
    the message ``descriptor`` describes, by a caller on a hot path that has that object at hand
    or builds it for less: protobuf's pure-Python JSON printer was a fifth of records' GetProof
    in its api process. The caller's unit tests hold it equal to MessageToDict."""

    descriptor: Descriptor
    fields: dict[str, Any]


@dataclass(frozen=True)
class Envelope:
    """One event as it travels: what the outbox stores and the relay publishes."""

    event_id: str
    event_type: str
    source: str
    subject: str
    time: datetime
    exchange: str
    routing_key: str
    body: str
    trace_headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_event(
        cls, service: str, event: Message | RenderedEvent, subject: str, trace_headers: dict[str, str]
    ) -> Envelope:
        if isinstance(event, RenderedEvent):
            # MessageToJson(indent=None, sort_keys=True) is json.dumps of MessageToDict, so.
            body = json.dumps(event.fields, sort_keys=True)
        else:
            body = json_format.MessageToJson(event, indent=None, sort_keys=True)
        descriptor = event.descriptor if isinstance(event, RenderedEvent) else event.DESCRIPTOR
        return cls(
            event_id=str(uuid.uuid4()),
            event_type=descriptor.full_name,
            source=f"govmesh/{service}",
            subject=subject,
            time=datetime.now(UTC),
            exchange=events_exchange(service),
            routing_key=routing_key_for(descriptor.name),
            body=body,
            trace_headers=dict(trace_headers),
        )

    def headers(self) -> dict[str, Any]:
        return {
            "ce-specversion": "1.0",
            "ce-id": self.event_id,
            "ce-type": self.event_type,
            "ce-source": self.source,
            "ce-time": self.time.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "ce-subject": self.subject,
            **self.trace_headers,
        }


@dataclass(frozen=True)
class AmqpParams:
    host: str
    port: int
    userid: str
    password: str
    virtual_host: str

    @classmethod
    def from_uri(cls, uri: str) -> AmqpParams:
        parts = urlsplit(uri)
        if parts.scheme not in ("amqp", "pyamqp"):
            raise ValueError(f"AMQP_URI: scheme {parts.scheme!r} is not amqp://")
        vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5672,
            userid=unquote(parts.username or "guest"),
            password=unquote(parts.password or "guest"),
            virtual_host=vhost,
        )


class BrokerUnavailable(ConnectionError):
    """The broker could not be reached or did not confirm in time."""


def broker_uris(uri: str) -> list[str]:
    """The brokers AMQP_URI names: one URI, or several separated by ";" (the nodes of a cluster,
    in the form kombu, and so nameko, reads for failover)."""
    uris = [part.strip() for part in uri.split(";") if part.strip()]
    if not uris:
        raise ValueError("AMQP_URI: names no broker")
    return uris


def shown_brokers(uri: str) -> str:
    """The brokers of ``uri`` as a log may show them: host, port and virtual host, no credential."""
    return "; ".join(one.rsplit("@", 1)[-1] for one in broker_uris(uri))


def connect(
    uri: str,
    name: str,
    timeout: float = 5.0,
    write_timeout: float | None = None,
    frame_writer: Any = None,
    heartbeat: float = 0,
) -> amqp.Connection:
    """A connection to the first broker of ``uri`` that answers (several, separated by ";", are
    the nodes of one cluster: when a node dies, the next connect finds another).
    `write_timeout`: how long a write may wait, e.g. while the broker blocks publishers (a
    resource alarm); None waits as long as it takes. `frame_writer`: py-amqp's own unless given.
    `heartbeat`: seconds, or 0 for none; with one, the caller must call heartbeat_tick() about
    every second (py-amqp sends and checks nothing by itself)."""
    failures = []
    for one in broker_uris(uri):
        params = AmqpParams.from_uri(one)
        connection = amqp.Connection(
            frame_writer=frame_writer or amqp.method_framing.frame_writer,
            host=f"{params.host}:{params.port}",
            userid=params.userid,
            password=params.password,
            virtual_host=params.virtual_host,
            connect_timeout=timeout,
            write_timeout=write_timeout,
            heartbeat=heartbeat,
            client_properties={"connection_name": name},
        )
        try:
            connection.connect()
        except (OSError, amqp.exceptions.AMQPError) as exc:
            failures.append(f"{params.host}:{params.port}: {exc}")
            continue
        return connection
    raise BrokerUnavailable(f"cannot reach RabbitMQ at {'; '.join(failures)}")


def declare_service_exchanges(channel: amqp.Channel, service: str) -> None:
    """Declared at start by both processes, so integrators can bind before the first event."""
    channel.exchange_declare(events_exchange(service), "topic", durable=True, auto_delete=False)
    channel.exchange_declare(dead_letter_exchange(service), "topic", durable=True, auto_delete=False)


def declare_consumer_queue(
    channel: amqp.Channel,
    service: str,
    queue: str,
    bindings: Sequence[tuple[str, str]],
    delivery_limit: int = DELIVERY_LIMIT,
    extra_arguments: dict[str, object] | None = None,
) -> dict[str, object]:
    """A quorum queue owned by `service`, bound as given, whose poison messages go to
    `<queue>.dead-letter` after `delivery_limit` redeliveries instead of looping forever.
    `extra_arguments` adds queue arguments (e.g. x-single-active-consumer).
    Returns the queue's arguments (a re-declaration must repeat them exactly)."""
    dlx = dead_letter_exchange(service)
    dead_letters = f"{queue}.dead-letter"
    channel.exchange_declare(dlx, "topic", durable=True, auto_delete=False)
    channel.queue_declare(dead_letters, durable=True, auto_delete=False, arguments={"x-queue-type": "quorum"})
    channel.queue_bind(dead_letters, dlx, routing_key=queue)
    # The extra arguments first: they may add to the dead-lettering, never replace it.
    arguments: dict[str, object] = {
        **(extra_arguments or {}),
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": dlx,
        "x-dead-letter-routing-key": queue,
    }
    channel.queue_declare(queue, durable=True, auto_delete=False, arguments=arguments)
    for exchange, routing_key in bindings:
        channel.queue_bind(queue, exchange, routing_key=routing_key)
    return arguments


#: Headers that carry a caller's credential (nameko's "nameko." prefix aside): never kept in a
#: dead letter, which waits in a durable queue for whoever reads it.
CREDENTIAL_HEADERS: Final = frozenset({"authorization", "proxy-authorization"})
#: The properties a dead letter keeps of its original (delivery mode is always persistent).
_KEPT_PROPERTIES: Final = ("content_type", "content_encoding", "message_id", "correlation_id", "timestamp", "type")
#: Longest refusal message a dead letter carries.
MAX_REFUSAL_MESSAGE: Final = 1000


@dataclass(frozen=True)
class Refusal:
    """Why a consumer refused a message for good: a code (a gRPC status name such as
    INVALID_ARGUMENT or UNAUTHENTICATED, or the contract's own rejection code), the field and
    the message, which starts with the field's name."""

    code: str
    field: str
    message: str


def dead_letter(
    body: bytes, properties: Mapping[str, Any], headers: Mapping[str, Any], delivery: Mapping[str, Any], why: Refusal
) -> amqp.Message:
    """The copy of a refused message that waits in its dead-letter queue
    (docs/decisions/runtime-dead-letters-say-why.md): the same body and headers without any
    credential, and x-govmesh-refusal-code, -field and -message (identifiers masked) and
    x-govmesh-original-exchange and -routing-key, where it came from (``delivery``: the
    message's delivery info)."""
    kept = {
        name: value
        for name, value in headers.items()
        if name.lower().removeprefix("nameko.") not in CREDENTIAL_HEADERS and not name.startswith("x-govmesh-")
    }
    kept.update(
        {
            "x-govmesh-refusal-code": why.code,
            "x-govmesh-refusal-field": why.field,
            "x-govmesh-refusal-message": mask_identifiers(why.message)[:MAX_REFUSAL_MESSAGE],
            "x-govmesh-original-exchange": str(delivery.get("exchange", "")),
            "x-govmesh-original-routing-key": str(delivery.get("routing_key", "")),
        }
    )
    copied = {name: properties[name] for name in _KEPT_PROPERTIES if properties.get(name) is not None}
    return amqp.Message(body, delivery_mode=2, application_headers=kept, **copied)


class BrokerRefused(BrokerUnavailable):
    """The broker refused (nacked) a message: it did not take responsibility for it."""


class Unroutable(BrokerUnavailable):
    """A mandatory message that no queue takes (its consumer never declared one)."""


#: Unconfirmed messages a publisher lets out before it waits for confirms. Measured for crowd's
#: simulator when it published with pika (2 cores, one quorum queue): 100 in flight 9,600/s,
#: 1,000 14,300/s, 5,000 15,800/s; more connections no better, the queue is the limit.
IN_FLIGHT: Final = 2_000


class _GatheredWrites:
    """The socket as a publisher's frames reach it: while gathering, frames are collected and
    sent together, not one system call and one TCP segment per message as py-amqp writes them.
    Measured on 2 cores with one quorum queue: 1.1 times the messages a second while the machine
    is idle, 1.5 to 1.7 times while other processes load it (as the mesh's own do)."""

    LIMIT: Final = 64 * 1024

    def __init__(self) -> None:
        self.gathering = False
        self._frames = bytearray()
        self._transport: Any = None

    def frame_writer(self, connection: amqp.Connection, transport: Any) -> Any:
        """py-amqp's frame writer, writing through this (Connection's frame_writer argument)."""
        self._transport = transport
        self._frames.clear()
        return amqp.method_framing.frame_writer(connection, self)

    def write(self, data: bytes | memoryview) -> None:
        if not self.gathering:
            self._transport.write(data)
            return
        self._frames += data  # a copy: py-amqp reuses the buffer it hands over
        if len(self._frames) >= self.LIMIT:
            self.flush()

    def flush(self) -> None:
        if self._frames:
            frames = bytes(self._frames)
            self._frames.clear()
            self._transport.write(frames)


class Publisher:
    """The one publisher with confirms outside nameko (docs/decisions/runtime-amqp-client.md).

    Publishes persistent messages on one connection, opened as needed, with at most `in_flight`
    unconfirmed, and returns only once the broker confirmed every one: confirms are collected as
    they come (often one multiple ack for many messages), never waited for one by one, which is
    where throughput comes from. Raises BrokerUnavailable when the broker cannot be reached or
    stops answering for `confirm_timeout` seconds, BrokerRefused when it nacks a message, and
    Unroutable when a mandatory message finds no queue; the caller keeps its messages and
    retries. `declare` runs on every new channel, before anything is published.
    Not thread-safe: one caller at a time."""

    def __init__(
        self,
        uri: str,
        name: str,
        confirm_timeout: float = 10.0,
        in_flight: int = IN_FLIGHT,
        declare: Callable[[amqp.Channel], None] | None = None,
    ) -> None:
        self._uri = uri
        self._name = name
        self._confirm_timeout = confirm_timeout
        self._in_flight = in_flight
        self._declare = declare
        self._connection: amqp.Connection | None = None
        self._channel: amqp.Channel | None = None
        self._next_tag = 1  # the delivery tag of the next message published on this channel
        self._confirmed_below = 1  # every tag below it is confirmed
        self._confirmed_singly: set[int] = set()  # confirmed tags at or above it
        self._nacked = False
        self._returned: str | None = None  # the routing key of the first message returned
        self._writes = _GatheredWrites()

    def _on_return(self, _error: object, _exchange: str, routing_key: str, _message: object) -> None:
        if self._returned is None:
            self._returned = routing_key

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        if multiple:
            self._confirmed_below = max(self._confirmed_below, delivery_tag + 1)
            if self._confirmed_singly:
                self._confirmed_singly = {tag for tag in self._confirmed_singly if tag >= self._confirmed_below}
        else:
            self._confirmed_singly.add(delivery_tag)
        while self._confirmed_below in self._confirmed_singly:
            self._confirmed_singly.remove(self._confirmed_below)
            self._confirmed_below += 1

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._nacked = True

    def _unconfirmed(self) -> int:
        return self._next_tag - self._confirmed_below - len(self._confirmed_singly)

    def open(self) -> amqp.Channel:
        """Connect (if not connected) and declare what `declare` declares."""
        if self._channel is not None and self._channel.is_open:
            return self._channel
        self.close()
        self._connection = connect(
            self._uri, self._name, write_timeout=self._confirm_timeout, frame_writer=self._writes.frame_writer
        )
        try:
            channel = self._connection.channel()
            if self._declare is not None:
                self._declare(channel)
            channel.confirm_select()
        except BaseException:
            self.close()
            raise
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        channel.events["basic_return"].add(self._on_return)
        self._channel = channel
        self._next_tag = self._confirmed_below = 1
        self._confirmed_singly = set()
        return channel

    def publish_to(self, exchange: str, messages: Iterable[tuple[str, amqp.Message]], mandatory: bool = False) -> None:
        """(routing key, message) pairs to `exchange`, in order; returns once all are confirmed.
        A mandatory message no queue takes stops the publishing: what was sent is confirmed
        first, then Unroutable names its routing key."""
        self._publish(((exchange, routing_key, message) for routing_key, message in messages), mandatory, exchange)

    def publish_mandatory(self, exchange: str, routing_key: str, message: amqp.Message) -> None:
        """One message to another service's inbound exchange (declared here, durable topic, as its
        consumer declares it), returning once the broker confirmed it. Mandatory: a message no
        queue takes yet (the consumer never started) raises Unroutable instead of vanishing."""
        try:
            self.open().exchange_declare(exchange, "topic", durable=True, auto_delete=False)
        except (OSError, amqp.exceptions.AMQPError) as exc:
            self.close()
            raise BrokerUnavailable(f"publish to {exchange} failed: {exc!r}") from exc
        self.publish_to(exchange, [(routing_key, message)], mandatory=True)

    def _publish(self, messages: Iterable[tuple[str, str, amqp.Message]], mandatory: bool, where: str) -> None:
        try:
            channel = self.open()
            self._nacked, self._returned = False, None
            self._writes.gathering = True
            for exchange, routing_key, message in messages:
                channel.basic_publish(message, exchange=exchange, routing_key=routing_key, mandatory=mandatory)
                self._next_tag += 1
                if self._unconfirmed() >= self._in_flight:
                    self._await_confirms(self._in_flight - 1)
                if self._nacked or self._returned is not None:
                    break
            self._await_confirms(0)
        except (TimeoutError, OSError, amqp.exceptions.AMQPError) as exc:
            self.close()
            raise BrokerUnavailable(f"publish to {where} failed: {exc!r}") from exc
        except BaseException:
            self.close()  # `messages` raised: frames gathered and never sent would break the order
            raise
        finally:
            self._writes.gathering = False
        if self._nacked:
            self.close()
            raise BrokerRefused(f"RabbitMQ refused (nacked) a message on {where}")
        if self._returned is not None:
            raise Unroutable(f"no queue takes {where} {self._returned} yet")

    def _await_confirms(self, at_most: int) -> None:
        """Until at most `at_most` messages are unconfirmed (or one was nacked)."""
        assert self._connection is not None
        self._writes.flush()
        self._writes.gathering = False
        while self._unconfirmed() > at_most and not self._nacked:
            self._connection.drain_events(timeout=self._confirm_timeout)
        self._writes.gathering = True

    def close(self) -> None:
        self._writes.gathering = False
        connection, self._connection, self._channel = self._connection, None, None
        if connection is None:
            return
        try:
            connection.close()
        except (OSError, amqp.exceptions.AMQPError):
            connection.collect()  # the broker is gone: just release the socket


def message_of(envelope: Envelope) -> amqp.Message:
    return amqp.Message(
        envelope.body,
        content_type=CONTENT_TYPE,
        content_encoding="utf-8",
        delivery_mode=2,
        message_id=envelope.event_id,
        type=envelope.event_type,
        timestamp=int(envelope.time.timestamp()),
        application_headers=envelope.headers(),
    )


class ConfirmingPublisher(Publisher):
    """A service's events: publishes envelopes persistently to their exchanges and returns only
    once the broker confirmed every one of them; raises BrokerUnavailable otherwise (the caller
    keeps them and retries). Declares the service's exchanges as it connects."""

    def __init__(self, uri: str, service: str, confirm_timeout: float = 10.0, in_flight: int = IN_FLIGHT) -> None:
        super().__init__(
            uri,
            f"govmesh-{service}-publisher",
            confirm_timeout,
            in_flight,
            declare=lambda channel: declare_service_exchanges(channel, service),
        )
        self.service = service

    def publish(self, envelopes: Sequence[Envelope]) -> None:
        if envelopes:
            messages = ((e.exchange, e.routing_key, message_of(e)) for e in envelopes)
            self._publish(messages, False, events_exchange(self.service))
