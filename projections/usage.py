"""Usage indicators of memories (MemCube usage metadata): access count, last access, heat.

Reads and search hits are *observations*, not events: they are not on the log, are not
replayed, and differ between a store and its replay. So they live in their own DuckDB
table (``usage``), outside the tables the core projection writes and that replays
compare. Recording an access is a dictionary update in memory; the buffer is written in
one statement per flush (its processor lane flushes it about once a second, and on
close), never one statement per read. Reads of the indicators come from memory too: the
table is mirrored there, so a search does not query DuckDB for its hits' usage.

Heat is an exponentially decayed access count with a half-life of
:data:`HEAT_HALF_LIFE_S` (one day): each access adds 1, and the total halves every day
without access. ``heat_now = heat * 2 ** (-(now - last_access) / half_life)``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from .duck import DuckStore
from .processor import Decided, ProcessorContext

__all__ = ["HEAT_HALF_LIFE_S", "UsageTracker"]

#: Half-life of heat, in seconds (one day).
HEAT_HALF_LIFE_S = 86_400.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    memory_id VARCHAR PRIMARY KEY, access_count BIGINT, last_access TIMESTAMPTZ, heat DOUBLE
)
"""


class UsageTracker:
    """Counts accesses in memory and writes them to the ``usage`` table in batches (a processor).

    Reads of the indicators (:meth:`get`) never touch DuckDB: the tracker mirrors the
    table in memory (loaded once, on the first sync) and adds what is buffered, exactly as
    the next flush will merge it.
    """

    name = "usage"

    def __init__(
        self, half_life: float = HEAT_HALF_LIFE_S, clock: Callable[[], float] = time.time
    ) -> None:
        self.duck: DuckStore | None = None  # set by start (the runtime's store)
        self.half_life = half_life
        #: seconds since the epoch, now: when an access happens (injectable for tests)
        self.clock = clock
        self._lock = threading.Lock()
        self._buffer: dict[str, list[Any]] = {}  # memory_id -> [count, last epoch seconds]
        # memory_id -> (count, last epoch seconds, heat at last access): the table's rows
        self._flushed: dict[str, tuple[int, float, float]] = {}

    def record(self, memory_ids: Iterable[str]) -> None:
        """Count one access of each id now (buffered)."""
        now = self.clock()
        with self._lock:
            for memory_id in memory_ids:
                entry = self._buffer.get(memory_id)
                if entry is None:
                    self._buffer[memory_id] = [1, now]
                else:
                    entry[0] += 1
                    entry[1] = now

    def _merged(
        self, flushed: tuple[int, float, float] | None, count: int, last: float
    ) -> tuple[int, float, float]:
        """A table row merged with buffered accesses (what the flush's upsert computes)."""
        if flushed is None:
            return count, last, float(count)
        f_count, f_last, f_heat = flushed
        return f_count + count, last, f_heat * 2.0 ** (-(last - f_last) / self.half_life) + count

    def flush(self) -> None:
        """Write the buffered accesses in one statement."""
        if self.duck is None:
            return
        # This tracker is the table's only writer, so its mirror holds the rows as they
        # stand: the merged totals (one formula, in _merged) are written as they are. The
        # mirror moves with the buffer, under one lock, so reads never miss an access.
        with self._lock:
            buffered, self._buffer = self._buffer, {}
            merged = {
                memory_id: self._merged(self._flushed.get(memory_id), count, last)
                for memory_id, (count, last) in buffered.items()
            }
            self._flushed.update(merged)
        if not merged:
            return
        rows = [
            (memory_id, count, datetime.fromtimestamp(last, UTC), heat)
            for memory_id, (count, last, heat) in merged.items()
        ]
        with self.duck._write_lock:
            self.duck.cursor().executemany("INSERT OR REPLACE INTO usage VALUES (?, ?, ?, ?)", rows)

    def get(self, memory_ids: list[str]) -> dict[str, tuple[int, datetime | None, float]]:
        """``memory_id -> (access_count, last_access, heat now)``, buffered accesses included
        (ids never accessed are left out)."""
        now = self.clock()
        out = {}
        with self._lock:
            for memory_id in memory_ids:
                flushed = self._flushed.get(memory_id)
                buffered = self._buffer.get(memory_id)
                row = flushed if buffered is None else self._merged(flushed, *buffered)
                if row is None:
                    continue
                count, last, heat = row
                out[memory_id] = (
                    count,
                    datetime.fromtimestamp(last, UTC),
                    heat * 2.0 ** (-(now - last) / self.half_life),
                )
        return out

    # -- the processor protocol: flush with the runner's rhythm ---------------------------

    def start(self, ctx: ProcessorContext) -> int:
        """Load the table into the mirror. Usage is observed, not decided: the tracker
        reflects every event as it is, so its checkpoint is the core's."""
        duck = ctx.duck
        with duck._write_lock:
            duck.cursor().execute(_SCHEMA)
        with duck.reading() as cur:
            rows = cur.execute(
                "SELECT memory_id, access_count, epoch(last_access), heat FROM usage"
            ).fetchall()
        with self._lock:
            self._flushed = {m: (int(c), float(t), float(h)) for m, c, t, h in rows}
        self.duck = duck
        return ctx.head

    def process(self, batch: Sequence[Decided]) -> None:
        """Nothing to do per event (accesses are recorded by the reads)."""

    def tick(self) -> None:
        self.flush()

    def close(self) -> None:
        self.flush()
