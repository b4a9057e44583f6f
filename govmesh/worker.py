"""The worker process: a nameko service (eventlet) for events, timers and the outbox relay.

nameko stays behind this seam: services declare their worker as a nameko service class using
the providers here, and domain code never imports nameko, so the framework could be replaced
without touching it. This module must only be imported after eventlet.monkey_patch(), and
grpcio must never be imported in such a process (its C core breaks under eventlet).
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable
from typing import Any

from nameko.extensions import DependencyProvider

from govmesh import metrics
from govmesh.config import Settings
from govmesh.db import Database, service_database
from govmesh.messaging import BrokerUnavailable, ConfirmingPublisher
from govmesh.outbox import Outbox, OutboxRelay

log = logging.getLogger(__name__)

SETTINGS_KEY = "GOVMESH_SETTINGS"


def assert_no_grpc() -> None:
    if "grpc" in sys.modules:
        raise RuntimeError("grpcio was imported into an eventlet worker process; it cannot work there")


class Application(DependencyProvider):  # type: ignore[misc]
    """Gives entrypoints the service's application object, built once per worker process
    by `build(settings, database)` (the same function the api process uses)."""

    def __init__(self, build: Callable[[Settings, Database], Any]) -> None:
        self.build = build

    def setup(self) -> None:
        settings: Settings = self.container.config[SETTINGS_KEY]
        self.db = service_database(settings.service, settings.database_url)
        self.app = self.build(settings, self.db)

    def stop(self) -> None:
        self.db.dispose()

    def get_dependency(self, worker_ctx: Any) -> Any:
        return self.app


class OutboxRelayRunner(DependencyProvider):  # type: ignore[misc]
    """Runs the service's outbox relay in a managed green thread for the container's life."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def setup(self) -> None:
        settings: Settings = self.container.config[SETTINGS_KEY]
        self.db = service_database(settings.service, settings.database_url)
        self.publisher = ConfirmingPublisher(settings.amqp_uri, settings.service)
        self.relay = OutboxRelay(self.db, self.outbox, self.publisher)

    def start(self) -> None:
        try:
            self.publisher.open()  # declares the service's exchanges before any event exists
        except BrokerUnavailable as exc:
            log.warning("cannot declare exchanges yet (the relay keeps trying): %s", exc)
        self.relay.watch_backlog()
        self.container.spawn_managed_thread(self.relay.run)

    def stop(self) -> None:
        self.relay.stop()
        self.db.dispose()

    def get_dependency(self, worker_ctx: Any) -> OutboxRelay:
        return self.relay


def run(settings: Settings) -> None:
    """Run services.<service>.worker.Worker until SIGTERM or Ctrl-C."""
    from nameko.cli.run import run as nameko_run

    assert_no_grpc()
    service_class = importlib.import_module(f"services.{settings.service}.worker").Worker
    assert_no_grpc()
    metrics.serve(settings.bind_host, settings.worker_metrics_port)
    log.info("worker starting", extra={"amqp": settings.amqp_uri.rsplit("@", 1)[-1]})
    nameko_run([service_class], {"AMQP_URI": settings.amqp_uri, SETTINGS_KEY: settings})
