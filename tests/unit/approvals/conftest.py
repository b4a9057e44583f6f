"""Fixtures of the approvals unit tests: records' real catalogue, as the app layer would pass it
(from ListProofTypes and ListDepartments), and the shipped case types loaded against it."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from services.approvals.domain.casetypes import CaseTypeSpec, ProofTypeInfo, load_case_types
from services.records.domain.catalogue import DEPARTMENT_CODES
from services.records.domain.proofs import PROOF_TYPES
from tests.support.approvals_scenarios import CASE_TYPES_DIR


@pytest.fixture(scope="session")
def catalogue() -> Mapping[str, ProofTypeInfo]:
    return {
        p.code: ProofTypeInfo(
            claim_names=frozenset(p.claim_names),
            parameter_names=frozenset(parameter.name for parameter in p.parameters),
            department_codes=frozenset(p.department_codes),
            subject_kinds=frozenset(kind.value for kind in p.subject_kinds),
        )
        for p in PROOF_TYPES
    }


@pytest.fixture(scope="session")
def departments() -> frozenset[str]:
    return frozenset(DEPARTMENT_CODES)


@pytest.fixture(scope="session")
def case_types(catalogue: Mapping[str, ProofTypeInfo], departments: frozenset[str]) -> dict[str, CaseTypeSpec]:
    return load_case_types(CASE_TYPES_DIR, catalogue, departments)
