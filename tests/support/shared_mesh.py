"""Helpers for mesh tests that share one mesh per database across a module: tokens minted once
per mesh, people no other test uses, events picked by the subjects a test caused, and counters
read as differences."""

from __future__ import annotations

import datetime
import itertools
import time
from collections.abc import Callable, Collection
from types import TracebackType

from tests.support.mesh import Delivery, Integrator, metrics_text
from tests.support.people import resident_id

#: The people made here are born on consecutive days from this one.
FIRST_BIRTHDAY = datetime.date(1950, 1, 1)

_serials = itertools.count(1)


def new_resident(check: str | None = None) -> str:
    """A resident no other test registers (a shared mesh keeps everyone); with ``check``, one
    whose check character is that one."""
    while True:
        born = FIRST_BIRTHDAY + datetime.timedelta(days=next(_serials))
        identifier = resident_id(f"330183{born:%Y%m%d}517")
        if check is None or identifier.endswith(check):
            return identifier


class Integrators:
    """Integrators bound to one mesh's events, closed together."""

    def __init__(self, amqp_uri: str) -> None:
        self.amqp_uri = amqp_uri
        self.opened: list[Integrator] = []

    def bind(self, exchange: str, routing_key: str = "#") -> Integrator:
        self.opened.append(Integrator(self.amqp_uri, exchange, routing_key))
        return self.opened[-1]

    def __enter__(self) -> Integrators:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        for integrator in self.opened:
            integrator.close()


def receive_own(
    integrator: Integrator, count: int, own: Callable[[Delivery], bool], timeout: float = 15
) -> list[Delivery]:
    """The first ``count`` events that ``own`` picks as the test's own: an earlier test's late
    event is no answer."""
    mine: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while len(mine) < count and time.monotonic() < deadline:
        received = integrator.receive(count - len(mine), timeout=max(0.0, deadline - time.monotonic()))
        mine += [message for message in received if own(message)]
    return mine


def about(subjects: Collection[str]) -> Callable[[Delivery], bool]:
    """Picks the events about these subjects (their ce-subject)."""
    return lambda message: message[1].headers["ce-subject"] in subjects


def counter(port: int, series: str) -> float:
    """A counter's value in a process's metrics; 0 before its first count."""
    lines = metrics_text(port).splitlines()
    return next((float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(series + " ")), 0.0)
