"""What a submission must satisfy before it becomes a case: its parameters, the kinds of its
parties, the values it holds, and the fingerprint a retried request id is checked against."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Final

from govmesh.errors import InvalidArgument
from govmesh.parameters import ParameterError
from services.approvals.domain.casetypes import ApplicantKind, CaseTypeSpec, ProofTypeInfo, validate_parameters

#: How an error names the identifier a party of each kind has.
IDENTIFIER_OF_KIND: Final = {
    "resident": "a resident identity number",
    "enterprise": "an enterprise's unified social credit code",
}


def parameters(spec: CaseTypeSpec, given: Mapping[str, str]) -> dict[str, str]:
    """The case's parameters, normalized; INVALID_ARGUMENT naming ``parameters.<name>``."""
    try:
        return validate_parameters(spec, given)
    except ParameterError as exc:
        raise InvalidArgument(f"parameters.{exc.parameter}", "INVALID_PARAMETER", exc.reason) from None


def check_applicant(spec: CaseTypeSpec, field: str, kind: ApplicantKind | None) -> None:
    if kind is not spec.applicant_kind:
        raise InvalidArgument(
            field, "WRONG_KIND", f"{spec.code} is for {spec.applicant_kind.value} applicants; this one is not"
        )


def check_party(
    spec: CaseTypeSpec, catalogue: Mapping[str, ProofTypeInfo], parameter: str, kind: ApplicantKind | None
) -> None:
    """The party must be a kind of subject records issues its proofs about: a resident's ID
    number where a criminal record is pulled, an enterprise's credit code where a registration
    is (otherwise records would refuse the proof and the case could never be decided)."""
    kinds: set[str] | None = None
    for proof in spec.proofs:
        info = catalogue.get(proof.proof_type)
        known = None if info is None else info.subject_kinds
        if proof.subject == parameter and known is not None:
            kinds = set(known) if kinds is None else kinds & known
    if kinds is not None and (kind is None or kind.value not in kinds):
        wanted = " or ".join(IDENTIFIER_OF_KIND[k] for k in sorted(kinds)) or "nobody records knows"
        raise InvalidArgument(f"parameters.{parameter}", "WRONG_KIND", f"must be {wanted}")


def holds(spec: CaseTypeSpec, parameters: Mapping[str, str]) -> dict[str, str]:
    """The values the case holds while it is open, by parameter name: "<name>=<value>"."""
    return {name: f"{name}={parameters[name]}" for name in spec.holds}


def fingerprint(case_type: str, subjects: Mapping[str, str], shown: Mapping[str, str]) -> str:
    """What a submission asked, as stored beside its case: the case type, its parties' subject
    ids and its parameters as shown. The formula predates govmesh.idempotency.fingerprint and is
    kept, so a request id retried across an upgrade still replays its case
    (docs/decisions/approvals-submission-fingerprint.md)."""
    content = json.dumps([case_type, dict(subjects), sorted(shown.items())], sort_keys=True)
    return hashlib.sha256(content.encode()).hexdigest()
