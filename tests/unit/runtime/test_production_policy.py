"""The production policy (deploy/kustomize/prod/generated/policy.yaml: policy/dev.yaml without the
all-rights demo portal) leaves no method of the mesh without a caller, and gives no caller a
wildcard beyond what it needs: without the demo portal, nothing else stands in for a citizen."""

from __future__ import annotations

from pathlib import Path

import pytest

from govmesh import auth
from govmesh.approvals.v1 import approvals_pb2
from govmesh.crowd.v1 import crowd_pb2
from govmesh.health.v1 import medical_credit_pb2
from govmesh.identity.v1 import identity_pb2
from govmesh.records.v1 import records_pb2

ROOT = Path(__file__).resolve().parents[3]
PRODUCTION = ROOT / "deploy" / "kustomize" / "prod" / "generated" / "policy.yaml"
CONTRACTS = (identity_pb2, records_pb2, approvals_pb2, medical_credit_pb2, crowd_pb2)
#: What only a hospital's own system does: acting for every hospital with one of these would let a
#: caller treat (and bill) patients anywhere.
HOSPITAL_COUNTER = tuple(
    f"govmesh.health.v1.MedicalCreditService/{m}" for m in ("OpenVisit", "AddCharge", "CloseVisit")
)


@pytest.fixture(scope="module")
def production() -> auth.Policy:
    return auth.Policy.load(PRODUCTION)


def every_method() -> list[str]:
    methods = [
        f"{service.full_name}/{method.name}"
        for contract in CONTRACTS
        for service in contract.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    ]
    assert len({m.split("/")[0] for m in methods}) == 5, methods
    return methods


def test_every_method_of_every_service_has_a_caller_in_production(production: auth.Policy) -> None:
    assert "demo-portal" not in production.callers
    uncalled = [m for m in every_method() if not any(c.may_call(f"/{m}") for c in production.callers.values())]
    assert uncalled == []


def test_no_production_caller_holds_a_wildcard_it_does_not_need(production: auth.Policy) -> None:
    for caller in production.callers.values():
        assert "*" not in caller.rights, caller.caller_id
        assert "*" not in caller.publishes, caller.caller_id
        assert all(t != "*" and "*" not in purposes for t, purposes in caller.proofs), caller.caller_id
        if "*" in caller.hospitals:
            # The portal reads a patient's bills wherever they were treated; it treats no one.
            assert not [m for m in HOSPITAL_COUNTER if caller.may_call(f"/{m}")], caller.caller_id
    # A whole service only for the two registrars, who need every identity method (registering
    # residents, enterprises, in batches, and resolving them); anyone else names its methods.
    whole = {(c.caller_id, r) for c in production.callers.values() for r in c.rights if r.endswith("/*")}
    identity = "govmesh.identity.v1.IdentityService/*"
    assert whole == {("public_security", identity), ("market_regulation", identity)}


def test_the_citizen_portal_and_the_counter_act_for_people_not_for_departments_or_hospitals(
    production: auth.Policy,
) -> None:
    portal, counter = production.callers["zhelibao"], production.callers["service-window-hangzhou"]
    submitting = ("SubmitCase", "GetCase", "ListCases", "WatchCase", "CancelCase")
    for method in submitting:
        assert portal.may_call(f"/govmesh.approvals.v1.ApprovalsService/{method}"), method
        assert counter.may_call(f"/govmesh.approvals.v1.ApprovalsService/{method}"), method
    assert portal.may_call("/govmesh.health.v1.MedicalCreditService/PayBill")
    never = [
        "govmesh.approvals.v1.ApprovalsService/ListReviewTasks",
        "govmesh.approvals.v1.ApprovalsService/CompleteReviewTask",
        "govmesh.records.v1.RecordsService/PublishRecords",
        "govmesh.records.v1.RecordsService/GetProof",
        "govmesh.identity.v1.IdentityService/RegisterSubject",
        "govmesh.identity.v1.IdentityService/ResolveSubject",
        *HOSPITAL_COUNTER,
    ]
    assert [m for m in never if portal.may_call(f"/{m}") or counter.may_call(f"/{m}")] == []
    assert not portal.publishes and not portal.proofs and not counter.hospitals
    # The data tracker is the citizen's: read through the portal they sign in to, by no one else.
    tracker = "/govmesh.records.v1.RecordsService/ListAccesses"
    assert {c.caller_id for c in production.callers.values() if c.may_call(tracker)} == {"zhelibao"}
