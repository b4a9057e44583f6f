"""The runtime's one idempotency mechanism: a caller-scoped key, a canonical fingerprint of the
content, and a replay that refuses a reused request id naming the field."""

from __future__ import annotations

import pytest

from govmesh import idempotency
from govmesh.errors import AlreadyExists, InvalidArgument


def test_the_key_is_scoped_by_caller_and_the_id_is_trimmed() -> None:
    a = idempotency.request("hospital-a", "  7f3c  ", "visit", 1)
    b = idempotency.request("hospital-b", "7f3c", "visit", 1)
    assert (a.request_id, a.key) == ("7f3c", "hospital-a:7f3c")
    assert b.key == "hospital-b:7f3c"
    assert a.fingerprint != b.fingerprint, "the same content from another caller is another request"


def test_the_same_content_in_any_key_order_has_one_fingerprint() -> None:
    first = idempotency.fingerprint("case", {"seller": "sub_a", "buyer": "sub_b"}, {"x", "y"})
    second = idempotency.fingerprint("case", {"buyer": "sub_b", "seller": "sub_a"}, {"y", "x"})
    assert first == second
    assert first != idempotency.fingerprint("case", {"buyer": "sub_a", "seller": "sub_b"}, {"x", "y"})
    assert idempotency.fingerprint(b"\x00\x01") == idempotency.fingerprint("0001")


def test_replay_passes_the_same_request_and_refuses_another_naming_request_id() -> None:
    first = idempotency.request("portal", "r-1", "payment", 100)
    first.replay(idempotency.request("portal", "r-1", "payment", 100).fingerprint)
    with pytest.raises(AlreadyExists) as refused:
        first.replay(idempotency.request("portal", "r-1", "payment", 101).fingerprint, "payment")
    assert refused.value.field == "request_id"
    assert refused.value.message.startswith("request_id: was already used for a different payment")


@pytest.mark.parametrize(
    ("request_id", "reason"),
    [
        ("", "MISSING"),
        ("   ", "MISSING"),
        ("x" * 129, "TOO_LONG"),
        ("a\x00b", "INVALID"),
        ("330106198507154313", "INVALID"),
    ],
)
def test_bad_request_ids_are_refused_naming_the_field(request_id: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        idempotency.request("portal", request_id)
    assert (refused.value.field, refused.value.reason) == ("request_id", reason)


def test_an_optional_request_id_may_be_left_out_but_not_malformed() -> None:
    assert idempotency.optional_request("portal", "  ") is None
    assert idempotency.optional_request("portal", "r-2", "x") == idempotency.request("portal", "r-2", "x")
    with pytest.raises(InvalidArgument):
        idempotency.optional_request("portal", "x" * 40, max_length=32)


def test_content_that_is_not_plain_data_is_refused_rather_than_guessed() -> None:
    with pytest.raises(TypeError):
        idempotency.fingerprint(object())


def test_a_stored_attempt_is_compared_by_its_content_in_the_requests_scope() -> None:
    charge = idempotency.request("visit-1", "c-1", "x-ray", 12000)
    assert charge.scope == "visit-1"
    charge.replay_of("x-ray", 12000, what="charge")
    with pytest.raises(AlreadyExists) as refused:
        charge.replay_of("x-ray", 12001, what="charge")
    assert refused.value.message == "request_id: was already used for a different charge"


def test_a_missing_request_id_says_what_it_is_for() -> None:
    with pytest.raises(InvalidArgument) as refused:
        idempotency.request("portal", " ")
    assert refused.value.message == "request_id: is required (e.g. a UUID), so a retried call has one effect"
