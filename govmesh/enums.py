"""Contract enums and domain enums, mapped by name.

Domain modules define their own enums (no protobuf import there) whose member names are the
contract's value names without the enum's prefix (RESPONSE_LEVEL_III <-> Level.III); the app
layers translate with these two functions, so a value added to one side and not the other is
caught where it is used rather than silently mapped to something else."""

from __future__ import annotations

import enum
from typing import Any, TypeVar

E = TypeVar("E", bound=enum.Enum)


def from_proto(domain_enum: type[E], proto_enum: Any, prefix: str, value: int) -> E | None:
    """The domain member for a contract value; None for UNSPECIFIED or a value no member names
    (the caller's validation says which field)."""
    try:
        name = proto_enum.Name(value)
    except ValueError:
        return None
    return domain_enum.__members__.get(name.removeprefix(prefix))


def to_proto(proto_enum: Any, prefix: str, member: enum.Enum) -> int:
    """The contract value for a domain member (ValueError when the contract has no such value)."""
    return int(proto_enum.Value(f"{prefix}{member.name}"))
