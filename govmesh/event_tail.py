"""`govmesh events tail`: the services' events as they are published, for an integrator or an
operator watching the mesh. A queue of its own (exclusive: the broker deletes it when the tail
stops) bound to each chosen service's events exchange; nothing is taken from anyone else's queue.
Bodies are shown with identifiers masked (an event carries none, by contract; this holds anyway)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import amqp

from govmesh import messaging
from govmesh.privacy import mask_identifiers


@dataclass(frozen=True)
class SeenEvent:
    service: str
    event_type: str
    routing_key: str
    event_id: str
    time: str
    subject: str
    trace_id: str
    body: Any

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def line(self) -> str:
        body = json.dumps(self.body, ensure_ascii=False, sort_keys=True)
        return (
            f"{self.time}  {self.service}.{self.routing_key}  {self.subject or '-'}  "
            f"trace {self.trace_id or '-'}  {body}"
        )


def _text(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def read(message: amqp.Message) -> SeenEvent:
    headers = dict(message.headers or {})
    raw = message.body if isinstance(message.body, bytes | bytearray) else str(message.body).encode()
    text = mask_identifiers(bytes(raw).decode("utf-8", errors="replace"))
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = text
    traceparent = _text(headers.get("traceparent")).split("-")
    exchange = _text(message.delivery_info.get("exchange"))
    return SeenEvent(
        service=exchange.removesuffix(".events"),
        event_type=_text(headers.get("ce-type")),
        routing_key=_text(message.delivery_info.get("routing_key")),
        event_id=_text(headers.get("ce-id")),
        time=_text(headers.get("ce-time")),
        subject=mask_identifiers(_text(headers.get("ce-subject"))),
        trace_id=traceparent[1] if len(traceparent) == 4 else "",
        body=body,
    )


def tail(
    amqp_uri: str,
    services: Sequence[str],
    event_types: Sequence[str],
    show: Callable[[SeenEvent], None],
    count: int | None = None,
    seconds: float | None = None,
    ready: Callable[[], None] = lambda: None,
    stop: Callable[[], bool] = lambda: False,
) -> int:
    """Shows each event of ``services`` (of ``event_types``, routing keys, or all) as it comes,
    until ``count`` were shown, ``seconds`` passed or ``stop()`` says so (checked at least once a
    second), or forever; returns how many were shown. ``ready`` is called once the queue is bound:
    what is published from then on is seen."""
    connection = messaging.connect(amqp_uri, "govmesh-events-tail")
    shown = 0
    try:
        channel = connection.channel()
        queue, _, _ = channel.queue_declare("", exclusive=True, auto_delete=True)
        for service in services:
            exchange = messaging.events_exchange(service)
            channel.exchange_declare(exchange, "topic", durable=True, auto_delete=False)
            for routing_key in event_types or ["#"]:
                channel.queue_bind(queue, exchange, routing_key=routing_key)

        def on_message(message: amqp.Message) -> None:
            nonlocal shown
            show(read(message))
            shown += 1

        channel.basic_consume(queue, callback=on_message, no_ack=True)
        ready()
        deadline = None if seconds is None else time.monotonic() + seconds
        while (count is None or shown < count) and not stop():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            try:
                connection.drain_events(timeout=1.0 if left is None else min(left, 1.0))
            except TimeoutError:
                continue
    finally:
        connection.close()
    return shown
