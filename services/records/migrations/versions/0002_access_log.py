"""The access log as a Merkle tree (RFC 9162): entries written without a shared lock, sealed in
batches by the sequencer into a tree whose signed heads are kept. The hash-chained audit trail's
entries move into it in their order (as entries not sealed yet: the sequencer seals them first, in
entry_id order, which is their old sequence), and the chain's head row goes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COPY_CHAIN = """
INSERT INTO access_entries (entry_id, accessed_at, caller_id, caller_name, subject_id,
    subject_masked_identifier, proof_type, purpose_kind, purpose_value, purpose_note, outcome, proof_id)
SELECT sequence, accessed_at, caller_id, caller_name, subject_id,
    subject_masked_identifier, proof_type, purpose_kind, purpose_value, purpose_note, outcome, proof_id
FROM audit_entries ORDER BY sequence
"""


def upgrade() -> None:
    op.create_table(
        "access_entries",
        sa.Column(
            "entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("accessed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("caller_id", sa.String(64), nullable=False),
        sa.Column("caller_name", sa.String(200), nullable=False),
        sa.Column("subject_id", sa.String(64), nullable=False),
        sa.Column("subject_masked_identifier", sa.String(18), nullable=False),
        sa.Column("proof_type", sa.String(64), nullable=False),
        sa.Column("purpose_kind", sa.String(16), nullable=False),
        sa.Column("purpose_value", sa.String(200), nullable=False),
        sa.Column("purpose_note", sa.String(500), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("proof_id", sa.String(36), nullable=False),
        sa.Column("leaf_index", sa.BigInteger(), nullable=True, unique=True),
    )
    op.create_index("ix_access_entries_subject", "access_entries", ["subject_id", "entry_id"])
    op.create_index(
        "ix_access_entries_pending",
        "access_entries",
        ["entry_id"],
        sqlite_where=sa.text("leaf_index IS NULL"),
        postgresql_where=sa.text("leaf_index IS NULL"),
    )
    op.create_table(
        "access_log_nodes",
        sa.Column("level", sa.SmallInteger(), primary_key=True, autoincrement=False),
        sa.Column("node_index", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_table(
        "access_log_heads",
        sa.Column("tree_size", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("log_id", sa.String(200), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("signature", sa.LargeBinary(64), nullable=False),
    )
    op.execute(COPY_CHAIN)
    if op.get_bind().dialect.name == "postgresql":
        # The copied entries took their numbers explicitly: new ones continue after them.
        op.execute(
            "SELECT setval(pg_get_serial_sequence('access_entries', 'entry_id'), "
            "COALESCE((SELECT max(entry_id) FROM access_entries), 0) + 1, false)"
        )
    op.drop_index("ix_audit_subject", table_name="audit_entries")
    op.drop_table("audit_entries")
    op.drop_table("audit_head")


def downgrade() -> None:
    raise NotImplementedError("the access log cannot become a hash chain again: restore a backup instead")
