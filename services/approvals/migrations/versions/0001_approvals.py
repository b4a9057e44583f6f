"""Cases, their proofs' claims, review tasks, and the outbox and inbox.

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
        "cases",
        sa.Column("case_id", sa.String(36), primary_key=True),
        sa.Column("request_key", sa.String(300), nullable=False, unique=True),
        sa.Column("request_fingerprint", sa.String(64), nullable=False),
        sa.Column("case_type", sa.String(64), nullable=False),
        sa.Column("applicant_subject_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline_date", sa.Date(), nullable=False),
        sa.Column("deadline_breached", sa.Boolean(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("subjects", sa.Text(), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_cases_applicant", "cases", ["applicant_subject_id", "submitted_at"])
    op.create_index("ix_cases_listing", "cases", ["submitted_at", "case_id"])
    op.create_index("ix_cases_due", "cases", ["next_attempt_at"])
    op.create_index("ix_cases_deadline", "cases", ["deadline_breached", "deadline_date"])
    op.create_table(
        "case_claims",
        sa.Column("case_id", sa.String(36), primary_key=True),
        sa.Column("step_id", sa.String(200), primary_key=True),
        sa.Column("proof_id", sa.String(36), nullable=False),
        sa.Column("claims", sa.Text(), nullable=False),
    )
    op.create_table(
        "review_tasks",
        sa.Column("task_id", sa.String(36), primary_key=True),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("department_code", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_review_tasks_queue", "review_tasks", ["department_code", "state", "created_at", "task_id"])
    op.create_index("ix_review_tasks_case", "review_tasks", ["case_id"])
    create_messaging_tables_v1()


def downgrade() -> None:
    drop_messaging_tables_v1()
    op.drop_table("review_tasks")
    op.drop_table("case_claims")
    op.drop_table("cases")
