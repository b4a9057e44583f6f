"""Identity's worker: the outbox relay, and nameko RPC for other services' workers that must
register a subject met in a department feed (records' broker path); it answers with the
pseudonymous subject id and masked identifier only."""

from __future__ import annotations

from typing import Any

from nameko.rpc import rpc

from govmesh.errors import NotFound, ServiceError
from govmesh.outbox import Outbox
from govmesh.worker import Application, OutboxRelayRunner
from services.identity import app, store
from services.identity.app import IdentityApp, Subject


class RpcServiceError(Exception):
    """A ServiceError carried over nameko RPC (RemoteError exc_type 'RpcServiceError'); its
    message starts with the gRPC status name and never contains the raw identifier."""


def _answer(subject: Subject, created: bool) -> dict[str, Any]:
    return {
        "subject_id": subject.subject_id,
        "kind": subject.kind.value,
        "masked_identifier": subject.masked_identifier,
        "created": created,
    }


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
        return _answer(subject, created)

    @rpc  # type: ignore[untyped-decorator]
    def resolve_subject(self, identifier: str = "", subject_id: str = "") -> dict[str, Any] | None:
        """The subject, or None when identity knows no such subject."""
        try:
            subject = self.identity.resolve(identifier=identifier, subject_id=subject_id)
        except NotFound:
            return None
        except ServiceError as exc:
            raise RpcServiceError(f"{exc.status}: {exc.message}") from None
        return _answer(subject, created=False)
