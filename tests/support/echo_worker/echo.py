"""A worker used only by the runtime's tests: it consumes identity's subject_registered the way
later services will (govmesh.worker's event_handler, CurrentEvent, inbox in the effect's
transaction), and its effect is an outbox row, so tests can count effects in its database.

Run as a process with python -m tests.support.echo_worker.run_echo (the same environment as `govmesh
worker identity`; it uses identity's database schema for its inbox and outbox)."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from govmesh.config import Settings
from govmesh.db import Database
from govmesh.identity.v1 import events_pb2
from govmesh.outbox import Outbox
from govmesh.worker import DUPLICATE, Application, CurrentEvent, EventMeta, Rejected, event_handler, parse_event
from services.identity import store

log = logging.getLogger("echotest")
#: How many times each "sub_dbaway..." subject met the database away.
DATABASE_AWAY: Counter[str] = Counter()
CONSUMER = "echotest.on_subject_registered"


@dataclass
class EchoApp:
    db: Database
    outbox: Outbox


def build(settings: Settings, db: Database, process: str) -> EchoApp:
    return EchoApp(db, Outbox("identity", store.outbox, store.inbox))


class EchoWorker:
    name = "echotest"

    app: EchoApp = Application(build)
    event: EventMeta = CurrentEvent()

    @event_handler("identity", "subject_registered", delivery_limit=3)  # type: ignore[untyped-decorator]
    def on_subject_registered(self, body: Any) -> str | None:
        registered = parse_event(body, events_pb2.SubjectRegistered)
        if registered.subject_id.startswith("sub_poison"):
            raise ValueError("this event always fails")
        if registered.subject_id.startswith("sub_dbaway"):
            # The database away for the first four tries (a server restarting): more than the
            # queue's delivery limit of 3 allows.
            DATABASE_AWAY[registered.subject_id] += 1
            if DATABASE_AWAY[registered.subject_id] <= 4:
                raise sa.exc.OperationalError("SELECT 1", {}, ConnectionError("the database server restarts"))
        if registered.subject_id.startswith("sub_refused"):
            raise Rejected("INVALID_ARGUMENT", "subject_id", "is refused by this handler")
        log.info("applying %s", registered.subject_id)
        with self.app.db.transaction() as session:
            if not self.app.outbox.claim(session, CONSUMER, self.event.event_id):
                return DUPLICATE
            echo = events_pb2.SubjectRegistered(subject_id=registered.subject_id)
            self.app.outbox.add(session, echo, subject=registered.subject_id)
        return None
