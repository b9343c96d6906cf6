"""The log line schema: every line the init writes is one JSON object.

Who uses it: every program of the binary (the boot and PID 1, supervisord's process and the crash
guard in it, the operator tools), from its first line on.

Fields: `time` (RFC 3339, UTC), `level`, `logger`, `event` (a stable snake_case identifier),
`message`, then the event's own fields. `text` format renders the same record for humans. Whatever
a field holds (the program's words, a file name of odd bytes), the line is valid UTF-8 and every
string in it bounded (`common/text`): one line of the program's output can never make a line
unreadable, nor a megabyte long.
Lines go to stderr so that the supervised program keeps stdout to itself; `docker logs` shows both.
python-json-logger, which serialises the lines, is imported with the first one: `health` and
`status` configure logging at every call and seldom write a line.
"""

from __future__ import annotations

import datetime as _dt
import logging
import sys
from typing import Any

from . import text

LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("debug", "info", "warning", "error")

_HANDLER_NAME = "init-stderr"
# Characters kept of one string in a line: far more than any of ours, far less than a flood.
FIELD_MAX = 8192


def rfc3339(timestamp: float) -> str:
    """UTC time with milliseconds and a `Z`, e.g. 2026-11-26T23:59:01.042Z."""
    moment = _dt.datetime.fromtimestamp(timestamp, tz=_dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _record_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {key: _safe(value) for key, value in getattr(record, "fields", {}).items()}


def _safe(value: Any) -> Any:
    """A field as it may be written: strings valid and bounded, containers walked."""
    if isinstance(value, str):
        return text.shortened(text.valid(value), FIELD_MAX)
    if isinstance(value, dict):
        return {str(key): _safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_safe(item) for item in value]
    return value


def _message(record: logging.LogRecord) -> str:
    return text.shortened(text.valid(record.getMessage()), FIELD_MAX)


class _LineFormatter(logging.Formatter):
    """One JSON object per record, built by python-json-logger's formatter from the first line on."""

    def __init__(self) -> None:
        super().__init__()
        self._json: logging.Formatter | None = None

    def format(self, record: logging.LogRecord) -> str:
        if self._json is None:
            self._json = _json_formatter()
        return self._json.format(record)


def load_serializer() -> None:
    """Import python-json-logger now rather than with the first line: a process about to fork a
    child that writes lines too, so that both share its pages instead of importing it twice."""
    import pythonjsonlogger.json  # noqa: F401


def _json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    class Schema(JsonFormatter):
        """python-json-logger serialises; the schema (and its key order) is ours."""

        def add_fields(
            self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
        ) -> None:
            log_data["time"] = rfc3339(record.created)
            log_data["level"] = record.levelname.lower()
            log_data["logger"] = record.name
            log_data["event"] = getattr(record, "event", "log")
            log_data["message"] = _message(record)
            for key, value in _record_fields(record).items():
                # The schema's own keys win: an event field can never forge `level` or `event`.
                log_data.setdefault(key, value)

    return Schema()


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{key}={value}" for key, value in _record_fields(record).items())
        event = getattr(record, "event", "log")
        line = f"{rfc3339(record.created)} {record.levelname.lower():<7} {record.name}: {event}: "
        return line + _message(record) + (f" [{fields}]" if fields else "")


def configure(log_format: str = "json", level: str = "info") -> logging.Handler:
    """Install the single stderr handler on the root logger (idempotent: reconfigures in place);
    the handler."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if h.get_name() == _HANDLER_NAME), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        root.addHandler(handler)
    handler.setFormatter(_TextFormatter() if log_format == "text" else _LineFormatter())
    root.setLevel(level.upper())
    return handler


def get(component: str) -> logging.Logger:
    return logging.getLogger(f"init.{component}")


def event(logger: logging.Logger, level: str, name: str, message: str, /, **fields: Any) -> None:
    """Write one line: `name` is the stable event identifier, `fields` its own data (never secrets)."""
    logger.log(logging.getLevelName(level.upper()), message, extra={"event": name, "fields": fields})
