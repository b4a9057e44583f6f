"""Free text a service keeps (references, request ids, reasons, notes): it goes into databases,
signed proofs, events and logs, so it is bounded, has no control characters (PostgreSQL refuses
NUL, logs must stay one line) and never holds an identity number or credit code."""

from __future__ import annotations

from govmesh.errors import InvalidArgument
from govmesh.privacy import contains_identifier


def text_problem(value: str, max_length: int, *, multiline: bool = False) -> str | None:
    """Why ``value`` may not be kept, or None. ``multiline`` allows newlines and tabs (notes)."""
    if len(value) > max_length:
        return f"is longer than {max_length} characters"
    allowed = "\n\t" if multiline else ""
    if any((ord(c) < 32 and c not in allowed) or 0x7F <= ord(c) < 0xA0 for c in value):
        return "must not contain control characters"
    if contains_identifier(value):
        return "must not contain an identity number or credit code"
    return None


def checked_text(value: str, field: str, max_length: int, *, required: bool = False, multiline: bool = False) -> str:
    """``value`` when it may be kept; INVALID_ARGUMENT naming ``field`` and the reason if not."""
    if not value:
        if required:
            raise InvalidArgument(field, "MISSING", "is required")
        return value
    problem = text_problem(value, max_length, multiline=multiline)
    if problem:
        reason = "TOO_LONG" if problem.startswith("is longer") else "INVALID"
        raise InvalidArgument(field, reason, problem)
    return value
