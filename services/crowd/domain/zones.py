"""A zone's configuration and the vocabulary of the crowd domain (pure domain, no I/O).

A zone is an area with an instantaneous capacity (LB/T 034-2014: the most people the site can
hold at once), its three response levels with the measures each triggers, a hysteresis margin
and minimum dwell so a level does not flap, how long a sensor may be quiet before it is flagged
silent, and its schedule of crowd-drawing events (the West Lake music fountain's shows).

The enums' names match govmesh.crowd.v1's ResponseLevel, Measure and SensorKind without their
prefix (contract.py maps them by name; None stands for the contract's UNSPECIFIED); the
contract itself is not imported here. Ratios are integer basis points of capacity (6000 = 60%).
The small helpers every crowd module uses live here too, once: :data:`SHANGHAI`, :func:`is_int`,
:func:`aware_utc` (the one "must be timezone-aware" check) and :func:`local_instant`.

Validation (:func:`build_zone`) reports every problem at once as a :class:`ZoneProblem`, each
with the contract's field path ("zone.levels[1].threshold_bp") and a reason. Levels: none (the
defaults) or exactly III, II, I in that order, thresholds strictly increasing and each
100-50,000 bp, each level with at least one measure and no measure twice within a level (the same
measure at two levels is allowed and means the lower one). Hysteresis must be below level III's
threshold and below the gap between consecutive thresholds. Start times are local "HH:MM"
(:func:`parse_local_time`) and season dates ISO "YYYY-MM-DD", "" or None for unbounded
(:func:`parse_season_date`).

Decisions: docs/decisions/crowd-level-ii-puts-barriers-up.md (:data:`DEFAULT_LEVELS`),
crowd-proto3-zero-means-default.md (the other defaults), crowd-hysteresis-and-dwell.md and
crowd-schedule-in-local-time.md.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import itertools
import re
import zoneinfo
from collections.abc import Iterable, Sequence
from typing import Final, NamedTuple, TypeGuard

__all__ = [
    "BP_DENOMINATOR",
    "DEFAULT_HYSTERESIS_BP",
    "DEFAULT_LEVELS",
    "DEFAULT_MIN_DWELL",
    "DEFAULT_SILENCE_AFTER",
    "LEVEL_ORDER",
    "MAX_CAPACITY",
    "MAX_MIN_DWELL",
    "MAX_NAME_CHARS",
    "MAX_SCHEDULE_DURATION",
    "MAX_SCHEDULE_ENTRIES",
    "MAX_SILENCE_AFTER",
    "MAX_THRESHOLD_BP",
    "MIN_SCHEDULE_DURATION",
    "MIN_SILENCE_AFTER",
    "MIN_THRESHOLD_BP",
    "SHANGHAI",
    "FieldProblem",
    "Level",
    "LevelRule",
    "Measure",
    "RawScheduleEntry",
    "ScheduleEntry",
    "ScheduleOccurrence",
    "SensorKind",
    "ZoneConfig",
    "ZoneProblem",
    "ZoneRecord",
    "aware_utc",
    "build_zone",
    "format_local_time",
    "is_int",
    "is_zone_id",
    "local_instant",
    "measures_in_force",
    "parse_local_time",
    "parse_season_date",
    "schedule_occurrences",
    "schedule_running",
    "shown_id",
    "threshold_bp",
]


class Level(enum.IntEnum):
    """A zone's response level, ordered by severity: NONE < III < II < I (level I is the most
    severe, as in the Chinese 一级 response)."""

    NONE = 0
    III = 1
    II = 2
    I = 3  # noqa: E741 - the level's official name


class Measure(enum.Enum):
    ANNOUNCE = "announce"
    STAFF_DEPLOYED = "staff_deployed"
    TICKET_SALES_STOP = "ticket_sales_stop"
    EMERGENCY_PLAN = "emergency_plan"
    BARRIERS_UP = "barriers_up"
    METRO_SKIPS_STATION = "metro_skips_station"
    BUSES_SKIP_STOPS = "buses_skip_stops"
    NAVIGATION_AREA_FULL = "navigation_area_full"
    ENTRY_CLOSED = "entry_closed"


class SensorKind(enum.Enum):
    GATE_COUNTER = "gate_counter"
    CAMERA = "camera"
    PHONE_SIGNAL = "phone_signal"


@dataclasses.dataclass(frozen=True)
class LevelRule:
    """One response level: entered when the load reaches threshold_bp of capacity; its
    measures are in force while the zone is at this level or above."""

    level: Level
    threshold_bp: int
    measures: tuple[Measure, ...]


@dataclasses.dataclass(frozen=True)
class ScheduleEntry:
    """A recurring crowd-drawing event, in local (Asia/Shanghai) time."""

    name: str
    start_time: datetime.time
    duration: datetime.timedelta
    # ISO weekdays (1 = Monday .. 7 = Sunday); empty: every day.
    iso_weekdays: frozenset[int]
    # The season it runs in, inclusive; None: unbounded.
    valid_from: datetime.date | None
    valid_to: datetime.date | None


@dataclasses.dataclass(frozen=True)
class ZoneConfig:
    zone_id: str
    name_zh: str
    name_en: str
    capacity: int
    # Exactly three, III then II then I, with strictly increasing thresholds.
    levels: tuple[LevelRule, ...]
    hysteresis_bp: int
    min_dwell: datetime.timedelta
    silence_after: datetime.timedelta
    schedule: tuple[ScheduleEntry, ...]


@dataclasses.dataclass(frozen=True)
class ZoneRecord:
    """A zone's configuration as registered: when the zone was created and last reconfigured."""

    config: ZoneConfig
    created_at: datetime.datetime
    updated_at: datetime.datetime


#: 10,000 basis points = 100.00% of capacity.
BP_DENOMINATOR: Final = 10_000
#: The levels a zone configures, in the order they are declared (increasing severity).
LEVEL_ORDER: Final = (Level.III, Level.II, Level.I)

#: The default levels (docs/decisions/crowd-level-ii-puts-barriers-up.md: why each measure sits where it does).
DEFAULT_LEVELS: Final = (
    LevelRule(Level.III, 6_000, (Measure.ANNOUNCE, Measure.STAFF_DEPLOYED)),
    LevelRule(
        Level.II,
        8_000,
        (Measure.TICKET_SALES_STOP, Measure.EMERGENCY_PLAN, Measure.BARRIERS_UP, Measure.NAVIGATION_AREA_FULL),
    ),
    LevelRule(Level.I, 10_000, (Measure.METRO_SKIPS_STATION, Measure.BUSES_SKIP_STOPS, Measure.ENTRY_CLOSED)),
)
#: A level is left only when the load falls this far below its threshold: 80% in, below 75% out.
DEFAULT_HYSTERESIS_BP: Final = 500
#: A level is held at least this long before the zone may move down again.
DEFAULT_MIN_DWELL: Final = datetime.timedelta(minutes=10)
#: A sensor quiet for this long is flagged silent.
DEFAULT_SILENCE_AFTER: Final = datetime.timedelta(minutes=5)

#: Bounds checked by build_zone.
MAX_NAME_CHARS: Final = 100
MAX_CAPACITY: Final = 10_000_000
MIN_THRESHOLD_BP: Final = 100
MAX_THRESHOLD_BP: Final = 50_000
MAX_MIN_DWELL: Final = datetime.timedelta(hours=24)
MIN_SILENCE_AFTER: Final = datetime.timedelta(seconds=10)
MAX_SILENCE_AFTER: Final = datetime.timedelta(hours=24)
MAX_SCHEDULE_ENTRIES: Final = 50
MIN_SCHEDULE_DURATION: Final = datetime.timedelta(minutes=1)
MAX_SCHEDULE_DURATION: Final = datetime.timedelta(hours=24)

#: The time zone of the province's calendar days and of schedule times: the one definition the crowd
#: modules share (zoneinfo caches it, so it is the very object govmesh.clock.SHANGHAI is; that module
#: is not imported here because it pulls in protobuf and reads the machine's clock).
SHANGHAI: Final = zoneinfo.ZoneInfo("Asia/Shanghai")

_ZONE_ID: Final = re.compile(r"[a-z][a-z0-9_]{1,62}")
_LOCAL_TIME: Final = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_ISO_DATE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_ZERO: Final = datetime.timedelta(0)


class FieldProblem(NamedTuple):
    """One problem of a zone configuration: the contract's field path and why."""

    field: str
    reason: str


class ZoneProblem(ValueError):
    """A zone configuration is invalid; ``problems`` lists every problem found, in field order."""

    def __init__(self, problems: Sequence[FieldProblem]) -> None:
        self.problems: tuple[FieldProblem, ...] = tuple(problems)
        listed = "; ".join(f"{problem.field}: {problem.reason}" for problem in self.problems)
        count = len(self.problems)
        super().__init__(f"invalid zone ({count} problem{'s' if count != 1 else ''}): {listed}")


class RawScheduleEntry(NamedTuple):
    """A schedule entry as the contract carries it, for :func:`build_zone` to check and parse:
    start_time "HH:MM" (or a datetime.time), season dates ISO strings ("" = unbounded) or dates."""

    name: str
    start_time: str | datetime.time
    duration: datetime.timedelta | None
    iso_weekdays: Iterable[int] = ()
    valid_from: str | datetime.date | None = None
    valid_to: str | datetime.date | None = None


#: What build_zone takes for a level: a LevelRule or (level, threshold_bp, measures).
LevelInput = LevelRule | tuple[Level | None, int, Iterable[Measure | None]]
ScheduleInput = ScheduleEntry | RawScheduleEntry


class ScheduleOccurrence(NamedTuple):
    """One run of a schedule entry: its start and end as aware UTC instants (end exclusive)."""

    entry: ScheduleEntry
    start: datetime.datetime
    end: datetime.datetime


def is_int(value: object) -> TypeGuard[int]:
    """Whether ``value`` is an int and not a bool (bool is an int subclass; True must never be
    read as a capacity of 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def aware_utc(name: str, value: object) -> datetime.datetime:
    """``value``, an aware datetime, in UTC. TypeError when it is not a datetime, ValueError when
    it is naive (it could be UTC or Asia/Shanghai); both name ``name``."""
    # Already UTC: the common case, checked first because ingestion calls this per reading.
    if type(value) is datetime.datetime and value.tzinfo is datetime.UTC:
        return value
    if not isinstance(value, datetime.datetime):
        raise TypeError(f"{name} must be an aware datetime.datetime, not {type(value).__name__}")
    if value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (a naive datetime could be UTC or Asia/Shanghai)")
    return value.astimezone(datetime.UTC)


def is_zone_id(value: str) -> bool:
    """Whether ``value`` has the form of a zone id (lower_snake_case, 2 to 63 characters); a value
    that has not cannot name a zone, and is refused before any lookup."""
    return _ZONE_ID.fullmatch(value) is not None


def shown_id(value: str) -> str:
    """An id as a message quotes it: a caller's megabyte of text is not echoed back."""
    return repr(value if len(value) <= 64 else value[:64] + "...")


def local_instant(day: datetime.date, time: datetime.time) -> datetime.datetime:
    """The aware UTC instant of the Asia/Shanghai wall-clock ``time`` on the local ``day``."""
    return datetime.datetime.combine(day, time, tzinfo=SHANGHAI).astimezone(datetime.UTC)


def parse_local_time(text: str) -> datetime.time:
    """A contract start time, "HH:MM" (two digits each, 00:00-23:59), as a datetime.time.
    ValueError saying why otherwise."""
    if not isinstance(text, str):
        raise ValueError(f'must be a local time "HH:MM", not {type(text).__name__}')
    match = _LOCAL_TIME.fullmatch(text)
    if match is None:
        raise ValueError(f'must be a local time "HH:MM" from 00:00 to 23:59 (got {text!r})')
    return datetime.time(int(match.group(1)), int(match.group(2)))


def format_local_time(value: datetime.time) -> str:
    """The contract's "HH:MM" form of a start time (the inverse of :func:`parse_local_time`)."""
    return f"{value.hour:02d}:{value.minute:02d}"


def parse_season_date(text: str | None) -> datetime.date | None:
    """A contract season date: ISO "YYYY-MM-DD", or "" / None for unbounded. ValueError otherwise."""
    if text is None or text == "":
        return None
    if not isinstance(text, str) or _ISO_DATE.fullmatch(text) is None:
        raise ValueError(f'must be an ISO date "YYYY-MM-DD" or empty (got {text!r})')
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"is not a calendar date (got {text!r})") from None


def _check_name(problems: list[FieldProblem], field: str, value: object, *, required: bool) -> str:
    if value is None:
        if required:
            problems.append(FieldProblem(field, "is required"))
        return ""
    if not isinstance(value, str):
        problems.append(FieldProblem(field, f"must be text, not {type(value).__name__}"))
        return ""
    if required and not value.strip():
        problems.append(FieldProblem(field, "is required"))
    elif len(value) > MAX_NAME_CHARS:
        problems.append(FieldProblem(field, f"must be at most {MAX_NAME_CHARS} characters (got {len(value)})"))
    elif not value.isprintable():
        problems.append(FieldProblem(field, "must not contain control characters"))
    return value


def _check_duration(
    problems: list[FieldProblem],
    field: str,
    value: object,
    default: datetime.timedelta,
    low: datetime.timedelta,
    high: datetime.timedelta,
) -> datetime.timedelta:
    if value is None:
        return default
    if not isinstance(value, datetime.timedelta):
        problems.append(FieldProblem(field, f"must be a duration, not {type(value).__name__}"))
        return default
    if value == _ZERO:
        return default
    if not low <= value <= high:
        problems.append(FieldProblem(field, f"must be from {low} to {high} (got {value})"))
    return value


def _check_levels(problems: list[FieldProblem], levels: Iterable[LevelInput] | None) -> tuple[LevelRule, ...] | None:
    """The checked levels; DEFAULT_LEVELS for none; None when they are invalid (problems added)."""
    given = list(levels) if levels is not None else []
    if not given:
        return DEFAULT_LEVELS
    before = len(problems)
    if len(given) != len(LEVEL_ORDER):
        problems.append(
            FieldProblem(
                "zone.levels",
                f"must be exactly 3 levels, III, II and I in that order, or none for the defaults (got {len(given)})",
            )
        )
    rules: list[LevelRule] = []
    previous: tuple[Level, int] | None = None
    for index, item in enumerate(given):
        path = f"zone.levels[{index}]"
        # Typed as object: the values come from outside, and every one is checked below.
        level: object
        threshold: object
        measures: object
        if isinstance(item, LevelRule):
            level, threshold, measures = item.level, item.threshold_bp, item.measures
        elif isinstance(item, tuple) and len(item) == 3:
            level, threshold, measures = item
        else:
            problems.append(FieldProblem(path, "must be a level rule (level, threshold_bp, measures)"))
            previous = None
            continue
        if not isinstance(level, Level) or level is Level.NONE:
            problems.append(FieldProblem(f"{path}.level", "must be III, II or I"))
        elif index < len(LEVEL_ORDER) and level is not LEVEL_ORDER[index]:
            problems.append(
                FieldProblem(
                    f"{path}.level",
                    f"must be {LEVEL_ORDER[index].name}: levels go III, II, I in that order (got {level.name})",
                )
            )
        threshold_ok = False
        if not is_int(threshold):
            problems.append(FieldProblem(f"{path}.threshold_bp", "must be an integer number of basis points"))
        elif not MIN_THRESHOLD_BP <= threshold <= MAX_THRESHOLD_BP:
            problems.append(
                FieldProblem(
                    f"{path}.threshold_bp",
                    f"must be {MIN_THRESHOLD_BP} to {MAX_THRESHOLD_BP} basis points (got {threshold})",
                )
            )
        else:
            threshold_ok = True
            if previous is not None and threshold <= previous[1]:
                problems.append(
                    FieldProblem(
                        f"{path}.threshold_bp",
                        f"must be above the previous level's threshold ({previous[1]} bp) (got {threshold})",
                    )
                )
        previous = (level, threshold) if threshold_ok and isinstance(level, Level) else None
        checked: list[Measure] = []
        measure_list = list(measures) if isinstance(measures, Iterable) and not isinstance(measures, str) else None
        if measure_list is None:
            problems.append(FieldProblem(f"{path}.measures", "must be a list of measures"))
        elif not measure_list:
            problems.append(FieldProblem(f"{path}.measures", "must name at least one measure the level triggers"))
        else:
            for position, measure in enumerate(measure_list):
                if not isinstance(measure, Measure):
                    problems.append(FieldProblem(f"{path}.measures[{position}]", "must be a measure"))
                elif measure in checked:
                    problems.append(
                        FieldProblem(f"{path}.measures[{position}]", f"{measure.name} is listed twice in this level")
                    )
                else:
                    checked.append(measure)
        if isinstance(level, Level) and is_int(threshold):
            rules.append(LevelRule(level, threshold, tuple(checked)))
    if len(problems) > before:
        return None
    return tuple(rules)


def _check_hysteresis(problems: list[FieldProblem], value: object, levels: tuple[LevelRule, ...] | None) -> int:
    field = "zone.hysteresis_bp"
    if value is None:
        hysteresis = DEFAULT_HYSTERESIS_BP
    elif not is_int(value):
        problems.append(FieldProblem(field, "must be an integer number of basis points"))
        return DEFAULT_HYSTERESIS_BP
    else:
        hysteresis = value or DEFAULT_HYSTERESIS_BP
    if hysteresis < 0:
        problems.append(FieldProblem(field, f"must not be negative (got {hysteresis})"))
        return hysteresis
    if levels is None:
        return hysteresis  # bounded by thresholds that are themselves invalid: nothing to say yet
    lowest = levels[0]
    if hysteresis >= lowest.threshold_bp:
        problems.append(
            FieldProblem(
                field,
                f"must be less than level {lowest.level.name}'s threshold ({lowest.threshold_bp} bp), "
                f"or the zone could never leave level {lowest.level.name} (got {hysteresis})",
            )
        )
        return hysteresis
    for lower, upper in itertools.pairwise(levels):
        gap = upper.threshold_bp - lower.threshold_bp
        if hysteresis >= gap:
            problems.append(
                FieldProblem(
                    field,
                    f"must be less than the {gap} bp between level {lower.level.name}'s and level "
                    f"{upper.level.name}'s thresholds, so that level {upper.level.name} is left "
                    f"above level {lower.level.name}'s threshold (got {hysteresis})",
                )
            )
            break
    return hysteresis


def _check_schedule_entry(problems: list[FieldProblem], index: int, item: object) -> ScheduleEntry | None:
    path = f"zone.schedule[{index}]"
    if isinstance(item, ScheduleEntry):
        raw = RawScheduleEntry(
            item.name, item.start_time, item.duration, item.iso_weekdays, item.valid_from, item.valid_to
        )
    elif isinstance(item, tuple) and len(item) == len(RawScheduleEntry._fields):
        raw = RawScheduleEntry(*item)
    else:
        problems.append(FieldProblem(path, "must be a schedule entry"))
        return None
    before = len(problems)
    name = _check_name(problems, f"{path}.name", raw.name, required=True)

    start: datetime.time | None = None
    if isinstance(raw.start_time, datetime.time):
        if raw.start_time.tzinfo is not None or raw.start_time.second or raw.start_time.microsecond:
            problems.append(FieldProblem(f"{path}.start_time", "must be a whole-minute local time without a time zone"))
        else:
            start = raw.start_time
    else:
        try:
            start = parse_local_time(raw.start_time)
        except ValueError as error:
            problems.append(FieldProblem(f"{path}.start_time", str(error)))

    duration = raw.duration
    if not isinstance(duration, datetime.timedelta):
        problems.append(FieldProblem(f"{path}.duration", "is required"))
    elif not MIN_SCHEDULE_DURATION <= duration <= MAX_SCHEDULE_DURATION:
        problems.append(
            FieldProblem(
                f"{path}.duration", f"must be from {MIN_SCHEDULE_DURATION} to {MAX_SCHEDULE_DURATION} (got {duration})"
            )
        )

    weekdays: set[int] = set()
    day_list = list(raw.iso_weekdays) if isinstance(raw.iso_weekdays, Iterable) else None
    if day_list is None or isinstance(raw.iso_weekdays, str):
        problems.append(FieldProblem(f"{path}.iso_weekdays", "must be a list of ISO weekdays"))
    else:
        for position, day in enumerate(day_list):
            if not is_int(day) or not 1 <= day <= 7:
                problems.append(
                    FieldProblem(f"{path}.iso_weekdays[{position}]", f"must be 1 (Monday) to 7 (Sunday) (got {day!r})")
                )
            elif day in weekdays:
                problems.append(FieldProblem(f"{path}.iso_weekdays[{position}]", f"weekday {day} is listed twice"))
            else:
                weekdays.add(day)

    season: list[datetime.date | None] = []
    for field in ("valid_from", "valid_to"):
        value = getattr(raw, field)
        if isinstance(value, datetime.datetime):
            problems.append(FieldProblem(f"{path}.{field}", "must be a date, not a date and time"))
            season.append(None)
        elif isinstance(value, datetime.date):
            season.append(value)
        else:
            try:
                season.append(parse_season_date(value))
            except ValueError as error:
                problems.append(FieldProblem(f"{path}.{field}", str(error)))
                season.append(None)
    valid_from, valid_to = season
    if valid_from is not None and valid_to is not None and valid_from > valid_to:
        problems.append(
            FieldProblem(
                f"{path}.valid_to",
                f"must not be before valid_from ({valid_from.isoformat()}) (got {valid_to.isoformat()})",
            )
        )
    if len(problems) > before or start is None or not isinstance(duration, datetime.timedelta):
        return None
    return ScheduleEntry(name, start, duration, frozenset(weekdays), valid_from, valid_to)


def build_zone(
    zone_id: str,
    name_zh: str,
    name_en: str | None = "",
    capacity: int = 0,
    levels: Iterable[LevelInput] | None = None,
    hysteresis_bp: int | None = None,
    min_dwell: datetime.timedelta | None = None,
    silence_after: datetime.timedelta | None = None,
    schedule: Iterable[ScheduleInput] | None = None,
) -> ZoneConfig:
    """A checked :class:`ZoneConfig` from the contract's values (defaults for empty levels and for
    missing or zero hysteresis, dwell and silence: docs/decisions/crowd-proto3-zero-means-default.md). Raises
    :class:`ZoneProblem` listing every problem found, with the contract's field paths."""
    problems: list[FieldProblem] = []
    if not isinstance(zone_id, str) or not is_zone_id(zone_id):
        problems.append(
            FieldProblem(
                "zone.zone_id",
                f"must be lower_snake_case: a letter, then 1 to 62 lower-case letters, "
                f"digits or underscores (got {zone_id!r})",
            )
        )
    checked_zh = _check_name(problems, "zone.name_zh", name_zh, required=True)
    checked_en = _check_name(problems, "zone.name_en", name_en, required=False)
    if not is_int(capacity) or not 1 <= capacity <= MAX_CAPACITY:
        problems.append(FieldProblem("zone.capacity", f"must be 1 to {MAX_CAPACITY} persons (got {capacity!r})"))
    rules = _check_levels(problems, levels)
    hysteresis = _check_hysteresis(problems, hysteresis_bp, rules)
    dwell = _check_duration(problems, "zone.min_dwell", min_dwell, DEFAULT_MIN_DWELL, _ZERO, MAX_MIN_DWELL)
    silence = _check_duration(
        problems, "zone.silence_after", silence_after, DEFAULT_SILENCE_AFTER, MIN_SILENCE_AFTER, MAX_SILENCE_AFTER
    )
    entries: list[ScheduleEntry] = []
    items = list(schedule) if schedule is not None else []
    if len(items) > MAX_SCHEDULE_ENTRIES:
        problems.append(
            FieldProblem("zone.schedule", f"must have at most {MAX_SCHEDULE_ENTRIES} entries (got {len(items)})")
        )
    for index, item in enumerate(items):
        entry = _check_schedule_entry(problems, index, item)
        if entry is not None:
            entries.append(entry)
    if problems or rules is None:
        raise ZoneProblem(problems)
    return ZoneConfig(
        zone_id=zone_id,
        name_zh=checked_zh,
        name_en=checked_en,
        capacity=capacity,
        levels=rules,
        hysteresis_bp=hysteresis,
        min_dwell=dwell,
        silence_after=silence,
        schedule=tuple(entries),
    )


def threshold_bp(config: ZoneConfig, level: Level) -> int:
    """The load (basis points) at which the zone enters ``level``; 0 for NONE."""
    if level is Level.NONE:
        return 0
    for rule in config.levels:
        if rule.level is level:
            return rule.threshold_bp
    raise ValueError(f"zone {config.zone_id} has no level {level.name}")


def measures_in_force(config: ZoneConfig, level: Level) -> tuple[Measure, ...]:
    """The measures in force at ``level``: those of every level up to it, level III's first, each
    level's in declared order, each measure once; none at NONE."""
    in_force: list[Measure] = []
    for rule in sorted(config.levels, key=lambda rule: rule.level):
        if rule.level > level:
            break
        in_force.extend(measure for measure in rule.measures if measure not in in_force)
    return tuple(in_force)


def _runs_on(entry: ScheduleEntry, day: datetime.date) -> bool:
    if entry.iso_weekdays and day.isoweekday() not in entry.iso_weekdays:
        return False
    if entry.valid_from is not None and day < entry.valid_from:
        return False
    return entry.valid_to is None or day <= entry.valid_to


def schedule_occurrences(
    config: ZoneConfig, start: datetime.datetime, end: datetime.datetime
) -> tuple[ScheduleOccurrence, ...]:
    """Every run of the zone's schedule that overlaps [start, end) (aware instants), ordered by
    start, then by declared order. A run belongs to the local day it starts on
    (docs/decisions/crowd-schedule-in-local-time.md)."""
    window_start = aware_utc("start", start)
    window_end = aware_utc("end", end)
    if window_end < window_start:
        raise ValueError("end must not be before start")
    found: list[tuple[datetime.datetime, int, ScheduleOccurrence]] = []
    # A run lasts at most a day, so the day before the window's first local day can still reach it.
    day = window_start.astimezone(SHANGHAI).date() - datetime.timedelta(days=1)
    last_day = window_end.astimezone(SHANGHAI).date()
    while day <= last_day:
        for position, entry in enumerate(config.schedule):
            if not _runs_on(entry, day):
                continue
            run_start = local_instant(day, entry.start_time)
            run_end = run_start + entry.duration
            if run_start < window_end and run_end > window_start:
                found.append((run_start, position, ScheduleOccurrence(entry, run_start, run_end)))
        day += datetime.timedelta(days=1)
    found.sort(key=lambda item: (item[0], item[1]))
    return tuple(occurrence for _, _, occurrence in found)


def schedule_running(config: ZoneConfig, at: datetime.datetime) -> ScheduleEntry | None:
    """The schedule entry running at the instant ``at`` (start inclusive, end exclusive): of
    several, the one that started last, ties by declared order; None when nothing runs."""
    moment = aware_utc("at", at)
    running = [
        occurrence
        for occurrence in schedule_occurrences(config, moment, moment + datetime.timedelta(microseconds=1))
        if occurrence.start <= moment < occurrence.end
    ]
    if not running:
        return None
    latest = max(occurrence.start for occurrence in running)
    return next(occurrence.entry for occurrence in running if occurrence.start == latest)
