"""Identity's worker: the outbox relay, and nameko RPC for other services' workers that must
register a subject met in a department feed (records' broker path); it answers with the
pseudonymous subject id and masked identifier only."""

from __future__ import annotations

from typing import Any

from nameko.rpc import rpc

from govmesh.errors import ServiceError
from govmesh.outbox import Outbox
from govmesh.worker import Application, OutboxRelayRunner
from services.identity import app, store
from services.identity.app import IdentityApp


class RpcServiceError(Exception):
    """A ServiceError carried over nameko RPC (RemoteError exc_type 'RpcServiceError'); its
    message starts with the gRPC status name and never contains the raw identifier."""


class Worker:
    name = "identity"

    identity: IdentityApp = Application(app.build)
    outbox_relay = OutboxRelayRunner(Outbox("identity", store.outbox, store.inbox))

    @rpc  # type: ignore[untyped-decorator]
    def register_subject(self, identifier: str, display_name: str) -> dict[str, Any]:
        try:
            subject, created = self.identity.register(identifier, display_name)
        except ServiceError as exc:
            raise RpcServiceError(f"{exc.status}: {exc.message}") from None
        return {
            "subject_id": subject.subject_id,
            "kind": subject.kind.value,
            "masked_identifier": subject.masked_identifier,
            "created": created,
        }
