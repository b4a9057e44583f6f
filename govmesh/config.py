"""Settings read from the environment, the same way by every process of every service.

Every variable has a documented default so a fresh checkout runs with nothing set; `govmesh
<command> --help` and the README list them. These are the runtime's; a service documents the
variables only it reads in its own package (services/<service>/__init__.py, ENVIRONMENT).
A service-specific variable (IDENTITY_GRPC_PORT) wins over the shared one (GRPC_PORT is
deliberately absent: ports differ per service).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

ROOT = Path(__file__).resolve().parent.parent

# The order fixes the default ports: gRPC 5005n, api metrics 910n, worker metrics 911n.
SERVICES = ("identity", "records", "approvals", "health", "crowd")

ENVIRONMENT_DOC = """\
environment (defaults in brackets):
  AMQP_URI                    RabbitMQ [amqp://guest:guest@127.0.0.1:5672/]
  DATABASE_URL                SQLAlchemy URL shared by all services, each in its own schema
                              [sqlite file var/<service>.db per service]
  <SERVICE>_DATABASE_URL      per-service override, e.g. IDENTITY_DATABASE_URL
  BIND_HOST                   address the gRPC and metrics servers listen on [127.0.0.1]
  <SERVICE>_GRPC_PORT         gRPC port [identity 50051, records 50052, approvals 50053,
                              health 50054, crowd 50055]
  <SERVICE>_GRPC_TARGET       where other services call it [127.0.0.1:<SERVICE>_GRPC_PORT]
  <SERVICE>_API_METRICS_PORT  Prometheus port of the api process [9101..9105]
  <SERVICE>_WORKER_METRICS_PORT  Prometheus port of the worker process [9111..9115]
  <SERVICE>_INGEST_METRICS_PORT  Prometheus port of an ingest process (crowd's) [9121..9125]
  GOVMESH_INSTANCES           how many processes of this kind run [1]; with more than one, the api
                              processes of a service share its gRPC port (SO_REUSEPORT: the kernel
                              spreads connections over them) and ingest processes split the shards
  GOVMESH_INSTANCE            which of them this one is, 0..GOVMESH_INSTANCES-1 (a StatefulSet's
                              ordinal) [0]; instance k's default metrics ports are the ones above
                              + 100 * k (a port set explicitly is taken as it is)
  GOVMESH_WORKER_CONCURRENCY  events, RPCs and timers a worker handles at once (nameko's
                              max_workers; its database pool follows) [10]
  GOVMESH_WORKER_STOP_SECONDS how long a worker told to stop (SIGTERM, Ctrl-C) lets its handlers
                              finish before it kills them, which their messages survive (redelivered,
                              each handler's key keeps effects single); under Kubernetes' 30 s grace [20]
  GOVMESH_OUTBOX_KEEP_SECONDS how long a worker keeps the events it sent in its service's outbox
                              before deleting them: subscribers have them in their queues by then,
                              and kept for ever they would be most of the database [86400, a day]
  GOVMESH_POLICY              callers and rights file [policy/dev.yaml]
  GOVMESH_KEY_DIR             signing and pseudonym keys, created on first use in dev [var/keys]
  GOVMESH_AMQP_HEARTBEAT_SECONDS
                              how often crowd's ingest and the broker tell each other they are
                              there: a connection silent for two of them is given up (a node gone
                              without closing it, a network partition) and made again [10]
  GOVMESH_RABBITMQ_API        RabbitMQ's management API, for `govmesh dlq` to list queues
                              [http://<AMQP_URI's first host>:15672/api]
  OTEL_TRACES_EXPORTER        none | console | otlp | file [none]
  OTEL_TRACES_FILE_DIR        where file writes spans, a JSON-lines file per process, read by
                              `govmesh trace` [var/traces]
  OTEL_EXPORTER_OTLP_ENDPOINT where otlp sends spans [http://localhost:4317]
  LOG_LEVEL                   DEBUG | INFO | WARNING | ERROR [INFO]
  GOVMESH_STARTUP_WAIT_SECONDS  how long a process waits for a service it needs at start [120]
  GOVMESH_CLOCK_OFFSET_FILE   tests and simulators only: seconds to add to the services' clock,
                              read from this file [unset: the real clock]
"""

#: The kind of process a service's parts are built for (bootstrap.build): each kind reaches other
#: services its own way (gRPC from an api; worker RPC or the broker from a worker, where grpcio
#: cannot be loaded).
ProcessKind = Literal["api", "worker", "ingest", "tool"]


#: Where spans go (OTEL_TRACES_EXPORTER), as govmesh.tracing builds them.
TRACES_EXPORTERS: Final = ("none", "console", "otlp", "file")

#: Where the "file" exporter writes (OTEL_TRACES_FILE_DIR) unless told otherwise.
DEFAULT_TRACES_FILE_DIR: Final = ROOT / "var" / "traces"


class ConfigError(ValueError):
    """A setting is present but unusable; the message names the variable."""


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def env_seconds(name: str, default: float) -> float:
    """A duration in seconds from the environment (fractions allowed); ConfigError names it."""
    raw = _env(name, str(default))
    try:
        seconds = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a number of seconds") from None
    if not 0 < seconds < 10**7:
        raise ConfigError(f"{name}: {seconds} is not a sensible number of seconds")
    return seconds


def env_path(name: str, default: Path) -> Path:
    return Path(_env(name, str(default)))


def env_whole(name: str, default: int, lowest: int, highest: int, what: str = "whole number") -> int:
    """A whole number from the environment, from ``lowest`` to ``highest``; ConfigError names it."""
    raw = _env(name, str(default))
    try:
        number = int(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a {what}") from None
    if not lowest <= number <= highest:
        raise ConfigError(f"{name}: {number} is outside {lowest}-{highest}")
    return number


def traces_file_dir() -> Path:
    """OTEL_TRACES_FILE_DIR: a directory, or a path where one can be made (the exporter makes it)."""
    path = env_path("OTEL_TRACES_FILE_DIR", DEFAULT_TRACES_FILE_DIR)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"OTEL_TRACES_FILE_DIR: {str(path)!r} is not a directory")
    return path


def _port(name: str, default: int) -> int:
    return env_whole(name, default, 0, 65535, "port number")


#: The default metrics port of each process kind, for the first service (identity); the n-th
#: service in SERVICES adds n, instance k of a kind adds 100 * k.
_METRICS_PORTS = {"api": 9101, "worker": 9111, "ingest": 9121}


def default_metrics_port(service: str, kind: str, instance: int = 0) -> int:
    """Where a process serves /metrics unless <SERVICE>_<KIND>_METRICS_PORT says otherwise: 100
    higher per instance, so several processes of a kind on one machine each serve their own."""
    return _METRICS_PORTS[kind] + SERVICES.index(service) + 100 * instance


def metrics_port(service: str, kind: str, instance: int = 0) -> int:
    """Where this environment has a process serve /metrics: <SERVICE>_<KIND>_METRICS_PORT, else
    its default port."""
    return _port(f"{service.upper()}_{kind.upper()}_METRICS_PORT", default_metrics_port(service, kind, instance))


#: A bound on processes of one kind on one machine, so instances' metrics ports (100 apart) stay below 16000.
MAX_INSTANCES = 64


def _instances() -> tuple[int, int]:
    """(instance, instances): which of how many processes of its kind this one is (0-based)."""
    instances = env_whole("GOVMESH_INSTANCES", 1, 1, MAX_INSTANCES)
    instance = env_whole("GOVMESH_INSTANCE", 0, 0, MAX_INSTANCES - 1)
    if instance >= instances:
        raise ConfigError(f"GOVMESH_INSTANCE: {instance} is not below GOVMESH_INSTANCES ({instances})")
    return instance, instances


@dataclass(frozen=True)
class Settings:
    service: str
    amqp_uri: str
    database_url: str
    bind_host: str
    grpc_port: int
    api_metrics_port: int
    worker_metrics_port: int
    # Only crowd has an ingest process (the high-rate readings consumer).
    ingest_metrics_port: int
    policy_path: Path
    key_dir: Path
    traces_exporter: str
    log_level: str
    #: Which of how many processes of its kind this one is (0-based): several api processes of a
    #: service share its gRPC port, several workers compete for its queues, several ingest
    #: processes split the shards.
    instance: int = 0
    instances: int = 1
    #: Entrypoints (events, RPCs, timers) a worker runs at once, each a green thread.
    worker_concurrency: int = 10
    #: AMQP heartbeat of crowd's ingest connection (nameko's workers keep kombu's own, 60 s).
    amqp_heartbeat_seconds: float = 10.0
    #: How long a worker's graceful stop may take before it kills its handlers.
    worker_stop_seconds: float = 20.0
    #: How long a worker's outbox relay keeps the events it sent before it deletes them.
    outbox_keep_seconds: float = 86_400.0
    #: Where the "file" traces exporter writes this process's spans.
    traces_file_dir: Path = DEFAULT_TRACES_FILE_DIR

    def traces_file(self, kind: str) -> Path:
        """The file of spans of this service's process of `kind`: one per process, so that
        processes never interleave their writes."""
        return self.traces_file_dir / f"{self.service}-{kind}-{self.instance}.jsonl"

    @property
    def shares_grpc_port(self) -> bool:
        """Several api processes listen on one port (SO_REUSEPORT). Only then: with one, a port
        already taken (a forgotten process of an older run) must stop the start, not be shared."""
        return self.instances > 1

    @property
    def grpc_target(self) -> str:
        """Where clients reach this service: <SERVICE>_GRPC_TARGET (host:port, e.g. a Kubernetes
        Service), else this machine at the service's port."""
        override = os.environ.get(f"{self.service.upper()}_GRPC_TARGET", "").strip()
        if override:
            return override
        wildcard = self.bind_host in ("0.0.0.0", "::", "[::]")  # noqa: S104 - a comparison, not a bind
        host = "127.0.0.1" if wildcard else self.bind_host
        return f"{host}:{self.grpc_port}"


def load(service: str) -> Settings:
    if service not in SERVICES:
        raise ConfigError(f"service: {service!r} is not one of {', '.join(SERVICES)}")
    index = SERVICES.index(service)
    prefix = service.upper()
    default_db = f"sqlite:///{ROOT / 'var' / (service + '.db')}"
    level = _env("LOG_LEVEL", "INFO").upper()
    instance, instances = _instances()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"LOG_LEVEL: {level!r} is not one of DEBUG, INFO, WARNING, ERROR")
    exporter = _env("OTEL_TRACES_EXPORTER", "none").lower()
    if exporter not in TRACES_EXPORTERS:
        raise ConfigError(f"OTEL_TRACES_EXPORTER: {exporter!r} is not one of {', '.join(TRACES_EXPORTERS)}")
    return Settings(
        service=service,
        amqp_uri=_env("AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/"),
        database_url=_env(f"{prefix}_DATABASE_URL", _env("DATABASE_URL", default_db)),
        bind_host=_env("BIND_HOST", "127.0.0.1"),
        grpc_port=_port(f"{prefix}_GRPC_PORT", 50051 + index),
        api_metrics_port=metrics_port(service, "api", instance),
        worker_metrics_port=metrics_port(service, "worker", instance),
        ingest_metrics_port=metrics_port(service, "ingest", instance),
        policy_path=Path(_env("GOVMESH_POLICY", str(ROOT / "policy" / "dev.yaml"))),
        key_dir=Path(_env("GOVMESH_KEY_DIR", str(ROOT / "var" / "keys"))),
        traces_exporter=exporter,
        log_level=level,
        instance=instance,
        instances=instances,
        worker_concurrency=env_whole("GOVMESH_WORKER_CONCURRENCY", 10, 1, 1000),
        worker_stop_seconds=env_seconds("GOVMESH_WORKER_STOP_SECONDS", 20.0),
        amqp_heartbeat_seconds=env_seconds("GOVMESH_AMQP_HEARTBEAT_SECONDS", 10.0),
        outbox_keep_seconds=env_seconds("GOVMESH_OUTBOX_KEEP_SECONDS", 86_400.0),
        traces_file_dir=traces_file_dir() if exporter == "file" else DEFAULT_TRACES_FILE_DIR,
    )
