"""Approvals through its public interfaces, in the whole mesh: identity, records and approvals,
each api and worker a real process, over a real RabbitMQ, on SQLite and on PostgreSQL.

Departments publish the records of every scenario (tests/support/approvals_scenarios.py: for each case
type one applicant who qualifies and, for each rule, one who fails just that rule); the portal
submits one case per scenario and the workers decide them."""

from __future__ import annotations

import datetime
import json
import signal
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format

from govmesh import clock
from govmesh.approvals.v1 import approvals_pb2 as pb
from govmesh.approvals.v1 import events_pb2
from tests.support.approvals_mesh import FINAL, Approvals, accesses, publish, start_mesh
from tests.support.approvals_scenarios import Scenario, scenarios
from tests.support.mesh import (
    Integrator,
    ServiceEnv,
    assert_no_raw_identifiers,
    database_for,
    free_port,
    govmesh,
    virtual_host,
    wait_for,
)

SCENARIOS = scenarios(clock.shanghai_date())


class Mesh:
    """One mesh for the module (per database), its own virtual host, every scenario's records
    published and every scenario's case submitted at once."""

    def __init__(self, env: ServiceEnv, amqp: str) -> None:
        self.env = env
        self.amqp = amqp
        self.approvals = Approvals(env)
        self.cases: dict[str, str] = {}

    def case_of(self, scenario: Scenario) -> str:
        if not self.cases:
            publish(self.env, [record for s in SCENARIOS for record in s.records])
            for s in SCENARIOS:
                self.cases[s.id()] = self.approvals.submit(s.case_type, s.applicant, s.parameters).case.case_id
        return self.cases[scenario.id()]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def mesh(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp_path = tmp_path_factory.mktemp(f"approvals-{request.param}")
    url = database_for(request, tmp_path)
    with virtual_host() as amqp:
        env = ServiceEnv("approvals", url, tmp_path, amqp, others=("identity", "records"))
        start_mesh(env, amqp)
        mesh = Mesh(env, amqp)
        yield mesh
        env.stop_all()
        assert_no_raw_identifiers(env.all_output(), "the mesh's output")


def test_case_types_are_listed_from_their_files(mesh: Mesh) -> None:
    answer = mesh.approvals.stub.ListCaseTypes(pb.ListCaseTypesRequest(), metadata=mesh.approvals.metadata, timeout=10)
    by_code = {t.code: t for t in answer.case_types}
    assert {
        "ride_hailing_driver_permit",
        "second_hand_housing_transfer",
        "business_licence_change",
        "tour_guide_licence",
    } <= set(by_code)
    housing = by_code["second_hand_housing_transfer"]
    assert list(housing.sign_off_department_codes) == ["taxation", "natural_resources", "housing"]
    assert housing.deadline_working_days == 9
    assert by_code["tour_guide_licence"].review_steps[0].department_code == "culture_tourism"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=Scenario.id)
def test_each_case_type_decides_each_applicant(mesh: Mesh, scenario: Scenario) -> None:
    case_id = mesh.case_of(scenario)
    approvals = mesh.approvals
    needs_review = scenario.case_type == "tour_guide_licence" and not scenario.failing_rules
    case = approvals.wait_final(case_id, FINAL + ((pb.CASE_STATE_IN_REVIEW,) if needs_review else ()))
    if needs_review:
        assert case.state == pb.CASE_STATE_IN_REVIEW
        official = Approvals(mesh.env, "culture_tourism")
        tasks = official.stub.ListReviewTasks(
            pb.ListReviewTasksRequest(department_code="culture_tourism"), metadata=official.metadata, timeout=10
        ).tasks
        task = next(t for t in tasks if t.case_id == case_id)
        answer = official.stub.CompleteReviewTask(
            pb.CompleteReviewTaskRequest(task_id=task.task_id, decision=pb.REVIEW_DECISION_APPROVE),
            metadata=official.metadata,
            timeout=10,
        )
        case = answer.case
        assert case.decision.decided_by == pb.DECISION_MAKER_HUMAN_REVIEW
        assert case.decision.official_id == "culture_tourism"

    expected = pb.CASE_STATE_REJECTED if scenario.failing_rules else pb.CASE_STATE_APPROVED
    assert case.state == expected, case.decision.message_en
    assert set(case.decision.failing_rule_ids) == scenario.failing_rules
    failed = [r for r in case.rule_results if r.outcome == pb.RULE_OUTCOME_FAILED]
    assert {r.rule_id for r in failed} == scenario.failing_rules
    for result in failed:
        assert result.message_zh and result.message_en and result.evidence, result
        assert result.message_en in case.decision.message_en
    assert all(
        r.outcome == pb.RULE_OUTCOME_PASSED for r in case.rule_results if r.rule_id not in scenario.failing_rules
    )
    # The applicant brought nothing: every proof was drawn from records for this case.
    proof_steps = [s for s in case.steps if s.kind == pb.CASE_STEP_KIND_PROOF]
    assert proof_steps and all(s.state == pb.CASE_STEP_STATE_SUCCEEDED and s.proof_id for s in proof_steps)
    assert {p.proof_id for p in case.proofs} == {s.proof_id for s in proof_steps}
    assert case.decision_duration.ToTimedelta() > datetime.timedelta(0)
    assert [t.to_state for t in case.transitions][:2] == [pb.CASE_STATE_SUBMITTED, pb.CASE_STATE_IN_PROGRESS]
    assert case.deadline_date > case.submitted_at.ToDatetime().date().isoformat()

    # Records' audit trail names this case as the purpose of every proof it drew.
    tracker = accesses(mesh.env, case.applicant_subject_id)
    for_case = {a.proof_id for a in tracker if a.purpose.case_id == case_id}
    applicant_proofs = {p.proof_id for p in case.proofs if p.subject_id == case.applicant_subject_id}
    assert applicant_proofs and applicant_proofs <= for_case
    assert all(a.caller_id == "approvals" for a in tracker if a.purpose.case_id == case_id)


def test_bad_submissions_name_the_field_and_store_nothing(mesh: Mesh) -> None:
    approvals = mesh.approvals
    good = next(s for s in SCENARIOS if s.case_type == "second_hand_housing_transfer" and not s.failing_rules)
    guide = next(s for s in SCENARIOS if s.case_type == "tour_guide_licence" and not s.failing_rules)
    licence = next(s for s in SCENARIOS if s.case_type == "business_licence_change" and not s.failing_rules)
    employer = "parameters.employer_identifier"
    mesh.case_of(good)  # every scenario's subjects are registered (their records published)
    before = approvals.stub.ListCases(pb.ListCasesRequest(page_size=500), metadata=approvals.metadata).cases
    attempts = [
        ("no_such_case_type", good.applicant, good.parameters, "case_type"),
        (
            good.case_type,
            good.applicant,
            {k: v for k, v in good.parameters.items() if k != "price_fen"},
            "parameters.price_fen",
        ),
        (good.case_type, good.applicant, {**good.parameters, "price_fen": "-5"}, "parameters.price_fen"),
        # A sale at no price is no sale (issue 14: accepted).
        (good.case_type, good.applicant, {**good.parameters, "price_fen": "0"}, "parameters.price_fen"),
        (good.case_type, good.applicant, {**good.parameters, "colour": "red"}, "parameters.colour"),
        (
            good.case_type,
            good.applicant[:-1] + ("0" if good.applicant[-1] != "0" else "1"),
            good.parameters,
            "applicant_identifier",
        ),
        (
            good.case_type,
            good.applicant,
            {**good.parameters, "seller_identifier": good.applicant},
            "parameters.seller_identifier",
        ),
        # An ID number where a price goes: it would be stored and shown as a number.
        (good.case_type, good.applicant, {**good.parameters, "price_fen": good.applicant}, "parameters.price_fen"),
        # A resident where the employer (an enterprise) goes: records could never issue its proof.
        (guide.case_type, guide.applicant, {**guide.parameters, "employer_identifier": good.applicant}, employer),
        # The applicant of an enterprise case type is an enterprise.
        (licence.case_type, good.applicant, licence.parameters, "applicant_identifier"),
    ]
    for case_type, applicant, parameters, field in attempts:
        with pytest.raises(grpc.RpcError) as refused:
            approvals.submit(case_type, applicant, parameters)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, refused.value.details())
        assert refused.value.details().startswith(f"{field}:"), refused.value.details()
        assert applicant not in refused.value.details()
    after = approvals.stub.ListCases(pb.ListCasesRequest(page_size=500), metadata=approvals.metadata).cases
    assert len(after) == len(before)


def test_the_same_request_id_returns_the_same_case(mesh: Mesh) -> None:
    mesh.case_of(SCENARIOS[0])  # every scenario's records published, so its subjects exist
    approvals = mesh.approvals
    scenario = next(s for s in SCENARIOS if s.case_type == "business_licence_change" and not s.failing_rules)
    request_id = str(uuid.uuid4())
    first = approvals.submit(scenario.case_type, scenario.applicant, scenario.parameters, request_id)
    again = approvals.submit(scenario.case_type, scenario.applicant, scenario.parameters, request_id)
    assert first.created and not again.created
    assert again.case.case_id == first.case.case_id
    changed = {**scenario.parameters, "resolution_date": "2020-01-02"}
    with pytest.raises(grpc.RpcError) as refused:
        approvals.submit(scenario.case_type, scenario.applicant, changed, request_id)
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert refused.value.details().startswith("request_id:")


def test_watch_streams_each_change_until_the_case_is_final(mesh: Mesh) -> None:
    mesh.case_of(SCENARIOS[0])  # every scenario's records published, so its subjects exist
    approvals = mesh.approvals
    scenario = next(s for s in SCENARIOS if s.case_type == "ride_hailing_driver_permit" and not s.failing_rules)
    case = approvals.submit(scenario.case_type, scenario.applicant, scenario.parameters).case
    stream = approvals.stub.WatchCase(
        pb.WatchCaseRequest(case_id=case.case_id), metadata=approvals.metadata, timeout=30
    )
    seen = [message.case for message in stream]
    revisions = [c.revision for c in seen]
    # Every change, in order, none skipped: the stream ends with the decision.
    assert revisions == list(range(revisions[0], revisions[-1] + 1)), revisions
    assert seen[-1].state == pb.CASE_STATE_APPROVED
    assert seen[-1].decision_duration.ToTimedelta() < datetime.timedelta(seconds=30)


def test_malformed_case_ids_are_refused_before_they_join_the_watchers_feed(mesh: Mesh) -> None:
    """One poller reads every watched case of an api process in one query, and PostgreSQL refuses
    a whole query with a NUL in it: a malformed id is refused before it is watched, and the case
    others watch meanwhile still reaches them."""
    mesh.case_of(SCENARIOS[0])  # every scenario's records published, so its subjects exist
    approvals = mesh.approvals
    scenario = next(s for s in SCENARIOS if s.case_type == "tour_guide_licence" and not s.failing_rules)
    case = approvals.submit(scenario.case_type, scenario.applicant, scenario.parameters).case
    case = approvals.wait_final(case.case_id, (pb.CASE_STATE_IN_REVIEW,))
    stream = approvals.stub.WatchCase(
        pb.WatchCaseRequest(case_id=case.case_id), metadata=approvals.metadata, timeout=60
    )
    assert next(stream).case.state == pb.CASE_STATE_IN_REVIEW

    def malformed(n: int) -> tuple[grpc.StatusCode, str]:
        refused = approvals.stub.WatchCase(
            pb.WatchCaseRequest(case_id=f"\x00{n}"), metadata=approvals.metadata, timeout=10
        )
        try:
            next(refused)
        except grpc.RpcError as error:
            return error.code(), error.details() or ""
        raise AssertionError("a malformed case_id was watched")

    with futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(malformed, range(200)))
    assert {code for code, _ in answers} == {grpc.StatusCode.INVALID_ARGUMENT}
    assert all(details.startswith("case_id:") for _, details in answers)
    approvals.stub.CancelCase(pb.CancelCaseRequest(case_id=case.case_id), metadata=approvals.metadata, timeout=10)
    assert [m.case.state for m in stream][-1] == pb.CASE_STATE_CANCELLED
    assert "cannot read changes" not in mesh.env.all_output()


def test_production_callers_submit_and_follow_their_own_cases_only(mesh: Mesh) -> None:
    """Without the demo portal (production's policy), the citizen portal and a service centre's
    counter (policy/dev.yaml) each submit and follow cases, see only their own, and decide none."""
    mesh.case_of(SCENARIOS[0])  # every scenario's records published, so its subjects exist
    portal, counter = Approvals(mesh.env, "zhelibao"), Approvals(mesh.env, "service-window-hangzhou")
    online = next(s for s in SCENARIOS if s.case_type == "ride_hailing_driver_permit" and not s.failing_rules)
    in_person = next(s for s in SCENARIOS if s.case_type == "business_licence_change" and not s.failing_rules)
    case = portal.submit(online.case_type, online.applicant, online.parameters).case
    taken = counter.submit(in_person.case_type, in_person.applicant, in_person.parameters).case
    watched = portal.stub.WatchCase(pb.WatchCaseRequest(case_id=case.case_id), metadata=portal.metadata, timeout=30)
    assert [m.case for m in watched][-1].state == pb.CASE_STATE_APPROVED
    assert counter.wait_final(taken.case_id).state == pb.CASE_STATE_APPROVED
    for caller, own in ((portal, case), (counter, taken)):
        listed = caller.stub.ListCases(pb.ListCasesRequest(page_size=500), metadata=caller.metadata, timeout=10)
        assert [c.case_id for c in listed.cases] == [own.case_id]
    refusals = [
        lambda: counter.get(case.case_id),
        lambda: portal.stub.CancelCase(pb.CancelCaseRequest(case_id=taken.case_id), metadata=portal.metadata),
        lambda: portal.stub.ListReviewTasks(
            pb.ListReviewTasksRequest(department_code="culture_tourism"), metadata=portal.metadata
        ),
        lambda: counter.stub.CompleteReviewTask(
            pb.CompleteReviewTaskRequest(task_id=str(uuid.uuid4()), decision=pb.REVIEW_DECISION_APPROVE),
            metadata=counter.metadata,
        ),
    ]
    for refused in refusals:
        with pytest.raises(grpc.RpcError) as denied:
            refused()
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED, denied.value.details()


def test_cancelling_a_case_in_review_withdraws_its_task(mesh: Mesh) -> None:
    mesh.case_of(SCENARIOS[0])  # every scenario's records published, so its subjects exist
    approvals = mesh.approvals
    scenario = next(s for s in SCENARIOS if s.case_type == "tour_guide_licence" and not s.failing_rules)
    cancelled = Integrator(mesh.amqp, "approvals.events", "case_cancelled")
    try:
        case = approvals.submit(scenario.case_type, scenario.applicant, scenario.parameters).case
        case = approvals.wait_final(case.case_id, (pb.CASE_STATE_IN_REVIEW,))
        task_id = next(s.review_task_id for s in case.steps if s.kind == pb.CASE_STEP_KIND_REVIEW)
        answer = approvals.stub.CancelCase(
            pb.CancelCaseRequest(case_id=case.case_id, reason="申请人撤回"), metadata=approvals.metadata, timeout=10
        )
        assert answer.case.state == pb.CASE_STATE_CANCELLED
        compensation = [s for s in answer.case.steps if s.kind == pb.CASE_STEP_KIND_COMPENSATION]
        assert [s.state for s in compensation] == [pb.CASE_STEP_STATE_COMPENSATED]
        assert compensation[0].review_task_id == task_id
        again = approvals.stub.CancelCase(
            pb.CancelCaseRequest(case_id=case.case_id), metadata=approvals.metadata, timeout=10
        )
        assert again.case.revision == answer.case.revision
        official = Approvals(mesh.env, "culture_tourism")
        with pytest.raises(grpc.RpcError) as refused:
            official.stub.CompleteReviewTask(
                pb.CompleteReviewTaskRequest(task_id=task_id, decision=pb.REVIEW_DECISION_APPROVE),
                metadata=official.metadata,
                timeout=10,
            )
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        events = [json.loads(body) for _, _, body in cancelled.receive(1)]
        assert [e["caseId"] for e in events] == [case.case_id]
        # Another department cannot see culture and tourism's queue.
        housing = Approvals(mesh.env, "housing")
        with pytest.raises(grpc.RpcError) as denied:
            housing.stub.ListReviewTasks(
                pb.ListReviewTasksRequest(department_code="culture_tourism"), metadata=housing.metadata, timeout=10
            )
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # A department that does not exist is a mistake to name, not an empty queue.
        with pytest.raises(grpc.RpcError) as unknown:
            mesh.approvals.stub.ListReviewTasks(
                pb.ListReviewTasksRequest(department_code="culture_tourism_x"),
                metadata=mesh.approvals.metadata,
                timeout=10,
            )
        assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert unknown.value.details().startswith("department_code:")
    finally:
        cancelled.close()


def test_metrics_count_decisions_by_outcome_and_type(mesh: Mesh) -> None:
    for scenario in SCENARIOS:
        mesh.approvals.wait_final(mesh.case_of(scenario), (*FINAL, pb.CASE_STATE_IN_REVIEW))
    port = mesh.env.ports["approvals"]["worker_metrics"]
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert (
        'govmesh_approvals_cases_decided_total{case_type="ride_hailing_driver_permit",decided_by="automatic",outcome="rejected"}'
        in text
    )
    assert 'govmesh_approvals_decision_seconds_count{case_type="second_hand_housing_transfer"}' in text
    api_port = mesh.env.ports["approvals"]["api_metrics"]
    api_text = urllib.request.urlopen(f"http://127.0.0.1:{api_port}/metrics", timeout=5).read().decode()
    assert 'govmesh_approvals_cases_submitted_total{case_type="tour_guide_licence"}' in api_text


def test_a_malformed_case_type_file_stops_start_up_naming_file_and_line(mesh: Mesh, tmp_path: Path) -> None:
    bad = tmp_path / "case_types"
    bad.mkdir()
    source = (
        Path(__file__).resolve().parents[2] / "services/approvals/case_types/business_licence_change.yaml"
    ).read_text()
    lines = source.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("deadline_working_days:"))
    lines[index] = "deadline_working_days: soon"
    (bad / "business_licence_change.yaml").write_text("\n".join(lines) + "\n")
    # Records (whose catalogue the files are checked against) is the mesh's; the ports are the
    # broken processes' own, since the mesh's approvals holds approvals' ports.
    ports = {f"APPROVALS_{port}": str(free_port()) for port in ("GRPC_PORT", "API_METRICS_PORT", "WORKER_METRICS_PORT")}
    broken = {**mesh.env.env, **ports, "APPROVALS_CASE_TYPES_DIR": str(bad)}
    for kind in ("api", "worker"):
        result = govmesh(kind, "approvals", env=broken)
        assert result.returncode == 2, result.stderr[-2000:]
        assert f"business_licence_change.yaml:{index + 1}:" in result.stderr, result.stderr[-2000:]


def deadlines_breached(
    integrator: Integrator, case_id: str, count: int, timeout: float
) -> list[events_pb2.DeadlineBreached]:
    """Up to ``count`` of the case's deadline_breached events that arrive within ``timeout``
    (other cases of the mesh pass by uncounted)."""
    found: list[events_pb2.DeadlineBreached] = []
    deadline = time.monotonic() + timeout
    while len(found) < count and (left := deadline - time.monotonic()) > 0:
        for _, _, body in integrator.receive(1, timeout=min(left, 0.5)):
            event = json_format.Parse(body, events_pb2.DeadlineBreached())
            if event.case_id == case_id:
                found.append(event)
    return found


def test_a_case_past_its_deadline_raises_deadline_breached(mesh: Mesh) -> None:
    """On the shared mesh: the clock moves 30 days on and back again, so the tests after it see
    the mesh's clock as before; only this case's events are counted."""
    scenario = next(s for s in SCENARIOS if s.case_type == "tour_guide_licence" and not s.failing_rules)
    publish(mesh.env, list(scenario.records))  # a repeat is a duplicate, not a second record
    breached = Integrator(mesh.amqp, "approvals.events", "deadline_breached")
    try:
        approvals = mesh.approvals
        case = approvals.submit(scenario.case_type, scenario.applicant, scenario.parameters).case
        approvals.wait_final(case.case_id, (pb.CASE_STATE_IN_REVIEW,))
        assert not deadlines_breached(breached, case.case_id, 1, timeout=2)
        mesh.env.travel(datetime.timedelta(days=30))
        try:
            events = deadlines_breached(breached, case.case_id, 1, timeout=20)
            assert events
            body = events[0]
            assert body.case_id == case.case_id and body.deadline_date == case.deadline_date
            assert list(body.waiting_department_codes) == ["culture_tourism"]
            assert approvals.get(case.case_id).deadline_breached
            assert not deadlines_breached(breached, case.case_id, 1, timeout=3), "deadline_breached is raised once"
        finally:
            mesh.env.travel(datetime.timedelta(days=-30))
    finally:
        breached.close()


# ---------------------------------------------------------------------------------------------
# Failures that stop processes: a worker killed mid-case, duplicate events, a department that
# does not answer, a case holding a unit while records is away. Each on a mesh of its own.


@pytest.fixture
def lone_mesh(database_url: str, tmp_path: Path) -> Iterator[ServiceEnv]:
    with virtual_host() as amqp:
        env = ServiceEnv("approvals", database_url, tmp_path, amqp, others=("identity", "records"))
        env.env |= {
            "APPROVALS_PROOF_TIMEOUT_SECONDS": "1",
            "APPROVALS_RETRY_SECONDS": "0.2",
            "APPROVALS_STALL_SECONDS": "3",
        }
        env.amqp = amqp  # type: ignore[attr-defined]
        yield env
        env.stop_all()
        assert_no_raw_identifiers(env.all_output(), "the mesh's output")


def started(env: ServiceEnv, case_type: str) -> tuple[ServiceEnv, str, Scenario]:
    """The mesh started, with the records of the qualifying applicant of ``case_type``."""
    amqp: str = env.amqp  # type: ignore[attr-defined]
    start_mesh(env, amqp)
    scenario = next(s for s in SCENARIOS if s.case_type == case_type and not s.failing_rules)
    publish(env, list(scenario.records))
    return env, amqp, scenario


def test_a_worker_killed_mid_case_and_duplicate_events_leave_one_decision(lone_mesh: ServiceEnv) -> None:
    env, amqp, scenario = started(lone_mesh, "ride_hailing_driver_permit")
    env.process("worker", "approvals")  # two workers share the queue and both run the timer
    decided = Integrator(amqp, "approvals.events", "case_decided")
    submitted = Integrator(amqp, "approvals.events", "case_submitted")
    approvals = Approvals(env)
    worker = next(p for p in env.processes if p.args == ["worker", "approvals"])
    case_ids: list[str] = []

    def submit_all() -> None:
        for _ in range(40):
            case_ids.append(approvals.submit(scenario.case_type, scenario.applicant, scenario.parameters).case.case_id)

    submitter = threading.Thread(target=submit_all)
    try:
        submitter.start()
        wait_for(lambda: len(case_ids) >= 10)
        worker.stop(signal.SIGKILL)  # mid-flight: cases are being submitted and worked on
        env.process("worker", "approvals")
        submitter.join(60)
        # Every submission event again, as a broker or a publisher retry could deliver it.
        again = Integrator(amqp, "approvals.events")
        for method, properties, body in submitted.receive(40):
            again.channel.basic_publish("approvals.events", method.routing_key, body, properties)
        again.close()
        cases = [approvals.wait_final(case_id, timeout=60) for case_id in case_ids]
        assert all(c.state == pb.CASE_STATE_APPROVED for c in cases)
        # Delivery is at least once (a relay killed between publishing and marking publishes
        # again), with a stable ce-id to dedupe on: one decision per case, however delivered.
        # The relay may be backing off after the kill: wait for every case's event, then a while
        # longer for any second decision.
        events: dict[str, dict[str, object]] = {}

        def every_case_decided() -> bool:
            for _, properties, body in decided.receive(1, timeout=0.2):
                events[properties.headers["ce-id"]] = json.loads(body)
            return {e["caseId"] for e in events.values()} >= set(case_ids)

        wait_for(every_case_decided, timeout=90)
        events |= {properties.headers["ce-id"]: json.loads(body) for _, properties, body in decided.drain(quiet=3)}
        ids = [event["caseId"] for event in events.values()]
        assert sorted(ids) == sorted(case_ids), "one case_decided per case"
        tracker = accesses(env, cases[0].applicant_subject_id)
        for case in cases:
            issued = {(a.proof_type, a.proof_id) for a in tracker if a.purpose.case_id == case.case_id}
            # One proof per proof step, however often it was asked for.
            assert len(issued) == len({a[0] for a in issued}) == 4, issued
            assert {p.proof_id for p in case.proofs} == {a[1] for a in issued}
    finally:
        submitter.join(60)
        decided.close()
        submitted.close()


def test_a_department_that_does_not_answer_is_retried_then_escalated(lone_mesh: ServiceEnv) -> None:
    env, amqp, scenario = started(lone_mesh, "business_licence_change")
    escalated = Integrator(amqp, "approvals.events", "case_escalated")
    try:
        records_worker = next(p for p in env.processes if p.args == ["worker", "records"])
        records_worker.stop()
        approvals = Approvals(env)
        case = approvals.submit(scenario.case_type, scenario.applicant, scenario.parameters).case
        events = escalated.receive(1, timeout=30)
        assert events, "no case_escalated"
        body = json.loads(events[0][2])
        assert body["caseId"] == case.case_id and body["attempts"] >= 3
        stuck = approvals.get(case.case_id)
        step = next(s for s in stuck.steps if s.kind == pb.CASE_STEP_KIND_PROOF)
        assert step.state == pb.CASE_STEP_STATE_ESCALATED and "records" in step.message_en
        env.process("worker", "records")
        final = approvals.wait_final(case.case_id, timeout=60)
        assert final.state == pb.CASE_STATE_APPROVED
    finally:
        escalated.close()


def test_an_open_case_holds_its_property_unit_until_it_is_cancelled(lone_mesh: ServiceEnv) -> None:
    env, _, scenario = started(lone_mesh, "second_hand_housing_transfer")
    # Records' worker away: the first case cannot progress, so it stays open and holds the unit.
    records_worker = next(p for p in env.processes if p.args == ["worker", "records"])
    records_worker.stop()
    approvals = Approvals(env)
    first = approvals.submit(scenario.case_type, scenario.applicant, scenario.parameters).case
    with pytest.raises(grpc.RpcError) as refused:
        approvals.submit(scenario.case_type, scenario.applicant, scenario.parameters)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.details().startswith("parameters.property_unit:")
    assert first.case_id in refused.value.details()

    cancelled = approvals.stub.CancelCase(
        pb.CancelCaseRequest(case_id=first.case_id, reason="买卖双方解除合同"), metadata=approvals.metadata, timeout=10
    ).case
    released = [s for s in cancelled.steps if s.step_id == "compensation:hold:property_unit"]
    assert [s.state for s in released] == [pb.CASE_STEP_STATE_COMPENSATED]
    assert scenario.parameters["property_unit"] in released[0].message_en

    env.process("worker", "records")
    second = approvals.submit(scenario.case_type, scenario.applicant, scenario.parameters)
    assert second.created
    assert approvals.wait_final(second.case.case_id, timeout=60).state == pb.CASE_STATE_APPROVED
    # Decided, it holds nothing: the unit may be transferred again (by its new owner, in life).
    third = approvals.submit(scenario.case_type, scenario.applicant, scenario.parameters)
    assert third.created
