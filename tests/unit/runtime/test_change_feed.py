"""One poller for an api process's watchers (govmesh/change_feed.py), against a stand-in for the
database's versions: which watchers wake, what they are given, and what the feed survives. The
watchers are coroutines, as on the api's grpc.aio loop; the poller is the feed's thread."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from govmesh.change_feed import ChangeFeed, Full


class Versions:
    """The database as the feed sees it: a version per key, and what was asked."""

    def __init__(self) -> None:
        self.current: dict[str, int] = {}
        self.asked: list[list[str] | None] = []
        self.loaded: list[list[str]] = []
        self.failing = False

    def read(self, keys: list[str] | None) -> dict[str, int]:
        self.asked.append(None if keys is None else sorted(keys))
        if self.failing:
            raise ConnectionError("the database went away")
        return {k: v for k, v in self.current.items() if keys is None or k in keys}

    def load(self, keys: list[str]) -> dict[str, tuple[int, str]]:
        self.loaded.append(sorted(keys))
        return {k: (self.current[k], f"{k}@{self.current[k]}") for k in keys}


def on_a_loop(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Runs a test's coroutine on an event loop of its own (no asyncio plugin for pytest here)."""

    def run() -> None:
        asyncio.run(test())

    run.__doc__ = test.__doc__
    return run


async def settle(feed: ChangeFeed[str, str], key: str, version: int) -> None:
    deadline = time.monotonic() + 5
    while feed.current([key]).get(key) != version:
        assert time.monotonic() < deadline, f"the feed never saw {key} at {version}"
        await asyncio.sleep(0.005)


@on_a_loop
async def test_a_change_wakes_only_the_watchers_of_its_key_and_is_loaded_once_for_them() -> None:
    db = Versions()
    db.current = {"lake": 1, "hill": 1}
    feed = ChangeFeed("zones", db.read, db.load, interval=0.01)
    with feed.subscribe(["lake"]) as lake_a, feed.subscribe(["lake"]) as lake_b, feed.subscribe(["hill"]) as hill:
        await settle(feed, "hill", 1)
        assert await lake_a.wait({"lake": 0}, 0) == {"lake": 1}
        assert await hill.wait({"hill": 0}, 0) == {"hill": 1}
        db.loaded.clear()
        db.current["lake"] = 2
        woke = await asyncio.wait_for(asyncio.gather(*(s.wait({"lake": 1}, 5) for s in (lake_a, lake_b))), 5)
        assert woke == [{"lake": 2}, {"lake": 2}]
        assert lake_a.values(["lake"]) == {"lake": (2, "lake@2")}
        assert db.loaded == [["lake"]], "read once for every watcher of the zone"
        started = time.monotonic()
        assert await hill.wait({"hill": 1}, 0.2) == {"hill": 1}, "hill's watcher sleeps until its timeout"
        assert time.monotonic() - started >= 0.19
    assert feed.watchers == 0


@on_a_loop
async def test_a_poke_asks_at_once_rather_than_at_the_end_of_the_interval() -> None:
    """A change the api process committed itself: its watchers hear of it without waiting out the
    feed's interval (here an hour, so only the poke can explain the wake)."""
    db = Versions()
    db.current = {"lake": 1}
    feed: ChangeFeed[str, str] = ChangeFeed("zones", db.read, interval=3600)
    with feed.subscribe(["lake"]) as lake:
        await settle(feed, "lake", 1)
        db.current["lake"] = 2
        feed.poke()
        assert await lake.wait({"lake": 1}, 5) == {"lake": 2}


@on_a_loop
async def test_a_watcher_of_every_key_is_woken_by_any_change_and_sees_new_keys() -> None:
    db = Versions()
    db.current = {"lake": 1}
    feed: ChangeFeed[str, str] = ChangeFeed("zones", db.read, interval=0.01)
    with feed.subscribe(None) as everything:
        await settle(feed, "lake", 1)
        db.current["new_zone"] = 1
        assert await everything.wait({"lake": 1}, 5) == {"lake": 1, "new_zone": 1}
        assert None in db.asked, "every key asked for at once"


@on_a_loop
async def test_the_feed_refuses_a_watcher_past_its_capacity_and_frees_the_place_when_one_leaves() -> None:
    db = Versions()
    feed: ChangeFeed[str, str] = ChangeFeed("cases", db.read, interval=0.01, capacity=2)
    first = feed.subscribe(["a"])
    with feed.subscribe(["b"]):
        with pytest.raises(Full, match="already 2 watchers"):
            feed.subscribe(["c"])
    with feed.subscribe(["c"]):
        assert feed.watchers == 2
    with first:
        pass
    assert feed.watchers == 0


@on_a_loop
async def test_the_poller_outlives_a_database_that_goes_away_and_forgets_what_no_one_watches() -> None:
    db = Versions()
    db.current = {"case_1": 3}
    feed: ChangeFeed[str, str] = ChangeFeed("cases", db.read, interval=0.01)
    with feed.subscribe(["case_1"]) as watcher:
        await settle(feed, "case_1", 3)
        db.failing = True
        await asyncio.sleep(0.05)
        db.current["case_1"] = 4
        db.failing = False
        assert await watcher.wait({"case_1": 3}, 5) == {"case_1": 4}, "back with the database"
    assert feed.current(["case_1"]) == {}, "forgotten once no one watches"
