"""Catching up: deciding and projecting a long run of records as fast as the machine allows.

A catch-up (opening a store whose projection is behind its log, a replay, a rebuild) reads,
opens and decides records on the calling thread while a writer thread writes the previous
batch to DuckDB; batches grow to a row group when the run is long; the garbage collector's
automatic passes are paused meanwhile. The measurements behind each choice are in
docs/benchmarks.md.
"""

from __future__ import annotations

import gc
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from memstream.projections.core import CoreBatch, project
from memstream.projections.duck import Prepared, prepare
from memstream.schemas.memcube import Logged, Outcome
from memstream.schemas.record import LogRecord

ProgressFactory = Callable[[str, int], Callable[[int], None]]

#: Records decided and projected at a time while catching up (see ``_catch_up``).
CATCH_UP_SLICE = 500
#: Records between two young-generation collections while catching up (see ``_catch_up``).
CATCH_UP_COLLECT = 250_000
#: DuckDB's row group. An insert of at least this many rows is written straight to the
#: database file; a smaller one goes to the WAL first and is written again by a checkpoint.
DUCKDB_ROW_GROUP = 122_880


def catch_up_batch(pending: int, batch_size: int) -> int:
    """Records per transaction when catching up on ``pending`` records.

    Live batches are small (``batch_size``: an append waits for its batch), and so are the
    batches of a short catch-up, whose first batch nothing overlaps (100,000 events: 4.1 s
    in batches of 10,000, 4.5 s in batches of 25,000, 5.2 s as one). A long catch-up (a
    replay, a rebuild, from four row groups on) writes a row group per transaction
    instead: each batch then updates ``memories`` with one scan of a table that has grown
    large, and its rows skip the WAL. Measured on 1,000,000 events: 72-90 s in batches of
    10,000, 58 s in batches of 65,536, 52 s in batches of 131,072 (COMMITs, with their WAL
    writes and checkpoints, fell from 21-25 s to 3 s; the updates from 13-16 s to 2 s).
    """
    return DUCKDB_ROW_GROUP if pending >= 4 * DUCKDB_ROW_GROUP else batch_size


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the garbage collector's automatic passes (process-wide) for a bulk job.

    Reference counting still frees everything that is not part of a cycle; the caller runs
    ``gc.collect(1)`` at intervals for the rest. Nested and concurrent pauses (two stores
    catching up at once) are counted: the collector comes back, if it was on, when the
    last one ends.
    """
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


class BatchWriter:
    """Writes batches on a thread of its own, in the order they are put, while the caller
    prepares the next ones (at most ``depth`` wait). An error in a write is raised to the
    caller by its next ``put`` or by ``close``; no later batch is written after it."""

    def __init__(self, write: Callable[[Prepared], None], depth: int = 1):
        self._write = write
        self._queue: queue.Queue[Prepared | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="memstream-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            if self._error is None:
                try:
                    self._write(batch)
                except BaseException as e:  # raised in the caller's thread
                    self._error = e

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, batch: Prepared) -> None:
        self._raise()
        self._queue.put(batch)

    def stop(self) -> None:
        """Wait for the batches already put, without raising (the caller is failing)."""
        self._queue.put(None)
        self._thread.join()

    def close(self) -> None:
        """Wait for every batch put; raise the first write error."""
        self.stop()
        self._raise()


def catch_up(
    read: Callable[..., Iterator[list[LogRecord]]],
    start: int,
    end: int,
    batch_size: int,
    decided: Callable[[Iterator[list[LogRecord]]], Iterator[list[tuple[Logged, Outcome]]]],
    write: Callable[[Prepared], None],
    progress: ProgressFactory | None = None,
) -> None:
    """Decide (``decided``) and project (``write``) the records ``start <= offset < end``
    that ``read(start, end, batch=...)`` yields."""
    total = end - start
    if total <= 0:
        return
    tick = progress("projecting", total) if progress else None
    limit = catch_up_batch(total, batch_size)
    # Records are decided and turned into rows a slice at a time, and the rows are
    # written every ``limit`` records (``catch_up_batch``). The events of a slice are
    # garbage before the next one is read, so the collector never promotes a whole
    # batch of them to its oldest generation.
    #
    # A writer thread writes batch n to DuckDB while this thread reads, opens and
    # decides batch n + 1: DuckDB releases the interpreter lock while it executes, so
    # the two overlap on two cores. This thread also turns each batch into its Arrow
    # tables (``prepare``), so that the writer holds the lock only between statements
    # (see ``Prepared``). Batches are written in order, each in its own transaction
    # with its offset, exactly as without the thread; the first error stops both.
    #
    # The collector's automatic passes are paused meanwhile (see ``collector_paused``):
    # every object of a batch lives until the batch is written, so each automatic pass
    # would scan it again, and this path makes no reference cycles for them to find.
    # In case an upcaster or a library does, a young-generation pass runs every
    # ``CATCH_UP_COLLECT`` records (it scans the objects of the batches in flight).
    writer = BatchWriter(write)
    with collector_paused():
        try:
            batch = CoreBatch()
            uncollected = 0
            slices = read(start, end, batch=min(limit, CATCH_UP_SLICE))
            for pairs in decided(slices):
                project(pairs, batch)
                uncollected += len(pairs)
                if len(batch) >= limit:
                    writer.put(prepare(batch))
                    batch = CoreBatch()
                    if uncollected >= CATCH_UP_COLLECT:
                        gc.collect(1)
                        uncollected = 0
                if tick:
                    tick(len(pairs))
            if len(batch):
                writer.put(prepare(batch))
        except BaseException:
            writer.stop()
            raise
        writer.close()
