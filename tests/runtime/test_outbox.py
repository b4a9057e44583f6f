"""The outbox, relay, inbox and consumer topology against a real RabbitMQ and real databases
(each test runs on SQLite and on PostgreSQL)."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import amqp
import pika
import pytest
import sqlalchemy as sa
from alembic import command
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from govmesh import messaging, metrics, tracing
from govmesh import outbox as outbox_module
from govmesh.db import Database, service_database
from govmesh.identity.v1 import events_pb2
from govmesh.messaging import BrokerUnavailable, ConfirmingPublisher, Envelope
from govmesh.outbox import Outbox, OutboxRelay, messaging_tables
from services.identity import store
from tests.support.mesh import Integrator, PostgresDatabases, wait_for


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = service_database("identity", database_url)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def outbox() -> Outbox:
    return Outbox("identity", store.outbox, store.inbox)


def queue_events(db: Database, outbox: Outbox, count: int) -> list[str]:
    subjects = [f"sub_test{uuid.uuid4().hex}" for _ in range(count)]
    with db.transaction() as session:
        for subject in subjects:
            outbox.add(session, events_pb2.SubjectRegistered(subject_id=subject), subject=subject)
    return subjects


def unpublished(db: Database, outbox: Outbox) -> int:
    with db.read() as session:
        return outbox.backlog(session)


def ours(deliveries: Sequence[tuple[object, pika.BasicProperties, bytes]], subjects: list[str]) -> list[str]:
    return [props.headers["ce-id"] for _, props, _ in deliveries if props.headers["ce-subject"] in subjects]


class CrashAfterPublish(ConfirmingPublisher):
    """The relay dies after the broker confirmed but before the rows were marked sent."""

    def publish(self, envelopes: Sequence[Envelope]) -> None:
        super().publish(envelopes)
        raise BrokerUnavailable("relay killed between publish and mark")


def test_rolled_back_change_publishes_nothing(db: Database, outbox: Outbox) -> None:
    with pytest.raises(RuntimeError), db.transaction() as session:
        outbox.add(session, events_pb2.SubjectRegistered(subject_id="sub_x"), subject="sub_x")
        raise RuntimeError("the domain change failed")
    assert unpublished(db, outbox) == 0


def test_crash_between_publish_and_mark_is_seen_once_by_an_inbox_consumer(
    db: Database, outbox: Outbox, amqp_uri: str
) -> None:
    integrator = Integrator(amqp_uri, "identity.events")
    try:
        subjects = queue_events(db, outbox, 3)
        crashing = OutboxRelay(db, outbox, CrashAfterPublish(amqp_uri, "identity"))
        with pytest.raises(BrokerUnavailable):
            crashing.publish_pending()
        assert unpublished(db, outbox) == 3  # not marked: the relay died first
        restarted = OutboxRelay(db, outbox, ConfirmingPublisher(amqp_uri, "identity"))
        assert restarted.publish_pending() == 3
        assert unpublished(db, outbox) == 0

        deliveries = integrator.drain()
        ce_ids = ours(deliveries, subjects)
        assert len(ce_ids) == 6 and len(set(ce_ids)) == 3  # at-least-once on the wire, same ids

        applied = 0
        for ce_id in ce_ids:  # a consumer applying each event with the inbox in its transaction
            with db.transaction() as session:
                if outbox.claim(session, "test-consumer", ce_id):
                    applied += 1
        assert applied == 3  # exactly once as the consumer sees it
        restarted.publisher.close()
    finally:
        integrator.close()


def test_inbox_claim_rolls_back_with_the_effect(db: Database, outbox: Outbox) -> None:
    event_id = str(uuid.uuid4())
    with pytest.raises(RuntimeError), db.transaction() as session:
        assert outbox.claim(session, "c", event_id)
        raise RuntimeError("effect failed")
    with db.transaction() as session:
        assert outbox.claim(session, "c", event_id)  # the failed attempt left no trace
    with db.transaction() as session:
        assert not outbox.claim(session, "c", event_id)
        assert outbox.claim(session, "another-consumer", event_id)  # inboxes are per consumer


def test_two_deliveries_claimed_at_once_apply_once(db: Database, outbox: Outbox) -> None:
    """Competing workers handle two copies of one event at once: the second claim waits for the
    first's transaction and is told the event was applied; after a rollback it would claim it."""
    event_id = str(uuid.uuid4())
    first_holds, answers = threading.Event(), []

    def second() -> None:
        first_holds.wait(10)
        with db.transaction() as session:
            answers.append(outbox.claim(session, "c", event_id))

    with futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(second)
        with db.transaction() as session:
            assert outbox.claim(session, "c", event_id)
            first_holds.set()
            if db.is_sqlite:  # the second waits for the write lock, in its driver: nothing to see
                time.sleep(0.3)
            else:
                wait_for(lambda: lock_waiters(db, "INSERT INTO inbox%"), timeout=10)
            assert not answers, "the second claim did not wait for the first's transaction"
        waiting.result(10)
    assert answers == [False]


def test_relay_backs_off_while_the_broker_is_away_then_publishes(db: Database, outbox: Outbox, amqp_uri: str) -> None:
    integrator = Integrator(amqp_uri, "identity.events")
    try:
        subjects = queue_events(db, outbox, 2)
        failures = metrics.OUTBOX_PUBLISH_FAILURES.labels("identity")._value.get()
        sleeps: list[float] = []
        away = OutboxRelay(db, outbox, ConfirmingPublisher("amqp://guest:guest@127.0.0.1:1/", "identity"))

        def record_sleep(seconds: float) -> None:
            sleeps.append(seconds)
            if len(sleeps) == 4:
                away.stop()

        away.run(sleep=record_sleep, idle_interval=0.01)
        assert sleeps == [0.01, 0.02, 0.04, 0.08]  # exponential backoff
        assert metrics.OUTBOX_PUBLISH_FAILURES.labels("identity")._value.get() == failures + 4
        assert unpublished(db, outbox) == 2

        back = OutboxRelay(db, outbox, ConfirmingPublisher(amqp_uri, "identity"))
        thread = threading.Thread(target=back.run, kwargs={"idle_interval": 0.02})
        thread.start()
        try:
            deliveries = integrator.receive(2)
        finally:
            back.stop()
            thread.join(5)
        assert sorted(p.headers["ce-subject"] for _, p, _ in deliveries) == sorted(subjects)
        assert unpublished(db, outbox) == 0
    finally:
        integrator.close()


def test_relays_publish_each_event_once_while_commits_keep_coming(db: Database, outbox: Outbox, amqp_uri: str) -> None:
    integrator = Integrator(amqp_uri, "identity.events")
    # PostgreSQL: two competing relays (row locks keep them apart). SQLite: its one relay.
    count = 1 if db.is_sqlite else 2
    relays = [OutboxRelay(db, outbox, ConfirmingPublisher(amqp_uri, "identity"), batch_size=50) for _ in range(count)]
    threads = [threading.Thread(target=r.run, kwargs={"idle_interval": 0.01}) for r in relays]
    try:
        for thread in threads:
            thread.start()
        subjects: list[str] = []
        for _ in range(6):  # commits keep arriving while both relays run
            subjects += queue_events(db, outbox, 50)
            time.sleep(0.02)
        deliveries = integrator.receive(300, timeout=30)
        deliveries += integrator.drain(quiet=1.0)
    finally:
        for relay in relays:
            relay.stop()
        for thread in threads:
            thread.join(5)
        integrator.close()
    received = [p.headers["ce-subject"] for _, p, _ in deliveries if p.headers["ce-subject"] in subjects]
    assert len(received) == 300 and set(received) == set(subjects)
    if db.is_sqlite:  # one writer at a time: commit order is publication order
        assert received == subjects


@pytest.mark.parametrize("exporter", ["file", "none"])
def test_relayed_events_carry_the_writers_trace_with_a_publish_span_only_where_spans_are_exported(
    db: Database, outbox: Outbox, amqp_uri: str, exporter: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    monkeypatch.setattr(tracing, "tracer", provider.get_tracer)
    monkeypatch.setattr(tracing, "_configured", ("identity", exporter))
    subject = f"sub_test{uuid.uuid4().hex}"
    with provider.get_tracer("test").start_as_current_span("writer") as writer, db.transaction() as session:
        outbox.add(session, events_pb2.SubjectRegistered(subject_id=subject), subject=subject)
    integrator = Integrator(amqp_uri, "identity.events")
    relay = OutboxRelay(db, outbox, ConfirmingPublisher(amqp_uri, "identity"))
    try:
        assert relay.publish_pending() == 1
        (delivery,) = [d for d in integrator.receive(1) if d[1].headers["ce-subject"] == subject]
    finally:
        relay.publisher.close()
        integrator.close()
    _, trace_id, parent_id, _ = str(delivery[1].headers["traceparent"]).split("-")
    assert int(trace_id, 16) == writer.get_span_context().trace_id  # its consumers join the trace
    published = [span for span in spans.get_finished_spans() if span.kind == SpanKind.PRODUCER]
    if exporter == "none":  # no span nobody sees: the consumer hangs under the writer
        assert published == [] and int(parent_id, 16) == writer.get_span_context().span_id
    else:
        assert [int(parent_id, 16)] == [span.context.span_id for span in published]


def test_consumer_queue_dead_letters_a_poison_message_instead_of_looping(amqp_uri: str) -> None:
    queue = f"test.poison.{uuid.uuid4().hex[:8]}"
    connection = messaging.connect(amqp_uri, "test")
    channel = connection.channel()
    try:
        messaging.declare_service_exchanges(channel, "identity")
        messaging.declare_consumer_queue(
            channel, "records", queue, [("identity.events", "poison_test")], delivery_limit=2
        )
        channel.basic_publish(
            amqp.Message("{}", delivery_mode=2), exchange="identity.events", routing_key="poison_test"
        )
        redeliveries = 0
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            message = channel.basic_get(queue)
            if message is None:
                dead = channel.basic_get(f"{queue}.dead-letter")
                if dead is not None:
                    channel.basic_ack(dead.delivery_tag)
                    break
                time.sleep(0.05)
                continue
            redeliveries += 1
            channel.basic_reject(message.delivery_tag, requeue=True)  # the handler keeps failing
        else:
            pytest.fail("the poison message never reached the dead-letter queue")
        assert redeliveries == 3  # first delivery + 2 redeliveries, then dead-lettered
        assert channel.basic_get(queue) is None  # the queue is not blocked by it
    finally:
        channel.queue_delete(queue)
        channel.queue_delete(f"{queue}.dead-letter")
        connection.close()


def test_envelope_routing_and_headers_follow_the_convention() -> None:
    event = events_pb2.SubjectRegistered(subject_id="sub_abc", masked_identifier="330106********123X")
    envelope = Envelope.for_event(
        "identity", event, "sub_abc", {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
    )
    assert (envelope.exchange, envelope.routing_key) == ("identity.events", "subject_registered")
    headers = envelope.headers()
    assert headers["ce-type"] == "govmesh.identity.v1.SubjectRegistered"
    assert headers["ce-subject"] == "sub_abc" and headers["traceparent"].startswith("00-111")
    assert json.loads(envelope.body) == {"maskedIdentifier": "330106********123X", "subjectId": "sub_abc"}
    assert messaging.routing_key_for("LevelChanged") == "level_changed"


@dataclass
class SqliteRelay:
    """A relay on a SQLite database of its own, and another connection that takes the write lock
    (as crowd's ingest processes do) when the test says."""

    db: Database
    outbox: Outbox
    relay: OutboxRelay
    integrator: Integrator
    other_writer: sqlite3.Connection

    def lock(self) -> None:
        self.other_writer.execute("BEGIN IMMEDIATE")

    def unlock(self) -> None:
        self.other_writer.execute("ROLLBACK")

    def assert_each_delivered_once(self, subjects: list[str]) -> None:
        ce_ids = ours(self.integrator.drain(), subjects)
        assert len(ce_ids) == len(subjects) and len(set(ce_ids)) == len(subjects)


@pytest.fixture
def sqlite_relay(tmp_path: Path, amqp_uri: str) -> Iterator[SqliteRelay]:
    db = service_database("identity", f"sqlite:///{tmp_path / 'identity.db'}")
    db.migrate()
    outbox = Outbox("identity", store.outbox, store.inbox)
    parts = SqliteRelay(
        db,
        outbox,
        OutboxRelay(db, outbox, ConfirmingPublisher(amqp_uri, "identity")),
        Integrator(amqp_uri, "identity.events"),
        sqlite3.connect(tmp_path / "identity.db", isolation_level=None),
    )
    yield parts
    parts.other_writer.close()
    parts.relay.publisher.close()
    parts.integrator.close()
    db.dispose()


def test_events_keep_leaving_while_another_writer_holds_sqlites_lock_each_once(sqlite_relay: SqliteRelay) -> None:
    """On SQLite the relay publishes, then marks in a second transaction, which needs the write
    lock. While another process holds it (crowd's ingest batches), the rows confirmed wait for a
    moment it is free, left out of the next reads: events committed meanwhile leave at once, and
    none is published twice (the relay once sent a fifth of approvals' events twice under load)."""
    db, outbox, relay = sqlite_relay.db, sqlite_relay.outbox, sqlite_relay.relay
    first = queue_events(db, outbox, 5)
    sqlite_relay.lock()
    assert relay.publish_pending() == 5
    assert relay.publish_pending() == 0  # confirmed, not marked, not sent again
    sqlite_relay.unlock()
    second = queue_events(db, outbox, 3)
    sqlite_relay.lock()
    assert relay.publish_pending() == 3  # the new ones only
    assert unpublished(db, outbox) == 8  # nothing marked while the lock was taken
    sqlite_relay.unlock()
    assert relay.publish_pending() == 0
    assert unpublished(db, outbox) == 0  # marked at the first round the lock was free
    sqlite_relay.assert_each_delivered_once(first + second)


@pytest.fixture
def short_lock_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set before the database is made: its connections' busy timeout is taken from it then."""
    monkeypatch.setattr("govmesh.db.SQLITE_LOCK_WAIT_SECONDS", 0.3)


def test_events_confirmed_and_unmarked_too_long_wait_for_the_lock(
    short_lock_wait: None, sqlite_relay: SqliteRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows confirmed and not marked are not left so for ever: past MARK_WITHIN_SECONDS the relay
    waits for the lock to mark them, and when it cannot (the database busy past the wait) it
    marks them later rather than publishing them again."""
    monkeypatch.setattr("govmesh.outbox.MARK_WITHIN_SECONDS", 0.0)
    db, outbox, relay = sqlite_relay.db, sqlite_relay.outbox, sqlite_relay.relay
    subjects = queue_events(db, outbox, 5)
    sqlite_relay.lock()
    with pytest.raises(sa.exc.OperationalError):
        relay.publish_pending()  # published, then waited for the lock to mark them
    sqlite_relay.unlock()
    assert relay.publish_pending() == 0
    assert unpublished(db, outbox) == 0
    sqlite_relay.assert_each_delivered_once(subjects)


def test_a_stopping_relay_marks_what_it_sent(sqlite_relay: SqliteRelay, amqp_uri: str) -> None:
    """Rows confirmed while the lock was taken are marked as the relay stops, so a restart does
    not send them again."""
    db, outbox, relay = sqlite_relay.db, sqlite_relay.outbox, sqlite_relay.relay
    subjects = queue_events(db, outbox, 2)
    sqlite_relay.lock()

    def stop_after_one_round(_seconds: float) -> None:
        sqlite_relay.unlock()
        relay.stop()

    relay.run(sleep=stop_after_one_round)
    assert unpublished(db, outbox) == 0
    restarted = OutboxRelay(db, outbox, ConfirmingPublisher(amqp_uri, "identity"))
    assert restarted.publish_pending() == 0
    restarted.publisher.close()
    sqlite_relay.assert_each_delivered_once(subjects)


def test_an_idle_relay_on_sqlite_publishes_what_another_process_commits_before_its_next_poll(
    sqlite_relay: SqliteRelay,
) -> None:
    """An idle relay polls every idle_interval, and on SQLite looks in between, cheaply, whether
    another connection committed (crowd's ingest writes its level changes from another process):
    here the poll is a minute away, and the event still leaves."""
    db, outbox, relay = sqlite_relay.db, sqlite_relay.outbox, sqlite_relay.relay
    thread = threading.Thread(target=relay.run, kwargs={"idle_interval": 60.0})
    thread.start()
    try:
        first = queue_events(db, outbox, 1)
        sqlite_relay.integrator.receive(1, timeout=20)  # the first round may have come before it
        second = queue_events(db, outbox, 1)
        deliveries = sqlite_relay.integrator.receive(1, timeout=20)
        # The subscriber may have it before the relay has the broker's confirm: stopping then would
        # close the publisher under the relay, which sends it again after a restart.
        wait_for(lambda: unpublished(db, outbox) == 0)
    finally:
        relay.stop()
        thread.join(5)
    assert ours(deliveries, second) and not ours(deliveries, first)


def explained(session: sa.orm.Session, statement: sa.Select[Any] | str) -> str:
    """The database's plan for ``statement`` (SQL, or a select with its values inlined), as its
    EXPLAIN prints it."""
    if not isinstance(statement, str):
        statement = str(statement.compile(dialect=session.bind.dialect, compile_kwargs={"literal_binds": True}))
    explain = "EXPLAIN QUERY PLAN" if session.bind.dialect.name == "sqlite" else "EXPLAIN"
    return "\n".join(str(row[-1]) for row in session.execute(sa.text(f"{explain} {statement}")))


def test_an_idle_relay_on_postgresql_looks_without_locking_even_after_an_exactly_full_batch(
    postgres: PostgresDatabases, outbox: Outbox, amqp_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle relay looks for an unsent event with one plain statement, and takes its locking
    read only when there is something to publish; a batch that was exactly full, whose next read
    finds nothing, leaves it idle too, not locking on every poll until a partial batch comes."""
    # Its floor moves at once, and it looks from the start of the index at its first round only
    # (a look from the start comes before any read).
    monkeypatch.setattr(outbox_module, "FLOOR_LAG_SECONDS", 0.0)
    monkeypatch.setattr(outbox_module, "LOOK_FROM_THE_START_EVERY_SECONDS", 3600.0)
    db = service_database("identity", postgres.create())
    db.migrate()
    locking: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "FOR UPDATE" in statement:
            locking.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", seen)
    integrator = Integrator(amqp_uri, "identity.events")
    relay = OutboxRelay(db, outbox, ConfirmingPublisher(amqp_uri, "identity"), batch_size=5)
    try:
        subjects = queue_events(db, outbox, 5)
        assert relay.publish_pending() == 5  # exactly a batch: there may be more
        assert relay.publish_pending() == 0  # there was not
        assert len(locking) == 2
        for _ in range(5):
            assert relay.publish_pending() == 0
        assert len(locking) == 2  # idle: it only looked
        later = queue_events(db, outbox, 1)
        assert relay.publish_pending() == 1 and len(locking) == 3
        assert len(set(ours(integrator.receive(6), subjects + later))) == 6 and unpublished(db, outbox) == 0
    finally:
        relay.publisher.close()
        integrator.close()
        db.dispose()


def test_the_relays_reads_and_the_backlog_on_postgresql_take_the_pending_index_whatever_the_statistics_say(
    postgres: PostgresDatabases, outbox: Outbox, amqp_uri: str
) -> None:
    """Statistics taken while most events waited (mid-seed) must not send the relay's read along
    the primary key, or the backlog's count through the whole table, past every event sent since:
    they read through ix_outbox_pending, which holds the waiting events only."""
    db = service_database("identity", postgres.create())
    db.migrate()
    relay = OutboxRelay(db, outbox, ConfirmingPublisher(amqp_uri, "identity"))
    try:
        queue_events(db, outbox, 5_000)
        with db.transaction() as session:
            session.execute(sa.text("ANALYZE outbox"))  # 100% unpublished, as the statistics will say
            session.execute(sa.text("UPDATE outbox SET published_at = now() WHERE seq <= 4900"))
        with db.read() as session:
            plans = [
                explained(session, statement)
                for statement in (
                    relay._unpublished,
                    outbox_module._FIRST_UNPUBLISHED % {"floor": 0},
                    outbox.backlog_count,
                )
            ]
            assert outbox.backlog(session) == 100
        for plan in plans:  # the relay's batch read, its idle look, the backlog gauge's count
            assert "ix_outbox_pending" in plan, plan
        assert relay.publish_pending() == 100
    finally:
        relay.publisher.close()
        db.dispose()


def buffers_read(session: sa.orm.Session, statement: str) -> int:
    """The pages PostgreSQL read to run ``statement``, as EXPLAIN (ANALYZE, BUFFERS) counts them."""
    plan = "\n".join(str(row[0]) for row in session.execute(sa.text(f"EXPLAIN (ANALYZE, BUFFERS) {statement}")))
    return sum(int(n) for n in re.findall(r"(?:hit|read)=(\d+)", plan.split("Planning")[0]))


def test_a_relay_on_postgresql_reads_above_what_it_sent_not_through_the_dead_entries_of_sent_events(
    postgres: PostgresDatabases, outbox: Outbox, amqp_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event sent leaves a dead entry in ix_outbox_pending until VACUUM; the relay reads above
    the events it sent FLOOR_LAG_SECONDS ago, so it does not walk them (at a million people's
    seed, 13 ms a look from the start of the index)."""
    monkeypatch.setattr(outbox_module, "FLOOR_LAG_SECONDS", 0.0)
    monkeypatch.setattr(outbox_module, "LOOK_FROM_THE_START_EVERY_SECONDS", 3600.0)  # its first look only
    db = service_database("identity", postgres.create())
    db.migrate()
    with db.transaction() as session:  # the dead entries stay, whatever the server's autovacuum
        session.execute(sa.text("ALTER TABLE outbox SET (autovacuum_enabled = off)"))
    relay = OutboxRelay(db, outbox, ConfirmingPublisher(amqp_uri, "identity"), batch_size=500)
    reads: list[Any] = []

    def read(*args: Any) -> None:
        if "FOR UPDATE" in str(args[2]):
            reads.append(args[3]["seq_1"])

    try:
        for _ in range(4):
            queue_events(db, outbox, 2_500)
            while relay.publish_pending():
                pass
        assert unpublished(db, outbox) == 0
        with db.read() as session:
            newest = session.execute(sa.select(sa.func.max(outbox.outbox.c.seq))).scalar_one()
            above = buffers_read(session, outbox_module._FIRST_UNPUBLISHED % {"floor": newest})
            from_the_start = buffers_read(session, outbox_module._FIRST_UNPUBLISHED % {"floor": 0})
        assert above < 50 and above * 10 < from_the_start, (above, from_the_start)
        sa.event.listen(db.engine, "before_cursor_execute", read)
        queue_events(db, outbox, 3)
        assert relay.publish_pending() == 3 and unpublished(db, outbox) == 0
        assert reads == [newest]  # read from above the last event sent
    finally:
        relay.publisher.close()
        db.dispose()


@pytest.mark.parametrize("late", [1, 12])
def test_events_committed_after_the_relays_floor_passed_their_seqs_are_still_sent(
    postgres: PostgresDatabases, outbox: Outbox, amqp_uri: str, monkeypatch: pytest.MonkeyPatch, late: int
) -> None:
    """A transaction that took its events' seqs, then committed after the relay had sent later
    events and its floor had passed them: the relay's look from the start of the index finds
    them, LOOK_FROM_THE_START_EVERY_SECONDS later at most, and reads on batch after batch (a
    transaction may hold more than a batch: identity registers a thousand people in one)."""
    monkeypatch.setattr(outbox_module, "FLOOR_LAG_SECONDS", 0.0)
    monkeypatch.setattr(outbox_module, "LOOK_FROM_THE_START_EVERY_SECONDS", 2.0)
    db = service_database("identity", postgres.create())
    db.migrate()
    integrator = Integrator(amqp_uri, "identity.events")
    relay = OutboxRelay(db, outbox, ConfirmingPublisher(amqp_uri, "identity"), batch_size=5)
    try:
        assert relay.publish_pending() == 0  # its first look, from the start
        slow = [f"sub_test{uuid.uuid4().hex}" for _ in range(late)]
        with db.transaction() as held:
            for subject in slow:
                outbox.add(held, events_pb2.SubjectRegistered(subject_id=subject), subject=subject)
            held.flush()  # the seqs are taken now
            quick = queue_events(db, outbox, 5)
            assert relay.publish_pending() == 5
            assert relay.publish_pending() == 0
        # Committed now, below the floor: not in the looks above it (the relay just looked from
        # the start, as far as it knows)...
        relay._looked_from_the_start = time.monotonic()
        assert relay.publish_pending() == 0 and relay._floor > 0 and unpublished(db, outbox) == late
        # ...and sent by the next look from the start, and the rounds right after it.
        rounds: list[int] = []
        wait_for(lambda: rounds.append(relay.publish_pending()) or rounds[-1] > 0, timeout=10)
        rounds += [relay.publish_pending() for _ in range(late // 5 + 1)]
        assert rounds[-(late // 5 + 2) :] == [*[5] * (late // 5), late % 5, 0]
        assert unpublished(db, outbox) == 0
        delivered = ours(integrator.receive(late + 5), [*slow, *quick])
        assert len(set(delivered)) == late + 5
    finally:
        relay.publisher.close()
        integrator.close()
        db.dispose()


def test_a_relay_deletes_the_events_it_sent_longer_ago_than_it_keeps_them_and_nothing_else(
    db: Database, outbox: Outbox, amqp_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sent before the cut: deleted, a few statements of the oldest rows at a time. Sent since
    (even among the old ones), or not sent at all however old: kept, and still published."""
    table = outbox.outbox
    relay = OutboxRelay(db, outbox, ConfirmingPublisher(amqp_uri, "identity"), keep_sent_seconds=3600)
    try:
        queue_events(db, outbox, 12)
        assert relay.publish_pending() == 12
        with db.read() as session:
            seqs = list(session.execute(sa.select(table.c.seq).order_by(table.c.seq)).scalars())
        two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
        with db.transaction() as session:
            # The third was sent since the cut: kept. The eleventh is behind a batch's rows that stay
            # (the third, the fifth unsent, and the eighth and ninth): kept until the next prune.
            old = [seqs[n] for n in (0, 1, 3, 5, 6, 10)]
            session.execute(table.update().where(table.c.seq.in_(old)).values(published_at=two_hours_ago))
            session.execute(table.update().where(table.c.seq == seqs[4]).values(published_at=None))  # never sent
        queue_events(db, outbox, 2)
        pruned = metrics.OUTBOX_PRUNED.labels("identity")._value.get()

        between: list[int] = []
        monkeypatch.setattr(outbox_module, "let_others_run", lambda: between.append(len(between)))
        assert relay.prune_sent(batch=4) == 5  # the first four rows hold 3 to delete, the next four 2
        assert between == [0, 1]  # the process's other threads ran between statements
        with db.read() as session:
            left = list(session.execute(sa.select(table.c.seq).order_by(table.c.seq)).scalars())
        assert left == [seqs[2], seqs[4], *seqs[7:], *left[-2:]] and len(left) == 2 + 5 + 2
        assert metrics.OUTBOX_PRUNED.labels("identity")._value.get() == pruned + 5
        assert relay.prune_sent(batch=4) == 0
        assert relay.publish_pending() == 3 and unpublished(db, outbox) == 0  # the unsent one and the two new
        forever = OutboxRelay(db, outbox, ConfirmingPublisher(amqp_uri, "identity"))
        with db.transaction() as session:
            session.execute(table.update().values(published_at=two_hours_ago))
        assert forever.prune_sent() == 0  # a relay told no keep time keeps everything
        forever.publisher.close()
    finally:
        relay.publisher.close()


def test_two_relays_prune_one_outbox_at_once_each_row_once_and_neither_waits_for_the_others_rows(
    postgres: PostgresDatabases, outbox: Outbox, amqp_uri: str
) -> None:
    """Two workers of one service on PostgreSQL: their prunes, at the same moment, delete every
    expired row once between them, with no error (a deadlock would cancel one); and rows another
    transaction holds are skipped, not waited for."""
    db = service_database("identity", postgres.create())
    db.migrate()
    table = outbox.outbox
    long_ago = datetime.now(UTC) - timedelta(days=2)
    with db.transaction() as session:
        session.execute(
            sa.text(
                "INSERT INTO outbox (event_id, event_type, source, subject, occurred_at, exchange, routing_key,"
                " body, trace_headers, published_at) SELECT gen_random_uuid()::text, 't', 's', 'sub_' || n, now(),"
                " 'identity.events', 'k', '{}', '{}', :at FROM generate_series(1, 20000) AS n"
            ),
            {"at": long_ago},
        )
    relays = [
        OutboxRelay(db, outbox, ConfirmingPublisher(amqp_uri, "identity"), keep_sent_seconds=60) for _ in range(2)
    ]
    start = threading.Barrier(2)
    pruned: list[int] = []
    failures: list[BaseException] = []

    def prune(relay: OutboxRelay) -> None:
        start.wait()
        try:
            pruned.append(sum(relay.prune_sent(batch=50) for _ in range(40)))  # many statements: many chances to cross
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            failures.append(exc)

    threads = [threading.Thread(target=prune, args=(relay,)) for relay in relays]
    try:
        with db.transaction() as session:  # a third holds the oldest ten while the two prune
            held = (
                session.execute(sa.select(table.c.seq).order_by(table.c.seq).limit(10).with_for_update())
                .scalars()
                .all()
            )
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert failures == [] and sum(pruned) == 20000 - 10
        with db.read() as session:
            assert session.execute(sa.select(table.c.seq).order_by(table.c.seq)).scalars().all() == held
        assert relays[0].prune_sent() == 10
    finally:
        for relay in relays:
            relay.publisher.close()
        db.dispose()


def test_a_relays_pruning_goes_on_while_its_database_is_away(
    outbox: Outbox, amqp_uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    away = Database("postgresql+psycopg://govmesh@127.0.0.1:1/none", schema="identity", migrations=Path("."))
    relay = OutboxRelay(away, outbox, ConfirmingPublisher(amqp_uri, "identity"), keep_sent_seconds=5)
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 2:
            relay.stop()

    relay.run_pruning(sleep=pause)
    assert pauses == [5, 5]  # every keep time, when shorter than a minute
    assert caplog.text.count("outbox relay: could not prune (database away or busy), again in 5s") == 2
    away.dispose()


#: Each service's revision before its outbox's index held the waiting events only.
BEFORE_PENDING_INDEX = {"identity": "0001", "crowd": "0001", "health": "0001", "records": "0002", "approvals": "0003"}


@pytest.mark.parametrize("service", sorted(BEFORE_PENDING_INDEX))
def test_every_services_outbox_index_moves_to_what_the_relay_reads_and_back(database_url: str, service: str) -> None:
    """A database with sent and waiting events, migrated from the revision before: its outbox's
    index holds the waiting events only, the relay's read and the backlog find them through it,
    and the migration goes back down to the index of every row."""
    db = service_database(service, database_url)
    table, inbox = messaging_tables(sa.MetaData())
    ours = Outbox(service, table, inbox)

    def indexes() -> set[str]:
        with db.engine.connect() as connection:
            return {
                index["name"] or ""
                for index in sa.inspect(connection).get_indexes("outbox", None if db.is_sqlite else db.schema)
            }

    try:
        db.migrate(BEFORE_PENDING_INDEX[service])
        before = indexes()
        assert "ix_outbox_unpublished" in before and "ix_outbox_pending" not in before
        with db.transaction() as session:
            ours.add_many(
                session, [(events_pb2.SubjectRegistered(subject_id=f"sub_{n}"), f"sub_{n}") for n in range(5)]
            )
            session.execute(table.update().where(table.c.seq <= 3).values(published_at=sa.func.now()))
        db.migrate()
        # The old index stays for the release before's relay, until a later release drops it.
        assert {"ix_outbox_pending", "ix_outbox_unpublished"} <= indexes()
        with db.read() as session:
            assert [row.subject for row in session.execute(ours.waiting(500))] == ["sub_3", "sub_4"]
            assert ours.backlog(session) == 2
            if db.is_sqlite:  # either index reads the waiting rows only, in seq's order
                plan = explained(session, ours.waiting(500))
                waiting_only = ("USING INDEX ix_outbox_pending", "USING INDEX ix_outbox_unpublished (published_at=?)")
                assert any(index in plan for index in waiting_only) and "TEMP B-TREE" not in plan, plan
            else:  # five rows are read whole, whatever the indexes, unless told not to
                session.execute(sa.text("SET enable_seqscan = off"))
                assert "ix_outbox_pending" in explained(session, ours.waiting(500))
                session.execute(sa.text("RESET enable_seqscan"))
        with db.engine.connect() as connection:  # outside a transaction: alembic begins its own
            command.downgrade(db._alembic_config(connection), BEFORE_PENDING_INDEX[service])
        after = indexes()
        assert "ix_outbox_unpublished" in after and "ix_outbox_pending" not in after
        with db.read() as session:
            assert ours.backlog(session) == 2
    finally:
        db.dispose()


def test_the_pending_index_is_built_while_the_outbox_takes_events(postgres: PostgresDatabases, outbox: Outbox) -> None:
    """The outbox's index migration on PostgreSQL, while a transaction that wrote an event is still
    open: the build waits for that transaction, and an event written meanwhile is not held up
    (a plain CREATE INDEX would hold it, and every proof and case of the service with it, until
    the open transaction ends and the table is read through)."""
    db = service_database("identity", postgres.create())
    db.migrate(BEFORE_PENDING_INDEX["identity"])
    event = events_pb2.SubjectRegistered(subject_id="sub_open")
    pool = futures.ThreadPoolExecutor(1)
    try:
        with db.transaction() as open_one:
            outbox.add(open_one, event, subject="sub_open")
            migrating = pool.submit(db.migrate)

            wait_for(lambda: building_index(db), timeout=30)
            with db.transaction() as meanwhile:
                meanwhile.execute(sa.text("SET LOCAL lock_timeout = '3s'"))
                outbox.add(meanwhile, event, subject="sub_meanwhile")  # not held up: no lock timeout
            assert not migrating.done(), "the build waits for the transaction that was open when it began"
        migrating.result(30)
        assert pending_index_valid(db) is True
        assert unpublished(db, outbox) == 2
    finally:
        pool.shutdown(wait=True)
        db.dispose()


def test_a_pending_index_build_cut_off_is_built_anew_when_the_migration_runs_again(
    postgres: PostgresDatabases, outbox: Outbox
) -> None:
    """A concurrent build cut off (here cancelled while it waits) leaves an INVALID index and its
    revision unrecorded: the migration run again drops it and builds a valid one."""
    db = service_database("identity", postgres.create())
    db.migrate(BEFORE_PENDING_INDEX["identity"])
    pool = futures.ThreadPoolExecutor(1)
    try:
        with db.transaction() as open_one:
            # A transaction writing the outbox, which the build waits for.
            outbox.add(open_one, events_pb2.SubjectRegistered(subject_id="sub_open"), subject="sub_open")
            migrating = pool.submit(db.migrate)
            wait_for(lambda: building_index(db, cancel=True), timeout=30)
            with pytest.raises(sa.exc.OperationalError, match="canceling statement"):
                migrating.result(30)
        assert pending_index_valid(db) is False
        assert db.readiness() is not None, "the revision was not recorded"
        db.migrate()
        assert pending_index_valid(db) is True
        assert db.readiness() is None
    finally:
        pool.shutdown(wait=True)
        db.dispose()


def test_a_second_migrator_waits_for_the_first_building_the_index_and_both_finish(
    postgres: PostgresDatabases, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Two `govmesh migrate` of one service at once, the first building the pending index while a
    write holds it up: the second waits for the first's lock, saying so, with no snapshot the
    build would wait for in its turn (waiting in a transaction, the two deadlocked and the server
    failed one); then the first finishes, and the second finds nothing left to do."""
    db = service_database("identity", postgres.create())
    db.migrate(BEFORE_PENDING_INDEX["identity"])
    pool = futures.ThreadPoolExecutor(2)
    try:
        with db.transaction() as open_one, caplog.at_level(logging.INFO, logger="govmesh.db"):
            outbox.add(open_one, events_pb2.SubjectRegistered(subject_id="sub_open"), subject="sub_open")
            first = pool.submit(db.migrate)
            wait_for(lambda: building_index(db), timeout=30)
            second = pool.submit(db.migrate)
            wait_for(lambda: "waiting for another govmesh migrate of identity" in caplog.text, timeout=10)
        first.result(30)
        second.result(30)
        assert pending_index_valid(db) is True
        assert db.readiness() is None
    finally:
        pool.shutdown(wait=True)
        db.dispose()


def building_index(db: Database, cancel: bool = False) -> bool:
    """Whether a build of ix_outbox_pending waits on a lock now (cancelled, if ``cancel``)."""
    builds = lock_waiters(db, "CREATE INDEX%ix_outbox_pending%")
    with db.engine.connect() as connection:
        for pid in builds if cancel else ():
            connection.execute(sa.text("SELECT pg_cancel_backend(:pid)"), {"pid": pid})
    return bool(builds)


def lock_waiters(db: Database, statement_like: str) -> list[int]:
    """The backends of ``db``'s own database (not another test's) waiting on a lock in a statement
    like ``statement_like`` (SQL's LIKE, case aside), now."""
    with db.engine.connect() as connection:
        waiting = sa.text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND query ILIKE :statement AND wait_event_type = 'Lock'"
        )
        return list(connection.execute(waiting, {"statement": statement_like}).scalars())


def pending_index_valid(db: Database) -> bool | None:
    """Whether ix_outbox_pending is valid (None: there is none)."""
    with db.engine.connect() as connection:
        valid = sa.text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('ix_outbox_pending')")
        result: bool | None = connection.execute(valid).scalar()
        return result
