"""Liveness and readiness of the processes without gRPC (worker, ingest): /livez and /readyz on
the port of their /metrics, for Kubernetes' probes (docs/decisions/runtime-kubernetes-manifests.md).

- /livez: 200 while the process's main loop turns (the worker's eventlet hub, ingest's consume
  loop), 503 once it has not turned for STALLED_AFTER seconds: stuck, and only a restart helps. A
  database or broker away never fails it: the process waits for them and recovers by itself.
- /readyz: 200 while every check passes (the broker consumed from, the database reachable and
  migrated), 503 naming those that fail.

The server runs in an OS thread of its own even in an eventlet worker, so it answers, and says
why, while the hub is stuck (a green server would not answer at all). It touches nothing of the
hub's but plain attributes; /metrics, whose values sit behind eventlet's locks there, is rendered
by the hub itself (HubRenderer) and answers 503 when the hub does not.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any, Final

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from govmesh.db import watch_readiness

log = logging.getLogger(__name__)

#: The paths Kubernetes' probes ask (scripts/kubernetes.py).
LIVEZ: Final = "/livez"
READYZ: Final = "/readyz"
#: A main loop that has not turned for this long is stuck. Far above its longest legitimate call
#: (connecting to the broker: 5 s a node); its waits for the broker or the database turn it.
STALLED_AFTER: Final = 60.0
#: The longest /metrics waits for a worker's hub to render it.
HUB_RENDER_TIMEOUT: Final = 5.0


class Health:
    """What the probes report, written by the process's own threads and read by the server's.
    Only whole values are assigned (a float, a dict entry), which the GIL keeps consistent."""

    def __init__(self, loop: str, stalled_after: float = STALLED_AFTER, clock: Callable[[], float] = time.monotonic):
        self.loop = loop
        self.stalled_after = stalled_after
        self.clock = clock
        self.last_turn = clock()
        self._checks: dict[str, str | None] = {}

    def turn(self) -> None:
        """The main loop made progress."""
        self.last_turn = self.clock()

    def check(self, name: str, reason: str | None) -> None:
        """``name`` passes (None) or fails saying why."""
        self._checks[name] = reason

    def live(self) -> tuple[bool, str]:
        age = self.clock() - self.last_turn
        if age > self.stalled_after:
            return False, f"stalled: the {self.loop} has not turned for {age:.1f} s (limit {self.stalled_after:g} s)"
        return True, f"live: the {self.loop} turned {age:.1f} s ago"

    def ready(self) -> tuple[bool, str]:
        checks = dict(self._checks)
        failing = [f"{name}: {reason}" for name, reason in sorted(checks.items()) if reason is not None]
        if failing:
            return False, "not ready: " + "; ".join(failing)
        return True, "ready: " + (", ".join(f"{name} ok" for name in sorted(checks)) or "nothing to check")


def native_modules() -> tuple[ModuleType, ModuleType]:
    """socket and threading as the operating system has them, also in a patched worker."""
    patcher = sys.modules.get("eventlet.patcher")
    if patcher is not None and patcher.is_monkey_patched("thread"):
        return patcher.original("socket"), patcher.original("threading")
    import socket

    return socket, threading


class HubRenderer:
    """Renders /metrics on a worker's hub for the server's OS thread: the metrics' locks are
    eventlet's there, and an OS thread waiting on one would never be woken. ``tick`` runs on the
    hub; ``render`` on the server's thread, None when the hub did not answer in time."""

    def __init__(self) -> None:
        _, native_threading = native_modules()
        self._one_at_a_time = native_threading.Lock()
        self._done = native_threading.Event()
        self._asked = False
        self._text = b""

    def render(self, timeout: float = HUB_RENDER_TIMEOUT) -> bytes | None:
        with self._one_at_a_time:
            self._done.clear()
            self._asked = True
            if not self._done.wait(timeout):
                self._asked = False
                return None
            return self._text

    def tick(self) -> None:
        if self._asked:
            self._asked = False
            self._text = generate_latest()
            self._done.set()


def watch_database(health: Health, readiness: Callable[[], str | None]) -> None:
    """The database as the "database" check, looked at as an api looks at it (db.watch_readiness)."""
    health.check("database", "not checked yet")
    watch_readiness(readiness, functools.partial(health.check, "database"), name="database-readiness")


def serve(host: str, port: int, health: Health, render: Callable[[], bytes | None] = generate_latest) -> None:
    """/metrics, /livez and /readyz on host:port, from OS threads (port 0: nothing served)."""
    if port == 0:
        return
    socket, native_threading = native_modules()
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]  # BIND_HOST may be IPv6 ("::")
    listener = socket.create_server((host, port), family=family)

    def accept() -> None:
        while True:
            connection, _ = listener.accept()
            native_threading.Thread(target=_answer, args=(connection, health, render), daemon=True).start()

    native_threading.Thread(target=accept, name="probes", daemon=True).start()
    log.info("metrics and probes listening", extra={"metrics_url": f"http://{host}:{port}/metrics"})


def _answer(connection: Any, health: Health, render: Callable[[], bytes | None]) -> None:
    try:
        connection.settimeout(5)
        request = b""
        while b"\r\n\r\n" not in request and len(request) < 16384:
            chunk = connection.recv(4096)
            if not chunk:
                break
            request += chunk
        parts = request.split(b"\r\n", 1)[0].split()
        path = parts[1].split(b"?", 1)[0].decode("ascii", "replace") if len(parts) > 1 else ""
        status, content_type, body = _response(path, health, render)
        head = (
            f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        connection.sendall(head.encode() + body)
    except OSError:
        pass  # the client went away: nothing to answer
    finally:
        connection.close()


def _response(path: str, health: Health, render: Callable[[], bytes | None]) -> tuple[str, str, bytes]:
    text = "text/plain; charset=utf-8"
    if path in (LIVEZ, READYZ):
        ok, why = health.live() if path == LIVEZ else health.ready()
        return ("200 OK" if ok else "503 Service Unavailable"), text, (why + "\n").encode()
    if path in ("/metrics", "/"):
        body = render()
        if body is None:
            why = f"the {health.loop} did not render the metrics in {HUB_RENDER_TIMEOUT:g} s\n"
            return "503 Service Unavailable", text, why.encode()
        return "200 OK", CONTENT_TYPE_LATEST, body
    return "404 Not Found", text, b"/metrics, /livez or /readyz\n"
