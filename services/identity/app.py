"""Identity's use cases: validation, registration and resolution, with their events.

Called by both process kinds (the gRPC api and the nameko worker); it owns the unit of work so
that a registration and its SubjectRegistered event commit together."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from google.protobuf.timestamp_pb2 import Timestamp

from govmesh import clock as govmesh_clock
from govmesh import keys
from govmesh.config import ProcessKind, Settings
from govmesh.db import Database
from govmesh.errors import InvalidArgument, NotFound
from govmesh.identity.v1 import events_pb2, identity_pb2
from govmesh.outbox import Outbox
from services.identity import domain, store

MAX_DISPLAY_NAME = 200

KIND_TO_PROTO = {
    domain.IdentifierKind.RESIDENT: identity_pb2.SUBJECT_KIND_RESIDENT,
    domain.IdentifierKind.ENTERPRISE: identity_pb2.SUBJECT_KIND_ENTERPRISE,
}


@dataclass(frozen=True)
class Subject:
    subject_id: str
    kind: domain.IdentifierKind
    masked_identifier: str
    display_name: str
    created_at: datetime.datetime

    def to_proto(self) -> identity_pb2.Subject:
        created = Timestamp()
        created.FromDatetime(self.created_at)
        return identity_pb2.Subject(
            subject_id=self.subject_id,
            kind=KIND_TO_PROTO[self.kind],
            masked_identifier=self.masked_identifier,
            display_name=self.display_name,
            created_at=created,
        )


def _subject(row: sa.Row[tuple[object, ...]]) -> Subject:
    m = row._mapping
    created: datetime.datetime = m["created_at"]
    return Subject(
        subject_id=m["subject_id"],
        kind=domain.IdentifierKind(m["kind"]),
        masked_identifier=m["masked_identifier"],
        display_name=m["display_name"],
        created_at=created if created.tzinfo else created.replace(tzinfo=datetime.UTC),
    )


class IdentityApp:
    def __init__(
        self,
        db: Database,
        pseudonym_key: bytes,
        clock: Callable[[], datetime.datetime] = govmesh_clock.now,
    ) -> None:
        self.db = db
        self.pseudonym_key = pseudonym_key
        self.clock = clock
        self.outbox = Outbox("identity", store.outbox, store.inbox)

    def validate(self, raw: str) -> domain.Validation:
        try:
            # Birth dates are judged against the province's calendar day.
            return domain.validate_identifier(raw, govmesh_clock.shanghai_date(self.clock()))
        except domain.MalformedRequest as exc:
            raise InvalidArgument("identifier", "MALFORMED", str(exc).removeprefix("identifier: ")) from None

    def _valid(self, raw: str) -> domain.Validation:
        validation = self.validate(raw)
        if not validation.valid or validation.kind is None:
            problems = "; ".join(p.message for p in validation.problems)
            raise InvalidArgument("identifier", "INVALID_IDENTIFIER", f"not a valid identifier: {problems}")
        return validation

    def pseudonym(self, validation: domain.Validation) -> str:
        assert validation.kind is not None
        return domain.subject_pseudonym(self.pseudonym_key, validation.kind, validation.normalized)

    def register(self, raw: str, display_name: str) -> tuple[Subject, bool]:
        """The subject and whether it was created now. Idempotent by identifier."""
        validation = self._valid(raw)
        name = " ".join(display_name.split())
        if not name:
            raise InvalidArgument("display_name", "EMPTY", "must not be empty")
        if len(name) > MAX_DISPLAY_NAME:
            raise InvalidArgument("display_name", "TOO_LONG", f"is {len(name)} characters; at most {MAX_DISPLAY_NAME}")
        subject_id = self.pseudonym(validation)
        existing = self._find(store.subjects.c.subject_id == subject_id)
        if existing is not None:
            return existing, False
        assert validation.kind is not None
        subject = Subject(
            subject_id=subject_id,
            kind=validation.kind,
            masked_identifier=validation.masked,
            display_name=name,
            created_at=self.clock(),
        )
        try:
            with self.db.transaction() as session:
                session.execute(
                    store.subjects.insert().values(
                        subject_id=subject.subject_id,
                        kind=subject.kind.value,
                        identifier=validation.normalized,
                        masked_identifier=subject.masked_identifier,
                        display_name=subject.display_name,
                        created_at=subject.created_at,
                    )
                )
                registered_at = Timestamp()
                registered_at.FromDatetime(subject.created_at)
                event = events_pb2.SubjectRegistered(
                    subject_id=subject.subject_id,
                    kind=KIND_TO_PROTO[subject.kind],
                    masked_identifier=subject.masked_identifier,
                    registered_at=registered_at,
                )
                self.outbox.add(session, event, subject=subject.subject_id)
        except sa.exc.IntegrityError:
            # A concurrent registration of the same identifier won the race: theirs stands.
            winner = self._find(store.subjects.c.subject_id == subject_id)
            if winner is None:
                raise
            return winner, False
        return subject, True

    def resolve(self, *, identifier: str = "", subject_id: str = "") -> Subject:
        if identifier:
            condition = store.subjects.c.subject_id == self.pseudonym(self._valid(identifier))
        elif subject_id:
            if len(subject_id) > 64:
                raise InvalidArgument("subject_id", "TOO_LONG", "is longer than any subject id")
            condition = store.subjects.c.subject_id == subject_id
        else:
            raise InvalidArgument("key", "MISSING", "give an identifier or a subject_id")
        subject = self._find(condition)
        if subject is None:
            raise NotFound("no subject is registered under that " + ("identifier" if identifier else "subject_id"))
        return subject

    def _find(self, condition: sa.ColumnElement[bool]) -> Subject | None:
        with self.db.read() as session:
            row = session.execute(sa.select(store.subjects).where(condition)).first()
        return None if row is None else _subject(row)


def build(settings: Settings, db: Database, process: ProcessKind = "api") -> IdentityApp:
    return IdentityApp(db, keys.secret(settings.key_dir, "identity-pseudonym"))
