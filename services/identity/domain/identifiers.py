"""Identifier validation and pseudonyms for the identity service (pure domain logic).

Two kinds of identifier open every govmesh service:

* the resident identity number of GB 11643-1999: 6-digit GB/T 2260 region code, 8-digit birth
  date YYYYMMDD, 3-digit sequence (odd for men, even for women) and an ISO 7064 MOD 11-2 check
  character ("X" stands for 10).  Legacy 15-digit numbers (region, YYMMDD of the 1900s,
  sequence, no check character) are converted to the 18-character form;
* the unified social credit code of GB 32100-2015: registration authority (1 character), entity
  type (1), region code of the registering office (6 digits), the GB 11714 organisation code
  (9 characters, the last one its own check) and a MOD 31 check character, all drawn from
  ``0123456789ABCDEFGHJKLMNPQRTUWXY`` (never I, O, S, V or Z).

The module is plain Python (standard library and python-stdnum): no framework, no I/O, no
logging.  It never logs anything, and its problem messages name only the offending part of an
identifier, never the whole of it.

Decisions taken where the standards or the data leave room are in docs/decisions/identity-*.md
(kind detection, region codes, birth dates, registration authorities, problem positions).
"""

from __future__ import annotations

import base64
import datetime
import enum
import functools
import hashlib
import hmac
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from stdnum import numdb
from stdnum.cn import ric, uscc

__all__ = [
    "EnterpriseFacts",
    "IdentifierKind",
    "MalformedRequest",
    "Problem",
    "ProblemCode",
    "ResidentFacts",
    "Sex",
    "Validation",
    "mask",
    "normalize",
    "subject_pseudonym",
    "validate_identifier",
]

#: Longest raw request value accepted (in code points, before normalisation).
MAX_RAW_LENGTH = 64
#: Earliest birth date accepted in a resident identity number.
EARLIEST_BIRTH_DATE = datetime.date(1850, 1, 1)
#: Shortest key accepted by :func:`subject_pseudonym`.
MIN_PSEUDONYM_KEY_BYTES = 16

_DIGITS = "0123456789"
_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_NATIONAL_REGION = "100000"
_NATIONAL_REGION_NAME = "全国"


class IdentifierKind(enum.Enum):
    RESIDENT = "resident"
    ENTERPRISE = "enterprise"


class ProblemCode(enum.Enum):
    """Names and values equal govmesh.identity.v1.ProblemCode without the PROBLEM_CODE_ prefix."""

    WRONG_LENGTH = 1
    BAD_CHARACTER = 2
    BAD_CHECK_CHARACTER = 3
    IMPOSSIBLE_BIRTH_DATE = 4
    FUTURE_BIRTH_DATE = 5
    UNKNOWN_REGION = 6
    BAD_ORGANIZATION_CODE = 7
    UNKNOWN_REGISTRATION_AUTHORITY = 8
    UNKNOWN_ENTITY_TYPE = 9


class Sex(enum.Enum):
    """Names and values equal govmesh.identity.v1.Sex without the SEX_ prefix."""

    MALE = 1
    FEMALE = 2


@dataclass(frozen=True)
class Problem:
    code: ProblemCode
    #: English explanation naming the offending part and its value (never the whole identifier).
    message: str
    #: 1-based position of the offending character in the normalized identifier, or 0.
    position: int = 0


@dataclass(frozen=True)
class ResidentFacts:
    birth_date: datetime.date
    sex: Sex
    region_code: str
    #: Province, prefecture and county names separated by spaces, e.g. "浙江省 杭州市 西湖区".
    region_name: str


@dataclass(frozen=True)
class EnterpriseFacts:
    registration_authority_code: str
    registration_authority_name: str
    entity_type_code: str
    entity_type_name: str
    region_code: str
    region_name: str
    organization_code: str


@dataclass(frozen=True)
class Validation:
    valid: bool
    #: The kind the identifier was read as; None when its length fits neither kind.
    kind: IdentifierKind | None
    #: The identifier after normalisation (and 15-to-18 conversion of a legacy resident number).
    normalized: str
    #: Every problem found; empty when valid.
    problems: tuple[Problem, ...]
    resident: ResidentFacts | None
    enterprise: EnterpriseFacts | None
    converted_from_legacy: bool
    #: ``mask(normalized)`` when valid, "" otherwise.
    masked: str


class MalformedRequest(ValueError):
    """The request itself is malformed (not merely an invalid identifier).

    Raised only for a value that is empty after normalisation or longer than
    ``MAX_RAW_LENGTH`` characters.  ``field`` names the request field, ``reason`` says why.
    """

    def __init__(self, reason: str, field: str = "identifier") -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


# Registration authority code -> (name, entity type code -> name), as in use under GB 32100-2015.
_AUTHORITIES: Mapping[str, tuple[str, Mapping[str, str]]] = {
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

# Intermediate levels whose name says nothing ("urban districts", "counties"; also any name with
# 直辖, "directly administered units"); left out of a region name unless they are the code's own.
_PLACEHOLDER_NAMES = frozenset({"市辖区", "县"})

# Weights of the GB 11714 organisation code check (positions 1-8).
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


# --------------------------------------------------------------------------------------------
# Public functions


def normalize(raw: str) -> str:
    """Return ``raw`` in canonical form.

    NFKC folds full-width digits and letters (``３３０１``, ``ｘ``) to ASCII; white space of any
    kind (including no-break and ideographic spaces), invisible format characters (zero-width
    space, BOM) and dashes (hyphen-minus, Unicode dashes, minus sign) are removed; letters are
    upper-cased.  Anything else is kept, so validation can point at it.
    """
    if raw.isascii() and raw.isalnum():
        # The common case, an identifier typed or stored plainly: NFKC leaves ASCII letters and
        # digits as they are and there is nothing to remove, so only the case changes.
        return raw.upper()
    folded = unicodedata.normalize("NFKC", raw)
    kept = (ch for ch in folded if not (ch.isspace() or ch == "\u2212" or unicodedata.category(ch) in ("Cf", "Pd")))
    return "".join(kept).upper()


def validate_identifier(raw: str, today: datetime.date) -> Validation:
    """Validate a resident identity number or a unified social credit code.

    ``today`` is the current date in Asia/Shanghai (govmesh.clock.shanghai_date); it is a
    parameter so that callers and tests decide what "future" means.  An invalid identifier is an
    answer (``valid`` False, every problem listed), not an exception: :class:`MalformedRequest`
    is raised only when ``raw`` is longer than ``MAX_RAW_LENGTH`` or empty after normalisation.
    """
    if isinstance(today, datetime.datetime):
        raise TypeError("today must be a datetime.date (the date in Asia/Shanghai), not a datetime")
    if len(raw) > MAX_RAW_LENGTH:
        raise MalformedRequest(f"is {len(raw)} characters long; at most {MAX_RAW_LENGTH} are accepted")
    normalized = normalize(raw)
    if not normalized:
        raise MalformedRequest("is empty (nothing left after removing spaces and hyphens)")

    if len(normalized) == 15:
        reading = _read_resident(normalized, today)
    elif len(normalized) == 18:
        as_resident = _read_resident(normalized, today)
        resident_shaped = _has_resident_shape(normalized)
        if resident_shaped and not as_resident.problems:
            # A valid resident number is read as one whatever else it might be (no reading as an
            # enterprise can have fewer than no problems): most callers send these.
            reading = as_resident
        else:
            as_enterprise = _read_enterprise(normalized)
            if resident_shaped:
                prefer_resident = len(as_resident.problems) <= len(as_enterprise.problems)
            else:
                prefer_resident = len(as_resident.problems) < len(as_enterprise.problems)
            reading = as_resident if prefer_resident else as_enterprise
    else:
        return _wrong_length(normalized)

    valid = not reading.problems
    return Validation(
        valid=valid,
        kind=reading.kind,
        normalized=reading.normalized,
        problems=reading.problems,
        resident=reading.resident if valid else None,
        enterprise=reading.enterprise if valid else None,
        converted_from_legacy=reading.converted,
        masked=mask(reading.normalized) if valid else "",
    )


def mask(normalized: str) -> str:
    """Mask an identifier for display and logs.

    18 characters (both kinds): the first 6 and the last 4 are kept, the 8 between replaced by
    ``*`` (``330106********123X``): for a resident exactly the birth date is hidden.
    15 characters (legacy resident): first 6 and last 3 kept (``330106******123``).
    Any other length: every character replaced by ``*``.
    """
    if len(normalized) == 18:
        return normalized[:6] + "*" * 8 + normalized[-4:]
    if len(normalized) == 15:
        return normalized[:6] + "*" * 6 + normalized[-3:]
    return "*" * len(normalized)


def subject_pseudonym(key: bytes, kind: IdentifierKind, normalized: str) -> str:
    """Return the stable, keyed pseudonym of a subject.

    ``"sub_"`` followed by the lower-case RFC 4648 base32 form (padding removed) of
    ``HMAC-SHA256(key, b"govmesh.subject.v1\\x00" + kind.value + b"\\x00" + normalized)``:
    always 56 characters, ``sub_[a-z2-7]{52}``.  The same key, kind and identifier give the same
    pseudonym; without the key it cannot be reversed or recomputed.  The identifier space of
    residents is small enough to enumerate, so the key must stay secret; keys shorter than
    ``MIN_PSEUDONYM_KEY_BYTES`` are refused.  ``normalized`` must be the 18-character
    ``Validation.normalized`` (so a legacy 15-digit number and its converted form share one
    pseudonym); anything else raises ValueError.
    """
    if len(key) < MIN_PSEUDONYM_KEY_BYTES:
        raise ValueError(f"pseudonym key must be at least {MIN_PSEUDONYM_KEY_BYTES} bytes long")
    if len(normalized) != 18 or normalize(normalized) != normalized:
        raise ValueError("identifier must be a normalized 18-character identifier")
    message = b"\x00".join((b"govmesh.subject.v1", kind.value.encode("ascii"), normalized.encode("utf-8")))
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return "sub_" + base64.b32encode(digest).decode("ascii").rstrip("=").lower()


# --------------------------------------------------------------------------------------------
# Readings


@dataclass(frozen=True)
class _Reading:
    kind: IdentifierKind
    normalized: str
    problems: tuple[Problem, ...]
    resident: ResidentFacts | None = None
    enterprise: EnterpriseFacts | None = None
    converted: bool = False


def _has_resident_shape(value: str) -> bool:
    return len(value) == 18 and _all_in(value[:17], _DIGITS) and value[17] in _DIGITS + "X"


def _all_in(part: str, alphabet: str) -> bool:
    return all(ch in alphabet for ch in part)


def _show(ch: str) -> str:
    """A single character for a message: quoted, with its code point when not plain ASCII."""
    if ch.isascii() and ch.isprintable():
        return f"'{ch}'"
    return f"U+{ord(ch):04X}"


def _wrong_length(normalized: str) -> Validation:
    problems = [
        Problem(
            ProblemCode.WRONG_LENGTH,
            f"identifier has {len(normalized)} characters; a resident identity number has 18 "
            "(15 in the legacy form) and a unified social credit code has 18",
        )
    ]
    problems.extend(
        Problem(
            ProblemCode.BAD_CHARACTER,
            f"character {_show(ch)} at position {pos} belongs to no identifier alphabet "
            "(digits and the letters ABCDEFGHJKLMNPQRTUWXY)",
            pos,
        )
        for pos, ch in enumerate(normalized, start=1)
        if ch not in _USCC_ALPHABET
    )
    return Validation(
        valid=False,
        kind=None,
        normalized=normalized,
        problems=tuple(problems),
        resident=None,
        enterprise=None,
        converted_from_legacy=False,
        masked="",
    )


def _resident_check(body17: str) -> str:
    """ISO 7064 MOD 11-2 check character of 17 digits (stdnum expects a trailing check slot)."""
    return ric.calc_check_digit(body17 + "0")


def _read_resident(value: str, today: datetime.date) -> _Reading:
    problems: list[Problem] = []
    legacy = len(value) == 15
    if legacy:
        bad = [(pos, ch) for pos, ch in enumerate(value, start=1) if ch not in _DIGITS]
        for pos, ch in bad:
            problems.append(
                Problem(
                    ProblemCode.BAD_CHARACTER,
                    f"character {_show(ch)} at position {pos} is not allowed: a legacy 15-digit "
                    "resident identity number has digits only",
                    pos,
                )
            )
        converted = not bad
        if converted:
            body = value[:6] + "19" + value[6:]
            value = body + _resident_check(body)
            date_part, date_span = value[6:14], "characters 7-14"
        else:
            date_part, date_span = "19" + value[6:12], "characters 7-12, century 19"
    else:
        converted = False
        for pos, ch in enumerate(value, start=1):
            if ch in _DIGITS or (pos == 18 and ch == "X"):
                continue
            allowed = "a digit or X" if pos == 18 else "a digit"
            problems.append(
                Problem(
                    ProblemCode.BAD_CHARACTER,
                    f"character {_show(ch)} at position {pos} is not allowed: a resident "
                    f"identity number has {allowed} there",
                    pos,
                )
            )
        date_part, date_span = value[6:14], "characters 7-14"

    birth_date: datetime.date | None = None
    if _all_in(date_part, _DIGITS):
        birth_date = _parse_birth_date(date_part)
        if birth_date is None:
            reason = "is not a calendar date"
            if _is_calendar_date(date_part):
                reason = f"is before {EARLIEST_BIRTH_DATE.year}"
            problems.append(
                Problem(
                    ProblemCode.IMPOSSIBLE_BIRTH_DATE,
                    f"birth date {date_part} ({date_span}) {reason}",
                )
            )
        elif birth_date > today:
            problems.append(
                Problem(
                    ProblemCode.FUTURE_BIRTH_DATE,
                    f"birth date {date_part} ({date_span}) lies after today ({today.isoformat()}, Asia/Shanghai)",
                )
            )

    region_code = value[:6]
    region_name: str | None = None
    if _all_in(region_code, _DIGITS):
        region_name = _region_name(region_code, birth_date.year if birth_date else None)
        if region_name is None:
            problems.append(
                Problem(
                    ProblemCode.UNKNOWN_REGION,
                    f"region code {region_code} (characters 1-6) is not a known administrative division (GB/T 2260)",
                )
            )

    if len(value) == 18 and _has_resident_shape(value):
        expected = _resident_check(value[:17])
        if value[17] != expected:
            problems.append(
                Problem(
                    ProblemCode.BAD_CHECK_CHARACTER,
                    f"check character '{value[17]}' (position 18) does not match the "
                    f"ISO 7064 MOD 11-2 check; expected '{expected}'",
                    18,
                )
            )

    facts: ResidentFacts | None = None
    if not problems and birth_date is not None and region_name is not None:
        facts = ResidentFacts(
            birth_date=birth_date,
            sex=Sex.MALE if int(value[14:17]) % 2 else Sex.FEMALE,
            region_code=region_code,
            region_name=region_name,
        )
    return _Reading(IdentifierKind.RESIDENT, value, tuple(problems), resident=facts, converted=converted)


def _is_calendar_date(yyyymmdd: str) -> bool:
    try:
        datetime.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    except ValueError:
        return False
    return True


def _parse_birth_date(yyyymmdd: str) -> datetime.date | None:
    """The date, or None when it does not exist or lies before EARLIEST_BIRTH_DATE."""
    try:
        parsed = datetime.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    except ValueError:
        return None
    return parsed if parsed >= EARLIEST_BIRTH_DATE else None


def _organization_check(body8: str) -> str:
    """GB 11714 check character of an 8-character organisation code body.

    Digits count as 0-9 and letters A-Z as 10-35; the check is 11 - (weighted sum mod 11),
    written X for 10 and 0 for 11.
    """
    total = sum(int(ch, 36) * w for ch, w in zip(body8, _ORG_WEIGHTS, strict=True))
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def _read_enterprise(value: str) -> _Reading:
    problems: list[Problem] = []
    bad_positions: set[int] = set()
    for pos, ch in enumerate(value, start=1):
        if 3 <= pos <= 8 and ch not in _DIGITS:
            reason = "the region code (characters 3-8) has digits only"
        elif ch not in _USCC_ALPHABET:
            reason = (
                "a unified social credit code uses digits and the letters "
                "ABCDEFGHJKLMNPQRTUWXY only (never I, O, S, V, Z)"
            )
        else:
            continue
        bad_positions.add(pos)
        problems.append(
            Problem(
                ProblemCode.BAD_CHARACTER,
                f"character {_show(ch)} at position {pos} is not allowed: {reason}",
                pos,
            )
        )

    authority_code, type_code = value[0], value[1]
    authority = _AUTHORITIES.get(authority_code)
    if authority is None and 1 not in bad_positions:
        problems.append(
            Problem(
                ProblemCode.UNKNOWN_REGISTRATION_AUTHORITY,
                f"registration authority code '{authority_code}' (position 1) names no "
                f"registration authority; known codes: {', '.join(_AUTHORITIES)}",
                1,
            )
        )
    if authority is not None and type_code not in authority[1] and 2 not in bad_positions:
        problems.append(
            Problem(
                ProblemCode.UNKNOWN_ENTITY_TYPE,
                f"entity type code {_show(type_code)} (position 2) is not defined for "
                f"registration authority '{authority_code}'; allowed: {', '.join(authority[1])}",
                2,
            )
        )

    region_code = value[2:8]
    region_name: str | None = None
    if not bad_positions.intersection(range(3, 9)):
        region_name = _NATIONAL_REGION_NAME if region_code == _NATIONAL_REGION else _region_name(region_code)
        if region_name is None:
            problems.append(
                Problem(
                    ProblemCode.UNKNOWN_REGION,
                    f"region code {region_code} (characters 3-8) is not a known administrative division (GB/T 2260)",
                )
            )

    organization_code = value[8:17]
    if not bad_positions.intersection(range(9, 18)):
        expected = _organization_check(organization_code[:8])
        if organization_code[8] != expected:
            problems.append(
                Problem(
                    ProblemCode.BAD_ORGANIZATION_CODE,
                    f"organization code check character '{organization_code[8]}' (position 17) "
                    f"does not match the GB 11714 check; expected '{expected}'",
                    17,
                )
            )

    if _all_in(value, _USCC_ALPHABET):  # a letter in the region part still has a check value
        expected = uscc.calc_check_digit(value[:17])
        if value[17] != expected:
            problems.append(
                Problem(
                    ProblemCode.BAD_CHECK_CHARACTER,
                    f"check character '{value[17]}' (position 18) does not match the "
                    f"GB 32100 MOD 31 check; expected '{expected}'",
                    18,
                )
            )

    facts: EnterpriseFacts | None = None
    if not problems and authority is not None and region_name is not None:
        facts = EnterpriseFacts(
            registration_authority_code=authority_code,
            registration_authority_name=authority[0],
            entity_type_code=type_code,
            entity_type_name=authority[1][type_code],
            region_code=region_code,
            region_name=region_name,
            organization_code=organization_code,
        )
    return _Reading(IdentifierKind.ENTERPRISE, value, tuple(problems), enterprise=facts)


# --------------------------------------------------------------------------------------------
# Regions (python-stdnum's GB/T 2260 history, cn/loc)


def _name_in_history(history: str, year: int | None) -> str:
    """Pick one name from a stdnum history such as ``[-1991]东郊区,[1992-]东丽区``.

    With a year: the name valid that year, else the earliest one that starts later, else the
    latest.  Without a year: the latest.
    """
    periods: list[tuple[int, int, str]] = []
    for item in history.split(","):
        if item.startswith("[") and "]" in item:
            span, name = item[1:].split("]", 1)
            first, _, last = span.partition("-")
            periods.append((int(first) if first else 0, int(last) if last else 9999, name))
        else:
            periods.append((0, 9999, item))
    if year is not None:
        for start, end, name in periods:
            if start <= year <= end:
                return name
        later = [period for period in periods if period[0] > year]
        if later:
            return min(later)[2]
    return max(periods, key=lambda period: (period[1], period[0]))[2]


def _division_name(code: str, year: int | None) -> str | None:
    """Name of one 6-digit division code, or None when the data does not know it."""
    merged: dict[str, str] = {}
    for _, props in numdb.get("cn/loc").info(code):
        merged.update(props)
    history = merged.get("county")
    return _name_in_history(history, year) if history else None


# The same few thousand regions and birth years come up again and again, and looking one up in
# stdnum's data walks its tables three times (about half of a validation's time): remembered.
@functools.lru_cache(maxsize=1 << 16)
def _region_name(code: str, year: int | None = None) -> str | None:
    """ "Province prefecture county" name of a known region code, or None when unknown."""
    own = _division_name(code, year)
    if own is None:
        return None
    names: list[str] = []
    for level in dict.fromkeys((code[:2] + "0000", code[:4] + "00", code)):
        name = own if level == code else _division_name(level, year)
        if name is None or (level != code and _is_placeholder(name)):
            continue
        if not names or names[-1] != name:
            names.append(name)
    return " ".join(names)


def _is_placeholder(name: str) -> bool:
    return name in _PLACEHOLDER_NAMES or "直辖" in name
