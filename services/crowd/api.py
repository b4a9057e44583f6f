"""Crowd's gRPC servicer: translates between the contract (contract.py) and the use cases (app.py).

ReportReadings applies each message of the stream in its own transaction (a large message in
chunks), so a stream cut half-way keeps what it delivered and a client resending it gets the
rest applied and the rest reported as duplicates. WatchZones learns from the process's one feed
which zones changed (the ingest and worker processes change zones, and ReportReadings here: the
feed polls their versions for every watcher at once, and is poked when this process committed a
reading) and sends what changed: level and sensor changes at once, occupancy at most once per
min_interval per zone. A watcher is a coroutine on the api's event loop (grpc.aio), not a thread."""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Final

import grpc

from govmesh.change_feed import ChangeFeed, Full, Subscription
from govmesh.config import Settings
from govmesh.crowd.v1 import crowd_pb2 as pb
from govmesh.crowd.v1 import crowd_pb2_grpc
from govmesh.db import Database
from govmesh.errors import InvalidArgument, NotFound, Unavailable
from govmesh.grpcserver import ApiDefinition
from govmesh.paging import page_size
from services.crowd import bootstrap, contract, metrics
from services.crowd.app import CrowdApp
from services.crowd.domain.occupancy import Outcome
from services.crowd.domain.zones import shown_id

#: Streams one api process serves at once: each a coroutine parked on the feed's event until a
#: zone it watches changes (govmesh/change_feed.py).
MAX_WATCHERS: Final = 1000
#: How often the feed asks which zones changed, for every watcher at once.
POLL_SECONDS: Final = 0.05
#: How long a watcher with nothing held back waits before it looks again (a change wakes it sooner).
IDLE_SECONDS: Final = 60.0
#: Readings applied per transaction when a client sends a very large message.
CHUNK: Final = 1000
DEFAULT_MIN_INTERVAL: Final = datetime.timedelta(seconds=1)
MAX_MIN_INTERVAL: Final = datetime.timedelta(hours=1)
#: Zones one stream may name (a big screen shows a district, not the province).
MAX_WATCHED_ZONES: Final = 1000
#: Refusals detailed in a ReportReadings response (every one is counted).
MAX_REJECTIONS_DETAILED: Final = 1000
ZONE_PAGE_DEFAULT: Final = 100
ZONE_PAGE_MAX: Final = 1000


@dataclass
class _Sent:
    version: int
    status: pb.ZoneStatus
    at: float
    pending: bool = False


class CrowdServicer(crowd_pb2_grpc.CrowdServiceServicer):
    def __init__(self, crowd: CrowdApp) -> None:
        self.crowd = crowd
        self.feed: ChangeFeed[str, pb.ZoneStatus] = ChangeFeed(
            "zones", crowd.versions, self._statuses, interval=POLL_SECONDS, capacity=MAX_WATCHERS
        )

    def _statuses(self, zone_ids: list[str] | None) -> dict[str, tuple[int, pb.ZoneStatus]]:
        """Each zone's version and status as watchers are sent it; the feed reads changed zones
        once for all their watchers."""
        zones = self.crowd.statuses(zone_ids)
        return {zone_id: (zone.version, contract.status_pb(zone)) for zone_id, zone in zones.items()}

    def UpsertZone(self, request: pb.UpsertZoneRequest, context: grpc.ServicerContext) -> pb.UpsertZoneResponse:
        if not request.HasField("zone"):
            raise InvalidArgument("zone", "REQUIRED", "is required")
        record, created = self.crowd.upsert_zone(contract.config_from_pb(request.zone))
        return pb.UpsertZoneResponse(zone=contract.zone_pb(record), created=created)

    def ListZones(self, request: pb.ListZonesRequest, context: grpc.ServicerContext) -> pb.ListZonesResponse:
        size = page_size(request.page_size, default=ZONE_PAGE_DEFAULT, maximum=ZONE_PAGE_MAX)
        page, last = self.crowd.list_zones(contract.page_after(request.page_token), size)
        return pb.ListZonesResponse(
            zones=[contract.zone_pb(r) for r in page], next_page_token=contract.page_token(last)
        )

    def ReportReadings(
        self, request_iterator: Iterator[pb.ReportReadingsRequest], context: grpc.ServicerContext
    ) -> pb.ReportReadingsResponse:
        response = pb.ReportReadingsResponse()
        for message in request_iterator:
            for first in range(0, len(message.readings), CHUNK):
                chunk = message.readings[first : first + CHUNK]
                base = response.received
                report = self.crowd.ingest([contract.reading_from_pb(r) for r in chunk])
                late = report.count(Outcome.LATE)
                accepted = report.count(Outcome.ACCEPTED) + late
                duplicates = report.count(Outcome.DUPLICATE)
                rejected = report.rejected
                response.received += len(chunk)
                response.accepted += accepted
                response.late += late
                response.duplicates += duplicates
                response.rejected += len(rejected)
                for index, refusal in rejected:
                    if len(response.rejections) < MAX_REJECTIONS_DETAILED:
                        response.rejections.append(contract.rejection_pb(base + index, chunk[index], refusal))
                metrics.count_readings("grpc", accepted, late, duplicates, [r.reason.name.lower() for _, r in rejected])
        if response.accepted:
            self.feed.poke()  # committed: the watchers need not wait for the feed's next poll
        return response

    def GetZoneStatus(
        self, request: pb.GetZoneStatusRequest, context: grpc.ServicerContext
    ) -> pb.GetZoneStatusResponse:
        return pb.GetZoneStatusResponse(status=contract.status_pb(self.crowd.get_zone_status(request.zone_id)))

    async def WatchZones(
        self,
        request: pb.WatchZonesRequest,
        context: grpc.aio.ServicerContext[pb.WatchZonesRequest, pb.WatchZonesResponse],
    ) -> AsyncIterator[pb.WatchZonesResponse]:
        min_interval = DEFAULT_MIN_INTERVAL
        if request.HasField("min_interval"):
            min_interval = contract.timedelta_of(request.min_interval, "min_interval")
            if not datetime.timedelta(0) <= min_interval <= MAX_MIN_INTERVAL:
                raise InvalidArgument("min_interval", "OUT_OF_RANGE", "must be between 0 and 1 hour")
        if len(request.zone_ids) > MAX_WATCHED_ZONES:
            raise InvalidArgument(
                "zone_ids", "TOO_MANY", f"at most {MAX_WATCHED_ZONES} zones per stream (empty: every zone)"
            )
        zone_ids = list(dict.fromkeys(request.zone_ids)) or None
        if zone_ids is not None:
            known = await asyncio.to_thread(self.crowd.versions, zone_ids)
            for index, zone_id in enumerate(request.zone_ids):
                if zone_id not in known:
                    raise NotFound(
                        f"zone_ids[{index}]: no zone {shown_id(zone_id)}",
                        field=f"zone_ids[{index}]",
                        reason="UNKNOWN_ZONE",
                    )
        try:
            subscription = self.feed.subscribe(zone_ids)
        except Full:
            busy = f"this server already streams to {MAX_WATCHERS} watchers; retry shortly or poll"
            raise Unavailable(busy) from None
        with subscription:
            async for response in self._watch(subscription, zone_ids, min_interval.total_seconds()):
                yield response

    async def _watch(
        self, subscription: Subscription[str, pb.ZoneStatus], zone_ids: list[str] | None, min_interval: float
    ) -> AsyncIterator[pb.WatchZonesResponse]:
        """The snapshot, read after subscribing so no change falls between, then each change the
        feed announces (occupancy at most once per ``min_interval`` a zone, the latest kept). Ends
        when grpc.aio cancels it: the client left, or the server stopped."""
        sent: dict[str, _Sent] = {}
        statuses = await asyncio.to_thread(self._statuses, zone_ids)
        while True:
            now = time.monotonic()
            for zone_id in sorted(statuses):
                version, status = statuses[zone_id]
                kind = _update_kind(sent.get(zone_id), status)
                previous = sent.get(zone_id)
                if kind == pb.ZONE_UPDATE_KIND_OCCUPANCY and previous and now - previous.at < min_interval:
                    previous.version, previous.pending = version, True
                    continue
                sent[zone_id] = _Sent(version, status, now)
                if kind is not None:
                    yield pb.WatchZonesResponse(kind=kind, status=status)
            held = [s.at + min_interval - now for s in sent.values() if s.pending]
            timeout = max(0.0, min(held)) if held else IDLE_SECONDS
            versions = await subscription.wait({zone_id: s.version for zone_id, s in sent.items()}, timeout)
            now = time.monotonic()
            wanted = [
                zone_id
                for zone_id, version in versions.items()
                if zone_id not in sent
                or version > sent[zone_id].version
                or (sent[zone_id].pending and now - sent[zone_id].at >= min_interval)
            ]
            statuses = subscription.values(wanted)
            missing = [zone_id for zone_id in wanted if zone_id not in statuses]
            if missing:  # not loaded by the feed yet (a zone new to it)
                statuses |= await asyncio.to_thread(self._statuses, missing)

    def GetZoneHistory(
        self, request: pb.GetZoneHistoryRequest, context: grpc.ServicerContext
    ) -> pb.GetZoneHistoryResponse:
        start, end = contract.history_window(request)
        return contract.history_pb(self.crowd.get_zone_history(request.zone_id, start, end))

    def Forecast(self, request: pb.ForecastRequest, context: grpc.ServicerContext) -> pb.ForecastResponse:
        result = self.crowd.forecast(request.zone_id, request.horizon_minutes, request.step_minutes)
        return contract.forecast_pb(request.zone_id, result)


def _update_kind(previous: _Sent | None, status: pb.ZoneStatus) -> pb.ZoneUpdateKind.ValueType | None:
    """Why this status is worth sending (None: nothing a watcher sees has changed)."""
    if previous is None:
        return pb.ZONE_UPDATE_KIND_SNAPSHOT
    before = previous.status
    if before.level != status.level:
        return pb.ZONE_UPDATE_KIND_LEVEL
    if (before.sensors_healthy, before.sensors_total) != (status.sensors_healthy, status.sensors_total):
        return pb.ZONE_UPDATE_KIND_SENSORS
    if before.occupancy != status.occupancy:
        return pb.ZONE_UPDATE_KIND_OCCUPANCY
    return None


def build(settings: Settings, db: Database) -> ApiDefinition:
    parts = bootstrap.build(settings, db, "api")
    metrics.prime("grpc")
    servicer = CrowdServicer(parts.crowd)
    return ApiDefinition(
        service="crowd",
        full_name=pb.DESCRIPTOR.services_by_name["CrowdService"].full_name,
        add_servicer=lambda server: crowd_pb2_grpc.add_CrowdServiceServicer_to_server(servicer, server),
        streams=MAX_WATCHERS,
    )
