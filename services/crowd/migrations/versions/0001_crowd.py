"""Zones, their live state and sensors, level changes, occupancy buckets, and the outbox and inbox.

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
        "crowd_zones",
        sa.Column("zone_id", sa.String(64), primary_key=True),
        sa.Column("name_zh", sa.String(200), nullable=False),
        sa.Column("name_en", sa.String(200), nullable=False),
        sa.Column("capacity", sa.BigInteger(), nullable=False),
        sa.Column("levels", sa.Text(), nullable=False),
        sa.Column("hysteresis_bp", sa.Integer(), nullable=False),
        sa.Column("min_dwell_us", sa.BigInteger(), nullable=False),
        sa.Column("silence_after_us", sa.BigInteger(), nullable=False),
        sa.Column("schedule", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "crowd_zone_live",
        sa.Column("zone_id", sa.String(64), primary_key=True),
        sa.Column("occupancy", sa.BigInteger(), nullable=False),
        sa.Column("gate_total", sa.BigInteger(), nullable=False),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("level_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("watermark", sa.DateTime(timezone=True), nullable=True),
        sa.Column("watermark_wall", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("review_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("readings_applied", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_crowd_zone_live_review", "crowd_zone_live", ["review_at"])
    op.create_index("ix_crowd_zone_live_version", "crowd_zone_live", ["version"])
    op.create_table(
        "crowd_sensors",
        sa.Column("zone_id", sa.String(64), primary_key=True),
        sa.Column("sensor_id", sa.String(128), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
    )
    op.create_table(
        "crowd_level_changes",
        sa.Column(
            "change_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("zone_id", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("previous_level", sa.String(8), nullable=False),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("occupancy", sa.BigInteger(), nullable=False),
        sa.Column("load_bp", sa.Integer(), nullable=False),
        sa.Column("triggered_by_observed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_crowd_level_changes_zone", "crowd_level_changes", ["zone_id", "at"])
    op.create_table(
        "crowd_occupancy_buckets",
        sa.Column("zone_id", sa.String(64), primary_key=True),
        sa.Column("start", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("max_occupancy", sa.BigInteger(), nullable=False),
        sa.Column("max_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_occupancy", sa.BigInteger(), nullable=False),
        sa.Column("sum_occupancy", sa.BigInteger(), nullable=False),
        sa.Column("samples", sa.BigInteger(), nullable=False),
    )
    create_messaging_tables_v1()


def downgrade() -> None:
    drop_messaging_tables_v1()
    op.drop_table("crowd_occupancy_buckets")
    op.drop_index("ix_crowd_level_changes_zone", "crowd_level_changes")
    op.drop_table("crowd_level_changes")
    op.drop_table("crowd_sensors")
    op.drop_index("ix_crowd_zone_live_version", "crowd_zone_live")
    op.drop_index("ix_crowd_zone_live_review", "crowd_zone_live")
    op.drop_table("crowd_zone_live")
    op.drop_table("crowd_zones")
