"""The program's output on its way from supervisord's thread to the guard's worker: bounded, the
newest kept, decoded as it is taken.

Where it differs: `add` runs in supervisord's main thread (its log events), `take` in the worker.
The program may print anything at any rate (a flood, a line of megabytes, bytes that are not
UTF-8): while the worker is busy, what waits here is at most `MAX_BYTES` a stream, and what is
dropped is the oldest (an exit is explained by the last lines). Bytes become text only here, with
one decoder a stream, so that a character split between two of supervisord's reads stays whole.
"""

from __future__ import annotations

import codecs
import threading

MAX_BYTES = 256 * 1024  # a stream's output waiting for the worker


class Backlog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, bytearray] = {}
        self._dropped: dict[str, int] = {}
        self._told = False  # the worker was told that output waits, and has not taken it yet
        self._decoders: dict[str, codecs.IncrementalDecoder] = {}
        self.dropped_bytes = 0  # in all, since the start

    def add(self, stream: str, data: bytes) -> bool:
        """Keep `data`; True when the worker is to be told that output waits (once until it takes)."""
        with self._lock:
            waiting = self._waiting.setdefault(stream, bytearray())
            waiting += data
            excess = len(waiting) - MAX_BYTES
            if excess > 0:
                del waiting[:excess]
                self._dropped[stream] = self._dropped.get(stream, 0) + excess
            tell, self._told = not self._told, True
        return tell

    def take(self) -> list[tuple[str, str]]:
        """What waits, as (stream, text) in the order of the streams' first output. Where some was
        dropped, the text begins with a line break: the line cut short is not joined to the next."""
        with self._lock:
            waiting, self._waiting = self._waiting, {}
            dropped, self._dropped = self._dropped, {}
            self._told = False
        taken = []
        for stream, data in waiting.items():
            decoder = self._decoders.setdefault(stream, codecs.getincrementaldecoder("utf-8")("replace"))
            gap = ""
            if dropped.get(stream):
                self.dropped_bytes += dropped[stream]
                decoder.reset()
                gap = "\n"
            taken.append((stream, gap + decoder.decode(bytes(data))))
        return taken
