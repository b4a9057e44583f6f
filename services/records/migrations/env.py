from govmesh.db import run_alembic_env
from services.records.store import metadata

run_alembic_env(metadata)
