"""One poller per api process for all of its streaming watchers (WatchCase, WatchZones).

Changes are made by other processes (workers, ingest), so an api learns of them from the
database. A watcher that polled for itself cost a query per interval each: a thousand screens,
a thousand queries every 50 ms. Here one thread asks once per interval for the versions of every
key anyone watches, and wakes only the watchers of keys whose version moved; with ``load`` it
also reads the changed keys' values once, for all their watchers. A watcher is a coroutine of the
api's event loop (grpc.aio) waiting on its own asyncio event: a thousand cost no thread and no CPU
while nothing changes, and one change wakes all of a loop's watchers in one hand-off to the loop
(docs/decisions/runtime-watchers-share-one-poller.md). A change the api process commits itself
can ``poke`` the feed, which then asks at once rather than at the end of its interval.

The poller is a thread (the queries are blocking); subscribing and waiting happen on the loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")

#: How long the poller waits after the database failed before it asks again, doubling up to the
#: second while it stays away.
RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 30.0


class Full(Exception):
    """The feed already serves its capacity of watchers."""


class ChangeFeed(Generic[K, V]):
    """``versions(keys)``: the current version of each key (every key when ``keys`` is None),
    one query. ``load(keys)``: (version, value) of each changed key, for feeds whose watchers
    all want the same values (a zone's status); None when each watcher reads its own."""

    def __init__(
        self,
        name: str,
        versions: Callable[[list[K] | None], dict[K, int]],
        load: Callable[[list[K]], dict[K, tuple[int, V]]] | None = None,
        interval: float = 0.05,
        capacity: int = 1000,
    ) -> None:
        self.name = name
        self.interval = interval
        self.capacity = capacity
        self._read_versions = versions
        self._load = load
        self._lock = threading.Lock()
        self._versions: dict[K, int] = {}
        self._values: dict[K, V] = {}
        self._by_key: dict[K, set[Subscription[K, V]]] = {}
        self._everything: set[Subscription[K, V]] = set()
        self._count = 0
        self._poller: threading.Thread | None = None
        self._poked = threading.Event()

    @property
    def watchers(self) -> int:
        return self._count

    def subscribe(self, keys: Sequence[K] | None) -> Subscription[K, V]:
        """A subscription to ``keys`` (every key when None), woken on the running loop; Full at
        capacity."""
        subscription = Subscription(self, None if keys is None else list(dict.fromkeys(keys)))
        with self._lock:
            if self._count >= self.capacity:
                raise Full(f"{self.name}: already {self.capacity} watchers")
            self._count += 1
            if subscription.keys is None:
                self._everything.add(subscription)
            else:
                for key in subscription.keys:
                    self._by_key.setdefault(key, set()).add(subscription)
            if self._poller is None:
                self._poller = threading.Thread(target=self._poll, name=f"{self.name}-feed", daemon=True)
                self._poller.start()
        return subscription

    def _unsubscribe(self, subscription: Subscription[K, V]) -> None:
        with self._lock:
            self._count -= 1
            if subscription.keys is None:
                self._everything.discard(subscription)
            else:
                for key in subscription.keys:
                    watching = self._by_key.get(key)
                    if watching is not None:
                        watching.discard(subscription)
                        if not watching:
                            del self._by_key[key]
            if not self._everything:  # what no one watches is forgotten
                # Only the leaver's keys can have lost their last watcher (a thousand leaving at
                # once would otherwise scan every key a thousand times).
                keys = self._versions if subscription.keys is None else subscription.keys
                for key in [k for k in keys if k in self._versions and k not in self._by_key]:
                    self._versions.pop(key, None)
                    self._values.pop(key, None)

    def poke(self) -> None:
        """Something watched may just have changed (this process committed it): ask now."""
        self._poked.set()

    def current(self, keys: Iterable[K] | None) -> dict[K, int]:
        with self._lock:
            if keys is None:
                return dict(self._versions)
            return {key: self._versions[key] for key in keys if key in self._versions}

    def values(self, keys: Iterable[K]) -> dict[K, tuple[int, V]]:
        """(version, value) of each loaded key, the two as loaded together."""
        with self._lock:
            return {key: (self._versions[key], self._values[key]) for key in keys if key in self._values}

    def _poll(self) -> None:
        """The poller's thread: runs while anyone watches (subscribe starts it again after)."""
        pause = RETRY_SECONDS
        while True:
            with self._lock:
                if self._count == 0:
                    self._poller = None
                    return
                keys = None if self._everything else list(self._by_key)
            try:
                versions = self._read_versions(keys)
                with self._lock:
                    changed = [key for key, version in versions.items() if self._versions.get(key) != version]
                loaded = self._load(changed) if self._load is not None and changed else {}
            except Exception:
                # The watchers keep what they have and the feed asks again, less often while the
                # database stays away; whatever else failed is logged with its trace, not fatal.
                log.exception("%s: cannot read changes; asking again in %.0f s", self.name, pause)
                time.sleep(pause)
                pause = min(pause * 2, MAX_RETRY_SECONDS)
                continue
            pause = RETRY_SECONDS
            self._publish(versions, changed, loaded)
            # A poke during the query above is kept for the next round: the query may have read
            # the database before that change committed.
            self._poked.wait(self.interval)
            self._poked.clear()

    def _publish(self, versions: Mapping[K, int], changed: list[K], loaded: Mapping[K, tuple[int, V]]) -> None:
        woken: set[Subscription[K, V]] = set()
        with self._lock:
            for key in changed:
                if key in loaded:
                    # The value read a moment later may be newer than the version polled.
                    self._versions[key], self._values[key] = loaded[key]
                else:
                    self._versions[key] = versions[key]
                woken |= self._by_key.get(key, set())
            if changed:
                woken |= self._everything
        # One hand-off per event loop, not per watcher: the loop sets its watchers' events itself.
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Event]] = {}
        for subscription in woken:
            by_loop.setdefault(subscription.loop, []).append(subscription.event)
        for loop, events in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a loop closed while the poller published
                loop.call_soon_threadsafe(_set_all, events)


def _set_all(events: list[asyncio.Event]) -> None:
    for event in events:
        event.set()


class Subscription(Generic[K, V]):
    """One watcher's view of the feed; use it as a context manager so the watcher leaves."""

    def __init__(self, feed: ChangeFeed[K, V], keys: list[K] | None) -> None:
        self.feed = feed
        self.keys = keys
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()

    async def wait(self, seen: Mapping[K, int], timeout: float) -> dict[K, int]:
        """The current versions of the watched keys, as soon as one is past ``seen`` (versions only
        grow; a key ``seen`` lacks counts once the feed knows it), or when ``timeout`` is up."""
        deadline = time.monotonic() + timeout
        while True:
            self.event.clear()
            current = self.feed.current(self.keys)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or any(version > seen.get(key, -1) for key, version in current.items()):
                return current
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):  # no task of its own, unlike wait_for
                    await self.event.wait()

    def values(self, keys: Iterable[K]) -> dict[K, tuple[int, V]]:
        """(version, value) the feed loaded for ``keys`` (only with ``load``; a key not loaded yet
        is absent)."""
        return self.feed.values(keys)

    def __enter__(self) -> Subscription[K, V]:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.feed._unsubscribe(self)
