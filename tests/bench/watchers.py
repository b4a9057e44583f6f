"""Watchers by the thousand: WatchZones streams held by one crowd api process, and how soon a
change reaches every one of them, beside one watcher alone in the same run.

    .venv/bin/python -m tests.bench.watchers [--watchers N] [--changes N]

The mesh: crowd's api, worker and ingest on SQLite. N streams (grpc.aio, one client thread), then
occupancy changes reported by the sensors' gRPC call: first each watcher on a zone of its own (a
change reaches one watcher), then all N on one zone (a change reaches every one). A delivery's
time runs from the report's start (it commits in the api) to a watcher's receipt: the commit, the
feed's poll (every 50 ms, one query for all watchers), waking the watchers and each stream's send.
Baseline: one watcher alone. Figures vary with the machine; read them side by side.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
from pathlib import Path

from tests.bench import results
from tests.support.crowd_mesh import Crowd, start_crowd, watch_deliveries, zone
from tests.support.mesh import ServiceEnv, virtual_host


def report(name: str, delays: list[float], watchers: int, complete: int, section: str) -> None:
    delays = sorted(delays)
    p50, p99 = delays[len(delays) // 2] * 1000, delays[max(0, int(len(delays) * 0.99) - 1)] * 1000
    print(
        f"  {name:<46} p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   max {delays[-1] * 1000:6.1f} ms   "
        f"{len(delays)} deliveries, {complete} of {watchers} watchers got every change"
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
    )


def api_memory_mb(env: ServiceEnv) -> float:
    api = next(p for p in env.processes if p.args[0] == "api")
    assert api.popen is not None
    status = Path(f"/proc/{api.popen.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=20)
    args = parser.parse_args()
    # One client process holds every stream: a file descriptor per stream is not enough by default.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    with tempfile.TemporaryDirectory() as tmp, virtual_host() as amqp:
        env = ServiceEnv("crowd", f"sqlite:///{Path(tmp) / 'service.db'}", Path(tmp), amqp)
        env.env |= {"OTEL_TRACES_EXPORTER": "none", "LOG_LEVEL": "WARNING"}
        try:
            start_crowd(env, amqp)
            operator = Crowd(env)
            spread = [f"district_{n:04d}" for n in range(args.watchers)]
            for zone_id in ("alone", "crowded", *spread):
                operator.upsert(zone(zone_id, capacity=100_000))
            section = f"{args.watchers:,} watchers of one api process"
            print(section)
            before = api_memory_mb(env)
            delays, complete = watch_deliveries(env, ["alone"], 1, args.changes)
            report("one watcher alone (baseline)", delays, 1, complete, section)
            # Each watcher on a zone of its own (a citizen on their case): a change goes to one.
            delays, complete = watch_deliveries(env, spread, args.watchers, args.changes * 5, spacing=0.1)
            report("change -> delivered, each watcher its own zone", delays, args.watchers, complete, section)
            # All on one zone (a control room's screens on West Lake): a change goes to every one.
            delays, complete = watch_deliveries(env, ["crowded"], args.watchers, args.changes)
            report("change -> delivered to every watcher", delays, args.watchers, complete, section)
            after = api_memory_mb(env)
            print(f"  api process memory: {before:.0f} MB before, {after:.0f} MB after {args.watchers} watchers")
            results.record(section, "api process memory", before_mb=round(before), after_mb=round(after))
            results.keep("watchers", vars(args))
        finally:
            env.stop_all()


if __name__ == "__main__":
    main()
