"""Health's composition root: the parts each process kind runs, built from its settings and
database. The api calls identity and records over gRPC; the worker publishes to records' feed
over the broker and never loads grpc (clients.py builds the gRPC clients only when asked)."""

from __future__ import annotations

from dataclasses import dataclass

from govmesh.auth import Policy, ServiceCredentials, TokenIssuer
from govmesh.config import ProcessKind, Settings
from govmesh.config import load as load_settings
from govmesh.db import Database
from govmesh.parties import Parties
from services.health import clients, hospitals, metrics
from services.health.app import EnrolmentProofs, HealthApp


@dataclass
class Parts:
    """The use cases and the clients of the other services a process kind needs (None: not
    built for this kind)."""

    health: HealthApp
    #: api: identity resolves patients; records issues the enrolment proofs.
    parties: Parties | None = None
    proofs: EnrolmentProofs | None = None
    #: worker: the feed of default records to records.
    records_feed: clients.RecordsFeedOverBroker | None = None
    #: worker: when the scheme's gauges are next read (time.monotonic()).
    stats_due: float = 0.0


def build(settings: Settings, db: Database, process: ProcessKind) -> Parts:
    policy = Policy.load(settings.policy_path)
    credentials = ServiceCredentials(TokenIssuer.from_key_dir(policy, settings.key_dir), "health")
    metrics.prime()
    known = hospitals.configured()
    hospitals.check_policy(policy, known)
    parts = Parts(HealthApp(db, hospitals=known, on_events=metrics.count))
    if process == "api":
        parts.parties = clients.IdentityOverGrpc(load_settings("identity").grpc_target, credentials)
        parts.proofs = clients.RecordsOverGrpc(load_settings("records").grpc_target, credentials)
    elif process == "worker":
        parts.records_feed = clients.RecordsFeedOverBroker(settings.amqp_uri, credentials)
    return parts
