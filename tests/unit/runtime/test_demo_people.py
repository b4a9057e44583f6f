"""The demo's synthetic people: identity must take every one as a valid resident ID number."""

from __future__ import annotations

import datetime
import random

from govmesh.demo import new_person
from services.identity.domain.identifiers import validate_identifier


def test_every_synthetic_person_has_an_id_number_identity_finds_valid() -> None:
    rng = random.Random(2019)
    people = [new_person(rng, "330106") for _ in range(500)]
    problems = {p.identifier: validate_identifier(p.identifier, datetime.date(2026, 12, 6)).problems for p in people}
    assert {identifier: found for identifier, found in problems.items() if found} == {}
    assert {p.identifier[-1] for p in people} >= {"X", "0", "5"}  # every check character, not one by chance
