"""`govmesh dlq replay`'s guard against the inboxes' forgetting, against a real RabbitMQ: a dead
letter whose event happened longer ago than the inboxes remember stays where it is, saying why;
a newer one goes back where it came from."""

from __future__ import annotations

import datetime
import uuid

import pika
import pytest

from govmesh import dead_letters
from govmesh.dead_letters import DeadLetterError

THIRTY_DAYS = 30 * 86_400.0


def dead_letter(channel: pika.adapters.blocking_connection.BlockingChannel, queue: str, happened: str) -> str:
    """A dead event as a consumer's refusal leaves it in ``queue``; returns its ce-id."""
    event_id = str(uuid.uuid4())
    headers = {
        "ce-id": event_id,
        "ce-type": "govmesh.identity.v1.subject_registered",
        "ce-time": happened,
        "x-govmesh-original-exchange": "amq.topic",
        "x-govmesh-original-routing-key": "dlq_guard",
        "x-govmesh-refusal-code": "UNAVAILABLE",
    }
    channel.basic_publish("", queue, b"{}", pika.BasicProperties(headers=headers, message_id=event_id))
    return event_id


def ago(days: float) -> str:
    moment = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=days)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_a_replay_refuses_an_event_older_than_the_inboxes_remember_and_sends_a_newer_one(amqp_uri: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()
    letters = channel.queue_declare(f"dlq-guard-{uuid.uuid4().hex[:8]}.dead-letter").method.queue
    target = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(target, "amq.topic", "dlq_guard")
    try:
        old = dead_letter(channel, letters, ago(31))
        with pytest.raises(DeadLetterError) as refused:
            dead_letters.replay(amqp_uri, letters, {old}, inbox_keep_seconds=THIRTY_DAYS)
        assert str(refused.value).startswith(f"{old} in {letters} happened at {ago(31)[:10]}")
        assert "longer ago than the inboxes remember (2592000 s, GOVMESH_INBOX_KEEP_SECONDS)" in str(refused.value)
        [kept] = dead_letters.show(amqp_uri, letters)
        assert kept.message_id == old and kept.happened_at.startswith(ago(31)[:10])

        new = dead_letter(channel, letters, ago(29))
        [replayed] = dead_letters.replay(amqp_uri, letters, {new}, inbox_keep_seconds=THIRTY_DAYS)
        assert replayed.message_id == new
        method, properties, _ = channel.basic_get(target, auto_ack=True)
        assert method is not None and properties.headers["ce-id"] == new
        assert [letter.message_id for letter in dead_letters.show(amqp_uri, letters)] == [old]
        # Told no keep time (a caller of the library that knows no inbox), it sends the old one too.
        assert [letter.message_id for letter in dead_letters.replay(amqp_uri, letters, {old})] == [old]
    finally:
        channel.queue_delete(letters)
        connection.close()
