"""The current rows of live memories, in memory, so that a search answers without DuckDB.

A search ranks memory ids in the indexes, then needs each hit's current view (text, tags,
metadata, MemCube fields). Fetching those from DuckDB (``memories`` joined with
``versions``) costs tens of milliseconds per search at 100,000 memories, far more than the
graph search itself. :class:`CurrentRows` keeps each live memory's view, encoded with
msgpack (a few hundred bytes each; decoding one takes microseconds and hands every caller
its own copy), filled by the semantic processor as it indexes memories and by searches
that had to read DuckDB.

A cached view is only served while it is current. Every view carries the offset of the
last event that changed its memory (``Memory.offset``); the caller passes the decision
state's offset of each memory (the core keeps every memory's state in memory to decide),
and a view whose offset differs is dropped and read again. So a memory archived, erased,
merged or revised since it was cached is never served from a stale copy, whatever the
processor's lag, and putting a view read from an older snapshot is harmless.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import msgspec
from memstream.schemas.views import Memory

__all__ = ["DEFAULT_CAPACITY", "CurrentRows"]

#: Views kept by default; at a few hundred bytes each, 250,000 take roughly 100 MB.
DEFAULT_CAPACITY = 250_000

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Memory).decode


class CurrentRows:
    """Encoded current views of memories by id, at most ``capacity`` (oldest put first out)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self._rows: dict[str, tuple[int, bytes]] = {}  # memory_id -> (offset, view)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rows)

    def put(self, views: Iterable[Memory]) -> None:
        """Keep these views (replacing older ones of the same memories)."""
        if self.capacity == 0:
            return
        encoded = [(m.memory_id, (m.offset, _encode(m))) for m in views]
        with self._lock:
            rows = self._rows
            for memory_id, entry in encoded:
                rows.pop(memory_id, None)  # re-inserted last: the newest put leaves last
                rows[memory_id] = entry
            excess = len(rows) - self.capacity
            if excess > 0:
                for memory_id in list(_first(rows, excess)):
                    del rows[memory_id]

    def drop(self, memory_ids: Iterable[str]) -> None:
        """Forget these memories (no longer live)."""
        with self._lock:
            for memory_id in memory_ids:
                self._rows.pop(memory_id, None)

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()

    def get(
        self, memory_ids: Iterable[str], current_offset: Callable[[str], int | None]
    ) -> tuple[dict[str, Memory], list[str]]:
        """The current views of ``memory_ids`` held here, and the ids to read elsewhere.

        ``current_offset(memory_id)`` is the offset of the last event that changed the
        memory as the core decided it (``None``: unknown); a view of another offset is
        stale, dropped, and its id returned as missing.
        """
        found: dict[str, Memory] = {}
        missing: list[str] = []
        rows = self._rows
        for memory_id in memory_ids:
            entry = rows.get(memory_id)
            if entry is not None and entry[0] == current_offset(memory_id):
                found[memory_id] = _decode(entry[1])
                continue
            if entry is not None:
                with self._lock:
                    if rows.get(memory_id) is entry:
                        del rows[memory_id]
            missing.append(memory_id)
        return found, missing


def _first(rows: dict[str, object], n: int) -> Iterable[str]:
    for i, memory_id in enumerate(rows):
        if i == n:
            return
        yield memory_id
