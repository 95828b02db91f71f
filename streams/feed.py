"""A followable stream of decided events: what the core projection has committed.

The core projection hands every batch it commits to :meth:`DecidedFeed.publish`; readers
(the processors' lanes, subscribers) follow the feed from any offset:

- what is recent comes from memory: the last few batches, as the core committed them
  (bounded: :data:`DEFAULT_BUFFER` events);
- what is older comes from storage through the driver's ``source(after, upto)`` (the log's
  records with the outcomes the core projection stored for them), in slices;
- a reader at the end waits, woken by the next commit: no polling, no CPU while idle.
  Threads block on a condition; coroutines await an :class:`asyncio.Event` that the
  committing thread sets through the loop.

A reader never sees an event the core has not committed, so whatever it does with the
verdict agrees with the store's state.
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
    """Decided events in log order, from any offset, woken by each commit of the core."""

    def __init__(self, source: Source, committed: int, *, buffer: int = DEFAULT_BUFFER):
        self._source = source
        self._committed = committed
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

    # -- the writer side --------------------------------------------------------------------

    def publish(self, pairs: Sequence[Decided]) -> None:
        """The core committed these pairs (the next offsets, in order): wake the readers."""
        with self._cond:
            if pairs and any(out.destroy_key is not None for _, out in pairs):
                # An erase destroyed keys: what memory holds may carry the plaintext it
                # shredded. Readers read it all back from storage instead, as tombstones.
                self._chunks.clear()
                self._buffered = 0
                self._committed = pairs[-1][0].offset
            elif pairs:
                first = pairs[0][0].offset
                if first != self._committed + 1:  # a gap: memory no longer continues storage
                    self._chunks.clear()
                    self._buffered = 0
                self._chunks.append(pairs)
                self._buffered += len(pairs)
                while self._buffered > self._limit and len(self._chunks) > 1:
                    self._buffered -= len(self._chunks.popleft())
                self._committed = pairs[-1][0].offset
            self._wake()

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

    def read(self, after: int, limit: int = 10_000) -> list[Decided]:
        """Up to ``limit`` decided events with offsets above ``after`` that the core has
        committed (empty when there are none yet)."""
        with self._cond:
            upto = self._committed
            if after >= upto:
                return []
            chunks = list(self._chunks)
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

    def wait(self, after: int, timeout: float | None = None) -> bool:
        """Block until the core commits beyond ``after``; False when ``timeout`` passed.
        Raises :class:`FeedClosed` when the feed closes first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            pokes = self._pokes
            while self._committed <= after:
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
        """:meth:`wait` for coroutines: the event loop is not blocked meanwhile."""
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
