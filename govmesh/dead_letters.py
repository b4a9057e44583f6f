"""What an operator does with dead letters (`govmesh dlq`): list each service's dead-letter queues,
read their messages with why each was refused, replay them where they came from once the cause is
mended, or drop them with a reason that is logged (docs/runbook.md, "Dead letters").

A service's dead-letter queues are the ones bound to its dead-letter exchange
(messaging.dead_letter_exchange): the broker's management API lists them, since AMQP cannot list
queues. Messages are read with AMQP (basic.get), so reading leaves them where they are."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import amqp

from govmesh import messaging
from govmesh.privacy import mask_identifiers

log = logging.getLogger("govmesh.dlq")

#: What a dead letter shows of its body.
BODY_SHOWN = 600


class DeadLetterError(RuntimeError):
    """A dead-letter operation that cannot be done; says which and why."""


@dataclass(frozen=True)
class DeadLetter:
    """One message of a dead-letter queue, as an operator reads it (identifiers masked)."""

    queue: str
    message_id: str
    event_type: str
    #: Why it was refused: the consumer's refusal code, or the broker's reason (delivery_limit).
    code: str
    field: str
    reason: str
    #: Where it came from, and where a replay sends it.
    exchange: str
    routing_key: str
    #: How many times the broker dead-lettered it (0 when the consumer did, at once).
    times: int
    body: str

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def management_api(amqp_uri: str, api: str | None) -> tuple[str, str, str, str]:
    """The management API's base URL, the user, the password and the virtual host of the first
    broker of ``amqp_uri`` (the API listens on 15672 of the same host unless ``api`` says)."""
    params = messaging.AmqpParams.from_uri(messaging.broker_uris(amqp_uri)[0])
    base = (api or f"http://{params.host}:15672/api").rstrip("/")
    if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
        raise DeadLetterError(f"GOVMESH_RABBITMQ_API: {base!r} is not an http(s) URL")
    return base, params.userid, params.password, params.virtual_host


def _get(url: str, user: str, password: str) -> Any:
    request = urllib.request.Request(url)  # noqa: S310 (management_api allows http(s) only)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (as above)
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise DeadLetterError(f"RabbitMQ's management API answered {exc.code} at {url.split('/api/')[0]}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DeadLetterError(
            f"RabbitMQ's management API does not answer at {url.split('/api/')[0]}/api ({exc}): enable the "
            "rabbitmq_management plugin, or name the API with GOVMESH_RABBITMQ_API"
        ) from None


def queues(amqp_uri: str, service: str, api: str | None = None) -> dict[str, int]:
    """The service's dead-letter queues and how many messages each holds."""
    base, user, password, vhost = management_api(amqp_uri, api)
    quoted_vhost = urllib.parse.quote(vhost, safe="")
    exchange = urllib.parse.quote(messaging.dead_letter_exchange(service), safe="")
    bindings = _get(f"{base}/exchanges/{quoted_vhost}/{exchange}/bindings/source", user, password) or []
    found = {}
    for binding in bindings:
        if binding.get("destination_type") != "queue":
            continue
        name = binding["destination"]
        queue = _get(f"{base}/queues/{quoted_vhost}/{urllib.parse.quote(name, safe='')}", user, password) or {}
        found[name] = int(queue.get("messages", 0))
    return dict(sorted(found.items()))


def _text(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def _read(queue: str, message: amqp.Message) -> DeadLetter:
    headers = dict(message.headers or {})
    deaths = headers.get("x-death") or []
    first = deaths[0] if deaths else {}
    body = bytes(message.body) if isinstance(message.body, bytes | bytearray) else str(message.body).encode()
    identity = (
        _text(headers.get("ce-id"))
        or _text(message.properties.get("message_id"))
        or "sha256:" + hashlib.sha256(body).hexdigest()[:16]
    )
    return DeadLetter(
        queue=queue,
        message_id=identity,
        event_type=_text(headers.get("ce-type")) or _text(message.properties.get("type")),
        code=_text(headers.get("x-govmesh-refusal-code")) or _text(first.get("reason")),
        field=_text(headers.get("x-govmesh-refusal-field")),
        reason=_text(headers.get("x-govmesh-refusal-message"))
        or ("failed every delivery the queue allows" if first.get("reason") == "delivery_limit" else ""),
        exchange=_text(headers.get("x-govmesh-original-exchange", first.get("exchange", ""))),
        routing_key=_text(headers.get("x-govmesh-original-routing-key", (first.get("routing-keys") or [""])[0])),
        times=sum(int(death.get("count", 0)) for death in deaths),
        body=mask_identifiers(body.decode("utf-8", errors="replace"))[:BODY_SHOWN],
    )


@contextlib.contextmanager
def _channel(amqp_uri: str) -> Iterator[amqp.Channel]:
    connection = messaging.connect(amqp_uri, "govmesh-dlq")
    try:
        yield connection.channel()
    finally:
        with contextlib.suppress(Exception):
            connection.close()


def _taken(channel: amqp.Channel, queue: str) -> Iterator[amqp.Message]:
    """The messages ``queue`` holds now, each held (not acknowledged) until the caller acks it;
    what is not acked goes back to the queue when the channel closes. Only as many as it held at
    the start: a message replayed and refused again comes back to the same queue, and must not be
    taken again by the same replay."""
    try:
        _, held, _ = channel.queue_declare(queue, passive=True)
    except amqp.exceptions.NotFound:
        raise DeadLetterError(f"no queue {queue!r} on the broker") from None
    for _ in range(held):
        message = channel.basic_get(queue, no_ack=False)
        if message is None:
            return
        yield message


def show(amqp_uri: str, queue: str, limit: int = 100) -> list[DeadLetter]:
    """The first ``limit`` messages of ``queue``, left where they are."""
    shown = []
    with _channel(amqp_uri) as channel:
        for message in _taken(channel, queue):
            shown.append(_read(queue, message))
            if len(shown) >= limit:
                break
    return shown


def replay(amqp_uri: str, queue: str, message_ids: set[str] | None = None) -> list[DeadLetter]:
    """Each message of ``queue`` (those of ``message_ids``, or all) published again where it came
    from, as it first came (without the dead-lettering's headers), then taken off the queue once the
    broker confirmed the copy: a replay never loses a message, and may double one only if it is
    cut off between the two (each consumer's key absorbs the double:
    docs/decisions/runtime-effects-single-by-each-handlers-key.md)."""
    replayed = []
    with _channel(amqp_uri) as channel:
        returned: list[object] = []
        channel.events["basic_return"].add(lambda *args: returned.append(args))
        for message in _taken(channel, queue):
            letter = _read(queue, message)
            if message_ids is not None and letter.message_id not in message_ids:
                continue
            if not letter.exchange and not letter.routing_key:
                raise DeadLetterError(f"{letter.message_id} in {queue} does not say where it came from")
            headers = {
                name: value
                for name, value in (message.headers or {}).items()
                if not (name.startswith("x-govmesh-") or name == "x-death")
            }
            properties = {k: v for k, v in message.properties.items() if k != "application_headers"}
            copy = amqp.Message(message.body, application_headers=headers, **properties)
            channel.basic_publish_confirm(
                copy, exchange=letter.exchange, routing_key=letter.routing_key, mandatory=True, confirm_timeout=30
            )
            if returned:
                raise DeadLetterError(
                    f"no queue takes {letter.exchange}/{letter.routing_key} now (is its consumer declared?): "
                    f"{letter.message_id} stays in {queue}"
                )
            channel.basic_ack(message.delivery_tag)
            log.info(
                "dead letter replayed",
                extra={
                    "queue": queue,
                    "message_id": letter.message_id,
                    "to": f"{letter.exchange}/{letter.routing_key}",
                },
            )
            replayed.append(letter)
    return replayed


def drop(amqp_uri: str, queue: str, reason: str, message_ids: set[str] | None = None) -> list[DeadLetter]:
    """Each message of ``queue`` (those of ``message_ids``, or all) deleted, each logged with why
    it was refused and why it is dropped."""
    if not reason.strip():
        raise DeadLetterError("reason: say why the messages are dropped (it is logged with each)")
    dropped = []
    with _channel(amqp_uri) as channel:
        for message in _taken(channel, queue):
            letter = _read(queue, message)
            if message_ids is not None and letter.message_id not in message_ids:
                continue
            channel.basic_ack(message.delivery_tag)
            log.warning(
                "dead letter dropped: %s",
                mask_identifiers(reason),
                extra={"queue": queue, "message_id": letter.message_id, "refusal_code": letter.code},
            )
            dropped.append(letter)
    return dropped
