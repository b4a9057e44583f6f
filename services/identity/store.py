"""Identity's tables: the only ones in the mesh that hold a raw identifier."""

from __future__ import annotations

import sqlalchemy as sa

from govmesh.outbox import messaging_tables

metadata = sa.MetaData()

subjects = sa.Table(
    "subjects",
    metadata,
    # HMAC pseudonym of kind + normalized identifier: how every other service knows the subject.
    sa.Column("subject_id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    # Normalized raw identifier; it never leaves identity except in the caller's own answer.
    sa.Column("identifier", sa.String(18), nullable=False, unique=True),
    sa.Column("masked_identifier", sa.String(18), nullable=False),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

outbox, inbox = messaging_tables(metadata)
