"""`govmesh crowd simulate`: a year of the Hubin music fountain's sensors, replayed through the real mesh.

The simulator is a client like the zone's sensor gateway: it creates a zone of its own, publishes
every reading of :mod:`services.crowd.tools.demand`'s model to the broker exchange ``crowd.readings``
(where the crowd worker takes them), waits until the crowd service has applied them, and prints
the service's history of the window beside the model's truth and the seed's figures: barriers up
365 days a year under the old fixed policy, 36 days with live counts and a three-level response.

Why it replays into a zone of its own, by event time, how it publishes and when it knows the
service has caught up: docs/decisions/crowd-simulator-replays-into-its-own-zone.md (and
runtime-amqp-client.md for the publisher). The figures: barrier days under the old fixed policy
(every day of the window), a fixed calendar policy (the official calendar's days off), the live
response (the service's GetZoneHistory) and the days the model's true peak reached level II.

Exit codes: 0 done; 2 bad arguments, or the mesh (crowd api, broker, crowd worker) not
  reachable, with one paragraph saying what to start; 1 anything else (the service did not keep
  up, refused a call).
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import amqp
import grpc
from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from tqdm import tqdm

from govmesh import clock, enums, messaging
from govmesh.auth import Policy, PolicyError, TokenIssuer
from govmesh.config import Settings
from govmesh.crowd.v1 import crowd_pb2 as pb
from govmesh.crowd.v1 import crowd_pb2_grpc
from services.crowd.domain.zones import SensorKind
from services.crowd.tools import demand

CALLER: Final = "demo-portal"
EXCHANGE: Final = "crowd.readings"
#: GetZoneHistory's longest window.
MAX_DAYS: Final = 400
#: The seed's figures: barrier days a year before and after live counts (Hangzhou, 2019).
SEED_BEFORE: Final = 365
SEED_AFTER: Final = 36
DEFAULT_LEVEL_II_BP: Final = 8_000
#: The built-in zone's sensors read every 5 minutes: silent after three missed readings.
SILENCE_AFTER_MINUTES: Final = 15
ZONE_PATTERN: Final = re.compile(r"[a-z][a-z0-9_]{0,39}")
#: A reading's sensor kind as the contract names it (proto3 JSON carries enum names).
_KIND: Final = {
    kind: pb.SensorKind.Name(pb.SensorKind.ValueType(enums.to_proto(pb.SensorKind, "SENSOR_KIND_", kind)))
    for kind in SensorKind
}
_LEVELS: Final = (
    (pb.RESPONSE_LEVEL_NONE, "无 none"),
    (pb.RESPONSE_LEVEL_III, "三级 III"),
    (pb.RESPONSE_LEVEL_II, "二级 II"),
    (pb.RESPONSE_LEVEL_I, "一级 I"),
)


class ArgumentError(ValueError):
    """A bad command-line argument; the message names it."""


class MeshUnreachable(RuntimeError):
    """A part of the mesh the simulation needs is not running; the message says which."""


# -- arguments and the window ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Calendar days ``start`` to ``last`` (inclusive), Asia/Shanghai."""

    start: datetime.date
    days: int

    @property
    def last(self) -> datetime.date:
        return self.start + datetime.timedelta(days=self.days - 1)

    @property
    def start_time(self) -> datetime.datetime:
        """Local midnight at the start, in UTC (GetZoneHistory's inclusive start)."""
        return _midnight(self.start)

    @property
    def end_time(self) -> datetime.datetime:
        """Local midnight after the last day, in UTC (GetZoneHistory's exclusive end)."""
        return _midnight(self.last + datetime.timedelta(days=1))

    def dates(self) -> list[datetime.date]:
        return [self.start + datetime.timedelta(days=n) for n in range(self.days)]


def _midnight(date: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(date, datetime.time(0), tzinfo=demand.SHANGHAI).astimezone(datetime.UTC)


def parse_date(text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise ArgumentError(f"--start: {text!r} is not a date YYYY-MM-DD") from None


def compute_window(today: datetime.date, days: int, start: datetime.date | None) -> Window:
    """The window of ``days`` days from ``start``, by default ending yesterday (``today`` is the
    Asia/Shanghai date now); it must end by yesterday and be at most :data:`MAX_DAYS` long."""
    if not 1 <= days <= MAX_DAYS:
        raise ArgumentError(f"--days: must be between 1 and {MAX_DAYS} (GetZoneHistory's longest window), got {days}")
    yesterday = today - datetime.timedelta(days=1)
    window = Window(yesterday - datetime.timedelta(days=days - 1) if start is None else start, days)
    if window.last > yesterday:
        raise ArgumentError(
            f"--start/--days: the window would end on {window.last}, but it must end by yesterday ({yesterday}): "
            "the service refuses readings observed in the future and a day must be over to be counted"
        )
    return window


def check_arguments(args: argparse.Namespace, today: datetime.date) -> Window:
    """The window of the command's arguments, or ArgumentError naming the bad one."""
    if not ZONE_PATTERN.fullmatch(args.zone):
        raise ArgumentError(f"--zone: {args.zone!r} is not a zone id (lower_snake_case, at most 40 characters)")
    start = None if args.start is None else parse_date(args.start)
    return compute_window(today, args.days, start)


def simulation_zone_id(zone: str, started: datetime.datetime) -> str:
    """``sim_<zone>_<YYYYMMDDHHMMSS>``, the wall-clock time in Asia/Shanghai."""
    if started.utcoffset() is None:
        raise ValueError("started: must be timezone-aware")
    return f"sim_{zone}_{started.astimezone(demand.SHANGHAI):%Y%m%d%H%M%S}"


# -- the figures ----------------------------------------------------------------------------------------


def calendar_policy_days(window: Window) -> int:
    """Days a fixed calendar policy keeps barriers up: the official days off of the window."""
    return sum(demand.calendar_day(date).rest for date in window.dates())


def reaches(peak: int, capacity: int, threshold_bp: int) -> bool:
    """Whether ``peak`` people reach ``threshold_bp`` of ``capacity`` (integer: at the threshold
    counts, one person below does not)."""
    return peak * 10_000 >= threshold_bp * capacity


def level_ii_threshold(zone: pb.Zone) -> int:
    """The zone's level II threshold in basis points (the server's default when levels are empty)."""
    for rule in zone.levels:
        if rule.level == pb.RESPONSE_LEVEL_II:
            return int(rule.threshold_bp)
    return DEFAULT_LEVEL_II_BP


@dataclass(frozen=True)
class Sent:
    """What the simulator sent."""

    readings: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    withheld: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class Figures:
    """Everything the report prints, so that it can be printed from given numbers."""

    zone_id: str
    name_zh: str
    name_en: str
    source: str  # where the configuration came from
    capacity: int
    level_ii_bp: int
    window: Window
    seed: int
    sent: Sent
    calendar_policy_days: int
    live_barrier_days: Sequence[str]  # ISO dates, from the service's history
    true_days: Sequence[str]  # ISO dates the model's true peak reached level II
    time_at_level: Mapping[int, datetime.timedelta]  # by pb.ResponseLevel
    peak: int
    peak_load_bp: int
    peak_level: int
    peak_at: datetime.datetime | None
    true_peak: int
    true_peak_at: datetime.datetime
    unknown_years: Sequence[int] = ()


def report(f: Figures) -> str:
    live, true = set(f.live_barrier_days), set(f.true_days)
    rate = f.sent.readings / f.sent.seconds if f.sent.seconds > 0 else 0.0
    levels = "  ".join(
        f"{label} {_hours(f.time_at_level.get(level, datetime.timedelta()))}" for level, label in _LEVELS
    )
    peak = (
        f"{f.peak:,} ({_percent(f.peak_load_bp)}, {_level_name(f.peak_level)}) at {_local(f.peak_at)}"
        if f.peak_at is not None
        else "none recorded"
    )
    lines = [
        f"{f.name_zh} {f.name_en}: zone {f.zone_id} ({f.source}), capacity {f.capacity:,}, "
        f"level II at {_percent(f.level_ii_bp)} ({f.capacity * f.level_ii_bp // 10_000:,} people)",
        f"窗口 window                {f.window.start} .. {f.window.last} ({f.window.days} days, Asia/Shanghai), "
        f"seed {f.seed}",
        f"读数 readings sent         {f.sent.readings:,} in {f.sent.seconds:.0f} s ({rate:,.0f}/s): "
        f"{f.sent.duplicates:,} re-sent (duplicates), {f.sent.out_of_order:,} out of order; "
        f"{f.sent.withheld:,} never sent (silent sensors)",
        "拒收/重复 rejected/dupl.    counted by the crowd service (govmesh_crowd_readings_total, ingest process)",
        "护栏天数 barrier days (days with BARRIERS_UP, a level II measure):",
        f"  常年固定 fixed, all year         {f.window.days:>4}",
        f"  按日历 weekends and holidays     {f.calendar_policy_days:>4}",
        f"  实时响应 live response           {len(live):>4}   (the crowd service's history of this run)",
        f"  模型真值 true peak ≥ level II    {len(true):>4}   (the model: {len(live & true)} of them with "
        f"barriers, {len(true - live)} missed; barriers on {len(live - true)} days below it)",
        f"  种子 the seed (Hangzhou, 2019)   {SEED_BEFORE} -> {SEED_AFTER}",
        f"各级时长 time at level      {levels}",
        f"峰值 peak                  {peak}; the model's true peak {f.true_peak:,} at {_local(f.true_peak_at)}",
    ]
    if f.unknown_years:
        years = ", ".join(str(y) for y in f.unknown_years)
        lines.append(
            f"注 note                    chinese-calendar knows no holidays for {years}: weekends only, "
            "so holiday crowds and the calendar policy are underestimated there"
        )
    return "\n".join(lines)


def barrier_days(f: Figures) -> dict[str, object]:
    """The report's barrier days as one JSON document (`--json`), for a program to read rather
    than the printed table."""
    return {
        "zone_id": f.zone_id,
        "window": {"start": f.window.start.isoformat(), "last": f.window.last.isoformat(), "days": f.window.days},
        "fixed": f.window.days,
        "calendar": f.calendar_policy_days,
        "live": len(set(f.live_barrier_days)),
        "true": len(set(f.true_days)),
        "seed": [SEED_BEFORE, SEED_AFTER],
    }


def _percent(bp: int) -> str:
    return f"{bp // 100}.{bp % 100:02d}%"


def _hours(span: datetime.timedelta) -> str:
    minutes = int(span.total_seconds()) // 60
    return f"{minutes // 60:,} h {minutes % 60:02d} min"


def _local(moment: datetime.datetime | None) -> str:
    return "-" if moment is None else f"{moment.astimezone(demand.SHANGHAI):%Y-%m-%d %H:%M}"


def _level_name(level: int) -> str:
    return next((name for value, name in _LEVELS if value == level), "unspecified")


# -- the zone -------------------------------------------------------------------------------------------


def builtin_zone(zone_id: str, window: Window) -> pb.Zone:
    """The West Lake music fountain's configuration (levels empty: the server's defaults)."""
    zone = pb.Zone(
        zone_id=zone_id,
        name_zh=demand.NAME_ZH,
        name_en=demand.NAME_EN,
        capacity=demand.CAPACITY,
        silence_after=Duration(seconds=SILENCE_AFTER_MINUTES * 60),
    )
    for entry in demand.fountain_schedule(window.start, window.last):
        zone.schedule.append(
            pb.ScheduleEntry(
                name=entry.name,
                start_time=f"{entry.start_time:%H:%M}",
                duration=Duration(seconds=int(entry.duration.total_seconds())),
                iso_weekdays=sorted(entry.iso_weekdays),
                valid_from=entry.valid_from.isoformat() if entry.valid_from else "",
                valid_to=entry.valid_to.isoformat() if entry.valid_to else "",
            )
        )
    return zone


def copied_zone(source: pb.Zone, zone_id: str) -> pb.Zone:
    """``source``'s configuration under ``zone_id`` (the server sets the times)."""
    zone = pb.Zone()
    zone.CopyFrom(source)
    zone.zone_id = zone_id
    zone.name_zh = f"{source.name_zh}（模拟）"
    zone.name_en = f"{source.name_en} (simulation)"
    zone.ClearField("created_at")
    zone.ClearField("updated_at")
    return zone


# -- the readings on the wire ---------------------------------------------------------------------------


def to_proto(reading: demand.Reading) -> pb.SensorReading:
    message = pb.SensorReading(
        zone_id=reading.zone_id,
        sensor_id=reading.sensor_id,
        sensor_kind=pb.SensorKind.Value(_KIND[reading.kind]),
        sequence=reading.sequence,
    )
    message.observed_at.FromDatetime(reading.observed_at)
    if reading.delta is not None:
        message.delta = reading.delta
    else:
        message.absolute_count = reading.absolute_count or 0
    return message


def canonical_json(reading: demand.Reading) -> bytes:
    """The body as json_format writes it (compact): the reference :func:`encode` must match."""
    return json.dumps(json_format.MessageToDict(to_proto(reading)), separators=(",", ":")).encode()


def encode(reading: demand.Reading) -> bytes:
    """The body, byte for byte :func:`canonical_json`, at a tenth of its cost (a year is a million
    messages). Times with fractions of a second take the reference path."""
    at = reading.observed_at
    if at.microsecond or at.utcoffset() != datetime.timedelta(0):
        return canonical_json(reading)
    value = f'"delta":"{reading.delta}"' if reading.delta is not None else f'"absoluteCount":"{reading.absolute_count}"'
    return (
        f'{{"zoneId":{_quoted(reading.zone_id)},"sensorId":{_quoted(reading.sensor_id)},'
        f'"sensorKind":"{_KIND[reading.kind]}","sequence":"{reading.sequence}",'
        f'"observedAt":"{at:%Y-%m-%dT%H:%M:%S}Z",{value}}}'
    ).encode()


_quoted: Callable[[str], str] = json.dumps


# -- publishing -----------------------------------------------------------------------------------------


class Publisher:
    """Publishes (routing key, body) pairs to ``exchange`` through govmesh.messaging's publisher:
    persistent, mandatory, up to ``in_flight`` unconfirmed, returning once every one is confirmed.
    Raises MeshUnreachable when the broker, the exchange or a queue for the messages is missing,
    and RuntimeError when the broker refuses (nacks) a message or stops answering."""

    def __init__(
        self, uri: str, exchange: str = EXCHANGE, in_flight: int = messaging.IN_FLIGHT, timeout: float = 30.0
    ) -> None:
        self.exchange = exchange
        self.timeout = timeout
        self._publisher = messaging.Publisher(uri, "govmesh-crowd-simulate", timeout, in_flight, self._exchange_exists)
        self._call(self._publisher.open)

    def _exchange_exists(self, channel: amqp.Channel) -> None:
        try:
            channel.exchange_declare(self.exchange, "topic", passive=True)
        except amqp.exceptions.NotFound:
            raise MeshUnreachable(
                f"the broker has no exchange {self.exchange}: the crowd worker declares it when it starts"
            ) from None

    def publish(self, messages: Iterable[tuple[str, bytes]]) -> None:
        """Publishes ``messages`` and returns once the broker has confirmed every one."""
        readings = (
            (key, amqp.Message(body, content_type="application/json", delivery_mode=2)) for key, body in messages
        )
        self._call(lambda: self._publisher.publish_to(self.exchange, readings, mandatory=True))

    def close(self) -> None:
        self._publisher.close()

    def _call(self, action: Callable[[], object]) -> None:
        try:
            action()
        except messaging.Unroutable as exc:
            raise MeshUnreachable(f"{exc}: the crowd worker binds its queues when it starts") from None
        except messaging.BrokerRefused:
            raise RuntimeError(f"the broker refused (nacked) readings on {self.exchange}") from None
        except messaging.BrokerUnavailable as exc:
            if isinstance(exc.__cause__, TimeoutError):
                raise RuntimeError(f"the broker confirmed nothing for {self.timeout:.0f} s") from None
            raise MeshUnreachable(str(exc)) from None


# -- the run --------------------------------------------------------------------------------------------


class Mesh:
    """The crowd service's gRPC api, as ``caller``."""

    def __init__(self, channel: grpc.Channel, token: str) -> None:
        self.stub = crowd_pb2_grpc.CrowdServiceStub(channel)
        self.metadata = (("authorization", f"Bearer {token}"),)

    def find_zone(self, zone_id: str) -> pb.Zone | None:
        token = ""
        while True:
            page = self.stub.ListZones(
                pb.ListZonesRequest(page_size=1000, page_token=token), metadata=self.metadata, timeout=30
            )
            for zone in page.zones:
                if zone.zone_id == zone_id:
                    return zone
            token = page.next_page_token
            if not token:
                return None

    def upsert(self, zone: pb.Zone) -> pb.Zone:
        response = self.stub.UpsertZone(pb.UpsertZoneRequest(zone=zone), metadata=self.metadata, timeout=30)
        return response.zone

    def status(self, zone_id: str) -> pb.ZoneStatus:
        response = self.stub.GetZoneStatus(pb.GetZoneStatusRequest(zone_id=zone_id), metadata=self.metadata, timeout=30)
        return response.status

    def history(self, zone_id: str, window: Window) -> pb.GetZoneHistoryResponse:
        request = pb.GetZoneHistoryRequest(
            zone_id=zone_id, start_time=clock.timestamp(window.start_time), end_time=clock.timestamp(window.end_time)
        )
        response: pb.GetZoneHistoryResponse = self.stub.GetZoneHistory(request, metadata=self.metadata, timeout=120)
        return response


def _time(stamp: Timestamp) -> datetime.datetime:
    return stamp.ToDatetime(datetime.UTC)


class StatusSource(Protocol):
    def status(self, zone_id: str) -> pb.ZoneStatus: ...


def wait_applied(
    mesh: StatusSource,
    zone_id: str,
    expected: Mapping[str, datetime.datetime],
    window: Window,
    stall_seconds: float,
    progress: bool,
    poll_seconds: float = 1.0,
) -> None:
    """Returns once the service has applied every sensor's last reading sent (``expected``: its
    observation time per sensor); TimeoutError when nothing moves for ``stall_seconds``."""
    last = max(expected.values())
    bar = tqdm(total=window.days, unit="day", disable=not progress, desc="applying", file=sys.stderr)
    seen: object = None
    moved_at = time.monotonic()
    try:
        while True:
            status = mesh.status(zone_id)
            reached = {s.sensor_id: _time(s.last_observed_at) for s in status.sensors if s.HasField("last_observed_at")}
            updated = _time(status.updated_at) if status.HasField("updated_at") else None
            lagging = sorted(s for s, at in expected.items() if s not in reached or reached[s] < at)
            behind = min((reached.get(s, window.start_time) for s in lagging), default=last)
            bar.n = min(window.days, max(0, (behind - window.start_time) // datetime.timedelta(days=1)))
            bar.refresh()
            if not lagging and updated is not None and updated >= last:
                bar.n = window.days
                bar.refresh()
                return
            state = (updated, tuple(sorted(reached.items())))
            if state != seen:
                seen, moved_at = state, time.monotonic()
            elif time.monotonic() - moved_at > stall_seconds:
                names = ", ".join(f"{s} (at {_local(reached.get(s))})" for s in lagging[:4])
                raise TimeoutError(
                    f"the crowd service applied nothing for {stall_seconds:.0f} s and has not caught up: "
                    f"{len(lagging)} sensors lag, e.g. {names}; the last reading sent was observed at "
                    f"{_local(last)}. Is the crowd worker running, or did it reject readings (its log says why)?"
                )
            time.sleep(poll_seconds)
    finally:
        bar.close()


def run(
    settings: Settings,
    zone: str,
    window: Window,
    seed: int,
    progress: bool = True,
    stall_seconds: float = 120.0,
    faults: demand.Faults = demand.DEFAULT_FAULTS,
) -> Figures:
    """Runs the simulation and returns its figures (report() prints them)."""
    started = datetime.datetime.now(datetime.UTC)
    zone_id = simulation_zone_id(zone, started)
    issuer = TokenIssuer.from_key_dir(Policy.load(settings.policy_path), settings.key_dir)
    token = issuer.issue(CALLER)
    with grpc.insecure_channel(settings.grpc_target) as channel:
        mesh = Mesh(channel, token)
        source = mesh.find_zone(zone)
        if source is not None:
            config, origin = copied_zone(source, zone_id), f"configuration copied from {zone}"
        else:
            config, origin = builtin_zone(zone_id, window), f"built-in configuration, no zone {zone} in the service"
        created = mesh.upsert(config)
        publisher = Publisher(settings.amqp_uri)
        sent = Sent()
        expected: dict[str, datetime.datetime] = {}
        true_days: list[str] = []
        true_peak, true_peak_at = -1, window.start_time
        threshold = level_ii_threshold(created)
        began = time.monotonic()
        bar = tqdm(total=window.days, unit="day", disable=not progress, desc="publishing", file=sys.stderr)
        try:
            for day in demand.simulate(window.start, window.days, seed, zone_id, faults):
                resent = set(day.resent)
                for index, reading in enumerate(day.readings):
                    if index not in resent:
                        expected[reading.sensor_id] = reading.observed_at
                publisher.publish((zone_id, encode(reading)) for reading in day.readings)
                sent = Sent(
                    sent.readings + len(day.readings),
                    sent.duplicates + day.faults.duplicates,
                    sent.out_of_order + day.faults.out_of_order,
                    sent.withheld + day.faults.withheld,
                    time.monotonic() - began,
                )
                if reaches(day.truth.peak, created.capacity, threshold):
                    true_days.append(day.date.isoformat())
                if day.truth.peak > true_peak:
                    true_peak, true_peak_at = day.truth.peak, day.truth.peak_at
                bar.update(1)
                bar.set_postfix(readings=f"{sent.readings:,}", per_s=f"{sent.readings / max(sent.seconds, 1e-9):,.0f}")
        finally:
            bar.close()
            publisher.close()
        wait_applied(mesh, zone_id, expected, window, stall_seconds, progress)
        history = mesh.history(zone_id, window)
    figures = Figures(
        zone_id=zone_id,
        name_zh=created.name_zh,
        name_en=created.name_en,
        source=origin,
        capacity=created.capacity,
        level_ii_bp=threshold,
        window=window,
        seed=seed,
        sent=sent,
        calendar_policy_days=calendar_policy_days(window),
        live_barrier_days=list(history.barrier_days),
        true_days=true_days,
        time_at_level={d.level: d.duration.ToTimedelta() for d in history.time_at_level},
        peak=history.peak.occupancy,
        peak_load_bp=history.peak.load_bp,
        peak_level=history.peak.level,
        peak_at=_time(history.peak.at) if history.peak.HasField("at") else None,
        true_peak=true_peak,
        true_peak_at=true_peak_at,
        unknown_years=sorted({d.year for d in window.dates() if not demand.calendar_day(d).calendar_known}),
    )
    return figures


def main(settings: Settings, args: argparse.Namespace) -> int:
    try:
        window = check_arguments(args, clock.shanghai_date())
    except ArgumentError as exc:
        print(f"govmesh crowd simulate: {exc}", file=sys.stderr)
        return 2
    try:
        figures = run(settings, args.zone, window, args.seed, progress=not args.quiet)
        print(json.dumps(barrier_days(figures)) if args.json else report(figures))
    except PolicyError as exc:
        print(
            f"govmesh crowd simulate: the policy does not let {CALLER} call the crowd service: {exc}", file=sys.stderr
        )
        return 2
    except MeshUnreachable as exc:
        print(
            f"govmesh crowd simulate: {exc}. The simulation needs the running mesh: the crowd api (gRPC at "
            f"{settings.grpc_target}), RabbitMQ and the crowd worker; start them with `make run` in another "
            "terminal and try again.",
            file=sys.stderr,
        )
        return 2
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        print(f"govmesh crowd simulate: the crowd service answered {code.name}: {error.details()}", file=sys.stderr)
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            print(
                f"The crowd api at {settings.grpc_target} is not reachable: is the mesh running? Start it with "
                "`make run` in another terminal.",
                file=sys.stderr,
            )
            return 2
        return 1
    except (RuntimeError, TimeoutError) as exc:
        print(f"govmesh crowd simulate: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("govmesh crowd simulate: interrupted; the simulation's zone keeps what was applied", file=sys.stderr)
        return 130
    return 0


__all__ = [
    "CALLER",
    "EXCHANGE",
    "MAX_DAYS",
    "ArgumentError",
    "Figures",
    "MeshUnreachable",
    "Publisher",
    "Sent",
    "Window",
    "builtin_zone",
    "calendar_policy_days",
    "canonical_json",
    "check_arguments",
    "compute_window",
    "copied_zone",
    "encode",
    "level_ii_threshold",
    "main",
    "reaches",
    "report",
    "run",
    "simulation_zone_id",
    "to_proto",
    "wait_applied",
]
