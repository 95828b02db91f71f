"""What a processor is: the one shape every consumer of decided events takes.

A processor consumes batches of decided events, ``(logged event, outcome)`` pairs in log
order, and keeps its own checkpoint: the last offset its effects reflect, committed
atomically with them (the tracking record of event-sourcing frameworks), so that after a
crash it resumes from there and a duplicate delivery changes nothing. It never decides:
the core projection decided each event once, and every processor sees that verdict.

The search indexes, the usage indicators, and later the subscriptions and the artifact
builders (KV caches, LoRA adapters) are processors. One runner drives them all, in both
drivers (:mod:`memstream.streams.runner`): a new processor is a class that follows this
protocol, registered once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from memstream.schemas.memcube import Logged, Outcome

from .duck import DuckStore

__all__ = ["Decided", "Processor", "ProcessorContext"]

#: One decided event: the event at its place in the log, and its verdict.
Decided = tuple[Logged, Outcome]


@dataclass(frozen=True)
class ProcessorContext:
    """What a processor gets when it starts.

    ``duck`` is the core projection of the same log (read it, never write its tables);
    ``head`` is the last offset the core projection held when the processor started.
    """

    duck: DuckStore
    head: int


@runtime_checkable
class Processor(Protocol):
    """A consumer of decided events with a checkpoint of its own.

    - ``start(ctx)`` opens it and returns its checkpoint: the last offset its effects
      reflect (``-1``: none). It may catch up from ``ctx.duck`` (a snapshot of the current
      state) and return ``ctx.head``. The runner then hands it every decided event after
      its checkpoint, in order.
    - ``process(batch)`` applies a batch and moves the checkpoint to its last offset,
      atomically (or idempotently: applying a batch twice leaves the same effects).
    - ``tick()`` is called at least every runner interval, also when no event comes: for
      work that is due by time (saving an index, flushing a buffer).
    - ``close()`` saves and releases what it holds.

    A processor may set ``follows_decisions = True``: it is then handed each event as soon
    as the writer has decided it, before the core projection has committed it (sooner, but
    ``ctx.duck`` may not show those events yet). Without it, it is handed committed events.
    """

    name: str

    def start(self, ctx: ProcessorContext) -> int: ...

    def process(self, batch: Sequence[Decided]) -> None: ...

    def tick(self) -> None: ...

    def close(self) -> None: ...
