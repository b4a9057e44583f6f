"""govmesh.probes: what /livez and /readyz say, by a clock of the test's, over real HTTP."""

from __future__ import annotations

import threading

import pytest

from govmesh import probes
from tests.support.mesh import free_port
from tests.support.mesh import http_get as get


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def health(clock: Clock) -> probes.Health:
    return probes.Health("test loop", stalled_after=30.0, clock=clock)


def test_live_until_the_loop_has_not_turned_for_longer_than_the_limit(clock: Clock, health: probes.Health) -> None:
    clock.now += 30.0
    assert health.live() == (True, "live: the test loop turned 30.0 s ago")
    clock.now += 0.5
    assert health.live() == (False, "stalled: the test loop has not turned for 30.5 s (limit 30 s)")
    health.turn()
    assert health.live() == (True, "live: the test loop turned 0.0 s ago")


def test_a_failing_check_never_touches_liveness(clock: Clock, health: probes.Health) -> None:
    health.check("database", "database unreachable: OperationalError")
    health.check("broker", "ConnectionRefusedError: [Errno 111]; reconnecting")
    assert health.live()[0]
    assert health.ready() == (
        False,
        "not ready: broker: ConnectionRefusedError: [Errno 111]; reconnecting; database: database unreachable: "
        "OperationalError",
    )
    health.check("broker", None)
    health.check("database", None)
    assert health.ready() == (True, "ready: broker ok, database ok")


def test_the_server_answers_200_or_503_saying_why_beside_metrics(clock: Clock, health: probes.Health) -> None:
    port = free_port()
    probes.serve("127.0.0.1", port, health)
    health.check("broker", "not consuming yet")
    assert get(port, "/readyz") == (503, "not ready: broker: not consuming yet\n")
    assert get(port, "/livez") == (200, "live: the test loop turned 0.0 s ago\n")
    clock.now += 61
    assert get(port, "/livez?verbose") == (503, "stalled: the test loop has not turned for 61.0 s (limit 30 s)\n")
    status, body = get(port, "/metrics")
    assert status == 200 and "python_info" in body
    assert get(port, "/nothing")[0] == 404


def test_the_hub_renders_metrics_when_it_turns_and_a_stuck_hub_leaves_a_503(health: probes.Health) -> None:
    renderer = probes.HubRenderer()
    assert renderer.render(timeout=0.05) is None  # nobody ticks: the hub is stuck
    stop = threading.Event()

    def hub() -> None:
        while not stop.wait(0.01):
            renderer.tick()

    threading.Thread(target=hub, daemon=True).start()
    try:
        assert b"python_info" in (renderer.render() or b"")
    finally:
        stop.set()
    port = free_port()
    probes.serve("127.0.0.1", port, health, lambda: None)
    status, body = get(port, "/metrics")
    assert status == 503 and "test loop did not render the metrics" in body
