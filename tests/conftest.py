"""Shared fixtures: real RabbitMQ, real databases (SQLite and PostgreSQL) and meshes of real
processes, built from the harness in tests/support/mesh.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.mesh import (
    POSTGRES_URL,
    Integrator,
    PostgresDatabases,
    ServiceEnv,
    assert_no_raw_identifiers,
    database_for,
    virtual_host,
)


@pytest.fixture(scope="session")
def amqp_uri() -> Iterator[str]:
    """The broker the suite uses, in a virtual host of its own, so a mesh running beside the
    suite (`make run`) never takes the suite's messages from its queues."""
    with virtual_host() as uri:
        yield uri


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases()
    try:
        with databases.admin.connect():
            pass
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL must be running at {POSTGRES_URL} (make test starts it): {exc}")
    yield databases
    databases.drop_all()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every test that uses this runs twice: on a SQLite file and on a fresh PostgreSQL database."""
    return database_for(request, tmp_path)


@pytest.fixture
def identity_env(database_url: str, tmp_path: Path, amqp_uri: str) -> Iterator[ServiceEnv]:
    env = ServiceEnv("identity", database_url, tmp_path, amqp_uri)
    yield env
    env.stop_all()
    assert_no_raw_identifiers(env.all_output(), "identity processes' output")


@pytest.fixture
def integrator_factory(amqp_uri: str) -> Iterator[type]:
    opened: list[Integrator] = []

    class Factory:
        @staticmethod
        def bind(exchange: str, routing_key: str = "#") -> Integrator:
            integrator = Integrator(amqp_uri, exchange, routing_key)
            opened.append(integrator)
            return integrator

    yield Factory
    for integrator in opened:
        integrator.close()

