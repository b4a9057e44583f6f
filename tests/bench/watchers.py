"""Watchers by the thousand: WatchZones streams held by one crowd api process, and how soon a
change reaches every one of them, beside one watcher alone in the same run.

    .venv/bin/python -m tests.bench.watchers [--watchers N] [--changes N] [--clients N]

The mesh: crowd's api, worker and ingest on SQLite. N streams held by --clients client processes
(grpc.aio, one thread each; 2 by default), then occupancy changes reported by the sensors' gRPC
call: first each watcher on a zone of its own (a change reaches one watcher), then all N on one
zone (a change reaches every one). A delivery's time runs from the report's start (it commits in
the api) to a watcher's receipt: the commit, the feed's query (at once: the api pokes its feed
when it commits a reading), waking the watchers and each stream's send.

The clients share the 2 cores with the api: receiving a thousand messages per change costs them
about two thirds of the CPU the api spends sending them (0.08 against 0.12 ms a message), and a
receipt one busy client process stamps late is the client's delay, not the server's; two
processes split that work, as two screens' gateways would. With --clients 1 the receipts wait in
the one process's queue: one zone's p99 161 ms against 116 ms with 2, in one lock hold. Each row
gives the CPU seconds the api and the clients spent while the changes were reported and delivered
(their streams open). Baseline: one watcher alone. Figures vary with the machine; read them side
by side."""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from govmesh.quantiles import percentile
from tests.bench import results
from tests.support.crowd_mesh import Crowd, Deliveries, start_crowd, watch_deliveries, zone
from tests.support.mesh import ServiceEnv, virtual_host


def report(name: str, run: Callable[[], Deliveries], env: ServiceEnv, watchers: int, section: str) -> None:
    seen = run()
    api_cpu, client_cpu, complete = seen.server_cpu, seen.client_cpu, seen.complete
    delays = sorted(seen.delays)
    p50, p99 = percentile(delays, 50) * 1000, percentile(delays, 99) * 1000
    print(
        f"  {name:<46} p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   max {delays[-1] * 1000:6.1f} ms   "
        f"{len(delays)} deliveries, {complete} of {watchers} watchers got every change; "
        f"CPU: api {api_cpu:.1f} s, client {client_cpu:.1f} s"
    )
    results.record(
        section,
        name,
        p50_ms=round(p50, 1),
        p99_ms=round(p99, 1),
        max_ms=round(delays[-1] * 1000, 1),
        deliveries=len(delays),
        watchers=watchers,
        complete=complete,
        api_cpu_s=round(api_cpu, 2),
        client_cpu_s=round(client_cpu, 2),
    )


def api_pid(env: ServiceEnv) -> int:
    api = next(p for p in env.processes if p.args[0] == "api")
    assert api.popen is not None
    return api.popen.pid


def api_cpu_seconds(env: ServiceEnv) -> float:
    """User and system CPU the api process has spent so far."""
    fields = Path(f"/proc/{api_pid(env)}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def api_memory_mb(env: ServiceEnv) -> float:
    status = Path(f"/proc/{api_pid(env)}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--clients", type=int, default=2, help="client processes holding the streams")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, virtual_host() as amqp:
        env = ServiceEnv("crowd", f"sqlite:///{Path(tmp) / 'service.db'}", Path(tmp), amqp)
        env.env |= {"OTEL_TRACES_EXPORTER": "none", "LOG_LEVEL": "WARNING"}
        try:
            start_crowd(env, amqp)
            api_cpu = functools.partial(api_cpu_seconds, env)
            operator = Crowd(env)
            spread = [f"district_{n:04d}" for n in range(args.watchers)]
            for zone_id in ("alone", "crowded", *spread):
                operator.upsert(zone(zone_id, capacity=100_000))
            section = f"{args.watchers:,} watchers of one api process"
            print(section)
            before = api_memory_mb(env)
            report(
                "one watcher alone (baseline)",
                lambda: watch_deliveries(env, ["alone"], 1, args.changes, server_cpu=api_cpu),
                env,
                1,
                section,
            )
            # Each watcher on a zone of its own (a citizen on their case): a change goes to one.
            report(
                "change -> delivered, each watcher its own zone",
                lambda: watch_deliveries(
                    env, spread, args.watchers, args.changes * 5, spacing=0.1, clients=args.clients, server_cpu=api_cpu
                ),
                env,
                args.watchers,
                section,
            )
            # All on one zone (a control room's screens on West Lake): a change goes to every one.
            report(
                "change -> delivered to every watcher",
                lambda: watch_deliveries(
                    env, ["crowded"], args.watchers, args.changes, clients=args.clients, server_cpu=api_cpu
                ),
                env,
                args.watchers,
                section,
            )
            after = api_memory_mb(env)
            print(f"  api process memory: {before:.0f} MB before, {after:.0f} MB after {args.watchers} watchers")
            results.record(section, "api process memory", before_mb=round(before), after_mb=round(after))
            results.keep("watchers", vars(args))
        finally:
            env.stop_all()


if __name__ == "__main__":
    main()
