"""Traces read back from span files, and `govmesh trace` over them (govmesh.trace_files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from govmesh import cli
from govmesh.trace_files import find_trace, render, trace_id_problem

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OTHER = "0af7651916cd43dd8448eb211c80319c"
MS = 1_000_000
T0 = 1_700_000_000_000 * MS


def span(
    span_id: str,
    parent: str | None,
    name: str,
    service: str,
    start_ms: float,
    end_ms: float,
    trace_id: str = TRACE,
    **fields: Any,
) -> dict[str, Any]:
    return {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": parent,
        "name": name,
        "kind": "INTERNAL",
        "service": f"govmesh-{service}",
        "resource": {"service.name": f"govmesh-{service}"},
        "start_ns": T0 + int(start_ms * MS),
        "end_ns": T0 + int(end_ms * MS),
        "status": "UNSET",
        "status_description": None,
        "attributes": {},
        "events": [],
        **fields,
    }


def write(directory: Path, name: str, spans: list[dict[str, Any]], tail: str = "") -> None:
    directory.mkdir(exist_ok=True)
    with (directory / name).open("a", encoding="utf-8") as file:
        file.writelines(json.dumps(s) + "\n" for s in spans)
        file.write(tail)


@pytest.fixture
def traces(tmp_path: Path) -> Path:
    """A case's trace over three processes' files, with another trace mixed in."""
    directory = tmp_path / "traces"
    write(
        directory,
        "approvals-api-0.jsonl",
        [
            span("a" * 16, "f" * 16, "SubmitCase", "approvals-api", 0, 20),
            span("1" * 16, None, "GetCase", "approvals-api", 5, 6, trace_id=OTHER),
        ],
    )
    write(
        directory,
        "approvals-worker-0.jsonl",
        [
            span("c" * 16, "b" * 16, "on_case_submitted process", "approvals-worker", 30, 90),
            span("b" * 16, "a" * 16, "case_submitted publish", "approvals-worker", 25, 28),
            span("e" * 16, "c" * 16, "case_decided publish", "approvals-worker", 95, 96),
        ],
        # A process killed mid-write leaves half a line.
        tail='{"trace_id": "4bf92f35',
    )
    write(
        directory,
        "records-worker-0.jsonl",
        [
            span("d2" * 8, "c" * 16, "records.get_proof", "records-worker", 40, 60),
            span(
                "d1" * 8,
                "c" * 16,
                "records.get_proof",
                "records-worker",
                35,
                80,
                status="ERROR",
                status_description="PERMISSION_DENIED",
            ),
            span("9" * 16, "8" * 16, "identity.resolve_subject", "identity-worker", 50, 51),
        ],
    )
    (directory / "notes.txt").write_text(json.dumps(span("7" * 16, None, "not a span file", "x", 0, 1)))
    return directory


def names(node: Any) -> list[Any]:
    return [node.span["name"], [names(child) for child in node.children]]


def test_a_trace_is_put_back_together_from_every_file(traces: Path) -> None:
    trace = find_trace(traces, TRACE.upper())
    assert trace is not None and trace.trace_id == TRACE
    assert [names(root) for root in trace.roots] == [
        [
            "SubmitCase",
            [
                [
                    "case_submitted publish",
                    [
                        [
                            "on_case_submitted process",
                            # Children in the order they started, whatever the order of the lines.
                            [["records.get_proof", []], ["records.get_proof", []], ["case_decided publish", []]],
                        ]
                    ],
                ]
            ],
        ],
        ["identity.resolve_subject", []],
    ]
    assert [root.parent_recorded for root in trace.roots] == [False, False]
    assert trace.duration_ms == 96.0
    assert find_trace(traces, "5" * 32) is None


def test_the_tree_as_text_says_process_duration_offset_errors_and_missing_parents(traces: Path) -> None:
    trace = find_trace(traces, TRACE)
    assert trace is not None
    assert render(trace).splitlines() == [
        f"trace {TRACE}: 7 spans in 4 processes, 96.0 ms",
        "SubmitCase  [approvals-api]  20.0 ms  at +0.0 ms  (parent not recorded)",
        "└─ case_submitted publish  [approvals-worker]  3.0 ms  at +25.0 ms",
        "   └─ on_case_submitted process  [approvals-worker]  60.0 ms  at +30.0 ms",
        "      ├─ records.get_proof  [records-worker]  45.0 ms  at +35.0 ms  ERROR: PERMISSION_DENIED",
        "      ├─ records.get_proof  [records-worker]  20.0 ms  at +40.0 ms",
        "      └─ case_decided publish  [approvals-worker]  1.0 ms  at +95.0 ms",
        "identity.resolve_subject  [identity-worker]  1.0 ms  at +50.0 ms  (parent not recorded)",
    ]


def test_the_tree_as_json_nests_children_with_offsets(traces: Path) -> None:
    trace = find_trace(traces, TRACE)
    assert trace is not None
    tree = trace.as_json()
    assert tree["span_count"] == 7
    assert tree["processes"] == ["approvals-api", "approvals-worker", "identity-worker", "records-worker"]
    [handled] = tree["roots"][0]["children"][0]["children"]
    assert handled["parent_recorded"] and handled["parent_span_id"] == "b" * 16
    assert (handled["offset_ms"], handled["duration_ms"]) == (30.0, 60.0)
    assert [child["span_id"] for child in handled["children"]] == ["d1" * 8, "d2" * 8, "e" * 16]


def test_spans_whose_parents_point_at_each_other_are_each_shown_once(tmp_path: Path) -> None:
    write(
        tmp_path,
        "x-api-0.jsonl",
        [span("a" * 16, "b" * 16, "one", "x-api", 0, 1), span("b" * 16, "a" * 16, "two", "x-api", 2, 3)],
    )
    trace = find_trace(tmp_path, TRACE)
    assert trace is not None
    assert [names(root) for root in trace.roots] == [["one", [["two", []]]]]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (TRACE, None),
        (TRACE.upper(), None),
        (TRACE[:-1], "is not a trace id (32 hexadecimal digits)"),
        (TRACE[:-1] + "g", "is not a trace id (32 hexadecimal digits)"),
        (f"00-{TRACE}-00f067aa0ba902b7-01", "is not a trace id (32 hexadecimal digits)"),
        ("0" * 32, "is the invalid all-zero trace id"),
    ],
)
def test_what_a_trace_id_is(text: str, problem: str | None) -> None:
    assert trace_id_problem(text) == problem


def test_the_command_prints_the_tree_or_json(traces: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["trace", TRACE, "--dir", str(traces)]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("SubmitCase  [approvals-api]")
    assert cli.main(["trace", OTHER, "--dir", str(traces), "--json"]) == 0
    tree = json.loads(capsys.readouterr().out)
    assert [root["name"] for root in tree["roots"]] == ["GetCase"]


def test_the_command_reads_the_directory_of_the_setting(
    traces: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_TRACES_FILE_DIR", str(traces))
    assert cli.main(["trace", OTHER]) == 0
    assert "GetCase" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "code", "said"),
    [
        (["trace", "5" * 32], 1, f"govmesh trace: no span of trace {'5' * 32} in "),
        (["trace", "not-a-trace"], 2, "govmesh trace: TRACE_ID: 'not-a-trace' is not a trace id (32 hexadecimal"),
        (["trace", TRACE, "--dir", "missing"], 2, "govmesh trace: 'missing' is not a directory of trace files"),
    ],
)
def test_the_command_says_why_it_shows_nothing(
    traces: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
    said: str,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_FILE_DIR", str(traces))
    monkeypatch.chdir(traces.parent)
    assert cli.main(args) == code
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(said)
