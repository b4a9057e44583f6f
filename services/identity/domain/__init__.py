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
from services.identity.domain.subject import MAX_DISPLAY_NAME, Subject, display_name

__all__ = [
    "MAX_DISPLAY_NAME",
    "EnterpriseFacts",
    "IdentifierKind",
    "MalformedRequest",
    "Problem",
    "ProblemCode",
    "ResidentFacts",
    "Sex",
    "Subject",
    "Validation",
    "display_name",
    "mask",
    "normalize",
    "subject_pseudonym",
    "validate_identifier",
]
