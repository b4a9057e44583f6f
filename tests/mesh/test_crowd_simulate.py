"""`govmesh crowd simulate` against crowd's real processes: a week of the Hubin music fountain's
sensors, Golden Week 2019, published to the broker and applied by the ingest process; the figures
printed are the service's own history of the simulator's zone."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from govmesh.crowd.v1 import crowd_pb2 as pb
from tests.support.crowd_mesh import Crowd, start_crowd
from tests.support.mesh import ServiceEnv, virtual_host


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[ServiceEnv]:
    # SQLite only: the simulator is a client of the public interfaces, and the service's behaviour
    # on both databases is proven by tests/mesh/test_crowd.py.
    with virtual_host() as amqp:
        env = ServiceEnv("crowd", f"sqlite:///{tmp_path / 'service.db'}", tmp_path, amqp)
        try:
            start_crowd(env, amqp)
            yield env
        finally:
            env.stop_all()


def figure(output: str, label: str) -> int:
    found = re.search(rf"{label} +(\d+)", output)
    assert found, f"no {label!r} in:\n{output}"
    return int(found.group(1))


@pytest.mark.timeout(400)
def test_a_simulated_golden_week_raises_barriers_on_the_crowded_days_only(mesh: ServiceEnv) -> None:
    env = mesh
    run = subprocess.run(
        [sys.executable, "-m", "govmesh.cli", "crowd", "simulate", "--days", "7", "--start", "2019-10-01", "--quiet"],
        env=env.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    live = figure(out, "实时响应 live response")
    assert figure(out, "常年固定 fixed, all year") == 7
    assert figure(out, "按日历 weekends and holidays") == 7, "1-7 October is the National Day holiday"
    true_days = figure(out, "模型真值 true peak ≥ level II")
    assert 1 <= live <= 7 and true_days >= 1

    crowd = Crowd(env)
    try:
        zones = crowd.stub.ListZones(pb.ListZonesRequest(), metadata=crowd.metadata, timeout=10).zones
        simulated = [z for z in zones if z.zone_id.startswith("sim_hubin_")]
        assert len(simulated) == 1, [z.zone_id for z in zones]
        start, end = Timestamp(), Timestamp()
        start.FromJsonString("2019-09-30T16:00:00Z")
        end.FromJsonString("2019-10-07T16:00:00Z")
        history = crowd.stub.GetZoneHistory(
            pb.GetZoneHistoryRequest(zone_id=simulated[0].zone_id, start_time=start, end_time=end),
            metadata=crowd.metadata,
            timeout=30,
        )
        assert history.barrier_day_count == live, "the printed figure is the service's own"
        assert all(day.startswith("2019-10-0") for day in history.barrier_days)
    finally:
        crowd.close()
