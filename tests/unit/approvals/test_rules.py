"""Rules of the shipped case types over real proof claims (services/approvals/domain/rules.py).

The qualifying applicants' claims are not written by hand: they are derived by records' own
proofs.derive_claims from department records checked against records' catalogue, with the proof
parameters each case type asks for, so the rules are tested against exactly the claims records
issues. Each rule then gets claim sets that fail exactly that rule, and its explanation is checked
word for word. The people and places are the seed story's: 徐伟 (Xu Wei) asks for a ride-hailing
permit in Hangzhou; a home in 诸暨 (Zhuji, 330681, in 绍兴 Shaoxing 330600) changes hands.
"""

from __future__ import annotations

import copy
import datetime
import itertools
import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from services.approvals.domain.casetypes import CaseTypeSpec, ProofTypeInfo, load_case_type, validate_parameters
from services.approvals.domain.rules import RuleResult, Value, evaluate, format_message, placeholders
from services.records.domain.catalogue import record_type, validate_fields
from services.records.domain.proofs import StoredRecord, derive_claims, proof_type

D = datetime.date
AS_OF = D(2019, 7, 9)
APPLICANT_SUB = "sub_" + "a" * 52
SELLER_SUB = "sub_" + "b" * 52
LEGAL_REP_SUB = "sub_" + "c" * 52
ZHUJI_UNIT = "330681001001GB00012F00010101"
SELLER = "330681196512120037"  # made up; only its shape matters here
EMPLOYER = "91330106MA27XXXX0X"
_ids = itertools.count(1)

Claims = dict[tuple[str, str], dict[str, Value]]

# --------------------------------------------------------------------------------------------
# Department records (each checked against records' catalogue)


def rec(department: str, code: str, fields: dict[str, Value], effective_from: datetime.date) -> StoredRecord:
    spec = record_type(department, code)
    assert spec is not None, code
    assert validate_fields(spec, fields) == [], validate_fields(spec, fields)
    n = next(_ids)
    return StoredRecord(
        record_id=f"rec-{n:06d}",
        department_code=department,
        record_type=code,
        source_reference=f"{department}-{n}",
        fields=fields,
        effective_from=effective_from,
        effective_to=None,
        recorded_at=datetime.datetime.combine(effective_from, datetime.time(2), datetime.UTC),
        superseded=False,
    )


def licence() -> StoredRecord:
    fields: dict[str, Value] = {
        "licence_class": "C1",
        "first_issued": D(2012, 3, 15),
        "valid_from": D(2012, 3, 15),
        "valid_until": D(2024, 3, 15),
        "status": "valid",
        "issuing_authority": "杭州市公安局交通警察支队",
    }
    return rec("public_security", "driving_licence", fields, D(2012, 3, 15))


def education(level: str = "senior_secondary") -> StoredRecord:
    fields: dict[str, Value] = {
        "level": level,
        "institution": "杭州市第二中学",
        "graduated_on": D(2008, 6, 30),
        "completion": "graduated",
    }
    return rec("education", "education_record", fields, D(2008, 6, 30))


def title() -> StoredRecord:
    fields: dict[str, Value] = {
        "property_unit": ZHUJI_UNIT,
        "certificate_number": "浙(2015)诸暨市不动产权第0012345号",
        "region_code": "330681",
        "usage": "residential",
        "area_cm2": 895_000,
        "holders": [SELLER_SUB],
        "ownership": "sole",
        "acquired_on": D(2015, 4, 2),
    }
    return rec("natural_resources", "property_title", fields, D(2015, 4, 2))


def released_mortgage() -> StoredRecord:
    fields: dict[str, Value] = {
        "property_unit": ZHUJI_UNIT,
        "kind": "mortgage",
        "amount_fen": 80_000_000,
        "creditor": "中国工商银行诸暨支行",
        "registered_on": D(2015, 4, 2),
        "released_on": D(2019, 6, 28),
    }
    return rec("natural_resources", "property_encumbrance", fields, D(2015, 4, 2))


def homes(count: int) -> StoredRecord:
    return rec("housing", "homes_owned", {"city_code": "330600", "count": count}, D(2019, 1, 1))


def eligibility() -> StoredRecord:
    fields: dict[str, Value] = {
        "city_code": "330600",
        "eligible": True,
        "reason": "local_household_under_limit",
        "assessed_on": D(2019, 7, 8),
    }
    return rec("housing", "purchase_eligibility", fields, D(2019, 7, 8))


def deed_tax() -> StoredRecord:
    # 1.5 million yuan at 1.5%: 22,500 yuan.
    fields: dict[str, Value] = {
        "property_unit": ZHUJI_UNIT,
        "tax_kind": "deed_tax",
        "base_fen": 150_000_000,
        "rate_basis_points": 150,
        "amount_fen": 2_250_000,
        "status": "paid",
        "due_on": AS_OF,
        "paid_on": D(2019, 7, 8),
    }
    return rec("taxation", "transaction_tax", fields, D(2019, 7, 8))


ESTABLISHED = D(2016, 5, 20)


def enterprise(established: datetime.date = ESTABLISHED) -> StoredRecord:
    fields: dict[str, Value] = {
        "registered_name": "诸暨市浣纱旅行社有限公司",
        "entity_type": "limited_liability_company",
        "legal_representative": LEGAL_REP_SUB,
        "registered_capital_fen": 50_000_000,
        "established_on": established,
        "status": "active",
        "business_scope": "国内旅游业务",
        "region_code": "330681",
    }
    return rec("market_regulation", "enterprise_registration", fields, established)


# Each case type: the records of each subject ("applicant" or an identifier parameter's name)
# and the parameters of a case that qualifies.
QUALIFYING: dict[str, tuple[dict[str, list[StoredRecord]], dict[str, str]]] = {
    "ride_hailing_driver_permit": ({"applicant": [licence(), education()]}, {}),
    "second_hand_housing_transfer": (
        {
            "applicant": [homes(0), eligibility(), deed_tax()],
            "seller_identifier": [title(), released_mortgage()],
        },
        {"seller_identifier": SELLER, "property_unit": ZHUJI_UNIT, "price_fen": "150000000", "city": "330600"},
    ),
    "business_licence_change": (
        {"applicant": [enterprise()]},
        {"change_kind": "address", "resolution_date": "2019-07-01"},
    ),
    "tour_guide_licence": (
        {"applicant": [education("bachelor")], "employer_identifier": [enterprise()]},
        {"qualification_certificate": "DYZ-2019-330100-0123", "employer_identifier": EMPLOYER},
    ),
}


def qualifying(spec: CaseTypeSpec) -> tuple[Claims, dict[str, str]]:
    """The claims records would issue for the qualifying case, and its validated parameters."""
    records, given = QUALIFYING[spec.code]
    parameters = validate_parameters(spec, given)
    claims: Claims = {}
    for proof in spec.proofs:
        found = proof_type(proof.proof_type)
        assert found is not None
        claims[(proof.proof_type, proof.subject)] = derive_claims(
            found, records[proof.subject], proof.request_parameters(parameters), AS_OF
        )
    return claims, parameters


def failed(results: tuple[RuleResult, ...]) -> list[str]:
    return [r.rule_id for r in results if not r.passed]


@pytest.mark.parametrize("code", sorted(QUALIFYING))
def test_an_applicant_who_qualifies_passes_every_rule(case_types: dict[str, CaseTypeSpec], code: str) -> None:
    spec = case_types[code]
    claims, parameters = qualifying(spec)
    results = evaluate(spec, claims, parameters)
    assert [r.rule_id for r in results] == [r.rule_id for r in spec.rules]
    assert failed(results) == []
    for result, rule in zip(results, spec.rules, strict=True):
        assert (result.message_zh, result.message_en) == (rule.description_zh, rule.description_en)
        assert result.department_code == rule.department_code
        assert (result.proof_type, result.subject) == (rule.proof_type, rule.subject)
        assert not result.evidence_missing
        assert result.evidence  # every rule shows what it looked at
        assert result.evidence.items() <= claims[(rule.proof_type, rule.subject)].items()


# --------------------------------------------------------------------------------------------
# One failure per rule (and more where a rule can fail in several ways)

RIDE = "ride_hailing_driver_permit"
HOUSING = "second_hand_housing_transfer"
CHANGE = "business_licence_change"
GUIDE = "tour_guide_licence"
A = "applicant"

# (case type, rule that fails, claim changes by (proof type, subject), parameter changes,
#  explanation in Chinese, explanation in English)
FAILURES: list[tuple[str, str, dict[tuple[str, str], dict[str, Value]], dict[str, str], str, str]] = [
    (
        RIDE,
        "licence_held_3_years",
        {("driving_licence", A): {"years_held": 2, "first_issued": D(2017, 3, 15)}},
        {},
        "驾驶证状态：有效，准驾车型：C1，驾龄 2 年；须持有效的小型汽车驾驶证满 3 年",
        "Licence status: valid, class C1, held 2 years; a valid licence for small cars held 3 years is required",
    ),
    (
        RIDE,
        "licence_held_3_years",
        {("driving_licence", A): {"held": False, "status": "revoked"}},
        {},
        "驾驶证状态：吊销，准驾车型：C1，驾龄 7 年；须持有效的小型汽车驾驶证满 3 年",
        "Licence status: revoked, class C1, held 7 years; a valid licence for small cars held 3 years is required",
    ),
    (
        RIDE,
        "licence_held_3_years",
        {("driving_licence", A): {"licence_class": "D"}},
        {},
        "驾驶证状态：有效，准驾车型：D，驾龄 7 年；须持有效的小型汽车驾驶证满 3 年",
        "Licence status: valid, class D, held 7 years; a valid licence for small cars held 3 years is required",
    ),
    (
        RIDE,
        "licence_held_3_years",
        {
            ("driving_licence", A): {
                "held": False,
                "licence_class": "",
                "first_issued": "",
                "valid_until": "",
                "status": "",
                "years_held": 0,
            }
        },
        {},
        "驾驶证状态：无，准驾车型：无，驾龄 0 年；须持有效的小型汽车驾驶证满 3 年",
        "Licence status: none, class none, held 0 years; a valid licence for small cars held 3 years is required",
    ),
    (
        RIDE,
        "no_driving_crime",
        {("criminal_record", A): {"has_record": True, "categories": ["drunk_driving"]}},
        {},
        "有犯罪记录（类别：醉酒驾驶），其中含交通肇事、危险驾驶、醉酒驾驶或毒驾犯罪",
        "Criminal record categories drunk_driving include a traffic crime, dangerous, drunk or drug driving",
    ),
    (
        RIDE,
        "no_driving_crime",
        {("criminal_record", A): {"has_record": True, "categories": ["fraud", "traffic_crime"]}},
        {},
        "有犯罪记录（类别：诈骗、交通肇事罪），其中含交通肇事、危险驾驶、醉酒驾驶或毒驾犯罪",
        "Criminal record categories fraud, traffic_crime include a traffic crime, dangerous, drunk or drug driving",
    ),
    (
        RIDE,
        "no_serious_traffic_violation",
        {("traffic_safety", A): {"serious_violations": 1, "serious_violation_kinds": ["drink_driving"]}},
        {},
        "自 2016-07-10 起有严重交通违法记录：饮酒后驾驶",
        "Serious traffic violations since 2016-07-10: drink_driving",
    ),
    (
        RIDE,
        "no_serious_traffic_violation",
        {("traffic_safety", A): {"serious_violations": 2, "serious_violation_kinds": ["drug_driving", "hit_and_run"]}},
        {},
        "自 2016-07-10 起有严重交通违法记录：毒驾、肇事逃逸",
        "Serious traffic violations since 2016-07-10: drug_driving, hit_and_run",
    ),
    (
        RIDE,
        "no_major_traffic_accident",
        {("traffic_safety", A): {"major_or_fatal_accidents": 1}},
        {},
        "自 2016-07-10 起有 1 起负同等以上责任的重大或死亡交通事故",
        "Major or fatal traffic accidents with equal or greater responsibility since 2016-07-10: 1",
    ),
    (
        RIDE,
        "no_twelve_point_cycle",
        {("traffic_safety", A): {"twelve_point_cycles": 1}},
        {},
        "自 2017-03-15 起的最近 3 个记分周期内有 1 个周期记满 12 分",
        "1 of the last 3 scoring cycles (since 2017-03-15) reached 12 points",
    ),
    (
        RIDE,
        "no_violent_crime",
        {("criminal_record", A): {"has_record": True, "categories": ["property", "violent"]}},
        {},
        "有暴力犯罪记录（犯罪记录类别：财产犯罪、暴力犯罪）",
        "Has a record of violent crime (criminal record categories: property, violent)",
    ),
    (
        RIDE,
        "education_on_file",
        {("education_level", A): {"has_record": False, "highest_level": "", "graduated_on": ""}},
        {},
        "未查到毕业学历信息",
        "No education record (graduation) is on file",
    ),
    (
        HOUSING,
        "seller_holds_title",
        {("property_title", "seller_identifier"): {"holds_title": False, "titles": []}},
        {},
        f"卖方名下没有不动产单元 {ZHUJI_UNIT} 的产权登记",
        f"The seller holds no registered title to unit {ZHUJI_UNIT}",
    ),
    (
        # Holds a title, but to another unit (a proof issued for the wrong unit never passes).
        HOUSING,
        "seller_holds_title",
        {
            ("property_title", "seller_identifier"): {
                "titles": [
                    {
                        "property_unit": "330681001001GB00013F00020202",
                        "region_code": "330681",
                        "area_cm2": 895_000,
                        "acquired_on": D(2015, 4, 2),
                        "sole_holder": True,
                    }
                ]
            }
        },
        {},
        f"卖方名下没有不动产单元 {ZHUJI_UNIT} 的产权登记",
        f"The seller holds no registered title to unit {ZHUJI_UNIT}",
    ),
    (
        # Held jointly with a co-owner, whose agreement the application does not declare.
        HOUSING,
        "co_owners_agree",
        {
            ("property_title", "seller_identifier"): {
                "titles": [
                    {
                        "property_unit": ZHUJI_UNIT,
                        "region_code": "330681",
                        "city_code": "330600",
                        "area_cm2": 895_000,
                        "acquired_on": D(2015, 4, 2),
                        "sole_holder": False,
                    }
                ]
            }
        },
        {},
        f"不动产单元 {ZHUJI_UNIT} 为共有，且未声明其他共有人同意出售",
        f"Unit {ZHUJI_UNIT} has co-owners, and their agreement to the sale was not declared",
    ),
    (
        # The application names Hangzhou, where the buyer is eligible too, for a home in Zhuji.
        HOUSING,
        "unit_in_city",
        {("housing_purchase_eligibility", A): {"city_code": "330100"}},
        {"city": "330100"},
        f"不动产单元 {ZHUJI_UNIT} 不在 330100；购房资格须按房屋所在城市审核",
        f"Unit {ZHUJI_UNIT} does not lie in 330100; purchase eligibility is assessed for the city the unit is in",
    ),
    (
        HOUSING,
        "no_seizure",
        {
            ("property_encumbrances", "seller_identifier"): {
                "seizure": True,
                "encumbrances": [{"kind": "seizure", "registered_on": D(2019, 5, 6)}],
            }
        },
        {},
        f"不动产单元 {ZHUJI_UNIT} 已被查封，不能办理转移登记",
        f"Unit {ZHUJI_UNIT} is under seizure and cannot be transferred",
    ),
    (
        HOUSING,
        "mortgage_cleared_or_consented",
        {
            ("property_encumbrances", "seller_identifier"): {
                "mortgage_outstanding": True,
                "encumbrances": [{"kind": "mortgage", "registered_on": D(2015, 4, 2)}],
            }
        },
        {"mortgage_consent": "false"},
        f"不动产单元 {ZHUJI_UNIT} 有未注销的抵押，且未声明抵押权人同意转让",
        f"Unit {ZHUJI_UNIT} has an outstanding mortgage and the mortgagee's consent was not declared",
    ),
    (
        HOUSING,
        "buyer_eligible",
        {
            ("housing_purchase_eligibility", A): {
                "homes_owned": 2,
                "eligible": False,
                "reason": "local_household_limit_reached",
            }
        },
        {},
        "买方不符合 330600 的购房资格（已核定：是；原因：本地户籍家庭已达限购套数；家庭在该市已有住房 2 套）",
        "The buyer may not buy in 330600 (assessed: yes; reason: local_household_limit_reached; homes owned there: 2)",
    ),
    (
        HOUSING,
        "buyer_eligible",
        {("housing_purchase_eligibility", A): {"assessed": False, "eligible": False, "reason": "", "assessed_on": ""}},
        {},
        "买方不符合 330600 的购房资格（已核定：否；原因：无；家庭在该市已有住房 0 套）",
        "The buyer may not buy in 330600 (assessed: no; reason: none; homes owned there: 0)",
    ),
    (
        HOUSING,
        "deed_tax_paid",
        {("transaction_tax_paid", A): {"deed_tax_paid": False, "deed_tax_paid_on": ""}},
        {},
        "契税：计税依据 150000000 分（成交价 150000000 分），税率 150 个基点，税额 2250000 分，已缴纳：否",
        "Deed tax: base 150000000 fen (price 150000000 fen), rate 150 basis points, amount 2250000 fen, paid: no",
    ),
    (
        # Paid, but on a lower price than the contract's (阴阳合同).
        HOUSING,
        "deed_tax_paid",
        {},
        {"price_fen": "180000000"},
        "契税：计税依据 150000000 分（成交价 180000000 分），税率 150 个基点，税额 2250000 分，已缴纳：是",
        "Deed tax: base 150000000 fen (price 180000000 fen), rate 150 basis points, amount 2250000 fen, paid: yes",
    ),
    (
        # Paid, but the amount is not base x rate.
        HOUSING,
        "deed_tax_paid",
        {("transaction_tax_paid", A): {"deed_tax_amount_fen": 1_500_000}},
        {},
        "契税：计税依据 150000000 分（成交价 150000000 分），税率 150 个基点，税额 1500000 分，已缴纳：是",
        "Deed tax: base 150000000 fen (price 150000000 fen), rate 150 basis points, amount 1500000 fen, paid: yes",
    ),
    (
        HOUSING,
        "deed_tax_paid",
        {
            ("transaction_tax_paid", A): {
                "has_record": False,
                "deed_tax_base_fen": 0,
                "deed_tax_rate_basis_points": 0,
                "deed_tax_amount_fen": 0,
                "deed_tax_paid": False,
                "deed_tax_paid_on": "",
            }
        },
        {},
        "契税：计税依据 0 分（成交价 150000000 分），税率 0 个基点，税额 0 分，已缴纳：否",
        "Deed tax: base 0 fen (price 150000000 fen), rate 0 basis points, amount 0 fen, paid: no",
    ),
    (
        CHANGE,
        "enterprise_registered",
        {("enterprise_registration", A): {"has_record": False, "established_on": ""}},
        {},
        "未查到该企业的登记信息",
        "The enterprise is not in the register",
    ),
    (
        CHANGE,
        "registration_active",
        {("enterprise_registration", A): {"status": "revoked"}},
        {},
        "企业登记状态为 吊销，只有存续企业可以办理变更登记",
        "The enterprise's status is revoked; only an enterprise in business can change its registration",
    ),
    (
        CHANGE,
        "resolution_after_establishment",
        {},
        {"resolution_date": "2016-05-19"},
        "变更决议日期 2016-05-19 早于企业成立日期 2016-05-20",
        "The resolution (2016-05-19) predates the enterprise's establishment (2016-05-20)",
    ),
    (
        CHANGE,
        "resolution_not_in_the_future",
        {},
        {"resolution_date": "2099-01-01"},
        f"变更决议日期 2099-01-01 晚于审查当日 {AS_OF}",
        f"The resolution is dated 2099-01-01, after the day it was checked ({AS_OF})",
    ),
    (
        GUIDE,
        "no_criminal_penalty",
        {("criminal_record", A): {"has_record": True, "categories": ["fraud"]}},
        {},
        "有犯罪记录（类别：诈骗），受过刑事处罚的不予核发导游证（过失犯罪除外）",
        "Criminal record categories fraud: a criminal penalty bars the licence unless the crime was negligent",
    ),
    (
        GUIDE,
        "no_criminal_penalty",
        {("criminal_record", A): {"has_record": True, "categories": ["traffic_crime", "violent"]}},
        {},
        "有犯罪记录（类别：交通肇事罪、暴力犯罪），受过刑事处罚的不予核发导游证（过失犯罪除外）",
        "Criminal record categories traffic_crime, violent: a criminal penalty bars the licence unless the crime was "
        "negligent",
    ),
    (
        GUIDE,
        "education_senior_secondary",
        {("education_level", A): {"highest_level": "junior_secondary"}},
        {},
        "最高学历：初中；须具有高中、中专或以上学历",
        "Highest level of education: junior_secondary; senior secondary or higher is required",
    ),
    (
        GUIDE,
        "employer_in_business",
        {("enterprise_registration", "employer_identifier"): {"status": "cancelled"}},
        {},
        "签约单位登记状态：注销；须与存续的旅行社或旅游行业组织签约",
        "The employer's registration status is cancelled; the guide must sign with one in business",
    ),
]


@pytest.mark.parametrize(
    ("code", "rule_id", "claim_changes", "parameter_changes", "explain_zh", "explain_en"),
    [pytest.param(*f, id=f"{f[0]}-{f[1]}-{n}") for n, f in enumerate(FAILURES)],
)
def test_an_applicant_who_fails_one_rule_is_told_why(
    case_types: dict[str, CaseTypeSpec],
    code: str,
    rule_id: str,
    claim_changes: dict[tuple[str, str], dict[str, Value]],
    parameter_changes: dict[str, str],
    explain_zh: str,
    explain_en: str,
) -> None:
    spec = case_types[code]
    claims, parameters = qualifying(spec)
    claims = copy.deepcopy(claims)
    for key, changes in claim_changes.items():
        assert set(changes) <= set(claims[key]), f"{key}: no such claims {set(changes) - set(claims[key])}"
        claims[key].update(changes)
    parameters = validate_parameters(spec, {**parameters, **parameter_changes})
    results = evaluate(spec, claims, parameters)
    assert failed(results) == [rule_id]
    result = next(r for r in results if r.rule_id == rule_id)
    assert (result.message_zh, result.message_en) == (explain_zh, explain_en)
    assert not result.evidence_missing
    # No raw identifier in any message.
    for each in results:
        assert SELLER not in each.message_zh + each.message_en and EMPLOYER not in each.message_zh + each.message_en


def test_chinese_explanations_name_codes_in_chinese() -> None:
    """No code of records' vocabularies inside a Chinese explanation (issue 14: "驾驶证状态：valid")."""
    for *_, explain_zh, _ in FAILURES:
        assert not re.search(r"(?<![A-Za-z0-9])[a-z][a-z_]{2,}", explain_zh), explain_zh


def test_every_code_a_case_type_explains_has_a_chinese_name() -> None:
    from services.approvals.domain.labels import ZH
    from services.records.domain import catalogue

    vocabularies = [
        catalogue.OFFENCE_CATEGORIES,
        catalogue.VIOLATION_KINDS,
        catalogue.EDUCATION_LEVELS,
        ("valid", "suspended", "revoked", "expired"),  # a licence's status
        ("active", "revoked", "cancelled", "suspended"),  # an enterprise's registration status
    ]
    assert [code for vocabulary in vocabularies for code in vocabulary if code not in ZH] == []


def test_every_rule_has_a_failure(case_types: dict[str, CaseTypeSpec]) -> None:
    covered = {(code, rule_id) for code, rule_id, *_ in FAILURES}
    every = {(spec.code, rule.rule_id) for spec in case_types.values() for rule in spec.rules}
    assert every - covered == set()


def test_a_real_drunk_driving_conviction_fails_exactly_the_driving_crime_rule(
    case_types: dict[str, CaseTypeSpec],
) -> None:
    # From records this time: the claims of a 危险驾驶罪 (drunk driving) judgment.
    spec = case_types[RIDE]
    claims, parameters = qualifying(spec)
    conviction = rec(
        "public_security",
        "criminal_record",
        {
            "offence_category": "drunk_driving",
            "charge": "危险驾驶罪",
            "judgment_date": D(2015, 6, 1),
            "sentence": "criminal_detention",
            "sentence_months": 3,
            "court": "杭州市西湖区人民法院",
        },
        D(2015, 6, 1),
    )
    criminal = proof_type("criminal_record")
    assert criminal is not None
    claims[("criminal_record", A)] = derive_claims(criminal, [conviction], {}, AS_OF)
    results = evaluate(spec, claims, parameters)
    assert failed(results) == ["no_driving_crime"]
    assert results[1].evidence == {"categories": ["drunk_driving"]}


def test_mortgage_outstanding_with_consent_passes(case_types: dict[str, CaseTypeSpec]) -> None:
    spec = case_types[HOUSING]
    claims, parameters = qualifying(spec)
    claims[("property_encumbrances", "seller_identifier")]["mortgage_outstanding"] = True
    parameters = validate_parameters(spec, {**parameters, "mortgage_consent": "true"})
    results = evaluate(spec, claims, parameters)
    assert failed(results) == []
    assert next(r for r in results if r.rule_id == "mortgage_cleared_or_consented").evidence == {
        "mortgage_outstanding": True
    }


def test_deed_tax_amount_rounds_half_up_to_the_fen(case_types: dict[str, CaseTypeSpec]) -> None:
    # 1,234,567.89 yuan at 1.5%: 18,518.51835 yuan, 1,851,851.835 fen, rounded to 1,851,852.
    spec = case_types[HOUSING]
    claims, parameters = qualifying(spec)
    tax = claims[("transaction_tax_paid", A)]
    tax.update(deed_tax_base_fen=123_456_789, deed_tax_amount_fen=1_851_852)
    parameters = validate_parameters(spec, {**parameters, "price_fen": "123456789"})
    assert failed(evaluate(spec, claims, parameters)) == []
    tax["deed_tax_amount_fen"] = 1_851_851
    assert failed(evaluate(spec, claims, parameters)) == ["deed_tax_paid"]


def test_a_missing_proof_fails_its_rules_and_says_so(case_types: dict[str, CaseTypeSpec]) -> None:
    spec = case_types[HOUSING]
    claims, parameters = qualifying(spec)
    del claims[("property_encumbrances", "seller_identifier")]
    results = evaluate(spec, claims, parameters)
    assert failed(results) == ["no_seizure", "mortgage_cleared_or_consented"]
    seizure = next(r for r in results if r.rule_id == "no_seizure")
    assert seizure.evidence_missing and seizure.evidence == {}
    assert seizure.message_zh == "未取得seller_identifier的 property_encumbrances 证明，无法核验：该不动产未被查封"
    assert seizure.message_en == (
        "No property_encumbrances proof of seller_identifier is available, so this cannot be checked: "
        "The unit is not under seizure"
    )
    assert SELLER not in seizure.message_zh + seizure.message_en
    # Rules of other proofs are unaffected.
    assert all(r.passed for r in results if r.proof_type != "property_encumbrances")


def test_evaluate_one_department(case_types: dict[str, CaseTypeSpec]) -> None:
    spec = case_types[HOUSING]
    claims, parameters = qualifying(spec)
    assert [r.rule_id for r in evaluate(spec, claims, parameters, department="natural_resources")] == [
        "seller_holds_title",
        "co_owners_agree",
        "unit_in_city",
        "no_seizure",
        "mortgage_cleared_or_consented",
    ]
    assert evaluate(spec, claims, parameters, department="transport") == ()


def test_defaults_apply_when_evaluating_parameters_left_out(case_types: dict[str, CaseTypeSpec]) -> None:
    spec = case_types[HOUSING]
    claims, parameters = qualifying(spec)
    del parameters["mortgage_consent"]
    claims[("property_encumbrances", "seller_identifier")]["mortgage_outstanding"] = True
    assert failed(evaluate(spec, claims, parameters)) == ["mortgage_cleared_or_consented"]


# --------------------------------------------------------------------------------------------
# The language itself, on small case types written for the test

LANGUAGE = """\
code: language_case
name_zh: 语言
name_en: Language
applicant_kind: resident
parameters:
  - name: since
    type: date
    required: false
    default: 2018-01-01
    description_zh: 起始日
    description_en: since
  - name: limit
    type: integer
    required: true
    description_zh: 上限
    description_en: limit
proofs:
  - proof_type: driving_licence
    department: public_security
  - proof_type: property_title
    department: natural_resources
  - proof_type: traffic_safety
    department: public_security
rules:
{rules}
sign_off: [transport]
deadline_working_days: 0
"""


def rule(condition: str, proof: str = "driving_licence", explain: str = "no") -> str:
    lines = [
        "  - id: r",
        "    department: public_security",
        f"    proof: {proof}",
        *("    " + line for line in condition.strip().splitlines()),
        "    description_zh: 是",
        "    description_en: passes",
        f'    explain_zh: "{explain}"',
        f'    explain_en: "{explain}"',
    ]
    return "\n".join(lines)


def language_case(
    tmp_path: Path, catalogue: Mapping[str, ProofTypeInfo], departments: frozenset[str], condition: str, **kw: str
) -> CaseTypeSpec:
    path = tmp_path / "language_case.yaml"
    path.write_text(LANGUAGE.replace("{rules}", rule(condition, **kw)), encoding="utf-8")
    return load_case_type(path, catalogue, departments)


LICENCE: dict[str, Value] = {
    "as_of": AS_OF,
    "held": True,
    "licence_class": "C1",
    "first_issued": D(2012, 3, 15),
    "valid_until": D(2024, 3, 15),
    "status": "valid",
    "years_held": 7,
}


@pytest.mark.parametrize(
    ("condition", "passes"),
    [
        ("claim: held\nequals: true", True),
        ("claim: held\nequals: 1", False),  # strict: true is not 1
        ("claim: years_held\nequals: true", False),
        ("claim: years_held\nequals: '7'", False),
        ("claim: status\nnot_equals: revoked", True),
        ("claim: years_held\nat_least: 7", True),
        ("claim: years_held\nat_least: 8", False),
        ("claim: years_held\nat_most: 7", True),
        ("claim: first_issued\nat_most: 2012-03-15", True),
        ("claim: first_issued\nat_least: 2012-03-16", False),
        ("claim: first_issued\nat_least: {param: since}", False),
        ("claim: valid_until\nat_least: {param: since}", True),
        ("claim: years_held\nat_most: {param: limit}", True),
        ("claim: valid_until\nat_least: {claim: first_issued}", True),
        ("claim: licence_class\nin: [C1, C2]", True),
        ("claim: licence_class\nnot_in: [C1, C2]", False),
        ("not: {claim: held, equals: false}", True),
        ("any: [{claim: held, equals: false}, {claim: years_held, at_least: 3}]", True),
        ("all: [{claim: held, equals: true}, {claim: years_held, at_least: 30}]", False),
        ("all: [{claim: held, equals: false}, {claim: first_issued, at_least: 0}]", False),  # stops at the first
        ("claim: status\nis_not_empty: true", True),
        ("claim: status\nis_empty: true", False),
        ("param: limit\nequals: 7", True),
        ("param: since\nequals: 2018-01-01", True),
    ],
)
def test_operators(
    tmp_path: Path,
    catalogue: Mapping[str, ProofTypeInfo],
    departments: frozenset[str],
    condition: str,
    passes: bool,
) -> None:
    spec = language_case(tmp_path, catalogue, departments, condition)
    (result,) = evaluate(spec, {("driving_licence", A): LICENCE}, {"limit": "7"})
    assert (result.passed, result.evidence_missing) == (passes, False)


TRAFFIC: dict[str, Value] = {
    "as_of": AS_OF,
    "window_start": D(2016, 7, 10),
    "major_or_fatal_accidents": 0,
    "serious_violations": 2,
    "serious_violation_kinds": ["drink_driving", "speeding"],
    "cycles_window_start": D(2017, 3, 15),
    "twelve_point_cycles": 0,
}


@pytest.mark.parametrize(
    ("condition", "passes"),
    [
        ("claim: serious_violation_kinds\ncontains: drink_driving", True),
        ("claim: serious_violation_kinds\ncontains: [drink_driving, speeding]", True),
        ("claim: serious_violation_kinds\ncontains: [drink_driving, hit_and_run]", False),
        ("claim: serious_violation_kinds\ncontains_none: [hit_and_run]", True),
        ("claim: serious_violation_kinds\ncontains_none: speeding", False),
        ("claim: serious_violation_kinds\nsubset_of: [drink_driving, speeding, red_light]", True),
        ("claim: serious_violation_kinds\nsubset_of: [drink_driving]", False),
        ("claim: serious_violation_kinds\nequals: [drink_driving, speeding]", True),
        ("claim: serious_violation_kinds\nequals: [speeding, drink_driving]", False),
        ("claim: serious_violation_kinds\nis_not_empty: true", True),
        ("claim: serious_violations\nequals: {rate_of: {base: 20000, basis_points: 1}}", True),
        ("claim: serious_violations\nequals: {rate_of: {base: 14999, basis_points: 1}}", False),  # 1.4999 -> 1
        ("claim: serious_violations\nequals: {rate_of: {base: 15000, basis_points: 1}}", True),  # 1.5 -> 2
    ],
)
def test_list_operators(
    tmp_path: Path,
    catalogue: Mapping[str, ProofTypeInfo],
    departments: frozenset[str],
    condition: str,
    passes: bool,
) -> None:
    spec = language_case(tmp_path, catalogue, departments, condition, proof="traffic_safety")
    (result,) = evaluate(spec, {("traffic_safety", A): TRAFFIC}, {"limit": "7"})
    assert (result.passed, result.evidence_missing) == (passes, False)


@pytest.mark.parametrize(
    ("condition", "titles", "passes"),
    [
        ("claim: titles\nany_item: {field: area_cm2, at_least: 1000000}", [{"area_cm2": 900_000}], False),
        ("claim: titles\nany_item: {field: area_cm2, at_least: 1000000}", [{"area_cm2": 1_200_000}], True),
        ("claim: titles\nall_items: {field: sole_holder, equals: true}", [], True),
        ("claim: titles\nany_item: {field: sole_holder, equals: true}", [], False),
        (
            "claim: titles\nall_items: {field: sole_holder, equals: true}",
            [{"sole_holder": True}, {"sole_holder": False}],
            False,
        ),
    ],
)
def test_item_quantifiers(
    tmp_path: Path,
    catalogue: Mapping[str, ProofTypeInfo],
    departments: frozenset[str],
    condition: str,
    titles: list[Value],
    passes: bool,
) -> None:
    spec = language_case(tmp_path, catalogue, departments, condition, proof="property_title")
    claims: Claims = {("property_title", A): {"as_of": AS_OF, "holds_title": bool(titles), "titles": titles}}
    (result,) = evaluate(spec, claims, {"limit": "7"})
    assert (result.passed, result.evidence_missing) == (passes, False)


@pytest.mark.parametrize(
    ("condition", "claims", "parameters", "message_en"),
    [
        # An empty "" date cannot be ordered: the rule fails as missing evidence, and `not`
        # does not turn that into a pass.
        (
            "not: {claim: first_issued, at_least: 2019-01-01}",
            {"first_issued": ""},
            {"limit": "7"},
            "The value of first_issued cannot be compared with the rule's (integers with integers, dates with dates)",
        ),
        (
            "claim: held\nequals: true",
            {"held": None},
            {"limit": "7"},
            "The driving_licence proof carries no claim held",
        ),
        (
            "param: limit\nat_least: 3",
            {},
            {},
            "Parameter limit has no valid value",
        ),
        (
            "param: limit\nat_least: 3",
            {},
            {"limit": "many"},
            "Parameter limit has no valid value",
        ),
        ("claim: status\ncontains: valid", {}, {"limit": "7"}, "The value of status is not a list"),
        ("claim: years_held\nis_empty: true", {}, {"limit": "7"}, "The value of years_held cannot be empty or not"),
    ],
)
def test_unusable_evidence_fails_the_rule(
    tmp_path: Path,
    catalogue: Mapping[str, ProofTypeInfo],
    departments: frozenset[str],
    condition: str,
    claims: dict[str, Value | None],
    parameters: dict[str, str],
    message_en: str,
) -> None:
    spec = language_case(tmp_path, catalogue, departments, condition)
    licence_claims = {name: value for name, value in {**LICENCE, **claims}.items() if value is not None}
    (result,) = evaluate(spec, {("driving_licence", A): licence_claims}, parameters)
    assert (result.passed, result.evidence_missing, result.message_en) == (False, True, message_en)
    assert result.message_zh


def test_a_missing_item_field_fails_the_rule(
    tmp_path: Path, catalogue: Mapping[str, ProofTypeInfo], departments: frozenset[str]
) -> None:
    # Item fields are not in the published catalogue, so a wrong name is found when evaluated.
    spec = language_case(
        tmp_path, catalogue, departments, "claim: titles\nany_item: {field: area, at_least: 1}", proof="property_title"
    )
    claims: Claims = {("property_title", A): {"as_of": AS_OF, "holds_title": True, "titles": [{"area_cm2": 5}]}}
    (result,) = evaluate(spec, claims, {"limit": "7"})
    assert (result.passed, result.evidence_missing) == (False, True)
    assert result.message_en == "An item of the property_title proof has no field area"


def test_evidence_is_every_claim_the_rule_names(
    tmp_path: Path, catalogue: Mapping[str, ProofTypeInfo], departments: frozenset[str]
) -> None:
    spec = language_case(
        tmp_path,
        catalogue,
        departments,
        "all: [{claim: held, equals: false}, {claim: years_held, at_least: 3}, {claim: held, equals: true}]",
        explain="{status} {years_held} {limit} {since} {{literal}}",
    )
    (result,) = evaluate(spec, {("driving_licence", A): LICENCE}, {"limit": "7"})
    assert result.evidence == {"held": True, "years_held": 7}  # named, though never reached
    assert result.message_en == "valid 7 7 2018-01-01 {literal}"


def test_format_message_shows_values_by_language() -> None:
    values: dict[str, Value] = {
        "flag": True,
        "day": D(2019, 7, 9),
        "kinds": ["a", "b"],
        "empty": "",
        "none": [],
        "item": {"kind": "mortgage"},
        "n": 3,
    }
    template = "{flag}|{day}|{kinds}|{empty}|{none}|{item}|{n}|{unknown}"
    assert format_message(template, values, "zh") == "是|2019-07-09|a、b|无|无|[kind=mortgage]|3|?"
    assert format_message(template, values, "en") == "yes|2019-07-09|a, b|none|none|[kind=mortgage]|3|?"


@pytest.mark.parametrize("template", ["{x.y}", "{x[0]}", "{x!r}", "{x:>5}", "{}", "{0}", "{", "}", "{X}"])
def test_placeholders_are_plain_names_only(template: str) -> None:
    with pytest.raises(ValueError):
        placeholders(template)


def test_placeholders() -> None:
    assert placeholders("驾龄 {years_held} 年 {{x}} {status}") == ["years_held", "status"]
