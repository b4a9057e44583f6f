"""Named string parameters checked against their declarations: a proof type's parameters in
records, a case type's in approvals. Plain Python: domain code uses it."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final, Protocol

_NAME_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")


class ParameterError(ValueError):
    """A parameter is unknown, missing or bad: ``parameters.<name>: <reason>``.

    The reason never repeats the value given (it may be anything, an identifier included)."""

    def __init__(self, parameter: str, reason: str) -> None:
        super().__init__(f"parameters.{parameter}: {reason}")
        self.parameter = parameter
        self.reason = reason

    @property
    def name(self) -> str:
        return self.parameter


class Declared(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def required(self) -> bool: ...
    @property
    def default(self) -> str: ...
    @property
    def description_en(self) -> str: ...
    def parse(self, raw: str) -> str: ...


def resolve(
    owner: str, declared: Sequence[Declared], given: Mapping[str, str], *, missing_names_owner: bool = False
) -> dict[str, str]:
    """The parameters normalized, with defaults applied; ParameterError names the first unknown,
    missing or malformed one. An empty or blank value counts as not given (proto3 cannot tell
    them apart); an optional parameter without default that is not given is left out."""
    known = {p.name: p for p in declared}
    for name in given:
        if name not in known:
            shown = name if isinstance(name, str) and _NAME_RE.fullmatch(name) else "<invalid name>"
            takes = ", ".join(known) if known else "no parameters"
            raise ParameterError(shown, f"is not a parameter of {owner} (it takes {takes})")
    resolved: dict[str, str] = {}
    for parameter in declared:
        raw = given.get(parameter.name, "")
        if not isinstance(raw, str):
            raise ParameterError(parameter.name, "must be a string")
        if not raw.strip():
            if parameter.required:
                where = f" for {owner}" if missing_names_owner else ""
                raise ParameterError(parameter.name, f"is required{where} ({parameter.description_en})")
            if not parameter.default:
                continue
            raw = parameter.default
        resolved[parameter.name] = parameter.parse(raw)
    return resolved
