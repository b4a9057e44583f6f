"""Transactional outbox and inbox, the two halves of "no event lost, none applied twice".

Outbox: a domain change and the events it causes are written in ONE transaction; the relay
publishes committed rows afterwards and marks them sent. If the relay or broker dies between
publish and mark, the row is published again: delivery is at-least-once, with a stable ce-id.
Inbox: a consumer records each ce-id it applied in the transaction of its effect, so the
second delivery of the same event finds it there and has no effect. Together: exactly once as
consumers see it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import sqlalchemy as sa
from google.protobuf.message import Message
from opentelemetry import trace
from sqlalchemy.orm import Session

from govmesh import metrics, tracing
from govmesh.db import Database
from govmesh.messaging import BrokerUnavailable, ConfirmingPublisher, Envelope

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
        sa.Index("ix_outbox_unpublished", "published_at", "seq"),
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

    def add_many(self, session: Session | sa.Connection, events: Sequence[tuple[Message, str]]) -> list[Envelope]:
        """Queue several (event, subject) pairs in one statement, in order."""
        envelopes = self.envelopes(events)
        if envelopes:
            session.execute(self.outbox.insert(), outbox_rows(envelopes))
        return envelopes

    def envelopes(self, events: Sequence[tuple[Message, str]]) -> list[Envelope]:
        """The (event, subject) pairs as they are queued, in the current trace, for a caller that
        writes their rows (outbox_rows) in a statement of its own with its other writes."""
        trace_headers = {k: str(v) for k, v in tracing.inject_headers({}).items()}
        return [Envelope.for_event(self.service, event, subject, trace_headers) for event, subject in events]

    def claim(self, session: Session, consumer: str, event_id: str) -> bool:
        """Record that `consumer` applies `event_id` in this transaction; False if it already did.

        The primary key makes a concurrent second claim fail at commit, rolling back its effect."""
        seen = session.execute(
            sa.select(self.inbox.c.event_id).where(self.inbox.c.consumer == consumer, self.inbox.c.event_id == event_id)
        ).first()
        if seen is not None:
            return False
        session.execute(self.inbox.insert().values(consumer=consumer, event_id=event_id, handled_at=datetime.now(UTC)))
        return True

    def backlog(self, session: Session) -> int:
        return int(
            session.execute(
                sa.select(sa.func.count()).select_from(self.outbox).where(self.outbox.c.published_at.is_(None))
            ).scalar_one()
        )


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
        for envelope in envelopes:
            if not envelope.trace_headers:
                # Written outside any trace (a timer's work): publishing starts none of its own.
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


class OutboxRelay:
    """Publishes committed outbox rows in commit order, in batches, with publisher confirms; a
    row is marked sent only after the broker confirmed it.

    On PostgreSQL rows are locked while they are published (FOR UPDATE SKIP LOCKED), so several
    relays of one service never publish the same row twice. On SQLite (one writer, one relay)
    nothing is locked while the broker answers."""

    def __init__(self, db: Database, outbox: Outbox, publisher: ConfirmingPublisher, batch_size: int = 500) -> None:
        self.db = db
        self.outbox = outbox
        self.publisher = publisher
        self.batch_size = batch_size
        self._stop = threading.Event()
        #: Rows the broker confirmed whose marking failed (the database busy or away): marked
        #: first on the next round, never published again by this relay.
        self._confirmed_unmarked: list[int] = []

    def publish_pending(self) -> int:
        """One batch; returns how many events were published (0 when there was nothing)."""
        if self._confirmed_unmarked:
            with self.db.transaction() as session:
                self._mark_sent(session, self._confirmed_unmarked)
            self._confirmed_unmarked = []
        table = self.outbox.outbox
        unpublished = (
            sa.select(table).where(table.c.published_at.is_(None)).order_by(table.c.seq).limit(self.batch_size)
        )
        if self.db.is_sqlite:
            # SQLite has one writer: holding its lock while the broker answers would stall every
            # write of the service. Read, publish, then mark; one relay per SQLite database.
            with self.db.read() as session:
                rows = session.execute(unpublished).all()
            if not rows:
                return 0
            _publish(self.publisher, [_envelope(row) for row in rows])
            self._confirmed_unmarked = [row._mapping["seq"] for row in rows]
            with self.db.transaction() as session:
                self._mark_sent(session, self._confirmed_unmarked)
        else:
            # Several relays of one service lock the rows they publish and skip the others'.
            with self.db.transaction() as session:
                rows = session.execute(unpublished.with_for_update(skip_locked=True)).all()
                if not rows:
                    return 0
                _publish(self.publisher, [_envelope(row) for row in rows])
                self._confirmed_unmarked = [row._mapping["seq"] for row in rows]
                self._mark_sent(session, self._confirmed_unmarked)
        self._confirmed_unmarked = []
        metrics.OUTBOX_PUBLISHED.labels(self.outbox.service).inc(len(rows))
        return len(rows)

    def _mark_sent(self, session: Session, seqs: Sequence[int]) -> None:
        table = self.outbox.outbox
        session.execute(table.update().where(table.c.seq.in_(seqs)).values(published_at=datetime.now(UTC)))

    def run(self, sleep: object = None, idle_interval: float = 0.1, max_backoff: float = 30.0) -> None:
        """Loop until stop(): publish while there is work, poll when idle, back off while the
        broker is away. `sleep` lets an eventlet worker pass its cooperative sleep."""
        pause = sleep if callable(sleep) else self._stop.wait
        backoff = idle_interval
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
                pause(idle_interval)

    def watch_backlog(self) -> None:
        """Count unpublished rows when Prometheus scrapes, not on every loop."""

        def count() -> float:
            with self.db.read() as session:
                return float(self.outbox.backlog(session))

        metrics.OUTBOX_BACKLOG.labels(self.outbox.service).set_function(count)

    def stop(self) -> None:
        self._stop.set()
        self.publisher.close()
