"""The mesh a chaos scenario breaks: every process started on its own (not under honcho, so one
can be killed) and watched by a supervisor that starts again whatever exits, as systemd or
Kubernetes would; what it had to restart is counted, because a process that was not the fault's
target must recover by itself."""

from __future__ import annotations

import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.mesh import Process, ServiceEnv, consumers, wait_for
from tests.support.people import wait_serving

#: (service, kind) of every process of the mesh, in the order they start.
PROCESSES: tuple[tuple[str, str], ...] = (
    ("identity", "api"),
    ("identity", "worker"),
    ("records", "api"),
    ("records", "worker"),
    ("approvals", "api"),
    ("approvals", "worker"),
    ("crowd", "api"),
    ("crowd", "worker"),
    ("crowd", "ingest"),
    ("health", "api"),
    ("health", "worker"),
)

SERVICES = ("identity", "records", "approvals", "crowd", "health")

GRPC_SERVICES = {
    "identity": "govmesh.identity.v1.IdentityService",
    "records": "govmesh.records.v1.RecordsService",
    "approvals": "govmesh.approvals.v1.ApprovalsService",
    "crowd": "govmesh.crowd.v1.CrowdService",
    "health": "govmesh.health.v1.MedicalCreditService",
}


@dataclass
class Watched:
    service: str
    kind: str
    process: Process
    #: Exits the supervisor saw, with the exit status: the fault's own kills among them.
    exits: list[int] = field(default_factory=list)
    #: Kills the scenario made on purpose (a kill is not a failure to recover).
    killed: int = 0

    @property
    def name(self) -> str:
        return f"{self.service}-{self.kind}"


class Supervisor:
    """Starts each process again one second after it exits, whatever the reason."""

    def __init__(self) -> None:
        self.watched: list[Watched] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)

    def add(self, watched: Watched) -> None:
        with self._lock:
            self.watched.append(watched)

    def start(self) -> None:
        self._thread.start()

    def _watch(self) -> None:
        while not self._stopping.wait(0.2):
            with self._lock:
                exited = [w for w in self.watched if w.process.popen and w.process.popen.poll() is not None]
            for watched in exited:
                assert watched.process.popen is not None
                watched.exits.append(watched.process.popen.returncode)
                if self._stopping.wait(1.0):
                    return
                watched.process.start()

    def kill(self, service: str, kind: str) -> None:
        """SIGKILL: no clean-up, no drain; the supervisor starts it again."""
        watched = self.find(service, kind)
        watched.killed += 1
        assert watched.process.popen is not None
        watched.process.popen.kill()

    def find(self, service: str, kind: str) -> Watched:
        return next(w for w in self.watched if (w.service, w.kind) == (service, kind))

    def unplanned_restarts(self) -> dict[str, int]:
        """Processes that exited more often than the scenario killed them."""
        return {w.name: len(w.exits) - w.killed for w in self.watched if len(w.exits) > w.killed}

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        for watched in self.watched:
            watched.process.signal()
        for watched in self.watched:
            watched.process.stop()


class ChaosMesh:
    """Five services on one broker virtual host and one database (a SQLite file per service, or
    one PostgreSQL database with a schema per service), every process supervised."""

    def __init__(self, database_url: str, amqp_uri: str, tmp_path: Path, settings: dict[str, str]) -> None:
        self.amqp_uri = amqp_uri
        self.env = ServiceEnv(
            "approvals", database_url, tmp_path, amqp_uri, others=tuple(s for s in SERVICES if s != "approvals")
        )
        self.env.env |= settings
        self.supervisor = Supervisor()

    def start(self) -> None:
        with futures.ThreadPoolExecutor(len(SERVICES)) as pool:
            list(pool.map(self.env.migrate, SERVICES))
        for service, kind in PROCESSES:
            process = self.env.process(kind, service)
            self.supervisor.add(Watched(service, kind, process))
            if (service, kind) == ("records", "worker"):
                wait_for(lambda: consumers(self.amqp_uri, "rpc-records") > 0, timeout=60)
        wait_for(lambda: consumers(self.amqp_uri, "rpc-identity") > 0, timeout=60)
        wait_for(lambda: consumers(self.amqp_uri, "crowd.readings.shard.0") > 0, timeout=60)
        wait_for(
            lambda: consumers(self.amqp_uri, "evt-approvals-case_submitted--approvals.on_case_submitted") > 0,
            timeout=60,
        )
        self.wait_serving()
        self.supervisor.start()

    def wait_serving(self, timeout: float = 60) -> None:
        for service, name in GRPC_SERVICES.items():
            wait_serving(self.env.target_of(service), name, timeout=timeout)

    def serving(self, timeout: float = 60) -> bool:
        try:
            self.wait_serving(timeout)
        except AssertionError:
            return False
        return True

    def database_url(self, service: str) -> str:
        return self.env.database_url(service)

    def stop(self) -> None:
        self.supervisor.stop()


def wait_until(condition: object, timeout: float, interval: float = 0.5) -> bool:
    """Whether ``condition()`` became true within ``timeout`` seconds."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())
