"""The house's layout, checked: every service has the same rooms, its domain imports no framework,
its use cases are short, services never import each other and the runtime imports no service
(README, Layout). Read from the source with ast, so it fails on the line that breaks the rule."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from govmesh import config

ROOT = Path(__file__).resolve().parents[3]
SERVICES = config.SERVICES

#: What a pure domain module may not import: frameworks, I/O and other processes' clients.
NOT_IN_DOMAIN = ("grpc", "nameko", "eventlet", "kombu", "amqp", "pika", "sqlalchemy", "alembic", "prometheus_client")
#: Approvals keeps its case as the contract's document (the issue allows protobuf there).
CONTRACT_IN_DOMAIN = {"approvals"}
#: Runtime modules that are plain Python (no framework, no I/O) and so may serve a domain.
PURE_RUNTIME = {
    "clock",
    "workdays",
    "texts",
    "privacy",
    "errors",
    "parameters",
    "typed_values",
    "parties",
    "paging",
    "enums",
    "idempotency",
    "quantiles",
}
#: The rooms every service has (clients.py only where it calls another service).
ROOMS = ("domain/__init__.py", "contract.py", "store.py", "repository.py", "queries.py", "app.py", "bootstrap.py")
PROCESS_ADAPTERS = ("api.py", "worker.py")
MAX_APP_LINES = 600
MAX_USE_CASE_LINES = 50


def python_files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*.py")):
        if "_pb2" in path.name or "migrations" in path.parts or "/v1/" in path.as_posix():
            continue
        yield path


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def test_the_runtime_imports_no_service() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in python_files(ROOT / "govmesh")
        for line, module in imported_modules(path)
        if module == "services" or module.startswith("services.")
    ]
    assert not found, "govmesh/ must know no service:\n" + "\n".join(found)


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_the_same_rooms(service: str) -> None:
    folder = ROOT / "services" / service
    missing = [room for room in (*ROOMS, *PROCESS_ADAPTERS) if not (folder / room).exists()]
    assert not missing, f"services/{service} lacks {missing}"


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service(service: str) -> None:
    others = [s for s in SERVICES if s != service]
    found = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in python_files(ROOT / "services" / service)
        for line, module in imported_modules(path)
        if any(module == f"services.{o}" or module.startswith(f"services.{o}.") for o in others)
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("service", SERVICES)
def test_the_domain_imports_no_framework(service: str) -> None:
    banned = NOT_IN_DOMAIN if service in CONTRACT_IN_DOMAIN else (*NOT_IN_DOMAIN, "google.protobuf", "govmesh.")
    found = []
    for path in python_files(ROOT / "services" / service / "domain"):
        for line, module in imported_modules(path):
            if service not in CONTRACT_IN_DOMAIN and module.startswith(f"govmesh.{service}.v1"):
                found.append(f"{path.relative_to(ROOT)}:{line}: {module} (the contract)")
            elif any(module == b or module.startswith(b if b.endswith(".") else b + ".") for b in banned):
                if module.startswith("govmesh.") and module.split(".")[1] in PURE_RUNTIME:
                    continue
                found.append(f"{path.relative_to(ROOT)}:{line}: {module}")
    assert not found, "a domain module imports a framework or I/O:\n" + "\n".join(found)


@pytest.mark.parametrize("service", SERVICES)
def test_use_cases_are_short(service: str) -> None:
    path = ROOT / "services" / service / "app.py"
    source = path.read_text(encoding="utf-8")
    lines = source.count("\n")
    assert lines <= MAX_APP_LINES, f"services/{service}/app.py has {lines} lines; at most {MAX_APP_LINES}"
    long = [
        f"services/{service}/app.py:{node.lineno}: {node.name} has {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_USE_CASE_LINES
    ]
    assert not long, "\n".join(long)


def test_the_architecture_document_names_only_paths_that_exist() -> None:
    """docs/architecture.md travels with the code (a clone has nothing outside the repository):
    every file or directory it names in backticks or links is there."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:govmesh|services|proto|policy|deploy|docs|tests)/[\w./-]*)`", text))
    named |= {f"docs/{link}" for link in re.findall(r"\]\(([\w./-]+\.md)\)", text) if not link.startswith("..")}
    named = {path.replace("<service>", "identity").rstrip("/") for path in named}
    assert len(named) > 10
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert not missing, f"docs/architecture.md names what is not there: {missing}"
    assert "docs/architecture.md" in (ROOT / "README.md").read_text(encoding="utf-8")
