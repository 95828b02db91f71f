"""Waiting on many subscriptions at once.

A process that consumes many subscriptions from threads need not poll each in turn: every
:class:`~memstream.pubsub.consumer.Consumer` watched by a :class:`ReadySet` marks itself
there when it may have something to deliver (the hub pushed it matches, it read some from
the log, an acknowledgement made room under its ``max_in_flight``, it closed), and
:meth:`ReadySet.wait` answers which were marked. A mark is a hint, never a delivery: the
consumer is then asked as usual, and may answer a heartbeat. A delivery that falls due
again (not acknowledged within ``ack_timeout``) marks nothing: whoever waits takes from
every subscriber when a wait ends empty, as a heartbeat would have it.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable

__all__ = ["ReadySet"]


class ReadySet:
    """The keys of the watched consumers that may have something to deliver."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._marked: dict[Hashable, None] = {}  # insertion-ordered, each key once

    def mark(self, key: Hashable) -> None:
        """``key``'s consumer may have something to deliver (called under its lock)."""
        with self._cond:
            if key not in self._marked:
                self._marked[key] = None
                if len(self._marked) == 1:
                    self._cond.notify_all()

    def wait(self, timeout: float) -> list[Hashable]:
        """The keys marked since the last wait, in the order they were marked, once each;
        waiting up to ``timeout`` seconds for the first (an empty list: none came)."""
        with self._cond:
            if not self._marked:
                self._cond.wait(timeout)
            marked = list(self._marked)
            self._marked.clear()
            return marked

    def __len__(self) -> int:
        with self._cond:
            return len(self._marked)
