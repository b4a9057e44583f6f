"""The AMQP client outside nameko: py-amqp against pika, publishing with confirms and consuming
with batched acks, on the same broker in the same run (docs/decisions/runtime-amqp-client.md).

    .venv/bin/python -m tests.bench.amqp [--messages N] [--rounds R]

Every message is an event as the outbox relay sends it: persistent, a 310-byte proto3 JSON body
(crowd's LevelChanged), content type, message id, type, timestamp and the CloudEvents headers.
Each variant gets a fresh quorum queue (the kind every consumer of the mesh declares) bound to a
topic exchange, in a virtual host of the bench's own that is deleted afterwards. The variants of
a round run one after the other, R rounds interleaved, so a noisy neighbour hurts them alike;
the table gives the median of the rounds, their range, and this process's CPU time per message
(the client's own cost, which a busy machine disturbs less than the rate).

Publish, N messages, returning once the broker confirmed every one:
  (a) govmesh.messaging.ConfirmingPublisher (py-amqp), in the outbox relay's batches of 500;
  (a') the same publisher given all N at once, at most 2,000 unconfirmed (crowd's simulator);
  (b) pika BlockingConnection with confirm_delivery: one confirm waited for per message;
  (c) pika SelectConnection, confirms handled as they come, at most 2,000 unconfirmed;
  (d) py-amqp with confirm_publish: one confirm waited for per message.
  Baselines: py-amqp and pika publishing the same messages without confirms (what each client
  costs with nothing to wait for; the broker may still be writing when the clock stops, and
  messages that never reach the queue are counted and reported).
Consume N messages from a full queue, prefetch 1,000, one multiple ack per 500 (crowd's ingest):
  (e) py-amqp, drain_events with a callback;
  (f) pika BlockingConnection, basic_consume and start_consuming;
  (f') pika SelectConnection, the same callbacks on its own loop.
  Baseline: py-amqp with no_ack (nothing acknowledged; no prefetch limit either, so the broker
  pushes as fast as it can and this is not always the fastest row).
Figures vary with the machine; read them side by side, never as absolutes.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import amqp
import pika
import pika.spec

from govmesh import messaging
from govmesh.crowd.v1 import crowd_pb2, events_pb2
from govmesh.messaging import ConfirmingPublisher, Envelope
from tests.bench import results
from tests.support.mesh import virtual_host

EXCHANGE = "crowd.events"
ROUTING_KEY = "level_changed"
RELAY_BATCH = 500
IN_FLIGHT = messaging.IN_FLIGHT
PREFETCH = 1_000
ACK_EVERY = 500
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def envelopes(count: int) -> list[Envelope]:
    now = datetime.datetime.now(datetime.UTC)
    event = events_pb2.LevelChanged(
        zone_id="hubin_fountain",
        zone_name_zh="湖滨音乐喷泉",
        previous_level=crowd_pb2.RESPONSE_LEVEL_III,
        level=crowd_pb2.RESPONSE_LEVEL_II,
        occupancy=16_432,
        capacity=20_000,
        load_bp=8_216,
    )
    event.triggered_by_observed_at.FromDatetime(now)
    event.changed_at.FromDatetime(now)
    return [Envelope.for_event("crowd", event, "hubin_fountain", {"traceparent": TRACEPARENT}) for _ in range(count)]


def pika_properties(envelope: Envelope) -> pika.BasicProperties:
    return pika.BasicProperties(
        content_type=messaging.CONTENT_TYPE,
        content_encoding="utf-8",
        delivery_mode=2,
        message_id=envelope.event_id,
        type=envelope.event_type,
        timestamp=int(envelope.time.timestamp()),
        headers=envelope.headers(),
    )


# -- publishers: each returns the seconds from its first publish to its last confirm ------------


def govmesh_batches(uri: str, events: Sequence[Envelope]) -> float:
    publisher = ConfirmingPublisher(uri, "crowd")
    publisher.open()
    started = time.perf_counter()
    for start in range(0, len(events), RELAY_BATCH):
        publisher.publish(events[start : start + RELAY_BATCH])
    elapsed = time.perf_counter() - started
    publisher.close()
    return elapsed


def govmesh_stream(uri: str, events: Sequence[Envelope]) -> float:
    publisher = ConfirmingPublisher(uri, "crowd", in_flight=IN_FLIGHT)
    publisher.open()
    started = time.perf_counter()
    publisher.publish(events)
    elapsed = time.perf_counter() - started
    publisher.close()
    return elapsed


def py_amqp_per_message(uri: str, events: Sequence[Envelope], confirm: bool = True) -> float:
    params = messaging.AmqpParams.from_uri(uri)
    connection = amqp.Connection(
        host=f"{params.host}:{params.port}",
        userid=params.userid,
        password=params.password,
        virtual_host=params.virtual_host,
        confirm_publish=confirm,
    )
    connection.connect()
    channel = connection.channel()
    started = time.perf_counter()
    for envelope in events:
        channel.basic_publish(messaging.message_of(envelope), exchange=EXCHANGE, routing_key=ROUTING_KEY)
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def py_amqp_unconfirmed(uri: str, events: Sequence[Envelope]) -> float:
    return py_amqp_per_message(uri, events, confirm=False)


def pika_blocking(uri: str, events: Sequence[Envelope], confirm: bool = True) -> float:
    connection = pika.BlockingConnection(pika.URLParameters(uri))
    channel = connection.channel()
    if confirm:
        channel.confirm_delivery()
    started = time.perf_counter()
    for envelope in events:
        channel.basic_publish(EXCHANGE, ROUTING_KEY, envelope.body, pika_properties(envelope))
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def pika_unconfirmed(uri: str, events: Sequence[Envelope]) -> float:
    return pika_blocking(uri, events, confirm=False)


class PikaAsync:
    """pika's SelectConnection: publishes while fewer than IN_FLIGHT are unconfirmed, and more
    as each confirm arrives, until every one is confirmed."""

    def __init__(self, uri: str, events: Sequence[Envelope]) -> None:
        self.events = events
        self.sent = 0
        self.confirmed_below = 1  # every delivery tag below this is confirmed
        self.confirmed_singly: set[int] = set()
        self.started = self.elapsed = 0.0
        self.channel: Any = None
        self.connection = pika.SelectConnection(pika.URLParameters(uri), on_open_callback=self._on_open)

    def run(self) -> float:
        self.connection.ioloop.start()
        return self.elapsed

    def _on_open(self, connection: Any) -> None:
        connection.channel(on_open_callback=self._on_channel)

    def _on_channel(self, channel: Any) -> None:
        self.channel = channel
        channel.confirm_delivery(ack_nack_callback=self._on_confirm, callback=self._on_confirming)

    def _on_confirming(self, _frame: Any) -> None:
        self.started = time.perf_counter()
        self._pump()

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        if isinstance(method, pika.spec.Basic.Nack):
            raise RuntimeError("the broker nacked a message")
        if method.multiple:
            self.confirmed_below = max(self.confirmed_below, method.delivery_tag + 1)
        else:
            self.confirmed_singly.add(method.delivery_tag)
        while self.confirmed_below in self.confirmed_singly:
            self.confirmed_singly.discard(self.confirmed_below)
            self.confirmed_below += 1
        if self.confirmed_below > len(self.events):
            self.elapsed = time.perf_counter() - self.started
            self.connection.close()
            self.connection.ioloop.stop()
        else:
            self._pump()

    def _pump(self) -> None:
        while self.sent < len(self.events) and self.sent + 1 - self.confirmed_below < IN_FLIGHT:
            envelope = self.events[self.sent]
            self.channel.basic_publish(EXCHANGE, ROUTING_KEY, envelope.body, pika_properties(envelope))
            self.sent += 1


def pika_select(uri: str, events: Sequence[Envelope]) -> float:
    return PikaAsync(uri, events).run()


# -- consumers: each drains a queue of `count` messages, returns the seconds it took ------------


def py_amqp_consume(uri: str, queue: str, count: int, no_ack: bool = False) -> float:
    connection = messaging.connect(uri, "bench-consumer")
    channel = connection.channel()
    channel.basic_qos(0, PREFETCH, False)
    received = 0

    def on_message(message: amqp.Message) -> None:
        nonlocal received
        received += 1
        if not no_ack and (received % ACK_EVERY == 0 or received == count):
            channel.basic_ack(message.delivery_tag, multiple=True)

    channel.basic_consume(queue, callback=on_message, no_ack=no_ack)
    started = time.perf_counter()
    while received < count:
        connection.drain_events(timeout=30)
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def py_amqp_auto_ack(uri: str, queue: str, count: int) -> float:
    return py_amqp_consume(uri, queue, count, no_ack=True)


def pika_blocking_consume(uri: str, queue: str, count: int) -> float:
    connection = pika.BlockingConnection(pika.URLParameters(uri))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=PREFETCH)
    received = 0

    def on_message(ch: Any, method: pika.spec.Basic.Deliver, _properties: Any, _body: bytes) -> None:
        nonlocal received
        received += 1
        if received % ACK_EVERY == 0 or received == count:
            ch.basic_ack(method.delivery_tag, multiple=True)
        if received == count:
            ch.stop_consuming()

    channel.basic_consume(queue, on_message)
    started = time.perf_counter()
    channel.start_consuming()
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def pika_select_consume(uri: str, queue: str, count: int) -> float:
    received = 0
    timing = {"started": 0.0, "elapsed": 0.0}

    def on_open(connection: Any) -> None:
        connection.channel(on_open_callback=on_channel)

    def on_channel(channel: Any) -> None:
        channel.basic_qos(prefetch_count=PREFETCH, callback=lambda _frame: on_qos(channel))

    def on_qos(channel: Any) -> None:
        timing["started"] = time.perf_counter()
        channel.basic_consume(queue, on_message)

    def on_message(ch: Any, method: pika.spec.Basic.Deliver, _properties: Any, _body: bytes) -> None:
        nonlocal received
        received += 1
        if received % ACK_EVERY == 0 or received == count:
            ch.basic_ack(method.delivery_tag, multiple=True)
        if received == count:
            timing["elapsed"] = time.perf_counter() - timing["started"]
            connection.close()
            connection.ioloop.stop()

    connection = pika.SelectConnection(pika.URLParameters(uri), on_open_callback=on_open)
    connection.ioloop.start()
    return timing["elapsed"]


# -- the run ------------------------------------------------------------------------------------

Publish = Callable[[str, Sequence[Envelope]], float]
Consume = Callable[[str, str, int], float]

PUBLISHERS: list[tuple[str, Publish]] = [
    ("bare: py-amqp, no confirms (baseline)", py_amqp_unconfirmed),
    ("bare: pika BlockingConnection, no confirms (baseline)", pika_unconfirmed),
    ("(a) govmesh ConfirmingPublisher, batches of 500", govmesh_batches),
    (f"(a') govmesh ConfirmingPublisher, {IN_FLIGHT:,} in flight", govmesh_stream),
    ("(b) pika BlockingConnection, a confirm per message", pika_blocking),
    (f"(c) pika SelectConnection, {IN_FLIGHT:,} in flight", pika_select),
    ("(d) py-amqp, a confirm per message", py_amqp_per_message),
]
CONSUMERS: list[tuple[str, Consume]] = [
    ("bare: py-amqp, no_ack (baseline)", py_amqp_auto_ack),
    ("(e) py-amqp, multiple ack per 500", py_amqp_consume),
    ("(f) pika BlockingConnection, multiple ack per 500", pika_blocking_consume),
    ("(f') pika SelectConnection, multiple ack per 500", pika_select_consume),
]


def fresh_queue(channel: amqp.Channel, name: str) -> None:
    channel.queue_declare(name, durable=True, auto_delete=False, arguments={"x-queue-type": "quorum"})
    channel.queue_bind(name, EXCHANGE, routing_key=ROUTING_KEY)


def depth(channel: amqp.Channel, name: str) -> int:
    return int(channel.queue_declare(name, passive=True).message_count)


class Figures:
    """Per variant: messages a second (wall clock) and the client's CPU per message, per round."""

    def __init__(self) -> None:
        self.rates: dict[str, list[float]] = {name: [] for name, _ in PUBLISHERS + CONSUMERS}
        self.cpu: dict[str, list[float]] = {name: [] for name, _ in PUBLISHERS + CONSUMERS}
        self.lost: dict[str, int] = {name: 0 for name, _ in PUBLISHERS}

    def add(self, name: str, count: int, seconds: float, cpu_seconds: float) -> None:
        self.rates[name].append(count / seconds)
        self.cpu[name].append(cpu_seconds / count)


def settled_depth(channel: amqp.Channel, name: str) -> int:
    """The queue's depth once it stopped growing for a second: messages published without
    confirms may still be on their way, and some never arrive."""
    last, since = -1, time.monotonic()
    while time.monotonic() - since < 1.0:
        current = depth(channel, name)
        if current != last:
            last, since = current, time.monotonic()
        time.sleep(0.05)
    return last


def one_round(uri: str, events: Sequence[Envelope], figures: Figures) -> None:
    connection = messaging.connect(uri, "bench-admin")
    channel = connection.channel()
    try:
        channel.exchange_declare(EXCHANGE, "topic", durable=True, auto_delete=False)
        for index, (name, publish) in enumerate(PUBLISHERS):
            queue = f"bench.publish.{index}"
            fresh_queue(channel, queue)
            cpu = time.process_time()
            seconds = publish(uri, events)
            cpu = time.process_time() - cpu
            if name.startswith("bare"):
                figures.lost[name] += len(events) - settled_depth(channel, queue)
            elif depth(channel, queue) != len(events):
                raise RuntimeError(f"{name}: {depth(channel, queue)} of {len(events)} messages in the queue")
            figures.add(name, len(events), seconds, cpu)
            channel.queue_delete(queue)
        for index, (name, consume) in enumerate(CONSUMERS):
            queue = f"bench.consume.{index}"
            fresh_queue(channel, queue)
            govmesh_stream(uri, events)
            cpu = time.process_time()
            seconds = consume(uri, queue, len(events))
            figures.add(name, len(events), seconds, time.process_time() - cpu)
            channel.queue_delete(queue)
    finally:
        connection.close()


def row(section: str, name: str, rates: list[float], cpu: list[float], baseline: float) -> None:
    middle = statistics.median(rates)
    cpu_us = statistics.median(cpu) * 1e6
    print(f"  {name:<54} {middle:8,.0f} {min(rates):7,.0f}-{max(rates):<7,.0f} {middle / baseline:6.0%} {cpu_us:7.0f}")
    results.record(
        section,
        name,
        per_second=round(middle),
        lowest=round(min(rates)),
        highest=round(max(rates)),
        of_baseline=round(middle / baseline, 3),
        cpu_us_per_message=round(cpu_us),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    events = envelopes(args.messages)
    figures = Figures()
    with virtual_host() as uri:
        for _ in range(args.rounds):
            one_round(uri, events, figures)
    size = len(events[0].body.encode())
    print(f"{args.messages:,} persistent messages ({size}-byte bodies, CloudEvents headers), quorum queues")
    title = f"messages a second (median, range of {args.rounds} rounds)"
    print(f"  {title:<54} {'median':>8} {'range':^15} {'/bare':>6} {'CPU µs':>7}")
    for section, group in (("publish", PUBLISHERS), ("consume", CONSUMERS)):
        baseline = statistics.median(figures.rates[group[0][0]])
        for name, _ in group:
            row(section, name, figures.rates[name], figures.cpu[name], baseline)
    for name, lost in figures.lost.items():
        if lost:
            print(f"  {name}: {lost:,} of {args.messages * args.rounds:,} messages never reached the queue")
            results.record("lost", name, lost=lost)
    results.keep("amqp", vars(args))


if __name__ == "__main__":
    main()
