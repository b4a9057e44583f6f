"""Identity's use cases: validation, registration and resolution, with their events.

Called by both process kinds (the gRPC api and the nameko worker); it owns the unit of work so
that a registration and its SubjectRegistered event commit together."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence

from govmesh import clock as govmesh_clock
from govmesh import texts
from govmesh.db import Database
from govmesh.errors import InvalidArgument, NotFound
from govmesh.outbox import Outbox
from govmesh.privacy import mask_identifiers
from services.identity import contract, domain, queries, repository, store

#: Longest subject id a lookup accepts (the column's width).
MAX_SUBJECT_ID = 64
#: The most subjects one RegisterSubjects call registers: a batch's one statement stays well
#: under a second and within SQLite's and PostgreSQL's limits on a statement's parameters.
MAX_BATCH = 1000


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

    def validate(self, raw: str, now: datetime.datetime | None = None) -> domain.Validation:
        """``now``: the moment a batch is judged at, read once for the batch (the clock's read
        was a third of a batch's time, one per item)."""
        try:
            # Birth dates are judged against the province's calendar day.
            return domain.validate_identifier(raw, govmesh_clock.shanghai_date(now or self.clock()))
        except domain.MalformedRequest as exc:
            raise InvalidArgument("identifier", "MALFORMED", str(exc).removeprefix("identifier: ")) from None

    def _valid(self, raw: str, now: datetime.datetime | None = None) -> domain.Validation:
        validation = self.validate(raw, now)
        if not validation.valid or validation.kind is None:
            problems = "; ".join(p.message for p in validation.problems)
            raise InvalidArgument("identifier", "INVALID_IDENTIFIER", f"not a valid identifier: {problems}")
        return validation

    def pseudonym(self, validation: domain.Validation) -> str:
        assert validation.kind is not None
        return domain.subject_pseudonym(self.pseudonym_key, validation.kind, validation.normalized)

    def register(self, raw: str, display_name: str) -> domain.Registration:
        """The subject and whether it was created now. Idempotent by identifier."""
        [outcome] = self.register_many([(raw, display_name)])
        if isinstance(outcome, InvalidArgument):
            raise outcome
        return outcome

    def register_many(self, items: Sequence[tuple[str, str]]) -> list[domain.Registration | InvalidArgument]:
        """Each (identifier, display name) registered as ``register`` would, answered in order:
        the subject and whether this item created it, or the item's refusal. A refused item
        leaves the others to be registered (docs/decisions/identity-batch-registration.md). One
        transaction writes every new subject and its SubjectRegistered event; an identifier
        given twice is one subject, created (and announced) by its first item only."""
        if len(items) > MAX_BATCH:
            raise InvalidArgument("subjects", "TOO_MANY", f"at most {MAX_BATCH} subjects per call, got {len(items)}")
        now = self.clock()
        wanted: dict[str, tuple[domain.Subject, str]] = {}
        read: list[str | InvalidArgument] = []
        for raw, display_name in items:
            try:
                validation = self._valid(raw, now)
                name = texts.display_name(display_name, "display_name")  # the rule records reads names with
            except InvalidArgument as refusal:
                # It leaves in an OK answer, past the masking the transports give error messages.
                refusal.message = mask_identifiers(refusal.message)
                read.append(refusal)
                continue
            assert validation.kind is not None
            subject_id = self.pseudonym(validation)
            if subject_id not in wanted:
                subject = domain.Subject(subject_id, validation.kind, validation.masked, name, now)
                wanted[subject_id] = (subject, validation.normalized)
            read.append(subject_id)
        stored: dict[str, domain.Subject] = {}
        created: set[str] = set()
        if wanted:
            with self.db.transaction() as session:
                created = repository.add_new(session, list(wanted.values()))
                new = [wanted[subject_id][0] for subject_id in sorted(created)]
                self.outbox.add_many(session, [(contract.subject_registered(s), s.subject_id) for s in new])
                # Registered before (or by a concurrent call, which the insert waited for): theirs stands.
                stored = repository.subjects(session, wanted.keys() - created)
            stored.update((subject.subject_id, subject) for subject in new)
        outcomes: list[domain.Registration | InvalidArgument] = []
        for item in read:
            if isinstance(item, InvalidArgument):
                outcomes.append(item)
                continue
            outcomes.append((stored[item], item in created))
            created.discard(item)  # a repeat of the identifier in this batch is not created again
        return outcomes

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
            if not subject_id.isprintable():
                # A NUL reached PostgreSQL's text parameter and ended INTERNAL (issue 14).
                raise InvalidArgument("subject_id", "MALFORMED", "has control characters")
            wanted = subject_id
        else:
            raise InvalidArgument("key", "MISSING", "give an identifier or a subject_id")
        subject = queries.subject(self.db, wanted)
        if subject is not None:
            return subject, True
        if allow and validation is not None and validation.kind is not None:
            return domain.Subject(wanted, validation.kind, validation.masked, "", None), False
        raise NotFound("no subject is registered under that " + ("identifier" if identifier else "subject_id"))
