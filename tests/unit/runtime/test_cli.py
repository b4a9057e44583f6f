"""The command line finds each service by name (config.SERVICES): its tools, the variables only it
reads, its ingest process; and building the command line loads nothing a worker must not load
before eventlet patches the standard library."""

from __future__ import annotations

import subprocess
import sys

import pytest

from govmesh import cli
from govmesh.config import ROOT

PROBE = """
import sys
from govmesh import cli
cli.parser()
frameworks = {"grpc", "eventlet", "nameko", "sqlalchemy", "amqp", "pika"}
heavy = sorted(m for m in sys.modules if m.split(".")[0] in frameworks)
print("loaded:", heavy)
"""


def test_each_services_tools_are_commands_of_their_own() -> None:
    parser = cli.parser()
    for argv, service, tool in (
        (["records", "seed", "--subjects", "5"], "records", "seed"),
        (["health", "simulate", "--patients", "3", "--days", "2"], "health", "simulate"),
        (["crowd", "simulate", "--days", "7"], "crowd", "simulate"),
    ):
        args = parser.parse_args(argv)
        assert (args.command, args.tool) == (service, tool)
        assert args.run.__module__ == f"services.{service}.tools"


def test_the_help_lists_the_runtimes_variables_and_each_services_own() -> None:
    doc = cli.environment_doc()
    for variable in ("AMQP_URI", "DATABASE_URL", "APPROVALS_CASE_TYPES_DIR", "APPROVALS_STALL_SECONDS"):
        assert variable in doc
    assert "CROWD_INGEST_SHARDS" in doc and "GOVMESH_INSTANCES" in doc
    assert doc.index("AMQP_URI") < doc.index("APPROVALS_CASE_TYPES_DIR"), "the runtime's variables come first"
    assert "CROWD_INGEST_SHARDS" in cli.parser().format_help()


def test_only_a_service_with_an_ingest_process_can_be_ingested(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.parser()
    assert parser.parse_args(["ingest", "crowd"]).service == "crowd"
    assert not (ROOT / "services" / "records" / "ingest.py").exists()
    with pytest.raises(SystemExit):
        parser.parse_args(["ingest", "records"])
    assert "invalid choice: 'records'" in capsys.readouterr().err


def test_building_the_command_line_loads_no_framework() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "loaded: []" in result.stdout, result.stdout
