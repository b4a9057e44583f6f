"""Every revision of every case, for WatchCase and the case's history.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_revisions",
        sa.Column("case_id", sa.String(36), primary_key=True),
        sa.Column("revision", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
    )
    # Cases from before: their current revision is the first one kept.
    op.execute(
        "INSERT INTO case_revisions (case_id, revision, changed_at, document) "
        "SELECT case_id, revision, submitted_at, document FROM cases"
    )


def downgrade() -> None:
    op.drop_table("case_revisions")
