"""How a worker process becomes cooperative before anything else is imported: eventlet patches
the standard library, and the database drivers are made to wait the patched way, so a handler
waiting for PostgreSQL lets every other green thread of the worker run.

Imports only the standard library at load time (the command line calls it first thing)."""

from __future__ import annotations

import os
import sys
import warnings


def patch_worker_process() -> None:
    # Known and accepted (docs/architecture.md): nameko needs eventlet, kept behind govmesh.worker.
    warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")
    import eventlet

    eventlet.monkey_patch()
    # psycopg waits for PostgreSQL in C (wait_c), which eventlet cannot see: every query would
    # stall the hub and every other green thread of the worker. Its select() wait, imported after
    # the patch above, yields to them instead (psycopg only detects gevent's patching). It costs
    # CPU per round trip: records' sequencer seals 4,300 entries/s with it against 11,600/s with
    # wait_c (still 7x the province's peak, docs/sizing.md). PSYCOPG_WAIT_FUNC set by the operator
    # wins, for a worker that only does bulk work and may stall.
    os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")


def is_green_process() -> bool:
    """Whether eventlet patched this process (a worker): there, a wait inside a C library (SQLite's
    busy handler, psycopg's C wait) stalls every green thread of the process."""
    patcher = sys.modules.get("eventlet.patcher")
    return bool(patcher is not None and patcher.is_monkey_patched("thread"))
