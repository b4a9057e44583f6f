"""Identity's worker: the outbox relay, and nameko RPC for other services' workers that must
register the subjects met in a department feed (records' broker path); it answers with the
pseudonymous subject id and masked identifier only."""

from __future__ import annotations

from typing import Any

from nameko.rpc import rpc

from govmesh.errors import InvalidArgument, NotFound, ServiceError
from govmesh.outbox import Outbox
from govmesh.worker import Application, OutboxRelayRunner, RpcAuthorizer, RpcServiceError, RpcSpans
from services.identity import bootstrap, store
from services.identity.bootstrap import Parts
from services.identity.domain import Subject
from services.identity.metrics import count_registration, count_registrations

SERVICE = "govmesh.identity.v1.IdentityService"


def _answer(subject: Subject, created: bool) -> dict[str, Any]:
    return {
        "subject_id": subject.subject_id,
        "kind": subject.kind.value,
        "masked_identifier": subject.masked_identifier,
        "created": created,
    }


class Worker:
    name = "identity"

    parts: Parts = Application(bootstrap.build)
    outbox_relay = OutboxRelayRunner(Outbox("identity", store.outbox, store.inbox))
    authorize = RpcAuthorizer()
    rpc_spans = RpcSpans()

    @rpc  # type: ignore[untyped-decorator]
    def register_subject(self, authorization: str, identifier: str, display_name: str) -> dict[str, Any]:
        """RegisterSubject for other services' workers (records' broker feed)."""
        self.authorize(authorization, f"{SERVICE}/RegisterSubject")
        try:
            subject, created = self.parts.identity.register(identifier, display_name)
        except ServiceError as exc:
            raise RpcServiceError(f"{exc.status}: {exc.message}") from None
        count_registration(subject, created)
        return _answer(subject, created)

    @rpc  # type: ignore[untyped-decorator]
    def register_subjects(self, authorization: str, subjects: list[dict[str, str]]) -> list[dict[str, Any]]:
        """RegisterSubjects for other services' workers: ``subjects`` as [{"identifier": ...,
        "display_name": ...}]; answers in order, each as register_subject does, or
        {"refused": {"index", "field", "reason", "message"}} for an item refused on its own."""
        self.authorize(authorization, f"{SERVICE}/RegisterSubjects")
        try:
            items = [(str(item.get("identifier", "")), str(item.get("display_name", ""))) for item in subjects]
            outcomes = self.parts.identity.register_many(items)
        except (AttributeError, TypeError):
            raise RpcServiceError(
                "INVALID_ARGUMENT: subjects: each must be a mapping of identifier and display_name"
            ) from None
        except ServiceError as exc:
            raise RpcServiceError(f"{exc.status}: {exc.message}") from None
        count_registrations(outcomes)
        return [
            {"refused": {"index": index, "field": outcome.field, "reason": outcome.reason, "message": outcome.message}}
            if isinstance(outcome, InvalidArgument)
            else _answer(*outcome)
            for index, outcome in enumerate(outcomes)
        ]

    @rpc  # type: ignore[untyped-decorator]
    def resolve_subject(
        self, authorization: str, identifier: str = "", subject_id: str = "", allow_unregistered: bool = False
    ) -> dict[str, Any] | None:
        """ResolveSubject for other services' workers: the subject, or None when identity
        knows no such subject (with allow_unregistered, the subject an unregistered identifier
        would be, with "unregistered": true)."""
        self.authorize(authorization, f"{SERVICE}/ResolveSubject")
        try:
            subject, registered = self.parts.identity.resolve_or_pseudonym(
                identifier=identifier, subject_id=subject_id, allow=allow_unregistered
            )
        except NotFound:
            return None
        except ServiceError as exc:
            raise RpcServiceError(f"{exc.status}: {exc.message}") from None
        return {**_answer(subject, created=False), "unregistered": not registered}
