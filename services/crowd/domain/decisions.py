"""A zone as one unit of work holds it, and what a batch of readings or a timer pass decides for
it (pure domain, no I/O, no clock).

The repository loads a :class:`ZoneState` per zone (configuration, live state, level); the use
case hands a batch of readings to :func:`apply_readings`, or a zone whose review is due to
:func:`review`, and stores what they changed: the zones, the level changes and silences
(:data:`Happening`, in the order they happened, which is the order their events are recorded) and
the occupancy tallies. A reading's level is decided right after it is applied, so a threshold is
met at the reading that crosses it, not at the end of its batch.

Decisions: docs/decisions/crowd-one-transaction-per-batch.md, crowd-event-time.md,
crowd-blind-zones-hold-their-level.md and crowd-timer-reviews-due-zones.md.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Sequence
from typing import Final

from services.crowd.domain import history, levels, occupancy
from services.crowd.domain.levels import LevelState, MeasuresChange
from services.crowd.domain.occupancy import Outcome, Reading, RejectedReading, SilenceEvent, ZoneLive
from services.crowd.domain.zones import Level, ZoneConfig, is_zone_id

__all__ = [
    "AGEING_STEP",
    "Decisions",
    "Happening",
    "IngestReport",
    "LevelChanged",
    "ZoneState",
    "apply_readings",
    "decide",
    "review",
    "zones_named",
]

#: While a silent sensor's estimate ages out, the timer re-fuses the zone this often.
AGEING_STEP: Final = datetime.timedelta(seconds=10)
_NEVER: Final = datetime.datetime.max.replace(tzinfo=datetime.UTC)


@dataclasses.dataclass
class ZoneState:
    """One zone loaded for a unit of work: its configuration, live state and level."""

    config: ZoneConfig
    live: ZoneLive
    level: LevelState
    version: int
    readings_applied: int
    # The occupancy as stored (the estimate may have aged since), and when a reading was last applied.
    stored_occupancy: int = 0
    updated_at: datetime.datetime | None = None
    # Sensors that have a row already (the others are inserted when stored).
    stored_sensors: set[str] = dataclasses.field(default_factory=set)
    dirty_sensors: set[str] = dataclasses.field(default_factory=set)
    #: Readings this unit of work applied to the zone.
    applied: int = 0

    def down_move_may_be_due(self, zone_now: datetime.datetime) -> bool:
        """Whether a reading that leaves the occupancy as it was may still change the level: the
        zone is above NONE and its dwell has ended (a held down-move is made by the first reading
        observed after it is due, at that reading's time, not left for the timer)."""
        return self.level.level is not Level.NONE and zone_now >= self.level.since + self.config.min_dwell

    @property
    def last_applied_at(self) -> datetime.datetime | None:
        """When a reading was last applied to the zone (None: never; a timer pass is not one)."""
        return self.updated_at if self.readings_applied else None

    def next_silence(self) -> datetime.datetime:
        """The earliest zone time at which a healthy sensor of the zone could be found silent."""
        after = self.config.silence_after
        deadlines = [s.last_observed_at + after for s in self.live.sensors.values() if not s.silent]
        return min(deadlines) if deadlines else _NEVER

    def review_at(self, wall_now: datetime.datetime) -> datetime.datetime | None:
        """When the timer must look at the zone again, as wall time (None: nothing pending): a
        sensor's silence, an estimate ageing out, or a held down-move whose dwell ends."""
        live, config = self.live, self.config
        now = occupancy.zone_now(live, wall_now)
        due: list[datetime.datetime] = []
        for state in live.sensors.values():
            if not state.silent:
                due.append(state.last_observed_at + config.silence_after)
            elif now < state.last_observed_at + 2 * config.silence_after:
                due.append(now + AGEING_STEP)  # its estimate is still ageing out
        held = levels.next_review(config, self.level, levels.load_bp(live.occupancy, config.capacity))
        if held is not None and not live.blind:
            due.append(held)
        if not due:
            return None
        # Event time to wall time: the zone clock runs at the wall clock's pace from here.
        return wall_now + max(datetime.timedelta(0), min(due) - now)


@dataclasses.dataclass(frozen=True)
class LevelChanged:
    """A zone's level changed: what its history keeps and the LevelChanged event announces."""

    zone_id: str
    zone_name_zh: str
    capacity: int
    #: Event time (the zone's clock) of the change.
    at: datetime.datetime
    previous: Level
    level: Level
    occupancy: int
    load_bp: int
    measures: MeasuresChange
    #: The observation time of the reading that caused it (None: decided by the timer).
    triggered_by_observed_at: datetime.datetime | None
    #: Wall clock of the decision.
    decided_at: datetime.datetime


Happening = LevelChanged | SilenceEvent


@dataclasses.dataclass
class Decisions:
    """What one unit of work decided: level changes and silences in the order they happened, and
    the occupancy it sampled for the history."""

    happenings: list[Happening] = dataclasses.field(default_factory=list)
    tallies: history.Tallies = dataclasses.field(default_factory=dict)

    @property
    def level_changes(self) -> list[LevelChanged]:
        return [h for h in self.happenings if isinstance(h, LevelChanged)]


@dataclasses.dataclass
class IngestReport:
    """What one batch did, reading by reading (outcomes[i] is the i-th reading's)."""

    outcomes: list[Outcome | RejectedReading]

    def count(self, outcome: Outcome) -> int:
        return sum(1 for o in self.outcomes if o is outcome)

    @property
    def rejected(self) -> list[tuple[int, RejectedReading]]:
        return [(i, o) for i, o in enumerate(self.outcomes) if isinstance(o, RejectedReading)]


def zones_named(readings: Iterable[Reading | RejectedReading]) -> set[str]:
    """The ids of the zones these readings could be applied to (ids of a zone's form only)."""
    return {r.zone_id for r in readings if isinstance(r, Reading) and is_zone_id(r.zone_id)}


def decide(zone: ZoneState, wall_now: datetime.datetime, observed_at: datetime.datetime | None) -> LevelChanged | None:
    """Decide the zone's level at its clock's now; the change, if any. A blind zone (no fresh
    evidence) never goes down, and goes up on the highest count its sensors last gave: safety
    first both ways."""
    config, live = zone.config, zone.live
    at = occupancy.zone_now(live, wall_now)
    if at < zone.level.since:
        if zone.level.level is not Level.NONE:
            return None  # the zone clock never goes back past a change it made
        # A zone fed readings from before it was configured (a replay, a backfill) had no
        # level then either: it has been at NONE since its first reading.
        zone.level = LevelState(Level.NONE, at)
    if live.blind:
        load = levels.load_bp(occupancy.highest_last_count(live), config.capacity)
        rising = levels.level_for_load(config, load)
        if rising <= zone.level.level:
            return None
        decision = levels.LevelDecision(LevelState(rising, at), zone.level)
    else:
        load = levels.load_bp(live.occupancy, config.capacity)
        decision = levels.decide(config, zone.level, load, at)
    if not decision.changed:
        return None
    previous = zone.level.level
    zone.level = decision.state
    return LevelChanged(
        zone_id=config.zone_id,
        zone_name_zh=config.name_zh,
        capacity=config.capacity,
        at=at,
        previous=previous,
        level=decision.state.level,
        occupancy=live.occupancy,
        load_bp=load,
        measures=levels.measures_change(config, previous, decision.state.level),
        triggered_by_observed_at=observed_at,
        decided_at=wall_now,
    )


def apply_readings(
    zones: dict[str, ZoneState], readings: Sequence[Reading | RejectedReading], wall_now: datetime.datetime
) -> tuple[IngestReport, Decisions]:
    """Apply a batch to its loaded zones in arrival order, deciding each zone's level after each
    reading that could change it. A reading its transport could not read arrives as its refusal
    and keeps its place in the outcomes; one naming no loaded zone is refused as UNKNOWN_ZONE."""
    outcomes: list[Outcome | RejectedReading] = []
    decided = Decisions()
    happenings, tallies = decided.happenings, decided.tallies
    next_silence = {zone_id: zone.next_silence() for zone_id, zone in zones.items()}
    for reading in readings:
        if isinstance(reading, RejectedReading):
            outcomes.append(reading)
            continue
        zone = zones.get(reading.zone_id)
        if zone is None:
            outcomes.append(occupancy.unknown_zone(reading.zone_id))
            continue
        result = occupancy.apply(zone.config, zone.live, reading, wall_now)
        if result.rejection is not None:
            outcomes.append(result.rejection)
            continue
        assert result.outcome is not None
        outcomes.append(result.outcome)
        if not result.applied:
            continue
        zone.applied += 1
        zone.dirty_sensors.add(reading.sensor_id)
        zone_now = occupancy.zone_now(zone.live, wall_now)
        silenced = False
        if zone_now > next_silence[reading.zone_id]:
            silenced = _flag_silences(zone, wall_now, happenings)
            next_silence[reading.zone_id] = zone.next_silence()
        held = zone.down_move_may_be_due(zone_now)
        # A blind zone's estimate stays 0 while its last counts rise: it is decided anyway.
        if result.occupancy_changed or silenced or held or zone.live.blind:
            change = decide(zone, wall_now, reading.observed_at)
            if change is not None:
                happenings.append(change)
        history.tally(tallies, reading.zone_id, zone_now, zone.live.occupancy)
    return IngestReport(outcomes), decided


def review(zone: ZoneState, wall_now: datetime.datetime) -> Decisions:
    """The timer's pass over one zone: silences due, estimates aged, a held down-move whose dwell
    has ended."""
    decided = Decisions()
    for silence in occupancy.tick(zone.config, zone.live, wall_now).silences:
        zone.dirty_sensors.add(silence.sensor_id)
        decided.happenings.append(silence)
    change = decide(zone, wall_now, None)
    if change is not None:
        decided.happenings.append(change)
    if zone.live.occupancy != zone.stored_occupancy:
        # The estimate aged (a silent sensor's weight fell): history records it too.
        now = occupancy.zone_now(zone.live, wall_now)
        history.tally(decided.tallies, zone.config.zone_id, now, zone.live.occupancy)
    return decided


def _flag_silences(zone: ZoneState, wall_now: datetime.datetime, happenings: list[Happening]) -> bool:
    found = occupancy.detect_silence(zone.config, zone.live, wall_now)
    for silence in found:
        zone.dirty_sensors.add(silence.sensor_id)
    happenings.extend(found)
    if found:
        occupancy.recompute(zone.config, zone.live, wall_now)
    return bool(found)
