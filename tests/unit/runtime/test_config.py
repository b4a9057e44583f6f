"""Settings of one of several processes of a kind (GOVMESH_INSTANCE of GOVMESH_INSTANCES)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from govmesh import config


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GOVMESH_INSTANCE", "GOVMESH_INSTANCES", "RECORDS_API_METRICS_PORT", "RECORDS_WORKER_METRICS_PORT"):
        monkeypatch.delenv(name, raising=False)


def test_one_process_of_a_kind_keeps_its_port_to_itself() -> None:
    settings = config.load("records")
    assert (settings.instance, settings.instances) == (0, 1)
    assert not settings.shares_grpc_port, "a forgotten process on the port must stop the start, not share it"
    assert (settings.api_metrics_port, settings.worker_metrics_port) == (9102, 9112)


def test_instance_k_takes_metrics_ports_100_k_higher_unless_a_port_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOVMESH_INSTANCES", "3")
    monkeypatch.setenv("GOVMESH_INSTANCE", "2")
    settings = config.load("records")
    assert settings.shares_grpc_port
    assert settings.grpc_port == 50052, "every api process of a service listens on the service's port"
    assert (settings.api_metrics_port, settings.worker_metrics_port) == (9302, 9312)
    monkeypatch.setenv("RECORDS_API_METRICS_PORT", "19000")
    assert config.load("records").api_metrics_port == 19000


@pytest.mark.parametrize(
    ("instance", "instances", "named"),
    [
        ("1", "1", "GOVMESH_INSTANCE: 1 is not below GOVMESH_INSTANCES (1)"),
        ("-1", "2", "GOVMESH_INSTANCE: -1 is outside 0-63"),
        ("0", "0", "GOVMESH_INSTANCES: 0 is outside 1-64"),
        ("0", "many", "GOVMESH_INSTANCES: 'many' is not a whole number"),
    ],
)
def test_a_bad_instance_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, instance: str, instances: str, named: str
) -> None:
    monkeypatch.setenv("GOVMESH_INSTANCE", instance)
    monkeypatch.setenv("GOVMESH_INSTANCES", instances)
    with pytest.raises(config.ConfigError) as raised:
        config.load("records")
    assert str(raised.value) == named


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("OTEL_TRACES_EXPORTER", "jaeger", "OTEL_TRACES_EXPORTER: 'jaeger' is not one of none, console, otlp, file"),
        ("LOG_LEVEL", "bogus", "LOG_LEVEL: 'BOGUS' is not one of DEBUG, INFO, WARNING, ERROR"),
        ("GOVMESH_OUTBOX_KEEP_SECONDS", "a day", "GOVMESH_OUTBOX_KEEP_SECONDS: 'a day' is not a number of seconds"),
    ],
)
def test_a_bad_setting_stops_a_process_with_one_line_naming_it(name: str, value: str, named: str) -> None:
    """As an operator meets it: the process exits at once saying which variable and why, no
    traceback."""
    env = {**os.environ, name: value}
    ran = subprocess.run(
        [sys.executable, "-m", "govmesh.cli", "api", "identity"], env=env, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode != 0
    assert ran.stderr.strip() == f"govmesh: {named}"


def test_a_traces_directory_that_cannot_be_one_stops_a_process_with_one_line_naming_it(tmp_path: Path) -> None:
    """With OTEL_TRACES_EXPORTER=file: a file where the directory should be, or a directory that
    cannot be made, is named before the process serves anything."""
    taken = tmp_path / "taken"
    taken.write_text("")
    for directory, named in (
        (taken, f"OTEL_TRACES_FILE_DIR: {str(taken)!r} is not a directory"),
        (
            taken / "traces",
            f"OTEL_TRACES_FILE_DIR: cannot write {str(taken / 'traces' / 'identity-api-0.jsonl')!r}: Not a directory",
        ),
    ):
        env = {**os.environ, "OTEL_TRACES_EXPORTER": "file", "OTEL_TRACES_FILE_DIR": str(directory)}
        ran = subprocess.run(
            [sys.executable, "-m", "govmesh.cli", "api", "identity"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ran.returncode != 0
        assert ran.stderr.strip() == f"govmesh: {named}"


def test_the_traces_directory_is_read_for_the_file_exporter_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OTEL_TRACES_FILE_DIR", str(tmp_path / "spans"))
    monkeypatch.setenv("GOVMESH_INSTANCES", "3")
    monkeypatch.setenv("GOVMESH_INSTANCE", "2")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert config.load("records").traces_file_dir == config.DEFAULT_TRACES_FILE_DIR
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "File")
    settings = config.load("records")
    assert settings.traces_exporter == "file"
    assert settings.traces_file("worker") == tmp_path / "spans" / "records-worker-2.jsonl"
