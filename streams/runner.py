"""The processor runner: drives every processor over the decided events of one log.

Each processor (:class:`~memstream.projections.processor.Processor`) gets a lane, a thread
of its own that follows the :class:`~memstream.streams.feed.DecidedFeed` from the
processor's checkpoint: a slow processor (embedding texts for the vector index) never
holds back a fast one, nor the core projection, nor the writers. A lane

1. starts its processor, which answers with its checkpoint;
2. hands it every decided event after that checkpoint in batches (from memory while it
   keeps up, from storage when it is behind), waiting for the next commit when it is done
   (a processor whose ``follows_decisions`` is true is handed events as soon as the writer
   has decided them, before the core projection commits them: it must not read the core
   projection for them);
3. calls its ``tick`` at least every ``interval`` seconds, and its ``flush`` (if it has
   one) when :meth:`ProcessorRunner.flush` asks;
4. on ``close``, catches up with what the core committed, then closes the processor.

An error in a processor stops its lane; :meth:`ProcessorRunner.wait_for` raises it to
readers, who learn which processor failed (reopening the store resumes it from its
checkpoint). The same runner serves the embedded driver and each shard of the Kafka
driver: the driver supplies the feed and the processors, nothing else.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from memstream.projections.duck import DuckStore
from memstream.projections.processor import Processor, ProcessorContext

from .feed import DecidedFeed, FeedClosed

__all__ = ["ProcessorFailed", "ProcessorRunner"]

log = logging.getLogger("memstream.runner")

#: Most decided events handed to a processor in one ``process`` call.
LANE_BATCH = 10_000


class ProcessorFailed(RuntimeError):
    """A processor stopped on an error; the store must be reopened (it resumes)."""


class _Lane:
    def __init__(self, runner: ProcessorRunner, processor: Processor):
        self.runner = runner
        self.processor = processor
        #: Its checkpoint (``-2``: not started yet).
        self.checkpoint = -2
        self.failure: BaseException | None = None
        #: the last flush request this lane carried out
        self.flushed = 0
        self.thread = threading.Thread(
            target=self._run, name=f"memstream-{processor.name}", daemon=True
        )

    def _run(self) -> None:
        r, p = self.runner, self.processor
        early = bool(getattr(p, "follows_decisions", False))
        try:
            self._advance(p.start(ProcessorContext(r.duck, r.feed.committed)))
            last_tick = time.monotonic()
            while True:
                batch = r.feed.read(self.checkpoint, r.batch, decided=early)
                if batch:
                    p.process(batch)
                    self._advance(batch[-1][0].offset)
                elif r.stopping:
                    break
                else:
                    try:
                        r.feed.wait(self.checkpoint, r.interval, decided=early)
                    except FeedClosed:
                        r.stopping = True
                if time.monotonic() - last_tick >= r.interval:
                    p.tick()
                    last_tick = time.monotonic()
                wanted, target = r.flush_request
                if self.flushed < wanted and self.checkpoint >= target:
                    flush = getattr(p, "flush", None)
                    if flush is not None:
                        flush()
                    with r.cond:
                        self.flushed = wanted
                        r.cond.notify_all()
        except BaseException as e:  # the lane stops; readers learn it from wait_for
            log.exception("processor %s stopped", p.name)
            with r.cond:
                self.failure = e
                r.cond.notify_all()

    def _advance(self, offset: int) -> None:
        with self.runner.cond:
            self.checkpoint = offset
            self.runner.cond.notify_all()
        if self.runner.on_advance is not None:
            self.runner.on_advance(self.processor.name, offset)


class ProcessorRunner:
    """Lanes for ``processors`` over ``feed``; ``duck`` is the core projection they read."""

    def __init__(
        self,
        feed: DecidedFeed,
        duck: DuckStore,
        processors: Sequence[Processor],
        *,
        interval: float = 1.0,
        batch: int = LANE_BATCH,
        on_advance: Callable[[str, int], None] | None = None,
    ):
        """``on_advance(name, offset)`` is called (on the lane's thread) each time a
        processor's checkpoint moves: a driver's hook for work that follows a processor
        (the Kafka driver shares the vectors the search index computed)."""
        self.feed, self.duck = feed, duck
        self.interval, self.batch = interval, batch
        self.on_advance = on_advance
        self.cond = threading.Condition()
        self.stopping = False
        #: (number of flush requests made so far, the offset the last one must reach)
        self.flush_request = (0, -1)
        self.lanes = [_Lane(self, p) for p in processors]
        names = [p.name for p in processors]
        if len(set(names)) != len(names):
            raise ValueError(f"processor names must be unique: {names}")

    def start(self) -> None:
        for lane in self.lanes:
            lane.thread.start()

    def close(self) -> None:
        """Let every lane catch up with what the core committed, then close each processor
        (a failed one too: it saves what it can)."""
        self.stopping = True
        self.feed.close()
        for lane in self.lanes:
            lane.thread.join()
        for lane in self.lanes:
            try:
                lane.processor.close()
            except Exception:
                log.exception("closing processor %s failed", lane.processor.name)

    def __getitem__(self, name: str) -> Processor:
        for lane in self.lanes:
            if lane.processor.name == name:
                return lane.processor
        raise KeyError(name)

    @property
    def processors(self) -> list[Processor]:
        return [lane.processor for lane in self.lanes]

    @property
    def checkpoint(self) -> int:
        """The offset every processor reflects (``-2`` before each has started)."""
        return min((lane.checkpoint for lane in self.lanes), default=self.feed.committed)

    def checkpoints(self) -> dict[str, int]:
        return {lane.processor.name: lane.checkpoint for lane in self.lanes}

    def failure(self, names: Sequence[str] | None = None) -> tuple[str, BaseException] | None:
        """The first failure among the processors (or those ``names``), if any."""
        for lane in self.lanes:
            if lane.failure is not None and (names is None or lane.processor.name in names):
                return lane.processor.name, lane.failure
        return None

    def raise_failure(self, names: Sequence[str] | None = None) -> None:
        failed = self.failure(names)
        if failed is not None:
            name, e = failed
            raise ProcessorFailed(
                f"the {name} processor stopped: {e!r}; reopen the store to resume (it "
                "catches up from its checkpoint, or rebuilds)"
            ) from e

    def flush(self, timeout: float, on_timeout: Callable[[int], BaseException]) -> None:
        """Have every processor catch up with what the core committed, then persist what
        it would otherwise persist later (its ``flush``: an index saved, erased content
        purged from its files). Blocks until each has, or raises ``on_timeout(reached)``
        after ``timeout`` seconds, or the failure of one of them."""
        deadline = time.monotonic() + timeout
        with self.cond:
            wanted = self.flush_request[0] + 1
            self.flush_request = (wanted, self.feed.committed)
        self.feed.poke()
        with self.cond:
            while True:
                self.raise_failure()
                if all(lane.flushed >= wanted for lane in self.lanes):
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise on_timeout(min(lane.checkpoint for lane in self.lanes))
                self.cond.wait(left)

    def wait_for(
        self,
        offset: int,
        timeout: float,
        on_timeout: Callable[[int], BaseException],
        names: Sequence[str] | None = None,
        *,
        extend: Callable[[], float] | None = None,
    ) -> None:
        """Block until the processors (all, or those ``names``) reflect ``offset``; raise
        ``on_timeout(reached)`` after ``timeout`` seconds, or the failure of one of them.
        ``extend``, asked each time the time is up, gives seconds more to wait (0: none):
        the embedded driver's wait for a model that is loading."""
        lanes = [lane for lane in self.lanes if names is None or lane.processor.name in names]
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                self.raise_failure(names)
                reached = min((lane.checkpoint for lane in lanes), default=offset)
                if reached >= offset:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    more = extend() if extend is not None else 0.0
                    if more <= 0:
                        raise on_timeout(reached)
                    deadline = time.monotonic() + more
                    left = more
                self.cond.wait(left)
