"""Identity's use cases: validation, registration and resolution, with their events.

Called by both process kinds (the gRPC api and the nameko worker); it owns the unit of work so
that a registration and its SubjectRegistered event commit together."""

from __future__ import annotations

import datetime
from collections.abc import Callable

import sqlalchemy as sa

from govmesh import clock as govmesh_clock
from govmesh import texts
from govmesh.db import Database
from govmesh.errors import InvalidArgument, NotFound
from govmesh.outbox import Outbox
from services.identity import contract, domain, queries, repository, store

#: Longest subject id a lookup accepts (the column's width).
MAX_SUBJECT_ID = 64


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

    def register(self, raw: str, display_name: str) -> tuple[domain.Subject, bool]:
        """The subject and whether it was created now. Idempotent by identifier."""
        validation = self._valid(raw)
        name = texts.display_name(display_name, "display_name")  # the rule records reads names with
        subject_id = self.pseudonym(validation)
        existing = queries.subject(self.db, subject_id)
        if existing is not None:
            return existing, False
        assert validation.kind is not None
        subject = domain.Subject(subject_id, validation.kind, validation.masked, name, self.clock())
        try:
            with self.db.transaction() as session:
                repository.add(session, subject, validation.normalized)
                self.outbox.add(session, contract.subject_registered(subject), subject=subject.subject_id)
        except sa.exc.IntegrityError:
            # A concurrent registration of the same identifier won the race: theirs stands.
            winner = queries.subject(self.db, subject_id)
            if winner is None:
                raise
            return winner, False
        return subject, True

    def resolve(self, *, identifier: str = "", subject_id: str = "") -> domain.Subject:
        return self.resolve_or_pseudonym(identifier=identifier, subject_id=subject_id, allow=False)[0]

    def resolve_or_pseudonym(
        self, *, identifier: str = "", subject_id: str = "", allow: bool = True
    ) -> tuple[domain.Subject, bool]:
        """The subject and True; or, when ``allow`` and no subject is registered under the
        identifier, the subject it would be (no name, no creation time) and False. The two take
        the same path: one lookup, one pseudonym."""
        validation = None
        if identifier:
            validation = self._valid(identifier)
            wanted = self.pseudonym(validation)
        elif subject_id:
            if len(subject_id) > MAX_SUBJECT_ID:
                raise InvalidArgument("subject_id", "TOO_LONG", "is longer than any subject id")
            wanted = subject_id
        else:
            raise InvalidArgument("key", "MISSING", "give an identifier or a subject_id")
        subject = queries.subject(self.db, wanted)
        if subject is not None:
            return subject, True
        if allow and validation is not None and validation.kind is not None:
            return domain.Subject(wanted, validation.kind, validation.masked, "", None), False
        raise NotFound("no subject is registered under that " + ("identifier" if identifier else "subject_id"))
