"""Unit tests of the records catalogue (services/records/domain/catalogue.py): no broker, no I/O.

Every record type gets a complete valid example built from its own field specs, so that each
problem kind is checked on every field of every record type, not only on a few picked by hand;
hand-written records from the seed story check the realistic cases.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator

import pytest

from services.records.domain import catalogue
from services.records.domain.catalogue import (
    DEPARTMENTS,
    MAX_FEN,
    MAX_LIST_ITEMS,
    MAX_STRING_LENGTH,
    DateOrder,
    DepartmentSpec,
    FieldProblem,
    FieldSpec,
    FieldType,
    RecordTypeSpec,
    SubjectKind,
    Value,
    contains_raw_identifier,
    department,
    record_type,
    validate_fields,
)

SNAKE = re.compile(r"[a-z][a-z0-9_]*")
CJK = re.compile(r"[\u4e00-\u9fff]")

# Valid resident ID numbers and credit codes (check characters correct), never to be accepted.
RESIDENT_ID = "33010619900101123X"  # hypothetical; shape is what matters
LEGACY_ID = "330106900101123"
USCC = "91330106MA2B3C4D5E"
SUBJECT_ID = "sub_" + "a" * 52
OTHER_SUBJECT_ID = "sub_" + "b" * 52
ZHUJI_UNIT = "330681001001GB00012F00010101"

# One valid example per format pattern of the catalogue.
PATTERN_EXAMPLES = {
    catalogue.REGION_CODE: "330681",
    catalogue.CITY_CODE: "330600",
    catalogue.PROPERTY_UNIT: ZHUJI_UNIT,
    catalogue.SUBJECT_REFERENCE: SUBJECT_ID,
    catalogue.CASE_NUMBER: "(2019)浙0681民初1234号",
    catalogue.CODE: "driving_licence",
    r"[a-z]{2}": "en",
    r"[A-T][0-9]{2,4}": "I6510",
}
EXAMPLE_DATE = datetime.date(2019, 7, 9)
EXAMPLE_TIME = datetime.datetime(2019, 7, 9, 2, 7, tzinfo=datetime.UTC)


def all_record_types() -> Iterator[tuple[DepartmentSpec, RecordTypeSpec]]:
    for dept in DEPARTMENTS:
        for spec in dept.record_types:
            yield dept, spec


RECORD_TYPES = [pytest.param(spec, id=f"{dept.code}.{spec.code}") for dept, spec in all_record_types()]


def example_value(spec: FieldSpec) -> Value:
    """A valid value for one field, built from its spec."""
    if spec.type is FieldType.STRING:
        if spec.choices:
            return spec.choices[0]
        if spec.pattern:
            return PATTERN_EXAMPLES[spec.pattern]
        return "浙江省诸暨市示例"
    if spec.type is FieldType.INT:
        return spec.minimum if spec.minimum is not None else 0
    if spec.type is FieldType.BOOL:
        return True
    if spec.type is FieldType.DATE:
        return EXAMPLE_DATE
    if spec.type is FieldType.TIME:
        return EXAMPLE_TIME
    if spec.type is FieldType.MAP:
        return example_fields(spec.item_fields)
    item_type = spec.item_type or (FieldType.MAP if spec.item_fields else FieldType.STRING)
    item = FieldSpec(
        spec.name,
        item_type,
        True,
        spec.description,
        spec.choices,
        spec.minimum,
        spec.maximum,
        spec.item_fields,
        None,
        spec.pattern,
    )
    return [example_value(item)]


def example_fields(specs: tuple[FieldSpec, ...]) -> dict[str, Value]:
    """Every field (optional ones included) with a valid value: one date for all date fields keeps
    every DateOrder rule satisfied, and filling optional fields satisfies every RequiredWhen."""
    return {s.name: example_value(s) for s in specs}


def wrong_value(spec: FieldSpec) -> Value:
    """A value of the wrong type for one field."""
    wrong: dict[FieldType, Value] = {
        FieldType.STRING: 42,
        FieldType.INT: "42",
        FieldType.BOOL: 1,
        FieldType.DATE: EXAMPLE_TIME,
        FieldType.TIME: EXAMPLE_DATE,
        FieldType.LIST: "a",
        FieldType.MAP: ["a"],
    }
    return wrong[spec.type]


def only(problems: list[FieldProblem]) -> FieldProblem:
    assert len(problems) == 1, problems
    return problems[0]


def assert_well_formed(problems: list[FieldProblem]) -> None:
    for problem in problems:
        assert problem.message.startswith(problem.field + ": "), problem


def spec_of(department_code: str, code: str) -> RecordTypeSpec:
    spec = record_type(department_code, code)
    assert spec is not None, f"{department_code}.{code} missing from the catalogue"
    return spec


# --------------------------------------------------------------------------------------------
# The catalogue itself


def test_departments_are_exactly_the_25_codes_of_the_policy_in_order() -> None:
    # The department codes are the callers' ids in policy/dev.yaml: each department has its caller.
    from govmesh.auth import Policy
    from govmesh.config import ROOT

    policy = Policy.load(ROOT / "policy" / "dev.yaml")
    assert tuple(d.code for d in DEPARTMENTS) == catalogue.DEPARTMENT_CODES
    assert len(catalogue.DEPARTMENT_CODES) == 25
    for code in catalogue.DEPARTMENT_CODES:
        assert policy.callers[code].may_publish(code), code


@pytest.mark.parametrize("dept", DEPARTMENTS, ids=lambda d: d.code)
def test_every_department_has_names_and_record_types(dept: DepartmentSpec) -> None:
    assert CJK.search(dept.name_zh) and "浙江" in dept.name_zh
    assert dept.name_en.isascii() and "Zhejiang" in dept.name_en
    assert dept.record_types, f"{dept.code} publishes nothing"
    assert department(dept.code) is dept


def test_lookups() -> None:
    assert department("nope") is None
    assert record_type("public_security", "driving_licence") is not None
    # A record type belongs to one department: asking another one finds nothing.
    assert record_type("transport", "driving_licence") is None
    assert record_type("public_security", "nope") is None
    assert record_type("nope", "driving_licence") is None


def test_record_type_codes_are_unique_across_the_platform() -> None:
    codes = [spec.code for _, spec in all_record_types()]
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("spec", RECORD_TYPES)
def test_record_type_is_well_declared(spec: RecordTypeSpec) -> None:
    assert SNAKE.fullmatch(spec.code)
    assert CJK.search(spec.name_zh) and spec.name_en
    assert spec.subject_kinds and spec.subject_kinds <= set(SubjectKind)
    assert any(f.required for f in spec.fields)

    def check(fields: tuple[FieldSpec, ...]) -> None:
        names = [f.name for f in fields]
        assert len(names) == len(set(names)), names
        for f in fields:
            assert SNAKE.fullmatch(f.name) and f.description, f
            item_type = f.item_type or (FieldType.MAP if f.item_fields else FieldType.STRING)
            scalar = item_type if f.type is FieldType.LIST else f.type
            if f.choices or f.pattern:
                assert scalar is FieldType.STRING, f
                assert len(set(f.choices)) == len(f.choices)
                assert not (f.choices and f.pattern)
            if f.pattern:
                re.compile(f.pattern)
                assert f.pattern in PATTERN_EXAMPLES, f"add an example for {f.pattern}"
            if f.minimum is not None or f.maximum is not None:
                assert scalar is FieldType.INT, f
            if f.minimum is not None and f.maximum is not None:
                assert f.minimum <= f.maximum
            if f.type is FieldType.MAP or (f.type is FieldType.LIST and item_type is FieldType.MAP):
                assert f.item_fields, f"{f.name}: maps always have declared fields"
                check(f.item_fields)
            else:
                assert not f.item_fields, f

    check(spec.fields)
    by_name = {f.name: f for f in spec.fields}
    for rule in spec.rules:
        if isinstance(rule, DateOrder):
            assert by_name[rule.earlier].type is FieldType.DATE and by_name[rule.later].type is FieldType.DATE
        else:
            assert not by_name[rule.field].required, "a RequiredWhen target is optional otherwise"
            assert rule.when_field in by_name


ENTERPRISE_FIELDS = {
    "registered_name",
    "legal_representative",
    "entity_type",
    "registered_capital_fen",
    "established_on",
    "status",
    "business_scope",
}


@pytest.mark.parametrize(
    ("department_code", "code", "fields"),
    [
        ("public_security", "household_registration", {"region_code", "registered_since", "household_type"}),
        ("public_security", "criminal_record", {"offence_category", "judgment_date", "sentence", "court"}),
        ("public_security", "driving_licence", {"licence_class", "first_issued", "valid_until", "status"}),
        ("public_security", "traffic_accident", {"accident_date", "severity", "responsibility"}),
        ("public_security", "traffic_violation", {"violation_date", "kind", "points"}),
        ("public_security", "scoring_cycle", {"cycle_start", "cycle_end", "points_total"}),
        ("education", "education_record", {"level", "institution", "graduated_on"}),
        ("natural_resources", "property_title", {"property_unit", "region_code", "area_cm2", "holders", "acquired_on"}),
        ("natural_resources", "property_encumbrance", {"property_unit", "kind", "registered_on"}),
        ("housing", "homes_owned", {"city_code", "count"}),
        ("housing", "purchase_eligibility", {"city_code", "eligible", "reason"}),
        (
            "taxation",
            "transaction_tax",
            {"property_unit", "tax_kind", "base_fen", "rate_basis_points", "amount_fen", "status"},
        ),
        ("market_regulation", "enterprise_registration", ENTERPRISE_FIELDS),
        ("market_regulation", "registration_change", {"changed_on", "changes"}),
        (
            "healthcare_security",
            "medical_insurance_enrolment",
            {"scheme", "enrolled_since", "status", "insured_region"},
        ),
        ("health_commission", "medical_credit_default", {"bill_reference", "amount_fen", "defaulted_on"}),
        ("credit_center", "city_credit_score", {"score", "band", "scored_on"}),
        ("courts", "civil_judgment", {"case_number", "court", "judgment_date"}),
        ("courts", "enforcement", {"case_number", "court", "dishonest"}),
        ("human_resources", "social_insurance", {"region_code", "insurances"}),
        ("civil_affairs", "marriage_registration", {"event", "registered_on", "spouse"}),
        ("provident_fund", "provident_fund_account", {"status", "opened_on", "balance_fen"}),
    ],
)
def test_the_record_types_proofs_and_cases_rely_on(department_code: str, code: str, fields: set[str]) -> None:
    spec = spec_of(department_code, code)
    required = {f.name for f in spec.fields if f.required}
    assert fields <= required


def test_enumerations_the_case_rules_name() -> None:
    def choices(department_code: str, code: str, field: str) -> set[str]:
        return set(next(f for f in spec_of(department_code, code).fields if f.name == field).choices)

    assert {
        "violent",
        "traffic_crime",
        "dangerous_driving",
        "drunk_driving",
        "drug_driving",
        "drug",
        "property",
        "fraud",
        "other",
    } <= choices("public_security", "criminal_record", "offence_category")
    assert choices("public_security", "driving_licence", "status") == {"valid", "suspended", "revoked", "expired"}
    assert {"C1", "A1", "B2"} <= choices("public_security", "driving_licence", "licence_class")
    assert choices("public_security", "traffic_accident", "severity") == {"minor", "major", "fatal"}
    assert choices("public_security", "traffic_accident", "responsibility") == {
        "full",
        "main",
        "equal",
        "secondary",
        "none",
    }
    assert {"drunk_driving", "drug_driving", "dangerous_driving", "speeding"} <= choices(
        "public_security", "traffic_violation", "kind"
    )
    assert choices("education", "education_record", "level") == {
        "primary",
        "junior_secondary",
        "senior_secondary",
        "vocational",
        "associate",
        "bachelor",
        "master",
        "doctorate",
    }
    assert choices("natural_resources", "property_encumbrance", "kind") == {"mortgage", "seizure", "other"}
    assert choices("taxation", "transaction_tax", "tax_kind") == {"deed_tax", "value_added", "individual_income"}
    assert choices("market_regulation", "enterprise_registration", "status") == {
        "active",
        "revoked",
        "cancelled",
        "suspended",
    }
    assert choices("healthcare_security", "medical_insurance_enrolment", "scheme") == {"employee", "resident"}
    assert choices("healthcare_security", "medical_insurance_enrolment", "status") == {"active", "suspended", "ended"}
    score = next(f for f in spec_of("credit_center", "city_credit_score").fields if f.name == "score")
    assert (score.minimum, score.maximum) == (350, 950)


def test_subject_kinds_of_enterprise_and_resident_records() -> None:
    assert spec_of("market_regulation", "enterprise_registration").subject_kinds == {SubjectKind.ENTERPRISE}
    assert spec_of("public_security", "criminal_record").subject_kinds == {SubjectKind.RESIDENT}
    assert spec_of("natural_resources", "property_title").subject_kinds == set(SubjectKind)


def test_no_floats_anywhere_in_the_catalogue() -> None:
    assert {t.value for t in FieldType} == {"string", "int", "bool", "date", "time", "list", "map"}


# --------------------------------------------------------------------------------------------
# validate_fields on every field of every record type


@pytest.mark.parametrize("spec", RECORD_TYPES)
def test_complete_example_is_valid(spec: RecordTypeSpec) -> None:
    assert validate_fields(spec, example_fields(spec.fields)) == []


@pytest.mark.parametrize("spec", RECORD_TYPES)
def test_each_missing_required_field_is_named(spec: RecordTypeSpec) -> None:
    for f in spec.fields:
        if not f.required:
            continue
        fields = example_fields(spec.fields)
        del fields[f.name]
        problem = only(validate_fields(spec, fields))
        assert problem.field == f.name
        assert problem.message.startswith(f"{f.name}: is required")


@pytest.mark.parametrize("spec", RECORD_TYPES)
def test_optional_fields_may_be_left_out(spec: RecordTypeSpec) -> None:
    for f in spec.fields:
        if f.required:
            continue
        fields = example_fields(spec.fields)
        del fields[f.name]
        problems = validate_fields(spec, fields)
        # Only a RequiredWhen rule may require it.
        assert all(p.field == f.name and "is required when" in p.message for p in problems), problems


@pytest.mark.parametrize("spec", RECORD_TYPES)
def test_each_field_of_the_wrong_type_is_named(spec: RecordTypeSpec) -> None:
    for f in spec.fields:
        fields = example_fields(spec.fields)
        fields[f.name] = wrong_value(f)
        problem = only(validate_fields(spec, fields))
        assert problem.field == f.name
        assert problem.message.startswith(f"{f.name}: must be "), problem.message


@pytest.mark.parametrize("spec", RECORD_TYPES)
def test_each_enumerated_field_refuses_other_values(spec: RecordTypeSpec) -> None:
    for f in spec.fields:
        if f.type is not FieldType.STRING or not f.choices:
            continue
        fields = example_fields(spec.fields)
        fields[f.name] = "not_a_choice"
        problem = only(validate_fields(spec, fields))
        assert problem.field == f.name
        assert problem.message == f"{f.name}: 'not_a_choice' is not one of: {', '.join(f.choices)}"


@pytest.mark.parametrize("spec", RECORD_TYPES)
def test_each_bounded_integer_refuses_values_out_of_range(spec: RecordTypeSpec) -> None:
    for f in spec.fields:
        if f.type is not FieldType.INT:
            continue
        assert f.minimum is not None and f.maximum is not None, f"{f.name}: every integer has a range"
        for value, words in ((f.minimum - 1, f"at least {f.minimum}"), (f.maximum + 1, f"at most {f.maximum}")):
            fields = example_fields(spec.fields)
            fields[f.name] = value
            problem = only(validate_fields(spec, fields))
            assert (problem.field, problem.message) == (f.name, f"{f.name}: must be {words}")


@pytest.mark.parametrize("spec", RECORD_TYPES)
def test_a_raw_identifier_is_refused_in_every_string_field(spec: RecordTypeSpec) -> None:
    for f in spec.fields:
        if f.type is not FieldType.STRING:
            continue
        for raw in (RESIDENT_ID, USCC, f"见 {RESIDENT_ID} 号"):
            fields = example_fields(spec.fields)
            fields[f.name] = raw
            problem = only(validate_fields(spec, fields))
            assert problem.field == f.name
            assert "must not contain raw identifiers" in problem.message
            assert RESIDENT_ID not in problem.message and USCC not in problem.message


@pytest.mark.parametrize("spec", RECORD_TYPES)
def test_an_unknown_field_is_named(spec: RecordTypeSpec) -> None:
    fields = example_fields(spec.fields)
    fields["colour"] = "red"
    problem = only(validate_fields(spec, fields))
    assert problem.field == "colour"
    assert problem.message.startswith(f"colour: is not a field of {spec.code}; its fields are: ")


# --------------------------------------------------------------------------------------------
# validate_fields on realistic records


def zhuji_title() -> dict[str, Value]:
    return {
        "property_unit": ZHUJI_UNIT,
        "certificate_number": "浙(2015)诸暨市不动产权第0012345号",
        "region_code": "330681",
        "usage": "residential",
        "area_cm2": 895_000,  # 89.5 m²
        "holders": [SUBJECT_ID, "330681********123X"],
        "ownership": "joint",
        "acquired_on": datetime.date(2015, 4, 2),
    }


def social_insurance() -> dict[str, Value]:
    return {
        "region_code": "330106",
        "insurances": [
            {"kind": "pension", "since": datetime.date(2012, 7, 1), "months_contributed": 84, "status": "active"},
            {"kind": "unemployment", "since": datetime.date(2012, 7, 1), "months_contributed": 84, "status": "active"},
        ],
    }


def test_realistic_records_are_valid() -> None:
    assert validate_fields(spec_of("natural_resources", "property_title"), zhuji_title()) == []
    assert validate_fields(spec_of("human_resources", "social_insurance"), social_insurance()) == []
    licence: dict[str, Value] = {
        "licence_class": "C1",
        "first_issued": datetime.date(2012, 3, 15),
        "valid_from": datetime.date(2018, 3, 15),
        "valid_until": datetime.date(2028, 3, 15),
        "status": "valid",
        "issuing_authority": "杭州市公安局交通警察支队",
    }
    assert validate_fields(spec_of("public_security", "driving_licence"), licence) == []


def test_every_problem_is_reported_at_once_in_field_order() -> None:
    spec = spec_of("public_security", "traffic_violation")
    problems = validate_fields(spec, {"kind": "flying", "points": 13, "fine_fen": "200", "extra": 1})
    assert [p.field for p in problems] == ["violation_date", "kind", "points", "fine_fen", "extra"]
    assert_well_formed(problems)


def test_bool_float_and_null_are_not_integers() -> None:
    spec = spec_of("public_security", "traffic_violation")
    base: dict[str, Value] = {"violation_date": EXAMPLE_DATE, "kind": "speeding", "points": 3}
    assert only(validate_fields(spec, {**base, "points": True})).message == "points: must be an integer, got a boolean"
    problem = only(validate_fields(spec, {**base, "points": 3.0}))  # type: ignore[dict-item]
    assert problem.message.startswith("points: must be an integer, got a floating-point number")
    assert only(validate_fields(spec, {**base, "points": None})).message == (  # type: ignore[dict-item]
        "points: must be an integer, got null"
    )


def test_a_datetime_is_not_a_date_and_an_int_is_not_a_bool() -> None:
    accident = spec_of("public_security", "traffic_accident")
    fields: dict[str, Value] = {"accident_date": EXAMPLE_TIME, "severity": "minor", "responsibility": "none"}
    assert only(validate_fields(accident, fields)).message == "accident_date: must be a calendar date, got a timestamp"
    enforcement = spec_of("courts", "enforcement")
    fields = example_fields(enforcement.fields) | {"dishonest": 1}
    assert only(validate_fields(enforcement, fields)).message == "dishonest: must be a boolean, got an integer"


def test_integers_must_fit_in_int64_and_money_has_a_ceiling() -> None:
    spec = spec_of("courts", "civil_judgment")
    fields = example_fields(spec.fields) | {"amount_fen": 2**63}
    assert only(validate_fields(spec, fields)).message == "amount_fen: does not fit in a 64-bit integer"
    # An ID number written as an integer is far above any amount, and is not echoed.
    fields = example_fields(spec.fields) | {"amount_fen": 330106199001011234}
    problem = only(validate_fields(spec, fields))
    assert problem.message == f"amount_fen: must be at most {MAX_FEN}"


def test_pattern_and_empty_string_problems() -> None:
    spec = spec_of("public_security", "household_registration")
    base = example_fields(spec.fields)
    problem = only(validate_fields(spec, base | {"region_code": "33068"}))
    assert problem.field == "region_code" and problem.message.startswith("region_code: is not in the format of")
    assert only(validate_fields(spec, base | {"region_code": " "})).message == "region_code: must not be empty"
    # An optional free-text field may be empty; a required one may not.
    title = spec_of("natural_resources", "property_title")
    assert validate_fields(title, zhuji_title() | {"certificate_number": ""}) == []


def test_long_free_text_is_refused_and_never_echoed() -> None:
    spec = spec_of("market_regulation", "enterprise_registration")
    text = "经营范围" * (MAX_STRING_LENGTH // 4 + 1)
    problem = only(validate_fields(spec, example_fields(spec.fields) | {"business_scope": text}))
    assert problem.message == (
        f"business_scope: is {len(text)} characters long; at most {MAX_STRING_LENGTH} are accepted"
    )
    # A value that is not a choice is quoted only when it is a short plain token.
    accident = spec_of("public_security", "traffic_accident")
    fields: dict[str, Value] = {"accident_date": EXAMPLE_DATE, "responsibility": "none"}
    problem = only(validate_fields(accident, fields | {"severity": "车辆侧翻，驾驶员受轻伤，已送医"}))
    assert problem.message == "severity: the value is not one of: minor, major, fatal"


def test_nested_list_item_problems_are_named_by_path() -> None:
    spec = spec_of("human_resources", "social_insurance")
    fields = social_insurance()
    items = fields["insurances"]
    assert isinstance(items, list)
    items.append({"kind": "pension", "since": EXAMPLE_DATE, "months_contributed": -1, "status": "active"})
    items.append({"since": EXAMPLE_DATE, "months_contributed": 1, "status": "active", "employer": "x"})
    items.append("pension")
    problems = validate_fields(spec, fields)
    assert [(p.field, p.message) for p in problems] == [
        ("insurances[2].months_contributed", "insurances[2].months_contributed: must be at least 0"),
        ("insurances[3].kind", "insurances[3].kind: is required (the insurance)"),
        (
            "insurances[3].employer",
            "insurances[3].employer: is not a field of insurances; its fields are: kind, since, months_contributed, "
            "status",
        ),
        ("insurances[4]", "insurances[4]: must be a map, got a string"),
    ]


def test_list_of_strings_items_and_size() -> None:
    spec = spec_of("natural_resources", "property_title")
    problem = only(validate_fields(spec, zhuji_title() | {"holders": [SUBJECT_ID, RESIDENT_ID]}))
    assert problem.field == "holders[1]" and "must not contain raw identifiers" in problem.message
    assert RESIDENT_ID not in problem.message
    problem = only(validate_fields(spec, zhuji_title() | {"holders": [SUBJECT_ID, "张三"]}))
    assert problem.field == "holders[1]" and problem.message.startswith("holders[1]: is not in the format of")
    assert only(validate_fields(spec, zhuji_title() | {"holders": []})).message == "holders: must not be empty"
    assert only(validate_fields(spec, zhuji_title() | {"holders": SUBJECT_ID})).message == (
        "holders: must be a list, got a string"
    )
    many: list[Value] = [SUBJECT_ID] * (MAX_LIST_ITEMS + 1)
    assert only(validate_fields(spec, zhuji_title() | {"holders": many})).message == (
        f"holders: has {MAX_LIST_ITEMS + 1} items; at most {MAX_LIST_ITEMS} are accepted"
    )
    change = spec_of("market_regulation", "registration_change")
    fields: dict[str, Value] = {"changed_on": EXAMPLE_DATE, "changes": [{"item": "colour"}]}
    problem = only(validate_fields(change, fields))
    assert problem.field == "changes[0].item" and problem.message.startswith("changes[0].item: 'colour' is not one")


def test_a_field_name_that_is_not_a_name_is_not_echoed() -> None:
    spec = spec_of("public_security", "criminal_record")
    fields = example_fields(spec.fields) | {RESIDENT_ID: "x"}
    problem = only(validate_fields(spec, fields))
    assert problem.field == "<invalid name>"
    assert RESIDENT_ID not in problem.message


def test_cross_field_rules() -> None:
    encumbrance = spec_of("natural_resources", "property_encumbrance")
    mortgage: dict[str, Value] = {
        "property_unit": ZHUJI_UNIT,
        "kind": "mortgage",
        "amount_fen": 80_000_000,
        "creditor": "中国工商银行诸暨支行",
        "registered_on": datetime.date(2015, 4, 2),
    }
    assert validate_fields(encumbrance, mortgage) == []
    problem = only(validate_fields(encumbrance, mortgage | {"released_on": datetime.date(2015, 4, 1)}))
    assert (problem.field, problem.message) == ("released_on", "released_on: must not be before registered_on")
    del mortgage["creditor"]
    assert only(validate_fields(encumbrance, mortgage)).message == "creditor: is required when kind is mortgage"

    tax = spec_of("taxation", "transaction_tax")
    deed: dict[str, Value] = {
        "property_unit": ZHUJI_UNIT,
        "tax_kind": "deed_tax",
        "base_fen": 150_000_000,
        "rate_basis_points": 150,
        "amount_fen": 2_250_000,
        "status": "due",
    }
    assert validate_fields(tax, deed) == []
    assert only(validate_fields(tax, deed | {"status": "paid"})).message == "paid_on: is required when status is paid"

    enforcement = spec_of("courts", "enforcement")
    case = example_fields(enforcement.fields)
    del case["listed_on"]
    assert validate_fields(enforcement, case | {"dishonest": False}) == []
    assert only(validate_fields(enforcement, case | {"dishonest": True})).message == (
        "listed_on: is required when dishonest is true"
    )


def test_fields_must_be_a_mapping() -> None:
    spec = spec_of("public_security", "criminal_record")
    assert validate_fields(spec, ["a"]) == [  # type: ignore[arg-type]
        FieldProblem("fields", "fields: must be a map of field names to values")
    ]


def test_time_and_map_fields() -> None:
    # No shipped record type has a TIME field or a nested MAP yet; the validator supports both.
    spec = RecordTypeSpec(
        "test_event",
        "测试",
        "Test",
        frozenset({SubjectKind.RESIDENT}),
        (
            FieldSpec("observed_at", FieldType.TIME, True, "when"),
            FieldSpec(
                "place",
                FieldType.MAP,
                True,
                "where",
                item_fields=(
                    FieldSpec("region_code", FieldType.STRING, True, "region", pattern=catalogue.REGION_CODE),
                ),
            ),
        ),
    )
    good: dict[str, Value] = {"observed_at": EXAMPLE_TIME, "place": {"region_code": "330106"}}
    assert validate_fields(spec, good) == []
    naive: dict[str, Value] = good | {"observed_at": datetime.datetime(2019, 7, 9, 10, 7)}
    assert only(validate_fields(spec, naive)).message == (
        "observed_at: must be a timestamp with a time zone (naive given)"
    )
    assert only(validate_fields(spec, good | {"observed_at": EXAMPLE_DATE})).message == (
        "observed_at: must be a timestamp, got a calendar date"
    )
    problem = only(validate_fields(spec, good | {"place": {"region_code": USCC}}))
    assert problem.field == "place.region_code" and "raw identifiers" in problem.message


# --------------------------------------------------------------------------------------------
# Raw identifier detection


@pytest.mark.parametrize(
    "text",
    [
        RESIDENT_ID,
        RESIDENT_ID.lower(),
        "33010619900101123X",
        "330106199001011234",
        LEGACY_ID,
        USCC,
        f"持证人{RESIDENT_ID}，",
        f"(see {USCC})",
        "３３０１０６１９９００１０１１２３Ｘ",  # full-width, as identity accepts it
        "330106 19900101 123X",
        "330106-19900101-123X",
    ],
)
def test_raw_identifiers_are_detected(text: str) -> None:
    assert contains_raw_identifier(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "330106********123X",  # masked
        "330106******123",  # masked legacy
        SUBJECT_ID,
        ZHUJI_UNIT,  # 28 characters
        "(2019)浙0681民初1234号",
        "6222021202041234567",  # 19-digit bank card number: a longer run
        "33010619900101123",  # 17 digits
        "a3f9c2e4b5d6e7f80a",  # lower-case hex
        "ABCDEFGHJKLMNPQRTU",  # 18 letters, no digit
        "2019-07-09 全年约70万张",
    ],
)
def test_other_strings_are_not_taken_for_identifiers(text: str) -> None:
    assert not contains_raw_identifier(text)
