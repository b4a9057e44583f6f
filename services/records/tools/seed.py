"""`govmesh records seed`: load a synthetic population through the real feed path.

Each department publishes its own records with its own credentials over PublishRecords, exactly
as a department's system would; records resolves every subject through identity (registering
the new ones). Running it twice stores nothing new: the feed is idempotent."""

from __future__ import annotations

import argparse
import itertools
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice

import grpc
from tqdm import tqdm

from govmesh import typed_values as values
from govmesh.auth import Policy, TokenIssuer
from govmesh.config import Settings
from govmesh.records.v1 import records_pb2, records_pb2_grpc
from services.records.tools import synthetic


@dataclass
class Totals:
    subjects: int = 0
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    #: Tries that sent a department's chunk again after an answer that passes (PASSING).
    retried: int = 0
    examples: list[str] = field(default_factory=list)
    #: A person to try per kind of record: record type -> (identifier, display name), the first met.
    samples: dict[str, tuple[str, str]] = field(default_factory=dict)

    def add(self, response: records_pb2.PublishRecordsResponse) -> None:
        self.received += response.received
        self.stored += response.stored
        self.duplicates += response.duplicates
        self.rejected += response.rejected
        for rejection in response.rejections[: max(0, 5 - len(self.examples))]:
            self.examples.append(f"{rejection.department_code}/{rejection.source_reference}: {rejection.message}")


#: Answers that say a part of the mesh is away or slow for a moment, not that the records are
#: wrong: a chunk so answered is sent again, whole, up to ATTEMPTS times. The feed stores each record
#: once, so what a failed try had stored comes back counted as already there. One identity call
#: timing out on a loaded machine ended a million-person seed at 43% before. RESOURCE_EXHAUSTED is
#: not among them: here it only says a message is over gRPC's size limit, which no retry changes.
PASSING = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
ATTEMPTS = 6


def to_proto(subject: synthetic.SyntheticSubject, record: synthetic.SyntheticRecord) -> records_pb2.DepartmentRecord:
    message = records_pb2.DepartmentRecord(
        department_code=record.department_code,
        record_type=record.record_type,
        subject_identifier=subject.identifier,
        subject_display_name=subject.display_name,
        source_reference=record.source_reference,
        fields=values.fields_to_proto(record.fields),
        effective_from=record.effective_from.isoformat(),
        effective_to=record.effective_to.isoformat() if record.effective_to else "",
    )
    message.recorded_at.FromDatetime(record.recorded_at)
    return message


def _batches(records: list[records_pb2.DepartmentRecord], size: int) -> Iterator[records_pb2.PublishRecordsRequest]:
    for start in range(0, len(records), size):
        yield records_pb2.PublishRecordsRequest(records=records[start : start + size])


class _Connections:
    """A connection of its own per publishing thread. Channels with the same target share one
    connection unless told otherwise, and one connection reaches one records api process: the
    kernel spreads connections, not calls, over the processes sharing a port (SO_REUSEPORT)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.own = threading.local()
        self.channels: list[grpc.Channel] = []
        self.lock = threading.Lock()

    def stub(self) -> records_pb2_grpc.RecordsServiceStub:
        if not hasattr(self.own, "stub"):
            channel = grpc.insecure_channel(self.target, options=[("grpc.use_local_subchannel_pool", 1)])
            with self.lock:
                self.channels.append(channel)
            self.own.stub = records_pb2_grpc.RecordsServiceStub(channel)
        stub: records_pb2_grpc.RecordsServiceStub = self.own.stub
        return stub

    def close(self) -> None:
        for channel in self.channels:
            channel.close()


def seed(
    settings: Settings,
    subjects: int,
    seed_value: int,
    chunk: int = 2000,
    batch: int = 500,
    progress: bool = True,
    streams: int = 4,
) -> Totals:
    issuer = TokenIssuer.from_key_dir(Policy.load(settings.policy_path), settings.key_dir)
    tokens: dict[str, tuple[tuple[str, str | bytes], ...]] = {}
    connections = _Connections(settings.grpc_target)
    totals = Totals()
    lock = threading.Lock()
    people = synthetic.population(subjects, seed=seed_value)
    bar = tqdm(total=subjects, unit="subject", disable=not progress, desc="seeding records")
    with ThreadPoolExecutor(max_workers=streams) as pool:
        while block := list(islice(people, chunk)):
            by_department: dict[str, list[records_pb2.DepartmentRecord]] = defaultdict(list)
            for person in block:
                for record in person.records:
                    by_department[record.department_code].append(to_proto(person, record))
                    totals.samples.setdefault(record.record_type, (person.identifier, person.display_name))

            def publish(
                department: str, outgoing: dict[str, list[records_pb2.DepartmentRecord]] = by_department
            ) -> records_pb2.PublishRecordsResponse:
                if department not in tokens:
                    tokens[department] = (("authorization", f"Bearer {issuer.issue(department)}"),)
                for attempt in itertools.count(1):
                    try:
                        response: records_pb2.PublishRecordsResponse = connections.stub().PublishRecords(
                            _batches(outgoing[department], batch), metadata=tokens[department], timeout=600
                        )
                        return response
                    except grpc.RpcError as error:
                        if error.code() not in PASSING or attempt == ATTEMPTS:
                            raise
                        pause = min(2**attempt, 30)
                        tqdm.write(
                            f"govmesh records seed: {department}'s records answered {error.code().name} "
                            f"({error.details()}); sending them again in {pause} s (try {attempt + 1} of {ATTEMPTS})"
                        )
                        with lock:
                            totals.retried += 1
                        time.sleep(pause)
                raise AssertionError("unreachable")

            for response in pool.map(publish, sorted(by_department)):
                totals.add(response)
            totals.subjects += len(block)
            bar.update(len(block))
            bar.set_postfix(records=totals.received, stored=totals.stored, rejected=totals.rejected)
    bar.close()
    connections.close()
    return totals


def main(settings: Settings, args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        totals = seed(settings, args.subjects, args.seed, progress=not args.quiet)
    except grpc.RpcError as error:
        print(
            f"govmesh records seed: records at {settings.grpc_target} answered {error.code().name}: {error.details()}"
        )
        if error.code() == grpc.StatusCode.UNAVAILABLE:
            print("Is the mesh running? Start it with `make run` in another terminal.")
        return 1
    elapsed = time.monotonic() - started
    print(
        f"{totals.subjects} subjects, {totals.received} department records in {elapsed:.0f} s "
        f"({totals.received / max(elapsed, 1e-9):.0f} records/s): {totals.stored} stored, "
        f"{totals.duplicates} already there, {totals.rejected} refused"
        + (
            f" ({totals.retried} tries sent a department's chunk again after the mesh was away or slow;"
            " what a failed try stored is counted as already there)"
            if totals.retried
            else ""
        )
    )
    for example in totals.examples:
        print(f"  refused: {example}")
    if not args.no_samples:
        # Their identifiers are otherwise only in identity's database: a newcomer needs someone
        # to ask about. Synthetic people (valid check digits, nobody real).
        print("Synthetic people to try (GetProof, SubmitCase, Enroll), one holding each kind of record:")
        for record_type, (identifier, name) in sorted(totals.samples.items()):
            print(f"  {record_type:<32} {identifier}  {name}")
    return 0 if totals.rejected == 0 else 1
