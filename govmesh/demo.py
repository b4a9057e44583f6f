"""`govmesh demo`: the seed's stories (Zhejiang, 2019) told by the running mesh, each with the
mesh's own measured figures beside the seed's.

The demo is a client of the mesh and nothing more: it reaches the services only through their
public interfaces, as the portal, the departments, the hospital and the sensors would (gRPC with
each caller's own development token; the broker for the events), so it imports no service code
and opens no database. What it says is therefore what any integrator could measure.

* Every run makes fresh synthetic people (valid GB 11643 numbers; identity must answer
  `created` for the protagonist, so a person of an earlier run is never taken for a new one), new
  request ids, a new property unit and a new crowd zone: a mesh that ran the demo before runs it
  again with the same outcome.
* Each story is one trace: a `traceparent` generated for the story goes on every call it makes,
  and the events it caused are picked out of one exclusive queue (govmesh.event_tail) by that
  trace id, since the services carry the caller's trace context into their outbox.
* Nothing printed holds a raw identifier: every line, event and JSON document goes through
  privacy.mask_identifiers on its way out.
* `--json` prints one document (each story's lines, figures, trace id and events), which the
  mesh test reads.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import json
import random
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import grpc
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2, health_pb2_grpc
from stdnum.cn import ric

from govmesh import clock, config, event_tail, messaging
from govmesh import typed_values as values
from govmesh.approvals.v1 import approvals_pb2, approvals_pb2_grpc
from govmesh.auth import Policy, PolicyError, TokenIssuer
from govmesh.crowd.v1 import crowd_pb2, crowd_pb2_grpc
from govmesh.health.v1 import medical_credit_pb2, medical_credit_pb2_grpc
from govmesh.identity.v1 import identity_pb2, identity_pb2_grpc
from govmesh.privacy import mask_identifiers
from govmesh.records.v1 import records_pb2, records_pb2_grpc

STORIES: Final = ("one_id", "ride_hailing", "housing", "medical_credit", "fountain", "tracker")

#: The seed's figures (/work/shared/seed: Xinhua, Hangzhou, 9 July 2019).
SEED: Final[dict[str, Any]] = {
    "permit_seconds": (120, 180),  # 两三分钟: "two or three minutes"
    "housing_before_working_days": 9,  # 至少9个工作日
    "housing_after_seconds": 3600,  # 1小时左右
    "default_rate_below_ppb": 10_000,  # 违约率不到十万分之一
    "default_rate_ppb": 25_000 * 1_000_000_000 // 3_300_000_000,  # 2.5万元 of 33亿元
    "barrier_days_before": 365,
    "barrier_days_after": 36,
}

PORTAL: Final = "demo-portal"  # 浙里办: the citizen's portal (the citizen's own calls)
HOSPITAL: Final = "H330106004"  # 杭州市第一人民医院
HOSPITAL_CALLER: Final = "hospital-h330106004"
CALL_SECONDS: Final = 30.0
_SURNAMES: Final = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘"
_GIVEN: Final = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超霞平刚华婷雪飞鹏浩宇欣怡"

T = TypeVar("T")


class DemoError(RuntimeError):
    """The demo cannot go on; the message says why in one line."""


# -- people ---------------------------------------------------------------------------------------------


def resident_id(region: str, born: datetime.date, serial: int) -> str:
    """A valid GB 11643 resident ID number (its check character from python-stdnum, as identity's)."""
    body = f"{region}{born:%Y%m%d}{serial % 1000:03d}"
    return body + ric.calc_check_digit(body + "?")  # it takes the whole number, and ignores the last character


@dataclass
class Person:
    identifier: str  # synthetic; used in calls, printed only masked
    name: str
    subject_id: str = ""

    @property
    def masked(self) -> str:
        return mask_identifiers(self.identifier)


def new_person(rng: random.Random, region: str, earliest: int = 1960, latest: int = 1995) -> Person:
    born = datetime.date(earliest, 1, 1) + datetime.timedelta(days=rng.randrange((latest - earliest) * 365))
    name = rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2))))
    return Person(resident_id(region, born, rng.randrange(1, 1000)), name)


def _years_before(day: datetime.date, years: int, days: int = 0) -> datetime.date:
    try:
        moved = day.replace(year=day.year - years)
    except ValueError:  # 29 February
        moved = day.replace(year=day.year - years, day=28)
    return moved - datetime.timedelta(days=days)


# -- the mesh, as a client reaches it ---------------------------------------------------------------------


class Mesh:
    """Channels and stubs to every service, tokens per caller, and the story's traceparent on
    every call."""

    def __init__(self) -> None:
        self.settings = {service: config.load(service) for service in config.SERVICES}
        shared = self.settings["identity"]
        self.issuer = TokenIssuer.from_key_dir(Policy.load(shared.policy_path), shared.key_dir)
        self.channels = {s: grpc.insecure_channel(self.settings[s].grpc_target) for s in config.SERVICES}
        self.identity = identity_pb2_grpc.IdentityServiceStub(self.channels["identity"])
        self.records = records_pb2_grpc.RecordsServiceStub(self.channels["records"])
        self.approvals = approvals_pb2_grpc.ApprovalsServiceStub(self.channels["approvals"])
        self.health = medical_credit_pb2_grpc.MedicalCreditServiceStub(self.channels["health"])
        self.crowd = crowd_pb2_grpc.CrowdServiceStub(self.channels["crowd"])
        self.traceparent = ""
        self._tokens: dict[str, str] = {}

    @property
    def amqp_uri(self) -> str:
        return self.settings["identity"].amqp_uri

    def check_running(self) -> None:
        """Every api answers its health check, or DemoError naming the first that does not."""
        for service, channel in self.channels.items():
            try:
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
            except grpc.RpcError:
                target = self.settings[service].grpc_target
                raise DemoError(
                    f"the mesh is not running ({service} does not answer at {target}): start it with `make run` "
                    "in another terminal, then run the demo again"
                ) from None

    def as_(self, caller: str) -> tuple[tuple[str, str], ...]:
        """The metadata of a call by ``caller`` within the current story's trace."""
        if caller not in self._tokens:
            self._tokens[caller] = self.issuer.issue(caller)
        metadata = [("authorization", f"Bearer {self._tokens[caller]}")]
        if self.traceparent:
            metadata.append(("traceparent", self.traceparent))
        return tuple(metadata)

    def publish(self, department: str, records: Sequence[records_pb2.DepartmentRecord]) -> int:
        """A department's feed, with the department's own token; returns the records stored."""
        answer = self.records.PublishRecords(
            iter([records_pb2.PublishRecordsRequest(records=list(records))]),
            metadata=self.as_(department),
            timeout=CALL_SECONDS,
        )
        if answer.rejected:
            raise DemoError(f"records refused {department}'s record: {answer.rejections[0].message}")
        return int(answer.stored)

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()


class Feed:
    """Department records with source references unique to this run."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.by_department: dict[str, list[records_pb2.DepartmentRecord]] = {}

    def add(
        self,
        department: str,
        record_type: str,
        person: Person,
        effective_from: datetime.date,
        fields: dict[str, values.Value],
    ) -> None:
        records = self.by_department.setdefault(department, [])
        records.append(
            records_pb2.DepartmentRecord(
                department_code=department,
                record_type=record_type,
                subject_identifier=person.identifier,
                subject_display_name=person.name,
                source_reference=f"DEMO-{self.run_id}-{department}-{len(records) + 1}",
                fields=values.fields_to_proto(fields),
                effective_from=effective_from.isoformat(),
            )
        )

    def publish(self, mesh: Mesh) -> dict[str, int]:
        """Each department publishes its own records; returns what each stored."""
        stored = {department: mesh.publish(department, records) for department, records in self.by_department.items()}
        self.by_department.clear()
        return stored


# -- events -------------------------------------------------------------------------------------------


class EventTap:
    """Every service's events from one exclusive queue (govmesh.event_tail), bound before the
    first story, kept in memory and picked out by trace id."""

    def __init__(self, amqp_uri: str) -> None:
        self.amqp_uri = amqp_uri
        self.events: list[event_tail.SeenEvent] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="demo-events", daemon=True)

    def _run(self) -> None:
        try:
            event_tail.tail(
                self.amqp_uri, config.SERVICES, [], self._seen, ready=self._ready.set, stop=self._stop.is_set
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self._failure = exc
            self._ready.set()

    def _seen(self, event: event_tail.SeenEvent) -> None:
        with self._lock:
            self.events.append(event)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(15):
            raise DemoError(f"the broker at {messaging.shown_brokers(self.amqp_uri)} did not answer in 15 s")
        if self._failure is not None:
            raise DemoError(f"cannot watch the events on the broker: {self._failure}")

    def of_trace(self, trace_id: str, quiet: float = 1.0, longest: float = 10.0) -> list[event_tail.SeenEvent]:
        """The trace's events, once none came for ``quiet`` seconds (workers publish after the
        calls return, through their outbox)."""
        deadline = time.monotonic() + longest
        seen, since = -1, time.monotonic()
        while True:
            with self._lock:
                mine = [e for e in self.events if e.trace_id == trace_id]
            if len(mine) != seen:
                seen, since = len(mine), time.monotonic()
            if time.monotonic() - since >= quiet or time.monotonic() >= deadline:
                return mine
            time.sleep(0.1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


# -- telling --------------------------------------------------------------------------------------------


@dataclass
class Story:
    number: int
    key: str
    title_zh: str
    title_en: str
    trace_id: str = field(default_factory=lambda: secrets.token_hex(16))
    lines: list[dict[str, str]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{secrets.token_hex(8)}-01"

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Narrator:
    """Prints as the stories go (or nothing until the end, with --json); everything masked."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.story: Story | None = None

    def out(self, text: str) -> None:
        if not self.as_json:
            print(mask_identifiers(text), flush=True)

    def begin(self, story: Story) -> None:
        self.story = story
        self.out(f"\n== {story.number}. {story.title_zh}\n   {story.title_en}\n   trace {story.trace_id}")

    def say(self, zh: str, en: str) -> None:
        assert self.story is not None
        self.story.lines.append({"zh": mask_identifiers(zh), "en": mask_identifiers(en)})
        self.out(f"   {zh}\n   {en}")

    def events(self, story: Story) -> None:
        """Each kind of event with how many came (a population's hundreds would bury the story;
        --json and `govmesh events tail` have every one)."""
        kinds: dict[str, int] = {}
        for event in story.events:
            kind = f"{event['service']}.{event['routing_key']}"
            kinds[kind] = kinds.get(kind, 0) + 1
        self.out(f"   事件 events: {len(story.events)} in trace {story.trace_id}")
        for kind, count in kinds.items():
            self.out(f"     {kind} x{count}")


def _ms(duration: Duration) -> float:
    return round(duration.seconds * 1000 + duration.nanos / 1e6, 1)


def _rpc(call: Callable[..., T], request: Any, metadata: Sequence[tuple[str, str]], timeout: float = CALL_SECONDS) -> T:
    return call(request, metadata=metadata, timeout=timeout)


def _name(enum: Any, value: int, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix)


# -- 1. one ID number opens every service -------------------------------------------------------------------


def one_id(mesh: Mesh, say: Callable[[str, str], None], ctx: Context) -> dict[str, Any]:
    person = ctx.person
    checked = _rpc(
        mesh.identity.ValidateIdentifier,
        identity_pb2.ValidateIdentifierRequest(identifier=person.identifier),
        mesh.as_(PORTAL),
    )
    say(
        f"身份证号 {checked.masked}：有效={checked.valid}，出生 {checked.resident.birth_date}，"
        f"{checked.resident.region_name}",
        f"ID number {checked.masked}: valid={checked.valid}, born {checked.resident.birth_date}, "
        f"{checked.resident.region_name}",
    )
    registered = _rpc(
        mesh.identity.RegisterSubject,
        identity_pb2.RegisterSubjectRequest(identifier=person.identifier, display_name=person.name),
        mesh.as_("public_security"),
    )
    if not registered.created:
        raise DemoError("identity already knew this run's synthetic person: run the demo again")
    person.subject_id = registered.subject.subject_id
    say(
        f"公安登记：主体号 {person.subject_id}（假名，不可逆）",
        f"Registered by public security: subject id {person.subject_id} (a keyed pseudonym, not reversible)",
    )
    stored = ctx.person_records(mesh)
    say(
        f"{len(stored)} 个部门按同一个身份证号发布数据：{'、'.join(stored)}（共 {sum(stored.values())} 条）",
        f"{len(stored)} departments publish their records under the same ID number: {', '.join(stored)} "
        f"({sum(stored.values())} records)",
    )
    resolved = _rpc(
        mesh.identity.ResolveSubject,
        identity_pb2.ResolveSubjectRequest(subject_id=person.subject_id),
        mesh.as_(PORTAL),
    )
    enrolled = _rpc(
        mesh.health.Enroll, medical_credit_pb2.EnrollRequest(identifier=person.identifier), mesh.as_(HOSPITAL_CALLER)
    ).account
    # Enrolment reads the credit score and the insurance enrolment.
    ctx.reads_expected += 2
    cases = _rpc(
        mesh.approvals.ListCases,
        approvals_pb2.ListCasesRequest(applicant_identifier=person.identifier),
        mesh.as_(PORTAL),
    )
    accesses = _rpc(
        mesh.records.ListAccesses,
        records_pb2.ListAccessesRequest(identifier=person.identifier, page_size=500),
        mesh.as_(PORTAL),
    )
    zones = _rpc(mesh.crowd.ListZones, crowd_pb2.ListZonesRequest(page_size=1000), mesh.as_(PORTAL))
    subjects = {
        "identity": resolved.subject.subject_id,
        "health": enrolled.subject_id,
        "records": {e.subject_id for e in accesses.entries} or {person.subject_id},
    }
    same = subjects["identity"] == subjects["health"] == person.subject_id and subjects["records"] == {
        person.subject_id
    }
    tier = _name(medical_credit_pb2.CreditTier, enrolled.tier, "CREDIT_TIER_")
    say(
        f"同一个号码打开五个服务：身份 {resolved.subject.masked_identifier}；数据 {len(accesses.entries)} 次读取；"
        f"审批 {len(cases.cases)} 件；信用就医 {tier} 档；"
        f"城市大脑不需要身份证（{len(zones.zones)} 个区域只数人数）",
        f"One number opens five services: identity {resolved.subject.masked_identifier}; records "
        f"{len(accesses.entries)} reads so far; approvals {len(cases.cases)} cases; medical credit tier "
        f"{tier}; the city brain needs no ID "
        f"({len(zones.zones)} zones count people, never name them)",
    )
    say(
        f"各服务看到的是同一个主体：{same}",
        f"Every service sees the same subject: {same}",
    )
    return {
        "subject_id": person.subject_id,
        "masked_identifier": person.masked,
        "departments_published": stored,
        "services": ["identity", "records", "approvals", "health", "crowd"],
        "health_account_subject_id": enrolled.subject_id,
        "same_subject": same,
    }


# -- 2 and 3. approvals ---------------------------------------------------------------------------------


def _decided(mesh: Mesh, case_id: str) -> approvals_pb2.Case:
    """The case once final, followed on WatchCase (which ends when it is)."""
    final = (approvals_pb2.CASE_STATE_APPROVED, approvals_pb2.CASE_STATE_REJECTED, approvals_pb2.CASE_STATE_CANCELLED)
    case = None
    for change in mesh.approvals.WatchCase(
        approvals_pb2.WatchCaseRequest(case_id=case_id), metadata=mesh.as_(PORTAL), timeout=120
    ):
        case = change.case
        if case.state in final:
            return case
    raise DemoError(f"case {case_id} was not decided: is the approvals worker running?")


def _submit(mesh: Mesh, case_type: str, person: Person, parameters: dict[str, str]) -> approvals_pb2.Case:
    submitted = _rpc(
        mesh.approvals.SubmitCase,
        approvals_pb2.SubmitCaseRequest(
            case_type=case_type,
            applicant_identifier=person.identifier,
            parameters=parameters,
            request_id=str(uuid.uuid4()),
        ),
        mesh.as_(PORTAL),
    )
    return _decided(mesh, submitted.case.case_id)


def _case_figures(case: approvals_pb2.Case) -> dict[str, Any]:
    return {
        "case_id": case.case_id,
        "state": _name(approvals_pb2.CaseState, case.state, "CASE_STATE_"),
        "decision_ms": _ms(case.decision_duration),
        "deadline_date": case.deadline_date,
        "deadline_working_days": case.deadline_working_days,
        "proofs": [{"proof_type": p.proof_type, "department": p.issuing_department_code} for p in case.proofs],
        "rules": [
            {
                "rule_id": r.rule_id,
                "department": r.department_code,
                "outcome": _name(approvals_pb2.RuleOutcome, r.outcome, "RULE_OUTCOME_"),
                "message_zh": r.message_zh,
                "message_en": r.message_en,
            }
            for r in case.rule_results
        ],
        "sign_offs": [
            {"department": s.department_code, "state": _name(approvals_pb2.CaseStepState, s.state, "CASE_STEP_STATE_")}
            for s in case.steps
            if s.kind == approvals_pb2.CASE_STEP_KIND_SIGN_OFF
        ],
    }


def _tell_case(say: Callable[[str, str], None], figures: dict[str, Any]) -> None:
    proofs = ", ".join(f"{p['proof_type']} ({p['department']})" for p in figures["proofs"])
    say(f"调取的证明：{proofs}", f"Proofs pulled from records with the case id as purpose: {proofs}")
    for rule in figures["rules"]:
        say(
            f"  规则 {rule['rule_id']}（{rule['department']}）：{rule['outcome']} — {rule['message_zh']}",
            f"  rule {rule['rule_id']} ({rule['department']}): {rule['outcome']} — {rule['message_en']}",
        )
    for sign_off in figures["sign_offs"]:
        say(
            f"  签批 {sign_off['department']}：{sign_off['state']}",
            f"  sign-off {sign_off['department']}: {sign_off['state']}",
        )


def ride_hailing(mesh: Mesh, say: Callable[[str, str], None], ctx: Context) -> dict[str, Any]:
    say(
        "申请人只报身份证号：学历、无重大交通事故、无犯罪记录、驾照四份证明由系统向部门调取",
        "The applicant gives only the ID number: education, no major accident, no criminal record and the "
        "driving licence are pulled from the departments",
    )
    case = _submit(mesh, "ride_hailing_driver_permit", ctx.person, {})
    ctx.cases[case.case_id] = case.case_type
    ctx.reads_expected += sum(1 for proof in case.proofs if proof.subject_id == ctx.person.subject_id)
    figures = _case_figures(case)
    low, high = SEED["permit_seconds"]
    say(
        f"网约车驾驶员证 {case.case_id}：{figures['state']}，用时 {figures['decision_ms']:.0f} 毫秒"
        f"（种子：两三分钟 = {low}–{high} 秒；法定期限 {case.deadline_working_days} 个工作日）",
        f"Ride-hailing driver's permit {case.case_id}: {figures['state']} in {figures['decision_ms']:.0f} ms "
        f"(the seed: two or three minutes = {low}-{high} s; statutory deadline {case.deadline_working_days} "
        "working days)",
    )
    _tell_case(say, figures)
    figures["seed_seconds"] = [low, high]
    return figures


def housing(mesh: Mesh, say: Callable[[str, str], None], ctx: Context) -> dict[str, Any]:
    seller = new_person(ctx.rng, "330681")
    unit = ctx.housing_records(mesh, seller)
    say(
        f"诸暨二手房 {unit}：买方 {ctx.person.masked}，卖方 {seller.masked}，成交价 {ctx.price_fen // 100:,} 元",
        f"A second-hand home in Zhuji, unit {unit}: buyer {ctx.person.masked}, seller {seller.masked}, "
        f"price {ctx.price_fen // 100:,} yuan",
    )
    parameters = {
        "seller_identifier": seller.identifier,
        "property_unit": unit,
        "price_fen": str(ctx.price_fen),
        "city": "330600",
    }
    case = _submit(mesh, "second_hand_housing_transfer", ctx.person, parameters)
    ctx.cases[case.case_id] = case.case_type
    ctx.reads_expected += sum(1 for proof in case.proofs if proof.subject_id == ctx.person.subject_id)
    figures = _case_figures(case)
    before = SEED["housing_before_working_days"]
    say(
        f"转移登记 {case.case_id}：{figures['state']}，用时 {figures['decision_ms']:.0f} 毫秒"
        f"（种子：原先至少 {before} 个工作日，现在 1 小时左右）",
        f"Transfer {case.case_id}: {figures['state']} in {figures['decision_ms']:.0f} ms (the seed: at least "
        f"{before} working days before, about an hour now)",
    )
    _tell_case(say, figures)
    figures |= {"property_unit": unit, "seed_before_working_days": before, "seed_after_seconds": 3600}
    return figures


# -- 4. treat first, pay later --------------------------------------------------------------------------------


def _treat(mesh: Mesh, person: Person, items: Sequence[tuple[str, int, int]]) -> medical_credit_pb2.Bill:
    """Enrol, an outpatient visit with ``items`` (name, category, fen), discharge, then pay."""
    hospital = mesh.as_(HOSPITAL_CALLER)
    _rpc(mesh.health.Enroll, medical_credit_pb2.EnrollRequest(identifier=person.identifier), hospital)
    visit = _rpc(
        mesh.health.OpenVisit,
        medical_credit_pb2.OpenVisitRequest(
            identifier=person.identifier,
            hospital_id=HOSPITAL,
            kind=medical_credit_pb2.VISIT_KIND_OUTPATIENT,
            request_id=str(uuid.uuid4()),
        ),
        hospital,
    ).visit
    for item, category, fen in items:
        _rpc(
            mesh.health.AddCharge,
            medical_credit_pb2.AddChargeRequest(
                visit_id=visit.visit_id,
                item=item,
                category=category,  # type: ignore[arg-type]
                amount_fen=fen,
                request_id=str(uuid.uuid4()),
            ),
            hospital,
        )
    return _rpc(mesh.health.CloseVisit, medical_credit_pb2.CloseVisitRequest(visit_id=visit.visit_id), hospital).bill


def _pay(mesh: Mesh, bill: medical_credit_pb2.Bill) -> medical_credit_pb2.Bill:
    return _rpc(
        mesh.health.PayBill,
        medical_credit_pb2.PayBillRequest(
            bill_id=bill.bill_id, amount_fen=bill.outstanding_fen, request_id=str(uuid.uuid4())
        ),
        mesh.as_(PORTAL),
    ).bill


_VISIT: Final = (
    ("普通门诊挂号费", medical_credit_pb2.CHARGE_CATEGORY_CONSULTATION, 50_00),
    ("胸部CT平扫", medical_credit_pb2.CHARGE_CATEGORY_EXAMINATION, 320_00),
    ("布洛芬缓释胶囊", medical_credit_pb2.CHARGE_CATEGORY_MEDICINE, 36_50),
)


def medical_credit(mesh: Mesh, say: Callable[[str, str], None], ctx: Context) -> dict[str, Any]:
    bill = _treat(mesh, ctx.person, _VISIT)
    say(
        f"{ctx.person.name} 在杭州市第一人民医院先看病：账单 {bill.total_fen / 100:.2f} 元，医保 "
        f"{bill.insurance_fen / 100:.2f} 元，自付 {bill.self_pay_fen / 100:.2f} 元，离院时不付钱",
        f"{ctx.person.name} is treated first at Hangzhou First People's Hospital: bill {bill.total_fen / 100:.2f} "
        f"yuan, insurance {bill.insurance_fen / 100:.2f}, self-pay {bill.self_pay_fen / 100:.2f}, nothing paid at "
        "the counter",
    )
    paid = _pay(mesh, bill)
    state = _name(medical_credit_pb2.BillState, paid.state, "BILL_STATE_")
    say(
        f"之后在手机上付款：账单 {paid.bill_id} {state}，已付 {paid.paid_fen / 100:.2f} 元",
        f"Paid afterwards from the phone: bill {paid.bill_id} {state}, {paid.paid_fen / 100:.2f} yuan paid",
    )
    population = ctx.population(mesh)
    stats = _rpc(mesh.health.GetStats, medical_credit_pb2.GetStatsRequest(), mesh.as_(PORTAL))
    ledger = _rpc(mesh.health.VerifyLedger, medical_credit_pb2.VerifyLedgerRequest(), mesh.as_(PORTAL))
    rate = stats.default_rate_ppb
    one_in = f"1/{1_000_000_000 // rate:,}" if rate else "0"
    say(
        f"模拟人群 {population['patients']} 人：{population['bills']} 张账单，按时付清 {population['paid']} 张；"
        f"全体违约率 {rate:,} ppb（{one_in}），种子：不到十万分之一（{SEED['default_rate_below_ppb']:,} ppb，"
        f"2.5万/33亿 ≈ {SEED['default_rate_ppb']:,} ppb）；账本平衡：{ledger.balanced}",
        f"A simulated population of {population['patients']}: {population['bills']} bills, {population['paid']} paid "
        f"on time; the scheme's default rate {rate:,} ppb ({one_in}) against the seed's under 1 in 100,000 "
        f"({SEED['default_rate_below_ppb']:,} ppb; 25,000 of 3.3 billion yuan = {SEED['default_rate_ppb']:,} ppb); "
        f"ledger balanced: {ledger.balanced}",
    )
    say(
        "违约要等到期后 7 天宽限期满才算；几个月的模拟见 `govmesh health simulate`",
        "A bill defaults only 7 days past due: months of it are `govmesh health simulate`'s",
    )
    return {
        "bill_id": paid.bill_id,
        "bill_state": state,
        "total_fen": paid.total_fen,
        "insurance_fen": paid.insurance_fen,
        "self_pay_fen": paid.self_pay_fen,
        "paid_fen": paid.paid_fen,
        "population": population,
        "default_rate_ppb": rate,
        "defaulted_bills": stats.defaulted_bills,
        "bills_all_time": stats.bills,
        "ledger_balanced": ledger.balanced,
        "seed_default_rate_below_ppb": SEED["default_rate_below_ppb"],
        "seed_default_rate_ppb": SEED["default_rate_ppb"],
    }


# -- 5. the West Lake music fountain ----------------------------------------------------------------------------

CAPACITY: Final = 20_000
#: People at the fountain, every 5 minutes of the evening: a few thousand, the show's surge past
#: capacity, and the slow drain after (the seed: "tens of thousands at the peak, a few thousand
#: on a normal day").
_EVENING: Final = (
    3_000, 3_800, 5_200, 7_500, 9_800, 12_400, 14_900, 16_600, 18_200, 19_600,
    20_400, 20_900, 20_300, 18_700, 17_400, 15_800, 14_200, 13_100, 11_900, 10_300,
    8_600, 7_100, 5_900, 4_800, 4_100, 3_600, 3_200, 3_000, 2_900, 2_800,
    2_700, 2_600,
)  # fmt: skip


def fountain(mesh: Mesh, say: Callable[[str, str], None], ctx: Context) -> dict[str, Any]:
    now = clock.now()
    zone_id = f"demo_fountain_{now.astimezone(clock.SHANGHAI):%Y%m%d%H%M%S}_{secrets.token_hex(2)}"
    zone = crowd_pb2.Zone(
        zone_id=zone_id,
        name_zh="湖滨音乐喷泉（演示）",
        name_en="Hubin music fountain (demo)",
        capacity=CAPACITY,
        silence_after=Duration(seconds=15 * 60),
        schedule=[crowd_pb2.ScheduleEntry(name="音乐喷泉", start_time="19:00", duration=Duration(seconds=900))],
    )
    created = _rpc(mesh.crowd.UpsertZone, crowd_pb2.UpsertZoneRequest(zone=zone), mesh.as_("city_brain")).zone
    levels = ", ".join(
        f"{_name(crowd_pb2.ResponseLevel, lv.level, 'RESPONSE_LEVEL_')} {lv.threshold_bp / 100:.0f}%"
        for lv in created.levels
    )
    say(
        f"城市大脑建区 {zone_id}：承载量 {created.capacity:,} 人，三级响应 {levels or '默认'}",
        f"The city brain configures zone {zone_id}: capacity {created.capacity:,}, three levels {levels or 'default'}",
    )
    # The zone decides by the readings' own observation times and refuses readings older than a
    # day: the evening is replayed into the last hours, whatever the time of day.
    start = now - datetime.timedelta(minutes=5 * len(_EVENING))
    readings = []
    for index, count in enumerate(_EVENING):
        reading = crowd_pb2.SensorReading(
            zone_id=zone_id,
            sensor_id="cam-hubin-01",
            sensor_kind=crowd_pb2.SENSOR_KIND_CAMERA,
            sequence=index + 1,
            absolute_count=count,
        )
        reading.observed_at.FromDatetime(start + datetime.timedelta(minutes=5 * index))
        readings.append(reading)
    report = mesh.crowd.ReportReadings(
        iter([crowd_pb2.ReportReadingsRequest(readings=readings)]), metadata=mesh.as_("crowd_sensors"), timeout=60
    )
    say(
        f"一个晚上的人流压缩到刚过去的 {len(_EVENING) * 5 // 60} 多小时回放。摄像头每 5 分钟一个读数，"
        f"共 {report.received} 个，接受 {report.accepted} 个，拒收 {report.rejected} 个；峰值 "
        f"{max(_EVENING):,} 人",
        f"An evening replayed into the last {len(_EVENING) * 5 // 60}-odd hours. A camera reads every 5 minutes: "
        f"{report.received} readings, {report.accepted} accepted, "
        f"{report.rejected} refused; the peak {max(_EVENING):,} people",
    )
    changes = ctx.level_changes(zone_id)
    for change in changes:
        take, lift = change["measures_to_take"], change["measures_to_lift"]
        say(
            f"  {change['at']} {change['from']} → {change['to']}：{change['occupancy']:,} 人"
            f"（{change['load_bp'] / 100:.0f}%），"
            f"启动 {'、'.join(take) or '-'}，解除 {'、'.join(lift) or '-'}",
            f"  {change['at']} {change['from']} -> {change['to']}: {change['occupancy']:,} people "
            f"({change['load_bp'] / 100:.0f}%), take {', '.join(take) or '-'}, lift {', '.join(lift) or '-'}",
        )
    first_day = clock.shanghai_date(start)
    window_start = datetime.datetime.combine(first_day, datetime.time(0), tzinfo=clock.SHANGHAI)
    window_end = datetime.datetime.combine(
        clock.shanghai_date(now) + datetime.timedelta(days=1), datetime.time(0), tzinfo=clock.SHANGHAI
    )
    history = _rpc(
        mesh.crowd.GetZoneHistory,
        crowd_pb2.GetZoneHistoryRequest(
            zone_id=zone_id, start_time=clock.timestamp(window_start), end_time=clock.timestamp(window_end)
        ),
        mesh.as_("city_brain"),
    )
    at_level = {
        _name(crowd_pb2.ResponseLevel, d.level, "RESPONSE_LEVEL_"): round(d.duration.ToTimedelta().total_seconds() / 60)
        for d in history.time_at_level
        if d.level != crowd_pb2.RESPONSE_LEVEL_NONE
    }
    before, after = SEED["barrier_days_before"], SEED["barrier_days_after"]
    say(
        f"护栏只在需要时设置：这个晚上 {history.barrier_day_count} 天（{', '.join(history.barrier_days)}），"
        f"各级分钟 {at_level}；种子：一年 {before} 天 → {after} 天",
        f"Barriers only when needed: this evening, {history.barrier_day_count} barrier day(s) "
        f"({', '.join(history.barrier_days)}), minutes at each level {at_level}; the seed: {before} -> {after} a year",
    )
    year = _fountain_days(ctx.fountain_days) if ctx.fountain_days else None
    if year is None:
        say(
            "一整年的传感器回放（季节、周末、节假日）：`govmesh demo --fountain-days 365`",
            "A whole year of the fountain's sensors (seasons, weekends, holidays): `govmesh demo --fountain-days 365`",
        )
    else:
        say(
            f"`govmesh crowd simulate` 回放 {year['days']} 天（{year['window']}）的传感器："
            f"常年固定护栏 {year['fixed']} 天，"
            f"按日历 {year['calendar']} 天，实时响应 {year['live']} 天；种子：{before} → {after}",
            f"`govmesh crowd simulate` replays {year['days']} days of sensors ({year['window']}): barriers all the "
            f"time {year['fixed']} days, by the calendar {year['calendar']}, live response {year['live']}; the seed: "
            f"{before} -> {after}",
        )
    return {
        "simulated_days": year,
        "zone_id": zone_id,
        "capacity": created.capacity,
        "readings_accepted": report.accepted,
        "readings_rejected": report.rejected,
        "level_changes": changes,
        "levels_entered": [c["to"] for c in changes],
        "barrier_days": list(history.barrier_days),
        "barrier_day_count": history.barrier_day_count,
        "minutes_at_level": at_level,
        "peak": history.peak.occupancy,
        "seed_barrier_days": [before, after],
    }


def _fountain_days(days: int) -> dict[str, Any]:
    """``days`` of the fountain's modelled sensors through crowd's own simulator (a client like
    this one, over the broker), and the barrier days it counts from the service's history."""
    command = [sys.executable, "-m", "govmesh.cli", "crowd", "simulate", "--days", str(days), "--quiet", "--json"]
    try:
        # The simulator is a command of this same installation, with fixed arguments.
        done = subprocess.run(command, capture_output=True, text=True, timeout=120 + days, check=False)  # noqa: S603
    except subprocess.TimeoutExpired:
        raise DemoError(f"`govmesh crowd simulate --days {days}` did not finish in {120 + days} s") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise DemoError(f"`govmesh crowd simulate --days {days}` failed: {reason}")
    figures = json.loads(done.stdout)
    window = figures["window"]
    return {
        "days": days,
        "window": f"{window['start']} .. {window['last']}",
        "fixed": figures["fixed"],
        "calendar": figures["calendar"],
        "live": figures["live"],
    }


# -- 6. the citizen's data tracker ------------------------------------------------------------------------------


def _hash(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def head_is_signed(head: records_pb2.SignedTreeHead, public_key: bytes) -> bool:
    """The README's verifier: Ed25519 over the RFC 8785 canonical JSON of the head."""
    body: dict[str, Any] = {
        "log_id": head.log_id,
        "tree_size": head.tree_size,
        "timestamp": head.timestamp,
        "root_hash": base64.b64encode(head.root_hash).decode(),
    }
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(head.signature, rfc8785.dumps(body))
    except InvalidSignature:
        return False
    return True


def entry_is_in_log(entry: records_pb2.AccessEntry, head: records_pb2.SignedTreeHead) -> bool:
    """RFC 9162 2.1.3.2, as the README's verifier has it."""
    fn, sn, r = entry.leaf_index, head.tree_size - 1, _hash(b"\0", entry.leaf_bytes)
    if fn > sn:
        return False
    for p in entry.inclusion_proof:
        if fn & 1 or fn == sn:
            r = _hash(b"\1", p, r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _hash(b"\1", r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == head.root_hash


def tracker(mesh: Mesh, say: Callable[[str, str], None], ctx: Context) -> dict[str, Any]:
    person = ctx.person
    # A department without the right tries anyway: refused, and on the citizen's log all the same.
    case_id = next(iter(ctx.cases), "")
    try:
        _rpc(
            mesh.records.GetProof,
            records_pb2.GetProofRequest(
                subject_id=person.subject_id,
                proof_type="driving_licence",
                purpose=records_pb2.Purpose(case_id=case_id) if case_id else records_pb2.Purpose(legal_basis="demo"),
                request_id=str(uuid.uuid4()),
            ),
            mesh.as_("education"),
        )
        refused = "OK"
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.PERMISSION_DENIED:
            raise
        refused = error.code().name
    ctx.reads_expected += 1
    say(
        f"教育厅没有驾驶证的调取权限，试了一次：{refused}——这次拒绝也记在 {person.name} 的足迹里",
        f"The education department, without the right to driving licences, tries once: {refused}; the refusal "
        f"goes onto {person.name}'s log too",
    )
    deadline = time.monotonic() + 30
    while True:
        page = _rpc(
            mesh.records.ListAccesses,
            records_pb2.ListAccessesRequest(subject_id=person.subject_id, page_size=500),
            mesh.as_(PORTAL),
        )
        # Records' worker seals entries into the tree in batches: wait for every read of this run.
        if all(e.sealed for e in page.entries) and len(page.entries) >= ctx.reads_expected:
            break
        if time.monotonic() > deadline:
            raise DemoError("records did not seal the access log's entries in 30 s: is the records worker running?")
        time.sleep(0.3)
    keys = _rpc(mesh.records.ListSigningKeys, records_pb2.ListSigningKeysRequest(), mesh.as_(PORTAL)).keys
    head = page.tree_head
    key = next((k.public_key for k in keys if k.key_id == head.key_id), b"")
    signed = bool(key) and head_is_signed(head, key)
    say(
        f"{person.name} 的数据足迹：{len(page.entries)} 次读取；签名树头 {head.tree_size} 个叶子，签名有效={signed}",
        f"{person.name}'s data tracker: {len(page.entries)} reads; signed tree head of {head.tree_size} leaves, "
        f"signature valid={signed}",
    )
    entries = []
    for entry in reversed(page.entries):
        if entry.purpose.case_id:
            purpose = f"{ctx.cases.get(entry.purpose.case_id, 'case')} {entry.purpose.case_id}"
        else:
            purpose = f"legal_basis:{entry.purpose.legal_basis}"
        name_zh, _, name_en = entry.caller_name.partition(" ")
        proven = signed and entry_is_in_log(entry, head)
        outcome = _name(records_pb2.AccessOutcome, entry.outcome, "ACCESS_OUTCOME_")
        entries.append(
            {
                "caller_id": entry.caller_id,
                "caller_name": entry.caller_name,
                "proof_type": entry.proof_type,
                "purpose": purpose,
                "outcome": outcome,
                "leaf_index": entry.leaf_index,
                "proven": proven,
            }
        )
        mark = "✓" if proven else "✗"
        say(
            f"  {mark} #{entry.leaf_index} {name_zh} 读取 {entry.proof_type}，事由 {purpose}（{outcome}）",
            f"  {mark} #{entry.leaf_index} {name_en or entry.caller_id}: {entry.proof_type} for {purpose} ({outcome}), "
            f"{'proven in the signed log' if proven else 'NOT proven'}",
        )
    return {
        "tree_size": head.tree_size,
        "head_signed": signed,
        "entries": entries,
        "all_proven": bool(entries) and all(e["proven"] for e in entries),
        "callers": sorted({e["caller_id"] for e in entries}),
    }


# -- the run's people and records --------------------------------------------------------------------------------


@dataclass
class Context:
    """What the stories share: the run's protagonist, its random source, its feeds."""

    run_id: str
    rng: random.Random
    person: Person
    today: datetime.date
    patients: int
    tap: EventTap
    #: Days of the fountain to replay through `govmesh crowd simulate` (0: none).
    fountain_days: int = 0
    price_fen: int = 2_168_750_00
    #: Reads of the protagonist's data the stories cause (the tracker waits for them).
    reads_expected: int = 0
    #: The protagonist's cases: case id -> case type.
    cases: dict[str, str] = field(default_factory=dict)

    def feed(self) -> Feed:
        return Feed(f"{self.run_id}-{secrets.token_hex(3)}")

    def person_records(self, mesh: Mesh) -> dict[str, int]:
        """What six departments hold on the protagonist: a driver of eight years with a senior
        secondary graduation (the permit), a good credit score and medical insurance (medical
        credit), eligible to buy in Shaoxing with the deed tax paid (the housing transfer)."""
        p, today, feed = self.person, self.today, self.feed()
        first_issued = _years_before(today, 8, 40)
        valid_from = _years_before(today, 2, 40)
        feed.add(
            "public_security",
            "driving_licence",
            p,
            valid_from,
            {
                "licence_class": "C1",
                "first_issued": first_issued,
                "valid_from": valid_from,
                "valid_until": _years_before(valid_from, -10),
                "status": "valid",
                "issuing_authority": "杭州市公安局交通警察支队",
            },
        )
        born = datetime.date(int(p.identifier[6:10]), int(p.identifier[10:12]), int(p.identifier[12:14]))
        graduated = datetime.date(born.year + 18, 6, 30)
        feed.add(
            "education",
            "education_record",
            p,
            graduated,
            {
                "level": "senior_secondary",
                "institution": "杭州市西湖高级中学",
                "study_mode": "full_time",
                "enrolled_on": datetime.date(born.year + 15, 9, 1),
                "graduated_on": graduated,
                "completion": "graduated",
            },
        )
        self._health_records(feed, p, 720)
        assessed = today - datetime.timedelta(days=14)
        feed.add("housing", "homes_owned", p, assessed, {"city_code": "330600", "count": 0})
        feed.add(
            "housing",
            "purchase_eligibility",
            p,
            assessed,
            {
                "city_code": "330600",
                "eligible": True,
                "reason": "local_household_under_limit",
                "assessed_on": assessed,
            },
        )
        return feed.publish(mesh)

    def _health_records(self, feed: Feed, p: Person, score: int) -> None:
        band = next(
            b for floor, b in ((800, "excellent"), (700, "very_good"), (600, "good"), (0, "fair")) if score >= floor
        )
        scored = self.today.replace(day=1)
        feed.add("credit_center", "city_credit_score", p, scored, {"score": score, "band": band, "scored_on": scored})
        feed.add(
            "healthcare_security",
            "medical_insurance_enrolment",
            p,
            datetime.date(2015, 1, 1),
            {
                "scheme": "employee",
                "enrolled_since": datetime.date(2015, 1, 1),
                "status": "active",
                "insured_region": p.identifier[:6],
            },
        )

    def housing_records(self, mesh: Mesh, seller: Person) -> str:
        """The seller's title to a unit of this run (released mortgage) and the buyer's deed tax
        on it; returns the unit's code."""
        unit = f"330681001001GB{self.rng.randrange(100_000):05d}F0001{self.rng.randrange(10_000):04d}"
        feed, today = self.feed(), self.today
        acquired = _years_before(today, 6, 75)
        feed.add(
            "natural_resources",
            "property_title",
            seller,
            acquired,
            {
                "property_unit": unit,
                "certificate_number": f"浙({acquired.year})诸暨市不动产权第{self.rng.randrange(10**7):07d}号",
                "region_code": "330681",
                "usage": "residential",
                "area_cm2": 1_123_400,
                "holders": [seller.masked],
                "ownership": "sole",
                "acquired_on": acquired,
            },
        )
        feed.add(
            "natural_resources",
            "property_encumbrance",
            seller,
            acquired,
            {
                "property_unit": unit,
                "kind": "mortgage",
                "amount_fen": 1_200_000_00,
                "creditor": "中国建设银行绍兴分行",
                "registered_on": acquired,
                "released_on": today - datetime.timedelta(days=60),
            },
        )
        paid = today - datetime.timedelta(days=3)
        feed.add(
            "taxation",
            "transaction_tax",
            self.person,
            paid,
            {
                "property_unit": unit,
                "tax_kind": "deed_tax",
                "base_fen": self.price_fen,
                "rate_basis_points": 150,
                "amount_fen": (self.price_fen * 150 + 5_000) // 10_000,
                "status": "paid",
                "paid_on": paid,
            },
        )
        feed.publish(mesh)
        return unit

    def population(self, mesh: Mesh) -> dict[str, int]:
        """``patients`` fresh residents, each scored and insured, treated on credit and paying."""
        people = [
            new_person(self.rng, self.rng.choice(("330102", "330106", "330183", "330681")))
            for _ in range(self.patients)
        ]
        feed = self.feed()
        for person in people:
            self._health_records(feed, person, self.rng.randint(600, 850))
        feed.publish(mesh)

        def one(person: Person) -> medical_credit_pb2.Bill:
            items = self.rng.sample(_VISIT, self.rng.randint(1, len(_VISIT)))
            return _pay(mesh, _treat(mesh, person, items))

        with ThreadPoolExecutor(max_workers=4) as pool:
            bills = list(pool.map(one, people))
        settled = sum(1 for b in bills if b.state == medical_credit_pb2.BILL_STATE_SETTLED)
        return {"patients": len(people), "bills": len(bills), "paid": settled}

    def level_changes(self, zone_id: str) -> list[dict[str, Any]]:
        """The zone's level_changed events, oldest first (the tap picks the story's trace)."""
        wanted = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            wanted = [
                e
                for e in list(self.tap.events)
                if e.routing_key == "level_changed" and isinstance(e.body, dict) and e.body.get("zoneId") == zone_id
            ]
            # Back to NONE closes the evening.
            if wanted and wanted[-1].body.get("level") == "RESPONSE_LEVEL_NONE":
                break
            time.sleep(0.2)
        out = []
        for event in wanted:
            body = event.body
            at = body.get("triggeredByObservedAt", "")
            local = (
                datetime.datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(clock.SHANGHAI) if at else None
            )
            out.append(
                {
                    "at": f"{local:%H:%M}" if local else "-",
                    "from": str(body.get("previousLevel", "RESPONSE_LEVEL_NONE")).removeprefix("RESPONSE_LEVEL_"),
                    "to": str(body.get("level", "RESPONSE_LEVEL_NONE")).removeprefix("RESPONSE_LEVEL_"),
                    "occupancy": int(body.get("occupancy", 0)),
                    "load_bp": int(body.get("loadBp", 0)),
                    "measures_to_take": [m.removeprefix("MEASURE_") for m in body.get("measuresToTake", [])],
                    "measures_to_lift": [m.removeprefix("MEASURE_") for m in body.get("measuresToLift", [])],
                }
            )
        return out


_TOLD: Final = {
    "one_id": (one_id, "一证通办：一个身份证号打开每个服务", "One ID number opens every service"),
    "ride_hailing": (
        ride_hailing,
        "网约车驾驶员证：几毫秒，不是两三分钟",
        "A ride-hailing driver's permit in milliseconds",
    ),
    "housing": (
        housing,
        "二手房交易：税务、国土、房管三个部门签批",
        "A second-hand home: taxation, land and housing sign off",
    ),
    "medical_credit": (medical_credit, "先看病后付费", "Treat first, pay later"),
    "fountain": (
        fountain,
        "西湖音乐喷泉：一个晚上的人流高峰",
        "The West Lake music fountain through an evening's surge",
    ),
    "tracker": (
        tracker,
        "数据足迹：谁为什么读过我的数据，每条可证明",
        "The data tracker: who read my data and why, each entry provable",
    ),
}


def run(stories: Sequence[str], patients: int, fountain_days: int, narrator: Narrator) -> list[Story]:
    started = time.monotonic()
    mesh = Mesh()
    try:
        mesh.check_running()
        tap = EventTap(mesh.amqp_uri)
        tap.start()
        try:
            rng = random.Random(secrets.randbits(64))
            ctx = Context(
                secrets.token_hex(4),
                rng,
                new_person(rng, "330106", 1975, 1992),
                clock.shanghai_date(),
                patients,
                tap,
                fountain_days,
            )
            ctx.person.name = "徐伟"  # the seed's driver; the number is synthetic
            told = []
            # Every story needs the protagonist registered and the departments' records.
            wanted = ["one_id", *(s for s in STORIES if s in stories and s != "one_id")]
            for key in wanted:
                function, zh, en = _TOLD[key]
                story = Story(STORIES.index(key) + 1, key, zh, en)
                narrator.begin(story)
                mesh.traceparent = story.traceparent
                began = time.monotonic()
                story.figures = function(mesh, narrator.say, ctx)
                story.seconds = round(time.monotonic() - began, 2)
                mesh.traceparent = ""
                story.events = [e.as_json() for e in tap.of_trace(story.trace_id)]
                narrator.events(story)
                told.append(story)
            narrator.out(f"\n{len(told)} stories in {time.monotonic() - started:.1f} s")
            return told
        finally:
            tap.close()
    finally:
        mesh.close()


def main(args: argparse.Namespace) -> int:
    stories = [s.strip() for s in args.stories.split(",") if s.strip()] if args.stories else list(STORIES)
    unknown = sorted(set(stories) - set(STORIES))
    if unknown:
        print(f"govmesh demo: --stories: {unknown[0]!r} is not one of {', '.join(STORIES)}", file=sys.stderr)
        return 2
    if not 1 <= args.patients <= 2000:
        print("govmesh demo: --patients must be between 1 and 2000", file=sys.stderr)
        return 2
    if not 0 <= args.fountain_days <= 400:
        print("govmesh demo: --fountain-days must be between 0 and 400", file=sys.stderr)
        return 2
    narrator = Narrator(args.json)
    try:
        told = run(stories, args.patients, args.fountain_days, narrator)
    except (config.ConfigError, PolicyError, DemoError) as exc:
        print(mask_identifiers(f"govmesh demo: {exc}"), file=sys.stderr)
        return 1
    except messaging.BrokerUnavailable as exc:
        print(
            mask_identifiers(f"govmesh demo: the broker does not answer ({exc}): start the mesh with `make run`"),
            file=sys.stderr,
        )
        return 1
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        hints = {
            grpc.StatusCode.UNAVAILABLE: ": is the mesh running? Start it with `make run`",
            # Another mesh's keys: the demo mints tokens from GOVMESH_KEY_DIR, as the mesh reads them.
            grpc.StatusCode.UNAUTHENTICATED: ": run the demo with the environment the mesh runs with (GOVMESH_KEY_DIR)",
        }
        hint = hints.get(code, "")
        print(
            mask_identifiers(f"govmesh demo: the mesh answered {code.name}: {error.details()}{hint}"), file=sys.stderr
        )
        return 1
    if args.json:
        document = {"stories": [story.as_json() for story in told], "seed": SEED}
        print(mask_identifiers(json.dumps(document, ensure_ascii=False, default=list)))
    return 0
