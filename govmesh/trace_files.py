"""Traces read back from the files the "file" exporter writes (OTEL_TRACES_EXPORTER=file), for
`govmesh trace`: a trace as a tree without a tracing backend.

Each process appends its finished spans, one JSON object a line (govmesh.tracing.span_record), to
a file of its own under OTEL_TRACES_FILE_DIR. A trace is every line of every file with its trace
id, put back together by parent span id: children in the order they started, a span whose parent
is in no file (the caller's own span, or a process that did not write it) a root of its own.
Plain Python over the files; nothing here knows a service.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "SpanNode",
    "Trace",
    "TraceFileError",
    "find_trace",
    "read_spans",
    "render",
    "trace_id_problem",
]

_TRACE_ID = re.compile(r"[0-9a-f]{32}")


class TraceFileError(Exception):
    """The directory of trace files cannot be read."""


def trace_id_problem(text: str) -> str | None:
    """Why `text` is not a trace id as traceparent and log lines write it; None when it is one."""
    if not _TRACE_ID.fullmatch(text.strip().lower()):
        return "is not a trace id (32 hexadecimal digits)"
    if set(text.strip()) == {"0"}:
        return "is the invalid all-zero trace id"
    return None


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                # A process killed in the middle of a write leaves half a line: the rest is good.
                continue
            if isinstance(record, dict):
                yield record


def read_spans(directory: Path, trace_id: str) -> list[dict[str, Any]]:
    """Every span of `trace_id` in the directory's files (span_record objects), each once."""
    if not directory.is_dir():
        raise TraceFileError(f"{str(directory)!r} is not a directory of trace files")
    wanted = trace_id.strip().lower()
    spans: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.jsonl")):
        for record in _lines(path):
            if record.get("trace_id") == wanted and isinstance(record.get("span_id"), str):
                spans.setdefault(record["span_id"], record)
    return list(spans.values())


@dataclass
class SpanNode:
    """A span in its trace: where it sits (its children, whether its parent was recorded) and when."""

    span: dict[str, Any]
    parent_recorded: bool
    children: list[SpanNode] = field(default_factory=list)

    @property
    def start_ns(self) -> int:
        return int(self.span.get("start_ns") or 0)

    @property
    def duration_ms(self) -> float:
        end = self.span.get("end_ns")
        return 0.0 if end is None else (int(end) - self.start_ns) / 1e6

    @property
    def process(self) -> str:
        """Which process recorded it: service.name without the mesh's own prefix."""
        return str(self.span.get("service") or "?").removeprefix("govmesh-")

    def walk(self) -> Iterator[SpanNode]:
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass
class Trace:
    trace_id: str
    roots: list[SpanNode]

    def spans(self) -> Iterator[SpanNode]:
        for root in self.roots:
            yield from root.walk()

    @property
    def start_ns(self) -> int:
        return min(node.start_ns for node in self.spans())

    @property
    def duration_ms(self) -> float:
        ends = [int(node.span.get("end_ns") or node.start_ns) for node in self.spans()]
        return (max(ends) - self.start_ns) / 1e6

    def as_json(self) -> dict[str, Any]:
        start = self.start_ns

        def node_json(node: SpanNode) -> dict[str, Any]:
            span = node.span
            return {
                "span_id": span["span_id"],
                "parent_span_id": span.get("parent_span_id"),
                "parent_recorded": node.parent_recorded,
                "name": span.get("name"),
                "kind": span.get("kind"),
                "process": node.process,
                "resource": span.get("resource", {}),
                "start": span.get("start"),
                "offset_ms": round((node.start_ns - start) / 1e6, 3),
                "duration_ms": round(node.duration_ms, 3),
                "status": span.get("status"),
                "status_description": span.get("status_description"),
                "attributes": span.get("attributes", {}),
                "events": span.get("events", []),
                "children": [node_json(child) for child in node.children],
            }

        nodes = list(self.spans())
        return {
            "trace_id": self.trace_id,
            "span_count": len(nodes),
            "processes": sorted({node.process for node in nodes}),
            "duration_ms": round(self.duration_ms, 3),
            "roots": [node_json(root) for root in self.roots],
        }


def _by_start(nodes: Iterable[SpanNode]) -> list[SpanNode]:
    return sorted(nodes, key=lambda node: (node.start_ns, str(node.span.get("name"))))


def find_trace(directory: Path, trace_id: str) -> Trace | None:
    """The trace with this id as a tree, from the directory's files; None when no file has a span of it."""
    spans = read_spans(directory, trace_id)
    if not spans:
        return None
    ids = {span["span_id"] for span in spans}
    nodes = {span["span_id"]: SpanNode(span, parent_recorded=span.get("parent_span_id") in ids) for span in spans}
    roots = []
    for node in nodes.values():
        if node.parent_recorded:
            nodes[node.span["parent_span_id"]].children.append(node)
        else:
            roots.append(node)
    for node in nodes.values():
        node.children = _by_start(node.children)
    trace = Trace(trace_id.strip().lower(), _by_start(roots))
    while True:
        # Spans whose parents point at each other (a corrupt file) reach no root: each cycle is
        # cut at its earliest span, which becomes a root, so no span is lost and none is drawn twice.
        reached = {id(node) for node in trace.spans()}
        left = _by_start(node for node in nodes.values() if id(node) not in reached)
        if not left:
            return trace
        nodes[left[0].span["parent_span_id"]].children.remove(left[0])
        trace.roots.append(left[0])


def _line(node: SpanNode, trace_start: int) -> str:
    offset = (node.start_ns - trace_start) / 1e6
    text = f"{node.span.get('name')}  [{node.process}]  {node.duration_ms:.1f} ms  at +{offset:.1f} ms"
    if node.span.get("status") == "ERROR":
        description = node.span.get("status_description")
        text += f"  ERROR{': ' + description if description else ''}"
    if not node.parent_recorded and node.span.get("parent_span_id"):
        text += "  (parent not recorded)"
    return text


def render(trace: Trace) -> str:
    """The trace as an indented tree, one span a line: name, process, duration, offset from the
    trace's start, an error's status."""
    nodes = list(trace.spans())
    processes = {node.process for node in nodes}
    lines = [f"trace {trace.trace_id}: {len(nodes)} spans in {len(processes)} processes, {trace.duration_ms:.1f} ms"]
    start = trace.start_ns

    def draw(node: SpanNode, lead: str, branch: str) -> None:
        lines.append(f"{lead}{branch}{_line(node, start)}")
        below = lead + ("" if not branch else "   " if branch == "└─ " else "│  ")
        for index, child in enumerate(node.children):
            draw(child, below, "└─ " if index == len(node.children) - 1 else "├─ ")

    for root in trace.roots:
        draw(root, "", "")
    return "\n".join(lines)
