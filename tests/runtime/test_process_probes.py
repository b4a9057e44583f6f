"""/livez and /readyz of the processes without gRPC, asked over HTTP of real processes as Kubernetes
asks them: identity's worker (nameko on eventlet) and crowd's ingest (py-amqp), each against a
broker that is away and then back, and a database that is not migrated yet."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.support.mesh import ROOT, Process, ServiceEnv, free_port, wait_for
from tests.support.mesh import http_get as probe


def answers(port: int, path: str, status: int, *words: str) -> bool:
    code, body = probe(port, path)
    return code == status and all(word in body for word in words)


class BrokerDoor:
    """A port in front of the broker, closed until opened: the broker away, then back; closing
    it again cuts the connections made through it, as a broker going away does. Frozen, it
    passes nothing either way and closes nothing, as a network partition or a node lost without
    a word does."""

    def __init__(self, amqp_uri: str) -> None:
        broker = urlsplit(amqp_uri)
        self.target = (broker.hostname or "127.0.0.1", broker.port or 5672)
        self.port = free_port()
        userinfo = broker.netloc.rpartition("@")[0]
        self.uri = urlunsplit(broker._replace(netloc=f"{userinfo}@127.0.0.1:{self.port}"))
        self.listener: socket.socket | None = None
        self.connections: list[socket.socket] = []
        self.frozen = False

    def open(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if not self.frozen:
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def freeze(self) -> None:
        self.frozen = True

    def thaw(self) -> None:
        """Passes again, for new connections: those made before are cut, as a partition's end
        finds them given up on both sides."""
        for end in self.connections:
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.connections = []
        self.frozen = False

    def close(self) -> None:
        # A shutdown wakes the accept() waiting on the socket, which would keep the port bound.
        for end in [self.listener, *self.connections] if self.listener else self.connections:
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self.listener is not None:
            self.listener.close()
        self.connections = []


@pytest.fixture
def door(amqp_uri: str) -> Iterator[BrokerDoor]:
    door = BrokerDoor(amqp_uri)
    yield door
    door.close()


@pytest.fixture
def sqlite_env(tmp_path: Path, amqp_uri: str) -> Iterator[ServiceEnv]:
    env = ServiceEnv("identity", f"sqlite:///{tmp_path / 'service.db'}", tmp_path, amqp_uri, others=("crowd",))
    yield env
    env.stop_all()


def test_a_running_worker_is_live_and_ready_and_says_so(identity_env: ServiceEnv) -> None:
    identity_env.migrate()
    identity_env.process("worker").wait_for_log("starting services: identity")
    port = identity_env.worker_metrics_port
    wait_for(lambda: answers(port, "/readyz", 200), timeout=30)
    status, body = probe(port, "/readyz")
    assert "broker (rpc consumer) ok" in body and "database ok" in body, body
    status, body = probe(port, "/livez")
    assert status == 200 and "the worker's event loop turned" in body, body
    # /metrics is rendered by the hub and still served on the same port.
    status, body = probe(port, "/metrics")
    assert status == 200 and 'govmesh_outbox_backlog{service="identity"}' in body


def away_then_back(
    env: ServiceEnv, door: BrokerDoor, kind: str, service: str, check: str, loop: str
) -> tuple[int, str]:
    """Starts the process against a broker that is away: live but not ready, naming the broker;
    ready once the broker is there; not ready again when it goes (connections cut), and ready
    again when it is back; then stops it. What its /metrics answered."""
    env.env["AMQP_URI"] = door.uri
    process = env.process(kind, service)
    port = env.metrics_port_of(process, kind)
    wait_for(lambda: answers(port, "/readyz", 503, f"{check}: "), timeout=30)
    # Away is not stuck: restarting the process would not bring the broker back.
    assert answers(port, "/livez", 200, f"the {loop} turned")
    door.open()
    wait_for(lambda: answers(port, "/readyz", 200, f"{check} ok", "database ok"), timeout=90)
    door.close()
    wait_for(lambda: answers(port, "/readyz", 503, f"{check}: "), timeout=30)
    assert answers(port, "/livez", 200, f"the {loop} turned")
    door.open()
    wait_for(lambda: answers(port, "/readyz", 200, f"{check} ok"), timeout=90)
    metrics = probe(port, "/metrics")
    assert process.stop() == 0
    return metrics


def test_a_worker_without_its_broker_is_live_but_not_ready_until_the_broker_is_back(
    sqlite_env: ServiceEnv, door: BrokerDoor
) -> None:
    sqlite_env.migrate()
    status, body = away_then_back(
        sqlite_env, door, "worker", "identity", "broker (rpc consumer)", "worker's event loop"
    )
    assert status == 200 and 'govmesh_outbox_backlog{service="identity"}' in body


def test_a_worker_stops_at_sigterm_even_while_its_broker_is_away(sqlite_env: ServiceEnv, door: BrokerDoor) -> None:
    """nameko's graceful stop waits for its consumers, which wait for the broker: without a bound,
    a worker told to stop during a broker outage hung until Kubernetes killed it 30 s later, and
    an operator's Ctrl-C or `make run`'s stop did not end it at all."""
    sqlite_env.migrate()
    sqlite_env.env |= {"AMQP_URI": door.uri, "GOVMESH_WORKER_STOP_SECONDS": "3"}
    door.open()
    process = sqlite_env.process("worker", "identity")
    port = sqlite_env.worker_metrics_port
    wait_for(lambda: answers(port, "/readyz", 200, "broker (rpc consumer) ok"), timeout=60)
    door.close()
    wait_for(lambda: answers(port, "/readyz", 503, "broker (rpc consumer): "), timeout=30)
    assert process.stop(timeout=45) == 0  # unbounded, it never stopped
    assert "did not stop within 3 s" in process.logs()


def test_ingest_gives_up_a_silent_broker_and_is_not_ready_until_it_consumes_again(
    sqlite_env: ServiceEnv, door: BrokerDoor
) -> None:
    """A partition closes nothing: without a heartbeat the consumer waited on a connection that
    would never deliver again, and said it was ready all the while."""
    sqlite_env.migrate("crowd")
    sqlite_env.env |= {"AMQP_URI": door.uri, "GOVMESH_AMQP_HEARTBEAT_SECONDS": "2"}
    door.open()
    process = sqlite_env.process("ingest", "crowd")
    port = sqlite_env.metrics_port_of(process, "ingest")
    wait_for(lambda: answers(port, "/readyz", 200, "broker ok"), timeout=60)
    door.freeze()
    wait_for(lambda: answers(port, "/readyz", 503, "broker: ", "heartbeat"), timeout=30)
    assert answers(port, "/livez", 200, "the consume loop turned")
    door.thaw()
    wait_for(lambda: answers(port, "/readyz", 200, "broker ok"), timeout=60)
    assert process.stop() == 0


def test_a_worker_on_an_unmigrated_database_is_not_ready_until_it_is_migrated(sqlite_env: ServiceEnv) -> None:
    sqlite_env.process("worker")
    port = sqlite_env.worker_metrics_port
    wait_for(lambda: answers(port, "/readyz", 503, "database: database at migration none"), timeout=30)
    sqlite_env.migrate()
    wait_for(lambda: answers(port, "/readyz", 200, "database ok"), timeout=30)


def test_ingest_is_ready_once_it_consumes_its_shards_and_not_while_the_broker_is_away(
    sqlite_env: ServiceEnv, door: BrokerDoor
) -> None:
    sqlite_env.migrate("crowd")
    status, body = away_then_back(sqlite_env, door, "ingest", "crowd", "broker", "consume loop")
    assert status == 200 and "govmesh_crowd_readings_total" in body


def stalled_hub(env: ServiceEnv, tmp_path: Path, *args: str) -> Process:
    """tests.support.stalled_hub, run as a worker is."""
    stalled = Process(["-m", "tests.support.stalled_hub", *args], env.env, tmp_path / "stalled.log")
    stalled.popen = subprocess.Popen(
        [sys.executable, *stalled.args],
        env=env.env,
        stdout=stalled.log_path.open("ab"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    env.processes.append(stalled)
    return stalled


def test_livez_fails_once_the_workers_hub_is_stalled_and_the_server_still_says_why(
    sqlite_env: ServiceEnv, tmp_path: Path
) -> None:
    sqlite_env.migrate()
    go = tmp_path / "stall"
    stalled = stalled_hub(sqlite_env, tmp_path, str(go))
    port = sqlite_env.worker_metrics_port
    wait_for(lambda: answers(port, "/livez", 200, "the worker's event loop turned"), timeout=30)
    go.touch()
    stalled.wait_for_log("blocking the hub")
    wait_for(lambda: answers(port, "/livez", 503, "stalled: the worker's event loop has not turned for"), timeout=30)
    # /metrics waits for the hub, which does not answer; the probes still do.
    assert answers(port, "/metrics", 503, "did not render the metrics")
    assert answers(port, "/readyz", 503, "entrypoints: not started yet")


def test_a_scrape_waiting_on_the_database_does_not_stall_the_workers_liveness(
    sqlite_env: ServiceEnv, tmp_path: Path
) -> None:
    """The outbox backlog is counted when Prometheus scrapes: a database that does not answer
    kept the count, and the heartbeat that rendered it, waiting, and Kubernetes restarted a
    worker whose hub was turning all along."""
    sqlite_env.migrate()
    go = tmp_path / "stall"
    stalled = stalled_hub(sqlite_env, tmp_path, str(go), "metrics")
    port = sqlite_env.worker_metrics_port
    wait_for(lambda: answers(port, "/livez", 200, "the worker's event loop turned"), timeout=30)
    go.touch()
    stalled.wait_for_log("a metric waits")
    assert answers(port, "/metrics", 503, "did not render the metrics")  # after its 5 s wait
    assert answers(port, "/livez", 200, "the worker's event loop turned")  # its limit is 1 s


def test_an_ingest_with_no_shard_of_its_own_is_ready_as_the_others_standby(sqlite_env: ServiceEnv) -> None:
    sqlite_env.migrate("crowd")
    # The ninth of nine processes over the default eight shards owns none: it only stands by.
    standby = sqlite_env.process("ingest", "crowd", instance=(8, 9))
    port = sqlite_env.metrics_port_of(standby, "ingest")
    wait_for(lambda: answers(port, "/readyz", 200, "broker ok", "database ok"), timeout=60)
    standby.wait_for_log('"shards": []')
