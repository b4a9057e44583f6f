"""The Prometheus `make run` starts beside the mesh (its `prometheus` line of var/Procfile.scaled,
written by scripts/scaled_procfile.py): Debian's `prometheus` with deploy/prometheus loaded.

deploy/prometheus/prometheus.yml names each process's default metrics port; a process told
another one (<SERVICE>_<KIND>_METRICS_PORT, as the tests do) would then go unscraped. So the
config Prometheus reads is that one with each port as the processes will take it from the same
environment, the rule files and the file_sd targets of scaled instances (TARGETS/<kind>.json) by
absolute path; it goes to TARGETS/prometheus.yml, rewritten at every start. A target of the
deploy config that is not its process's default port is refused: it would be scraped nowhere.

Usage: scripts/run_prometheus.py --targets DIR --data DIR --port PORT   (prometheus in the foreground)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from govmesh.config import SERVICES, default_metrics_port, metrics_port

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
_JOB = re.compile(r"^govmesh-(?P<kind>api|worker|ingest)$")


def config(deployed: dict[str, Any], targets: Path) -> dict[str, Any]:
    """``deployed`` (deploy/prometheus/prometheus.yml) as this machine's processes need it."""
    resolved = dict(deployed, rule_files=[str(DEPLOY / name) for name in deployed.get("rule_files", [])])
    resolved["scrape_configs"] = [_scrape(job, targets) for job in deployed["scrape_configs"]]
    return resolved


def _scrape(job: dict[str, Any], targets: Path) -> dict[str, Any]:
    found = _JOB.match(job["job_name"])
    if found is None:
        return job
    kind = found["kind"]
    statics = []
    for group in job.get("static_configs", []):
        service = group["labels"]["govmesh_service"]
        if service not in SERVICES:
            raise SystemExit(f"{job['job_name']}: {service!r} is not a govmesh service ({', '.join(SERVICES)})")
        hosts = []
        for target in group["targets"]:
            host, _, port = target.rpartition(":")
            if int(port) != default_metrics_port(service, kind):
                raise SystemExit(
                    f"deploy/prometheus/prometheus.yml: {job['job_name']} scrapes {service} at {target}, but "
                    f"the {service} {kind} serves /metrics on {default_metrics_port(service, kind)} (govmesh/config.py)"
                )
            hosts.append(f"{host}:{metrics_port(service, kind)}")
        statics.append(dict(group, targets=hosts))
    discovered = [
        dict(sd, files=[str(targets.resolve() / Path(name).name) for name in sd["files"]])
        for sd in job.get("file_sd_configs", [])
    ]
    return dict(job, static_configs=statics, file_sd_configs=discovered)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--targets",
        type=Path,
        required=True,
        help="where scripts/scaled_procfile.py wrote the file_sd targets; the config goes here too",
    )
    parser.add_argument("--data", type=Path, required=True, help="its time series storage")
    parser.add_argument("--port", type=int, required=True, help="where its web UI and HTTP API listen, on 127.0.0.1")
    args = parser.parse_args(argv[1:])
    binary = shutil.which("prometheus")
    if binary is None:
        print("prometheus is not installed (Debian/Ubuntu: sudo apt-get install prometheus)", file=sys.stderr)
        return 1
    deployed = yaml.safe_load((DEPLOY / "prometheus.yml").read_text(encoding="utf-8"))
    args.targets.mkdir(parents=True, exist_ok=True)
    config_file = args.targets / "prometheus.yml"
    header = "# Written by scripts/run_prometheus.py from deploy/prometheus/prometheus.yml at each start.\n"
    config_file.write_text(header + yaml.safe_dump(config(deployed, args.targets), sort_keys=False), encoding="utf-8")
    args.data.mkdir(parents=True, exist_ok=True)
    # exec, so the signals honcho sends on Ctrl-C reach Prometheus itself; warnings only, so its
    # startup chatter does not bury the mesh's own log lines.
    command = [
        binary,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={args.data}",
        f"--web.listen-address=127.0.0.1:{args.port}",
        "--log.level=warn",
    ]
    os.execv(binary, command)  # noqa: S606 - the binary found on PATH, fixed arguments


if __name__ == "__main__":
    sys.exit(main(sys.argv))
