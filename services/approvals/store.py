"""Approvals' tables. A case is one aggregate: its row keeps the columns it is found by and the
whole case as the contract shows it (``document``, a serialized govmesh.approvals.v1.Case), so a
read never joins and a change rewrites one row under its lock. No raw identifier is stored:
parties are pseudonymous subject ids with their masked identifiers, resolved at submission
(docs/decisions/approvals-case-document.md)."""

from __future__ import annotations

import sqlalchemy as sa

from govmesh.outbox import messaging_tables

metadata = sa.MetaData()

cases = sa.Table(
    "cases",
    metadata,
    sa.Column("case_id", sa.String(36), primary_key=True),
    # "<caller>:<request_id>": the same request id from the same caller returns the same case.
    sa.Column("request_key", sa.String(300), nullable=False, unique=True),
    # SHA-256 of the submission, so a reused request id with a different request is detected.
    sa.Column("request_fingerprint", sa.String(64), nullable=False),
    # The caller that submitted it (e.g. the portal): it may read the case.
    sa.Column("submitted_by", sa.String(64), nullable=False),
    sa.Column("case_type", sa.String(64), nullable=False),
    sa.Column("applicant_subject_id", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("deadline_date", sa.Date(), nullable=False),
    sa.Column("deadline_breached", sa.Boolean(), nullable=False),
    # When the saga must be driven again by the worker's timer (a retry, or the safety net for a
    # case whose event was not handled yet); NULL once the case waits on a person or is final.
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revision", sa.BigInteger(), nullable=False),
    # JSON: {"applicant": subject_id, "<identifier parameter>": subject_id}, whose proofs to pull.
    sa.Column("subjects", sa.Text(), nullable=False),
    sa.Column("document", sa.LargeBinary(), nullable=False),
    sa.Index("ix_cases_applicant", "applicant_subject_id", "submitted_at"),
    sa.Index("ix_cases_listing", "submitted_at", "case_id"),
    sa.Index("ix_cases_due", "next_attempt_at"),
    # Undecided cases by deadline, for the deadline timer (decided ones are not scanned).
    sa.Index("ix_cases_open_deadline", "state", "deadline_breached", "deadline_date"),
)

# Every revision of every case, as GetCase showed it then: WatchCase streams each change in order
# (none skipped, however fast they come), and the case's history stays accountable.
case_revisions = sa.Table(
    "case_revisions",
    metadata,
    sa.Column("case_id", sa.String(36), primary_key=True),
    sa.Column("revision", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("document", sa.LargeBinary(), nullable=False),
)

# The claims of each proof a case pulled, as rules read them (typed JSON, govmesh.typed_values).
case_claims = sa.Table(
    "case_claims",
    metadata,
    sa.Column("case_id", sa.String(36), primary_key=True),
    sa.Column("step_id", sa.String(200), primary_key=True),
    sa.Column("proof_id", sa.String(36), nullable=False),
    sa.Column("claims", sa.Text(), nullable=False),
)

review_tasks = sa.Table(
    "review_tasks",
    metadata,
    sa.Column("task_id", sa.String(36), primary_key=True),
    sa.Column("case_id", sa.String(36), nullable=False),
    sa.Column("department_code", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # A serialized govmesh.approvals.v1.ReviewTask.
    sa.Column("document", sa.LargeBinary(), nullable=False),
    sa.Index("ix_review_tasks_queue", "department_code", "state", "created_at", "task_id"),
    sa.Index("ix_review_tasks_case", "case_id"),
)

# Every version of every case type ever loaded, so a case is decided by the version it was
# submitted under even after its file changed (or while api and workers run different versions).
case_type_versions = sa.Table(
    "case_type_versions",
    metadata,
    sa.Column("code", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(16), primary_key=True),
    sa.Column("source", sa.LargeBinary(), nullable=False),
    sa.Column("first_loaded_at", sa.DateTime(timezone=True), nullable=False),
)

# What open cases hold: "<parameter>=<value>" (e.g. a property unit being sold), one case each.
case_holds = sa.Table(
    "case_holds",
    metadata,
    sa.Column("resource", sa.String(400), primary_key=True),
    sa.Column("case_id", sa.String(36), nullable=False),
    sa.Column("held_since", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_case_holds_case", "case_id"),
)

outbox, inbox = messaging_tables(metadata)
