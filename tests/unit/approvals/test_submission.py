"""What a submission must satisfy before it becomes a case (services/approvals/domain/submission.py)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from govmesh.errors import InvalidArgument
from services.approvals.domain import submission
from services.approvals.domain.casetypes import ApplicantKind, CaseTypeSpec, ProofTypeInfo


def test_the_fingerprint_of_a_submission_keeps_its_stored_formula() -> None:
    # Cases stored before govmesh.idempotency carry this digest; a retry of their request id must
    # still replay the case, so the formula may never change (key order does not matter).
    subjects = {"seller_identifier": "sub_b", "applicant": "sub_a"}
    shown = {"seller_identifier": "330681********123X", "price_fen": "216875000"}
    assert (
        submission.fingerprint("second_hand_housing_transfer", subjects, shown)
        == "7be2d5045f7e2382444de267fe56702fbf547341c22fbc12c35175f10031c770"
    )
    assert submission.fingerprint("second_hand_housing_transfer", subjects, {**shown, "price_fen": "1"}) != (
        submission.fingerprint("second_hand_housing_transfer", subjects, shown)
    )


def test_a_party_must_be_the_kind_its_proofs_are_about(
    case_types: Mapping[str, CaseTypeSpec], catalogue: Mapping[str, ProofTypeInfo]
) -> None:
    guide = case_types["tour_guide_licence"]
    submission.check_party(guide, catalogue, "employer_identifier", ApplicantKind.ENTERPRISE)
    for kind in (ApplicantKind.RESIDENT, None):
        with pytest.raises(InvalidArgument) as refused:
            submission.check_party(guide, catalogue, "employer_identifier", kind)
        assert (
            str(refused.value) == "parameters.employer_identifier: must be an enterprise's unified social credit code"
        )


def test_the_applicant_must_be_the_kind_the_case_type_is_for(case_types: Mapping[str, CaseTypeSpec]) -> None:
    licence = case_types["business_licence_change"]
    submission.check_applicant(licence, "applicant_identifier", ApplicantKind.ENTERPRISE)
    with pytest.raises(InvalidArgument) as refused:
        submission.check_applicant(licence, "applicant_identifier", ApplicantKind.RESIDENT)
    assert str(refused.value).startswith("applicant_identifier: business_licence_change is for enterprise applicants")


def test_parameters_are_refused_naming_the_parameter(case_types: Mapping[str, CaseTypeSpec]) -> None:
    housing = case_types["second_hand_housing_transfer"]
    with pytest.raises(InvalidArgument) as refused:
        submission.parameters(housing, {"price_fen": "-5"})
    assert str(refused.value).startswith("parameters.")


def test_a_case_holds_the_values_its_type_names(case_types: Mapping[str, CaseTypeSpec]) -> None:
    housing = case_types["second_hand_housing_transfer"]
    assert submission.holds(housing, {"property_unit": "U1", "price_fen": "5"}) == {"property_unit": "property_unit=U1"}
    assert submission.holds(case_types["tour_guide_licence"], {"employer_identifier": "x"}) == {}
