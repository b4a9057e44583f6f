"""Records' composition root: the one place its parts are built, for the process kind that asks.
Identity is the one service records calls: the api reaches it over gRPC, the worker over nameko
RPC (a worker must never load grpc)."""

from __future__ import annotations

from dataclasses import dataclass

from govmesh import keys
from govmesh.auth import Policy, ServiceCredentials, TokenIssuer
from govmesh.config import ProcessKind, Settings
from govmesh.config import load as load_settings
from govmesh.db import Database
from services.records import signing
from services.records.app import RecordsApp
from services.records.clients import IdentityOverGrpc, IdentityOverRpc


@dataclass
class Parts:
    records: RecordsApp
    #: How this process reaches identity, with records' own credentials: IdentityOverGrpc in the
    #: api; IdentityOverRpc in the worker, bound per call to the running entrypoint's proxy.
    identity: IdentityOverGrpc | IdentityOverRpc


def build(settings: Settings, db: Database, process: ProcessKind) -> Parts:
    policy = Policy.load(settings.policy_path)
    signer = signing.Signer(keys.KeyRing(settings.key_dir, "proofs"))
    credentials = ServiceCredentials(TokenIssuer.from_key_dir(policy, settings.key_dir), "records")
    identity: IdentityOverGrpc | IdentityOverRpc
    if process == "worker":
        identity = IdentityOverRpc(credentials)
    else:
        identity = IdentityOverGrpc(load_settings("identity").grpc_target, credentials)
    return Parts(RecordsApp(db, signer, policy), identity)
