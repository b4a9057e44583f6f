"""The synthetic population generator (services/records/tools/synthetic.py): determinism, valid and
unique identifiers, records that the catalogue accepts, dates that proofs can rely on, and
plausible rates. Pure domain logic: no broker, no database, no network."""

from __future__ import annotations

import collections
import datetime
import re
import statistics
from collections.abc import Iterator

import pytest
from stdnum import numdb

from services.identity.domain import IdentifierKind, validate_identifier
from services.records.domain import catalogue, proofs
from services.records.domain.catalogue import SubjectKind, Value
from services.records.tools import synthetic
from services.records.tools.synthetic import SyntheticRecord, SyntheticSubject, population

AS_OF = datetime.date(2019, 7, 9)
#: Date fields that may lie after as_of: ends of validity, of contracts, of cycles, due dates.
FUTURE_DATE_FIELDS = frozenset({"valid_until", "cycle_end", "contracted_until", "expires_on", "due_on"})


@pytest.fixture(scope="module")
def people() -> list[SyntheticSubject]:
    return list(population(10_000))


@pytest.fixture(scope="module")
def first_5000(people: list[SyntheticSubject]) -> list[SyntheticSubject]:
    return people[:5000]


def age(subject: SyntheticSubject, on: datetime.date = AS_OF) -> int:
    born = datetime.date(int(subject.identifier[6:10]), int(subject.identifier[10:12]), int(subject.identifier[12:14]))
    return proofs.full_years(born, on)


def residents(subjects: list[SyntheticSubject]) -> list[SyntheticSubject]:
    return [s for s in subjects if s.kind is SubjectKind.RESIDENT]


def has(subject: SyntheticSubject, record_type: str) -> bool:
    return any(r.record_type == record_type for r in subject.records)


def strings(value: Value) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)


def dates(fields: dict[str, Value]) -> Iterator[tuple[str, datetime.date]]:
    for name, value in fields.items():
        if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
            yield name, value
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    yield from dates(item)


def current_zhejiang_counties() -> set[str]:
    """County-level codes of Zhejiang that python-stdnum's GB/T 2260 history lists as current."""
    codes = set()
    db = numdb.get("cn/loc")
    for suffix in range(100, 1200):
        code = f"33{suffix:04d}"
        if code.endswith("00"):
            continue
        history = next((props.get("county", "") for _, props in db.info(code)[1:]), "")
        latest = history.split(",")[-1] if history else ""
        if latest and not re.match(r"\[\d*-\d+\]", latest) and not latest.endswith("市辖区"):
            codes.add(code)
    return codes


# --------------------------------------------------------------------------------------------
# Determinism


def test_same_arguments_give_the_same_population() -> None:
    assert list(population(300)) == list(population(300))
    assert list(population(200, seed=7, as_of=datetime.date(2024, 3, 1))) == list(
        population(200, seed=7, as_of=datetime.date(2024, 3, 1))
    )


def test_a_smaller_population_is_a_prefix_of_a_larger_one() -> None:
    small = list(population(250))
    large = list(population(1200))
    assert large[:250] == small


def test_the_population_is_lazy_and_can_be_cut_anywhere() -> None:
    generator = population(1_000_000)
    first = [next(generator) for _ in range(50)]
    assert first == list(population(50))


def test_another_seed_gives_other_people_and_other_references() -> None:
    one, other = list(population(300, seed=1)), list(population(300, seed=2))
    assert len({s.identifier for s in one} & {s.identifier for s in other}) < 3
    references = {r.source_reference for s in one for r in s.records}
    assert references.isdisjoint({r.source_reference for s in other for r in s.records})


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="subjects"):
        list(population(-1))
    with pytest.raises(TypeError, match="as_of"):
        list(population(1, as_of=datetime.datetime(2019, 7, 9, tzinfo=datetime.UTC)))
    assert list(population(0)) == []


# --------------------------------------------------------------------------------------------
# Identifiers


def test_identifiers_are_valid_normalized_and_unique(first_5000: list[SyntheticSubject]) -> None:
    seen: set[str] = set()
    for subject in first_5000:
        validation = validate_identifier(subject.identifier, AS_OF)
        assert validation.valid, (subject.identifier, validation.problems)
        assert validation.normalized == subject.identifier and len(subject.identifier) == 18
        expected = IdentifierKind.RESIDENT if subject.kind is SubjectKind.RESIDENT else IdentifierKind.ENTERPRISE
        assert validation.kind is expected
        assert subject.identifier not in seen
        seen.add(subject.identifier)


def test_enterprises_have_zhejiang_business_credit_codes(first_5000: list[SyntheticSubject]) -> None:
    enterprises = [s for s in first_5000 if s.kind is SubjectKind.ENTERPRISE]
    assert enterprises
    entity_types = collections.Counter(s.identifier[1] for s in enterprises)
    for subject in enterprises:
        facts = validate_identifier(subject.identifier, AS_OF).enterprise
        assert facts is not None
        assert facts.registration_authority_code == "9"
        assert facts.entity_type_code in {"1", "2", "3"}
        assert facts.region_code.startswith("33")
        assert subject.display_name
    assert entity_types["1"] > entity_types["2"] > entity_types["3"] > 0


def test_residents_are_born_in_zhejiang_mostly_and_aged_0_to_95(first_5000: list[SyntheticSubject]) -> None:
    people = residents(first_5000)
    born_in_zhejiang = 0
    for subject in people:
        facts = validate_identifier(subject.identifier, AS_OF).resident
        assert facts is not None
        assert facts.birth_date <= AS_OF
        assert 0 <= age(subject) <= 95
        born_in_zhejiang += facts.region_code.startswith("33")
        assert 2 <= len(subject.display_name) <= 4
    assert 0.9 < born_in_zhejiang / len(people) < 1.0  # a few were born in other provinces
    ages = [age(s) for s in people]
    assert 35 < statistics.mean(ages) < 45
    assert sum(a < 18 for a in ages) / len(ages) > 0.12
    assert sum(a >= 80 for a in ages) > 0
    males = sum(int(s.identifier[16]) % 2 for s in people)
    assert 0.45 < males / len(people) < 0.58


def test_enterprise_names_are_unique_and_look_like_enterprise_names(people: list[SyntheticSubject]) -> None:
    names = [s.display_name for s in people if s.kind is SubjectKind.ENTERPRISE]
    assert len(names) == len(set(names))
    assert sum(n.endswith("有限公司") for n in names) / len(names) > 0.5


# --------------------------------------------------------------------------------------------
# Records


def test_every_record_is_valid_for_its_department_and_subject(first_5000: list[SyntheticSubject]) -> None:
    for subject in first_5000:
        for record in subject.records:
            spec = catalogue.record_type(record.department_code, record.record_type)
            assert spec is not None, (record.department_code, record.record_type)
            assert subject.kind in spec.subject_kinds, (record.record_type, subject.kind)
            problems = catalogue.validate_fields(spec, record.fields)
            assert problems == [], (record.record_type, [p.message for p in problems])


def test_no_raw_identifier_anywhere(first_5000: list[SyntheticSubject]) -> None:
    own = {s.identifier for s in first_5000}
    for subject in first_5000:
        for record in subject.records:
            assert not catalogue.contains_raw_identifier(record.source_reference)
            for text in strings(record.fields):
                assert not catalogue.contains_raw_identifier(text), record.record_type
                assert text not in own


def test_source_references_are_unique_per_department(people: list[SyntheticSubject]) -> None:
    seen: set[tuple[str, str]] = set()
    for subject in people:
        for record in subject.records:
            key = (record.department_code, record.source_reference)
            assert key not in seen, key
            seen.add(key)


def test_records_are_dated_as_proofs_expect(first_5000: list[SyntheticSubject]) -> None:
    withdrawn = 0
    for subject in first_5000:
        for record in subject.records:
            assert record.effective_from <= AS_OF, record
            if record.effective_to is not None:
                withdrawn += 1
                assert record.effective_from <= record.effective_to <= AS_OF, record
            assert record.recorded_at.tzinfo is datetime.UTC
            assert record.effective_from <= record.recorded_at.date() <= AS_OF, record
            for name, day in dates(record.fields):
                if name not in FUTURE_DATE_FIELDS:
                    assert day <= AS_OF, (record.record_type, name, day)
    total = sum(len(s.records) for s in first_5000)
    assert withdrawn / total < 0.02  # withdrawn and sealed records are rare


@pytest.mark.parametrize("as_of", [datetime.date(1995, 6, 1), datetime.date(2016, 2, 29), datetime.date(2025, 11, 27)])
def test_other_dates_give_valid_populations(as_of: datetime.date) -> None:
    subjects = list(population(1500, seed=11, as_of=as_of))
    for subject in subjects:
        assert validate_identifier(subject.identifier, as_of).valid, subject.identifier
        for record in subject.records:
            spec = catalogue.record_type(record.department_code, record.record_type)
            assert spec is not None and subject.kind in spec.subject_kinds
            assert catalogue.validate_fields(spec, record.fields) == [], record.record_type
            assert record.effective_from <= record.recorded_at.date() <= as_of
            for name, day in dates(record.fields):
                assert name in FUTURE_DATE_FIELDS or day <= as_of, (record.record_type, name)


def test_regions_are_current_zhejiang_counties(first_5000: list[SyntheticSubject]) -> None:
    counties = current_zhejiang_counties()
    assert len(counties) > 80
    for subject in residents(first_5000):
        (hukou,) = [r for r in subject.records if r.record_type == "household_registration"]
        assert hukou.fields["region_code"] in counties
    for subject in first_5000:
        for record in subject.records:
            if record.record_type in ("property_title", "traffic_violation", "land_contract_right"):
                region = record.fields.get("region_code")
                assert region is None or region in counties, (record.record_type, region)


def test_tax_and_mortgages_are_consistent_with_titles(people: list[SyntheticSubject]) -> None:
    deed_taxes = 0
    for subject in people:
        titles = {r.fields["property_unit"] for r in subject.records if r.record_type == "property_title"}
        filed = {r.fields["property_unit"] for r in subject.records if r.record_type == "sale_contract_filing"}
        for record in subject.records:
            if record.record_type == "property_encumbrance" or record.record_type == "provident_fund_loan":
                assert record.fields["property_unit"] in titles
            if record.record_type == "transaction_tax" and record.fields["tax_kind"] == "deed_tax":
                deed_taxes += 1
                assert record.fields["property_unit"] in titles | filed
                base, rate, amount = (record.fields[k] for k in ("base_fen", "rate_basis_points", "amount_fen"))
                assert isinstance(base, int) and isinstance(rate, int) and isinstance(amount, int)
                assert 100 <= rate <= 300
                assert abs(amount - base * rate / 10_000) <= 1
                assert (record.fields["status"] == "paid") == ("paid_on" in record.fields)
    assert deed_taxes > 0


def test_proofs_derive_from_synthetic_records(first_5000: list[SyntheticSubject]) -> None:
    """Every proof type without a required parameter derives claims from the records."""
    held = drivers = 0
    for subject in first_5000[:2000]:
        stored = [
            proofs.StoredRecord(
                record_id=f"r{n}",
                department_code=r.department_code,
                record_type=r.record_type,
                source_reference=r.source_reference,
                fields=r.fields,
                effective_from=r.effective_from,
                effective_to=r.effective_to,
                recorded_at=r.recorded_at,
                superseded=False,
            )
            for n, r in enumerate(subject.records)
        ]
        for spec in proofs.PROOF_TYPES:
            if subject.kind not in spec.subject_kinds or any(p.required for p in spec.parameters):
                continue
            claims = proofs.derive_claims(spec, stored, {}, AS_OF)
            if spec.code == "driving_licence" and has(subject, "driving_licence"):
                drivers += 1
                held += claims["held"] is True
            if spec.code == "household_registration":
                assert claims["has_record"] is True
            if spec.code == "enterprise_registration":
                assert claims["has_record"] is True
    assert drivers and held / drivers > 0.8


# --------------------------------------------------------------------------------------------
# Rates (wide bounds: the point is plausibility, not calibration)


def points(record: SyntheticRecord) -> int:
    value = record.fields["points_total"]
    assert isinstance(value, int)
    return value


def share(count: int, total: int) -> float:
    assert total > 0
    return count / total


def test_rates_are_plausible(people: list[SyntheticSubject]) -> None:
    everyone = residents(people)
    enterprises = [s for s in people if s.kind is SubjectKind.ENTERPRISE]
    adults = [s for s in everyone if age(s) >= 18]
    driving_age = [s for s in everyone if 18 <= age(s) <= 70]
    over_25 = [s for s in everyone if age(s) >= 25]
    drivers = [s for s in everyone if has(s, "driving_licence")]

    assert 0.03 < share(len(enterprises), len(people)) < 0.07
    assert all(has(s, "household_registration") for s in everyone)
    assert all(has(s, "enterprise_registration") for s in enterprises)
    assert 0.40 < share(sum(has(s, "driving_licence") for s in driving_age), len(driving_age)) < 0.75
    assert 0 < share(sum(has(s, "criminal_record") for s in adults), len(adults)) < 0.01
    assert 0.6 < share(sum(has(s, "education_record") for s in adults), len(adults)) < 0.98
    assert 0.9 < share(sum(has(s, "medical_insurance_enrolment") for s in everyone), len(everyone)) < 0.99
    assert 0.7 < share(sum(has(s, "city_credit_score") for s in adults), len(adults)) < 0.95
    assert 0.40 < share(sum(has(s, "property_title") for s in over_25), len(over_25)) < 0.70
    holders = [s for s in everyone if has(s, "property_title")]
    home_holders = [
        s
        for s in holders
        if any(r.record_type == "property_title" and r.fields["usage"] == "residential" for r in s.records)
    ]
    assert home_holders and all(has(s, "homes_owned") for s in home_holders)
    assert 0 < share(sum(has(s, "traffic_accident") for s in drivers), len(drivers)) < 0.08

    violations = [r for s in drivers for r in s.records if r.record_type == "traffic_violation"]
    assert 1 < len(violations) / len(drivers) < 6  # a few per driver over the years
    kinds = collections.Counter(r.fields["kind"] for r in violations)
    minor = sum(kinds[k] for k in ("illegal_parking", "speeding", "red_light", "phone_use", "seat_belt", "other"))
    assert minor / len(violations) > 0.95
    drunk = sum(
        any(r.record_type == "traffic_violation" and r.fields["kind"] == "drunk_driving" for r in s.records)
        for s in drivers
    )
    assert 0 < share(drunk, len(drivers)) < 0.02
    twelve = sum(any(r.record_type == "scoring_cycle" and points(r) >= 12 for r in s.records) for s in drivers)
    assert 0 < share(twelve, len(drivers)) < 0.1
    classes = collections.Counter(
        r.fields["licence_class"] for s in drivers for r in s.records if r.record_type == "driving_licence"
    )
    assert classes.most_common(1)[0][0] == "C1" and classes["C1"] / len(drivers) > 0.6

    titles = [r for s in people for r in s.records if r.record_type == "property_title"]
    mortgages = [
        r
        for s in people
        for r in s.records
        if r.record_type == "property_encumbrance" and r.fields["kind"] == "mortgage"
    ]
    assert 0.25 < share(len(mortgages), len(titles)) < 0.55
    assert any("released_on" in r.fields for r in mortgages)

    scores = [r.fields["score"] for s in people for r in s.records if r.record_type == "city_credit_score"]
    assert all(isinstance(v, int) and 350 <= v <= 950 for v in scores)
    mean = statistics.mean(v for v in scores if isinstance(v, int))
    assert 620 < mean < 680

    levels = collections.Counter(
        r.fields["level"] for s in over_25 for r in s.records if r.record_type == "education_record"
    )
    assert levels["junior_secondary"] > levels["bachelor"] > levels["master"] > levels["doctorate"]


def test_every_department_publishes_something(people: list[SyntheticSubject]) -> None:
    counts = collections.Counter(r.department_code for s in people for r in s.records)
    # health_commission's only record type is the medical credit default, which health publishes.
    assert counts["health_commission"] == 0
    missing = [d for d in catalogue.DEPARTMENT_CODES if d != "health_commission" and counts[d] == 0]
    assert missing == []


def test_records_are_the_dataclasses_of_the_api(people: list[SyntheticSubject]) -> None:
    subject = people[0]
    assert isinstance(subject, SyntheticSubject) and isinstance(subject.records, tuple)
    assert all(isinstance(r, SyntheticRecord) for r in subject.records)
    assert synthetic.population is population
