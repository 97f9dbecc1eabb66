"""A writer of text streamed as a download, with nothing spooled to disk.

``audit.bundle.export_bundle`` writes to a text stream (the CLI hands it a
file). Over HTTP the bundle is streamed instead: the writer runs in a thread of
its own and hands encoded chunks through a small bounded queue, so memory holds
a few chunks at most, and a client that goes away stops the writer.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

CHUNK = 64 * 1024
_DONE = object()


class _Stopped(Exception):
    """The reader went away: the writer stops at its next write."""


class _Sink:
    """Enough of a text stream for a writer that only calls ``write``."""

    def __init__(self, put: Callable[[object], None]) -> None:
        self._put = put
        self._parts: list[str] = []
        self._size = 0

    def write(self, text: str) -> int:
        self._parts.append(text)
        self._size += len(text)
        if self._size >= CHUNK:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if self._parts:
            self._put("".join(self._parts).encode("utf-8"))
            self._parts, self._size = [], 0


def stream_text(write: Callable[[Any], object]) -> Iterator[bytes]:
    """The UTF-8 chunks ``write(stream)`` writes, as they are written."""
    chunks: queue.Queue[object] = queue.Queue(maxsize=8)
    stop = threading.Event()

    def put(item: object) -> None:
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        raise _Stopped

    def work() -> None:
        try:
            sink = _Sink(put)
            write(sink)
            sink.flush()
            put(_DONE)
        except _Stopped:
            return
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, who raises it
            try:
                put(exc)
            except _Stopped:
                return

    thread = threading.Thread(target=work, name="text-stream", daemon=True)
    thread.start()
    try:
        while True:
            item = chunks.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, bytes)
            yield item
    finally:
        stop.set()
