"""Embeddings shared by every worker through the compacted ``memstream.vectors`` topic.

A vector is derived data, computed once per (model, content hash) and reused: the worker
that embeds a text publishes the vector (record key ``<model id>|<content hash>``, value
the float32 bytes); a worker that gains a partition reads the topic into its local
embedding cache before it rebuilds that partition's indexes, so it embeds nothing again.

Erasure reaches the vectors too: when a worker drops an erased memory's vectors from its
cache, it publishes a tombstone for each, and compaction removes them from the topic
(the content hashes are keyed per subject, so they reveal nothing once the key is gone).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable, Mapping

import numpy as np
import numpy.typing as npt
from aiokafka import TopicPartition
from memstream.projections.embedding import EmbeddingCache

from . import clients
from .settings import KafkaSettings

log = logging.getLogger("memstream.kafka.vectors")


class RecordingCache(EmbeddingCache):
    """An embedding cache that remembers what was computed here and what was erased, so the
    worker can publish both; vectors read from the topic are stored without being recorded."""

    def __init__(self, path) -> None:  # type: ignore[no-untyped-def]
        super().__init__(path)
        self._pending_lock = threading.Lock()
        self._fresh: list[tuple[str, str, bytes]] = []
        self._gone: list[tuple[str, str]] = []

    def put_many(
        self,
        model_id: str,
        items: Iterable[tuple[str, npt.ArrayLike]] | Mapping[str, npt.ArrayLike],
        *,
        record: bool = True,
    ) -> int:
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        n = super().put_many(model_id, pairs)
        if record and pairs:
            with self._pending_lock:
                self._fresh.extend(
                    (model_id, str(h), np.ascontiguousarray(v, dtype=np.float32).tobytes())
                    for h, v in pairs
                )
        return n

    def forget_memories(self, memory_ids: Iterable[str]) -> int:
        ids = list(dict.fromkeys(memory_ids))
        doomed: list[tuple[str, str]] = []
        with self._lock:
            for start in range(0, len(ids), self._CHUNK):
                chunk = ids[start : start + self._CHUNK]
                marks = ",".join("?" * len(chunk))
                doomed += self._conn.execute(
                    "SELECT model_id, content_hash FROM embeddings WHERE content_hash IN "
                    f"(SELECT content_hash FROM owners WHERE memory_id IN ({marks}))",
                    chunk,
                ).fetchall()
        n = super().forget_memories(ids)
        with self._pending_lock:
            self._gone.extend(doomed)
        return n

    def drain(self) -> tuple[list[tuple[str, str, bytes]], list[tuple[str, str]]]:
        """What to publish: vectors computed here, and (model, hash) pairs erased here."""
        with self._pending_lock:
            fresh, gone = self._fresh, self._gone
            self._fresh, self._gone = [], []
        return fresh, gone


def _key(model_id: str, content_hash: str) -> bytes:
    return f"{model_id}|{content_hash}".encode()


class SharedVectors(clients.LogFollower):
    """A worker's reader and writer of the vectors topic."""

    def __init__(self, settings: KafkaSettings, cache: RecordingCache):
        self.settings = settings
        self.cache = cache
        self._tps = [TopicPartition(settings.vectors, p) for p in range(settings.partitions)]
        self._read = asyncio.Lock()
        self.received = 0

    async def start(self) -> None:
        await self._open("memstream-vectors", linger_ms=5)

    async def _poll(self, timeout_ms: int) -> int:
        async with self._read:
            got = await self._c.getmany(timeout_ms=timeout_ms, max_records=10_000)
        by_model: dict[str, list[tuple[str, npt.NDArray[np.float32]]]] = {}
        n = 0
        for recs in got.values():
            for r in recs:
                n += 1
                if r.key is None or r.value is None or len(r.value) % 4:
                    continue  # a tombstone (compaction marker) or a foreign record
                model_id, _, content_hash = r.key.decode("utf-8", "replace").rpartition("|")
                vec = np.frombuffer(r.value, dtype=np.float32)
                by_model.setdefault(model_id, []).append((content_hash, vec))
        for model_id, pairs in by_model.items():
            await asyncio.to_thread(self.cache.put_many, model_id, pairs, record=False)
            self.received += len(pairs)
        return n

    async def publish(self) -> int:
        """Publish what the cache computed or erased since the last call."""
        fresh, gone = self.cache.drain()
        sends = [
            await self._p.send(self.settings.vectors, vec, key=_key(m, h)) for m, h, vec in fresh
        ]
        sends += [await self._p.send(self.settings.vectors, None, key=_key(m, h)) for m, h in gone]
        if sends:
            await asyncio.wait_for(asyncio.gather(*sends), self.settings.send_timeout)
        return len(sends)
