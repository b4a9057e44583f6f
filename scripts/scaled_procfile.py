"""The Procfile `make run` starts: the project's Procfile with each process scaled as
GOVMESH_SCALE asks, e.g. ``GOVMESH_SCALE=approvals-worker=2,records-api=2``.

A process scaled to N becomes N lines, ``records-api-0`` .. ``records-api-<N-1>``, each told which
of how many it is (GOVMESH_INSTANCE, GOVMESH_INSTANCES): api processes then share their service's
gRPC port, ingest processes split their shards, and each takes metrics ports of its own
(govmesh/config.py). Workers need nothing more on PostgreSQL: they compete for their service's
queues, and what must run once (outbox relays, sequencers, timers) already takes a database lock
or lease. On SQLite a service's workers run once (refused, saying why): its outbox relays have no
row locks to share the events out.

With --prometheus-targets DIR it also writes DIR/<kind>.json, Prometheus file_sd targets for
every instance past the first (deploy/prometheus/prometheus.yml scrapes the first ones by name and
reads these files), rewritten each time so a process scaled back down is no longer scraped. With
--with-prometheus as well, the Procfile gets a `prometheus` line (scripts/run_prometheus.py) that
scrapes them all, unless GOVMESH_PROMETHEUS=0, Prometheus is not installed or its port is taken:
the mesh runs without it then, and one line on stderr says why.

environment (defaults in brackets):
  GOVMESH_SCALE        name=count,... [every process once]
  GOVMESH_PROMETHEUS   0 leaves Prometheus out [1]
  PROMETHEUS_PORT      where Prometheus listens, on 127.0.0.1 [9090]
  PROMETHEUS_DATA      its time series storage [var/prometheus-data]

Usage: scripts/scaled_procfile.py [PROCFILE] [--prometheus-targets DIR [--with-prometheus]]
       (the Procfile to stdout)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from govmesh.config import MAX_INSTANCES, default_metrics_port, load

_LINE = re.compile(r"^(?P<name>[A-Za-z0-9_-]+):\s*(?P<command>.+)$")
_GOVMESH = re.compile(r"^govmesh (?P<kind>api|worker|ingest) (?P<service>[a-z]+)$")
KINDS = ("api", "worker", "ingest")


class ScaleError(ValueError):
    """GOVMESH_SCALE names a process the Procfile does not have, or a count it cannot run."""


def parse_scale(raw: str, known: list[str]) -> dict[str, int]:
    """``name=N,name=N`` into counts; every name must be one of ``known``."""
    counts: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        name, equals, number = part.partition("=")
        name, number = name.strip(), number.strip()
        if not equals:
            raise ScaleError(f"GOVMESH_SCALE: {part!r} is not name=count (e.g. records-api=2)")
        if name not in known:
            raise ScaleError(f"GOVMESH_SCALE: {name!r} is not a process of the Procfile ({', '.join(known)})")
        if not number.isdigit() or not 0 <= int(number) <= MAX_INSTANCES:
            raise ScaleError(f"GOVMESH_SCALE: {name}: {number!r} is not a count from 0 to {MAX_INSTANCES}")
        if name in counts:
            raise ScaleError(f"GOVMESH_SCALE: {name} is named twice")
        counts[name] = int(number)
    return counts


@dataclass(frozen=True)
class Process:
    name: str
    command: str
    #: How many of it run (0: left out).
    count: int


def plan(procfile: str, raw_scale: str) -> list[Process]:
    """The Procfile's processes, each with the count GOVMESH_SCALE gives it (1 when it says none).
    A service's workers run more than once only on PostgreSQL: on SQLite their outbox relays,
    which have no row locks to share the events out, would each publish every event."""
    lines = [m.groupdict() for m in map(_LINE.match, procfile.splitlines()) if m]
    counts = parse_scale(raw_scale, [line["name"] for line in lines])
    processes = [Process(line["name"], line["command"], counts.get(line["name"], 1)) for line in lines]
    for process in processes:
        found = _GOVMESH.match(process.command)
        if found and found["kind"] == "worker" and process.count > 1:
            service = found["service"]
            if load(service).database_url.startswith("sqlite"):
                raise ScaleError(
                    f"GOVMESH_SCALE: {process.name}={process.count}: the {service} workers run once on SQLite "
                    "(their outbox relays have no row locks to share the events out, and each would publish "
                    f"every event); give {service} PostgreSQL (DATABASE_URL or {service.upper()}_DATABASE_URL) "
                    "to scale them"
                )
    return processes


def prometheus_targets(processes: list[Process]) -> dict[str, list[dict[str, object]]]:
    """Per process kind, file_sd target groups of the instances past the first."""
    groups: dict[str, list[dict[str, object]]] = {kind: [] for kind in KINDS}
    for process in processes:
        found = _GOVMESH.match(process.command)
        if found is None:
            continue
        kind, service = found["kind"], found["service"]
        for instance in range(1, process.count):
            groups[kind].append(
                {
                    "targets": [f"127.0.0.1:{default_metrics_port(service, kind, instance)}"],
                    "labels": {"govmesh_service": service, "govmesh_instance": str(instance)},
                }
            )
    return groups


def scaled(processes: list[Process]) -> str:
    lines = []
    for process in processes:
        if process.count == 1:
            lines.append(f"{process.name}: {process.command}")
            continue
        for instance in range(process.count):  # a count of 0 leaves the process out
            lines.append(
                f"{process.name}-{instance}: GOVMESH_INSTANCE={instance} GOVMESH_INSTANCES={process.count} "
                f"{process.command}"
            )
    return "\n".join(lines) + "\n"


def prometheus(targets: Path) -> tuple[str | None, str]:
    """The Procfile line of the Prometheus that scrapes the mesh (None: it is left out), and what
    to tell the user about it."""
    if os.environ.get("GOVMESH_PROMETHEUS", "").strip() == "0":
        return None, "    Prometheus left out (GOVMESH_PROMETHEUS=0)"
    if shutil.which("prometheus") is None:
        return None, "    no Prometheus: the mesh runs without it (Debian/Ubuntu: sudo apt-get install prometheus)"
    port = int(os.environ.get("PROMETHEUS_PORT", "").strip() or 9090)
    data = os.environ.get("PROMETHEUS_DATA", "").strip() or "var/prometheus-data"
    # Checked here, not left to Prometheus: honcho stops every process when one exits, and a port
    # taken (say, by the prometheus service Debian's package starts) must not take the mesh down.
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return None, f"    no Prometheus: 127.0.0.1:{port} is taken (PROMETHEUS_PORT=<port> picks another)"
    where = f"--targets {shlex.quote(str(targets))} --data {shlex.quote(data)}"
    line = f"prometheus: python scripts/run_prometheus.py {where} --port {port}"
    return line, f"    Prometheus http://127.0.0.1:{port} scrapes them all (deploy/prometheus; data in {data})"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("procfile", nargs="?", default="Procfile", type=Path)
    parser.add_argument("--prometheus-targets", type=Path, help="folder for the file_sd targets of scaled processes")
    parser.add_argument("--with-prometheus", action="store_true", help="a Prometheus line, reading those targets")
    args = parser.parse_args(argv[1:])
    try:
        processes = plan(args.procfile.read_text(encoding="utf-8"), os.environ.get("GOVMESH_SCALE", ""))
    except ScaleError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.prometheus_targets is not None:
        args.prometheus_targets.mkdir(parents=True, exist_ok=True)
        for kind, groups in prometheus_targets(processes).items():
            (args.prometheus_targets / f"{kind}.json").write_text(json.dumps(groups, indent=2) + "\n")
    procfile = scaled(processes)
    if args.with_prometheus:
        if args.prometheus_targets is None:
            parser.error("--with-prometheus needs --prometheus-targets")
        line, said = prometheus(args.prometheus_targets)
        print(said, file=sys.stderr)
        procfile += f"{line}\n" if line else ""
    sys.stdout.write(procfile)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
