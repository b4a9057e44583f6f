"""Approvals' composition root: the case type files checked against records' catalogue, the
use cases over them, and the other services as each process kind reaches them."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import Message

from govmesh import config
from govmesh.auth import Policy, ServiceCredentials, TokenIssuer
from govmesh.config import ProcessKind, Settings
from govmesh.db import Database
from govmesh.errors import StartupError
from govmesh.parties import Parties
from services.approvals import metrics
from services.approvals.app import ApprovalsApp
from services.approvals.clients import Records, RecordsOverGrpc, RecordsOverRpc, identity_over_grpc
from services.approvals.contract import Catalogue
from services.approvals.domain.casetypes import CaseTypeError, CaseTypeSpec, load_case_types
from services.approvals.domain.saga import SagaSettings

#: How often the worker's outbox relay looks for new events when it found none. A submitted case's
#: work starts only once its case_submitted event leaves, with a citizen waiting on the case: at the
#: relay's default (0.1 s) submit -> decided p50 was 74-78 ms on PostgreSQL, and 36 ms looking every
#: 20 ms. An indexed look at the outbox 50 times a second costs far less than that wait. (On SQLite
#: the relay also looks every 2 ms whether anything committed.) PostgreSQL's LISTEN/NOTIFY would
#: wake it at once, but a transaction that notifies holds a database-wide lock through its commit,
#: which would serialise every commit that adds an event: records' proofs among them.
CASE_EVENT_RELAY_INTERVAL = 0.02


@dataclass
class Parts:
    """What a process of approvals runs on."""

    approvals: ApprovalsApp
    #: Identity, as the api resolves applicants and parties (None in a worker: it resolves no one).
    parties: Parties | None
    #: Records' worker RPC, as the worker draws proofs through its proxy (None in the api: it
    #: draws none).
    records: RecordsOverRpc | None


def build(settings: Settings, db: Database, process: ProcessKind) -> Parts:
    policy = Policy.load(settings.policy_path)
    credentials = ServiceCredentials(TokenIssuer.from_key_dir(policy, settings.key_dir), "approvals")
    parties: Parties | None = None
    rpc: RecordsOverRpc | None = None
    records: Records
    if process == "worker":
        timeout = config.env_seconds("APPROVALS_PROOF_TIMEOUT_SECONDS", 5)
        records = rpc = RecordsOverRpc(settings.amqp_uri, credentials, timeout)
    else:
        records = RecordsOverGrpc(config.load("records").grpc_target, credentials)
        parties = identity_over_grpc(config.load("identity").grpc_target, credentials)
    approvals = assemble(db, records.catalogue(), on_events=metrics.count)
    check_rights(approvals.case_types, policy)
    metrics.prime(approvals.case_types.values())
    return Parts(approvals, parties, rpc)


def assemble(
    db: Database, catalogue: Catalogue, on_events: Callable[[Sequence[Message]], None] = lambda events: None
) -> ApprovalsApp:
    """The use cases over the case type files, checked against records' catalogue. A malformed
    file is a StartupError naming the file and line."""
    try:
        specs = load_case_types(case_types_dir(), catalogue.proof_types, frozenset(catalogue.departments))
    except CaseTypeError as exc:
        raise StartupError(f"case type file {exc}") from None
    return ApprovalsApp(db, specs, catalogue, saga_settings(), on_events=on_events)


def check_rights(case_types: Mapping[str, CaseTypeSpec], policy: Policy) -> None:
    """Every proof a case type needs must be one approvals may pull for a case: otherwise its
    cases could never be decided, and each attempt would be a refusal on a citizen's trail."""
    caller = policy.callers.get("approvals")
    missing = sorted(
        f"{spec.code} needs {proof.proof_type}"
        for spec in case_types.values()
        for proof in spec.proofs
        if caller is None or not caller.may_read_proof(proof.proof_type, "case_id", "")
    )
    if missing:
        raise StartupError(
            "the rights policy does not let approvals pull these proofs for cases (give the caller "
            f"'approvals' proofs: {{<type>: [case]}}): {'; '.join(missing)}"
        )


def saga_settings() -> SagaSettings:
    return SagaSettings(
        retry_base=datetime.timedelta(seconds=config.env_seconds("APPROVALS_RETRY_SECONDS", 2)),
        stall_after=datetime.timedelta(seconds=config.env_seconds("APPROVALS_STALL_SECONDS", 30)),
    )


def case_types_dir() -> Path:
    return config.env_path("APPROVALS_CASE_TYPES_DIR", config.ROOT / "services" / "approvals" / "case_types")
