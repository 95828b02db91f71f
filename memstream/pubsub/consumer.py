"""One subscription's durable consumer: what is ready, what is in flight, what is resolved.

A :class:`Consumer` is the delivery state of one subscription in this process, shared by
every connection that consumes it (they compete for its deliveries, as the members of a
durable pull consumer do):

- ``scanned``: every event at or below it has been looked at; the ones that match are
  ready, in flight or resolved (while live, the hub's position says how far: see
  :meth:`Consumer.examined`);
- ``ready``: matching events not delivered yet, in log order, bounded;
- in flight: delivered and not acknowledged; at most ``max_in_flight``, each delivered again
  after ``ack_timeout`` seconds without an acknowledgement;
- ``cursor``: every matching event at or below it is resolved (acknowledged, or parked);
  it is saved (:class:`~memstream.pubsub.cursors.CursorStore`) with the acknowledgements
  above it, so a restart delivers again exactly what was not resolved.

While it keeps up, the :class:`~memstream.pubsub.hub.HubLane` of its kind pushes its
matches as the core commits them (*live*). Behind (a new subscription starting from the
past, or one whose ready list overflowed because nobody consumed it), it reads the log
itself, from ``scanned``, until it reaches the hub again and attaches: the hub then pushes
only what lies beyond ``scanned``, so the switch from catch-up to live has no gap and no
duplicate. A slow consumer holds at most its bounded lists in memory; ingest never waits
for it.
"""

from __future__ import annotations

import asyncio
import heapq
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from memstream.projections.processor import Decided
from memstream.projections.subscriptions import SubscriptionRule
from memstream.streams.feed import DecidedFeed, FeedClosed

from .cursors import CursorStore, Parked, Position

if TYPE_CHECKING:
    from .hub import HubLane
    from .ready import ReadySet

__all__ = ["READY_LIMIT", "SCAN_BATCH", "Consumer", "ConsumerClosed", "Item"]

#: Matches a consumer holds ready at most; beyond, it reads them back from the log.
READY_LIMIT = 10_000
#: Events a consumer reads from the log at a time while it catches up (each read from storage
#: has a cost of its own, in proportion to the log's size; its matches stay within
#: :data:`READY_LIMIT`).
SCAN_BATCH = 10_000
#: Seconds between saves of a position that moved without an acknowledgement.
SAVE_INTERVAL = 1.0


class ConsumerClosed(RuntimeError):
    """The subscription was deleted or changed generation, or the store closed."""


@dataclass(slots=True)
class Item:
    """A delivery: the decided event at ``offset``, delivered for the ``attempt``-th time."""

    offset: int
    decided: Decided
    attempt: int


class Consumer:
    """The delivery state of one subscription (see the module docstring)."""

    def __init__(
        self,
        rule: SubscriptionRule,
        start_after: int,
        cursors: CursorStore,
        feed: DecidedFeed,
        select: Callable[[Sequence[Decided]], list[Decided]],
        lane: HubLane,
        before: Callable[[datetime], int] | None = None,
    ):
        """``before(t)``: the last offset recorded before time ``t`` (for :meth:`seek`)."""
        self.name = rule.name
        self.before = before
        self.rule = rule
        self.generation = rule.generation
        self.cursors = cursors
        self.feed = feed
        #: this subscription's matches among a batch (its filter, for its own reads)
        self.select = select
        self.lane = lane
        saved = cursors.position(rule.name, rule.generation)
        self.cursor = saved.cursor if saved is not None else start_after
        self._acked: set[int] = set(saved.acked) if saved is not None else set()
        self._saved = (self.cursor, frozenset(self._acked))
        self._saved_at = time.monotonic()
        self.scanned = self.cursor
        self.ready: deque[Decided] = deque()
        self._inflight: dict[int, Item] = {}
        self._deadlines: list[tuple[float, int, int]] = []  # (deadline, offset, attempt)
        self.live = False
        self.closed: str | None = None
        self._scanning = False
        self.cond = threading.Condition()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        #: the ready sets watching it, each with the key it marks there
        self._watchers: list[tuple[ReadySet, Hashable]] = []
        #: how many deliveries and redeliveries it made (for status)
        self.delivered = 0
        self.redelivered = 0

    # -- the hub's side ----------------------------------------------------------------------

    def push(self, matches: Sequence[Decided]) -> bool:
        """The hub's matches for this consumer (it is live); False when they do not fit (the
        hub then detaches it: it reads them from the log)."""
        with self.cond:
            fresh = [d for d in matches if d[0].offset > self.scanned]
            if len(self.ready) + len(fresh) > READY_LIMIT:
                return False
            acked = self._acked
            self.ready.extend(d for d in fresh if d[0].offset not in acked)
            self._notify()
            return True

    def examined(self) -> int:
        """Every event at or below this offset has been looked at: while live, as far as
        the hub has pushed (the hub's position moves after its pushes)."""
        return max(self.scanned, self.lane.position) if self.live else self.scanned

    def change(
        self, rule: SubscriptionRule, select: Callable[[Sequence[Decided]], list[Decided]]
    ) -> None:
        """The subscription changed (its filter, its limits): from now on, those apply."""
        with self.cond:
            self.rule, self.select = rule, select
            self._notify()

    def close(self, why: str) -> None:
        with self.cond:
            if self.closed is None:
                self.closed = why
            self._notify()
        self._save()

    # -- the consumers' side -----------------------------------------------------------------

    def next(self, timeout: float) -> Item | None:
        """The next delivery: a redelivery that is due, else the next ready match (while
        fewer than ``max_in_flight`` are in flight); None when nothing came within
        ``timeout`` seconds (the caller sends a heartbeat). Raises
        :class:`ConsumerClosed`."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                now = time.monotonic()
                item = self._poll(now)
                if item is not None:
                    return item
                if self._wants_scan():
                    self._scanning = True
                    self.cond.release()
                    try:
                        self._scan()
                    finally:
                        self.cond.acquire()
                    continue
                wait = self._wait_time(now, deadline)
                if wait <= 0:
                    self._save_locked(force=False)
                    return None
                self.cond.wait(wait)

    async def next_async(self, timeout: float) -> Item | None:
        """:meth:`next` for coroutines: the loop is not blocked (reads of the log run in a
        thread; waiting is an :class:`asyncio.Event` that the notifying thread sets)."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        entry = (loop, event)
        deadline = time.monotonic() + timeout
        try:
            while True:
                with self.cond:
                    now = time.monotonic()
                    item = self._poll(now)
                    if item is not None:
                        return item
                    scan = self._wants_scan()
                    if scan:
                        self._scanning = True
                    else:
                        wait = self._wait_time(now, deadline)
                        if wait <= 0:
                            self._save_locked(force=False)
                            return None
                        event.clear()
                        self._waiters.add(entry)
                if scan:
                    await asyncio.to_thread(self._scan)
                    continue
                try:
                    await asyncio.wait_for(event.wait(), wait)
                except TimeoutError:
                    pass
        finally:
            with self.cond:
                self._waiters.discard(entry)

    def _poll(self, now: float) -> Item | None:
        """A delivery to make now, if any (under the lock)."""
        if self.closed is not None:
            raise ConsumerClosed(self.closed)
        item = self._due(now)
        if item is not None:
            return item
        if self.ready and len(self._inflight) < self.rule.max_in_flight:
            d = self.ready.popleft()
            item = Item(d[0].offset, d, 1)
            self._track(item, now)
            self.delivered += 1
            return item
        return None

    def _wants_scan(self) -> bool:
        return (
            not self.live
            and not self._scanning
            and not self.ready
            and len(self._inflight) < self.rule.max_in_flight
        )

    def _wait_time(self, now: float, deadline: float) -> float:
        wait = deadline - now
        if self._deadlines:
            wait = min(wait, self._deadlines[0][0] - now)
        return wait

    def watch(self, ready: ReadySet, key: Hashable) -> None:
        """Mark ``key`` in ``ready`` whenever there may be something to deliver (marked
        once now: whatever is ready already)."""
        with self.cond:
            self._watchers.append((ready, key))
            ready.mark(key)

    def unwatch(self, ready: ReadySet, key: Hashable) -> None:
        with self.cond:
            self._watchers = [(r, k) for r, k in self._watchers if r is not ready or k != key]

    def _notify(self, signal: bool = True) -> None:
        """Wake every waiting consumer thread and coroutine (under the lock); ``signal``:
        mark it in the ready sets watching it too (not for a move of the cursor alone)."""
        self.cond.notify_all()
        for loop, event in list(self._waiters):
            loop.call_soon_threadsafe(event.set)
        if signal:
            self._signal()

    def _signal(self) -> None:
        for ready, key in self._watchers:
            ready.mark(key)

    def _due(self, now: float) -> Item | None:
        """A delivery whose acknowledgement is overdue, delivered again."""
        while self._deadlines and self._deadlines[0][0] <= now:
            _, offset, attempt = heapq.heappop(self._deadlines)
            item = self._inflight.get(offset)
            if item is None or item.attempt != attempt:
                continue  # resolved meanwhile, or delivered again already
            item.attempt += 1
            self._track(item, now)
            self.redelivered += 1
            return item
        return None

    def _track(self, item: Item, now: float) -> None:
        self._inflight[item.offset] = item
        heapq.heappush(self._deadlines, (now + self.rule.ack_timeout, item.offset, item.attempt))

    def _scan(self) -> None:
        """Read the log beyond ``scanned`` and keep the matches (called without the lock,
        ``_scanning`` set); at the end of what the core committed, attach to the hub."""
        try:
            after = self.scanned
            batch = self.feed.read(after, SCAN_BATCH, decided=self.lane.follows_decisions)
            matches = self.select(batch) if batch else []
            if not batch:
                self.lane.attach(self)
                return
            with self.cond:
                if self.scanned == after:  # nothing pushed meanwhile (not live)
                    acked = self._acked
                    self.ready.extend(d for d in matches if d[0].offset not in acked)
                    self.scanned = batch[-1][0].offset
        except FeedClosed as e:
            with self.cond:
                self.closed = self.closed or str(e)
        finally:
            with self.cond:
                self._scanning = False
                self._notify()

    # -- acknowledgements ----------------------------------------------------------------------

    def ack(self, offsets: Iterable[int]) -> int:
        """Resolve these deliveries; how many were in flight."""
        with self.cond:
            n = 0
            for offset in offsets:
                if self._inflight.pop(offset, None) is not None:
                    n += 1
                if offset > self.cursor:
                    self._acked.add(offset)
            self._advance()
            self._notify(signal=bool(n and self.ready))  # room under max_in_flight
        self._save()
        return n

    def ack_upto(self, offset: int) -> int:
        """Resolve every delivery in flight at or below ``offset``."""
        with self.cond:
            done = [o for o in self._inflight if o <= offset]
        return self.ack(done)

    def nack(self, offset: int, *, reason: str | None, park: bool) -> bool:
        """A delivery the consumer could not handle: parked (kept aside, resolved) or, with
        ``park=False``, delivered again at once. False when it was not in flight."""
        with self.cond:
            item = self._inflight.get(offset)
            if item is None:
                return False
            if not park:
                heapq.heappush(self._deadlines, (0.0, offset, item.attempt))
                self._notify()
                return True
        ev = item.decided[0].event
        self.cursors.park(
            Parked(self.name, offset, ev.event_id, ev.memory_id, item.attempt, reason, time.time()),
            self.generation,
        )
        self.ack([offset])
        return True

    def seek(self, after: int) -> None:
        """Start again after offset ``after``: what is ready or in flight is dropped, and
        every match beyond ``after`` is delivered (again)."""
        self.lane.detach(self.name)
        with self.cond:
            self.ready.clear()
            self._inflight.clear()
            self._deadlines.clear()
            self._acked.clear()
            self.cursor = self.scanned = after
            self._notify()
        self._save()

    def resend_after(self, position: int) -> None:
        """A consumer that saw deliveries up to ``position`` only (its connection broke):
        the ones in flight beyond it go out again at once."""
        with self.cond:
            for offset, item in self._inflight.items():
                if offset > position:
                    heapq.heappush(self._deadlines, (0.0, offset, item.attempt))
            self._notify()

    def _advance(self) -> None:
        """Move the cursor to just below the oldest unresolved match."""
        floor = self.examined()
        if self._inflight:
            floor = min(floor, min(self._inflight) - 1)
        if self.ready:
            floor = min(floor, self.ready[0][0].offset - 1)
        if floor > self.cursor:
            self.cursor = floor
            self._acked = {o for o in self._acked if o > floor}
            self._notify(signal=False)

    def _save_locked(self, force: bool = True) -> None:
        """Save the position if it moved. Unforced (a heartbeat: the cursor moved past
        events that did not match), at most every :data:`SAVE_INTERVAL` seconds: losing
        such a move costs a few reads of the log again, never a delivery."""
        self._advance()
        saved = self._saved
        if self.cursor == saved[0] and len(self._acked) == len(saved[1]) == 0:
            return  # the common case of a heartbeat: nothing moved, nothing to compare
        state = (self.cursor, frozenset(self._acked))
        if state == saved:
            return
        now = time.monotonic()
        if not force and state[1] == self._saved[1] and now - self._saved_at < SAVE_INTERVAL:
            return
        self._saved, self._saved_at = state, now
        self.cursors.save(self.name, Position(self.generation, state[0], state[1]))

    def _save(self) -> None:
        with self.cond:
            self._save_locked()

    # -- what it shows -------------------------------------------------------------------------

    def in_flight(self) -> list[int]:
        with self.cond:
            return sorted(self._inflight)

    def position(self) -> tuple[int, int, int]:
        """``(examined, cursor, in flight)``: what a heartbeat reports."""
        with self.cond:
            return self.examined(), self.cursor, len(self._inflight)

    def stats(self) -> dict[str, int | bool]:
        with self.cond:
            return {
                "cursor": self.cursor,
                "scanned": self.examined(),
                "ready": len(self.ready),
                "in_flight": len(self._inflight),
                "live": self.live,
                "delivered": self.delivered,
                "redelivered": self.redelivered,
            }
