from govmesh.db import run_alembic_env
from services.identity.store import metadata

run_alembic_env(metadata)
