"""The load a chaos scenario runs through the mesh while it breaks something, written as the
province's clients would write it: permit cases submitted by the portal, department records
published, crowd readings reported over gRPC and published on the broker. Each client retries
what failed with the same identity (the case's request id, the record's source reference, the
reading's sensor and sequence) until the mesh accepts it; what it accepted is kept in the ledger
the audit counts against."""

from __future__ import annotations

import datetime
import itertools
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import pika
from google.protobuf import json_format
from google.protobuf.message import Message

from govmesh.approvals.v1 import approvals_pb2, approvals_pb2_grpc
from govmesh.crowd.v1 import crowd_pb2, crowd_pb2_grpc
from govmesh.records.v1 import records_pb2, records_pb2_grpc
from tests.support.approvals_mesh import publish
from tests.support.approvals_scenarios import Scenario, scenarios
from tests.support.crowd_mesh import reading, zone
from tests.support.mesh import amqp_connection
from tests.support.people import licence, resident_id

from .mesh import ChaosMesh

UTC = datetime.UTC

#: Answers after which a client sends the same request again: the mesh was away or busy.
RETRIED = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
        # A bug by the contract (counted as such), but a client still tries again.
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)


@dataclass
class Rates:
    """Per second: cases submitted, records published, readings over gRPC and on the broker."""

    cases: float = 2.0
    records: float = 20.0
    grpc_readings: float = 100.0
    broker_readings: float = 100.0
    zones: int = 4

    def scaled(self, factor: float) -> Rates:
        return Rates(
            self.cases * factor,
            self.records * factor,
            self.grpc_readings * factor,
            self.broker_readings * factor,
            self.zones,
        )


@dataclass
class Ledger:
    """What the mesh accepted, and how it answered on the way."""

    case_ids: set[str] = field(default_factory=set)
    #: Accepted case ids by request id: a retried request must come back with the same case.
    case_of_request: dict[str, str] = field(default_factory=dict)
    source_references: set[str] = field(default_factory=set)
    #: Readings accepted per zone (one gate counter per zone, delta +1 each).
    readings: Counter[str] = field(default_factory=Counter)
    #: Status codes answered, retried or not, by stream.
    answers: Counter[str] = field(default_factory=Counter)
    #: What a client could not make sense of (a refusal it did not expect): fails the run.
    client_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answered(self, stream: str, code: grpc.StatusCode | str) -> None:
        name = code.name if isinstance(code, grpc.StatusCode) else code
        with self.lock:
            self.answers[f"{stream}:{name}"] += 1

    def bugs(self) -> int:
        """INTERNAL and UNKNOWN answers: the contract never allows them."""
        return sum(n for key, n in self.answers.items() if key.endswith((":INTERNAL", ":UNKNOWN")))


def _someone() -> str:
    """A resident born on some day of 1950-1999: a long run publishes more records than there are
    days between a fixed first birthday and today, so people repeat (their records do not)."""
    born = datetime.date(1950, 1, 1) + datetime.timedelta(days=random.randrange(50 * 365))
    return resident_id(f"330183{born:%Y%m%d}{random.randrange(1000):03d}")


class Load:
    """Runs the four streams, each on a thread of its own, until stopped."""

    def __init__(self, mesh: ChaosMesh, rates: Rates, duplicate_broker_readings: bool = False) -> None:
        self.mesh = mesh
        self.env = mesh.env
        self.rates = rates
        self.ledger = Ledger()
        self.duplicate_broker_readings = duplicate_broker_readings
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        today = datetime.date.today()
        self.scenario: Scenario = next(
            s for s in scenarios(today) if s.case_type == "ride_hailing_driver_permit" and not s.failing_rules
        )
        self.zone_ids = [f"chaos_{uuid.uuid4().hex[:6]}_{n}" for n in range(rates.zones)]
        self.sequences: Counter[str] = Counter()
        self._sequence_lock = threading.Lock()
        self._grpc_turns = itertools.count()

    def prepare(self) -> None:
        """The applicant's records published and the zones configured, before any fault."""
        publish(self.env, list(self.scenario.records))
        stub = crowd_pb2_grpc.CrowdServiceStub(grpc.insecure_channel(self.env.target_of("crowd")))
        operator = [("authorization", f"Bearer {self.env.token('city_brain')}")]
        for zone_id in self.zone_ids:
            # Capacity far above the load: the zone's level never moves, so its gate total is
            # exactly the readings applied.
            stub.UpsertZone(
                crowd_pb2.UpsertZoneRequest(zone=zone(zone_id, capacity=10_000_000)), metadata=operator, timeout=30
            )

    def start(self) -> None:
        streams: list[tuple[str, Callable[[], None], float]] = [
            ("cases", self._case, self.rates.cases),
            ("records", self._records, self.rates.records / 10),
            ("grpc-readings", self._grpc_readings, self.rates.grpc_readings / 10),
        ]
        for name, step, per_second in streams:
            if per_second > 0:
                self._threads.append(
                    threading.Thread(target=self._paced, args=(step, per_second), name=name, daemon=True)
                )
        if self.rates.broker_readings > 0:
            self._threads.append(threading.Thread(target=self._broker_readings, name="broker-readings", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stops sending new work; what is being retried is carried through first."""
        self._stop.set()
        for thread in self._threads:
            thread.join(300)

    def _paced(self, step: Callable[[], None], per_second: float) -> None:
        interval = 1.0 / per_second
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                step()
            except Exception as error:  # noqa: BLE001 - a stream must not die of one answer
                with self.ledger.lock:
                    self.ledger.client_errors.append(repr(error)[:500])
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()  # behind: do not burst to catch up

    def _retrying(self, stream: str, call: Callable[[], object], give_up_after: float = 300) -> object | None:
        """``call`` until it answers; None when it was refused (not accepted, so not counted)."""
        deadline = time.monotonic() + give_up_after
        delay = 0.1
        while True:
            try:
                answer = call()
            except grpc.RpcError as error:
                code = error.code()  # type: ignore[attr-defined]
                self.ledger.answered(stream, code)
                if code not in RETRIED or time.monotonic() > deadline:
                    return None
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self.ledger.answered(stream, grpc.StatusCode.OK)
            return answer

    def _metadata(self, caller: str) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.env.token(caller)}")]

    # -- the streams ----------------------------------------------------------------------------

    def _call(self, stream: str, service: str, caller: str, method: str, request: Message) -> Any:
        """One call of ``method`` on ``service``'s api, retried until it answers (None: refused).
        A channel per attempt: after an api is killed, a new connection finds the new process.
        A client-streaming method gets ``request`` as its one message."""
        metadata = self._metadata(caller)
        stub_of = {
            "approvals": approvals_pb2_grpc.ApprovalsServiceStub,
            "records": records_pb2_grpc.RecordsServiceStub,
            "crowd": crowd_pb2_grpc.CrowdServiceStub,
        }[service]

        def attempt() -> object:
            with grpc.insecure_channel(self.env.target_of(service)) as channel:
                call = getattr(stub_of(channel), method)
                streamed = method in ("PublishRecords", "ReportReadings")
                return call(iter([request]) if streamed else request, metadata=metadata, timeout=30)

        return self._retrying(stream, attempt)

    def _case(self) -> None:
        request_id = str(uuid.uuid4())
        request = approvals_pb2.SubmitCaseRequest(
            case_type=self.scenario.case_type,
            applicant_identifier=self.scenario.applicant,
            parameters=self.scenario.parameters,
            request_id=request_id,
        )
        answer = self._call("cases", "approvals", "demo-portal", "SubmitCase", request)
        if answer is not None:
            with self.ledger.lock:
                self.ledger.case_ids.add(answer.case.case_id)
                self.ledger.case_of_request[request_id] = answer.case.case_id

    def _records(self) -> None:
        batch = [licence(_someone()) for _ in range(10)]
        request = records_pb2.PublishRecordsRequest(records=batch)
        answer = self._call("records", "records", "demo-portal", "PublishRecords", request)
        if answer is not None:
            assert answer.rejected == 0, answer.rejections
            with self.ledger.lock:
                self.ledger.source_references.update(r.source_reference for r in batch)

    def next_readings(self, zone_id: str, count: int) -> list[crowd_pb2.SensorReading]:
        now = datetime.datetime.now(UTC)
        with self._sequence_lock:
            first = self.sequences[zone_id] + 1
            self.sequences[zone_id] += count
        return [reading(zone_id, f"gate-{zone_id}", first + n, now, delta=1) for n in range(count)]

    def _grpc_zones(self) -> Sequence[str]:
        return self.zone_ids[: max(1, len(self.zone_ids) // 2)]

    def _broker_zones(self) -> Sequence[str]:
        return self.zone_ids[len(self._grpc_zones()) :] or self.zone_ids[:1]

    def _grpc_readings(self) -> None:
        zones = self._grpc_zones()
        zone_id = zones[next(self._grpc_turns) % len(zones)]
        batch = self.next_readings(zone_id, 10)
        request = crowd_pb2.ReportReadingsRequest(readings=batch)
        answer = self._call("grpc-readings", "crowd", "crowd_sensors", "ReportReadings", request)
        if answer is not None:
            assert answer.rejected == 0, answer.rejections
            # A retry after a lost answer finds the first attempt's readings already applied:
            # duplicates too are readings the mesh holds.
            with self.ledger.lock:
                self.ledger.readings[zone_id] += len(batch)

    def _broker_readings(self) -> None:
        """A sensor gateway: each reading published persistent, confirmed, to the zone's key;
        on a lost connection it connects again and publishes what was not confirmed."""
        interval = 10.0 / self.rates.broker_readings
        zones = self._broker_zones()
        pending: list[crowd_pb2.SensorReading] = []
        connection: pika.BlockingConnection | None = None
        turn = 0
        while not self._stop.is_set() or pending:
            if not pending:
                zone_id = zones[turn % len(zones)]
                turn += 1
                pending = self.next_readings(zone_id, 10)
                if self.duplicate_broker_readings:
                    # Each reading twice, the copies in reverse order: the ingest must apply
                    # each once, whatever the order.
                    pending = pending + pending[::-1]
            try:
                if connection is None or not connection.is_open:
                    connection = amqp_connection(self.mesh.amqp_uri, heartbeat="10")
                    channel = connection.channel()
                    channel.confirm_delivery()
                for message in pending:
                    channel.basic_publish(
                        "crowd.readings",
                        message.zone_id,
                        json_format.MessageToJson(message, indent=None),
                        pika.BasicProperties(content_type="application/json", delivery_mode=2),
                        mandatory=True,
                    )
                self.ledger.answered("broker-readings", "CONFIRMED")
                with self.ledger.lock:
                    self.ledger.readings[pending[0].zone_id] += len({m.sequence for m in pending})
                pending = []
                self._stop.wait(interval)
            except (pika.exceptions.AMQPError, OSError) as error:
                self.ledger.answered("broker-readings", type(error).__name__)
                connection = None
                time.sleep(0.5)
        if connection is not None and connection.is_open:
            connection.close()
