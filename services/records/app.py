"""Records' use cases: department feeds in, signed proofs out, every read of personal data on
the access log. Called by the api (gRPC) and the worker (the records.ingest exchange) alike;
each hands in identity as it reaches it (clients.Subjects)."""

from __future__ import annotations

import contextvars
import datetime
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import overload

import sqlalchemy as sa
from google.protobuf.message import Message
from sqlalchemy.orm import Session

from govmesh import clock as govmesh_clock
from govmesh import idempotency
from govmesh.auth import Caller, Policy, PolicyError
from govmesh.db import Database
from govmesh.errors import InvalidArgument, NotFound, PermissionDenied
from govmesh.idempotency import IdempotentRequest
from govmesh.identity.v1 import identity_pb2
from govmesh.known_subjects import KnownSubjects
from govmesh.messaging import RenderedEvent
from govmesh.outbox import Outbox, outbox_rows
from govmesh.parties import Party
from govmesh.records.v1 import records_pb2
from services.records import contract, queries, repository, signing, store
from services.records.clients import REGISTER_BATCH, InvalidSubject, Subjects
from services.records.domain import access_log, catalogue, feed, proofs
from services.records.domain.feed import (
    DUPLICATE,
    MAX_TEXT,
    Checked,
    Outcome,
    PublishSummary,
    Refused,
    RejectionCode,
)

__all__ = ["MAX_TEXT", "RecordsApp"]

log = logging.getLogger(__name__)

MAX_PAGE = 500
DEFAULT_PAGE = 50
GET_PROOF = "/govmesh.records.v1.RecordsService/GetProof"
#: The most entries one step of the sequencer seals: a step under load stays well under a second.
SEAL_BATCH = 5000


@dataclass(frozen=True)
class ProofRequest:
    """A GetProof request read and checked, before anyone is looked up."""

    spec: proofs.ProofTypeSpec
    parameters: dict[str, str]
    purpose: records_pb2.Purpose
    idempotent: IdempotentRequest | None
    fingerprint: str
    allowed: bool


class RecordsApp:
    def __init__(
        self,
        db: Database,
        signer: signing.Signer,
        policy: Policy,
        clock: Callable[[], datetime.datetime] = govmesh_clock.now,
    ) -> None:
        self.db = db
        self.signer = signer
        self.policy = policy
        self.clock = clock
        # One log per deployment: the policy's issuer names the deployment.
        self.log_id = f"{policy.issuer}/records/access-log"
        self.outbox = Outbox("records", store.outbox, store.inbox)
        self._keys_published = -1
        # Who a feed's subject is never changes: a feed asks identity once per person.
        self._subjects_seen: KnownSubjects[Party] = KnownSubjects()
        self._identity_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="records-identity")
        self._check_policy()

    def _check_policy(self) -> None:
        known = {spec.code for spec in proofs.PROOF_TYPES}
        departments = {spec.code for spec in catalogue.DEPARTMENTS}
        for caller in self.policy.callers.values():
            for proof_type in caller.proof_types_named() - known:
                raise PolicyError(f"policy caller {caller.caller_id!r}: proofs names unknown proof type {proof_type!r}")
            for department in caller.publishes - departments - {"*"}:
                raise PolicyError(
                    f"policy caller {caller.caller_id!r}: publishes names unknown department {department!r}"
                )

    # -- signing keys -------------------------------------------------------------------------------

    def publish_keys(self) -> None:
        """Record the proofs ring in the database, the public half and lifecycle of every key, so
        what they sign verifies and ListSigningKeys tells offline verifiers (idempotent; again each
        time the ring changes). Done at first use rather than at start: the database may not be
        migrated yet at start."""
        ring = self.signer.ring
        ring.keys()  # re-read if due
        if self._keys_published == ring.version:
            return
        version = ring.version
        for attempt in (1, 2):
            try:
                with self.db.transaction() as session:
                    untrusted = repository.record_signing_keys(session, list(ring.keys().values()), self.clock())
                break
            except sa.exc.IntegrityError:
                # The other process (api or worker) recorded the same new key at the same moment.
                if attempt == 2:
                    raise
        for key_id in untrusted:  # someone who could write the database but not the ring's Secret
            log.error("signing key %s: the database holds a public key the proofs ring does not; unused", key_id)
        self._keys_published = version

    def signing_keys(self) -> dict[str, signing.PublicKey]:
        self.publish_keys()
        return queries.signing_keys(self.db, self.clock(), self.signer.ring.keys())

    # -- department feeds (docs/decisions/records-feed-in-three-steps.md) ---------------------------

    def publish(
        self,
        batches: Iterable[Iterable[records_pb2.DepartmentRecord]],
        caller: Caller,
        channel: str,
        subjects: Subjects,
    ) -> PublishSummary:
        """Store each record once, by (department, source reference), batch by batch: the checks
        that need neither storage nor identity, identity for the subjects not seen before (outside
        any transaction), then one transaction that writes the new records and their events."""
        summary = PublishSummary()
        for batch in batches:
            self._publish_batch(list(batch), caller, channel, subjects, summary)
        return summary

    def _publish_batch(
        self,
        records: list[records_pb2.DepartmentRecord],
        caller: Caller,
        channel: str,
        subjects: Subjects,
        summary: PublishSummary,
    ) -> None:
        first_index = summary.received
        summary.received += len(records)
        outcomes: list[Outcome] = [self._check(record, caller) for record in records]
        with self.db.read() as session:
            keys = {(item.department, item.reference) for item in outcomes if isinstance(item, Checked)}
            stored = repository.stored_references(session, keys)
        # Repeats inside the batch are left to the write, which stores the first that passes.
        outcomes = [
            DUPLICATE if isinstance(item, Checked) and (item.department, item.reference) in stored else item
            for item in outcomes
        ]
        self._resolve_subjects(records, outcomes, subjects)
        with self.db.transaction() as session:
            written = self._write_batch(session, [item for item in outcomes if isinstance(item, Checked)], channel)
        for position, item in enumerate(outcomes):
            result = written.get(id(item), DUPLICATE) if isinstance(item, Checked) else item
            record = records[position]
            summary.count(first_index + position, record.department_code, record.source_reference, result)

    def _check(self, record: records_pb2.DepartmentRecord, caller: Caller) -> Checked | Refused:
        """Everything that can be known about a record without storage or identity."""
        try:
            department = catalogue.department(record.department_code)
            if department is None:
                raise Refused(
                    RejectionCode.UNKNOWN_DEPARTMENT,
                    f"department_code: {record.department_code[:64]!r} is not a department of the catalogue",
                )
            if not caller.may_publish(department.code):
                raise Refused(
                    RejectionCode.NOT_PERMITTED,
                    f"department_code: caller {caller.caller_id!r} may not publish for {department.code!r}",
                )
            return contract.read_record(record, department)
        except Refused as refusal:
            return refusal

    def _resolve_subjects(
        self, records: list[records_pb2.DepartmentRecord], outcomes: list[Outcome], subjects: Subjects
    ) -> None:
        pending = [(position, item) for position, item in enumerate(outcomes) if isinstance(item, Checked)]
        distinct = {contract.subject_key(records[position]): records[position] for position, _ in pending}
        found: dict[tuple[str, str], Party | Refused] = {}
        named, unnamed = [], []
        for key, record in distinct.items():
            seen = self._seen(key)
            if seen is not None:
                found[key] = seen
            elif key[0] == "subject_identifier" and contract.display_name(record):
                named.append(key)  # read_record refused any name identity would
            else:
                unnamed.append(key)
        found.update(self._register(named, distinct, subjects))

        def who(key: tuple[str, str]) -> Party | Refused:
            try:
                return self._remember(key, self._ask_identity(distinct[key], subjects))
            except Refused as refusal:
                return refusal

        if subjects.parallel:
            # Pool threads do not inherit context variables: carry the trace into each call.
            context = contextvars.copy_context()
            answers = list(self._identity_pool.map(lambda key: context.copy().run(who, key), unnamed))
        else:
            answers = [who(key) for key in unnamed]
        found.update(zip(unnamed, answers, strict=True))
        for position, item in pending:
            outcomes[position] = _about(item, found[contract.subject_key(records[position])])

    def _seen(self, key: tuple[str, str]) -> Party | None:
        return self._subjects_seen.get(*_identifier_or_id(key), allow_unregistered=False)

    def _remember(self, key: tuple[str, str], party: Party) -> Party:
        self._subjects_seen.keep(*_identifier_or_id(key), party, registered=True)
        return party

    def _register(
        self,
        keys: list[tuple[str, str]],
        records: dict[tuple[str, str], records_pb2.DepartmentRecord],
        subjects: Subjects,
    ) -> dict[tuple[str, str], Party | Refused]:
        """The batch's new people who come with a name, registered (or found registered) in one
        call to identity per REGISTER_BATCH rather than one each; identity's refusal of one is
        that person's alone."""
        found: dict[tuple[str, str], Party | Refused] = {}
        for start in range(0, len(keys), REGISTER_BATCH):
            chunk = keys[start : start + REGISTER_BATCH]
            people = [(records[key].subject_identifier, contract.display_name(records[key])) for key in chunk]
            try:
                answers = subjects.register_many(people)
            except InvalidSubject as exc:  # the call itself refused: every item with it
                answers = [exc] * len(chunk)
            for key, answer in zip(chunk, answers, strict=True):
                if isinstance(answer, InvalidSubject):
                    found[key] = Refused(RejectionCode.INVALID_SUBJECT, f"subject_{answer.field}: {answer}")
                else:
                    found[key] = self._remember(key, answer)
        return found

    def _ask_identity(self, record: records_pb2.DepartmentRecord, subjects: Subjects) -> Party:
        """The subject of a record that names it by id, or by an identifier without a name (which
        identity must know already)."""
        which = record.WhichOneof("subject")
        if which is None:
            raise Refused(RejectionCode.INVALID_SUBJECT, "subject: give subject_identifier or subject_id")
        try:
            if which == "subject_id":
                found = subjects.resolve(subject_id=record.subject_id)
                if found is None:
                    raise Refused(RejectionCode.INVALID_SUBJECT, "subject_id: identity knows no such subject")
                return found
            existing = subjects.resolve(identifier=record.subject_identifier)
            if existing is None:
                raise Refused(
                    RejectionCode.INVALID_SUBJECT,
                    "subject_display_name: needed to register a subject identity does not know yet",
                )
            return existing
        except InvalidSubject as exc:
            raise Refused(RejectionCode.INVALID_SUBJECT, f"subject_{exc.field}: {exc}") from None

    def _write_batch(self, session: Session, items: list[Checked], channel: str) -> dict[int, Refused | None]:
        """Writes the batch: new records in one statement when nothing stands in the way, else
        one by one. Returns, by id(item), None for stored and the Refused for refused; items
        missing from the answer were found stored already (the other path won a race)."""
        plain = [item for item in items if not item.supersedes]
        outcome: dict[int, Refused | None] = {}
        try:
            with session.begin_nested():
                self._insert(session, plain, channel)
            outcome.update((id(item), None) for item in plain)
            rest = [item for item in items if item.supersedes]
        except sa.exc.IntegrityError:
            rest = items  # the same record arrived on the other path meanwhile: go one by one
        for item in rest:
            try:
                with session.begin_nested():
                    if repository.is_stored(session, item.department, item.reference):
                        continue
                    self._insert(session, [item], channel)
                outcome[id(item)] = None
            except Refused as refusal:
                outcome[id(item)] = refusal
            except sa.exc.IntegrityError:
                continue
        return outcome

    def _insert(self, session: Session, items: list[Checked], channel: str) -> None:
        if not items:
            return
        now = self.clock()
        rows, events, superseded = [], [], []
        for item in items:
            assert item.subject is not None
            supersedes = None
            if item.supersedes:
                named = repository.stored_version(session, item.department, item.supersedes)
                supersedes = feed.superseded_record(item, named)
            record_id = str(uuid.uuid4())
            kind = contract.subject_kind(item.subject).value
            rows.append(repository.record_row(record_id, item, kind, supersedes, channel, now))
            if supersedes is not None:
                superseded.append((supersedes, record_id))
            events.append(
                (contract.record_published_json(record_id, item, supersedes, channel, now), item.subject.subject_id)
            )
        if not repository.add_records(session, rows, superseded):
            feed.replaced_already()  # by a correction written since this one looked (two at once)
        self.outbox.add_many(session, events)

    # -- proofs -------------------------------------------------------------------------------------

    def get_proof(self, request: records_pb2.GetProofRequest, caller: Caller, subjects: Subjects) -> records_pb2.Proof:
        """Issue a proof (see the contract). A refusal is on the subject's tracker and reveals
        nothing: it takes the same path whether or not the subject is registered
        (docs/decisions/records-refusals-reveal-nothing.md)."""
        asked = self._proof_request(request, caller)
        if not asked.allowed:
            subject = self._anyone(request.identifier, request.subject_id, subjects)
            with self.db.single_write() as session:
                self._record_access(
                    session, caller, subject, asked.spec.code, asked.purpose, access_log.Outcome.DENIED, None
                )
            raise PermissionDenied(
                f"caller {caller.caller_id!r} has no right to {asked.spec.code!r} proofs for this purpose; "
                "the refusal is on the subject's access log"
            )
        subject = self._subject_for_read(request.identifier, request.subject_id, subjects)
        kind = contract.subject_kind(subject)
        if kind not in asked.spec.subject_kinds:
            raise InvalidArgument(
                "proof_type", "WRONG_SUBJECT_KIND", f"{asked.spec.code!r} is not issued about {kind.value}s"
            )
        self.publish_keys()
        return self._issue(asked, caller, subject)

    def _proof_request(self, request: records_pb2.GetProofRequest, caller: Caller) -> ProofRequest:
        """Every check of the request that needs no one looked up, in the order they are reported."""
        purpose = contract.read_purpose(request.purpose if request.HasField("purpose") else None)
        basis = purpose.WhichOneof("basis") or ""
        spec = proofs.proof_type(request.proof_type)
        if spec is None:
            raise InvalidArgument(
                "proof_type", "UNKNOWN", f"{request.proof_type[:64]!r} is not a proof type of the platform"
            )
        try:
            parameters = proofs.resolve_parameters(spec, dict(request.parameters))
        except proofs.ParameterError as exc:
            raise InvalidArgument(f"parameters.{exc.parameter}", "INVALID", exc.reason) from None
        content = request.SerializeToString(deterministic=True)
        idempotent = idempotency.optional_request(caller.caller_id, request.request_id, content, max_length=MAX_TEXT)
        fingerprint = idempotent.fingerprint if idempotent else idempotency.fingerprint(caller.caller_id, content)
        # A caller with no right to GetProof at all reaches this method too (api.AUTHORIZED_INSIDE),
        # so that its refusal is on the subject's tracker like any other.
        allowed = caller.may_call(GET_PROOF) and caller.may_read_proof(spec.code, basis, getattr(purpose, basis))
        return ProofRequest(spec, parameters, purpose, idempotent, fingerprint, allowed)

    def _issue(self, asked: ProofRequest, caller: Caller, subject: Party) -> records_pb2.Proof:
        """The proof, signed, stored under its request id, on the access log and published; or
        the one an earlier attempt with the same request id issued. The earlier one is not looked
        for first: a repeated request id is rare (a caller's retry), and its unique key refuses
        the new proof's row before the read reaches the access log, so every first request saves
        a round trip (issue 13)."""
        try:
            with self.db.single_write() as session:
                now = self.clock()
                stored, entry_id = repository.subject_records(
                    session, subject.subject_id, asked.spec.source_record_types
                )
                as_of = govmesh_clock.shanghai_date(now)  # a proof speaks of the province's calendar day
                claims = proofs.derive_claims(asked.spec, stored, asked.parameters, as_of)
                proof_id = str(uuid.uuid4())
                proof = contract.new_proof(
                    proof_id, asked.spec, subject, claims, asked.parameters, caller.caller_id, asked.purpose, now
                )
                signed = self.signer.sign(proof)
                serialized = proof.SerializeToString(deterministic=True)
                key = asked.idempotent.key if asked.idempotent else None
                self._record_access(
                    session,
                    caller,
                    subject,
                    asked.spec.code,
                    asked.purpose,
                    access_log.Outcome.GRANTED,
                    repository.IssuedProof(proof_id, key, asked.fingerprint, serialized, now),
                    contract.proof_issued_json(signed),
                    entry_id=entry_id,
                )
            return proof
        except sa.exc.IntegrityError:
            # An attempt with the same request_id committed first (its request key is unique):
            # this one wrote nothing, and answers with that one's proof.
            with self.db.read() as session:
                earlier = self._earlier_proof(session, asked)
            if earlier is None:
                raise
            return earlier

    @staticmethod
    def _earlier_proof(session: Session, asked: ProofRequest) -> records_pb2.Proof | None:
        if asked.idempotent is None:
            return None
        earlier = repository.issued_proof(session, asked.idempotent.key)
        if earlier is None:
            return None
        asked.idempotent.replay(earlier[0], "proof request")
        return records_pb2.Proof.FromString(earlier[1])

    def _anyone(self, identifier: str, subject_id: str, subjects: Subjects) -> Party:
        """The person a refused read is about, registered or not: an unregistered identifier is
        the subject it would be registered under, so the refusal waits on their tracker, and
        both take one lookup and one write."""
        subject = self._subject_for_read(identifier, subject_id, subjects, allow_unregistered=True)
        if subject is None:  # a subject_id that names no one: kept as given, bounded
            return Party(subject_id[:64], "", identity_pb2.SUBJECT_KIND_UNSPECIFIED)
        return subject

    @overload
    def _subject_for_read(self, identifier: str, subject_id: str, subjects: Subjects) -> Party: ...
    @overload
    def _subject_for_read(
        self, identifier: str, subject_id: str, subjects: Subjects, allow_unregistered: bool
    ) -> Party | None: ...
    def _subject_for_read(
        self, identifier: str, subject_id: str, subjects: Subjects, allow_unregistered: bool = False
    ) -> Party | None:
        if not identifier and not subject_id:
            raise InvalidArgument("subject", "MISSING", "give an identifier or a subject_id")
        try:
            subject = subjects.resolve(
                identifier=identifier, subject_id=subject_id, allow_unregistered=allow_unregistered
            )
        except InvalidSubject as exc:
            raise InvalidArgument("identifier", "INVALID_IDENTIFIER", str(exc).removeprefix("identifier: ")) from None
        if subject is None and not allow_unregistered:
            raise NotFound("no subject is registered under that " + ("identifier" if identifier else "subject_id"))
        return subject

    def verify_proof(self, proof: records_pb2.Proof) -> records_pb2.VerifyProofResponse:
        now = self.clock()
        return contract.proof_verification(signing.verify(proof, self.signing_keys(), now), now)

    # -- the access log (docs/decisions/records-access-log-merkle-tree.md) -----------------------

    def _record_access(
        self,
        session: repository.Executor,
        caller: Caller,
        subject: Party,
        proof_type: str,
        purpose: records_pb2.Purpose,
        outcome: access_log.Outcome,
        proof: repository.IssuedProof | None,
        *issued: Message | RenderedEvent,
        entry_id: int | None = None,
    ) -> access_log.Entry:
        """Writes the read's entry with the proof it issued (if any) in the read's own
        transaction, locking nothing shared; the sequencer seals it into the tree within a second
        or so. Its event and the read's others (``issued``) go to the outbox with it."""
        basis = purpose.WhichOneof("basis") or ""
        entry = access_log.Entry(
            accessed_at=self.clock(),
            caller_id=caller.caller_id,
            caller_name=caller.name,
            subject_id=subject.subject_id,
            subject_masked_identifier=subject.masked_identifier,
            proof_type=proof_type,
            purpose_kind=basis,
            purpose_value=getattr(purpose, basis) if basis else "",
            purpose_note=purpose.note,
            outcome=outcome,
            proof_id=proof.proof_id if proof else "",
        )

        def events(numbered: access_log.Entry) -> list[dict[str, object]]:
            pairs = [(event, subject.subject_id) for event in (contract.data_accessed_json(numbered), *issued)]
            return outbox_rows(self.outbox.envelopes(pairs))

        return repository.record_read(session, entry, proof, events, entry_id)

    def seal(self, limit: int = SEAL_BATCH) -> Sealed | None:
        """The sequencer's step: give the oldest waiting entries (up to ``limit``) the next leaf
        indexes, append them to the tree and sign its new head, in one transaction. None when
        another sequencer holds the log, or when nothing waits and a head is already signed."""
        self.publish_keys()
        with self.db.transaction() as session:
            if not repository.become_sequencer(session):
                return None
            latest = repository.tree_head(session)
            waiting = repository.pending_entries(session, limit)
            if not waiting and latest is not None:
                return None
            size = latest.tree_size if latest else 0
            edge = access_log.Frontier.edge_nodes(size)
            stored = repository.tree_nodes(session, set(edge))
            frontier = access_log.Frontier(size, [stored[node] for node in edge])
            # In a worker, sleep(0) is a green yield: its other handlers run between the hashing.
            sealed, made = frontier.seal(waiting, pause=lambda: time.sleep(0))
            # A head never says it was signed before the one it follows, whatever the clocks.
            moment = max(self.clock(), latest.timestamp) if latest else self.clock()
            head = self.signer.sign_head(access_log.TreeHead(self.log_id, frontier.size, frontier.root(), moment))
            repository.seal(session, sealed, made, head)
            self.outbox.add(session, contract.tree_head_signed(head), subject=self.log_id)
        return Sealed(head, sealed)

    def tree_head(self, request: records_pb2.GetTreeHeadRequest) -> records_pb2.GetTreeHeadResponse:
        if request.tree_size < 0:
            raise InvalidArgument("tree_size", "OUT_OF_RANGE", "must be 0 (the latest) or a tree head's size")
        head = queries.tree_head(self.db, request.tree_size or None)
        if head is None:
            raise NotFound(
                f"no tree head of size {request.tree_size} is kept"
                if request.tree_size
                else "no tree head is signed yet: records' worker signs the first within a second of starting"
            )
        return records_pb2.GetTreeHeadResponse(tree_head=contract.signed_tree_head(head))

    def consistency_proof(
        self, request: records_pb2.GetConsistencyProofRequest
    ) -> records_pb2.GetConsistencyProofResponse:
        latest = queries.tree_head(self.db)
        size = latest.tree_size if latest else 0
        first, second = request.first_size, request.second_size
        if not 1 <= first <= size:
            raise InvalidArgument("first_size", "OUT_OF_RANGE", f"must be 1 to the latest tree head's size ({size})")
        if not first <= second <= size:
            raise InvalidArgument(
                "second_size", "OUT_OF_RANGE", f"must be first_size ({first}) to the latest tree head's size ({size})"
            )
        proof = queries.consistency_proof(self.db, first, second)
        return records_pb2.GetConsistencyProofResponse(first_size=first, second_size=second, proof=proof)

    def list_accesses(
        self, request: records_pb2.ListAccessesRequest, subjects: Subjects
    ) -> records_pb2.ListAccessesResponse:
        subject = self._subject_for_read(request.identifier, request.subject_id, subjects)
        size = request.page_size or DEFAULT_PAGE
        if not 1 <= size <= MAX_PAGE:
            raise InvalidArgument("page_size", "OUT_OF_RANGE", f"must be 1 to {MAX_PAGE}")
        before = contract.read_page_token(request.page_token) if request.page_token else None
        start = contract.time_of(request.start_time, "start_time") if request.HasField("start_time") else None
        end = contract.time_of(request.end_time, "end_time") if request.HasField("end_time") else None
        view = queries.accesses(self.db, subject.subject_id, size + 1, before, start, end)
        response = contract.accesses_page(view, size)
        if len(view.entries) > size:
            response.next_page_token = contract.page_token(view.entries[size - 1].entry_id)
        return response

    def verify_audit_trail(self) -> records_pb2.VerifyAuditTrailResponse:
        keys = self.signing_keys()
        verification, pending = queries.verify_access_log(
            self.db, lambda head: signing.head_signature_fault(head, keys)
        )
        return contract.log_verification(verification, pending, self.clock())


@dataclass(frozen=True)
class Sealed:
    """What one step of the sequencer did."""

    head: access_log.TreeHead
    entries: list[access_log.Entry]


def _identifier_or_id(key: tuple[str, str]) -> tuple[str, str]:
    """(identifier, subject_id) of a record's subject key (contract.subject_key), one of them ""."""
    field, value = key
    return (value, "") if field == "subject_identifier" else ("", value)


def _about(item: Checked, answer: Party | Refused) -> Checked | Refused:
    """The record with its subject, or why it is refused: identity's refusal, or a subject of a
    kind its record type is not about."""
    if isinstance(answer, Refused):
        return answer
    try:
        feed.check_subject_kind(item.spec, contract.subject_kind(answer))
    except Refused as refusal:
        return refusal
    item.subject = answer
    return item
