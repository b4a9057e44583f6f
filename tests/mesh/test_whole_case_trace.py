"""One trace across the mesh, read back without a tracing backend: identity, records and approvals
as real processes writing their spans to files (OTEL_TRACES_EXPORTER=file), a ride-hailing permit
submitted with the portal's traceparent and decided by the saga, then `govmesh trace` as an
operator runs it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from govmesh import clock
from govmesh.approvals.v1 import approvals_pb2 as pb
from tests.support.approvals_mesh import Approvals, publish, start_mesh
from tests.support.approvals_scenarios import scenarios
from tests.support.mesh import (
    Integrator,
    ServiceEnv,
    assert_no_raw_identifiers,
    govmesh,
    virtual_host,
)


def _walk(node: dict[str, Any], parent: dict[str, Any] | None = None) -> Iterator[tuple[dict[str, Any], Any]]:
    yield node, parent
    for child in node["children"]:
        yield from _walk(child, node)


def test_one_trace_follows_a_case_from_submission_to_its_decision(tmp_path: Path) -> None:
    scenario = next(
        s
        for s in scenarios(clock.shanghai_date())
        if s.case_type == "ride_hailing_driver_permit" and not s.failing_rules
    )
    trace_dir = tmp_path / "traces"
    with virtual_host() as amqp:
        env = ServiceEnv(
            "approvals", f"sqlite:///{tmp_path / 'service.db'}", tmp_path, amqp, others=("identity", "records")
        )
        env.env |= {"OTEL_TRACES_EXPORTER": "file", "OTEL_TRACES_FILE_DIR": str(trace_dir)}
        try:
            start_mesh(env, amqp)
            publish(env, list(scenario.records))
            decided = Integrator(amqp, "approvals.events", "case_decided")
            approvals = Approvals(env)
            trace_id, portal_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
            submitted = approvals.stub.SubmitCase(
                pb.SubmitCaseRequest(
                    case_type=scenario.case_type,
                    applicant_identifier=scenario.applicant,
                    parameters=scenario.parameters,
                    request_id=str(uuid.uuid4()),
                ),
                metadata=[*approvals.metadata, ("traceparent", f"00-{trace_id}-{portal_span}-01")],
                timeout=10,
            )
            case = approvals.wait_final(submitted.case.case_id)
            assert case.state == pb.CASE_STATE_APPROVED, case.decision.message_en
            events = [m for m in decided.receive(1) if m[1].headers["ce-subject"] == case.applicant_subject_id]
            assert len(events) == 1
            decided.close()
        finally:
            # Spans still in a process's batch are written as it exits: SIGTERM, as an operator stops it.
            env.stop_all()
    assert all(p.popen is not None and p.popen.returncode == 0 for p in env.processes), env.all_output()

    ran = govmesh("trace", trace_id, "--dir", str(trace_dir), "--json", env=env.env)
    assert ran.returncode == 0, ran.stderr
    tree = json.loads(ran.stdout)
    assert tree["trace_id"] == trace_id
    [root] = tree["roots"]
    spans = list(_walk(root))
    assert len(spans) == tree["span_count"]

    # The portal's own span is not in any file: the call it made is the root, saying so.
    assert root["process"] == "approvals-api" and root["name"].endswith("/SubmitCase")
    assert root["parent_span_id"] == portal_span and not root["parent_recorded"]
    assert all(span["parent_recorded"] and span["parent_span_id"] == parent["span_id"] for span, parent in spans[1:])

    def one(process: str, name: str, under: dict[str, Any]) -> dict[str, Any]:
        found = [span for span, _ in _walk(under) if span["process"] == process and span["name"] == name]
        assert len(found) == 1, (process, name, [(s["process"], s["name"]) for s, _ in spans])
        return found[0]

    one("identity-api", "/govmesh.identity.v1.IdentityService/ResolveSubject", root)
    published = one("approvals-worker", "approvals.events case_submitted publish", root)
    handled = one("approvals-worker", "govmesh/approvals on_case_submitted process", published)
    # A case's proofs in one call to records' worker (get_proofs), each proof read under it.
    proofs = [span for span, _ in _walk(handled) if span["name"] == "records.get_proofs"]
    assert proofs and all(span["process"] == "records-worker" for span in proofs)
    assert all(span["status"] != "ERROR" for span in proofs)
    resolved = [span for proof in proofs for span, _ in _walk(proof) if span["name"] == "identity.resolve_subject"]
    assert resolved and all(span["process"] == "identity-worker" for span in resolved)
    decision = one("approvals-worker", "approvals.events case_decided publish", handled)
    # The event an integrator received names the publication's span as its parent.
    assert events[0][1].headers["traceparent"] == f"00-{trace_id}-{decision['span_id']}-01"

    shown = govmesh("trace", trace_id, "--dir", str(trace_dir), env=env.env)
    assert shown.returncode == 0, shown.stderr
    assert "(parent not recorded)" in shown.stdout.splitlines()[1]
    assert "case_decided publish  [approvals-worker]" in shown.stdout

    files = sorted(trace_dir.glob("*.jsonl"))
    assert {f.name for f in files} >= {
        f"{s}-{k}-0.jsonl" for s in ("identity", "records", "approvals") for k in ("api", "worker")
    }
    for file in files:
        text = file.read_text(encoding="utf-8")
        assert scenario.applicant not in text, file.name
        assert_no_raw_identifiers(text, file.name)
