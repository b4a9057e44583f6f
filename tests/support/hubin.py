"""The zone the crowd unit tests share: West Lake's 湖滨 (hubin) by the music fountain, built
directly as a ZoneConfig (so no build_zone defaults apply), capacity 10,000 unless told (then an
occupancy is also its load in basis points), with default-style levels: III at 60%, II at 80%
(barriers go up), I at 100%."""

from __future__ import annotations

import datetime

from services.crowd.domain.zones import Level, LevelRule, Measure, ScheduleEntry, ZoneConfig

III_MEASURES = (Measure.ANNOUNCE, Measure.STAFF_DEPLOYED)
II_MEASURES = (Measure.TICKET_SALES_STOP, Measure.EMERGENCY_PLAN, Measure.BARRIERS_UP)
I_MEASURES = (Measure.METRO_SKIPS_STATION, Measure.BUSES_SKIP_STOPS, Measure.NAVIGATION_AREA_FULL, Measure.ENTRY_CLOSED)
LEVELS = (
    LevelRule(Level.III, 6000, III_MEASURES),
    LevelRule(Level.II, 8000, II_MEASURES),
    LevelRule(Level.I, 10000, I_MEASURES),
)
SILENCE_AFTER = datetime.timedelta(minutes=2)


def hubin(
    *,
    capacity: int = 10_000,
    levels: tuple[LevelRule, ...] = LEVELS,
    schedule: tuple[ScheduleEntry, ...] = (),
) -> ZoneConfig:
    return ZoneConfig(
        zone_id="hubin",
        name_zh="湖滨",
        name_en="Hubin",
        capacity=capacity,
        levels=levels,
        hysteresis_bp=500,
        min_dwell=datetime.timedelta(minutes=10),
        silence_after=SILENCE_AFTER,
        schedule=schedule,
    )
