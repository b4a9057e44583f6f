"""A deterministic generator of realistic synthetic data for a whole population (standard library only).

``population(n, seed, as_of)`` yields ``n`` subjects of a synthetic Zhejiang: about 95% residents
with valid resident ID numbers (GB 11643) and 5% enterprises with valid unified social credit
codes (GB 32100), each with the records that the province's departments would publish about them
(catalogue.py), at realistic rates: hukou for everyone, education, driving licences with their
violations, accidents and scoring cycles, a few convictions, property titles with mortgages and
deed tax, insurance, city credit scores, enterprise registrations and so on.

Decisions a reader should know:

* Determinism. Subject ``i`` is drawn from ``random.Random(f"{seed}:{i}")`` only, plus the
  identifiers and names of the subjects before it (to keep identifiers unique and to pick an
  enterprise's legal representative among earlier adults). So the same ``(seed, as_of)`` gives
  the same subjects, and ``population(1000)`` is a prefix of ``population(100_000)``.
* Identifiers are unique across the population and never reused: the identifiers of people
  outside it who appear in records (spouses, co-holders of a title, parents) are reserved too,
  so no subject ever gets one. Records never carry a raw identifier: other people appear as
  masked identifiers (``330106********123X``).
* Regions are the current county-level divisions of Zhejiang (GB/T 2260, as python-stdnum's
  cn/loc lists them, copied below so that a library upgrade cannot change the population). A
  division is used only for years after the one it was created in (an ID number issued in 1990
  carries no code created in 2014); a few residents were born in other provinces.
* Dates follow proofs.py: ``effective_from`` is the registration or event date and never lies
  after ``as_of``; records of events and past periods are open-ended; ``effective_to`` is set
  only when a department withdrew or sealed a record (a title that was sold, a sealed juvenile
  conviction), which is rare. Snapshot records (social insurance, provident fund, credit score)
  take effect on the snapshot date, the first day of ``as_of``'s month (a few credit scores a
  month earlier). ``recorded_at`` is a working-hours instant (UTC) on or after ``effective_from``
  and not after ``as_of``.
* ``source_reference`` is ``<department prefix>-<seed tag>-<subject index>-<n>``: unique per
  department across the population and stable; the seed tag keeps two seeds apart in one store.
* health_commission's medical credit defaults are never generated: the health service publishes
  those itself.
"""

from __future__ import annotations

import bisect
import datetime
import hashlib
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from services.records.domain.catalogue import EDUCATION_LEVELS, SubjectKind, Value

__all__ = ["SyntheticRecord", "SyntheticSubject", "population"]

_T = TypeVar("_T")

#: Share of enterprises among the subjects.
ENTERPRISE_SHARE: Final = 0.05

_DAY: Final = datetime.timedelta(days=1)
_HUKOU_REGULATION: Final = datetime.date(1958, 1, 9)  # 户口登记条例: hukou registration starts


@dataclass(frozen=True)
class SyntheticRecord:
    """One department record about a subject, in the shape of a department feed."""

    department_code: str
    record_type: str
    source_reference: str
    fields: dict[str, Value]
    effective_from: datetime.date
    #: Inclusive; None when open-ended (almost always).
    effective_to: datetime.date | None
    #: When the department recorded it (UTC, aware).
    recorded_at: datetime.datetime


@dataclass(frozen=True)
class SyntheticSubject:
    """A resident or an enterprise and every record the departments hold about it."""

    #: A valid, normalized 18-character resident ID number or unified social credit code.
    identifier: str
    #: A Chinese personal name, or the enterprise's registered name.
    display_name: str
    kind: SubjectKind
    records: tuple[SyntheticRecord, ...]


def population(
    subjects: int, seed: int = 2019, as_of: datetime.date = datetime.date(2019, 7, 9)
) -> Iterator[SyntheticSubject]:
    """Yield ``subjects`` synthetic subjects, deterministically (see the module docstring).

    ``as_of`` is the date the data describes: nobody is born and no record takes effect after it.
    """
    if isinstance(subjects, bool) or not isinstance(subjects, int) or subjects < 0:
        raise ValueError("subjects must be a non-negative integer")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError("seed must be an integer")
    if isinstance(as_of, datetime.datetime) or not isinstance(as_of, datetime.date):
        raise TypeError("as_of must be a datetime.date")
    if as_of < datetime.date(1990, 1, 1):
        raise ValueError("as_of must be 1990-01-01 or later")
    world = _World(seed, as_of)
    for index in range(subjects):
        rng = random.Random(f"{seed}:{index}")
        if rng.random() < ENTERPRISE_SHARE:
            yield _Enterprise(world, index, rng).build()
        else:
            yield _Resident(world, index, rng).build()


# --------------------------------------------------------------------------------------------
# Small helpers


class _Weighted(Generic[_T]):
    """Items with weights, drawn with one random number (cumulative weights and bisection)."""

    __slots__ = ("_cumulative", "_items", "_total")

    def __init__(self, pairs: Sequence[tuple[_T, float]]) -> None:
        items: list[_T] = []
        cumulative: list[float] = []
        total = 0.0
        for item, weight in pairs:
            if weight > 0:
                total += weight
                items.append(item)
                cumulative.append(total)
        if not items:
            raise ValueError("nothing to choose from")
        self._items = tuple(items)
        self._cumulative = tuple(cumulative)
        self._total = total

    def pick(self, rng: random.Random) -> _T:
        index = bisect.bisect_right(self._cumulative, rng.random() * self._total)
        return self._items[min(index, len(self._items) - 1)]


def _table(spec: str) -> _Weighted[str]:
    """A weighted table from ``"item:weight item:weight ..."``."""
    pairs = [(item, float(weight)) for item, _, weight in (entry.rpartition(":") for entry in spec.split())]
    return _Weighted(pairs)


def _add_years(day: datetime.date, years: int) -> datetime.date:
    """``day`` moved by whole years; 29 February becomes 28 February in a common year."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def _full_years(start: datetime.date, end: datetime.date) -> int:
    years = end.year - start.year
    if years > 0 and _add_years(start, years) > end:
        years -= 1
    return max(years, 0)


def _months_between(start: datetime.date, end: datetime.date) -> int:
    return max(0, (end.year - start.year) * 12 + end.month - start.month)


def _between(rng: random.Random, low: datetime.date, high: datetime.date) -> datetime.date | None:
    """A day from ``low`` to ``high`` inclusive, uniformly; None when the range is empty."""
    if high < low:
        return None
    return low + datetime.timedelta(days=rng.randint(0, (high - low).days))


def _skewed(rng: random.Random, low: datetime.date, high: datetime.date, power: float) -> datetime.date | None:
    """A day from ``low`` to ``high``; power < 1 favours recent days, > 1 early ones."""
    if high < low:
        return None
    return low + datetime.timedelta(days=round((high - low).days * rng.random() ** power))


def _years_before(day: datetime.date, years: float) -> datetime.date:
    return day - datetime.timedelta(days=round(years * 365.2425))


def _years_after(day: datetime.date, years: float) -> datetime.date:
    return day + datetime.timedelta(days=round(years * 365.2425))


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    limit, product, count = math.exp(-mean), rng.random(), 0
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _round_to(value: float, unit: int) -> int:
    return max(unit, round(value / unit) * unit)


def _mask(identifier: str) -> str:
    """First 6 and last 4 characters kept, the 8 between starred (identity's mask)."""
    return identifier[:6] + "********" + identifier[-4:]


# --------------------------------------------------------------------------------------------
# Identifiers (check characters written from the standards)

_USCC_ALPHABET: Final = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_INDEX: Final = {ch: i for i, ch in enumerate(_USCC_ALPHABET)}
_USCC_WEIGHTS: Final = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORG_WEIGHTS: Final = (3, 7, 9, 10, 5, 8, 4, 2)
_RESIDENT_WEIGHTS: Final = tuple(pow(2, 17 - i, 11) for i in range(17))


def _resident_check(body17: str) -> str:
    """ISO 7064 MOD 11-2 check character of a resident ID number."""
    total = sum(int(ch) * w for ch, w in zip(body17, _RESIDENT_WEIGHTS, strict=True))
    return "10X98765432"[total % 11]


def _organisation_check(body8: str) -> str:
    """GB 11714 check character of an organisation code."""
    check = 11 - sum(int(ch, 36) * w for ch, w in zip(body8, _ORG_WEIGHTS, strict=True)) % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def _uscc_check(body17: str) -> str:
    """GB 32100 MOD 31 check character of a unified social credit code."""
    total = sum(_USCC_INDEX[ch] * w for ch, w in zip(body17, _USCC_WEIGHTS, strict=True))
    return _USCC_ALPHABET[(31 - total % 31) % 31]


# --------------------------------------------------------------------------------------------
# Regions: current county-level divisions of Zhejiang (code, name, year created; 0 = before 1980)

_CITIES: Final[dict[str, tuple[str, float]]] = {
    # city code: (name, resident population in 2019, 10,000s)
    "330100": ("杭州市", 1036),
    "330200": ("宁波市", 854),
    "330300": ("温州市", 930),
    "330400": ("嘉兴市", 480),
    "330500": ("湖州市", 303),
    "330600": ("绍兴市", 505),
    "330700": ("金华市", 562),
    "330800": ("衢州市", 221),
    "330900": ("舟山市", 117),
    "331000": ("台州市", 615),
    "331100": ("丽水市", 221),
}

_COUNTIES: Final[tuple[tuple[str, str, int], ...]] = (
    ("330102", "上城区", 1983),
    ("330105", "拱墅区", 1983),
    ("330106", "西湖区", 1983),
    ("330108", "滨江区", 1996),
    ("330109", "萧山区", 2001),
    ("330110", "余杭区", 2001),
    ("330111", "富阳区", 2014),
    ("330112", "临安区", 2017),
    ("330122", "桐庐县", 0),
    ("330127", "淳安县", 0),
    ("330182", "建德市", 1992),
    ("330203", "海曙区", 1983),
    ("330205", "江北区", 1983),
    ("330206", "北仑区", 1987),
    ("330211", "镇海区", 1985),
    ("330212", "鄞州区", 2002),
    ("330213", "奉化区", 2016),
    ("330225", "象山县", 1983),
    ("330226", "宁海县", 1983),
    ("330281", "余姚市", 1989),
    ("330282", "慈溪市", 1989),
    ("330302", "鹿城区", 1984),
    ("330303", "龙湾区", 1984),
    ("330304", "瓯海区", 1992),
    ("330305", "洞头区", 2015),
    ("330324", "永嘉县", 1981),
    ("330326", "平阳县", 1981),
    ("330327", "苍南县", 1981),
    ("330328", "文成县", 1981),
    ("330329", "泰顺县", 1981),
    ("330381", "瑞安市", 1989),
    ("330382", "乐清市", 1993),
    ("330383", "龙港市", 2019),
    ("330402", "南湖区", 2005),
    ("330411", "秀洲区", 1999),
    ("330421", "嘉善县", 1983),
    ("330424", "海盐县", 1983),
    ("330481", "海宁市", 1989),
    ("330482", "平湖市", 1991),
    ("330483", "桐乡市", 1993),
    ("330502", "吴兴区", 2003),
    ("330503", "南浔区", 2003),
    ("330521", "德清县", 1983),
    ("330522", "长兴县", 1983),
    ("330523", "安吉县", 1983),
    ("330602", "越城区", 1983),
    ("330603", "柯桥区", 2013),
    ("330604", "上虞区", 2013),
    ("330624", "新昌县", 1983),
    ("330681", "诸暨市", 1989),
    ("330683", "嵊州市", 1995),
    ("330702", "婺城区", 1985),
    ("330703", "金东区", 2000),
    ("330723", "武义县", 1985),
    ("330726", "浦江县", 1985),
    ("330727", "磐安县", 1985),
    ("330781", "兰溪市", 1989),
    ("330782", "义乌市", 1989),
    ("330783", "东阳市", 1989),
    ("330784", "永康市", 1992),
    ("330802", "柯城区", 1985),
    ("330803", "衢江区", 2001),
    ("330822", "常山县", 1985),
    ("330824", "开化县", 1985),
    ("330825", "龙游县", 1985),
    ("330881", "江山市", 1989),
    ("330902", "定海区", 1987),
    ("330903", "普陀区", 1987),
    ("330921", "岱山县", 1987),
    ("330922", "嵊泗县", 1987),
    ("331002", "椒江区", 1994),
    ("331003", "黄岩区", 1994),
    ("331004", "路桥区", 1994),
    ("331022", "三门县", 1994),
    ("331023", "天台县", 1994),
    ("331024", "仙居县", 1994),
    ("331081", "温岭市", 1994),
    ("331082", "临海市", 1994),
    ("331083", "玉环市", 2017),
    ("331102", "莲都区", 2000),
    ("331121", "青田县", 2000),
    ("331122", "缙云县", 2000),
    ("331123", "遂昌县", 2000),
    ("331124", "松阳县", 2000),
    ("331125", "云和县", 2000),
    ("331126", "庆元县", 2000),
    ("331127", "景宁畲族自治县", 2000),
    ("331181", "龙泉市", 2000),
)

#: Birth regions of residents born in other provinces (divisions unchanged since the 1980s).
_ELSEWHERE: Final = (
    "320102",  # 江苏省 南京市 玄武区
    "350102",  # 福建省 福州市 鼓楼区
    "360102",  # 江西省 南昌市 东湖区
    "360302",  # 江西省 萍乡市 安源区
    "370102",  # 山东省 济南市 历下区
    "410105",  # 河南省 郑州市 金水区
    "420106",  # 湖北省 武汉市 武昌区
    "430102",  # 湖南省 长沙市 芙蓉区
    "430602",  # 湖南省 岳阳市 岳阳楼区
    "511102",  # 四川省 乐山市 市中区
    "520102",  # 贵州省 贵阳市 南明区
    "610102",  # 陕西省 西安市 新城区
)

_COUNTY_NAMES: Final = {code: name for code, name, _ in _COUNTIES}


def _city_of(region: str) -> str:
    return region[:4] + "00"


def _city_name(region: str) -> str:
    return _CITIES[_city_of(region)][0]


def _is_district(region: str) -> bool:
    return _COUNTY_NAMES[region].endswith("区")


def _local_name(region: str) -> str:
    """How local offices are named: 杭州市西湖区, but 诸暨市 or 桐庐县."""
    name = _COUNTY_NAMES[region]
    return _city_name(region) + name if name.endswith("区") else name


def _registration_place(region: str) -> str:
    """The registration authority of a title certificate: the city for a district."""
    return _city_name(region) if _is_district(region) else _COUNTY_NAMES[region]


_REGION_TABLES: dict[tuple[int, bool], _Weighted[str]] = {}


def _regions(year: int, *, economy: bool = False) -> _Weighted[str]:
    """County codes existing before ``year``, weighted by their city's population (or economy)."""
    key = (year, economy)
    table = _REGION_TABLES.get(key)
    if table is None:
        codes = [code for code, _, start in _COUNTIES if start < year]
        per_city: dict[str, int] = {}
        for code in codes:
            per_city[_city_of(code)] = per_city.get(_city_of(code), 0) + 1
        pairs: list[tuple[str, float]] = []
        for code in codes:
            weight = _CITIES[_city_of(code)][1] / per_city[_city_of(code)]
            if economy:
                weight *= _ECONOMY.get(_city_of(code), 1.0) * (1.3 if _is_district(code) else 1.0)
            pairs.append((code, weight))
        table = _Weighted(pairs)
        _REGION_TABLES[key] = table
    return table


# Enterprises per head relative to the province (Hangzhou, Ningbo, Wenzhou, Jinhua-Yiwu lead).
_ECONOMY: Final = {"330100": 1.5, "330200": 1.3, "330300": 1.2, "330700": 1.2, "330800": 0.7, "331100": 0.7}

# Average price of a new home in 2019 (yuan per m²) by city.
_HOME_PRICE: Final = {
    "330100": 28000,
    "330200": 19000,
    "330300": 21000,
    "330400": 13000,
    "330500": 11000,
    "330600": 13000,
    "330700": 13000,
    "330800": 9000,
    "330900": 14000,
    "331000": 13000,
    "331100": 10000,
}


def _home_price(region: str, day: datetime.date) -> float:
    """Yuan per m² in ``region`` on ``day``: 2019 prices, about 9% lower per year before."""
    factor = max(0.12, 1.09 ** (day.year - 2019 + (day.month - 7) / 12))
    return float(_HOME_PRICE[_city_of(region)] * min(factor, 1.3))


# --------------------------------------------------------------------------------------------
# Names

_SURNAMES: Final = _table(
    "王:7.5 陈:7.0 张:5.0 李:4.5 吴:3.8 徐:3.3 周:3.0 刘:2.6 朱:2.3 杨:2.1 黄:2.0 林:1.9 胡:1.8 金:1.7 "
    "郑:1.6 叶:1.5 沈:1.4 何:1.2 俞:1.1 钱:1.0 方:1.0 孙:1.0 蒋:0.9 潘:0.9 章:0.8 赵:0.8 施:0.7 汪:0.7 "
    "许:0.7 应:0.6 冯:0.6 董:0.6 蔡:0.6 邵:0.5 邱:0.5 毛:0.5 傅:0.5 马:0.5 郭:0.5 高:0.5 谢:0.5 丁:0.5 "
    "姚:0.5 卢:0.5 余:0.5 楼:0.4 任:0.4 程:0.4 罗:0.4 袁:0.4 洪:0.4 夏:0.4 戴:0.4 严:0.4 范:0.4 唐:0.4 "
    "钟:0.3 葛:0.3 杜:0.3 韩:0.3 倪:0.3 姜:0.3 顾:0.3 宋:0.3 梁:0.3 曹:0.3 鲍:0.2 屠:0.2 虞:0.2 孔:0.2 "
    "柳:0.2 骆:0.2 孟:0.2 詹:0.2 季:0.2 裘:0.1 庞:0.1 欧阳:0.05 诸葛:0.03 上官:0.02 司马:0.01"
)

# Given-name characters by generation and sex: (born before 1965, 1965-1989, 1990 on).
_GIVEN: Final = {
    (0, True): "建国庆德福根荣金林法明华兴水才永有生海忠祥宝炳云伟成昌良志新发文土",
    (0, False): "秀英桂美华凤珍兰芳素彩月娥菊梅琴仙花翠玉娟萍香莲妹云霞爱",
    (1, True): "伟强军杰磊涛明超勇斌鹏俊刚峰辉建华平东海波飞锋晓剑文毅荣亮军斌健",
    (1, False): "芳娜敏静丽艳娟霞燕玲婷雪慧佳琳红晓颖倩萍洁丹蕾青琴英微珊",
    (2, True): "浩宇轩子博文睿泽航一凡天佑嘉豪俊杰晨阳奕铭煜宸皓承逸哲昊辰",
    (2, False): "欣怡悦萱涵梓雨诗琪可馨妍若语思佳瑶心沐依诺梦婉彤晴妤",
}


def _person_name(rng: random.Random, birth_year: int, male: bool) -> str:
    era = 0 if birth_year < 1965 else 1 if birth_year < 1990 else 2
    pool = _GIVEN[(era, male)]
    single = 0.35 if 1975 <= birth_year < 2005 else 0.15
    if rng.random() < single:
        given = rng.choice(pool)
    else:
        first = rng.choice(pool)
        second = rng.choice(pool)
        if second == first and (male or rng.random() < 0.7):
            second = rng.choice(pool.replace(first, ""))
        given = first + second
    return _SURNAMES.pick(rng) + given


_BRAND_CHARS: Final = (
    "华信达恒通宏盛鑫源博泰中金瑞天新海联安远隆兴正创宇汇嘉东德富明丰和合佳凯永润晟诚绿益康美卓越力顺昌辰星光立科亿鼎"
)


def _brand(rng: random.Random) -> str:
    first, second = rng.sample(_BRAND_CHARS, 2)
    return first + second


# --------------------------------------------------------------------------------------------
# Institutions

_PRIMARY_NAMES: Final = ("实验小学", "第一小学", "第二小学", "第三小学", "中心小学", "城关小学", "育才小学", "新华小学")
_JUNIOR_NAMES: Final = ("第一初级中学", "第二初级中学", "实验中学", "城关中学", "育英中学", "第四中学")
_SENIOR_NAMES: Final = ("第一中学", "第二中学", "第三中学", "高级中学", "实验中学", "第四中学")
_VOCATIONAL_NAMES: Final = ("职业技术学校", "职业高级中学", "中等专业学校", "职业教育中心")
_COLLEGES: Final = (
    "浙江金融职业学院", "浙江机电职业技术学院", "金华职业技术学院", "宁波职业技术学院", "温州职业技术学院",
    "杭州职业技术学院", "浙江经济职业技术学院", "浙江工商职业技术学院", "义乌工商职业技术学院",
    "浙江交通职业技术学院", "浙江旅游职业学院", "浙江医药高等专科学校", "台州职业技术学院",
    "嘉兴职业技术学院", "湖州职业技术学院", "衢州职业技术学院", "丽水职业技术学院", "绍兴职业技术学院",
    "浙江建设职业技术学院", "浙江商业职业技术学院",
)  # fmt: skip
_UNIVERSITIES: Final = _table(
    "浙江大学:4 浙江工业大学:5 浙江师范大学:4 宁波大学:4 杭州电子科技大学:4 浙江理工大学:4 浙江工商大学:4 "
    "中国计量大学:3 浙江财经大学:3 温州医科大学:3 浙江中医药大学:2 浙江农林大学:3 杭州师范大学:3 "
    "绍兴文理学院:3 湖州师范学院:2 台州学院:2 嘉兴学院:2 丽水学院:1 浙江海洋大学:2 温州大学:3 浙江科技学院:2 "
    "浙江传媒学院:1 浙江万里学院:2 浙江外国语学院:1 宁波工程学院:1 衢州学院:1 中国美术学院:1 复旦大学:0.5 "
    "上海交通大学:0.5 同济大学:0.5 华东师范大学:0.5 南京大学:0.4 东南大学:0.4 武汉大学:0.4 华中科技大学:0.4 "
    "厦门大学:0.3 北京大学:0.2 清华大学:0.2"
)
_GRADUATE_SCHOOLS: Final = _table(
    "浙江大学:10 浙江工业大学:3 浙江师范大学:2 宁波大学:2 杭州电子科技大学:2 浙江工商大学:2 浙江理工大学:1 "
    "温州医科大学:1 复旦大学:1 上海交通大学:1 南京大学:1 同济大学:1 中国科学院大学:1 清华大学:0.5 "
    "北京大学:0.5"
)
_MAJORS: Final = (
    "计算机科学与技术", "软件工程", "电子信息工程", "机械工程", "自动化", "土木工程", "临床医学", "护理学",
    "会计学", "金融学", "国际经济与贸易", "工商管理", "市场营销", "电子商务", "法学", "汉语言文学", "英语",
    "学前教育", "化学工程与工艺", "服装设计与工程", "数学与应用数学", "建筑学",
)  # fmt: skip
_BANKS: Final = (
    "中国工商银行", "中国建设银行", "中国农业银行", "中国银行", "交通银行", "招商银行", "杭州银行", "宁波银行",
    "浙商银行", "中国邮政储蓄银行", "兴业银行", "浙江农商银行",
)  # fmt: skip
_LAW_FIRMS: Final = (
    "浙江天册律师事务所", "浙江六和律师事务所", "国浩律师（杭州）事务所", "浙江京衡律师事务所", "浙江泽大律师事务所",
    "北京大成（杭州）律师事务所", "上海锦天城（杭州）律师事务所", "浙江金道律师事务所", "浙江导司律师事务所",
)  # fmt: skip

_DEPARTMENT_PREFIX: Final = {
    "public_security": "GA",
    "civil_affairs": "MZ",
    "education": "JY",
    "transport": "JT",
    "natural_resources": "ZR",
    "housing": "ZJ",
    "taxation": "SW",
    "market_regulation": "SC",
    "healthcare_security": "YB",
    "health_commission": "WJ",
    "courts": "FY",
    "procuratorate": "JC",
    "credit_center": "XY",
    "human_resources": "RS",
    "justice": "SF",
    "finance": "CZ",
    "ecology_environment": "HJ",
    "agriculture": "NY",
    "commerce": "SH",
    "culture_tourism": "WL",
    "emergency_management": "YJ",
    "veterans_affairs": "TY",
    "provident_fund": "GJJ",
    "big_data_bureau": "DSJ",
    "statistics": "TJ",
}


# --------------------------------------------------------------------------------------------
# The world: what subjects share (reserved identifiers, names, earlier adults)


class _World:
    def __init__(self, seed: int, as_of: datetime.date) -> None:
        self.as_of = as_of
        # Starts with a letter, so it never joins digits around it into an identifier's shape.
        self.tag = "s" + hashlib.sha256(f"govmesh.synthetic:{seed}".encode()).hexdigest()[:5]
        self.month_start = as_of.replace(day=1)
        self.used: set[str] = set()
        self.enterprise_names: set[str] = set()
        #: Masked identifiers of adult residents so far: legal representatives of enterprises.
        self.adults: list[str] = []

    def resident_identifier(
        self, rng: random.Random, region: str, birth: datetime.date, male: bool
    ) -> tuple[str, datetime.date]:
        """A new, unique resident ID number (birth moves back a day in the unlikely event that all
        500 sequence numbers of that sex, region and day are taken)."""
        while True:
            start = rng.randrange(500)
            for step in range(500):
                sequence = 2 * ((start + step) % 500) + (1 if male else 0)
                body = f"{region}{birth:%Y%m%d}{sequence:03d}"
                identifier = body + _resident_check(body)
                if identifier not in self.used:
                    self.used.add(identifier)
                    return identifier, birth
            birth -= _DAY

    def other_person(self, rng: random.Random, born_low: datetime.date, born_high: datetime.date, male: bool) -> str:
        """The masked identifier of a person outside the population (a spouse, a parent); the full
        identifier is reserved so that no subject gets it."""
        high = min(born_high, self.as_of)
        birth = _between(rng, min(born_low, high), high) or high
        year = max(birth.year, 1986)
        region = rng.choice(_ELSEWHERE) if rng.random() < 0.06 else _regions(year).pick(rng)
        identifier, _ = self.resident_identifier(rng, region, birth, male)
        return _mask(identifier)


class _Builder:
    """Collects one subject's records, numbering source references per department."""

    def __init__(self, world: _World, index: int, rng: random.Random) -> None:
        self.world = world
        self.as_of = world.as_of
        self.index = index
        self.rng = rng
        self.records: list[SyntheticRecord] = []
        self._counters: dict[str, int] = {}

    def add(
        self,
        department: str,
        record_type: str,
        fields: dict[str, Value],
        effective_from: datetime.date,
        effective_to: datetime.date | None = None,
    ) -> None:
        if effective_from > self.as_of or (effective_to is not None and effective_to < effective_from):
            raise RuntimeError(f"synthetic {record_type} dated after as_of or ending before it starts")
        number = self._counters.get(department, 0) + 1
        self._counters[department] = number
        rng = self.rng
        roll = rng.random()
        lag = rng.randint(0, 3) if roll < 0.7 else rng.randint(4, 30) if roll < 0.95 else rng.randint(31, 365)
        day = min(effective_from + datetime.timedelta(days=lag), self.as_of)
        # 09:00-17:59 in Asia/Shanghai is 01:00-09:59 UTC: the same calendar day.
        recorded_at = datetime.datetime(
            day.year, day.month, day.day, rng.randint(1, 9), rng.randint(0, 59), rng.randint(0, 59), tzinfo=datetime.UTC
        )
        self.records.append(
            SyntheticRecord(
                department_code=department,
                record_type=record_type,
                source_reference=f"{_DEPARTMENT_PREFIX[department]}-{self.world.tag}-{self.index}-{number}",
                fields=fields,
                effective_from=effective_from,
                effective_to=effective_to,
                recorded_at=recorded_at,
            )
        )

    def court(self, region: str) -> str:
        return _local_name(region) + "人民法院"

    def case_number(self, region: str, year: int, kind: str) -> str:
        return f"({year})浙{region[2:]}{kind}{self.rng.randint(1, 20000)}号"

    def property_unit(self, region: str, collective: bool = False) -> str:
        rng = self.rng
        parcel_kind = "JC" if collective else "GB"
        building = rng.randint(1, 60)
        unit = rng.randint(1, 33) * 100 + rng.randint(1, 6)
        return (
            f"{region}{rng.randint(1, 30):03d}{rng.randint(1, 40):03d}{parcel_kind}"
            f"{rng.randint(1, 99999):05d}F{building:04d}{unit:04d}"
        )


# --------------------------------------------------------------------------------------------
# Residents

# Share of the population by 5-year age band (Zhejiang, 2019-2020): (lowest age, width, weight).
_AGE_BANDS: Final = _Weighted(
    [
        ((low, 6 if low == 90 else 5), weight)
        for low, weight in zip(
            range(0, 95, 5),
            (5.3, 5.5, 4.9, 4.5, 5.6, 8.0, 9.2, 7.8, 7.6, 8.7, 8.6, 6.4, 5.8, 5.2, 3.4, 2.1, 1.4, 0.8, 0.3),
            strict=True,
        )
    ]
)

# level: (usual age at graduation, years of study, the level before it)
_LEVEL_FACTS: Final[dict[str, tuple[int, int, str | None]]] = {
    "primary": (12, 6, None),
    "junior_secondary": (15, 3, "primary"),
    "senior_secondary": (18, 3, "junior_secondary"),
    "vocational": (18, 3, "junior_secondary"),
    "associate": (21, 3, "senior_secondary"),
    "bachelor": (22, 4, "senior_secondary"),
    "master": (25, 3, "bachelor"),
    "doctorate": (29, 4, "master"),
}


def _education_table(birth_year: int) -> _Weighted[str]:
    """Highest level reached by a birth cohort (Zhejiang censuses, roughly): "" is none."""
    if birth_year < 1950:
        weights: tuple[float, ...] = (30, 42, 16, 7, 1, 2, 2, 0, 0)
    elif birth_year < 1960:
        weights = (10, 35, 33, 14, 2, 3, 3, 0, 0)
    elif birth_year < 1970:
        weights = (3, 25, 42, 14, 5, 6, 4.5, 0.5, 0)
    elif birth_year < 1980:
        weights = (1, 12, 44, 14, 8, 10, 9, 1.7, 0.3)
    elif birth_year < 1990:
        weights = (0.5, 5, 35, 13, 11, 15, 17, 3, 0.5)
    else:
        weights = (0.3, 2, 20, 15, 13, 22, 24, 3.2, 0.5)
    return _Weighted(list(zip(("", *EDUCATION_LEVELS), weights, strict=True)))


_EDUCATION_TABLES: Final = {decade: _education_table(decade) for decade in (1940, 1950, 1960, 1970, 1980, 1990)}

_FORMAL_WORK: Final = {
    "": 0.03,
    "primary": 0.15,
    "junior_secondary": 0.35,
    "senior_secondary": 0.55,
    "vocational": 0.6,
    "associate": 0.8,
    "bachelor": 0.9,
    "master": 0.95,
    "doctorate": 0.97,
}

_VIOLATIONS: Final = _Weighted(
    [("illegal_parking", 30), ("speeding", 28), ("red_light", 8), ("phone_use", 6), ("seat_belt", 8), ("other", 12)]
)
# kind: (points, fine in fen or None)
_VIOLATION_PENALTY: Final[dict[str, tuple[int, int | None]]] = {
    "illegal_parking": (0, 15000),
    "speeding": (3, 20000),
    "red_light": (6, 20000),
    "phone_use": (2, 5000),
    "seat_belt": (2, 5000),
    "other": (1, 10000),
    "overloading": (6, 50000),
    "unlicensed_driving": (12, 100000),
    "drink_driving": (12, 150000),
    "drunk_driving": (12, None),
    "drug_driving": (12, None),
    "dangerous_driving": (12, 200000),
    "hit_and_run": (12, None),
}
_REVOKING: Final = frozenset({"drunk_driving", "drug_driving", "hit_and_run"})

# category: (weight, charges, sentences (kind, weight, months low, high))
_OFFENCES: Final[dict[str, tuple[float, tuple[str, ...], tuple[tuple[str, float, int, int], ...]]]] = {
    "property": (
        35,
        ("盗窃罪", "抢夺罪", "掩饰、隐瞒犯罪所得罪"),
        (("fixed_term_imprisonment", 60, 6, 36), ("criminal_detention", 20, 1, 6), ("fine_only", 15, 0, 0),
         ("public_surveillance", 5, 3, 12)),
    ),
    "fraud": (
        18,
        ("诈骗罪", "合同诈骗罪", "信用卡诈骗罪"),
        (("fixed_term_imprisonment", 85, 8, 120), ("criminal_detention", 10, 3, 6), ("fine_only", 5, 0, 0)),
    ),
    "violent": (
        14,
        ("故意伤害罪", "抢劫罪", "故意杀人罪"),
        (("fixed_term_imprisonment", 85, 6, 180), ("criminal_detention", 12, 3, 6), ("life_imprisonment", 3, 0, 0)),
    ),
    "drug": (
        9,
        ("贩卖毒品罪", "容留他人吸毒罪", "非法持有毒品罪"),
        (("fixed_term_imprisonment", 90, 6, 180), ("criminal_detention", 10, 3, 6)),
    ),
    "public_order": (
        12,
        ("寻衅滋事罪", "开设赌场罪", "聚众斗殴罪", "妨害公务罪"),
        (("fixed_term_imprisonment", 70, 6, 36), ("criminal_detention", 20, 1, 6), ("exempted", 10, 0, 0)),
    ),
    "corruption": (
        3,
        ("受贿罪", "贪污罪", "挪用公款罪"),
        (("fixed_term_imprisonment", 90, 12, 180), ("exempted", 10, 0, 0)),
    ),
    "other": (
        9,
        ("非法经营罪", "帮助信息网络犯罪活动罪", "侵犯公民个人信息罪", "非法吸收公众存款罪"),
        (("fixed_term_imprisonment", 70, 6, 60), ("fine_only", 20, 0, 0), ("criminal_detention", 10, 1, 6)),
    ),
}  # fmt: skip
_OFFENCE_TABLE: Final = _Weighted([(category, facts[0]) for category, facts in _OFFENCES.items()])


# Small tables used below.
_MALE_LICENCE_CLASSES: Final = _table("C1:76 C2:4 B2:6 A2:3 A1:1 B1:1.5 D:5 E:1 C3:0.5 A3:0.3")
_RESPONSIBILITY: Final = _table("full:25 main:25 equal:20 secondary:20 none:10")
_NON_PROSECUTION_KINDS: Final = _table("discretionary:60 evidentiary:20 statutory:10 conditional:10")
_CIVIL_CAUSES: Final = _table("loan:35 contract:25 family:15 labour:10 tort:10 property:3 other:2")
_TITLE_USAGE: Final = _table("residential:70 other:18 commercial:8 office:4")
_LAND_USE: Final = _table("arable:70 forest:15 aquaculture:5 grassland:1 other:9")
_SPECIAL_OPERATIONS: Final = _table(
    "electrician:40 welding:30 working_at_height:15 refrigeration:5 hazardous_chemicals:5 other:5"
)
_GUIDE_LANGUAGES: Final = _table("en:70 ja:12 ko:10 fr:4 de:4")
_GUIDE_LEVELS: Final = _table("junior:80 intermediate:15 senior:4 special:1")
_PRACTICE_KINDS: Final = _table("full_time:88 part_time:4 corporate:5 public:3")
_NOTARIZATIONS_OLD: Final = _table("inheritance:40 property:25 power_of_attorney:20 other:15")
_NOTARIZATIONS_YOUNG: Final = _table("kinship:35 power_of_attorney:25 contract:20 property:10 inheritance:5 other:5")
_ENTITY_TYPES: Final = _table(
    "limited_liability_company:82 joint_stock_company:3 sole_proprietorship:4 partnership:4 foreign_invested:3 branch:4"
)
_ABNORMAL_REASONS: Final = _table("annual_report_missing:70 unreachable_address:25 false_disclosure:3 other:2")
_TAX_RATINGS: Final = _table("A:15 B:45 M:30 C:7 D:3")
_PERMIT_CLASSES: Final = _table("key:10 simplified:35 registration:55")
_SIZE_CLASSES: Final = _table("micro:75 small:20 medium:4 large:1")
_COMPANY_CAUSES: Final = _table("contract:60 loan:20 labour:15 tort:5")
_PLACEMENT_OLD: Final = _table("job_arranged:60 self_employed:25 retired:10 supported:5")
_PLACEMENT: Final = _table("job_arranged:20 self_employed:75 retired:3 supported:2")
_TITLE_COUNT: Final = _Weighted([(1, 70.0), (2, 22.0), (3, 6.0), (4, 2.0)])


@dataclass
class _Title:
    unit: str
    region: str
    usage: str
    area_m2: float
    acquired_on: datetime.date
    price_yuan: int
    sold_on: datetime.date | None
    homestead: bool


class _Resident(_Builder):
    def build(self) -> SyntheticSubject:
        rng, as_of, world = self.rng, self.as_of, self.world
        self.male = rng.random() < 0.515
        low, width = _AGE_BANDS.pick(rng)
        birth = _years_before(as_of, low + rng.random() * width)
        if _full_years(birth, as_of) > 95:
            birth = _add_years(as_of, -96) + _DAY
        born_elsewhere = rng.random() < 0.05
        id_year = max(birth.year, 1986)
        if born_elsewhere:
            birth_region = _ELSEWHERE[rng.randrange(len(_ELSEWHERE))]
        else:
            birth_region = _regions(id_year).pick(rng)
        self.identifier, birth = world.resident_identifier(rng, birth_region, birth, self.male)
        self.birth = birth
        self.age = _full_years(birth, as_of)
        self.masked = _mask(self.identifier)
        self.name = _person_name(rng, birth.year, self.male)
        self.adult_on = _add_years(birth, 18)

        self.fund_opened: datetime.date | None = None
        self.serious_driving = False
        self.titles: list[_Title] = []
        self._hukou(birth_region, born_elsewhere)
        self.rural = rng.random() < (0.15 if _is_district(self.region) else 0.5)
        self._education()
        self._work()
        self._marriages()
        self._insurance()
        self.criminal = False
        self.dishonest = False
        self.drunk = False
        self.enforced_on: tuple[datetime.date, str] | None = None
        if self.age >= 16:
            self._driving()
            self._crime()
            self._courts()
            self._property()
            self._other_records()
        if self.age >= 18:
            self._credit_score()
        if self.age >= 20 and self.age <= 75:
            world.adults.append(self.masked)
        return SyntheticSubject(self.identifier, self.name, SubjectKind.RESIDENT, tuple(self.records))

    # hukou ------------------------------------------------------------------------------------

    def _hukou(self, birth_region: str, born_elsewhere: bool) -> None:
        rng, as_of = self.rng, self.as_of
        current = _regions(as_of.year)
        fields: dict[str, Value]
        moved_on: datetime.date | None = None
        if born_elsewhere:
            region = current.pick(rng)
            moved_on = _between(rng, self.adult_on if self.age >= 18 else self.birth, as_of) or self.birth
        elif self.age >= 18 and rng.random() < 0.28:
            region = current.pick(rng)
            if region != birth_region:
                moved_on = _between(rng, self.adult_on, as_of)
        else:
            region = birth_region
        self.region = region
        self.city = _city_of(region)
        # Where the resident lived before the hukou moved (schools, an early marriage).
        self.earlier_region = birth_region if birth_region in _COUNTY_NAMES else region
        self.moved_on = moved_on if region != birth_region else None
        if moved_on is not None and region != birth_region:
            since = moved_on
        else:
            since = max(self.birth, _HUKOU_REGULATION)
        collective = rng.random() < (0.12 if 18 <= self.age <= 24 else 0.03)
        fields = {
            "region_code": region,
            "registered_since": since,
            "household_type": "collective" if collective else "family",
        }
        if not collective:
            fields["relationship_to_head"] = self._relationship()
        if moved_on is not None and region != birth_region:
            fields["moved_from_region_code"] = birth_region
        self.add("public_security", "household_registration", fields, since)

    def region_on(self, day: datetime.date) -> str:
        """The county the resident lived in on ``day`` (as far as the hukou tells)."""
        return self.earlier_region if self.moved_on is not None and day < self.moved_on else self.region

    def _relationship(self) -> str:
        rng, age = self.rng, self.age
        roll = rng.random()
        if age < 18:
            return "child" if roll < 0.9 else "grandchild"
        if age < 25:
            return "child" if roll < 0.8 else "head" if roll < 0.9 else "spouse"
        if age < 60:
            head = 0.7 if self.male else 0.3
            return "head" if roll < head else "spouse" if roll < 0.9 else "child" if roll < 0.98 else "other"
        return "head" if roll < 0.55 else "spouse" if roll < 0.85 else "parent"

    # education --------------------------------------------------------------------------------

    def _graduation(self, level: str) -> datetime.date:
        rng = self.rng
        age, _, _ = _LEVEL_FACTS[level]
        delay = 0 if rng.random() < 0.8 else 1 if rng.random() < 0.75 else 2
        if self.birth.month >= 9:
            delay += 1
        return datetime.date(self.birth.year + age + delay, 6 if rng.random() < 0.7 else 7, rng.randint(1, 30))

    def _education(self) -> None:
        rng, as_of = self.rng, self.as_of
        decade = min(max(self.birth.year // 10 * 10, 1940), 1990)
        level: str | None = _EDUCATION_TABLES[decade].pick(rng) or None
        graduated_on: datetime.date | None = None
        while level is not None:
            graduated_on = self._graduation(level)
            if graduated_on <= as_of:
                break
            level = _LEVEL_FACTS[level][2]
        self.level = level or ""
        self.graduated_on = graduated_on if level else None
        self.lawyer = False
        if level is None or graduated_on is None:
            return
        if level in ("bachelor", "master", "doctorate") and 24 <= self.age <= 65 and rng.random() < 0.004:
            self.lawyer = True
        roll = rng.random()
        completion = "withdrew" if roll < 0.02 else "completed" if roll < 0.045 else "graduated"
        self._education_record(level, graduated_on, completion)
        if completion == "graduated" and level not in ("master", "doctorate"):
            return
        # The level below too: a doctor's master and bachelor, a master's bachelor, or the level
        # before one that was not completed with graduation.
        while (previous := _LEVEL_FACTS[level][2]) is not None:
            years = _LEVEL_FACTS[level][1] + (1 if rng.random() < 0.2 else 0)
            earlier = datetime.date(graduated_on.year - years, 6, rng.randint(20, 30))
            self._education_record(previous, earlier, "graduated")
            if previous != "master":
                break
            level, graduated_on = previous, earlier

    def _education_record(self, level: str, graduated_on: datetime.date, completion: str) -> None:
        rng = self.rng
        _, years, _ = _LEVEL_FACTS[level]
        if level == "doctorate":
            years += rng.randint(-1, 1)
        enrolled_on = datetime.date(graduated_on.year - years, 9, 1)
        place = self.region_on(graduated_on)
        if level == "primary":
            institution = _local_name(place) + rng.choice(_PRIMARY_NAMES)
        elif level == "junior_secondary":
            institution = _local_name(place) + rng.choice(_JUNIOR_NAMES)
        elif level == "senior_secondary":
            institution = _local_name(place) + rng.choice(_SENIOR_NAMES)
        elif level == "vocational":
            institution = _local_name(place) + rng.choice(_VOCATIONAL_NAMES)
        elif level == "associate":
            institution = rng.choice(_COLLEGES)
        elif level == "bachelor":
            institution = _UNIVERSITIES.pick(rng)
        else:
            institution = _GRADUATE_SCHOOLS.pick(rng)
        fields: dict[str, Value] = {"level": level, "institution": institution}
        if level in ("associate", "bachelor", "master", "doctorate"):
            fields["major"] = "法学" if self.lawyer else rng.choice(_MAJORS)
            adult_education = graduated_on.year < 2000 and rng.random() < 0.3
            fields["study_mode"] = (
                rng.choice(("part_time", "self_study", "distance")) if adult_education else "full_time"
            )
        fields["enrolled_on"] = enrolled_on
        fields["graduated_on"] = graduated_on
        fields["completion"] = completion
        self.add("education", "education_record", fields, graduated_on)

    # work -------------------------------------------------------------------------------------

    def _work(self) -> None:
        rng, as_of = self.rng, self.as_of
        self.formal = False
        self.work_start: datetime.date | None = None
        retire_age = 60 if self.male else (55 if rng.random() < 0.5 else 50)
        self.retire_on = _add_years(self.birth, retire_age)
        self.retired = self.retire_on <= as_of
        if self.age < 18:
            return
        probability = _FORMAL_WORK[self.level] * (0.6 if self.rural else 1.0)
        if rng.random() >= probability:
            return
        start = self.graduated_on or self.adult_on
        start = max(start, self.adult_on) + datetime.timedelta(days=rng.randint(20, 400))
        if start > min(as_of, self.retire_on):
            return
        self.formal = True
        self.work_start = start
        self.work_region = self.region if rng.random() < 0.75 else _regions(as_of.year, economy=True).pick(rng)
        base = {"doctorate": 22000, "master": 16000, "bachelor": 11000, "associate": 8000}.get(self.level, 6000)
        self.salary = _round_to(base * rng.lognormvariate(0, 0.35), 100)

    # marriage ---------------------------------------------------------------------------------

    def _marriages(self) -> None:
        rng, as_of = self.rng, self.as_of
        self.spouse: str | None = None
        self.married_on: datetime.date | None = None
        legal = 22 if self.male else 20
        if self.age < legal:
            return
        share = (0, 0.15, 0.5, 0.82, 0.9, 0.95)[min(5, max(0, (self.age - 20) // 5))]
        if rng.random() >= share:
            return
        offset = rng.gammavariate(2.0, 2.2)
        if legal + offset > self.age:
            offset = rng.random() * (self.age - legal)
        married_on = max(_years_after(_add_years(self.birth, legal), offset), datetime.date(1950, 5, 1))
        married_on = min(married_on, as_of)
        registry = _local_name(self.region_on(married_on)) + "民政局婚姻登记处"
        spouse = self._spouse(married_on)
        self.add(
            "civil_affairs",
            "marriage_registration",
            {"event": "marriage", "registered_on": married_on, "spouse": spouse, "registry": registry},
            married_on,
        )
        self.spouse, self.married_on = spouse, married_on
        if rng.random() < 0.12:
            divorced_on = _between(rng, married_on + datetime.timedelta(days=365), as_of)
            if divorced_on is None:
                return
            self.add(
                "civil_affairs",
                "marriage_registration",
                {"event": "divorce", "registered_on": divorced_on, "spouse": spouse, "registry": registry},
                divorced_on,
            )
            self.spouse, self.married_on = None, None
            if rng.random() < 0.5:
                again = _between(rng, divorced_on + datetime.timedelta(days=180), as_of)
                if again is None:
                    return
                spouse = self._spouse(again)
                self.add(
                    "civil_affairs",
                    "marriage_registration",
                    {"event": "remarriage", "registered_on": again, "spouse": spouse, "registry": registry},
                    again,
                )
                self.spouse, self.married_on = spouse, again

    def _spouse(self, married_on: datetime.date) -> str:
        rng = self.rng
        gap = rng.gauss(2.0, 2.5) * (1 if self.male else -1)
        born = _years_after(self.birth, gap)
        legal = 20 if self.male else 22  # the spouse's
        latest = _add_years(married_on, -legal)
        born = min(born, latest)
        return self.world.other_person(rng, born, born, not self.male)

    # insurance --------------------------------------------------------------------------------

    def _insurance(self) -> None:
        rng, as_of = self.rng, self.as_of
        if rng.random() < 0.95:
            if self.formal and self.work_start is not None:
                scheme = "employee"
                since = max(self.work_start, datetime.date(1999, 1, 1))
                region = self.work_region
            else:
                scheme = "resident"
                since = max(
                    self.birth + datetime.timedelta(days=rng.randint(10, 120)),
                    _between(rng, datetime.date(2003, 1, 1), datetime.date(2008, 12, 31)) or self.birth,
                )
                region = self.region
            if since <= as_of:
                roll = rng.random()
                status = "active" if roll < 0.97 else "suspended" if roll < 0.99 else "ended"
                self.add(
                    "healthcare_security",
                    "medical_insurance_enrolment",
                    {"scheme": scheme, "enrolled_since": since, "status": status, "insured_region": region},
                    since,
                )
        if self.age < 18:
            return
        if self.formal and self.work_start is not None:
            kinds: tuple[str, ...] = ("pension", "unemployment", "work_injury", "maternity")
            region = self.work_region
            start = self.work_start
        elif not self.retired and rng.random() < 0.3:
            kinds = ("pension",)  # flexible employment: pension only
            region = self.region
            start = _between(rng, max(self.adult_on, datetime.date(2005, 1, 1)), as_of) or as_of
        else:
            return
        since = max(start, datetime.date(1995, 1, 1))
        if since > as_of:
            return
        end = min(as_of, self.retire_on)
        status = "ended" if self.retired else "active" if rng.random() < 0.93 else "suspended"
        months = min(1200, _months_between(since, end))
        insurances: list[Value] = [
            {"kind": kind, "since": since, "months_contributed": months, "status": status} for kind in kinds
        ]
        self.add(
            "human_resources",
            "social_insurance",
            {"region_code": region, "insurances": insurances},
            max(self.world.month_start, since),
        )
        if self.formal and self.work_start is not None:
            self._provident_fund()

    def _provident_fund(self) -> None:
        rng, as_of = self.rng, self.as_of
        assert self.work_start is not None
        share = {"doctorate": 0.85, "master": 0.85, "bachelor": 0.8, "associate": 0.65}.get(self.level, 0.35)
        if rng.random() >= share:
            return
        opened = max(self.work_start, datetime.date(1992, 1, 1))
        self.fund_opened = opened
        end = min(as_of, self.retire_on)
        months = min(1200, _months_between(opened, end))
        contribution = _round_to(self.salary * 0.24, 1) * 100
        if self.retired:
            status = "closed" if rng.random() < 0.7 else "sealed"
        else:
            status = "active" if rng.random() < 0.94 else "sealed"
        balance = 0 if status == "closed" else _round_to(contribution * months * rng.uniform(0.1, 0.6), 100)
        self.add(
            "provident_fund",
            "provident_fund_account",
            {
                "region_code": self.work_region,
                "status": status,
                "opened_on": opened,
                "monthly_contribution_fen": contribution if status == "active" else 0,
                "balance_fen": balance,
                "months_contributed": months,
            },
            max(self.world.month_start, opened),
        )

    # driving ----------------------------------------------------------------------------------

    def _licence_share(self) -> float:
        age = self.age
        if age < 18:
            return 0.0
        if self.male:
            table = ((25, 0.5), (35, 0.86), (45, 0.84), (55, 0.72), (65, 0.52), (71, 0.32), (200, 0.08))
        else:
            table = ((25, 0.42), (35, 0.72), (45, 0.64), (55, 0.44), (65, 0.22), (71, 0.1), (200, 0.02))
        return next(share for limit, share in table if age < limit)

    def _driving(self) -> None:
        rng, as_of = self.rng, self.as_of
        self.licence_class = ""
        if rng.random() >= self._licence_share():
            return
        earliest = max(self.adult_on, datetime.date(1988, 1, 1))
        first_issued = _skewed(rng, earliest, as_of, 0.9)
        if first_issued is None:
            return
        roll = rng.random()
        if self.male:
            cls = _MALE_LICENCE_CLASSES.pick(rng)  # fmt: skip
        else:
            cls = "C1" if roll < 0.86 else "C2" if roll < 0.97 else "D"
        if cls == "C2" and first_issued < datetime.date(2004, 5, 1):
            cls = "C1"
        self.licence_class = cls
        # Violations, accidents and their consequences over the last ten years.
        window = max(first_issued, _add_years(as_of, -10))
        years = max(0.0, (as_of - window).days / 365.2425)
        events: list[tuple[datetime.date, str]] = []
        rate = 0.7 if rng.random() < 0.1 else 0.3
        for _ in range(_poisson(rng, rate * years)):
            day = _between(rng, window, as_of)
            if day is not None:
                kind = _VIOLATIONS.pick(rng)
                if kind == "other" and cls in ("A1", "A2", "B2") and rng.random() < 0.3:
                    kind = "overloading"
                events.append((day, kind))
        for kind, share in (
            ("drink_driving", 0.008),
            ("drunk_driving", 0.006),
            ("dangerous_driving", 0.0005),
            ("drug_driving", 0.0003),
            ("hit_and_run", 0.0008),
            ("unlicensed_driving", 0.002),
        ):
            if rng.random() < share * (1.6 if self.male else 0.3):
                day = _between(rng, window, as_of)
                if day is not None:
                    events.append((day, kind))
        events.sort()
        revoked_on: datetime.date | None = None
        kept: list[tuple[datetime.date, str]] = []
        for day, kind in events:
            kept.append((day, kind))
            if kind in _REVOKING:
                revoked_on = day
                break
        cycles: dict[int, tuple[int, datetime.date]] = {}
        serious = False
        for day, kind in kept:
            points, fine = _VIOLATION_PENALTY[kind]
            if kind == "speeding":
                speed_roll = rng.random()
                points, fine = (3, 20000) if speed_roll < 0.7 else (6, 20000) if speed_roll < 0.995 else (12, 150000)
            elif kind == "other":
                points = rng.choice((1, 1, 2, 3))
            fields: dict[str, Value] = {"violation_date": day, "kind": kind, "points": points}
            if fine is not None:
                fields["fine_fen"] = fine
            fields["region_code"] = self.region if rng.random() < 0.6 else _regions(as_of.year).pick(rng)
            self.add("public_security", "traffic_violation", fields, day)
            if kind in ("drink_driving", "drunk_driving", "drug_driving", "dangerous_driving", "hit_and_run"):
                serious = True
            if kind in ("drunk_driving", "drug_driving", "dangerous_driving"):
                self._driving_offence(kind, day)
            if points:
                cycle = _full_years(first_issued, day)
                total, _ = cycles.get(cycle, (0, day))
                cycles[cycle] = (total + points, day)
        suspended = False
        for cycle, (total, last) in sorted(cycles.items()):
            start = _add_years(first_issued, cycle)
            self.add(
                "public_security",
                "scoring_cycle",
                {"cycle_start": start, "cycle_end": _add_years(first_issued, cycle + 1) - _DAY, "points_total": total},
                last,
            )
            if total >= 12 and (as_of - last).days <= 60:
                suspended = True
        self.serious_driving = serious
        if rng.random() < 0.004 * years:
            self._accident(window, revoked_on or as_of)
        # The licence itself: six years, then ten-year renewals (up to a revocation), sometimes
        # not renewed.
        limit = revoked_on or as_of
        valid_from, valid_until, expired = first_issued, _add_years(first_issued, 6), False
        while valid_until <= limit:
            if rng.random() < 0.03:
                expired = revoked_on is None
                break
            valid_from, valid_until = valid_until, _add_years(valid_until, 10)
        if revoked_on is not None:
            status, since = "revoked", revoked_on
        elif expired:
            status, since = "expired", valid_until
        elif suspended:
            status, since = "suspended", valid_from
        else:
            status, since = "valid", valid_from
        since = min(max(since, valid_from), as_of)
        self.add(
            "public_security",
            "driving_licence",
            {
                "licence_class": cls,
                "first_issued": first_issued,
                "valid_from": valid_from,
                "valid_until": valid_until,
                "status": status,
                "issuing_authority": _city_name(self.region) + "公安局交通警察支队",
            },
            since,
        )
        self._driving_permits(first_issued, status)

    def _accident(self, window: datetime.date, last: datetime.date) -> None:
        rng = self.rng
        day = _between(rng, window, last)
        if day is None:
            return
        roll = rng.random()
        severity = "minor" if roll < 0.82 else "major" if roll < 0.95 else "fatal"
        responsibility = _RESPONSIBILITY.pick(rng)
        fields: dict[str, Value] = {"accident_date": day, "severity": severity, "responsibility": responsibility}
        fields["region_code"] = self.region if rng.random() < 0.7 else _regions(self.as_of.year).pick(rng)
        if severity == "fatal":
            fields["deaths"] = 1 if rng.random() < 0.9 else rng.randint(2, 3)
            fields["injuries"] = rng.randint(0, 2)
        elif severity == "major":
            fields["deaths"] = 0
            fields["injuries"] = rng.randint(1, 4)
        else:
            fields["injuries"] = 0 if rng.random() < 0.7 else 1
        self.add("public_security", "traffic_accident", fields, day)
        if severity == "fatal" and responsibility in ("full", "main") and rng.random() < 0.7:
            judged = _between(rng, day + datetime.timedelta(days=90), day + datetime.timedelta(days=400))
            if judged is not None and judged <= self.as_of:
                months = rng.randint(8, 36)
                self._criminal_record(
                    "traffic_crime", "交通肇事罪", judged, "fixed_term_imprisonment", months, rng.random() < 0.6
                )

    def _driving_offence(self, kind: str, day: datetime.date) -> None:
        """A drunk, drugged or dangerous driving case: conviction or a decision not to prosecute."""
        rng = self.rng
        self.drunk = self.drunk or kind == "drunk_driving"
        decided = _between(rng, day + datetime.timedelta(days=30), day + datetime.timedelta(days=200))
        if decided is None or decided > self.as_of:
            return
        if kind == "drunk_driving" and rng.random() < 0.35:
            self.add(
                "procuratorate",
                "non_prosecution_decision",
                {"decided_on": decided, "kind": "discretionary", "offence_category": kind},
                decided,
            )
            return
        if kind == "drug_driving" and rng.random() < 0.5:
            return  # administrative penalties only
        months = rng.randint(1, 6)
        self._criminal_record(kind, "危险驾驶罪", decided, "criminal_detention", months, rng.random() < 0.3)

    def _driving_permits(self, first_issued: datetime.date, status: str) -> None:
        rng, as_of = self.rng, self.as_of
        held = _full_years(first_issued, as_of)
        if status != "valid" or held < 3 or self.serious_driving:
            return
        if self.male and 25 <= self.age <= 55 and rng.random() < 0.02:
            issued = _between(rng, max(datetime.date(2017, 1, 1), _add_years(first_issued, 3)), as_of)
            if issued is not None:
                self.add(
                    "transport",
                    "ride_hailing_driver_permit",
                    {
                        "city_code": self.city,
                        "issued_on": issued,
                        "valid_until": _add_years(issued, 6),
                        "status": "valid",
                    },
                    issued,
                )
        heavy = self.licence_class in ("A1", "A2", "A3", "B1", "B2")
        if (heavy and rng.random() < 0.5) or (not heavy and self.male and rng.random() < 0.01):
            issued = _between(rng, max(_add_years(first_issued, 1), _add_years(as_of, -12)), as_of)
            if issued is not None:
                category = (
                    rng.choice(("freight", "passenger", "dangerous_goods", "driving_instructor"))
                    if heavy
                    else rng.choice(("taxi", "freight", "driving_instructor"))
                )
                until = _add_years(issued, 6)
                self.add(
                    "transport",
                    "road_transport_qualification",
                    {
                        "category": category,
                        "issued_on": issued,
                        "valid_until": until,
                        "status": "valid" if until >= as_of else "expired",
                    },
                    issued,
                )

    # crime and courts -------------------------------------------------------------------------

    def _criminal_record(
        self, category: str, charge: str, judged: datetime.date, sentence: str, months: int, suspended: bool
    ) -> None:
        rng = self.rng
        fields: dict[str, Value] = {"offence_category": category, "charge": charge, "judgment_date": judged}
        fields["sentence"] = sentence
        if sentence in ("fixed_term_imprisonment", "criminal_detention", "public_surveillance"):
            fields["sentence_months"] = months
        if sentence in ("fixed_term_imprisonment", "criminal_detention"):
            fields["suspended"] = suspended and (sentence != "fixed_term_imprisonment" or months <= 36)
        fields["court"] = self.court(self.region if rng.random() < 0.7 else _regions(self.as_of.year).pick(rng))
        sealed: datetime.date | None = None
        if _full_years(self.birth, judged) < 18 and months <= 60:
            # A juvenile's conviction with at most five years is sealed (犯罪记录封存).
            sealed = min(judged + datetime.timedelta(days=rng.randint(10, 60)), self.as_of)
        self.add("public_security", "criminal_record", fields, judged, sealed)
        self.criminal = True

    def _crime(self) -> None:
        rng, as_of = self.rng, self.as_of
        if rng.random() >= 0.0008 * (1.7 if self.male else 0.3):
            if rng.random() < 0.0006:
                self._non_prosecution()
            return
        category = _OFFENCE_TABLE.pick(rng)
        if category == "corruption" and self.level not in ("associate", "bachelor", "master", "doctorate"):
            category = "property"
        _, charges, sentences = _OFFENCES[category]
        low = max(_add_years(self.birth, 16 if rng.random() < 0.05 else 18), datetime.date(1998, 1, 1))
        judged = _between(rng, low, as_of)
        if judged is None:
            return
        sentence, months_low, months_high = _Weighted([((s, lo, hi), w) for s, w, lo, hi in sentences]).pick(rng)
        months = rng.randint(months_low, months_high) if months_high else 0
        self._criminal_record(category, rng.choice(charges), judged, sentence, months, rng.random() < 0.35)

    def _non_prosecution(self) -> None:
        rng = self.rng
        decided = _between(rng, max(self.adult_on, datetime.date(2000, 1, 1)), self.as_of)
        if decided is None:
            return
        kind = _NON_PROSECUTION_KINDS.pick(rng)
        category = rng.choice(("property", "public_order", "fraud", "violent", "other"))
        self.add(
            "procuratorate",
            "non_prosecution_decision",
            {"decided_on": decided, "kind": kind, "offence_category": category},
            decided,
        )

    def _courts(self) -> None:
        rng, as_of = self.rng, self.as_of
        if self.age < 18:
            return
        low = max(self.adult_on, _add_years(as_of, -10))
        if rng.random() < 0.02:
            judged = _between(rng, low, as_of)
            if judged is not None:
                cause = _CIVIL_CAUSES.pick(rng)  # fmt: skip
                role = "defendant" if rng.random() < 0.55 else "plaintiff"
                court_region = self.region if rng.random() < 0.8 else _regions(as_of.year).pick(rng)
                fields: dict[str, Value] = {
                    "case_number": self.case_number(court_region, max(judged.year - rng.randint(0, 1), 1990), "民初"),
                    "court": self.court(court_region),
                    "cause": cause,
                    "role": role,
                    "judgment_date": judged,
                }
                amount = _round_to(rng.lognormvariate(math.log(80000), 1.0), 100) * 100
                if cause != "family" and rng.random() < 0.8:
                    fields["amount_fen"] = amount
                self.add("courts", "civil_judgment", fields, judged)
                if role == "defendant" and cause in ("loan", "contract") and rng.random() < 0.25:
                    self._enforcement(court_region, judged + datetime.timedelta(days=rng.randint(30, 200)), amount)
        elif rng.random() < 0.002:
            filed = _between(rng, low, as_of)
            if filed is not None:
                amount = _round_to(rng.lognormvariate(math.log(50000), 1.0), 100) * 100
                self._enforcement(self.region, filed, amount)

    def _enforcement(self, region: str, filed: datetime.date, amount: int) -> None:
        rng, as_of = self.rng, self.as_of
        if filed > as_of:
            return
        dishonest = rng.random() < 0.45
        roll = rng.random()
        status = "ongoing" if roll < 0.5 else "concluded" if roll < 0.85 else "terminated"
        fields: dict[str, Value] = {
            "case_number": self.case_number(region, filed.year, "执"),
            "court": self.court(region),
            "filed_on": filed,
            "amount_fen": amount,
            "status": status,
            "dishonest": dishonest,
        }
        listed: datetime.date | None = None
        if dishonest:
            listed = _between(rng, filed + datetime.timedelta(days=30), filed + datetime.timedelta(days=200))
            if listed is None or listed > as_of:
                listed = filed
            fields["listed_on"] = listed
        self.add("courts", "enforcement", fields, filed)
        self.enforced_on = (filed, region)
        if listed is not None:
            self.dishonest = True
            listing: dict[str, Value] = {
                "listing_department": "courts",
                "list_kind": "dishonest_judgment_debtor",
                "listed_on": listed,
            }
            if status == "concluded":
                removed = _between(rng, listed, as_of)
                if removed is not None:
                    listing["removed_on"] = removed
            self.add("credit_center", "dishonesty_listing", listing, listed)

    # property ---------------------------------------------------------------------------------

    def _owner_share(self) -> float:
        age = self.age
        share = 0.0 if age < 25 else 0.35 if age < 30 else 0.55 if age < 35 else 0.6 if age < 65 else 0.52
        return share * (1.12 if self.spouse is not None else 0.72)

    def _property(self) -> None:
        rng, as_of = self.rng, self.as_of
        if self.age >= 18 and rng.random() < 0.006:
            self._pending_purchase()
        if rng.random() >= self._owner_share():
            return
        count = _TITLE_COUNT.pick(rng)
        earliest = max(_add_years(self.birth, 22), datetime.date(1992, 1, 1))
        days = sorted(d for _ in range(count) if (d := _skewed(rng, earliest, as_of, 0.6)) is not None)
        homes_before = 0
        for number, acquired in enumerate(days):
            homestead = number == 0 and self.rural and not _is_district(self.region) and rng.random() < 0.5
            usage = "residential"
            if number > 0:
                usage = _TITLE_USAGE.pick(rng)
            region = self.region if rng.random() < 0.8 else _regions(as_of.year).pick(rng)
            if homestead:
                region = self.region
            if usage == "other":  # a parking space
                area = rng.uniform(11.0, 16.0)
            elif usage == "residential":
                area = min(max(rng.lognormvariate(math.log(95 if not homestead else 140), 0.3), 30.0), 320.0)
            else:
                area = min(max(rng.lognormvariate(math.log(60), 0.6), 15.0), 600.0)
            area = round(area, 2)
            unit_price = _home_price(region, acquired) * rng.uniform(0.65, 1.35)
            if homestead:
                unit_price *= 0.2
            if usage == "other":
                unit_price *= 0.8
            price = _round_to(area * unit_price, 100)
            sold: datetime.date | None = None
            if acquired < _add_years(as_of, -3) and rng.random() < 0.08:
                sold = _between(rng, _add_years(acquired, 2), as_of)
            title = _Title(self.property_unit(region, homestead), region, usage, area, acquired, price, sold, homestead)
            self.titles.append(title)
            self._title(title, homes_before)
            if usage == "residential":
                homes_before += 1
        self._homes_owned()

    def _holders(self, acquired: datetime.date) -> tuple[list[Value], str]:
        rng = self.rng
        holders: list[Value] = [self.masked]
        if self.spouse is not None and self.married_on is not None and self.married_on <= acquired:
            if rng.random() < 0.8:
                holders.append(self.spouse)
                return holders, "joint"
        elif _full_years(self.birth, acquired) < 30 and rng.random() < 0.3:
            parent_born = _add_years(self.birth, -rng.randint(23, 34))
            holders.append(self.world.other_person(rng, parent_born, parent_born, rng.random() < 0.5))
            return holders, "shares"
        return holders, "sole"

    def _title(self, title: _Title, homes_before: int) -> None:
        rng = self.rng
        holders, ownership = self._holders(title.acquired_on)
        acquired = title.acquired_on
        fields: dict[str, Value] = {"property_unit": title.unit}
        if acquired >= datetime.date(2016, 1, 1):
            place = _registration_place(title.region)
            fields["certificate_number"] = f"浙({acquired.year}){place}不动产权第{rng.randint(1, 999999):07d}号"
        elif not title.homestead:
            city, county = _city_name(title.region), _COUNTY_NAMES[title.region]
            fields["certificate_number"] = f"{city[0]}房权证{county[0]}字第{rng.randint(1, 99999999):08d}号"
        fields.update(
            {
                "region_code": title.region,
                "usage": title.usage,
                "area_cm2": round(title.area_m2 * 10000),
                "holders": holders,
                "ownership": ownership,
                "acquired_on": acquired,
            }
        )
        ended = title.sold_on - _DAY if title.sold_on is not None else None
        self.add("natural_resources", "property_title", fields, acquired, ended)
        price_fen = title.price_yuan * 100
        if title.homestead:
            return
        # The purchase: contract filing, eligibility in Hangzhou, deed tax, mortgage.
        new_home = rng.random() < 0.6
        if acquired >= datetime.date(2010, 1, 1):
            filed = acquired - datetime.timedelta(days=rng.randint(200, 700) if new_home else rng.randint(10, 40))
            self.add(
                "housing",
                "sale_contract_filing",
                {
                    "property_unit": title.unit,
                    "contract_kind": "new_home" if new_home else "second_hand",
                    "role": "buyer",
                    "price_fen": price_fen,
                    "filed_on": filed,
                },
                filed,
            )
            if (
                title.usage == "residential"
                and _city_of(title.region) == "330100"
                and filed >= datetime.date(2016, 10, 1)
            ):
                assessed = filed - datetime.timedelta(days=rng.randint(3, 30))
                local = self.city == "330100"
                self.add(
                    "housing",
                    "purchase_eligibility",
                    {
                        "city_code": "330100",
                        "eligible": True,
                        "reason": "local_household_under_limit" if local else "non_local_social_insurance_met",
                        "assessed_on": assessed,
                    },
                    assessed,
                )
        if acquired >= datetime.date(2003, 1, 1) and rng.random() < 0.85:
            paid = acquired - datetime.timedelta(days=rng.randint(0, 20))
            self._deed_tax(title, price_fen, homes_before, paid)
        if title.usage != "other" and rng.random() < (0.55 if acquired >= datetime.date(2003, 1, 1) else 0.2):
            self._mortgage(title, price_fen)
        if title.sold_on is not None and title.sold_on >= datetime.date(2010, 1, 1):
            sold = title.sold_on
            sale_price = _round_to(title.area_m2 * _home_price(title.region, sold) * rng.uniform(0.8, 1.2), 100) * 100
            filed = sold - datetime.timedelta(days=rng.randint(10, 40))
            self.add(
                "housing",
                "sale_contract_filing",
                {
                    "property_unit": title.unit,
                    "contract_kind": "second_hand",
                    "role": "seller",
                    "price_fen": sale_price,
                    "filed_on": filed,
                },
                filed,
            )
            if _full_years(title.acquired_on, sold) < 5 and title.usage == "residential":
                self.add(
                    "taxation",
                    "transaction_tax",
                    {
                        "property_unit": title.unit,
                        "tax_kind": "individual_income",
                        "base_fen": sale_price,
                        "rate_basis_points": 100,
                        "amount_fen": sale_price // 100,
                        "status": "paid",
                        "paid_on": sold,
                    },
                    sold,
                )

    def _deed_rate(self, title: _Title, homes_before: int, day: datetime.date) -> int:
        if title.usage != "residential":
            return 300
        small = title.area_m2 <= 90
        if homes_before == 0:
            return 100 if small else 150
        if day < datetime.date(2016, 2, 22):
            return 300
        return 100 if small else 200

    def _deed_tax(self, title: _Title, base: int, homes_before: int, paid: datetime.date) -> None:
        rate = self._deed_rate(title, homes_before, title.acquired_on)
        self.add(
            "taxation",
            "transaction_tax",
            {
                "property_unit": title.unit,
                "tax_kind": "deed_tax",
                "base_fen": base,
                "rate_basis_points": rate,
                "amount_fen": (base * rate + 5000) // 10000,
                "status": "paid",
                "paid_on": paid,
            },
            paid,
        )

    def _mortgage(self, title: _Title, price_fen: int) -> None:
        rng, as_of = self.rng, self.as_of
        registered = title.acquired_on
        amount = _round_to(price_fen * rng.uniform(0.4, 0.7), 100000)
        bank = rng.choice(_BANKS)
        fields: dict[str, Value] = {
            "property_unit": title.unit,
            "kind": "mortgage",
            "amount_fen": amount,
            "creditor": f"{bank}{_city_name(title.region)[:-1]}分行",
            "registered_on": registered,
        }
        term = rng.choice((10, 15, 20, 25, 30))
        released: datetime.date | None = None
        if title.sold_on is not None:
            released = title.sold_on - _DAY
        elif _add_years(registered, term) <= as_of:
            released = _add_years(registered, term)
        elif rng.random() < 0.1:
            released = _between(rng, _add_years(registered, 3), as_of)
        if released is not None and released >= registered:
            fields["released_on"] = released
        self.add("natural_resources", "property_encumbrance", fields, registered)
        opened = self.fund_opened
        if opened is not None and opened <= registered and title.usage == "residential" and rng.random() < 0.35:
            loan: dict[str, Value] = {
                "property_unit": title.unit,
                "amount_fen": min(amount, 60_000_000),
                "granted_on": registered,
            }
            if released is not None and released >= registered:
                loan["status"] = "repaid"
                loan["repaid_on"] = released
            else:
                loan["status"] = "overdue" if rng.random() < 0.01 else "repaying"
            self.add("provident_fund", "provident_fund_loan", loan, registered)

    def _homes_owned(self) -> None:
        per_city: dict[str, tuple[int, datetime.date]] = {}
        for title in self.titles:
            if title.usage != "residential":
                continue
            city = _city_of(title.region)
            count, changed = per_city.get(city, (0, title.acquired_on))
            held = title.sold_on is None
            last = max(changed, title.acquired_on, title.sold_on or title.acquired_on)
            per_city[city] = (count + (1 if held else 0), last)
        for city, (count, changed) in sorted(per_city.items()):
            self.add("housing", "homes_owned", {"city_code": city, "count": count}, min(changed, self.as_of))
        self._seizure()

    def _seizure(self) -> None:
        """A debtor's title seized by the enforcing court (sometimes lifted)."""
        if self.enforced_on is not None and self.titles and self.rng.random() < 0.4:
            filed, region = self.enforced_on
            title = self.titles[0]
            seized = _between(self.rng, filed + datetime.timedelta(days=10), filed + datetime.timedelta(days=90))
            if seized is not None and seized <= self.as_of and title.sold_on is None:
                fields: dict[str, Value] = {
                    "property_unit": title.unit,
                    "kind": "seizure",
                    "court": self.court(region),
                    "registered_on": seized,
                }
                if self.rng.random() < 0.3:
                    lifted = _between(self.rng, seized, self.as_of)
                    if lifted is not None:
                        fields["released_on"] = lifted
                self.add("natural_resources", "property_encumbrance", fields, seized)

    def _pending_purchase(self) -> None:
        """A home bought but not yet registered: contract filed, deed tax due."""
        rng, as_of = self.rng, self.as_of
        filed = _between(rng, as_of - datetime.timedelta(days=60), as_of)
        if filed is None:
            return
        region = self.region
        unit = self.property_unit(region)
        area = round(min(max(rng.lognormvariate(math.log(95), 0.3), 30.0), 300.0), 2)
        price = _round_to(area * _home_price(region, filed), 100) * 100
        self.add(
            "housing",
            "sale_contract_filing",
            {"property_unit": unit, "contract_kind": "second_hand", "role": "buyer", "price_fen": price,
             "filed_on": filed},
            filed,
        )  # fmt: skip
        rate = 100 if area <= 90 else 150
        self.add(
            "taxation",
            "transaction_tax",
            {
                "property_unit": unit,
                "tax_kind": "deed_tax",
                "base_fen": price,
                "rate_basis_points": rate,
                "amount_fen": (price * rate + 5000) // 10000,
                "status": "due",
                "due_on": filed + datetime.timedelta(days=90),
            },
            filed,
        )

    # the rest ---------------------------------------------------------------------------------

    def _credit_score(self) -> None:
        rng = self.rng
        if rng.random() >= 0.86:
            return
        score = 655 + rng.gauss(0, 55)
        if rng.random() < 0.03:
            score -= rng.uniform(80, 220)
        if self.level in ("bachelor", "master", "doctorate"):
            score += 25
        if self.criminal:
            score -= 110
        if self.dishonest:
            score -= 200
        if self.drunk:
            score -= 60
        value = min(950, max(350, round(score)))
        band = (
            "excellent"
            if value >= 800
            else "very_good"
            if value >= 700
            else "good"
            if value >= 600
            else "fair"
            if value >= 500
            else "poor"
        )
        scored = self.world.month_start
        if rng.random() < 0.1:
            scored = (scored - _DAY).replace(day=1)
        self.add(
            "credit_center",
            "city_credit_score",
            {"score": value, "band": band, "scored_on": scored, "city_code": self.city},
            scored,
        )

    def _other_records(self) -> None:
        rng, as_of = self.rng, self.as_of
        age = self.age
        region = self.region
        # Rural land contracts (second round, 1998-2028) held by heads of rural households.
        if self.rural and age >= 40 and rng.random() < 0.35:
            start = _between(rng, datetime.date(1997, 1, 1), datetime.date(1999, 12, 31))
            if start is not None and start <= as_of and start >= self.adult_on:
                mu = rng.uniform(0.5, 6.0)
                use = _LAND_USE
                self.add(
                    "agriculture",
                    "land_contract_right",
                    {
                        "region_code": region,
                        "land_use": use.pick(rng),
                        "area_cm2": round(mu * 6_666_667),
                        "contracted_from": start,
                        "contracted_until": _add_years(start, 30) - _DAY,
                    },
                    start,
                )
                paid = _between(rng, _add_years(as_of, -1), as_of)
                if paid is not None and rng.random() < 0.8 and paid >= datetime.date(2016, 1, 1):
                    self._subsidy("耕地地力保护补贴", _round_to(mu * 110 * 100, 100), paid)
        if age >= 80 and rng.random() < 0.85:
            paid = _between(rng, as_of - datetime.timedelta(days=30), as_of)
            if paid is not None:
                self._subsidy("高龄津贴", rng.choice((10000, 20000, 30000)), paid)
        if rng.random() < 0.005:
            paid = _between(rng, as_of - datetime.timedelta(days=60), as_of)
            if paid is not None:
                self._subsidy("残疾人两项补贴", rng.choice((12000, 18000, 24000)), paid)
        if self.rural and age >= 60 and rng.random() < 0.05:
            paid = _between(rng, _add_years(as_of, -1), as_of)
            if paid is not None:
                self._subsidy("农村部分计划生育家庭奖励扶助", 96000, paid)
        # Subsistence allowance (dibao).
        if rng.random() < 0.006 * (3 if self.rural and age >= 60 else 1):
            granted = _between(rng, max(self.adult_on, _add_years(as_of, -8)), as_of)
            if granted is not None:
                roll = rng.random()
                self.add(
                    "civil_affairs",
                    "subsistence_allowance",
                    {
                        "region_code": region,
                        "monthly_amount_fen": _round_to(rng.uniform(200, 900), 10) * 100,
                        "granted_on": granted,
                        "status": "active" if roll < 0.85 else "suspended" if roll < 0.9 else "ended",
                    },
                    granted,
                )
        if age < 18:
            return
        # Veterans: mostly men, discharged in their early twenties.
        if rng.random() < (0.06 if self.male else 0.003) and age >= 22:
            discharged = _between(rng, _add_years(self.birth, 20), min(_add_years(self.birth, 24), as_of))
            if discharged is not None and discharged >= datetime.date(1950, 1, 1):
                placement = (_PLACEMENT_OLD if self.birth.year < 1960 else _PLACEMENT).pick(rng)
                self.add(
                    "veterans_affairs",
                    "veteran_registration",
                    {"discharged_on": discharged, "placement": placement, "preferential_treatment": rng.random() < 0.1},
                    discharged,
                )
        # Special operations certificates (electricians, welders ...).
        if 20 <= age <= 60 and self.level in ("", "primary", "junior_secondary", "senior_secondary", "vocational"):
            if rng.random() < (0.03 if self.male else 0.003):
                issued = _between(rng, max(_add_years(as_of, -8), _add_years(self.birth, 19)), as_of)
                if issued is not None:
                    category = _SPECIAL_OPERATIONS.pick(rng)  # fmt: skip
                    self.add(
                        "emergency_management",
                        "special_operations_certificate",
                        {"category": category, "issued_on": issued, "valid_until": _add_years(issued, 6)},
                        issued,
                    )
        # Tour guides.
        if 20 <= age <= 55 and rng.random() < (0.004 if self.level in ("associate", "bachelor") else 0.0008):
            issued = _between(rng, max(_add_years(as_of, -3), _add_years(self.birth, 20)), as_of)
            if issued is not None:
                languages: list[Value] = ["zh"]
                if rng.random() < 0.4:
                    languages.append(_GUIDE_LANGUAGES.pick(rng))
                until = _add_years(issued, 3)
                self.add(
                    "culture_tourism",
                    "tour_guide_licence",
                    {
                        "level": _GUIDE_LEVELS.pick(rng),
                        "languages": languages,
                        "issued_on": issued,
                        "valid_until": until,
                        "status": "valid" if until >= as_of else "expired",
                    },
                    issued,
                )
        # Lawyers.
        if self.lawyer and self.graduated_on is not None:
            licensed = _between(rng, self.graduated_on + datetime.timedelta(days=365), as_of)
            if licensed is not None:
                self.add(
                    "justice",
                    "lawyer_licence",
                    {
                        "law_firm": rng.choice(_LAW_FIRMS),
                        "practice_kind": _PRACTICE_KINDS.pick(rng),
                        "licensed_on": licensed,
                        "status": "active" if rng.random() < 0.97 else "suspended",
                    },
                    licensed,
                )
        # Notarizations.
        if rng.random() < 0.03:
            day = _between(rng, max(self.adult_on, _add_years(as_of, -10)), as_of)
            if day is not None:
                if age >= 55:
                    kind = _NOTARIZATIONS_OLD
                else:
                    kind = _NOTARIZATIONS_YOUNG
                notary = _local_name(region)
                notary = notary[:-1] if notary.endswith("区") else notary
                self.add(
                    "justice",
                    "notarization",
                    {"kind": kind.pick(rng), "notarized_on": day, "notary_office": notary + "公证处"},
                    day,
                )
        # Data use authorisations (e.g. for a home purchase or a loan).
        if rng.random() < 0.03:
            granted = _between(rng, max(datetime.date(2017, 1, 1), self.adult_on), as_of)
            if granted is not None:
                to, types = rng.choice(
                    (
                        ("housing", ["property_title", "homes_owned", "social_insurance"]),
                        ("provident_fund", ["social_insurance", "property_title"]),
                        ("transport", ["driving_licence", "traffic_violation", "criminal_record"]),
                        ("finance", ["social_insurance", "household_registration"]),
                        ("human_resources", ["education_record", "household_registration"]),
                    )
                )
                record_types: list[Value] = list(types)
                grant: dict[str, Value] = {"granted_to": to, "record_types": record_types, "granted_on": granted}
                if rng.random() < 0.7:
                    grant["expires_on"] = _add_years(granted, 1)
                self.add("big_data_bureau", "data_authorisation", grant, granted)
        # Eligibility checks by residents who have not bought (yet).
        if 22 <= age and not self.titles and rng.random() < 0.01:
            assessed = _between(rng, max(_add_years(as_of, -1), datetime.date(2016, 10, 1)), as_of)
            if assessed is not None:
                restricted = self.city == "330100"
                self.add(
                    "housing",
                    "purchase_eligibility",
                    {
                        "city_code": self.city,
                        "eligible": True,
                        "reason": "local_household_under_limit" if restricted else "no_purchase_restriction",
                        "assessed_on": assessed,
                    },
                    assessed,
                )

    def _subsidy(self, programme: str, amount: int, paid: datetime.date) -> None:
        self.add("finance", "subsidy_payment", {"programme": programme, "amount_fen": amount, "paid_on": paid}, paid)


# --------------------------------------------------------------------------------------------
# Enterprises


@dataclass(frozen=True)
class _Industry:
    word: str  # as in the name: 杭州恒达<word>有限公司
    code: str  # GB/T 4754-2017
    scope: str
    weight: float
    group: str  # "manufacturing", "trade", "construction", "chemical", "travel", "services"


_COMPANY_INDUSTRIES: Final = (
    _Industry("科技", "I6510", "技术开发、技术服务、技术咨询、成果转让；软件开发；计算机系统服务", 14, "services"),
    _Industry("贸易", "F5199", "货物进出口；日用百货、五金交电、纺织品的销售", 14, "trade"),
    _Industry("电子商务", "F5292", "互联网销售；服装服饰、日用百货的零售", 8, "trade"),
    _Industry("服饰", "C1810", "服装、服饰的制造、加工、销售", 6, "manufacturing"),
    _Industry("纺织", "C1751", "化纤织物的织造、加工、销售", 4, "manufacturing"),
    _Industry("机械", "C3499", "通用机械设备的制造、加工、销售", 6, "manufacturing"),
    _Industry("电子", "C3989", "电子元器件的制造、销售", 5, "manufacturing"),
    _Industry("五金", "C3389", "五金制品的制造、加工、销售", 5, "manufacturing"),
    _Industry("汽车配件", "C3670", "汽车零部件及配件的制造、销售", 3, "manufacturing"),
    _Industry("塑业", "C2929", "塑料制品的制造、销售", 3, "manufacturing"),
    _Industry("家具", "C2110", "家具的制造、销售", 2, "manufacturing"),
    _Industry("化工", "C2669", "化工原料及产品（不含危险化学品）的生产、销售", 1.5, "chemical"),
    _Industry("食品", "C1499", "食品生产；食品经营", 2, "manufacturing"),
    _Industry("建设工程", "E4899", "建设工程施工；市政公用工程、园林绿化工程施工", 5, "construction"),
    _Industry("建材", "F5165", "建筑材料、装饰材料的销售", 3, "trade"),
    _Industry("餐饮管理", "H6210", "餐饮服务；餐饮管理", 4, "services"),
    _Industry("物流", "G5990", "普通货物仓储服务；道路货物运输", 3, "services"),
    _Industry("文化传媒", "L7259", "设计、制作、代理、发布国内广告；文化艺术交流活动策划", 4, "services"),
    _Industry("企业管理咨询", "L7249", "企业管理咨询；商务信息咨询", 4, "services"),
    _Industry("房地产开发", "K7010", "房地产开发经营", 1, "services"),
    _Industry("旅行社", "L7271", "境内旅游业务；入境旅游业务", 1.2, "travel"),
    _Industry("茶业", "A0164", "茶叶种植、加工、销售", 1, "manufacturing"),
)
_SHOPS: Final = (
    _Industry("小吃店", "H6291", "小吃服务", 20, "services"),
    _Industry("面馆", "H6291", "小吃服务；餐饮服务", 10, "services"),
    _Industry("便利店", "F5213", "日用百货、预包装食品零售", 15, "trade"),
    _Industry("服装店", "F5232", "服装零售", 12, "trade"),
    _Industry("理发店", "O8040", "理发服务", 8, "services"),
    _Industry("五金店", "F5271", "五金产品零售", 8, "trade"),
    _Industry("水果店", "F5223", "水果零售", 8, "trade"),
    _Industry("汽车修理店", "O8111", "机动车维修", 6, "services"),
    _Industry("超市", "F5212", "食品、日用百货零售", 8, "trade"),
)
_COOPERATIVES: Final = (
    _Industry("白茶专业合作社", "A0164", "茶叶种植、加工、销售", 3, "manufacturing"),
    _Industry("果蔬专业合作社", "A0141", "蔬菜、水果种植、销售", 4, "manufacturing"),
    _Industry("水产养殖专业合作社", "A0412", "水产养殖、销售", 2, "manufacturing"),
    _Industry("杨梅专业合作社", "A0159", "杨梅种植、销售", 1, "manufacturing"),
)
_COMPANY_TABLE: Final = _Weighted([(i, i.weight) for i in _COMPANY_INDUSTRIES])
_SHOP_TABLE: Final = _Weighted([(i, i.weight) for i in _SHOPS])
_COOPERATIVE_TABLE: Final = _Weighted([(i, i.weight) for i in _COOPERATIVES])
_MANUFACTURING: Final = frozenset({"manufacturing", "chemical"})


class _Enterprise(_Builder):
    def build(self) -> SyntheticSubject:
        rng, as_of = self.rng, self.as_of
        roll = rng.random()
        self.type_code = "1" if roll < 0.7 else "2" if roll < 0.97 else "3"
        region = _regions(as_of.year, economy=True).pick(rng)
        self.region = region
        years_ago = min(rng.expovariate(1 / 5.5), 30.0)
        established = max(_years_before(as_of, years_ago), datetime.date(1986, 1, 1))
        self.established = min(established, as_of)
        registration_region = _city_of(region) if self.type_code == "1" and rng.random() < 0.1 else region
        self.identifier = self._identifier(registration_region)
        self.masked = _mask(self.identifier)
        self._register(registration_region)
        if self.type_code == "1":
            self._company_records()
        elif self.type_code == "3" or rng.random() < 0.05:
            self._statistics()
        return SyntheticSubject(self.identifier, self.name, SubjectKind.ENTERPRISE, tuple(self.records))

    def _identifier(self, region: str) -> str:
        rng = self.rng
        while True:
            if self.established >= datetime.date(2015, 10, 1):
                body = "MA2" + "".join(rng.choice(_USCC_ALPHABET) for _ in range(5))
            else:
                body = str(rng.randint(1, 7)) + "".join(rng.choice("0123456789") for _ in range(7))
            head = f"9{self.type_code}{region}{body}{_organisation_check(body)}"
            identifier = head + _uscc_check(head)
            if identifier not in self.world.used:
                self.world.used.add(identifier)
                return identifier

    def _register(self, registration_region: str) -> None:
        rng, as_of, world = self.rng, self.as_of, self.world
        city_short = _city_name(self.region)[:-1]
        entity = {"2": "individual_business", "3": "farmers_cooperative"}.get(self.type_code, "")
        for _ in range(100):
            brand = _brand(rng)
            if self.type_code == "1":
                industry = _COMPANY_TABLE.pick(rng)
                entity = _ENTITY_TYPES.pick(rng)  # fmt: skip
                if entity == "joint_stock_company":
                    name = f"浙江{brand}{industry.word}股份有限公司"
                elif entity == "sole_proprietorship":
                    name = f"{city_short}{brand}{industry.word}厂"
                elif entity == "partnership":
                    name = f"{city_short}{brand}{industry.word}合伙企业（有限合伙）"
                elif entity == "branch":
                    name = f"浙江{brand}{industry.word}有限公司{_COUNTY_NAMES[self.region][:-1]}分公司"
                else:
                    name = f"{city_short}{brand}{industry.word}有限公司"
            elif self.type_code == "2":
                industry = _SHOP_TABLE.pick(rng)
                name = f"{_local_name(self.region)}{brand}{industry.word}"
            else:
                industry = _COOPERATIVE_TABLE.pick(rng)
                name = f"{_COUNTY_NAMES[self.region]}{brand}{industry.word}"
            if name not in world.enterprise_names:
                break
        world.enterprise_names.add(name)
        self.name, self.industry, self.entity = name, industry, entity
        if world.adults and rng.random() < 0.9:
            representative = world.adults[rng.randrange(len(world.adults))]
        else:
            born = _years_before(as_of, rng.uniform(25, 65))
            representative = world.other_person(rng, born, born, rng.random() < 0.7)
        if self.type_code == "1":
            # A branch has no capital of its own.
            capital = 0 if entity == "branch" else _round_to(rng.lognormvariate(math.log(1_000_000), 1.3), 10000)
        elif self.type_code == "2":
            capital = _round_to(rng.lognormvariate(math.log(50_000), 0.8), 1000)
        else:
            capital = _round_to(rng.lognormvariate(math.log(500_000), 0.8), 10000)
        roll = rng.random()
        self.status = (
            "active" if roll < 0.86 else "cancelled" if roll < 0.93 else "revoked" if roll < 0.97 else "suspended"
        )
        self.add(
            "market_regulation",
            "enterprise_registration",
            {
                "registered_name": name,
                "entity_type": entity,
                "legal_representative": representative,
                "registered_capital_fen": capital * 100,
                "established_on": self.established,
                "status": self.status,
                "business_scope": industry.scope,
                "region_code": registration_region,
            },
            self.established,
        )
        self.capital = capital

    def _company_records(self) -> None:
        rng, as_of = self.rng, self.as_of
        established, group = self.established, self.industry.group
        active = self.status == "active"
        # Registration changes and the register of abnormal operations.
        if rng.random() < 0.25:
            for _ in range(rng.randint(1, 2)):
                changed = _between(rng, established + datetime.timedelta(days=60), as_of)
                if changed is None:
                    break
                kinds = ["legal_representative", "business_scope", "address", "shareholders", "name"]
                if self.capital:
                    kinds.append("registered_capital")
                items = rng.sample(kinds, rng.randint(1, 2))
                changes: list[Value] = [{"item": item, "summary": self._change_summary(item)} for item in items]
                self.add(
                    "market_regulation", "registration_change", {"changed_on": changed, "changes": changes}, changed
                )
        if rng.random() < (0.25 if not active else 0.05):
            listed = _between(rng, established + datetime.timedelta(days=365), as_of)
            if listed is not None:
                reason = _ABNORMAL_REASONS.pick(rng)
                fields: dict[str, Value] = {"listed_on": listed, "reason": reason}
                if active and rng.random() < 0.6:
                    removed = _between(rng, listed + datetime.timedelta(days=10), as_of)
                    if removed is not None:
                        fields["removed_on"] = removed
                self.add("market_regulation", "abnormal_operation", fields, listed)
        if not active:
            return
        # Tax credit ratings, published in April for the year before.
        last_year = as_of.year - 1 if as_of >= datetime.date(as_of.year, 4, 30) else as_of.year - 2
        for year in range(max(2014, established.year, last_year - 2), last_year + 1):
            if rng.random() < 0.7:
                rated = datetime.date(year + 1, 4, rng.randint(15, 29))
                rating = _TAX_RATINGS.pick(rng)
                self.add("taxation", "tax_credit_rating", {"year": year, "rating": rating, "rated_on": rated}, rated)
        if rng.random() < 0.75:
            self._statistics()
        if group in _MANUFACTURING and rng.random() < 0.5:
            issued = _between(rng, max(established, datetime.date(2017, 7, 1)), as_of)
            if issued is not None:
                until = _add_years(issued, 3)
                self.add(
                    "ecology_environment",
                    "pollutant_discharge_permit",
                    {
                        "management_class": _PERMIT_CLASSES.pick(rng),
                        "issued_on": issued,
                        "valid_until": until,
                        "status": "valid" if until >= as_of else "expired",
                    },
                    issued,
                )
            if rng.random() < 0.06:
                decided = _between(rng, max(established, _add_years(as_of, -5)), as_of)
                if decided is not None:
                    violation = rng.choice(
                        (
                            "超标排放水污染物",
                            "超标排放大气污染物",
                            "未批先建",
                            "危险废物贮存不规范",
                            "未按规定设置排污口",
                        )
                    )
                    self.add(
                        "ecology_environment",
                        "environmental_penalty",
                        {"decided_on": decided, "violation": violation, "amount_fen": rng.randint(1, 100) * 1_000_000},
                        decided,
                    )
        if group in ("manufacturing", "trade", "chemical") and rng.random() < 0.3:
            filed = _between(rng, max(established, datetime.date(2004, 7, 1)), as_of)
            if filed is not None:
                self.add(
                    "commerce",
                    "foreign_trade_operator_filing",
                    {"filed_on": filed, "status": "active" if rng.random() < 0.92 else "cancelled"},
                    filed,
                )
        if group == "travel":
            issued = min(established + datetime.timedelta(days=rng.randint(10, 90)), as_of)
            outbound = established < _add_years(as_of, -2) and rng.random() < 0.15
            self.add(
                "culture_tourism",
                "travel_agency_licence",
                {"business": "outbound" if outbound else "domestic_inbound", "issued_on": issued, "status": "active"},
                issued,
            )
        if group in ("construction", "chemical") and rng.random() < 0.8:
            issued = _between(rng, max(established, _add_years(as_of, -5)), as_of)
            if issued is not None:
                until = _add_years(issued, 3)
                self.add(
                    "emergency_management",
                    "safety_production_licence",
                    {
                        "industry": "construction" if group == "construction" else "hazardous_chemicals",
                        "issued_on": issued,
                        "valid_until": until,
                        "status": "valid" if until >= as_of else "expired",
                    },
                    issued,
                )
        if rng.random() < 0.08:
            self._property()
        if rng.random() < 0.08:
            self._lawsuit()
        if rng.random() < 0.12:
            paid = _between(rng, max(established, _add_years(as_of, -2)), as_of)
            if paid is not None:
                programme = "科技型中小企业研发费用补助" if self.industry.code.startswith("I") else "稳岗返还"
                amount = _round_to(rng.lognormvariate(math.log(20000), 1.0), 100) * 100
                self.add(
                    "finance", "subsidy_payment", {"programme": programme, "amount_fen": amount, "paid_on": paid}, paid
                )
        if rng.random() < 0.015:
            day = _between(rng, established, as_of)
            if day is not None:
                self.add(
                    "justice",
                    "notarization",
                    {"kind": rng.choice(("contract", "power_of_attorney", "property")), "notarized_on": day,
                     "notary_office": _registration_place(self.region) + "公证处"},
                    day,
                )  # fmt: skip
        if rng.random() < 0.03:
            granted = _between(rng, max(established, datetime.date(2017, 1, 1)), as_of)
            if granted is not None:
                record_types: list[Value] = ["enterprise_registration", "tax_credit_rating"]
                self.add(
                    "big_data_bureau",
                    "data_authorisation",
                    {"granted_to": rng.choice(("finance", "commerce", "taxation")), "record_types": record_types,
                     "granted_on": granted, "expires_on": _add_years(granted, 1)},
                    granted,
                )  # fmt: skip
        if rng.random() < 0.004:
            listed = _between(rng, max(established, _add_years(as_of, -3)), as_of)
            if listed is not None:
                self.add(
                    "credit_center",
                    "dishonesty_listing",
                    {"listing_department": "taxation", "list_kind": "major_tax_violation", "listed_on": listed},
                    listed,
                )

    def _change_summary(self, item: str) -> str:
        rng = self.rng
        if item == "registered_capital":
            before = max(10, self.capital // 10000 // rng.choice((2, 5, 10)))
            return f"注册资本由{before}万元人民币增加至{max(before + 10, self.capital // 10000)}万元人民币"
        return {
            "legal_representative": "法定代表人变更",
            "business_scope": "经营范围变更",
            "address": "住所变更（同一区县内）",
            "shareholders": "股东及出资情况变更",
            "name": "企业名称变更",
        }[item]

    def _statistics(self) -> None:
        rng, as_of = self.rng, self.as_of
        registered = min(self.established + datetime.timedelta(days=rng.randint(10, 120)), as_of)
        size = _SIZE_CLASSES.pick(rng) if self.type_code == "1" else "micro" if rng.random() < 0.95 else "small"
        employees = {
            "micro": rng.randint(1, 9),
            "small": rng.randint(10, 99),
            "medium": rng.randint(100, 999),
            "large": rng.randint(1000, 20000),
        }[size]
        self.add(
            "statistics",
            "basic_unit_registration",
            {
                "industry_code": self.industry.code,
                "size_class": size,
                "employees": employees,
                "registered_on": registered,
            },
            registered,
        )

    def _property(self) -> None:
        rng, as_of = self.rng, self.as_of
        acquired = _between(rng, self.established, as_of)
        if acquired is None:
            return
        usage = "industrial" if self.industry.group in _MANUFACTURING else rng.choice(("office", "commercial"))
        area = round(rng.lognormvariate(math.log(2000 if usage == "industrial" else 300), 0.8), 2)
        unit = self.property_unit(self.region)
        holders: list[Value] = [self.masked]
        fields: dict[str, Value] = {"property_unit": unit}
        if acquired >= datetime.date(2016, 1, 1):
            fields["certificate_number"] = (
                f"浙({acquired.year}){_registration_place(self.region)}不动产权第{rng.randint(1, 999999):07d}号"
            )
        fields.update(
            {
                "region_code": self.region,
                "usage": usage,
                "area_cm2": round(area * 10000),
                "holders": holders,
                "ownership": "sole",
                "acquired_on": acquired,
            }
        )
        self.add("natural_resources", "property_title", fields, acquired)
        price = _round_to(area * _home_price(self.region, acquired) * rng.uniform(0.2, 0.6), 100) * 100
        if acquired >= datetime.date(2003, 1, 1):
            paid = acquired - datetime.timedelta(days=rng.randint(0, 20))
            self.add(
                "taxation",
                "transaction_tax",
                {
                    "property_unit": unit,
                    "tax_kind": "deed_tax",
                    "base_fen": price,
                    "rate_basis_points": 300,
                    "amount_fen": (price * 300 + 5000) // 10000,
                    "status": "paid",
                    "paid_on": paid,
                },
                paid,
            )
        if rng.random() < 0.5:
            fields = {
                "property_unit": unit,
                "kind": "mortgage",
                "amount_fen": _round_to(price * rng.uniform(0.3, 0.6), 100000),
                "creditor": f"{rng.choice(_BANKS)}{_city_name(self.region)[:-1]}分行",
                "registered_on": acquired,
            }
            if rng.random() < 0.2:
                released = _between(rng, acquired + datetime.timedelta(days=365), as_of)
                if released is not None:
                    fields["released_on"] = released
            self.add("natural_resources", "property_encumbrance", fields, acquired)

    def _lawsuit(self) -> None:
        rng, as_of = self.rng, self.as_of
        judged = _between(rng, max(self.established + datetime.timedelta(days=180), _add_years(as_of, -10)), as_of)
        if judged is None:
            return
        role = "plaintiff" if rng.random() < 0.55 else "defendant"
        amount = _round_to(rng.lognormvariate(math.log(300000), 1.2), 100) * 100
        self.add(
            "courts",
            "civil_judgment",
            {
                "case_number": self.case_number(self.region, max(judged.year - rng.randint(0, 1), 1990), "民初"),
                "court": self.court(self.region),
                "cause": _COMPANY_CAUSES.pick(rng),
                "role": role,
                "judgment_date": judged,
                "amount_fen": amount,
            },
            judged,
        )
        if role == "defendant" and rng.random() < 0.3:
            filed = judged + datetime.timedelta(days=rng.randint(30, 200))
            if filed > as_of:
                return
            dishonest = rng.random() < 0.4
            fields: dict[str, Value] = {
                "case_number": self.case_number(self.region, filed.year, "执"),
                "court": self.court(self.region),
                "filed_on": filed,
                "amount_fen": amount,
                "status": rng.choice(("ongoing", "concluded", "terminated")),
                "dishonest": dishonest,
            }
            listed = min(filed + datetime.timedelta(days=rng.randint(30, 120)), as_of)
            if dishonest:
                fields["listed_on"] = listed
            self.add("courts", "enforcement", fields, filed)
            if dishonest:
                self.add(
                    "credit_center",
                    "dishonesty_listing",
                    {"listing_department": "courts", "list_kind": "dishonest_judgment_debtor", "listed_on": listed},
                    listed,
                )
