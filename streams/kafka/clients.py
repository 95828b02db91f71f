"""The Kafka clients every part of the runtime uses, configured once.

- :func:`producer`: ``acks=all`` (a record counts as written once every in-sync replica
  has it), bounded by ``send_timeout``, and batches of up to 1 MiB: a sequencer batch or an
  outbox goes out in a few requests rather than one per 16 KiB (aiokafka's default), each
  waiting for the previous one's round trip.
- :func:`reader`: a consumer outside any group (assign + seek), never committing, with
  large fetches; it reads topics as logs (keys, vectors, outcomes, gaps of the events).
- :func:`stop`: stops a background task and clients, bounded; a client whose broker is
  gone does not hang or fail the caller.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from .settings import KafkaSettings

#: Largest produce batch and request (a request record of the SDK stays below it).
BATCH_BYTES = 1024 * 1024


def producer(s: KafkaSettings, *, linger_ms: int = 2) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=s.bootstrap,
        acks="all",
        linger_ms=linger_ms,
        retry_backoff_ms=200,
        max_batch_size=BATCH_BYTES,
        max_request_size=BATCH_BYTES,
        request_timeout_ms=int(s.send_timeout * 1000),
    )


async def send_batches(
    producer: AIOKafkaProducer,
    topic: str,
    partition: int,
    records: Iterable[tuple[bytes | None, bytes, Sequence[tuple[str, bytes]]]],
) -> list[asyncio.Future[Any]]:
    """Queue ``(key, value, headers)`` records for one partition as a few record batches.

    The same records ``send`` would produce, in the same order, but appended to aiokafka's
    batch builders directly: one future per batch of up to ``BATCH_BYTES``, not one per
    record, which is most of what a produce costs the interpreter. Await the returned
    futures (the broker's acknowledgements)."""
    futures: list[asyncio.Future[Any]] = []
    batch = producer.create_batch()
    for key, value, headers in records:
        if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
            futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                raise ValueError(f"a record of {len(value)} bytes exceeds {BATCH_BYTES} bytes")
    if batch.record_count():
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures


#: How long the broker may hold a fetch that finds nothing new. A record that arrives
#: meanwhile should end the wait, but not every broker ends it at once, and every follower
#: here waits on such fetches: a new subject's key read back, an outcome, the next events
#: of an owned partition. Measured with the test broker, a record produced while a fetch
#: waited reached the reader about 150 ms later at aiokafka's default (500 ms), 2-8 ms
#: later at 50 ms. The price is at most 20 empty fetches a second per idle reader.
FETCH_MAX_WAIT_MS = 50


def reader(s: KafkaSettings, *, from_end: bool = False) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=s.bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="latest" if from_end else "earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )


async def stop(task: asyncio.Task[Any] | None, *clients: Any, timeout: float = 15.0) -> None:
    """Cancel ``task`` and stop ``clients`` (None entries are skipped)."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    for c in clients:
        if c is None:
            continue
        try:
            await asyncio.wait_for(c.stop(), timeout)
        except (Exception, asyncio.CancelledError):
            # a client of a broker that is gone fails to stop cleanly; unless this task
            # itself is being cancelled, that is no reason to fail the caller
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise


class TopicFollower:
    """A producer, a group-less reader and the background task that follows a topic with
    it (the keys and vectors topics): created by the subclass's ``start``, stopped here."""

    _producer: AIOKafkaProducer | None = None
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def _c(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._consumer

    @property
    def _p(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._producer

    async def stop(self) -> None:
        await stop(self._task, self._consumer, self._producer)


class LogFollower(TopicFollower, abc.ABC):
    """A :class:`TopicFollower` that reads every partition of one topic from its beginning
    (the compacted topics every worker keeps whole: vectors, partition state). The subclass
    sets ``settings`` and ``_tps`` and applies what a fetch brought in ``_poll``."""

    settings: KafkaSettings
    _tps: list[TopicPartition]

    async def _open(self, name: str, *, linger_ms: int) -> None:
        """Start the clients, read the topic to its end, then follow it in the background."""
        self._producer = producer(self.settings, linger_ms=linger_ms)
        self._consumer = reader(self.settings)
        await self._p.start()
        await self._c.start()
        self._c.assign(self._tps)
        await self._c.seek_to_beginning(*self._tps)
        await self.catch_up()
        self._task = asyncio.create_task(self._follow(), name=name)

    async def _follow(self) -> None:
        while True:
            await self._poll(1000)

    @abc.abstractmethod
    async def _poll(self, timeout_ms: int) -> int:
        """Fetch for up to ``timeout_ms`` and apply what came; how many records came."""

    async def catch_up(self) -> None:
        """Read the topic up to its end as of now (every record written before the call)."""
        ends = await self._c.end_offsets(self._tps)
        while True:
            behind = [tp for tp, end in ends.items() if await self._c.position(tp) < end]
            if not behind:
                return
            await self._poll(200)
