"""Where a load's CPU goes: each mesh process's CPU time (from /proc), and the rest of the
machine's (the database, the broker, the benchmark's own clients), read before and after."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.mesh import ServiceEnv

_TICK = os.sysconf("SC_CLK_TCK")


def _process_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def _machine_seconds() -> float:
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / _TICK  # all but idle and iowait


def snapshot(env: ServiceEnv) -> dict[str, float]:
    """CPU seconds so far of each running mesh process (named service-kind[-n]) and the machine."""
    taken: dict[str, float] = {"machine": _machine_seconds()}
    for process in env.processes:
        if process.popen is None or process.popen.poll() is not None:
            continue
        kind, service = process.args[0], process.args[1]
        name = f"{service}-{kind}"
        while name in taken:
            name += "+"
        taken[name] = _process_seconds(process.popen.pid)
    return taken


def per_unit(before: dict[str, float], after: dict[str, float], units: int) -> dict[str, float]:
    """Milliseconds of CPU per unit of work (a case, a proof) by process, with "rest" for the
    machine's CPU no mesh process used (the database, the broker, the clients)."""
    spent = {name: after[name] - before.get(name, 0.0) for name in after}
    machine = spent.pop("machine")
    spent["rest"] = max(0.0, machine - sum(spent.values()))
    spent["total"] = machine
    return {name: round(seconds * 1000 / units, 2) for name, seconds in spent.items()}
