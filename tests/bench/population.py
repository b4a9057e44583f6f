"""A province-sized population: `govmesh records seed --subjects N` on PostgreSQL (every department
publishing its records over PublishRecords, identity registering the new people in batches),
timed; then GetProof and approvals against that population.

    .venv/bin/python -m tests.bench.population [--subjects N] [--seconds S] [--offered R]

1. The seed, as an operator runs it against a running mesh: subjects/s and records/s.
2. GetProof from 16 callers (a connection each) for people of the population, S seconds, beside
   the same from 1 caller: p50, p99, proofs/s (2 records api processes).
3. Ride-hailing cases offered at R/s for S seconds (tests/bench/approvals.py's open loop), the
   applicants' records published on top of the population.
Figures vary with the machine; read them side by side.
"""

from __future__ import annotations

import argparse
import itertools
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import unquote

import sqlalchemy as sa

from govmesh import clock
from govmesh.records.v1.records_pb2_grpc import RecordsServiceStub
from services.records.domain.catalogue import SubjectKind
from services.records.tools import synthetic
from tests.bench import results
from tests.bench.approvals import Client, bench_offered
from tests.bench.records import Mesh, proof_request, report_load, under_load
from tests.support.approvals_mesh import publish
from tests.support.approvals_scenarios import scenarios
from tests.support.mesh import ROOT, PostgresDatabases, ServiceEnv, consumers, virtual_host, wait_for
from tests.support.people import wait_serving

SEED = 20261206


def start(env: ServiceEnv, amqp: str) -> None:
    for service in ("identity", "records", "approvals"):
        env.migrate(service)
    env.process("api", "identity")
    env.process("worker", "identity")
    env.process("worker", "records")
    for k in range(2):
        env.process("api", "records", instance=(k, 2))
    wait_for(lambda: consumers(amqp, "rpc-records") > 0, timeout=60)
    env.process("api", "approvals")
    env.process("worker", "approvals")
    wait_for(lambda: consumers(amqp, "evt-approvals-case_submitted--approvals.on_case_submitted") > 0, timeout=60)
    for service in ("identity", "records", "approvals"):
        wait_serving(env.target_of(service), f"govmesh.{service}.v1.{service.capitalize()}Service", timeout=60)


def bench_seed(env: ServiceEnv, subjects: int) -> None:
    print(f"govmesh records seed --subjects {subjects}")
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "govmesh.cli", "records", "seed", "--subjects", str(subjects), "--seed", str(SEED)],
        env=env.env | {"RECORDS_GRPC_TARGET": env.target_of("records"), "LOG_LEVEL": "WARNING"},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=6 * 3600,
        check=False,
    )
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.search(r"(\d+) department records", done.stdout)
    records = int(found.group(1)) if found else 0
    print(f"  {subjects} subjects, {records} records in {elapsed:.0f} s: {subjects / elapsed:.0f} subjects/s")
    results.record(
        "seed",
        f"{subjects} subjects",
        seconds=round(elapsed),
        subjects_per_second=round(subjects / elapsed),
        records_per_second=round(records / elapsed),
    )


class StandInAutovacuum:
    """What PostgreSQL's autovacuum does, with the server's own thresholds, for a server that has
    it off (this machine's CI configuration turns it off; production keeps PostgreSQL's default,
    on): every 30 s, VACUUM (ANALYZE) the tables of the run's database whose dead or inserted rows
    passed autovacuum's threshold, ANALYZE those whose changes passed autoanalyze's. Without it a
    seed's 9 million outbox rows, each updated once when sent, leave as many dead index entries for
    every relay to walk past: a million-person seed fell from 1,600 to 940 records/s by 1.6 million
    records, and rose to 1,370/s after one VACUUM."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="stand-in-autovacuum", daemon=True)
        self.rounds = 0

    def __enter__(self) -> StandInAutovacuum:
        with self.engine.connect() as connection:
            if connection.execute(sa.text("SHOW autovacuum")).scalar_one() == "off":
                print("  PostgreSQL's autovacuum is off here: the bench does its work every 30 s")
                self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
        self.engine.dispose()

    def _run(self) -> None:
        while not self.stop.wait(30):
            with self.engine.connect() as connection:
                # Throttled as autovacuum is (a VACUUM statement is not, unless told), so that
                # one during a load costs it what production's would.
                delay = connection.execute(sa.text("SHOW autovacuum_vacuum_cost_delay")).scalar_one()
                connection.execute(sa.text("SELECT set_config('vacuum_cost_delay', :delay, false)"), {"delay": delay})
                setting = {
                    name: float(connection.execute(sa.text(f"SHOW {name}")).scalar_one())
                    for name in (
                        "autovacuum_vacuum_threshold",
                        "autovacuum_vacuum_scale_factor",
                        "autovacuum_vacuum_insert_threshold",
                        "autovacuum_vacuum_insert_scale_factor",
                        "autovacuum_analyze_threshold",
                        "autovacuum_analyze_scale_factor",
                    )
                }
                tables = connection.execute(
                    sa.text(
                        "SELECT schemaname, relname, n_live_tup, n_dead_tup, n_ins_since_vacuum, n_mod_since_analyze"
                        " FROM pg_stat_user_tables"
                    )
                ).all()
                for schema, table, live, dead, inserted, changed in tables:
                    due = (
                        dead > setting["autovacuum_vacuum_threshold"] + setting["autovacuum_vacuum_scale_factor"] * live
                        or inserted
                        > setting["autovacuum_vacuum_insert_threshold"]
                        + setting["autovacuum_vacuum_insert_scale_factor"] * live
                    )
                    stale = changed > setting["autovacuum_analyze_threshold"] + (
                        setting["autovacuum_analyze_scale_factor"] * live
                    )
                    if due or stale:
                        verb = "VACUUM (ANALYZE)" if due else "ANALYZE"
                        connection.execute(sa.text(f'{verb} "{schema}"."{table}"'))
            self.rounds += 1


def settle(env: ServiceEnv, amqp: str) -> None:
    """Waits until the seed's tail is through (every event sent, every queue empty), then has
    PostgreSQL's statistics brought up to date, as an operator does after a bulk load (autovacuum
    would, a while later): the figures that follow are of the population, not of its arrival."""
    started = time.perf_counter()
    services = ("identity", "records", "approvals")

    def unsent() -> int:
        return sum(
            _one(env.database_url(s), s, "SELECT count(*) FROM outbox WHERE published_at IS NULL") for s in services
        )

    def queued() -> int:
        vhost = unquote(amqp.rsplit("/", 1)[1])
        listed = subprocess.run(
            ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "--no-table-headers", "messages"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.split()
        return sum(int(n) for n in listed if n.isdigit())

    wait_for(lambda: unsent() == 0 and queued() == 0, timeout=3600)
    for service in services:
        _one(env.database_url(service), service, "ANALYZE")
    print(f"  the mesh settled and PostgreSQL analysed in {time.perf_counter() - started:.0f} s")


def _one(url: str, schema: str, statement: str) -> int:
    engine = sa.create_engine(url, connect_args={"options": f"-csearch_path={schema}"}, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            result = connection.execute(sa.text(statement))
            return int(result.scalar_one()) if result.returns_rows else 0
    finally:
        engine.dispose()


def bench_proofs(mesh: Mesh, subjects: int, seconds: float) -> None:
    # People spread over the whole population, not its first pages.
    pick = random.Random(SEED)
    chosen = sorted(pick.sample(range(subjects), min(subjects, 2000)))
    people, wanted = [], iter(chosen)
    next_wanted = next(wanted, None)
    for index, person in enumerate(synthetic.population(subjects, seed=SEED)):
        if index == next_wanted:
            if person.kind == SubjectKind.RESIDENT:
                people.append(person.identifier)
            next_wanted = next(wanted, None)
        if next_wanted is None:
            break
    print(f"GetProof against the population ({len(people)} residents picked), {seconds:g} s")
    turns = itertools.count()
    for callers in (1, 16):
        stubs = [mesh.stub() for _ in range(callers)]

        def call(number: int, n: int, stubs: list[RecordsServiceStub] = stubs) -> object:
            person = people[next(turns) % len(people)]
            return stubs[number].GetProof(proof_request(person, f"population-{number}-{n}"), metadata=mesh.metadata)

        samples, elapsed, cpu = under_load(call, callers, seconds)
        name = f"records api GetProof, {callers} callers"
        report_load(name, samples, elapsed, cpu, f"{subjects:,} people: GetProof")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--offered", type=float, default=50)
    args = parser.parse_args()
    databases = PostgresDatabases()
    with tempfile.TemporaryDirectory() as tmp, virtual_host() as amqp:
        env = ServiceEnv("records", databases.create(), Path(tmp), amqp, others=("identity", "approvals"))
        env.env |= {"OTEL_TRACES_EXPORTER": "none", "LOG_LEVEL": "WARNING"}
        try:
            start(env, amqp)
            # Through the whole run, as production's autovacuum is: stopped after the seed, the
            # loads that followed ran on plans made before the cases came (a scan of every case a
            # second) and on an outbox index of dead entries no vacuum would ever clear.
            with StandInAutovacuum(env.database_url("records")):
                bench_seed(env, args.subjects)
                settle(env, amqp)
                bench_proofs(Mesh(env), args.subjects, args.seconds)
                publish(env, [r for s in scenarios(clock.shanghai_date()) for r in s.records])
                bench_offered(Client(env), args.offered, args.seconds, f"{args.subjects:,} people: offered load")
            results.keep("population-postgresql", vars(args))
        finally:
            env.stop_all()
            databases.drop_all()


if __name__ == "__main__":
    main()
