"""Publishing operations to the requests topic and awaiting their outcomes.

:class:`KafkaPublisher` validates events before anything is produced (malformed input is
refused with the field named, nothing sent), produces them with ``acks=all`` and bounded
retries, keyed by namespace, and awaits each event's outcome on the outcomes topic. Its
errors tell the two failures apart:

- :class:`NotWritten`: the broker did not acknowledge within the bounded wait; the event
  may be retried as is (the same ``event_id`` is recognised as a duplicate downstream);
- :class:`OutcomePending`: the broker acknowledged the request (it is in the log's queue
  and will be decided), but no outcome arrived in time; await it again, or read with
  ``min_offset`` later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from memstream.schemas.codec import EventCodec
from memstream.schemas.events import Event, default_registry
from memstream.schemas.memcube import Outcome

from . import clients
from .records import H_COUNT, H_EVENT_ID, H_TYPE, H_VERSION, decode_outcomes
from .settings import KafkaSettings

log = logging.getLogger("memstream.kafka.producer")


#: A batch of events of one namespace travels as one request record (a JSON array) up to
#: this many events or bytes: the sequencer then handles one record, not one per event.
MAX_RECORD_EVENTS = 500
MAX_RECORD_BYTES = 900 * 1024


def _records(
    items: list[tuple[bytes, bytes, Event]], max_events: int = MAX_RECORD_EVENTS
) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    """Request records for ``items``: per namespace, in order, runs of up to ``max_events``
    events as arrays."""
    groups: dict[bytes, list[tuple[bytes, Event]]] = {}
    for key, value, e in items:
        groups.setdefault(key, []).append((value, e))
    out = []
    for key, evs in groups.items():
        run: list[tuple[bytes, Event]] = []
        size = 0
        for value, e in [*evs, (b"", None)]:  # a sentinel flushes the last run
            full = len(run) >= max_events or size + len(value) > MAX_RECORD_BYTES
            if run and (e is None or full):
                if len(run) == 1:
                    v, ev = run[0]
                    headers = [
                        (H_TYPE, ev.type.encode()),
                        (H_VERSION, str(ev.schema_version).encode()),
                        (H_EVENT_ID, ev.event_id.encode()),
                    ]
                    out.append((key, v, headers))
                else:
                    body = b"[" + b",".join(v for v, _ in run) + b"]"
                    out.append((key, body, [(H_COUNT, str(len(run)).encode())]))
                run, size = [], 0
            if e is not None:
                run.append((value, e))
                size += len(value) + 1
    return out


class NotWritten(ConnectionError):
    """The broker did not acknowledge the events: nothing is reported as written."""

    def __init__(self, message: str, event_ids: list[str]):
        self.event_ids = event_ids
        super().__init__(message)


class OutcomePending(TimeoutError):
    """The events were written (acknowledged by the broker) but not all outcomes arrived."""

    def __init__(self, message: str, pending: list[str], done: list[Outcome]):
        self.pending, self.done = pending, done
        super().__init__(message)


class KafkaPublisher:
    """Produce events and await their outcomes (asyncio)."""

    def __init__(
        self,
        settings: KafkaSettings,
        codec: EventCodec | None = None,
        *,
        max_record_events: int = MAX_RECORD_EVENTS,
    ):
        """``max_record_events``: the most events one request record carries (1: a record
        per event, as a producer outside the SDK sends them)."""
        if max_record_events < 1:
            raise ValueError(f"max_record_events must be at least 1, not {max_record_events}")
        self.max_record_events = max_record_events
        self.settings = settings
        self.codec = codec or EventCodec(default_registry())
        self._waiting: dict[str, asyncio.Future[Outcome]] = {}
        self._task: asyncio.Task[None] | None = None
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        s = self.settings
        self._producer = clients.producer(s)
        self._consumer = clients.reader(s, from_end=True)
        try:
            await asyncio.wait_for(self._producer.start(), s.send_timeout)
            await asyncio.wait_for(self._consumer.start(), s.send_timeout)
        except (TimeoutError, KafkaError, OSError) as e:
            await self.stop()
            raise NotWritten(
                f"no Kafka broker answered at {s.bootstrap} within {s.send_timeout:.0f}s "
                f"({e!r}); nothing was written",
                [],
            ) from None
        try:
            parts = await asyncio.wait_for(self._partitions(), s.send_timeout)
        except (TimeoutError, KafkaError, OSError):
            await self.stop()
            raise NotWritten(
                f"the broker at {s.bootstrap} has no topic {s.outcomes}: start a worker, or "
                "create the topics with `memstream topics` (same --prefix); nothing was written",
                [],
            ) from None
        tps = [TopicPartition(s.outcomes, p) for p in parts]
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the positions now: outcomes from here on are seen
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._follow(), name="memstream-outcomes")

    async def _partitions(self) -> set[int]:
        assert self._consumer is not None
        while True:
            await self._consumer.topics()  # refreshes the metadata
            found = self._consumer.partitions_for_topic(self.settings.outcomes)
            if found:
                return found
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await clients.stop(task, self._consumer, self._producer, timeout=self.settings.send_timeout)
        self._consumer = self._producer = None

    async def __aenter__(self) -> KafkaPublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=500)
            for recs in batches.values():
                for r in recs:
                    try:
                        outcomes = decode_outcomes(r.value)
                    except Exception:  # a garbled record: nobody's verdict can be read
                        log.warning("unreadable record at %s offset %s", r.topic, r.offset)
                        continue
                    for o in outcomes:
                        fut = self._waiting.get(o.event_id)
                        if fut is not None and not fut.done():
                            fut.set_result(o)

    async def publish(self, events: Sequence[Event], timeout: float | None = None) -> list[Outcome]:
        """Validate, produce and await one outcome per event, in order."""
        events = self.codec.validate(list(events))  # raises MalformedEvent: nothing sent
        return await self._produce(
            [(e.namespace.encode(), self.codec.encode(e), e) for e in events], timeout
        )

    async def _produce(
        self, items: list[tuple[bytes, bytes, Event]], timeout: float | None
    ) -> list[Outcome]:
        if self._producer is None:
            raise RuntimeError("the publisher is not started")
        s = self.settings
        loop = asyncio.get_running_loop()
        ids = [e.event_id for _, _, e in items]
        futures = {i: self._waiting.setdefault(i, loop.create_future()) for i in ids}
        try:
            try:
                sends = [
                    await self._producer.send(s.requests, value, key=key, headers=headers)
                    for key, value, headers in _records(items, self.max_record_events)
                ]
                await asyncio.wait_for(asyncio.gather(*sends), s.send_timeout)
            except (TimeoutError, KafkaError, OSError) as e:
                raise NotWritten(
                    f"the broker at {s.bootstrap} did not acknowledge {len(ids)} event(s) "
                    f"within {s.send_timeout:.0f}s ({e!r}); they are not reported as written: "
                    "retry them unchanged (duplicates are recognised by event_id)",
                    ids,
                ) from None
            wait = s.outcome_timeout if timeout is None else timeout
            done, pending = await asyncio.wait(futures.values(), timeout=wait)
            if pending:
                got = [futures[i].result() for i in ids if futures[i] in done]
                left = [i for i in ids if futures[i] in pending]
                raise OutcomePending(
                    f"{len(left)} event(s) were written (acknowledged by the broker) but their "
                    f"outcome did not arrive within {wait:.0f}s: is a worker running and "
                    "caught up? Their outcome will still be decided; read with min_offset later",
                    left,
                    got,
                )
            return [futures[i].result() for i in ids]
        finally:
            for i in ids:
                self._waiting.pop(i, None)
