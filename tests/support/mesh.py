"""The harness of the mesh tests: real RabbitMQ (a virtual host per mesh), real databases
(SQLite and PostgreSQL), and services started as subprocesses exactly the way `make run` starts
them; plain AMQP clients as an integrator would write them."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pika
import pytest
import sqlalchemy as sa

from govmesh.logs import mask_identifiers

ROOT = Path(__file__).resolve().parents[2]


AMQP_URI = os.environ.get("AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")


POSTGRES_URL = os.environ.get("GOVMESH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def amqp_connection(uri: str, **options: str) -> pika.BlockingConnection:
    """A pika connection to the first broker of ``uri`` that answers: one URI, or the nodes of a
    cluster separated by ";" as AMQP_URI names them. ``options`` are URI query parameters."""
    query = "?" + "&".join(f"{k}={v}" for k, v in options.items()) if options else ""
    return pika.BlockingConnection([pika.URLParameters(one + query) for one in uri.split(";") if one])


#: Ports handed out by this test process: a mesh's processes bind theirs only once started, so a
#: port checked free a moment ago may be handed out again before its first taker binds it.
_handed_out: set[int] = set()


def free_port() -> int:
    """A port no one listens on, below the kernel's ephemeral range: a port from bind(0) is an
    ephemeral one, which an outgoing connection (to PostgreSQL, RabbitMQ, another service) may
    take between this check and the service binding it. Each test process of a parallel suite
    (pytest-xdist) draws from its own slice of the range, and never hands out a port twice, so two
    meshes starting at once never pick the same port (one suite run lost a metrics port that way)."""
    low, _ = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    span = (low - 10000) // max(1, workers)
    first = 10000 + worker * span
    while True:
        port = random.randint(first, first + span - 1)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


@contextlib.contextmanager
def virtual_host() -> Iterator[str]:
    """A broker URI of a RabbitMQ virtual host of its own when this machine's rabbitmqctl can
    make one (deleted afterwards), so meshes alive at the same time never take each other's
    messages; the broker's default virtual host otherwise."""
    try:
        pika.BlockingConnection(pika.URLParameters(AMQP_URI)).close()
    except pika.exceptions.AMQPError as exc:
        pytest.fail(f"RabbitMQ must be running at {AMQP_URI} (make test starts it): {exc!r}")
    vhost = f"govmesh-test-{uuid.uuid4().hex[:8]}"
    user = pika.URLParameters(AMQP_URI).credentials.username  # type: ignore[attr-defined]
    try:
        for command in (["add_vhost", vhost], ["set_permissions", "-p", vhost, user, ".*", ".*", ".*"]):
            subprocess.run(["rabbitmqctl", "-q", *command], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        yield AMQP_URI
        return
    try:
        yield urlunsplit(urlsplit(AMQP_URI)._replace(path="/" + vhost))
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=30)


class PostgresDatabases:
    """Creates a fresh database per use and drops it afterwards."""

    def __init__(self) -> None:
        self.admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        self.created: list[str] = []

    def create(self) -> str:
        name = f"govmesh_test_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return POSTGRES_URL.rsplit("/", 1)[0] + "/" + name

    def drop_all(self) -> None:
        with self.admin.connect() as connection:
            for name in self.created:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


def database_for(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database a fixture parametrized on "sqlite" and "postgresql" asks for: a SQLite file in
    ``tmp_path``, or a fresh PostgreSQL database (dropped at the end of the session)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.db'}"
    databases: PostgresDatabases = request.getfixturevalue("postgres")
    return databases.create()


def govmesh(*args: str, env: dict[str, str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "govmesh.cli", *args], env=env, capture_output=True, text=True, timeout=60, **kwargs
    )


class Process:
    """A govmesh process (api or worker) running as users run it, its stderr kept in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.env = env
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None
        self.signalled = False

    def start(self) -> Process:
        self.signalled = False
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "govmesh.cli", *self.args], env=self.env, stdout=log, stderr=log, cwd=ROOT
        )
        return self

    def signal(self, sig: int = 15) -> None:
        """Ask the process to stop without waiting for it (see stop)."""
        assert self.popen is not None
        if self.popen.poll() is None and not self.signalled:
            self.popen.send_signal(sig)
            self.signalled = True

    def stop(self, sig: int = 15, timeout: float = 15) -> int:
        assert self.popen is not None
        if self.popen.poll() is None and not (self.signalled and sig == 15):
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            # Before killing it, have it print where every thread waits (govmesh.cli registers
            # SIGUSR1 for this), so a process that would not stop leaves the reason in its log.
            self.popen.send_signal(signal.SIGUSR1)
            time.sleep(1)
            self.popen.kill()
            return self.popen.wait(5)

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for_log(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.logs():
                return
            assert self.popen is not None
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.args} exited with {self.popen.returncode}:\n{self.logs()}")
            time.sleep(0.05)
        raise AssertionError(f"{self.args} did not log {text!r} in {timeout}s:\n{self.logs()}")


class ServiceEnv:
    """Environment of the services under test, as one mesh: each service its own database
    (a SQLite file each, or its own schema of one PostgreSQL database), its own ports; one key
    directory, so tokens minted for tests and by services verify everywhere."""

    def __init__(
        self, service: str, database_url: str, tmp_path: Path, amqp_uri: str, others: tuple[str, ...] = ()
    ) -> None:
        self.service = service
        self.tmp_path = tmp_path
        self.ports: dict[str, dict[str, int]] = {}
        self.env = {
            **os.environ,
            "AMQP_URI": amqp_uri,
            "GOVMESH_KEY_DIR": str(tmp_path / "keys"),
            # Spans go to the process's stdout, so tests can read what would be exported.
            "OTEL_TRACES_EXPORTER": "console",
            "LOG_LEVEL": "DEBUG",
            "PYTHONUNBUFFERED": "1",
            "GOVMESH_CLOCK_OFFSET_FILE": str(tmp_path / "clock-offset"),
        }
        for name in (service, *others):
            prefix = name.upper()
            ports = {
                "grpc": free_port(),
                "api_metrics": free_port(),
                "worker_metrics": free_port(),
                "ingest_metrics": free_port(),
            }
            self.ports[name] = ports
            url = (
                database_url.replace("service.db", f"{name}.db") if database_url.startswith("sqlite") else database_url
            )
            self.env |= {
                f"{prefix}_DATABASE_URL": url,
                f"{prefix}_GRPC_PORT": str(ports["grpc"]),
                f"{prefix}_API_METRICS_PORT": str(ports["api_metrics"]),
                f"{prefix}_WORKER_METRICS_PORT": str(ports["worker_metrics"]),
                f"{prefix}_INGEST_METRICS_PORT": str(ports["ingest_metrics"]),
            }
        self.processes: list[Process] = []
        self._tokens: dict[str, str] = {}

    def database_url(self, service: str | None = None) -> str:
        return self.env[f"{(service or self.service).upper()}_DATABASE_URL"]

    def engine(self, service: str) -> sa.Engine:
        """An engine on the service's own database (its schema, on PostgreSQL), for a test to
        read what the service stored; the caller disposes of it."""
        url = self.database_url(service)
        if url.startswith("sqlite"):
            return sa.create_engine(url)
        url = url.replace("postgresql://", "postgresql+psycopg://", 1)
        return sa.create_engine(url, connect_args={"options": f"-csearch_path={service}"})

    def target_of(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]['grpc']}"

    @property
    def target(self) -> str:
        return self.target_of(self.service)

    @property
    def grpc_port(self) -> int:
        return self.ports[self.service]["grpc"]

    @property
    def api_metrics_port(self) -> int:
        return self.ports[self.service]["api_metrics"]

    @property
    def worker_metrics_port(self) -> int:
        return self.ports[self.service]["worker_metrics"]

    def travel(self, delta: datetime.timedelta) -> None:
        """Move the services' clock (govmesh.clock) forward by `delta` from where it is now."""
        path = Path(self.env["GOVMESH_CLOCK_OFFSET_FILE"])
        offset = float(path.read_text()) if path.exists() else 0.0
        path.write_text(str(offset + delta.total_seconds()))

    def migrate(self, service: str | None = None) -> None:
        result = govmesh("migrate", service or self.service, env=self.env)
        assert result.returncode == 0, result.stderr

    def process(self, kind: str, service: str | None = None, instance: tuple[int, int] | None = None) -> Process:
        """Start a process of ``kind``; ``instance`` (k, n) makes it the k-th (0-based) of n of
        its kind, as `make run` with GOVMESH_SCALE starts them: every instance but the first has
        a metrics port of its own."""
        name = service or self.service
        log_path = self.tmp_path / f"{name}-{kind}-{len(self.processes)}.log"
        env = self.env
        if instance is not None:
            index, count = instance
            env = env | {"GOVMESH_INSTANCE": str(index), "GOVMESH_INSTANCES": str(count)}
            if index > 0:
                env[f"{name.upper()}_{kind.upper()}_METRICS_PORT"] = str(free_port())
        process = Process([kind, name], env, log_path)
        self.processes.append(process)
        return process.start()

    def metrics_port_of(self, process: Process, kind: str) -> int:
        return int(process.env[f"{process.args[1].upper()}_{kind.upper()}_METRICS_PORT"])

    def token(self, caller: str, ttl_minutes: int | None = None) -> str:
        """A bearer token for ``caller``. Minting runs a process, so a token of the policy's
        lifetime (hours, longer than any mesh) is minted once per mesh and caller."""
        if ttl_minutes is None and caller in self._tokens:
            return self._tokens[caller]
        args = ["dev-token", caller] + ([] if ttl_minutes is None else ["--ttl-minutes", str(ttl_minutes)])
        result = govmesh(*args, env=self.env)
        assert result.returncode == 0, result.stderr
        minted = result.stdout.strip()
        if ttl_minutes is None:
            self._tokens[caller] = minted
        return minted

    def all_output(self) -> str:
        return "".join(p.logs() for p in self.processes)

    def stop_all(self) -> None:
        # All asked at once, then waited for: each drains in parallel with the others.
        for process in self.processes:
            process.signal()
        for process in self.processes:
            process.stop()


def assert_no_raw_identifiers(text: str, where: str) -> None:
    """Privacy is a correctness property: whatever a process printed (logs, exported spans) must
    hold nothing that still looks like a resident ID or credit code once masking is applied."""
    masked = mask_identifiers(text)
    if masked != text:
        leaked = next(a for a, b in zip(text.splitlines(), masked.splitlines(), strict=False) if a != b)
        raise AssertionError(f"{where}: an identifier escaped masking in: {mask_identifiers(leaked)[:300]}")


def metrics_text(port: int) -> str:
    """What a process's /metrics serves (Prometheus text format)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def http_get(port: int, path: str) -> tuple[int, str]:
    """The status and body a process's HTTP port answers on ``path`` (0 and why: no answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()
    except OSError as error:
        return 0, str(error)


def wait_for(condition: Callable[[], object], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not reached in {timeout}s: {condition}")


def consumers(amqp_uri: str, queue: str) -> int:
    """How many consumers a queue has (0 while it does not exist yet)."""
    connection = amqp_connection(amqp_uri)
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.consumer_count)
    except pika.exceptions.ChannelClosedByBroker:
        return 0
    finally:
        if connection.is_open:
            connection.close()


Delivery = tuple[pika.spec.Basic.Deliver, pika.BasicProperties, bytes]


class Integrator:
    """A plain AMQP client bound to a service's events, as an integrator would bind."""

    def __init__(self, amqp_uri: str, exchange: str, routing_key: str = "#") -> None:
        self.connection = amqp_connection(amqp_uri)
        self.channel = self.connection.channel()
        self.channel.exchange_declare(exchange, "topic", durable=True)
        self.queue = self.channel.queue_declare("", exclusive=True).method.queue
        self.channel.queue_bind(self.queue, exchange, routing_key)

    def receive(self, count: int, timeout: float = 15) -> list[Delivery]:
        messages = []
        deadline = time.monotonic() + timeout
        while len(messages) < count and time.monotonic() < deadline:
            method, properties, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                self.connection.sleep(0.05)
                continue
            messages.append((method, properties, body))
        return messages

    def drain(self, quiet: float = 1.5) -> list[Delivery]:
        """Everything that arrives until nothing has come for `quiet` seconds."""
        messages = []
        last = time.monotonic()
        while time.monotonic() - last < quiet:
            method, properties, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                self.connection.sleep(0.05)
                continue
            messages.append((method, properties, body))
            last = time.monotonic()
        return messages

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()


def dead_letters(
    amqp_uri: str,
    queue: str,
    wanted: Callable[[Delivery], bool],
    count: int = 1,
    timeout: float = 15,
    quiet: float = 1.5,
) -> list[Delivery]:
    """The messages of ``queue``'s dead-letter queue (``<queue>.dead-letter``) that ``wanted``
    picks: waits until ``count`` of them have come (or ``timeout``), then until nothing has come
    for ``quiet`` seconds, so that one copy too many is seen too. It takes every message it reads
    (a test that shares the queue picks its own by what it published)."""
    connection = amqp_connection(amqp_uri)
    picked: list[Delivery] = []
    try:
        channel = connection.channel()
        deadline, last = time.monotonic() + timeout, time.monotonic()
        while (len(picked) < count and time.monotonic() < deadline) or time.monotonic() - last < quiet:
            method, properties, body = channel.basic_get(f"{queue}.dead-letter", auto_ack=True)
            if method is None:
                connection.sleep(0.05)
                continue
            if wanted((method, properties, body)):
                picked.append((method, properties, body))
                last = time.monotonic()
    finally:
        connection.close()
    return picked


def call_nameko_rpc(amqp_uri: str, service: str, method: str, **kwargs: object) -> dict[str, object]:
    """Call a worker's nameko RPC the way any AMQP client can: nameko's wire protocol."""
    connection = amqp_connection(amqp_uri)
    try:
        channel = connection.channel()
        reply_queue = channel.queue_declare("", exclusive=True).method.queue
        # nameko replies through its rpc exchange, routed by the reply queue's name.
        channel.exchange_declare("nameko-rpc", "topic", durable=True)
        channel.queue_bind(reply_queue, "nameko-rpc", reply_queue)
        correlation_id = str(uuid.uuid4())
        channel.basic_publish(
            "nameko-rpc",
            f"{service}.{method}",
            json.dumps({"args": [], "kwargs": kwargs}),
            pika.BasicProperties(
                reply_to=reply_queue,
                correlation_id=correlation_id,
                content_type="application/json",
                content_encoding="utf-8",
            ),
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            method_frame, properties, body = channel.basic_get(reply_queue, auto_ack=True)
            if method_frame is not None and properties.correlation_id == correlation_id:
                return dict(json.loads(body))
            connection.sleep(0.05)
        raise AssertionError(f"no reply from {service}.{method}")
    finally:
        connection.close()
