"""Proof types and how their claims are derived from department records (pure domain logic).

A proof is a signed statement about one subject drawn from one department's records, e.g. "no
criminal record as of 2019-07-09" or "holds a C1 licence first issued on 2012-03-15". This module
says which proof types exist, which parameters they take, which records they read and what they
claim; signing, storage and the audit trail live elsewhere. Standard library only, no I/O.

Decisions a reader should know are in docs/decisions/: which records a proof reads
(records-proofs-read-records-in-force.md), the claims' stable shape
(records-proof-claims-stable-shape.md), periods in years (records-periods-in-years.md) and the
ride-hailing rules of traffic_safety (records-traffic-safety-rules.md).
"""

from __future__ import annotations

import datetime
import enum
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from govmesh.clock import as_utc
from govmesh.parameters import ParameterError, resolve
from services.records.domain.catalogue import (
    CITY_CODE,
    EDUCATION_LEVELS,
    PROPERTY_UNIT,
    SubjectKind,
    Value,
)

__all__ = [
    "PROOF_TYPES",
    "SERIOUS_VIOLATION_KINDS",
    "ParameterError",
    "ParameterKind",
    "ProofParameterSpec",
    "ProofTypeSpec",
    "StoredRecord",
    "add_years",
    "derive_claims",
    "full_years",
    "proof_type",
    "resolve_parameters",
]

#: Longest parameter value accepted, in code points.
MAX_PARAMETER_LENGTH: Final = 64

#: Violations that disqualify a driver under the ride-hailing rules (records-traffic-safety-rules.md).
SERIOUS_VIOLATION_KINDS: Final = frozenset(
    {"drink_driving", "drunk_driving", "drug_driving", "dangerous_driving", "hit_and_run"}
)
#: A points total at or above this makes a 12-point cycle (记满12分).
TWELVE_POINTS: Final = 12

_MAJOR_SEVERITIES: Final = frozenset({"major", "fatal"})
_RESPONSIBLE: Final = frozenset({"full", "main", "equal"})
# Secondary vocational school (中职) is senior secondary level education.
_EDUCATION_RANK: Final[Mapping[str, int]] = {
    level: rank for rank, level in enumerate(EDUCATION_LEVELS) if level != "vocational"
} | {"vocational": EDUCATION_LEVELS.index("senior_secondary")}

_R: Final = frozenset({SubjectKind.RESIDENT})
_E: Final = frozenset({SubjectKind.ENTERPRISE})
_RE: Final = frozenset({SubjectKind.RESIDENT, SubjectKind.ENTERPRISE})
_NAME_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True)
class StoredRecord:
    """A department record as the store holds it (the subject is implied: all are one subject's)."""

    record_id: str
    department_code: str
    record_type: str
    source_reference: str
    fields: Mapping[str, Value]
    effective_from: datetime.date
    #: Inclusive; None when open-ended.
    effective_to: datetime.date | None
    recorded_at: datetime.datetime
    #: A later correction supersedes it; proofs ignore it.
    superseded: bool


# --------------------------------------------------------------------------------------------
# Parameters


class ParameterKind(enum.Enum):
    #: A whole number within ``minimum`` .. ``maximum``; normalized without leading zeros.
    INT = "int"
    #: A 28-character real estate unit code; normalized to upper case.
    PROPERTY_UNIT = "property_unit"
    #: A 6-digit prefecture-level region code, e.g. 330100.
    CITY_CODE = "city_code"


@dataclass(frozen=True)
class ProofParameterSpec:
    name: str
    description_zh: str
    description_en: str
    required: bool
    #: The value used when the parameter is not given; "" when there is none.
    default: str
    kind: ParameterKind
    minimum: int | None = None
    maximum: int | None = None

    def parse(self, raw: str) -> str:
        """The normalized value of ``raw``; ParameterError when it is not a valid value."""
        value = raw.strip()
        if len(value) > MAX_PARAMETER_LENGTH:
            raise ParameterError(self.name, f"is longer than {MAX_PARAMETER_LENGTH} characters")
        if self.kind is ParameterKind.INT:
            # ASCII digits only: int() would also take "+3", "1_0" and full-width or Arabic digits.
            low, high = self.minimum, self.maximum
            span = f" from {low} to {high}" if low is not None and high is not None else ""
            if not re.fullmatch(r"[0-9]{1,9}", value):
                raise ParameterError(self.name, f"must be a whole number{span}")
            number = int(value)
            if (low is not None and number < low) or (high is not None and number > high):
                raise ParameterError(self.name, f"must be a whole number{span}")
            return str(number)
        if self.kind is ParameterKind.PROPERTY_UNIT:
            value = value.upper()
            if not re.fullmatch(PROPERTY_UNIT, value):
                raise ParameterError(
                    self.name,
                    "must be a 28-character real estate unit code (不动产单元代码), e.g. 330681001001GB00012F00010101",
                )
            return value
        if not re.fullmatch(CITY_CODE, value):
            raise ParameterError(self.name, "must be the 6-digit region code of a city (prefecture level), e.g. 330100")
        return value


def _years_parameter(default: int) -> ProofParameterSpec:
    return ProofParameterSpec(
        "years",
        "回溯年数（截至出具之日）",
        "how many years to look back from the issue date",
        False,
        str(default),
        ParameterKind.INT,
        1,
        20,
    )


def _cycles_parameter(default: int) -> ProofParameterSpec:
    return ProofParameterSpec(
        "cycles",
        "回溯的记分周期数（含当前周期）",
        "how many scoring cycles to look back, the current one included",
        False,
        str(default),
        ParameterKind.INT,
        1,
        10,
    )


def _property_unit_parameter(*, required: bool) -> ProofParameterSpec:
    return ProofParameterSpec(
        "property_unit",
        "不动产单元代码" + ("" if required else "（不填则列出全部）"),
        "real estate unit code" + ("" if required else " (all titles when not given)"),
        required,
        "",
        ParameterKind.PROPERTY_UNIT,
    )


_CITY_PARAMETER: Final = ProofParameterSpec(
    "city",
    "城市行政区划代码（地级），如 330100 杭州市",
    "prefecture-level region code of the city, e.g. 330100 for Hangzhou",
    True,
    "",
    ParameterKind.CITY_CODE,
)


# --------------------------------------------------------------------------------------------
# Proof types


@dataclass(frozen=True)
class ProofTypeSpec:
    code: str
    name_zh: str
    name_en: str
    description: str
    #: Departments whose records the proof reads.
    department_codes: tuple[str, ...]
    #: The department on whose behalf the platform signs: the owner of the source records.
    issuing_department_code: str
    subject_kinds: frozenset[SubjectKind]
    parameters: tuple[ProofParameterSpec, ...]
    #: How long an issued proof stays valid.
    validity: datetime.timedelta
    #: Every claim a proof of this type carries, in this order.
    claim_names: tuple[str, ...]
    #: (department_code, record_type) pairs the proof reads.
    source_record_types: tuple[tuple[str, str], ...]


def _days(n: int) -> datetime.timedelta:
    return datetime.timedelta(days=n)


PROOF_TYPES: Final[tuple[ProofTypeSpec, ...]] = (
    ProofTypeSpec(
        code="education_level",
        name_zh="学历证明",
        name_en="Education level",
        description=(
            "The highest level of education the subject graduated at (毕业; completing without graduating "
            "does not count) and the graduation date. has_record is false when there is none."
        ),
        department_codes=("education",),
        issuing_department_code="education",
        subject_kinds=_R,
        parameters=(),
        validity=_days(180),
        claim_names=("as_of", "has_record", "highest_level", "graduated_on"),
        source_record_types=(("education", "education_record"),),
    ),
    ProofTypeSpec(
        code="driving_licence",
        name_zh="机动车驾驶证信息证明",
        name_en="Driving licence",
        description=(
            "The subject's driving licence: class, first issue date, validity, status and full years held since "
            "first issue. held is true only for a valid licence (not suspended, revoked or expired); a licence "
            "past its valid_until date is reported expired."
        ),
        department_codes=("public_security",),
        issuing_department_code="public_security",
        subject_kinds=_R,
        parameters=(),
        validity=_days(30),
        claim_names=("as_of", "held", "licence_class", "first_issued", "valid_until", "status", "years_held"),
        source_record_types=(("public_security", "driving_licence"),),
    ),
    ProofTypeSpec(
        code="traffic_safety",
        name_zh="无重大交通事故及严重交通违法证明",
        name_en="Traffic safety record",
        description=(
            "Major traffic accidents (major or fatal, equal or greater responsibility) and serious traffic "
            "violations (drink, drunk, drug or dangerous driving, hit-and-run) from window_start to as_of "
            "(the last `years` years), and the 12-point scoring cycles among the last `cycles` cycles "
            "(the current one included, from cycles_window_start)."
        ),
        department_codes=("public_security",),
        issuing_department_code="public_security",
        subject_kinds=_R,
        parameters=(_years_parameter(3), _cycles_parameter(3)),
        validity=_days(30),
        claim_names=(
            "as_of",
            "window_start",
            "major_or_fatal_accidents",
            "serious_violations",
            "serious_violation_kinds",
            "cycles_window_start",
            "twelve_point_cycles",
        ),
        source_record_types=(
            ("public_security", "traffic_accident"),
            ("public_security", "traffic_violation"),
            ("public_security", "scoring_cycle"),
            ("public_security", "driving_licence"),
        ),
    ),
    ProofTypeSpec(
        code="criminal_record",
        name_zh="无犯罪记录证明",
        name_en="Criminal record",
        description=(
            "Whether the subject has a criminal record, and the categories of the offences only (no details). "
            "has_record false is the no-criminal-record certificate. Sealed records are not disclosed."
        ),
        department_codes=("public_security",),
        issuing_department_code="public_security",
        subject_kinds=_R,
        parameters=(),
        validity=_days(90),
        claim_names=("as_of", "has_record", "categories"),
        source_record_types=(("public_security", "criminal_record"),),
    ),
    ProofTypeSpec(
        code="property_title",
        name_zh="不动产权属证明",
        name_en="Property title",
        description=(
            "The real estate titles the subject holds (or the one named by property_unit): unit code, region, "
            "city (prefecture-level code), area in square centimetres, date acquired and whether the subject "
            "is the sole holder."
        ),
        department_codes=("natural_resources",),
        issuing_department_code="natural_resources",
        subject_kinds=_RE,
        parameters=(_property_unit_parameter(required=False),),
        validity=_days(30),
        claim_names=("as_of", "holds_title", "titles"),
        source_record_types=(("natural_resources", "property_title"),),
    ),
    ProofTypeSpec(
        code="property_encumbrances",
        name_zh="不动产抵押及查封证明",
        name_en="Property encumbrances",
        description=(
            "The mortgages, seizures and other encumbrances registered and not released on one property on "
            "as_of (a release dated as_of counts as released)."
        ),
        department_codes=("natural_resources",),
        issuing_department_code="natural_resources",
        subject_kinds=_RE,
        parameters=(_property_unit_parameter(required=True),),
        validity=_days(7),
        claim_names=("as_of", "property_unit", "mortgage_outstanding", "seizure", "encumbrances"),
        source_record_types=(("natural_resources", "property_encumbrance"),),
    ),
    ProofTypeSpec(
        code="transaction_tax_paid",
        name_zh="不动产交易完税证明",
        name_en="Transaction tax paid",
        description=(
            "The deed tax the subject owes on one property transaction: base, rate, amount and whether and "
            "when it was paid."
        ),
        department_codes=("taxation",),
        issuing_department_code="taxation",
        subject_kinds=_RE,
        parameters=(_property_unit_parameter(required=True),),
        validity=_days(90),
        claim_names=(
            "as_of",
            "property_unit",
            "has_record",
            "deed_tax_base_fen",
            "deed_tax_rate_basis_points",
            "deed_tax_amount_fen",
            "deed_tax_paid",
            "deed_tax_paid_on",
        ),
        source_record_types=(("taxation", "transaction_tax"),),
    ),
    ProofTypeSpec(
        code="household_registration",
        name_zh="户籍证明",
        name_en="Household registration",
        description=(
            "Where the subject's hukou is registered: the county-level region code and its city "
            "(prefecture-level code), since when, and the household type."
        ),
        department_codes=("public_security",),
        issuing_department_code="public_security",
        subject_kinds=_R,
        parameters=(),
        validity=_days(90),
        claim_names=("as_of", "has_record", "region_code", "city_code", "registered_since", "household_type"),
        source_record_types=(("public_security", "household_registration"),),
    ),
    ProofTypeSpec(
        code="medical_insurance_enrolment",
        name_zh="基本医疗保险参保证明",
        name_en="Medical insurance enrolment",
        description=(
            "Whether the subject is enrolled in basic medical insurance (enrolled: status active), the "
            "scheme (employee or resident), the status and the enrolment date."
        ),
        department_codes=("healthcare_security",),
        issuing_department_code="healthcare_security",
        subject_kinds=_R,
        parameters=(),
        validity=_days(30),
        claim_names=("as_of", "enrolled", "scheme", "status", "since"),
        source_record_types=(("healthcare_security", "medical_insurance_enrolment"),),
    ),
    ProofTypeSpec(
        code="city_credit_score",
        name_zh="城市信用分证明",
        name_en="City credit score",
        description=(
            "The subject's latest city credit score (350-950), its band and scoring date; has_score is false "
            "when there is none."
        ),
        department_codes=("credit_center",),
        issuing_department_code="credit_center",
        subject_kinds=_R,
        parameters=(),
        validity=_days(30),
        claim_names=("as_of", "has_score", "score", "band", "scored_on"),
        source_record_types=(("credit_center", "city_credit_score"),),
    ),
    ProofTypeSpec(
        code="enterprise_registration",
        name_zh="企业登记信息证明",
        name_en="Enterprise registration",
        description=(
            "An enterprise's registration: registered name, entity type, status, date of establishment and "
            "registered capital in fen."
        ),
        department_codes=("market_regulation",),
        issuing_department_code="market_regulation",
        subject_kinds=_E,
        parameters=(),
        validity=_days(30),
        claim_names=(
            "as_of",
            "has_record",
            "registered_name",
            "entity_type",
            "status",
            "established_on",
            "registered_capital_fen",
        ),
        source_record_types=(("market_regulation", "enterprise_registration"),),
    ),
    ProofTypeSpec(
        code="housing_purchase_eligibility",
        name_zh="购房资格证明",
        name_en="Housing purchase eligibility",
        description=(
            "For one city: the homes the subject's family owns there (has_homes_record false when housing "
            "holds no count) and housing's latest assessment under the local purchase rules (assessed, "
            "eligible, reason, assessed_on)."
        ),
        department_codes=("housing",),
        issuing_department_code="housing",
        subject_kinds=_R,
        parameters=(_CITY_PARAMETER,),
        validity=_days(30),
        claim_names=(
            "as_of",
            "city_code",
            "has_homes_record",
            "homes_owned",
            "assessed",
            "eligible",
            "reason",
            "assessed_on",
        ),
        source_record_types=(("housing", "homes_owned"), ("housing", "purchase_eligibility")),
    ),
)

_PROOF_TYPES_BY_CODE: Final[Mapping[str, ProofTypeSpec]] = {p.code: p for p in PROOF_TYPES}


def proof_type(code: str) -> ProofTypeSpec | None:
    """The proof type with this code, or None."""
    return _PROOF_TYPES_BY_CODE.get(code)


def resolve_parameters(spec: ProofTypeSpec, given: Mapping[str, str]) -> dict[str, str]:
    """The normalized parameters of a proof request: defaults applied, every value checked.

    An empty or blank value counts as not given (proto3 cannot tell them apart). Optional
    parameters without a default are left out when not given. The result is what the proof is
    issued and signed with; resolving it again gives the same result.
    """
    return resolve(spec.code, spec.parameters, given, missing_names_owner=True)


# --------------------------------------------------------------------------------------------
# Deriving claims


def derive_claims(
    spec: ProofTypeSpec,
    records: Sequence[StoredRecord],
    parameters: Mapping[str, str],
    as_of: datetime.date,
) -> dict[str, Value]:
    """The claims of a proof of type ``spec`` about the subject whose records are ``records``.

    ``records`` are all the subject's records of ``spec.source_record_types`` (others are
    ignored); ``parameters`` are checked again with :func:`resolve_parameters`; ``as_of`` is the
    issue date in Asia/Shanghai. The result has exactly ``spec.claim_names``, in that order.
    """
    if isinstance(as_of, datetime.datetime) or not isinstance(as_of, datetime.date):
        raise TypeError("as_of must be a datetime.date (the issue date in Asia/Shanghai)")
    derive = _DERIVATIONS.get(spec.code)
    if derive is None:
        raise ValueError(f"proof type {spec.code!r} has no derivation")
    resolved = resolve_parameters(spec, parameters)
    sources = set(spec.source_record_types)
    in_force = [r for r in records if (r.department_code, r.record_type) in sources and _in_force(r, as_of)]
    claims = derive(_Sources(in_force), resolved, as_of)
    claims["as_of"] = as_of
    if set(claims) != set(spec.claim_names):  # a bug in this module, never bad input
        raise RuntimeError(f"{spec.code}: derived claims {sorted(claims)} differ from {list(spec.claim_names)}")
    return {name: claims[name] for name in spec.claim_names}


def add_years(day: datetime.date, years: int) -> datetime.date:
    """``day`` moved by whole years; 29 February becomes 28 February in a common year (Civil Code
    art. 201: without a corresponding day, the period ends on the last day of the month)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def full_years(start: datetime.date, end: datetime.date) -> int:
    """Whole years from ``start`` to ``end`` (0 when ``end`` is before the first anniversary)."""
    years = end.year - start.year
    if years > 0 and add_years(start, years) > end:
        years -= 1
    return max(years, 0)


def _in_force(record: StoredRecord, as_of: datetime.date) -> bool:
    if record.superseded or record.effective_from > as_of:
        return False
    return record.effective_to is None or record.effective_to >= as_of


class _Sources:
    """The in-force records of one subject by record type, latest first."""

    def __init__(self, records: Sequence[StoredRecord]) -> None:
        grouped: defaultdict[str, list[StoredRecord]] = defaultdict(list)
        for record in records:
            grouped[record.record_type].append(record)
        self._by_type = {
            code: sorted(items, key=lambda r: (r.effective_from, as_utc(r.recorded_at), r.record_id), reverse=True)
            for code, items in grouped.items()
        }

    def of(self, record_type: str) -> list[StoredRecord]:
        return self._by_type.get(record_type, [])


# Typed reads of record fields. Stored records were validated on the way in, but the catalogue
# may have changed since: a value of an unexpected type reads as absent instead of failing.


def _text(fields: Mapping[str, Value], name: str) -> str:
    value = fields.get(name)
    return value if isinstance(value, str) else ""


def _int(fields: Mapping[str, Value], name: str) -> int | None:
    value = fields.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _flag(fields: Mapping[str, Value], name: str) -> bool | None:
    value = fields.get(name)
    return value if isinstance(value, bool) else None


def _date(fields: Mapping[str, Value], name: str) -> datetime.date | None:
    value = fields.get(name)
    if isinstance(value, datetime.datetime):
        return None
    return value if isinstance(value, datetime.date) else None


def _on_or_before(fields: Mapping[str, Value], name: str, as_of: datetime.date) -> datetime.date | None:
    """The date field ``name`` when it is present and not after ``as_of``."""
    day = _date(fields, name)
    return day if day is not None and day <= as_of else None


def _date_or_empty(day: datetime.date | None) -> Value:
    return day if day is not None else ""


_Derivation = Callable[[_Sources, Mapping[str, str], datetime.date], dict[str, Value]]


def _education_level(src: _Sources, params: Mapping[str, str], as_of: datetime.date) -> dict[str, Value]:
    best: tuple[int, datetime.date, str] | None = None
    for record in src.of("education_record"):
        level = _text(record.fields, "level")
        graduated = _on_or_before(record.fields, "graduated_on", as_of)
        if level not in _EDUCATION_RANK or graduated is None or _text(record.fields, "completion") != "graduated":
            continue
        # Highest rank first; between senior secondary and vocational, the later graduation.
        candidate = (_EDUCATION_RANK[level], graduated, level)
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    return {
        "has_record": best is not None,
        "highest_level": best[2] if best else "",
        "graduated_on": best[1] if best else "",
    }


def _driving_licence(src: _Sources, params: Mapping[str, str], as_of: datetime.date) -> dict[str, Value]:
    found = next(
        ((r, d) for r in src.of("driving_licence") if (d := _on_or_before(r.fields, "first_issued", as_of))), None
    )
    if found is None:
        return {
            "held": False,
            "licence_class": "",
            "first_issued": "",
            "valid_until": "",
            "status": "",
            "years_held": 0,
        }
    licence, first_issued = found
    valid_until = _date(licence.fields, "valid_until")
    status = _text(licence.fields, "status")
    if status == "valid" and (valid_until is None or valid_until < as_of):
        # The department's status lags: a licence past its validity is expired on as_of.
        status = "expired"
    return {
        "held": status == "valid",
        "licence_class": _text(licence.fields, "licence_class"),
        "first_issued": first_issued,
        "valid_until": _date_or_empty(valid_until),
        "status": status,
        "years_held": full_years(first_issued, as_of),
    }


def _traffic_safety(src: _Sources, params: Mapping[str, str], as_of: datetime.date) -> dict[str, Value]:
    years, cycles = int(params["years"]), int(params["cycles"])
    window_start = add_years(as_of, -years) + datetime.timedelta(days=1)

    accidents = 0
    for record in src.of("traffic_accident"):
        day = _date(record.fields, "accident_date")
        if (
            day is not None
            and window_start <= day <= as_of
            and _text(record.fields, "severity") in _MAJOR_SEVERITIES
            and _text(record.fields, "responsibility") in _RESPONSIBLE
        ):
            accidents += 1

    serious = 0
    kinds: set[str] = set()
    for record in src.of("traffic_violation"):
        day = _date(record.fields, "violation_date")
        kind = _text(record.fields, "kind")
        if day is not None and window_start <= day <= as_of and kind in SERIOUS_VIOLATION_KINDS:
            serious += 1
            kinds.add(kind)

    cycle_records = [
        (start, _date(r.fields, "cycle_end") or start, _int(r.fields, "points_total") or 0)
        for r in src.of("scoring_cycle")
        if (start := _on_or_before(r.fields, "cycle_start", as_of)) is not None
    ]
    cycles_start = _cycles_window_start(src, cycle_records, cycles, as_of)
    twelve = sum(1 for start, end, points in cycle_records if points >= TWELVE_POINTS and end >= cycles_start)

    kind_values: list[Value] = [kind for kind in sorted(kinds)]
    return {
        "window_start": window_start,
        "major_or_fatal_accidents": accidents,
        "serious_violations": serious,
        "serious_violation_kinds": kind_values,
        "cycles_window_start": cycles_start,
        "twelve_point_cycles": twelve,
    }


def _cycles_window_start(
    src: _Sources,
    cycle_records: list[tuple[datetime.date, datetime.date, int]],
    cycles: int,
    as_of: datetime.date,
) -> datetime.date:
    """First day of the oldest of the last ``cycles`` scoring cycles (the current one included).

    Cycles run 12 months from anniversaries of the licence's first issue date. Without a licence
    record, the latest cycle record's start stands in for the anchor; without either there are
    no cycles to count and the window is simply the last ``cycles`` years.
    """
    anchor = next(
        (d for r in src.of("driving_licence") if (d := _on_or_before(r.fields, "first_issued", as_of)) is not None),
        None,
    )
    first_issue = anchor is not None
    if anchor is None and cycle_records:
        anchor = max(start for start, _, _ in cycle_records)
    if anchor is None:
        return add_years(as_of, -cycles) + datetime.timedelta(days=1)
    current = full_years(anchor, as_of)  # cycles from the anchor to the one running on as_of
    oldest = current - (cycles - 1)
    if first_issue:
        oldest = max(oldest, 0)  # there are no cycles before the first licence
    # Each anniversary is computed from the anchor itself, so 29 February does not drift.
    return add_years(anchor, oldest)


def _criminal_record(src: _Sources, params: Mapping[str, str], as_of: datetime.date) -> dict[str, Value]:
    # A judgment that takes effect after as_of is not yet a record on as_of.
    records = [r for r in src.of("criminal_record") if (_date(r.fields, "judgment_date") or as_of) <= as_of]
    categories: list[Value] = [c for c in sorted({_text(r.fields, "offence_category") for r in records}) if c]
    return {"has_record": bool(records), "categories": categories}


def _property_title(src: _Sources, params: Mapping[str, str], as_of: datetime.date) -> dict[str, Value]:
    wanted = params.get("property_unit", "")
    titles: dict[str, dict[str, Value]] = {}
    for record in src.of("property_title"):  # latest first: the first record of a unit wins
        unit = _text(record.fields, "property_unit")
        acquired = _on_or_before(record.fields, "acquired_on", as_of)
        if not unit or (wanted and unit != wanted) or unit in titles or acquired is None:
            continue
        holders = record.fields.get("holders")
        region = _text(record.fields, "region_code")
        titles[unit] = {
            "property_unit": unit,
            "region_code": region,
            # The prefecture-level city the unit lies in, whose purchase rules apply to it.
            "city_code": region[:4] + "00" if len(region) == 6 else "",
            "area_cm2": _int(record.fields, "area_cm2") or 0,
            "acquired_on": acquired,
            "sole_holder": isinstance(holders, list) and len(holders) == 1,
        }
    listed: list[Value] = [titles[unit] for unit in sorted(titles)]
    return {"holds_title": bool(listed), "titles": listed}


def _property_encumbrances(src: _Sources, params: Mapping[str, str], as_of: datetime.date) -> dict[str, Value]:
    unit = params["property_unit"]
    active: list[tuple[datetime.date, str]] = []
    for record in src.of("property_encumbrance"):
        registered = _on_or_before(record.fields, "registered_on", as_of)
        if _text(record.fields, "property_unit") != unit or registered is None:
            continue
        if _on_or_before(record.fields, "released_on", as_of) is not None:
            continue
        active.append((registered, _text(record.fields, "kind")))
    active.sort()
    listed: list[Value] = [{"kind": kind, "registered_on": day} for day, kind in active]
    return {
        "property_unit": unit,
        "mortgage_outstanding": any(kind == "mortgage" for _, kind in active),
        "seizure": any(kind == "seizure" for _, kind in active),
        "encumbrances": listed,
    }


def _transaction_tax_paid(src: _Sources, params: Mapping[str, str], as_of: datetime.date) -> dict[str, Value]:
    unit = params["property_unit"]
    deed = next(
        (
            r
            for r in src.of("transaction_tax")
            if _text(r.fields, "property_unit") == unit and _text(r.fields, "tax_kind") == "deed_tax"
        ),
        None,
    )
    if deed is None:
        return {
            "property_unit": unit,
            "has_record": False,
            "deed_tax_base_fen": 0,
            "deed_tax_rate_basis_points": 0,
            "deed_tax_amount_fen": 0,
            "deed_tax_paid": False,
            "deed_tax_paid_on": "",
        }
    paid_on = _on_or_before(deed.fields, "paid_on", as_of)
    paid = _text(deed.fields, "status") == "paid" and paid_on is not None
    return {
        "property_unit": unit,
        "has_record": True,
        "deed_tax_base_fen": _int(deed.fields, "base_fen") or 0,
        "deed_tax_rate_basis_points": _int(deed.fields, "rate_basis_points") or 0,
        "deed_tax_amount_fen": _int(deed.fields, "amount_fen") or 0,
        "deed_tax_paid": paid,
        "deed_tax_paid_on": paid_on if paid and paid_on is not None else "",
    }


def _household_registration(src: _Sources, params: Mapping[str, str], as_of: datetime.date) -> dict[str, Value]:
    record = next(
        (
            r
            for r in src.of("household_registration")
            if _on_or_before(r.fields, "registered_since", as_of) and len(_text(r.fields, "region_code")) == 6
        ),
        None,
    )
    if record is None:
        return {"has_record": False, "region_code": "", "city_code": "", "registered_since": "", "household_type": ""}
    region = _text(record.fields, "region_code")
    return {
        "has_record": True,
        "region_code": region,
        # The prefecture-level division the county belongs to: purchase rules are the city's.
        "city_code": region[:4] + "00",
        "registered_since": _date_or_empty(_date(record.fields, "registered_since")),
        "household_type": _text(record.fields, "household_type"),
    }


def _medical_insurance_enrolment(src: _Sources, params: Mapping[str, str], as_of: datetime.date) -> dict[str, Value]:
    candidates = [r for r in src.of("medical_insurance_enrolment") if _on_or_before(r.fields, "enrolled_since", as_of)]
    # An active enrolment wins over a later ended or suspended one (e.g. a move between schemes).
    active = [r for r in candidates if _text(r.fields, "status") == "active"]
    if not candidates:
        return {"enrolled": False, "scheme": "", "status": "", "since": ""}
    record = (active or candidates)[0]
    status = _text(record.fields, "status")
    return {
        "enrolled": status == "active",
        "scheme": _text(record.fields, "scheme"),
        "status": status,
        "since": _date_or_empty(_date(record.fields, "enrolled_since")),
    }


def _city_credit_score(src: _Sources, params: Mapping[str, str], as_of: datetime.date) -> dict[str, Value]:
    best: tuple[datetime.date, int, str] | None = None
    for record in src.of("city_credit_score"):  # latest first, so a tie on scored_on keeps the latest record
        scored = _on_or_before(record.fields, "scored_on", as_of)
        score = _int(record.fields, "score")
        if scored is None or score is None:
            continue
        if best is None or scored > best[0]:
            best = (scored, score, _text(record.fields, "band"))
    if best is None:
        return {"has_score": False, "score": 0, "band": "", "scored_on": ""}
    return {"has_score": True, "score": best[1], "band": best[2], "scored_on": best[0]}


def _enterprise_registration(src: _Sources, params: Mapping[str, str], as_of: datetime.date) -> dict[str, Value]:
    record = next(
        (r for r in src.of("enterprise_registration") if _on_or_before(r.fields, "established_on", as_of)), None
    )
    if record is None:
        return {
            "has_record": False,
            "registered_name": "",
            "entity_type": "",
            "status": "",
            "established_on": "",
            "registered_capital_fen": 0,
        }
    return {
        "has_record": True,
        "registered_name": _text(record.fields, "registered_name"),
        "entity_type": _text(record.fields, "entity_type"),
        "status": _text(record.fields, "status"),
        "established_on": _date_or_empty(_date(record.fields, "established_on")),
        "registered_capital_fen": _int(record.fields, "registered_capital_fen") or 0,
    }


def _housing_purchase_eligibility(src: _Sources, params: Mapping[str, str], as_of: datetime.date) -> dict[str, Value]:
    city = params["city"]
    homes = next(
        (
            count
            for r in src.of("homes_owned")
            if _text(r.fields, "city_code") == city and (count := _int(r.fields, "count")) is not None
        ),
        None,
    )
    assessment = next(
        (
            r
            for r in src.of("purchase_eligibility")
            if _text(r.fields, "city_code") == city and _on_or_before(r.fields, "assessed_on", as_of)
        ),
        None,
    )
    claims: dict[str, Value] = {
        "city_code": city,
        "has_homes_record": homes is not None,
        "homes_owned": homes or 0,
        "assessed": assessment is not None,
        "eligible": False,
        "reason": "",
        "assessed_on": "",
    }
    if assessment is not None:
        claims["eligible"] = _flag(assessment.fields, "eligible") is True
        claims["reason"] = _text(assessment.fields, "reason")
        claims["assessed_on"] = _date_or_empty(_date(assessment.fields, "assessed_on"))
    return claims


_DERIVATIONS: Final[Mapping[str, _Derivation]] = {
    "education_level": _education_level,
    "driving_licence": _driving_licence,
    "traffic_safety": _traffic_safety,
    "criminal_record": _criminal_record,
    "property_title": _property_title,
    "property_encumbrances": _property_encumbrances,
    "transaction_tax_paid": _transaction_tax_paid,
    "household_registration": _household_registration,
    "medical_insurance_enrolment": _medical_insurance_enrolment,
    "city_credit_score": _city_credit_score,
    "enterprise_registration": _enterprise_registration,
    "housing_purchase_eligibility": _housing_purchase_eligibility,
}
