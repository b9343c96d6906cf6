"""The log line schema: every line the init writes is one JSON object.

Who uses it: every program of the binary (the boot and PID 1, supervisord's process and the crash
guard in it, the operator tools), from its first line on.

Fields: `time` (RFC 3339, UTC), `level`, `logger`, `event` (a stable snake_case identifier),
`message`, then the event's own fields. `text` format renders the same record for humans. Whatever
a field holds (the program's words, a file name of odd bytes), the line is valid UTF-8 and every
string in it bounded (`common/text`): one line of the program's output can never make a line
unreadable, nor a megabyte long.
Lines go to stderr so that the supervised program keeps stdout to itself; `docker logs` shows both.
PID 1 holds the boot's lines back until its startup report is written, then writes the report
first and them after it: the report is the first line of a start in `docker logs`, unless the
boot runs long enough (a big migration) that its lines go out as they come.
python-json-logger, which serialises the lines, is imported with the first one: `health` and
`status` configure logging at every call and seldom write a line.
"""

from __future__ import annotations

import datetime as _dt
import logging
import sys
import time
from collections.abc import Callable
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


class _Lines(logging.StreamHandler):
    """stderr, with the boot's lines held back until the startup report has gone first."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.held: list[logging.LogRecord] | None = None
        self.held_until = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        if self.held is not None and time.monotonic() < self.held_until:
            self.held.append(record)
            return
        self.write_held()  # a boot that runs long (a big migration, a checkpoint) shows as it goes
        super().emit(record)

    def write_held(self) -> None:  # not `release`: that is logging.Handler's lock
        held, self.held = self.held or [], None
        for record in held:
            super().emit(record)


def configure(log_format: str = "json", level: str = "info") -> logging.Handler:
    """Install the single stderr handler on the root logger (idempotent: reconfigures in place);
    the handler."""
    root = logging.getLogger()
    handler = _handler()
    if handler is None:
        handler = _Lines()
        handler.set_name(_HANDLER_NAME)
        root.addHandler(handler)
    handler.setFormatter(_TextFormatter() if log_format == "text" else _LineFormatter())
    root.setLevel(level.upper())
    return handler


def _handler() -> _Lines | None:
    found = next((h for h in logging.getLogger().handlers if h.get_name() == _HANDLER_NAME), None)
    return found if isinstance(found, _Lines) else None


def hold_until_report(at_most_s: float) -> None:
    """Keep this process' lines from now until `report_first` (the boot's phases and events), for
    at most `at_most_s`: then they go out as they come. Only in a process that forks no child which
    writes lines before the report: a child would inherit the held ones."""
    handler = _handler()
    if handler is not None:
        handler.held, handler.held_until = [], time.monotonic() + at_most_s


def report_first(write_report: Callable[[], None]) -> None:
    """Write the report's line, then the lines held back: the report is the first line
    `docker logs` shows of this start whenever the boot was quick."""
    handler = _handler()
    if handler is None:
        write_report()
        return
    handler.acquire()  # no other thread's line between the report and the held ones
    try:
        held, handler.held = handler.held, None
        write_report()
        handler.held = held
        handler.write_held()
    finally:
        handler.release()


def release_held() -> None:
    """The held lines, now (a boot that ends the container, a stop, a failure before the report)."""
    handler = _handler()
    if handler is not None:
        handler.acquire()
        try:
            handler.write_held()
        finally:
            handler.release()


def get(component: str) -> logging.Logger:
    return logging.getLogger(f"init.{component}")


def event(logger: logging.Logger, level: str, name: str, message: str, /, **fields: Any) -> None:
    """Write one line: `name` is the stable event identifier, `fields` its own data (never secrets)."""
    logger.log(logging.getLevelName(level.upper()), message, extra={"event": name, "fields": fields})
