"""The records contract's TypedValue (claims of proofs, fields of department records) and plain
Python values, both ways: records stores and signs them, approvals evaluates rules over them."""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any, TypeAlias

from google.protobuf import json_format, timestamp_pb2

from govmesh.records.v1 import records_pb2

#: A value of a TypedValue in Python: dates as date, times as aware datetime, lists and maps.
Value: TypeAlias = str | int | bool | datetime.date | datetime.datetime | list["Value"] | dict[str, "Value"]


class UnreadableValue(ValueError):
    """A TypedValue that cannot be read (e.g. an impossible date); the message names the field."""


def from_proto(value: records_pb2.TypedValue, field: str) -> Value:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "date_value":
        try:
            return datetime.date.fromisoformat(value.date_value)
        except ValueError:
            raise UnreadableValue(f"{field}: {value.date_value[:40]!r} is not an ISO 8601 date (YYYY-MM-DD)") from None
    if kind == "time_value":
        try:
            return value.time_value.ToDatetime(datetime.UTC)
        except (ValueError, OverflowError):
            raise UnreadableValue(f"{field}: is not a valid time") from None
    if kind == "list_value":
        return [from_proto(item, f"{field}[{i}]") for i, item in enumerate(value.list_value.values)]
    if kind == "map_value":
        return fields_from_proto(value.map_value.fields, field + ".")
    raise UnreadableValue(f"{field}: has no value")


def fields_from_proto(fields: Mapping[str, records_pb2.TypedValue], prefix: str = "") -> dict[str, Value]:
    return {name: from_proto(value, prefix + name) for name, value in sorted(fields.items())}


def to_proto(value: Value) -> records_pb2.TypedValue:
    # bool before int: a bool is an int in Python.
    if isinstance(value, bool):
        return records_pb2.TypedValue(bool_value=value)
    if isinstance(value, int):
        return records_pb2.TypedValue(int_value=value)
    if isinstance(value, str):
        return records_pb2.TypedValue(string_value=value)
    if isinstance(value, datetime.datetime):
        typed = records_pb2.TypedValue()
        typed.time_value.FromDatetime(value)
        return typed
    if isinstance(value, datetime.date):
        return records_pb2.TypedValue(date_value=value.isoformat())
    if isinstance(value, list):
        return records_pb2.TypedValue(list_value=records_pb2.TypedValueList(values=[to_proto(v) for v in value]))
    return records_pb2.TypedValue(map_value=records_pb2.TypedValueMap(fields=fields_to_proto(value)))


def fields_to_proto(fields: Mapping[str, Value]) -> dict[str, records_pb2.TypedValue]:
    return {name: to_proto(value) for name, value in fields.items()}


def fields_to_json(fields: Mapping[str, Value]) -> str:
    """Storage form: the proto3 JSON of the fields as a TypedValueMap, exactly as MessageToJson
    writes it (sorted keys, ASCII). Written straight from the values: every stored record and
    case claim is written so, and protobuf's printer was a fifth of a department feed's Python.
    A value the fast writer does not know goes to protobuf, which writes or refuses it."""
    try:
        plain = {"fields": _fields_to_plain(fields)} if fields else {}
    except _NotAsWritten:
        return json_format.MessageToJson(
            records_pb2.TypedValueMap(fields=fields_to_proto(fields)), indent=None, sort_keys=True
        )
    return json.dumps(plain, sort_keys=True)


def _fields_to_plain(fields: Mapping[str, Value]) -> dict[str, Any]:
    return {_text(name): _value_to_plain(value) for name, value in fields.items()}


def _value_to_plain(value: Value) -> dict[str, Any]:
    """One value as MessageToJson writes its TypedValue (to_proto's branches, in its order)."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        if value not in _INT64:
            raise _NotAsWritten
        return {"intValue": str(int(value))}
    if isinstance(value, str):
        return {"stringValue": _text(value)}
    if isinstance(value, datetime.datetime):
        moment = timestamp_pb2.Timestamp()
        moment.FromDatetime(value)
        return {"timeValue": moment.ToJsonString()}
    if isinstance(value, datetime.date):
        return {"dateValue": value.isoformat()}
    if isinstance(value, list):
        return {"listValue": {"values": [_value_to_plain(item) for item in value]} if value else {}}
    if isinstance(value, dict):
        return {"mapValue": {"fields": _fields_to_plain(value)} if value else {}}
    raise _NotAsWritten


def _text(value: object) -> str:
    """A string protobuf takes as it is: of type str and encodable as UTF-8 (no lone surrogate)."""
    if type(value) is not str or not (value.isascii() or _utf8(value)):
        raise _NotAsWritten
    return value


def _utf8(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def fields_from_json(text: str) -> dict[str, Value]:
    """The fields of their storage form (fields_to_json). Read straight from the JSON when it is
    exactly what fields_to_json writes: every proof reads its records' fields, and protobuf's JSON
    parser was a sixth of a proof's Python. Anything else goes through that parser, which reads
    every proto3 JSON spelling and reports what it cannot read, so both give the same answer."""
    try:
        plain = json.loads(text)
        if plain.keys() - {"fields"}:
            raise _NotAsWritten
        return _fields_as_written(plain.get("fields", {}))
    except (_NotAsWritten, ValueError, OverflowError, TypeError, AttributeError):
        return fields_from_proto(json_format.Parse(text, records_pb2.TypedValueMap()).fields)


class _NotAsWritten(Exception):
    """Stored JSON in another form than fields_to_json's."""


_INT64 = range(-(2**63), 2**63)


def _fields_as_written(fields: Any) -> dict[str, Value]:
    if not isinstance(fields, dict):
        raise _NotAsWritten
    return {name: _value_as_written(fields[name]) for name in sorted(fields)}


def _value_as_written(typed: Any) -> Value:
    """One TypedValue as MessageToJson writes it, read as from_proto would; _NotAsWritten (or
    ValueError) for any other form, which the parser then reads or refuses."""
    if not isinstance(typed, dict) or len(typed) != 1:
        raise _NotAsWritten
    [(kind, value)] = typed.items()
    if kind == "stringValue" and isinstance(value, str):
        return value
    if kind == "intValue" and isinstance(value, str):
        number = int(value)
        if str(number) != value or number not in _INT64:  # "007", "1_000", " 5": the parser's call
            raise _NotAsWritten
        return number
    if kind == "boolValue" and isinstance(value, bool):
        return value
    if kind == "dateValue" and isinstance(value, str):
        return datetime.date.fromisoformat(value)
    if kind == "timeValue" and isinstance(value, str):
        moment = timestamp_pb2.Timestamp()
        moment.FromJsonString(value)
        return moment.ToDatetime(datetime.UTC)
    if kind == "listValue" and isinstance(value, dict) and not value.keys() - {"values"}:
        items = value.get("values", [])
        if not isinstance(items, list):
            raise _NotAsWritten
        return [_value_as_written(item) for item in items]
    if kind == "mapValue" and isinstance(value, dict) and not value.keys() - {"fields"}:
        return _fields_as_written(value.get("fields", {}))
    raise _NotAsWritten
