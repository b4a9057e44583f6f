"""One database per service: engine, transactions, schema migrations and readiness.

SQLite (the default, a file per service under var/) runs in WAL mode and takes the write lock
at BEGIN, so the api and worker processes of a service never fail with "database is locked"
half-way through a transaction. PostgreSQL (DATABASE_URL) keeps each service in its own
schema, named after the service, so several services can share one database without sharing
tables; Alembic's version table lives in that schema too.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext, MigrationInfo
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import Insert

from govmesh.green import is_green_process

log = logging.getLogger(__name__)


def _normalise_url(url: str) -> sa.URL:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        # psycopg 3 is the driver we ship; SQLAlchemy's bare default is psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


#: How long a write transaction waits for SQLite's write lock before it fails.
SQLITE_LOCK_WAIT_SECONDS = 30.0


#: The longest a write transaction sleeps between two looks at SQLite's write lock. SQLite's own
#: busy handler sleeps ever longer between its looks (1, 2, 5, 10, 15, 20, 25 ms ... 100 ms), so a
#: lock freed just after it went to sleep stayed free, unused, for the rest of that sleep: crowd's
#: two ingest processes took each other's lock up to 25-55 ms after it was freed (issue 13). A look
#: is one failed lock attempt, a few microseconds.
LOCK_LOOK_SECONDS = 0.002


def _begin_immediate(connection: sa.Connection, busy_ms: int) -> None:
    """BEGIN IMMEDIATE, waiting for the write lock up to SQLITE_LOCK_WAIT_SECONDS by sleeping
    between tries (in a worker a green sleep, so its other green threads run meanwhile; SQLite's
    busy handler would stall them all), at most LOCK_LOOK_SECONDS, so the lock is taken soon
    after it is freed."""
    deadline = time.monotonic() + SQLITE_LOCK_WAIT_SECONDS
    pause = LOCK_LOOK_SECONDS / 8
    while True:
        try:
            _begin_immediate_if_free(connection, busy_ms)
            return
        except WriteLockTaken:
            if time.monotonic() >= deadline:
                raise sa.exc.OperationalError(
                    "BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked")
                ) from None
        time.sleep(pause)
        pause = min(pause * 2, LOCK_LOOK_SECONDS)


def _begin_immediate_if_free(connection: sa.Connection, busy_ms: int) -> None:
    """BEGIN IMMEDIATE without waiting: SQLite's busy handler is off for this one statement, so a
    write lock held by another connection raises at once (WriteLockTaken). The busy timeout is set
    on the driver's connection itself: two statements per write transaction, not worth
    SQLAlchemy's execution machinery."""
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute("PRAGMA busy_timeout=0")
    try:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    except sa.exc.OperationalError as exc:
        if isinstance(exc.orig, sqlite3.OperationalError) and "locked" in str(exc.orig):
            raise WriteLockTaken from None
        raise
    finally:
        driver.execute(f"PRAGMA busy_timeout={busy_ms}")


class WriteLockTaken(Exception):
    """SQLite's write lock is held by another connection (Database.transaction_if_free)."""


#: Connections a process keeps to PostgreSQL (an api's threads; a worker keeps its handlers'
#: concurrency and its timers'), and how many more it may open for a moment.
POOL_SIZE = 16
POOL_OVERFLOW = 4
#: A pooled connection idle this long is pinged before use (_ping_when_idle).
PING_AFTER_IDLE_SECONDS = 1.0
_IDLE_SINCE = "govmesh_idle_since"


class Database:
    def __init__(self, url: str, schema: str, migrations: Path, pool_size: int = POOL_SIZE) -> None:
        self.url = _normalise_url(url)
        self.schema = schema
        self.migrations = migrations
        self.pool_size = pool_size
        self.engine = self._create_engine()
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(
            self.engine.execution_options(govmesh_read_only=True), expire_on_commit=False
        )
        self._sessions_if_free = sessionmaker(
            self.engine.execution_options(govmesh_if_free=True), expire_on_commit=False
        )

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    def _create_engine(self) -> Engine:
        if self.is_sqlite:
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            # Every process waits for the write lock itself (_begin_immediate); the busy timeout
            # only covers the rare waits after BEGIN (WAL recovery, a checkpoint), short in a
            # worker, where SQLite's busy handler stalls every green thread.
            busy_ms = 50 if is_green_process() else int(SQLITE_LOCK_WAIT_SECONDS * 1000)
            engine = sa.create_engine(self.url, connect_args={"timeout": busy_ms / 1000})

            @event.listens_for(engine, "connect")
            def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
                # Let SQLAlchemy's "begin" below own transaction start instead of pysqlite.
                dbapi_connection.isolation_level = None
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
                cursor.close()

            @event.listens_for(engine, "begin")
            def _sqlite_begin(connection: sa.Connection) -> None:
                read_only = connection.get_execution_options().get("govmesh_read_only", False)
                if read_only:
                    connection.exec_driver_sql("BEGIN")
                elif connection.get_execution_options().get("govmesh_if_free", False):
                    _begin_immediate_if_free(connection, busy_ms)
                else:
                    _begin_immediate(connection, busy_ms)

            return engine
        engine = sa.create_engine(
            self.url,
            # As many connections kept as the process has threads at work (an api's 16), so a
            # busy process never opens and closes connections per call (a PostgreSQL backend
            # each); a few more for a burst.
            pool_size=self.pool_size,
            max_overflow=POOL_OVERFLOW,
            connect_args={"options": f"-csearch_path={self.schema}", "connect_timeout": 5},
        )
        _ping_when_idle(engine)
        _convert_long_statements_once()
        return engine

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """A unit of work: everything written inside commits together or not at all."""
        with self._sessions.begin() as session:
            yield session

    @contextlib.contextmanager
    def transaction_if_free(self) -> Iterator[Session | None]:
        """A unit of work, as transaction(), if it can start at once; else None, without waiting.
        On SQLite that is when no other connection holds the write lock, for work that may as
        well be done on a later try (the outbox relay's marks, which must not hold its next
        publication up behind another process's long write); on PostgreSQL, which has no
        database-wide write lock, always."""
        with self._sessions_if_free() as session:
            try:
                session.connection()  # BEGIN (IMMEDIATE) now, not at the caller's first statement
            except WriteLockTaken:
                yield None
                return
            yield session
            session.commit()

    @contextlib.contextmanager
    def single_write(self) -> Iterator[Session | sa.Connection]:
        """A unit of work that reads, then writes everything in ONE statement (a repository
        function made so, e.g. with data-modifying CTEs). On PostgreSQL each statement commits by
        itself, atomic as any transaction, so the unit costs no BEGIN and no COMMIT round trip; its
        reads see what committed before each of them, as they would in a READ COMMITTED
        transaction, which locks nothing either. On SQLite, where such writes take several
        statements, it is a write transaction (``transaction``)."""
        if self.is_sqlite:
            with self.transaction() as session:
                yield session
            return
        with self._autocommit() as connection:
            yield connection

    @contextlib.contextmanager
    def statement_reads(self) -> Iterator[Session | sa.Connection]:
        """Reads that need no snapshot across their statements: on PostgreSQL a connection whose
        every statement commits by itself (a transaction would add a BEGIN and a COMMIT round trip
        to a read of one or two statements: a proof's read, an idle outbox relay's look); on
        SQLite a read transaction, which does not take the write lock."""
        if self.is_sqlite:
            with self.read() as session:
                yield session
            return
        with self._autocommit() as connection:
            yield connection

    @contextlib.contextmanager
    def _autocommit(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as connection:
            yield connection.execution_options(isolation_level="AUTOCOMMIT")

    @contextlib.contextmanager
    def read(self, snapshot: bool = False) -> Iterator[Session]:
        """A read-only unit of work: on SQLite it does not take the write lock. With ``snapshot``,
        every statement sees the database as of the first (PostgreSQL's default, READ COMMITTED,
        lets each statement see what committed since; a SQLite read transaction is a snapshot
        already)."""
        with self._read_sessions.begin() as session:
            if snapshot and not self.is_sqlite:
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield session

    # -- migrations -------------------------------------------------------------------------

    def _alembic_config(self, connection: sa.Connection | None = None) -> Config:
        config = Config()
        config.set_main_option("script_location", str(self.migrations))
        config.attributes["connection"] = connection
        return config

    @functools.cached_property
    def _scripts(self) -> ScriptDirectory:
        """The service's migrations, read once rather than at every readiness check (every few
        seconds in every process): a running process's code, and so its migrations, never change."""
        return ScriptDirectory.from_config(self._alembic_config())

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to the newest revision, or to ``revision`` (idempotent), and record
        the oldest code that may still run on it (docs/decisions/runtime-upgrades-side-by-side.md).

        One transaction: an upgrade that fails changes nothing, and the version before serves on.
        A migration may step out of it for what PostgreSQL does only outside a transaction (CREATE
        INDEX CONCURRENTLY: migration_ops.create_index_without_blocking_writes), which commits the
        migrations before it, each with its record (run_alembic_env). On PostgreSQL one migrator
        at a time per service, from its schema's creation on (_one_migrator_at_a_time)."""
        with self.engine.connect() as connection, self._one_migrator_at_a_time(connection):
            if not self.is_sqlite:
                connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
                connection.commit()
            command.upgrade(self._alembic_config(connection), revision)

    @contextlib.contextmanager
    def _one_migrator_at_a_time(self, connection: sa.Connection) -> Iterator[None]:
        """Holds the service's migration lock (PostgreSQL: a session advisory lock) on
        ``connection`` while the body runs. A second migrator (two Jobs, or a Job retried while a
        cut-off one's statement still runs on the server) waits for it, asking again every second
        with no transaction open: one waiting in a transaction holds a snapshot, which the
        holder's CONCURRENTLY build waits for in its turn, a deadlock the server breaks by
        failing one of them."""
        if self.is_sqlite:  # one writer already
            yield
            return
        key = {"key": f"govmesh-migrate:{self.schema}"}
        said = False
        while not connection.execute(sa.text("SELECT pg_try_advisory_lock(hashtext(:key))"), key).scalar():
            connection.commit()
            if not said:
                log.info("waiting for another govmesh migrate of %s to finish", self.schema)
                said = True
            time.sleep(1)
        connection.commit()  # a session's lock outlives its transaction: alembic's own begins next
        try:
            yield
        finally:
            try:
                connection.rollback()  # whatever a failed migration left open
                connection.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:key))"), key)
                connection.commit()
            except BaseException:
                connection.invalidate()  # its session, and the lock with it, ends rather than go back to the pool
                raise

    def readiness(self) -> str | None:
        """None when the database answers and is migrated to this code's head, or to a newer
        revision whose migrations declared that code at this head may still run on it (an
        upgrade's old and new processes side by side); else why not."""
        try:
            with self.engine.connect() as connection:
                current = MigrationContext.configure(connection).get_current_revision()
                script = self._scripts
                head = script.get_current_head()
                oldest = None
                if current != head and sa.inspect(connection).has_table(compatibility.name):
                    oldest = connection.execute(sa.select(compatibility.c.oldest_code_head)).scalar()
        except sa.exc.SQLAlchemyError as exc:
            cause = getattr(exc, "orig", None) or exc
            return f"database unreachable: {type(cause).__name__}"
        if current == head:
            return None
        if current is None or current in {r.revision for r in script.walk_revisions()}:
            return f"database at migration {current or 'none'}, code needs {head} (run govmesh migrate)"
        assert head is not None
        if oldest in {r.revision for r in script.iterate_revisions(head, "base")}:
            return None
        return (
            f"database at migration {current}, newer than this code ({head}), and a migration since breaks this "
            "code: stop this version's processes"
        )

    def commit_watch(self) -> CommitWatch | None:
        """SQLite: a check, cheap enough to make every few milliseconds, of whether another
        connection committed (CommitWatch); None on PostgreSQL, which has no such counter."""
        if not self.is_sqlite or not self.url.database or self.url.database == ":memory:":
            return None
        try:
            return CommitWatch(self.url.database)
        except sqlite3.Error as exc:
            log.warning("cannot watch the database for commits, polling only: %s", exc)
            return None

    def dispose(self) -> None:
        self.engine.dispose()


class CommitWatch:
    """Whether any other connection, in any process, committed to a SQLite database since the
    last look: SQLite's PRAGMA data_version on a connection of its own, which reads a counter in
    shared memory and takes no lock, without the pool, a session or a compiled query. What lets a
    poller look often and query only when something changed."""

    def __init__(self, path: str) -> None:
        # No busy wait: a look that cannot be made at once (a checkpoint, the file away) answers
        # "committed", and the caller's own query, with its own waits and errors, finds out.
        # mode=rw: never creates the file, which only migrations do.
        uri = f"file:{urllib.parse.quote(path)}?mode=rw"
        self._connection = sqlite3.connect(uri, uri=True, timeout=0, isolation_level=None, check_same_thread=False)
        self._version = self._read()

    def _read(self) -> int | None:
        try:
            return int(self._connection.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            return None

    def committed(self) -> bool:
        """Whether another connection committed since the last call (or since this was made);
        True when that cannot be told."""
        version = self._read()
        changed = version is None or version != self._version
        self._version = version
        return changed

    def close(self) -> None:
        self._connection.close()


def _ping_when_idle(engine: Engine) -> None:
    """A connection taken from the pool is pinged first (a round trip) only when it sat there
    PING_AFTER_IDLE_SECONDS or more, rather than every time as pool_pre_ping does: under load a
    ping per transaction was one round trip in every four to eight of a saga's, in every process
    (issue 13). A connection used a moment ago met the database a moment ago; if the database went
    away since, the first statement fails as the database being unavailable and the pool drops
    every connection opened before (SQLAlchemy's invalidation on a disconnect), so one failed call
    per connection in flight, which a ping could not have saved, is all it costs. A dead
    connection found by the ping is replaced, as pool_pre_ping replaces it."""

    @event.listens_for(engine, "connect")
    def _connected(dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()  # a new connection needs no ping

    @event.listens_for(engine, "checkin")
    def _checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is not None and time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            if engine.dialect.is_disconnect(exc, dbapi_connection, None):
                # The pool discards this connection and hands out another (three tries).
                raise sa.exc.DisconnectionError(f"ping failed: {type(exc).__name__}") from exc
            raise


#: How long readiness waits to look at the database again: while ready, and while not (so that
#: its return is seen within half a second).
READINESS_INTERVALS: Final = (5.0, 0.5)


#: The longest statement, and the most parameters, whose conversion psycopg keeps.
CACHED_STATEMENT_BYTES = 65536
CACHED_STATEMENT_PARAMETERS = 1000


def _convert_long_statements_once() -> None:
    """psycopg turns a statement's %(name)s placeholders into $n by parsing it, and keeps the
    result only for statements under 4 KB with at most 50 parameters; the one-statement writes of
    approvals' saga and records' proofs (docs/decisions/approvals-fewer-round-trips-per-case.md)
    are over both, so each was parsed again on every execution: 7% of approvals' worker at 50
    cases/s, about a millisecond a case. They are compiled once per shape and the shapes are few,
    so they fit psycopg's own cache (its least recently used 128 are kept). psycopg reads both
    limits from its module at each execution; it has no public setting for them."""
    from psycopg import _queries

    # A psycopg that renamed them loses the speed, not the service.
    for name, least in (
        ("MAX_CACHED_STATEMENT_LENGTH", CACHED_STATEMENT_BYTES),
        ("MAX_CACHED_STATEMENT_PARAMS", CACHED_STATEMENT_PARAMETERS),
    ):
        if isinstance(getattr(_queries, name, None), int):
            setattr(_queries, name, max(getattr(_queries, name), least))


def watch_readiness(
    readiness: Callable[[], str | None],
    report: Callable[[str | None], None],
    *,
    name: str = "readiness",
    stop: threading.Event | None = None,
    recheck: threading.Event | None = None,
) -> None:
    """Looks at ``readiness`` (Database.readiness: None, or why not) from a thread of its own
    (eventlet's in a worker, where it waits the green way) and hands each answer to ``report``,
    until ``stop``; ``recheck`` set looks again at once rather than at the next interval. A bug in
    the check is reported as a failure, not left standing as the last answer."""
    stopping = stop or threading.Event()
    wake = recheck or threading.Event()

    def loop() -> None:
        while not stopping.is_set():
            wake.clear()
            try:
                reason = readiness()
            except Exception as exc:
                log.exception("the database readiness check failed")
                reason = f"the check failed ({type(exc).__name__})"
            report(reason)
            wake.wait(READINESS_INTERVALS[reason is not None])

    threading.Thread(target=loop, name=name, daemon=True).start()


def execute_on_driver(
    connection: sa.Connection, statement: str, parameters: Mapping[str, Any] | Sequence[Any], prepare: bool = True
) -> Any:
    """PostgreSQL: ``statement`` (SQL for psycopg, named or positional parameters) run on the driver's
    own connection, prepared, for a statement on a hot path: SQLAlchemy's execution machinery
    around it (context, cursor, result) cost more Python than psycopg's own execute. Returns the
    psycopg cursor, whose rows are tuples. A driver error is raised as Connection.execute would
    raise it (sa.exc.IntegrityError, OperationalError, ...), with no parameter in what SQLAlchemy
    adds to its message, and a connection found lost is invalidated, not put back in the pool, with
    every pooled connection older than it. ``prepare=False`` for a statement whose best plan
    changes as its tables grow: a prepared statement without parameters keeps the plan made at its
    first run until the table's statistics change."""
    driver = connection.connection.driver_connection
    assert driver is not None
    dialect = connection.dialect
    try:
        return driver.execute(statement, parameters, prepare=prepare)
    except dialect.loaded_dbapi.Error as exc:
        lost = dialect.is_disconnect(exc, driver, None)
        if lost:
            # As SQLAlchemy does when its own statement finds the connection lost: the pool's other
            # connections opened before now are likely lost with it (a server restart), so they are
            # replaced at their next checkout instead of each failing one more call.
            connection.engine.pool._invalidate(connection.connection, exc)
            connection.invalidate(exc)
        raise sa.exc.DBAPIError.instance(
            statement,
            parameters,
            exc,
            dialect.loaded_dbapi.Error,
            hide_parameters=True,
            connection_invalidated=lost,
            dialect=dialect,
        ) from exc


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` says the database is away or busy rather than that the code is wrong: a
    lost or refused connection, a server shutting down, a lock or a pool connection not granted in
    time. A call that met it may be tried again; the pool reconnects by itself (_ping_when_idle)."""
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(
        error, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.DisconnectionError | sa.exc.TimeoutError
    )


def insert_new(session: Session, table: sa.Table) -> Insert:
    """``INSERT INTO table ... ON CONFLICT DO NOTHING`` in the session's dialect (SQLite and
    PostgreSQL spell it alike, but SQLAlchemy has it only on each dialect's own insert): for
    idempotent writes of many rows in one statement, with ``.returning(...)`` naming those that
    were new."""
    dialect = session.get_bind().dialect.name
    insert = sqlite.insert(table) if dialect == "sqlite" else postgresql.insert(table)
    return insert.on_conflict_do_nothing()


#: Beside alembic_version: the oldest code (by its head revision) that may run on the schema.
compatibility = sa.Table(
    "schema_compatibility", sa.MetaData(), sa.Column("oldest_code_head", sa.String(64), nullable=False)
)


def oldest_code_for(script: ScriptDirectory, current: str) -> str:
    """The oldest head revision whose code may run on a schema at ``current``: walking down from
    ``current``, the first migration that does not say ``backward_compatible = True`` (code
    older than it cannot run). A migration that says nothing counts as breaking: the safe side."""
    oldest = current
    for revision in script.iterate_revisions(current, "base"):
        oldest = revision.revision
        if not getattr(revision.module, "backward_compatible", False):
            break
    return oldest


def run_alembic_env(target_metadata: sa.MetaData) -> None:
    """The body of every service's migrations/env.py: migrate on the connection we pass in, in
    one transaction of alembic's (Database.migrate); with each migration's revision, the oldest
    code that may run on the schema it leaves, so that what a migration stepping out of the
    transaction commits is recorded truly."""
    from alembic import context

    connection: sa.Connection = context.config.attributes["connection"]
    if connection.in_transaction():
        raise RuntimeError(
            "migrations run in alembic's own transaction: pass a connection outside one (engine.connect())"
        )
    script = context.script

    def record_compatibility(
        ctx: MigrationContext, step: MigrationInfo, heads: Collection[str], run_args: Mapping[str, Any]
    ) -> None:
        on = ctx.connection
        assert on is not None  # a migration run on a database, not written out as SQL
        compatibility.create(on, checkfirst=True)
        on.execute(compatibility.delete())
        for head in heads:  # none when migrated down to the base; one otherwise (one chain)
            on.execute(compatibility.insert().values(oldest_code_head=oldest_code_for(script, head)))

    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        # SQLite's DDL is transactional too (alembic assumes not, and would commit each migration).
        transactional_ddl=True,
        on_version_apply=record_compatibility,
    )
    with context.begin_transaction():
        context.run_migrations()


def service_database(service: str, url: str, pool_size: int = POOL_SIZE) -> Database:
    """The database of `service`, whose migrations live in services/<service>/migrations;
    ``pool_size``: connections kept to PostgreSQL, at least the process's concurrent users."""
    migrations = Path(__file__).resolve().parent.parent / "services" / service / "migrations"
    return Database(url, schema=service, migrations=migrations, pool_size=pool_size)
