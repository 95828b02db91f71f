"""A followable stream of decided events: what the core has decided and committed.

Two marks move along the log:

- *decided*: the writer decided the event (its verdict is final: the core's state in memory
  holds it, and the log holds the record durably). The writer announces each batch
  (:meth:`DecidedFeed.announce`) as soon as it has decided it;
- *committed*: the core projection (DuckDB) holds it too (:meth:`DecidedFeed.publish`);
  reads of the store's tables see it from then on.

Readers (the processors' lanes, subscribers) follow the feed from any offset, up to the
committed mark by default, or up to the decided mark when they ask (``decided=True``):
what they do must then not read the core projection for the events they are handed (the
subscription lanes only match and push: a delivery reaches its consumer a DuckDB
transaction earlier).

- what is recent comes from memory: the last few batches, as the writer decided them
  (bounded: :data:`DEFAULT_BUFFER` events);
- what is older comes from storage through the driver's ``source(after, upto)`` (the log's
  records with the outcomes the core projection stored for them), in slices: only what is
  committed can be read from there;
- a reader at the end waits, woken by the next announcement or commit: no polling, no CPU
  while idle. Threads block on a condition; coroutines await an :class:`asyncio.Event` that
  the notifying thread sets through the loop.

A reader of committed events never sees one the core has not committed, so whatever it
does with the verdict agrees with the store's tables.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

from memstream.projections.processor import Decided

__all__ = ["DEFAULT_BUFFER", "DecidedFeed", "FeedClosed"]

#: Decided events kept in memory for readers that follow closely (older ones are read back
#: from storage).
DEFAULT_BUFFER = 50_000

Source = Callable[[int, int], Sequence[Decided]]


class FeedClosed(RuntimeError):
    """The store closed while a reader waited for more."""


class DecidedFeed:
    """Decided events in log order, from any offset, woken by each announcement and commit
    of the core."""

    def __init__(self, source: Source, committed: int, *, buffer: int = DEFAULT_BUFFER):
        self._source = source
        self._committed = committed
        self._decided = committed
        self._limit = buffer
        self._chunks: deque[Sequence[Decided]] = deque()  # contiguous, in order
        self._buffered = 0
        self._cond = threading.Condition()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._closed = False
        self._pokes = 0

    @property
    def committed(self) -> int:
        """The last offset the core projection committed (``-1``: none)."""
        return self._committed

    @property
    def decided(self) -> int:
        """The last offset the writer decided (at least :attr:`committed`)."""
        return self._decided

    # -- the writer side --------------------------------------------------------------------

    def announce(self, pairs: Sequence[Decided]) -> None:
        """The writer decided these pairs (the next offsets, in order): wake the readers
        that follow decisions. Their commit follows, through :meth:`publish`."""
        if not pairs:
            return
        with self._cond:
            self._hold(pairs)
            self._wake()

    def publish(self, pairs: Sequence[Decided]) -> None:
        """The core committed these pairs (the next offsets, in order; announced or not):
        wake the readers."""
        if not pairs:
            return
        with self._cond:
            if pairs[-1][0].offset > self._decided:
                fresh = [p for p in pairs if p[0].offset > self._decided]
                self._hold(fresh)
            self._committed = max(self._committed, pairs[-1][0].offset)
            self._wake()

    def _hold(self, pairs: Sequence[Decided]) -> None:
        """Keep ``pairs`` in memory (under the lock) and move the decided mark."""
        if any(out.destroy_key is not None for _, out in pairs):
            # An erase destroyed keys: what memory holds may carry the plaintext it
            # shredded. Readers read it all back from storage instead, as tombstones.
            self._chunks.clear()
            self._buffered = 0
        else:
            if pairs[0][0].offset != self._decided + 1:  # a gap: memory does not continue
                self._chunks.clear()
                self._buffered = 0
            self._chunks.append(pairs)
            self._buffered += len(pairs)
            while self._buffered > self._limit and len(self._chunks) > 1:
                self._buffered -= len(self._chunks.popleft())
        self._decided = pairs[-1][0].offset

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._wake()

    def poke(self) -> None:
        """Wake every waiting reader with nothing new (its :meth:`wait` returns False), so
        that it looks at a request made meanwhile (the runner's flush)."""
        with self._cond:
            self._pokes += 1
            self._wake()

    def _wake(self) -> None:
        self._cond.notify_all()
        for loop, event in list(self._waiters):
            loop.call_soon_threadsafe(event.set)

    # -- the reader side --------------------------------------------------------------------

    def _readable(self, after: int, decided: bool) -> int:
        """The last offset a reader at ``after`` can read now (under the lock): decided
        events only while memory holds the next one, since storage holds committed ones."""
        if not decided or self._decided == self._committed:
            return self._committed
        if self._chunks and self._chunks[0][0][0].offset <= after + 1:
            return self._decided
        return self._committed

    def read(self, after: int, limit: int = 10_000, *, decided: bool = False) -> list[Decided]:
        """Up to ``limit`` events with offsets above ``after`` that the core has committed
        (``decided``: that the writer has decided), empty when there are none yet."""
        with self._cond:
            upto = self._readable(after, decided)
            if after >= upto:
                return []
            chunks = list(self._chunks)
        limit = min(limit, upto - after)
        if chunks and chunks[0][0][0].offset <= after + 1:
            out: list[Decided] = []
            for chunk in chunks:
                if chunk[-1][0].offset <= after:
                    continue
                start = 0 if chunk[0][0].offset > after else after + 1 - chunk[0][0].offset
                out.extend(chunk[start : start + limit - len(out)])
                if len(out) >= limit:
                    break
            return out
        return list(self._source(after, min(upto, after + limit)))

    def wait(self, after: int, timeout: float | None = None, *, decided: bool = False) -> bool:
        """Block until there is something to read beyond ``after`` (committed, or with
        ``decided``: decided); False when ``timeout`` passed. Raises :class:`FeedClosed`
        when the feed closes first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            pokes = self._pokes
            while self._readable(after, decided) <= after:
                if self._closed:
                    raise FeedClosed("the store closed")
                if self._pokes != pokes:
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return True

    async def wait_async(self, after: int, timeout: float | None = None) -> bool:
        """:meth:`wait` (for committed events) for coroutines: the event loop is not blocked
        meanwhile."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        entry = (loop, event)
        with self._cond:
            if self._committed > after:
                return True
            self._waiters.add(entry)
        try:
            while True:
                with self._cond:
                    if self._committed > after:
                        return True
                    if self._closed:
                        raise FeedClosed("the store closed")
                    event.clear()
                try:
                    await asyncio.wait_for(event.wait(), timeout)
                except TimeoutError:
                    return self._committed > after
        finally:
            with self._cond:
                self._waiters.discard(entry)

    def follow(
        self, start: int = 0, *, batch: int = 10_000, idle: float | None = None
    ) -> Iterator[list[Decided]]:
        """Batches of decided events from offset ``start`` on, live once caught up.

        Blocks at the end until more is committed; ends when the store closes, or after
        ``idle`` seconds with nothing new (``None``: never)."""
        after = start - 1
        while True:
            got = self.read(after, batch)
            if got:
                after = got[-1][0].offset
                yield got
                continue
            try:
                if not self.wait(after, idle):
                    return
            except FeedClosed:
                return

    async def follow_async(
        self, start: int = 0, *, batch: int = 10_000, idle: float | None = None
    ) -> AsyncIterator[list[Decided]]:
        """:meth:`follow` for coroutines (storage reads run in a thread)."""
        after = start - 1
        while True:
            got = await asyncio.to_thread(self.read, after, batch)
            if got:
                after = got[-1][0].offset
                yield got
                continue
            try:
                if not await self.wait_async(after, idle):
                    return
            except FeedClosed:
                return
