"""An index of the outbox's events waiting to be published, and of those only
(govmesh.migration_ops.outbox_pending_index_v2). Code of the revision before runs on: the index
its relay reads by stays until a later release.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from govmesh.migration_ops import drop_outbox_pending_index_v2, outbox_pending_index_v2

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None
backward_compatible = True


def upgrade() -> None:
    outbox_pending_index_v2()


def downgrade() -> None:
    drop_outbox_pending_index_v2()
