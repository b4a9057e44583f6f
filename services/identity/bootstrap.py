"""Identity's composition root: the one place its parts are built, for every process kind.
Identity calls no other service, so every kind gets the same parts."""

from __future__ import annotations

from dataclasses import dataclass

from govmesh import keys
from govmesh.config import ProcessKind, Settings
from govmesh.db import Database
from services.identity.app import IdentityApp

PSEUDONYM_KEY_NAME = "identity-pseudonym"


@dataclass
class Parts:
    identity: IdentityApp


def build(settings: Settings, db: Database, process: ProcessKind) -> Parts:
    return Parts(identity=IdentityApp(db, keys.secret(settings.key_dir, PSEUDONYM_KEY_NAME)))
