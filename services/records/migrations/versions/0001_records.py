"""Records, audit trail, issued proofs, signing keys, and the outbox and inbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from govmesh.migration_ops import create_messaging_tables_v1, drop_messaging_tables_v1

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column("record_id", sa.String(36), primary_key=True),
        sa.Column("department_code", sa.String(64), nullable=False),
        sa.Column("record_type", sa.String(64), nullable=False),
        sa.Column("source_reference", sa.String(200), nullable=False),
        sa.Column("subject_id", sa.String(64), nullable=False),
        sa.Column("subject_masked_identifier", sa.String(18), nullable=False),
        sa.Column("subject_kind", sa.String(16), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("effective_to", sa.Date(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("supersedes_record_id", sa.String(36), nullable=True),
        sa.Column("superseded_by", sa.String(36), nullable=True),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("department_code", "source_reference", name="uq_records_source"),
    )
    op.create_index("ix_records_subject", "records", ["subject_id", "department_code", "record_type"])
    op.create_table(
        "audit_entries",
        sa.Column("sequence", sa.BigInteger(), primary_key=True, autoincrement=False),
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
        sa.Column("previous_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("entry_hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_index("ix_audit_subject", "audit_entries", ["subject_id", "sequence"])
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("entry_hash", sa.LargeBinary(32), nullable=False),
    )
    op.bulk_insert(
        sa.table("audit_head", sa.column("id"), sa.column("sequence"), sa.column("entry_hash", sa.LargeBinary)),
        [{"id": 1, "sequence": 0, "entry_hash": bytes(32)}],
    )
    op.create_table(
        "issued_proofs",
        sa.Column("proof_id", sa.String(36), primary_key=True),
        sa.Column("request_key", sa.String(300), nullable=True, unique=True),
        sa.Column("request_fingerprint", sa.String(64), nullable=False),
        sa.Column("proof", sa.LargeBinary(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "signing_keys",
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("public_key", sa.LargeBinary(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("active_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("active_until", sa.DateTime(timezone=True), nullable=True),
    )
    create_messaging_tables_v1()


def downgrade() -> None:
    drop_messaging_tables_v1()
    for table in ("signing_keys", "issued_proofs", "audit_head", "audit_entries"):
        op.drop_table(table)
    op.drop_index("ix_records_subject", table_name="records")
    op.drop_table("records")
