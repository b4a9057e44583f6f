"""Health's tables: credit accounts, visits and their charges, bills and their payments, the
double-entry ledger, the history of defaults, and the outbox and inbox.

No raw identifier is stored: a patient is the pseudonymous subject id and the masked identifier
that identity resolved. Money is integer fen (BigInteger), times UTC. Enum columns hold the
domain enums' values (credit.AccountStatus, billing.BillState, insurance.ChargeCategory, ...).

The credit account row is the lock of everything the account owns (repository.py,
docs/decisions/health-account-row-lock.md).
"""

from __future__ import annotations

import sqlalchemy as sa

from govmesh.outbox import messaging_tables

metadata = sa.MetaData()

accounts = sa.Table(
    "credit_accounts",
    metadata,
    sa.Column("account_id", sa.String(36), primary_key=True),
    # One account per subject: a second enrolment finds this one.
    sa.Column("subject_id", sa.String(64), nullable=False, unique=True),
    sa.Column("masked_identifier", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("tier", sa.String(16), nullable=False),
    # NULL unless tier is "none".
    sa.Column("no_credit_reason", sa.String(16), nullable=True),
    # NULL: records holds no usable score (the account is re-assessed from these two).
    sa.Column("credit_score", sa.Integer(), nullable=True),
    sa.Column("credit_score_proof_id", sa.String(64), nullable=False),
    sa.Column("insurance_enrolled", sa.Boolean(), nullable=False),
    sa.Column("insurance_proof_id", sa.String(64), nullable=False),
    sa.Column("outpatient_limit_fen", sa.BigInteger(), nullable=False),
    sa.Column("inpatient_limit_fen", sa.BigInteger(), nullable=False),
    # Self-pay charged (on open visits) or billed and not yet repaid, over all visits.
    sa.Column("outstanding_fen", sa.BigInteger(), nullable=False),
    sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_credit_accounts_status", "status"),
)

defaults = sa.Table(
    "credit_defaults",
    metadata,
    sa.Column("bill_id", sa.String(36), primary_key=True),
    sa.Column("account_id", sa.String(36), nullable=False),
    # Outstanding when the bill defaulted.
    sa.Column("amount_fen", sa.BigInteger(), nullable=False),
    sa.Column("defaulted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("repaid_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_credit_defaults_account", "account_id", "defaulted_at"),
)

visits = sa.Table(
    "visits",
    metadata,
    sa.Column("visit_id", sa.String(36), primary_key=True),
    # "<caller>:<request_id>": the same OpenVisit request returns the same visit.
    sa.Column("request_key", sa.String(300), nullable=False, unique=True),
    # SHA-256 of the request (patient, hospital, kind): a reused request id is detected.
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
    sa.Index("ix_visits_account", "account_id", "opened_at"),
)

charges = sa.Table(
    "charges",
    metadata,
    sa.Column("charge_id", sa.String(36), primary_key=True),
    sa.Column("visit_id", sa.String(36), nullable=False),
    # The charge's position on the visit (the insurance split takes charges in this order).
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

bills = sa.Table(
    "bills",
    metadata,
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
    # JSON: [[category, insurance_ratio_bp, total_fen, insurance_fen, self_pay_fen], ...].
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
    # When the timer has something to do for the bill (reminder, overdue, default); NULL once
    # DEFAULTED or SETTLED, so the timer scans only bills with something due.
    sa.Column("next_timer_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_bills_account", "account_id", "issued_at"),
    sa.Index("ix_bills_listing", "issued_at", "bill_id"),
    sa.Index("ix_bills_timer", "next_timer_at"),
    sa.Index("ix_bills_state", "state", "due_at"),
)

payments = sa.Table(
    "payments",
    metadata,
    sa.Column("payment_id", sa.String(36), primary_key=True),
    # Unique over the service: the ledger's posting id of a payment is "payment:<request_id>".
    sa.Column("request_id", sa.String(200), nullable=False, unique=True),
    sa.Column("bill_id", sa.String(36), nullable=False),
    sa.Column("amount_fen", sa.BigInteger(), nullable=False),
    # True when it paid towards a DEFAULTED bill (posted as a recovery).
    sa.Column("recovery", sa.Boolean(), nullable=False),
    sa.Column("paid_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_payments_bill", "bill_id", "paid_at"),
)

ledger_transactions = sa.Table(
    "ledger_transactions",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    # The ledger's idempotency key (services.health.domain.ledger): a retry posts nothing twice.
    sa.Column("posting_id", sa.String(300), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("bill_id", sa.String(36), nullable=False),
    sa.Column("request_id", sa.String(200), nullable=False),
    sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
)

ledger_entries = sa.Table(
    "ledger_entries",
    metadata,
    sa.Column("posting_id", sa.String(300), primary_key=True),
    sa.Column("line", sa.Integer(), primary_key=True),
    sa.Column("account_kind", sa.String(16), nullable=False),
    sa.Column("account_id", sa.String(64), nullable=False),
    # Positive: debit; negative: credit.
    sa.Column("amount_fen", sa.BigInteger(), nullable=False),
)

outbox, inbox = messaging_tables(metadata)
