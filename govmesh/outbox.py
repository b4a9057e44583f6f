"""Transactional outbox and inbox, the two halves of "no event lost, none applied twice".

Outbox: a domain change and the events it causes are written in ONE transaction; the relay
publishes committed rows afterwards and marks them sent. If the relay or broker dies between
publish and mark, the row is published again: delivery is at-least-once, with a stable ce-id.
Inbox: a consumer with no key of its own domain to keep its effect single records each ce-id it
applied in the transaction of its effect, so the second delivery of the same event finds it there
and has no effect (the services' handlers have such keys instead:
docs/decisions/runtime-effects-single-by-each-handlers-key.md). Together: exactly once as
consumers see it.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from google.protobuf.message import Message
from opentelemetry import trace
from sqlalchemy.orm import Session

from govmesh import metrics, tracing
from govmesh.db import CommitWatch, Database, execute_on_driver, insert_new
from govmesh.messaging import BrokerUnavailable, ConfirmingPublisher, Envelope, RenderedEvent

log = logging.getLogger(__name__)


def messaging_tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    """The outbox and inbox tables, added to a service's own metadata (its own database)."""
    outbox = sa.Table(
        "outbox",
        metadata,
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("subject", sa.String(100), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("exchange", sa.String(200), nullable=False),
        sa.Column("routing_key", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("trace_headers", sa.Text(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        # Read by the code of the release before only; a later release's migration drops it.
        sa.Index("ix_outbox_unpublished", "published_at", "seq"),
        # Only the events waiting to be published (govmesh.migration_ops.outbox_pending_index_v2).
        sa.Index(
            "ix_outbox_pending",
            "seq",
            postgresql_where=sa.text("published_at IS NULL"),
            sqlite_where=sa.text("published_at IS NULL"),
        ),
    )
    inbox = sa.Table(
        "inbox",
        metadata,
        sa.Column("consumer", sa.String(200), primary_key=True),
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),
    )
    return outbox, inbox


class Outbox:
    def __init__(self, service: str, outbox: sa.Table, inbox: sa.Table) -> None:
        self.service = service
        self.outbox = outbox
        self.inbox = inbox

    def add(self, session: Session, event: Message, subject: str) -> Envelope:
        """Queue `event` for publication in the caller's transaction."""
        return self.add_many(session, [(event, subject)])[0]

    def add_many(
        self, session: Session | sa.Connection, events: Sequence[tuple[Message | RenderedEvent, str]]
    ) -> list[Envelope]:
        """Queue several (event, subject) pairs in one statement, in order."""
        envelopes = self.envelopes(events)
        if envelopes:
            session.execute(self.outbox.insert(), outbox_rows(envelopes))
        return envelopes

    def envelopes(self, events: Sequence[tuple[Message | RenderedEvent, str]]) -> list[Envelope]:
        """The (event, subject) pairs as they are queued, in the current trace, for a caller that
        writes their rows (outbox_rows) in a statement of its own with its other writes."""
        trace_headers = {k: str(v) for k, v in tracing.inject_headers({}).items()}
        return [Envelope.for_event(self.service, event, subject, trace_headers) for event, subject in events]

    def claim(self, session: Session, consumer: str, event_id: str) -> bool:
        """Record that `consumer` applies `event_id` in this transaction; False if it already did.

        Two deliveries claimed at once (competing workers after a redelivery): the second waits
        on the first's row (PostgreSQL; SQLite has one writer) and is told False once the first
        committed, or claims it if the first rolled back; it is never an error that would
        requeue the event."""
        claimed = session.execute(
            insert_new(session, self.inbox)
            .values(consumer=consumer, event_id=event_id, handled_at=datetime.now(UTC))
            .returning(self.inbox.c.event_id)
        ).first()
        return claimed is not None

    def waiting(self, limit: int) -> sa.Select[tuple[object, ...]]:
        """The oldest ``limit`` events waiting to be published, read through ix_outbox_pending,
        which holds those rows only. With an index of every row instead, statistics taken mid-seed
        (55% unpublished) made PostgreSQL read along the primary key, filtering out every published
        row on the way: each batch of 500 walked ~980,000 sent rows, 1,030 ms against 3.9 ms, and a
        200,000-person seed ended with 840,000 events unsent."""
        table = self.outbox
        return sa.select(table).where(table.c.published_at.is_(None)).order_by(table.c.seq).limit(limit)

    @property
    def backlog_count(self) -> sa.Select[int]:
        """The events waiting, counted in ix_outbox_pending: ordered by its column, since a plain
        count, with statistics that say most rows wait, reads the whole table instead."""
        table = self.outbox
        pending = sa.select(table.c.seq).where(table.c.published_at.is_(None)).order_by(table.c.seq).subquery()
        return sa.select(sa.func.count()).select_from(pending)

    def backlog(self, session: Session) -> int:
        """How many events wait to be published (the backlog gauge)."""
        return int(session.execute(self.backlog_count).scalar_one())


def outbox_rows(envelopes: Sequence[Envelope]) -> list[dict[str, object]]:
    """The outbox table's rows of the envelopes."""
    return [
        {
            "event_id": envelope.event_id,
            "event_type": envelope.event_type,
            "source": envelope.source,
            "subject": envelope.subject,
            "occurred_at": envelope.time,
            "exchange": envelope.exchange,
            "routing_key": envelope.routing_key,
            "body": envelope.body,
            "trace_headers": json.dumps(envelope.trace_headers),
        }
        for envelope in envelopes
    ]


class _PublishSpans:
    """A PRODUCER span per relayed event, in the trace of the request or handler that wrote its
    row (the row keeps its traceparent), from the relay's publish to the broker's confirm. The
    event leaves with the span's own traceparent, so its consumers hang under the publication."""

    def __init__(self, envelopes: Sequence[Envelope]) -> None:
        self.spans: list[trace.Span] = []
        self.envelopes: list[Envelope] = []
        tracer = tracing.tracer(__name__)
        exporting = tracing.exporting()
        for envelope in envelopes:
            if not envelope.trace_headers or not exporting:
                # Written outside any trace (a timer's work): publishing starts none of its own.
                # Nor when no exporter takes spans, where one would cost CPU for nothing: the
                # event leaves with its writer's traceparent, and its consumers join the trace.
                self.envelopes.append(envelope)
                continue
            span = tracer.start_span(
                f"{envelope.exchange} {envelope.routing_key} publish",
                context=tracing.extract_context(envelope.trace_headers),
                kind=trace.SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "rabbitmq",
                    "messaging.destination.name": envelope.exchange,
                    "messaging.rabbitmq.destination.routing_key": envelope.routing_key,
                    "messaging.message.id": envelope.event_id,
                },
            )
            headers = tracing.inject_headers({}, trace.set_span_in_context(span))
            self.spans.append(span)
            self.envelopes.append(replace(envelope, trace_headers={k: str(v) for k, v in headers.items()}))

    def end(self, failure: BaseException | None = None) -> None:
        for span in self.spans:
            if failure is not None:
                span.set_status(trace.Status(trace.StatusCode.ERROR, type(failure).__name__))
            span.end()


def _publish(publisher: ConfirmingPublisher, envelopes: Sequence[Envelope]) -> None:
    spans = _PublishSpans(envelopes)
    try:
        publisher.publish(spans.envelopes)
    except BaseException as exc:
        spans.end(exc)
        raise
    spans.end()


def _envelope(row: sa.Row[tuple[object, ...]]) -> Envelope:
    mapping = row._mapping
    occurred: datetime = mapping["occurred_at"]
    return Envelope(
        event_id=mapping["event_id"],
        event_type=mapping["event_type"],
        source=mapping["source"],
        subject=mapping["subject"],
        time=occurred if occurred.tzinfo else occurred.replace(tzinfo=UTC),
        exchange=mapping["exchange"],
        routing_key=mapping["routing_key"],
        body=mapping["body"],
        trace_headers=json.loads(mapping["trace_headers"]),
    )


#: How long at most rows confirmed by the broker wait for a moment SQLite's write lock is free
#: before the relay waits for the lock to mark them (and so how many a relay that dies sends again).
MARK_WITHIN_SECONDS = 1.0


#: The longest a relay waits between tries while the broker or its database is away. A try is one
#: connection attempt, cheap for the broker; every event committed meanwhile waits for the next try
#: once the broker is back, so a long back-off (it was 30 s) is a long delay for citizens' events
#: after a short outage.
RETRY_AT_MOST_EVERY = 5.0

#: How often at most a relay deletes the events it sent longer ago than it keeps them.
PRUNE_EVERY_SECONDS = 60.0
#: However short the keep times, a relay prunes no more often than this.
PRUNE_AT_LEAST_EVERY_SECONDS = 1.0
#: The oldest rows one delete statement looks at (~14 ms of it on PostgreSQL); a prune goes on
#: until a statement deletes none, for PRUNE_AT_MOST_SECONDS at most.
PRUNE_BATCH = 5000
#: On SQLite, whose statements block a worker's green threads while they run: ~8 ms of deleting.
PRUNE_BATCH_SQLITE = 500
PRUNE_AT_MOST_SECONDS = 2.0


def let_others_run() -> None:
    """Yields to the process's other threads: green ones too, in a worker (eventlet patches sleep)."""
    time.sleep(0)


#: A relay's look on PostgreSQL (the table is messaging_tables' outbox, in the service's schema):
#: the first event waiting above a floor, and the newest event. Ordered, as the relay's read is:
#: unordered, statistics that say most rows wait would make a scan of the whole table look cheaper
#: than the index for one row.
_FIRST_UNPUBLISHED = "SELECT seq FROM outbox WHERE published_at IS NULL AND seq > %(floor)s ORDER BY seq LIMIT 1"
_LOOK = "SELECT (" + _FIRST_UNPUBLISHED + "), (SELECT max(seq) FROM outbox)"  # noqa: S608 - constants only

#: The relay's reads on PostgreSQL start above the highest event it had sent this long ago. An
#: event sent leaves a dead entry in ix_outbox_pending until VACUUM removes it, and autovacuum
#: comes after a fifth of the table has changed: with a day of a million people's events kept
#: (9 million rows) a read from the start of the index walked ~6,700 pages of dead entries, 13 ms,
#: ten times a second, and 50 cases/s fell behind (p99 submit -> decided 11.6 s). Above the
#: floor there are only the events of the last seconds.
FLOOR_LAG_SECONDS = 2.0
#: An event whose transaction took its seq before the floor passed it and committed later (a
#: transaction open longer than FLOOR_LAG_SECONDS, or rows another relay locked and gave back) is
#: below the floor: a look from the start of the index finds it, this often.
LOOK_FROM_THE_START_EVERY_SECONDS = 10.0

#: How often an idle relay on SQLite looks whether anything committed (CommitWatch).
COMMIT_LOOK_SECONDS = 0.002


class OutboxRelay:
    """Publishes committed outbox rows in commit order, in batches, with publisher confirms; a
    row is marked sent only after the broker confirmed it.

    On PostgreSQL rows are locked while they are published (FOR UPDATE SKIP LOCKED), so several
    relays of one service never publish the same row twice. On SQLite (one writer, one relay)
    nothing is locked while the broker answers."""

    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        publisher: ConfirmingPublisher,
        batch_size: int = 500,
        keep_sent_seconds: float | None = None,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.publisher = publisher
        #: How long sent events stay in the outbox (None: for ever): the broker has them by then,
        #: and every subscriber's queue; kept, they would be most of a service's database.
        self.keep_sent_seconds = keep_sent_seconds
        self.batch_size = batch_size
        self._stop = threading.Event()
        #: Rows the broker confirmed that are not marked sent yet (SQLite's write lock taken, or
        #: the database away): marked on a later round, never published again by this relay.
        self._confirmed_unmarked: list[int] = []
        self._unmarked_since = 0.0
        #: SQLite: whether another connection committed since the relay last looked.
        self._commits: CommitWatch | None = None
        #: Whether the last round left nothing behind: the next one looks before it locks.
        self._idle = True
        self._unpublished = outbox.waiting(batch_size)
        #: PostgreSQL: seqs up to which this relay had sent every event it saw, with when; the
        #: highest of them FLOOR_LAG_SECONDS old is the floor of its reads.
        self._marks: collections.deque[tuple[float, int]] = collections.deque()
        self._floor = 0
        #: PostgreSQL: the last seq of a full batch, which the next read goes on from.
        self._resume_after: int | None = None
        #: When the relay last read from the start of the index, all through.
        self._looked_from_the_start = -math.inf

    def publish_pending(self) -> int:
        """One batch; returns how many events were published (0 when there was nothing)."""
        table = self.outbox.outbox
        unpublished = self._unpublished
        if self.db.is_sqlite:
            # SQLite has one writer: holding its lock while the broker answers would stall every
            # write of the service. Read, publish, then mark; one relay per SQLite database.
            # Marking needs that lock, which the service's other processes may hold for a while
            # (crowd's ingest batches): rows confirmed and not marked yet are left out of the next
            # read and marked when the lock is free, so a new event never waits for the marking of
            # the ones before it (docs/decisions/runtime-outbox-marks-when-the-lock-is-free.md).
            if self._confirmed_unmarked:
                unpublished = unpublished.where(table.c.seq.not_in(self._confirmed_unmarked))
            with self.db.read() as session:
                rows = session.execute(unpublished).all()
            if rows:
                _publish(self.publisher, [_envelope(row) for row in rows])
                self._confirm([row._mapping["seq"] for row in rows])
            self._mark_confirmed(wait=self._must_mark_now())
        else:
            if self._confirmed_unmarked:
                self._mark_confirmed(wait=True)
            now = time.monotonic()
            from_the_start = now - self._looked_from_the_start >= LOOK_FROM_THE_START_EVERY_SECONDS
            floor = 0 if from_the_start else self._floor_at(now)
            if self._resume_after is not None:  # the last read was a full batch: read on from it
                floor = min(floor, self._resume_after)
            rows = self._publish_above(floor, now)
            if from_the_start:  # counted only once it succeeded
                self._looked_from_the_start = now
            # Events committed late below the floor may be more than a batch (identity registers
            # a thousand people in one transaction): the next rounds read on from the last one.
            self._resume_after = int(rows[-1]._mapping["seq"]) if len(rows) == self.batch_size else None
        self._idle = len(rows) < self.batch_size
        if rows:
            metrics.OUTBOX_PUBLISHED.labels(self.outbox.service).inc(len(rows))
        return len(rows)

    def _publish_above(self, floor: int, now: float) -> Sequence[sa.Row[Any]]:
        """PostgreSQL: one batch of the events waiting above ``floor``, published and marked sent."""
        table = self.outbox.outbox
        # From the start of the index, the look first: planned anew, unlike the read.
        if self._idle or floor == 0:
            first, newest = self._look(floor)
            if first is None:
                if newest is not None:
                    # Every event up to the newest is sent: the floor may move there too, so a
                    # relay that sends little (a second worker, an idle service) has one.
                    self._marks.append((now, newest))
                return []
            floor = first - 1
        # Several relays of one service lock the rows they publish and skip the others'.
        with self.db.transaction() as session:
            rows = session.execute(self._unpublished.where(table.c.seq > floor).with_for_update(skip_locked=True)).all()
            if not rows:  # another relay took them, or the last batch was exactly full
                return []
            _publish(self.publisher, [_envelope(row) for row in rows])
            self._confirm([row._mapping["seq"] for row in rows])
            self._mark_sent(session, self._confirmed_unmarked)
        self._confirmed_unmarked = []
        self._marks.append((time.monotonic(), int(rows[-1]._mapping["seq"])))
        return rows

    def _floor_at(self, now: float) -> int:
        """PostgreSQL: the seq the relay's reads start above: the highest up to which it had sent
        every event it saw FLOOR_LAG_SECONDS ago."""
        marks = self._marks
        while marks and now - marks[0][0] >= FLOOR_LAG_SECONDS:
            self._floor = max(self._floor, marks.popleft()[1])
        return self._floor

    def _look(self, floor: int) -> tuple[int | None, int | None]:
        """A relay's look on PostgreSQL: the first event waiting above ``floor``, and the newest
        event at all. One indexed statement, outside any transaction and below SQLAlchemy: a relay
        looks up to 50 times a second (approvals'), and the locking read in a transaction, at three
        round trips and a session, made an idle worker burn 13% of a core. The look from the start
        is planned anew each time: prepared on an empty outbox, its plan (along the primary key)
        later walked every event sent, 85 ms at 81,000."""
        with self.db.statement_reads() as connection:
            assert isinstance(connection, sa.Connection)
            first, newest = execute_on_driver(connection, _LOOK, {"floor": floor}, prepare=floor > 0).fetchone()
        return first, newest

    def prune_sent(self, batch: int | None = None) -> int:
        """Deletes the events sent more than ``keep_sent_seconds`` ago; returns how many. Each
        statement looks at the ``batch`` oldest rows only (through the primary key) and deletes
        those sent before the cut, until one deletes none: events leave in about the order they
        came, so the prunable ones are the oldest, and no statement reads the table further. An
        event still unsent (the broker away that long) stays, and so do rows sent more than a batch
        after it, until it is sent. Several relays of one service may prune at once: each deletes
        the rows it locked first and skips the others', so none waits on another's locks."""
        if self.keep_sent_seconds is None:
            return 0
        table = self.outbox.outbox
        cut = datetime.now(UTC) - timedelta(seconds=self.keep_sent_seconds)
        batch = batch or self._prune_batch
        oldest = sa.select(table.c.seq, table.c.published_at).order_by(table.c.seq).limit(batch).subquery()
        expired = sa.select(oldest.c.seq).where(oldest.c.published_at < cut)
        # Rows another pruner holds are its to delete (PostgreSQL; SQLite has one writer).
        taken = sa.select(table.c.seq).where(table.c.seq.in_(expired)).with_for_update(skip_locked=True)
        statement = table.delete().where(table.c.seq.in_(taken))
        deleted = self._delete_in_batches(statement)
        if deleted:
            log.info("outbox relay: deleted %d events sent before %s", deleted, cut.isoformat(timespec="seconds"))
            metrics.OUTBOX_PRUNED.labels(self.outbox.service).inc(deleted)
        return deleted

    @property
    def _prune_batch(self) -> int:
        return PRUNE_BATCH_SQLITE if self.db.is_sqlite else PRUNE_BATCH

    def _delete_in_batches(self, statement: sa.Delete) -> int:
        """Runs ``statement`` (a batch's delete) until it deletes nothing, for PRUNE_AT_MOST_SECONDS
        at most, a transaction each, letting the process's other threads run between two: on
        SQLite a statement blocks an eventlet worker's every green thread (the relay's, the
        handlers', the heartbeats') while it runs, and 2 s of them back to back froze a worker for
        2 s (a review's measure)."""
        deleted = 0
        give_up_at = time.monotonic() + PRUNE_AT_MOST_SECONDS
        while True:
            with self.db.transaction() as session:
                result = session.execute(statement)
                assert isinstance(result, sa.CursorResult)  # a DELETE's result counts its rows
                count = int(result.rowcount)
            deleted += count
            if count == 0 or time.monotonic() >= give_up_at:
                return deleted
            let_others_run()

    def run_pruning(self, sleep: object = None) -> None:
        """Loop until stop(): prune every PRUNE_EVERY_SECONDS (or keep time, if shorter). Its own
        loop, beside run(), so that a prune never holds up the events waiting to be published."""
        if self.keep_sent_seconds is None:
            return
        pause = sleep if callable(sleep) else self._stop.wait
        every = max(PRUNE_AT_LEAST_EVERY_SECONDS, min(PRUNE_EVERY_SECONDS, self.keep_sent_seconds))
        while not self._stop.is_set():
            try:
                self.prune_sent()
            except sa.exc.OperationalError as exc:
                log.warning("outbox relay: could not prune (database away or busy), again in %.0fs: %s", every, exc)
            pause(every)

    def _confirm(self, seqs: Sequence[int]) -> None:
        if not self._confirmed_unmarked:
            self._unmarked_since = time.monotonic()
        self._confirmed_unmarked += seqs

    def _must_mark_now(self) -> bool:
        """Whether the rows confirmed and not marked yet are too many or waited too long to wait
        any longer for a moment the lock is free: a relay that dies sends them again."""
        return len(self._confirmed_unmarked) >= self.batch_size or (
            bool(self._confirmed_unmarked) and time.monotonic() - self._unmarked_since >= MARK_WITHIN_SECONDS
        )

    def _mark_confirmed(self, wait: bool) -> None:
        """Marks the rows confirmed and not marked yet: waiting for SQLite's write lock when
        `wait`, else only if no other connection holds it now (they stay for the next round)."""
        if not self._confirmed_unmarked:
            return
        with self.db.transaction() if wait else self.db.transaction_if_free() as session:
            if session is None:
                return
            self._mark_sent(session, self._confirmed_unmarked)
        self._confirmed_unmarked = []

    def _mark_sent(self, session: Session, seqs: Sequence[int]) -> None:
        table = self.outbox.outbox
        session.execute(table.update().where(table.c.seq.in_(seqs)).values(published_at=datetime.now(UTC)))

    def run(self, sleep: object = None, idle_interval: float = 0.1, max_backoff: float = RETRY_AT_MOST_EVERY) -> None:
        """Loop until stop(): publish while there is work, poll when idle, back off while the
        broker is away. `sleep` lets an eventlet worker pass its cooperative sleep."""
        pause = sleep if callable(sleep) else self._stop.wait
        backoff = idle_interval
        # Made before the first poll, so that no commit falls between a poll and the first look.
        self._commits = self.db.commit_watch()
        while not self._stop.is_set():
            try:
                published = self.publish_pending()
            except BrokerUnavailable as exc:
                log.warning("outbox relay: broker unavailable, retrying in %.1fs: %s", backoff, exc)
                metrics.OUTBOX_PUBLISH_FAILURES.labels(self.outbox.service).inc()
                pause(backoff)
                backoff = min(backoff * 2, max_backoff)
                continue
            except sa.exc.OperationalError as exc:
                log.warning("outbox relay: database unavailable, retrying in %.1fs: %s", backoff, exc)
                pause(backoff)
                backoff = min(backoff * 2, max_backoff)
                continue
            backoff = idle_interval
            if published < self.batch_size:
                self._wait_for_commits(pause, idle_interval)
        if self._commits is not None:
            self._commits.close()
        try:
            self._mark_confirmed(wait=True)  # what a restart would otherwise send again
        except sa.exc.OperationalError as exc:
            log.warning(
                "outbox relay: stopping with %d events sent but not marked: %s", len(self._confirmed_unmarked), exc
            )

    def _wait_for_commits(self, pause: Callable[[float], object], idle_interval: float) -> None:
        """Waits `idle_interval`, or on SQLite until another connection commits, whichever comes
        first: an event committed by another process (crowd's ingest) leaves within
        COMMIT_LOOK_SECONDS rather than at the next poll, and an idle relay still does not query
        the outbox more often than every `idle_interval`. Only when the relay looks again
        changes, never what it publishes: a commit missed is found by the next poll."""
        if self._commits is None:
            pause(idle_interval)
            return
        deadline = time.monotonic() + idle_interval
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            pause(min(COMMIT_LOOK_SECONDS, left))
            if self._commits.committed():
                return

    def watch_backlog(self) -> None:
        """Count unpublished rows when Prometheus scrapes, not on every loop."""

        def count() -> float:
            with self.db.read() as session:
                return float(self.outbox.backlog(session))

        metrics.OUTBOX_BACKLOG.labels(self.outbox.service).set_function(count)

    def stop(self) -> None:
        self._stop.set()
        self.publisher.close()
