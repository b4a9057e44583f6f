"""A zone's response level as a state machine over its load (pure domain, no I/O, no clock).

A zone's level is decided (services/crowd/domain/decisions.py) with its load (:func:`load_bp`:
occupancy in basis points of capacity) after every reading that may change it and when the
timer reviews the zone, passing the zone's time; :func:`decide` returns the new
:class:`LevelState` and whether it changed (then the caller announces LevelChanged with
:func:`measures_change`).

The rule (docs/decisions/crowd-hysteresis-and-dwell.md): with t(k) level k's threshold and h the
zone's hysteresis, :func:`level_for_load` is the highest level whose entry band (load >= t(k))
holds, :func:`stay_level` the highest level k <= L whose stay band (load >= t(k) - h) holds for a
zone at L, and the level asked for is the higher of the two. Up: at once, whatever the dwell,
possibly skipping levels. Down: one level at a time, never skipping one (each lower level's
measures hold for a dwell of their own), only once ``at - since >= min_dwell`` (exactly at the
end of the dwell it may); until then the decision says until when
(:attr:`LevelDecision.held_until`, also :func:`next_review`). With the defaults level II is
entered at 8000 bp, held down to 7500 bp and left at 7499 bp; a zone at II whose load falls to
5600 bp goes to III (5600 >= 6000 - 500) and stays there, one at 5400 bp goes to III, and a
dwell later to NONE.

An unchanged decision returns the input state object itself (``decision.state is state``); a
change returns a new state whose ``since`` is ``at``. A new zone starts at ``LevelState(Level.NONE,
since=created_at)``. Times are aware datetimes, kept in UTC; ``at`` before ``since`` is a caller's
bug and raises ValueError rather than rewriting the level's history. Loads are non-negative ints
(basis points; may exceed 10000).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Final, NamedTuple

from services.crowd.domain.zones import (
    BP_DENOMINATOR,
    Level,
    Measure,
    ZoneConfig,
    aware_utc,
    is_int,
    measures_in_force,
)

__all__ = [
    "MAX_LOAD_BP",
    "LevelDecision",
    "LevelState",
    "MeasuresChange",
    "check_capacity",
    "decide",
    "level_for_load",
    "load_bp",
    "measures_change",
    "next_review",
    "stay_level",
]

#: The most :func:`load_bp` returns (just under 2^31): the contract's load_bp fields are int32.
MAX_LOAD_BP: Final = 2_000_000_000


@dataclass(frozen=True)
class LevelState:
    """A zone's level and when it entered it (aware; normalised to UTC)."""

    level: Level
    since: datetime.datetime

    def __post_init__(self) -> None:
        if not isinstance(self.level, Level):
            raise TypeError(f"level must be a Level, not {type(self.level).__name__}")
        object.__setattr__(self, "since", aware_utc("since", self.since))


@dataclass(frozen=True)
class LevelDecision:
    """What :func:`decide` concluded."""

    #: The state after the decision: the input state object itself when nothing changed.
    state: LevelState
    #: The state before the decision (the input).
    previous: LevelState
    #: Set when the load asks for a lower level but the dwell holds the current one: the
    #: earliest time the zone may move down (since + min_dwell). None otherwise.
    held_until: datetime.datetime | None = None

    @property
    def changed(self) -> bool:
        return self.state.level is not self.previous.level


class MeasuresChange(NamedTuple):
    """The measures of a level change, as LevelChanged's measures_to_take and measures_to_lift."""

    to_take: tuple[Measure, ...]
    to_lift: tuple[Measure, ...]


def load_bp(occupancy: int, capacity: int) -> int:
    """Occupancy in basis points of capacity, rounded down (so a threshold is reached only when
    the occupancy really reaches it: 7999 of 10000 people is 7999 bp, not 8000), at most
    :data:`MAX_LOAD_BP`.

    The load may exceed 10000 (an overfull zone), and it saturates rather than overflow the
    contract's int32: a camera's or phone count is capped at 10 x capacity by the readings'
    validation (100000 bp), but the gate total sums any number of deltas and could in theory
    grow past that (a gate whose exits are never counted). Saturation keeps such a zone at
    level I, which is where it belongs."""
    if not is_int(occupancy) or not is_int(capacity):
        raise TypeError("occupancy and capacity must be ints (persons)")
    if occupancy < 0:
        raise ValueError(f"occupancy must not be negative (got {occupancy})")
    return min(occupancy * BP_DENOMINATOR // check_capacity(capacity), MAX_LOAD_BP)


def check_capacity(capacity: object) -> int:
    """``capacity`` if it is a positive int (persons); TypeError or ValueError naming capacity.
    (A ZoneConfig from build_zone always passes; one built directly may not.)"""
    if not is_int(capacity):
        raise TypeError(f"capacity must be an int number of persons, not {type(capacity).__name__}")
    if capacity < 1:
        raise ValueError(f"capacity must be positive (got {capacity})")
    return capacity


def _check_load(value: object) -> int:
    if not is_int(value):
        raise TypeError(f"load_bp must be an int number of basis points, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"load_bp must not be negative (got {value})")
    return value


def level_for_load(config: ZoneConfig, load: int) -> Level:
    """The highest level whose threshold the load reaches (its entry band); NONE below them all.
    This is also the level a zone without history would be at (e.g. a forecast's level)."""
    load = _check_load(load)
    reached = Level.NONE
    for rule in config.levels:
        if load >= rule.threshold_bp and rule.level > reached:
            reached = rule.level
    return reached


def stay_level(config: ZoneConfig, current: Level, load: int) -> Level:
    """For a zone at ``current``: the highest level up to ``current`` whose stay band the load is
    still in (load >= threshold - hysteresis); NONE when it is in none of them."""
    load = _check_load(load)
    kept = Level.NONE
    for rule in config.levels:
        if rule.level <= current and load >= rule.threshold_bp - config.hysteresis_bp and rule.level > kept:
            kept = rule.level
    return kept


def decide(config: ZoneConfig, state: LevelState, load: int, at: datetime.datetime) -> LevelDecision:
    """The zone's level at ``at`` given its ``load`` (basis points) and its state before: up at
    once, down after hysteresis and dwell (module docstring)."""
    now = aware_utc("at", at)
    if now < state.since:
        raise ValueError(f"at ({now.isoformat()}) is before the state's since ({state.since.isoformat()})")
    entered = level_for_load(config, load)
    if entered > state.level:
        return LevelDecision(LevelState(entered, now), state)
    target = stay_level(config, state.level, load)
    if target == state.level:
        return LevelDecision(state, state)
    due = state.since + config.min_dwell
    if now >= due:
        # One level at a time: each lower level's measures (barriers at II, the ticket stop)
        # stay in force for a dwell of their own, however fast the crowd went.
        return LevelDecision(LevelState(max(target, next_level_down(config, state.level)), now), state)
    return LevelDecision(state, state, held_until=due)


def next_level_down(config: ZoneConfig, level: Level) -> Level:
    """The zone's next configured level below ``level`` (NONE below the lowest)."""
    below = [rule.level for rule in config.levels if rule.level < level]
    return max(below, default=Level.NONE)


def next_review(config: ZoneConfig, state: LevelState, load: int) -> datetime.datetime | None:
    """When a down move held by the dwell becomes possible (since + min_dwell), if the load is
    already below the current level's stay band; None when the load asks for no lower level
    (an up move, if the load asks for one, is never held: :func:`decide` makes it at once)."""
    if level_for_load(config, load) > state.level or stay_level(config, state.level, load) == state.level:
        return None
    return state.since + config.min_dwell


def measures_change(config: ZoneConfig, previous: Level, new: Level) -> MeasuresChange:
    """The measures in force at ``new`` that were not at ``previous`` (to take) and those in force
    at ``previous`` that are not at ``new`` (to lift), each in :func:`measures_in_force` order.
    Measures are cumulative, so a move up only takes and a move down only lifts."""
    before = measures_in_force(config, previous)
    after = measures_in_force(config, new)
    return MeasuresChange(
        to_take=tuple(measure for measure in after if measure not in before),
        to_lift=tuple(measure for measure in before if measure not in after),
    )
