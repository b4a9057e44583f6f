"""Idempotent requests: one mechanism for every use case that takes a client's request id.

A caller retries a call it never saw answered with the same ``request_id``; the service must then
answer as it did the first time and change nothing more. A request id is the caller's own, so
the key that is stored is scoped by caller (two hospitals may both send "1"). The content of the
first request is kept as a fingerprint beside what it created, so the same id sent with
different content is a client bug: ALREADY_EXISTS naming ``request_id``, never a silent replay of
something the client did not ask for.

Where the first attempt's result is stored (a case, a visit, a payment, a proof) is the
service's: each use case looks its key up under the lock that orders its writes, and calls
``replay`` on what it finds. Two attempts racing past the lookup meet at the table's unique key
on ``request_key``; the loser reads the winner's row and replays it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from govmesh import texts
from govmesh.errors import AlreadyExists, InvalidArgument

#: A request id is a client's UUID or similar token; anything longer is not one.
MAX_REQUEST_ID = 128
FIELD = "request_id"


@dataclass(frozen=True)
class IdempotentRequest:
    """A request id scoped by its caller (``key``, what is stored and looked up) and the
    fingerprint of what was asked under it."""

    request_id: str
    #: Whose request ids these are: the caller, or a narrower owner (a visit's charges).
    scope: str
    key: str
    fingerprint: str

    def replay(self, stored_fingerprint: str, what: str = "request") -> None:
        """Returns when the stored attempt asked the same as this one, so the caller answers with
        the stored result; ALREADY_EXISTS naming ``request_id`` when it asked something else."""
        if stored_fingerprint != self.fingerprint:
            raise AlreadyExists(f"{FIELD}: was already used for a different {what}", field=FIELD, reason="REUSED")

    def replay_of(self, *stored_content: object, what: str = "request") -> None:
        """``replay`` for a stored attempt whose content is at hand rather than its fingerprint
        (a table that keeps what was asked, not a digest of it)."""
        self.replay(fingerprint(self.scope, *stored_content), what)


def fingerprint(*content: object) -> str:
    """A digest of a request's content: SHA-256 of its canonical JSON (sorted keys, no spaces), so
    equal content in any key order gives the same fingerprint. Bytes (e.g. a deterministic
    protobuf serialisation) are taken as their hex."""
    canonical = json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_jsonable
    ).encode()
    return hashlib.sha256(canonical).hexdigest()


def _jsonable(value: object) -> object:
    if isinstance(value, bytes | bytearray):
        return value.hex()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise TypeError(f"{type(value).__name__} is not part of a request fingerprint")


def request(
    caller_id: str, request_id: str, *content: object, max_length: int = MAX_REQUEST_ID
) -> IdempotentRequest:
    """The idempotent request for a required ``request_id`` (trimmed; INVALID_ARGUMENT naming it
    when missing, too long, or holding control characters or an identifier). ``caller_id`` scopes
    the id: usually the caller, or a narrower owner of the ids."""
    if not request_id.strip():
        raise InvalidArgument(FIELD, "MISSING", "is required (e.g. a UUID), so a retried call has one effect")
    checked = texts.checked_text(request_id.strip(), FIELD, max_length)
    return IdempotentRequest(checked, caller_id, f"{caller_id}:{checked}", fingerprint(caller_id, *content))


def optional_request(
    caller_id: str, request_id: str, *content: object, max_length: int = MAX_REQUEST_ID
) -> IdempotentRequest | None:
    """As ``request``, for a call where the request id may be left out (no replay then)."""
    if not request_id.strip():
        return None
    return request(caller_id, request_id, *content, max_length=max_length)
