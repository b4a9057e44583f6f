"""An upgrade across a migration with the old and the new version's processes side by side: the
old code stays ready on a schema migrated ahead of it as long as every migration since says it is
backward compatible, and says NOT ready (stop this version) after one that is not."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from govmesh.db import Database, service_database
from services.identity.app import IdentityApp
from tests.support.mesh import PostgresDatabases
from tests.support.people import LUO_FANG, XU_WEI

MIGRATION = '''"""{doc}

Revision ID: {revision}
Revises: {down}
"""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down}"
branch_labels = None
depends_on = None
{flag}


def upgrade() -> None:
    {upgrade}
'''


CREATE_LATER = 'op.create_table("later", sa.Column("id", sa.Integer(), primary_key=True))'
FAILING = 'op.execute("SELECT * FROM no_such_table")'


def add_migration(directory: Path, revision: str, down: str, doc: str, upgrade: str, flag: str = "") -> None:
    text = MIGRATION.format(doc=doc, revision=revision, down=down, upgrade=upgrade, flag=flag)
    (directory / "versions" / f"{revision}.py").write_text(text)


def next_version(old: Database, tmp_path: Path) -> tuple[Path, str]:
    """The next version's migrations: the old version's (the repository's), to which a test adds
    more; and the old version's head revision."""
    newer = tmp_path / "migrations"
    shutil.copytree(old.migrations, newer, ignore=shutil.ignore_patterns("__pycache__"))
    return newer, sorted(p.stem.split("_")[0] for p in (newer / "versions").glob("0*.py"))[-1]


def test_old_code_serves_on_a_newer_schema_until_a_migration_breaks_it(database_url: str, tmp_path: Path) -> None:
    old = service_database("identity", database_url)
    old.migrate()
    assert old.readiness() is None
    newer, old_head = next_version(old, tmp_path)
    add_migration(
        newer,
        "f001",
        old_head,
        "A nullable column: code that does not know it runs on.",
        'op.add_column("subjects", sa.Column("nickname", sa.String(50), nullable=True))',
        flag="backward_compatible = True",
    )
    new = Database(database_url, schema="identity", migrations=newer)
    waiting = new.readiness()
    assert waiting is not None and "code needs f001 (run govmesh migrate)" in waiting  # new pods wait
    new.migrate()
    assert new.readiness() is None
    assert old.readiness() is None  # side by side
    # The old version does its work on the newer schema.
    assert IdentityApp(old, b"k" * 32).register(XU_WEI, "徐伟")[1]  # created

    add_migration(
        newer,
        "f002",
        "f001",
        "A migration that says nothing about compatibility: counted as breaking older code.",
        CREATE_LATER,
    )
    new = Database(database_url, schema="identity", migrations=newer)
    new.migrate()
    assert new.readiness() is None
    refused = old.readiness()
    assert refused is not None and "newer than this code" in refused and "stop this version" in refused
    assert IdentityApp(new, b"k" * 32).register(LUO_FANG, "罗芳")[1]
    old.dispose()
    new.dispose()


def test_an_upgrade_that_fails_changes_nothing_and_the_old_version_serves_on(database_url: str, tmp_path: Path) -> None:
    """The migrations of an upgrade run in one transaction: one breaking the old code, then one
    that fails, leave the schema as it was, and the old version ready."""
    old = service_database("identity", database_url)
    old.migrate()
    newer, old_head = next_version(old, tmp_path)
    add_migration(newer, "f001", old_head, "Breaks older code (says nothing).", CREATE_LATER)
    add_migration(newer, "f002", "f001", "Fails.", FAILING)
    new = Database(database_url, schema="identity", migrations=newer)
    with pytest.raises(sa.exc.SQLAlchemyError):
        new.migrate()
    assert old.readiness() is None, "the old version serves on"
    waiting = new.readiness()
    assert waiting is not None and f"database at migration {old_head}, code needs f002" in waiting
    old.dispose()
    new.dispose()


def test_a_migration_that_steps_out_of_the_transaction_commits_what_came_before_and_says_so(
    postgres: PostgresDatabases, tmp_path: Path
) -> None:
    """A migration that runs outside the transaction (as CREATE INDEX CONCURRENTLY must, on
    PostgreSQL; SQLite's migrations never do) commits the migrations before it: when a later one
    fails, the schema stays at the last committed, and what it records of the code that may run
    on it is true (here: not the old version)."""
    database_url = postgres.create()
    old = service_database("identity", database_url)
    old.migrate()
    newer, old_head = next_version(old, tmp_path)
    add_migration(newer, "f001", old_head, "Breaks older code (says nothing).", CREATE_LATER)
    outside = 'with op.get_context().autocommit_block():\n        op.execute("SELECT 1")'
    add_migration(newer, "f002", "f001", "Steps out.", outside, flag="backward_compatible = True")
    add_migration(newer, "f003", "f002", "Fails.", FAILING)
    new = Database(database_url, schema="identity", migrations=newer)
    with pytest.raises(sa.exc.SQLAlchemyError):
        new.migrate()
    waiting = new.readiness()
    assert waiting is not None and "database at migration f001, code needs f003" in waiting
    refused = old.readiness()
    assert refused is not None and "stop this version" in refused, "f001 was committed, and breaks the old code"
    old.dispose()
    new.dispose()

