"""The simulator's pure parts: its residents' identifiers are valid and unique, its population and
its money formatting are exact and deterministic (the mesh run is tests/mesh/test_health_simulate.py)."""

from __future__ import annotations

import datetime

from services.health.tools.simulate import Behaviour, Population, yuan
from services.identity.domain import validate_identifier


def test_residents_have_valid_unique_identifiers_and_the_same_seed_gives_the_same_people() -> None:
    people = Population(500, seed=7, behaviour=Behaviour()).patients
    identifiers = [p.identifier for p in people]
    assert len(set(identifiers)) == 500
    invalid = [i for i in identifiers if not validate_identifier(i, datetime.date(2026, 1, 1)).valid]
    assert not invalid, f"{len(invalid)} invalid identifiers"
    assert identifiers == [p.identifier for p in Population(500, seed=7, behaviour=Behaviour()).patients]
    assert identifiers != [p.identifier for p in Population(500, seed=8, behaviour=Behaviour()).patients]
    assert any(p.score is None for p in people) and any(not p.insured for p in people)


def test_records_are_one_score_and_one_enrolment_per_resident_who_has_them() -> None:
    population = Population(200, seed=1, behaviour=Behaviour())
    records = population.records(1, datetime.date(2026, 11, 27))
    scored = sum(p.score is not None for p in population.patients)
    insured = sum(p.insured for p in population.patients)
    assert [r.record_type for r in records].count("city_credit_score") == scored
    assert [r.record_type for r in records].count("medical_insurance_enrolment") == insured
    assert len({r.source_reference for r in records}) == len(records)


def test_yuan_is_exact() -> None:
    assert yuan(0) == "0.00"
    assert yuan(5) == "0.05"
    assert yuan(123_456) == "1,234.56"
    assert yuan(330_000_000_000) == "3,300,000,000.00"
    assert yuan(-2_500_000) == "-25,000.00"
