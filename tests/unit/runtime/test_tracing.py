"""Tracing setup, identifier scrubbing of exported spans, and AMQP propagation
(govmesh.tracing)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as OTLPHttpSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, Status, StatusCode
from opentelemetry.util._once import Once

from govmesh import tracing
from govmesh.tracing import (
    ScrubbingSpanExporter,
    build_tracer_provider,
    configure_tracing,
    extract_context,
    inject_headers,
    scrub_span,
    set_safe_attribute,
    span_exporter_for,
)

RESIDENT_18 = "33010619900307123X"
RESIDENT_15 = "330106900307123"
USCC = "91330106MA2AXKQ61Y"
RAW_IDS = (RESIDENT_18, RESIDENT_15, USCC)
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"


@pytest.fixture
def fresh_global_tracing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Lets a test install the process-wide provider, and puts the previous one back after."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(tracing, "_configured", None)
    yield
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()


def recording_provider(**kwargs: object) -> tuple[TracerProvider, InMemorySpanExporter]:
    """A provider whose spans end up, scrubbed, in the returned in-memory exporter."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(**kwargs)  # type: ignore[arg-type]
    provider.add_span_processor(SimpleSpanProcessor(ScrubbingSpanExporter(memory)))
    return provider, memory


def assert_no_raw_id(text: str) -> None:
    for raw in RAW_IDS:
        assert raw not in text


# --- setup ---------------------------------------------------------------------------------------


def test_a_modules_tracer_is_kept_and_follows_the_installed_provider(fresh_global_tracing: None) -> None:
    first, first_spans = recording_provider()
    trace.set_tracer_provider(first)
    kept = tracing.tracer("govmesh.kept")
    assert tracing.tracer("govmesh.kept") is kept
    with kept.start_as_current_span("one"):
        pass
    # A provider installed later (as the tests' fixture does) gets the spans from then on.
    second, second_spans = recording_provider()
    trace._TRACER_PROVIDER = None
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace.set_tracer_provider(second)
    with tracing.tracer("govmesh.kept").start_as_current_span("two"):
        pass
    assert [s.name for s in first_spans.get_finished_spans()] == ["one"]
    assert [s.name for s in second_spans.get_finished_spans()] == ["two"]
    first.shutdown()


def test_none_exports_nothing() -> None:
    assert span_exporter_for("none") is None


def test_console_exporter_is_selected_and_scrubbing() -> None:
    exporter = span_exporter_for(" Console ")
    assert isinstance(exporter, ScrubbingSpanExporter)
    assert isinstance(exporter.delegate, ConsoleSpanExporter)


def test_otlp_exporter_is_grpc_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", raising=False)
    exporter = span_exporter_for("otlp")
    assert isinstance(exporter, ScrubbingSpanExporter)
    assert isinstance(exporter.delegate, OTLPSpanExporter)
    exporter.shutdown()  # nothing was sent; the channel connects lazily


def test_otlp_over_http_for_eventlet_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", raising=False)
    explicit = span_exporter_for("otlp", otlp_protocol="http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    from_env = span_exporter_for("otlp")
    for exporter in (explicit, from_env):
        assert isinstance(exporter, ScrubbingSpanExporter)
        assert isinstance(exporter.delegate, OTLPHttpSpanExporter)
        exporter.shutdown()


def test_unknown_otlp_protocol_is_refused() -> None:
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        span_exporter_for("otlp", otlp_protocol="http/json")


@pytest.mark.parametrize("value", ["jaeger", "", "zipkin,otlp"])
def test_unknown_exporter_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER") as raised:
        span_exporter_for(value)
    assert "'none', 'console', 'otlp', 'file'" in str(raised.value)


def test_file_exporter_needs_its_file() -> None:
    with pytest.raises(ValueError, match="file"):
        span_exporter_for("file")


def test_file_exporter_writes_each_span_scrubbed_as_a_json_line_by_shutdown(tmp_path: Path) -> None:
    """Batched, yet every span is in the file once the provider shuts down (at a process's exit),
    and no raw identifier reaches it."""
    file = tmp_path / "made" / "identity-api-0.jsonl"
    provider = build_tracer_provider("govmesh-identity-api", " FILE ", file=file)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span(f"resolve {RESIDENT_18}") as parent:
        parent.set_attribute("identifier", RESIDENT_18)
        with tracer.start_as_current_span("child", kind=trace.SpanKind.CLIENT) as child:
            child.add_event("looked up", {"who": USCC})
            child.set_status(Status(StatusCode.ERROR, f"no such subject {RESIDENT_15}"))
    provider.shutdown()

    text = file.read_text(encoding="utf-8")
    assert_no_raw_id(text)
    child_line, parent_line = (json.loads(line) for line in text.splitlines())
    context = parent.get_span_context()
    assert parent_line["trace_id"] == child_line["trace_id"] == trace.format_trace_id(context.trace_id)
    assert parent_line["span_id"] == child_line["parent_span_id"] == trace.format_span_id(context.span_id)
    assert parent_line["parent_span_id"] is None
    assert parent_line["name"] == "resolve 330106********123X"
    assert parent_line["attributes"] == {"identifier": "330106********123X"}
    assert parent_line["service"] == parent_line["resource"]["service.name"] == "govmesh-identity-api"
    assert child_line["kind"] == "CLIENT" and parent_line["kind"] == "INTERNAL"
    assert child_line["status"] == "ERROR" and child_line["status_description"].startswith("no such subject 330106")
    assert child_line["events"][0]["name"] == "looked up" and child_line["events"][0]["attributes"]["who"] != USCC
    assert parent_line["start_ns"] <= child_line["start_ns"] <= child_line["end_ns"] <= parent_line["end_ns"]
    assert parent_line["start"].endswith("Z") and parent_line["start"][:4].isdigit()


def test_file_exporter_appends_to_what_is_there(tmp_path: Path) -> None:
    file = tmp_path / "records-worker-0.jsonl"
    for name in ("first run", "second run"):
        provider = build_tracer_provider("govmesh-records-worker", "file", file=file)
        provider.get_tracer("test").start_span(name).end()
        provider.shutdown()
    assert [json.loads(line)["name"] for line in file.read_text().splitlines()] == ["first run", "second run"]


def test_provider_names_the_service() -> None:
    provider = build_tracer_provider("identity", "none")
    assert provider.resource.attributes["service.name"] == "identity"


@pytest.mark.usefixtures("fresh_global_tracing")
def test_configure_tracing_installs_one_provider_per_process() -> None:
    configure_tracing("identity", "none")
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    assert provider.resource.attributes["service.name"] == "identity"

    configure_tracing("identity", "console")  # ignored, with a warning
    assert trace.get_tracer_provider() is provider

    with tracing.tracer("test").start_as_current_span("work") as span:
        assert span.get_span_context().is_valid


@pytest.mark.usefixtures("fresh_global_tracing")
def test_configure_tracing_refuses_unknown_exporter() -> None:
    with pytest.raises(ValueError, match="OTEL exporter setting"):
        configure_tracing("identity", "stdout")
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)


# --- scrubbing -----------------------------------------------------------------------------------


def test_exported_span_is_scrubbed() -> None:
    provider, memory = recording_provider()
    tracer = provider.get_tracer("test")
    linked = trace.SpanContext(int(TRACE_ID, 16), int(SPAN_ID, 16), is_remote=True)
    with tracer.start_as_current_span(
        f"lookup {RESIDENT_18}",
        links=[Link(linked, {"why": f"same subject {USCC}"})],
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        span.set_attribute("subject.identifier", RESIDENT_18)
        span.set_attribute("subject.ids", [USCC, "plain"])
        span.set_attribute("subject.number", int(RESIDENT_15))
        span.set_attribute("ref", TRACE_ID)
        span.set_attribute("count", 3)
        span.add_event("seen", {"identifier": f"id {RESIDENT_15}"})
        span.record_exception(LookupError(f"no subject {RESIDENT_18}"))
        span.set_status(Status(StatusCode.ERROR, f"unknown {RESIDENT_18}"))
    original_context = span.get_span_context()

    (exported,) = memory.get_finished_spans()
    assert_no_raw_id(exported.to_json())
    assert exported.name == "lookup 330106********123X"
    assert exported.attributes is not None
    assert exported.attributes["subject.identifier"] == "330106********123X"
    assert exported.attributes["subject.ids"] == ("913301********Q61Y", "plain")
    assert exported.attributes["subject.number"] == "330106*****7123"
    assert exported.attributes["ref"] == TRACE_ID
    assert exported.attributes["count"] == 3
    seen, exception = exported.events
    assert seen.attributes == {"identifier": "id 330106*****7123"}
    assert exception.attributes is not None
    assert exception.attributes["exception.message"] == "no subject 330106********123X"
    assert exported.links[0].attributes == {"why": "same subject 913301********Q61Y"}
    assert exported.status.description == "unknown 330106********123X"
    assert exported.get_span_context() == original_context
    assert exported.resource is span.resource  # type: ignore[attr-defined]


def test_clean_span_is_passed_through_unchanged() -> None:
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("test").start_as_current_span("clean") as span:
        span.set_attribute("trace", TRACE_ID)
        span.add_event("event", {"n": 1})
    (finished,) = memory.get_finished_spans()
    assert scrub_span(finished) is finished


def test_scrubbed_copy_keeps_dropped_counts_and_encodes_for_otlp() -> None:
    provider, memory = recording_provider(span_limits=SpanLimits(max_span_attributes=2))
    with provider.get_tracer("test").start_as_current_span("limited") as span:
        span.set_attribute("a", 1)
        span.set_attribute("b", 2)
        span.set_attribute("identifier", RESIDENT_18)  # evicts "a"
    (exported,) = memory.get_finished_spans()
    assert isinstance(exported, ReadableSpan)
    assert exported.dropped_attributes == 1
    request = encode_spans([exported])
    encoded = request.resource_spans[0].scope_spans[0].spans[0]
    assert encoded.dropped_attributes_count == 1
    assert RESIDENT_18.encode() not in request.SerializeToString()


def test_console_output_is_scrubbed() -> None:
    out = io.StringIO()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ScrubbingSpanExporter(ConsoleSpanExporter(out=out))))
    with provider.get_tracer("test").start_as_current_span("register") as span:
        span.set_attribute("identifier", RESIDENT_18)
    printed = json.loads(out.getvalue())
    assert printed["attributes"] == {"identifier": "330106********123X"}


def test_set_safe_attribute_masks_the_live_span() -> None:
    provider = TracerProvider()
    memory = InMemorySpanExporter()  # no scrubbing exporter: the span itself must be clean
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("test").start_as_current_span("register") as span:
        set_safe_attribute(span, "identifier", f"id {RESIDENT_18}")
        set_safe_attribute(span, "ids", [RESIDENT_15, "ok"])
        set_safe_attribute(span, "count", 2)
    (finished,) = memory.get_finished_spans()
    assert finished.attributes == {
        "identifier": "id 330106********123X",
        "ids": ("330106*****7123", "ok"),
        "count": 2,
    }


# --- propagation ---------------------------------------------------------------------------------


def test_inject_then_extract_gives_the_same_trace() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("publish") as span:
        headers: dict[str, object] = {"ce-id": "1"}
        returned = inject_headers(headers)
    assert returned is headers
    assert headers["ce-id"] == "1"
    assert isinstance(headers["traceparent"], str)

    remote = trace.get_current_span(extract_context(headers)).get_span_context()
    assert remote.is_valid
    assert remote.is_remote
    assert remote.trace_id == span.get_span_context().trace_id
    assert remote.span_id == span.get_span_context().span_id


def test_consumer_span_continues_the_trace() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("publish") as producer:
        headers = inject_headers({})
    with tracer.start_as_current_span("consume", context=extract_context(headers)) as consumer:
        pass
    assert consumer.get_span_context().trace_id == producer.get_span_context().trace_id
    parent = consumer.parent  # type: ignore[attr-defined]
    assert parent is not None
    assert parent.span_id == producer.get_span_context().span_id


def test_inject_without_a_span_adds_nothing() -> None:
    assert inject_headers({}) == {}


def test_extract_from_bytes_values() -> None:
    headers: dict[str, object] = {
        "traceparent": TRACEPARENT.encode(),
        "tracestate": b"congo=t61rcWkgMzE",
    }
    remote = trace.get_current_span(extract_context(headers)).get_span_context()
    assert trace.format_trace_id(remote.trace_id) == TRACE_ID
    assert trace.format_span_id(remote.span_id) == SPAN_ID
    assert remote.trace_state.get("congo") == "t61rcWkgMzE"


def test_extract_with_differently_cased_key() -> None:
    remote = trace.get_current_span(extract_context({"Traceparent": TRACEPARENT}))
    assert trace.format_trace_id(remote.get_span_context().trace_id) == TRACE_ID


@pytest.mark.parametrize(
    "headers",
    [
        None,
        {},
        {"ce-id": "1"},
        {"traceparent": "garbage"},
        {"traceparent": b"\xff\xfe"},
        {"traceparent": 42},
        {"traceparent": None},
    ],
)
def test_extract_tolerates_missing_or_bad_headers(headers: dict[str, object] | None) -> None:
    context = extract_context(headers)
    assert not trace.get_current_span(context).get_span_context().is_valid
