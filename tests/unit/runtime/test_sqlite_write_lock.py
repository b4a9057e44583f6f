"""How a write transaction waits for SQLite's write lock, and the collector's start-up freeze:
two causes of crowd's reading -> level_changed tail (issue 13)."""

from __future__ import annotations

import gc
import sqlite3
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from govmesh import db as govmesh_db
from govmesh.collector import freeze_start_up
from govmesh.db import LOCK_LOOK_SECONDS, Database, database_unavailable, service_database


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection to the database, as another process's would be."""
    path = tmp_path / "records.db"
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE t (x INTEGER)")
    yield connection
    connection.close()


def database(holder: sqlite3.Connection) -> Database:
    path = holder.execute("PRAGMA database_list").fetchone()[2]
    return service_database("records", f"sqlite:///{path}")


def test_a_write_looks_at_the_lock_again_within_a_few_milliseconds(
    holder: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another connection holds the write lock; the write's BEGIN IMMEDIATE fails at once rather
    than waiting in SQLite's busy handler (whose sleeps grow to 100 ms), and the write sleeps at
    most LOCK_LOOK_SECONDS between tries, so it takes the lock soon after it is freed. Once in, its
    connection waits for SQLite again as long as configured (the rare waits after BEGIN)."""
    monkeypatch.setattr("govmesh.db.SQLITE_LOCK_WAIT_SECONDS", 5.0)
    db = database(holder)
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        # The holder is in this thread: a BEGIN IMMEDIATE that waited in SQLite's busy handler
        # would never see it released, and fail after the 5 s above.
        pauses.append(seconds)
        if len(pauses) == 12:
            holder.execute("COMMIT")

    monkeypatch.setattr(govmesh_db.time, "sleep", sleep)
    holder.execute("BEGIN IMMEDIATE")
    with db.transaction() as session:
        session.execute(sa.text("INSERT INTO t VALUES (1)"))
        busy_timeout = session.execute(sa.text("PRAGMA busy_timeout")).scalar_one()
    assert len(pauses) == 12
    assert max(pauses) <= LOCK_LOOK_SECONDS
    assert busy_timeout == 5000
    assert holder.execute("SELECT count(*) FROM t").fetchone() == (1,)
    db.dispose()


def test_a_write_that_never_gets_the_lock_fails_as_the_database_busy(
    holder: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past SQLITE_LOCK_WAIT_SECONDS the write gives up with SQLite's own error, which callers
    treat as the database unavailable (retried, not a bug), and writes nothing."""
    monkeypatch.setattr("govmesh.db.SQLITE_LOCK_WAIT_SECONDS", 0.05)
    db = database(holder)
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(sa.exc.OperationalError, match="locked") as raised, db.transaction() as session:
        session.execute(sa.text("INSERT INTO t VALUES (1)"))
    assert database_unavailable(raised.value)
    holder.execute("COMMIT")
    assert holder.execute("SELECT count(*) FROM t").fetchone() == (0,)
    db.dispose()


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_the_start_up_freeze_leaves_later_garbage_to_the_collector() -> None:
    """What lives at start-up is no longer walked by the collector; a cycle made later is still
    collected."""
    kept = _Node()
    try:
        freeze_start_up()
        assert gc.get_freeze_count() > 0
        assert not any(o is kept for o in gc.get_objects())
        first, second = _Node(), _Node()
        first.other, second.other = second, first
        gone = weakref.ref(first)
        del first, second
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()
