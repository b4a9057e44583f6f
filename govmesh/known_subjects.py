"""Identity's answers that can never change, remembered by the services that ask them (records'
api over gRPC, records' worker over worker RPC). Imports nothing but the standard library, so
both process kinds can hold one."""

from __future__ import annotations

import collections
import hashlib
import os
import threading
from typing import Generic, TypeVar

#: How many lookups a process remembers (a registered subject is two: by identifier and by subject
#: id, one answer shared): about 600 bytes each, so 100,000 hold about 60 MiB (measured:
#: records' api keeps two such caches, 116 MiB when full, flat beyond; a soak sees it fill).
KNOWN_SUBJECTS = 100_000

S = TypeVar("S")


class KnownSubjects(Generic[S]):
    """Identity's answers that can never change, so that a busy process asks identity once per
    person rather than once per call (records' GetProof spent 40% of its time waiting on it).

    A registered subject is never changed or removed (identity registers idempotently and has
    no other write), so its answer holds for ever. The would-be subject of an unregistered
    identifier (ResolveSubject with allow_unregistered) holds for callers that accept one, but
    not for those that need a registration, which may since have happened: they ask again.
    Refusals and "not found" are never kept. Keys are a keyed hash of the identifier under a
    key of this process, so the cache holds no identifier. Thread-safe (and green-thread safe
    in a worker, whose locks eventlet patches), least recently used out first."""

    def __init__(self, size: int = KNOWN_SUBJECTS) -> None:
        self.size = size
        self._salt = os.urandom(16)
        self._answers: collections.OrderedDict[bytes, tuple[S, bool]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def _key(self, identifier: str, subject_id: str) -> bytes:
        kind, value = (b"identifier", identifier) if identifier else (b"subject_id", subject_id)
        return hashlib.blake2b(value.encode(), key=self._salt, person=kind, digest_size=16).digest()

    def get(self, identifier: str, subject_id: str, allow_unregistered: bool) -> S | None:
        key = self._key(identifier, subject_id)
        with self._lock:
            found = self._answers.get(key)
            if found is None or not (found[1] or allow_unregistered):
                return None
            self._answers.move_to_end(key)
            return found[0]

    def keep(self, identifier: str, subject_id: str, subject: S, registered: bool) -> None:
        key = self._key(identifier, subject_id)
        with self._lock:
            self._answers[key] = (subject, registered)
            self._answers.move_to_end(key)
            while len(self._answers) > self.size:
                self._answers.popitem(last=False)
