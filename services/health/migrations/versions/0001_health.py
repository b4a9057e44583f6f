"""Credit accounts and defaults, visits and charges, bills and payments, the ledger, and the
outbox and inbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
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
        "credit_accounts",
        sa.Column("account_id", sa.String(36), primary_key=True),
        sa.Column("subject_id", sa.String(64), nullable=False, unique=True),
        sa.Column("masked_identifier", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("no_credit_reason", sa.String(16), nullable=True),
        sa.Column("credit_score", sa.Integer(), nullable=True),
        sa.Column("credit_score_proof_id", sa.String(64), nullable=False),
        sa.Column("insurance_enrolled", sa.Boolean(), nullable=False),
        sa.Column("insurance_proof_id", sa.String(64), nullable=False),
        sa.Column("outpatient_limit_fen", sa.BigInteger(), nullable=False),
        sa.Column("inpatient_limit_fen", sa.BigInteger(), nullable=False),
        sa.Column("outstanding_fen", sa.BigInteger(), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_credit_accounts_status", "credit_accounts", ["status"])
    op.create_table(
        "credit_defaults",
        sa.Column("bill_id", sa.String(36), primary_key=True),
        sa.Column("account_id", sa.String(36), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("defaulted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("repaid_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_credit_defaults_account", "credit_defaults", ["account_id", "defaulted_at"])
    op.create_table(
        "visits",
        sa.Column("visit_id", sa.String(36), primary_key=True),
        sa.Column("request_key", sa.String(300), nullable=False, unique=True),
        sa.Column("request_fingerprint", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(36), nullable=False),
        sa.Column("subject_id", sa.String(64), nullable=False),
        sa.Column("hospital_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("total_fen", sa.BigInteger(), nullable=False),
        sa.Column("insurance_fen", sa.BigInteger(), nullable=False),
        sa.Column("self_pay_fen", sa.BigInteger(), nullable=False),
        sa.Column("charge_count", sa.Integer(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("bill_id", sa.String(36), nullable=True),
    )
    op.create_index("ix_visits_account", "visits", ["account_id", "opened_at"])
    op.create_table(
        "charges",
        sa.Column("charge_id", sa.String(36), primary_key=True),
        sa.Column("visit_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("item", sa.String(200), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("insurance_fen", sa.BigInteger(), nullable=False),
        sa.Column("self_pay_fen", sa.BigInteger(), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("visit_id", "request_id", name="uq_charges_request"),
        sa.UniqueConstraint("visit_id", "seq", name="uq_charges_seq"),
    )
    op.create_table(
        "bills",
        sa.Column("bill_id", sa.String(36), primary_key=True),
        sa.Column("visit_id", sa.String(36), nullable=False, unique=True),
        sa.Column("account_id", sa.String(36), nullable=False),
        sa.Column("subject_id", sa.String(64), nullable=False),
        sa.Column("masked_identifier", sa.String(64), nullable=False),
        sa.Column("hospital_id", sa.String(64), nullable=False),
        sa.Column("visit_kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("total_fen", sa.BigInteger(), nullable=False),
        sa.Column("insurance_fen", sa.BigInteger(), nullable=False),
        sa.Column("self_pay_fen", sa.BigInteger(), nullable=False),
        sa.Column("paid_fen", sa.BigInteger(), nullable=False),
        sa.Column("payments", sa.Integer(), nullable=False),
        sa.Column("category_shares", sa.Text(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reminder_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("grace_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("overdue_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("defaulted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("defaulted_fen", sa.BigInteger(), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_timer_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_bills_account", "bills", ["account_id", "issued_at"])
    op.create_index("ix_bills_listing", "bills", ["issued_at", "bill_id"])
    op.create_index("ix_bills_timer", "bills", ["next_timer_at"])
    op.create_index("ix_bills_state", "bills", ["state", "due_at"])
    op.create_table(
        "payments",
        sa.Column("payment_id", sa.String(36), primary_key=True),
        sa.Column("request_id", sa.String(200), nullable=False, unique=True),
        sa.Column("bill_id", sa.String(36), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("recovery", sa.Boolean(), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_payments_bill", "payments", ["bill_id", "paid_at"])
    op.create_table(
        "ledger_transactions",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("posting_id", sa.String(300), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("bill_id", sa.String(36), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("posting_id", sa.String(300), primary_key=True),
        sa.Column("line", sa.Integer(), primary_key=True),
        sa.Column("account_kind", sa.String(16), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
    )
    create_messaging_tables_v1()


def downgrade() -> None:
    drop_messaging_tables_v1()
    op.drop_table("ledger_entries")
    op.drop_table("ledger_transactions")
    op.drop_index("ix_payments_bill", table_name="payments")
    op.drop_table("payments")
    op.drop_index("ix_bills_state", table_name="bills")
    op.drop_index("ix_bills_timer", table_name="bills")
    op.drop_index("ix_bills_listing", table_name="bills")
    op.drop_index("ix_bills_account", table_name="bills")
    op.drop_table("bills")
    op.drop_table("charges")
    op.drop_index("ix_visits_account", table_name="visits")
    op.drop_table("visits")
    op.drop_index("ix_credit_defaults_account", table_name="credit_defaults")
    op.drop_table("credit_defaults")
    op.drop_index("ix_credit_accounts_status", table_name="credit_accounts")
    op.drop_table("credit_accounts")
