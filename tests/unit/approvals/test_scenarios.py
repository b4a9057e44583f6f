"""Every approvals scenario (tests/support/approvals_scenarios.py) proved in-process, the way the mesh
would decide it, with no service started: each record checked and stored as records does it,
each proof's claims derived by records' own code with the proof parameters the case type asks
for, read back as approvals reads a proof, and the case type's rules evaluated over them. So
the end-to-end tests' data is known to be right, and a failure there is the services'."""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Mapping

import pytest

from govmesh import typed_values as values
from govmesh.clock import shanghai_date
from services.approvals.domain.casetypes import CaseTypeSpec, validate_parameters
from services.approvals.domain.rules import APPLICANT, RuleResult, Value, evaluate
from services.identity.domain import validate_identifier
from services.records.domain import proofs
from tests.support.approvals_scenarios import Scenario, accepted, scenarios

TODAY = shanghai_date()
SCENARIOS = scenarios(TODAY)
# Leap days, the seed story's date, a year's last day: the data must hold on any day.
OTHER_DAYS = [
    datetime.date(2019, 7, 9),
    datetime.date(2024, 2, 29),
    datetime.date(2025, 3, 1),
    datetime.date(2031, 12, 31),
]


def decide(scenario: Scenario, spec: CaseTypeSpec, today: datetime.date) -> tuple[RuleResult, ...]:
    """The rule results of ``scenario``'s case with its proofs derived on ``today``."""
    parameters = validate_parameters(spec, scenario.parameters)
    stored: defaultdict[str, list[proofs.StoredRecord]] = defaultdict(list)
    for record in scenario.records:
        stored[record.subject_identifier].append(accepted(record, today))
    claims: dict[tuple[str, str], Mapping[str, Value]] = {}
    for required in spec.proofs:
        subject = scenario.applicant if required.subject == APPLICANT else parameters[required.subject]
        # GetProof is NOT_FOUND for a subject identity does not know, and records registers a
        # subject when a department first publishes about it.
        assert subject in stored, f"no record about the {required.subject} of {required.proof_type}"
        proof_type = proofs.proof_type(required.proof_type)
        assert proof_type is not None
        request = proofs.resolve_parameters(proof_type, required.request_parameters(parameters))
        sources = [r for r in stored[subject] if (r.department_code, r.record_type) in proof_type.source_record_types]
        derived = proofs.derive_claims(proof_type, sources, request, today)
        # Approvals reads the claims from the signed proof's TypedValues.
        claims[(required.proof_type, required.subject)] = values.fields_from_proto(values.fields_to_proto(derived))
    return evaluate(spec, claims, parameters)


def check(scenario: Scenario, case_types: Mapping[str, CaseTypeSpec], today: datetime.date) -> None:
    results = decide(scenario, case_types[scenario.case_type], today)
    failed = {r.rule_id: r.message_en for r in results if not r.passed}
    assert set(failed) == scenario.failing_rules, (today, failed)
    # Each failure is what the evidence says, never a proof or claim that is missing.
    assert not [r.rule_id for r in results if r.evidence_missing], (today, failed)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=Scenario.id)
def test_the_case_is_decided_as_the_scenario_says(scenario: Scenario, case_types: Mapping[str, CaseTypeSpec]) -> None:
    check(scenario, case_types, TODAY)


@pytest.mark.parametrize("today", OTHER_DAYS, ids=str)
def test_the_scenarios_hold_on_any_day(today: datetime.date, case_types: Mapping[str, CaseTypeSpec]) -> None:
    for scenario in scenarios(today):
        check(scenario, case_types, today)


def test_every_case_type_has_a_qualifying_scenario_and_one_per_rule(case_types: Mapping[str, CaseTypeSpec]) -> None:
    names: defaultdict[str, list[str]] = defaultdict(list)
    for scenario in SCENARIOS:
        names[scenario.case_type].append(scenario.name)
        spec = case_types[scenario.case_type]
        assert scenario.name == "qualifies" or spec.rule(scenario.name) is not None, scenario.id()
        assert scenario.name in scenario.failing_rules or scenario.name == "qualifies", scenario.id()
        kind = validate_identifier(scenario.applicant, TODAY).kind
        assert kind is not None and kind.value == spec.applicant_kind.value, scenario.id()
    for code, spec in case_types.items():
        assert sorted(names[code]) == sorted(["qualifies", *(rule.rule_id for rule in spec.rules)]), code


def test_scenarios_share_no_subject_or_source_reference() -> None:
    owners: dict[str, str] = {}
    references: set[tuple[str, str]] = set()
    for scenario in SCENARIOS:
        subjects = {scenario.applicant, *(r.subject_identifier for r in scenario.records)}
        for subject in subjects:
            assert owners.setdefault(subject, scenario.id()) == scenario.id(), (owners[subject], scenario.id())
        for record in scenario.records:
            key = (record.department_code, record.source_reference)
            assert key not in references, key
            references.add(key)
    units = [s.parameters["property_unit"] for s in SCENARIOS if "property_unit" in s.parameters]
    assert len(set(units)) == len(units)


def test_scenarios_are_repeatable() -> None:
    assert scenarios(TODAY) == SCENARIOS
