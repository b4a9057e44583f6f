"""`govmesh health simulate` against the whole mesh (identity, records, health; each api and worker
a real process): the simulator publishes its residents' scores and insurance to records, enrols
them, lives a few days of visits, moves the services' clock through the grace period, and prints
the scheme's figures, which are health's own (GetStats), and no raw identifier."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from govmesh.health.v1 import medical_credit_pb2 as pb
from govmesh.health.v1 import medical_credit_pb2_grpc
from services.health.tools.simulate import yuan
from tests.support.health_mesh import start_mesh
from tests.support.mesh import ServiceEnv, assert_no_raw_identifiers, govmesh, virtual_host


@pytest.fixture
def mesh(database_url: str, tmp_path: Path) -> Iterator[ServiceEnv]:
    with virtual_host() as amqp:
        env = ServiceEnv("health", database_url, tmp_path, amqp, others=("identity", "records"))
        try:
            start_mesh(env, amqp)
            yield env
        finally:
            env.stop_all()
        assert_no_raw_identifiers(env.all_output(), "the mesh's output")


def figure(output: str, label: str) -> str:
    found = re.search(rf"^  {label} +(\S+)", output, re.MULTILINE)
    assert found, f"no {label!r} in:\n{output}"
    return found.group(1)


@pytest.mark.timeout(420)
def test_simulation_prints_the_scheme_figures_of_the_real_service(mesh: ServiceEnv) -> None:
    env = mesh
    run = subprocess.run(
        [sys.executable, "-m", "govmesh.cli", "health", "simulate", "--patients", "30", "--days", "5", "--seed", "1"],
        env=env.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert_no_raw_identifiers(run.stdout + run.stderr, "the simulator's output")

    stub = medical_credit_pb2_grpc.MedicalCreditServiceStub(grpc.insecure_channel(env.target_of("health")))
    metadata: tuple[tuple[str, str | bytes], ...] = (("authorization", f"Bearer {env.token('demo-portal')}"),)
    stats = stub.GetStats(pb.GetStatsRequest(), metadata=metadata, timeout=15)
    out = run.stdout
    assert stats.enrolled_accounts == 30
    assert stats.bills > 0 and stats.overdue_bills == stats.defaulted_bills, "every bill reached its end"
    assert figure(out, "bills issued") == f"{stats.bills:,}"
    assert figure(out, "visits on credit") == f"{stats.visits:,}"
    assert figure(out, "yuan repaid") == yuan(stats.total_repaid_fen)
    assert figure(out, "yuan defaulted") == yuan(stats.total_defaulted_fen)
    assert figure(out, "insurance paid") == yuan(stats.total_insurance_fen)
    assert stats.total_repaid_fen + stats.total_defaulted_fen == stats.total_credit_fen
    assert figure(out, "ledger") == "balanced,"
    on_time = re.search(r"on time ([\d,]+\.\d\d) yuan; late ([\d,]+\.\d\d) yuan .* after default ([\d,]+\.\d\d)", out)
    assert on_time, out
    observed = sum(int(amount.replace(",", "").replace(".", "")) for amount in on_time.groups())
    assert observed == stats.total_repaid_fen, "what the simulator paid is what health counts as repaid"

    # Without the clock file the simulator refuses, saying why, and changes nothing.
    unclocked = {k: v for k, v in env.env.items() if k != "GOVMESH_CLOCK_OFFSET_FILE"}
    refused = govmesh("health", "simulate", "--patients", "3", "--days", "1", env=unclocked)
    assert refused.returncode == 2 and "GOVMESH_CLOCK_OFFSET_FILE is not set" in refused.stderr
    again = stub.GetStats(pb.GetStatsRequest(), metadata=metadata, timeout=15)
    assert again.bills == stats.bills

    # With a clock file the mesh does not read (its offset the same, so the clocks agree at day
    # 0): refused before anything is written, not at day 1 after a population's visits and bills.
    other = env.tmp_path / "another-clock-offset"
    other.write_text(Path(env.env["GOVMESH_CLOCK_OFFSET_FILE"]).read_text())
    elsewhere = env.env | {"GOVMESH_CLOCK_OFFSET_FILE": str(other)}
    refused = govmesh("health", "simulate", "--patients", "3", "--days", "1", "--quiet", env=elsewhere)
    assert refused.returncode == 2 and "did not follow" in refused.stderr, refused.stderr
    after = stub.GetStats(pb.GetStatsRequest(), metadata=metadata, timeout=15)
    assert (after.enrolled_accounts, after.visits, after.bills) == (30, stats.visits, stats.bills)


@pytest.mark.timeout(420)
def test_simulation_holds_for_populations_with_residents_nobody_published_about(mesh: ServiceEnv) -> None:
    """Some of a population have no score and no insurance on record, so identity never saw them:
    they are enrolled without credit (issue 14: NOT_FOUND, and the simulator failed for 12 of 40
    seeds at 200 patients, the default seed included)."""
    args = ["health", "simulate", "--patients", "200", "--days", "1"]  # the default seed
    run = subprocess.run(
        [sys.executable, "-m", "govmesh.cli", *args], env=mesh.env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    stub = medical_credit_pb2_grpc.MedicalCreditServiceStub(grpc.insecure_channel(mesh.target_of("health")))
    metadata = (("authorization", f"Bearer {mesh.token('demo-portal')}"),)
    assert stub.GetStats(pb.GetStatsRequest(), metadata=metadata, timeout=15).enrolled_accounts == 200
