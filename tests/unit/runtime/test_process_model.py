"""The process model's guard: grpcio is never imported where eventlet has patched the standard
library (its C core breaks there), and workers import no gRPC code of their own."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from govmesh.config import ROOT, SERVICES
from tests.support.mesh import PostgresDatabases

PROBE = """
import sys, warnings
warnings.simplefilter("ignore")
import eventlet
eventlet.monkey_patch()
import importlib
import govmesh.worker
for name in {modules!r}:
    importlib.import_module(name)
govmesh.worker.assert_no_grpc()
loaded = sorted(m for m in sys.modules if m == "grpc" or m.startswith("grpc."))
print("grpc modules:", loaded)
sys.exit(1 if loaded else 0)
"""


def worker_modules() -> list[str]:
    return [f"services.{s}.worker" for s in SERVICES if (ROOT / "services" / s / "worker.py").exists()]


def test_worker_processes_never_import_grpcio() -> None:
    modules = worker_modules()
    assert "services.identity.worker" in modules
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(modules=modules)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "grpc modules: []" in result.stdout


def test_the_guard_itself_fails_when_grpcio_is_loaded() -> None:
    probe = PROBE.format(modules=["grpc"]).replace("govmesh.worker.assert_no_grpc()", "")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "'grpc'" in result.stdout


def probe_ticks(probe: str) -> int:
    """Runs a probe that reports how often a green ticker ran while another green thread waited."""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.rsplit(":", 1)[1])


STALL_PROBE = """
import sys
from govmesh.green import patch_worker_process
{patch}
import eventlet
from govmesh.db import service_database

db = service_database("records", {url!r})
ticks = []

def ticker():
    while True:
        eventlet.sleep(0.01)
        ticks.append(1)

def slow_query():
    with db.read() as session:
        session.execute(__import__("sqlalchemy").text("SELECT pg_sleep(1)"))

eventlet.spawn(ticker)
eventlet.spawn(slow_query).wait()
print("ticks during a 1 s query:", len(ticks))
"""


def test_a_worker_waiting_for_postgresql_lets_its_other_green_threads_run(postgres: PostgresDatabases) -> None:
    """A handler's query must not stall the worker: the worker's process patch makes psycopg
    wait the green way. Without it (the probe left unpatched but for eventlet), the ticker
    stops for the whole query."""
    url = postgres.create()

    def ticks(patch: str) -> int:
        return probe_ticks(STALL_PROBE.format(patch=patch, url=url))

    assert ticks("patch_worker_process()") >= 50, "the worker's other green threads ran while it waited"
    unpatched = "import eventlet; eventlet.monkey_patch()"
    assert ticks(unpatched) <= 5, "the probe itself must show a stall when psycopg waits in C"


SQLITE_PROBE = """
import subprocess, sys, sqlite3
{patch}
import eventlet
import sqlalchemy as sa
from govmesh.db import service_database

path = {path!r}
sqlite3.connect(path).execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
holder = subprocess.Popen([sys.executable, "-c", {holder!r}], stdout=subprocess.PIPE, text=True)
assert holder.stdout.readline().strip() == "locked"
db = service_database("records", "sqlite:///" + path)
ticks = []

def ticker():
    while True:
        eventlet.sleep(0.01)
        ticks.append(1)

def write():
    with db.transaction() as session:
        session.execute(sa.text("INSERT INTO t VALUES (1)"))

eventlet.spawn(ticker)
eventlet.spawn(write).wait()
holder.wait()
print("ticks while waiting 1 s for the write lock:", len(ticks))
"""

HOLDER = """
import sqlite3, time
connection = sqlite3.connect({path!r}, isolation_level=None)
connection.execute("PRAGMA journal_mode=WAL")
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(1)
connection.execute("COMMIT")
"""


def test_a_worker_waiting_for_sqlites_write_lock_lets_its_other_green_threads_run(tmp_path: Path) -> None:
    """The api holds SQLite's write lock; a worker's handler waits for it in green sleeps, not in
    SQLite's C busy handler, and its write still lands. Without the worker's patch (a process
    that is not green), the wait holds the whole process."""

    def ticks(patch: str, name: str) -> int:
        path = str(tmp_path / f"{name}.db")
        counted = probe_ticks(SQLITE_PROBE.format(patch=patch, path=path, holder=HOLDER.format(path=path)))
        assert sqlite3.connect(path).execute("SELECT count(*) FROM t").fetchone() == (1,), "the write landed"
        return counted

    assert ticks("from govmesh.green import patch_worker_process; patch_worker_process()", "green") >= 20
    assert ticks("", "plain") <= 5, "the probe itself must show the stall of a process that is not green"
