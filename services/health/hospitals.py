"""The hospitals of the deployment (services/health/hospitals.yaml, or HEALTH_HOSPITALS_FILE): the
codes a visit's hospital_id may take and the policy's callers may act for."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from govmesh import config
from govmesh.auth import Policy, PolicyError
from govmesh.errors import StartupError

DEFAULT_FILE = Path(__file__).resolve().parent / "hospitals.yaml"
CODE = re.compile(r"H\d{9}")


def load(path: Path = DEFAULT_FILE) -> dict[str, str]:
    """Hospital code -> name, each checked; a bad file stops the start with its name and why."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise StartupError(f"{path}: cannot read the hospitals: {exc}") from None
    if not isinstance(document, dict) or not document:
        raise StartupError(f"{path}: must map each hospital's code to its name")
    for code, name in document.items():
        if not isinstance(code, str) or not CODE.fullmatch(code):
            raise StartupError(f"{path}: {code!r} is not a hospital code ('H' and 9 digits)")
        if not isinstance(name, str) or not name.strip():
            raise StartupError(f"{path}: hospital {code} has no name")
    return {str(code): str(name) for code, name in document.items()}


def configured() -> dict[str, str]:
    """The hospitals of this deployment: HEALTH_HOSPITALS_FILE, or the repository's."""
    return load(config.env_path("HEALTH_HOSPITALS_FILE", DEFAULT_FILE))


def check_policy(policy: Policy, hospitals: dict[str, str]) -> None:
    """Every hospital a caller acts for is one of the deployment's."""
    for caller in policy.callers.values():
        for code in sorted(caller.hospitals - set(hospitals) - {"*"}):
            raise PolicyError(f"policy caller {caller.caller_id!r}: hospitals names unknown hospital {code!r}")
