"""Schema operations that every service's first migration shares.

Migrations are history: once a function here has shipped, it is never edited. A change to the
outbox or inbox gets a new function, called from a new migration of each service."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


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
    it, until a later release's migration drops it. Built in the migration's transaction: inserts
    into the outbox wait for one scan of the table."""
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["seq"],
        postgresql_where=sa.text("published_at IS NULL"),
        sqlite_where=sa.text("published_at IS NULL"),
    )


def drop_outbox_pending_index_v2() -> None:
    """outbox_pending_index_v2 undone."""
    op.drop_index("ix_outbox_pending", table_name="outbox")
