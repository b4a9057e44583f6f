"""`govmesh demo` against a whole mesh (every process of the five services, on SQLite: the demo is
a client of the public interfaces, and the services' behaviour on both databases is proven by
their own mesh tests), told twice to the same mesh: a run must not trip over what an earlier run
left (people, request ids, a property unit's hold, a zone)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.mesh import SERVICES, ChaosMesh
from tests.support.mesh import ROOT, assert_no_raw_identifiers, free_port, virtual_host


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosMesh]:
    tmp_path = tmp_path_factory.mktemp("demo")
    with virtual_host() as amqp:
        started = ChaosMesh(f"sqlite:///{tmp_path / 'service.db'}", amqp, tmp_path, {})
        try:
            started.start()
            yield started
        finally:
            started.stop()


def demo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "govmesh.cli", "demo", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def told(mesh: ChaosMesh, *args: str) -> dict[str, dict[str, Any]]:
    """Every story of one `--json` run, by key, after the checks every run must pass."""
    run = demo(mesh.env.env, "--json", "--patients", "4", *args)
    assert run.returncode == 0, run.stdout + run.stderr
    assert_no_raw_identifiers(run.stdout + run.stderr, "govmesh demo")
    stories = {story["key"]: story for story in json.loads(run.stdout)["stories"]}
    assert list(stories) == ["one_id", "ride_hailing", "housing", "medical_credit", "fountain", "tracker"]
    for key, story in stories.items():
        assert len(story["trace_id"]) == 32, key
        assert story["events"], f"{key}: no event in its trace"
        assert {event["trace_id"] for event in story["events"]} == {story["trace_id"]}, key
        assert all(line["zh"] and line["en"] for line in story["lines"]), key
    return {key: story["figures"] for key, story in stories.items()}


def check(figures: dict[str, dict[str, Any]]) -> None:
    one_id = figures["one_id"]
    assert one_id["same_subject"] is True
    assert one_id["health_account_subject_id"] == one_id["subject_id"]
    assert one_id["masked_identifier"].count("*") == 8

    permit = figures["ride_hailing"]
    assert permit["state"] == "APPROVED"
    assert 0 < permit["decision_ms"]
    assert {rule["rule_id"] for rule in permit["rules"]} >= {"licence_held_3_years", "no_driving_crime"}
    assert {rule["outcome"] for rule in permit["rules"]} == {"PASSED"}
    assert {proof["department"] for proof in permit["proofs"]} == {"public_security", "education"}
    assert permit["seed_seconds"] == [120, 180]

    transfer = figures["housing"]
    assert transfer["state"] == "APPROVED"
    assert [(s["department"], s["state"]) for s in transfer["sign_offs"]] == [
        ("taxation", "SUCCEEDED"),
        ("natural_resources", "SUCCEEDED"),
        ("housing", "SUCCEEDED"),
    ]

    credit = figures["medical_credit"]
    assert credit["bill_state"] == "SETTLED"
    assert credit["paid_fen"] == credit["self_pay_fen"] > 0
    assert credit["population"] == {"patients": 4, "bills": 4, "paid": 4}
    assert isinstance(credit["default_rate_ppb"], int)
    assert credit["ledger_balanced"] is True

    fountain = figures["fountain"]
    assert fountain["readings_rejected"] == 0
    assert fountain["levels_entered"] == ["III", "II", "I", "II", "III", "NONE"]
    assert "BARRIERS_UP" in fountain["level_changes"][1]["measures_to_take"]
    assert fountain["barrier_day_count"] >= 1
    assert fountain["seed_barrier_days"] == [365, 36]

    tracker = figures["tracker"]
    assert tracker["head_signed"] is True
    assert tracker["all_proven"] is True
    outcomes = [(e["caller_id"], e["outcome"]) for e in tracker["entries"]]
    # 2 enrolment reads, 4 for the permit, 2 for the buyer's side of the transfer, 1 refused.
    assert len(outcomes) == 9
    assert outcomes.count(("approvals", "GRANTED")) == 6
    assert outcomes.count(("health", "GRANTED")) == 2
    assert ("education", "DENIED") in outcomes


@pytest.mark.timeout(300)
def test_the_demo_tells_every_story_with_the_mesh_figures_and_again_on_the_same_mesh(mesh: ChaosMesh) -> None:
    first, second = told(mesh), told(mesh, "--fountain-days", "2")
    check(first)
    check(second)
    assert first["fountain"]["simulated_days"] is None
    # Two days through crowd's own simulator: the old policy had barriers up on both.
    simulated = second["fountain"]["simulated_days"]
    assert simulated["days"] == simulated["fixed"] == 2
    assert 0 <= simulated["live"] <= 2 and 0 <= simulated["calendar"] <= 2
    assert first["one_id"]["subject_id"] != second["one_id"]["subject_id"]
    assert first["housing"]["property_unit"] != second["housing"]["property_unit"]
    assert first["fountain"]["zone_id"] != second["fountain"]["zone_id"]


def test_without_a_mesh_the_demo_says_to_start_one_in_one_line(tmp_path: Path) -> None:
    # Ports nobody listens on: a mesh of no processes.
    ports = {f"{service.upper()}_GRPC_PORT": str(free_port()) for service in SERVICES}
    run = demo(os.environ | ports | {"GOVMESH_KEY_DIR": str(tmp_path / "keys")}, "--json")
    assert run.returncode == 1
    assert run.stdout == ""
    assert run.stderr.count("\n") == 1 and "make run" in run.stderr, run.stderr
