"""Small records a face keeps per partition, shared by every worker through a compacted topic.

A worker keeps some bookkeeping of each partition it owns beside the shard (the subscription
cursors: how far each subscription's consumers acknowledged). When the partition moves to a
worker that never owned it, that worker must find that bookkeeping as the last owner left it.
:class:`SharedState` does it the way Kafka keeps consumer offsets: every change is a record of
the ``partition-state`` topic (compacted: the last value of a key wins, ``None`` deletes it),
written to the topic partition of the same number as the events partition it is about. Every
worker follows the topic into memory; a worker that gains a partition reads it to its end
first (:meth:`SharedState.catch_up`), then takes that partition's records
(:meth:`PartitionState.items`).

Writes are queued and sent in the background within a few milliseconds; a partition's
owner flushes them when it gives the partition up (:meth:`SharedState.flush`). A worker
killed before it sent its last changes loses them: what the face keeps here must tolerate
that (a cursor that moved back delivers again: at least once).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict

from aiokafka import TopicPartition

from . import clients
from .settings import KafkaSettings

__all__ = ["PartitionState", "SharedState"]

log = logging.getLogger("memstream.kafka.state")

#: Milliseconds the producer waits to batch the changes queued together.
LINGER_MS = 5


class PartitionState:
    """One partition's records: what a face reads when it starts and writes as it goes."""

    def __init__(self, shared: SharedState, partition: int):
        self.shared = shared
        self.partition = partition

    def items(self) -> dict[str, bytes]:
        """The partition's records as every worker last wrote them (as far as read)."""
        return self.shared.items(self.partition)

    def put(self, key: str, value: bytes | None) -> None:
        """Record ``key`` (``None``: delete it); sent in the background. Thread-safe."""
        self.shared.put(self.partition, key, value)


class SharedState(clients.LogFollower):
    """A worker's reader and writer of the partition-state topic."""

    def __init__(self, settings: KafkaSettings):
        self.settings = settings
        self.topic = settings.partition_state
        self._tps = [TopicPartition(self.topic, p) for p in range(settings.partitions)]
        self._latest: defaultdict[int, dict[str, bytes]] = defaultdict(dict)
        self._lock = threading.Lock()
        self._pending: list[tuple[int, str, bytes | None]] = []
        self._read = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due: asyncio.Event | None = None
        self._sender: asyncio.Task[None] | None = None
        #: records read from the topic since the start
        self.received = 0
        #: records sent to the topic since the start
        self.sent = 0

    def partition(self, p: int) -> PartitionState:
        return PartitionState(self, p)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._due = asyncio.Event()
        await self._open("memstream-partition-state", linger_ms=LINGER_MS)
        self._sender = asyncio.create_task(self._send_loop(), name="memstream-state-sender")

    async def stop(self) -> None:
        """Send what is queued, then stop."""
        await clients.stop(self._sender)
        self._sender = None
        try:
            await self.flush()
        except Exception as e:  # a broker that is gone: the changes are lost (at least once)
            log.warning("partition state: %d changes not sent (%r)", len(self._pending), e)
        await super().stop()

    # -- reading -----------------------------------------------------------------------------

    def items(self, p: int) -> dict[str, bytes]:
        with self._lock:
            return dict(self._latest.get(p, {}))

    async def _poll(self, timeout_ms: int) -> int:
        async with self._read:
            got = await self._c.getmany(timeout_ms=timeout_ms, max_records=10_000)
        n = 0
        with self._lock:
            for tp, recs in got.items():
                latest = self._latest[tp.partition]
                for r in recs:
                    if r.key is None:
                        continue
                    n += 1
                    key = r.key.decode("utf-8", "replace")
                    if r.value is None:
                        latest.pop(key, None)
                    else:
                        latest[key] = r.value
        self.received += n
        return n

    # -- writing -----------------------------------------------------------------------------

    def put(self, p: int, key: str, value: bytes | None) -> None:
        with self._lock:
            self._pending.append((p, key, value))
        loop, due = self._loop, self._due
        if loop is None or due is None:
            raise RuntimeError("the partition state is not started")
        loop.call_soon_threadsafe(due.set)

    async def _send_loop(self) -> None:
        assert self._due is not None
        while True:
            await self._due.wait()
            self._due.clear()
            try:
                await self.flush()
            except Exception as e:  # kept queued: the next change or the stop sends it again
                log.warning("partition state: sending failed (%r); will retry", e)
                await asyncio.sleep(1.0)
                self._due.set()

    async def flush(self) -> int:
        """Send every queued change and wait for the broker's acknowledgements."""
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return 0
        try:
            sends = [
                await self._p.send(self.topic, value, key=key.encode(), partition=p)
                for p, key, value in batch
            ]
            await asyncio.wait_for(asyncio.gather(*sends), self.settings.send_timeout)
        except BaseException:
            with self._lock:  # in order, before anything queued meanwhile
                self._pending[:0] = batch
            raise
        self.sent += len(batch)
        return len(batch)
