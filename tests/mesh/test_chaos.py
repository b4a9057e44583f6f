"""The fast subset of `make chaos` (tests/chaos): a few faults, each on one database, with a short
load; the whole set, both databases and the soak run in `make chaos`. Faults go to a RabbitMQ node
and a PostgreSQL cluster of the run's own, never to the machine's shared ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from govmesh.grpcserver import LIVENESS
from govmesh.identity.v1 import identity_pb2, identity_pb2_grpc
from tests.chaos.audit import Count, EventTap, count
from tests.chaos.infra import PrivateBroker, PrivateCluster, PrivatePostgres
from tests.chaos.load import Rates
from tests.chaos.mesh import GRPC_SERVICES
from tests.chaos.scenarios import SCENARIOS, Context, run
from tests.support.crowd_mesh import Crowd
from tests.support.mesh import ServiceEnv, wait_for
from tests.support.people import health_status, wait_serving
from tests.support.shared_mesh import new_resident

#: (scenario, database): the faults the suite runs, each on one database, with a short load;
#: `make chaos` runs every scenario on both. One stream through a node of a RabbitMQ cluster killed
#: (nothing lost with two of three nodes left) and then the PostgreSQL server restarting underneath
#: (issue 15), in one mesh because starting a mesh is most of a run's time. Workers killed
#: mid-stream are in the suite already, per service (test_approvals, test_crowd, test_identity);
#: the other scenarios take a minute or more each and stay in `make chaos` (the suite must stay
#: under 15 minutes on CI).
FAST_SUBSET = [
    ("node-and-database", "postgresql"),
]


@pytest.fixture(scope="module")
def broker() -> Iterator[PrivateBroker]:
    node = PrivateBroker()
    node.start()
    yield node
    node.stop()


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateCluster]:
    nodes = PrivateCluster()
    nodes.start()
    yield nodes
    nodes.stop()


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres()
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("scenario", "database"), FAST_SUBSET, ids=[f"{s}-{d}" for s, d in FAST_SUBSET])
def test_nothing_is_lost_doubled_or_stuck(
    scenario: str, database: str, request: pytest.FixtureRequest, private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    recounted: list[Count] = []

    def the_audit_sees_what_goes_wrong(ctx: Context, tap: EventTap) -> None:
        """The count can fail: a case the API never kept, a record never stored, readings the
        zone never got and readings no client counted are each seen."""
        ledger = ctx.load.ledger
        ledger.case_ids.add("00000000-0000-4000-8000-000000000000")
        ledger.source_references.add("never-published")
        zone_a, zone_b = ctx.load.zone_ids[:2]
        ledger.readings[zone_a] += 3
        crowd = Crowd(ctx.mesh.env, caller="crowd_sensors")
        crowd.report([ctx.load.next_readings(zone_b, 2)])  # applied, never counted by a client
        crowd.close()
        recounted.append(count(ctx.mesh, ctx.broker, ctx.vhost, ledger, tap))

    outcome = run(
        SCENARIOS[scenario],
        database,
        request.getfixturevalue("cluster" if SCENARIOS[scenario].cluster else "broker"),
        private_postgres if database == "postgresql" else None,
        tmp_path,
        Rates(),
        seconds=12,
        afterwards=the_audit_sees_what_goes_wrong,
    )
    report = outcome.as_json()
    assert outcome.count.accepted["cases"] > 0 and outcome.count.accepted["readings"] > 0, report
    assert (report["lost"], report["duplicated"], report["stuck"]) == (0, 0, 0), report
    assert report["recovered"], report
    assert report["internal_or_unknown_answers"] == 0, report
    assert report["client_errors"] == [], report
    if scenario == "node-and-database":
        assert report["notes"]["not_serving_while_database_gone"] == sorted(GRPC_SERVICES), report
    [seen] = recounted
    assert (seen.lost["cases"], seen.lost["records"], seen.lost["readings"]) == (1, 1, 3), seen
    assert seen.duplicated["readings"] == 2, seen


@pytest.mark.timeout(180)
def test_calls_while_postgresql_is_gone_are_unavailable_never_internal(
    private_postgres: PrivatePostgres, tmp_path: Path, amqp_uri: str
) -> None:
    """Before readiness notices that PostgreSQL went away, a call meets a dead connection: that
    is UNAVAILABLE (try again), not INTERNAL (a bug that pages ops). Once the server is back, the
    same process answers again: its pool reconnects by itself."""
    env = ServiceEnv("identity", private_postgres.create_database(), tmp_path, amqp_uri)
    env.migrate()
    api = env.process("api")
    try:
        wait_serving(env.target, "govmesh.identity.v1.IdentityService")
        stub = identity_pb2_grpc.IdentityServiceStub(grpc.insecure_channel(env.target))
        metadata = [("authorization", f"Bearer {env.token('demo-portal')}")]
        someone = new_resident()
        stub.RegisterSubject(
            identity_pb2.RegisterSubjectRequest(identifier=someone, display_name="徐伟"), metadata=metadata, timeout=10
        )

        def resolve() -> grpc.StatusCode:
            try:
                request = identity_pb2.ResolveSubjectRequest(identifier=someone)
                stub.ResolveSubject(request, metadata=metadata, timeout=10)
            except grpc.RpcError as error:
                return error.code()  # type: ignore[no-any-return]
            return grpc.StatusCode.OK

        assert resolve() == grpc.StatusCode.OK
        private_postgres.crash()
        try:
            answers = [resolve() for _ in range(20)]
            # Not ready, yet alive: Kubernetes takes it out of its Service and does not restart it.
            wait_for(lambda: health_status(env.target) == health_pb2.HealthCheckResponse.NOT_SERVING, timeout=10)
            assert health_status(env.target, LIVENESS) == health_pb2.HealthCheckResponse.SERVING
        finally:
            private_postgres.start()
        assert set(answers) == {grpc.StatusCode.UNAVAILABLE}, answers
        wait_for(lambda: resolve() == grpc.StatusCode.OK, timeout=30)
        assert api.popen is not None and api.popen.poll() is None
        assert "bug while handling" not in api.logs()
    finally:
        env.stop_all()
