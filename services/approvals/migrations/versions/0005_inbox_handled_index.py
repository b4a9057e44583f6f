"""The inbox indexed by when each event was handled, for its rows' deletion once the worker no
longer keeps them (govmesh.migration_ops.inbox_handled_index_v3). Code of the revision before
runs on: it never reads the index.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from govmesh.migration_ops import drop_inbox_handled_index_v3, inbox_handled_index_v3

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None
backward_compatible = True


def upgrade() -> None:
    inbox_handled_index_v3()


def downgrade() -> None:
    drop_inbox_handled_index_v3()
