"""Records' access log through its use cases, against its real database (SQLite and PostgreSQL),
with identity stood in: reads write entries without a shared lock, the sequencer seals them into
an RFC 9162 tree with signed heads, the citizen's entries come with proofs that verify with
nothing but the public key, and tampering of every kind is found."""

from __future__ import annotations

import base64
import datetime
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from dataclasses import replace
from pathlib import Path

import pytest
import rfc8785
import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.orm import Session

from govmesh import keys
from govmesh.auth import Caller, Policy
from govmesh.db import Database, service_database
from govmesh.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from govmesh.identity.v1 import identity_pb2
from govmesh.parties import Party
from govmesh.records.v1 import records_pb2
from services.records import queries, repository, signing, store
from services.records.app import RecordsApp
from services.records.clients import InvalidSubject
from services.records.domain import access_log
from tests.support.mesh import ROOT
from tests.support.people import LUO_FANG, XU_WEI, resident_id
from tests.support.rfc9162 import verify_consistency, verify_inclusion
from tests.support.standins import subject_of

POLICY = Policy.load(ROOT / "policy" / "dev.yaml")
HOUSING = POLICY.callers["housing"]
STATISTICS = POLICY.callers["statistics"]  # no right to GetProof at all
EDUCATION = POLICY.callers["education"]  # GetProof, but not property titles
UNREGISTERED = resident_id("33010619770707123")


class Identity:
    """Identity stood in: the registered people, and the pseudonym an unregistered one would get."""

    parallel = True

    def __init__(self, registered: list[str]) -> None:
        self.registered = set(registered)
        self.lookups = 0

    def register_many(self, people: Sequence[tuple[str, str]]) -> list[Party | InvalidSubject]:
        raise AssertionError("reads never register anyone")

    def resolve(self, *, identifier: str = "", subject_id: str = "", allow_unregistered: bool = False) -> Party | None:
        self.lookups += 1
        if identifier and not identifier[:17].isdigit():
            raise InvalidSubject("identifier: is not a resident identity number")
        known = {subject_of(i): i for i in self.registered}
        key = subject_of(identifier) if identifier else subject_id
        if key in known or (identifier and allow_unregistered):
            return Party(key, "330106********" + (identifier or known[key])[-4:], identity_pb2.SUBJECT_KIND_RESIDENT)
        return None


class Log:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.key_dir = Path(tempfile.mkdtemp(prefix="records-keys-"))
        ring = keys.KeyRing(self.key_dir, "proofs", recheck_seconds=0)
        self.key = ring.signer().public
        self.app = RecordsApp(db, signing.Signer(ring), POLICY)
        self.identity = Identity([XU_WEI, LUO_FANG])

    def read(self, identifier: str, caller: Caller = HOUSING, case: str = "case-1", **fields: str) -> object:
        request = records_pb2.GetProofRequest(
            identifier=identifier, proof_type="property_title", purpose=records_pb2.Purpose(case_id=case), **fields
        )
        try:
            return self.app.get_proof(request, caller, self.identity)
        except PermissionDenied as refusal:
            return refusal

    def tracker(self, identifier: str, page_size: int = 50) -> records_pb2.ListAccessesResponse:
        request = records_pb2.ListAccessesRequest(identifier=identifier, page_size=page_size)
        return self.app.list_accesses(request, self.identity)

    def seal_all(self) -> None:
        while self.app.seal() is not None:
            pass

    def verify(self) -> records_pb2.VerifyAuditTrailResponse:
        return self.app.verify_audit_trail()

    def sql(self, *statements: str) -> None:
        with self.db.engine.begin() as connection:
            for statement in statements:
                connection.execute(sa.text(statement))

    def count(self, table: sa.Table) -> int:
        with self.db.read() as session:
            return int(session.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


@pytest.fixture
def log(database_url: str) -> Iterator[Log]:
    db = service_database("records", database_url)
    db.migrate()
    yield Log(db)
    db.dispose()


def head_holds(head: records_pb2.SignedTreeHead, key: Ed25519PublicKey) -> bool:
    signed = rfc8785.dumps(
        {
            "log_id": head.log_id,
            "tree_size": head.tree_size,
            "root_hash": base64.b64encode(head.root_hash).decode(),
            "timestamp": head.timestamp,
        }
    )
    try:
        key.verify(head.signature, signed)
    except InvalidSignature:
        return False
    return True


def test_after_a_rotation_new_heads_carry_the_new_key_and_the_old_heads_still_hold(log: Log) -> None:
    log.read(XU_WEI, case="before")
    log.seal_all()
    old = log.tracker(XU_WEI).tree_head
    new_key = keys.rotate(log.key_dir, "proofs", after_seconds=0, grace_seconds=0)
    log.read(LUO_FANG, case="after")
    log.seal_all()
    head = log.tracker(LUO_FANG).tree_head
    assert head.key_id == new_key.key_id != old.key_id and head_holds(head, new_key.public)
    recorded = log.app.signing_keys()
    assert recorded[old.key_id].status == records_pb2.SIGNING_KEY_STATUS_RETIRED
    assert recorded[new_key.key_id].status == records_pb2.SIGNING_KEY_STATUS_ACTIVE
    assert log.verify().intact  # heads signed by either key hold
    keys.revoke(log.key_dir, "proofs", old.key_id)
    assert log.app.signing_keys()[old.key_id].status == records_pb2.SIGNING_KEY_STATUS_REVOKED
    found = broken(log)  # a head signed by a revoked key no longer vouches for the log, and says so
    assert found.kind == records_pb2.AUDIT_BREAK_KIND_TREE_HEAD_ALTERED
    assert f"signed by key {old.key_id}, since revoked" in found.message and "altered" not in found.message


def test_a_key_kept_the_old_way_keeps_the_start_it_was_published_with_after_its_first_rotation(log: Log) -> None:
    """The first rotation moves a one-file key into the ring, dated by its file, which a copy or a
    restore makes later than the key's real start: proofs signed before that still verify."""
    proof = log.read(XU_WEI)
    assert isinstance(proof, records_pb2.Proof)
    key_file = log.key_dir / f"{keys.RINGS['proofs']}.pem"
    later = time.time() + 86_400  # the file copied in tomorrow, as far as its date says
    os.utime(key_file, (later, later))
    keys.rotate(log.key_dir, "proofs", after_seconds=0, grace_seconds=0)
    assert log.app.verify_proof(proof).valid


def test_a_revocation_holds_at_once_in_a_process_that_has_not_read_the_ring_again(log: Log) -> None:
    """The first process to read the revocation records it; one whose ring is a minute old (a
    Secret still on its way) refuses what the key signed all the same."""
    proof = log.read(XU_WEI)
    assert isinstance(proof, records_pb2.Proof)
    stale = RecordsApp(log.db, signing.Signer(keys.KeyRing(log.key_dir, "proofs", recheck_seconds=3600)), POLICY)
    assert stale.verify_proof(proof).valid
    keys.rotate(log.key_dir, "proofs", after_seconds=0, grace_seconds=0)
    keys.revoke(log.key_dir, "proofs", proof.key_id)
    log.app.publish_keys()  # this process read the ring again, and recorded what it says
    refused = stale.verify_proof(proof)
    assert not refused.valid
    assert [p.code for p in refused.problems] == [records_pb2.PROOF_PROBLEM_CODE_KEY_NOT_VALID]


def test_every_entry_the_citizen_sees_is_proved_in_a_signed_tree_head(log: Log) -> None:
    for n in range(5):
        log.read(XU_WEI, case=f"case-{n}")
        log.read(LUO_FANG, case=f"case-{n}")
    log.read(XU_WEI, caller=EDUCATION)  # refused: on the tracker too
    before = log.tracker(XU_WEI)
    assert len(before.entries) == 6 and not any(entry.sealed for entry in before.entries)
    assert not before.HasField("tree_head")
    log.seal_all()
    page = log.tracker(XU_WEI)
    head = page.tree_head
    assert head.tree_size == 11 and head_holds(head, log.key)
    assert page.entries[0].outcome == records_pb2.ACCESS_OUTCOME_DENIED
    for entry in page.entries:
        assert entry.sealed and entry.subject_id == subject_of(XU_WEI)
        assert verify_inclusion(
            entry.leaf_index, head.tree_size, entry.leaf_bytes, list(entry.inclusion_proof), head.root_hash
        )
        assert entry.caller_id.encode() in entry.leaf_bytes and entry.purpose.case_id.encode() in entry.leaf_bytes
    assert log.verify().intact


def test_pages_and_time_windows_list_each_entry_once_each_with_its_proof(log: Log) -> None:
    for n in range(7):
        log.read(XU_WEI, case=f"case-{n}")
        log.read(LUO_FANG, case=f"case-{n}")
    log.seal_all()
    log.read(XU_WEI, case="case-late")  # not sealed yet: on a page, said so, with no proof
    cases, token = [], ""
    while True:
        request = records_pb2.ListAccessesRequest(identifier=XU_WEI, page_size=3, page_token=token)
        page = log.app.list_accesses(request, log.identity)
        head = page.tree_head
        for entry in page.entries:
            assert entry.subject_id == subject_of(XU_WEI)
            assert entry.sealed == (entry.purpose.case_id != "case-late")
            assert not entry.sealed or verify_inclusion(
                entry.leaf_index, head.tree_size, entry.leaf_bytes, list(entry.inclusion_proof), head.root_hash
            )
        cases += [entry.purpose.case_id for entry in page.entries]
        if not page.next_page_token:
            break
        token = page.next_page_token
    assert cases == ["case-late", *(f"case-{n}" for n in reversed(range(7)))]
    newest_first = log.tracker(XU_WEI).entries
    window = records_pb2.ListAccessesRequest(
        identifier=XU_WEI, start_time=newest_first[5].accessed_at, end_time=newest_first[1].accessed_at
    )
    inside = log.app.list_accesses(window, log.identity).entries
    assert [entry.purpose.case_id for entry in inside] == [f"case-{n}" for n in (5, 4, 3, 2)]
    assert all(entry.sealed for entry in inside)


def test_heads_only_grow_and_any_two_are_consistent(log: Log) -> None:
    heads = []
    for batch in (1, 3, 4, 9):
        for n in range(batch):
            log.read(LUO_FANG, case=f"case-{n}")
        sealed = log.app.seal()
        assert sealed is not None
        heads.append(log.app.tree_head(records_pb2.GetTreeHeadRequest()).tree_head)
    assert [h.tree_size for h in heads] == [1, 4, 8, 17]
    for i, first in enumerate(heads):
        for second in heads[i:]:
            answer = log.app.consistency_proof(
                records_pb2.GetConsistencyProofRequest(first_size=first.tree_size, second_size=second.tree_size)
            )
            assert verify_consistency(
                first.tree_size, second.tree_size, list(answer.proof), first.root_hash, second.root_hash
            )
    kept = log.app.tree_head(records_pb2.GetTreeHeadRequest(tree_size=4)).tree_head
    assert kept == heads[1]


def test_bad_tree_head_and_consistency_requests_name_the_field(log: Log) -> None:
    with pytest.raises(NotFound, match="no tree head is signed yet"):
        log.app.tree_head(records_pb2.GetTreeHeadRequest())
    log.read(XU_WEI)
    log.seal_all()
    with pytest.raises(NotFound, match="size 7"):
        log.app.tree_head(records_pb2.GetTreeHeadRequest(tree_size=7))
    for first, second, field in (
        (0, 1, "first_size"),
        (2, 2, "first_size"),
        (1, 2, "second_size"),
        (-1, 1, "first_size"),
    ):
        with pytest.raises(InvalidArgument) as refused:
            log.app.consistency_proof(records_pb2.GetConsistencyProofRequest(first_size=first, second_size=second))
        assert refused.value.field == field
    with pytest.raises(InvalidArgument) as refused:
        log.app.tree_head(records_pb2.GetTreeHeadRequest(tree_size=-3))
    assert refused.value.field == "tree_size"


def test_a_caller_with_no_right_at_all_is_refused_on_the_persons_tracker(log: Log) -> None:
    refusal = log.read(XU_WEI, caller=STATISTICS)
    assert isinstance(refusal, PermissionDenied)
    log.seal_all()
    (entry,) = log.tracker(XU_WEI).entries
    assert entry.caller_id == "statistics" and entry.outcome == records_pb2.ACCESS_OUTCOME_DENIED


def test_a_refusal_takes_the_same_path_whether_or_not_the_person_is_registered(log: Log) -> None:
    lookups, entries = log.identity.lookups, log.count(store.access_entries)
    registered = log.read(XU_WEI, caller=EDUCATION)
    unknown = log.read(UNREGISTERED, caller=EDUCATION)
    assert isinstance(registered, PermissionDenied) and isinstance(unknown, PermissionDenied)
    assert str(registered) == str(unknown)
    # One lookup and one entry each: nothing tells the two apart.
    assert log.identity.lookups == lookups + 2 and log.count(store.access_entries) == entries + 2
    # The unregistered person's refusal waits on the tracker they will have when registered.
    log.identity.registered.add(UNREGISTERED)
    log.seal_all()
    (entry,) = log.tracker(UNREGISTERED).entries
    assert entry.outcome == records_pb2.ACCESS_OUTCOME_DENIED and entry.sealed
    # An allowed caller is told plainly that nobody is registered: it had the right to ask.
    with pytest.raises(NotFound):
        log.app.get_proof(
            records_pb2.GetProofRequest(
                identifier=resident_id("33010619880808234"),
                proof_type="property_title",
                purpose=records_pb2.Purpose(case_id="c"),
            ),
            HOUSING,
            log.identity,
        )


def test_a_request_id_asked_again_gets_its_proof_back_and_reads_nothing_new(log: Log) -> None:
    first = log.read(XU_WEI, request_id="case-1/property_title/applicant")
    entries, proofs_kept = log.count(store.access_entries), log.count(store.issued_proofs)
    again = log.read(XU_WEI, request_id="case-1/property_title/applicant")
    assert isinstance(first, records_pb2.Proof) and again == first
    # The same id about another case is a client bug, refused naming request_id.
    with pytest.raises(AlreadyExists, match=r"^request_id"):
        log.read(XU_WEI, case="case-2", request_id="case-1/property_title/applicant")
    assert (log.count(store.access_entries), log.count(store.issued_proofs)) == (entries, proofs_kept)


def test_each_read_queues_its_events_with_its_entry_in_one_write(log: Log) -> None:
    """A proof queues DataAccessed (numbered as its entry) and ProofIssued, a refusal its
    DataAccessed alone, a repeated request id nothing: written with the entry, or not at all."""

    def queued() -> list[tuple[str, dict[str, object]]]:
        with log.db.read() as session:
            rows = session.execute(sa.select(store.outbox).order_by(store.outbox.c.seq)).all()
        return [(row.routing_key, json.loads(row.body)) for row in rows]

    def entries() -> list[tuple[int, str, str]]:
        with log.db.read() as session:
            table = store.access_entries
            query = sa.select(table.c.entry_id, table.c.outcome, table.c.proof_id).order_by(table.c.entry_id)
            return [tuple(row) for row in session.execute(query)]

    proof = log.read(XU_WEI, request_id="once")
    log.read(XU_WEI, request_id="once")
    log.read(LUO_FANG, caller=EDUCATION)
    assert isinstance(proof, records_pb2.Proof)
    (granted, granted_outcome, granted_proof), (refused, refused_outcome, refused_proof) = entries()
    assert (granted_outcome, granted_proof, refused_outcome, refused_proof) == ("granted", proof.proof_id, "denied", "")
    events = queued()
    assert [key for key, _ in events] == ["data_accessed", "proof_issued", "data_accessed"]
    assert [int(str(body["sequence"])) for key, body in events if key == "data_accessed"] == [granted, refused]
    assert events[1][1]["proofId"] == proof.proof_id


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_read_commits_while_another_reads_entry_is_still_uncommitted(log: Log) -> None:
    """No shared row is locked: a proof completes while another read's transaction, which has
    written its entry, is still open (the hash chain's head lock made it wait)."""
    log.read(LUO_FANG)
    with log.db.transaction() as session:
        request = records_pb2.GetProofRequest(
            identifier=XU_WEI, proof_type="property_title", purpose=records_pb2.Purpose(case_id="held")
        )
        subject = log.identity.resolve(identifier=XU_WEI)
        assert subject is not None
        log.app._record_access(  # the held read, in the middle of its transaction
            session, HOUSING, subject, "property_title", request.purpose, access_log.Outcome.GRANTED, None
        )
        with futures.ThreadPoolExecutor(1) as pool:
            other = pool.submit(log.read, LUO_FANG, HOUSING, "case-2")
            proof = other.result(timeout=30)  # a shared lock would hold it until this block ends
        assert isinstance(proof, records_pb2.Proof)
    log.seal_all()
    assert log.verify().entries_checked == 3


def test_sixteen_concurrent_reads_and_two_sequencers_make_one_log(log: Log) -> None:
    stop = threading.Event()
    sealed: list[int] = []

    def sequencer() -> None:
        while not stop.is_set():
            step = log.app.seal()
            if step is not None:
                sealed.extend(e.leaf_index or 0 for e in step.entries)

    with futures.ThreadPoolExecutor(18) as pool:
        sequencers = [pool.submit(sequencer) for _ in range(2)]
        reads = [pool.submit(log.read, (XU_WEI, LUO_FANG)[n % 2], HOUSING, f"case-{n}") for n in range(160)]
        assert all(isinstance(read.result(), records_pb2.Proof) for read in reads)
        stop.set()
        for running in sequencers:
            running.result()
    log.seal_all()
    with log.db.read() as session:
        indexes = session.execute(sa.select(store.access_entries.c.leaf_index)).scalars().all()
    assert sorted(indexes) == list(range(160))  # every entry once, no index twice, no gap
    assert len(sealed) == len(set(sealed))
    result = log.verify()
    assert result.intact and result.entries_checked == 160 and result.entries_pending == 0


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_sequencer_frozen_in_its_step_loses_the_log_to_another(log: Log, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker stopped in the middle of a step holds the advisory lock only until PostgreSQL ends
    its stalled transaction; then another worker seals, and the frozen one, woken, wrote nothing."""
    monkeypatch.setattr(repository, "SEQUENCER_IDLE_LIMIT", "1s")
    log.read(XU_WEI, case="before")
    frozen = log.db.engine.connect()
    with Session(frozen) as session:
        assert repository.become_sequencer(session)  # the step began, then the worker stopped
        assert log.app.seal() is None  # the other worker skips its tick: the log is held
        time.sleep(1.5)
        step = log.app.seal()
        assert step is not None and [e.leaf_index for e in step.entries] == [0]
        with pytest.raises(sa.exc.DBAPIError, match="idle-in-transaction"):  # woken: its session was ended
            session.execute(sa.select(sa.func.pg_try_advisory_xact_lock(repository.SEQUENCER_LOCK)))
    frozen.invalidate()
    assert log.verify().intact


# -- tampering ---------------------------------------------------------------------------------------


@pytest.fixture
def sealed_log(log: Log) -> Log:
    for n in range(12):
        log.read((XU_WEI, LUO_FANG)[n % 2], case=f"case-{n}")
        if n in (3, 8):
            log.seal_all()
    log.seal_all()
    assert log.verify().intact
    return log


def broken(log: Log) -> records_pb2.AuditBreak:
    result = log.verify()
    assert not result.intact
    return result.first_break


def test_an_altered_entry_is_named(sealed_log: Log) -> None:
    sealed_log.sql("UPDATE access_entries SET caller_id = 'education' WHERE leaf_index = 6")
    found = broken(sealed_log)
    assert (found.kind, found.leaf_index) == (records_pb2.AUDIT_BREAK_KIND_ALTERED, 6) and found.sequence > 0


def test_a_deleted_entry_is_named(sealed_log: Log) -> None:
    sealed_log.sql("DELETE FROM access_entries WHERE leaf_index = 2")
    found = broken(sealed_log)
    assert (found.kind, found.leaf_index) == (records_pb2.AUDIT_BREAK_KIND_REMOVED, 2)


def test_swapped_entries_are_named_as_moved(sealed_log: Log) -> None:
    sealed_log.sql(
        "UPDATE access_entries SET leaf_index = -1 WHERE leaf_index = 5",
        "UPDATE access_entries SET leaf_index = 5 WHERE leaf_index = 9",
        "UPDATE access_entries SET leaf_index = 9 WHERE leaf_index = -1",
    )
    found = broken(sealed_log)
    assert (found.kind, found.leaf_index) == (records_pb2.AUDIT_BREAK_KIND_REORDERED, 5)


def test_an_altered_tree_head_is_named(sealed_log: Log) -> None:
    with sealed_log.db.read() as session:
        root = session.execute(
            sa.select(store.access_log_heads.c.root_hash).where(store.access_log_heads.c.tree_size == 9)
        ).scalar_one()
    forged = bytes([root[0] ^ 1]) + bytes(root[1:])
    with sealed_log.db.engine.begin() as connection:
        connection.execute(
            store.access_log_heads.update().where(store.access_log_heads.c.tree_size == 9).values(root_hash=forged)
        )
    found = broken(sealed_log)
    assert (found.kind, found.tree_size) == (records_pb2.AUDIT_BREAK_KIND_TREE_HEAD_ALTERED, 9)


def rewrite_the_tree(log: Log) -> dict[int, bytes]:
    """What an insider with the database but not the key can do: store every hash of the tree
    anew from the entries as they now stand. Returns the root at each kept head's size."""
    with log.db.read() as session:
        rows = session.execute(sa.select(store.access_entries).order_by(store.access_entries.c.leaf_index)).all()
        sizes = {head.tree_size for head in repository.tree_heads(session)}
    frontier = access_log.Frontier()
    nodes: list[tuple[access_log.NodeId, bytes]] = []
    roots = {0: frontier.root()} if 0 in sizes else {}
    for row in rows:
        nodes += frontier.append(access_log.leaf_hash(repository.access_entry(row).leaf_bytes()))
        if frontier.size in sizes:
            roots[frontier.size] = frontier.root()
    with log.db.engine.begin() as connection:
        connection.execute(store.access_log_nodes.delete())
        connection.execute(
            store.access_log_nodes.insert(), [{"level": lv, "node_index": i, "hash": h} for (lv, i), h in nodes]
        )
    return roots


def test_a_rewritten_log_is_named_by_its_signed_heads(sealed_log: Log) -> None:
    """An insider rewrites an entry and every hash the tree stores, but cannot sign."""
    sealed_log.sql("UPDATE access_entries SET outcome = 'denied' WHERE leaf_index = 10")
    rewrite_the_tree(sealed_log)
    found = broken(sealed_log)
    assert (found.kind, found.tree_size, found.leaf_index) == (records_pb2.AUDIT_BREAK_KIND_REWRITTEN, 12, 9)


def test_removing_the_newest_tree_heads_is_named_though_a_leaf_they_held_was_altered(sealed_log: Log) -> None:
    """An insider deletes the newest heads, then alters a leaf they held: the walk reads every
    sealed leaf, and those no kept head holds are the first break."""
    sealed_log.sql(
        "DELETE FROM access_log_heads WHERE tree_size > 4",
        "UPDATE access_entries SET caller_id = 'education' WHERE leaf_index = 10",
    )
    found = broken(sealed_log)
    assert (found.kind, found.leaf_index, found.tree_size) == (records_pb2.AUDIT_BREAK_KIND_TREE_HEAD_REMOVED, 4, 4)
    sealed_log.sql("DELETE FROM access_log_heads")
    found = broken(sealed_log)
    assert (found.kind, found.leaf_index) == (records_pb2.AUDIT_BREAK_KIND_TREE_HEAD_REMOVED, 0)


def sign_every_head(log: Log, roots: dict[int, bytes], forger: Ed25519PrivateKey, key_id: str) -> None:
    table = store.access_log_heads
    with log.db.read() as session:
        heads = repository.tree_heads(session)
    with log.db.engine.begin() as connection:
        for head in heads:
            forged = replace(head, root_hash=roots[head.tree_size], key_id=key_id)
            connection.execute(
                table.update()
                .where(table.c.tree_size == head.tree_size)
                .values(root_hash=forged.root_hash, key_id=key_id, signature=forger.sign(forged.signed_bytes()))
            )


@pytest.mark.parametrize("substitution", ["the key's public half replaced", "a key of the forger's added"])
def test_a_key_substituted_in_the_database_vouches_for_nothing(sealed_log: Log, substitution: str) -> None:
    """The insider also re-signs every head, with a key of their own they put in the signing_keys
    table: the proofs ring, which they do not hold, is what vouches for a key."""
    forger = Ed25519PrivateKey.generate()
    key_id = log_key_id = sealed_log.app.signing_keys().popitem()[0]
    if substitution == "a key of the forger's added":
        key_id = "forged-1"
        sealed_log.sql(
            f"INSERT INTO signing_keys (key_id, public_key, status, active_from) SELECT '{key_id}', public_key, "
            f"'active', active_from FROM signing_keys WHERE key_id = '{log_key_id}'"
        )
    with sealed_log.db.engine.begin() as connection:
        connection.execute(
            store.signing_keys.update()
            .where(store.signing_keys.c.key_id == key_id)
            .values(public_key=keys.public_bytes(forger.public_key()))
        )
    sealed_log.sql("UPDATE access_entries SET outcome = 'denied' WHERE leaf_index = 10")
    sign_every_head(sealed_log, rewrite_the_tree(sealed_log), forger, key_id)
    found = broken(sealed_log)
    assert (found.kind, found.tree_size) == (records_pb2.AUDIT_BREAK_KIND_TREE_HEAD_ALTERED, 4)
    published = sealed_log.app.signing_keys()
    assert list(published) == [log_key_id] and keys.public_bytes(published[log_key_id].key) == keys.public_bytes(
        sealed_log.key
    )
    # Nor does a proof the forger signs verify.
    proof = sealed_log.read(XU_WEI)
    assert isinstance(proof, records_pb2.Proof)
    proof.key_id = key_id
    proof.signature = forger.sign(signing.canonical_bytes(proof))
    codes = {p.code for p in sealed_log.app.verify_proof(proof).problems}
    assert codes & {records_pb2.PROOF_PROBLEM_CODE_BAD_SIGNATURE, records_pb2.PROOF_PROBLEM_CODE_UNKNOWN_KEY}


def test_the_hash_chained_trail_moves_into_the_log_in_its_order(database_url: str) -> None:
    db = service_database("records", database_url)
    db.migrate("0001")
    chained = sa.table(
        "audit_entries",
        *[
            sa.column(name)
            for name in (
                "sequence accessed_at caller_id caller_name subject_id subject_masked_identifier proof_type "
                "purpose_kind purpose_value purpose_note outcome proof_id previous_hash entry_hash"
            ).split()
        ],
    )
    moment = datetime.datetime(2026, 11, 30, 8, 0, tzinfo=datetime.UTC)
    old = [
        {
            "sequence": n,
            # Clocks of two processes disagreed: the chain's order is the sequence, not the time.
            "accessed_at": moment - datetime.timedelta(seconds=n % 2),
            "caller_id": "housing",
            "caller_name": "住房和城乡建设厅",
            "subject_id": subject_of(XU_WEI),
            "subject_masked_identifier": "330106********4313",
            "proof_type": "property_title",
            "purpose_kind": "case_id",
            "purpose_value": f"chained-{n}",
            "purpose_note": "",
            "outcome": "granted",
            "proof_id": f"p-{n}",
            "previous_hash": bytes(32),
            "entry_hash": bytes(32),
        }
        for n in range(1, 8)
    ]
    with db.engine.begin() as connection:
        connection.execute(chained.insert(), old)
    db.migrate()
    log = Log(db)
    log.read(XU_WEI, case="after-the-move")
    log.seal_all()
    entries = list(reversed(log.tracker(XU_WEI).entries))
    assert [e.purpose.case_id for e in entries] == [f"chained-{n}" for n in range(1, 8)] + ["after-the-move"]
    assert [e.leaf_index for e in entries] == list(range(8))
    assert [e.sequence for e in entries][:7] == list(range(1, 8)) and entries[7].sequence == 8
    assert log.verify().intact
    db.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_proofs_read_their_tree_nodes_by_the_primary_key_not_by_scanning(log: Log) -> None:
    """A million-leaf log made a scan 198 ms per proof on SQLite (bench/results/20261206T023230Z)."""
    for case in range(9):
        log.read(XU_WEI, case=f"case-{case}")
    log.seal_all()
    statements: list[tuple[str, object]] = []

    def keep(_conn: object, _cursor: object, statement: str, parameters: object, *_rest: object) -> None:
        for table in ("access_log_nodes", "records"):
            if f"FROM {table}" in statement:
                statements.append((table, statement, parameters))

    sa.event.listen(log.db.engine, "before_cursor_execute", keep)
    try:
        assert all(entry.sealed for entry in log.tracker(XU_WEI).entries)
        assert queries.consistency_proof(log.db, 3, 9)
        with log.db.read() as session:  # a feed's check of its references reads pairs the same way
            repository.stored_references(session, {("public_security", "a"), ("taxation", "b")})
    finally:
        sa.event.remove(log.db.engine, "before_cursor_execute", keep)
    assert {table for table, _, _ in statements} == {"access_log_nodes", "records"}
    with log.db.engine.connect() as connection:
        for table, statement, parameters in statements:
            plan = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()  # type: ignore[arg-type]
            details = " ".join(row[3] for row in plan)
            assert f"SCAN {table}" not in details and f"SEARCH {table}" in details, details
