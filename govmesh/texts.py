"""Free text a service keeps (references, request ids, reasons, notes, names): it goes into
databases, signed proofs, events and logs, so it is bounded, has no control or invisible
formatting characters (PostgreSQL refuses NUL, logs must stay one line, and a bidi override
makes a signed text read as something else) and never holds an identity number or credit code
(docs/decisions/runtime-no-control-characters.md)."""

from __future__ import annotations

import unicodedata

from govmesh.errors import InvalidArgument
from govmesh.privacy import contains_identifier

#: Longest display name of a subject, after white space is collapsed.
MAX_DISPLAY_NAME = 200

#: Unicode categories never kept: controls (Cc: C0, DEL, C1), format characters (Cf: bidi
#: embeddings, overrides and isolates, zero-width characters, the soft hyphen, the BOM, ...),
#: and the line and paragraph separators (Zl, Zp).
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
#: Format characters that are part of how a script is written, so a name may need them: the
#: zero-width non-joiner and joiner (Uyghur and Persian in Arabic script, Indic scripts, emoji).
#: They join or part letters; they cannot reorder text or hide one name behind another.
_JOINERS = frozenset({"\u200c", "\u200d"})


def control_problem(value: str, *, multiline: bool = False) -> str | None:
    """Why ``value`` holds a character that may not be kept, naming the first one by code point
    and position (never the text), or None. ``multiline`` allows newline and tab, nothing else."""
    if value.isprintable():  # the common case: no control, format or separator character at all
        return None
    for position, char in enumerate(value, 1):
        if (multiline and char in "\n\t") or char in _JOINERS:
            continue
        category = unicodedata.category(char)
        if category in _REFUSED_CATEGORIES:
            kind = "a control character" if category == "Cc" else "an invisible formatting character"
            return f"must not contain {kind} (U+{ord(char):04X} at character {position})"
    return None


def text_problem(value: str, max_length: int, *, multiline: bool = False) -> str | None:
    """Why ``value`` may not be kept, or None. ``multiline`` allows newlines and tabs (notes)."""
    if len(value) > max_length:
        return f"is longer than {max_length} characters"
    problem = control_problem(value, multiline=multiline)
    if problem:
        return problem
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


def display_name(raw: str, field: str, *, required: bool = True) -> str:
    """A subject's name as it is kept: runs of white space collapsed to one space and the ends trimmed.
    INVALID_ARGUMENT naming ``field`` when it holds a control or formatting character (tabs and
    newlines included: a name is one line), is too long, holds an identity number or credit code
    (a sender that put the number in the name field), or is empty while ``required``; an
    empty name is "" otherwise. Identity and records both read names with it."""
    problem = control_problem(raw)
    if problem:
        raise InvalidArgument(field, "INVALID", problem)
    name = " ".join(raw.split())
    if not name:
        if required:
            raise InvalidArgument(field, "EMPTY", "must not be empty")
        return name
    if len(name) > MAX_DISPLAY_NAME:
        raise InvalidArgument(field, "TOO_LONG", f"is {len(name)} characters; at most {MAX_DISPLAY_NAME}")
    if contains_identifier(name):  # a name is shown to whoever resolves the subject: no number in it
        raise InvalidArgument(field, "INVALID", "must not contain an identity number or credit code")
    return name
