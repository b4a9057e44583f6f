"""Records' use cases: department feeds in, signed proofs out, every read of personal data on
the audit trail. Called by the api (gRPC) and the worker (the records.ingest exchange) alike."""

from __future__ import annotations

import base64
import contextvars
import datetime
import hashlib
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import sqlalchemy as sa
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.orm import Session

from govmesh import clock as govmesh_clock
from govmesh import keys
from govmesh import typed_values as values
from govmesh.auth import Caller, Policy, PolicyError
from govmesh.config import Settings
from govmesh.db import Database
from govmesh.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from govmesh.outbox import Outbox
from govmesh.records.v1 import events_pb2, records_pb2
from govmesh.texts import text_problem
from services.records import audit, catalogue, proofs, signing, store
from services.records.subjects import KIND_TO_PROTO, InvalidSubject, SubjectRef, Subjects

MAX_TEXT = 200
MAX_NOTE = 500
MAX_PAGE = 500
MAX_REJECTIONS_REPORTED = 1000

Rejection = records_pb2.RecordRejection


@dataclass
class PublishSummary:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejections: list[records_pb2.RecordRejection] = field(default_factory=list)

    def refuse(self, index: int, record: records_pb2.DepartmentRecord, refusal: Refused) -> None:
        self.rejected += 1
        if len(self.rejections) < MAX_REJECTIONS_REPORTED:
            self.rejections.append(
                Rejection(
                    index=index,
                    department_code=record.department_code[:MAX_TEXT],
                    source_reference=record.source_reference[:MAX_TEXT],
                    code=refusal.code,
                    message=refusal.message,
                )
            )

    def to_proto(self) -> records_pb2.PublishRecordsResponse:
        return records_pb2.PublishRecordsResponse(
            received=self.received,
            stored=self.stored,
            duplicates=self.duplicates,
            rejected=self.rejected,
            rejections=self.rejections,
        )


@dataclass
class Checked:
    """A record that passed every check that needs neither storage nor identity."""

    department: str
    spec: catalogue.RecordTypeSpec
    reference: str
    fields: dict[str, catalogue.Value]
    effective_from: datetime.date
    effective_to: datetime.date | None
    recorded_at: datetime.datetime | None
    supersedes: str
    subject: SubjectRef | None = None


class Refused(Exception):
    def __init__(self, code: records_pb2.RecordRejectionCode.ValueType, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _utc(when: datetime.datetime) -> datetime.datetime:
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)


class Duplicate:
    """A record already stored when its batch was checked."""


DUPLICATE = Duplicate()


def _subject_key(record: records_pb2.DepartmentRecord) -> tuple[str, str]:
    which = record.WhichOneof("subject") or ""
    return which, str(getattr(record, which)) if which else ""


def _time(stamp: Timestamp, name: str) -> datetime.datetime:
    try:
        return stamp.ToDatetime(datetime.UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(name, "INVALID", "is not a valid time") from None


def _date(text: str, name: str, required: bool) -> datetime.date | None:
    if not text:
        if required:
            raise Refused(records_pb2.RECORD_REJECTION_CODE_INVALID_FIELD, f"{name}: is required (YYYY-MM-DD)")
        return None
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise Refused(records_pb2.RECORD_REJECTION_CODE_INVALID_FIELD, f"{name}: {text[:40]!r} is not a date") from None


class SubjectCache:
    """Who an identifier is never changes, so a feed need not ask identity twice: a bounded,
    thread-safe memory of recent answers, keyed by a hash of the identifier (the identifier
    itself is not kept)."""

    def __init__(self, size: int = 200_000) -> None:
        self.size = size
        self._entries: OrderedDict[bytes, SubjectRef] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(key: tuple[str, str]) -> bytes:
        return hashlib.blake2b("\0".join(key).encode(), digest_size=16).digest()

    def get(self, key: tuple[str, str]) -> SubjectRef | None:
        digest = self._key(key)
        with self._lock:
            found = self._entries.get(digest)
            if found is not None:
                self._entries.move_to_end(digest)
            return found

    def put(self, key: tuple[str, str], subject: SubjectRef) -> SubjectRef:
        with self._lock:
            self._entries[self._key(key)] = subject
            if len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return subject


class RecordsApp:
    def __init__(
        self,
        db: Database,
        subjects: Subjects,
        signer: signing.Signer,
        policy: Policy,
        clock: Callable[[], datetime.datetime] = govmesh_clock.now,
    ) -> None:
        self.db = db
        self.subjects = subjects
        self.signer = signer
        self.policy = policy
        self.clock = clock
        self.outbox = Outbox("records", store.outbox, store.inbox)
        self._key_published = False
        self._subjects_seen = SubjectCache()
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

    # -- catalogue ----------------------------------------------------------------------------

    def publish_keys(self) -> None:
        """Record the signing key's public half so proofs it signs verify (idempotent). Done at
        first use rather than at start: the database may not be migrated yet at start."""
        if self._key_published:
            return
        try:
            self._insert_key()
        except sa.exc.IntegrityError:
            pass  # the other process (api or worker) published the same key at the same moment
        self._key_published = True

    def _insert_key(self) -> None:
        with self.db.transaction() as session:
            exists = session.execute(
                sa.select(store.signing_keys.c.key_id).where(store.signing_keys.c.key_id == self.signer.key_id)
            ).first()
            if exists is None:
                session.execute(
                    store.signing_keys.insert().values(
                        key_id=self.signer.key_id,
                        public_key=signing.public_bytes(self.signer.public_key),
                        status="active",
                        active_from=self.clock(),
                    )
                )

    def signing_keys(self) -> dict[str, signing.PublicKey]:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        statuses = {
            "active": records_pb2.SIGNING_KEY_STATUS_ACTIVE,
            "retired": records_pb2.SIGNING_KEY_STATUS_RETIRED,
            "revoked": records_pb2.SIGNING_KEY_STATUS_REVOKED,
        }
        self.publish_keys()
        with self.db.read() as session:
            rows = session.execute(sa.select(store.signing_keys).order_by(store.signing_keys.c.active_from)).all()
        return {
            row.key_id: signing.PublicKey(
                row.key_id,
                Ed25519PublicKey.from_public_bytes(row.public_key),
                statuses[row.status],
                _utc(row.active_from),
                _utc(row.active_until) if row.active_until else None,
            )
            for row in rows
        }

    # -- department feeds ---------------------------------------------------------------------

    def publish(
        self,
        batches: Iterable[Iterable[records_pb2.DepartmentRecord]],
        caller: Caller,
        channel: str,
        subjects: Subjects | None = None,
    ) -> PublishSummary:
        """Store each record once, by (department, source reference).

        Each batch goes through three steps: every check that needs neither storage nor
        identity; identity for the subjects not seen before (outside any transaction, so no
        write lock waits on identity, and concurrently for the api); then one transaction that
        writes the new records and their events. A bad record is refused on its own, before it
        changes anything; the rest go on. `subjects` overrides how identity is reached (the
        worker passes its RPC proxy, which must be called from its own green thread)."""
        concurrent = subjects is None
        subjects = subjects or self.subjects
        summary = PublishSummary()
        for batch in batches:
            first_index = summary.received
            records = list(batch)
            summary.received += len(records)
            checked: list[Checked | Refused | Duplicate] = [self._check(record, caller) for record in records]
            with self.db.read() as session:
                stored = self._stored_references(session, [c for c in checked if isinstance(c, Checked)])
            # Repeats inside the batch are left to the write, which stores the first that passes.
            for position, item in enumerate(checked):
                if isinstance(item, Checked) and (item.department, item.reference) in stored:
                    checked[position] = DUPLICATE
            self._resolve_subjects(records, checked, subjects, concurrent)
            with self.db.transaction() as session:
                written = self._write_batch(session, [c for c in checked if isinstance(c, Checked)], channel)
            for position, item in enumerate(checked):
                if isinstance(item, Refused):
                    summary.refuse(first_index + position, records[position], item)
                elif isinstance(item, Checked) and id(item) in written:
                    refusal = written[id(item)]
                    if refusal is None:
                        summary.stored += 1
                    else:
                        summary.refuse(first_index + position, records[position], refusal)
                else:
                    summary.duplicates += 1
        return summary

    def _stored_references(self, session: Session, items: list[Checked]) -> set[tuple[str, str]]:
        table = store.records
        keys = {(item.department, item.reference) for item in items}
        found: set[tuple[str, str]] = set()
        ordered = sorted(keys)
        for start in range(0, len(ordered), 500):
            chunk = ordered[start : start + 500]
            rows = session.execute(
                sa.select(table.c.department_code, table.c.source_reference).where(
                    sa.tuple_(table.c.department_code, table.c.source_reference).in_(chunk)
                )
            )
            found.update((row.department_code, row.source_reference) for row in rows)
        return found

    def _resolve_subjects(
        self,
        records: list[records_pb2.DepartmentRecord],
        checked: list[Checked | Refused | Duplicate],
        subjects: Subjects,
        concurrent: bool,
    ) -> None:
        pending = [(position, item) for position, item in enumerate(checked) if isinstance(item, Checked)]
        distinct = {_subject_key(records[position]): records[position] for position, _ in pending}

        def who(entry: tuple[tuple[str, str], records_pb2.DepartmentRecord]) -> SubjectRef | Refused:
            try:
                return self._subject_of(entry[1], subjects)
            except Refused as refusal:
                return refusal

        if concurrent:
            # Pool threads do not inherit context variables: carry the trace into each call.
            context = contextvars.copy_context()
            answers = list(self._identity_pool.map(lambda entry: context.copy().run(who, entry), distinct.items()))
        else:
            answers = [who(entry) for entry in distinct.items()]
        found = dict(zip(distinct, answers, strict=True))
        for position, item in pending:
            subject = found[_subject_key(records[position])]
            if isinstance(subject, SubjectRef) and subject.kind not in item.spec.subject_kinds:
                subject = Refused(
                    records_pb2.RECORD_REJECTION_CODE_INVALID_SUBJECT,
                    f"subject: {item.spec.code!r} records are not about {subject.kind.value}s",
                )
            if isinstance(subject, Refused):
                checked[position] = subject
            else:
                item.subject = subject

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
                    if self._record_id(session, item.department, item.reference) is not None:
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
            subject = item.subject
            assert subject is not None
            supersedes = self._superseded(session, item) if item.supersedes else None
            record_id = str(uuid.uuid4())
            rows.append(
                {
                    "record_id": record_id,
                    "department_code": item.department,
                    "record_type": item.spec.code,
                    "source_reference": item.reference,
                    "subject_id": subject.subject_id,
                    "subject_masked_identifier": subject.masked_identifier,
                    "subject_kind": subject.kind.value,
                    "fields": values.fields_to_json(item.fields),
                    "effective_from": item.effective_from,
                    "effective_to": item.effective_to,
                    "recorded_at": item.recorded_at or now,
                    "supersedes_record_id": supersedes,
                    "superseded_by": None,
                    "channel": channel,
                    "stored_at": now,
                }
            )
            if supersedes is not None:
                superseded.append((supersedes, record_id))
            event = events_pb2.RecordPublished(
                record_id=record_id,
                department_code=item.department,
                record_type=item.spec.code,
                source_reference=item.reference,
                subject_id=subject.subject_id,
                subject_masked_identifier=subject.masked_identifier,
                subject_kind=KIND_TO_PROTO[subject.kind],
                effective_from=item.effective_from.isoformat(),
                effective_to=item.effective_to.isoformat() if item.effective_to else "",
                supersedes_record_id=supersedes or "",
                channel=events_pb2.INGEST_CHANNEL_GRPC if channel == "grpc" else events_pb2.INGEST_CHANNEL_BROKER,
            )
            event.published_at.FromDatetime(now)
            events.append((event, subject.subject_id))
        session.execute(store.records.insert(), rows)
        for old, new in superseded:
            session.execute(store.records.update().where(store.records.c.record_id == old).values(superseded_by=new))
        self.outbox.add_many(session, events)

    def _check(self, record: records_pb2.DepartmentRecord, caller: Caller) -> Checked | Refused:
        """Everything that can be known about a record without storage or identity."""
        try:
            department = catalogue.department(record.department_code)
            if department is None:
                raise Refused(
                    records_pb2.RECORD_REJECTION_CODE_UNKNOWN_DEPARTMENT,
                    f"department_code: {record.department_code[:64]!r} is not a department of the catalogue",
                )
            if not caller.may_publish(department.code):
                raise Refused(
                    records_pb2.RECORD_REJECTION_CODE_NOT_PERMITTED,
                    f"department_code: caller {caller.caller_id!r} may not publish for {department.code!r}",
                )
            spec = catalogue.record_type(department.code, record.record_type)
            if spec is None:
                raise Refused(
                    records_pb2.RECORD_REJECTION_CODE_UNKNOWN_RECORD_TYPE,
                    f"record_type: {record.record_type[:64]!r} is not a record type of {department.code!r}",
                )
            reference = record.source_reference.strip()
            for name, text in (
                ("source_reference", reference),
                ("supersedes_source_reference", record.supersedes_source_reference),
            ):
                problem = "is required" if name == "source_reference" and not text else text_problem(text, MAX_TEXT)
                if problem:
                    raise Refused(records_pb2.RECORD_REJECTION_CODE_INVALID_FIELD, f"{name}: {problem}")
            effective_from = _date(record.effective_from, "effective_from", required=True)
            effective_to = _date(record.effective_to, "effective_to", required=False)
            assert effective_from is not None
            if effective_to and effective_to < effective_from:
                raise Refused(
                    records_pb2.RECORD_REJECTION_CODE_INVALID_FIELD, "effective_to: lies before effective_from"
                )
            try:
                fields = values.fields_from_proto(record.fields, "fields.")
            except values.UnreadableValue as exc:
                raise Refused(records_pb2.RECORD_REJECTION_CODE_INVALID_FIELD, str(exc)) from None
            problems = catalogue.validate_fields(spec, fields)
            if problems:
                raise Refused(
                    records_pb2.RECORD_REJECTION_CODE_INVALID_FIELD,
                    "; ".join(f"fields.{p.message}" for p in problems[:5]),
                )
        except Refused as refusal:
            return refusal
        recorded_at = None
        if record.HasField("recorded_at"):
            try:
                recorded_at = record.recorded_at.ToDatetime(datetime.UTC)
            except (ValueError, OverflowError):
                return Refused(records_pb2.RECORD_REJECTION_CODE_INVALID_FIELD, "recorded_at: is not a valid time")
        return Checked(
            department.code,
            spec,
            reference,
            fields,
            effective_from,
            effective_to,
            recorded_at,
            record.supersedes_source_reference,
        )

    def _superseded(self, session: Session, item: Checked) -> str:
        """The record a correction replaces: the same department's, about the same subject, of
        the same type, and not replaced already (a record has one current version)."""
        table = store.records
        row = session.execute(
            sa.select(table.c.record_id, table.c.subject_id, table.c.record_type, table.c.superseded_by).where(
                table.c.department_code == item.department, table.c.source_reference == item.supersedes
            )
        ).first()
        if row is None:
            problem = "no record of this department has that reference"
        elif item.subject is None or row.subject_id != item.subject.subject_id or row.record_type != item.spec.code:
            problem = "names a record about another subject or of another record type"
        elif row.superseded_by is not None:
            problem = "names a record that a later one already replaced; correct the latest version"
        else:
            return str(row.record_id)
        raise Refused(records_pb2.RECORD_REJECTION_CODE_UNKNOWN_SUPERSEDED, f"supersedes_source_reference: {problem}")

    def _record_id(self, session: Session, department: str, reference: str) -> str | None:
        row = session.execute(
            sa.select(store.records.c.record_id).where(
                store.records.c.department_code == department, store.records.c.source_reference == reference
            )
        ).first()
        return None if row is None else str(row.record_id)

    def _subject_of(self, record: records_pb2.DepartmentRecord, subjects: Subjects) -> SubjectRef:
        which = record.WhichOneof("subject")
        if which is None:
            raise Refused(
                records_pb2.RECORD_REJECTION_CODE_INVALID_SUBJECT, "subject: give subject_identifier or subject_id"
            )
        key = _subject_key(record)
        subject = self._subjects_seen.get(key)
        if subject is None:
            subject = self._subjects_seen.put(key, self._ask_identity(record, which, subjects))
        return subject

    def _ask_identity(self, record: records_pb2.DepartmentRecord, which: str, subjects: Subjects) -> SubjectRef:
        try:
            if which == "subject_id":
                found = subjects.resolve(subject_id=record.subject_id)
                if found is None:
                    raise Refused(
                        records_pb2.RECORD_REJECTION_CODE_INVALID_SUBJECT, "subject_id: identity knows no such subject"
                    )
                return found
            name = " ".join(record.subject_display_name.split())
            existing = None if name else subjects.resolve(identifier=record.subject_identifier)
            if existing is not None:
                return existing
            if not name:
                raise Refused(
                    records_pb2.RECORD_REJECTION_CODE_INVALID_SUBJECT,
                    "subject_display_name: needed to register a subject identity does not know yet",
                )
            return subjects.register(record.subject_identifier, name)
        except InvalidSubject as exc:
            raise Refused(records_pb2.RECORD_REJECTION_CODE_INVALID_SUBJECT, f"subject_identifier: {exc}") from None

    # -- proofs ---------------------------------------------------------------------------------

    def get_proof(
        self, request: records_pb2.GetProofRequest, caller: Caller, subjects: Subjects | None = None
    ) -> records_pb2.Proof:
        """Issue a proof (see the contract). `subjects` overrides how identity is reached."""
        purpose = self._purpose(request.purpose if request.HasField("purpose") else None)
        purpose_kind = purpose.WhichOneof("basis") or ""
        purpose_value = getattr(purpose, purpose_kind)
        spec = proofs.proof_type(request.proof_type)
        if spec is None:
            raise InvalidArgument(
                "proof_type", "UNKNOWN", f"{request.proof_type[:64]!r} is not a proof type of the platform"
            )
        try:
            parameters = proofs.resolve_parameters(spec, dict(request.parameters))
        except proofs.ParameterError as exc:
            raise InvalidArgument(f"parameters.{exc.parameter}", "INVALID", exc.reason) from None
        problem = text_problem(request.request_id, MAX_TEXT)
        if problem:
            raise InvalidArgument("request_id", "INVALID", problem)
        allowed = caller.may_read_proof(spec.code, purpose_kind, purpose_value)
        refusal = PermissionDenied(
            f"caller {caller.caller_id!r} has no right to {spec.code!r} proofs for this purpose; the refusal is audited"
        )
        # A caller without the right learns nothing, not even whether the subject is registered.
        subject = self._subject_for_read(
            request.identifier, request.subject_id, "subject", refusal=None if allowed else refusal, subjects=subjects
        )
        if not allowed:
            with self.db.transaction() as session:
                self._audit(session, caller, subject, spec.code, purpose, audit.Outcome.DENIED, "")
            raise refusal
        if subject.kind not in spec.subject_kinds:
            raise InvalidArgument(
                "proof_type", "WRONG_SUBJECT_KIND", f"{spec.code!r} is not issued about {subject.kind.value}s"
            )

        self.publish_keys()
        fingerprint = hashlib.sha256(
            request.SerializeToString(deterministic=True) + caller.caller_id.encode()
        ).hexdigest()
        request_key = f"{caller.caller_id}:{request.request_id}" if request.request_id else None
        with self.db.transaction() as session:
            # Take the trail's head first: the entry needs it anyway, and it makes two retries
            # of one request_id wait for each other instead of both issuing.
            session.execute(sa.select(store.audit_head).where(store.audit_head.c.id == 1).with_for_update()).one()
            if request_key is not None:
                earlier = session.execute(
                    sa.select(store.issued_proofs).where(store.issued_proofs.c.request_key == request_key)
                ).first()
                if earlier is not None:
                    if earlier.request_fingerprint != fingerprint:
                        raise AlreadyExists(f"request_id {request.request_id!r} was used for a different request")
                    return records_pb2.Proof.FromString(earlier.proof)
            now = self.clock()
            rows = session.execute(
                sa.select(store.records).where(
                    store.records.c.subject_id == subject.subject_id,
                    sa.tuple_(store.records.c.department_code, store.records.c.record_type).in_(
                        list(spec.source_record_types)
                    ),
                )
            ).all()
            as_of = govmesh_clock.shanghai_date(now)  # a proof speaks of the province's calendar day
            claims = proofs.derive_claims(spec, [self._stored(row) for row in rows], parameters, as_of)
            proof = records_pb2.Proof(
                proof_id=str(uuid.uuid4()),
                subject_id=subject.subject_id,
                subject_masked_identifier=subject.masked_identifier,
                subject_kind=KIND_TO_PROTO[subject.kind],
                proof_type=spec.code,
                issuing_department_code=spec.issuing_department_code,
                claims=values.fields_to_proto(claims),
                parameters=parameters,
                issued_to=caller.caller_id,
                purpose=purpose,
            )
            proof.issued_at.FromDatetime(now)
            proof.valid_until.FromDatetime(now + spec.validity)
            self.signer.sign(proof)
            session.execute(
                store.issued_proofs.insert().values(
                    proof_id=proof.proof_id,
                    request_key=request_key,
                    request_fingerprint=fingerprint,
                    proof=proof.SerializeToString(deterministic=True),
                    issued_at=now,
                )
            )
            self._audit(session, caller, subject, spec.code, purpose, audit.Outcome.GRANTED, proof.proof_id)
            issued = events_pb2.ProofIssued(
                proof_id=proof.proof_id,
                proof_type=spec.code,
                issuing_department_code=spec.issuing_department_code,
                subject_id=subject.subject_id,
                subject_masked_identifier=subject.masked_identifier,
                issued_to=caller.caller_id,
                purpose=purpose,
                issued_at=proof.issued_at,
                valid_until=proof.valid_until,
                key_id=proof.key_id,
            )
            self.outbox.add(session, issued, subject=subject.subject_id)
        return proof

    def _stored(self, row: sa.Row[tuple[object, ...]]) -> proofs.StoredRecord:
        return proofs.StoredRecord(
            record_id=row.record_id,
            department_code=row.department_code,
            record_type=row.record_type,
            source_reference=row.source_reference,
            fields=values.fields_from_json(row.fields),
            effective_from=row.effective_from,
            effective_to=row.effective_to,
            recorded_at=_utc(row.recorded_at),
            superseded=row.superseded_by is not None,
        )

    def _purpose(self, purpose: records_pb2.Purpose | None) -> records_pb2.Purpose:
        """The purpose as it will be kept (trimmed), after refusing what must not be kept. The
        same object is checked for rights, audited, signed into the proof and published."""
        kind = purpose.WhichOneof("basis") if purpose is not None else None
        if purpose is None or kind is None:
            raise InvalidArgument("purpose", "MISSING", "is required: give a case_id or a legal_basis")
        value = getattr(purpose, kind).strip()
        if not value:
            raise InvalidArgument(f"purpose.{kind}", "EMPTY", "must not be empty")
        note = purpose.note.strip()
        for name, text, limit in ((f"purpose.{kind}", value, MAX_TEXT), ("purpose.note", note, MAX_NOTE)):
            problem = text_problem(text, limit)
            if problem:
                raise InvalidArgument(name, "INVALID", problem)
        cleaned = records_pb2.Purpose(note=note)
        setattr(cleaned, kind, value)
        return cleaned

    def _subject_for_read(
        self,
        identifier: str,
        subject_id: str,
        field_name: str,
        refusal: Exception | None = None,
        subjects: Subjects | None = None,
    ) -> SubjectRef:
        if not identifier and not subject_id:
            raise InvalidArgument(field_name, "MISSING", "give an identifier or a subject_id")
        try:
            subject = (subjects or self.subjects).resolve(identifier=identifier, subject_id=subject_id)
        except InvalidSubject as exc:
            raise InvalidArgument("identifier", "INVALID_IDENTIFIER", str(exc).removeprefix("identifier: ")) from None
        if subject is None:
            if refusal is not None:
                raise refusal
            raise NotFound("no subject is registered under that " + ("identifier" if identifier else "subject_id"))
        return subject

    def verify_proof(self, proof: records_pb2.Proof) -> records_pb2.VerifyProofResponse:
        now = self.clock()
        response = records_pb2.VerifyProofResponse(problems=signing.verify(proof, self.signing_keys(), now))
        response.valid = not response.problems
        response.checked_at.FromDatetime(now)
        return response

    # -- audit trail ----------------------------------------------------------------------------

    def _audit(
        self,
        session: Session,
        caller: Caller,
        subject: SubjectRef,
        proof_type: str,
        purpose: records_pb2.Purpose,
        outcome: audit.Outcome,
        proof_id: str,
    ) -> audit.Entry:
        head = session.execute(sa.select(store.audit_head).where(store.audit_head.c.id == 1).with_for_update()).one()
        kind = purpose.WhichOneof("basis") or ""
        entry = audit.chain(
            audit.Entry(
                sequence=head.sequence + 1,
                accessed_at=self.clock(),
                caller_id=caller.caller_id,
                caller_name=caller.name,
                subject_id=subject.subject_id,
                subject_masked_identifier=subject.masked_identifier,
                proof_type=proof_type,
                purpose_kind=kind,
                purpose_value=getattr(purpose, kind) if kind else "",
                purpose_note=purpose.note,
                outcome=outcome,
                proof_id=proof_id,
                previous_hash=head.entry_hash,
            )
        )
        session.execute(store.audit_entries.insert().values(**{**entry.__dict__, "outcome": outcome.value}))
        session.execute(
            store.audit_head.update()
            .where(store.audit_head.c.id == 1)
            .values(sequence=entry.sequence, entry_hash=entry.entry_hash)
        )
        accessed = events_pb2.DataAccessed(
            sequence=entry.sequence,
            entry_hash=entry.entry_hash,
            subject_id=subject.subject_id,
            subject_masked_identifier=subject.masked_identifier,
            caller_id=caller.caller_id,
            caller_name=caller.name,
            proof_type=proof_type,
            purpose=purpose,
            outcome=_OUTCOMES[outcome],
            proof_id=proof_id,
        )
        accessed.accessed_at.FromDatetime(entry.accessed_at)
        self.outbox.add(session, accessed, subject=subject.subject_id)
        return entry

    def list_accesses(self, request: records_pb2.ListAccessesRequest) -> records_pb2.ListAccessesResponse:
        subject = self._subject_for_read(request.identifier, request.subject_id, "subject")
        size = request.page_size or 50
        if not 1 <= size <= MAX_PAGE:
            raise InvalidArgument("page_size", "OUT_OF_RANGE", f"must be 1 to {MAX_PAGE}")
        table = store.audit_entries
        query = sa.select(table).where(table.c.subject_id == subject.subject_id)
        if request.page_token:
            try:
                before = int(base64.urlsafe_b64decode(request.page_token.encode()).decode())
            except (ValueError, UnicodeDecodeError):
                before = 0
            if not 0 < before < 2**63:
                raise InvalidArgument("page_token", "INVALID", "is not a token this service gave out")
            query = query.where(table.c.sequence < before)
        if request.HasField("start_time"):
            query = query.where(table.c.accessed_at >= _time(request.start_time, "start_time"))
        if request.HasField("end_time"):
            query = query.where(table.c.accessed_at < _time(request.end_time, "end_time"))
        with self.db.read() as session:
            rows = session.execute(query.order_by(table.c.sequence.desc()).limit(size + 1)).all()
        response = records_pb2.ListAccessesResponse(entries=[_access_entry(row) for row in rows[:size]])
        if len(rows) > size:
            response.next_page_token = base64.urlsafe_b64encode(str(rows[size - 1].sequence).encode()).decode()
        return response

    def verify_audit_trail(self) -> records_pb2.VerifyAuditTrailResponse:
        table = store.audit_entries
        with self.db.read() as session:

            def entries() -> Iterator[audit.Entry]:
                result = session.execute(sa.select(table).order_by(table.c.sequence)).yield_per(1000)
                for row in result:
                    yield _entry(row)

            def hash_exists(entry_hash: bytes) -> bool:
                found = session.execute(sa.select(table.c.sequence).where(table.c.entry_hash == entry_hash).limit(1))
                return found.first() is not None

            verification = audit.verify(entries(), hash_exists)
            head = session.execute(sa.select(store.audit_head).where(store.audit_head.c.id == 1)).one()
        if verification.intact and (head.sequence, head.entry_hash) != (
            verification.entries_checked,
            verification.head_hash,
        ):
            # The chain holds but ends early: its newest entries were removed.
            verification = audit.Verification(
                verification.entries_checked,
                verification.head_hash,
                audit.Break(
                    verification.entries_checked + 1,
                    audit.BreakKind.REMOVED,
                    f"the trail ends at entry {verification.entries_checked}, its head says {head.sequence}",
                ),
            )
        now = self.clock()
        response = records_pb2.VerifyAuditTrailResponse(
            intact=verification.intact, entries_checked=verification.entries_checked, head_hash=verification.head_hash
        )
        if verification.first_break is not None:
            found = verification.first_break
            response.first_break.CopyFrom(
                records_pb2.AuditBreak(sequence=found.sequence, kind=_BREAKS[found.kind], message=found.message)
            )
        response.checked_at.FromDatetime(now)
        return response


_OUTCOMES = {
    audit.Outcome.GRANTED: records_pb2.ACCESS_OUTCOME_GRANTED,
    audit.Outcome.DENIED: records_pb2.ACCESS_OUTCOME_DENIED,
}
_BREAKS = {
    audit.BreakKind.ALTERED: records_pb2.AUDIT_BREAK_KIND_ALTERED,
    audit.BreakKind.REMOVED: records_pb2.AUDIT_BREAK_KIND_REMOVED,
    audit.BreakKind.REORDERED: records_pb2.AUDIT_BREAK_KIND_REORDERED,
}


def _entry(row: sa.Row[tuple[object, ...]]) -> audit.Entry:
    m = row._mapping
    return audit.Entry(**{**dict(m), "accessed_at": _utc(m["accessed_at"]), "outcome": audit.Outcome(m["outcome"])})


def _access_entry(row: sa.Row[tuple[object, ...]]) -> records_pb2.AccessEntry:
    entry = _entry(row)
    purpose = records_pb2.Purpose(note=entry.purpose_note)
    if entry.purpose_kind:
        setattr(purpose, entry.purpose_kind, entry.purpose_value)
    message = records_pb2.AccessEntry(
        sequence=entry.sequence,
        caller_id=entry.caller_id,
        caller_name=entry.caller_name,
        subject_id=entry.subject_id,
        subject_masked_identifier=entry.subject_masked_identifier,
        proof_type=entry.proof_type,
        purpose=purpose,
        outcome=_OUTCOMES[entry.outcome],
        proof_id=entry.proof_id,
        previous_hash=entry.previous_hash,
        entry_hash=entry.entry_hash,
    )
    message.accessed_at.FromDatetime(entry.accessed_at)
    return message


SIGNING_KEY_NAME = "records-proof-signing"


def build(settings: Settings, db: Database, subjects: Subjects) -> RecordsApp:
    """The composition root shared by both processes: the api reaches identity over gRPC, the
    worker over nameko RPC."""
    signer = signing.Signer(keys.signing_key(settings.key_dir, SIGNING_KEY_NAME))
    return RecordsApp(db, subjects, signer, Policy.load(settings.policy_path))
