"""The image's rules, read from deploy/image/Containerfile without building it (the build is
`make image`, too slow for the suite): a local base only, the locked packages, a user that is not
root, govmesh as the entry point with every process kind the docs name, SIGTERM, declared writable
paths, no secrets, and a build context that keeps the machine's state out."""

from __future__ import annotations

import re
import shlex

import pytest

from govmesh import cli
from govmesh.config import ROOT

CONTAINERFILE = ROOT / "deploy" / "image" / "Containerfile"
PROCESS = re.compile(r"govmesh ((?:api|worker|ingest) [a-z]+|migrate)\b")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n(\s*#.*\n)*", " ", CONTAINERFILE.read_text())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#")
    ]


def args(name: str) -> list[str]:
    return [value for instruction, value in instructions() if instruction == name]


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (instruction, _) in enumerate(steps) if instruction == "FROM")
    return steps[last_from:]


def test_every_stage_starts_from_the_local_base_or_an_earlier_stage() -> None:
    (base,) = [value for value in args("ARG") if value.startswith("BASE=")]
    assert base.removeprefix("BASE=").startswith("localhost/govmesh-base:"), base
    stages: set[str] = set()
    for value in args("FROM"):
        words = value.split()
        assert words[0] in {"${BASE}", *stages}, f"FROM {value}: only the local base or a stage"
        if len(words) == 3 and words[1].upper() == "AS":
            stages.add(words[2])


def test_packages_come_from_the_lock_and_the_runtime_has_no_dev_extra() -> None:
    installs = [part for value in args("RUN") for part in value.split("&&") if "pip install" in part]
    assert installs
    for install in installs:
        assert "-c requirements.lock" in install or "--require-hashes" in install, install
        assert "[dev]" not in install, install
    assert any(value.split()[0] == "requirements.lock" for value in args("COPY"))


def test_generated_code_is_built_in_the_image() -> None:
    assert any("scripts/generate_code.py" in value for value in args("RUN"))


def test_the_process_runs_as_a_numeric_user_that_is_not_root() -> None:
    users = [value for instruction, value in final_stage() if instruction == "USER"]
    assert users, "the runtime stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, users[-1]
    assert not gid or (gid.isdigit() and int(gid) != 0), users[-1]


def test_govmesh_is_the_entry_point_and_sigterm_the_stop_signal() -> None:
    assert args("ENTRYPOINT") == ['["govmesh"]']
    assert args("STOPSIGNAL") == ["SIGTERM"]


def test_writable_paths_are_declared() -> None:
    (volumes,) = args("VOLUME")
    assert {"/var/lib/govmesh", "/tmp"} <= set(re.findall(r'"([^"]+)"', volumes))


def test_labels_name_the_revision() -> None:
    labels = " ".join(args("LABEL"))
    for key in ("title", "source", "revision", "created"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_no_secret_is_baked_in() -> None:
    for instruction in ("ARG", "ENV"):
        for value in args(instruction):
            for word in shlex.split(value):
                name = word.split("=", 1)[0].upper()
                assert not re.search(r"KEY|SECRET|PASSWORD|TOKEN", name), f"{instruction} {word}"
    for value in args("COPY"):
        assert "var" not in value.split()[:-1] and "keys" not in value, f"COPY {value}"


@pytest.mark.parametrize("document", ["deploy/image/Containerfile", "README.md"])
def test_every_process_command_the_docs_name_is_a_command(document: str) -> None:
    named = set(PROCESS.findall((ROOT / document).read_text()))
    assert {"api records", "worker approvals", "ingest crowd", "migrate"} <= named
    parser = cli.parser()
    for command in named:
        parsed = parser.parse_args(command.split())
        assert parsed.command == command.split()[0]


def test_the_build_context_leaves_out_the_machines_state() -> None:
    ignored = {line.strip() for line in (ROOT / ".containerignore").read_text().splitlines()}
    assert {".venv", "node_modules", "var", ".git", "tests", ".stamps", "**/*_pb2.py"} <= ignored


def test_make_image_builds_it_and_make_test_does_not() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^image:.*\n\tscripts/build-image", makefile, re.MULTILINE)
    (test_rule,) = re.findall(r"^test:(.*)$", makefile, re.MULTILINE)
    assert "image" not in test_rule
