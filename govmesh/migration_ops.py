"""Schema operations that every service's first migration shares.

Migrations are history: once a function here has shipped, the schema it leaves never changes. A
change to the outbox or inbox gets a new function, called from a new migration of each service;
only how a function builds what it builds may improve (outbox_pending_index_v2 builds its index
without blocking writes since the release after it shipped)."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

log = logging.getLogger(__name__)


def create_messaging_tables_v1() -> None:
    op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("subject", sa.String(100), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("exchange", sa.String(200), nullable=False),
        sa.Column("routing_key", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("trace_headers", sa.Text(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_outbox_unpublished", "outbox", ["published_at", "seq"])
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(200), primary_key=True),
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),
    )


def drop_messaging_tables_v1() -> None:
    op.drop_table("inbox")
    op.drop_index("ix_outbox_unpublished", table_name="outbox")
    op.drop_table("outbox")


def outbox_pending_index_v2() -> None:
    """An index of the outbox's events waiting to be published, and of those only (partial, on
    ``seq``), beside ix_outbox_unpublished, which keys every event ever written by (published_at,
    seq): a million people's seed left records' outbox with some nine million rows, every one in
    the old index, although the relay and the backlog gauge only ever look for the unsent few. A
    partial index is also one no statistics can make PostgreSQL's planner pass over for the
    primary key. The old index stays for the code of the release before, whose relay reads by
    it, until a later release's migration drops it."""
    create_index_without_blocking_writes("ix_outbox_pending", "outbox", ["seq"], where="published_at IS NULL")


def drop_outbox_pending_index_v2() -> None:
    """outbox_pending_index_v2 undone."""
    drop_index_without_blocking_writes("ix_outbox_pending", "outbox")


def create_index_without_blocking_writes(name: str, table: str, columns: list[str], where: str | None = None) -> None:
    """An index built while the table goes on taking writes: on PostgreSQL CONCURRENTLY, outside
    the migration's transaction (which commits the migrations before it), where a plain CREATE
    INDEX holds every insert, update and delete of the table for the whole build (every proof and
    case of the service, if it is the outbox: seconds for a day's events). The build waits for the
    transactions writing the table when it starts and, at its end, for every transaction of the
    database holding an older snapshot, whichever service's or tool's (a long report, a pg_dump,
    a session left idle in a transaction): it says so in the log first. A build cut off (the
    statement cancelled, a deadlock) leaves an INVALID index and no revision recorded: the
    migration runs again, drops that index and builds it anew (Database.migrate's lock keeps the
    next try waiting while a cut-off migrator's build still runs). SQLite has one writer: a plain
    CREATE INDEX, in the migration's transaction."""
    condition = sa.text(where) if where else None
    if op.get_bind().dialect.name != "postgresql":
        op.create_index(name, table, columns, sqlite_where=condition)
        return
    log.info(
        "building index %s on %s without blocking writes: waits for the database's transactions older than it "
        "(pg_stat_activity: backend_xmin set, or idle in transaction)",
        name,
        table,
    )
    with op.get_context().autocommit_block():
        broken = op.get_bind().execute(
            sa.text("SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"), {"name": name}
        )
        if broken.scalar():
            op.drop_index(name, table_name=table, postgresql_concurrently=True)
        op.create_index(
            name, table, columns, postgresql_where=condition, postgresql_concurrently=True, if_not_exists=True
        )


def drop_index_without_blocking_writes(name: str, table: str) -> None:
    """create_index_without_blocking_writes undone, as it was made: on PostgreSQL CONCURRENTLY."""
    if op.get_bind().dialect.name != "postgresql":
        op.drop_index(name, table_name=table)
        return
    with op.get_context().autocommit_block():
        op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
