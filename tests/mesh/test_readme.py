"""The README's walk-throughs, run as written against a whole mesh.

Every code block of the README marked `<!-- walkthrough -->` runs, in the README's order, in one
bash session (a Python block through `.venv/bin/python -`), from a folder that holds only a link
to `.venv`, as a new user's terminal at the repository's root would after `make run`. The only
change made to the text is the ports: the test mesh's instead of the README's (50051-50055), so
a `make run` on this machine does not stand in the way. `grpcurl` is tests/support/grpcurl.py,
the part of grpcurl the walk-throughs use (no Go binary is installable here).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.mesh import ChaosMesh
from tests.support.mesh import ROOT, assert_no_raw_identifiers, virtual_host
from tests.support.people import LUO_FANG, XU_WEI

README_PORTS = {"identity": 50051, "records": 50052, "approvals": 50053, "health": 50054, "crowd": 50055}
MARKER = re.compile(r"<!-- walkthrough -->\n```(sh|bash|python)\n(.*?)```", re.DOTALL)


def walkthroughs(text: str) -> list[tuple[str, str]]:
    return [(language, body) for language, body in MARKER.findall(text)]


def as_bash(blocks: list[tuple[str, str]], ports: dict[str, int]) -> str:
    lines = ["set -euo pipefail"]
    for number, (language, body) in enumerate(blocks, 1):
        for service, port in README_PORTS.items():
            body = body.replace(f"localhost:{port}", f"localhost:{ports[service]}")
        lines.append(f"echo '=== walk-through block {number}' >&2")
        lines.append(body if language != "python" else f".venv/bin/python - <<'PYTHON'\n{body}PYTHON")
    return "\n".join(lines) + "\n"


def first_json(out: str, start: str) -> dict[str, object]:
    """The JSON document printed in ``out`` that begins with ``start``."""
    document, _ = json.JSONDecoder().raw_decode(out, out.index(start))
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosMesh]:
    tmp_path = tmp_path_factory.mktemp("readme")
    with virtual_host() as amqp:
        mesh = ChaosMesh(f"sqlite:///{tmp_path / 'service.db'}", amqp, tmp_path, {"LOG_LEVEL": "INFO"})
        try:
            mesh.start()
            yield mesh
        finally:
            mesh.stop()
        assert_no_raw_identifiers(mesh.env.all_output(), "the mesh's output")


def test_the_readme_marks_a_walk_through_of_every_service() -> None:
    blocks = walkthroughs((ROOT / "README.md").read_text(encoding="utf-8"))
    calls = " ".join(body for _, body in blocks)
    methods = ("RegisterSubject", "GetProof", "SubmitCase", "GetCase", "Enroll", "CloseVisit", "PayBill", "UpsertZone")
    for method in methods:
        assert method in calls
    assert "<" not in re.sub(r"<<'?PYTHON'?", "", calls.replace("<!--", "")), "a placeholder left to fill in"


def test_every_walk_through_runs_as_written_and_ends_the_way_the_readme_says(mesh: ChaosMesh, tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    grpcurl = tools / "grpcurl"
    grpcurl.write_text(f'#!/bin/sh\nexec {sys.executable} -m tests.support.grpcurl "$@"\n')
    grpcurl.chmod(0o755)
    terminal = tmp_path / "terminal"
    terminal.mkdir()
    (terminal / ".venv").symlink_to(ROOT / ".venv")
    ports = {service: mesh.env.ports[service]["grpc"] for service in README_PORTS}
    script = as_bash(walkthroughs((ROOT / "README.md").read_text(encoding="utf-8")), ports)
    environment = mesh.env.env | {"PATH": f"{tools}:{mesh.env.env['PATH']}", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        ["bash", "-c", script], cwd=terminal, env=environment, capture_output=True, text=True, timeout=600
    )
    out, err = done.stdout, done.stderr
    assert done.returncode == 0, f"{err[-3000:]}\n--- stdout:\n{out[-2000:]}"
    assert "ERROR:" not in err, err

    # Identity: the number is valid and Xu Wei registered and resolved.
    assert '"valid": true' in out and '"displayName": "徐伟"' in out
    # Records: the proof verifies on the server and offline, with nothing but the public key.
    assert re.search(r'"valid": true,\s+"checkedAt"', out), "VerifyProof did not find the proof valid"
    assert "is signed by records' key" in out
    # Approvals: the permit is decided APPROVED by every rule, streamed until decided.
    case = first_json(out, '{\n  "state": "CASE_STATE_')
    assert case["state"] == "CASE_STATE_APPROVED", case
    assert case["rules"] and all(rule["outcome"] == "RULE_OUTCOME_PASSED" for rule in case["rules"]), case
    assert '"state":"CASE_STATE_APPROVED"' in out  # WatchCase's last line
    # Health: enrolled with credit, treated, billed and paid in full.
    assert '"status": "ACCOUNT_STATUS_ACTIVE"' in out and '"tier": "CREDIT_TIER_STANDARD"' in out
    paid = first_json(out, '{\n  "state": "BILL_STATE_')
    assert paid == {"state": "BILL_STATE_SETTLED", "paidFen": "8000", "outstandingFen": "0"}, paid
    # Crowd: the fountain's zone, its status and a forecast.
    assert '"zoneId": "hubin"' in out and '"capacity": "20000"' in out and '"maxExpectedLevel"' in out
    for raw in (XU_WEI, LUO_FANG):
        assert raw not in err  # the tools never print a raw number the user did not type
