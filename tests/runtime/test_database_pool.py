"""The PostgreSQL pool pings a connection before use only when it sat idle: one used a moment ago
goes straight to work; a dead one found by the ping is replaced without failing the call; a dead
one used at once fails that call as the database unavailable, and the pool is whole again after."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from govmesh import db as govmesh_db
from govmesh.db import Database, database_unavailable, service_database
from tests.support.mesh import PostgresDatabases


@pytest.fixture
def database(postgres: PostgresDatabases, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Database, list[int]]]:
    database = service_database("identity", postgres.create(), pool_size=1)
    pings: list[int] = []
    ping = database.engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(1)
        return ping(dbapi_connection)

    monkeypatch.setattr(database.engine.dialect, "do_ping", counted)
    yield database, pings
    database.dispose()


def backend(database: Database) -> int:
    with database.transaction() as session:
        return int(session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


def terminate(database: Database, pid: int) -> None:
    admin = sa.create_engine(database.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        assert connection.execute(sa.select(sa.func.pg_terminate_backend(pid))).scalar_one()
    admin.dispose()


def test_a_connection_used_a_moment_ago_is_not_pinged_and_a_dead_one_fails_one_call(
    database: tuple[Database, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, pings = database
    monkeypatch.setattr(govmesh_db, "PING_AFTER_IDLE_SECONDS", 3600.0)  # never idle long enough
    first = backend(db)
    assert backend(db) == first and pings == []  # the same pooled connection, no round trip to ping
    terminate(db, first)
    with pytest.raises(sa.exc.DBAPIError) as failed:
        backend(db)
    assert database_unavailable(failed.value)
    assert backend(db) not in (first, 0)  # the pool reconnected by itself


def test_a_connection_that_sat_idle_is_pinged_and_replaced_when_dead(
    database: tuple[Database, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, pings = database
    first = backend(db)
    monkeypatch.setattr(govmesh_db, "PING_AFTER_IDLE_SECONDS", 0.0)  # every connection idle long enough
    terminate(db, first)
    replaced = backend(db)  # the call itself never sees the dead connection
    assert replaced != first and pings


def test_a_long_statement_is_converted_for_postgresql_once_and_then_reused(
    database: tuple[Database, list[int]],
) -> None:
    from psycopg import _queries

    db, _ = database
    # Over both of psycopg's own limits (4 KB, 50 parameters), as the saga's one-statement writes are.
    columns = [f"%(p{n})s::int AS column_{n}_{'x' * 40}" for n in range(80)]
    statement = "SELECT " + ", ".join(columns)
    assert len(statement) > 4096
    for offset in (0, 1000):
        with db.transaction() as session:
            connection = session.connection()
            row = connection.exec_driver_sql(statement, {f"p{n}": n + offset for n in range(80)}).one()
        assert list(row) == [n + offset for n in range(80)]  # the parameters in their places, each time
    before = _queries._query2pg.cache_info()
    _queries._query2pg(statement.encode(), "utf-8")  # psycopg's own lookup, as an execution makes it
    assert _queries._query2pg.cache_info().hits == before.hits + 1  # kept from the executions above


def backend_pid(connection: object) -> int:
    """The server process behind ``connection``, asked on the driver path."""
    assert isinstance(connection, sa.Connection)
    return int(govmesh_db.execute_on_driver(connection, "SELECT pg_backend_pid()", {}).fetchone()[0])


def driver_backend(db: Database) -> int:
    with db.single_write() as connection:
        return backend_pid(connection)


def test_a_statement_on_the_driver_fails_as_sqlalchemys_would_and_a_dead_connection_leaves_the_pool(
    database: tuple[Database, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, _ = database
    monkeypatch.setattr(govmesh_db, "PING_AFTER_IDLE_SECONDS", 3600.0)
    with db.single_write() as connection:
        assert isinstance(connection, sa.Connection)
        govmesh_db.execute_on_driver(connection, "CREATE TEMPORARY TABLE once (name text PRIMARY KEY)", {})
        insert = "INSERT INTO pg_temp.once (name) VALUES (%(name)s)"
        govmesh_db.execute_on_driver(connection, insert, {"name": "a-value"})
        with pytest.raises(sa.exc.IntegrityError) as repeated:
            govmesh_db.execute_on_driver(connection, insert, {"name": "a-value"})
    assert "parameters hidden" in str(repeated.value)  # SQLAlchemy's part of the message leaves them out
    assert not database_unavailable(repeated.value)
    first = driver_backend(db)
    terminate(db, first)
    with pytest.raises(sa.exc.DBAPIError) as failed:
        driver_backend(db)
    assert database_unavailable(failed.value)
    assert driver_backend(db) not in (first, 0)  # the pool reconnected by itself


def test_a_connection_found_lost_on_the_driver_takes_the_pools_older_connections_with_it(
    postgres: PostgresDatabases, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restarted server leaves every pooled connection dead: the first call to find one lost
    fails, and the others are replaced at their next checkout rather than each failing a call."""
    monkeypatch.setattr(govmesh_db, "PING_AFTER_IDLE_SECONDS", 3600.0)  # no ping would save them
    db = service_database("identity", postgres.create(), pool_size=2)
    try:
        with db.single_write() as one, db.single_write() as two:  # two connections in the pool
            old = {backend_pid(one), backend_pid(two)}
        for pid in old:
            terminate(db, pid)
        with pytest.raises(sa.exc.DBAPIError) as failed:
            driver_backend(db)
        assert database_unavailable(failed.value)
        with db.single_write() as one, db.single_write() as two:  # both now fresh, whichever was kept
            new = {backend_pid(one), backend_pid(two)}
        assert len(new) == 2 and not new & old
    finally:
        db.dispose()
