"""What the program last said: its output as lines, kept short, and secrets taken out of it before
any of it is logged.

Pure: supervisord's log events bring chunks of the program's stdout and stderr; the lines they make
are kept here, the last stderr lines to explain a refusal or a hold, the last lines of both streams
to say what the program was doing when its stop timeout ran out, and whether a line since its last
start names a refusal that passes by itself.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable, Mapping

from ..common import text

TAIL_LINES = 20
LINE_MAX = 500  # characters kept of one line
REDACTED = "<redacted>"

# Variables whose values are secrets: their values never appear in a line the guard writes.
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|KEY|CREDENTIAL", re.IGNORECASE)
# Shorter values are not credible secrets, and replacing them ("1", "true") would garble every line.
_SECRET_MIN_LENGTH = 6
# Secrets that announce themselves, whatever variable they came from.
_PATTERNS = (
    # HTTP authorization: `Authorization: Bearer eyJ...`, `Basic dXNlcjpwYXNz` (base64: past its
    # first character a digit, a capital, `+` or `/`, which the English word's next one lacks)
    (re.compile(r"\b(Bearer\s+)[A-Za-z0-9._~+/=-]{6,}", re.IGNORECASE), rf"\1{REDACTED}"),
    (re.compile(r"\b(Basic\s+)(?=[A-Za-z0-9+/][a-z]*[0-9A-Z+/])[A-Za-z0-9+/]{6,}=*"), rf"\1{REDACTED}"),
    # `token=...`, `"apiKey": "..."`, `password: ...`
    (
        re.compile(
            r"""((?:token|secret|password|passwd|api[_-]?key)["']?\s*[:=]\s*["']?)[^\s"',;&]+""",
            re.IGNORECASE,
        ),
        rf"\1{REDACTED}",
    ),
    # A password in a URL: scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@", re.IGNORECASE), rf"\1{REDACTED}@"),
    # Provider keys by their shape: sk-... (OpenAI, Anthropic), xox?-... (Slack), gh?_... (GitHub),
    # a Telegram bot token (digits:35 characters).
    (
        re.compile(
            r"\b(?:sk-[A-Za-z0-9_-]{16,}|xox[abposr]-[A-Za-z0-9-]{10,}|gh[pousr]_[A-Za-z0-9]{20,}"
            r"|\d{6,12}:[A-Za-z0-9_-]{30,})"
        ),
        REDACTED,
    ),
)


class Redactor:
    """Replaces secrets in text: the values of the environment's secret variables (longest
    first, so that a secret containing another is replaced whole), then secrets by their shape."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        values = {
            value
            for name, value in environ.items()
            if _SECRET_NAME.search(name) and len(value) >= _SECRET_MIN_LENGTH
        }
        self.values = sorted(values, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self.values:
            text = text.replace(value, REDACTED)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def lines(self, lines: Iterable[str]) -> list[str]:
        return [self(line) for line in lines]


class Output:
    """The program's last lines as supervisord's log events bring them (chunks, not lines)."""

    def __init__(self, markers: tuple[str, ...] = ()) -> None:
        self.stderr: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.both: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.markers = markers
        self.matched: str | None = None  # the first line naming a marker since the last start
        self._partial = {"stdout": "", "stderr": ""}

    def feed(self, stream: str, data: str) -> None:
        text = self._partial.get(stream, "") + data
        *lines, self._partial[stream] = text.split("\n")
        for line in lines:
            self._line(stream, line.rstrip("\r"))
        if len(self._partial[stream]) > LINE_MAX * 4:  # a run-away line without newline
            self._line(stream, self._partial[stream])
            self._partial[stream] = ""

    def flush(self) -> None:
        """The program exited: what it wrote without a final newline is a line too."""
        for stream, partial in self._partial.items():
            if partial:
                self._line(stream, partial)
        self._partial = dict.fromkeys(self._partial, "")

    def last(self) -> list[str]:
        """The last lines of both streams, with what each is still in the middle of writing."""
        partials = [partial[:LINE_MAX] for partial in self._partial.values() if partial]
        return [*self.both, *partials][-TAIL_LINES:]

    def new_run(self) -> None:
        self.matched = None

    def _line(self, stream: str, line: str) -> None:
        line = text.one_line(line, LINE_MAX)  # whatever the program wrote: one valid, short line
        if stream == "stderr":
            self.stderr.append(line)
        self.both.append(line)
        if self.matched is None and any(marker in line for marker in self.markers):
            self.matched = line
