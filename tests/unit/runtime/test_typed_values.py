"""typed_values' storage form: fields_from_json reads what fields_to_json wrote exactly as
protobuf's JSON parser does, and anything else through that parser."""

from __future__ import annotations

import datetime

import pytest
from google.protobuf import json_format
from hypothesis import given
from hypothesis import strategies as st

from govmesh import typed_values as values
from govmesh.records.v1 import records_pb2


def parsed(text: str) -> dict[str, values.Value]:
    """What protobuf's parser makes of the text: the reading fields_from_json must agree with."""
    return values.fields_from_proto(json_format.Parse(text, records_pb2.TypedValueMap()).fields)


FIELDS: dict[str, values.Value] = {
    "name": "Zhang San 张三",
    "empty": "",
    "count": 2**63 - 1,
    "negative": -(2**63),
    "zero": 0,
    "valid": True,
    "revoked": False,
    "issued_on": datetime.date(2020, 2, 29),
    "checked_at": datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.UTC),
    "classes": ["C1", "C2"],
    "nothing": [],
    "address": {"city": "Hangzhou", "since": datetime.date(1999, 1, 1), "floors": [3, {"deep": True}]},
    "no_fields": {},
}


def test_what_fields_to_json_writes_reads_back_as_the_parser_reads_it() -> None:
    text = values.fields_to_json(FIELDS)
    read = values.fields_from_json(text)
    assert read == parsed(text) == FIELDS
    assert list(read) == sorted(FIELDS)  # in name order, as fields_from_proto gives them


@pytest.mark.parametrize(
    "text",
    [
        '{"fields": {"n": {"intValue": 5}}}',  # a number, not the string MessageToJson writes
        '{"fields": {"n": {"intValue": "007"}}}',
        '{"fields": {"n": {"int_value": "5"}}}',  # the proto field's own name
        '{"fields": {"t": {"timeValue": "2024-05-06T15:08:09+08:00"}}}',
        '{"fields": {"l": {"listValue": {"values": [{"boolValue": true}]}}, "s": {"stringValue": "x"}}}',
        "{}",
    ],
)
def test_other_spellings_read_as_the_parser_reads_them(text: str) -> None:
    assert values.fields_from_json(text) == parsed(text)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"fields": {"d": {"dateValue": "2021-02-29"}}}', values.UnreadableValue),
        ('{"fields": {"v": {}}}', values.UnreadableValue),
        ('{"fields": {"n": {"intValue": "9223372036854775808"}}}', json_format.ParseError),
        ('{"fields": {"n": {"stringValue": 5}}}', json_format.ParseError),
        ('{"fields": {"n": {"stringValue": "a", "boolValue": true}}}', json_format.ParseError),
        ("not json", json_format.ParseError),
    ],
)
def test_what_the_parser_refuses_is_refused_the_same_way(text: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        parsed(text)
    with pytest.raises(error):
        values.fields_from_json(text)


def printed(fields: dict[str, values.Value]) -> str:
    """What protobuf's printer writes: the storage form fields_to_json must equal, byte for byte."""
    return json_format.MessageToJson(
        records_pb2.TypedValueMap(fields=values.fields_to_proto(fields)), indent=None, sort_keys=True
    )


def test_fields_to_json_writes_what_protobufs_printer_writes() -> None:
    assert values.fields_to_json(FIELDS) == printed(FIELDS)
    assert values.fields_to_json({}) == printed({}) == "{}"


_names = st.text(max_size=8)
_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(max_size=12),
    st.dates(),
    st.datetimes(timezones=st.just(datetime.UTC)),
    st.datetimes(),  # naive: protobuf takes it as UTC
)
_values = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_names, inner, max_size=3), max_leaves=8
)


@given(st.dictionaries(_names, _values, max_size=5))
def test_any_fields_are_written_as_protobuf_writes_them(fields: dict[str, values.Value]) -> None:
    assert values.fields_to_json(fields) == printed(fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"n": 2**63},  # beyond int64
        {"s": "\ud800"},  # a lone surrogate: not UTF-8
        {"\udfff": "x"},
        {"t": ("a", "b")},  # not a Value
    ],
)
def test_what_the_writer_does_not_know_protobuf_writes_or_refuses(fields: dict[str, values.Value]) -> None:
    try:
        expected: str | type[Exception] = printed(fields)
    except Exception as error:  # noqa: BLE001 - whatever protobuf raises, the writer must raise too
        expected = type(error)
    if isinstance(expected, str):
        assert values.fields_to_json(fields) == expected
    else:
        with pytest.raises(expected):
            values.fields_to_json(fields)
