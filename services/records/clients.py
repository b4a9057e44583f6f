"""Every other service records calls: identity, to turn an identifier into the pseudonymous
subject it stands for (registering a subject met first in a department feed). The api reaches it
over gRPC, the worker over nameko RPC (a worker process must never import grpc), so this module
imports neither at load time: each client imports its transport where it is built or used."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from govmesh import enums
from govmesh.auth import ServiceCredentials
from govmesh.errors import Unavailable
from govmesh.identity.v1 import identity_pb2
from govmesh.known_subjects import KnownSubjects
from govmesh.parties import Party
from services.records.domain.catalogue import SubjectKind

if TYPE_CHECKING:
    from govmesh.identity_client import IdentityClient

#: How long records waits for identity's answer.
IDENTITY_TIMEOUT_SECONDS = 5.0


#: The most subjects identity registers in one call (RegisterSubjects, register_subjects).
REGISTER_BATCH = 1000


class InvalidSubject(Exception):
    """Identity refused the identifier (or, registering, the name: ``field``); the message says
    why, without the field's name, and never contains the identifier."""

    def __init__(self, message: str, field: str = "identifier") -> None:
        super().__init__(message)
        self.field = field


class Subjects(Protocol):
    """Identity, as records' use cases reach it."""

    #: Whether calls may be made from several threads at once (a batch's subjects known only by
    #: their id are then looked up side by side).
    parallel: bool

    def register_many(self, people: Sequence[tuple[str, str]]) -> list[Party | InvalidSubject]:
        """Each (identifier, display name) registered, or found registered, in order, in one call
        (up to REGISTER_BATCH); an item identity refuses is its InvalidSubject, the others are
        registered all the same."""
        ...

    def resolve(self, *, identifier: str = "", subject_id: str = "", allow_unregistered: bool = False) -> Party | None:
        """The subject, or None when identity knows no such subject; with allow_unregistered, an
        unregistered identifier's would-be subject (its pseudonym and masked form)."""
        ...


class IdentityOverGrpc:
    """Identity's gRPC api, for records' api process, called with records' own credentials."""

    parallel = True

    def __init__(self, target: str, credentials: ServiceCredentials, timeout: float = IDENTITY_TIMEOUT_SECONDS) -> None:
        from govmesh.identity_client import IdentityClient

        self.client: IdentityClient = IdentityClient(target, credentials, timeout)

    def register_many(self, people: Sequence[tuple[str, str]]) -> list[Party | InvalidSubject]:
        from govmesh.identity_client import IdentifierRefused

        try:
            answers = self.client.register_many(people)
        except IdentifierRefused as exc:
            raise InvalidSubject(str(exc)) from None
        return [
            InvalidSubject(str(answer), answer.field) if isinstance(answer, IdentifierRefused) else _party(answer)
            for answer in answers
        ]

    def resolve(self, *, identifier: str = "", subject_id: str = "", allow_unregistered: bool = False) -> Party | None:
        from govmesh.identity_client import IdentifierRefused

        try:
            subject = self.client.resolve(
                identifier=identifier, subject_id=subject_id, allow_unregistered=allow_unregistered
            )
        except IdentifierRefused as exc:
            raise InvalidSubject(str(exc)) from None
        return None if subject is None else _party(subject)

    def close(self) -> None:
        self.client.close()


def _party(subject: identity_pb2.Subject) -> Party:
    return Party(subject.subject_id, subject.masked_identifier, subject.kind)


class IdentityOverRpc:
    """Identity's worker RPC (register_subjects, resolve_subject), for records' worker, called with
    records' own credentials. nameko gives each running entrypoint its own RPC proxy (it carries
    that call's context), so the worker binds the client to it per call: ``through(proxy)``."""

    parallel = False  # a nameko proxy is called from its entrypoint's own green thread

    def __init__(
        self,
        credentials: ServiceCredentials,
        timeout: float = IDENTITY_TIMEOUT_SECONDS,
        proxy: Any = None,
        known: KnownSubjects[Party] | None = None,
    ) -> None:
        self.credentials = credentials
        self.timeout = timeout
        self.proxy = proxy
        # One for the process, shared by every entrypoint's client (through()).
        self.known: KnownSubjects[Party] = known if known is not None else KnownSubjects()

    def through(self, proxy: Any) -> IdentityOverRpc:
        return IdentityOverRpc(self.credentials, self.timeout, proxy, self.known)

    def register_many(self, people: Sequence[tuple[str, str]]) -> list[Party | InvalidSubject]:
        subjects = [{"identifier": identifier, "display_name": name} for identifier, name in people]
        answers = self._call("register_subjects", subjects=subjects)
        assert isinstance(answers, list)
        registered: list[Party | InvalidSubject] = []
        for (identifier, _), answer in zip(people, answers, strict=True):
            if "refused" in answer:
                refusal = answer["refused"]
                registered.append(
                    InvalidSubject(refusal["message"].removeprefix(f"{refusal['field']}: "), refusal["field"])
                )
                continue
            party = _party_of(answer)
            self.known.keep(identifier, "", party, registered=True)
            registered.append(party)
        return registered

    def resolve(self, *, identifier: str = "", subject_id: str = "", allow_unregistered: bool = False) -> Party | None:
        known = self.known.get(identifier, subject_id, allow_unregistered)
        if known is not None:
            return known
        answer = self._call(
            "resolve_subject", identifier=identifier, subject_id=subject_id, allow_unregistered=allow_unregistered
        )
        if answer is None:
            return None
        party = _party_of(answer)
        self.known.keep(identifier, subject_id, party, registered=not answer.get("unregistered", False))
        return party

    def _call(self, method: str, **kwargs: object) -> Any:
        from nameko.exceptions import RemoteError

        from govmesh.worker import rpc_result

        if self.proxy is None:
            raise RuntimeError("IdentityOverRpc is called through an entrypoint's proxy: use through(proxy)")
        reply = getattr(self.proxy, method).call_async(authorization=self.credentials.authorization(), **kwargs)
        try:
            answer = rpc_result(reply, self.timeout)
        except TimeoutError:
            raise Unavailable(f"identity did not answer within {self.timeout:g} s") from None
        except RemoteError as error:
            if error.exc_type == "RpcServiceError" and str(error.value).startswith("INVALID_ARGUMENT"):
                raise InvalidSubject(str(error.value).removeprefix("INVALID_ARGUMENT: identifier: ")) from None
            raise
        return answer


def _party_of(answer: dict[str, Any]) -> Party:
    kind = identity_pb2.SubjectKind.ValueType(
        enums.to_proto(identity_pb2.SubjectKind, "SUBJECT_KIND_", SubjectKind(answer["kind"]))
    )
    return Party(answer["subject_id"], answer["masked_identifier"], kind)
