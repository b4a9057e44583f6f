"""After the fault, the count: what the API accepted (the load's ledger) against what was decided,
stored and published, read as an auditor reads it, from each service's database and from queues
an integrator bound before the load began.

- lost: accepted but never decided, stored or applied; or decided or stored without its event.
- duplicated: one fact with two effects: a second decision of a case (a second case_decided with
  another ce-id), a record stored twice, a reading applied twice (the zone's gate total above the
  readings accepted), a retried request that opened a second case.
- redelivered: the same event (same ce-id) delivered again, which at-least-once delivery allows and
  a subscriber drops by its ce-id; counted apart, and kept rare.
- stuck: still undecided when the mesh had every chance to finish, events still unsent in an
  outbox, messages waiting in a service's queue, and dead letters the scenario did not make."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from tests.support.mesh import amqp_connection

from .infra import PrivateBroker
from .load import Ledger
from .mesh import SERVICES, ChaosMesh

#: Events the audit listens to: exchange, routing key.
AUDITED_EVENTS = (("approvals.events", "case_decided"), ("records.events", "record_published"))

FINAL_STATES = ("approved", "rejected", "cancelled")

#: Marks the copies a fault publishes of the mesh's events: the audit counts the mesh's own.
COPY_HEADER = "x-chaos-copy"


class EventTap:
    """Durable queues bound before the load, read after it: every copy of every audited event."""

    def __init__(self, amqp_uri: str) -> None:
        self.amqp_uri = amqp_uri
        self.queues: dict[str, str] = {}
        connection = amqp_connection(amqp_uri)
        try:
            channel = connection.channel()
            for exchange, key in AUDITED_EVENTS:
                channel.exchange_declare(exchange, "topic", durable=True)
                queue = f"chaos-audit.{exchange}.{key}"
                channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
                channel.queue_bind(queue, exchange, key)
                self.queues[key] = queue
        finally:
            connection.close()
        self.received: dict[str, list[tuple[str, dict[str, Any]]]] = {key: [] for key in self.queues}

    def drain(self) -> None:
        connection = amqp_connection(self.amqp_uri)
        try:
            channel = connection.channel()
            for key, queue in self.queues.items():
                while True:
                    method, properties, body = channel.basic_get(queue, auto_ack=True)
                    if method is None:
                        break
                    if COPY_HEADER not in properties.headers:  # the fault's own copies
                        self.received[key].append((properties.headers["ce-id"], json.loads(body)))
        finally:
            connection.close()


@dataclass
class Count:
    accepted: dict[str, int] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)
    duplicated: dict[str, int] = field(default_factory=dict)
    redelivered: dict[str, int] = field(default_factory=dict)
    stuck: dict[str, int] = field(default_factory=dict)
    #: Messages left in each queue that still held some at the count.
    queued: dict[str, int] = field(default_factory=dict)
    #: Queues whose only node was down at the count.
    notes_unreachable: list[str] = field(default_factory=list)
    #: The fault's poison found in each dead-letter queue.
    poison: dict[str, int] = field(default_factory=dict)

    def totals(self) -> dict[str, int]:
        return {
            "lost": sum(self.lost.values()),
            "duplicated": sum(self.duplicated.values()),
            "stuck": sum(self.stuck.values()),
            "redelivered": sum(self.redelivered.values()),
        }


#: Marks the poison a fault puts on a queue: its dead letter is expected, any other is stuck.
POISON_HEADER = "x-chaos-poison"


def dead_letter_census(amqp_uri: str, queues: list[str]) -> tuple[Counter[str], Counter[str]]:
    """Takes every message of the dead-letter ``queues``: the fault's poison by dead-letter queue,
    and the others by dead-letter queue."""
    poison: Counter[str] = Counter()
    others: Counter[str] = Counter()
    connection = amqp_connection(amqp_uri)
    try:
        channel = connection.channel()
        for queue in queues:
            while True:
                method, properties, _ = channel.basic_get(queue, auto_ack=True)
                if method is None:
                    break
                (poison if POISON_HEADER in (properties.headers or {}) else others)[queue] += 1
    finally:
        connection.close()
    return poison, others


def _rows(url: str, schema: str, query: str, **params: object) -> list[sa.Row[Any]]:
    postgres = url.startswith("postgresql")
    engine = sa.create_engine(url, connect_args={"options": f"-csearch_path={schema}"} if postgres else {})
    try:
        with engine.connect() as connection:
            return list(connection.execute(sa.text(query), params))
    finally:
        engine.dispose()


def _final_cases(mesh: ChaosMesh, case_ids: set[str]) -> dict[str, str]:
    rows = _rows(mesh.database_url("approvals"), "approvals", "SELECT case_id, state FROM cases")
    return {row.case_id: row.state for row in rows if row.case_id in case_ids}


def unsent_events(mesh: ChaosMesh) -> int:
    """Events committed to the services' outboxes and not yet sent (0 when a database is away:
    the count that follows finds out)."""
    try:
        return sum(
            _rows(mesh.database_url(s), s, "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")[0].n
            for s in SERVICES
        )
    except sa.exc.OperationalError:
        return 0


def settle(mesh: ChaosMesh, ledger: Ledger, timeout: float) -> float:
    """Waits until every accepted case is decided (or ``timeout``); returns the seconds taken."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            states = _final_cases(mesh, ledger.case_ids)
        except sa.exc.OperationalError:
            states = {}
        if len(ledger.case_ids) == sum(1 for s in states.values() if s in FINAL_STATES):
            break
        time.sleep(1)
    return time.monotonic() - started


def _copies(events: list[tuple[str, dict[str, Any]]], key: str) -> tuple[Counter[str], Counter[str]]:
    """Per fact (``key`` of the body): distinct events, and copies beyond the first of each."""
    distinct: dict[str, set[str]] = {}
    copies: Counter[str] = Counter()
    for ce_id, body in events:
        seen = distinct.setdefault(str(body.get(key)), set())
        if ce_id in seen:
            copies[str(body.get(key))] += 1
        seen.add(ce_id)
    return Counter({fact: len(ids) for fact, ids in distinct.items()}), copies


def count(mesh: ChaosMesh, broker: PrivateBroker, vhost: str, ledger: Ledger, tap: EventTap) -> Count:
    result = Count()
    tap.drain()
    # Cases: each decided once, its decision published once.
    states = _final_cases(mesh, ledger.case_ids)
    decided, redelivered = _copies(tap.received["case_decided"], "caseId")
    result.accepted["cases"] = len(ledger.case_ids)
    undecided = sum(1 for case_id in ledger.case_ids if states.get(case_id) not in FINAL_STATES)
    result.lost["cases"] = sum(1 for case_id in ledger.case_ids if case_id not in states)
    result.stuck["cases"] = undecided - result.lost["cases"]
    result.lost["case_decided"] = sum(
        1 for case_id, state in states.items() if state in FINAL_STATES and decided[case_id] == 0
    )
    result.duplicated["case_decided"] = sum(n - 1 for n in decided.values() if n > 1)
    result.redelivered["case_decided"] = sum(redelivered.values())
    # The same request retried must have come back with one case: any other case of the
    # applicant is one the clients never asked for.
    all_cases = _rows(mesh.database_url("approvals"), "approvals", "SELECT case_id FROM cases")
    result.duplicated["cases"] = len({row.case_id for row in all_cases} - ledger.case_ids)

    # Records: each stored once, published once.
    stored = Counter(
        row.source_reference
        for row in _rows(mesh.database_url("records"), "records", "SELECT source_reference FROM records")
    )
    published, redelivered = _copies(tap.received["record_published"], "sourceReference")
    result.accepted["records"] = len(ledger.source_references)
    result.lost["records"] = sum(1 for ref in ledger.source_references if stored[ref] == 0)
    result.duplicated["records"] = sum(n - 1 for n in stored.values() if n > 1)
    result.lost["record_published"] = sum(1 for ref in ledger.source_references if stored[ref] and not published[ref])
    result.duplicated["record_published"] = sum(n - 1 for n in published.values() if n > 1)
    result.redelivered["record_published"] = sum(redelivered.values())

    # Readings: one gate counter per zone, +1 a reading, so the zone's gate total is the count of
    # readings applied, each once.
    applied = {
        row.zone_id: (row.gate_total, row.readings_applied)
        for row in _rows(
            mesh.database_url("crowd"), "crowd", "SELECT zone_id, gate_total, readings_applied FROM crowd_zone_live"
        )
    }
    result.accepted["readings"] = ledger.readings.total()
    result.lost["readings"] = sum(max(0, n - applied.get(z, (0, 0))[0]) for z, n in ledger.readings.items())
    # Every zone of the mesh is the load's: one applied above what was accepted is doubled.
    result.duplicated["readings"] = sum(max(0, total - ledger.readings[z]) for z, (total, _) in applied.items())

    # What is left waiting: unsent outbox rows, messages in service queues, dead letters.
    result.stuck["outbox"] = unsent_events(mesh)
    depths = broker.queue_depths(vhost)
    waiting = {q: n for q, n in depths.items() if not q.startswith(("chaos-audit.", "amq."))}
    result.stuck["queued"] = sum(n for q, n in waiting.items() if n > 0 and not q.endswith(".dead-letter"))
    # A queue that lived only on a dead node: its messages cannot be counted, nor delivered. A
    # reply queue of a connection that died with the node holds nothing anyone waits for.
    result.stuck["unreachable_queues"] = sum(1 for q, n in waiting.items() if n < 0 and not q.startswith("rpc.reply-"))
    result.notes_unreachable = sorted(q for q, n in waiting.items() if n < 0)
    result.queued = {q: n for q, n in waiting.items() if n > 0}
    # Dead letters: the fault's poison once each where it was put (dead-lettered, or refused and
    # counted by a consumer that refuses without parking), anything else is stuck.
    poison, others = dead_letter_census(
        mesh.amqp_uri, [q for q, n in depths.items() if q.endswith(".dead-letter") and n >= 0]
    )
    result.stuck["dead_letters"] = sum(others.values())
    result.duplicated["poison_dead_letters"] = sum(n - 1 for n in poison.values() if n > 1)
    result.poison = dict(poison)
    return result
