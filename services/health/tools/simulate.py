"""`govmesh health simulate`: a population of patients treated on credit, through the real mesh.

The simulator is a client like any hospital system: it publishes (as the demo portal) each
synthetic resident's city credit score and medical insurance enrolment to records over
PublishRecords, enrols them over health's Enroll (health pulls the proofs from records itself),
then lives D days: patients fall ill, open outpatient visits or are admitted, are charged, are
discharged, and pay their bills, almost all on time, a few late, a very few never. It then keeps
the clock running (no new visits) until every bill has reached its end: paid, or defaulted after
the grace period (and, for some defaulters, repaid later, which restores their credit).

Time: the services read their clock from GOVMESH_CLOCK_OFFSET_FILE (govmesh/clock.py). The
simulator moves that offset forward one day at a time, so the mesh must be started with the same
variable set; it refuses to run without it, and checks each day that health's clock followed.

The figures printed are health's GetStats (the scheme's totals, over all time) in the seed's terms,
next to what the simulator saw (on time, late, after default; suspensions and restorations).
Identifiers are generated (valid GB 11643 numbers) and never printed: errors are masked too.

The decisions behind the simulator are in docs/decisions/: health-simulator-threads-and-seeds.md,
health-simulator-counter-payments.md, health-simulator-whole-days.md.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from tqdm import tqdm

from govmesh import typed_values as values
from govmesh.auth import Policy, TokenIssuer
from govmesh.config import Settings
from govmesh.config import load as load_settings
from govmesh.health.v1 import medical_credit_pb2 as pb
from govmesh.health.v1 import medical_credit_pb2_grpc
from govmesh.privacy import mask_identifiers
from govmesh.records.v1 import records_pb2, records_pb2_grpc
from services.health import hospitals

DAY_SECONDS = 86_400
YUAN = 100
CALLER = "demo-portal"
CLOCK_VARIABLE = "GOVMESH_CLOCK_OFFSET_FILE"
#: Hangzhou's districts and counties, and a few other cities of the province (GB/T 2260).
REGIONS = ("330102", "330105", "330106", "330108", "330109", "330110", "330183", "330185", "330203", "330681")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国志红玉兰婷雪飞鹏浩宇欣怡子涵梓轩"
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
#: What a hospital charges, per category: items and a typical amount range in yuan.
ITEMS: dict[pb.ChargeCategory.ValueType, tuple[tuple[str, ...], int, int]] = {
    pb.CHARGE_CATEGORY_CONSULTATION: (("普通门诊挂号费", "专家门诊诊查费", "急诊诊查费"), 10, 100),
    pb.CHARGE_CATEGORY_MEDICINE: (
        ("阿莫西林胶囊", "布洛芬缓释胶囊", "连花清瘟胶囊", "二甲双胍片", "头孢克肟片"),
        20,
        600,
    ),
    pb.CHARGE_CATEGORY_HERBAL_MEDICINE: (("中药饮片七剂", "中药配方颗粒"), 60, 400),
    pb.CHARGE_CATEGORY_EXAMINATION: (("胸部CT平扫", "腹部彩超", "心电图", "头颅核磁共振"), 30, 900),
    pb.CHARGE_CATEGORY_LABORATORY: (("血常规", "肝功能", "血糖测定", "尿常规"), 15, 300),
    pb.CHARGE_CATEGORY_TREATMENT: (("静脉输液", "针灸", "换药", "雾化吸入"), 20, 400),
    pb.CHARGE_CATEGORY_SURGERY: (("腹腔镜阑尾切除术", "白内障超声乳化术", "骨折内固定术"), 3_000, 20_000),
    pb.CHARGE_CATEGORY_MATERIALS: (("一次性耗材", "人工晶体", "骨科内固定材料"), 50, 8_000),
    pb.CHARGE_CATEGORY_BED: (("普通病房床位费",), 40, 120),
    pb.CHARGE_CATEGORY_NURSING: (("一级护理", "二级护理"), 20, 80),
    pb.CHARGE_CATEGORY_OTHER: (("自费药品", "陪护床"), 20, 500),
}


@dataclass(frozen=True)
class Behaviour:
    """How the population behaves (shares of patients, of visits, of bills)."""

    frequent_share: float = 0.2  # chronic patients, who visit often
    frequent_daily: float = 0.25
    occasional_daily: float = 0.05
    inpatient_share: float = 0.05  # of visits, an admission
    stay_days: tuple[int, int] = (2, 9)
    late_share: float = 0.03  # of bills, paid after the due time, within the grace period
    default_share: float = 0.004  # of bills, never paid in time: a default
    repay_after_default_share: float = 0.5  # of defaults, repaid later (credit restored)
    no_score_share: float = 0.06
    uninsured_share: float = 0.03


def resident_id(body17: str) -> str:
    """``body17`` with its GB 11643 (ISO 7064 MOD 11-2) check character."""
    return body17 + "10X98765432"[sum(int(c) * w for c, w in zip(body17, WEIGHTS, strict=True)) % 11]


def yuan(fen: int) -> str:
    """Fen as yuan with thousands separators, exactly (no float): 123456 -> '1,234.56'."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), YUAN)
    return f"{sign}{whole:,}.{cents:02d}"


@dataclass
class Patient:
    index: int
    identifier: str  # never printed or logged
    display_name: str
    score: int | None
    insured: bool
    daily_visit: float
    account_id: str = ""
    status: int = pb.ACCOUNT_STATUS_UNSPECIFIED
    tier: int = pb.CREDIT_TIER_UNSPECIFIED
    no_credit_reason: int = pb.NO_CREDIT_REASON_UNSPECIFIED
    in_hospital: bool = False
    agenda: dict[int, list[Callable[[], None]]] = field(default_factory=dict)

    def plan(self, day: int, action: Callable[[], None]) -> None:
        self.agenda.setdefault(day, []).append(action)


class Population:
    """N synthetic residents with valid, unique resident ID numbers, a credit score (most of them)
    and a medical insurance enrolment (almost all), drawn from the seed."""

    def __init__(self, size: int, seed: int, behaviour: Behaviour) -> None:
        rng = random.Random(f"health-simulate:{seed}")
        used: set[str] = set()
        self.patients: list[Patient] = []
        for index in range(size):
            while True:
                born = datetime.date(1940, 1, 1) + datetime.timedelta(days=rng.randrange(365 * 65))
                identifier = resident_id(f"{rng.choice(REGIONS)}{born:%Y%m%d}{rng.randrange(1000):03d}")
                if identifier not in used:
                    used.add(identifier)
                    break
            name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
            score = None if rng.random() < behaviour.no_score_share else max(350, min(950, round(rng.gauss(680, 70))))
            daily = behaviour.frequent_daily if rng.random() < behaviour.frequent_share else behaviour.occasional_daily
            insured = rng.random() >= behaviour.uninsured_share
            self.patients.append(Patient(index, identifier, name, score, insured, daily))

    def records(self, seed: int, today: datetime.date) -> list[records_pb2.DepartmentRecord]:
        """The credit centre's scores and the healthcare security bureau's enrolments."""
        out = []
        for p in self.patients:
            if p.score is not None:
                band = next(
                    b
                    for floor, b in ((800, "excellent"), (700, "very_good"), (600, "good"), (550, "fair"), (0, "poor"))
                    if p.score >= floor
                )
                fields: dict[str, values.Value] = {"score": p.score, "band": band, "scored_on": today.replace(day=1)}
                out.append(self._record("credit_center", "city_credit_score", p, seed, fields))
            if p.insured:
                fields = {
                    "scheme": "employee" if p.index % 3 else "resident",
                    "enrolled_since": datetime.date(2010 + p.index % 9, 1, 1),
                    "status": "active",
                    "insured_region": p.identifier[:6],
                }
                out.append(self._record("healthcare_security", "medical_insurance_enrolment", p, seed, fields))
        return out

    @staticmethod
    def _record(
        department: str, record_type: str, patient: Patient, seed: int, fields: dict[str, values.Value]
    ) -> records_pb2.DepartmentRecord:
        return records_pb2.DepartmentRecord(
            department_code=department,
            record_type=record_type,
            subject_identifier=patient.identifier,
            subject_display_name=patient.display_name,
            source_reference=f"sim-{record_type}-{seed}-{patient.index}",
            fields=values.fields_to_proto(fields),
            effective_from="2019-01-01",
        )


class ServiceClock:
    """The offset file the services read their clock from; day ``d`` is the starting offset plus
    ``d`` days."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.start = float(path.read_text().strip() or 0) if path.exists() else 0.0

    def offset(self, day: int) -> float:
        return self.start + day * DAY_SECONDS

    def set_day(self, day: int) -> None:
        self._write(self.offset(day))

    def move(self, seconds: float) -> None:
        """The starting offset plus ``seconds`` (0: back where it started)."""
        self._write(self.start + seconds)

    def _write(self, offset: float) -> None:
        temporary = self.path.with_name(self.path.name + ".simulate")
        temporary.write_text(str(offset))
        os.replace(temporary, self.path)


@dataclass
class Observed:
    """What the simulator saw, next to health's own figures."""

    enrolled: int = 0
    without_credit: dict[str, int] = field(default_factory=dict)
    visits: int = 0
    admissions: int = 0
    visits_at_counter: int = 0
    charges: int = 0
    charges_at_counter: int = 0
    bills: int = 0
    on_time_fen: int = 0
    late_fen: int = 0
    after_default_fen: int = 0
    late_bills: int = 0
    defaults: int = 0
    suspended: set[int] = field(default_factory=set)
    restored: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, amount: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + amount)


class Simulation:
    def __init__(
        self,
        health: medical_credit_pb2_grpc.MedicalCreditServiceStub,
        metadata: Sequence[tuple[str, str]],
        population: Population,
        behaviour: Behaviour,
        seed: int,
    ) -> None:
        self.health = health
        self.metadata = tuple(metadata)
        self.population = population
        self.behaviour = behaviour
        self.seed = seed
        self.observed = Observed()
        self.day = 0
        #: Where patients go: the deployment's hospitals.
        self.hospitals = sorted(hospitals.configured())

    def call(self, method: str, request: object) -> object:
        rpc: Callable[..., object] = getattr(self.health, method)
        return rpc(request, metadata=self.metadata, timeout=30)

    # -- enrolment ---------------------------------------------------------------------------------

    def enroll(self, patient: Patient) -> None:
        response = self.call("Enroll", pb.EnrollRequest(identifier=patient.identifier))
        assert isinstance(response, pb.EnrollResponse)
        account = response.account
        patient.account_id, patient.status, patient.tier = account.account_id, account.status, account.tier
        patient.no_credit_reason = account.no_credit_reason
        self.observed.add("enrolled")
        if account.tier == pb.CREDIT_TIER_NONE:
            reason = pb.NoCreditReason.Name(account.no_credit_reason).removeprefix("NO_CREDIT_REASON_").lower()
            with self.observed.lock:
                self.observed.without_credit[reason] = self.observed.without_credit.get(reason, 0) + 1

    # -- a patient's day ---------------------------------------------------------------------------

    def live(self, patient: Patient, new_visits: bool) -> None:
        rng = random.Random(f"{self.seed}:{patient.index}:{self.day}")
        for action in patient.agenda.pop(self.day, []):
            action()
        if new_visits and not patient.in_hospital and rng.random() < patient.daily_visit:
            if patient.tier == pb.CREDIT_TIER_NONE or patient.status != pb.ACCOUNT_STATUS_ACTIVE:
                self.observed.add("visits_at_counter")
            elif rng.random() < self.behaviour.inpatient_share:
                self.admit(patient, rng)
            else:
                self.outpatient(patient, rng)

    def open_visit(self, patient: Patient, kind: pb.VisitKind.ValueType, rng: random.Random) -> str | None:
        request = pb.OpenVisitRequest(
            identifier=patient.identifier,
            hospital_id=rng.choice(self.hospitals),
            kind=kind,
            request_id=str(uuid.uuid4()),
        )
        try:
            response = self.call("OpenVisit", request)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
                raise
            self.observed.add("visits_at_counter")  # suspended or closed: no credit
            return None
        assert isinstance(response, pb.OpenVisitResponse)
        self.observed.add("visits")
        return response.visit.visit_id

    def charge(self, visit_id: str, category: pb.ChargeCategory.ValueType, rng: random.Random) -> None:
        items, low, high = ITEMS[category]
        # Log-uniform between the bounds: many small charges, a few large ones, to the fen.
        amount = int(low * YUAN * (high / low) ** rng.random())
        request = pb.AddChargeRequest(
            visit_id=visit_id,
            item=rng.choice(items),
            category=category,
            amount_fen=amount,
            request_id=str(uuid.uuid4()),
        )
        try:
            self.call("AddCharge", request)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
                raise
            self.observed.add("charges_at_counter")  # past the available credit
            return
        self.observed.add("charges")

    def outpatient(self, patient: Patient, rng: random.Random) -> None:
        visit_id = self.open_visit(patient, pb.VISIT_KIND_OUTPATIENT, rng)
        if visit_id is None:
            return
        self.charge(visit_id, pb.CHARGE_CATEGORY_CONSULTATION, rng)
        for category, share in (
            (pb.CHARGE_CATEGORY_MEDICINE, 0.75),
            (pb.CHARGE_CATEGORY_LABORATORY, 0.45),
            (pb.CHARGE_CATEGORY_EXAMINATION, 0.3),
            (pb.CHARGE_CATEGORY_TREATMENT, 0.2),
            (pb.CHARGE_CATEGORY_HERBAL_MEDICINE, 0.12),
            (pb.CHARGE_CATEGORY_OTHER, 0.05),
        ):
            if rng.random() < share:
                self.charge(visit_id, category, rng)
        self.discharge(patient, visit_id, due_days=2, rng=rng)

    def admit(self, patient: Patient, rng: random.Random) -> None:
        visit_id = self.open_visit(patient, pb.VISIT_KIND_INPATIENT, rng)
        if visit_id is None:
            return
        self.observed.add("admissions")
        patient.in_hospital = True
        stay = rng.randint(*self.behaviour.stay_days)
        surgery = rng.random() < 0.4
        self.ward_day(visit_id, 0, surgery)
        for day in range(1, stay):
            patient.plan(self.day + day, functools.partial(self.ward_day, visit_id, day, surgery))
        patient.plan(self.day + stay, functools.partial(self.leave, patient, visit_id))

    def ward_day(self, visit_id: str, day: int, surgery: bool) -> None:
        rng = random.Random(f"{self.seed}:{visit_id}:{day}")
        if day == 0:
            self.charge(visit_id, pb.CHARGE_CATEGORY_EXAMINATION, rng)
        if day == 1 and surgery:
            self.charge(visit_id, pb.CHARGE_CATEGORY_SURGERY, rng)
            self.charge(visit_id, pb.CHARGE_CATEGORY_MATERIALS, rng)
        for category in (pb.CHARGE_CATEGORY_BED, pb.CHARGE_CATEGORY_NURSING, pb.CHARGE_CATEGORY_MEDICINE):
            self.charge(visit_id, category, rng)
        if rng.random() < 0.5:
            self.charge(visit_id, pb.CHARGE_CATEGORY_LABORATORY, rng)

    def leave(self, patient: Patient, visit_id: str) -> None:
        patient.in_hospital = False
        self.discharge(patient, visit_id, due_days=1, rng=random.Random(f"{self.seed}:{visit_id}:out"))

    def discharge(self, patient: Patient, visit_id: str, due_days: int, rng: random.Random) -> None:
        """Close the visit and decide when (and whether) the patient pays: on time before the due
        day, late inside the 7-day grace period, or never (defaulted, sometimes repaid later)."""
        response = self.call("CloseVisit", pb.CloseVisitRequest(visit_id=visit_id))
        assert isinstance(response, pb.CloseVisitResponse)
        bill = response.bill
        self.observed.add("bills")
        if bill.outstanding_fen == 0:
            return
        draw = rng.random()
        if draw < self.behaviour.default_share:
            default_day = self.day + due_days + 8  # past due + 7 days of grace
            self.at(patient, default_day, lambda: self.await_default(patient, bill.bill_id))
            if rng.random() < self.behaviour.repay_after_default_share:
                self.at(
                    patient, default_day + rng.randint(2, 6), lambda: self.pay(patient, bill.bill_id, "after_default")
                )
        elif draw < self.behaviour.default_share + self.behaviour.late_share:
            self.at(patient, self.day + due_days + rng.randint(1, 5), lambda: self.pay(patient, bill.bill_id, "late"))
        else:
            self.at(
                patient, self.day + rng.randint(0, due_days - 1), lambda: self.pay(patient, bill.bill_id, "on_time")
            )

    def pay(self, patient: Patient, bill_id: str, when: str) -> None:
        bill = self.call("GetBill", pb.GetBillRequest(bill_id=bill_id))
        assert isinstance(bill, pb.GetBillResponse)
        amount = bill.bill.outstanding_fen
        if amount <= 0:
            return
        paid = self.call("PayBill", pb.PayBillRequest(bill_id=bill_id, amount_fen=amount, request_id=str(uuid.uuid4())))
        assert isinstance(paid, pb.PayBillResponse)
        self.observed.add(f"{when}_fen", amount)
        if when == "late":
            self.observed.add("late_bills")
        if when == "after_default":
            self.refresh(patient)
            if patient.status == pb.ACCOUNT_STATUS_ACTIVE:
                with self.observed.lock:
                    self.observed.restored.add(patient.index)

    def await_default(self, patient: Patient, bill_id: str, timeout: float = 60) -> None:
        """Health's worker defaults the bill (its timer runs every second): wait until it has."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.call("GetBill", pb.GetBillRequest(bill_id=bill_id))
            assert isinstance(response, pb.GetBillResponse)
            if response.bill.state == pb.BILL_STATE_DEFAULTED:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"bill {bill_id} is {pb.BillState.Name(response.bill.state)} past its grace period: "
                    "is health's worker running?"
                )
            time.sleep(0.2)
        self.observed.add("defaults")
        self.refresh(patient)
        if patient.status != pb.ACCOUNT_STATUS_ACTIVE:
            with self.observed.lock:
                self.observed.suspended.add(patient.index)

    def refresh(self, patient: Patient) -> None:
        response = self.call("GetAccount", pb.GetAccountRequest(account_id=patient.account_id))
        assert isinstance(response, pb.GetAccountResponse)
        patient.status, patient.tier = response.account.status, response.account.tier

    def at(self, patient: Patient, day: int, action: Callable[[], None]) -> None:
        """Do ``action`` on ``day``: now when that is today (the day's agenda is already taken)."""
        if day <= self.day:
            action()
        else:
            patient.plan(day, action)

    def pending(self) -> int:
        """The last day any patient still has something to do (-1 when nothing)."""
        return max((day for p in self.population.patients for day in p.agenda), default=-1)


def check_clock(simulation: Simulation, clock: ServiceClock, day: int) -> None:
    """Health's clock must have followed the offset file, or the mesh was started without it."""
    stats = simulation.call("GetStats", pb.GetStatsRequest())
    assert isinstance(stats, pb.GetStatsResponse)
    expected = time.time() + clock.offset(day)
    seen = stats.as_of.ToDatetime(datetime.UTC).timestamp()
    if abs(seen - expected) > 3600:
        raise ClockNotShared(
            f"health's clock is {(seen - expected) / DAY_SECONDS:+.1f} days from simulated day {day}: the mesh was "
            f"not started with {CLOCK_VARIABLE}={clock.path} (start it with the same variable as this command)"
        )


#: How far the probe moves the services' clock, and back, before anything is written.
PROBE_SECONDS = 2 * 3600


def probe_clock(simulation: Simulation, clock: ServiceClock) -> None:
    """Before anything is written: move the services' clock a little forward and back, and see
    health's clock follow both ways. Agreeing at day 0 is not enough: a mesh on another offset
    file (or none) agrees as long as both offsets are equal, and the simulation would write a
    population's visits and bills before it found out at day 1 (issue 14)."""

    def health_now() -> float:
        stats = simulation.call("GetStats", pb.GetStatsRequest())
        assert isinstance(stats, pb.GetStatsResponse)
        return float(stats.as_of.ToDatetime(datetime.UTC).timestamp())

    before = health_now() - time.time()
    clock.move(PROBE_SECONDS)
    try:
        moved = health_now() - time.time()
    finally:
        clock.move(0)
    if abs(moved - before - PROBE_SECONDS) > PROBE_SECONDS / 4:
        raise ClockNotShared(
            f"health's clock did not follow {clock.path} (moved it {PROBE_SECONDS / 3600:.0f} h, health moved "
            f"{(moved - before) / 3600:+.1f} h): the mesh was not started with {CLOCK_VARIABLE}={clock.path} "
            "(start it with the same variable as this command); nothing was written"
        )


class ClockNotShared(Exception):
    pass


def run(
    settings: Settings,
    patients: int,
    days: int,
    seed: int,
    behaviour: Behaviour | None = None,
    workers: int = 4,
    progress: bool = True,
) -> str:
    """Runs the simulation and returns the report (the scheme's figures)."""
    started = time.monotonic()
    clock = ServiceClock(Path(os.environ[CLOCK_VARIABLE]))
    issuer = TokenIssuer.from_key_dir(Policy.load(settings.policy_path), settings.key_dir)
    metadata = (("authorization", f"Bearer {issuer.issue(CALLER)}"),)
    behaviour = behaviour or Behaviour()
    population = Population(patients, seed, behaviour)
    with (
        grpc.insecure_channel(load_settings("records").grpc_target) as records_channel,
        grpc.insecure_channel(settings.grpc_target) as health_channel,
        ThreadPoolExecutor(max_workers=workers) as pool,
    ):
        simulation = Simulation(
            medical_credit_pb2_grpc.MedicalCreditServiceStub(health_channel), metadata, population, behaviour, seed
        )
        check_clock(simulation, clock, 0)
        probe_clock(simulation, clock)
        today = datetime.datetime.fromtimestamp(time.time() + clock.offset(0), datetime.UTC).date()
        records = records_pb2_grpc.RecordsServiceStub(records_channel)
        feed = population.records(seed, today)
        batches = (records_pb2.PublishRecordsRequest(records=feed[i : i + 500]) for i in range(0, len(feed), 500))
        published = records.PublishRecords(batches, metadata=metadata, timeout=600)
        if published.rejected:
            raise RuntimeError(f"records refused {published.rejected} records: {published.rejections[0].message}")
        list(pool.map(simulation.enroll, population.patients))

        bar = tqdm(total=days, unit="day", disable=not progress, desc="simulating", file=sys.stderr)
        day = 0
        while day < days or day <= simulation.pending():
            if day > 0:
                clock.set_day(day)
                check_clock(simulation, clock, day)
            simulation.day = day
            if day == days:
                bar.set_description("settling")
                bar.total = simulation.pending() + 1
                bar.refresh()
            new_visits = [day < days] * len(population.patients)
            list(pool.map(simulation.live, population.patients, new_visits))
            bar.update(1)
            o = simulation.observed
            bar.set_postfix(visits=o.visits, bills=o.bills, late=o.late_bills, defaults=o.defaults)
            day += 1
        bar.close()
        stats = simulation.call("GetStats", pb.GetStatsRequest())
        ledger = simulation.call("VerifyLedger", pb.VerifyLedgerRequest())
    assert isinstance(stats, pb.GetStatsResponse) and isinstance(ledger, pb.VerifyLedgerResponse)
    return report(simulation.observed, stats, ledger, patients, days, day - days, seed, time.monotonic() - started)


def report(
    o: Observed,
    stats: pb.GetStatsResponse,
    ledger: pb.VerifyLedgerResponse,
    patients: int,
    days: int,
    settling: int,
    seed: int,
    elapsed: float,
) -> str:
    without = ", ".join(f"{reason.replace('_', ' ')} {n}" for reason, n in sorted(o.without_credit.items()))
    rate = (
        f"1 in {stats.total_credit_fen // stats.total_defaulted_fen:,} (by amount; {stats.default_rate_ppb:,} ppb)"
        if stats.total_defaulted_fen
        else "none defaulted"
    )
    lines = [
        f"{patients} patients, {days} days of visits and {settling} more days to settle (seed {seed}), "
        f"in {elapsed:.0f} s",
        f"  enrolled                 {o.enrolled} patients, {o.enrolled - sum(o.without_credit.values())} with credit"
        + (f" (without: {without})" if without else ""),
        f"  this run                 {o.visits} visits on credit ({o.admissions} admissions), {o.charges} charges; "
        f"at the counter: {o.visits_at_counter} visits, {o.charges_at_counter} charges",
        f"  this run, repaid         on time {yuan(o.on_time_fen)} yuan; late {yuan(o.late_fen)} yuan "
        f"({o.late_bills} bills); after default {yuan(o.after_default_fen)} yuan",
        "The scheme's figures (health's GetStats, all time; the seed: about 780,000 visits, 3.3 billion yuan "
        "repaid on time, 25,000 yuan defaulted, under 1 in 100,000):",
        f"  visits on credit         {stats.visits:,}",
        f"  bills issued             {stats.bills:,} "
        f"({stats.settled_bills:,} settled, {stats.defaulted_bills:,} defaulted)",
        f"  credit extended          {yuan(stats.total_credit_fen)} yuan",
        f"  yuan repaid              {yuan(stats.total_repaid_fen)} yuan",
        f"  yuan defaulted           {yuan(stats.total_defaulted_fen)} yuan",
        f"  default rate             {rate}",
        f"  insurance paid           {yuan(stats.total_insurance_fen)} yuan",
        f"  patients suspended       {stats.suspended_accounts:,} now (this run: {len(o.suspended)} suspended, "
        f"{len(o.restored)} restored)",
        f"  outstanding now          {yuan(stats.outstanding_fen)} yuan ({stats.overdue_bills:,} bills past due)",
        f"  ledger                   {'balanced' if ledger.balanced else 'NOT BALANCED'}, "
        f"{ledger.postings_checked:,} postings: {ledger.message}",
    ]
    return "\n".join(lines)


def main(settings: Settings, args: argparse.Namespace) -> int:
    if args.patients < 1 or args.days < 1:
        print("govmesh health simulate: --patients and --days must be at least 1", file=sys.stderr)
        return 2
    if not 0 <= args.default_share <= 1:
        print("govmesh health simulate: --default-share must be between 0 and 1", file=sys.stderr)
        return 2
    if not os.environ.get(CLOCK_VARIABLE):
        print(
            f"govmesh health simulate: {CLOCK_VARIABLE} is not set. The simulation moves the services' clock "
            "forward day by day through that file, so start the mesh with it set, e.g.\n"
            f"  {CLOCK_VARIABLE}=$PWD/var/clock-offset make run\n"
            f"and run this command with the same {CLOCK_VARIABLE}. (Never set it in production.)",
            file=sys.stderr,
        )
        return 2
    try:
        behaviour = Behaviour(default_share=args.default_share)
        print(run(settings, args.patients, args.days, args.seed, behaviour, progress=not args.quiet))
    except ClockNotShared as exc:
        print(f"govmesh health simulate: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as error:
        details = mask_identifiers(str(error.details()))
        print(f"govmesh health simulate: the mesh answered {error.code().name}: {details}", file=sys.stderr)
        if error.code() == grpc.StatusCode.UNAVAILABLE:
            print("Is the mesh running? Start it with `make run` in another terminal.", file=sys.stderr)
        return 1
    except (RuntimeError, TimeoutError) as exc:
        print(f"govmesh health simulate: {mask_identifiers(str(exc))}", file=sys.stderr)
        return 1
    return 0
