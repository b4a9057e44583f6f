"""Crowd's read side: zones' statuses and versions (what WatchZones polls), the list of zones, the
facts a history or a forecast is computed from, and the zones whose review is due. Each answer is
read in one read-only transaction and handed over as domain values."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from govmesh.clock import as_utc
from govmesh.db import Database
from services.crowd import store
from services.crowd.domain import forecast, history, occupancy
from services.crowd.domain.decisions import ZoneState
from services.crowd.domain.zones import Level, ZoneConfig, ZoneRecord
from services.crowd.repository import ConfigCache, ZoneRepository, record_from_row, zone_ids


@dataclasses.dataclass(frozen=True)
class HistoryFacts:
    """What a zone's history over [start, end) is summarised from."""

    config: ZoneConfig
    level_at_start: Level
    changes: list[history.LevelChange]
    buckets: list[history.OccupancyBucket]


@dataclasses.dataclass(frozen=True)
class ForecastFacts:
    """What a zone's forecast is made from: the zone now, its clock, and its recent buckets."""

    zone: ZoneState
    now: datetime.datetime
    buckets: list[history.OccupancyBucket]


class CrowdQueries:
    def __init__(self, db: Database, configs: ConfigCache) -> None:
        self.db = db
        self.configs = configs

    def zones(self, ids: Sequence[str] | None, wall_now: datetime.datetime) -> dict[str, ZoneState]:
        """The zones asked for (every zone when None) as they are now; unknown ids are left out."""
        with self.db.read() as session:
            repository = ZoneRepository(session, self.configs)
            return repository.load(repository.configs(ids), wall_now)

    def versions(self, ids: Sequence[str] | None) -> dict[str, int]:
        """Each zone's version, cheaply: what WatchZones polls."""
        query = sa.select(store.live.c.zone_id, store.live.c.version)
        if ids is not None:
            query = query.where(store.live.c.zone_id.in_(zone_ids(ids)))
        with self.db.read() as session:
            return {row.zone_id: int(row.version) for row in session.execute(query).all()}

    def zone_page(self, after: str | None, size: int) -> tuple[list[ZoneRecord], bool]:
        """Up to ``size`` zones in zone id order after ``after``, and whether more follow."""
        query = sa.select(store.zones).order_by(store.zones.c.zone_id).limit(size + 1)
        if after is not None:
            query = query.where(store.zones.c.zone_id > after)
        with self.db.read() as session:
            rows = session.execute(query).all()
        return [record_from_row(row) for row in rows[:size]], len(rows) > size

    def due_for_review(self, wall_now: datetime.datetime, limit: int) -> list[str]:
        """The zones whose review_at has come, the longest due first."""
        with self.db.read() as session:
            return list(
                session.execute(
                    sa.select(store.live.c.zone_id)
                    .where(store.live.c.review_at <= wall_now)
                    .order_by(store.live.c.review_at)
                    .limit(limit)
                ).scalars()
            )

    def history_facts(self, zone_id: str, start: datetime.datetime, end: datetime.datetime) -> HistoryFacts | None:
        """The zone's level before start, its changes in [start, end) and its buckets from one
        bucket before start (None: no such zone)."""
        changes = store.level_changes
        with self.db.read() as session:
            config = ZoneRepository(session, self.configs).configs([zone_id]).get(zone_id)
            if config is None:
                return None
            before = session.execute(
                sa.select(changes.c.level)
                .where(changes.c.zone_id == zone_id, changes.c.at < start)
                .order_by(changes.c.at.desc(), changes.c.change_id.desc())
                .limit(1)
            ).scalar()
            in_window = [
                history.LevelChange(as_utc(r.at), Level[r.previous_level], Level[r.level], int(r.occupancy))
                for r in session.execute(
                    sa.select(changes)
                    .where(changes.c.zone_id == zone_id, changes.c.at >= start)
                    .where(changes.c.at < end)
                    .order_by(changes.c.at, changes.c.change_id)
                ).all()
            ]
            buckets = _buckets(session, zone_id, start - history.BUCKET, end)
        return HistoryFacts(config, Level[before] if before else Level.NONE, in_window, buckets)

    def forecast_facts(self, zone_id: str, wall_now: datetime.datetime) -> ForecastFacts | None:
        """The zone now and its buckets over the forecast's look-back (None: no such zone)."""
        with self.db.read() as session:
            repository = ZoneRepository(session, self.configs)
            zone = repository.load(repository.configs([zone_id]), wall_now).get(zone_id)
            if zone is None:
                return None
            now = occupancy.zone_now(zone.live, wall_now)
            lookback = datetime.timedelta(days=forecast.LOOKBACK_DAYS + 2)
            return ForecastFacts(zone, now, _buckets(session, zone_id, now - lookback, now))


def _buckets(
    session: Session, zone_id: str, start: datetime.datetime, end: datetime.datetime
) -> list[history.OccupancyBucket]:
    return [
        history.OccupancyBucket(
            start=as_utc(r.start),
            max_occupancy=int(r.max_occupancy),
            max_at=as_utc(r.max_at),
            last_occupancy=int(r.last_occupancy),
            mean_occupancy=int(r.sum_occupancy) // max(1, int(r.samples)),
        )
        for r in session.execute(
            sa.select(store.buckets)
            .where(store.buckets.c.zone_id == zone_id, store.buckets.c.start >= start, store.buckets.c.start < end)
            .order_by(store.buckets.c.start)
        ).all()
    ]
