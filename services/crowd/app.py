"""Crowd's use cases, shared by the api process (gRPC) and the ingest and worker processes: zones,
readings in batches, the timers, status, history and forecast. Each loads what it needs, hands it
to the domain (services/crowd/domain) and stores what the domain decided, with its events, in one
transaction (docs/decisions/crowd-one-transaction-per-batch.md)."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Sequence
from typing import Final

import sqlalchemy as sa
from google.protobuf.message import Message
from sqlalchemy.orm import Session

from govmesh import clock as govmesh_clock
from govmesh.db import Database
from govmesh.errors import InvalidArgument, NotFound
from govmesh.outbox import Outbox
from govmesh.workdays import is_working_day
from services.crowd import contract, store
from services.crowd.domain import decisions, history
from services.crowd.domain import forecast as forecasting
from services.crowd.domain.decisions import Decisions, IngestReport, ZoneState
from services.crowd.domain.occupancy import Reading, RejectedReading
from services.crowd.domain.zones import ZoneConfig, ZoneRecord, shown_id
from services.crowd.queries import CrowdQueries
from services.crowd.repository import ConfigCache, ZoneRepository

log = logging.getLogger(__name__)

#: The zones one timer pass looks at.
TIMER_BATCH: Final = 200


class CrowdApp:
    def __init__(
        self,
        db: Database,
        clock: Callable[[], datetime.datetime] = govmesh_clock.now,
        on_events: Callable[[Sequence[Message]], None] = lambda events: None,
    ) -> None:
        self.db = db
        self.clock = clock
        # Told of every event after it committed (the metrics count them).
        self.on_events = on_events
        self.outbox = Outbox("crowd", store.outbox, store.inbox)
        self.configs = ConfigCache()
        self.queries = CrowdQueries(db, self.configs)

    # --------------------------------------------------------------------------------------------
    # Zones

    def upsert_zone(self, config: ZoneConfig) -> tuple[ZoneRecord, bool]:
        """Create or reconfigure a zone; its record and whether it was created."""
        try:
            return self._upsert(config)
        except sa.exc.IntegrityError:
            # Another call created the zone at the same moment: this one is now an update.
            return self._upsert(config)

    def _upsert(self, config: ZoneConfig) -> tuple[ZoneRecord, bool]:
        now = self.clock()
        with self.db.transaction() as session:
            return self._repository(session).upsert(config, now)

    def list_zones(self, after: str | None, size: int) -> tuple[list[ZoneRecord], str | None]:
        """A page of zones in id order, and the id the next page starts after (None: no more)."""
        page, more = self.queries.zone_page(after, size)
        return page, page[-1].config.zone_id if more else None

    # --------------------------------------------------------------------------------------------
    # Readings

    def ingest(
        self, readings: Sequence[Reading | RejectedReading], wall_now: datetime.datetime | None = None
    ) -> IngestReport:
        """Apply a batch of readings in one transaction: every zone it names locked in zone id
        order, each reading applied in arrival order and its zone's level decided after it."""
        now = self.clock() if wall_now is None else wall_now
        zone_ids = decisions.zones_named(readings)
        with self.db.transaction() as session:
            zones = self._repository(session)
            # Locked before the configurations are read, so an UpsertZone that commits meanwhile
            # is seen whole (its new thresholds decide these readings).
            zones.lock_live(zone_ids)
            loaded = zones.load(zones.configs(zone_ids), now)
            report, decided = decisions.apply_readings(loaded, readings, now)
            events = self._save(session, zones, [zone for zone in loaded.values() if zone.applied], decided, now)
        self._announce(events)
        return report

    # --------------------------------------------------------------------------------------------
    # Timers

    def run_timers(self, wall_now: datetime.datetime | None = None) -> int:
        """Silences, ageing estimates and held down-moves due by now, zone by zone under its lock
        (docs/decisions/crowd-timer-reviews-due-zones.md). Returns the events queued."""
        now = self.clock() if wall_now is None else wall_now
        queued = 0
        for zone_id in self.queries.due_for_review(now, TIMER_BATCH):
            try:
                queued += self._review(zone_id, self.clock() if wall_now is None else wall_now)
            except sa.exc.OperationalError:
                raise  # the database is away: the whole pass waits for it
            except Exception:
                # One zone that cannot be decided must not starve the others: logged with its
                # trace, and the next pass tries it again.
                log.exception("zone timer failed", extra={"zone": zone_id})
        return queued

    def _review(self, zone_id: str, now: datetime.datetime) -> int:
        with self.db.transaction() as session:
            zones = self._repository(session)
            zones.lock_live([zone_id])
            zone = zones.load(zones.configs([zone_id]), now).get(zone_id)
            if zone is None:
                return 0
            events = self._save(session, zones, [zone], decisions.review(zone, now), now)
        self._announce(events)
        return len(events)

    # --------------------------------------------------------------------------------------------
    # Status, history, forecast

    def statuses(self, zone_ids: Sequence[str] | None = None) -> dict[str, ZoneState]:
        """The zones asked for (every zone when None) as they are now; unknown ids are left out."""
        return self.queries.zones(zone_ids, self.clock())

    def versions(self, zone_ids: Sequence[str] | None = None) -> dict[str, int]:
        """Each zone's version, cheaply: what WatchZones polls."""
        return self.queries.versions(zone_ids)

    def get_zone_status(self, zone_id: str) -> ZoneState:
        found = self.statuses([_required(zone_id)]).get(zone_id)
        if found is None:
            raise _unknown_zone(zone_id)
        return found

    def get_zone_history(self, zone_id: str, start: datetime.datetime, end: datetime.datetime) -> history.ZoneHistory:
        try:
            start, end = history.check_window(start, end)
        except ValueError as exc:
            field = "end_time" if "end_time" in str(exc) else "start_time"
            raise InvalidArgument(field, "INVALID_WINDOW", str(exc).removeprefix(f"{field}: ")) from None
        facts = self.queries.history_facts(_required(zone_id), start, end)
        if facts is None:
            raise _unknown_zone(zone_id)
        return history.summarise(facts.config, facts.changes, facts.level_at_start, facts.buckets, start, end)

    def forecast(self, zone_id: str, horizon_minutes: int, step_minutes: int) -> forecasting.Forecast:
        """The zone's forecast; a step of 0 is the default step (at most the horizon)."""
        step = step_minutes or min(forecasting.DEFAULT_STEP_MINUTES, max(1, horizon_minutes))
        facts = self.queries.forecast_facts(_required(zone_id), self.clock())
        if facts is None:
            raise _unknown_zone(zone_id)
        zone = facts.zone
        try:
            return forecasting.forecast(
                zone.config,
                facts.now,
                zone.live.occupancy,
                zone.level.level,
                facts.buckets,
                horizon_minutes,
                step,
                is_holiday=lambda day: not is_working_day(day),
            )
        except ValueError as exc:
            message = str(exc)
            field = "step_minutes" if message.startswith("step_minutes") else "horizon_minutes"
            raise InvalidArgument(field, "OUT_OF_RANGE", message.removeprefix(f"{field}: ")) from None

    # --------------------------------------------------------------------------------------------
    # The unit of work

    def _repository(self, session: Session) -> ZoneRepository:
        return ZoneRepository(session, self.configs)

    def _save(
        self,
        session: Session,
        zones: ZoneRepository,
        changed: Sequence[ZoneState],
        decided: Decisions,
        now: datetime.datetime,
    ) -> list[tuple[Message, str]]:
        """Store what a unit of work changed and decided, and queue its events (the outbox)."""
        zones.store(changed, now)
        zones.add_level_changes(decided.level_changes)
        zones.store_buckets(decided.tallies)
        events = contract.events_pb(decided.happenings)
        if events:
            self.outbox.add_many(session, events)
        return events

    def _announce(self, events: list[tuple[Message, str]]) -> None:
        if events:
            self.on_events([event for event, _ in events])


def _required(zone_id: str) -> str:
    if not zone_id:
        raise InvalidArgument("zone_id", "REQUIRED", "is required")
    return zone_id


def _unknown_zone(zone_id: str) -> NotFound:
    return NotFound(f"zone_id: no zone {shown_id(zone_id)}", field="zone_id", reason="UNKNOWN_ZONE")
