"""Case type files (services/approvals/domain/casetypes.py): the shipped ones load against records' real
catalogue; a malformed one fails with its file and line; case parameters are validated."""

from __future__ import annotations

import datetime
import hashlib
import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from services.approvals.domain.casetypes import (
    MAX_FEN,
    ApplicantKind,
    CaseTypeError,
    CaseTypeSpec,
    ParameterError,
    ParameterSpec,
    ParameterType,
    ProofTypeInfo,
    load_case_type,
    load_case_types,
    validate_parameters,
)
from services.approvals.domain.rules import referenced_claims
from services.records.domain.proofs import PROOF_TYPES, proof_type, resolve_parameters
from tests.support.approvals_scenarios import CASE_TYPES_DIR

ZHUJI_UNIT = "330681001001GB00012F00010101"
# A made-up resident number of the right shape: validate_parameters only checks its length,
# identity validates it.
SELLER = "330681196512120037"

# --------------------------------------------------------------------------------------------
# The shipped case types


def test_the_shipped_case_types_load(case_types: dict[str, CaseTypeSpec]) -> None:
    assert set(case_types) == {
        "ride_hailing_driver_permit",
        "second_hand_housing_transfer",
        "business_licence_change",
        "tour_guide_licence",
    }
    for code, spec in case_types.items():
        data = (CASE_TYPES_DIR / f"{code}.yaml").read_bytes()
        assert spec.version == hashlib.sha256(data).hexdigest()[:12]
        assert spec.rules and spec.proofs and spec.sign_off_department_codes
        assert len({r.rule_id for r in spec.rules}) == len(spec.rules)
    # At least one case type waits for an official.
    assert any(spec.review_steps for spec in case_types.values())


def test_they_also_load_with_claim_names_only(departments: frozenset[str]) -> None:
    # The simplest catalogue the loader takes: proof type code -> claim names.
    names = {p.code: frozenset(p.claim_names) for p in PROOF_TYPES}
    assert set(load_case_types(CASE_TYPES_DIR, names, departments)) == {
        "ride_hailing_driver_permit",
        "second_hand_housing_transfer",
        "business_licence_change",
        "tour_guide_licence",
    }


def test_every_rule_reads_only_claims_its_proof_type_has(case_types: dict[str, CaseTypeSpec]) -> None:
    for spec in case_types.values():
        for rule in spec.rules:
            found = proof_type(rule.proof_type)
            assert found is not None
            assert set(referenced_claims(rule.condition)) <= set(found.claim_names), rule.rule_id


def test_ride_hailing_driver_permit(case_types: dict[str, CaseTypeSpec]) -> None:
    spec = case_types["ride_hailing_driver_permit"]
    assert spec.applicant_kind is ApplicantKind.RESIDENT
    assert spec.parameters == ()
    assert [(p.proof_type, p.department_code, p.subject) for p in spec.proofs] == [
        ("driving_licence", "public_security", "applicant"),
        ("traffic_safety", "public_security", "applicant"),
        ("criminal_record", "public_security", "applicant"),
        ("education_level", "education", "applicant"),
    ]
    assert [r.rule_id for r in spec.rules] == [
        "licence_held_3_years",
        "no_driving_crime",
        "no_serious_traffic_violation",
        "no_major_traffic_accident",
        "no_twelve_point_cycle",
        "no_violent_crime",
        "education_on_file",
    ]
    assert spec.sign_off_department_codes == ("transport",)
    assert spec.review_steps == ()
    assert spec.deadline_working_days == 20
    traffic = spec.proofs[1]
    assert traffic.request_parameters({}) == {"years": "3", "cycles": "3"}
    # What records will accept.
    traffic_spec = proof_type("traffic_safety")
    assert traffic_spec is not None
    assert resolve_parameters(traffic_spec, traffic.request_parameters({})) == {"years": "3", "cycles": "3"}


def test_second_hand_housing_transfer(case_types: dict[str, CaseTypeSpec]) -> None:
    spec = case_types["second_hand_housing_transfer"]
    assert [(p.name, p.type, p.required) for p in spec.parameters] == [
        ("seller_identifier", ParameterType.IDENTIFIER, True),
        ("property_unit", ParameterType.STRING, True),
        ("price_fen", ParameterType.MONEY_FEN, True),
        ("city", ParameterType.STRING, True),
        ("mortgage_consent", ParameterType.BOOLEAN, False),
        ("co_owners_consent", ParameterType.BOOLEAN, False),
    ]
    assert [(p.proof_type, p.department_code, p.subject) for p in spec.proofs] == [
        ("property_title", "natural_resources", "seller_identifier"),
        ("property_encumbrances", "natural_resources", "seller_identifier"),
        ("housing_purchase_eligibility", "housing", "applicant"),
        ("transaction_tax_paid", "taxation", "applicant"),
    ]
    assert [(r.rule_id, r.department_code) for r in spec.rules] == [
        ("seller_holds_title", "natural_resources"),
        ("co_owners_agree", "natural_resources"),
        ("unit_in_city", "natural_resources"),
        ("no_seizure", "natural_resources"),
        ("mortgage_cleared_or_consented", "natural_resources"),
        ("buyer_eligible", "housing"),
        ("deed_tax_paid", "taxation"),
    ]
    assert spec.sign_off_department_codes == ("taxation", "natural_resources", "housing")
    assert spec.deadline_working_days == 9
    assert spec.holds == ("property_unit",)  # one transfer of a unit at a time
    parameters = validate_parameters(
        spec, {"seller_identifier": SELLER, "property_unit": ZHUJI_UNIT, "price_fen": "150000000", "city": "330600"}
    )
    requests = [p.request_parameters(parameters) for p in spec.proofs]
    assert requests == [
        {"property_unit": ZHUJI_UNIT},
        {"property_unit": ZHUJI_UNIT},
        {"city": "330600"},
        {"property_unit": ZHUJI_UNIT},
    ]
    # The seller's identifier is never a proof parameter: it is the subject.
    assert all(SELLER not in request.values() for request in requests)
    for proof, request in zip(spec.proofs, requests, strict=True):
        found = proof_type(proof.proof_type)
        assert found is not None
        assert resolve_parameters(found, request) == request


def test_business_licence_change_and_tour_guide_licence(case_types: dict[str, CaseTypeSpec]) -> None:
    change = case_types["business_licence_change"]
    assert change.applicant_kind is ApplicantKind.ENTERPRISE
    assert change.sign_off_department_codes == ("market_regulation",)
    assert [p.proof_type for p in change.proofs] == ["enterprise_registration"]
    kind = change.parameter("change_kind")
    assert kind is not None and "address" in kind.choices
    guide = case_types["tour_guide_licence"]
    assert [step.department_code for step in guide.review_steps] == ["culture_tourism"]
    assert "导游资格" in guide.review_steps[0].instructions_zh
    assert guide.deadline_working_days == 10
    employer = next(p for p in guide.proofs if p.proof_type == "enterprise_registration")
    assert employer.subject == "employer_identifier"


# --------------------------------------------------------------------------------------------
# Malformed files: each names its file and line

VALID = """\
# A small valid case type that the tests below break one way at a time.
code: sample_case
name_zh: 样例
name_en: Sample
applicant_kind: resident
parameters:
  - name: city
    type: string
    required: true
    description_zh: 城市
    description_en: city
  - name: other_party
    type: identifier
    required: true
    description_zh: 对方
    description_en: the other party
  - name: consent
    type: boolean
    required: false
    default: false
    description_zh: 同意
    description_en: consent
proofs:
  - proof_type: driving_licence
    department: public_security
  - proof_type: housing_purchase_eligibility
    department: housing
    parameters: {city: "{city}"}
  - proof_type: criminal_record
    department: public_security
    subject: other_party
rules:
  - id: licence_held
    department: public_security
    proof: driving_licence
    claim: held
    equals: true
    description_zh: 持证
    description_en: Holds a licence
    explain_zh: "状态 {status}"
    explain_en: "Status {status}"
  - id: eligible
    department: housing
    proof: housing_purchase_eligibility
    any:
      - {claim: eligible, equals: true}
      - {param: consent, equals: true}
    description_zh: 有资格
    description_en: Eligible
    explain_zh: "{city} 无资格"
    explain_en: "Not eligible in {city}"
sign_off: [transport]
deadline_working_days: 5
"""


def write(tmp_path: Path, text: str, name: str = "sample_case.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, marker: str) -> int:
    """1-based line of the first line containing ``marker``."""
    for number, line in enumerate(text.splitlines(), 1):
        if marker in line:
            return number
    raise AssertionError(f"{marker!r} not in the text")


def test_the_sample_is_valid(
    tmp_path: Path, catalogue: Mapping[str, ProofTypeInfo], departments: frozenset[str]
) -> None:
    spec = load_case_type(write(tmp_path, VALID), catalogue, departments)
    assert spec.code == "sample_case"
    assert spec.parameter("consent") == ParameterSpec(
        "consent", ParameterType.BOOLEAN, False, "同意", "consent", default="false"
    )


# (id, old text, new text, marker of the line the error names (in the new text), message part)
MALFORMED = [
    (
        "unknown-top-level-key",
        "deadline_working_days: 5",
        "deadline_working_days: 5\ncolour: blue",
        "colour:",
        "unknown key 'colour'",
    ),
    (
        "unknown-rule-key",
        "    description_zh: 持证",
        "    descripton_zh: 持证",
        "descripton_zh",
        "unknown key 'descripton_zh'",
    ),
    (
        "unknown-proof-key",
        "    subject: other_party",
        "    subject: other_party\n    purpose: x",
        "purpose: x",
        "unknown key 'purpose'",
    ),
    (
        "missing-top-level-key",
        "deadline_working_days: 5\n",
        "",
        "code: sample_case",
        "missing required key 'deadline_working_days'",
    ),
    (
        "missing-rule-key",
        '    explain_en: "Status {status}"\n',
        "",
        "- id: licence_held",
        "missing required key 'explain_en'",
    ),
    ("missing-parameter-key", "    type: identifier\n", "", "- name: other_party", "missing required key 'type'"),
    ("bad-yaml-syntax", "name_en: Sample", "name_en: Sample: bad", "name_en:", "is not valid YAML"),
    (
        "bad-yaml-unclosed-flow",
        "sign_off: [transport]",
        "sign_off: [transport",
        "deadline_working_days",
        "is not valid YAML",
    ),
    (
        "bad-yaml-indentation",
        "    description_en: city",
        "   description_en: city",
        "description_en: city",
        "is not valid YAML",
    ),
    (
        "unknown-proof-type",
        "  - proof_type: criminal_record",
        "  - proof_type: criminal_records",
        "criminal_records",
        "unknown proof type 'criminal_records'",
    ),
    (
        "unknown-claim",
        "    claim: held",
        "    claim: helds",
        "claim: helds",
        "'helds' is not a claim of driving_licence",
    ),
    (
        "unknown-claim-in-nested-condition",
        "{claim: eligible, equals: true}",
        "{claim: eligibility, equals: true}",
        "claim: eligibility",
        "'eligibility' is not a claim of housing_purchase_eligibility",
    ),
    (
        "duplicate-rule-id",
        "  - id: eligible",
        "  - id: licence_held  # again",
        "# again",
        "duplicate rule id 'licence_held'",
    ),
    ("unknown-parameter-in-proof", '{city: "{city}"}', '{city: "{town}"}', "{town}", "unknown parameter 'town'"),
    (
        "unknown-parameter-in-explanation",
        '"{city} 无资格"',
        '"{town} 无资格"',
        "{town}",
        "{town} is neither a claim of housing_purchase_eligibility nor a parameter",
    ),
    ("bad-placeholder", '"Status {status}"', '"Status {status.upper}"', "status.upper", "plain claim or parameter"),
    ("unbalanced-brace", '"Status {status}"', '"Status {status"', "Status {status", "explain_en"),
    (
        "wrong-type-deadline",
        "deadline_working_days: 5",
        'deadline_working_days: "five"',
        "deadline_working_days",
        "must be a whole number",
    ),
    ("wrong-type-name", "name_zh: 样例", "name_zh: yes", "name_zh", "name_zh must be a string"),
    (
        "wrong-type-required",
        "    required: true\n    description_zh: 城市",
        "    required: 1\n    description_zh: 城市",
        "required: 1",
        "must be true or false",
    ),
    ("wrong-type-sign-off", "sign_off: [transport]", "sign_off: transport", "sign_off", "sign_off must be a list"),
    ("wrong-type-proof-parameters", '{city: "{city}"}', "[city]", "[city]", "parameters must be a mapping"),
    ("wrong-type-rule", "  - id: eligible", "  - eligible\n  - id: eligible", "  - eligible", "must be a mapping"),
    ("unknown-parameter-type", "    type: boolean", "    type: bool", "type: bool", "type must be one of"),
    (
        "unknown-department",
        "sign_off: [transport]",
        "sign_off: [transportation]",
        "sign_off",
        "unknown department 'transportation'",
    ),
    ("duplicate-sign-off", "sign_off: [transport]", "sign_off: [transport, transport]", "sign_off", "listed twice"),
    ("no-sign-off", "sign_off: [transport]", "sign_off: []", "sign_off", "at least one department"),
    (
        "negative-deadline",
        "deadline_working_days: 5",
        "deadline_working_days: -1",
        "deadline_working_days",
        "from 0 to 365",
    ),
    (
        "duplicate-key",
        "name_en: Sample",
        "name_en: Sample\nname_en: Again",
        "name_en: Again",
        "duplicate key 'name_en' (first on line 4)",
    ),
    ("code-not-the-file-name", "code: sample_case", "code: other_case", "code:", "must match the file name"),
    (
        "applicant-kind",
        "applicant_kind: resident",
        "applicant_kind: person",
        "applicant_kind",
        "resident or enterprise",
    ),
    (
        "rule-names-a-proof-not-pulled",
        "    proof: driving_licence",
        "    proof: traffic_safety",
        "proof: traffic_safety",
        "pulls no traffic_safety proof",
    ),
    (
        "rule-with-two-operators",
        "    equals: true\n    description_zh: 持证",
        "    equals: true\n    not_equals: false\n    description_zh: 持证",
        "- id: licence_held",
        "exactly one operator",
    ),
    ("rule-without-condition", "    claim: held\n    equals: true\n", "", "- id: licence_held", "has no condition"),
    ("combinator-and-test", "    any:\n", "    claim: eligible\n    any:\n", "- id: eligible", "stands alone"),
    (
        "empty-any",
        "    any:\n      - {claim: eligible, equals: true}\n      - {param: consent, equals: true}\n",
        "    any: []\n",
        "any: []",
        "needs at least one condition",
    ),
    (
        "at-least-a-string",
        "    equals: true\n    description_zh: 持证",
        "    at_least: three\n    description_zh: 持证",
        "at_least: three",
        "compares whole numbers or dates",
    ),
    (
        "in-a-scalar",
        "    equals: true\n    description_zh: 持证",
        "    in: valid\n    description_zh: 持证",
        "in: valid",
        "takes a list",
    ),
    (
        "is-empty-false",
        "    equals: true\n    description_zh: 持证",
        "    is_empty: false\n    description_zh: 持证",
        "is_empty: false",
        "write is_empty: true",
    ),
    (
        "float-literal",
        "    equals: true\n    description_zh: 持证",
        "    equals: 1.5\n    description_zh: 持证",
        "equals: 1.5",
        "no decimal numbers",
    ),
    (
        "null-literal",
        "    equals: true\n    description_zh: 持证",
        "    equals:\n    description_zh: 持证",
        "equals:",
        "a value is missing",
    ),
    ("field-outside-an-item", "    claim: held\n", "    field: held\n", "field: held", "only for conditions inside"),
    (
        "identifier-parameter-in-a-rule",
        "{param: consent, equals: true}",
        "{param: other_party, equals: true}",
        "other_party, equals",
        "cannot be used in a rule",
    ),
    (
        "identifier-parameter-in-an-explanation",
        '"{city} 无资格"',
        '"{other_party} 无资格"',
        "{other_party} 无资格",
        "never shown",
    ),
    (
        "identifier-parameter-as-proof-parameter",
        '{city: "{city}"}',
        '{city: "{other_party}"}',
        "{other_party}",
        "can only be a proof's subject",
    ),
    (
        "parameter-literal-never-matches",
        "{param: consent, equals: true}",
        '{param: consent, equals: "yes"}',
        'consent, equals: "yes"',
        "never matches",
    ),
    (
        "subject-not-an-identifier",
        "    subject: other_party",
        "    subject: city",
        "subject: city",
        "required identifier parameter",
    ),
    (
        "proof-pulled-twice",
        "  - proof_type: criminal_record\n    department: public_security\n    subject: other_party",
        "  - proof_type: driving_licence  # twice\n    department: public_security",
        "# twice",
        "pulled twice",
    ),
    (
        "unknown-proof-parameter",
        '{city: "{city}"}',
        '{town: "{city}"}',
        "town:",
        "housing_purchase_eligibility has no parameter 'town'",
    ),
    (
        "proof-from-the-wrong-department",
        "    department: housing\n",
        "    department: taxation\n",
        "department: taxation",
        "is drawn from housing",
    ),
    (
        "default-of-a-required-parameter",
        "    required: false\n    default: false",
        "    required: true\n    default: false",
        "default: false",
        "only optional",
    ),
    ("default-of-the-wrong-type", "    default: false", "    default: maybe", "default: maybe", 'must be "true"'),
    (
        "python-tag",
        "name_en: Sample",
        "name_en: !!python/object/apply:os.system [echo]",
        "name_en",
        "name_en must be a string",
    ),
    ("alias", "name_en: Sample", "name_en: &n Sample\nname_zh2: *n", "*n", "aliases"),
    ("merge-key", "  - id: licence_held\n", "  - id: licence_held\n    <<: {x: 1}\n", "<<:", "merge keys"),
    ("reserved-parameter-name", "  - name: city\n", "  - name: applicant\n", "name: applicant", "reserved"),
    (
        "holds-unknown",
        "deadline_working_days: 5",
        "deadline_working_days: 5\nholds: [town]",
        "holds:",
        "not a parameter",
    ),
    ("holds-optional", "deadline_working_days: 5", "deadline_working_days: 5\nholds: [consent]", "holds:", "required"),
    (
        "holds-identifier",
        "deadline_working_days: 5",
        "deadline_working_days: 5\nholds: [other_party]",
        "holds:",
        "identifier",
    ),
    ("holds-twice", "deadline_working_days: 5", "deadline_working_days: 5\nholds: [city, city]", "holds:", "twice"),
    (
        "bad-pattern",
        "    description_en: city\n",
        "    description_en: city\n    pattern: '[0-9'\n",
        "pattern:",
        "not a valid regular expression",
    ),
    (
        "enterprise-proof-for-a-resident",
        "  - proof_type: driving_licence\n    department: public_security",
        "  - proof_type: driving_licence\n    department: public_security\n  - proof_type: enterprise_registration\n"
        "    department: market_regulation",
        "proof_type: enterprise_registration",
        "is not issued about a resident",
    ),
]


@pytest.mark.parametrize(("old", "new", "marker", "message"), [pytest.param(*m[1:], id=m[0]) for m in MALFORMED])
def test_malformed_files_name_the_file_and_line(
    tmp_path: Path,
    catalogue: Mapping[str, ProofTypeInfo],
    departments: frozenset[str],
    old: str,
    new: str,
    marker: str,
    message: str,
) -> None:
    assert old in VALID, old
    text = VALID.replace(old, new, 1)
    path = write(tmp_path, text)
    with pytest.raises(CaseTypeError) as caught:
        load_case_types(tmp_path, catalogue, departments)
    error = caught.value
    expected_line = line_of(text, marker)
    assert str(error).startswith(f"{path}:{expected_line}: "), str(error)
    assert (error.path, error.line) == (path, expected_line)
    assert message in str(error)


def test_an_empty_file(tmp_path: Path, catalogue: Mapping[str, ProofTypeInfo], departments: frozenset[str]) -> None:
    path = write(tmp_path, "# nothing but a comment\n")
    with pytest.raises(CaseTypeError, match=re.escape(f"{path}:1: is empty")):
        load_case_types(tmp_path, catalogue, departments)


def test_a_file_that_is_not_a_mapping(
    tmp_path: Path, catalogue: Mapping[str, ProofTypeInfo], departments: frozenset[str]
) -> None:
    path = write(tmp_path, "\n- just\n- a list\n")
    with pytest.raises(CaseTypeError, match=re.escape(f"{path}:2: the case type must be a mapping")):
        load_case_types(tmp_path, catalogue, departments)


def test_a_file_that_is_not_utf8(
    tmp_path: Path, catalogue: Mapping[str, ProofTypeInfo], departments: frozenset[str]
) -> None:
    path = tmp_path / "sample_case.yaml"
    path.write_bytes(VALID.encode("utf-8").replace("样例".encode(), "样例".encode("gbk"), 1))
    with pytest.raises(CaseTypeError, match=re.escape(f"{path}:3: is not UTF-8")):
        load_case_types(tmp_path, catalogue, departments)


def test_directories(tmp_path: Path, catalogue: Mapping[str, ProofTypeInfo], departments: frozenset[str]) -> None:
    with pytest.raises(CaseTypeError, match=re.escape(f"{tmp_path}:0: holds no case type files")):
        load_case_types(tmp_path, catalogue, departments)
    with pytest.raises(CaseTypeError, match="is not a directory"):
        load_case_types(tmp_path / "missing", catalogue, departments)
    write(tmp_path, VALID, "sample_case.yml")
    with pytest.raises(
        CaseTypeError, match=re.escape(f"{tmp_path / 'sample_case.yml'}:0: case type files end in .yaml")
    ):
        load_case_types(tmp_path, catalogue, departments)
    (tmp_path / "sample_case.yml").unlink()
    write(tmp_path, "not: [valid", ".#sample_case.yaml")  # an editor's lock file is skipped
    write(tmp_path, VALID)
    (tmp_path / "README.md").write_text("case types\n", encoding="utf-8")
    assert set(load_case_types(tmp_path, catalogue, departments)) == {"sample_case"}


def test_the_first_bad_file_stops_loading(
    tmp_path: Path, catalogue: Mapping[str, ProofTypeInfo], departments: frozenset[str]
) -> None:
    write(tmp_path, VALID)
    bad = write(
        tmp_path, VALID.replace("code: sample_case", "code: zz_case").replace("claim: held", "claim: x"), "zz_case.yaml"
    )
    with pytest.raises(CaseTypeError, match=re.escape(f"{bad}:{line_of(VALID, 'claim: held')}: ")):
        load_case_types(tmp_path, catalogue, departments)


def test_the_version_changes_with_any_edit(
    tmp_path: Path, catalogue: Mapping[str, ProofTypeInfo], departments: frozenset[str]
) -> None:
    first = load_case_type(write(tmp_path, VALID), catalogue, departments)
    second = load_case_type(write(tmp_path, VALID + "# a comment\n"), catalogue, departments)
    assert len(first.version) == 12 and re.fullmatch("[0-9a-f]{12}", first.version)
    assert first.version != second.version
    assert first.rules == second.rules


def test_rule_subject_is_needed_when_a_proof_type_is_pulled_twice(
    tmp_path: Path, catalogue: Mapping[str, ProofTypeInfo], departments: frozenset[str]
) -> None:
    text = VALID.replace(
        "  - proof_type: criminal_record\n    department: public_security\n    subject: other_party",
        "  - proof_type: criminal_record\n    department: public_security\n    subject: other_party\n"
        "  - proof_type: criminal_record\n    department: public_security",
    ).replace(
        "sign_off:",
        "  - id: clean\n    department: public_security\n    proof: criminal_record\n    claim: has_record\n"
        "    equals: false\n    description_zh: 无\n    description_en: None\n    explain_zh: 有\n    explain_en: Has\n"
        "sign_off:",
    )
    path = write(tmp_path, text)
    with pytest.raises(CaseTypeError, match=re.escape(f"{path}:{line_of(text, 'proof: criminal_record')}: ")) as e:
        load_case_types(tmp_path, catalogue, departments)
    assert "pulled for other_party, applicant: add subject" in str(e.value)
    fixed = text.replace("    proof: criminal_record\n", "    proof: criminal_record\n    subject: other_party\n")
    spec = load_case_type(write(tmp_path, fixed), catalogue, departments)
    clean = spec.rule("clean")
    assert clean is not None and (clean.proof_type, clean.subject) == ("criminal_record", "other_party")


# --------------------------------------------------------------------------------------------
# Parameters


def housing_given(**changes: str) -> dict[str, str]:
    given = {"seller_identifier": SELLER, "property_unit": ZHUJI_UNIT, "price_fen": "150000000", "city": "330600"}
    given.update(changes)
    return {name: value for name, value in given.items() if value != "<drop>"}


def test_validate_parameters_normalizes_and_applies_defaults(case_types: dict[str, CaseTypeSpec]) -> None:
    spec = case_types["second_hand_housing_transfer"]
    assert validate_parameters(spec, housing_given()) == {
        "seller_identifier": SELLER,
        "property_unit": ZHUJI_UNIT,
        "price_fen": "150000000",
        "city": "330600",
        "mortgage_consent": "false",
        "co_owners_consent": "false",
    }
    result = validate_parameters(
        spec, housing_given(price_fen=" 000150000000 ", mortgage_consent="TRUE", seller_identifier=f" {SELLER} ")
    )
    assert (result["price_fen"], result["mortgage_consent"], result["seller_identifier"]) == (
        "150000000",
        "true",
        SELLER,
    )
    # Empty counts as not given (proto3): the default applies.
    assert validate_parameters(spec, housing_given(mortgage_consent=""))["mortgage_consent"] == "false"
    assert validate_parameters(spec, housing_given(price_fen=str(MAX_FEN)))["price_fen"] == str(MAX_FEN)
    assert validate_parameters(spec, housing_given(price_fen="1"))["price_fen"] == "1"


@pytest.mark.parametrize(
    ("changes", "name", "reason"),
    [
        ({"buyer_name": "王"}, "buyer_name", "is not a parameter of second_hand_housing_transfer"),
        ({"Bad Name!": "x"}, "<invalid name>", "is not a parameter"),
        ({"seller_identifier": "<drop>"}, "seller_identifier", "is required"),
        ({"seller_identifier": "   "}, "seller_identifier", "is required"),
        ({"seller_identifier": "3" * 65}, "seller_identifier", "longer than 64"),
        ({"price_fen": "-1"}, "price_fen", "whole number of fen"),
        ({"price_fen": "0"}, "price_fen", "must be at least 1"),  # a sale at no price is no sale
        ({"price_fen": "1.5"}, "price_fen", "whole number of fen"),
        ({"price_fen": "１００"}, "price_fen", "whole number of fen"),
        ({"price_fen": "+100"}, "price_fen", "whole number of fen"),
        ({"price_fen": str(MAX_FEN + 1)}, "price_fen", "whole number of fen"),
        ({"mortgage_consent": "yes"}, "mortgage_consent", '"true" or "false"'),
        ({"property_unit": "330681001001GB00012F0001010"}, "property_unit", "must match"),
        ({"property_unit": ZHUJI_UNIT.lower()}, "property_unit", "must match"),
        ({"city": "330681"}, "city", "must match"),
        ({"price_fen": "<drop>"}, "price_fen", "is required (the contract price, in fen)"),
    ],
)
def test_validate_parameters_refuses(
    case_types: dict[str, CaseTypeSpec], changes: dict[str, str], name: str, reason: str
) -> None:
    spec = case_types["second_hand_housing_transfer"]
    with pytest.raises(ParameterError) as caught:
        validate_parameters(spec, housing_given(**changes))
    assert caught.value.name == name
    assert reason in caught.value.reason
    assert str(caught.value) == f"parameters.{name}: {caught.value.reason}"
    # The reason never repeats the value (it may be an identifier).
    for value in changes.values():
        if len(value) > 3 and value != "<drop>":
            assert value.strip() not in str(caught.value)


def test_string_parameters_refuse_identifiers(case_types: dict[str, CaseTypeSpec]) -> None:
    spec = case_types["tour_guide_licence"]
    given = {"qualification_certificate": f"证书 {SELLER}", "employer_identifier": "91330106MA27XXXX0X"}
    with pytest.raises(ParameterError, match="must not contain an identity number") as caught:
        validate_parameters(spec, given)
    assert SELLER not in str(caught.value)
    given["qualification_certificate"] = "DYZ-2019-330100-0123"
    assert validate_parameters(spec, given)["qualification_certificate"] == "DYZ-2019-330100-0123"


@pytest.mark.parametrize(
    ("given", "name", "reason"),
    [
        ({"change_kind": "colour", "resolution_date": "2019-07-01"}, "change_kind", "must be one of name, address"),
        ({"change_kind": "address", "resolution_date": "2019-02-30"}, "resolution_date", "not a real calendar date"),
        ({"change_kind": "address", "resolution_date": "20190701"}, "resolution_date", "ISO 8601 date"),
        ({"change_kind": "address", "resolution_date": "2019-7-1"}, "resolution_date", "ISO 8601 date"),
        ({"change_kind": "address"}, "resolution_date", "is required"),
    ],
)
def test_validate_parameters_choices_and_dates(
    case_types: dict[str, CaseTypeSpec], given: dict[str, str], name: str, reason: str
) -> None:
    with pytest.raises(ParameterError) as caught:
        validate_parameters(case_types["business_licence_change"], given)
    assert (caught.value.name, reason in caught.value.reason) == (name, True)


def test_integer_parameters() -> None:
    spec = ParameterSpec("household_size", ParameterType.INTEGER, True, "家庭人口", "household size")
    assert spec.parse(" 3 ") == "3"
    assert spec.parse("-3") == "-3"
    assert spec.parse("007") == "7"
    assert spec.typed_value("7") == 7
    for bad in ("+3", "3.0", "1_000", "三", "", "1" * 19):
        with pytest.raises(ParameterError, match="whole number"):
            spec.parse(bad)


def test_typed_values() -> None:
    assert ParameterSpec("d", ParameterType.DATE, True, "", "").typed_value("2019-07-09") == datetime.date(2019, 7, 9)
    assert ParameterSpec("b", ParameterType.BOOLEAN, True, "", "").typed_value("True") is True
    assert ParameterSpec("m", ParameterType.MONEY_FEN, True, "", "").typed_value("100") == 100
    assert ParameterSpec("s", ParameterType.STRING, True, "", "").typed_value(" x ") == "x"
    with pytest.raises(ValueError):
        ParameterSpec("m", ParameterType.MONEY_FEN, True, "", "").typed_value("-1")


@pytest.mark.parametrize("value", ["330106198507154313", "330106850715431"], ids=["18-digit", "legacy-15-digit"])
def test_a_number_parameter_refuses_an_identity_number(case_types: dict[str, CaseTypeSpec], value: str) -> None:
    # An ID number is all digits: taken as a price it would be stored and shown unmasked.
    spec = case_types["second_hand_housing_transfer"]
    with pytest.raises(ParameterError) as refused:
        validate_parameters(spec, housing_given(price_fen=value))
    assert (
        str(refused.value) == "parameters.price_fen: must not be an identity number (identifier parameters take those)"
    )
    assert value not in str(refused.value)
