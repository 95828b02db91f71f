"""A worker's node: the sequencer, the projector of its owned partitions, and its shards.

The node is the state :mod:`.worker`'s Faust app drives (see that module for the whole
picture): the ``sequence`` agent hands it batches of requests; its projector follows the
owned partitions of the events topic with a plain aiokafka reader and applies each
partition's records to its :class:`~.shard.Shard`, then publishes the outcomes (outbox)
and the key destructions of erases; the shard's processors (its search indexes, ...) run
on :class:`~.shard_processors.ShardProcessors`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from memstream.projections.models import shared_embedder
from memstream.projections.search import SearchQuery
from memstream.projections.search import search as run_search
from memstream.schemas.codec import EventCodec
from memstream.schemas.events import default_registry
from memstream.schemas.memcube import KeyDestruction
from memstream.schemas.views import SearchHit
from memstream.streams.keystore import KeyStore
from memstream.streams.sealing import Sealer

from . import clients
from .keys import SharedKeys
from .policy import PolicyFollower
from .producer import KafkaPublisher
from .records import KRecord, encode_outcomes
from .sequencer import Sequencer
from .settings import KafkaSettings
from .shard import MissingKey, Shard
from .shard_processors import ShardExtras, ShardProcessors
from .state import SharedState
from .topics import ensure_topics
from .vectors import RecordingCache, SharedVectors

log = logging.getLogger("memstream.worker")

#: Exit status of a worker that stopped because it could not apply a batch.
EXIT_APPLY_FAILED = 70
#: Set to a file path to make the projector fail once, mid-batch, when the file exists
#: (removed as it fires): the recovery tests kill a worker exactly there.
FAULT_ENV = "MEMSTREAM_FAULT_ONCE"
#: the most records the projector takes from the events topic in one fetch
PROJECT_BATCH = 10_000
#: the longest the projector waits for records before it looks at its partitions again
PROJECT_FETCH_WAIT = 0.2
FILL_CHUNK = 2_000


def fatal(what: str, exc: BaseException) -> None:
    """Stop the process now: nothing of the current batch gets acknowledged."""
    log.critical("%s: %r; the worker stops (it resumes from its shards' offsets)", what, exc)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(EXIT_APPLY_FAILED)


def _fatal_on_error(what: str):  # type: ignore[no-untyped-def]
    def check(task: asyncio.Future[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            fatal(what, task.exception())  # type: ignore[arg-type]

    return check


class Node:
    """A worker's state: its shards, the shared keys, its producer and its gap reader."""

    def __init__(
        self,
        settings: KafkaSettings,
        data_dir: Path,
        semantic: bool = True,
        extras: ShardExtras | None = None,
    ):
        """``extras``: processors a face adds to every shard (the subscriptions')."""
        self.settings = settings
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.codec = EventCodec(default_registry())
        self.keystore = KeyStore(self.data_dir / "keys.sqlite", create_keys=False)
        self.sealer = Sealer(self.keystore, self.codec)
        self.keys = SharedKeys(settings, self.keystore, on_destroyed=self.sealer.forget)
        self.sequencer = Sequencer(self.codec, self.sealer, settings.requests, settings.partitions)
        #: the governance rules, followed from their partition (every worker checks callers)
        self.policy = PolicyFollower(settings, self.sealer)
        self.shards: dict[int, Shard] = {}
        self.locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.owned: set[int] = set()
        self.catching_up: set[int] = set()
        self.ends: dict[int, int] = {}
        self.started = asyncio.Event()
        self.log_id = ""
        self.producer: AIOKafkaProducer | None = None
        self.publisher = KafkaPublisher(settings, self.codec)
        self.applied_events = 0
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._projector: asyncio.Task[None] | None = None
        self._stop_projecting = asyncio.Event()
        # the processors of each shard (its search indexes, ...), on a runner per shard
        self.semantic = semantic
        #: what the faces' processors keep per partition (None: no such processors)
        self.state = SharedState(settings) if extras is not None else None
        if semantic:
            self.cache = RecordingCache(self.data_dir / "embeddings.sqlite")
            self.model = shared_embedder()
            self.vectors = SharedVectors(settings, self.cache)
            self.processors = ShardProcessors(
                settings, self.model, self.cache, self.vectors, extras=extras, state=self.state
            )
        else:
            self.processors = ShardProcessors(settings, extras=extras, state=self.state)

    async def start(self) -> None:
        s = self.settings
        await ensure_topics(s)
        self.producer = clients.producer(s)
        await self.producer.start()
        await self.keys.start()
        await self.policy.start()
        self.log_id = f"kafka:{await self.keys.identity()}:{s.events}"
        await self.publisher.start()
        if self.state is not None:
            await self.state.start()
        if self.semantic:
            await self.vectors.start()
            await asyncio.to_thread(self.model.model)  # loaded once, before the first search
        self.processors.share(_fatal_on_error("sharing vectors"))
        self._projector = asyncio.create_task(self._follow_events(), name="projector")
        self._projector.add_done_callback(_fatal_on_error("projecting the events topic"))
        self.started.set()
        log.info("worker ready: log %s, data in %s", self.log_id, self.data_dir)

    async def stop(self) -> None:
        if self._projector is not None:
            # The batch in hand is written and its outcomes sent; then the loop ends (a
            # fetch waits at most PROJECT_FETCH_WAIT). Cancelling it instead could close a
            # shard under a write still running in its thread.
            self._stop_projecting.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._projector), self.settings.send_timeout)
            except TimeoutError:  # stuck on a broker that is gone: its shards resume anyway
                log.warning("the projector did not finish its batch in time; stopping it")
                await clients.stop(self._projector)
            self._projector = None
        for p in list(self.shards):
            async with self.locks[p]:
                await self._acknowledged(p)
                await self.processors.stop(p)
                shard = self.shards.pop(p, None)
                if shard is not None:
                    shard.close()
        await self.keys.stop()
        await self.policy.stop()
        await self.publisher.stop()
        await self.processors.unshare()
        if self.state is not None:
            await self.state.stop()
        if self.semantic:
            await self.vectors.stop()
            self.cache.close()
        if self.producer is not None:
            await self.producer.stop()
        self.keystore.close()

    # -- sequencing --------------------------------------------------------------------------

    async def sequence(self, batch: Sequence[Any]) -> None:
        """Requests → events, appended with acks=all before the batch is acknowledged."""
        await self.started.wait()
        assert self.producer is not None
        parsed = [
            (e.message.partition, self.sequencer.parse(e.message.partition, KRecord.of(e.message)))
            for e in batch
        ]
        await self.keys.ensure(self.sequencer.subjects([p for _, p in parsed]))
        await self.keys.ensure_data_keys(self.sequencer.data_keys([p for _, p in parsed]))
        now = time.time_ns() // 1000
        by_partition: dict[int, list[Any]] = defaultdict(list)
        for partition, p in parsed:
            by_partition[partition].extend(
                (rec.key, rec.value, rec.headers) for rec in self.sequencer.seal(p, now)
            )
        sends = []
        for partition, records in by_partition.items():
            sends += await clients.send_batches(
                self.producer, self.settings.events, partition, records
            )
        await asyncio.wait_for(asyncio.gather(*sends), self.settings.send_timeout)

    # -- projecting --------------------------------------------------------------------------

    async def _follow_events(self) -> None:
        """Project the owned partitions of the events topic as they grow.

        A partition is followed once its shard is open and caught up (``_catch_up``),
        from the shard's offset; the reader is assigned again whenever that set changes.
        Partitions are applied in parallel (their DuckDB writes run in threads, outside the
        interpreter lock), and a fetch takes what arrived meanwhile."""
        reader = clients.reader(self.settings)
        await reader.start()
        following: set[int] = set()
        try:
            while not self._stop_projecting.is_set():
                ready = {p for p in self.shards if p in self.owned and p not in self.catching_up}
                if ready != following:
                    tps = [TopicPartition(self.settings.events, p) for p in ready]
                    reader.assign(tps)
                    for tp in tps:
                        reader.seek(tp, self.shards[tp.partition].offset + 1)
                    following = ready
                if not following:
                    await asyncio.sleep(0.05)
                    continue
                got = await reader.getmany(
                    timeout_ms=int(PROJECT_FETCH_WAIT * 1000), max_records=PROJECT_BATCH
                )
                if got:
                    await asyncio.gather(
                        *(
                            self._project(tp.partition, [KRecord.of(r) for r in recs])
                            for tp, recs in got.items()
                        )
                    )
        finally:
            await reader.stop()

    async def _project(self, p: int, recs: list[KRecord]) -> None:
        async with self.locks[p]:
            if p not in self.owned:
                return  # revoked while fetched or while waiting for the lock: not ours
            shard = await self._shard(p)
            if recs[0].offset > shard.offset + 1:
                await self._fill(shard, recs[0].offset - 1)
            fault = os.environ.get(FAULT_ENV)
            if fault and len(recs) > 1 and Path(fault).exists():
                Path(fault).unlink()
                await self._apply(shard, recs[: len(recs) // 2])
                raise RuntimeError(f"injected fault after offset {shard.offset}")
            await self._apply(shard, recs)

    async def _shard(self, p: int) -> Shard:
        shard = self.shards.get(p)
        if shard is None:
            shard = await asyncio.to_thread(
                Shard,
                self.data_dir / "shards",
                self.settings.events,
                p,
                self.settings.partitions,
                self.log_id,
                self.sealer,
                self.keystore,
            )
            if shard.rebuild_reason:
                log.warning("partition %s: rebuilding its shard (%s)", p, shard.rebuild_reason)
            self.shards[p] = shard
            await self._publish_pending(shard)
            await self.processors.start(shard)
        return shard

    async def _apply(self, shard: Shard, recs: list[KRecord]) -> None:
        for attempt in (1, 2):
            try:
                res = await asyncio.to_thread(shard.apply, recs)
                break
            except MissingKey as e:
                if attempt == 2:
                    raise
                log.info("partition %s: waiting for key %s", shard.partition, e.kid)
                await self.keys.catch_up()
                shard = await self._reopen(shard)
        self.applied_events += len(recs) - res.skipped
        for d in res.erased:
            await self._destroy(d)
        await self._publish(shard, res.outcomes)
        if res.scrub:  # erased content must leave the shard's file, not only its rows
            await asyncio.to_thread(shard.duck.scrub)

    async def _reopen(self, shard: Shard) -> Shard:
        """Drop a shard whose in-memory state may be ahead of its file, and open it again."""
        await self._acknowledged(shard.partition)
        await self.processors.stop(shard.partition)
        shard.close()
        self.shards.pop(shard.partition, None)
        return await self._shard(shard.partition)

    async def _destroy(self, d: KeyDestruction) -> None:
        """Destroy an erase's keys here and on the keys topic (every worker's copy)."""
        if d.scope == "memory":
            assert d.memory_id is not None
            kids = self.keystore.data_kids(d.subject, d.memory_id)
        else:
            kids = self.keystore.kids(d.subject, d.generation)
        self.sealer.forget(self.keystore.shred(d))
        await self.keys.destroy(d.subject, kids)

    async def _publish(self, shard: Shard, outcomes: list[Any]) -> None:
        """Send the outcomes of a committed batch; the outbox cursor moves once the broker
        acknowledged them (in order per partition). The next batch does not wait for that
        round trip; a failure stops the worker, whose outbox publishes them again."""
        p, upto = shard.partition, shard.offset
        assert self.producer is not None
        key = str(p).encode()  # a partition's verdicts stay in order on one partition
        sends = [
            await self.producer.send(self.settings.outcomes, value, key=key)
            for value in encode_outcomes(outcomes)
        ]
        before = self._acks.get(p)

        async def acknowledged() -> None:
            if before is not None:
                await before
            if sends:
                await asyncio.wait_for(asyncio.gather(*sends), self.settings.send_timeout)
            shard.published(upto)

        task = asyncio.ensure_future(acknowledged())
        task.add_done_callback(_fatal_on_error(f"publishing the outcomes of partition {p}"))
        self._acks[p] = task

    async def _acknowledged(self, p: int) -> None:
        """Wait for partition ``p``'s outcomes in flight (before its shard closes)."""
        task = self._acks.pop(p, None)
        if task is not None:
            await task

    async def _publish_pending(self, shard: Shard) -> None:
        """The outbox after a restart: erasures and outcomes committed but not published."""
        for d in await asyncio.to_thread(shard.pending_erasures):
            await self._destroy(d)
        pending = await asyncio.to_thread(shard.pending_outcomes)
        if pending:
            log.info(
                "partition %s: publishing %d outcomes from the outbox",
                shard.partition,
                len(pending),
            )
        await self._publish(shard, pending)

    async def _fill(self, shard: Shard, upto: int) -> None:
        """Read ``shard.offset + 1 .. upto`` with a plain reader (outside the group)."""
        tp = TopicPartition(self.settings.events, shard.partition)
        reader = clients.reader(self.settings)
        await reader.start()
        try:
            reader.assign([tp])
            start = shard.offset + 1
            log.info("partition %s: reading %d..%d from the log", shard.partition, start, upto)
            reader.seek(tp, start)
            while shard.offset < upto:
                got = await reader.getmany(tp, timeout_ms=1000, max_records=FILL_CHUNK)
                recs = [KRecord.of(r) for r in got.get(tp, []) if r.offset <= upto]
                if recs:
                    await self._apply(shard, recs)
                    shard = self.shards[shard.partition]
        finally:
            await reader.stop()

    # -- search -----------------------------------------------------------------------------

    async def search_local(
        self, p: int, q: SearchQuery, as_of: datetime | None, min_offset: int | None
    ) -> list[SearchHit]:
        """``q`` over partition ``p`` (owned here), once its indexes reached ``min_offset``
        (or have loaded, without one)."""
        deadline = time.monotonic() + 10.0
        while True:  # a partition just assigned: its shard is opening
            shard, proj = self.shards.get(p), self.processors.semantic_of(p)
            if shard is not None and proj is not None:
                break
            if time.monotonic() > deadline:
                raise LookupError(f"partition {p}: the search indexes are not open yet")
            await asyncio.sleep(0.05)
        await self.processors.wait(p, -1 if min_offset is None else min_offset, ["semantic"])
        views = None
        if as_of is not None:
            q = dataclasses.replace(q, as_of=shard.duck.offset_at_time(as_of))
        else:  # candidates and hits from the view when it is as fresh as the shard
            views = self.processors.views_of(p, shard.offset)
        return await asyncio.to_thread(
            run_search, shard.duck, proj, q, None, shard.state.memories, views
        )

    # -- partitions --------------------------------------------------------------------------

    def assigned(self, tps: set[Any]) -> None:
        mine = {tp.partition for tp in tps if tp.topic == self.settings.requests}
        gained = mine - self.owned
        self.owned = mine
        for p in gained:
            self.catching_up.add(p)
            asyncio.ensure_future(self._catch_up(p))

    async def revoked(self, tps: set[Any]) -> None:
        for tp in tps:
            if tp.topic != self.settings.requests:
                continue
            p = tp.partition
            self.owned.discard(p)
            async with self.locks[p]:
                await self._acknowledged(p)
                await self.processors.stop(p)
                shard = self.shards.pop(p, None)
                if shard is not None:
                    await asyncio.to_thread(shard.close)

    async def _catch_up(self, p: int) -> None:
        """A gained partition: resume from its shard's offset up to the log's end now."""
        try:
            await self.started.wait()
            end = await self.end_offset(p)
            async with self.locks[p]:
                if p not in self.owned:
                    return
                shard = await self._shard(p)
                if shard.offset < end - 1:
                    await self._fill(shard, end - 1)
        except Exception as e:
            fatal(f"catching up partition {p}", e)
        finally:
            self.catching_up.discard(p)

    async def end_offset(self, p: int) -> int:
        return (await self.end_offsets([p]))[p]

    async def end_offsets(self, ps: Sequence[int]) -> dict[int, int]:
        """The events topic's end offsets of partitions ``ps`` (one request)."""
        if not ps:
            return {}
        c = clients.reader(self.settings)
        await c.start()
        try:
            tps = [TopicPartition(self.settings.events, p) for p in ps]
            ends = {tp.partition: end for tp, end in (await c.end_offsets(tps)).items()}
        finally:
            await c.stop()
        self.ends.update(ends)
        return ends

    async def status(self) -> dict[str, Any]:
        parts = {}
        owned = sorted(self.owned)
        ends = await self.end_offsets(owned)
        for p in owned:
            end = ends[p]
            shard = self.shards.get(p)
            offset = shard.offset if shard is not None else -1
            parts[str(p)] = {
                "offset": offset,
                "end": end,
                "lag": max(0, end - 1 - offset),
                "catching_up": p in self.catching_up,
            }
        for p, v in parts.items():
            if self.semantic:
                v["indexed"] = self.processors.checkpoint(int(p))
        out = {
            "started": self.started.is_set(),
            "log_id": self.log_id,
            "partitions": parts,
            "applied_events": self.applied_events,
            "governance": self.policy.status(),
        }
        if self.state is not None:
            out["partition_state"] = {"sent": self.state.sent, "received": self.state.received}
        if self.semantic:
            out["semantic"] = {
                "texts_embedded": self.processors.texts_embedded,
                "vectors_from_topic": self.vectors.received,
                "model": self.model.model_id if self.model.loaded else None,
            }
        return out
