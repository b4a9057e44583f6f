"""The ingest consumer when applying a batch fails for a reason other than the database being away
(a bug, or input the database refuses): the failure is injected into the real consumer, on a
real broker and database, and the batch's good readings must still be applied once, the one
message that fails parked in its shard's dead-letter queue, and the consumer must keep going."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Sequence
from pathlib import Path

import pika
import pytest

from govmesh import config
from govmesh.crowd.v1 import crowd_pb2 as pb
from govmesh.db import service_database
from services.crowd import contract
from services.crowd.app import CrowdApp
from services.crowd.domain.decisions import IngestReport
from services.crowd.domain.occupancy import Reading, RejectedReading
from services.crowd.ingest import ReadingsConsumer, Sharding, shard_queue
from tests.support.crowd_mesh import Publisher, reading
from tests.support.mesh import consumers, virtual_host, wait_for

BOMB = "bomb"


@pytest.mark.parametrize("bomb_at", [1, 2], ids=["inside-the-batch", "last-of-the-batch"])
def test_a_reading_that_cannot_be_applied_is_dead_lettered_alone(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bomb_at: int
) -> None:
    """The last message of a batch was once rejected and then acked again by the batch's multiple
    ack: the broker closed the channel (406) and the consumer died."""
    with virtual_host() as amqp:
        monkeypatch.setenv("AMQP_URI", amqp)
        monkeypatch.setenv("CROWD_DATABASE_URL", database_url)
        settings = config.load("crowd")
        db = service_database("crowd", database_url)
        db.migrate()
        crowd = CrowdApp(db)
        crowd.upsert_zone(contract.config_from_pb(pb.Zone(zone_id="quay", name_zh="码头", capacity=1000)))
        consumer = ReadingsConsumer(settings, db, Sharding(shards=1, index=0, count=1))
        real_ingest = consumer.crowd.ingest

        def failing(readings: Sequence[Reading | RejectedReading]) -> IngestReport:
            if any(isinstance(r, Reading) and r.sensor_id == BOMB for r in readings):
                raise RuntimeError("injected: this reading breaks the code that applies it")
            return real_ingest(readings)

        consumer.crowd.ingest = failing  # type: ignore[method-assign]
        thread = threading.Thread(target=consumer.run, daemon=True)
        thread.start()
        wait_for(lambda: consumers(amqp, shard_queue(0)) > 0, timeout=20)
        publisher = Publisher(amqp)
        try:
            now = datetime.datetime.now(datetime.UTC)
            batch = [reading("quay", "gate", 1, now, delta=4), reading("quay", "gate", 2, now, delta=3)]
            batch.insert(bomb_at, reading("quay", BOMB, 1, now, delta=100))
            publisher.publish(batch)
            wait_for(lambda: _occupancy(crowd) == 7, timeout=20)
            wait_for(lambda: _queue_length(amqp, shard_queue(0) + ".dead-letter") == 1, timeout=20)
            publisher.publish([reading("quay", "gate", 3, now, delta=1)])
            wait_for(lambda: _occupancy(crowd) == 8, timeout=20)
            assert thread.is_alive(), "the consumer keeps going"
            assert _queue_length(amqp, shard_queue(0)) == 0, "nothing left unacknowledged to loop"
        finally:
            publisher.close()
            consumer.stop()
            thread.join(10)
            db.dispose()


def _occupancy(crowd: CrowdApp) -> int:
    return crowd.get_zone_status("quay").live.occupancy


def _queue_length(amqp: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(amqp))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()
