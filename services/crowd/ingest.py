"""Crowd's ingest process: sensor readings from the broker, in batches, in per-zone order.

A province has thousands of sensors; a framework that spawns a worker per message (nameko) caps
near a few thousand messages a second. This process is a plain AMQP consumer (py-amqp, as all AMQP
outside nameko) that gathers up to BATCH readings, until none arrives for QUIET or the first has
waited BATCH_WAIT, or TRICKLE_WAIT when fewer than TRICKLE came meanwhile (a lone reading is decided
at once, a trickle within 20 ms, a stream in full batches), applies them in one
transaction (CrowdApp.ingest) and acknowledges them with one multiple ack after the commit. A crash
between commit and ack redelivers the batch, which finds every reading already seen (same sensor
and sequence): no second effect.

Per-zone order when scaled out: publishers send to the topic exchange `crowd.readings` with the
zone id as routing key (the contract). It is bound to a consistent-hash exchange
(`crowd.readings.shards`, RabbitMQ's rabbitmq_consistent_hash_exchange plugin) that spreads zones
over SHARDS quorum queues `crowd.readings.shard.<n>` by the hash of the zone id, so one zone's
readings always land in one queue, in order. Each shard queue has a single active consumer
(x-single-active-consumer): however many ingest processes run, one consumes a shard at a time,
in order, and another takes over when it goes. Every process subscribes to every shard; a
process first subscribes to its own share (shard % GOVMESH_INSTANCES == GOVMESH_INSTANCE,
e.g. a StatefulSet's ordinal) and to the others STANDBY_DELAY later, so N processes split the
shards between them and each is the others' standby. The shard count is fixed per deployment:
changing it moves zones between queues (drain first).

A message carries one SensorReading or a gateway's SensorReadingBatch (the AMQP type property says
which; none: one reading), in proto3 JSON or binary protobuf (the content type says which; none:
JSON). Batches are counted in readings: a transaction holds whole messages, up to BATCH readings.
A message that cannot be read as what it says it is, and a reading of another zone than the
routing key, are refused like a bad reading (counted, logged, acked: they never loop); a batch's
good readings are applied beside its refused ones (docs/decisions/crowd-reading-batches-on-the-broker.md).
If the database is away the batch is retried, unacknowledged, until it is back.
Why a process of its own and why a consistent hash: docs/decisions/crowd-ingest-process.md and
crowd-sharding-by-consistent-hash.md.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Final

import amqp
import sqlalchemy as sa
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from govmesh import probes
from govmesh.collector import freeze_start_up
from govmesh.config import Settings, env_whole
from govmesh.crowd.v1 import crowd_pb2 as pb
from govmesh.db import Database, service_database
from govmesh.errors import StartupError
from govmesh.messaging import BrokerUnavailable, connect, declare_consumer_queue, shown_brokers
from govmesh.privacy import mask_identifiers
from services.crowd import bootstrap, metrics
from services.crowd.contract import reading_from_pb
from services.crowd.domain.decisions import IngestReport
from services.crowd.domain.occupancy import Outcome, Reading, RejectedReading, Rejection
from services.crowd.domain.zones import SensorKind

log = logging.getLogger(__name__)

READINGS_EXCHANGE: Final = "crowd.readings"
SHARDS_EXCHANGE: Final = "crowd.readings.shards"
#: Readings applied per transaction at most (whole messages: one bigger message is applied alone), and
#: how long a partial batch waits.
BATCH: Final = 1000
BATCH_WAIT: Final = 0.05
#: A batch still under TRICKLE readings when its first has waited TRICKLE_WAIT is a trickle's (at
#: most 5,000 readings/s): it is applied then, so a reading waits at most 20 ms for others to come
#: rather than BATCH_WAIT. A stream fills its batch past TRICKLE well within TRICKLE_WAIT, so its
#: batches, and the throughput they give, stay as they were.
TRICKLE: Final = 100
TRICKLE_WAIT: Final = 0.02
#: No message for this long: the queue is empty for now, so the batch in hand is applied.
QUIET: Final = 0.002
#: Unacknowledged messages the broker may send ahead (two batches of single readings in flight).
PREFETCH: Final = 2 * BATCH
#: Bytes asked of the socket at once. py-amqp asks it for each frame's header, payload and end
#: byte apart (nine system calls a one-reading message, half the process's time when profiled);
#: read ahead, most frames come from memory. Small, as py-amqp copies its buffer's rest at every
#: read (16 KiB cost 5% of the time in those copies; 4 KiB is about ten one-reading messages).
READ_AHEAD: Final = 4096
DEFAULT_SHARDS: Final = 8
MAX_SHARDS: Final = 256
STANDBY_DELAY: Final = 5.0


def shard_queue(shard: int) -> str:
    return f"{READINGS_EXCHANGE}.shard.{shard}"


@dataclass(frozen=True)
class Sharding:
    shards: int
    index: int
    count: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Sharding:
        """CROWD_INGEST_SHARDS; which process of how many from the settings every process kind
        shares (GOVMESH_INSTANCE of GOVMESH_INSTANCES)."""
        shards = env_whole("CROWD_INGEST_SHARDS", DEFAULT_SHARDS, 1, MAX_SHARDS)
        return cls(shards, settings.instance, settings.instances)

    def own(self) -> list[int]:
        return [s for s in range(self.shards) if s % self.count == self.index]

    def standby(self) -> list[int]:
        return [s for s in range(self.shards) if s % self.count != self.index]


def declare_topology(channel: amqp.Channel, shards: int) -> None:
    """The readings exchanges and shard queues (idempotent; every ingest process declares them).
    StartupError when the broker lacks the consistent-hash exchange type."""
    channel.exchange_declare(READINGS_EXCHANGE, "topic", durable=True, auto_delete=False)
    try:
        channel.exchange_declare(SHARDS_EXCHANGE, "x-consistent-hash", durable=True, auto_delete=False)
    except amqp.exceptions.AMQPError as exc:
        raise StartupError(
            f"the broker cannot declare {SHARDS_EXCHANGE} of type x-consistent-hash ({exc}): enable its plugin "
            "with `rabbitmq-plugins enable rabbitmq_consistent_hash_exchange` (scripts/ensure-broker does it "
            "for a local broker)"
        ) from None
    channel.exchange_bind(destination=SHARDS_EXCHANGE, source=READINGS_EXCHANGE, routing_key="#")
    _refuse_fewer_shards(channel.connection, shards)
    for shard in range(shards):
        # The binding key of a consistent-hash exchange is the queue's weight.
        declare_consumer_queue(
            channel,
            "crowd",
            shard_queue(shard),
            [(SHARDS_EXCHANGE, "1")],
            extra_arguments={"x-single-active-consumer": True},
        )


#: proto3 JSON names of SensorReading's fields (lowerCamelCase and the proto names, both valid).
_FIELD_NAMES: Final = {
    **{name: name for name in pb.SensorReading.DESCRIPTOR.fields_by_name},
    **{field.json_name: field.name for field in pb.SensorReading.DESCRIPTOR.fields},
}
_KINDS: Final = {f"SENSOR_KIND_{kind.name}": kind for kind in SensorKind} | {
    pb.SensorKind.Value(f"SENSOR_KIND_{kind.name}"): kind for kind in SensorKind
}
_UNSPECIFIED_KIND: Final = ("SENSOR_KIND_UNSPECIFIED", 0)


#: The time form the fast path reads itself: RFC 3339 in UTC, at most microseconds.
_RFC3339_UTC: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z")
_INT64: Final = range(-(2**63), 2**63)


class _Irregular(Exception):
    """A body the fast path leaves to protobuf's own parser (which accepts or explains it)."""


def _int64(value: object) -> int:
    # proto3 JSON writes int64 as a string; a number is accepted too.
    if isinstance(value, bool):
        raise _Irregular
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.lstrip("-").isdigit() and value.isascii():
        number = int(value)
    else:
        raise _Irregular
    if number not in _INT64:
        raise _Irregular
    return number


def _fast_reading(data: dict[str, Any], routing_key: str) -> Reading:
    """The common body, read without protobuf's JSON parser (about 6 times faster, measured;
    ingestion is bound by it): plain names, int64 as strings or numbers, the kind by name or
    number, an RFC 3339 time of at most microseconds. Anything else raises _Irregular."""
    fields: dict[str, Any] = {}
    for key, value in data.items():
        name = _FIELD_NAMES.get(key)
        if name is None or name in fields:
            raise _Irregular
        fields[name] = value
    zone_id, sensor_id = fields.get("zone_id", ""), fields.get("sensor_id", "")
    if not isinstance(zone_id, str) or not isinstance(sensor_id, str):
        raise _Irregular
    raw_kind = fields.get("sensor_kind", 0)
    kind = None if raw_kind in _UNSPECIFIED_KIND else _KINDS.get(raw_kind)
    if raw_kind not in _UNSPECIFIED_KIND and kind is None:
        raise _Irregular
    observed = fields.get("observed_at")
    observed_at = None
    if observed is not None:
        if not isinstance(observed, str) or _RFC3339_UTC.fullmatch(observed) is None:
            raise _Irregular
        try:
            observed_at = datetime.datetime.fromisoformat(observed)
        except ValueError:
            raise _Irregular from None
    if "delta" in fields and "absolute_count" in fields:
        raise _Irregular
    return Reading(
        zone_id=zone_id or routing_key,
        sensor_id=sensor_id,
        kind=kind,
        sequence=_int64(fields.get("sequence", 0)),
        observed_at=observed_at,
        delta=_int64(fields["delta"]) if "delta" in fields else None,
        absolute_count=_int64(fields["absolute_count"]) if "absolute_count" in fields else None,
    )


def _refuse_fewer_shards(connection: amqp.Connection, shards: int) -> None:
    """A shard queue beyond the count means the deployment had more shards: that queue is still
    bound, so its zones' readings would wait there with nobody consuming them."""
    probe = connection.channel()
    try:
        probe.queue_declare(shard_queue(shards), passive=True)
    except amqp.exceptions.NotFound:
        return  # the usual case (the broker closed the probe channel)
    probe.close()
    raise StartupError(
        f"the queue {shard_queue(shards)} exists, so this deployment ran with more than CROWD_INGEST_SHARDS={shards} "
        "shards and readings are still routed there: set CROWD_INGEST_SHARDS back, or drain those queues and "
        "delete them before running with fewer"
    )


#: The AMQP type property of a message that carries one reading (also: no type, as before batches)
#: and of one that carries a gateway's batch; the content types of the two body forms.
READING_TYPE: Final = pb.SensorReading.DESCRIPTOR.full_name
BATCH_TYPE: Final = pb.SensorReadingBatch.DESCRIPTOR.full_name
JSON: Final = "application/json"
PROTOBUF: Final = "application/x-protobuf"
#: Binary protobuf's other name in use (the IETF's registration); read the same.
_PROTOBUF_ALIASES: Final = frozenset({PROTOBUF, "application/protobuf"})
#: A message is applied whole in one transaction: a bigger one is refused whole, never half read.
MAX_READINGS_PER_MESSAGE: Final = 5000

Parsed = Reading | RejectedReading

#: What a body that cannot be read raises from json, protobuf's JSON parser or its binary decoder.
_UNREADABLE: Final = (
    json_format.ParseError,
    DecodeError,
    UnicodeDecodeError,
    ValueError,
    TypeError,
    RecursionError,
)


def parse_message(
    body: bytes | str, routing_key: str, content_type: str | None = None, message_type: str | None = None
) -> list[Parsed]:
    """A broker message's readings, in order: one SensorReading, or a SensorReadingBatch when the
    AMQP type property says so; proto3 JSON (application/json, or no content type, as before
    binary bodies) or binary protobuf (application/x-protobuf). An empty zone_id is the routing
    key's (the contract routes by zone id) and any other zone id than the routing key is refused
    (MISROUTED): the routing key chose the queue, and so the zone's order. A message that cannot
    be read as what it says it is comes back as one refusal naming the property or field."""
    if message_type not in (None, "", READING_TYPE, BATCH_TYPE):
        return [_unreadable("type", f"{message_type[:100]!r} is neither {READING_TYPE} nor {BATCH_TYPE}")]
    batch = message_type == BATCH_TYPE
    media = (content_type or JSON).split(";", 1)[0].strip().lower()
    if media == JSON:
        parsed = _from_json(body, routing_key, batch)
    elif media in _PROTOBUF_ALIASES:
        parsed = _from_binary(body if isinstance(body, bytes) else body.encode(), routing_key, batch)
    else:
        return [_unreadable("content_type", f"{(content_type or '')[:100]!r} is neither {JSON} nor {PROTOBUF}")]
    if len(parsed) > MAX_READINGS_PER_MESSAGE:
        return [
            RejectedReading(
                Rejection.ABSURD_VALUE,
                f"readings: {len(parsed)} readings in one message, at most {MAX_READINGS_PER_MESSAGE}",
            )
        ]
    return [
        RejectedReading(
            Rejection.MISROUTED,
            f"{f'readings[{i}].' if batch else ''}zone_id is not the message's routing key (the zone id "
            "that queued it): its zone's order could not be kept",
        )
        if isinstance(reading, Reading) and reading.zone_id != routing_key
        else reading
        for i, reading in enumerate(parsed)
    ]


def _unreadable(what: str, detail: object) -> RejectedReading:
    if isinstance(detail, BaseException):
        detail = str(detail).splitlines()[0][:200] if str(detail) else type(detail).__name__
    return RejectedReading(Rejection.MISSING_FIELD, f"{what} {detail}")


def _from_json(body: bytes | str, routing_key: str, batch: bool) -> list[Parsed]:
    """The common shapes are read directly, anything else by protobuf's parser, which accepts
    exactly what proto3 JSON allows. In a batch each reading stands alone: one that cannot be read
    is refused naming its place, and the others are applied."""
    what = "the message body is not a " + ("SensorReadingBatch" if batch else "SensorReading") + " in proto3 JSON:"
    try:
        data = json.loads(body)
        if not batch:
            return [_json_reading(data, routing_key)]
        elements = data.get("readings") if isinstance(data, dict) and set(data) <= {"readings"} else None
        if not isinstance(elements, list):
            # Not the common shape: the parser accepts it (e.g. `{}`) or says what is wrong.
            message = json_format.ParseDict(data, pb.SensorReadingBatch())
            return [_pb_reading(reading, routing_key) for reading in message.readings]
    except _UNREADABLE as exc:
        return [_unreadable(what, exc)]
    return [_json_element(element, routing_key, i) for i, element in enumerate(elements)]


def _json_element(data: Any, routing_key: str, index: int) -> Parsed:
    try:
        return _json_reading(data, routing_key)
    except _UNREADABLE as exc:
        return _unreadable(f"readings[{index}] is not a SensorReading in proto3 JSON:", exc)


def _json_reading(data: Any, routing_key: str) -> Parsed:
    if isinstance(data, dict):
        try:
            return _fast_reading(data, routing_key)
        except _Irregular:
            pass
    return _pb_reading(json_format.ParseDict(data, pb.SensorReading()), routing_key)


def _from_binary(body: bytes, routing_key: str, batch: bool) -> list[Parsed]:
    """Binary protobuf cannot be read in parts: a body that does not decode is refused whole."""
    try:
        if batch:
            readings = list(pb.SensorReadingBatch.FromString(body).readings)
        else:
            readings = [pb.SensorReading.FromString(body)]
    except _UNREADABLE as exc:
        kind = "SensorReadingBatch" if batch else "SensorReading"
        return [_unreadable(f"the message body is not a {kind} in binary protobuf:", exc)]
    return [_pb_reading(reading, routing_key) for reading in readings]


def _pb_reading(message: pb.SensorReading, routing_key: str) -> Parsed:
    if not message.zone_id:
        message.zone_id = routing_key
    return reading_from_pb(message)


@dataclass
class _Pending:
    """Messages received and not yet applied, each with its readings (read as it arrived)."""

    messages: list[amqp.Message] = field(default_factory=list)
    readings: list[list[Parsed]] = field(default_factory=list)
    count: int = 0
    since: float = 0.0

    def add(self, message: amqp.Message, readings: list[Parsed]) -> None:
        self.messages.append(message)
        self.readings.append(readings)
        self.count += len(readings)

    def waited_enough(self) -> bool:
        """Whether the batch has waited long enough for more readings: BATCH_WAIT, or TRICKLE_WAIT
        when they come too slowly to fill it (see TRICKLE)."""
        waited = time.monotonic() - self.since
        return waited >= BATCH_WAIT or (waited >= TRICKLE_WAIT and self.count < TRICKLE)

    def take(self) -> tuple[list[amqp.Message], list[list[Parsed]]]:
        """The first messages holding at most BATCH readings between them (at least one message:
        a message is never split, its ack covers all its readings)."""
        taken, total = 1, len(self.readings[0])
        while taken < len(self.messages) and total + len(self.readings[taken]) <= BATCH:
            total += len(self.readings[taken])
            taken += 1
        messages, readings = self.messages[:taken], self.readings[:taken]
        del self.messages[:taken], self.readings[:taken]
        self.count -= total
        self.since = time.monotonic()
        return messages, readings


class ReadingsConsumer:
    """Consumes the shard queues until stop(); see the module docstring."""

    def __init__(
        self, settings: Settings, db: Database, sharding: Sharding, health: probes.Health | None = None
    ) -> None:
        self.settings = settings
        self.health = health or probes.Health("consume loop")
        self.health.check("broker", "not consuming yet")
        self.crowd = bootstrap.build(settings, db, "ingest").crowd
        self.sharding = sharding
        self._stop = threading.Event()
        self._pending = _Pending()
        self._channel: amqp.Channel | None = None

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._consume()
                backoff = 0.5
            except (BrokerUnavailable, OSError, amqp.exceptions.ConnectionError) as exc:
                log.warning("readings consumer: broker unavailable, reconnecting in %.1f s: %s", backoff, exc)
                self.health.check("broker", f"{type(exc).__name__}: {exc}; reconnecting")
                self._pending = _Pending()  # unacknowledged: the broker delivers them again
                self._wait(backoff)
                backoff = min(backoff * 2, 30.0)
        self.health.check("broker", "stopping")

    def _wait(self, seconds: float) -> bool:
        """Waits for up to ``seconds``, turning the loop's heartbeat (a wait is not a stall) and
        telling the broker, when connected, that the consumer is still there (a wait for the
        database must not cost the connection and the batch in hand); whether stop() was asked
        meanwhile."""
        deadline = time.monotonic() + seconds
        while True:
            self.health.turn()
            channel = self._channel
            if channel is not None and channel.connection is not None and channel.connection.heartbeat:
                try:
                    channel.connection.send_heartbeat()
                except (OSError, amqp.exceptions.AMQPError):
                    pass  # the consume loop finds the connection lost, and makes another
            left = deadline - time.monotonic()
            if left <= 0 or self._stop.wait(min(left, 1.0)):
                return self._stop.is_set()

    def _consume(self) -> None:
        # With a heartbeat: a broker gone without closing the connection (a node lost, a network
        # partition) would otherwise leave the consumer waiting, and ready, for ever.
        connection = connect(
            self.settings.amqp_uri, "govmesh-crowd-ingest", heartbeat=self.settings.amqp_heartbeat_seconds
        )
        try:
            _read_ahead(connection)
            channel = connection.channel()
            channel.auto_decode = False  # bodies stay bytes: binary protobuf, or JSON read as UTF-8
            self._channel = channel
            declare_topology(channel, self.sharding.shards)
            # Per consumer (quorum queues have no channel-wide prefetch): a share of PREFETCH each,
            # so a process active on every shard has at most PREFETCH messages in flight.
            channel.basic_qos(0, max(1, PREFETCH // self.sharding.shards), False)
            for shard in self.sharding.own():
                self._subscribe(channel, shard)
            # Ready with its own shards, or as everyone's standby when it has none of its own.
            self.health.check("broker", None)
            log.info(
                "consuming readings",
                extra={"shards": self.sharding.own(), "standby_in_seconds": STANDBY_DELAY},
            )
            standby_at = time.monotonic() + (STANDBY_DELAY if self.sharding.count > 1 else 0.0)
            standby = self.sharding.standby()
            while not self._stop.is_set():
                self.health.turn()
                if standby and time.monotonic() >= standby_at:
                    for shard in standby:
                        self._subscribe(channel, shard)
                    log.info("standing by for the other shards", extra={"shards": standby})
                    standby = []
                idle = False
                try:
                    connection.drain_events(timeout=QUIET if self._pending.messages else 0.5)
                    _drain_read_ahead(connection)
                except TimeoutError:
                    idle = True
                # After the frames waiting were read, so the broker's own heartbeats count.
                connection.heartbeat_tick()
                pending = self._pending
                # A batch is applied when it is full, when nothing more is arriving (so a lone
                # reading is decided at once), or when it has waited long enough (waited_enough).
                if pending.messages and (idle or pending.count >= BATCH or pending.waited_enough()):
                    self._flush(channel)
            if self._pending.messages:
                self._flush(channel)
        finally:
            self._channel = None
            try:
                connection.close()
            except (OSError, amqp.exceptions.AMQPError):
                pass

    def _subscribe(self, channel: amqp.Channel, shard: int) -> None:
        channel.basic_consume(shard_queue(shard), callback=self._on_message, no_ack=False)

    def _on_message(self, message: amqp.Message) -> None:
        if not self._pending.messages:
            self._pending.since = time.monotonic()
        properties = message.properties
        self._pending.add(
            message,
            parse_message(
                message.body,
                message.delivery_info.get("routing_key", ""),
                properties.get("content_type"),
                properties.get("type"),
            ),
        )

    def _flush(self, channel: amqp.Channel) -> None:
        while self._pending.messages:
            messages, readings = self._pending.take()
            if not self._flush_batch(channel, messages, readings):
                return

    def _flush_batch(self, channel: amqp.Channel, messages: list[amqp.Message], readings: list[list[Parsed]]) -> bool:
        """Apply and acknowledge one batch; False when stopping left it unacknowledged."""
        try:
            reports = [self._apply([reading for message in readings for reading in message])]
        except _Stopping:
            return False  # unacknowledged: the broker delivers them again, to whoever consumes next
        except Exception:
            # A bug, or input the database refuses: one message must not take the batch, the
            # process or the shard with it. Each message alone, then; the one that still fails
            # is parked in the shard's dead-letter queue.
            log.exception("a batch of %d messages failed; applying them one by one", len(messages))
            reports = []
            dead_lettered: set[int] = set()
            for message, parsed in zip(messages, readings, strict=True):
                try:
                    reports.append(self._apply(parsed))
                except _Stopping:
                    return False
                except Exception:
                    # Masked before it is cut: an identifier cut short no longer looks like one.
                    body = mask_identifiers(str(message.body))[:300]
                    log.exception("reading dead-lettered: it cannot be applied", extra={"body": body})
                    channel.basic_reject(message.delivery_tag, requeue=False)
                    dead_lettered.add(message.delivery_tag)
            # A rejected tag is settled: acking it again is a channel error (406 unknown delivery
            # tag) that would take the consumer down. The multiple ack of the last one still
            # outstanding covers the rest.
            messages = [m for m in messages if m.delivery_tag not in dead_lettered]
        refusals = [r for report in reports for _, r in report.rejected]
        for refusal in refusals:
            log.warning("reading refused: %s", refusal.message, extra={"reason": refusal.reason.name})
        late = sum(report.count(Outcome.LATE) for report in reports)
        metrics.count_readings(
            "broker",
            sum(report.count(Outcome.ACCEPTED) for report in reports) + late,
            late,
            sum(report.count(Outcome.DUPLICATE) for report in reports),
            [r.reason.name.lower() for r in refusals],
        )
        if messages:
            channel.basic_ack(messages[-1].delivery_tag, multiple=True)
        return True

    def _apply(self, readings: list[Reading | RejectedReading]) -> IngestReport:
        pause = 0.5
        while True:
            try:
                return self.crowd.ingest(readings)
            except sa.exc.OperationalError as exc:
                # Unacknowledged meanwhile: nothing is lost, and nothing is applied twice.
                log.warning("readings consumer: database unavailable, retrying in %.1f s: %s", pause, exc)
                if self._wait(pause):
                    raise _Stopping from None
                pause = min(pause * 2, 30.0)


def _read_ahead(connection: amqp.Connection) -> None:
    """Reads of the socket ask for READ_AHEAD bytes at least; py-amqp keeps what a frame does not
    use for the next. TLS transports read their own way and are left as they are."""
    transport = connection.transport
    if isinstance(transport, amqp.transport.TCPTransport):
        recv = transport._quick_recv
        transport._quick_recv = lambda size: recv(max(size, READ_AHEAD))


def _drain_read_ahead(connection: amqp.Connection) -> None:
    """Handles the frames already read ahead, whole, without a wait: drain_events sets the
    socket's timeout and puts it back around every frame (two system calls each)."""
    transport = connection.transport
    while True:
        buffered = getattr(transport, "_read_buffer", b"")
        # A frame: type (1 byte), channel (2), payload size (4), payload, end byte.
        if len(buffered) < 7 or len(buffered) < 8 + int.from_bytes(buffered[3:7], "big"):
            return
        # blocking_read(None) without its context manager (5% of the time): the frame is in memory.
        connection.on_inbound_frame(transport.read_frame())


class _Stopping(Exception):
    """Asked to stop while waiting for the database: the batch in hand is left unacknowledged."""


def run(settings: Settings) -> None:
    """Run the readings consumer until SIGTERM or Ctrl-C. The consumer declares the topology as
    it connects, so a broker without the consistent-hash plugin stops the process at once with
    the fix in the StartupError; a broker not answering yet is waited for."""
    sharding = Sharding.from_settings(settings)
    db = service_database(settings.service, settings.database_url)
    metrics.prime("broker")
    health = probes.Health("consume loop")
    if settings.ingest_metrics_port:
        probes.watch_database(health, db.readiness)
    probes.serve(settings.bind_host, settings.ingest_metrics_port, health)
    consumer = ReadingsConsumer(settings, db, sharding, health)

    def on_signal(signum: int, _frame: object) -> None:
        log.info("stopping (signal %d): finishing the batch in hand", signum)
        consumer.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("ingest starting", extra={"amqp": shown_brokers(settings.amqp_uri), "shards": sharding.shards})
    freeze_start_up()
    try:
        consumer.run()
    finally:
        db.dispose()
    log.info("ingest stopped")
