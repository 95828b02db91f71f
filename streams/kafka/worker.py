"""``memstream worker``: the Faust app that runs the sequencer and the projectors.

A worker owns partition *p* when Faust's consumer group assigns it partition *p* of
``memstream.requests``; the events topic has the same partition count and the same keys,
so partition *p* of the log is its own too.

- The ``sequence`` agent reads ``memstream.requests``: validates, seals, and appends to
  ``memstream.events`` (same partition) with ``acks=all``, before its batch is acknowledged.
- The projector follows the owned partitions of ``memstream.events`` with a plain
  aiokafka reader (no group) and hands each partition's records to its
  :class:`~.shard.Shard` (the same decide and project as the embedded driver), then
  publishes the outcomes (outbox) and the key destructions of erases. A fetch returns
  whatever arrived while the previous batch was being written (up to ``PROJECT_BATCH``), so
  batches grow with the load by themselves: group commit, with no window to tune.

Why the projector is not a Faust agent: an agent costs the worker Faust's per-message
handling (100-200 µs of interpreter time per record here), and a second agent on the
events topic paid it once more for every event. With it, one worker fed by the SDK reached
0.39 of a no-op agent's rate, about half of its interpreter time in Faust's consumer;
without it, 0.93-0.98 (docs/benchmarks.md). The group still decides who owns what,
through the requests topic.

The shard's offset, committed with its rows, is the authority; nothing else records how far
the projection got. The reader starts each gained partition at its shard's offset, records
the shard already holds are skipped, and a gap (a partition lost and regained meanwhile) is
filled from the log first. When the worker cannot apply a batch it exits at once; on
restart it resumes from its shards' offsets.

Every worker serves the HTTP API for every namespace; it is assembled outside this layer
(:mod:`memstream.http.worker`, over :class:`Node`, with Faust's web server off): a read for
a namespace whose partition another worker owns is forwarded there (Faust's router knows
the assignment), and a partition that is still catching up answers 503 with its lag.
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

import faust
from aiokafka import AIOKafkaProducer, TopicPartition
from memstream.projections.embedding import CachedEmbedder
from memstream.projections.processor import Processor
from memstream.projections.search import SearchQuery
from memstream.projections.search import search as run_search
from memstream.projections.semantic import SemanticProjection, shared_embedder
from memstream.schemas.codec import EventCodec
from memstream.schemas.events import default_registry
from memstream.schemas.views import SearchHit
from memstream.streams.keystore import KeyStore
from memstream.streams.processors import build as build_registered
from memstream.streams.runner import ProcessorRunner
from memstream.streams.sealing import Sealer

from . import clients
from .keys import SharedKeys
from .producer import KafkaPublisher
from .records import KRecord, encode_outcomes
from .sequencer import Sequencer
from .settings import KafkaSettings
from .shard import MissingKey, Shard
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


class _Shared:
    """The worker's one embedding cache, lent to each partition's projection (which closes
    its cache when it closes: this one stays open for the others)."""

    def __init__(self, cache: RecordingCache):
        self._cache = cache

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cache, name)

    def close(self) -> None:
        pass


class Node:
    """A worker's state: its shards, the shared keys, its producer and its gap reader."""

    def __init__(self, settings: KafkaSettings, data_dir: Path, semantic: bool = True):
        self.settings = settings
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.codec = EventCodec(default_registry())
        self.keystore = KeyStore(self.data_dir / "keys.sqlite", create_keys=False)
        self.sealer = Sealer(self.keystore, self.codec)
        self.keys = SharedKeys(settings, self.keystore, on_destroyed=self.sealer.forget)
        self.sequencer = Sequencer(self.codec, self.sealer, settings.requests, settings.partitions)
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
        # the processors of each shard (its search indexes, ...), on a runner per shard
        self.semantic = semantic
        self.runners: dict[int, ProcessorRunner] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._vectors_due = asyncio.Event()
        self._vectors_task: asyncio.Task[None] | None = None
        self._acks: dict[int, asyncio.Future[None]] = {}
        self.texts_embedded = 0
        self._projector: asyncio.Task[None] | None = None
        self._stop_projecting = asyncio.Event()
        if semantic:
            self.cache = RecordingCache(self.data_dir / "embeddings.sqlite")
            self.model = shared_embedder()
            self.vectors = SharedVectors(settings, self.cache)

    async def start(self) -> None:
        s = self.settings
        await ensure_topics(s)
        self.producer = clients.producer(s)
        await self.producer.start()
        await self.keys.start()
        self.log_id = f"kafka:{await self.keys.identity()}:{s.events}"
        await self.publisher.start()
        self._loop = asyncio.get_running_loop()
        if self.semantic:
            await self.vectors.start()
            await asyncio.to_thread(self.model.model)  # loaded once, before the first search
            self._vectors_task = asyncio.create_task(self._share_vectors(), name="vectors")
            self._vectors_task.add_done_callback(_fatal_on_error("sharing vectors"))
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
                await self._stop_processors(p)
                shard = self.shards.pop(p, None)
                if shard is not None:
                    shard.close()
        await self.keys.stop()
        await self.publisher.stop()
        if self.semantic:
            await clients.stop(self._vectors_task)
            await self.vectors.publish()
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
            await self._start_processors(shard)
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
        for subject, generation in res.erased:
            await self._destroy(subject, generation)
        await self._publish(shard, res.outcomes)

    async def _reopen(self, shard: Shard) -> Shard:
        """Drop a shard whose in-memory state may be ahead of its file, and open it again."""
        await self._acknowledged(shard.partition)
        await self._stop_processors(shard.partition)
        shard.close()
        self.shards.pop(shard.partition, None)
        return await self._shard(shard.partition)

    async def _destroy(self, subject: str, generation: int) -> None:
        kids = self.keystore.kids(subject, generation)
        self.sealer.forget(self.keystore.destroy(subject, f"{subject}#{generation}"))
        await self.keys.destroy(subject, kids)

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
        for subject, generation in await asyncio.to_thread(shard.pending_erasures):
            await self._destroy(subject, generation)
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

    # -- processors (the search indexes, ...) ------------------------------------------------

    def processors_for(self, shard: Shard) -> list[Processor]:
        """The processors of one shard: its search indexes (when enabled), then those
        installed packages register (:mod:`memstream.streams.processors`)."""
        out: list[Processor] = []
        if self.semantic:
            embedder = CachedEmbedder(self.model, _Shared(self.cache))
            out.append(SemanticProjection(shard.dir / "semantic", embedder))
        return out + build_registered(shard.dir / "processors")

    async def _start_processors(self, shard: Shard) -> None:
        """Start the shard's processors on a runner of their own. The search indexes start
        with every shared vector read first (a rebuild then embeds only what no worker
        embedded before); old decided events are read back through ``_fetch``."""
        p = shard.partition
        if self.semantic:
            await self.vectors.catch_up()
        loop = asyncio.get_running_loop()

        def fetch(start: int, stop: int) -> list[KRecord]:
            return asyncio.run_coroutine_threadsafe(self._fetch(p, start, stop), loop).result()

        def advanced(name: str, offset: int) -> None:
            if name == "semantic":
                loop.call_soon_threadsafe(self._vectors_due.set)

        shard.fetch = fetch
        runner = ProcessorRunner(
            shard.feed, shard.duck, self.processors_for(shard), on_advance=advanced
        )
        self.runners[p] = runner
        runner.start()

    async def _stop_processors(self, p: int) -> None:
        """Let the shard's processors catch up with what it committed, then close them."""
        runner = self.runners.pop(p, None)
        if runner is None:
            return
        await asyncio.to_thread(runner.close)
        for proc in runner.processors:
            if isinstance(proc, SemanticProjection):
                self.texts_embedded += proc.embedder.texts_embedded
        self._vectors_due.set()

    async def _share_vectors(self) -> None:
        """Publish the vectors the search indexes computed (and the erased ones) on the
        vectors topic, each time an index moved on."""
        while True:
            await self._vectors_due.wait()
            self._vectors_due.clear()
            await self.vectors.publish()

    async def _fetch(self, p: int, start: int, stop: int) -> list[KRecord]:
        """The events partition's records ``start <= offset < stop`` (a plain reader)."""
        tp = TopicPartition(self.settings.events, p)
        reader = clients.reader(self.settings)
        await reader.start()
        out: list[KRecord] = []
        try:
            reader.assign([tp])
            reader.seek(tp, start)
            while not out or out[-1].offset < stop - 1:
                got = await reader.getmany(tp, timeout_ms=1000, max_records=FILL_CHUNK)
                out.extend(KRecord.of(r) for r in got.get(tp, []) if r.offset < stop)
        finally:
            await reader.stop()
        return out

    def semantic_of(self, p: int) -> SemanticProjection | None:
        runner = self.runners.get(p)
        if runner is None or not self.semantic:
            return None
        proc = runner["semantic"]
        assert isinstance(proc, SemanticProjection)
        return proc

    async def search_local(
        self, p: int, q: SearchQuery, as_of: datetime | None, min_offset: int | None
    ) -> list[SearchHit]:
        """``q`` over partition ``p`` (owned here), once its indexes reached ``min_offset``
        (or have loaded, without one)."""
        deadline = time.monotonic() + 10.0
        while True:  # a partition just assigned: its shard is opening
            shard, runner, proj = self.shards.get(p), self.runners.get(p), self.semantic_of(p)
            if shard is not None and runner is not None and proj is not None:
                break
            if time.monotonic() > deadline:
                raise LookupError(f"partition {p}: the search indexes are not open yet")
            await asyncio.sleep(0.05)
        wanted = -1 if min_offset is None else min_offset

        def caught_up(reached: int) -> Exception:
            return LookupError(
                f"partition {p}: the search indexes are catching up (at offset {reached}, "
                f"{wanted} wanted)"
            )

        await asyncio.to_thread(runner.wait_for, wanted, 10.0, caught_up, ["semantic"])
        if as_of is not None:
            q = dataclasses.replace(q, as_of=shard.duck.offset_at_time(as_of))
        return await asyncio.to_thread(run_search, shard.duck, proj, q, None, shard.state.memories)

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
                await self._stop_processors(p)
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
            runner = self.runners.get(int(p))
            if self.semantic:
                v["indexed"] = runner.checkpoint if runner is not None else -2
        out = {
            "started": self.started.is_set(),
            "log_id": self.log_id,
            "partitions": parts,
            "applied_events": self.applied_events,
        }
        if self.semantic:
            out["semantic"] = {
                "texts_embedded": self.texts_embedded
                + sum(
                    proj.embedder.texts_embedded
                    for p in self.runners
                    if (proj := self.semantic_of(p)) is not None
                ),
                "vectors_from_topic": self.vectors.received,
                "model": self.model.model_id if self.model.loaded else None,
            }
        return out


# -- the Faust app -----------------------------------------------------------------------------


def create_app(
    settings: KafkaSettings,
    *,
    data_dir: Path | None = None,
    web_host: str = "127.0.0.1",
    web_port: int = 6066,
    advertise: str | None = None,
    semantic: bool = True,
) -> faust.App:
    """The worker app: the sequencer agent, the projector and the partition callbacks.

    ``web_host``/``web_port`` (or ``advertise``) make the URL the other workers reach this
    one's HTTP API at, which the face layer serves (Faust's own web server stays off)."""
    data_dir = Path(data_dir or settings.data_dir)
    app = faust.App(
        settings.group,
        broker=f"kafka://{settings.bootstrap}",
        key_serializer="raw",
        value_serializer="raw",
        producer_acks=-1,
        topic_partitions=settings.partitions,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=max(0.5, settings.session_timeout / 5),
        web_enabled=False,
        web_host=web_host,
        web_port=web_port,
        canonical_url=f"http://{advertise or web_host}:{web_port}",
        datadir=str(data_dir / "faust"),
        table_cleanup_interval=3600,
    )
    node = Node(settings, data_dir, semantic=semantic)
    app.memstream = node  # type: ignore[attr-defined]
    requests = app.topic(settings.requests, key_serializer="raw", value_serializer="raw")

    @app.task
    async def _start() -> None:
        try:
            await node.start()
        except Exception as e:
            fatal("starting the worker", e)

    @app.agent(requests, concurrency=1)
    async def sequence(stream: Any) -> None:
        async for batch in stream.take_events(500, within=0.02):
            try:
                await node.sequence(batch)
            except Exception as e:
                fatal("sequencing a batch of requests", e)

    @app.on_partitions_assigned.connect
    async def _assigned(sender: Any, assigned: set[Any], **kw: Any) -> None:
        node.assigned(assigned)

    @app.on_partitions_revoked.connect
    async def _revoked(sender: Any, revoked: set[Any], **kw: Any) -> None:
        await node.revoked(revoked)

    @app.on_before_shutdown.connect
    async def _shutdown(sender: Any, **kw: Any) -> None:
        await node.stop()  # shards closed after their last commit; keys and producer

    return app


__all__ = ["EXIT_APPLY_FAILED", "Node", "create_app"]
