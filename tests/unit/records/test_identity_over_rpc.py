"""Records' worker asks identity over worker RPC once per person, as its api does over gRPC
(govmesh.known_subjects): identity stands in as a nameko proxy, the one thing outside records."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

from govmesh import auth
from govmesh.parties import Party
from services.records.clients import IdentityOverRpc, InvalidSubject

ROOT = Path(__file__).resolve().parents[3]
XU_WEI = "330106199001011234"
BAD = "330106199001011230"


class Reply:
    def __init__(self, answer: dict[str, Any] | None) -> None:
        self.answer = answer

    def result(self) -> dict[str, Any] | None:
        return self.answer


class StandInIdentityRpc:
    """identity's register_subjects and resolve_subject, counting what it is asked."""

    def __init__(self) -> None:
        self.asked: collections.Counter[str] = collections.Counter()
        self.registered: set[str] = set()

    def __getattr__(self, method: str) -> Any:
        stand_in = self

        class Method:
            @staticmethod
            def call_async(authorization: str, **kwargs: Any) -> Reply:
                assert authorization.startswith("Bearer ")
                answer = {"subject_id": "sub_xu", "kind": "resident", "masked_identifier": "330106********1234"}
                if method == "register_subjects":
                    answers: list[dict[str, Any]] = []
                    for index, item in enumerate(kwargs["subjects"]):
                        stand_in.asked[f"{method}:{item['identifier']}"] += 1
                        if item["identifier"] == BAD:
                            refusal = {
                                "index": index,
                                "field": "identifier",
                                "reason": "X",
                                "message": "identifier: no",
                            }
                            answers.append({"refused": refusal})
                        else:
                            stand_in.registered.add(item["identifier"])
                            answers.append({**answer, "created": True})
                    return Reply(answers)
                key = kwargs.get("identifier") or kwargs.get("subject_id")
                stand_in.asked[f"{method}:{key}"] += 1
                if key not in stand_in.registered and not kwargs.get("allow_unregistered"):
                    return Reply(None)
                return Reply({**answer, "unregistered": key not in stand_in.registered})

        return Method


def test_the_worker_asks_identity_once_per_registered_person(tmp_path: Path) -> None:
    policy = auth.Policy.load(ROOT / "policy" / "dev.yaml")
    credentials = auth.ServiceCredentials(auth.TokenIssuer.from_key_dir(policy, tmp_path), "records")
    identity = StandInIdentityRpc()
    process_client = IdentityOverRpc(credentials)

    would_be = process_client.through(identity).resolve(identifier=XU_WEI, allow_unregistered=True)
    assert would_be is not None and would_be.subject_id == "sub_xu"
    assert process_client.through(identity).resolve(identifier=XU_WEI) is None, "a read needs a registration"
    assert identity.asked[f"resolve_subject:{XU_WEI}"] == 2

    registered, refused = process_client.through(identity).register_many([(XU_WEI, "徐伟"), (BAD, "x")])
    assert isinstance(refused, InvalidSubject) and (refused.field, str(refused)) == ("identifier", "no")
    assert isinstance(registered, Party)
    for _ in range(3):  # each entrypoint binds its own proxy; the answers are the process's
        assert process_client.through(identity).resolve(identifier=XU_WEI) == registered
    assert identity.asked[f"resolve_subject:{XU_WEI}"] == 2, "a registered person is never asked for again"
