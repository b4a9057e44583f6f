"""Health's worker: the outbox relay; a timer that reminds, marks bills overdue and defaults them
(HealthApp.run_timers) and refreshes the scheme's gauges; and the negative credit record of each
default, published to records as a department feed of the health commission
(clients.RecordsFeedOverBroker) from health's own bill_defaulted event, so it is as reliable as
the event itself: only once the broker confirmed the record is the event acknowledged, so a crash
or a broker outage redelivers the event and the record is published again."""

from __future__ import annotations

import logging
import time
from typing import Any

import eventlet
from nameko.timer import timer

from govmesh.health.v1 import events_pb2
from govmesh.messaging import BrokerUnavailable
from govmesh.outbox import Outbox
from govmesh.worker import Application, CurrentEvent, OutboxRelayRunner, event_handler, parse_event
from services.health import bootstrap, clients, metrics, store
from services.health.bootstrap import Parts

log = logging.getLogger(__name__)

#: How often the worker reads the scheme's figures into the gauges.
STATS_SECONDS = 15.0
#: A record the broker did not take is retried after this pause (then up to the delivery limit,
#: after which the event waits in its dead-letter queue to be replayed).
RETRY_PAUSE_SECONDS = 2.0


class Worker:
    name = "health"

    parts: Parts = Application(bootstrap.build)
    outbox_relay = OutboxRelayRunner(Outbox("health", store.outbox, store.inbox))
    event = CurrentEvent()

    @event_handler("health", "bill_defaulted")  # type: ignore[untyped-decorator]
    def on_bill_defaulted(self, body: Any) -> None:
        """The health commission's negative credit record, keyed by the bill id: a redelivered
        event publishes it again and records ignores the duplicate."""
        defaulted = parse_event(body, events_pb2.BillDefaulted)
        feed = self.parts.records_feed
        assert feed is not None  # built for the worker
        try:
            feed.publish(clients.default_record(defaulted))
        except BrokerUnavailable as exc:
            log.warning("default record of bill %s not published yet (retried): %s", defaulted.bill_id, exc)
            eventlet.sleep(RETRY_PAUSE_SECONDS)
            raise
        metrics.DEFAULT_RECORDS_PUBLISHED.inc()
        log.info("default record of bill %s published to records", defaulted.bill_id)

    @timer(interval=1)  # type: ignore[untyped-decorator]
    def run_timers(self) -> None:
        parts = self.parts
        queued = parts.health.run_timers()
        if queued:
            log.info("bill timers queued %d events", queued)
        if time.monotonic() >= parts.stats_due:
            parts.stats_due = time.monotonic() + STATS_SECONDS
            metrics.observe(parts.health.get_stats())
