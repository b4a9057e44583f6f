from govmesh.db import run_alembic_env
from services.approvals.store import metadata

run_alembic_env(metadata)
