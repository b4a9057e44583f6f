"""Unit tests of proof types and claim derivation (services/records/domain/proofs.py): no broker, no I/O.

The people and places are the seed story's: 徐伟 (Xu Wei) gets a ride-hailing permit in
Hangzhou, a second-hand home changes hands in 诸暨 (Zhuji, 330681, in 绍兴 330600), 罗舫
(Luo Fang) of 富阳 (Fuyang, 330111) is treated first and pays later. Every record built here is
first checked against the catalogue, so the proofs and the catalogue cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import re
from collections.abc import Mapping

import pytest

from services.records.domain.catalogue import SubjectKind, Value, record_type, validate_fields
from services.records.domain.proofs import (
    PROOF_TYPES,
    ParameterError,
    ProofTypeSpec,
    StoredRecord,
    add_years,
    derive_claims,
    full_years,
    proof_type,
    resolve_parameters,
)

D = datetime.date
AS_OF = D(2019, 7, 9)  # the day of the seed story
SUBJECT = "sub_" + "a" * 52
CO_HOLDER = "sub_" + "b" * 52
ZHUJI_UNIT = "330681001001GB00012F00010101"
OTHER_UNIT = "330681001001GB00013F00020202"
LONG_AGO = D(2000, 1, 1)
XU_WEI_FIRST_LICENCE = D(2012, 3, 15)
XU_WEI_LICENCE_VALID_UNTIL = D(2024, 3, 15)
CONVICTED_ON = D(2015, 6, 1)
HUKOU_SINCE = D(1990, 1, 1)
INSURED_SINCE = D(2010, 1, 1)
_ids = itertools.count(1)


def rec(
    department_code: str,
    code: str,
    fields: Mapping[str, Value],
    *,
    effective_from: datetime.date = LONG_AGO,
    effective_to: datetime.date | None = None,
    superseded: bool = False,
) -> StoredRecord:
    spec = record_type(department_code, code)
    assert spec is not None, f"{department_code}.{code} is not in the catalogue"
    assert validate_fields(spec, fields) == [], validate_fields(spec, fields)
    n = next(_ids)
    return StoredRecord(
        record_id=f"rec-{n:06d}",
        department_code=department_code,
        record_type=code,
        source_reference=f"{department_code}-{n}",
        fields=dict(fields),
        effective_from=effective_from,
        effective_to=effective_to,
        recorded_at=datetime.datetime.combine(effective_from, datetime.time(2), datetime.UTC),
        superseded=superseded,
    )


def spec(code: str) -> ProofTypeSpec:
    found = proof_type(code)
    assert found is not None, code
    return found


def claims(code: str, records: list[StoredRecord], as_of: datetime.date = AS_OF, **params: str) -> dict[str, Value]:
    return derive_claims(spec(code), records, params, as_of)


# --- record builders ------------------------------------------------------------------------


def education(level: str, graduated: datetime.date, completion: str = "graduated", **kw: object) -> StoredRecord:
    fields: dict[str, Value] = {
        "level": level,
        "institution": "浙江大学" if level in ("bachelor", "master", "doctorate") else "杭州市第二中学",
        "graduated_on": graduated,
        "completion": completion,
    }
    return rec("education", "education_record", fields, effective_from=graduated, **kw)  # type: ignore[arg-type]


def licence(
    first_issued: datetime.date = XU_WEI_FIRST_LICENCE,
    valid_until: datetime.date = XU_WEI_LICENCE_VALID_UNTIL,
    status: str = "valid",
    licence_class: str = "C1",
    **kw: object,
) -> StoredRecord:
    fields: dict[str, Value] = {
        "licence_class": licence_class,
        "first_issued": first_issued,
        "valid_from": first_issued,
        "valid_until": valid_until,
        "status": status,
        "issuing_authority": "杭州市公安局交通警察支队",
    }
    kw.setdefault("effective_from", first_issued)
    return rec("public_security", "driving_licence", fields, **kw)  # type: ignore[arg-type]


def accident(day: datetime.date, severity: str = "major", responsibility: str = "main", **kw: object) -> StoredRecord:
    fields: dict[str, Value] = {
        "accident_date": day,
        "severity": severity,
        "responsibility": responsibility,
        "region_code": "330106",
    }
    return rec("public_security", "traffic_accident", fields, effective_from=day, **kw)  # type: ignore[arg-type]


def violation(day: datetime.date, kind: str, points: int = 12, **kw: object) -> StoredRecord:
    fields: dict[str, Value] = {"violation_date": day, "kind": kind, "points": points}
    return rec("public_security", "traffic_violation", fields, effective_from=day, **kw)  # type: ignore[arg-type]


def cycle(start: datetime.date, points: int, **kw: object) -> StoredRecord:
    end = add_years(start, 1) - datetime.timedelta(days=1)
    fields: dict[str, Value] = {"cycle_start": start, "cycle_end": end, "points_total": points}
    return rec("public_security", "scoring_cycle", fields, effective_from=start, **kw)  # type: ignore[arg-type]


def conviction(category: str, day: datetime.date = CONVICTED_ON, **kw: object) -> StoredRecord:
    fields: dict[str, Value] = {
        "offence_category": category,
        "charge": "危险驾驶罪" if category == "drunk_driving" else "故意伤害罪",
        "judgment_date": day,
        "sentence": "criminal_detention",
        "sentence_months": 3,
        "court": "杭州市西湖区人民法院",
    }
    return rec("public_security", "criminal_record", fields, effective_from=day, **kw)  # type: ignore[arg-type]


def title(unit: str = ZHUJI_UNIT, holders: tuple[str, ...] = (SUBJECT,), **kw: object) -> StoredRecord:
    fields: dict[str, Value] = {
        "property_unit": unit,
        "certificate_number": "浙(2015)诸暨市不动产权第0012345号",
        "region_code": "330681",
        "usage": "residential",
        "area_cm2": 895_000,
        "holders": list(holders),
        "ownership": "sole" if len(holders) == 1 else "joint",
        "acquired_on": D(2015, 4, 2),
    }
    return rec("natural_resources", "property_title", fields, effective_from=D(2015, 4, 2), **kw)  # type: ignore[arg-type]


def encumbrance(
    kind: str,
    registered: datetime.date,
    released: datetime.date | None = None,
    unit: str = ZHUJI_UNIT,
    **kw: object,
) -> StoredRecord:
    fields: dict[str, Value] = {"property_unit": unit, "kind": kind, "registered_on": registered}
    if kind == "mortgage":
        fields |= {"amount_fen": 80_000_000, "creditor": "中国工商银行诸暨支行"}
    if kind == "seizure":
        fields["court"] = "诸暨市人民法院"
    if released is not None:
        fields["released_on"] = released
    return rec("natural_resources", "property_encumbrance", fields, effective_from=registered, **kw)  # type: ignore[arg-type]


def deed_tax(status: str = "paid", paid_on: datetime.date | None = AS_OF, tax_kind: str = "deed_tax") -> StoredRecord:
    # 1.5 million yuan at 1.5%: 22,500 yuan.
    fields: dict[str, Value] = {
        "property_unit": ZHUJI_UNIT,
        "tax_kind": tax_kind,
        "base_fen": 150_000_000,
        "rate_basis_points": 150,
        "amount_fen": 2_250_000,
        "status": status,
        "due_on": AS_OF,
    }
    if paid_on is not None:
        fields["paid_on"] = paid_on
    return rec("taxation", "transaction_tax", fields, effective_from=D(2019, 7, 8))


def hukou(region: str = "330681", since: datetime.date = HUKOU_SINCE, **kw: object) -> StoredRecord:
    fields: dict[str, Value] = {
        "region_code": region,
        "registered_since": since,
        "household_type": "family",
        "relationship_to_head": "head",
    }
    return rec("public_security", "household_registration", fields, effective_from=since, **kw)  # type: ignore[arg-type]


def insurance(scheme: str = "resident", status: str = "active", since: datetime.date = INSURED_SINCE) -> StoredRecord:
    fields: dict[str, Value] = {
        "scheme": scheme,
        "enrolled_since": since,
        "status": status,
        "insured_region": "330111",
    }
    return rec("healthcare_security", "medical_insurance_enrolment", fields, effective_from=since)


def credit_score(score: int, band: str, scored: datetime.date) -> StoredRecord:
    fields: dict[str, Value] = {"score": score, "band": band, "scored_on": scored, "city_code": "330100"}
    return rec("credit_center", "city_credit_score", fields, effective_from=scored)


def enterprise(status: str = "active") -> StoredRecord:
    fields: dict[str, Value] = {
        "registered_name": "杭州西湖数字科技有限公司",
        "entity_type": "limited_liability_company",
        "legal_representative": "330106********123X",
        "registered_capital_fen": 1_000_000_000,
        "established_on": D(2015, 3, 18),
        "status": status,
        "business_scope": "软件开发；信息技术咨询服务",
        "region_code": "330106",
    }
    return rec("market_regulation", "enterprise_registration", fields, effective_from=D(2015, 3, 18))


def homes(count: int, city: str = "330600") -> StoredRecord:
    return rec("housing", "homes_owned", {"city_code": city, "count": count}, effective_from=D(2019, 1, 1))


def eligibility(eligible: bool, reason: str, city: str = "330600", assessed: datetime.date = AS_OF) -> StoredRecord:
    fields: dict[str, Value] = {"city_code": city, "eligible": eligible, "reason": reason, "assessed_on": assessed}
    return rec("housing", "purchase_eligibility", fields, effective_from=assessed)


# --- one realistic case per proof type: records, parameters, expected claims -----------------

REALISTIC: dict[str, tuple[list[StoredRecord], dict[str, str], dict[str, Value]]] = {
    "education_level": (
        [education("senior_secondary", D(2004, 6, 30)), education("associate", D(2008, 6, 30))],
        {},
        {"as_of": AS_OF, "has_record": True, "highest_level": "associate", "graduated_on": D(2008, 6, 30)},
    ),
    "driving_licence": (
        [licence()],
        {},
        {
            "as_of": AS_OF,
            "held": True,
            "licence_class": "C1",
            "first_issued": D(2012, 3, 15),
            "valid_until": D(2024, 3, 15),
            "status": "valid",
            "years_held": 7,
        },
    ),
    "traffic_safety": (
        [
            licence(),
            accident(D(2017, 5, 1), severity="minor", responsibility="full"),
            violation(D(2018, 9, 1), "speeding", points=3),
            cycle(D(2018, 3, 15), 3),
        ],
        {},
        {
            "as_of": AS_OF,
            "window_start": D(2016, 7, 10),
            "major_or_fatal_accidents": 0,
            "serious_violations": 0,
            "serious_violation_kinds": [],
            "cycles_window_start": D(2017, 3, 15),
            "twelve_point_cycles": 0,
        },
    ),
    "criminal_record": (
        [conviction("drunk_driving"), conviction("violent", D(2011, 2, 1))],
        {},
        {"as_of": AS_OF, "has_record": True, "categories": ["drunk_driving", "violent"]},
    ),
    "property_title": (
        [title(holders=(SUBJECT, CO_HOLDER))],
        {},
        {
            "as_of": AS_OF,
            "holds_title": True,
            "titles": [
                {
                    "property_unit": ZHUJI_UNIT,
                    "region_code": "330681",
                    "city_code": "330600",
                    "area_cm2": 895_000,
                    "acquired_on": D(2015, 4, 2),
                    "sole_holder": False,
                }
            ],
        },
    ),
    "property_encumbrances": (
        [encumbrance("mortgage", D(2015, 4, 2)), encumbrance("seizure", D(2019, 5, 20))],
        {"property_unit": ZHUJI_UNIT},
        {
            "as_of": AS_OF,
            "property_unit": ZHUJI_UNIT,
            "mortgage_outstanding": True,
            "seizure": True,
            "encumbrances": [
                {"kind": "mortgage", "registered_on": D(2015, 4, 2)},
                {"kind": "seizure", "registered_on": D(2019, 5, 20)},
            ],
        },
    ),
    "transaction_tax_paid": (
        [deed_tax(), deed_tax(tax_kind="value_added", status="due", paid_on=None)],
        {"property_unit": ZHUJI_UNIT},
        {
            "as_of": AS_OF,
            "property_unit": ZHUJI_UNIT,
            "has_record": True,
            "deed_tax_base_fen": 150_000_000,
            "deed_tax_rate_basis_points": 150,
            "deed_tax_amount_fen": 2_250_000,
            "deed_tax_paid": True,
            "deed_tax_paid_on": AS_OF,
        },
    ),
    "household_registration": (
        [hukou()],
        {},
        {
            "as_of": AS_OF,
            "has_record": True,
            "region_code": "330681",
            "city_code": "330600",
            "registered_since": D(1990, 1, 1),
            "household_type": "family",
        },
    ),
    "medical_insurance_enrolment": (
        [insurance()],
        {},
        {"as_of": AS_OF, "enrolled": True, "scheme": "resident", "status": "active", "since": D(2010, 1, 1)},
    ),
    "city_credit_score": (
        [credit_score(680, "good", D(2019, 1, 1)), credit_score(720, "very_good", D(2019, 7, 1))],
        {},
        {"as_of": AS_OF, "has_score": True, "score": 720, "band": "very_good", "scored_on": D(2019, 7, 1)},
    ),
    "enterprise_registration": (
        [enterprise()],
        {},
        {
            "as_of": AS_OF,
            "has_record": True,
            "registered_name": "杭州西湖数字科技有限公司",
            "entity_type": "limited_liability_company",
            "status": "active",
            "established_on": D(2015, 3, 18),
            "registered_capital_fen": 1_000_000_000,
        },
    ),
    "housing_purchase_eligibility": (
        [homes(1), eligibility(True, "local_household_under_limit"), homes(3, city="330100")],
        {"city": "330600"},
        {
            "as_of": AS_OF,
            "city_code": "330600",
            "has_homes_record": True,
            "homes_owned": 1,
            "assessed": True,
            "eligible": True,
            "reason": "local_household_under_limit",
            "assessed_on": AS_OF,
        },
    ),
}

# What each proof type states about a subject without any record (the negative proofs).
NEGATIVE: dict[str, tuple[dict[str, str], dict[str, Value]]] = {
    "education_level": ({}, {"as_of": AS_OF, "has_record": False, "highest_level": "", "graduated_on": ""}),
    "driving_licence": (
        {},
        {
            "as_of": AS_OF,
            "held": False,
            "licence_class": "",
            "first_issued": "",
            "valid_until": "",
            "status": "",
            "years_held": 0,
        },
    ),
    "traffic_safety": (
        {},
        {
            "as_of": AS_OF,
            "window_start": D(2016, 7, 10),
            "major_or_fatal_accidents": 0,
            "serious_violations": 0,
            "serious_violation_kinds": [],
            "cycles_window_start": D(2016, 7, 10),
            "twelve_point_cycles": 0,
        },
    ),
    "criminal_record": ({}, {"as_of": AS_OF, "has_record": False, "categories": []}),
    "property_title": ({}, {"as_of": AS_OF, "holds_title": False, "titles": []}),
    "property_encumbrances": (
        {"property_unit": ZHUJI_UNIT},
        {
            "as_of": AS_OF,
            "property_unit": ZHUJI_UNIT,
            "mortgage_outstanding": False,
            "seizure": False,
            "encumbrances": [],
        },
    ),
    "transaction_tax_paid": (
        {"property_unit": ZHUJI_UNIT},
        {
            "as_of": AS_OF,
            "property_unit": ZHUJI_UNIT,
            "has_record": False,
            "deed_tax_base_fen": 0,
            "deed_tax_rate_basis_points": 0,
            "deed_tax_amount_fen": 0,
            "deed_tax_paid": False,
            "deed_tax_paid_on": "",
        },
    ),
    "household_registration": (
        {},
        {
            "as_of": AS_OF,
            "has_record": False,
            "region_code": "",
            "city_code": "",
            "registered_since": "",
            "household_type": "",
        },
    ),
    "medical_insurance_enrolment": ({}, {"as_of": AS_OF, "enrolled": False, "scheme": "", "status": "", "since": ""}),
    "city_credit_score": ({}, {"as_of": AS_OF, "has_score": False, "score": 0, "band": "", "scored_on": ""}),
    "enterprise_registration": (
        {},
        {
            "as_of": AS_OF,
            "has_record": False,
            "registered_name": "",
            "entity_type": "",
            "status": "",
            "established_on": "",
            "registered_capital_fen": 0,
        },
    ),
    "housing_purchase_eligibility": (
        {"city": "330600"},
        {
            "as_of": AS_OF,
            "city_code": "330600",
            "has_homes_record": False,
            "homes_owned": 0,
            "assessed": False,
            "eligible": False,
            "reason": "",
            "assessed_on": "",
        },
    ),
}

PROOF_PARAMS = [pytest.param(p, id=p.code) for p in PROOF_TYPES]


def assert_values(value: object) -> None:
    """Claims are Values all the way down: no None, no float, no tuple, str keys."""
    if isinstance(value, list):
        for item in value:
            assert_values(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str)
            assert_values(item)
    else:
        assert isinstance(value, str | int | bool | datetime.date), repr(value)


# --------------------------------------------------------------------------------------------
# The proof type declarations


def test_the_shipped_proof_types() -> None:
    assert {p.code for p in PROOF_TYPES} == {
        "education_level",
        "driving_licence",
        "traffic_safety",
        "criminal_record",
        "property_title",
        "property_encumbrances",
        "transaction_tax_paid",
        "household_registration",
        "medical_insurance_enrolment",
        "city_credit_score",
        "enterprise_registration",
        "housing_purchase_eligibility",
    }
    assert len({p.code for p in PROOF_TYPES}) == len(PROOF_TYPES)
    assert proof_type("nope") is None


@pytest.mark.parametrize("p", PROOF_PARAMS)
def test_proof_type_is_well_declared(p: ProofTypeSpec) -> None:
    assert re.fullmatch(r"[a-z][a-z0-9_]*", p.code)
    assert re.search(r"[\u4e00-\u9fff]", p.name_zh) and p.name_en and p.description
    # It reads only records of the catalogue, all owned by the issuing department.
    assert p.source_record_types
    for department_code, code in p.source_record_types:
        source = record_type(department_code, code)
        assert source is not None, (department_code, code)
        assert p.subject_kinds <= source.subject_kinds, f"{code} has no records about some of {p.subject_kinds}"
    assert p.department_codes == tuple(dict.fromkeys(d for d, _ in p.source_record_types))
    assert p.department_codes == (p.issuing_department_code,)
    assert p.subject_kinds
    # Claims.
    assert "as_of" in p.claim_names and len(set(p.claim_names)) == len(p.claim_names)
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", c) for c in p.claim_names)
    # Parameters: defaults are valid values, required ones have none.
    assert len({q.name for q in p.parameters}) == len(p.parameters)
    for q in p.parameters:
        assert q.description_zh and q.description_en
        if q.required:
            assert q.default == ""
        if q.default:
            assert q.parse(q.default) == q.default
    assert datetime.timedelta(days=1) <= p.validity <= datetime.timedelta(days=365)


def test_validity_periods() -> None:
    assert spec("criminal_record").validity == datetime.timedelta(days=90)
    assert spec("city_credit_score").validity == datetime.timedelta(days=30)
    # A seizure can be registered any day: an encumbrance proof is short-lived.
    assert spec("property_encumbrances").validity <= datetime.timedelta(days=7)


def test_subject_kinds() -> None:
    assert spec("enterprise_registration").subject_kinds == {SubjectKind.ENTERPRISE}
    assert spec("criminal_record").subject_kinds == {SubjectKind.RESIDENT}
    assert spec("property_title").subject_kinds == set(SubjectKind)


# --------------------------------------------------------------------------------------------
# Every proof type: realistic records, no records, claim names


def test_every_proof_type_has_a_case_here() -> None:
    assert set(REALISTIC) == set(NEGATIVE) == {p.code for p in PROOF_TYPES}


@pytest.mark.parametrize("p", PROOF_PARAMS)
def test_realistic_claims(p: ProofTypeSpec) -> None:
    records, params, expected = REALISTIC[p.code]
    derived = derive_claims(p, records, params, AS_OF)
    assert derived == expected
    assert tuple(derived) == p.claim_names
    assert_values(derived)


@pytest.mark.parametrize("p", PROOF_PARAMS)
def test_negative_proof_without_records(p: ProofTypeSpec) -> None:
    params, expected = NEGATIVE[p.code]
    derived = derive_claims(p, [], params, AS_OF)
    assert derived == expected
    assert tuple(derived) == p.claim_names
    assert_values(derived)


@pytest.mark.parametrize("p", PROOF_PARAMS)
def test_superseded_records_are_ignored(p: ProofTypeSpec) -> None:
    records, params, _ = REALISTIC[p.code]
    superseded = [StoredRecord(**{**r.__dict__, "superseded": True}) for r in records]
    assert derive_claims(p, superseded, params, AS_OF) == NEGATIVE[p.code][1]


@pytest.mark.parametrize("p", PROOF_PARAMS)
def test_records_not_yet_effective_or_ended_are_ignored(p: ProofTypeSpec) -> None:
    records, params, expected = REALISTIC[p.code]
    future = [StoredRecord(**{**r.__dict__, "effective_from": AS_OF + datetime.timedelta(days=1)}) for r in records]
    assert derive_claims(p, future, params, AS_OF) == NEGATIVE[p.code][1]
    ended = [StoredRecord(**{**r.__dict__, "effective_to": AS_OF - datetime.timedelta(days=1)}) for r in records]
    assert derive_claims(p, ended, params, AS_OF) == NEGATIVE[p.code][1]
    # effective_to is inclusive: a record ending on as_of still holds.
    ending = [StoredRecord(**{**r.__dict__, "effective_to": AS_OF}) for r in records]
    assert derive_claims(p, ending, params, AS_OF) == expected


@pytest.mark.parametrize("p", PROOF_PARAMS)
def test_records_of_other_types_are_ignored(p: ProofTypeSpec) -> None:
    params, expected = NEGATIVE[p.code]
    others = [r for code, (records, _, _) in REALISTIC.items() if code != p.code for r in records]
    others = [r for r in others if (r.department_code, r.record_type) not in p.source_record_types]
    assert derive_claims(p, others, params, AS_OF) == expected


def test_as_of_must_be_a_date() -> None:
    with pytest.raises(TypeError, match="as_of"):
        derive_claims(spec("criminal_record"), [], {}, datetime.datetime(2019, 7, 9, tzinfo=datetime.UTC))


# --------------------------------------------------------------------------------------------
# Education, licence, criminal record


def test_highest_education_level() -> None:
    records = [
        education("doctorate", D(2016, 6, 30)),
        education("bachelor", D(2018, 6, 30)),  # a later but lower degree
        education("master", D(2012, 6, 30)),
    ]
    assert claims("education_level", records)["highest_level"] == "doctorate"
    # Completing without graduating (结业), withdrawing (肄业) or graduating after as_of does not count.
    records = [
        education("junior_secondary", D(2000, 6, 30)),
        education("bachelor", D(2008, 6, 30), completion="completed"),
        education("master", D(2010, 6, 30), completion="withdrew"),
        education("doctorate", D(2019, 7, 10)),
    ]
    got = claims("education_level", records)
    assert (got["highest_level"], got["graduated_on"]) == ("junior_secondary", D(2000, 6, 30))
    # Secondary vocational school ranks with senior secondary: the later one is reported.
    records = [education("senior_secondary", D(2004, 6, 30)), education("vocational", D(2007, 6, 30))]
    assert claims("education_level", records)["highest_level"] == "vocational"


def test_licence_status_and_years_held() -> None:
    got = claims("driving_licence", [licence(valid_until=D(2019, 7, 8))])
    assert (got["held"], got["status"]) == (False, "expired")  # the department's status lags behind
    got = claims("driving_licence", [licence(valid_until=AS_OF)])
    assert (got["held"], got["status"]) == (True, "valid")
    got = claims("driving_licence", [licence(status="suspended")])
    assert (got["held"], got["status"], got["years_held"]) == (False, "suspended", 7)
    # A renewal: the latest record in force wins.
    renewed = [
        licence(valid_until=D(2018, 3, 15), effective_from=D(2012, 3, 15)),
        licence(licence_class="B2", valid_until=D(2028, 3, 15), effective_from=D(2018, 3, 15)),
    ]
    got = claims("driving_licence", renewed)
    assert (got["licence_class"], got["valid_until"], got["held"]) == ("B2", D(2028, 3, 15), True)
    # Three full years on the third anniversary, not a day before.
    assert claims("driving_licence", [licence(first_issued=D(2016, 7, 9))])["years_held"] == 3
    assert claims("driving_licence", [licence(first_issued=D(2016, 7, 10))])["years_held"] == 2


@pytest.mark.parametrize(
    ("as_of", "years"),
    [(D(2019, 2, 27), 2), (D(2019, 2, 28), 3), (D(2020, 2, 28), 3), (D(2020, 2, 29), 4), (D(2020, 3, 1), 4)],
)
def test_years_held_from_a_leap_day(as_of: datetime.date, years: int) -> None:
    record = licence(first_issued=D(2016, 2, 29), valid_until=D(2026, 2, 28))
    assert claims("driving_licence", [record], as_of=as_of)["years_held"] == years


def test_criminal_record_categories_without_details() -> None:
    records = [conviction("violent"), conviction("drunk_driving"), conviction("violent", D(2012, 1, 1))]
    got = claims("criminal_record", records)
    assert got == {"as_of": AS_OF, "has_record": True, "categories": ["drunk_driving", "violent"]}
    # A sealed record (effective_to in the past) is not disclosed; a corrected one counts once.
    sealed = conviction("property", effective_to=D(2018, 12, 31))
    assert claims("criminal_record", [sealed])["has_record"] is False
    wrong = conviction("fraud", superseded=True)
    assert claims("criminal_record", [wrong, conviction("property")])["categories"] == ["property"]


def test_a_judgment_after_the_as_of_date_is_not_yet_a_record() -> None:
    # Recorded in advance (in force from before as_of) but taking effect after it.
    later = dataclasses.replace(conviction("violent", D(2019, 8, 1)), effective_from=D(2019, 7, 1))
    assert claims("criminal_record", [later])["has_record"] is False
    assert claims("criminal_record", [later], as_of=D(2019, 8, 1))["categories"] == ["violent"]


# --------------------------------------------------------------------------------------------
# Traffic safety: windows, responsibility, serious violations, 12-point cycles


def test_accident_window_boundary() -> None:
    exactly_three_years = accident(D(2016, 7, 9))
    one_day_inside = accident(D(2016, 7, 10))
    assert claims("traffic_safety", [exactly_three_years])["major_or_fatal_accidents"] == 0
    assert claims("traffic_safety", [one_day_inside])["major_or_fatal_accidents"] == 1
    assert claims("traffic_safety", [accident(AS_OF)])["major_or_fatal_accidents"] == 1
    # A longer look-back reaches it.
    assert claims("traffic_safety", [exactly_three_years], years="4")["major_or_fatal_accidents"] == 1
    assert claims("traffic_safety", [], years="5")["window_start"] == D(2014, 7, 10)


@pytest.mark.parametrize(
    ("severity", "responsibility", "counted"),
    [
        ("major", "full", True),
        ("fatal", "main", True),
        ("fatal", "equal", True),
        ("major", "secondary", False),
        ("fatal", "none", False),
        ("minor", "full", False),
    ],
)
def test_which_accidents_count(severity: str, responsibility: str, counted: bool) -> None:
    record = accident(D(2018, 1, 1), severity=severity, responsibility=responsibility)
    assert claims("traffic_safety", [record])["major_or_fatal_accidents"] == int(counted)


def test_window_from_a_leap_day() -> None:
    leap = D(2020, 2, 29)
    got = claims("traffic_safety", [accident(D(2017, 2, 28)), accident(D(2017, 3, 1))], as_of=leap)
    assert (got["window_start"], got["major_or_fatal_accidents"]) == (D(2017, 3, 1), 1)
    assert claims("traffic_safety", [], as_of=leap, years="4")["window_start"] == D(2016, 3, 1)


def test_serious_violations() -> None:
    records = [
        violation(D(2017, 1, 1), "drunk_driving"),
        violation(D(2018, 1, 1), "drunk_driving"),
        violation(D(2018, 2, 1), "drink_driving"),
        violation(D(2018, 3, 1), "speeding", points=6),
        violation(D(2018, 4, 1), "red_light", points=6),
        violation(D(2016, 7, 9), "drug_driving"),  # exactly 3 years ago: outside
        violation(D(2019, 7, 1), "dangerous_driving"),
    ]
    got = claims("traffic_safety", records)
    assert got["serious_violations"] == 4
    assert got["serious_violation_kinds"] == ["dangerous_driving", "drink_driving", "drunk_driving"]


def test_twelve_point_cycles_in_the_last_three() -> None:
    # Licence first issued 2012-03-15: on 2019-07-09 the running cycle began 2019-03-15, so the last
    # three cycles began 2017-03-15, 2018-03-15 and 2019-03-15.
    records = [
        licence(),
        cycle(D(2016, 3, 15), 12),  # the fourth cycle back: outside
        cycle(D(2017, 3, 15), 15),
        cycle(D(2018, 3, 15), 11),
        cycle(D(2019, 3, 15), 12),  # the running cycle is already full
    ]
    got = claims("traffic_safety", records)
    assert (got["cycles_window_start"], got["twelve_point_cycles"]) == (D(2017, 3, 15), 2)
    assert claims("traffic_safety", records, cycles="4")["twelve_point_cycles"] == 3
    assert claims("traffic_safety", records, cycles="1")["twelve_point_cycles"] == 1
    # On the last day of a cycle it is still the running one; the next day a new one begins.
    got = claims("traffic_safety", records, as_of=D(2020, 3, 14))
    assert (got["cycles_window_start"], got["twelve_point_cycles"]) == (D(2017, 3, 15), 2)
    got = claims("traffic_safety", records, as_of=D(2020, 3, 15))
    assert (got["cycles_window_start"], got["twelve_point_cycles"]) == (D(2018, 3, 15), 1)


def test_cycles_are_not_counted_before_the_licence_was_first_issued() -> None:
    got = claims("traffic_safety", [licence(first_issued=D(2018, 9, 1))])
    assert got["cycles_window_start"] == D(2018, 9, 1)


def test_cycles_anchored_on_a_leap_day_licence() -> None:
    records = [licence(first_issued=D(2016, 2, 29)), cycle(D(2018, 2, 28), 12)]
    got = claims("traffic_safety", records, as_of=D(2021, 2, 27))
    # Cycles begin on 2018-02-28, 2019-02-28, 2020-02-29 and 2021-02-28 (anniversaries of the leap
    # day): on 2021-02-27 the running cycle began on 2020-02-29, so the last three began 2018-02-28.
    assert (got["cycles_window_start"], got["twelve_point_cycles"]) == (D(2018, 2, 28), 1)
    got = claims("traffic_safety", records, as_of=D(2021, 2, 28))
    assert (got["cycles_window_start"], got["twelve_point_cycles"]) == (D(2019, 2, 28), 0)


def test_cycles_without_a_licence_record_anchor_on_the_latest_cycle() -> None:
    records = [cycle(D(2015, 9, 1), 12), cycle(D(2016, 9, 1), 12), cycle(D(2018, 9, 1), 4)]
    got = claims("traffic_safety", records)
    assert (got["cycles_window_start"], got["twelve_point_cycles"]) == (D(2016, 9, 1), 1)


# --------------------------------------------------------------------------------------------
# Property, tax, housing


def test_property_titles() -> None:
    records = [title(), title(OTHER_UNIT, holders=(SUBJECT, CO_HOLDER))]
    titles = claims("property_title", records)["titles"]
    assert isinstance(titles, list)
    assert [(t["property_unit"], t["sole_holder"]) for t in titles if isinstance(t, dict)] == [
        (ZHUJI_UNIT, True),
        (OTHER_UNIT, False),
    ]
    # One title by its unit code (given in lower case, normalized).
    got = claims("property_title", records, property_unit=OTHER_UNIT.lower())
    assert got["holds_title"] is True and isinstance(got["titles"], list) and len(got["titles"]) == 1
    got = claims("property_title", [title()], property_unit=OTHER_UNIT)
    assert got == {"as_of": AS_OF, "holds_title": False, "titles": []}
    # A title the subject sold (record ended) is no longer held.
    assert claims("property_title", [title(effective_to=D(2019, 7, 1))])["holds_title"] is False


def test_encumbrances_released_and_outstanding() -> None:
    records = [
        encumbrance("mortgage", D(2015, 4, 2), released=D(2019, 6, 20)),
        encumbrance("seizure", D(2018, 1, 5), released=AS_OF),  # lifted on as_of: released
        encumbrance("other", D(2018, 1, 5), released=D(2019, 7, 10)),  # lifted tomorrow: still there
        encumbrance("seizure", D(2019, 1, 1), unit=OTHER_UNIT),
        encumbrance("mortgage", D(2019, 7, 10)),  # registered after as_of
    ]
    got = claims("property_encumbrances", records, property_unit=ZHUJI_UNIT)
    assert got == {
        "as_of": AS_OF,
        "property_unit": ZHUJI_UNIT,
        "mortgage_outstanding": False,
        "seizure": False,
        "encumbrances": [{"kind": "other", "registered_on": D(2018, 1, 5)}],
    }


def test_deed_tax_due_and_paid() -> None:
    got = claims("transaction_tax_paid", [deed_tax(status="due", paid_on=None)], property_unit=ZHUJI_UNIT)
    assert (got["has_record"], got["deed_tax_paid"], got["deed_tax_paid_on"]) == (True, False, "")
    assert got["deed_tax_amount_fen"] == 2_250_000
    got = claims("transaction_tax_paid", [deed_tax(paid_on=D(2019, 7, 10))], property_unit=ZHUJI_UNIT)
    assert (got["deed_tax_paid"], got["deed_tax_paid_on"]) == (False, "")  # paid after as_of
    # Only the deed tax is stated; another property's tax is not this one's.
    got = claims("transaction_tax_paid", [deed_tax(tax_kind="individual_income")], property_unit=ZHUJI_UNIT)
    assert got["has_record"] is False
    got = claims("transaction_tax_paid", [deed_tax()], property_unit=OTHER_UNIT)
    assert got["has_record"] is False


def test_household_registration_after_a_move() -> None:
    records = [
        hukou("330111", since=D(1990, 1, 1), effective_to=D(2016, 9, 30)),
        hukou("330106", since=D(2016, 10, 1)),
    ]
    got = claims("household_registration", records)
    assert (got["region_code"], got["city_code"], got["registered_since"]) == ("330106", "330100", D(2016, 10, 1))
    got = claims("household_registration", records, as_of=D(2016, 9, 30))
    assert (got["region_code"], got["city_code"]) == ("330111", "330100")


def test_housing_purchase_eligibility_per_city() -> None:
    records = [homes(2, city="330100"), eligibility(False, "local_household_limit_reached", city="330100")]
    got = claims("housing_purchase_eligibility", records, city="330100")
    assert (got["homes_owned"], got["eligible"], got["reason"]) == (2, False, "local_household_limit_reached")
    got = claims("housing_purchase_eligibility", records, city="330600")
    assert (got["has_homes_record"], got["assessed"]) == (False, False)
    # An assessment dated after as_of is not yet made.
    late = [eligibility(True, "no_purchase_restriction", assessed=D(2019, 7, 10))]
    assert claims("housing_purchase_eligibility", late, city="330600")["assessed"] is False


# --------------------------------------------------------------------------------------------
# Medical insurance, credit score, enterprise


def test_active_enrolment_wins_over_a_later_ended_one() -> None:
    records = [insurance("employee", "active", D(2015, 1, 1)), insurance("resident", "ended", D(2018, 1, 1))]
    got = claims("medical_insurance_enrolment", records)
    assert (got["enrolled"], got["scheme"], got["since"]) == (True, "employee", D(2015, 1, 1))
    got = claims("medical_insurance_enrolment", [insurance(status="suspended")])
    assert (got["enrolled"], got["status"]) == (False, "suspended")


def test_credit_score_latest_by_scoring_date() -> None:
    records = [credit_score(720, "very_good", D(2019, 7, 1)), credit_score(600, "fair", D(2019, 7, 10))]
    got = claims("city_credit_score", records)
    assert (got["score"], got["scored_on"]) == (720, D(2019, 7, 1))


def test_enterprise_status() -> None:
    assert claims("enterprise_registration", [enterprise("revoked")])["status"] == "revoked"


# --------------------------------------------------------------------------------------------
# Parameters


def test_defaults_and_normalization() -> None:
    traffic = spec("traffic_safety")
    assert resolve_parameters(traffic, {}) == {"years": "3", "cycles": "3"}
    assert resolve_parameters(traffic, {"years": " 05 ", "cycles": ""}) == {"years": "5", "cycles": "3"}
    title_spec = spec("property_title")
    assert resolve_parameters(title_spec, {}) == {}  # optional, no default: left out
    assert resolve_parameters(title_spec, {"property_unit": ZHUJI_UNIT.lower()}) == {"property_unit": ZHUJI_UNIT}


@pytest.mark.parametrize("p", PROOF_PARAMS)
def test_resolving_is_idempotent(p: ProofTypeSpec) -> None:
    given = REALISTIC[p.code][1]
    once = resolve_parameters(p, given)
    assert resolve_parameters(p, once) == once


def test_unknown_parameter() -> None:
    with pytest.raises(ParameterError) as caught:
        resolve_parameters(spec("traffic_safety"), {"year": "3"})
    assert caught.value.parameter == "year"
    assert str(caught.value) == "parameters.year: is not a parameter of traffic_safety (it takes years, cycles)"
    with pytest.raises(ParameterError, match=r"^parameters.colour: .*takes no parameters"):
        resolve_parameters(spec("criminal_record"), {"colour": "red"})
    # A name that is not a name is not repeated (it might be an identifier).
    with pytest.raises(ParameterError) as caught:
        resolve_parameters(spec("criminal_record"), {"33010619900101123X": "1"})
    assert caught.value.parameter == "<invalid name>" and "33010619900101123X" not in str(caught.value)


@pytest.mark.parametrize("value", ["", "  "])
def test_missing_required_parameter(value: str) -> None:
    with pytest.raises(ParameterError) as caught:
        resolve_parameters(spec("property_encumbrances"), {"property_unit": value} if value else {})
    assert isinstance(caught.value, ValueError)
    assert caught.value.parameter == "property_unit"
    assert str(caught.value).startswith("parameters.property_unit: is required for property_encumbrances")
    with pytest.raises(ParameterError, match=r"^parameters.city: is required"):
        resolve_parameters(spec("housing_purchase_eligibility"), {})


@pytest.mark.parametrize("value", ["abc", "0", "21", "-1", "+3", "3.0", "1_0", "３", "٣", "1e1", "9" * 30])
def test_bad_years(value: str) -> None:
    with pytest.raises(ParameterError) as caught:
        resolve_parameters(spec("traffic_safety"), {"years": value})
    assert caught.value.parameter == "years"
    assert caught.value.reason in ("must be a whole number from 1 to 20", "is longer than 64 characters")
    assert str(caught.value) == f"parameters.years: {caught.value.reason}"


@pytest.mark.parametrize("value", ["11", "0"])
def test_bad_cycles(value: str) -> None:
    with pytest.raises(ParameterError, match=r"^parameters.cycles: must be a whole number from 1 to 10$"):
        resolve_parameters(spec("traffic_safety"), {"cycles": value})


@pytest.mark.parametrize(
    ("code", "name", "value"),
    [
        ("property_encumbrances", "property_unit", "330681001001GB00012X00010101"),  # X: no such fixture kind
        ("property_encumbrances", "property_unit", "33010619900101123X"),
        ("transaction_tax_paid", "property_unit", "浙(2015)诸暨市不动产权第0012345号"),
        ("housing_purchase_eligibility", "city", "330681"),  # a county, not a city
        ("housing_purchase_eligibility", "city", "330000"),  # the province
    ],
)
def test_bad_codes(code: str, name: str, value: str) -> None:
    with pytest.raises(ParameterError) as caught:
        resolve_parameters(spec(code), {name: value})
    assert caught.value.parameter == name and value not in str(caught.value)


def test_derive_claims_checks_parameters_too() -> None:
    with pytest.raises(ParameterError, match=r"^parameters.years: "):
        derive_claims(spec("traffic_safety"), [], {"years": "0"}, AS_OF)
    with pytest.raises(ParameterError, match=r"^parameters.property_unit: is required"):
        derive_claims(spec("property_encumbrances"), [], {}, AS_OF)


# --------------------------------------------------------------------------------------------
# Dates


@pytest.mark.parametrize(
    ("day", "years", "expected"),
    [
        (D(2019, 7, 9), -3, D(2016, 7, 9)),
        (D(2020, 2, 29), -3, D(2017, 2, 28)),
        (D(2020, 2, 29), -4, D(2016, 2, 29)),
        (D(2016, 2, 29), 1, D(2017, 2, 28)),
        (D(2016, 2, 29), 4, D(2020, 2, 29)),
    ],
)
def test_add_years(day: datetime.date, years: int, expected: datetime.date) -> None:
    assert add_years(day, years) == expected


def test_full_years() -> None:
    assert full_years(D(2012, 3, 15), D(2019, 3, 14)) == 6
    assert full_years(D(2012, 3, 15), D(2019, 3, 15)) == 7
    assert full_years(D(2019, 3, 15), D(2012, 3, 15)) == 0
    assert full_years(D(2019, 3, 15), D(2019, 3, 15)) == 0
