"""The event catalogue (docs/events.asyncapi.yaml) is generated from the protos, is up to date, lists
every event, and shows no raw identifier on any `<service>.events` channel."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from govmesh.config import ROOT
from govmesh.messaging import routing_key_for

SERVICES = ("identity", "records", "approvals", "health", "crowd")
# JSON names that would hold a raw resident identity number or credit code (masked ones are fine).
RAW_IDENTIFIER = re.compile(r"^(identifier|idNumber|idCard|idCardNumber|identityNumber|creditCode)$|[a-z]Identifier$")


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("govmesh_asyncapi_script", ROOT / "scripts" / "asyncapi.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    return load_generator()


@pytest.fixture(scope="module")
def document(generator: ModuleType) -> dict[str, Any]:
    built: dict[str, Any] = generator.build()
    return built


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow `$ref` (and the `allOf: [$ref]` used to describe a referenced field)."""
    while True:
        if "$ref" in schema:
            node: Any = document
            for part in schema["$ref"].removeprefix("#/").split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
            schema = node
        elif "allOf" in schema and len(schema["allOf"]) == 1:
            schema = schema["allOf"][0]
        else:
            return schema


def payload(document: dict[str, Any], channel: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """The payload schema of the channel's message (the one named, when it carries several)."""
    (message,) = channel["messages"].values() if name is None else [channel["messages"][name]]
    return resolve(document, resolve(document, message)["payload"])


def channel_for(document: dict[str, Any], exchange: str, address: str) -> dict[str, Any]:
    found = [
        c
        for c in document["channels"].values()
        if c["bindings"]["amqp"]["exchange"]["name"] == exchange and c["address"] == address
    ]
    assert len(found) == 1, f"expected one channel for {exchange} / {address}, found {len(found)}"
    return found[0]


def property_names(document: dict[str, Any], schema: dict[str, Any], seen: set[str]) -> Iterator[str]:
    """Every property name of a schema and of the schemas it reaches."""
    if "$ref" in schema:
        if schema["$ref"] in seen:
            return
        seen.add(schema["$ref"])
    schema = resolve(document, schema)
    for name, sub in schema.get("properties", {}).items():
        yield name
        yield from property_names(document, sub, seen)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from property_names(document, schema[key], seen)


def test_the_committed_catalogue_is_up_to_date(generator: ModuleType, document: dict[str, Any]) -> None:
    committed = (ROOT / "docs" / "events.asyncapi.yaml").read_text(encoding="utf-8")
    assert committed == generator.render(document), "docs/events.asyncapi.yaml is stale: run scripts/asyncapi.py"
    assert yaml.safe_load(committed) == document
    assert generator.main(["--check"]) == 0


def test_the_output_is_stable(generator: ModuleType, document: dict[str, Any]) -> None:
    assert generator.render(generator.build()) == generator.render(document)


def test_check_fails_on_a_stale_catalogue(
    generator: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "docs" / "events.asyncapi.yaml"
    stale.parent.mkdir()
    stale.write_text("asyncapi: 3.0.0\n", encoding="utf-8")
    monkeypatch.setattr(generator, "OUTPUT", stale)
    assert generator.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "events.asyncapi.yaml is stale" in err and "scripts/asyncapi.py" in err
    assert stale.read_text(encoding="utf-8") == "asyncapi: 3.0.0\n"  # --check never writes


def test_subject_registered_is_described_from_the_proto(document: dict[str, Any]) -> None:
    assert document["asyncapi"] == "3.0.0"
    channel = channel_for(document, "identity.events", "subject_registered")
    amqp = channel["bindings"]["amqp"]
    assert amqp["is"] == "routingKey"
    assert amqp["exchange"]["type"] == "topic" and amqp["exchange"]["durable"] is True
    message = resolve(document, next(iter(channel["messages"].values())))
    assert message["contentType"] == "application/json"
    assert message["headers"]["properties"]["ce-type"]["const"] == "govmesh.identity.v1.SubjectRegistered"
    assert {"ce-id", "ce-type", "ce-source", "ce-time", "ce-subject", "traceparent"} <= set(
        message["headers"]["properties"]
    )
    assert "Carries no raw identifier" in message["description"]
    properties = payload(document, channel)["properties"]
    assert {"subjectId", "kind", "maskedIdentifier", "registeredAt"} <= set(properties)
    assert "SUBJECT_KIND_RESIDENT" in resolve(document, properties["kind"])["enum"]
    assert resolve(document, properties["registeredAt"]) == {"type": "string", "format": "date-time"}
    operations = [o for o in document["operations"].values() if resolve(document, o["channel"]) is channel]
    assert [o["action"] for o in operations] == ["send"]


def test_proto3_json_types(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    case_decided = schemas["govmesh.approvals.v1.CaseDecided"]["properties"]
    assert case_decided["decisionDuration"]["type"] == "string"
    assert case_decided["failedRules"]["type"] == "array"
    assert resolve(document, case_decided["failedRules"]["items"])["properties"]["messageZh"]["type"] == "string"
    assert case_decided["deadlineBreached"]["type"] == "boolean"
    bill = schemas["govmesh.health.v1.BillSettled"]["properties"]
    assert bill["totalFen"]["type"] == "string"  # int64: a string in proto3 JSON
    assert schemas["govmesh.crowd.v1.LevelChanged"]["properties"]["loadBp"]["type"] == "integer"
    assert schemas["govmesh.records.v1.DataAccessed"]["properties"]["entryHash"]["contentEncoding"] == "base64"
    fields = schemas["govmesh.records.v1.DepartmentRecord"]["properties"]["fields"]
    assert fields["type"] == "object" and "$ref" in fields["additionalProperties"]


def events_pb2_modules() -> dict[str, ModuleType]:
    services = sorted(p.parent.parent.name for p in (ROOT / "govmesh").glob("*/v1/events_pb2.py"))
    assert set(SERVICES) <= set(services)
    return {s: importlib.import_module(f"govmesh.{s}.v1.events_pb2") for s in services}


def test_every_event_has_a_channel(document: dict[str, Any]) -> None:
    for service, module in events_pb2_modules().items():
        messages = list(module.DESCRIPTOR.message_types_by_name.values())
        carried = {f.message_type.full_name for m in messages for f in m.fields if f.message_type is not None}
        for message in messages:
            if message.full_name in carried:
                # a part of an event (e.g. approvals' FailedRule), described where the event uses it
                assert message.full_name in document["components"]["schemas"]
                assert (
                    not document["components"]["schemas"][message.full_name]
                    .get("description", "")
                    .startswith("Published")
                )
                continue
            routing_key = routing_key_for(message.name)
            channel = channel_for(document, f"{service}.events", routing_key)
            assert payload(document, channel) is document["components"]["schemas"][message.full_name]
            # the proto's own comment names the same exchange and routing key
            assert (
                f"Published on exchange {service}.events, routing key {routing_key},"
                in resolve(document, next(iter(channel["messages"].values())))["description"]
            )


def test_no_raw_identifier_on_any_events_channel(document: dict[str, Any]) -> None:
    events = [c for c in document["channels"].values() if c["bindings"]["amqp"]["exchange"]["name"].endswith(".events")]
    assert len(events) >= len(SERVICES)
    for channel in events:
        names = set(property_names(document, payload(document, channel), set()))
        assert not {n for n in names if RAW_IDENTIFIER.search(n) and "masked" not in n.lower()}, channel["address"]
        assert "raw identifier: restricted" not in channel["description"]


def test_ingest_channels(document: dict[str, Any]) -> None:
    records = document["channels"]["records.ingest"]
    assert records["address"] == "{departmentCode}"
    assert records["parameters"]["departmentCode"]["location"] == "$message.payload#/departmentCode"
    assert "subjectIdentifier" in payload(document, records)["properties"]
    assert "carries a raw identifier: restricted to department feeds" in records["description"]
    crowd = document["channels"]["crowd.readings"]
    assert crowd["address"] == "{zoneId}"
    schemas = document["components"]["schemas"]
    assert payload(document, crowd, "SensorReading") is schemas["govmesh.crowd.v1.SensorReading"]
    batch = payload(document, crowd, "SensorReadingBatch")
    assert resolve(document, batch["properties"]["readings"]["items"]) is schemas["govmesh.crowd.v1.SensorReading"]
    assert "AMQP type property" in crowd["description"] and "application/x-protobuf" in crowd["description"]
    assert "raw identifier" not in crowd["description"]
    for channel_id in ("records.ingest", "crowd.readings"):
        (operation,) = [
            o for o in document["operations"].values() if o["channel"]["$ref"] == f"#/channels/{channel_id}"
        ]
        assert operation["action"] == "receive"
