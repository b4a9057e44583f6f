"""Identity as other services' api processes reach it: the answers that can never change are
remembered, and nothing else. Identity lies outside the client under test, so a stand-in
identity server answers over real gRPC and counts what it is asked."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from govmesh import auth
from govmesh.config import ROOT
from govmesh.identity.v1 import identity_pb2, identity_pb2_grpc
from govmesh.identity_client import IdentifierRefused, IdentityClient
from govmesh.known_subjects import KnownSubjects
from tests.support.people import LUO_FANG, XU_WEI, ZHUJI_RESIDENT
from tests.support.standins import subject_of

INVALID = XU_WEI[:-1] + "0"


class StandInIdentity(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self) -> None:
        self.registered: dict[str, identity_pb2.Subject] = {}
        self.asked: collections.Counter[str] = collections.Counter()

    @staticmethod
    def subject(identifier: str) -> identity_pb2.Subject:
        return identity_pb2.Subject(
            subject_id=subject_of(identifier),
            kind=identity_pb2.SUBJECT_KIND_RESIDENT,
            masked_identifier=identifier[:6] + "********" + identifier[-4:],
        )

    def RegisterSubjects(
        self, request: identity_pb2.RegisterSubjectsRequest, context: grpc.ServicerContext
    ) -> identity_pb2.RegisterSubjectsResponse:
        results = []
        for index, item in enumerate(request.subjects):
            if item.identifier == INVALID:
                refusal = identity_pb2.RegistrationRefusal(
                    index=index, field="identifier", reason="INVALID_IDENTIFIER", message="identifier: bad check"
                )
                results.append(identity_pb2.RegisterSubjectsResult(refused=refusal))
                continue
            subject = self.registered.setdefault(item.identifier, self.subject(item.identifier))
            registered = identity_pb2.RegisterSubjectResponse(subject=subject)
            results.append(identity_pb2.RegisterSubjectsResult(registered=registered))
        return identity_pb2.RegisterSubjectsResponse(results=results)

    def ResolveSubject(
        self, request: identity_pb2.ResolveSubjectRequest, context: grpc.ServicerContext
    ) -> identity_pb2.ResolveSubjectResponse:
        self.asked[request.identifier or request.subject_id] += 1
        if request.identifier == INVALID:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "identifier: the check character does not match")
        by_id = {s.subject_id: s for s in self.registered.values()}
        found = self.registered.get(request.identifier) or by_id.get(request.subject_id)
        if found is not None:
            return identity_pb2.ResolveSubjectResponse(subject=found)
        if request.identifier and request.allow_unregistered:
            return identity_pb2.ResolveSubjectResponse(subject=self.subject(request.identifier), unregistered=True)
        context.abort(grpc.StatusCode.NOT_FOUND, "no subject is registered under that identifier")
        raise AssertionError("abort raises")


@pytest.fixture
def identity() -> Iterator[tuple[StandInIdentity, str]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    stand_in = StandInIdentity()
    identity_pb2_grpc.add_IdentityServiceServicer_to_server(stand_in, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield stand_in, f"127.0.0.1:{port}"
    server.stop(0)


def client(target: str, tmp_path: Path, known: KnownSubjects[identity_pb2.Subject] | None = None) -> IdentityClient:
    policy = auth.Policy.load(ROOT / "policy" / "dev.yaml")
    credentials = auth.ServiceCredentials(auth.TokenIssuer.from_key_dir(policy, tmp_path), "records")
    return IdentityClient(target, credentials, known=known)


def test_a_registered_subject_is_asked_for_once(identity: tuple[StandInIdentity, str], tmp_path: Path) -> None:
    stand_in, target = identity
    records = client(target, tmp_path)
    [registered] = records.register_many([(XU_WEI, "徐伟")])
    for _ in range(3):
        assert records.resolve(identifier=XU_WEI) == registered
        assert records.resolve(identifier=XU_WEI, allow_unregistered=True) == registered
    assert records.resolve(subject_id=registered.subject_id) == registered  # type: ignore[union-attr]
    assert stand_in.asked[XU_WEI] == 0  # the registration's answer is the subject
    assert stand_in.asked[registered.subject_id] == 0  # type: ignore[union-attr]

    stand_in.registered[LUO_FANG] = stand_in.subject(LUO_FANG)  # registered by another service
    for _ in range(3):
        assert records.resolve(identifier=LUO_FANG).subject_id == subject_of(LUO_FANG)  # type: ignore[union-attr]
        assert records.resolve(subject_id=subject_of(LUO_FANG)).masked_identifier == "330183********242X"  # type: ignore[union-attr]
    # Asked by identifier, identity named the subject: its subject id is not asked for.
    assert stand_in.asked[LUO_FANG] == 1 and stand_in.asked[subject_of(LUO_FANG)] == 0


def test_a_would_be_subject_serves_refusals_but_a_read_asks_again_until_registered(
    identity: tuple[StandInIdentity, str], tmp_path: Path
) -> None:
    stand_in, target = identity
    records = client(target, tmp_path)
    would_be = records.resolve(identifier=ZHUJI_RESIDENT, allow_unregistered=True)
    assert records.resolve(identifier=ZHUJI_RESIDENT, allow_unregistered=True) == would_be
    assert stand_in.asked[ZHUJI_RESIDENT] == 1
    assert records.resolve(identifier=ZHUJI_RESIDENT) is None  # a read needs a registration: asked
    assert stand_in.asked[ZHUJI_RESIDENT] == 2

    stand_in.registered[ZHUJI_RESIDENT] = stand_in.subject(ZHUJI_RESIDENT)
    assert records.resolve(identifier=ZHUJI_RESIDENT) == would_be  # asked again, and now registered
    assert records.resolve(identifier=ZHUJI_RESIDENT) == would_be
    assert stand_in.asked[ZHUJI_RESIDENT] == 3


def test_a_batch_registers_in_one_call_answers_in_order_and_keeps_only_the_registered(
    identity: tuple[StandInIdentity, str], tmp_path: Path
) -> None:
    stand_in, target = identity
    records = client(target, tmp_path)
    answers = records.register_many([(XU_WEI, "徐伟"), (INVALID, "x"), (LUO_FANG, "罗舫")])
    assert [getattr(a, "subject_id", None) for a in answers] == [subject_of(XU_WEI), None, subject_of(LUO_FANG)]
    refused = answers[1]
    assert isinstance(refused, IdentifierRefused)
    assert (refused.field, str(refused)) == ("identifier", "bad check")  # the field is named once, on it
    for person in (XU_WEI, LUO_FANG):
        assert records.resolve(identifier=person) is not None
    with pytest.raises(IdentifierRefused):
        records.resolve(identifier=INVALID)
    assert (stand_in.asked[XU_WEI], stand_in.asked[LUO_FANG], stand_in.asked[INVALID]) == (0, 0, 1)


def test_refusals_and_not_found_are_never_kept(identity: tuple[StandInIdentity, str], tmp_path: Path) -> None:
    stand_in, target = identity
    records = client(target, tmp_path)
    for _ in range(2):
        with pytest.raises(IdentifierRefused, match="check character"):
            records.resolve(identifier=INVALID)
        assert records.resolve(subject_id="sub_nobody") is None
    assert stand_in.asked[INVALID] == 2 and stand_in.asked["sub_nobody"] == 2


def test_the_least_recently_used_answer_goes_first_and_no_identifier_is_held(
    identity: tuple[StandInIdentity, str], tmp_path: Path
) -> None:
    stand_in, target = identity
    # Room for two people: a registered one is kept under its identifier and its subject id.
    known: KnownSubjects[identity_pb2.Subject] = KnownSubjects(size=4)
    records = client(target, tmp_path, known)
    for person in (XU_WEI, LUO_FANG, ZHUJI_RESIDENT):
        stand_in.registered[person] = stand_in.subject(person)
    records.resolve(identifier=XU_WEI)
    records.resolve(identifier=LUO_FANG)
    records.resolve(identifier=XU_WEI)  # now the most recent
    records.resolve(identifier=ZHUJI_RESIDENT)  # LUO_FANG goes
    records.resolve(identifier=XU_WEI)
    records.resolve(identifier=LUO_FANG)
    assert (stand_in.asked[XU_WEI], stand_in.asked[LUO_FANG], stand_in.asked[ZHUJI_RESIDENT]) == (1, 2, 1)
    held = repr(known._answers)
    assert not any(person in held for person in (XU_WEI, LUO_FANG, ZHUJI_RESIDENT))
