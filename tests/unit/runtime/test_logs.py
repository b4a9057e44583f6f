"""JSON log lines and the identifier mask (govmesh.logs)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from govmesh.logs import IdentifierMaskingFilter, configure_logging, mask_identifiers

RESIDENT_18 = "330106199003071234"
RESIDENT_18_X = "33010619900307123X"
RESIDENT_18_LOWER_X = "33010619900307123x"
RESIDENT_15 = "330106900307123"
USCC = "91330106MA2AXKQ61Y"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
RAW_IDS = (RESIDENT_18, RESIDENT_18_X, RESIDENT_18_LOWER_X, RESIDENT_15, USCC)


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, with its handlers and level put back after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


@pytest.fixture
def lines(root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """Configures logging for identity/api and returns a function reading the JSON lines
    written to stderr since the last call."""
    configure_logging("identity", "api")

    def read() -> list[dict[str, Any]]:
        err = capsys.readouterr().err
        return [json.loads(line) for line in err.splitlines() if line.strip()]

    yield read


def one_line(read: Any) -> dict[str, Any]:
    records = read()
    assert len(records) == 1, records
    result: dict[str, Any] = records[0]
    return result


def assert_no_raw_id(text: str) -> None:
    for raw in RAW_IDS:
        assert raw not in text


# --- mask_identifiers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (RESIDENT_18, "330106********1234"),
        (RESIDENT_18_X, "330106********123X"),
        (RESIDENT_18_LOWER_X, "330106********123x"),
        (RESIDENT_15, "330106*****7123"),
        (USCC, "913301********Q61Y"),
        ("身份证330106199003071234已登记", "身份证330106********1234已登记"),
        (f"id={RESIDENT_18}, uscc={USCC}.", "id=330106********1234, uscc=913301********Q61Y."),
        (f"ids [{RESIDENT_15}|{RESIDENT_18_X}]", "ids [330106*****7123|330106********123X]"),
        (f"id_{RESIDENT_18}", "id_330106********1234"),
        ("３３０１０６１９９００３０７１２３４", "３３０１０６********１２３４"),
        (f"Name. {RESIDENT_18}.", "Name. 330106********1234."),
        # after a control character as repr() and JSON escape it: the escape's last letter or
        # digit does not make the identifier part of a longer run
        (repr(f"\t{RESIDENT_18}"), "'\\t330106********1234'"),
        (repr(f"\x00{RESIDENT_18_X}"), "'\\x00330106********123X'"),
        (str(b"\x12\x12" + RESIDENT_18.encode()), "b'\\x12\\x12330106********1234'"),
        (f"\\u001b{USCC}", "\\u001b913301********Q61Y"),
    ],
)
def test_identifiers_are_masked(text: str, expected: str) -> None:
    assert mask_identifiers(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        TRACE_ID,
        f"trace_id={TRACE_ID} span_id=00f067aa0ba902b7",
        "1234567890123456789012345678901234567890",  # 40 digits
        "3301061990030712345",  # 19 digits
        "550e8400-e29b-41d4-a716-446655440000",  # UUID
        "12345678901234567",  # 17 digits
        "12345678901234",  # 14 digits
        "ABCDEFGHJKLMNPQRTU",  # USCC alphabet but no digit
        "91330106MA2AXKQ61I",  # I is not in the USCC alphabet
        f"ID{RESIDENT_18}",  # part of a longer run
        "plain words, nothing long",
        "duration_seconds_sum 0.030565123456780208",  # a metric's fraction
        "",
    ],
)
def test_other_text_is_left_alone(text: str) -> None:
    assert mask_identifiers(text) == text


def test_masking_is_idempotent() -> None:
    once = mask_identifiers(f"a {RESIDENT_18} b {USCC}")
    assert mask_identifiers(once) == once


def test_text_without_a_long_run_is_returned_as_is() -> None:
    text = "short words only " * 20
    assert mask_identifiers(text) is text


# --- JSON lines ----------------------------------------------------------------------------------


def test_json_line_has_the_documented_fields(lines: Any) -> None:
    logging.getLogger("govmesh.test").info("hello %s", "world", extra={"case_id": "C-1"})
    record = one_line(lines)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])
    assert record["level"] == "INFO"
    assert record["logger"] == "govmesh.test"
    assert record["message"] == "hello world"
    assert record["service"] == "identity"
    assert record["process"] == "api"
    assert record["case_id"] == "C-1"
    assert "trace_id" not in record
    assert "span_id" not in record
    assert "exception" not in record
    assert list(record)[:6] == ["time", "level", "logger", "message", "service", "process"]


def test_level_filters(lines: Any) -> None:
    log = logging.getLogger("govmesh.test")
    log.debug("not shown")
    log.warning("shown")
    assert [r["message"] for r in lines()] == ["shown"]


def test_trace_and_span_ids_of_the_current_span(lines: Any) -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        logging.getLogger("govmesh.test").info("inside")
    context = span.get_span_context()
    record = one_line(lines)
    assert record["trace_id"] == trace.format_trace_id(context.trace_id)
    assert record["span_id"] == trace.format_span_id(context.span_id)
    assert re.fullmatch(r"[0-9a-f]{32}", record["trace_id"])
    assert re.fullmatch(r"[0-9a-f]{16}", record["span_id"])


def test_exception_text(lines: Any) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("govmesh.test").exception("failed")
    record = one_line(lines)
    assert record["message"] == "failed"
    assert record["level"] == "ERROR"
    assert "Traceback" in record["exception"]
    assert "ValueError: boom" in record["exception"]


def test_configure_logging_twice_keeps_one_handler(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    before = len(root_logger.handlers)
    configure_logging("identity", "api")
    configure_logging("identity", "worker", level="debug")
    assert len(root_logger.handlers) == before + 1
    logging.getLogger("govmesh.test").debug("once")
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert len(records) == 1
    assert records[0]["process"] == "worker"


def test_unknown_level_is_refused(root_logger: logging.Logger) -> None:
    with pytest.raises(ValueError, match="NOISY"):
        configure_logging("identity", "api", level="NOISY")


# --- masking in log records ----------------------------------------------------------------------


def test_masked_in_message(lines: Any) -> None:
    logging.getLogger("govmesh.test").info(f"registered {RESIDENT_18_X}")
    record = one_line(lines)
    assert record["message"] == "registered 330106********123X"


def test_masked_in_chinese_text(lines: Any) -> None:
    logging.getLogger("govmesh.test").info("身份证%s已登记", RESIDENT_18)
    assert one_line(lines)["message"] == "身份证330106********1234已登记"


@pytest.mark.parametrize("raw", RAW_IDS)
def test_masked_in_args(lines: Any, raw: str) -> None:
    logging.getLogger("govmesh.test").info("id %s", raw)
    record = one_line(lines)
    assert record["message"] == f"id {mask_identifiers(raw)}"
    assert_no_raw_id(json.dumps(record))


def test_masked_in_mapping_args(lines: Any) -> None:
    logging.getLogger("govmesh.test").info("id %(id)s", {"id": RESIDENT_15})
    assert one_line(lines)["message"] == "id 330106*****7123"


def test_masked_in_extra_fields(lines: Any) -> None:
    logging.getLogger("govmesh.test").info(
        "registered",
        extra={
            "identifier": RESIDENT_18,
            "uscc": f"code {USCC}",
            "as_number": int(RESIDENT_18),
            "nested": {"ids": [RESIDENT_15, "ok"]},
            "count": 3,
        },
    )
    record = one_line(lines)
    assert record["identifier"] == "330106********1234"
    assert record["uscc"] == "code 913301********Q61Y"
    assert record["as_number"] == "330106********1234"
    assert record["nested"] == {"ids": ["330106*****7123", "ok"]}
    assert record["count"] == 3


def test_masked_in_exception_text(lines: Any) -> None:
    try:
        raise LookupError(f"no subject for {RESIDENT_18_X}")
    except LookupError:
        logging.getLogger("govmesh.test").exception("lookup of %s failed", RESIDENT_18_X)
    record = one_line(lines)
    assert "LookupError: no subject for 330106********123X" in record["exception"]
    assert record["message"] == "lookup of 330106********123X failed"
    assert_no_raw_id(json.dumps(record))


def test_masked_in_unknown_objects(lines: Any) -> None:
    class Subject:
        def __str__(self) -> str:
            return f"Subject({RESIDENT_18})"

    logging.getLogger("govmesh.test").info("x", extra={"subject": Subject()})
    assert one_line(lines)["subject"] == "Subject(330106********1234)"


def test_masked_for_third_party_loggers(lines: Any) -> None:
    logging.getLogger("pika.channel").warning("publish failed for %s", RESIDENT_18)
    assert one_line(lines)["message"] == "publish failed for 330106********1234"


def test_trace_ids_are_not_masked(lines: Any) -> None:
    logging.getLogger("govmesh.test").info("trace %s", TRACE_ID, extra={"ref": TRACE_ID})
    record = one_line(lines)
    assert record["message"] == f"trace {TRACE_ID}"
    assert record["ref"] == TRACE_ID


def test_bad_format_arguments_do_not_leak(
    lines: Any,
    root_logger: logging.Logger,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Straight to our handler: pytest's own capture handler fails the test on a bad call.
    monkeypatch.setattr(logging, "raiseExceptions", True)
    (handler,) = [h for h in root_logger.handlers if type(h).__name__ == "_GovmeshLogHandler"]
    record = logging.LogRecord("govmesh.test", logging.INFO, __file__, 1, "two %s %s", (RESIDENT_18,), None)
    handler.handle(record)
    err = capsys.readouterr().err
    assert "Logging error" in err  # logging reports the bad call...
    assert_no_raw_id(err)  # ...without the raw number


def test_filter_changes_the_record_for_every_later_handler() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "id %s", (RESIDENT_18,), None)
    assert IdentifierMaskingFilter().filter(record) is True
    assert record.getMessage() == "id 330106********1234"
    assert logging.Formatter().format(record) == "id 330106********1234"


# --- credentials in URIs -----------------------------------------------------------------------


def test_no_password_of_any_broker_in_a_list_reaches_a_log_line(lines: Any) -> None:
    """kombu masks the first URI of a failover list and printed the others' passwords as they are
    (nameko's "Error connecting to broker at ..." on a 3-node cluster)."""
    uri = "amqp://guest:s3cret@10.0.0.1:5672/prod;amqp://guest:other-secret@10.0.0.2:5672/prod"
    logging.getLogger("nameko.messaging").warning("Error connecting to broker at %s (refused)", uri)
    logging.getLogger("govmesh.test").info("connecting", extra={"amqp": uri})
    text = json.dumps(lines())
    assert "s3cret" not in text and "other-secret" not in text
    assert "amqp://guest:********@10.0.0.2:5672/prod" in text
