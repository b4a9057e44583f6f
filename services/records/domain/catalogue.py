"""The records catalogue: which departments publish which records, and what a valid record is.

This is the public data platform's data dictionary (pure domain logic, standard library only).
The 25 department codes are also the callers' ids in policy/dev.yaml; a record type code is
unique across the whole platform, so ``(department, record type)`` and the record type alone
name the same thing.

Conventions every department feed follows (proofs.py relies on them) are decisions recorded in
docs/decisions/: exact values, never floats (records-exact-values.md); the effective period is the
record's standing in the register (records-effective-period.md); no raw identifier in any field
(records-no-identifier-in-records.md).
"""

from __future__ import annotations

import datetime
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from govmesh.privacy import contains_identifier
from govmesh.texts import control_problem
from govmesh.typed_values import Value

__all__ = [
    "DEPARTMENTS",
    "DEPARTMENT_CODES",
    "MAX_FEN",
    "MAX_LIST_ITEMS",
    "MAX_STRING_LENGTH",
    "DateOrder",
    "DepartmentSpec",
    "FieldProblem",
    "FieldRule",
    "FieldSpec",
    "FieldType",
    "RecordTypeSpec",
    "RequiredWhen",
    "SubjectKind",
    "Value",
    "contains_raw_identifier",
    "department",
    "record_type",
    "validate_fields",
]

#: Longest string accepted in a field, in code points: records are facts, not documents.
MAX_STRING_LENGTH: Final = 2000
#: Most items accepted in one list field.
MAX_LIST_ITEMS: Final = 200
#: Largest amount of money accepted, in fen (10 trillion yuan): far above any real amount (the
#: largest registered capitals are near 10^13 fen) and far below an 18-digit ID number written
#: as an integer (about 3 x 10^17), which would otherwise slip through an amount field.
MAX_FEN: Final = 10**15
#: Largest area accepted, in square centimetres (1,000 km²).
MAX_AREA_CM2: Final = 10**13

# proto int64 bounds: every INT value must fit in TypedValue.int_value.
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


class SubjectKind(enum.Enum):
    """Whom a record or proof is about; values match identity's IdentifierKind."""

    RESIDENT = "resident"
    ENTERPRISE = "enterprise"


class FieldType(enum.Enum):
    """The TypedValue kind of a field."""

    STRING = "string"
    INT = "int"
    BOOL = "bool"
    #: A calendar date (``datetime.date``, not a datetime).
    DATE = "date"
    #: An instant (an aware ``datetime.datetime``).
    TIME = "time"
    LIST = "list"
    MAP = "map"


@dataclass(frozen=True)
class FieldSpec:
    """One field of a record type.

    ``choices`` and ``pattern`` (a regular expression the whole string must match) apply to
    STRING fields, ``minimum`` and ``maximum`` (inclusive) to INT fields. A LIST holds items of
    ``item_type`` (STRING when not given); for a LIST of maps, ``item_fields`` describe each
    item and choices/range/pattern do not apply. For a LIST of scalars, choices, range and
    pattern apply to each item. A MAP always has declared ``item_fields``: there are no
    free-form maps, so every value that enters the platform has a known meaning.

    A STRING is one line unless ``multiline`` (text written as paragraphs, such as a business
    scope): no string holds a control or invisible formatting character, and a multi-line one
    may hold newlines and tabs besides (govmesh.texts.control_problem).
    """

    name: str
    type: FieldType
    required: bool
    description: str
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    item_fields: tuple[FieldSpec, ...] = ()
    item_type: FieldType | None = None
    pattern: str = ""
    multiline: bool = False


@dataclass(frozen=True)
class DateOrder:
    """``later`` must not be before ``earlier`` when both are present (equal dates are fine)."""

    earlier: str
    later: str


@dataclass(frozen=True)
class RequiredWhen:
    """``field`` is required when ``when_field`` has the value ``equals``."""

    field: str
    when_field: str
    equals: str | bool


#: A rule across fields of one record.
FieldRule: TypeAlias = DateOrder | RequiredWhen


@dataclass(frozen=True)
class RecordTypeSpec:
    code: str
    name_zh: str
    name_en: str
    subject_kinds: frozenset[SubjectKind]
    fields: tuple[FieldSpec, ...]
    rules: tuple[FieldRule, ...] = ()


@dataclass(frozen=True)
class DepartmentSpec:
    code: str
    name_zh: str
    name_en: str
    record_types: tuple[RecordTypeSpec, ...]


@dataclass(frozen=True)
class FieldProblem:
    #: Dotted path of the field, e.g. "insurances[0].months_contributed".
    field: str
    #: "<path>: <reason>", in English; never contains the offending value when it is free text
    #: or might be an identifier.
    message: str


# --------------------------------------------------------------------------------------------
# Formats

#: A GB/T 2260 administrative division code (county, prefecture or province level).
REGION_CODE: Final = r"[1-9][0-9]{5}"
#: A prefecture-level (city) division code, e.g. 330100 杭州市, 330600 绍兴市.
CITY_CODE: Final = r"[1-9][0-9](?:0[1-9]|[1-9][0-9])00"
#: A real estate unit code (不动产单元代码, GB/T 37346): 6-digit county, 6-digit cadastral
#: district and sub-district, parcel kind (G state land, J collective land, Z disputed) and
#: parcel type letters, 5-digit parcel number, fixture kind (F building, L forest, Q structure,
#: W none) and 8-digit fixture unit number; 28 characters, e.g. 330681001001GB00012F00010101.
PROPERTY_UNIT: Final = r"[0-9]{12}[GJZ][A-Z][0-9]{5}[FLQW][0-9]{8}"
#: Another person or enterprise: a pseudonymous subject id or a masked identifier.
SUBJECT_REFERENCE: Final = r"sub_[a-z2-7]{52}|[0-9A-Z]{6}\*{8}[0-9A-Z]{4}|[0-9]{6}\*{6}[0-9]{3}"
#: A court case number (案号), e.g. (2019)浙0681民初1234号.
CASE_NUMBER: Final = r"[(（][0-9]{4}[)）][^\s]{2,40}号"
#: A lower_snake_case code.
CODE: Final = r"[a-z][a-z0-9_]{0,63}"

_NAME_RE: Final = re.compile(CODE)


def contains_raw_identifier(text: str) -> bool:
    """True when ``text`` contains something shaped like a resident ID number or a USCC (see
    govmesh.privacy). Used for every string field of a record and for free text such as a
    purpose's note."""
    return contains_identifier(text)


# --------------------------------------------------------------------------------------------
# Field helpers (keep the catalogue below readable)


def _string(
    name: str,
    description: str,
    *,
    required: bool = True,
    choices: tuple[str, ...] = (),
    pattern: str = "",
    multiline: bool = False,
) -> FieldSpec:
    return FieldSpec(
        name, FieldType.STRING, required, description, choices=choices, pattern=pattern, multiline=multiline
    )


def _int(name: str, description: str, *, minimum: int | None, maximum: int | None, required: bool = True) -> FieldSpec:
    return FieldSpec(name, FieldType.INT, required, description, minimum=minimum, maximum=maximum)


def _fen(name: str, description: str, *, minimum: int = 0, required: bool = True) -> FieldSpec:
    return _int(name, description + " (integer fen)", minimum=minimum, maximum=MAX_FEN, required=required)


def _date(name: str, description: str, *, required: bool = True) -> FieldSpec:
    return FieldSpec(name, FieldType.DATE, required, description)


def _bool(name: str, description: str, *, required: bool = True) -> FieldSpec:
    return FieldSpec(name, FieldType.BOOL, required, description)


def _string_list(
    name: str, description: str, *, pattern: str = "", choices: tuple[str, ...] = (), required: bool = True
) -> FieldSpec:
    return FieldSpec(
        name, FieldType.LIST, required, description, item_type=FieldType.STRING, pattern=pattern, choices=choices
    )


def _map_list(name: str, description: str, items: tuple[FieldSpec, ...], *, required: bool = True) -> FieldSpec:
    return FieldSpec(name, FieldType.LIST, required, description, item_type=FieldType.MAP, item_fields=items)


_R: Final = frozenset({SubjectKind.RESIDENT})
_E: Final = frozenset({SubjectKind.ENTERPRISE})
_RE: Final = frozenset({SubjectKind.RESIDENT, SubjectKind.ENTERPRISE})

_PERMIT_STATUS: Final = ("valid", "suspended", "revoked", "expired")

#: Offence categories of criminal records (and of the procuratorate's decisions). Drunk driving
#: (醉驾) is a form of the crime of dangerous driving (危险驾驶罪) but has its own category,
#: because case rules name it; traffic_crime is 交通肇事罪.
OFFENCE_CATEGORIES: Final = (
    "violent",
    "traffic_crime",
    "dangerous_driving",
    "drunk_driving",
    "drug_driving",
    "drug",
    "property",
    "fraud",
    "corruption",
    "public_order",
    "other",
)

#: Kinds of traffic violation. drink_driving is 饮酒驾驶 (20-80 mg/100 ml, an administrative
#: violation); drunk_driving is 醉酒驾驶 (80 mg/100 ml and more, a crime).
VIOLATION_KINDS: Final = (
    "speeding",
    "red_light",
    "drink_driving",
    "drunk_driving",
    "drug_driving",
    "dangerous_driving",
    "hit_and_run",
    "unlicensed_driving",
    "phone_use",
    "seat_belt",
    "overloading",
    "illegal_parking",
    "other",
)

#: Motor vehicle driving licence classes (准驾车型, GA/T and Ministry of Public Security Order 162).
LICENCE_CLASSES: Final = (
    "A1",
    "A2",
    "A3",
    "B1",
    "B2",
    "C1",
    "C2",
    "C3",
    "C4",
    "C5",
    "C6",
    "D",
    "E",
    "F",
    "M",
    "N",
    "P",
)

#: Education levels, lowest first (vocational is secondary vocational school, 中等职业教育).
EDUCATION_LEVELS: Final = (
    "primary",
    "junior_secondary",
    "senior_secondary",
    "vocational",
    "associate",
    "bachelor",
    "master",
    "doctorate",
)

DEPARTMENT_CODES: Final = (
    "public_security",
    "civil_affairs",
    "education",
    "transport",
    "natural_resources",
    "housing",
    "taxation",
    "market_regulation",
    "healthcare_security",
    "health_commission",
    "courts",
    "procuratorate",
    "credit_center",
    "human_resources",
    "justice",
    "finance",
    "ecology_environment",
    "agriculture",
    "commerce",
    "culture_tourism",
    "emergency_management",
    "veterans_affairs",
    "provident_fund",
    "big_data_bureau",
    "statistics",
)


# --------------------------------------------------------------------------------------------
# The catalogue

_PUBLIC_SECURITY = DepartmentSpec(
    "public_security",
    "浙江省公安厅",
    "Zhejiang Provincial Department of Public Security",
    (
        RecordTypeSpec(
            "household_registration",
            "户籍登记",
            "Household registration (hukou)",
            _R,
            (
                _string("region_code", "GB/T 2260 code of the county-level division of the hukou", pattern=REGION_CODE),
                _date("registered_since", "date the hukou was registered there"),
                _string(
                    "household_type", "家庭户 family or 集体户 collective household", choices=("family", "collective")
                ),
                _string(
                    "relationship_to_head",
                    "relationship to the head of household",
                    required=False,
                    choices=("head", "spouse", "child", "parent", "grandchild", "sibling", "other"),
                ),
                _string(
                    "moved_from_region_code",
                    "region code of the previous registration",
                    required=False,
                    pattern=REGION_CODE,
                ),
            ),
        ),
        RecordTypeSpec(
            "criminal_record",
            "犯罪记录",
            "Criminal record",
            _R,
            (
                _string("offence_category", "category of the offence", choices=OFFENCE_CATEGORIES),
                _string("charge", "the charge as named in the Criminal Law, e.g. 危险驾驶罪", required=False),
                _date("judgment_date", "date the judgment took effect"),
                _string(
                    "sentence",
                    "principal penalty",
                    choices=(
                        "public_surveillance",
                        "criminal_detention",
                        "fixed_term_imprisonment",
                        "life_imprisonment",
                        "death_penalty",
                        "fine_only",
                        "exempted",
                    ),
                ),
                _int(
                    "sentence_months",
                    "length of a fixed-term or detention sentence",
                    minimum=0,
                    maximum=300,
                    required=False,
                ),
                _bool("suspended", "the sentence was suspended (缓刑)", required=False),
                _string("court", "the court that gave judgment"),
            ),
            (RequiredWhen("sentence_months", "sentence", "fixed_term_imprisonment"),),
        ),
        RecordTypeSpec(
            "driving_licence",
            "机动车驾驶证",
            "Motor vehicle driving licence",
            _R,
            (
                _string("licence_class", "highest permitted vehicle class (准驾车型)", choices=LICENCE_CLASSES),
                _date("first_issued", "date the first licence was issued (初次领证日期); scoring cycles count from it"),
                _date("valid_from", "start of the current licence's validity"),
                _date("valid_until", "end of the current licence's validity"),
                _string("status", "licence status", choices=_PERMIT_STATUS),
                _string("issuing_authority", "the traffic police unit that issued it", required=False),
            ),
            (DateOrder("first_issued", "valid_from"), DateOrder("valid_from", "valid_until")),
        ),
        RecordTypeSpec(
            "traffic_accident",
            "道路交通事故",
            "Road traffic accident",
            _R,
            (
                _date("accident_date", "date of the accident"),
                _string("severity", "severity of the accident", choices=("minor", "major", "fatal")),
                _string(
                    "responsibility",
                    "the subject's responsibility as determined by the traffic police",
                    choices=("full", "main", "equal", "secondary", "none"),
                ),
                _string("region_code", "where it happened", required=False, pattern=REGION_CODE),
                _int("deaths", "people killed", minimum=0, maximum=10_000, required=False),
                _int("injuries", "people injured", minimum=0, maximum=10_000, required=False),
            ),
        ),
        RecordTypeSpec(
            "traffic_violation",
            "道路交通安全违法行为",
            "Traffic violation",
            _R,
            (
                _date("violation_date", "date of the violation"),
                _string("kind", "kind of violation", choices=VIOLATION_KINDS),
                _int("points", "penalty points", minimum=0, maximum=12),
                _fen("fine_fen", "fine", required=False),
                _string("region_code", "where it happened", required=False, pattern=REGION_CODE),
            ),
        ),
        RecordTypeSpec(
            "scoring_cycle",
            "记分周期",
            "Driving licence scoring cycle",
            _R,
            (
                _date("cycle_start", "first day of the 12-month cycle (an anniversary of first_issued)"),
                _date("cycle_end", "last day of the cycle"),
                _int(
                    "points_total",
                    "penalty points in the cycle; 12 or more is a 12-point cycle",
                    minimum=0,
                    maximum=999,
                ),
            ),
            (DateOrder("cycle_start", "cycle_end"),),
        ),
    ),
)

_CIVIL_AFFAIRS = DepartmentSpec(
    "civil_affairs",
    "浙江省民政厅",
    "Zhejiang Provincial Department of Civil Affairs",
    (
        RecordTypeSpec(
            "marriage_registration",
            "婚姻登记",
            "Marriage registration",
            _R,
            (
                _string("event", "what was registered", choices=("marriage", "divorce", "remarriage")),
                _date("registered_on", "date of registration"),
                _string("spouse", "the spouse", pattern=SUBJECT_REFERENCE),
                _string("registry", "the marriage registry"),
            ),
        ),
        RecordTypeSpec(
            "subsistence_allowance",
            "最低生活保障",
            "Minimum subsistence allowance (dibao)",
            _R,
            (
                _string("region_code", "where the allowance is paid", pattern=REGION_CODE),
                _fen("monthly_amount_fen", "allowance per month", minimum=1),
                _date("granted_on", "date it was granted"),
                _string("status", "allowance status", choices=("active", "suspended", "ended")),
            ),
        ),
    ),
)

_EDUCATION = DepartmentSpec(
    "education",
    "浙江省教育厅",
    "Zhejiang Provincial Department of Education",
    (
        RecordTypeSpec(
            "education_record",
            "学历记录",
            "Education record",
            _R,
            (
                _string("level", "level of education", choices=EDUCATION_LEVELS),
                _string("institution", "the school or university"),
                _string("major", "field of study", required=False),
                _string(
                    "study_mode",
                    "mode of study",
                    required=False,
                    choices=("full_time", "part_time", "distance", "self_study"),
                ),
                _date("enrolled_on", "date of enrolment", required=False),
                _date("graduated_on", "date the programme ended"),
                _string(
                    "completion",
                    "毕业 graduated, 结业 completed without graduating, 肄业 withdrew",
                    choices=("graduated", "completed", "withdrew"),
                ),
            ),
            (DateOrder("enrolled_on", "graduated_on"),),
        ),
    ),
)

_TRANSPORT = DepartmentSpec(
    "transport",
    "浙江省交通运输厅",
    "Zhejiang Provincial Department of Transport",
    (
        RecordTypeSpec(
            "ride_hailing_driver_permit",
            "网络预约出租汽车驾驶员证",
            "Ride-hailing driver permit",
            _R,
            (
                _string("city_code", "city that issued the permit", pattern=CITY_CODE),
                _date("issued_on", "date of issue"),
                _date("valid_until", "end of validity"),
                _string("status", "permit status", choices=_PERMIT_STATUS),
                _string("case_id", "the approvals case that decided it", required=False),
            ),
            (DateOrder("issued_on", "valid_until"),),
        ),
        RecordTypeSpec(
            "road_transport_qualification",
            "道路运输从业人员从业资格",
            "Road transport worker qualification",
            _R,
            (
                _string(
                    "category",
                    "qualification category",
                    choices=("passenger", "freight", "taxi", "dangerous_goods", "driving_instructor"),
                ),
                _date("issued_on", "date of issue"),
                _date("valid_until", "end of validity"),
                _string("status", "qualification status", choices=_PERMIT_STATUS),
            ),
            (DateOrder("issued_on", "valid_until"),),
        ),
    ),
)

_NATURAL_RESOURCES = DepartmentSpec(
    "natural_resources",
    "浙江省自然资源厅",
    "Zhejiang Provincial Department of Natural Resources (real estate registration)",
    (
        RecordTypeSpec(
            "property_title",
            "不动产权属",
            "Real estate title",
            _RE,
            (
                _string("property_unit", "real estate unit code (不动产单元代码)", pattern=PROPERTY_UNIT),
                _string(
                    "certificate_number",
                    "title certificate number, e.g. 浙(2019)诸暨市不动产权第0012345号",
                    required=False,
                ),
                _string("region_code", "county-level division where the property lies", pattern=REGION_CODE),
                _string(
                    "usage",
                    "registered use",
                    choices=("residential", "commercial", "office", "industrial", "land", "other"),
                ),
                _int("area_cm2", "building (or land) area in square centimetres", minimum=1, maximum=MAX_AREA_CM2),
                _string_list("holders", "every holder of the title, the subject included", pattern=SUBJECT_REFERENCE),
                _string(
                    "ownership",
                    "单独所有 sole, 共同共有 joint, 按份共有 in shares",
                    choices=("sole", "joint", "shares"),
                ),
                _date("acquired_on", "date the title was registered to the holders"),
            ),
        ),
        RecordTypeSpec(
            "property_encumbrance",
            "不动产抵押及查封登记",
            "Real estate mortgage or seizure",
            _RE,
            (
                _string("property_unit", "real estate unit code", pattern=PROPERTY_UNIT),
                _string("kind", "kind of encumbrance", choices=("mortgage", "seizure", "other")),
                _fen("amount_fen", "secured claim of a mortgage", minimum=1, required=False),
                _string("creditor", "the mortgagee, e.g. a bank", required=False),
                _string("court", "the court that ordered a seizure", required=False),
                _date("registered_on", "date of registration"),
                _date("released_on", "date it was released (discharged, lifted)", required=False),
            ),
            (
                DateOrder("registered_on", "released_on"),
                RequiredWhen("amount_fen", "kind", "mortgage"),
                RequiredWhen("creditor", "kind", "mortgage"),
                RequiredWhen("court", "kind", "seizure"),
            ),
        ),
    ),
)

_HOUSING = DepartmentSpec(
    "housing",
    "浙江省住房和城乡建设厅",
    "Zhejiang Provincial Department of Housing and Urban-Rural Development",
    (
        RecordTypeSpec(
            "homes_owned",
            "家庭住房套数",
            "Homes owned by the family in a city",
            _R,
            (
                _string("city_code", "the city", pattern=CITY_CODE),
                _int("count", "homes the family owns in the city", minimum=0, maximum=1000),
            ),
        ),
        RecordTypeSpec(
            "purchase_eligibility",
            "购房资格",
            "Home purchase eligibility",
            _R,
            (
                _string("city_code", "the city whose purchase rules were applied", pattern=CITY_CODE),
                _bool("eligible", "may buy one more home there"),
                _string(
                    "reason",
                    "why",
                    choices=(
                        "no_purchase_restriction",
                        "local_household_under_limit",
                        "local_household_limit_reached",
                        "non_local_social_insurance_met",
                        "non_local_social_insurance_not_met",
                        "other",
                    ),
                ),
                _date("assessed_on", "date of the assessment"),
            ),
        ),
        RecordTypeSpec(
            "sale_contract_filing",
            "房屋买卖合同网签备案",
            "Home sale contract filing",
            _RE,
            (
                _string("property_unit", "real estate unit code", pattern=PROPERTY_UNIT),
                _string("contract_kind", "new or second-hand home", choices=("new_home", "second_hand")),
                _string("role", "the subject's side", choices=("buyer", "seller")),
                _fen("price_fen", "contract price", minimum=1),
                _date("filed_on", "date of filing"),
            ),
        ),
    ),
)

_TAXATION = DepartmentSpec(
    "taxation",
    "国家税务总局浙江省税务局",
    "Zhejiang Provincial Tax Service, State Taxation Administration",
    (
        RecordTypeSpec(
            "transaction_tax",
            "不动产交易税费",
            "Real estate transaction tax",
            _RE,
            (
                _string("property_unit", "real estate unit code", pattern=PROPERTY_UNIT),
                _string(
                    "tax_kind",
                    "契税 deed tax, 增值税 value added tax, 个人所得税 individual income tax",
                    choices=("deed_tax", "value_added", "individual_income"),
                ),
                _fen("base_fen", "taxable base"),
                _int("rate_basis_points", "rate in basis points (1% = 100)", minimum=0, maximum=10_000),
                _fen("amount_fen", "tax amount"),
                _string("status", "payment status", choices=("paid", "due")),
                _date("due_on", "date payment is due", required=False),
                _date("paid_on", "date it was paid", required=False),
            ),
            (RequiredWhen("paid_on", "status", "paid"),),
        ),
        RecordTypeSpec(
            "tax_credit_rating",
            "纳税信用等级",
            "Tax credit rating",
            _E,
            (
                _int("year", "the rated tax year", minimum=2014, maximum=2100),
                _string("rating", "rating, A best, D worst", choices=("A", "B", "M", "C", "D")),
                _date("rated_on", "date of the rating"),
            ),
        ),
    ),
)

_MARKET_REGULATION = DepartmentSpec(
    "market_regulation",
    "浙江省市场监督管理局",
    "Zhejiang Administration for Market Regulation",
    (
        RecordTypeSpec(
            "enterprise_registration",
            "企业登记",
            "Enterprise registration",
            _E,
            (
                _string("registered_name", "registered name"),
                _string(
                    "entity_type",
                    "type of market entity",
                    choices=(
                        "limited_liability_company",
                        "joint_stock_company",
                        "sole_proprietorship",
                        "partnership",
                        "individual_business",
                        "farmers_cooperative",
                        "branch",
                        "foreign_invested",
                    ),
                ),
                _string("legal_representative", "the legal representative", pattern=SUBJECT_REFERENCE),
                _fen("registered_capital_fen", "registered capital"),
                _date("established_on", "date of establishment"),
                _string("status", "registration status", choices=("active", "revoked", "cancelled", "suspended")),
                _string("business_scope", "business scope (经营范围)", multiline=True),
                _string("region_code", "region of the registering office", pattern=REGION_CODE),
            ),
        ),
        RecordTypeSpec(
            "registration_change",
            "变更登记",
            "Registration change",
            _E,
            (
                _date("changed_on", "date the change was registered"),
                _map_list(
                    "changes",
                    "the items changed",
                    (
                        _string(
                            "item",
                            "the registered item",
                            choices=(
                                "name",
                                "legal_representative",
                                "registered_capital",
                                "business_scope",
                                "address",
                                "entity_type",
                                "shareholders",
                            ),
                        ),
                        _string("summary", "what changed, without personal data", required=False, multiline=True),
                    ),
                ),
            ),
        ),
        RecordTypeSpec(
            "abnormal_operation",
            "经营异常名录",
            "Listing in the register of abnormal operations",
            _E,
            (
                _date("listed_on", "date of listing"),
                _string(
                    "reason",
                    "reason for listing",
                    choices=("annual_report_missing", "unreachable_address", "false_disclosure", "other"),
                ),
                _date("removed_on", "date it was removed from the register", required=False),
            ),
            (DateOrder("listed_on", "removed_on"),),
        ),
    ),
)

_HEALTHCARE_SECURITY = DepartmentSpec(
    "healthcare_security",
    "浙江省医疗保障局",
    "Zhejiang Healthcare Security Administration",
    (
        RecordTypeSpec(
            "medical_insurance_enrolment",
            "基本医疗保险参保",
            "Basic medical insurance enrolment",
            _R,
            (
                _string("scheme", "职工 employee or 城乡居民 resident scheme", choices=("employee", "resident")),
                _date("enrolled_since", "date of enrolment"),
                _string("status", "enrolment status", choices=("active", "suspended", "ended")),
                _string("insured_region", "region of the insuring fund", pattern=REGION_CODE),
            ),
        ),
    ),
)

_HEALTH_COMMISSION = DepartmentSpec(
    "health_commission",
    "浙江省卫生健康委员会",
    "Health Commission of Zhejiang Province",
    (
        RecordTypeSpec(
            "medical_credit_default",
            "信用就医违约",
            "Medical credit default (treat first, pay later)",
            _R,
            (
                _string("bill_reference", "the health service's bill id"),
                _string("hospital", "the hospital", required=False),
                _fen("amount_fen", "amount in default", minimum=1),
                _date("defaulted_on", "date of default"),
                _date("repaid_on", "date it was repaid", required=False),
            ),
            (DateOrder("defaulted_on", "repaid_on"),),
        ),
    ),
)

_COURTS = DepartmentSpec(
    "courts",
    "浙江省高级人民法院",
    "Zhejiang High People's Court",
    (
        RecordTypeSpec(
            "civil_judgment",
            "民事判决",
            "Civil judgment",
            _RE,
            (
                _string("case_number", "case number (案号)", pattern=CASE_NUMBER),
                _string("court", "the court"),
                _string(
                    "cause",
                    "cause of action",
                    choices=("contract", "loan", "labour", "property", "tort", "family", "other"),
                ),
                _string("role", "the subject's side", choices=("plaintiff", "defendant", "third_party")),
                _date("judgment_date", "date the judgment took effect"),
                _fen("amount_fen", "amount awarded against or to the subject", required=False),
            ),
        ),
        RecordTypeSpec(
            "enforcement",
            "执行案件（失信被执行人）",
            "Enforcement case (dishonest judgment debtor)",
            _RE,
            (
                _string("case_number", "case number (案号)", pattern=CASE_NUMBER),
                _string("court", "the enforcing court"),
                _date("filed_on", "date the enforcement case was filed"),
                _fen("amount_fen", "amount to be enforced"),
                _string("status", "case status", choices=("ongoing", "concluded", "terminated")),
                _bool("dishonest", "listed as a dishonest judgment debtor (失信被执行人)"),
                _date("listed_on", "date of listing as dishonest", required=False),
            ),
            (RequiredWhen("listed_on", "dishonest", True), DateOrder("filed_on", "listed_on")),
        ),
    ),
)

_PROCURATORATE = DepartmentSpec(
    "procuratorate",
    "浙江省人民检察院",
    "Zhejiang Provincial People's Procuratorate",
    (
        RecordTypeSpec(
            "non_prosecution_decision",
            "不起诉决定",
            "Decision not to prosecute",
            _R,
            (
                _date("decided_on", "date of the decision"),
                _string(
                    "kind",
                    "法定 statutory, 酌定 discretionary, 存疑 insufficient evidence, 附条件 conditional",
                    choices=("statutory", "discretionary", "evidentiary", "conditional"),
                ),
                _string("offence_category", "category of the alleged offence", choices=OFFENCE_CATEGORIES),
            ),
        ),
    ),
)

_CREDIT_CENTER = DepartmentSpec(
    "credit_center",
    "浙江省公共信用信息平台",
    "Zhejiang Public Credit Information Center",
    (
        RecordTypeSpec(
            "city_credit_score",
            "城市信用分",
            "City credit score",
            _R,
            (
                _int("score", "the personal credit score", minimum=350, maximum=950),
                _string("band", "score band", choices=("excellent", "very_good", "good", "fair", "poor")),
                _date("scored_on", "date of scoring"),
                _string("city_code", "the city whose score it is", required=False, pattern=CITY_CODE),
            ),
        ),
        RecordTypeSpec(
            "dishonesty_listing",
            "严重失信主体名单",
            "Listing as a seriously dishonest party",
            _RE,
            (
                _string("listing_department", "the department that listed the subject", choices=DEPARTMENT_CODES),
                _string(
                    "list_kind",
                    "the list",
                    choices=("dishonest_judgment_debtor", "major_tax_violation", "serious_illegal_dishonesty", "other"),
                ),
                _date("listed_on", "date of listing"),
                _date("removed_on", "date of removal (credit repair)", required=False),
            ),
            (DateOrder("listed_on", "removed_on"),),
        ),
    ),
)

_HUMAN_RESOURCES = DepartmentSpec(
    "human_resources",
    "浙江省人力资源和社会保障厅",
    "Zhejiang Provincial Department of Human Resources and Social Security",
    (
        RecordTypeSpec(
            "social_insurance",
            "社会保险参保",
            "Social insurance contributions",
            _R,
            (
                _string("region_code", "where contributions are paid", pattern=REGION_CODE),
                _map_list(
                    "insurances",
                    "each insurance the subject contributes to (medical insurance is healthcare security's)",
                    (
                        _string(
                            "kind",
                            "the insurance",
                            choices=("pension", "unemployment", "work_injury", "maternity"),
                        ),
                        _date("since", "first contribution in this region"),
                        _int("months_contributed", "months of contributions in this region", minimum=0, maximum=1200),
                        _string("status", "contribution status", choices=("active", "suspended", "ended")),
                    ),
                ),
            ),
        ),
    ),
)

_JUSTICE = DepartmentSpec(
    "justice",
    "浙江省司法厅",
    "Zhejiang Provincial Department of Justice",
    (
        RecordTypeSpec(
            "lawyer_licence",
            "律师执业证",
            "Lawyer's practising licence",
            _R,
            (
                _string("law_firm", "the law firm"),
                _string("practice_kind", "kind of practice", choices=("full_time", "part_time", "corporate", "public")),
                _date("licensed_on", "date of licensing"),
                _string("status", "licence status", choices=("active", "suspended", "revoked")),
            ),
        ),
        RecordTypeSpec(
            "notarization",
            "公证",
            "Notarization",
            _RE,
            (
                _string(
                    "kind",
                    "what was notarized",
                    choices=("kinship", "property", "contract", "inheritance", "power_of_attorney", "other"),
                ),
                _date("notarized_on", "date of notarization"),
                _string("notary_office", "the notary office"),
            ),
        ),
    ),
)

_FINANCE = DepartmentSpec(
    "finance",
    "浙江省财政厅",
    "Zhejiang Provincial Department of Finance",
    (
        RecordTypeSpec(
            "subsidy_payment",
            "财政补贴发放",
            "Government subsidy payment (惠民惠农一卡通)",
            _RE,
            (
                _string("programme", "the subsidy programme"),
                _fen("amount_fen", "amount paid", minimum=1),
                _date("paid_on", "date of payment"),
            ),
        ),
    ),
)

_ECOLOGY_ENVIRONMENT = DepartmentSpec(
    "ecology_environment",
    "浙江省生态环境厅",
    "Zhejiang Provincial Department of Ecology and Environment",
    (
        RecordTypeSpec(
            "pollutant_discharge_permit",
            "排污许可",
            "Pollutant discharge permit",
            _E,
            (
                _string(
                    "management_class",
                    "重点 key, 简化 simplified management, or 登记 registration only",
                    choices=("key", "simplified", "registration"),
                ),
                _date("issued_on", "date of issue"),
                _date("valid_until", "end of validity"),
                _string("status", "permit status", choices=_PERMIT_STATUS),
            ),
            (DateOrder("issued_on", "valid_until"),),
        ),
        RecordTypeSpec(
            "environmental_penalty",
            "环境行政处罚",
            "Environmental administrative penalty",
            _E,
            (
                _date("decided_on", "date of the decision"),
                _string("violation", "the violation"),
                _fen("amount_fen", "fine"),
            ),
        ),
    ),
)

_AGRICULTURE = DepartmentSpec(
    "agriculture",
    "浙江省农业农村厅",
    "Zhejiang Provincial Department of Agriculture and Rural Affairs",
    (
        RecordTypeSpec(
            "land_contract_right",
            "农村土地承包经营权",
            "Rural land contract right",
            _R,
            (
                _string("region_code", "county-level division of the land", pattern=REGION_CODE),
                _string(
                    "land_use", "use of the land", choices=("arable", "forest", "grassland", "aquaculture", "other")
                ),
                _int(
                    "area_cm2",
                    "contracted area in square centimetres (1 mu is about 6,666,667)",
                    minimum=1,
                    maximum=MAX_AREA_CM2,
                ),
                _date("contracted_from", "start of the contract"),
                _date("contracted_until", "end of the contract"),
            ),
            (DateOrder("contracted_from", "contracted_until"),),
        ),
    ),
)

_COMMERCE = DepartmentSpec(
    "commerce",
    "浙江省商务厅",
    "Zhejiang Provincial Department of Commerce",
    (
        RecordTypeSpec(
            "foreign_trade_operator_filing",
            "对外贸易经营者备案登记",
            "Foreign trade operator filing",
            _E,
            (
                _date("filed_on", "date of filing"),
                _string("status", "filing status", choices=("active", "cancelled")),
            ),
        ),
    ),
)

_CULTURE_TOURISM = DepartmentSpec(
    "culture_tourism",
    "浙江省文化和旅游厅",
    "Zhejiang Provincial Department of Culture and Tourism",
    (
        RecordTypeSpec(
            "tour_guide_licence",
            "导游证",
            "Tour guide licence",
            _R,
            (
                _string("level", "guide level", choices=("junior", "intermediate", "senior", "special")),
                _string_list("languages", "languages guided in (ISO 639-1)", pattern=r"[a-z]{2}"),
                _date("issued_on", "date of issue"),
                _date("valid_until", "end of validity"),
                _string("status", "licence status", choices=_PERMIT_STATUS),
            ),
            (DateOrder("issued_on", "valid_until"),),
        ),
        RecordTypeSpec(
            "travel_agency_licence",
            "旅行社业务经营许可",
            "Travel agency licence",
            _E,
            (
                _string("business", "licensed business", choices=("domestic_inbound", "outbound")),
                _date("issued_on", "date of issue"),
                _string("status", "licence status", choices=("active", "suspended", "revoked")),
            ),
        ),
    ),
)

_EMERGENCY_MANAGEMENT = DepartmentSpec(
    "emergency_management",
    "浙江省应急管理厅",
    "Zhejiang Provincial Department of Emergency Management",
    (
        RecordTypeSpec(
            "safety_production_licence",
            "安全生产许可证",
            "Work safety licence",
            _E,
            (
                _string(
                    "industry",
                    "licensed industry",
                    choices=("mining", "hazardous_chemicals", "fireworks", "construction", "other"),
                ),
                _date("issued_on", "date of issue"),
                _date("valid_until", "end of validity"),
                _string("status", "licence status", choices=_PERMIT_STATUS),
            ),
            (DateOrder("issued_on", "valid_until"),),
        ),
        RecordTypeSpec(
            "special_operations_certificate",
            "特种作业操作证",
            "Special operations certificate",
            _R,
            (
                _string(
                    "category",
                    "kind of special operation",
                    choices=(
                        "electrician",
                        "welding",
                        "working_at_height",
                        "refrigeration",
                        "hazardous_chemicals",
                        "other",
                    ),
                ),
                _date("issued_on", "date of issue"),
                _date("valid_until", "end of validity"),
            ),
            (DateOrder("issued_on", "valid_until"),),
        ),
    ),
)

_VETERANS_AFFAIRS = DepartmentSpec(
    "veterans_affairs",
    "浙江省退役军人事务厅",
    "Zhejiang Provincial Department of Veterans Affairs",
    (
        RecordTypeSpec(
            "veteran_registration",
            "退役军人信息登记",
            "Veteran registration",
            _R,
            (
                _date("discharged_on", "date of discharge"),
                _string(
                    "placement",
                    "安排工作, 自主就业, 退休 or 供养",
                    choices=("job_arranged", "self_employed", "retired", "supported"),
                ),
                _bool("preferential_treatment", "entitled to preferential treatment (优抚对象)"),
            ),
        ),
    ),
)

_PROVIDENT_FUND = DepartmentSpec(
    "provident_fund",
    "浙江省住房公积金管理中心",
    "Zhejiang Housing Provident Fund Management Center",
    (
        RecordTypeSpec(
            "provident_fund_account",
            "住房公积金账户",
            "Housing provident fund account",
            _R,
            (
                _string("region_code", "where the account is kept", pattern=REGION_CODE),
                _string("status", "正常 active, 封存 sealed, 销户 closed", choices=("active", "sealed", "closed")),
                _date("opened_on", "date the account was opened"),
                _fen("monthly_contribution_fen", "employee and employer contribution per month"),
                _fen("balance_fen", "balance on the record's effective date"),
                _int("months_contributed", "months of contributions", minimum=0, maximum=1200),
            ),
        ),
        RecordTypeSpec(
            "provident_fund_loan",
            "住房公积金贷款",
            "Housing provident fund loan",
            _R,
            (
                _string("property_unit", "the property the loan financed", pattern=PROPERTY_UNIT),
                _fen("amount_fen", "loan amount", minimum=1),
                _date("granted_on", "date the loan was granted"),
                _string("status", "loan status", choices=("repaying", "repaid", "overdue")),
                _date("repaid_on", "date it was repaid in full", required=False),
            ),
            (DateOrder("granted_on", "repaid_on"), RequiredWhen("repaid_on", "status", "repaid")),
        ),
    ),
)

_BIG_DATA_BUREAU = DepartmentSpec(
    "big_data_bureau",
    "浙江省大数据发展管理局",
    "Zhejiang Big Data Development Administration",
    (
        RecordTypeSpec(
            "data_authorisation",
            "数据使用授权",
            "Authorisation to use the subject's data",
            _RE,
            (
                _string("granted_to", "the department authorised", choices=DEPARTMENT_CODES),
                _string_list("record_types", "record type codes the authorisation covers", pattern=CODE),
                _date("granted_on", "date the subject authorised it"),
                _date("expires_on", "date the authorisation ends", required=False),
            ),
            (DateOrder("granted_on", "expires_on"),),
        ),
    ),
)

_STATISTICS = DepartmentSpec(
    "statistics",
    "浙江省统计局",
    "Zhejiang Provincial Bureau of Statistics",
    (
        RecordTypeSpec(
            "basic_unit_registration",
            "基本单位名录",
            "Register of statistical basic units",
            _E,
            (
                _string("industry_code", "GB/T 4754 industry code, e.g. I6510", pattern=r"[A-T][0-9]{2,4}"),
                _string("size_class", "enterprise size", choices=("large", "medium", "small", "micro")),
                _int("employees", "people employed", minimum=0, maximum=10_000_000, required=False),
                _date("registered_on", "date the unit entered the register"),
            ),
        ),
    ),
)

#: The province's data-owning departments, in the order of DEPARTMENT_CODES.
DEPARTMENTS: Final[tuple[DepartmentSpec, ...]] = (
    _PUBLIC_SECURITY,
    _CIVIL_AFFAIRS,
    _EDUCATION,
    _TRANSPORT,
    _NATURAL_RESOURCES,
    _HOUSING,
    _TAXATION,
    _MARKET_REGULATION,
    _HEALTHCARE_SECURITY,
    _HEALTH_COMMISSION,
    _COURTS,
    _PROCURATORATE,
    _CREDIT_CENTER,
    _HUMAN_RESOURCES,
    _JUSTICE,
    _FINANCE,
    _ECOLOGY_ENVIRONMENT,
    _AGRICULTURE,
    _COMMERCE,
    _CULTURE_TOURISM,
    _EMERGENCY_MANAGEMENT,
    _VETERANS_AFFAIRS,
    _PROVIDENT_FUND,
    _BIG_DATA_BUREAU,
    _STATISTICS,
)

_BY_CODE: Final[Mapping[str, DepartmentSpec]] = {d.code: d for d in DEPARTMENTS}
_RECORD_TYPES: Final[Mapping[tuple[str, str], RecordTypeSpec]] = {
    (d.code, r.code): r for d in DEPARTMENTS for r in d.record_types
}


def department(code: str) -> DepartmentSpec | None:
    """The department with this code, or None."""
    return _BY_CODE.get(code)


def record_type(department_code: str, record_type_code: str) -> RecordTypeSpec | None:
    """The record type a department publishes, or None when the department does not publish it."""
    return _RECORD_TYPES.get((department_code, record_type_code))


# --------------------------------------------------------------------------------------------
# Validation


def validate_fields(spec: RecordTypeSpec, fields: Mapping[str, Value]) -> list[FieldProblem]:
    """Every problem with a record's fields, in field order; empty when the record is valid.

    Finds missing required fields, unknown field names, values of the wrong type, strings not
    among the choices or not in the required format, integers out of range, problems inside
    list items and nested maps (named by their path, e.g. ``insurances[1].status``), broken
    cross-field rules and raw identifiers in any string. Messages never repeat a string value
    (it may be free text or an identifier) or an out-of-range integer.
    """
    problems: list[FieldProblem] = []
    if not isinstance(fields, Mapping):
        return [FieldProblem("fields", "fields: must be a map of field names to values")]
    _check_group(spec.fields, fields, "", spec.code, problems)
    for rule in spec.rules:
        _check_rule(rule, fields, problems)
    return problems


def _check_group(
    specs: tuple[FieldSpec, ...], values: Mapping[Any, object], prefix: str, owner: str, problems: list[FieldProblem]
) -> None:
    known = {s.name for s in specs}
    for s in specs:
        path = prefix + s.name
        if s.name not in values:
            if s.required:
                problems.append(FieldProblem(path, f"{path}: is required ({s.description})"))
            continue
        _check_value(s, values[s.name], path, problems)
    for key in values:
        if key in known:
            continue
        if isinstance(key, str) and _NAME_RE.fullmatch(key):
            path = prefix + key
            names = ", ".join(s.name for s in specs)
            problems.append(FieldProblem(path, f"{path}: is not a field of {owner}; its fields are: {names}"))
        else:
            # The key itself may be free text or an identifier: it is not repeated.
            path = prefix + "<invalid name>"
            problems.append(
                FieldProblem(path, f"{path}: a field name must be lower_snake_case ASCII (the name is not shown)")
            )


def _check_value(s: FieldSpec, value: object, path: str, problems: list[FieldProblem]) -> None:
    kind = s.type
    if kind is FieldType.STRING:
        _check_string(s, value, path, problems)
    elif kind is FieldType.INT:
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(_wrong_type(path, "an integer", value))
        elif not _INT64_MIN <= value <= _INT64_MAX:
            problems.append(FieldProblem(path, f"{path}: does not fit in a 64-bit integer"))
        elif s.minimum is not None and value < s.minimum:
            problems.append(FieldProblem(path, f"{path}: must be at least {s.minimum}"))
        elif s.maximum is not None and value > s.maximum:
            problems.append(FieldProblem(path, f"{path}: must be at most {s.maximum}"))
    elif kind is FieldType.BOOL:
        if not isinstance(value, bool):
            problems.append(_wrong_type(path, "a boolean", value))
    elif kind is FieldType.DATE:
        if not isinstance(value, datetime.date) or isinstance(value, datetime.datetime):
            problems.append(_wrong_type(path, "a calendar date", value))
    elif kind is FieldType.TIME:
        if not isinstance(value, datetime.datetime):
            problems.append(_wrong_type(path, "a timestamp", value))
        elif value.utcoffset() is None:
            # A naive datetime names no instant: Asia/Shanghai or UTC would differ by 8 hours.
            problems.append(FieldProblem(path, f"{path}: must be a timestamp with a time zone (naive given)"))
    elif kind is FieldType.LIST:
        _check_list(s, value, path, problems)
    elif kind is FieldType.MAP:
        if not isinstance(value, dict):
            problems.append(_wrong_type(path, "a map", value))
        else:
            _check_group(s.item_fields, value, path + ".", s.name, problems)


def _check_string(s: FieldSpec, value: object, path: str, problems: list[FieldProblem]) -> None:
    if not isinstance(value, str):
        problems.append(_wrong_type(path, "a string", value))
        return
    control = control_problem(value, multiline=s.multiline)
    if control:
        problems.append(FieldProblem(path, f"{path}: {control}"))
        return
    if contains_raw_identifier(value):
        problems.append(
            FieldProblem(
                path,
                f"{path}: must not contain raw identifiers (a resident ID number or a unified social credit "
                "code); use a pseudonymous subject id or a masked identifier",
            )
        )
        return
    if len(value) > MAX_STRING_LENGTH:
        problems.append(
            FieldProblem(path, f"{path}: is {len(value)} characters long; at most {MAX_STRING_LENGTH} are accepted")
        )
        return
    if s.required and not value.strip():
        problems.append(FieldProblem(path, f"{path}: must not be empty"))
        return
    if s.choices and value not in s.choices:
        problems.append(FieldProblem(path, f"{path}: {_shown(value)} is not one of: {', '.join(s.choices)}"))
    elif s.pattern and not re.fullmatch(s.pattern, value):
        problems.append(FieldProblem(path, f"{path}: is not in the format of {s.description}"))


def _check_list(s: FieldSpec, value: object, path: str, problems: list[FieldProblem]) -> None:
    if not isinstance(value, list):
        problems.append(_wrong_type(path, "a list", value))
        return
    if len(value) > MAX_LIST_ITEMS:
        problems.append(FieldProblem(path, f"{path}: has {len(value)} items; at most {MAX_LIST_ITEMS} are accepted"))
        return
    if s.required and not value:
        problems.append(FieldProblem(path, f"{path}: must not be empty"))
        return
    item_type = s.item_type or (FieldType.MAP if s.item_fields else FieldType.STRING)
    item_spec = FieldSpec(
        s.name,
        item_type,
        True,
        s.description,
        choices=s.choices,
        minimum=s.minimum,
        maximum=s.maximum,
        item_fields=s.item_fields,
        pattern=s.pattern,
        multiline=s.multiline,
    )
    for index, item in enumerate(value):
        _check_value(item_spec, item, f"{path}[{index}]", problems)


def _check_rule(rule: FieldRule, fields: Mapping[str, Value], problems: list[FieldProblem]) -> None:
    if isinstance(rule, DateOrder):
        earlier, later = _as_date(fields.get(rule.earlier)), _as_date(fields.get(rule.later))
        if earlier is not None and later is not None and later < earlier:
            problems.append(FieldProblem(rule.later, f"{rule.later}: must not be before {rule.earlier}"))
    else:
        when = fields.get(rule.when_field)
        # type() and not ==: True == 1, and "1" must not satisfy a rule about True.
        if type(when) is type(rule.equals) and when == rule.equals and rule.field not in fields:
            shown = str(rule.equals).lower() if isinstance(rule.equals, bool) else rule.equals
            problems.append(FieldProblem(rule.field, f"{rule.field}: is required when {rule.when_field} is {shown}"))


def _as_date(value: object) -> datetime.date | None:
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        return value
    return None


def _shown(value: str) -> str:
    """A string value quoted for a message, or a placeholder when it might be free text."""
    if len(value) <= 32 and re.fullmatch(r"[A-Za-z0-9_\-]*", value):
        return repr(value)
    return "the value"


_TYPE_NAMES: Final = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a floating-point number (not accepted: use integer units such as fen)"),
    (str, "a string"),
    (datetime.datetime, "a timestamp"),
    (datetime.date, "a calendar date"),
    (list, "a list"),
    (tuple, "a tuple"),
    (dict, "a map"),
)


def _wrong_type(path: str, expected: str, value: object) -> FieldProblem:
    got = "null" if value is None else next((n for t, n in _TYPE_NAMES if isinstance(value, t)), type(value).__name__)
    return FieldProblem(path, f"{path}: must be {expected}, got {got}")
