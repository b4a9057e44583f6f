"""A zone's level over a real database, batch by batch as the ingest applies them (each batch loads
its zones afresh): a held down-move is made by the first reading observed after it is due, at that
reading's time, and the way down passes every level, each for a dwell of its own (issue 14: the
level was left for the timer, stamped with the timer's time, and a zone went from I straight to
III, lifting the barriers and the ticket-sales stop 9.5 minutes early)."""

from __future__ import annotations

import datetime

from govmesh.db import service_database
from services.crowd.app import CrowdApp
from services.crowd.domain.levels import LevelState
from services.crowd.domain.occupancy import Reading, SensorKind
from services.crowd.domain.zones import Level
from tests.support.hubin import hubin

UTC = datetime.UTC
MINUTE = datetime.timedelta(minutes=1)
#: Readings observed in the past (a backfill after a network cut), applied now.
T0 = datetime.datetime(2024, 10, 1, 11, 0, tzinfo=UTC)
WALL = datetime.datetime(2024, 10, 2, 9, 0, tzinfo=UTC)


def test_a_due_down_move_is_made_at_the_first_reading_after_it_and_no_level_is_skipped(database_url: str) -> None:
    db = service_database("crowd", database_url)
    db.migrate()
    try:
        crowd = CrowdApp(db)
        crowd.upsert_zone(hubin())  # dwell 10 minutes, silence after 2
        levels: dict[int, LevelState] = {}
        for minute in range(0, 32):
            count = 10_000 if minute == 0 else 0  # full at T0, then everyone leaves at once
            camera = Reading(
                "hubin", "camera_1", SensorKind.CAMERA, minute + 1, T0 + minute * MINUTE, absolute_count=count
            )
            crowd.ingest([camera], wall_now=WALL + minute * datetime.timedelta(seconds=1))
            levels[minute] = crowd.get_zone_status("hubin").level
        assert levels[0] == LevelState(Level.I, T0)
        assert levels[9] == LevelState(Level.I, T0)  # held by the dwell
        # Due at T0 + 10 min: the reading observed then moves it, at its own time, one level.
        assert levels[10] == LevelState(Level.II, T0 + 10 * MINUTE)
        assert levels[19] == LevelState(Level.II, T0 + 10 * MINUTE)
        assert levels[20] == LevelState(Level.III, T0 + 20 * MINUTE)
        assert levels[30] == LevelState(Level.NONE, T0 + 30 * MINUTE)
    finally:
        db.dispose()
