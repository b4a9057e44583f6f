"""Where raw identifiers hide: the shapes of resident ID numbers and unified social credit
codes in free text, to mask them (logs, spans, errors) or refuse them (fields that must never
carry one). Plain Python: domain code uses it too."""

from __future__ import annotations

import re
import unicodedata
from typing import Final

# Full-width digits and letters count too: identity accepts them, so they can arrive in input
# that somebody logs before it is normalised.
_DIGIT: Final = "0-9\uff10-\uff19"
_ALNUM: Final = "0-9A-Za-z\uff10-\uff19\uff21-\uff3a\uff41-\uff5a"
# GB 32100 alphabet: digits and capitals without I, O, Z, S, V.
_USCC_LETTER: Final = "A-HJ-NPQRTUWXY"

# A candidate stands alone: no ASCII (or full-width) letter or digit right before or after it.
# That is a "word boundary" that also holds next to Chinese characters (which `\b` counts as word
# characters), and it keeps 15 or 18 characters out of a longer run such as a hex trace id or a
# 40-digit number from being taken for an identifier.
# Nor is it the fraction of a decimal number (a metric's 0.030565123456780208).
_BODY: Final = (
    rf"(?:[{_DIGIT}]{{17}}[{_DIGIT}Xx\uff38\uff58]"  # resident ID, 18
    rf"|(?=[{_USCC_LETTER}]{{0,17}}[0-9])[0-9{_USCC_LETTER}]{{18}}"  # USCC, at least one digit
    rf"|[{_DIGIT}]{{15}})"  # resident ID, legacy 15
    rf"(?![{_ALNUM}])"
)
_IDENTIFIER_RE: Final = re.compile(rf"(?<![{_ALNUM}])(?<![0-9]\.){_BODY}")
# Nor does a letter or digit that ends an escape count: repr() and JSON write a control character
# as \t, \x00 or \u0000, and the identifier typed right after it is still one. A pattern of its
# own, tried only on text with a backslash: on every log line it cost 70% more.
_ESCAPED_IDENTIFIER_RE: Final = re.compile(
    r"(?:(?<=\\[abfnrtv0])|(?<=\\x[0-9a-fA-F]{2})|(?<=\\u[0-9a-fA-F]{4})|(?<=\\U[0-9a-fA-F]{8}))" + _BODY
)
# Cheap pre-check: without a run of 15 letters or digits there is nothing to mask.
_CANDIDATE_RE: Final = re.compile(rf"[{_ALNUM}]{{15}}")


def _masked(match: re.Match[str]) -> str:
    found = match.group(0)
    return found[:6] + "*" * (len(found) - 10) + found[-4:]


def mask_identifiers(text: str) -> str:
    """Return `text` with every resident ID number and USCC replaced by its masked form.

    18 characters become first 6 + "********" + last 4 (330106********123X), 15 digits become
    first 6 + "*****" + last 4. A candidate must not touch another letter or digit, so longer
    alphanumeric runs (hex trace ids, long numbers, UUID parts) are left alone. Returns `text`
    itself when there is nothing to mask.
    """
    if len(text) < 15 or _CANDIDATE_RE.search(text) is None:
        return text
    masked = _IDENTIFIER_RE.sub(_masked, text)
    return _ESCAPED_IDENTIFIER_RE.sub(_masked, masked) if "\\" in masked else masked


# A resident ID number written in groups ("330106 19900101 123X", "330106-1990..."): 18
# characters with single spaces or hyphens between them. People write resident numbers that way.
_SPACED_RESIDENT_RE: Final = re.compile(r"(?<![0-9A-Za-z])[0-9](?:[ \-]?[0-9]){16}[ \-]?[0-9Xx](?![0-9A-Za-z])")


def contains_identifier(text: str) -> bool:
    """True when `text` holds something shaped like a resident ID number or a credit code, also
    when written in groups. Shape only, no check digits: a mistyped identifier is still personal
    data."""
    folded = unicodedata.normalize("NFKC", text)
    if len(folded) < 15:  # the shortest identifier (legacy resident numbers)
        return False
    return bool(
        _IDENTIFIER_RE.search(folded)
        or _SPACED_RESIDENT_RE.search(folded)
        or ("\\" in folded and _ESCAPED_IDENTIFIER_RE.search(folded))
    )


# A URI's user information with a password (amqp://user:password@host, postgresql://...): a log
# line that names a broker or database must not carry the secret. Libraries mask the first URI of
# a list at best (kombu's failover list "amqp://a;amqp://b" kept the others' passwords).
_URI_PASSWORD_RE: Final = re.compile(r"(?<=://)([^:/@\s;]*):([^@\s;/]+)@")


def mask_credentials(text: str) -> str:
    """Return `text` with the password of every URI in it replaced by asterisks."""
    if "://" not in text or "@" not in text:
        return text
    return _URI_PASSWORD_RE.sub(lambda m: f"{m.group(1)}:********@" if m.group(2) != "********" else m.group(0), text)
