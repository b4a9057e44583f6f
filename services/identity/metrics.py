"""Identity's business figures (the api counts them, and the worker its RPC's registrations)."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter

from govmesh.errors import InvalidArgument
from services.identity.domain import Registration, Subject

VALIDATIONS = Counter(
    "govmesh_identity_validations_total", "Identifiers validated, by kind read and outcome.", ["kind", "valid"]
)
REGISTRATIONS = Counter(
    "govmesh_identity_registrations_total",
    "Subjects registered (RegisterSubject calls and RegisterSubjects items), by kind and whether new.",
    ["kind", "created"],
)
# A batch's refused item does not fail the call, so the call's own count would not show it.
REGISTRATIONS_REFUSED = Counter(
    "govmesh_identity_registrations_refused_total",
    "RegisterSubjects items refused, by the item's field and reason.",
    ["field", "reason"],
)


def count_registration(subject: Subject, created: bool) -> None:
    REGISTRATIONS.labels(subject.kind.value, str(created).lower()).inc()


def count_registrations(outcomes: Sequence[Registration | InvalidArgument]) -> None:
    """A batch's registrations and refusals, whichever process (api or worker) answered it."""
    for outcome in outcomes:
        if isinstance(outcome, InvalidArgument):
            REGISTRATIONS_REFUSED.labels(outcome.field, outcome.reason).inc()
        else:
            count_registration(*outcome)
