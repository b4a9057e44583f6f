"""Identity's domain: identifier validation and pseudonyms (identifiers.py), and the subject
(subject.py). Plain Python: no framework, no I/O, no logging."""

from services.identity.domain.identifiers import (
    EnterpriseFacts,
    IdentifierKind,
    MalformedRequest,
    Problem,
    ProblemCode,
    ResidentFacts,
    Sex,
    Validation,
    mask,
    normalize,
    subject_pseudonym,
    validate_identifier,
)
from services.identity.domain.subject import Registration, Subject

__all__ = [
    "EnterpriseFacts",
    "IdentifierKind",
    "MalformedRequest",
    "Problem",
    "ProblemCode",
    "Registration",
    "ResidentFacts",
    "Sex",
    "Subject",
    "Validation",
    "mask",
    "normalize",
    "subject_pseudonym",
    "validate_identifier",
]
