"""Test data for approvals' end-to-end tests: for every case type one applicant who qualifies and,
for every rule, one who fails exactly that rule (and no other), with the records the departments
must publish first and the parameters a client submits.

How it is built: per case type, a small frozen "file" of what the departments hold, whose
defaults qualify; each failing scenario changes one thing of it (``dataclasses.replace`` style,
with a comment saying why that fails its rule and nothing else). A builder turns a file into
records.

* Fresh people and enterprises per scenario: identifiers, names and source references are
  derived from the scenario's id (``<case type>-<name>``) by hashing, so every run publishes the
  same records (a repeat is a duplicate, not a second record) and no two scenarios share a
  subject or a reference: all of them can go into one records database.
* Dates are relative to ``today`` (the Asia/Shanghai date the proofs are derived on) with wide
  margins (weeks or months from every window's edge), so the scenarios hold in any year and
  still hold when a test moves the mesh's clock forward by some days. Birth dates (inside the
  identifiers) are fixed, 1965-1985, and education dates follow them.
* Every subject of a proof has at least one record, so identity knows it when the proof is
  asked for (records registers a subject the first time a department publishes about it).
* tests/unit/approvals/test_scenarios.py proves each scenario in-process with records' and
  approvals' own code: if it passes, an end-to-end failure is the services', not the data's.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeAlias

from govmesh import typed_values as values
from govmesh.records.v1 import records_pb2
from govmesh.texts import text_problem
from services.identity.domain import validate_identifier
from services.records import app as records_app
from services.records.domain import catalogue, proofs
from services.records.domain.catalogue import SubjectKind
from tests.support.people import credit_code, resident_id, typed

__all__ = ["Scenario", "scenarios"]

_DAY: Final = datetime.timedelta(days=1)

#: A field value as the scenarios write it (records' TypedValue kinds that they need).
_Plain: TypeAlias = str | int | bool | datetime.date | list[str]


@dataclass(frozen=True)
class Scenario:
    case_type: str
    #: "qualifies", or the id of the one rule it fails.
    name: str
    #: Raw resident ID number, or USCC for an enterprise case type.
    applicant: str
    #: As a client submits them (identifier parameters raw).
    parameters: dict[str, str]
    #: What departments must publish first (subject by subject_identifier).
    records: tuple[records_pb2.DepartmentRecord, ...]
    #: Rule ids that must fail; empty when it qualifies.
    failing_rules: frozenset[str]

    def id(self) -> str:
        return f"{self.case_type}-{self.name}"


def scenarios(today: datetime.date) -> list[Scenario]:
    """Every scenario, dated relative to ``today`` (Asia/Shanghai)."""
    return [
        *(_ride_hailing(name, driver, today) for name, driver in _DRIVERS.items()),
        *(_housing(name, sale, today) for name, sale in _SALES.items()),
        *(_licence_change(name, registration, today) for name, registration in _REGISTRATIONS.items()),
        *(_tour_guide(name, guide, today) for name, guide in _GUIDES.items()),
    ]


# --------------------------------------------------------------------------------------------
# Identifiers, dates, records


def _mask(identifier: str) -> str:
    """The masked form records accept where another person is named (330106********123X)."""
    return identifier[:6] + "*" * 8 + identifier[-4:]


def _born(identifier: str) -> datetime.date:
    return datetime.date(int(identifier[6:10]), int(identifier[10:12]), int(identifier[12:14]))


def _add_years(day: datetime.date, years: int) -> datetime.date:
    """``day`` moved by whole years; 29 February becomes 28 February (Civil Code art. 201)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def _ago(today: datetime.date, *, years: int = 0, days: int = 0) -> datetime.date:
    return _add_years(today, -years) - datetime.timedelta(days=days)


_SURNAMES: Final = "王李张刘陈杨黄赵周吴徐孙朱马胡郭林何高罗"
_GIVEN_NAMES: Final = ("伟", "芳", "敏", "静", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超", "丽华")
# Source reference prefixes of the departments' feeds, as in services/records/synthetic.py.
_PREFIX: Final = {
    "public_security": "GA",
    "education": "JY",
    "natural_resources": "ZR",
    "housing": "ZJ",
    "taxation": "SW",
    "market_regulation": "SC",
}


class _Publisher:
    """One scenario's subjects and records, their identifiers and references derived from its id."""

    def __init__(self, scenario_id: str) -> None:
        self.scenario_id = scenario_id
        # A letter first, so the tag never joins digits around it into an identifier's shape.
        self.tag = "t" + hashlib.sha256(scenario_id.encode()).hexdigest()[:10]
        self.records: list[records_pb2.DepartmentRecord] = []
        self.names: dict[str, str] = {}

    def number(self, role: str) -> int:
        return int.from_bytes(hashlib.sha256(f"{self.scenario_id}/{role}".encode()).digest()[:8], "big")

    def resident(self, role: str, region: str) -> str:
        """A resident born 1965-1985 in ``region`` (a county-level code)."""
        n = self.number(role)
        born = datetime.date(1965, 1, 1) + datetime.timedelta(days=n % 7670)
        identifier = resident_id(f"{region}{born:%Y%m%d}{n // 7670 % 999 + 1:03d}")
        self.names[identifier] = _SURNAMES[n % 20] + _GIVEN_NAMES[n // 20 % 16]
        return identifier

    def enterprise(self, role: str, region: str, name: str) -> str:
        identifier = credit_code(region, self.number(role))
        self.names[identifier] = name
        return identifier

    def publish(
        self,
        department: str,
        record_type: str,
        subject: str,
        effective_from: datetime.date,
        fields: dict[str, _Plain],
        effective_to: datetime.date | None = None,
    ) -> None:
        self.records.append(
            records_pb2.DepartmentRecord(
                department_code=department,
                record_type=record_type,
                subject_identifier=subject,
                subject_display_name=self.names[subject],
                source_reference=f"{_PREFIX[department]}-{self.tag}-{len(self.records) + 1}",
                fields={name: typed(value) for name, value in fields.items()},
                effective_from=effective_from.isoformat(),
                effective_to=effective_to.isoformat() if effective_to else "",
            )
        )

    def scenario(self, case_type: str, name: str, applicant: str, parameters: dict[str, str]) -> Scenario:
        failing = frozenset() if name == "qualifies" else frozenset({name})
        return Scenario(case_type, name, applicant, parameters, tuple(self.records), failing)


@dataclass(frozen=True)
class _Conviction:
    category: str
    charge: str
    years_ago: int
    sentence: str = "fixed_term_imprisonment"
    months: int = 12
    suspended: bool = False

    def publish(self, p: _Publisher, subject: str, today: datetime.date, court: str) -> None:
        judged = _ago(today, years=self.years_ago, days=50)
        fields: dict[str, _Plain] = {
            "offence_category": self.category,
            "charge": self.charge,
            "judgment_date": judged,
            "sentence": self.sentence,
            "sentence_months": self.months,
            "suspended": self.suspended,
            "court": court,
        }
        p.publish("public_security", "criminal_record", subject, judged, fields)


# --------------------------------------------------------------------------------------------
# 网络预约出租汽车驾驶员证: a driver in Hangzhou's Xihu district


@dataclass(frozen=True)
class _Driver:
    """What public security and education hold on the applicant; the defaults qualify: a C1
    licence first issued 8 years ago, a 3-point speeding fine in the last scoring cycle, no
    conviction, a senior secondary graduation."""

    #: Full years since the licence was first issued.
    years_held: int = 8
    conviction: _Conviction | None = None
    #: A drink driving violation (12 points) 2 years and 180 days ago.
    drink_driving: bool = False
    #: Red-light violations (6 points each) in the last complete scoring cycle.
    red_lights: int = 0
    #: graduated (毕业), completed (结业) or withdrew (肄业).
    completion: str = "graduated"
    #: A fatal accident with full responsibility this many days ago.
    fatal_accident_days_ago: int | None = None


_DRIVERS: Final[dict[str, _Driver]] = {
    "qualifies": _Driver(),
    # First issued 2 years ago: years_held 2, 3 needed. The licence is valid and C1, and the
    # scoring cycles follow the new first-issue date, so the other rules hold.
    "licence_held_3_years": _Driver(years_held=2),
    # 交通肇事罪 (traffic_crime), judged 6 years ago with a suspended sentence: the bar has no time
    # limit. Categories [traffic_crime]: not violent; no violation record goes with it.
    "no_driving_crime": _Driver(conviction=_Conviction("traffic_crime", "交通肇事罪", 6, months=10, suspended=True)),
    # 饮酒后驾驶 2 years 180 days ago: inside the 3-year window of serious violations. Its 12 points
    # make a 12-point cycle, but that cycle ended about 140 days before the last 3 cycles began
    # (cycles run from anniversaries of first issue), so no_twelve_point_cycle still holds.
    "no_serious_traffic_violation": _Driver(drink_driving=True),
    # Two red lights (6 points each) on top of the 3-point speeding fine in the cycle that ended
    # 41 days ago: 15 points, a 12-point cycle among the last 3. Neither kind is a serious one.
    "no_twelve_point_cycle": _Driver(red_lights=2),
    # A fatal accident 150 days ago with full responsibility, with no conviction (yet) and no
    # violation record: only the accident itself stands in the way (issue 14: it was pulled but
    # never read).
    "no_major_traffic_accident": _Driver(fatal_accident_days_ago=150),
    # 故意伤害罪 (violent) 12 years ago; no driving category, so no_driving_crime holds.
    "no_violent_crime": _Driver(conviction=_Conviction("violent", "故意伤害罪", 12, months=18)),
    # 结业: completed senior secondary school without graduating, which is no graduation, so
    # the education proof's has_record is false.
    "education_on_file": _Driver(completion="completed"),
}


def _ride_hailing(name: str, driver: _Driver, today: datetime.date) -> Scenario:
    case_type = "ride_hailing_driver_permit"
    p = _Publisher(f"{case_type}-{name}")
    applicant = p.resident("driver", "330106")

    # First issued N years and 40 days ago: N full years held, and the scoring cycle running
    # today (cycles start on anniversaries of first issue) began 40 days ago.
    n = driver.years_held
    first_issued = _ago(today, years=n, days=40)
    # The first licence is valid 6 years, a renewed one 10.
    valid_from = _add_years(first_issued, 6) if n >= 6 else first_issued
    p.publish(
        "public_security",
        "driving_licence",
        applicant,
        valid_from,
        {
            "licence_class": "C1",
            "first_issued": first_issued,
            "valid_from": valid_from,
            "valid_until": _add_years(valid_from, 10 if n >= 6 else 6),
            "status": "valid",
            "issuing_authority": "杭州市公安局交通警察支队",
        },
    )

    # The last complete scoring cycle: a speeding fine, and any red lights.
    cycle_start, cycle_end = _add_years(first_issued, n - 1), _add_years(first_issued, n) - _DAY
    violations = [("speeding", cycle_start + datetime.timedelta(days=100), 3, 200_00)]
    violations += [
        ("red_light", cycle_start + datetime.timedelta(days=150 + 30 * i), 6, 200_00) for i in range(driver.red_lights)
    ]
    for kind, day, points, fine in violations:
        fields: dict[str, _Plain] = {
            "violation_date": day,
            "kind": kind,
            "points": points,
            "fine_fen": fine,
            "region_code": "330106",
        }
        p.publish("public_security", "traffic_violation", applicant, day, fields)
    points_total = sum(points for _, _, points, _ in violations)
    cycle: dict[str, _Plain] = {"cycle_start": cycle_start, "cycle_end": cycle_end, "points_total": points_total}
    p.publish("public_security", "scoring_cycle", applicant, cycle_end, cycle)

    if driver.drink_driving:
        day = _ago(today, years=2, days=180)
        p.publish(
            "public_security",
            "traffic_violation",
            applicant,
            day,
            {
                "violation_date": day,
                "kind": "drink_driving",
                "points": 12,
                "fine_fen": 1500_00,
                "region_code": "330106",
            },
        )
        # The cycle it fell in: [first_issued + (N-3) years, first_issued + (N-2) years).
        start, end = _add_years(first_issued, n - 3), _add_years(first_issued, n - 2) - _DAY
        p.publish(
            "public_security",
            "scoring_cycle",
            applicant,
            end,
            {"cycle_start": start, "cycle_end": end, "points_total": 12},
        )

    if driver.fatal_accident_days_ago is not None:
        day = _ago(today, days=driver.fatal_accident_days_ago)
        accident: dict[str, _Plain] = {
            "accident_date": day,
            "severity": "fatal",
            "responsibility": "full",
            "region_code": "330106",
            "deaths": 1,
        }
        p.publish("public_security", "traffic_accident", applicant, day, accident)

    if driver.conviction:
        driver.conviction.publish(p, applicant, today, "杭州市西湖区人民法院")

    born = _born(applicant)
    graduated = datetime.date(born.year + 18, 6, 30)
    p.publish(
        "education",
        "education_record",
        applicant,
        graduated,
        {
            "level": "senior_secondary",
            "institution": "杭州市西湖高级中学",
            "study_mode": "full_time",
            "enrolled_on": datetime.date(born.year + 15, 9, 1),
            "graduated_on": graduated,
            "completion": driver.completion,
        },
    )
    return p.scenario(case_type, name, applicant, {})


# --------------------------------------------------------------------------------------------
# 二手房转移登记: a home in Zhuji (county 330681 of Shaoxing, city 330600)

#: 2,168,750 yuan for 112.34 m²; a first home over 90 m² pays deed tax at 1.5 %.
_PRICE_FEN: Final = 2_168_750_00
_AREA_CM2: Final = 1_123_400
_DEED_TAX_BASIS_POINTS: Final = 150


@dataclass(frozen=True)
class _Sale:
    """The seller's title and encumbrances, the buyer's eligibility and deed tax; the defaults
    qualify: a sole title of 6 years whose purchase mortgage was released 60 days ago, a buyer
    with no home in Shaoxing assessed eligible, the deed tax paid on the contract price."""

    #: False: the seller's title is to another unit than the one applied for.
    seller_holds_unit: bool = True
    mortgage_released: bool = True
    seizure: bool = False
    buyer_eligible: bool = True
    #: The price the application declares (the tax was assessed on _PRICE_FEN).
    declared_price_fen: int = _PRICE_FEN
    #: The city the application names (the unit is in Zhuji, Shaoxing: 330600).
    declared_city: str = "330600"
    #: The seller holds the title jointly with a co-owner (and no consent is declared).
    co_owned: bool = False


_SALES: Final[dict[str, _Sale]] = {
    "qualifies": _Sale(),
    # The seller's one title is to another unit: the property_title proof, asked for the unit
    # applied for, finds none. No encumbrance on that unit either, so the other rules hold.
    "seller_holds_title": _Sale(seller_holds_unit=False),
    # 诸暨市人民法院 seized the unit 90 days ago and has not lifted it (the mortgage is released).
    "no_seizure": _Sale(seizure=True),
    # The purchase mortgage is still outstanding, and the application leaves mortgage_consent
    # out (default false): neither alternative of the rule holds.
    "mortgage_cleared_or_consented": _Sale(mortgage_released=False),
    # The buyer's family already owns 2 homes in Shaoxing: assessed, not eligible.
    "buyer_eligible": _Sale(buyer_eligible=False),
    # The application declares a lower price than the one taxation assessed the deed tax on
    # (a "yin-yang" contract): the base no longer equals price_fen; the tax itself is computed
    # right and paid.
    "deed_tax_paid": _Sale(declared_price_fen=1_980_000_00),
    # The application names Hangzhou (330100), where the buyer is also assessed eligible, for a
    # home in Zhuji: eligibility must be for the city the unit lies in.
    "unit_in_city": _Sale(declared_city="330100"),
    # The seller holds the home jointly with a co-owner, whose agreement is not declared.
    "co_owners_agree": _Sale(co_owned=True),
}


def _property_unit(p: _Publisher, role: str) -> str:
    """A real estate unit code in Zhuji (GB/T 37346), e.g. 330681001001GB00012F00010101."""
    n = p.number(role)
    return f"330681001001GB{n % 100_000:05d}F0001{n // 100_000 % 10_000:04d}"


def _housing(name: str, sale: _Sale, today: datetime.date) -> Scenario:
    case_type = "second_hand_housing_transfer"
    p = _Publisher(f"{case_type}-{name}")
    buyer, seller = p.resident("buyer", "330681"), p.resident("seller", "330681")
    co_owner = p.resident("co-owner", "330681")
    unit = _property_unit(p, "unit")
    held = unit if sale.seller_holds_unit else _property_unit(p, "the seller's other unit")

    acquired = _ago(today, years=6, days=75)
    p.publish(
        "natural_resources",
        "property_title",
        seller,
        acquired,
        {
            "property_unit": held,
            "certificate_number": f"浙({acquired.year})诸暨市不动产权第{p.number('certificate') % 10**7:07d}号",
            "region_code": "330681",
            "usage": "residential",
            "area_cm2": _AREA_CM2,
            "holders": [_mask(seller), _mask(co_owner)] if sale.co_owned else [_mask(seller)],
            "ownership": "joint" if sale.co_owned else "sole",
            "acquired_on": acquired,
        },
    )
    mortgage: dict[str, _Plain] = {
        "property_unit": held,
        "kind": "mortgage",
        "amount_fen": 1_200_000_00,
        "creditor": "中国建设银行绍兴分行",
        "registered_on": acquired,
    }
    if sale.mortgage_released:
        mortgage["released_on"] = _ago(today, days=60)
    p.publish("natural_resources", "property_encumbrance", seller, acquired, mortgage)
    if sale.seizure:
        seized = _ago(today, days=90)
        p.publish(
            "natural_resources",
            "property_encumbrance",
            seller,
            seized,
            {"property_unit": unit, "kind": "seizure", "court": "诸暨市人民法院", "registered_on": seized},
        )

    assessed = _ago(today, days=14)
    homes = 0 if sale.buyer_eligible else 2
    for city in sorted({"330600", sale.declared_city}):
        p.publish("housing", "homes_owned", buyer, assessed, {"city_code": city, "count": homes})
        p.publish(
            "housing",
            "purchase_eligibility",
            buyer,
            assessed,
            {
                "city_code": city,
                "eligible": sale.buyer_eligible,
                "reason": "local_household_under_limit" if sale.buyer_eligible else "local_household_limit_reached",
                "assessed_on": assessed,
            },
        )
    paid = _ago(today, days=3)
    p.publish(
        "taxation",
        "transaction_tax",
        buyer,
        paid,
        {
            "property_unit": unit,
            "tax_kind": "deed_tax",
            "base_fen": _PRICE_FEN,
            "rate_basis_points": _DEED_TAX_BASIS_POINTS,
            "amount_fen": (_PRICE_FEN * _DEED_TAX_BASIS_POINTS + 5_000) // 10_000,
            "status": "paid",
            "paid_on": paid,
        },
    )
    parameters = {
        "seller_identifier": seller,
        "property_unit": unit,
        "price_fen": str(sale.declared_price_fen),
        "city": sale.declared_city,
    }
    return p.scenario(case_type, name, buyer, parameters)


# --------------------------------------------------------------------------------------------
# 营业执照变更登记: a sock maker in Zhuji moves


@dataclass(frozen=True)
class _Registration:
    """Market regulation's register entry; the defaults qualify: a company established 5 years
    ago, in business, resolving 7 days ago to change its address."""

    status: str = "active"
    #: The register withdrew the record (effective_to in the past).
    withdrawn: bool = False
    resolved_before_established: bool = False
    #: The resolution is dated in 2099: evidence from the future.
    resolved_in_the_future: bool = False


_REGISTRATIONS: Final[dict[str, _Registration]] = {
    "qualifies": _Registration(),
    # The registration was annulled (撤销登记, obtained with false documents): the register
    # withdrew the record 30 days ago, so the proof has no record. The enterprise stays known to
    # identity through the withdrawn record.
    "enterprise_registered": _Registration(withdrawn=True),
    # 吊销: the licence was revoked; the enterprise is on record, established long before.
    "registration_active": _Registration(status="revoked"),
    # The resolution is dated 10 days before the company was established.
    "resolution_after_establishment": _Registration(resolved_before_established=True),
    # A resolution dated 1 January 2099 (issue 14: it grounded the change).
    "resolution_not_in_the_future": _Registration(resolved_in_the_future=True),
}


def _licence_change(name: str, registration: _Registration, today: datetime.date) -> Scenario:
    case_type = "business_licence_change"
    p = _Publisher(f"{case_type}-{name}")
    enterprise = p.enterprise(
        "enterprise", "330681", "诸暨市大唐" + _SURNAMES[p.number("name") % 20] + "氏袜业有限公司"
    )
    established = _ago(today, years=5, days=120)
    p.publish(
        "market_regulation",
        "enterprise_registration",
        enterprise,
        established,
        {
            "registered_name": p.names[enterprise],
            "entity_type": "limited_liability_company",
            "legal_representative": _mask(p.resident("legal representative", "330681")),
            "registered_capital_fen": 5_000_000_00,
            "established_on": established,
            "status": registration.status,
            "business_scope": "袜子、针纺织品的制造与销售",
            "region_code": "330681",
        },
        effective_to=_ago(today, days=30) if registration.withdrawn else None,
    )
    resolved = established - 10 * _DAY if registration.resolved_before_established else _ago(today, days=7)
    if registration.resolved_in_the_future:
        resolved = datetime.date(2099, 1, 1)
    return p.scenario(case_type, name, enterprise, {"change_kind": "address", "resolution_date": resolved.isoformat()})


# --------------------------------------------------------------------------------------------
# 导游证核发: a guide signed with a travel agency in Hangzhou


@dataclass(frozen=True)
class _Guide:
    """The guide's criminal record and education, the employer's registration; the defaults
    qualify: no conviction, a bachelor's degree, an agency in business."""

    conviction: _Conviction | None = None
    level: str = "bachelor"
    employer_status: str = "active"


_GUIDES: Final[dict[str, _Guide]] = {
    "qualifies": _Guide(),
    # 诈骗罪 4 years ago, suspended: an intentional crime, so categories [fraud] is not a subset of
    # the negligent [traffic_crime].
    "no_criminal_penalty": _Guide(conviction=_Conviction("fraud", "诈骗罪", 4, months=8, suspended=True)),
    # Junior secondary is the highest level the guide graduated at (has_record is true).
    "education_senior_secondary": _Guide(level="junior_secondary"),
    # The agency was deregistered (注销): still on record, status cancelled.
    "employer_in_business": _Guide(employer_status="cancelled"),
}

# Level -> (institution, major, age on enrolment, age on graduation).
_SCHOOLS: Final = {
    "bachelor": ("浙江工商大学", "旅游管理", 18, 22),
    "junior_secondary": ("杭州市西湖区实验中学", "", 12, 15),
}


def _tour_guide(name: str, guide: _Guide, today: datetime.date) -> Scenario:
    case_type = "tour_guide_licence"
    p = _Publisher(f"{case_type}-{name}")
    applicant = p.resident("guide", "330106")
    employer = p.enterprise("employer", "330106", "杭州" + _SURNAMES[p.number("name") % 20] + "氏国际旅行社有限公司")

    born = _born(applicant)
    institution, major, enrolled_age, graduated_age = _SCHOOLS[guide.level]
    graduated = datetime.date(born.year + graduated_age, 6, 30)
    education: dict[str, _Plain] = {
        "level": guide.level,
        "institution": institution,
        "enrolled_on": datetime.date(born.year + enrolled_age, 9, 1),
        "graduated_on": graduated,
        "completion": "graduated",
    }
    p.publish("education", "education_record", applicant, graduated, education | ({"major": major} if major else {}))
    if guide.conviction:
        guide.conviction.publish(p, applicant, today, "杭州市上城区人民法院")

    established = _ago(today, years=12, days=200)
    p.publish(
        "market_regulation",
        "enterprise_registration",
        employer,
        established,
        {
            "registered_name": p.names[employer],
            "entity_type": "limited_liability_company",
            "legal_representative": _mask(p.resident("legal representative", "330106")),
            "registered_capital_fen": 3_000_000_00,
            "established_on": established,
            "status": guide.employer_status,
            "business_scope": "国内旅游业务；入境旅游业务",
            "region_code": "330106",
        },
    )
    parameters = {
        "qualification_certificate": f"DYZG{today.year - 1}33{p.number('certificate') % 10**6:06d}",
        "employer_identifier": employer,
    }
    return p.scenario(case_type, name, applicant, parameters)


def accepted(record: records_pb2.DepartmentRecord, today: datetime.date) -> proofs.StoredRecord:
    """``record`` as records stores it, after the checks records' publish makes (RecordsApp._check,
    the identity lookup and the subject kind of the record type); AssertionError when records
    would refuse it. The caller's right to publish for the department is not checked here."""
    what = f"{record.department_code}/{record.record_type} {record.source_reference}"
    assert catalogue.department(record.department_code) is not None, what
    spec = catalogue.record_type(record.department_code, record.record_type)
    assert spec is not None, what
    assert record.WhichOneof("subject") == "subject_identifier", what
    assert record.subject_display_name.strip(), f"{what}: identity registers a new subject by name"
    identity = validate_identifier(record.subject_identifier, today)
    assert identity.valid, f"{what}: {[p.message for p in identity.problems]}"
    assert identity.normalized == record.subject_identifier, what
    assert identity.kind is not None and SubjectKind(identity.kind.value) in spec.subject_kinds, what
    for text in (record.source_reference, record.supersedes_source_reference):
        assert text_problem(text, records_app.MAX_TEXT) is None, what
    assert record.source_reference and record.source_reference == record.source_reference.strip(), what
    effective_from = datetime.date.fromisoformat(record.effective_from)
    effective_to = datetime.date.fromisoformat(record.effective_to) if record.effective_to else None
    assert effective_to is None or effective_to >= effective_from, what
    fields = values.fields_from_proto(record.fields, "fields.")
    assert catalogue.validate_fields(spec, fields) == [], what
    return proofs.StoredRecord(
        record_id=record.source_reference,
        department_code=record.department_code,
        record_type=record.record_type,
        source_reference=record.source_reference,
        fields=values.fields_from_json(values.fields_to_json(fields)),  # through the storage form
        effective_from=effective_from,
        effective_to=effective_to,
        recorded_at=datetime.datetime.now(datetime.UTC),
        superseded=False,
    )


CASE_TYPES_DIR = Path(__file__).resolve().parents[2] / "services" / "approvals" / "case_types"
