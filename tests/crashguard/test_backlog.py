"""The program's output between supervisord's thread and the guard's worker: whatever it writes and
however fast, what waits stays bounded, the newest kept, and every kept line is one valid line."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from entrypoint.crashguard.backlog import MAX_BYTES, Backlog
from entrypoint.crashguard.output import LINE_MAX, TAIL_LINES, Output


def fed(chunks: list[tuple[str, bytes]]) -> Output:
    backlog, output = Backlog(), Output(("lease is still active",))
    for stream, data in chunks:
        backlog.add(stream, data)
        for taken_stream, taken in backlog.take():
            output.feed(taken_stream, taken)
    output.flush()
    return output


@given(st.lists(st.tuples(st.sampled_from(["stdout", "stderr"]), st.binary(max_size=3000)), max_size=40))
@settings(max_examples=200)
def test_any_bytes_in_any_chunks_become_valid_bounded_lines(chunks: list[tuple[str, bytes]]) -> None:
    output = fed(chunks)
    for line in [*output.stderr, *output.both]:
        line.encode("utf-8")
        assert len(line) <= LINE_MAX and "\n" not in line and "\x00" not in line
    assert len(output.stderr) <= TAIL_LINES and len(output.both) <= TAIL_LINES


def test_a_flood_the_worker_has_not_taken_yet_keeps_only_its_newest_bytes() -> None:
    backlog = Backlog()
    told = [backlog.add("stderr", b"x" * 65536) for _ in range(640)]  # 40 MiB, never taken
    assert told.count(True) == 1  # the worker is told once until it takes
    backlog.add("stderr", b"\nthe last words\n")
    (stream, taken), *rest = backlog.take()
    assert stream == "stderr" and rest == []
    assert len(taken.encode()) <= MAX_BYTES + 1 and taken.endswith("the last words\n")
    assert taken.startswith("\n")  # the cut-short line is not joined to what follows
    assert backlog.dropped_bytes == 640 * 65536 + len(b"\nthe last words\n") - MAX_BYTES


def test_a_line_of_megabytes_without_a_newline_is_kept_short() -> None:
    output = fed([("stderr", b"y" * (4 << 20))])
    assert output.stderr and all(len(line) <= LINE_MAX for line in output.stderr)


def test_a_character_split_between_two_reads_stays_whole_and_a_marker_is_still_seen() -> None:
    arrow = "→".encode()
    output = fed([("stderr", b"first " + arrow[:2]), ("stderr", arrow[2:] + b" lease is still active\n")])
    assert list(output.stderr) == ["first → lease is still active"]
    assert output.matched == "first → lease is still active"
