"""The process model's guard: grpcio is never imported where eventlet has patched the standard
library (its C core breaks there), and workers import no gRPC code of their own."""

from __future__ import annotations

import subprocess
import sys

from govmesh.config import ROOT, SERVICES

PROBE = """
import sys, warnings
warnings.simplefilter("ignore")
import eventlet
eventlet.monkey_patch()
import importlib
import govmesh.worker
for name in {modules!r}:
    importlib.import_module(name)
govmesh.worker.assert_no_grpc()
loaded = sorted(m for m in sys.modules if m == "grpc" or m.startswith("grpc."))
print("grpc modules:", loaded)
sys.exit(1 if loaded else 0)
"""


def worker_modules() -> list[str]:
    return [f"services.{s}.worker" for s in SERVICES if (ROOT / "services" / s / "worker.py").exists()]


def test_worker_processes_never_import_grpcio() -> None:
    modules = worker_modules()
    assert "services.identity.worker" in modules
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(modules=modules)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "grpc modules: []" in result.stdout


def test_the_guard_itself_fails_when_grpcio_is_loaded() -> None:
    probe = PROBE.format(modules=["grpc"]).replace("govmesh.worker.assert_no_grpc()", "")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "'grpc'" in result.stdout
