"""What open cases hold (e.g. the property unit of a housing transfer), every case type version
loaded, who submitted each case, and an index for the deadline timer that skips decided cases.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_holds",
        sa.Column("resource", sa.String(400), primary_key=True),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("held_since", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_case_holds_case", "case_holds", ["case_id"])
    op.create_table(
        "case_type_versions",
        sa.Column("code", sa.String(64), primary_key=True),
        sa.Column("version", sa.String(16), primary_key=True),
        sa.Column("source", sa.LargeBinary(), nullable=False),
        sa.Column("first_loaded_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("cases") as batch:
        # Cases from before were submitted through the portal, the only caller with the right.
        batch.add_column(sa.Column("submitted_by", sa.String(64), nullable=False, server_default="demo-portal"))
    op.drop_index("ix_cases_deadline", "cases")
    op.create_index("ix_cases_open_deadline", "cases", ["state", "deadline_breached", "deadline_date"])


def downgrade() -> None:
    op.drop_index("ix_cases_open_deadline", "cases")
    op.create_index("ix_cases_deadline", "cases", ["deadline_breached", "deadline_date"])
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("submitted_by")
    op.drop_table("case_type_versions")
    op.drop_table("case_holds")
