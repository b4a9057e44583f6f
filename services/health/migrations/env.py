from govmesh.db import run_alembic_env
from services.health.store import metadata

run_alembic_env(metadata)
