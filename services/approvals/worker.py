"""Approvals' worker: the saga. The case_submitted event starts a case's work; a timer drives
the cases that wait for a retry (or that nobody is working on) and raises deadline_breached. Proofs
are pulled from records over its worker RPC, with approvals' own credentials and the case id as
purpose."""

from __future__ import annotations

import logging
from typing import Any

import eventlet
from nameko.rpc import RpcProxy
from nameko.timer import timer

from govmesh.approvals.v1 import events_pb2
from govmesh.outbox import Outbox
from govmesh.worker import Application, CurrentEvent, OutboxRelayRunner, event_handler, parse_event
from services.approvals import bootstrap, store
from services.approvals.app import ApprovalsApp
from services.approvals.bootstrap import Parts
from services.approvals.clients import ProofSource

log = logging.getLogger(__name__)


class Worker:
    name = "approvals"

    parts: Parts = Application(bootstrap.build)
    outbox_relay = OutboxRelayRunner(
        Outbox("approvals", store.outbox, store.inbox), idle_interval=bootstrap.CASE_EVENT_RELAY_INTERVAL
    )
    records = RpcProxy("records")
    event = CurrentEvent()

    def _proofs(self) -> ProofSource:
        assert self.parts.records is not None, "a worker draws proofs over records' worker RPC"
        return self.parts.records.through(self.records)

    @event_handler("approvals", "case_submitted")  # type: ignore[untyped-decorator]
    def on_case_submitted(self, body: Any) -> None:
        submitted = parse_event(body, events_pb2.CaseSubmitted)
        self.parts.approvals.start(submitted.case_id, self._proofs())

    @timer(interval=1)  # type: ignore[untyped-decorator]
    def drive(self) -> None:
        """Retries and stalled cases, then deadlines. Cases are driven side by side: one whose
        department does not answer must not hold up the others."""
        approvals = self.parts.approvals
        proofs = self._proofs()
        pool = eventlet.GreenPool(10)
        for case_id in approvals.claim_due_cases():
            pool.spawn_n(self._drive_one, approvals, proofs, case_id)
        pool.waitall()
        approvals.check_deadlines()

    @staticmethod
    def _drive_one(approvals: ApprovalsApp, proofs: ProofSource, case_id: str) -> None:
        try:
            approvals.advance(case_id, proofs)
        except Exception:
            # The case stays due (its lease runs out), so the next ticks try it again.
            log.exception("driving case %s failed", case_id)
