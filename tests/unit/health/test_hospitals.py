"""The deployment's hospitals file and the policy's callers that act for them."""

from __future__ import annotations

from pathlib import Path

import pytest

from govmesh.auth import Policy, PolicyError
from govmesh.config import ROOT
from govmesh.errors import StartupError
from services.health import hospitals


def test_the_repositorys_hospitals_load_and_the_development_policy_names_only_them() -> None:
    known = hospitals.load()
    assert "H330100001" in known and all(hospitals.CODE.fullmatch(code) for code in known)
    hospitals.check_policy(Policy.load(ROOT / "policy" / "dev.yaml"), known)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[", "cannot read the hospitals"),
        ("[]\n", "must map each hospital's code to its name"),
        ("X1: a hospital\n", "'X1' is not a hospital code"),
        ("H330100001: ''\n", "hospital H330100001 has no name"),
    ],
)
def test_a_bad_hospitals_file_stops_the_start_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "hospitals.yaml"
    path.write_text(text)
    with pytest.raises(StartupError) as error:
        hospitals.load(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_a_policy_caller_acting_for_an_unknown_hospital_stops_the_start(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("issuer: x\ncallers:\n  his: {rights: [], hospitals: [H330100001, H123456789]}\n")
    with pytest.raises(PolicyError, match="caller 'his': hospitals names unknown hospital 'H123456789'"):
        hospitals.check_policy(Policy.load(path), hospitals.load())
