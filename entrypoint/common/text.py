"""Text from outside made safe to write: what the program prints, what it answers, what a file is
called. Whatever its bytes (invalid UTF-8, NULs, escape sequences, a line of megabytes, any script),
what leaves here is valid Unicode that encodes to UTF-8, and, where asked, one bounded line.

Who uses it: every program that repeats outside text: the log lines (every field, in every
process), sd_notify's `STATUS=` (PID 1), the crash guard's excerpts of the program's output
(supervisord's process), `health` and `status` (operators). Bounds are in characters of the
result; `encoded` bounds bytes, for a datagram.
"""

from __future__ import annotations

import re

ELLIPSIS = "…"
# What the filesystem hands Python for bytes that are not UTF-8 (surrogateescape), shown as the
# bytes they were; any other lone surrogate (from JSON's \ud800, say) as its code point.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# C0 and C1 controls and DEL: a newline would end a line (or an sd_notify assignment), an escape
# sequence would repaint an operator's terminal, a NUL ends a C string.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]+")
# Terminal escape sequences (colours, cursor moves: CSI ... final byte; ESC and one byte): dropped
# whole, so that a coloured line reads as its words.
_ESCAPE_SEQUENCE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")


def valid(text: str) -> str:
    """`text` with every lone surrogate written out, so that it encodes to UTF-8."""
    if not _SURROGATE.search(text):
        return text
    text = _ESCAPED_BYTE.sub(lambda match: f"\\x{ord(match.group()) - 0xDC00:02x}", text)
    return _SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def decoded(data: bytes) -> str:
    """Bytes from outside as text: UTF-8 where they are, U+FFFD where they are not."""
    return data.decode("utf-8", "replace")


def shortened(text: str, limit: int) -> str:
    """At most `limit` characters: the start, an ellipsis and how much was left out."""
    if len(text) <= limit:
        return text
    note = f"{ELLIPSIS}[{len(text) - limit} more]"
    return text[: max(0, limit - len(note))] + note


def one_line(text: str, limit: int = 500) -> str:
    """One line of at most `limit` characters: escape sequences go, other controls (newlines, NULs)
    become one space each run, surrounding blanks go, lone surrogates are written out."""
    plain = _CONTROL.sub(" ", _ESCAPE_SEQUENCE.sub("", valid(text)))
    return shortened(" ".join(plain.split()), limit)


def encoded(text: str, limit_bytes: int) -> bytes:
    """`text` as UTF-8, cut to at most `limit_bytes` bytes at a character's boundary."""
    data = valid(text).encode("utf-8")
    if len(data) <= limit_bytes:
        return data
    return data[:limit_bytes].decode("utf-8", "ignore").encode("utf-8")
