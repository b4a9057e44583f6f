"""The Hubin music fountain zone: its true crowd, day by day, and what its sensors report (pure model, no I/O).

A model of the controlled viewing area along West Lake on Hubin Road (湖滨), where the music
fountain (西湖音乐喷泉) plays every evening: the true number of people in the zone at 5-minute
steps of local (Asia/Shanghai) time, and the readings of the zone's sensors with the faults real
sensors have. It stands in for the world in ``govmesh crowd simulate`` and in tests; the crowd
service never imports it. The same seed gives the same crowd and the same readings, and each
calendar day is drawn from its own random streams (seeded by seed and date), so a day looks the
same whatever window it is part of.

The seed story (Hangzhou, 2019): the area peaks at tens of thousands of people on holidays, has a
few thousand on ordinary days and about a thousand (一千余人) off-season; barriers used to stay up
all year, and with live counts and a three-level response they went up on 36 days. The model is
calibrated so that, with :data:`CAPACITY`, level II (80%) is reached on about 30-45 days of a
year (tests/unit/crowd/test_demand.py checks 2019 and the 365 days to 2026-11-26).

The model (why it is shaped so: docs/decisions/crowd-demand-model.md):

* Capacity. :data:`CAPACITY` = 20,000: the 300-400 m of lakeside promenade and squares of the
  controlled area, about 350 m by 40 m, at roughly 0.7 m² per person, the density of an open
  viewing area. Level II (80%) is then 16,000 people and level I 20,000.
* A day's size. A day has a scale, the evening peak it is heading for (:class:`DayPlan`):
  :data:`WORKDAY_PEAK` (8,000) times the month's season factor (January 0.20 to August 1.00: the
  summer holidays and the spring and October highs, the winter low), times the kind of day (an
  ordinary rest day 2.7; a public holiday 3.6-6.5 by holiday, Spring Festival's highest because
  its month is the lowest, National Day's the largest crowd; the eve of a rest day 1.25; the last
  day of a holiday 0.75, people travel home; the first day of the Spring Festival holiday 0.4,
  usually New Year's Eve, when families dine at home),
  times the weather, times a day-to-day jitter (log-normal, sigma 0.12). January workdays then
  peak around 1,600, summer workdays around 7,500, clear summer weekends around 21,000 and
  Golden Week at 25,000-30,000. Level II is reached on 30-42 days of a year depending on the
  seed (2019 with seed 2019: 39).
* Calendar. Days off and adjusted working days (调休) come from chinese-calendar, which knows the
  State Council's arrangements for 2004-2026 only: for other years every Saturday and Sunday is a
  rest day and there are no public holidays (:attr:`CalendarDay.calendar_known` is False), which
  underestimates the crowd on those years' holidays.
* Weather. Each day's evening is clear, rainy or stormy, with monthly odds (the plum-rain season
  in June is the wettest). Rain cuts the crowd by a random factor, less on holidays (tourists on
  a trip go out anyway); a storm (a thunderstorm or typhoon, mostly July-September) cuts it to a
  fifth and the fountain is suspended that evening.
* Within a day. A background profile (quiet night and morning, afternoon strolling, the evening
  rise; rest days busier in the daytime) plus a surge for every show: the crowd gathers over the
  30 minutes before a show (most in the last minutes), stays for the show and disperses over the
  20 minutes after it. The night until 05:00 still carries the previous evening's scale, so
  midnight is continuous. A small autocorrelated noise (about 3%) moves every step.
* The fountain's schedule (:func:`shows_on`): every evening at 19:00 and 20:00, about 15 minutes
  each, the 20:00 show the larger; in the summer holidays (1 July - 31 August) a third show at
  21:00. Public reports give 15-20 minute shows and one to four shows an evening depending on
  the year and season; this is a plausible 2019-like schedule, and :func:`fountain_schedule`
  gives it as the zone's schedule entries.
* Sensors (:func:`sensors`): seven gate counters (two entrances on Hubin Road, five exits along
  the lake, as in the controlled area's published layout; people may cross any gate either way,
  but mostly enter at the entrances and leave at the exits), two cameras covering the whole zone
  and one phone-signal estimate. Every sensor reads once per 5-minute step, at the step's time.
  A gate reports its net delta (entries minus exits since its previous reading): people leave at
  about an eighth of the zone per step (a stay of about 40 minutes), the entries are the rest of
  the change, and both are split over the gates with jitter. The gates' deltas of a step sum
  exactly to the change of the true occupancy, and the counters start at zero with the window:
  the first step's deltas carry everyone already in the zone, so the sum of every delta sent
  equals the true occupancy (when no gate reading was lost). Cameras count the whole zone within
  ±5% (uniform), and 15% low between 23:00 and 05:00 when the lakeside lights are dimmed. The
  phone-signal estimate is coarse: ±10%, rounded to 50 people, and 5 minutes behind (the
  operator's aggregation).
* Faults (:class:`Faults`, realistic defaults): a sensor goes silent for a while (per sensor and
  day a small chance; gates rarely and briefly, 10-30 minutes, cameras for up to 4 hours): its
  readings in that time are never delivered, but its sequence keeps counting, so the gap is
  visible and the service ages the sensor out; a gate's lost deltas are lost for good, which is
  why gate silences are short and rare. A delivered reading may be re-sent (a duplicate: same
  sequence and value, delivered at the end of the next step) or delivered out of order (after
  the same sensor's next reading). Silences stay within their day.
* Delivery order (:attr:`SimulatedDay.readings`): step by step, gates then cameras then the phone
  estimate, with the delayed readings where the faults put them; held readings still pending at
  the end of the window are delivered after its last step.
* Floats shape the demand (a model of people, not a decision): every value that leaves the
  module is an int, rounded once, and comparisons against thresholds are integer (basis points).
"""

from __future__ import annotations

import datetime
import enum
import functools
import itertools
import random
import zoneinfo
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

import chinese_calendar

from services.crowd.domain.zones import ScheduleEntry, SensorKind

__all__ = [
    "CAPACITY",
    "DEFAULT_FAULTS",
    "NAME_EN",
    "NAME_ZH",
    "NO_FAULTS",
    "SHANGHAI",
    "STEP",
    "STEPS_PER_DAY",
    "WORKDAY_PEAK",
    "ZONE_ID",
    "CalendarDay",
    "DayKind",
    "DayPlan",
    "FaultCounts",
    "Faults",
    "Reading",
    "Sensor",
    "SimulatedDay",
    "TrueDay",
    "Weather",
    "calendar_day",
    "day_plan",
    "fountain_schedule",
    "sensors",
    "shows_on",
    "simulate",
    "true_day",
    "truth",
]

ZONE_ID: Final = "hubin"
NAME_ZH: Final = "湖滨音乐喷泉"
NAME_EN: Final = "Hubin music fountain"
#: The controlled viewing area's instantaneous capacity in persons: about 350 m x 40 m of
#: promenade and squares at roughly 0.7 m² per person (see the module docstring).
CAPACITY: Final = 20_000
#: A working day's evening peak in the month with season factor 1.0.
WORKDAY_PEAK: Final = 8_000
STEP: Final = datetime.timedelta(minutes=5)
STEPS_PER_DAY: Final = 288
SHANGHAI: Final = zoneinfo.ZoneInfo("Asia/Shanghai")

_MINUTES: Final = 5
# Share of the workday peak by month: winter low, spring and October highs, summer holidays top.
_SEASON: Final = (0.20, 0.28, 0.45, 0.72, 0.72, 0.60, 0.95, 1.00, 0.68, 0.72, 0.50, 0.28)
_REST_DAY: Final = 2.7
_EVE: Final = 1.25
_LAST_HOLIDAY_DAY: Final = 0.75
_SPRING_FESTIVAL_EVE: Final = 0.4
# By chinese-calendar's holiday names; an unknown name gets the default.
_HOLIDAY: Final = {
    "National Day": 4.8,
    "Labour Day": 4.0,
    "Spring Festival": 6.5,
    "Mid-autumn Festival": 3.8,
    "New Year's Day": 4.0,
    "Tomb-sweeping Day": 3.6,
    "Dragon Boat Festival": 3.8,
}
_HOLIDAY_DEFAULT: Final = 3.0
_JITTER_SIGMA: Final = 0.12
# Chance of an evening's rain and of a storm, by month.
_RAIN: Final = (0.25, 0.30, 0.35, 0.35, 0.35, 0.50, 0.30, 0.30, 0.25, 0.20, 0.20, 0.20)
_STORM: Final = (0.0, 0.0, 0.01, 0.01, 0.01, 0.02, 0.04, 0.04, 0.03, 0.01, 0.0, 0.0)
_STORM_FACTOR: Final = 0.2
# Night hours (until 05:00) carry the previous evening's scale.
_NIGHT_END_MINUTE: Final = 300
_NOISE_KEEP: Final = 0.85
_NOISE_SIGMA: Final = 0.015
# People leaving per step, as a share of those present (a stay of about 40 minutes).
_TURNOVER: Final = 0.125
_GATHER: Final = datetime.timedelta(minutes=30)
_DISPERSE: Final = datetime.timedelta(minutes=20)
_SHOW_LENGTH: Final = datetime.timedelta(minutes=15)
_SHOWS: Final = (datetime.time(19, 0), datetime.time(20, 0))
_SUMMER_SHOW: Final = datetime.time(21, 0)
# A show's surge, as a share of what the 20:00 show lifts the crowd to the day's peak.
_SHOW_SIZE: Final = {datetime.time(19, 0): 0.8, datetime.time(20, 0): 1.0, datetime.time(21, 0): 0.55}
_MAIN_SHOW: Final = datetime.time(20, 0)
_CAMERA_ERROR: Final = 0.05
_CAMERA_NIGHT: Final = 0.85
_PHONE_ERROR: Final = 0.10
_PHONE_ROUNDING: Final = 50

# Background occupancy as a share of the day's scale, at (hour, minute) keypoints; linear between.
_WORKDAY_PROFILE: Final = (
    (0, 0, 0.04), (1, 0, 0.02), (4, 30, 0.01), (6, 30, 0.05), (8, 0, 0.06), (10, 0, 0.12), (12, 0, 0.16),
    (15, 0, 0.18), (17, 0, 0.22), (18, 0, 0.32), (19, 0, 0.42), (20, 30, 0.45), (21, 30, 0.30), (22, 30, 0.15),
    (23, 30, 0.06), (24, 0, 0.04),
)  # fmt: skip
_REST_PROFILE: Final = (
    (0, 0, 0.04), (1, 0, 0.02), (4, 30, 0.01), (6, 30, 0.04), (8, 0, 0.08), (10, 0, 0.25), (12, 0, 0.32),
    (15, 0, 0.38), (17, 0, 0.40), (18, 0, 0.44), (19, 0, 0.50), (20, 30, 0.50), (21, 30, 0.35), (22, 30, 0.18),
    (23, 30, 0.07), (24, 0, 0.04),
)  # fmt: skip


class DayKind(enum.Enum):
    """A calendar day as the official calendar has it."""

    WORKDAY = "workday"  # a working day, adjusted working weekends (调休) included
    REST_DAY = "rest_day"  # an ordinary weekend day
    HOLIDAY = "holiday"  # a day off of a public holiday


class Weather(enum.Enum):
    CLEAR = "clear"
    RAIN = "rain"
    STORM = "storm"  # the fountain is suspended


@dataclass(frozen=True)
class CalendarDay:
    date: datetime.date
    kind: DayKind
    # chinese-calendar's name of the holiday ("National Day"), for HOLIDAY days only.
    holiday: str | None
    # False outside the years chinese-calendar knows: weekends only, no holidays.
    calendar_known: bool

    @property
    def rest(self) -> bool:
        """A day off (weekend or holiday): the days a fixed calendar policy puts barriers up."""
        return self.kind is not DayKind.WORKDAY


@dataclass(frozen=True)
class DayPlan:
    """What a day is like before the minute-by-minute noise."""

    calendar: CalendarDay
    weather: Weather
    # The evening peak the day is heading for, in people (the profile's maximum is 1.0).
    scale: float
    # The shows held (none in a storm).
    shows: tuple[datetime.time, ...]


@dataclass(frozen=True)
class TrueDay:
    """A day's true occupancy: ``occupancy[i]`` people at ``times[i]`` (aware UTC, 5-minute steps
    from local midnight)."""

    plan: DayPlan
    times: tuple[datetime.datetime, ...]
    occupancy: tuple[int, ...]

    @property
    def date(self) -> datetime.date:
        return self.plan.calendar.date

    @property
    def peak(self) -> int:
        return max(self.occupancy)

    @property
    def peak_at(self) -> datetime.datetime:
        """The first step at the day's peak."""
        return self.times[self.occupancy.index(self.peak)]


@dataclass(frozen=True)
class Sensor:
    sensor_id: str
    kind: SensorKind
    # Gates: the shares of the zone's entries and exits that pass it (before jitter).
    entry_weight: float = 0.0
    exit_weight: float = 0.0


class Reading(NamedTuple):
    """One reading, mirroring the contract's SensorReading: exactly one of ``delta`` (gate
    counters) and ``absolute_count`` (cameras, phone signal) is set. (A named tuple: a year is
    a million of them.)"""

    zone_id: str
    sensor_id: str
    kind: SensorKind
    sequence: int
    observed_at: datetime.datetime  # aware UTC
    delta: int | None = None
    absolute_count: int | None = None


@dataclass(frozen=True)
class Faults:
    """Sensor fault rates: the chance per sensor and day of a silence, its length in steps
    (inclusive range), and the chance per delivered reading of a re-send and of a late delivery."""

    gate_silence_per_day: float = 0.005
    gate_silence_steps: tuple[int, int] = (2, 6)
    camera_silence_per_day: float = 0.02
    camera_silence_steps: tuple[int, int] = (6, 48)
    phone_silence_per_day: float = 0.01
    phone_silence_steps: tuple[int, int] = (3, 24)
    duplicate_rate: float = 0.001
    out_of_order_rate: float = 0.001

    def __post_init__(self) -> None:
        rates = ("gate_silence_per_day", "camera_silence_per_day", "phone_silence_per_day")
        for name in (*rates, "duplicate_rate", "out_of_order_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"{name}: must be a probability between 0 and 1 (got {value!r})")
        for name in ("gate_silence_steps", "camera_silence_steps", "phone_silence_steps"):
            steps = getattr(self, name)
            if not (isinstance(steps, tuple) and len(steps) == 2 and all(isinstance(n, int) for n in steps)) or not (
                1 <= steps[0] <= steps[1] <= STEPS_PER_DAY
            ):
                raise ValueError(f"{name}: must be (low, high) steps with 1 <= low <= high <= {STEPS_PER_DAY}")

    def silence(self, kind: SensorKind) -> tuple[float, tuple[int, int]]:
        if kind is SensorKind.GATE_COUNTER:
            return self.gate_silence_per_day, self.gate_silence_steps
        if kind is SensorKind.CAMERA:
            return self.camera_silence_per_day, self.camera_silence_steps
        return self.phone_silence_per_day, self.phone_silence_steps


#: The realistic defaults.
DEFAULT_FAULTS: Final = Faults()
#: A perfect world, for checking the model itself.
NO_FAULTS: Final = Faults(
    gate_silence_per_day=0.0,
    camera_silence_per_day=0.0,
    phone_silence_per_day=0.0,
    duplicate_rate=0.0,
    out_of_order_rate=0.0,
)


@dataclass(frozen=True)
class FaultCounts:
    """What the faults did to a day's readings."""

    # Readings never delivered because their sensor was silent.
    withheld: int = 0
    # Re-sends of a reading already delivered.
    duplicates: int = 0
    # Readings delivered after the same sensor's next reading.
    out_of_order: int = 0


@dataclass(frozen=True)
class SimulatedDay:
    truth: TrueDay
    # In delivery order (see the module docstring).
    readings: tuple[Reading, ...]
    faults: FaultCounts
    # Positions in readings of the re-sends (duplicates of a reading delivered before).
    resent: tuple[int, ...] = ()

    @property
    def date(self) -> datetime.date:
        return self.truth.date


# -- the calendar and the schedule ---------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def calendar_day(date: datetime.date) -> CalendarDay:
    """The official calendar's view of ``date`` (a calendar date in Asia/Shanghai)."""
    _check_date("date", date)
    try:
        is_rest, name = chinese_calendar.get_holiday_detail(date)
    except NotImplementedError:
        kind = DayKind.REST_DAY if date.isoweekday() >= 6 else DayKind.WORKDAY
        return CalendarDay(date, kind, None, calendar_known=False)
    if not is_rest:
        return CalendarDay(date, DayKind.WORKDAY, None, calendar_known=True)
    if name is None:
        return CalendarDay(date, DayKind.REST_DAY, None, calendar_known=True)
    return CalendarDay(date, DayKind.HOLIDAY, str(name), calendar_known=True)


def shows_on(date: datetime.date) -> tuple[datetime.time, ...]:
    """The fountain's scheduled shows on ``date``: 19:00 and 20:00, and 21:00 in the summer
    holidays (1 July - 31 August); before the weather (a storm cancels them)."""
    _check_date("date", date)
    if 7 <= date.month <= 8:
        return (*_SHOWS, _SUMMER_SHOW)
    return _SHOWS


def fountain_schedule(first: datetime.date, last: datetime.date) -> tuple[ScheduleEntry, ...]:
    """The schedule of :func:`shows_on` as a zone's schedule entries for the days ``first`` to
    ``last`` (inclusive): the two daily shows, and the 21:00 show once per summer in the range."""
    _check_date("first", first)
    _check_date("last", last)
    if last < first:
        raise ValueError(f"last: {last} is before first ({first})")
    entries = [ScheduleEntry(f"音乐喷泉 {show:%H:%M}", show, _SHOW_LENGTH, frozenset(), None, None) for show in _SHOWS]
    for year in range(first.year, last.year + 1):
        season_start, season_end = datetime.date(year, 7, 1), datetime.date(year, 8, 31)
        if season_start <= last and first <= season_end:
            entries.append(
                ScheduleEntry(
                    f"音乐喷泉 {_SUMMER_SHOW:%H:%M} 暑期",
                    _SUMMER_SHOW,
                    _SHOW_LENGTH,
                    frozenset(),
                    season_start,
                    season_end,
                )
            )
    return tuple(entries)


# -- a day's plan and its true occupancy --------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def day_plan(seed: int, date: datetime.date) -> DayPlan:
    """The kind, weather, scale and shows of ``date``, drawn from (seed, date) alone."""
    _check_seed(seed)
    calendar = calendar_day(date)
    rng = random.Random(f"crowd-demand:{seed}:plan:{date.isoformat()}")
    factor = _SEASON[date.month - 1]
    following = calendar_day(date + datetime.timedelta(days=1))
    if calendar.kind is DayKind.HOLIDAY:
        factor *= _HOLIDAY.get(calendar.holiday or "", _HOLIDAY_DEFAULT)
        if following.kind is DayKind.WORKDAY:
            factor *= _LAST_HOLIDAY_DAY
        previous = calendar_day(date - datetime.timedelta(days=1))
        if calendar.holiday == "Spring Festival" and previous.holiday != "Spring Festival":
            factor *= _SPRING_FESTIVAL_EVE
    elif calendar.kind is DayKind.REST_DAY:
        factor *= _REST_DAY
    elif following.rest:
        factor *= _EVE
    roll = rng.random()
    storm = _STORM[date.month - 1]
    if roll < storm:
        weather, factor = Weather.STORM, factor * _STORM_FACTOR
    elif roll < storm + _RAIN[date.month - 1]:
        low, high = {DayKind.WORKDAY: (0.35, 0.75), DayKind.REST_DAY: (0.45, 0.8), DayKind.HOLIDAY: (0.6, 0.9)}[
            calendar.kind
        ]
        weather, factor = Weather.RAIN, factor * rng.uniform(low, high)
    else:
        weather = Weather.CLEAR
    factor *= rng.lognormvariate(0.0, _JITTER_SIGMA)
    shows = () if weather is Weather.STORM else shows_on(date)
    return DayPlan(calendar, weather, WORKDAY_PEAK * factor, shows)


def true_day(seed: int, date: datetime.date) -> TrueDay:
    """``date``'s true occupancy at every 5-minute step from local midnight."""
    plan = day_plan(seed, date)
    previous = day_plan(seed, date - datetime.timedelta(days=1))
    shape = _shape(plan.calendar.kind is DayKind.WORKDAY, plan.shows)
    rng = random.Random(f"crowd-demand:{seed}:truth:{date.isoformat()}")
    noise = 0.0
    occupancy = []
    for i, share in enumerate(shape):
        minute = i * _MINUTES
        if minute < _NIGHT_END_MINUTE:
            scale = previous.scale + (plan.scale - previous.scale) * minute / _NIGHT_END_MINUTE
        else:
            scale = plan.scale
        noise = _NOISE_KEEP * noise + rng.gauss(0.0, _NOISE_SIGMA)
        occupancy.append(max(0, round(scale * share * (1.0 + noise))))
    return TrueDay(plan, _step_times(date), tuple(occupancy))


def truth(start: datetime.date, days: int, seed: int) -> Iterator[TrueDay]:
    """The true occupancy of ``days`` days from ``start``, one day at a time (no sensors)."""
    _check_window(start, days)
    _check_seed(seed)
    return (true_day(seed, start + datetime.timedelta(days=offset)) for offset in range(days))


@functools.lru_cache(maxsize=64)
def _shape(workday: bool, shows: tuple[datetime.time, ...]) -> tuple[float, ...]:
    """The day's profile at each step, as a share of its scale: background plus show surges,
    scaled so that the main show lifts it to 1.0 at its start (without shows, the background)."""
    keypoints = _WORKDAY_PROFILE if workday else _REST_PROFILE
    background = [_interpolate(keypoints, i * _MINUTES) for i in range(STEPS_PER_DAY)]
    main = _MAIN_SHOW.hour * 60 + _MAIN_SHOW.minute
    lift = 1.0 - _interpolate(keypoints, main)
    shape = list(background)
    for show in shows:
        size = _SHOW_SIZE.get(show, _SHOW_SIZE[_MAIN_SHOW]) * lift
        for i in range(STEPS_PER_DAY):
            shape[i] += size * _surge(i * _MINUTES, show)
    return tuple(shape)


def _surge(minute: int, show: datetime.time) -> float:
    """The share of a show's crowd present at ``minute`` of the day."""
    start = show.hour * 60 + show.minute
    gather = _GATHER.seconds // 60
    end = start + _SHOW_LENGTH.seconds // 60
    disperse = _DISPERSE.seconds // 60
    if start - gather < minute < start:
        return ((minute - (start - gather)) / gather) ** 2  # most arrive in the last minutes
    if start <= minute <= end:
        return 1.0
    if end < minute < end + disperse:
        return 1.0 - (minute - end) / disperse
    return 0.0


def _interpolate(keypoints: Sequence[tuple[int, int, float]], minute: int) -> float:
    for (h0, m0, v0), (h1, m1, v1) in itertools.pairwise(keypoints):
        a, b = h0 * 60 + m0, h1 * 60 + m1
        if a <= minute <= b:
            return v0 + (v1 - v0) * (minute - a) / (b - a)
    raise AssertionError(f"minute {minute} outside the profile")  # pragma: no cover - keypoints span the day


@functools.lru_cache(maxsize=1024)
def _step_times(date: datetime.date) -> tuple[datetime.datetime, ...]:
    midnight = datetime.datetime.combine(date, datetime.time(0), tzinfo=SHANGHAI).astimezone(datetime.UTC)
    return tuple(midnight + i * STEP for i in range(STEPS_PER_DAY))


# -- the sensors ---------------------------------------------------------------------------------------


def sensors(zone_id: str = ZONE_ID) -> tuple[Sensor, ...]:
    """The zone's sensors, their ids prefixed with ``zone_id`` (so that two zones' sensors never
    share an id): gates first, then the cameras, then the phone-signal estimate."""
    if not isinstance(zone_id, str) or not zone_id:
        raise ValueError("zone_id: must be a non-empty string")
    gates = [Sensor(f"{zone_id}-gate-e{n}", SensorKind.GATE_COUNTER, 0.35, 0.10) for n in (1, 2)]
    gates += [Sensor(f"{zone_id}-gate-x{n}", SensorKind.GATE_COUNTER, 0.06, 0.16) for n in range(1, 6)]
    cameras = [Sensor(f"{zone_id}-camera-{n}", SensorKind.CAMERA) for n in (1, 2)]
    return (*gates, *cameras, Sensor(f"{zone_id}-phone-signal", SensorKind.PHONE_SIGNAL))


def simulate(
    start: datetime.date, days: int, seed: int, zone_id: str = ZONE_ID, faults: Faults = DEFAULT_FAULTS
) -> Iterator[SimulatedDay]:
    """The true occupancy and the readings delivered, one day at a time, for ``days`` days from
    ``start`` (dates in Asia/Shanghai). Sequences start at 1 per sensor with the window."""
    _check_window(start, days)
    _check_seed(seed)
    if not isinstance(faults, Faults):
        raise TypeError("faults: must be a Faults")
    state = _SensorState(sensors(zone_id), zone_id, faults)
    return (
        state.day(true_day(seed, start + datetime.timedelta(days=offset)), seed, last=offset == days - 1)
        for offset in range(days)
    )


class _SensorState:
    """The sensors' state across days: sequences, the previous occupancy, held readings."""

    def __init__(self, layout: tuple[Sensor, ...], zone_id: str, faults: Faults) -> None:
        self.layout = layout
        self.zone_id = zone_id
        self.faults = faults
        gates = [s for s in layout if s.kind is SensorKind.GATE_COUNTER]
        if layout[: len(gates)] != tuple(gates):
            raise ValueError("layout: the gate counters must come first")
        self.entry_weights = [g.entry_weight for g in gates]
        self.exit_weights = [g.exit_weight for g in gates]
        self.counting = [s.kind for s in layout[len(gates) :]]
        self.sequence = [0] * len(layout)
        self.previous = 0  # the counters start at zero with the window
        self.started = False
        # Readings to deliver late: out of order (after the sensor's next reading), duplicates (at
        # the end of the next step).
        self.held: dict[int, Reading] = {}
        self.resend: list[Reading] = []

    def day(self, truth: TrueDay, seed: int, last: bool) -> SimulatedDay:
        # Separate streams, so that the faults never change the values the sensors read.
        rng = random.Random(f"crowd-demand:{seed}:sensors:{truth.date.isoformat()}")
        faults = random.Random(f"crowd-demand:{seed}:faults:{truth.date.isoformat()}")
        silent = self._silences(faults)
        uniform = faults.random
        out: list[Reading] = []
        resent: list[int] = []
        withheld = duplicates = late = 0
        gates = len(self.entry_weights)
        ids = [s.sensor_id for s in self.layout]
        kinds = [s.kind for s in self.layout]
        sequence = self.sequence
        duplicate_rate, out_of_order_rate = self.faults.duplicate_rate, self.faults.out_of_order_rate
        for step, (at, now) in enumerate(zip(truth.times, truth.occupancy, strict=True)):
            values = self._values(step, now, rng)
            resend, self.resend = self.resend, []
            for index in range(len(ids)):
                sequence[index] += 1
                value = values[index]
                if index < gates:
                    reading = Reading(self.zone_id, ids[index], kinds[index], sequence[index], at, value, None)
                else:
                    reading = Reading(self.zone_id, ids[index], kinds[index], sequence[index], at, None, value)
                held = self.held.pop(index, None)
                if step in silent[index]:
                    withheld += 1
                else:
                    if held is None and uniform() < out_of_order_rate:
                        self.held[index] = reading
                        late += 1
                    else:
                        out.append(reading)
                    if uniform() < duplicate_rate:
                        self.resend.append(reading)
                        duplicates += 1
                if held is not None:
                    out.append(held)
            resent.extend(range(len(out), len(out) + len(resend)))
            out.extend(resend)
        if last:
            out.extend(self.held.values())
            resent.extend(range(len(out), len(out) + len(self.resend)))
            out.extend(self.resend)
            self.held, self.resend = {}, []
        return SimulatedDay(truth, tuple(out), FaultCounts(withheld, duplicates, late), tuple(resent))

    def _values(self, step: int, now: int, rng: random.Random) -> list[int]:
        """The step's value of every sensor, in layout order: the gates' deltas (summing to the
        change of occupancy), then the cameras' and the phone estimate's counts."""
        change = now - self.previous
        leaving = round(self.previous * _TURNOVER)
        entering = max(change + leaving, leaving // 10)  # a few still come in while the crowd leaves
        leaving = entering - change
        ins = _split(entering, self.entry_weights, rng)
        outs = _split(leaving, self.exit_weights, rng)
        values = [i - o for i, o in zip(ins, outs, strict=True)]
        minute = step * _MINUTES
        dim = _CAMERA_NIGHT if minute >= 23 * 60 or minute < 5 * 60 else 1.0
        uniform = rng.random
        for kind in self.counting:
            if kind is SensorKind.CAMERA:
                seen = now * dim * (1.0 + _CAMERA_ERROR * (2.0 * uniform() - 1.0))
                values.append(max(0, round(seen)))
            else:
                lagged = self.previous if self.started else now  # nothing earlier to lag behind
                estimate = lagged * (1.0 + _PHONE_ERROR * (2.0 * uniform() - 1.0))
                values.append(max(0, round(estimate / _PHONE_ROUNDING)) * _PHONE_ROUNDING)
        self.previous = now
        self.started = True
        return values

    def _silences(self, rng: random.Random) -> list[frozenset[int]]:
        """Per sensor, the steps of the day it is silent."""
        silent = []
        for sensor in self.layout:
            chance, (low, high) = self.faults.silence(sensor.kind)
            if chance and rng.random() < chance:
                length = rng.randint(low, high)
                first = rng.randrange(STEPS_PER_DAY)
                silent.append(frozenset(range(first, min(first + length, STEPS_PER_DAY))))
            else:
                silent.append(frozenset())
        return silent


def _split(total: int, weights: Sequence[float], rng: random.Random) -> list[int]:
    """``total`` people over the gates by jittered weights, rounded cumulatively so that the
    parts are never negative and sum exactly to ``total``."""
    uniform = rng.random
    jittered = [w * (0.7 + 0.6 * uniform()) for w in weights]
    scale = total / sum(jittered)
    parts = []
    cumulative = 0.0
    given = 0
    for w in jittered[:-1]:
        cumulative += w * scale
        upto = int(cumulative + 0.5)
        parts.append(upto - given)
        given = upto
    parts.append(total - given)
    return parts


# -- argument checks -----------------------------------------------------------------------------------


def _check_date(name: str, value: object) -> None:
    if isinstance(value, datetime.datetime) or not isinstance(value, datetime.date):
        raise TypeError(f"{name}: must be a datetime.date (a calendar date in Asia/Shanghai)")


def _check_seed(seed: object) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: must be an int (got {type(seed).__name__})")


def _check_window(start: object, days: object) -> None:
    _check_date("start", start)
    if isinstance(days, bool) or not isinstance(days, int):
        raise TypeError(f"days: must be an int (got {type(days).__name__})")
    if days < 1:
        raise ValueError(f"days: must be at least 1 (got {days})")
