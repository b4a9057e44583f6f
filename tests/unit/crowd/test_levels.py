"""The level state machine (services/crowd/domain/levels.py): every move up and down at its exact
boundaries (threshold and one below, stay band edge and one below), the dwell at its end and one
microsecond before, levels skipped going up and never coming down, zero dwell and zero hysteresis, the measures each
change takes and lifts, a Golden Week surge at 湖滨 that changes level exactly once per level
each way, and invariants over seeded random load sequences."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import random

import pytest

from services.crowd.domain.levels import (
    MAX_LOAD_BP,
    LevelDecision,
    LevelState,
    MeasuresChange,
    check_capacity,
    decide,
    level_for_load,
    load_bp,
    measures_change,
    next_review,
    stay_level,
)
from services.crowd.domain.zones import (
    DEFAULT_LEVELS,
    SHANGHAI,
    Level,
    Measure,
    ZoneConfig,
    build_zone,
    measures_in_force,
    threshold_bp,
)

UTC = datetime.UTC
US = datetime.timedelta(microseconds=1)
SECOND = datetime.timedelta(seconds=1)
MINUTE = datetime.timedelta(minutes=1)
DWELL = 10 * MINUTE
# 1 October 2024, National Day, 19:00 in Hangzhou: the fountain's first show of Golden Week.
T0 = datetime.datetime(2024, 10, 1, 19, 0, tzinfo=SHANGHAI).astimezone(UTC)
LONG_AGO = T0 - datetime.timedelta(hours=1)

HUBIN = build_zone("hubin", "湖滨", "Hubin lakeside", 60_000)
III, II, I_, NONE = Level.III, Level.II, Level.I, Level.NONE


def state(level: Level, since: datetime.datetime = LONG_AGO) -> LevelState:
    return LevelState(level, since)


def moved(decision: LevelDecision, level: Level, at: datetime.datetime = T0) -> None:
    assert decision.changed
    assert decision.state == LevelState(level, at)
    assert decision.held_until is None


def unchanged(decision: LevelDecision, before: LevelState) -> None:
    assert not decision.changed
    assert decision.state is before
    assert decision.previous is before


# --- load -----------------------------------------------------------------------------------------


def test_load_is_floored_basis_points() -> None:
    assert load_bp(7_999, 10_000) == 7_999
    assert load_bp(47_999, 60_000) == 7_999  # 79.998%: not yet level II
    assert load_bp(48_000, 60_000) == 8_000
    assert load_bp(1, 3) == 3_333
    assert load_bp(0, 60_000) == 0
    assert load_bp(120_000, 60_000) == 20_000


@pytest.mark.parametrize(
    ("occupancy", "capacity", "error"),
    [(-1, 10, ValueError), (1, 0, ValueError), (True, 10, TypeError), (1.0, 10, TypeError), (1, True, TypeError)],
)
def test_load_refuses_bad_counts(occupancy: object, capacity: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        load_bp(occupancy, capacity)  # type: ignore[arg-type]


def test_load_saturates_below_int32() -> None:
    # The contract's load_bp is int32; a gate total summed from many deltas has no upper bound.
    assert MAX_LOAD_BP == 2_000_000_000 < 2**31 - 1
    assert load_bp(199_999, 1) == 1_999_990_000
    assert load_bp(200_000, 1) == MAX_LOAD_BP
    assert load_bp(200_001, 1) == MAX_LOAD_BP
    assert load_bp(10**15, 1) == MAX_LOAD_BP
    assert level_for_load(HUBIN, load_bp(10**15, 1)) is I_


def test_capacity_must_be_a_positive_int() -> None:
    assert check_capacity(1) == 1
    with pytest.raises(ValueError, match=r"capacity must be positive \(got 0\)"):
        check_capacity(0)
    with pytest.raises(TypeError, match="capacity must be an int number of persons, not bool"):
        check_capacity(True)


# --- the bands ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("load", "level"),
    [(0, NONE), (5_999, NONE), (6_000, III), (7_999, III), (8_000, II), (9_999, II), (10_000, I_), (50_000, I_)],
)
def test_level_for_load_at_each_threshold_and_one_below(load: int, level: Level) -> None:
    assert level_for_load(HUBIN, load) is level


@pytest.mark.parametrize(
    ("current", "load", "kept"),
    [
        (I_, 9_500, I_),
        (I_, 9_499, II),
        (I_, 7_500, II),
        (I_, 7_499, III),
        (I_, 5_500, III),
        (I_, 5_499, NONE),
        (II, 7_500, II),
        (II, 7_499, III),
        (II, 20_000, II),  # stay_level never goes above the current level
        (III, 5_500, III),
        (III, 5_499, NONE),
        (NONE, 9_000, NONE),
    ],
)
def test_stay_level_at_each_band_edge_and_one_below(current: Level, load: int, kept: Level) -> None:
    assert stay_level(HUBIN, current, load) is kept


# --- up moves -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("before", "threshold", "after"), [(NONE, 6_000, III), (III, 8_000, II), (II, 10_000, I_)])
def test_up_at_the_threshold_not_one_below(before: Level, threshold: int, after: Level) -> None:
    current = state(before)
    unchanged(decide(HUBIN, current, threshold - 1, T0), current)
    moved(decide(HUBIN, current, threshold, T0), after)


@pytest.mark.parametrize(
    ("before", "load", "after"), [(NONE, 8_000, II), (NONE, 10_000, I_), (III, 10_000, I_), (NONE, 30_000, I_)]
)
def test_up_skips_levels_to_the_highest_reached(before: Level, load: int, after: Level) -> None:
    moved(decide(HUBIN, state(before), load, T0), after)


def test_up_is_immediate_even_within_the_dwell() -> None:
    just_entered = state(III, since=T0)
    moved(decide(HUBIN, just_entered, 8_000, T0), II)
    moved(decide(HUBIN, state(III, since=T0 - US), 10_000, T0), I_)


def test_up_resets_since() -> None:
    entered_ii = decide(HUBIN, state(III, since=T0 - DWELL), 8_000, T0).state
    assert entered_ii.since == T0
    # The new level has its own dwell: one microsecond before its end it holds, then it may leave.
    held = decide(HUBIN, entered_ii, 7_000, T0 + DWELL - US)
    unchanged(held, entered_ii)
    moved(decide(HUBIN, entered_ii, 7_000, T0 + DWELL), III, T0 + DWELL)


# --- down moves -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("before", "threshold", "after"), [(III, 6_000, NONE), (II, 8_000, III), (I_, 10_000, II)])
def test_down_only_below_the_stay_band(before: Level, threshold: int, after: Level) -> None:
    # Entered at 80%, left below 75%: at 75% exactly the zone stays, at one basis point less it leaves.
    current = state(before)
    unchanged(decide(HUBIN, current, threshold - 500, T0), current)
    unchanged(decide(HUBIN, current, threshold - 1, T0), current)
    moved(decide(HUBIN, current, threshold - 501, T0), after)


@pytest.mark.parametrize(
    ("before", "load", "after"),
    [(I_, 7_499, II), (I_, 5_500, II), (I_, 5_499, II), (I_, 0, II), (II, 5_600, III), (II, 5_499, III)],
)
def test_down_one_level_at_a_time_however_low_the_load(before: Level, load: int, after: Level) -> None:
    """Never a level skipped on the way down: each lower level's measures (barriers at II, the
    ticket-sales stop) hold for a dwell of their own (issue 14: I straight to III lifted them
    9.5 minutes early)."""
    moved(decide(HUBIN, state(before), load, T0), after)


def test_from_i_to_none_takes_a_dwell_at_each_level_on_the_way() -> None:
    current, at, path = state(I_), T0, []
    while current.level is not NONE:
        decision = decide(HUBIN, current, 0, at)
        if decision.changed:
            path.append((decision.state.level, decision.state.since))
            current = decision.state
        else:
            assert decision.held_until == current.since + DWELL
            at = decision.held_until
    assert path == [(II, T0), (III, T0 + DWELL), (NONE, T0 + 2 * DWELL)]


def test_down_waits_for_the_dwell_exactly() -> None:
    entered = state(II, since=T0)
    end = T0 + DWELL
    for at in (T0, T0 + MINUTE, end - US):
        held = decide(HUBIN, entered, 7_000, at)
        unchanged(held, entered)
        assert held.held_until == end
    moved(decide(HUBIN, entered, 7_000, end), III, end)


def test_held_down_move_uses_the_load_at_the_time_it_happens() -> None:
    entered = state(I_, since=T0)
    assert decide(HUBIN, entered, 9_000, T0 + MINUTE).held_until == T0 + DWELL
    # By the end of the dwell the crowd has gone: one level down (II), never straight to NONE.
    moved(decide(HUBIN, entered, 3_000, T0 + DWELL), II, T0 + DWELL)
    # Or it has come back: nothing happens, and nothing is held any more.
    back = decide(HUBIN, entered, 9_600, T0 + DWELL)
    unchanged(back, entered)
    assert back.held_until is None


def test_in_band_decision_holds_nothing() -> None:
    current = state(II, since=T0)
    decision = decide(HUBIN, current, 7_800, T0 + MINUTE)
    unchanged(decision, current)
    assert decision.held_until is None


def test_next_review() -> None:
    entered = state(II, since=T0)
    assert next_review(HUBIN, entered, 7_499) == T0 + DWELL
    assert next_review(HUBIN, entered, 0) == T0 + DWELL
    assert next_review(HUBIN, entered, 7_500) is None
    assert next_review(HUBIN, entered, 10_000) is None  # an up move is never held
    assert next_review(HUBIN, state(NONE, since=T0), 0) is None


def test_zero_dwell_moves_down_at_once() -> None:
    config = dataclasses.replace(HUBIN, min_dwell=datetime.timedelta(0))
    entered = state(II, since=T0)
    moved(decide(config, entered, 7_499, T0), III)
    unchanged(decide(config, entered, 7_500, T0), entered)
    assert next_review(config, entered, 7_499) == T0


def test_zero_hysteresis_leaves_a_level_one_below_its_threshold() -> None:
    config = dataclasses.replace(HUBIN, hysteresis_bp=0)
    current = state(II)
    unchanged(decide(config, current, 8_000, T0), current)
    moved(decide(config, current, 7_999, T0), III)
    moved(decide(config, state(III), 5_999, T0), NONE)
    moved(decide(config, state(I_), 5_999, T0), II)


# --- bad input ------------------------------------------------------------------------------------


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="before the state's since"):
        decide(HUBIN, state(III, since=T0), 9_000, T0 - US)
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(HUBIN, state(III), 9_000, datetime.datetime(2024, 10, 1, 19))
    with pytest.raises(ValueError, match="must not be negative"):
        decide(HUBIN, state(III), -1, T0)
    with pytest.raises(TypeError, match="load_bp must be an int"):
        decide(HUBIN, state(III), True, T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        LevelState(III, datetime.datetime(2024, 10, 1, 19))
    with pytest.raises(TypeError, match="level must be a Level"):
        LevelState(3, T0)  # type: ignore[arg-type]


def test_since_is_kept_in_utc() -> None:
    local = datetime.datetime(2024, 10, 1, 19, 0, tzinfo=SHANGHAI)
    assert LevelState(III, local).since.tzinfo is UTC
    assert LevelState(III, local) == LevelState(III, T0)
    moved(decide(HUBIN, state(NONE), 6_000, local), III, T0)


# --- measures -------------------------------------------------------------------------------------


def test_measures_change_up_takes_and_down_lifts() -> None:
    iii, ii, i = (rule.measures for rule in DEFAULT_LEVELS)
    assert measures_change(HUBIN, NONE, III) == MeasuresChange(iii, ())
    assert measures_change(HUBIN, III, II) == (ii, ())
    assert measures_change(HUBIN, II, I_) == (i, ())
    assert measures_change(HUBIN, NONE, I_) == (iii + ii + i, ())
    assert measures_change(HUBIN, I_, II) == ((), i)
    assert measures_change(HUBIN, I_, NONE) == ((), iii + ii + i)
    assert measures_change(HUBIN, II, III) == ((), ii)
    assert measures_change(HUBIN, II, II) == ((), ())
    assert Measure.BARRIERS_UP in measures_change(HUBIN, II, III).to_lift


# --- a Golden Week evening ------------------------------------------------------------------------


def surge_loads(rng: random.Random) -> list[int]:
    """One reading a second: 40% rising to 105% over 30 minutes, 20 minutes at the peak, then down
    to 30% over an hour, each reading off the trend by up to 2 percentage points either way."""
    trend = (
        [4_000 + 6_500 * second // 1_800 for second in range(1_800)]
        + [10_500] * 1_200
        + [10_500 - 7_500 * second // 3_600 for second in range(3_601)]
    )
    return [max(0, value + rng.randint(-200, 200)) for value in trend]


def test_a_surge_changes_level_once_per_level_each_way() -> None:
    current = LevelState(NONE, T0 - DWELL)
    changes: list[tuple[Level, Level, datetime.datetime]] = []
    taken: list[Measure] = []
    lifted: list[Measure] = []
    loads = surge_loads(random.Random(20241001))
    for second, load in enumerate(loads):
        at = T0 + second * SECOND
        decision = decide(HUBIN, current, load, at)
        if decision.changed:
            changes.append((decision.previous.level, decision.state.level, at))
            take, lift = measures_change(HUBIN, decision.previous.level, decision.state.level)
            taken.extend(take)
            lifted.extend(lift)
        current = decision.state
    assert [(before, after) for before, after, _ in changes] == [
        (NONE, III),
        (III, II),
        (II, I_),
        (I_, II),
        (II, III),
        (III, NONE),
    ]
    assert sorted(taken, key=lambda m: m.value) == sorted(Measure, key=lambda m: m.value)
    assert sorted(lifted, key=lambda m: m.value) == sorted(Measure, key=lambda m: m.value)
    assert measures_in_force(HUBIN, current.level) == ()
    # Level III is entered at the very first reading that reaches 60%.
    first_at_60 = next(second for second, load in enumerate(loads) if load >= 6_000)
    assert changes[0][2] == T0 + first_at_60 * SECOND
    # The way down lags the way up by the hysteresis: level I is left well after the peak ends.
    left_i = changes[3][2]
    assert left_i > T0 + 3_000 * SECOND


def test_load_wavering_inside_a_stay_band_never_flaps() -> None:
    current = LevelState(II, T0)
    for second in range(3_600):
        load = (7_500, 9_999, 7_600, 8_000)[second % 4]
        decision = decide(HUBIN, current, load, T0 + second * SECOND)
        unchanged(decision, current)


# --- invariants over random load sequences --------------------------------------------------------


def random_zone(rng: random.Random) -> ZoneConfig:
    t3 = rng.randint(100, 9_000)
    t2 = t3 + rng.randint(1, 5_000)
    t1 = t2 + rng.randint(1, 5_000)
    hysteresis = rng.randint(0, min(t3, t2 - t3, t1 - t2) - 1)
    config = build_zone(
        "hubin",
        "湖滨",
        "",
        60_000,
        levels=[
            (III, t3, (Measure.ANNOUNCE,)),
            (II, t2, (Measure.BARRIERS_UP, Measure.ANNOUNCE)),
            (I_, t1, (Measure.ENTRY_CLOSED,)),
        ],
        hysteresis_bp=hysteresis or 1,
        min_dwell=rng.choice([US, SECOND, MINUTE, DWELL]),
    )
    # Zero hysteresis and dwell cannot come through build_zone (0 means the default there).
    return dataclasses.replace(
        config,
        hysteresis_bp=hysteresis,
        min_dwell=rng.choice([datetime.timedelta(0), config.min_dwell]),
    )


def random_loads(rng: random.Random, count: int, top: int) -> list[int]:
    load = rng.randint(0, top)
    loads = []
    for _ in range(count):
        if rng.random() < 0.05:
            load = rng.randint(0, top)  # a jump: a camera coming back, a crowd leaving a show
        else:
            load = max(0, min(top, load + rng.randint(-300, 300)))
        loads.append(load)
    return loads


def run_random_sequence(seed: int) -> collections.Counter[str]:
    """Decides a random zone over a random load sequence, asserting the invariants at every step;
    returns how often each kind of decision happened."""
    rng = random.Random(seed)
    config = random_zone(rng)
    top = threshold_bp(config, I_) + 2_000
    current = LevelState(NONE, T0)
    at = T0
    last_change: datetime.datetime | None = None
    seen: collections.Counter[str] = collections.Counter()
    for load in random_loads(rng, 2_000, top):
        at += rng.choice([US, SECOND, 7 * SECOND, MINUTE, 3 * MINUTE])
        decision = decide(config, current, load, at)
        level = decision.state.level
        entered = level_for_load(config, load)
        asked = max(entered, stay_level(config, current.level, load))
        assert decision.previous is current
        # Up moves are never held: the level is at least the one the load enters.
        assert level >= entered
        if decision.changed:
            # Up to the level asked for; down one level at a time, never below the one asked for.
            assert level is asked if level > current.level else level is max(asked, Level(current.level - 1))
            assert decision.state.since == at
            assert decision.held_until is None
            if level < current.level:
                # A down move comes at least min_dwell after the previous change.
                assert at - current.since >= config.min_dwell
                assert last_change is None or at - last_change >= config.min_dwell
                assert next_review(config, current, load) == current.since + config.min_dwell
                seen["down"] += 1
                assert current.level - level == 1  # never a level skipped on the way down
                seen["down while more was asked"] += asked < level
            else:
                assert next_review(config, current, load) is None
                seen["up"] += 1
                seen["up across levels"] += level - current.level > 1
            last_change = at
            take, lift = measures_change(config, current.level, level)
            before = set(measures_in_force(config, current.level))
            assert (before | set(take)) - set(lift) == set(measures_in_force(config, level))
            assert not (take and lift)
        else:
            assert decision.state is current
            assert next_review(config, current, load) == decision.held_until
            if decision.held_until is None:
                # Consistent with the bands: in the current level's stay band, below the next entry.
                assert level is asked
                if level is not NONE:
                    assert load >= threshold_bp(config, level) - config.hysteresis_bp
                if level is not I_:
                    assert load < threshold_bp(config, Level(level + 1))
                seen["kept"] += 1
            else:
                assert asked < level
                assert decision.held_until == current.since + config.min_dwell
                assert at < decision.held_until
                seen["held"] += 1
        current = decision.state
    return seen


@pytest.mark.parametrize("seed", range(40))
def test_invariants_over_random_sequences(seed: int) -> None:
    seen = run_random_sequence(seed)
    assert seen["up"] > 0
    assert seen["down"] > 0


def test_random_sequences_cover_every_kind_of_decision() -> None:
    total: collections.Counter[str] = collections.Counter()
    for seed in range(40):
        total += run_random_sequence(seed)
    for kind in ("up", "up across levels", "down", "down while more was asked", "kept", "held"):
        assert total[kind] >= 10, (kind, total)
