"""govmesh.messaging.Publisher, the one publisher with confirms outside nameko, against a real
RabbitMQ, read by a pika integrator (a client that shares no code with it)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import amqp
import pytest

from govmesh import messaging
from govmesh.messaging import BrokerUnavailable, Publisher, Unroutable
from tests.support.mesh import Integrator

EXCHANGE = "publisher-test.readings"


def reading(number: int) -> tuple[str, amqp.Message]:
    return "zone_a", amqp.Message(json.dumps({"n": number}), content_type="application/json", delivery_mode=2)


@pytest.fixture
def publisher(amqp_uri: str) -> Iterator[Publisher]:
    def declare(channel: amqp.Channel) -> None:
        channel.exchange_declare(EXCHANGE, "topic", durable=True, auto_delete=False)

    publisher = Publisher(amqp_uri, "publisher-test", confirm_timeout=10.0, in_flight=100, declare=declare)
    yield publisher
    publisher.close()


def test_many_more_than_in_flight_arrive_all_in_order(publisher: Publisher, amqp_uri: str) -> None:
    publisher.open()
    integrator = Integrator(amqp_uri, EXCHANGE)
    try:
        publisher.publish_to(EXCHANGE, (reading(n) for n in range(3_000)), mandatory=True)
        received = integrator.receive(3_000)
        assert [json.loads(body)["n"] for _, _, body in received] == list(range(3_000))
        assert all(properties.delivery_mode == 2 for _, properties, _ in received)
    finally:
        integrator.close()


def test_a_mandatory_message_no_queue_takes_is_unroutable_and_the_publisher_goes_on(
    publisher: Publisher, amqp_uri: str
) -> None:
    with pytest.raises(Unroutable, match="zone_a"):
        publisher.publish_to(EXCHANGE, (reading(n) for n in range(500)), mandatory=True)
    assert issubclass(Unroutable, BrokerUnavailable)  # callers that retry on an outage retry on this too
    integrator = Integrator(amqp_uri, EXCHANGE)
    try:
        publisher.publish_to(EXCHANGE, [reading(1)], mandatory=True)  # the same connection, usable
        assert [json.loads(body)["n"] for _, _, body in integrator.receive(1)] == [1]
    finally:
        integrator.close()


def test_publish_mandatory_declares_the_inbound_exchange_and_refuses_when_no_queue_is_bound(amqp_uri: str) -> None:
    publisher = Publisher(amqp_uri, "publisher-test")
    try:
        with pytest.raises(Unroutable, match=r"publisher-test\.inbound"):
            publisher.publish_mandatory("publisher-test.inbound", "dept", reading(0)[1])
        integrator = Integrator(amqp_uri, "publisher-test.inbound")
        try:
            publisher.publish_mandatory("publisher-test.inbound", "dept", reading(7)[1])
            assert [json.loads(body)["n"] for _, _, body in integrator.receive(1)] == [7]
        finally:
            integrator.close()
    finally:
        publisher.close()


def test_messages_that_fail_midway_leave_a_publisher_that_publishes_again(publisher: Publisher, amqp_uri: str) -> None:
    def failing() -> Iterator[tuple[str, amqp.Message]]:
        for n in range(1_000):
            if n == 600:
                raise ValueError("a reading could not be encoded")
            yield reading(n)

    publisher.open()
    integrator = Integrator(amqp_uri, EXCHANGE)
    try:
        with pytest.raises(ValueError, match="encoded"):
            publisher.publish_to(EXCHANGE, failing())
        integrator.drain(quiet=0.5)
        publisher.publish_to(EXCHANGE, [reading(n) for n in range(3)])
        assert [json.loads(body)["n"] for _, _, body in integrator.receive(3)] == [0, 1, 2]
    finally:
        integrator.close()


def test_an_unreachable_broker_is_broker_unavailable() -> None:
    publisher = Publisher("amqp://guest:guest@127.0.0.1:1/", "publisher-test")
    with pytest.raises(BrokerUnavailable, match="cannot reach RabbitMQ"):
        publisher.publish_to(EXCHANGE, [reading(0)])


def test_confirms_are_counted_by_tag_whatever_their_order() -> None:
    publisher = Publisher("amqp://unused/", "publisher-test")
    publisher._next_tag = 6  # tags 1-5 published
    publisher._on_ack(3, multiple=False)
    publisher._on_ack(2, multiple=True)  # 1 and 2; 3 came before
    assert publisher._unconfirmed() == 2
    publisher._on_ack(5, multiple=False)
    publisher._on_ack(4, multiple=False)
    assert publisher._unconfirmed() == 0
    assert messaging.IN_FLIGHT >= 1_000


def test_a_list_of_brokers_connects_to_the_first_that_answers(amqp_uri: str) -> None:
    """AMQP_URI may name the nodes of a cluster, separated by ";" (as kombu reads it for nameko):
    a node that does not answer is passed over, and the error names every node tried."""
    dead = "amqp://guest:guest@127.0.0.1:1/"
    connection = messaging.connect(f"{dead};{amqp_uri}", "publisher-test")
    try:
        assert connection.connected
    finally:
        connection.close()
    with pytest.raises(BrokerUnavailable) as refused:
        messaging.connect(f"{dead};amqp://guest:guest@127.0.0.1:2/", "publisher-test", timeout=1)
    assert "127.0.0.1:1" in str(refused.value) and "127.0.0.1:2" in str(refused.value)
