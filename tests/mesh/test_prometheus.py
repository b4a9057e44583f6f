"""The Prometheus `make run` starts scrapes every process of the mesh and loads every alert rule:
all eleven processes on ports of their own, and Prometheus started by the very `prometheus` line
scripts/scaled_procfile.py writes into `make run`'s Procfile, asked over its HTTP API."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chaos.mesh import PROCESSES, SERVICES
from tests.support.mesh import ROOT, ServiceEnv, free_port

#: Prometheus scrapes every 15 s (deploy/prometheus/prometheus.yml), and eleven processes start
#: on two cores: generous, a failure says which targets were down and why.
UP_WITHIN = 150


class Prometheus:
    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self, command: str, env: dict[str, str]) -> None:
        log = self.log_path.open("ab")
        # As honcho runs a Procfile line: through /bin/sh, in a session of its own whose whole
        # group is signalled to stop (the shell need not exec what it runs).
        self.popen = subprocess.Popen(
            ["/bin/sh", "-c", command], env=env, cwd=ROOT, stdout=log, stderr=log, start_new_session=True
        )

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/{path}", timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_answering(self, timeout: float = 60) -> None:
        assert self.popen is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.popen.returncode}:\n{self.logs()}")
            try:
                self.api("status/buildinfo")
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"prometheus did not answer on {self.port} in {timeout}s:\n{self.logs()}")

    def stop(self) -> None:
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


def procfile_line(env: dict[str, str], targets: Path) -> str:
    """The `prometheus` line of the Procfile `make run` would start in this environment."""
    result = subprocess.run(
        [
            sys.executable,
            "scripts/scaled_procfile.py",
            "Procfile",
            "--prometheus-targets",
            str(targets),
            "--with-prometheus",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("prometheus:")]
    assert len(lines) == 1, f"no Prometheus in make run's Procfile: {result.stderr}"
    return lines[0].removeprefix("prometheus:").strip()


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory, amqp_uri: str) -> Iterator[tuple[ServiceEnv, Prometheus]]:
    tmp_path = tmp_path_factory.mktemp("prometheus")
    env = ServiceEnv("identity", f"sqlite:///{tmp_path / 'service.db'}", tmp_path, amqp_uri, others=SERVICES[1:])
    env.env |= {"OTEL_TRACES_EXPORTER": "none", "LOG_LEVEL": "INFO"}
    prometheus = Prometheus(free_port(), tmp_path / "prometheus.log")
    run_env = env.env | {
        "GOVMESH_PROMETHEUS": "1",
        "GOVMESH_SCALE": "",
        "PROMETHEUS_PORT": str(prometheus.port),
        "PROMETHEUS_DATA": str(tmp_path / "prometheus-data"),
        # As `make run` runs honcho: the virtual environment's commands first.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    try:
        with futures.ThreadPoolExecutor(len(SERVICES)) as pool:
            list(pool.map(env.migrate, SERVICES))
        for service, kind in PROCESSES:
            env.process(kind, service)
        prometheus.start(procfile_line(run_env, tmp_path / "prometheus"), run_env)
        prometheus.wait_answering()
        yield env, prometheus
    finally:
        prometheus.stop()
        env.stop_all()


def test_every_process_of_the_mesh_is_a_target_and_up(scraped: tuple[ServiceEnv, Prometheus]) -> None:
    env, prometheus = scraped
    expected = {
        (f"govmesh-{kind}", service, f"127.0.0.1:{env.ports[service][f'{kind}_metrics']}")
        for service, kind in PROCESSES
    }
    deadline = time.monotonic() + UP_WITHIN
    while True:
        active = prometheus.api("targets?state=active")["activeTargets"]
        down = [t for t in active if t["health"] != "up"]
        if (active and not down) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not down, "targets not up:\n" + "\n".join(
        f"  {t['labels']['job']} {t['scrapeUrl']}: {t['health']} {t['lastError']}" for t in down
    )
    scraped_targets = {(t["labels"]["job"], t["labels"]["govmesh_service"], t["labels"]["instance"]) for t in active}
    assert scraped_targets == expected, "one target per process of the Procfile, at the port it serves /metrics on"


def test_every_rule_group_of_alerts_yml_is_loaded_with_its_rules(scraped: tuple[ServiceEnv, Prometheus]) -> None:
    _, prometheus = scraped
    alerts = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    expected = {
        group["name"]: [rule.get("alert") or rule["record"] for rule in group["rules"]] for group in alerts["groups"]
    }
    loaded = {group["name"]: [rule["name"] for rule in group["rules"]] for group in prometheus.api("rules")["groups"]}
    assert loaded == expected
    assert prometheus.api("status/runtimeinfo")["reloadConfigSuccess"], prometheus.logs()
