"""A worker process whose eventlet hub a test stalls: it serves the worker's probes
(govmesh.worker's, with a stall limit of one second), and once the file named by its first
argument exists, blocks the hub in a call eventlet cannot see, as a bug in a handler would."""

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
print("blocking the hub", flush=True)
patcher.original("time").sleep(600)
