"""Structured logs for every govmesh process, with raw identifiers masked on the way out.

`configure_logging` puts one handler on the root logger: one JSON object per line on stderr,
with the service, the process kind ("api", "worker"), and the trace and span ids of the current
OpenTelemetry span, so a log line can be found from a trace and the other way round.

The handler carries `IdentifierMaskingFilter`, so every record that reaches it, from our loggers
or from third-party ones, has any resident ID number (GB 11643: 18 characters, or the legacy 15
digits) or Unified Social Credit Code (GB 32100: 18 characters) replaced by its masked form,
e.g. 330106********123X, in the message, the arguments, `extra=` fields and exception text.
`mask_identifiers` is the single function that does the replacement; span attributes and metric
labels use it too.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from opentelemetry import trace
from pythonjsonlogger.json import JsonEncoder, JsonFormatter

from govmesh.privacy import mask_credentials, mask_identifiers

__all__ = [
    "IdentifierMaskingFilter",
    "JsonLogFormatter",
    "configure_logging",
    "mask_identifiers",
]

# --- masking: govmesh.privacy knows the shapes; this module applies them to log records ---------


def _mask_text(text: str) -> str:
    """What a log may show of a text: identifiers masked, and the passwords of URIs."""
    return mask_credentials(mask_identifiers(text))


def mask_value(value: object, depth: int = 0) -> object:
    """Mask identifiers in a log field or span attribute: strings, integers written as ID numbers,
    and shallow containers of them. Returns `value` itself when nothing changed."""
    if isinstance(value, str):
        return _mask_text(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        text = str(value)
        masked = mask_identifiers(text)
        return value if masked == text else masked
    if depth >= 4:
        return value
    if isinstance(value, Mapping):
        items = [(key, mask_value(item, depth + 1)) for key, item in value.items()]
        if all(new is value[key] for key, new in items):
            return value
        return dict(items)
    if isinstance(value, list | tuple):
        masked_items = [mask_value(item, depth + 1) for item in value]
        if all(new is old for new, old in zip(masked_items, value, strict=True)):
            return value
        return masked_items if isinstance(value, list) else tuple(masked_items)
    return value


# Attributes every LogRecord has; whatever else is on a record came from `extra=`.
_BLANK_RECORD: Final = logging.LogRecord("", logging.INFO, "", 0, "", None, None)
_STANDARD_ATTRS: Final = frozenset(_BLANK_RECORD.__dict__) | {"message", "asctime", "taskName"}

_TRACEBACK_FORMATTER: Final = logging.Formatter()


class IdentifierMaskingFilter(logging.Filter):
    """Masks resident ID numbers and USCCs in a record before any formatter sees it.

    Covers the formatted message (so `%s` arguments too), `extra=` fields, exception text and
    stack info. Never drops a record. The record is changed in place, so every handler after this
    one sees the masked form as well.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        _mask_message(record)
        _mask_extras(record)
        _mask_exception(record)
        return True


def _mask_message(record: logging.LogRecord) -> None:
    if isinstance(record.msg, Mapping):  # a dict message, which python-json-logger supports
        masked_msg = mask_value(record.msg)
        if masked_msg is not record.msg:
            record.msg = masked_msg
        return
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - arguments that do not fit the format
        # The handler will report the bad call, printing msg and args: mask both.
        record.msg = mask_value(record.msg)
        record.args = mask_value(record.args)  # type: ignore[assignment]
        return
    masked = _mask_text(message)
    if masked != message:
        record.msg = masked
        record.args = ()


def _mask_extras(record: logging.LogRecord) -> None:
    fields = record.__dict__
    changed: dict[str, object] = {}
    for key, value in fields.items():
        if key in _STANDARD_ATTRS or value is None:
            continue
        masked = mask_value(value)
        if masked is not value:
            changed[key] = masked
    fields.update(changed)


def _mask_exception(record: logging.LogRecord) -> None:
    if record.exc_info and not record.exc_text:
        # Format it once here, masked; logging.Formatter and JsonLogFormatter use exc_text.
        record.exc_text = _TRACEBACK_FORMATTER.formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = _mask_text(record.exc_text)
    if record.stack_info:
        record.stack_info = _mask_text(record.stack_info)


# --- JSON lines ----------------------------------------------------------------------------------


class _MaskingJsonEncoder(JsonEncoder):
    """python-json-logger's encoder, masking whatever it turns into text (str() of unknown
    objects, exceptions) since the filter cannot see inside arbitrary objects."""

    def default(self, o: Any) -> Any:
        encoded = super().default(o)
        return mask_identifiers(encoded) if isinstance(encoded, str) else encoded


class JsonLogFormatter(JsonFormatter):
    """One JSON object per record: time, level, logger, message, service, process, trace_id,
    span_id (when a valid span is current), exception and stack (when present), then the
    record's `extra=` fields (which never override the fields named before)."""

    def __init__(self, service: str, process: str) -> None:
        super().__init__(json_encoder=_MaskingJsonEncoder, json_ensure_ascii=False)
        self.service = service
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        log_data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
        }
        message_fields: Mapping[str, Any] = {}
        if isinstance(record.msg, Mapping):
            message_fields = record.msg
            log_data["message"] = str(record.msg.get("message", ""))
        else:
            log_data["message"] = record.getMessage()
        log_data["service"] = self.service
        log_data["process"] = self.process

        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            log_data["trace_id"] = trace.format_trace_id(span_context.trace_id)
            log_data["span_id"] = trace.format_span_id(span_context.span_id)

        exception = record.exc_text
        if not exception and record.exc_info:
            exception = mask_identifiers(_TRACEBACK_FORMATTER.formatException(record.exc_info))
        if exception:
            log_data["exception"] = exception
        if record.stack_info:
            log_data["stack"] = record.stack_info

        for key, value in message_fields.items():
            log_data.setdefault(str(key), value)
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                log_data.setdefault(key, value)
        return self.serialize_log_record(log_data)


# --- setup ---------------------------------------------------------------------------------------


class _GovmeshLogHandler(logging.StreamHandler[TextIO]):
    """The handler configure_logging installs; its type marks it for replacement.

    Writes to whatever `sys.stderr` is at the time of each record (as logging's last-resort
    handler does), so a stderr replaced later (test capture, a supervisor) still gets the lines.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always the current sys.stderr


_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def configure_logging(service: str, process: str, level: str = "INFO") -> None:
    """Send every log record to stderr as a JSON line, with identifiers masked.

    `service` is the service name ("identity"), `process` the process kind ("api", "worker"),
    `level` a level name (case does not matter). Calling it again replaces the handler it
    installed before instead of adding a second one; handlers installed by others are kept.
    """
    level_name = level.strip().upper()
    if level_name not in _LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(_LEVELS)}")

    handler = _GovmeshLogHandler()
    handler.setFormatter(JsonLogFormatter(service, process))
    handler.addFilter(IdentifierMaskingFilter())

    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, _GovmeshLogHandler):
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(level_name)
