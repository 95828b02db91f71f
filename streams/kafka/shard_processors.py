"""The processors of the shards a worker owns: one runner per shard, as in the embedded store.

Each shard publishes the decided events it commits to its feed; a
:class:`~memstream.streams.runner.ProcessorRunner` per shard runs the shard's processors
(its search indexes, and those installed packages register) on lanes of their own. A
processor behind the feed's memory reads old decided events back from the events topic
(``fetch``) with the verdicts the shard stored. Each time a search index moves on, the
vectors it computed (and the erased ones) are shared on the vectors topic, so a partition
that moves to another worker is not embedded again.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from aiokafka import TopicPartition
from memstream.projections.embedding import CachedEmbedder
from memstream.projections.models import LazyEmbedder
from memstream.projections.processor import Processor
from memstream.projections.semantic import SemanticProjection
from memstream.projections.views import VIEWS, MemoryViews
from memstream.streams.processors import build as build_registered
from memstream.streams.runner import ProcessorRunner

from . import clients
from .records import KRecord
from .settings import KafkaSettings
from .shard import Shard
from .state import PartitionState, SharedState
from .vectors import RecordingCache, SharedVectors

#: Records read from the events topic per fetch when reading the past back.
FETCH_CHUNK = 2_000


class _Shared:
    """The worker's one embedding cache, lent to each partition's projection (which closes
    its cache when it closes: this one stays open for the others)."""

    def __init__(self, cache: RecordingCache):
        self._cache = cache

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cache, name)

    def close(self) -> None:
        pass


class ShardExtras(Protocol):
    """Processors a face adds to every shard (the subscription lanes), made when the shard
    starts and told when it stops. ``state`` is the partition's shared records (what the
    face keeps there, the previous owner of the partition left: :mod:`.state`)."""

    def processors(
        self, shard: Shard, semantic: SemanticProjection | None, state: PartitionState
    ) -> list[Processor]: ...

    def stopped(self, partition: int) -> None: ...


class ShardProcessors:
    """The runners of a worker's shards, and what the search indexes share between workers.

    ``model``/``cache``/``vectors`` are the worker's embedding model, embedding cache and
    vectors topic when search is on (``None`` otherwise)."""

    def __init__(
        self,
        settings: KafkaSettings,
        model: LazyEmbedder | None = None,
        cache: RecordingCache | None = None,
        vectors: SharedVectors | None = None,
        extras: ShardExtras | None = None,
        state: SharedState | None = None,
    ):
        """``state``: the partition-state topic's follower (required with ``extras``)."""
        if extras is not None and state is None:
            raise ValueError("processors a face adds to the shards need the partition state")
        self.settings = settings
        #: what a face adds to each shard (see :class:`ShardExtras`)
        self.extras = extras
        self.state = state
        self.model, self.cache, self.vectors = model, cache, vectors
        self.runners: dict[int, ProcessorRunner] = {}
        #: texts embedded by the indexes of shards closed since the worker started
        self.closed_texts_embedded = 0
        self._vectors_due = asyncio.Event()
        self._sharing: asyncio.Task[None] | None = None

    @property
    def semantic(self) -> bool:
        return self.model is not None

    def for_shard(self, shard: Shard) -> list[Processor]:
        """The processors of one shard: its current-memory view, its search indexes (when
        enabled), then those installed packages register
        (:mod:`memstream.streams.processors`)."""
        out: list[Processor] = [MemoryViews()]
        semantic = None
        if self.model is not None and self.cache is not None:
            embedder = CachedEmbedder(self.model, _Shared(self.cache))
            semantic = SemanticProjection(shard.dir / "semantic", embedder)
            out.append(semantic)
        if self.extras is not None:
            assert self.state is not None
            out += self.extras.processors(shard, semantic, self.state.partition(shard.partition))
        return out + build_registered(shard.dir / "processors")

    # -- lifecycle ---------------------------------------------------------------------------

    def share(self, on_error: Any) -> None:
        """Start sharing vectors (``on_error`` is the done-callback that stops the worker)."""
        if self.vectors is not None:
            self._sharing = asyncio.create_task(self._share_vectors(), name="vectors")
            self._sharing.add_done_callback(on_error)

    async def unshare(self) -> None:
        """Stop sharing, after one last publication (call once every runner stopped)."""
        if self.vectors is not None:
            await clients.stop(self._sharing)
            await self.vectors.publish()

    async def start(self, shard: Shard) -> None:
        """Start the shard's processors on a runner of their own. The search indexes start
        with every shared vector read first (a rebuild then embeds only what no worker
        embedded before); old decided events are read back through ``_fetch``."""
        p = shard.partition
        if self.vectors is not None:
            await self.vectors.catch_up()
        if self.state is not None:  # what the partition's last owner left
            await self.state.catch_up()
        loop = asyncio.get_running_loop()

        def fetch(start: int, stop: int) -> list[KRecord]:
            return asyncio.run_coroutine_threadsafe(self._fetch(p, start, stop), loop).result()

        def advanced(name: str, offset: int) -> None:
            if name == "semantic":
                loop.call_soon_threadsafe(self._vectors_due.set)

        shard.fetch = fetch
        runner = ProcessorRunner(shard.feed, shard.duck, self.for_shard(shard), on_advance=advanced)
        self.runners[p] = runner
        runner.start()

    async def stop(self, p: int) -> None:
        """Let the shard's processors catch up with what it committed, then close them."""
        runner = self.runners.pop(p, None)
        if runner is None:
            return
        views = runner[VIEWS]
        assert isinstance(views, MemoryViews)
        views.cancel()  # reads of the partition stop here; a load is not waited for
        await asyncio.to_thread(runner.close)
        if self.extras is not None:
            self.extras.stopped(p)
        if self.state is not None:  # for the partition's next owner
            await self.state.flush()
        for proc in runner.processors:
            if isinstance(proc, SemanticProjection):
                self.closed_texts_embedded += proc.embedder.texts_embedded
        self._vectors_due.set()

    async def _share_vectors(self) -> None:
        assert self.vectors is not None
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
                got = await reader.getmany(tp, timeout_ms=1000, max_records=FETCH_CHUNK)
                out.extend(KRecord.of(r) for r in got.get(tp, []) if r.offset < stop)
        finally:
            await reader.stop()
        return out

    # -- reads -------------------------------------------------------------------------------

    def semantic_of(self, p: int) -> SemanticProjection | None:
        """Partition ``p``'s search indexes (``None``: search off, or not open here)."""
        runner = self.runners.get(p)
        if runner is None or not self.semantic:
            return None
        proc = runner["semantic"]
        assert isinstance(proc, SemanticProjection)
        return proc

    def views_of(self, p: int, offset: int) -> MemoryViews | None:
        """Partition ``p``'s current-memory view if it is loaded and reflects ``offset``
        (``None``: read the shard's DuckDB)."""
        runner = self.runners.get(p)
        if runner is None:
            return None
        views = runner[VIEWS]
        assert isinstance(views, MemoryViews)
        return views if views.ready and views.checkpoint >= offset else None

    def checkpoint(self, p: int) -> int:
        """The offset every processor of partition ``p`` reflects (``-2``: not started)."""
        runner = self.runners.get(p)
        return runner.checkpoint if runner is not None else -2

    async def wait(self, p: int, offset: int, names: list[str], timeout: float = 10.0) -> None:
        """Wait until partition ``p``'s processors ``names`` reflect ``offset``; a
        :class:`LookupError` saying how far they got after ``timeout`` seconds."""
        runner = self.runners[p]

        def behind(reached: int) -> Exception:
            return LookupError(
                f"partition {p}: the search indexes are catching up (at offset {reached}, "
                f"{offset} wanted)"
            )

        await asyncio.to_thread(runner.wait_for, offset, timeout, behind, names)

    @property
    def texts_embedded(self) -> int:
        """Texts embedded by this worker's search indexes since it started."""
        live = 0
        for p in self.runners:
            proj = self.semantic_of(p)
            if proj is not None:
                live += proj.embedder.texts_embedded
        return self.closed_texts_embedded + live
