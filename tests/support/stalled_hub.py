"""A worker process whose eventlet hub a test stalls: it serves the worker's probes
(govmesh.worker's, with a stall limit of one second), and once the file named by its first
argument exists, blocks the hub in a call eventlet cannot see, as a bug in a handler would.
With "metrics" as its second argument it blocks nothing: a metric's function then waits,
greenly and for ever, as the outbox backlog's count waits on a database that does not answer."""

import sys
from pathlib import Path

from govmesh.green import patch_worker_process

patch_worker_process()

import eventlet  # noqa: E402
from eventlet import patcher  # noqa: E402

from govmesh import config, worker  # noqa: E402

worker._serve_probes(config.load("identity"))
assert worker._health is not None
worker._health.stalled_after = 1.0
print("probes served", flush=True)
while not Path(sys.argv[1]).exists():
    eventlet.sleep(0.05)
if sys.argv[2:] == ["metrics"]:
    from prometheus_client import Gauge

    Gauge("govmesh_test_unanswered", "A count the database never answers").set_function(
        lambda: eventlet.sleep(600) or 0
    )
    print("a metric waits", flush=True)
    while True:
        eventlet.sleep(0.05)
print("blocking the hub", flush=True)
patcher.original("time").sleep(600)
