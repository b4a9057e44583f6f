"""Prometheus metrics shared by every process. Labels never carry personal data: methods,
handlers, kinds and outcomes only (a subject id or an identifier is never a label)."""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

# RED per gRPC method.
GRPC_REQUESTS = Counter(
    "govmesh_grpc_requests_total", "gRPC calls handled, by method and status code.", ["service", "method", "code"]
)
GRPC_LATENCY = Histogram(
    "govmesh_grpc_request_duration_seconds",
    "Time to handle a gRPC call.",
    ["service", "method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
GRPC_IN_FLIGHT = Gauge("govmesh_grpc_in_flight", "gRPC calls being handled now.", ["service"])

# RED per event handler.
EVENTS_HANDLED = Counter(
    "govmesh_events_handled_total",
    "Events consumed, by handler and outcome (applied, duplicate, failed).",
    ["service", "handler", "outcome"],
)
EVENT_HANDLER_LATENCY = Histogram(
    "govmesh_event_handler_duration_seconds", "Time to handle one event.", ["service", "handler"]
)

# Outbox.
OUTBOX_PUBLISHED = Counter("govmesh_outbox_published_total", "Events published from the outbox.", ["service"])
OUTBOX_PUBLISH_FAILURES = Counter(
    "govmesh_outbox_publish_failures_total", "Outbox batches that the broker did not confirm.", ["service"]
)
OUTBOX_PRUNED = Counter(
    "govmesh_outbox_pruned_total", "Sent events deleted from the outbox after its keep time.", ["service"]
)
OUTBOX_BACKLOG = Gauge("govmesh_outbox_backlog", "Events committed but not yet published.", ["service"])

READY = Gauge("govmesh_ready", "1 when the process's database is reachable and migrated.", ["service", "process"])


def serve(host: str, port: int) -> None:
    """Expose /metrics on host:port (port 0 disables it, e.g. for several test processes)."""
    if port == 0:
        return
    start_http_server(port, addr=host)
    log.info("metrics listening", extra={"metrics_url": f"http://{host}:{port}/metrics"})
