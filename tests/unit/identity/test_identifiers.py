"""Unit tests of identifier validation (services/identity/domain/): no broker, no network.

Valid identifiers are generated here from region codes, dates, sequences and organisation codes;
their check characters are computed by a second, deliberately different implementation written
from the standards (ISO 7064 MOD 11-2 by its recursive form, GB 11714 and GB 32100 by their
weight tables), so the tests do not trust the code under test to compute what it checks.
"""

from __future__ import annotations

import ast
import base64
import datetime
import hashlib
import hmac
import random
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from stdnum.cn import ric, uscc

from services.identity import domain
from services.identity.domain import (
    EnterpriseFacts,
    IdentifierKind,
    MalformedRequest,
    Problem,
    ProblemCode,
    ResidentFacts,
    Sex,
    Validation,
    mask,
    normalize,
    subject_pseudonym,
    validate_identifier,
)

TODAY = datetime.date(2025, 11, 27)
REPO = Path(__file__).resolve().parents[3]

# --------------------------------------------------------------------------------------------
# Independent generators


def mod11_2(digits17: str) -> str:
    """ISO 7064 MOD 11-2, recursive (pure system) form."""
    p = 0
    for d in digits17:
        p = (p + int(d)) * 2 % 11
    c = (12 - p) % 11
    return "X" if c == 10 else str(c)


USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]
ORG_WEIGHTS = [3, 7, 9, 10, 5, 8, 4, 2]


def gb11714(body8: str) -> str:
    total = sum(int(ch, 36) * w for ch, w in zip(body8, ORG_WEIGHTS, strict=True))
    c = 11 - total % 11
    return "X" if c == 10 else "0" if c == 11 else str(c)


def mod31(body17: str) -> str:
    total = sum(USCC_CHARS.index(ch) * w for ch, w in zip(body17, USCC_WEIGHTS, strict=True))
    return USCC_CHARS[(31 - total % 31) % 31]


def resident(region: str, born: datetime.date | str, seq: int | str, check: str | None = None) -> str:
    date = born if isinstance(born, str) else born.strftime("%Y%m%d")
    body = f"{region}{date}{seq:03d}" if isinstance(seq, int) else f"{region}{date}{seq}"
    return body + (mod11_2(body) if check is None else check)


def credit_code(
    authority: str = "9",
    entity: str = "1",
    region: str = "330106",
    org_body: str = "MA27XK4B",
    org_check: str | None = None,
    check: str | None = None,
) -> str:
    body = authority + entity + region + org_body + (gb11714(org_body) if org_check is None else org_check)
    return body + (mod31(body) if check is None else check)


# Known GB/T 2260 codes with the names expected in the given birth year.
RESIDENT_REGIONS = {
    "330102": "浙江省 杭州市 上城区",
    "330105": "浙江省 杭州市 拱墅区",
    "330106": "浙江省 杭州市 西湖区",
    "330108": "浙江省 杭州市 滨江区",
    "330109": "浙江省 杭州市 萧山区",
    "330110": "浙江省 杭州市 余杭区",
    "330122": "浙江省 杭州市 桐庐县",
    "330127": "浙江省 杭州市 淳安县",
    "330182": "浙江省 杭州市 建德市",
    "110101": "北京市 东城区",
    "110108": "北京市 海淀区",
    "310104": "上海市 徐汇区",
    "320102": "江苏省 南京市 玄武区",
    "440106": "广东省 广州市 天河区",
    "510104": "四川省 成都市 锦江区",
    "540102": "西藏自治区 拉萨市 城关区",
    "650102": "新疆维吾尔自治区 乌鲁木齐市 天山区",
    "429004": "湖北省 仙桃市",
    "820000": "澳门特别行政区",
}
ENTERPRISE_REGIONS = {
    "100000": "全国",
    "330000": "浙江省",
    "330100": "浙江省 杭州市",
    "330106": "浙江省 杭州市 西湖区",
    "330108": "浙江省 杭州市 滨江区",
    "110000": "北京市",
    "440300": "广东省 深圳市",
    "440305": "广东省 深圳市 南山区",
}

# GB 32100-2015 appendix A, typed in again here from the standard.
AUTHORITIES = {
    "1": (
        "机构编制",
        {"1": "机关", "2": "事业单位", "3": "中央编办直接管理机构编制的群众团体", "9": "其他"},
    ),
    "2": ("外交", {"1": "外国常驻新闻机构", "9": "其他"}),
    "3": (
        "司法行政",
        {
            "1": "律师执业机构",
            "2": "公证处",
            "3": "基层法律服务所",
            "4": "司法鉴定机构",
            "5": "仲裁委员会",
            "9": "其他",
        },
    ),
    "4": ("文化", {"1": "外国在华文化中心", "9": "其他"}),
    "5": ("民政", {"1": "社会团体", "2": "民办非企业单位", "3": "基金会", "9": "其他"}),
    "6": (
        "旅游",
        {
            "1": "外国旅游部门常驻代表机构",
            "2": "港澳台地区旅游部门常驻内地（大陆）代表机构",
            "9": "其他",
        },
    ),
    "7": ("宗教", {"1": "宗教活动场所", "2": "宗教院校", "9": "其他"}),
    "8": ("工会", {"1": "基层工会", "9": "其他"}),
    "9": ("工商", {"1": "企业", "2": "个体工商户", "3": "农民专业合作社"}),
    "A": ("中央军委改革和编制办公室", {"1": "军队事业单位", "9": "其他"}),
    "N": (
        "农业",
        {"1": "组级集体经济组织", "2": "村级集体经济组织", "3": "乡镇级集体经济组织", "9": "其他"},
    ),
    "Y": ("其他", {"1": "其他"}),
}
AUTHORITY_TYPE_PAIRS = [(a, t) for a, (_, types) in AUTHORITIES.items() for t in types]


def random_date(rng: random.Random, first: datetime.date, last: datetime.date) -> datetime.date:
    return first + datetime.timedelta(days=rng.randrange((last - first).days + 1))


def generated_residents(count: int, seed: int) -> Iterator[tuple[str, str, datetime.date, int]]:
    rng = random.Random(seed)
    regions = sorted(RESIDENT_REGIONS)
    for _ in range(count):
        region = rng.choice(regions)
        born = random_date(rng, datetime.date(1850, 1, 1), TODAY)
        seq = rng.randrange(1000)
        yield resident(region, born, seq), region, born, seq


def generated_credit_codes(count: int, seed: int) -> Iterator[tuple[str, str, str, str, str]]:
    rng = random.Random(seed)
    regions = sorted(ENTERPRISE_REGIONS)
    for _ in range(count):
        authority, entity = rng.choice(AUTHORITY_TYPE_PAIRS)
        region = rng.choice(regions)
        org_body = "".join(rng.choice(USCC_CHARS) for _ in range(8))
        org = org_body + gb11714(org_body)
        yield credit_code(authority, entity, region, org_body), authority, entity, region, org


def codes(v: Validation) -> list[ProblemCode]:
    return [p.code for p in v.problems]


def check(raw: str, today: datetime.date = TODAY) -> Validation:
    """validate_identifier plus the invariants every answer must keep."""
    v = validate_identifier(raw, today)
    assert v.valid == (not v.problems)
    assert v.masked == (mask(v.normalized) if v.valid else "")
    if v.valid:
        assert (v.resident is not None) == (v.kind is IdentifierKind.RESIDENT)
        assert (v.enterprise is not None) == (v.kind is IdentifierKind.ENTERPRISE)
    else:
        assert v.resident is None and v.enterprise is None
    for problem in v.problems:
        assert problem.message.isascii(), problem
        assert 0 <= problem.position <= len(v.normalized)
        if len(v.normalized) >= 10:
            assert v.normalized not in problem.message, problem
            assert v.normalized[:12] not in problem.message, problem
    return v


def other_chars(alphabet: str, keep: str) -> list[str]:
    return [c for c in alphabet if c != keep]


# --------------------------------------------------------------------------------------------
# The generators themselves, against published examples and python-stdnum


def test_generators_agree_with_published_examples() -> None:
    assert mod11_2("36042619910101007") == "1"  # python-stdnum's documented example
    assert credit_code("9", "1", "110000", "60003734", "1") == "91110000600037341L"
    assert gb11714("60003734") == "1"
    for number in ("51100000500002862F", "12440300455752807L", "51100000500012681T"):
        assert credit_code(number[0], number[1], number[2:8], number[8:16]) == number


# --------------------------------------------------------------------------------------------
# Resident identity numbers (GB 11643-1999)


def test_many_generated_resident_numbers_are_valid_with_their_facts() -> None:
    for number, region, born, seq in generated_residents(3000, seed=11643):
        v = check(number)
        assert v.valid, (v.problems, region, born, seq)
        assert v.kind is IdentifierKind.RESIDENT
        assert v.normalized == number
        assert not v.converted_from_legacy
        assert v.resident == ResidentFacts(
            birth_date=born,
            sex=Sex.MALE if seq % 2 else Sex.FEMALE,
            region_code=region,
            region_name=RESIDENT_REGIONS[region],
        )
        if born.year >= 2002:  # stdnum also checks that the county existed in the birth year
            assert ric.is_valid(number)


def test_every_single_digit_change_and_adjacent_swap_of_a_resident_number_is_caught() -> None:
    for number, *_ in generated_residents(60, seed=7064):
        for i in range(18):
            for replacement in other_chars("0123456789X" if i == 17 else "0123456789", number[i]):
                assert not check(number[:i] + replacement + number[i + 1 :]).valid
        for i in range(17):
            if number[i] != number[i + 1]:
                swapped = number[:i] + number[i + 1] + number[i] + number[i + 2 :]
                assert not check(swapped).valid


def find_sequences_for_every_check(region: str, born: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for seq in range(1000):
        found.setdefault(mod11_2(f"{region}{born}{seq:03d}"), seq)
        if len(found) == 11:
            return found
    raise AssertionError(f"only found {sorted(found)}")


@pytest.mark.parametrize("check_char", list("0123456789X"))
def test_every_resident_check_character(check_char: str) -> None:
    seq = find_sequences_for_every_check("330106", "19900307")[check_char]
    number = resident("330106", "19900307", seq)
    assert number[-1] == check_char
    assert check(number).valid
    if check_char == "X":
        lower = check(number.lower())
        assert lower.valid and lower.normalized == number
    for wrong in other_chars("0123456789X", check_char):
        v = check(number[:-1] + wrong)
        assert not v.valid
        assert v.kind is IdentifierKind.RESIDENT
        [problem] = v.problems
        assert problem.code is ProblemCode.BAD_CHECK_CHARACTER
        assert problem.position == 18
        assert f"'{wrong}'" in problem.message and f"expected '{check_char}'" in problem.message


@pytest.mark.parametrize(
    ("seq", "sex"),
    [
        (1, Sex.MALE),
        (2, Sex.FEMALE),
        (123, Sex.MALE),
        (998, Sex.FEMALE),
        (0, Sex.FEMALE),
        (999, Sex.MALE),
    ],
)
def test_sex_follows_the_parity_of_the_sequence(seq: int, sex: Sex) -> None:
    v = check(resident("330106", "19900307", seq))
    assert v.resident is not None and v.resident.sex is sex


@pytest.mark.parametrize(
    ("region", "born", "name"),
    [
        ("330106", "19900307", "浙江省 杭州市 西湖区"),
        (
            "330106",
            "19600101",
            "浙江省 杭州市 西湖区",
        ),  # code dates from 1983: first issue came later
        ("110101", "19900101", "北京市 东城区"),  # the "市辖区" level says nothing and is left out
        ("120110", "19850101", "天津市 东郊区"),  # renamed 东丽区 in 1992
        ("120110", "19950101", "天津市 东丽区"),
        ("440305", "19850101", "广东省 深圳市 南头区办事处"),
        ("440305", "19950101", "广东省 深圳市 南山区"),
        ("500101", "19900101", "重庆市 万县区"),  # code exists only from 1997: the first name
        ("500101", "20000101", "重庆市 万州区"),
        ("330103", "19900101", "浙江省 杭州市 下城区"),  # abolished 2021, still a real number
        ("330000", "19900101", "浙江省"),
        ("330100", "19900101", "浙江省 杭州市"),
        ("810000", "19900101", "香港特别行政区"),
    ],
)
def test_region_names(region: str, born: str, name: str) -> None:
    v = check(resident(region, born, 123))
    assert v.valid, v.problems
    assert v.resident is not None
    assert (v.resident.region_code, v.resident.region_name) == (region, name)


@pytest.mark.parametrize("region", ["999999", "000000", "330199", "339999", "910000", "100000"])
def test_unknown_resident_region(region: str) -> None:
    v = check(resident(region, "19900307", 123))
    assert v.kind is IdentifierKind.RESIDENT
    [problem] = v.problems
    assert problem.code is ProblemCode.UNKNOWN_REGION
    assert problem.position == 0
    assert region in problem.message


@pytest.mark.parametrize(
    "born",
    [
        "19900230",
        "19000229",
        "20230229",
        "21000229",
        "19901301",
        "19900001",
        "19900100",
        "19900431",
        "00000000",
        "18491231",
        "18000101",
    ],
)
def test_impossible_birth_dates(born: str) -> None:
    v = check(resident("330106", born, 123))
    assert v.kind is IdentifierKind.RESIDENT
    [problem] = v.problems
    assert problem.code is ProblemCode.IMPOSSIBLE_BIRTH_DATE
    assert born in problem.message
    if born.startswith("18") and born[4:] != "0000":
        assert "1850" in problem.message


@pytest.mark.parametrize("born", ["20000229", "19960229", "20240229", "19040229", "18520229", "18500101"])
def test_leap_days_and_the_earliest_dates_are_valid(born: str) -> None:
    v = check(resident("330106", born, 124))
    assert v.valid, v.problems
    assert v.resident is not None
    assert v.resident.birth_date == datetime.date(int(born[:4]), int(born[4:6]), int(born[6:]))


def test_future_birth_dates_depend_on_the_injected_today() -> None:
    today = datetime.date(2024, 6, 15)
    born_today = resident("330106", "20240615", 1)
    born_tomorrow = resident("330106", "20240616", 1)
    assert check(born_today, today).valid
    v = check(born_tomorrow, today)
    [problem] = v.problems
    assert problem.code is ProblemCode.FUTURE_BIRTH_DATE
    assert "20240616" in problem.message and "2024-06-15" in problem.message
    assert check(born_tomorrow, today + datetime.timedelta(days=1)).valid  # time travel
    leap_in_future = check(resident("330106", "20280229", 2), today)
    assert codes(leap_in_future) == [ProblemCode.FUTURE_BIRTH_DATE]
    assert check(resident("330106", "20280229", 2), datetime.date(2028, 2, 29)).valid


def test_today_must_be_a_date_not_a_datetime() -> None:
    with pytest.raises(TypeError):
        validate_identifier(resident("330106", "19900307", 123), datetime.datetime(2025, 1, 1))


def test_several_resident_problems_are_all_reported() -> None:
    v = check(resident("999999", "19900230", 123, check="0"))
    assert v.kind is IdentifierKind.RESIDENT
    body = "99999919900230123"
    assert mod11_2(body) != "0"
    assert sorted(codes(v), key=lambda c: c.value) == [
        ProblemCode.BAD_CHECK_CHARACTER,
        ProblemCode.IMPOSSIBLE_BIRTH_DATE,
        ProblemCode.UNKNOWN_REGION,
    ]
    future = check(resident("339999", "20300101", 5, check="0" if mod11_2("33999920300101005") != "0" else "1"))
    assert sorted(codes(future), key=lambda c: c.value) == [
        ProblemCode.BAD_CHECK_CHARACTER,
        ProblemCode.FUTURE_BIRTH_DATE,
        ProblemCode.UNKNOWN_REGION,
    ]


def test_resident_bad_characters_are_located() -> None:
    number = resident("330106", "19900307", 123)
    typo = number[:12] + "O" + number[13:]  # letter O for a zero in the birth date
    v = check(typo)
    assert v.kind is IdentifierKind.RESIDENT
    assert v.problems == (Problem(ProblemCode.BAD_CHARACTER, v.problems[0].message, 13),)
    assert "'O'" in v.problems[0].message and "13" in v.problems[0].message
    chinese = check(number[:17] + "中")
    assert chinese.kind is IdentifierKind.RESIDENT
    [problem] = chinese.problems
    assert (problem.code, problem.position) == (ProblemCode.BAD_CHARACTER, 18)
    assert "U+4E2D" in problem.message


# --------------------------------------------------------------------------------------------
# Legacy 15-digit resident numbers


def test_the_known_legacy_example_is_converted() -> None:
    expected = "33010619900307123" + mod11_2("33010619900307123")
    assert expected == "330106199003071236"
    v = check("330106900307123")
    assert v.valid
    assert v.converted_from_legacy
    assert v.normalized == expected
    assert v.masked == "330106********1236"
    assert v.resident == ResidentFacts(datetime.date(1990, 3, 7), Sex.MALE, "330106", "浙江省 杭州市 西湖区")


def test_many_legacy_numbers_are_converted() -> None:
    rng = random.Random(15)
    regions = sorted(RESIDENT_REGIONS)
    for _ in range(500):
        region = rng.choice(regions)
        born = random_date(rng, datetime.date(1900, 1, 1), datetime.date(1999, 12, 31))
        seq = rng.randrange(1000)
        legacy = f"{region}{born:%y%m%d}{seq:03d}"
        v = check(legacy)
        assert v.valid and v.converted_from_legacy
        assert v.normalized == resident(region, born, seq)
        assert v.resident is not None and v.resident.birth_date == born
        assert check(v.normalized).converted_from_legacy is False


@pytest.mark.parametrize(
    ("legacy", "expected"),
    [
        ("330106900230123", [ProblemCode.IMPOSSIBLE_BIRTH_DATE]),
        ("330106000229123", [ProblemCode.IMPOSSIBLE_BIRTH_DATE]),  # 1900 was not a leap year
        ("999999900307123", [ProblemCode.UNKNOWN_REGION]),
        ("999999901301123", [ProblemCode.IMPOSSIBLE_BIRTH_DATE, ProblemCode.UNKNOWN_REGION]),
    ],
)
def test_invalid_legacy_numbers_are_still_converted(legacy: str, expected: list[ProblemCode]) -> None:
    v = check(legacy)
    assert v.kind is IdentifierKind.RESIDENT
    assert v.converted_from_legacy
    assert v.normalized == legacy[:6] + "19" + legacy[6:] + mod11_2(legacy[:6] + "19" + legacy[6:])
    assert sorted(codes(v), key=lambda c: c.value) == expected


def test_legacy_leap_day_is_valid() -> None:
    v = check("330106960229124")
    assert v.valid and v.resident is not None
    assert v.resident.birth_date == datetime.date(1996, 2, 29)
    assert v.resident.sex is Sex.FEMALE


def test_legacy_number_with_a_letter_is_not_converted() -> None:
    v = check("33010690030712A")
    assert v.kind is IdentifierKind.RESIDENT
    assert not v.converted_from_legacy
    assert v.normalized == "33010690030712A"
    [problem] = v.problems
    assert (problem.code, problem.position) == (ProblemCode.BAD_CHARACTER, 15)
    both = check("99999990023012X")
    assert sorted(codes(both), key=lambda c: c.value) == [
        ProblemCode.BAD_CHARACTER,
        ProblemCode.IMPOSSIBLE_BIRTH_DATE,
        ProblemCode.UNKNOWN_REGION,
    ]


# --------------------------------------------------------------------------------------------
# Unified social credit codes (GB 32100-2015)


@pytest.mark.parametrize(
    ("number", "authority", "entity", "region_name"),
    [
        ("91110000600037341L", "工商", "企业", "北京市"),
        ("51100000500002862F", "民政", "社会团体", "全国"),
        ("51100000500012681T", "民政", "社会团体", "全国"),
        ("12440300455752807L", "机构编制", "事业单位", "广东省 深圳市"),
    ],
)
def test_published_credit_codes(number: str, authority: str, entity: str, region_name: str) -> None:
    v = check(number)
    assert v.valid, v.problems
    assert v.kind is IdentifierKind.ENTERPRISE
    assert v.enterprise is not None
    assert (v.enterprise.registration_authority_name, v.enterprise.entity_type_name) == (
        authority,
        entity,
    )
    assert v.enterprise.region_name == region_name
    assert v.enterprise.organization_code == number[8:17]
    assert check(number.lower()).valid


def test_many_generated_credit_codes_are_valid_with_their_facts() -> None:
    for number, authority, entity, region, org in generated_credit_codes(3000, seed=32100):
        v = check(number)
        assert v.valid, (number, v.problems)
        assert v.kind is IdentifierKind.ENTERPRISE
        assert v.normalized == number
        assert v.enterprise == EnterpriseFacts(
            registration_authority_code=authority,
            registration_authority_name=AUTHORITIES[authority][0],
            entity_type_code=entity,
            entity_type_name=AUTHORITIES[authority][1][entity],
            region_code=region,
            region_name=ENTERPRISE_REGIONS[region],
            organization_code=org,
        )
        if number[:8].isdigit():  # stdnum insists on digits in the first eight places
            assert uscc.is_valid(number)


def test_every_single_character_change_of_a_credit_code_is_caught() -> None:
    for number, *_ in generated_credit_codes(40, seed=31):
        for i in range(18):
            for replacement in other_chars(USCC_CHARS, number[i]):
                assert not check(number[:i] + replacement + number[i + 1 :]).valid


@pytest.mark.parametrize(("authority", "entity"), AUTHORITY_TYPE_PAIRS)
def test_every_authority_and_entity_type(authority: str, entity: str) -> None:
    v = check(credit_code(authority, entity))
    assert v.valid, v.problems
    assert v.enterprise is not None
    assert v.enterprise.registration_authority_name == AUTHORITIES[authority][0]
    assert v.enterprise.entity_type_name == AUTHORITIES[authority][1][entity]
    for other in other_chars(USCC_CHARS, entity):
        if other in AUTHORITIES[authority][1]:
            continue
        bad = check(credit_code(authority, other))
        [problem] = bad.problems
        assert (problem.code, problem.position) == (ProblemCode.UNKNOWN_ENTITY_TYPE, 2)
        assert f"'{other}'" in problem.message


@pytest.mark.parametrize("authority", [c for c in USCC_CHARS if c not in AUTHORITIES])
def test_unknown_registration_authorities(authority: str) -> None:
    v = check(credit_code(authority, "1"))
    assert v.kind is IdentifierKind.ENTERPRISE
    [problem] = v.problems  # the entity type cannot be judged without an authority
    assert (problem.code, problem.position) == (ProblemCode.UNKNOWN_REGISTRATION_AUTHORITY, 1)
    assert f"'{authority}'" in problem.message


def find_org_bodies_for_every_credit_check() -> dict[str, str]:
    found: dict[str, str] = {}
    for n in range(100000):
        body = f"MA{n:06d}"
        found.setdefault(credit_code(org_body=body)[-1], body)
        if len(found) == len(USCC_CHARS):
            return found
    raise AssertionError(f"only found {sorted(found)}")


@pytest.mark.parametrize("check_char", list(USCC_CHARS))
def test_every_credit_code_check_character(check_char: str) -> None:
    number = credit_code(org_body=find_org_bodies_for_every_credit_check()[check_char])
    assert number[-1] == check_char
    v = check(number)
    assert v.valid, v.problems
    assert v.kind is IdentifierKind.ENTERPRISE
    for wrong in other_chars(USCC_CHARS, check_char):
        bad = check(number[:-1] + wrong)
        assert bad.kind is IdentifierKind.ENTERPRISE
        [problem] = bad.problems
        assert (problem.code, problem.position) == (ProblemCode.BAD_CHECK_CHARACTER, 18)
        assert f"expected '{check_char}'" in problem.message


@pytest.mark.parametrize("org_check", list("0123456789X"))
def test_every_organization_code_check_character(org_check: str) -> None:
    body = next(f"MA{n:06d}" for n in range(10000) if gb11714(f"MA{n:06d}") == org_check)
    assert check(credit_code(org_body=body)).valid
    for wrong in other_chars(USCC_CHARS, org_check):
        v = check(credit_code(org_body=body, org_check=wrong))  # outer check recomputed
        [problem] = v.problems
        assert (problem.code, problem.position) == (ProblemCode.BAD_ORGANIZATION_CODE, 17)
        assert f"expected '{org_check}'" in problem.message


@pytest.mark.parametrize("region", ["999999", "000000", "330199", "910000", "123456"])
def test_unknown_enterprise_region(region: str) -> None:
    v = check(credit_code(region=region))
    [problem] = v.problems
    assert (problem.code, problem.position) == (ProblemCode.UNKNOWN_REGION, 0)
    assert region in problem.message


@pytest.mark.parametrize("letter", list("IOZSV"))
def test_letters_outside_the_credit_code_alphabet(letter: str) -> None:
    number = credit_code()
    for position in (1, 2, 9, 12, 16, 17, 18):
        v = check(number[: position - 1] + letter + number[position:])
        assert v.kind is IdentifierKind.ENTERPRISE
        [problem] = v.problems  # no check can be computed over a character without a value
        assert (problem.code, problem.position) == (ProblemCode.BAD_CHARACTER, position)
        assert f"'{letter}'" in problem.message


def test_region_of_a_credit_code_must_be_digits() -> None:
    number = credit_code(region="33A106")  # 'A' is in the alphabet, so the checks still apply
    v = check(number)
    [problem] = v.problems
    assert (problem.code, problem.position) == (ProblemCode.BAD_CHARACTER, 5)
    assert "region" in problem.message


def test_bad_character_and_bad_check_together() -> None:
    right = credit_code(region="33A106")
    v = check(right[:-1] + other_chars(USCC_CHARS, right[-1])[0])
    assert sorted(codes(v), key=lambda c: c.value) == [
        ProblemCode.BAD_CHARACTER,
        ProblemCode.BAD_CHECK_CHARACTER,
    ]
    assert [p.position for p in v.problems] == [5, 18]


def test_several_credit_code_problems_are_all_reported() -> None:
    body = "9" + "4" + "999999" + "MA27XK4B" + other_chars("0123456789X", gb11714("MA27XK4B"))[0]
    number = body + other_chars(USCC_CHARS, mod31(body))[0]
    v = check(number)
    assert v.kind is IdentifierKind.ENTERPRISE
    assert sorted(codes(v), key=lambda c: c.value) == [
        ProblemCode.BAD_CHECK_CHARACTER,
        ProblemCode.UNKNOWN_REGION,
        ProblemCode.BAD_ORGANIZATION_CODE,
        ProblemCode.UNKNOWN_ENTITY_TYPE,
    ]
    with_bad_chars = check("B" + "1" + "33O106" + "MA27XK4I" + "0" + "Y")
    assert sorted(codes(with_bad_chars), key=lambda c: c.value) == [
        ProblemCode.BAD_CHARACTER,
        ProblemCode.BAD_CHARACTER,
        ProblemCode.UNKNOWN_REGISTRATION_AUTHORITY,
    ]
    assert [p.position for p in with_bad_chars.problems if p.code is ProblemCode.BAD_CHARACTER] == [
        5,
        16,
    ]


# --------------------------------------------------------------------------------------------
# Which kind an identifier is read as


def test_all_digit_credit_codes_are_read_as_credit_codes() -> None:
    """About a third of credit codes with a numeric organisation code look like resident numbers."""
    rng = random.Random(9)
    seen = 0
    while seen < 200:
        body = f"{rng.randrange(10**8):08d}"
        number = credit_code(rng.choice("123456789"), "1", rng.choice(sorted(ENTERPRISE_REGIONS)), body)
        if not (number[:17].isdigit() and number[17] in "0123456789X"):
            continue
        seen += 1
        v = check(number)
        assert v.valid and v.kind is IdentifierKind.ENTERPRISE, (number, v.problems)


def test_a_typo_in_an_all_digit_credit_code_is_reported_as_a_credit_code_problem() -> None:
    body = "9133010612345678" + gb11714("12345678")
    right = body + mod31(body)
    assert right.isdigit() or right[:17].isdigit()
    wrong = right[:-1] + next(c for c in "0123456789" if c != right[-1])
    v = check(wrong)
    assert v.kind is IdentifierKind.ENTERPRISE
    assert codes(v) == [ProblemCode.BAD_CHECK_CHARACTER]


@pytest.mark.parametrize("length", [1, 2, 6, 10, 14, 16, 17, 19, 20, 32, 64])
def test_wrong_lengths(length: int) -> None:
    value = ("330106199003071236" * 4)[:length]
    v = check(value)
    assert v.kind is None
    assert codes(v) == [ProblemCode.WRONG_LENGTH]
    assert str(length) in v.problems[0].message
    assert v.normalized == value


def test_wrong_length_also_reports_characters_of_no_alphabet() -> None:
    v = check("3301#619900307123")
    assert v.kind is None
    assert [(p.code, p.position) for p in v.problems] == [
        (ProblemCode.WRONG_LENGTH, 0),
        (ProblemCode.BAD_CHARACTER, 5),
    ]


# --------------------------------------------------------------------------------------------
# Normalisation and malformed requests


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("３３０１０６１９９００３０７１２３６", "330106199003071236"),
        ("330106 19900307 1236", "330106199003071236"),
        (" 330106-19900307-1236 ", "330106199003071236"),
        ("330106\u00a019900307\u3000123\t6\n", "330106199003071236"),
        ("330106\u200b1990\u20130307\u2212123\ufeff6", "330106199003071236"),
        ("330106－19900307－1236", "330106199003071236"),
        ("33010619900307123x", "33010619900307123X"),
        ("33010619900307123ｘ", "33010619900307123X"),
        ("９１１１００００６０００３７３４１ｌ", "91110000600037341L"),
        ("9111-0000-6000-3734-1l", "91110000600037341L"),
        ("330106/1990", "330106/1990"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_spaces_full_width_digits_and_lower_case_x_are_accepted_not_rejected() -> None:
    seq = find_sequences_for_every_check("330106", "19900307")["X"]
    number = resident("330106", "19900307", seq)
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in number[:-1]) + "ｘ"
    spaced = f" {number[:6]} {number[6:14]} {number[14:].lower()} "
    for raw in (full_width, spaced, number.lower(), "\u3000" + number + "\u00a0"):
        v = check(raw)
        assert v.valid and v.normalized == number, raw


@pytest.mark.parametrize("raw", ["", " ", "\u3000\u00a0", "- - -", "\u200b"])
def test_empty_identifier_is_a_malformed_request(raw: str) -> None:
    with pytest.raises(MalformedRequest) as caught:
        validate_identifier(raw, TODAY)
    assert caught.value.field == "identifier"
    assert "identifier" in str(caught.value) and "empty" in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("raw", ["1" * 65, " " * 65, "330106199003071236" + " " * 47, "x" * 1000])
def test_absurdly_long_identifier_is_a_malformed_request(raw: str) -> None:
    with pytest.raises(MalformedRequest) as caught:
        validate_identifier(raw, TODAY)
    assert caught.value.field == "identifier"
    assert "identifier" in str(caught.value) and str(len(raw)) in str(caught.value)
    assert raw.strip() not in str(caught.value) or not raw.strip()


def test_sixty_four_characters_are_still_a_request() -> None:
    raw = "330106199003071236".center(64)
    assert len(raw) == 64
    assert check(raw).valid
    assert check("1" * 64).problems[0].code is ProblemCode.WRONG_LENGTH


# --------------------------------------------------------------------------------------------
# Masking


def test_masking() -> None:
    assert mask("330106199003071236") == "330106********1236"
    assert mask("33010619900307123X") == "330106********123X"
    assert mask("91110000600037341L") == "911100********341L"
    assert mask("330106900307123") == "330106******123"
    assert mask("12345") == "*****"
    assert mask("") == ""
    for number, *_ in generated_residents(50, seed=2):
        masked = check(number).masked
        assert masked == number[:6] + "********" + number[-4:]
        assert number[6:14] not in masked  # the birth date never shows
    for number, *_ in generated_credit_codes(50, seed=3):
        assert check(number).masked == number[:6] + "********" + number[-4:]


def test_invalid_identifiers_have_no_masked_form() -> None:
    assert check("330106199003071230").masked == ""
    assert check("12345").masked == ""


# --------------------------------------------------------------------------------------------
# Pseudonyms

KEY = b"test-key-0123456789abcdef"
OTHER_KEY = b"another-key-0123456789abc"


def test_pseudonym_format_is_documented_and_stable() -> None:
    number = resident("330106", "19900307", 123)
    message = b"govmesh.subject.v1\x00resident\x00" + number.encode()
    expected = "sub_" + base64.b32encode(hmac.new(KEY, message, hashlib.sha256).digest()).decode().rstrip("=").lower()
    assert subject_pseudonym(KEY, IdentifierKind.RESIDENT, number) == expected
    assert subject_pseudonym(KEY, IdentifierKind.RESIDENT, number) == expected


def test_pseudonyms_are_fixed_length_keyed_and_do_not_reveal_the_identifier() -> None:
    seen: set[str] = set()
    samples = [(IdentifierKind.RESIDENT, n) for n, *_ in generated_residents(200, seed=5)]
    samples += [(IdentifierKind.ENTERPRISE, n) for n, *_ in generated_credit_codes(200, seed=6)]
    for kind, number in samples:
        p = subject_pseudonym(KEY, kind, number)
        assert re.fullmatch(r"sub_[a-z2-7]{52}", p)
        assert number.lower() not in p and number[:6] not in p and number[-6:].lower() not in p
        assert p != subject_pseudonym(OTHER_KEY, kind, number)
        seen.add(p)
    assert len(seen) == len(set(samples))
    number = resident("330106", "19900307", 123)
    assert subject_pseudonym(KEY, IdentifierKind.RESIDENT, number) != subject_pseudonym(
        KEY, IdentifierKind.ENTERPRISE, number
    )


def test_legacy_and_converted_numbers_share_a_pseudonym() -> None:
    legacy = check("330106900307123")
    modern = check("330106199003071236")
    assert subject_pseudonym(KEY, IdentifierKind.RESIDENT, legacy.normalized) == subject_pseudonym(
        KEY, IdentifierKind.RESIDENT, modern.normalized
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b"short", "330106199003071236"),
        (b"", "330106199003071236"),
        (KEY, "330106900307123"),
        (KEY, "33010619900307123x"),
        (KEY, " 330106199003071236"),
        (KEY, ""),
    ],
)
def test_pseudonym_refuses_weak_keys_and_unnormalized_identifiers(key: bytes, value: str) -> None:
    with pytest.raises(ValueError):
        subject_pseudonym(key, IdentifierKind.RESIDENT, value)


# --------------------------------------------------------------------------------------------
# Contract and purity


def proto_enum(name: str, prefix: str) -> dict[str, int]:
    text = (REPO / "proto/govmesh/identity/v1/identity.proto").read_text(encoding="utf-8")
    block = re.search(r"enum " + name + r" \{(.*?)\}", text, re.S)
    assert block is not None
    return {m[1]: int(m[2]) for m in re.finditer(prefix + r"(\w+) = (\d+);", block[1]) if m[1] != "UNSPECIFIED"}


def test_enums_match_the_proto_contract() -> None:
    assert {c.name: c.value for c in ProblemCode} == proto_enum("ProblemCode", "PROBLEM_CODE_")
    assert {s.name: s.value for s in Sex} == proto_enum("Sex", "SEX_")
    assert {k.name for k in IdentifierKind} == set(proto_enum("SubjectKind", "SUBJECT_KIND_"))


@pytest.mark.parametrize("path", sorted(Path(domain.__file__).parent.glob("*.py")), ids=lambda p: p.name)
def test_domain_modules_are_pure_and_silent(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            # The package's own modules, and the runtime's plain errors (InvalidArgument).
            if module.startswith("services.identity.domain") or module == "govmesh.errors":
                continue
            imported.add(module.split(".")[0])
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id != "print"
    allowed = {
        "__future__",
        "base64",
        "collections",
        "dataclasses",
        "datetime",
        "enum",
        "functools",  # a memo of region names: pure, no I/O
        "hashlib",
        "hmac",
        "stdnum",
        "unicodedata",
    }
    assert imported <= allowed, imported - allowed
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert not names & {"logging", "logger", "log", "print", "warnings"}


def test_every_problem_code_is_produced_by_some_test_input() -> None:
    produced = {
        code
        for raw in (
            "1234",
            "3301061990030712O6",
            "330106199003071230",
            "330106199002301230",
            resident("330106", "20300101", 1),
            resident("999999", "19900307", 1),
            credit_code(org_check="0" if gb11714("MA27XK4B") != "0" else "1"),
            credit_code(authority="B"),
            credit_code(entity="4"),
        )
        for code in codes(check(raw))
    }
    assert produced == set(ProblemCode)


def test_the_test_suites_people_have_valid_identifiers() -> None:
    from tests.support import people

    today = datetime.date(2026, 11, 27)
    for identifier in people.RAW_IDS:
        assert validate_identifier(identifier, today).valid, identifier
    assert validate_identifier(people.LEGACY_15, today).normalized == people.LEGACY_15_AS_18
    assert not validate_identifier(people.with_wrong_check(people.XU_WEI), today).valid
