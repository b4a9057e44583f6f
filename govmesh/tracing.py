"""OpenTelemetry tracing for every govmesh process.

`configure_tracing` installs the process's TracerProvider once, with the exporter named by
OTEL_TRACES_EXPORTER: "none" (the default: spans and trace ids exist, so logs carry them and
context propagates, but nothing is exported and no processor runs), "console", "otlp" (to
OTEL_EXPORTER_OTLP_ENDPOINT, batched; over gRPC unless the standard OTEL_EXPORTER_OTLP_PROTOCOL
or the caller says "http/protobuf", which eventlet workers need) or "file" (batched, one JSON
object a span appended to the process's own file, `span_record`'s shape, which `govmesh trace`
reads through govmesh.trace_files: traces without a tracing backend).

No raw identifier may leave in a span. Spans are read-only once they end, so the exporter is
wrapped: `ScrubbingSpanExporter` hands the real exporter a copy of each span whose name,
attributes, event and link attributes and status description went through
`logs.mask_identifiers` (exception events recorded by instrumentation included). Code that wants
the in-process span clean as well sets attributes with `set_safe_attribute`.

Trace context crosses AMQP as W3C `traceparent`/`tracestate` headers: `inject_headers` when
publishing, `extract_context` when consuming.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, cast

from opentelemetry import propagate, trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Link, Status
from opentelemetry.util.types import AnyValue, Attributes, AttributeValue

from govmesh import config
from govmesh.logs import mask_identifiers, mask_value

__all__ = [
    "EXPORTERS",
    "OTLP_PROTOCOLS",
    "JsonLinesSpanExporter",
    "ScrubbingSpanExporter",
    "build_tracer_provider",
    "configure_tracing",
    "exporting",
    "extract_context",
    "inject_headers",
    "scrub_span",
    "set_safe_attribute",
    "span_exporter_for",
    "span_record",
    "tracer",
]

EXPORTERS: Final = config.TRACES_EXPORTERS
OTLP_PROTOCOLS: Final = ("grpc", "http/protobuf")

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_configured: tuple[str, str] | None = None


# --- setup ---------------------------------------------------------------------------------------


def _exporter_choice(exporter: str) -> str:
    choice = exporter.strip().lower()
    if choice not in EXPORTERS:
        allowed = ", ".join(repr(name) for name in EXPORTERS)
        raise ValueError(
            f"OTEL exporter setting OTEL_TRACES_EXPORTER={exporter!r} is not supported; use one of {allowed}"
        )
    return choice


def _otlp_protocol_choice(protocol: str | None) -> str:
    if protocol is None:
        protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"
        )
    choice = protocol.strip().lower()
    if choice not in OTLP_PROTOCOLS:
        allowed = ", ".join(repr(name) for name in OTLP_PROTOCOLS)
        raise ValueError(
            f"OTLP protocol setting OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported; use one of {allowed}"
        )
    return choice


def span_exporter_for(
    exporter: str, *, otlp_protocol: str | None = None, file: Path | None = None
) -> SpanExporter | None:
    """The (scrubbing) span exporter for an OTEL_TRACES_EXPORTER value; None for "none".

    For "file", `file` is the process's own file of spans (config.Settings.traces_file), made
    with its directory if need be; OSError when it cannot be.

    For "otlp", `otlp_protocol` is "grpc" or "http/protobuf"; by default the standard
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL / OTEL_EXPORTER_OTLP_PROTOCOL, else "grpc". Processes
    running under eventlet (nameko workers) must use "http/protobuf": grpcio does not cooperate
    with green threads. Either exporter reads OTEL_EXPORTER_OTLP_ENDPOINT and the other standard
    OTEL_EXPORTER_OTLP_* settings itself. Raises ValueError for a value it does not know.
    """
    choice = _exporter_choice(exporter)
    if choice == "none":
        return None
    if choice == "console":
        return ScrubbingSpanExporter(ConsoleSpanExporter())
    if choice == "file":
        if file is None:
            raise ValueError('OTEL_TRACES_EXPORTER="file" needs the file to write spans to')
        return ScrubbingSpanExporter(JsonLinesSpanExporter(file))
    # Imported here: only processes that export over OTLP pay for loading it.
    if _otlp_protocol_choice(otlp_protocol) == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return ScrubbingSpanExporter(OTLPSpanExporter())
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as OTLPHttpSpanExporter

    return ScrubbingSpanExporter(OTLPHttpSpanExporter())


def build_tracer_provider(
    service_name: str, exporter: str, *, otlp_protocol: str | None = None, file: Path | None = None
) -> TracerProvider:
    """A TracerProvider for `service_name` exporting as `exporter` says (see span_exporter_for).

    configure_tracing installs one globally; tests can build their own. A batching processor
    exports what is left when the provider shuts down, which OpenTelemetry does at the process's
    exit (a clean one: SIGTERM on an api or a worker returns from main).
    """
    span_exporter = span_exporter_for(exporter, otlp_protocol=otlp_protocol, file=file)
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    if span_exporter is None:
        return provider  # "none": spans get ids and propagate, and nothing runs when they end
    if isinstance(span_exporter, ScrubbingSpanExporter) and isinstance(span_exporter.delegate, ConsoleSpanExporter):
        provider.add_span_processor(SimpleSpanProcessor(span_exporter))  # printed as they end
    else:
        provider.add_span_processor(BatchSpanProcessor(span_exporter))
    return provider


def configure_tracing(
    service_name: str, exporter: str = "none", *, otlp_protocol: str | None = None, file: Path | None = None
) -> None:
    """Install the process-wide TracerProvider (resource service.name = `service_name`).

    `exporter` is the OTEL_TRACES_EXPORTER value: "none", "console", "otlp" or "file"; anything
    else raises ValueError. `otlp_protocol`, `file`: see span_exporter_for. Only the first call in a process
    installs a provider (OpenTelemetry allows one); later calls do nothing, with a warning if
    they ask for a different service or exporter.
    """
    global _configured
    choice = _exporter_choice(exporter)
    with _lock:
        if _configured is not None:
            if _configured != (service_name, choice):
                _log.warning(
                    "tracing already configured as %s/%s; ignoring %s/%s",
                    *_configured,
                    service_name,
                    choice,
                )
            return
        provider = build_tracer_provider(service_name, choice, otlp_protocol=otlp_protocol, file=file)
        trace.set_tracer_provider(provider)
        _configured = (service_name, choice)


def exporting() -> bool:
    """Whether this process's spans can be seen anywhere: False only once configure_tracing
    installed "none", where a span serves nothing but the ids that logs and headers carry."""
    return _configured is None or _configured[1] != "none"


#: Each name's tracer, with the provider that made it.
_tracers: dict[str, tuple[trace.TracerProvider, trace.Tracer]] = {}


def tracer(name: str) -> trace.Tracer:
    """The tracer for an instrumenting module, usually `tracer(__name__)`. Kept per name while
    the process's provider stays the same: the SDK builds a new tracer on every call, through a
    deprecation wrapper, and the workers ask one per RPC and per event published (2% of records'
    worker at 50 cases/s; docs/decisions/records-proofs-in-wire-form.md)."""
    provider = trace.get_tracer_provider()
    kept = _tracers.get(name)
    if kept is None or kept[0] is not provider:
        kept = _tracers[name] = (provider, provider.get_tracer(name))
    return kept[1]


# --- scrubbing -----------------------------------------------------------------------------------


def _scrub_value(value: AnyValue) -> AnyValue:
    """`value` with identifiers masked; the same object when there was nothing to mask."""
    return cast(AnyValue, mask_value(value))


def _scrub_attributes(attributes: Attributes, dropped: int) -> BoundedAttributes | None:
    """A masked copy of `attributes` keeping the dropped count, or None if nothing changed."""
    if not attributes:
        return None
    scrubbed = {key: _scrub_value(value) for key, value in attributes.items()}
    if all(scrubbed[key] is value for key, value in attributes.items()):
        return None
    copy = BoundedAttributes(maxlen=None, attributes=scrubbed, immutable=True)
    copy.dropped = dropped
    return copy


def _dropped(attributes: Attributes) -> int:
    return attributes.dropped if isinstance(attributes, BoundedAttributes) else 0


class _ScrubbedSpan(ReadableSpan):
    """A ReadableSpan copy that reports the original span's dropped counts."""

    def __init__(
        self,
        original: ReadableSpan,
        name: str,
        attributes: Attributes,
        events: Sequence[Event],
        links: Sequence[Link],
        status: Status,
    ) -> None:
        super().__init__(
            name=name,
            context=original.get_span_context(),
            parent=original.parent,
            resource=original.resource,
            attributes=attributes,
            events=events,
            links=links,
            kind=original.kind,
            status=status,
            start_time=original.start_time,
            end_time=original.end_time,
            instrumentation_scope=original.instrumentation_scope,
        )
        self._dropped_counts = (
            original.dropped_attributes,
            original.dropped_events,
            original.dropped_links,
        )

    @property
    def dropped_attributes(self) -> int:
        return self._dropped_counts[0]

    @property
    def dropped_events(self) -> int:
        return self._dropped_counts[1]

    @property
    def dropped_links(self) -> int:
        return self._dropped_counts[2]


def scrub_span(span: ReadableSpan) -> ReadableSpan:
    """`span` with identifiers masked in its name, attributes, events, links and status
    description; `span` itself when it holds none."""
    changed = False

    name = mask_identifiers(span.name)
    changed |= name != span.name

    attributes: Attributes = _scrub_attributes(span.attributes, span.dropped_attributes)
    if attributes is None:
        attributes = span.attributes
    else:
        changed = True

    events: list[Event] = []
    for event in span.events:
        event_name = mask_identifiers(event.name)
        event_attributes = _scrub_attributes(event.attributes, _dropped(event.attributes))
        if event_attributes is None and event_name == event.name:
            events.append(event)
        else:
            changed = True
            events.append(
                Event(
                    event_name,
                    event.attributes if event_attributes is None else event_attributes,
                    event.timestamp,
                )
            )

    links: list[Link] = []
    for link in span.links:
        link_attributes = _scrub_attributes(link.attributes, _dropped(link.attributes))
        if link_attributes is None:
            links.append(link)
        else:
            changed = True
            links.append(Link(link.context, link_attributes))

    status = span.status
    if status.description:
        description = mask_identifiers(status.description)
        if description != status.description:
            changed = True
            status = Status(status.status_code, description)

    if not changed:
        return span
    return _ScrubbedSpan(span, name, attributes, events, links, status)


class ScrubbingSpanExporter(SpanExporter):
    """Wraps a SpanExporter so that it only ever sees spans with identifiers masked."""

    def __init__(self, delegate: SpanExporter) -> None:
        self.delegate = delegate

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.delegate.export([scrub_span(span) for span in spans])

    def shutdown(self) -> None:
        self.delegate.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.delegate.force_flush(timeout_millis)


# --- the file exporter ---------------------------------------------------------------------------


def _rfc3339(nanoseconds: int | None) -> str | None:
    if nanoseconds is None:
        return None
    moment = datetime.fromtimestamp(nanoseconds / 1e9, UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _plain(attributes: Attributes) -> dict[str, Any]:
    return dict(attributes or {})


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """One finished span as a JSON object: the line the "file" exporter writes.

    Ids in lowercase hex as W3C traceparent writes them (parent_span_id null for a root), times
    in nanoseconds since the epoch (start_ns, end_ns) and in RFC 3339 (start, end), kind and
    status code by name."""
    context = span.get_span_context()
    parent = span.parent
    return {
        "trace_id": trace.format_trace_id(context.trace_id) if context else None,
        "span_id": trace.format_span_id(context.span_id) if context else None,
        "parent_span_id": trace.format_span_id(parent.span_id) if parent else None,
        "name": span.name,
        "kind": span.kind.name,
        "service": span.resource.attributes.get(SERVICE_NAME),
        "resource": _plain(span.resource.attributes),
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "start": _rfc3339(span.start_time),
        "end": _rfc3339(span.end_time),
        "status": span.status.status_code.name,
        "status_description": span.status.description,
        "attributes": _plain(span.attributes),
        "events": [
            {"name": event.name, "time_ns": event.timestamp, "attributes": _plain(event.attributes)}
            for event in span.events
        ],
        "links": [
            {
                "trace_id": trace.format_trace_id(link.context.trace_id),
                "span_id": trace.format_span_id(link.context.span_id),
                "attributes": _plain(link.attributes),
            }
            for link in span.links
        ],
    }


class JsonLinesSpanExporter(SpanExporter):
    """Appends each span as one line of JSON (`span_record`) to a file of this process's own.

    A batch is one write(2) on a file opened for appending, so a second writer of the same file
    (a process started again while the old one drains) adds whole lines, never half of one."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(
            json.dumps(span_record(span), ensure_ascii=False, separators=(",", ":"), default=str) + "\n"
            for span in spans
        )
        with self._lock:
            if self._fd is None:
                return SpanExportResult.FAILURE
            try:
                os.write(self._fd, lines.encode("utf-8"))
            except OSError as exc:
                _log.warning("cannot write spans to %s: %s", self.path, exc.strerror)
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # every export is written through at once


def set_safe_attribute(span: trace.Span, key: str, value: AttributeValue) -> None:
    """`span.set_attribute` with identifiers in `value` masked first.

    Exported spans are scrubbed anyway (ScrubbingSpanExporter); this keeps the live span clean
    for in-process readers too.
    """
    span.set_attribute(key, _scrub_value(value))


# --- propagation over AMQP headers ---------------------------------------------------------------


class _HeaderSetter(Setter[dict[str, object]]):
    def set(self, carrier: dict[str, object], key: str, value: str) -> None:
        carrier[key] = value


def _header_text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


class _HeaderGetter(Getter[Mapping[str, object]]):
    """Reads AMQP headers as brokers and clients deliver them: str or bytes values, possibly
    lists of them, keys in any case."""

    def get(self, carrier: Mapping[str, object], key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None:
            lowered = key.lower()
            for candidate, candidate_value in carrier.items():
                if isinstance(candidate, str) and candidate.lower() == lowered:
                    value = candidate_value
                    break
        if value is None:
            return None
        raw = value if isinstance(value, list | tuple) else [value]
        texts = [text for text in map(_header_text, raw) if text is not None]
        return texts or None

    def keys(self, carrier: Mapping[str, object]) -> list[str]:
        return [key for key in carrier if isinstance(key, str)]


_SETTER: Final = _HeaderSetter()
_GETTER: Final = _HeaderGetter()


def inject_headers(headers: dict[str, object], context: Context | None = None) -> dict[str, object]:
    """Add the trace context (`traceparent`, and `tracestate` when there is one) of `context`,
    by default the current one, to `headers`; returns `headers` itself.

    Uses the globally configured propagator (W3C trace context by default, OTEL_PROPAGATORS).
    Adds nothing when there is no valid span.
    """
    propagate.inject(headers, context=context, setter=_SETTER)
    return headers


def extract_context(headers: Mapping[str, object] | None) -> Context:
    """The context carried by message headers, to start a consumer span in:
    `tracer.start_as_current_span(name, context=extract_context(headers))`.

    Tolerates None, missing or malformed headers (an empty context: the span starts a new
    trace) and bytes values.
    """
    return propagate.extract(headers or {}, getter=_GETTER)
