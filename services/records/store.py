"""Records' tables. No raw identifier is ever stored here: subjects are pseudonymous subject ids
with their masked identifiers, resolved through identity before anything is written."""

from __future__ import annotations

import sqlalchemy as sa

from govmesh.outbox import messaging_tables

metadata = sa.MetaData()

records = sa.Table(
    "records",
    metadata,
    sa.Column("record_id", sa.String(36), primary_key=True),
    sa.Column("department_code", sa.String(64), nullable=False),
    sa.Column("record_type", sa.String(64), nullable=False),
    sa.Column("source_reference", sa.String(200), nullable=False),
    sa.Column("subject_id", sa.String(64), nullable=False),
    sa.Column("subject_masked_identifier", sa.String(18), nullable=False),
    sa.Column("subject_kind", sa.String(16), nullable=False),
    # proto3 JSON of a TypedValueMap: the record's fields as the department sent them.
    sa.Column("fields", sa.Text(), nullable=False),
    sa.Column("effective_from", sa.Date(), nullable=False),
    sa.Column("effective_to", sa.Date(), nullable=True),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("supersedes_record_id", sa.String(36), nullable=True),
    # Set when a later record of the department corrects or revokes this one.
    sa.Column("superseded_by", sa.String(36), nullable=True),
    sa.Column("channel", sa.String(8), nullable=False),
    sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("department_code", "source_reference", name="uq_records_source"),
    sa.Index("ix_records_subject", "subject_id", "department_code", "record_type"),
)

#: The access log's entries: written by each read in its own transaction, with no shared row
#: locked; the sequencer sets leaf_index when it seals them into the tree.
access_entries = sa.Table(
    "access_entries",
    metadata,
    # Numbers entries in the order they were written (a database sequence: no lock).
    sa.Column("entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
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
    sa.Index("ix_access_entries_subject", "subject_id", "entry_id"),
    # What the sequencer looks for: entries not sealed yet.
    sa.Index(
        "ix_access_entries_pending",
        "entry_id",
        sqlite_where=sa.text("leaf_index IS NULL"),
        postgresql_where=sa.text("leaf_index IS NULL"),
    ),
)

#: The tree's perfect subtrees (level 0: the leaf hashes), so proofs are read, not recomputed.
access_log_nodes = sa.Table(
    "access_log_nodes",
    metadata,
    sa.Column("level", sa.SmallInteger(), primary_key=True, autoincrement=False),
    sa.Column("node_index", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("hash", sa.LargeBinary(32), nullable=False),
)

#: Every signed tree head, kept.
access_log_heads = sa.Table(
    "access_log_heads",
    metadata,
    sa.Column("tree_size", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
    # The moment signed: its RFC 3339 form (access_log.rfc3339) is what the signature covers.
    sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("log_id", sa.String(200), nullable=False),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("signature", sa.LargeBinary(64), nullable=False),
)

issued_proofs = sa.Table(
    "issued_proofs",
    metadata,
    sa.Column("proof_id", sa.String(36), primary_key=True),
    # "<caller>:<request_id>" when the caller gave a request id; NULL otherwise.
    sa.Column("request_key", sa.String(300), nullable=True, unique=True),
    # SHA-256 of the request, so a reused request id with a different request is detected.
    sa.Column("request_fingerprint", sa.String(64), nullable=False),
    sa.Column("proof", sa.LargeBinary(), nullable=False),
    sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
)

signing_keys = sa.Table(
    "signing_keys",
    metadata,
    sa.Column("key_id", sa.String(64), primary_key=True),
    sa.Column("public_key", sa.LargeBinary(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("active_from", sa.DateTime(timezone=True), nullable=False),
    sa.Column("active_until", sa.DateTime(timezone=True), nullable=True),
)

outbox, inbox = messaging_tables(metadata)
