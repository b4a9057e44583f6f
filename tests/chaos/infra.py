"""What a chaos run may break without breaking anyone else: a RabbitMQ node and a PostgreSQL
cluster of its own (the machine's shared broker and database serve other work at the same time, so
a fault is never injected into them), and a lock that takes a SQLite database away."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import sqlalchemy as sa


def _run(command: list[str], timeout: float = 60, user: str | None = None) -> str:
    if user is not None and os.geteuid() == 0:
        command = ["runuser", "-u", user, "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr or result.stdout}")
    return result.stdout


def _free_port(candidates: range, also_plus: int | None = None) -> int:
    """A free port of ``candidates`` (with ``also_plus``: one whose port + also_plus is free too,
    as RabbitMQ pairs its AMQP and Erlang distribution ports)."""
    for port in candidates:
        wanted = [port] if also_plus is None else [port, port + also_plus]
        with contextlib.ExitStack() as sockets:
            try:
                for each in wanted:
                    sockets.enter_context(socket.socket()).bind(("127.0.0.1", each))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {candidates}")


class PrivateBroker:
    """A RabbitMQ node of the run's own (its own name, ports, data and plugins), started from the
    machine's rabbitmq-server: it can be killed with SIGKILL and started again on the same data,
    as an operator's broker crashes and its supervisor restarts it."""

    def __init__(self) -> None:
        self.port = _free_port(range(5680, 5780), also_plus=20000)
        self.node = f"govmesh-chaos-{self.port}@localhost"
        self.base = Path(tempfile.mkdtemp(prefix="govmesh-chaos-rabbitmq-"))
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        # crowd shards its readings over a consistent-hash exchange (a plugin off by default).
        (self.base / "enabled_plugins").write_text("[rabbitmq_consistent_hash_exchange].\n")
        if os.geteuid() == 0:
            shutil.chown(self.base, "rabbitmq", "rabbitmq")
            for child in self.base.iterdir():
                shutil.chown(child, "rabbitmq", "rabbitmq")
        self.env = os.environ | {
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.port + 20000),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_PID_FILE": str(self.base / "pid"),
        }

    @property
    def uri(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def uri_of(self, vhost: str) -> str:
        return self.uri + vhost

    def start(self) -> None:
        (self.base / "pid").unlink(missing_ok=True)
        subprocess.run(["rabbitmq-server", "-detached"], env=self.env, capture_output=True, timeout=60, check=True)
        self.ctl("wait", str(self.base / "pid"), "--timeout", "120", timeout=150)

    def pid(self) -> int:
        return int((self.base / "pid").read_text().strip())

    def kill(self) -> None:
        """SIGKILL to the node's Erlang VM: no clean shutdown, unconfirmed messages lost to it."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid(), signal.SIGKILL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self.answers():
            time.sleep(0.1)

    def answers(self) -> bool:
        try:
            pika.BlockingConnection(pika.URLParameters(self.uri + "%2F?connection_attempts=1&socket_timeout=1")).close()
        except pika.exceptions.AMQPError:
            return False
        return True

    def ctl(self, *args: str, timeout: float = 60) -> str:
        return _run(["rabbitmqctl", "-q", "-n", self.node, *args], timeout=timeout)

    def add_vhost(self) -> str:
        vhost = f"chaos-{uuid.uuid4().hex[:8]}"
        self.ctl("add_vhost", vhost)
        self.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        return vhost

    def queue_depths(self, vhost: str) -> dict[str, int]:
        """Messages ready or unacknowledged in each queue of ``vhost``; -1 for a queue the broker
        cannot count (its only node is down)."""
        out = self.ctl("list_queues", "-p", vhost, "--no-table-headers", "name", "messages", timeout=60)
        depths = {}
        for line in out.splitlines():
            name, _, count = line.rpartition("\t")
            if name:
                depths[name] = int(count) if count.strip().isdigit() else -1
        return depths

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError, OSError):
            self.ctl("stop", timeout=60)
        with contextlib.suppress(OSError, ValueError):
            os.kill(self.pid(), signal.SIGKILL)
        shutil.rmtree(self.base, ignore_errors=True)


#: nameko's RPC queues: a service's requests (rpc-<service>) and a caller's replies
#: (rpc.reply-<service>-<uuid>, durable: a node that dies with it leaves its caller unable to
#: declare it again anywhere else unless it is mirrored).
NAMEKO_RPC_QUEUES = r"^rpc[-.]"


class PrivateCluster:
    """Three RabbitMQ nodes of the run's own joined in one cluster (quorum queues keep a replica
    on each): AMQP_URI names all three, and a process whose node dies connects to another. The
    nameko RPC queues are classic queues, so each virtual host mirrors them on every node (a
    policy, as an operator of RabbitMQ 3.x declares it; 4.x has no mirroring)."""

    def __init__(self, size: int = 3) -> None:
        self.size = size
        self.nodes: list[PrivateBroker] = []

    def start(self) -> None:
        # One at a time: a node takes its ports when it starts, so the next one picks others.
        while len(self.nodes) < self.size:
            node = PrivateBroker()
            node.start()
            self.nodes.append(node)
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", self.nodes[0].node)
            node.ctl("start_app")

    @property
    def uri(self) -> str:
        return ";".join(node.uri for node in self.nodes)

    def uri_of(self, vhost: str) -> str:
        return ";".join(node.uri_of(vhost) for node in self.nodes)

    def live(self) -> PrivateBroker:
        return next(node for node in self.nodes if node.answers())

    def ctl(self, *args: str, timeout: float = 60) -> str:
        return self.live().ctl(*args, timeout=timeout)

    def add_vhost(self) -> str:
        vhost = self.live().add_vhost()
        mirrored = '{"ha-mode": "all", "ha-sync-mode": "automatic"}'
        self.ctl("set_policy", "-p", vhost, "--apply-to", "queues", "rpc-on-every-node", NAMEKO_RPC_QUEUES, mirrored)
        return vhost

    def queue_depths(self, vhost: str) -> dict[str, int]:
        return self.live().queue_depths(vhost)

    def kill(self) -> None:
        """SIGKILL to the first node, the one every process connects to first."""
        self.nodes[0].kill()

    def revive(self) -> None:
        """Starts again every node that does not answer: it rejoins the cluster from its data."""
        for node in self.nodes:
            if not node.answers():
                node.start()

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()


class PrivatePostgres:
    """A PostgreSQL cluster of the run's own (initdb into a temporary folder, the machine's
    server binaries): stopped at once (immediate mode, as a crash) and started again on the
    same data."""

    def __init__(self) -> None:
        versions = sorted(Path("/usr/lib/postgresql").iterdir(), key=lambda p: int(p.name))
        self.bin = versions[-1] / "bin"
        self.base = Path(tempfile.mkdtemp(prefix="govmesh-chaos-postgres-"))
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        self.data = self.base / "data"
        self.port = _free_port(range(5440, 5540))
        self.user = "postgres" if os.geteuid() == 0 else None
        _run([str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"], user=self.user)
        self.admin: sa.Engine | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c max_connections=300"
        _run(
            [
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.base / "log"),
                "-w",
                "start",
            ],
            user=self.user,
        )

    def crash(self) -> None:
        """Immediate shutdown: every connection dropped at once, as when the server dies."""
        _run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"], user=self.user)

    def create_database(self) -> str:
        name = f"chaos_{uuid.uuid4().hex[:10]}"
        if self.admin is None:
            self.admin = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        with self.admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        return self.url(name)

    def stop(self) -> None:
        if self.admin is not None:
            self.admin.dispose()
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
            _run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"], user=self.user)
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def sqlite_taken_away(paths: list[Path], seconds: float) -> Iterator[None]:
    """SQLite's form of "the database is gone": another process holds each file's exclusive lock
    for ``seconds``, so no service can read or write it until it lets go."""
    ready = threading.Barrier(len(paths) + 1)
    release = threading.Event()

    def hold(path: Path) -> None:
        connection = sqlite3.connect(path, timeout=60, isolation_level=None)
        try:
            connection.execute("BEGIN EXCLUSIVE")
            ready.wait()
            release.wait(seconds)
            connection.execute("ROLLBACK")
        finally:
            connection.close()

    holders = [threading.Thread(target=hold, args=(path,), daemon=True) for path in paths]
    for holder in holders:
        holder.start()
    ready.wait(60)
    try:
        yield
    finally:
        release.set()
        for holder in holders:
            holder.join(30)
