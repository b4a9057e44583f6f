"""Stand-ins for what lies outside a service under test in use-case tests: identity's pseudonyms
and a clock the test moves."""

from __future__ import annotations

import datetime
import hashlib


def subject_of(identifier: str) -> str:
    """A stable pseudonymous subject id for a test identifier (identity keys its own with HMAC)."""
    return "sub_" + hashlib.sha256(identifier.encode()).hexdigest()[:52]


class Clock:
    """The time a use case reads; a test sets ``now`` to travel."""

    def __init__(self, start: datetime.datetime) -> None:
        self.now = start

    def __call__(self) -> datetime.datetime:
        return self.now
