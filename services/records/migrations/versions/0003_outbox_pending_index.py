"""The outbox's index holds the events waiting to be published, not every event ever written
(govmesh.migration_ops.outbox_pending_index_v2). Code of the revision before runs on: its relay's
read finds the same rows through the new index.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from govmesh.migration_ops import outbox_pending_index_v2, outbox_unpublished_index_v1

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None
backward_compatible = True


def upgrade() -> None:
    outbox_pending_index_v2()


def downgrade() -> None:
    outbox_unpublished_index_v1()
