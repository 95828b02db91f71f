"""The embedded backend: one store directory (log, keys, DuckDB) and its search indexes."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memstream.errors import BadRequest, SearchDisabled, Unsupported
from memstream.projections import reads
from memstream.projections.policy import PolicyState
from memstream.projections.search import SearchQuery
from memstream.projections.views import VIEWS, MemoryViews
from memstream.queries import AuditQuery, ListQuery, Point
from memstream.schemas.events import Event, Original
from memstream.schemas.memcube import MemState, Outcome
from memstream.schemas.views import AuditPage, Memory, MemoryPage, SearchHit, Version
from memstream.streams.embedded import LOG_FILE, EmbeddedRuntime
from memstream.streams.feed import DecidedFeed
from memstream.streams.log import ChainBreak, EmbeddedLog
from memstream.streams.runner import ProcessorFailed

from .caller import Caller

if TYPE_CHECKING:
    from memstream.governance.retention import RetentionReport, RetentionScheduler
    from memstream.pubsub.hub import SubscriptionHub

__all__ = ["EmbeddedBackend", "log_records"]


def log_records(root: Path) -> int:
    """The number of records in the log of the store at ``root`` (a fresh copy)."""
    log = EmbeddedLog(root / LOG_FILE, create=False)
    try:
        return log.next_offset
    finally:
        log.close()


class EmbeddedBackend:
    """:class:`~memstream.service.backend.Backend` over an :class:`EmbeddedRuntime`, its
    search indexes (a ``SemanticProjection``, or None), its usage indicators (a
    ``UsageTracker``, or None), its current-memory view (a ``MemoryViews``, or None) and
    its retention scheduler (a ``RetentionScheduler``, or None).

    Reads of the current state (``get`` and ``history`` without ``version``/``as_of``, the
    candidates and hits of a search without ``as_of``) come from the view once it is
    loaded; each first waits until the view reflects the core projection's committed
    offset (and ``min_offset``), so it is never older than the DuckDB read it replaces.
    Reads of the past, and every read while the view loads or after its lane failed, go
    to DuckDB.
    """

    partitions = 1

    def __init__(
        self,
        runtime: EmbeddedRuntime,
        semantic: Any | None = None,
        usage: Any = None,
        views: MemoryViews | None = None,
        retention: RetentionScheduler | None = None,
        hub: SubscriptionHub | None = None,
    ):
        self.runtime = runtime
        self._hub = hub
        self.codec = runtime.codec
        self.semantic = semantic
        self.usage = usage
        self.views = views
        self.retention = retention
        self._view_names = (VIEWS,)

    @property
    def read_wait(self) -> float:
        """Seconds a read waits for its ``min_offset``."""
        return self.runtime.options.read_wait

    def vector_dim(self) -> tuple[int, str] | None:
        if self.semantic is None:
            return None
        return self.semantic.embedder.dim, self.semantic.embedder.model_id

    def append(self, events: Sequence[Event]) -> list[Outcome]:
        return self.runtime.append(events, validated=True)

    def as_of(self, as_of: Point | None) -> int | None:
        """An offset of this log: ``as_of`` itself, or the last one recorded by a time."""
        if as_of is None or isinstance(as_of, int):
            return as_of
        if not isinstance(as_of, datetime):
            raise TypeError(
                f"as_of must be a datetime or an offset (int), not {type(as_of).__name__}"
            )
        if as_of.tzinfo is None:
            raise ValueError("as_of must carry a timezone, e.g. datetime(..., tzinfo=UTC)")
        return self.runtime.log.offset_at(int(as_of.timestamp() * 1_000_000))

    # -- reads ---------------------------------------------------------------------------------

    def _wait(self, min_offset: int | None) -> None:
        """Wait for ``min_offset`` to be projected; one beyond the log's end is refused."""
        head = self.runtime.head
        if min_offset is not None and min_offset > head:
            raise BadRequest(
                f"min_offset {min_offset} is beyond the end of the log (last offset {head})",
                field="min_offset",
            )
        self.runtime.wait_for(min_offset)

    def _current(self, min_offset: int | None) -> MemoryViews | None:
        """The view, once it reflects the core's committed offset and ``min_offset``
        (``None``: not loaded, or its lane failed: read DuckDB)."""
        runtime = self.runtime
        self._wait(min_offset)
        views = self.views
        if views is None or not views.ready:
            return None
        target = runtime.projected_offset
        if min_offset is not None and min_offset > target:
            target = min_offset
        if views.checkpoint < target:
            try:
                runtime.wait_for_processors(target, names=self._view_names)
            except ProcessorFailed:
                return None
            if not views.ready:
                return None
        return views

    def get(
        self,
        caller: Caller,
        memory_id: str,
        *,
        namespace: str | None,
        version: int | None,
        as_of: Point | None,
        min_offset: int | None,
    ) -> Memory | None:
        if version is None and as_of is None:
            views = self._current(min_offset)
            if views is not None:
                m = views.get(memory_id)
                if m is not None and self.usage is not None:
                    self.usage.record((memory_id,))
                return m
        self._wait(min_offset)
        m = reads.get_memory(self.runtime.duck, memory_id, version, self.as_of(as_of))
        if m is not None and self.usage is not None:
            self.usage.record([memory_id])
        return m

    def history(
        self,
        caller: Caller,
        memory_id: str,
        *,
        namespace: str | None,
        include_parents: bool,
        as_of: Point | None,
        min_offset: int | None,
    ) -> list[Version]:
        if as_of is None:
            views = self._current(min_offset)
            if views is not None:
                return views.history(memory_id, include_parents)
        self._wait(min_offset)
        return reads.history(self.runtime.duck, memory_id, include_parents, self.as_of(as_of))

    def policy(self) -> PolicyState:
        return self.runtime.state.policy

    def policy_at(self, as_of: Point) -> PolicyState:
        offset = self.as_of(as_of)
        assert offset is not None
        self._wait(min(offset, self.runtime.head))
        return PolicyState.fold(self.runtime.duck.governance_rows(offset))

    def original(self, memory_id: str, version: int) -> Original | None:
        runtime = self.runtime
        with runtime.duck.reading() as cur:
            for _ in range(version):  # a rollback's content is an earlier version's
                row = cur.execute(
                    'SELECT "offset", copy_from FROM versions WHERE memory_id = ? AND version = ?',
                    [memory_id, version],
                ).fetchone()
                if row is None or row[1] is None:
                    break
                version = row[1]
        if row is None:
            return None
        logged = runtime.logged_at(row[0])
        return getattr(logged.event.payload, "original", None) if logged is not None else None

    def governance_log(self) -> list[tuple[int, str, str, str, int, dict[str, Any]]]:
        self._wait(self.runtime.head)
        return self.runtime.duck.governance_rows()

    def namespaces(self) -> frozenset[str]:
        return self.runtime.state.namespaces

    def decided(self, memory_id: str) -> MemState | None:
        return self.runtime.state.memories.get(memory_id)

    def placement(self, memory_id: str) -> tuple[str, str | None] | None:
        """(namespace, subject) of a memory the log holds (decided, maybe not projected)."""
        m = self.runtime.state.memories.get(memory_id)
        return (m.namespace, m.subject) if m is not None else None

    def list_memories(self, caller: Caller, q: ListQuery, *, min_offset: int | None) -> MemoryPage:
        self._wait(min_offset)
        return reads.list_memories(
            self.runtime.duck, namespace=q.namespace, states=list(q.states or ()),
            tags=list(q.tags), after=q.after, limit=q.limit,
        )  # fmt: skip

    def audit(
        self, caller: Caller, q: AuditQuery, *, partition: int | None, min_offset: int | None
    ) -> AuditPage:
        if partition not in (None, 0):
            raise BadRequest(
                f"partition must be 0 in an embedded store (one log), not {partition}",
                field="query.partition",
            )
        self._wait(min_offset)
        fields = {f.name: getattr(q, f.name) for f in dataclasses.fields(q) if f.name != "as_of"}
        return reads.audit(self.runtime.duck, **fields, as_of_offset=self.as_of(q.as_of))

    def search(
        self,
        caller: Caller,
        q: SearchQuery,
        *,
        min_offset: int | None,
        partitions: list[int] | None,
    ) -> list[SearchHit]:
        from memstream.projections.search import search as run

        if self.semantic is None:
            raise SearchDisabled(
                f"search is disabled for store {self.runtime.root} (opened with "
                "semantic=False or $MEMSTREAM_SEMANTIC=0); reopen it with semantic=True"
            )
        q = dataclasses.replace(q, as_of=self.as_of(q.as_of))
        try:
            q.check(self.semantic.embedder.dim)
        except ValueError as e:  # the query's own checks: each message names the parameter
            name = str(e).split(" ", 1)[0].rstrip(":")
            field = name if name in {f.name for f in dataclasses.fields(q)} else "query"
            raise BadRequest(str(e), field=field) from None
        self._wait(min_offset)
        self.runtime.wait_for_processors(min_offset, names=[self.semantic.name])
        views = self._current(min_offset) if q.as_of is None else None
        return run(
            self.runtime.duck, self.semantic, q, self.usage, self.runtime.state.memories, views
        )

    # -- governance -----------------------------------------------------------------------------

    def run_retention(self, now: datetime | None, dry_run: bool) -> RetentionReport:
        if self.retention is None:
            raise Unsupported(
                f"store {self.runtime.root} runs no retention scheduler (it was opened with "
                "retention=False, or $MEMSTREAM_RETENTION=0); reopen it with retention=True"
            )
        return self.retention.run(now, dry_run=dry_run)

    # -- the log and the process ----------------------------------------------------------------

    def verify(self, progress: Callable[[int], None] | None) -> ChainBreak | None:
        return self.runtime.log.verify(progress)

    def flush(self, timeout: float | None = None) -> None:
        self.runtime.flush(timeout)

    def checkpoint(self) -> dict[str, Any]:
        started = time.monotonic()
        offset = self.runtime.checkpoint()
        return {"offset": offset, "seconds": round(time.monotonic() - started, 3)}

    def feed(self) -> DecidedFeed:
        return self.runtime.feed

    def hub(self) -> SubscriptionHub | None:
        return self._hub

    def query_model(self) -> tuple[int, str] | None:
        return self.vector_dim()

    def embed_query(self, text: str) -> Sequence[float]:
        if self.semantic is None:
            raise SearchDisabled("this store keeps no search indexes")
        return self.semantic.embed_query(text).tolist()  # type: ignore[no-any-return]

    def store_id(self) -> str:
        return self.runtime.log.log_id

    def head(self) -> int:
        return self.runtime.head

    def health(self) -> dict[str, Any]:
        from memstream import __version__

        store = str(self.runtime.root)
        return {"status": "ok", "pid": os.getpid(), "store": store, "version": __version__}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        runtime = self.runtime
        alive = runtime.projector_alive
        head, projected = runtime.head, runtime.projected_offset
        body: dict[str, Any] = {
            "status": "ready" if alive else "unavailable",
            "store": str(runtime.root),
            "head": head,
            "projected": projected,
            "lag": head - projected,
            "projector_alive": alive,
            "read_only": runtime.read_only,
        }
        if runtime.broken is not None:
            body["log_broken_at"] = runtime.broken.offset
        if not alive:
            try:
                runtime.wait_for(None)
                body["reason"] = "the store is closed"
            except Exception as e:  # the projector's failure, as a sentence
                body["reason"] = str(e)
            body["error"] = "unavailable"
            body["message"] = body["reason"]
        return alive, body

    def status(self, caller: Caller, cluster: bool) -> dict[str, Any]:
        """The store as one partition (the shape of a Kafka worker's status)."""
        alive, ready = self.ready()
        head, projected = ready["head"], ready["projected"]
        own = {
            "started": alive,
            "store": ready["store"],
            "pid": os.getpid(),
            "partitions": {
                "0": {"offset": projected, "end": head + 1, "lag": head - projected,
                      "catching_up": head > projected},
            },
        }  # fmt: skip
        return {"workers": [own]} if cluster else own

    def backup(self, dest: Path) -> dict[str, Any]:
        """The log and keys; the model choice and, with search, the embedding cache too."""
        from memstream.projections.models import EMBEDDINGS_FILE, MODEL_FILE

        dest = self.runtime.backup(dest)
        model = self.runtime.root / MODEL_FILE
        if model.exists():
            shutil.copy2(model, dest / MODEL_FILE)
        if self.semantic is not None:
            self.semantic.embedder.cache.backup(dest / EMBEDDINGS_FILE)
        records = log_records(dest)
        return {"dest": str(dest), "records": records, "head": records - 1}

    def replay_copy(self, into: Path, to: Point | None) -> dict[str, Any]:
        offset = self.as_of(to)
        stop = offset + 1 if offset is not None else None
        origin = f"replay to {to}" if to is not None else "replay"
        self.runtime.backup(into, stop=stop, origin=origin)
        records = log_records(into)
        return {"into": str(into), "records": records, "to_offset": records - 1}
