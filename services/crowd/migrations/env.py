from govmesh.db import run_alembic_env
from services.crowd.store import metadata

run_alembic_env(metadata)
