"""Text from outside, whatever it holds, comes out valid, on one line and bounded; and every line
the init logs stays one valid JSON object whatever its fields hold."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entrypoint.common import log, text

# Anything a str can hold: every code point, lone surrogates (file names of odd bytes, JSON's \ud800)
# and controls included.
ANY_TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=2000)
HOSTILE = [
    "fatal: ✗ → 🚀 配置无效 שגיאה\u200f",
    "\x1b[31mred\x1b[0m\x1b]0;title\x07 \x1bM",
    "nul\x00byte \udcff\udcfe file \ud800 half",
    "line one\nline two\r\nREADY=1\n",
    "x" * (4 << 20),
]


def is_one_valid_line(said: str) -> bool:
    said.encode("utf-8")  # raises for a lone surrogate
    return "\n" not in said and not any(ord(char) < 32 or 0x7F <= ord(char) <= 0x9F for char in said)


@given(ANY_TEXT, st.integers(min_value=20, max_value=600))
@settings(max_examples=300)
def test_one_line_is_valid_single_and_bounded_whatever_it_is_given(said: str, limit: int) -> None:
    line = text.one_line(said, limit)
    assert is_one_valid_line(line) and len(line) <= limit


@given(ANY_TEXT, st.integers(min_value=0, max_value=300))
@settings(max_examples=300)
def test_encoded_is_utf8_cut_at_a_character_within_its_bound(said: str, limit: int) -> None:
    data = text.encoded(said, limit)
    assert len(data) <= limit
    data.decode("utf-8")  # strict: never half a character


def test_escape_sequences_go_and_odd_bytes_are_shown_as_the_bytes_they_were() -> None:
    assert text.one_line("\x1b[1;31merror\x1b[0m: \x00bad\tthing\r\n") == "error: bad thing"
    assert text.valid("name-\udcff\udcfe.json") == "name-\\xff\\xfe.json"
    assert text.decoded(b"ok \xff\xe2\x86") == "ok \ufffd\ufffd"


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """The init's own log handler, writing into a buffer."""
    handler = log.configure()
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)


@pytest.mark.parametrize("said", HOSTILE, ids=["scripts", "escapes", "odd-bytes", "lines", "4-mib"])
def test_a_line_stays_one_valid_bounded_json_object_whatever_its_fields_hold(
    lines: io.StringIO, said: str
) -> None:
    log.event(log.get("test"), "warning", "hostile", said, line=said, tail=[said, {"nested": said}])
    written = lines.getvalue()
    assert written.count("\n") == 1 and written.endswith("\n")
    written.encode("utf-8")
    record = json.loads(written)
    assert record["event"] == "hostile" and record["level"] == "warning"
    assert len(record["line"]) <= log.FIELD_MAX and len(record["message"]) <= log.FIELD_MAX
    assert len(record["tail"][1]["nested"]) <= log.FIELD_MAX


@given(ANY_TEXT)
@settings(max_examples=200)
def test_any_field_makes_a_line_json_reads_back(said: str) -> None:
    handler = log.configure()
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        log.event(log.get("test"), "info", "fuzzed", said, field=said)
    finally:
        handler.setStream(previous)
    written = buffer.getvalue()
    assert written.count("\n") == 1
    json.loads(written)["field"].encode("utf-8")
