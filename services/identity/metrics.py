"""Identity's business figures (the api counts them)."""

from __future__ import annotations

from prometheus_client import Counter

VALIDATIONS = Counter(
    "govmesh_identity_validations_total", "Identifiers validated, by kind read and outcome.", ["kind", "valid"]
)
REGISTRATIONS = Counter(
    "govmesh_identity_registrations_total", "RegisterSubject calls, by kind and whether new.", ["kind", "created"]
)
