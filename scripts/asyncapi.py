"""Generate the event catalogue, docs/events.asyncapi.yaml (AsyncAPI 3.0), from the protos.

Every message of proto/govmesh/<service>/v1/events.proto that is published on its own (that is, not
only carried inside another event) becomes one channel: exchange `<service>.events`, routing key
the message name in snake_case, one `send` operation. The inbound feeds that arrive on broker
exchanges (records.ingest, crowd.readings) become `receive` channels. Payload schemas are derived
from the generated modules' descriptors with proto3 JSON field names; descriptions are the .proto
comments, read from a FileDescriptorSet that protoc writes with source info at run time.

    .venv/bin/python scripts/asyncapi.py           writes docs/events.asyncapi.yaml
    .venv/bin/python scripts/asyncapi.py --check   exits 1 if that file is not what it would write
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import re
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from grpc_tools import protoc

from govmesh.messaging import CONTENT_TYPE, events_exchange, routing_key_for

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
OUTPUT = ROOT / "docs" / "events.asyncapi.yaml"
REGENERATE = ".venv/bin/python scripts/asyncapi.py"

Schema = dict[str, Any]

AMQP_BINDING_VERSION = "0.3.0"
RAW_IDENTIFIER_NOTE = "carries a raw identifier: restricted to department feeds"
# Proto field names that hold a raw (unmasked) resident identity number or credit code.
RAW_IDENTIFIER_FIELD = re.compile(r"(^|_)(identifier|id_number|id_card(_number)?|identity_number|credit_code)$")


@dataclass(frozen=True)
class Ingest:
    """An inbound exchange whose messages are a service's own protobuf messages, one per message.
    With more than one, the AMQP type property names a message's (none: the first)."""

    service: str
    exchange: str
    module: str
    messages: tuple[str, ...]
    key_field: str  # the field of the first message whose value is the routing key
    binary: bool = False  # binary protobuf accepted beside proto3 JSON


INGESTS = (
    Ingest("records", "records.ingest", "govmesh.records.v1.records_pb2", ("DepartmentRecord",), "department_code"),
    Ingest(
        "crowd",
        "crowd.readings",
        "govmesh.crowd.v1.crowd_pb2",
        ("SensorReading", "SensorReadingBatch"),
        "zone_id",
        binary=True,
    ),
)
BINARY_CONTENT_TYPE = "application/x-protobuf"

INFO_DESCRIPTION = """\
Every event of the govmesh services, and the inbound feeds that arrive on the broker. Generated
from proto/ by scripts/asyncapi.py; do not edit by hand.

Each service publishes to its durable topic exchange `<service>.events`; the routing key is the
event's protobuf message name in snake_case (`subject_registered`). Bind a queue with that routing
key, or with `#` for every event of a service.

Messages are persistent (delivery mode 2) and published with publisher confirms. Delivery is at
least once with a stable `ce-id` (also the AMQP message id): deduplicate on it. The AMQP `type`
property is the full protobuf message name (as `ce-type`).

The body is the message's canonical proto3 JSON, UTF-8: lowerCamelCase field names, fields holding
their default value (empty string, 0, false, the first enum value, empty list or map) omitted,
64-bit integers as decimal strings, enums by value name, timestamps as RFC 3339 in UTC, durations
as seconds with an `s` suffix, bytes as base64. Consumers should ignore fields they do not know,
so that fields can be added.

Events never carry a raw identifier (resident identity number or unified social credit code):
subjects are named by pseudonymous subject id and masked identifier only. The ingest channels are
inbound feeds from departments and sensors, not events."""


# --- descriptors -----------------------------------------------------------------------------


def proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))


def compile_descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    """protoc's view of proto/, with source info (the comments) that generated modules lack."""
    include = Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto
    with tempfile.TemporaryDirectory(prefix="govmesh-asyncapi-") as tmp:
        out = Path(tmp) / "descriptors.binpb"
        code = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{PROTO}",
                f"-I{include}",
                "--include_imports",
                "--include_source_info",
                f"--descriptor_set_out={out}",
                *proto_files(),
            ]
        )
        if code != 0:
            raise SystemExit(f"protoc failed ({code}) on proto/")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _without_json_names(file: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    copy = descriptor_pb2.FileDescriptorProto()
    copy.CopyFrom(file)
    copy.ClearField("source_code_info")

    def strip(messages: Iterable[descriptor_pb2.DescriptorProto]) -> None:
        for message in messages:
            for field in message.field:
                field.ClearField("json_name")
            strip(message.nested_type)

    strip(copy.message_type)
    return copy


def module_for(proto_file: str) -> ModuleType:
    name = proto_file.removesuffix(".proto").replace("/", ".") + "_pb2"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise SystemExit(f"{name} is missing: run .venv/bin/python scripts/generate_code.py") from exc


def check_generated_code(descriptor_set: descriptor_pb2.FileDescriptorSet) -> None:
    """The catalogue is built from the generated modules; they must match proto/ exactly."""
    for file in descriptor_set.file:
        if not file.name.startswith("govmesh/"):
            continue
        generated = descriptor_pb2.FileDescriptorProto.FromString(module_for(file.name).DESCRIPTOR.serialized_pb)
        if _without_json_names(generated) != _without_json_names(file):
            raise SystemExit(
                f"the generated module of {file.name} is stale: run .venv/bin/python scripts/generate_code.py"
            )


def _reflow(*comments: str) -> str:
    """A .proto comment as text: lines of a paragraph joined, paragraphs kept apart."""
    paragraphs: list[str] = []
    for comment in comments:
        lines: list[str] = []
        for line in [*comment.splitlines(), ""]:
            if line.strip():
                lines.append(line.strip())
            elif lines:
                paragraphs.append(" ".join(lines))
                lines = []
    return "\n\n".join(paragraphs)


def _scoped(scope: str, name: str) -> str:
    return f"{scope}.{name}" if scope else name


class Comments:
    """The leading (and trailing) comment of every message, field, enum and enum value, by full name."""

    def __init__(self, descriptor_set: descriptor_pb2.FileDescriptorSet) -> None:
        self._text: dict[tuple[str, str], str] = {}
        self.proto3_optional: set[str] = set()
        for file in descriptor_set.file:
            self._index(file)

    def _index(self, file: descriptor_pb2.FileDescriptorProto) -> None:
        locations = {tuple(loc.path): loc for loc in file.source_code_info.location}

        def put(kind: str, name: str, path: tuple[int, ...]) -> None:
            location = locations.get(path)
            if location is not None:
                text = _reflow(location.leading_comments, location.trailing_comments)
                if text:
                    self._text[(kind, name)] = text

        def enum(proto: descriptor_pb2.EnumDescriptorProto, path: tuple[int, ...], scope: str) -> None:
            full = _scoped(scope, proto.name)
            put("enum", full, path)
            for i, value in enumerate(proto.value):
                put("value", f"{full}.{value.name}", (*path, 2, i))

        def message(proto: descriptor_pb2.DescriptorProto, path: tuple[int, ...], scope: str) -> None:
            full = _scoped(scope, proto.name)
            put("message", full, path)
            for i, field in enumerate(proto.field):
                put("field", f"{full}.{field.name}", (*path, 2, i))
                if field.proto3_optional:
                    self.proto3_optional.add(f"{full}.{field.name}")
            for i, nested in enumerate(proto.nested_type):
                message(nested, (*path, 3, i), full)
            for i, nested_enum in enumerate(proto.enum_type):
                enum(nested_enum, (*path, 4, i), full)
            for i, oneof in enumerate(proto.oneof_decl):
                put("oneof", f"{full}.{oneof.name}", (*path, 8, i))

        for i, proto in enumerate(file.message_type):
            message(proto, (4, i), file.package)
        for i, proto_enum in enumerate(file.enum_type):
            enum(proto_enum, (5, i), file.package)

    def get(self, kind: str, full_name: str) -> str:
        return self._text.get((kind, full_name), "")


# --- JSON Schema from descriptors ------------------------------------------------------------

INT64 = {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
UINT64 = {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"}
BASE64 = {"type": "string", "contentEncoding": "base64"}
DURATION = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$", "examples": ["1.5s"]}

SCALARS: dict[int, Schema] = {
    FieldDescriptor.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "minimum": 0, "maximum": 4294967295},
    FieldDescriptor.TYPE_FIXED32: {"type": "integer", "minimum": 0, "maximum": 4294967295},
    FieldDescriptor.TYPE_INT64: INT64,
    FieldDescriptor.TYPE_SINT64: INT64,
    FieldDescriptor.TYPE_SFIXED64: INT64,
    FieldDescriptor.TYPE_UINT64: UINT64,
    FieldDescriptor.TYPE_FIXED64: UINT64,
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: BASE64,
}

# Well-known types have their own proto3 JSON forms and are inlined.
WELL_KNOWN: dict[str, Schema] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": DURATION,
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.DoubleValue": {"type": "number", "format": "double"},
    "google.protobuf.FloatValue": {"type": "number", "format": "float"},
    "google.protobuf.Int64Value": INT64,
    "google.protobuf.UInt64Value": UINT64,
    "google.protobuf.Int32Value": {"type": "integer", "format": "int32"},
    "google.protobuf.UInt32Value": {"type": "integer", "minimum": 0, "maximum": 4294967295},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": BASE64,
}

MAP_KEY_PATTERNS: dict[int, Schema] = {
    FieldDescriptor.TYPE_BOOL: {"enum": ["true", "false"]},
    **{
        t: {"pattern": "^-?[0-9]+$"}
        for t in (
            FieldDescriptor.TYPE_INT32,
            FieldDescriptor.TYPE_SINT32,
            FieldDescriptor.TYPE_SFIXED32,
            FieldDescriptor.TYPE_INT64,
            FieldDescriptor.TYPE_SINT64,
            FieldDescriptor.TYPE_SFIXED64,
        )
    },
    **{
        t: {"pattern": "^[0-9]+$"}
        for t in (
            FieldDescriptor.TYPE_UINT32,
            FieldDescriptor.TYPE_FIXED32,
            FieldDescriptor.TYPE_UINT64,
            FieldDescriptor.TYPE_FIXED64,
        )
    },
}


def ref(full_name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{full_name}"}


def is_raw_identifier(field: FieldDescriptor) -> bool:
    return "masked" not in field.name and RAW_IDENTIFIER_FIELD.search(field.name) is not None


class Schemas:
    """components/schemas: every message and enum a payload reaches, by full name."""

    def __init__(self, comments: Comments) -> None:
        self.comments = comments
        self.schemas: dict[str, Schema] = {}

    def message(self, descriptor: Descriptor) -> Schema:
        if descriptor.full_name in WELL_KNOWN:
            return dict(WELL_KNOWN[descriptor.full_name])
        if descriptor.full_name.startswith("google.protobuf."):
            raise SystemExit(f"no proto3 JSON schema for {descriptor.full_name}: add it to WELL_KNOWN")
        if descriptor.full_name not in self.schemas:
            self.schemas[descriptor.full_name] = {}  # placeholder: messages may be recursive
            schema: Schema = {"type": "object"}
            description = self.comments.get("message", descriptor.full_name)
            if description:
                schema["description"] = description
            schema["properties"] = {field.json_name: self.field(field) for field in descriptor.fields}
            self.schemas[descriptor.full_name] = schema
        return ref(descriptor.full_name)

    def enum(self, descriptor: EnumDescriptor) -> Schema:
        if descriptor.full_name not in self.schemas:
            parts = [self.comments.get("enum", descriptor.full_name)]
            values = []
            for value in descriptor.values:
                text = self.comments.get("value", f"{descriptor.full_name}.{value.name}")
                if text:
                    values.append(f"- `{value.name}`: {text}")
            parts.append("\n".join(values))
            schema: Schema = {"type": "string"}
            description = "\n\n".join(p for p in parts if p)
            if description:
                schema["description"] = description
            schema["enum"] = [value.name for value in descriptor.values]
            self.schemas[descriptor.full_name] = schema
        return ref(descriptor.full_name)

    def value(self, field: FieldDescriptor) -> Schema:
        if field.message_type is not None:
            return self.message(field.message_type)
        if field.enum_type is not None:
            return self.enum(field.enum_type)
        if field.type not in SCALARS:
            raise SystemExit(f"{field.full_name}: field type {field.type} has no proto3 JSON form here")
        return dict(SCALARS[field.type])

    def field(self, field: FieldDescriptor) -> Schema:
        schema: Schema
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
            schema = {"type": "object"}
            if key.type in MAP_KEY_PATTERNS:
                schema["propertyNames"] = MAP_KEY_PATTERNS[key.type]
            schema["additionalProperties"] = self.value(value)
        elif field.is_repeated:
            schema = {"type": "array", "items": self.value(field)}
        else:
            schema = self.value(field)
        parts = [self.comments.get("field", field.full_name)]
        oneof = field.containing_oneof
        if oneof is not None and field.full_name not in self.comments.proto3_optional:
            members = ", ".join(f"`{f.json_name}`" for f in oneof.fields)
            note = f"At most one of {members} is set (oneof `{oneof.name}`)."
            parts.append(" ".join(p for p in (note, self.comments.get("oneof", oneof.full_name)) if p))
        description = "\n\n".join(p for p in parts if p)
        if not description:
            return schema
        if "$ref" in schema:  # siblings of $ref are ignored in JSON Schema draft 7
            return {"description": description, "allOf": [schema]}
        return {**schema, "description": description}


def carries_raw_identifier(descriptor: Descriptor, seen: set[str] | None = None) -> bool:
    seen = set() if seen is None else seen
    if descriptor.full_name in seen:
        return False
    seen.add(descriptor.full_name)
    for field in descriptor.fields:
        if is_raw_identifier(field):
            return True
        if field.message_type is not None and carries_raw_identifier(field.message_type, seen):
            return True
    return False


# --- the document ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    service: str
    descriptor: Descriptor


def event_services() -> list[str]:
    return sorted(p.parent.parent.name for p in PROTO.glob("govmesh/*/v1/events.proto"))


def events_of(service: str) -> Iterator[Event]:
    """The top-level messages of the service's events.proto that no other message there carries
    (those, e.g. approvals' FailedRule, are parts of events, not events)."""
    file = module_for(f"govmesh/{service}/v1/events.proto").DESCRIPTOR
    messages = list(file.message_types_by_name.values())
    carried = {
        field.message_type.full_name
        for message in messages
        for field in message.fields
        if field.message_type is not None
    }
    for message in messages:
        if message.full_name not in carried:
            yield Event(service, message)


def headers_schema(service: str, descriptor: Descriptor) -> Schema:
    return {
        "type": "object",
        "required": ["ce-specversion", "ce-id", "ce-type", "ce-source", "ce-time", "ce-subject"],
        "properties": {
            "ce-specversion": {"type": "string", "const": "1.0", "description": "CloudEvents spec version."},
            "ce-id": {
                "type": "string",
                "format": "uuid",
                "description": "Unique per event and the same on every redelivery (also the AMQP message id): "
                "deduplicate on it.",
            },
            "ce-type": {
                "type": "string",
                "const": descriptor.full_name,
                "description": "The full protobuf message name of the body (also the AMQP type property).",
            },
            "ce-source": {"type": "string", "const": f"govmesh/{service}", "description": "The publishing service."},
            "ce-time": {
                "type": "string",
                "format": "date-time",
                "description": "When the event happened (RFC 3339, UTC, milliseconds).",
            },
            "ce-subject": {
                "type": "string",
                "description": "The pseudonymous id of what the event is about (a subject id for a person or an "
                "enterprise); never a raw identifier.",
            },
            "traceparent": {
                "type": "string",
                "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
                "description": "W3C Trace Context of the change that caused the event; continue the trace from it.",
            },
            "tracestate": {"type": "string", "description": "W3C Trace Context vendor state, when there is one."},
        },
    }


def amqp_exchange(name: str) -> Schema:
    return {
        "is": "routingKey",
        "exchange": {"name": name, "type": "topic", "durable": True, "autoDelete": False, "vhost": "/"},
        "bindingVersion": AMQP_BINDING_VERSION,
    }


def message_object(descriptor: Descriptor, service: str, comments: Comments, headers: Schema | None) -> Schema:
    message: Schema = {"name": descriptor.name, "title": descriptor.name}
    description = comments.get("message", descriptor.full_name)
    if description:
        message["description"] = description
    message["contentType"] = CONTENT_TYPE
    if headers is not None:
        message["headers"] = headers
    message["payload"] = ref(descriptor.full_name)
    message["tags"] = [{"name": service}]
    message["bindings"] = {
        "amqp": {
            "contentEncoding": "utf-8",
            "messageType": descriptor.full_name,
            "bindingVersion": AMQP_BINDING_VERSION,
        }
    }
    return message


def ingest_description(ingest: Ingest, names: list[str], key: str) -> str:
    head = f"Inbound {' and '.join(names)} feed of {ingest.service}: exchange `{ingest.exchange}` (topic, durable), "
    if len(names) == 1:
        return head + f"routing key = `{key}` of the body, one {names[0]} per message."
    text = (
        head + f"routing key = the `{key}` of every {names[0]} carried, one {' or one '.join(names)} per message; "
        f"the AMQP type property is the full name of the body's message (none: {names[0]})."
    )
    if ingest.binary:
        text += (
            f" The body is proto3 JSON (content type {CONTENT_TYPE}, or none) or binary protobuf (content type "
            f"{BINARY_CONTENT_TYPE})."
        )
    return text


def build() -> dict[str, Any]:
    """The AsyncAPI document, as plain data in a stable order."""
    descriptor_set = compile_descriptor_set()
    check_generated_code(descriptor_set)
    comments = Comments(descriptor_set)
    schemas = Schemas(comments)
    channels: dict[str, Schema] = {}
    operations: dict[str, Schema] = {}
    messages: dict[str, Schema] = {}
    services: set[str] = set()

    for service in event_services():
        for event in events_of(service):
            descriptor = event.descriptor
            exchange, routing_key = events_exchange(service), routing_key_for(descriptor.name)
            channel_id = f"{exchange}.{routing_key}"
            schemas.message(descriptor)
            if carries_raw_identifier(descriptor):
                raise SystemExit(f"{descriptor.full_name} is an event but carries a raw identifier")
            messages[descriptor.full_name] = message_object(
                descriptor, service, comments, headers_schema(service, descriptor)
            )
            channels[channel_id] = {
                "address": routing_key,
                "title": f"{exchange} {routing_key}",
                "description": f"{descriptor.name} events of {service}: exchange `{exchange}` (topic, durable), "
                f"routing key `{routing_key}`.",
                "messages": {descriptor.name: {"$ref": f"#/components/messages/{descriptor.full_name}"}},
                "bindings": {"amqp": amqp_exchange(exchange)},
            }
            operations[f"{channel_id}.send"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{channel_id}"},
                "summary": f"{service} publishes {descriptor.name}.",
                "tags": [{"name": service}],
                "bindings": {"amqp": {"deliveryMode": 2, "timestamp": True, "bindingVersion": AMQP_BINDING_VERSION}},
                "messages": [{"$ref": f"#/channels/{channel_id}/messages/{descriptor.name}"}],
            }
            services.add(service)

    for ingest in INGESTS:
        module = importlib.import_module(ingest.module)
        descriptors = [getattr(module, name).DESCRIPTOR for name in ingest.messages]
        key = descriptors[0].fields_by_name[ingest.key_field]
        channel_id = ingest.exchange
        for descriptor in descriptors:
            schemas.message(descriptor)
            messages[descriptor.full_name] = message_object(descriptor, ingest.service, comments, None)
        names = " or ".join(d.name for d in descriptors)
        description = ingest_description(ingest, [d.name for d in descriptors], key.json_name)
        if any(carries_raw_identifier(d) for d in descriptors):
            description += f" This channel {RAW_IDENTIFIER_NOTE}; its messages are never republished or logged."
        parameter = {"description": comments.get("field", key.full_name) or f"The body's {key.json_name}."}
        if len(descriptors) == 1:
            parameter["location"] = f"$message.payload#/{key.json_name}"
        else:  # in no one place of every body
            parameter["description"] = f"The {key.json_name} of every {descriptors[0].name} the message carries."
        channels[channel_id] = {
            "address": f"{{{key.json_name}}}",
            "title": ingest.exchange,
            "description": description,
            "messages": {d.name: {"$ref": f"#/components/messages/{d.full_name}"} for d in descriptors},
            "parameters": {key.json_name: parameter},
            "bindings": {"amqp": amqp_exchange(ingest.exchange)},
        }
        operations[f"{channel_id}.receive"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": f"{ingest.service} consumes {names} messages.",
            "tags": [{"name": ingest.service}],
            "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING_VERSION}},
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{d.name}"} for d in descriptors],
        }
        services.add(ingest.service)

    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "govmesh events",
            "version": version,
            "description": INFO_DESCRIPTION,
            "tags": [{"name": service} for service in sorted(services)],
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "rabbitmq": {
                "host": "{host}",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "The mesh's RabbitMQ (AMQP_URI).",
                "variables": {"host": {"default": "127.0.0.1:5672", "description": "host:port of AMQP_URI."}},
            }
        },
        "channels": dict(sorted(channels.items())),
        "operations": dict(sorted(operations.items())),
        "components": {
            "messages": dict(sorted(messages.items())),
            "schemas": dict(sorted(schemas.schemas.items())),
        },
    }


# --- YAML ------------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _represent_str)

HEADER = f"# Generated from proto/ by scripts/asyncapi.py: do not edit. Regenerate with `{REGENERATE}`.\n"


def render(document: dict[str, Any]) -> str:
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100, indent=2)
    return HEADER + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed catalogue is stale")
    args = parser.parse_args(argv)
    text = render(build())
    relative = OUTPUT.relative_to(ROOT) if OUTPUT.is_relative_to(ROOT) else OUTPUT
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current == text:
            print(f"{relative} is up to date")
            return 0
        diff = list(
            difflib.unified_diff(current.splitlines(), text.splitlines(), str(relative), "generated", lineterm="")
        )
        shown = "\n".join(diff[:60]) + ("\n..." if len(diff) > 60 else "")
        message = f"{relative} is stale: it differs from what the protos generate. Run `{REGENERATE}` and commit it."
        print(f"{message}\n{shown}", file=sys.stderr)
        return 1
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {relative}: {len(text.splitlines())} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
