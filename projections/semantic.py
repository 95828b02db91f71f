"""The semantic projection: a vector index and a keyword index, a processor of decided events.

It never decides anything: the core projection decided every event once, and the runner
hands this processor each decided event (event, outcome) after its checkpoint, in order
(:mod:`memstream.streams.runner`). For a batch it brings both indexes in line with the
post-states the outcomes carry:

* each memory an accepted event changed is indexed at its post-state if it is live (state
  ``active`` or ``activated``) and removed otherwise (archived, expired, merged, erased);
  its content is the event's own (create, revise, merge) or, when the event carried none
  (a restore, a rollback), read from the core projection's ``versions`` by (memory id,
  version), which never changes once decided;
* a live memory's text is embedded through the durable :class:`CachedEmbedder` (batched,
  keyed by model and content hash) and upserted (the hits' views come from the
  current-memory view, :mod:`~memstream.projections.views`);
* an erased memory also loses its cached vectors (crypto-shredding reaches derived data);
* a producer-supplied vector is used instead of the model, after a dimension check; a
  vector of the wrong dimension is recorded in :attr:`problems` and logged, and the memory
  is indexed for keywords only (appends through the SDK refuse such vectors up front, so
  this only happens with raw producers).

Applying a post-state is idempotent, so the checkpoint rules stay simple: on start the
indexes load from their manifests and catch up from the older of their two offsets with
the core's current state (the memories changed since, re-read at their current version);
when either is missing, corrupt, of another model, of another log, or ahead of the store,
both are rebuilt from DuckDB's current state (never from the model: vectors come from the
cache). Then the runner feeds it decided events from that checkpoint on.

Saving the hnswlib graph is the expensive part (files, SHA-256, fsync), so it is batched:
at most every ``save_interval`` seconds or ``save_changes`` changed memories (checked on
each tick), and on close. The keyword index commits on every batch, because tantivy shows
only committed documents to searches.

An erase must leave nothing on disk. A removed document's terms stay in tantivy's segments
and a deleted element's vector in hnswlib's, so an erasure leaves the keyword index
``purge_pending`` (in its manifest) and, ``purge_delay`` seconds later (erasures coalesce),
on :meth:`flush`, on close, or on the next start after a crash, the keyword index is
rewritten from the live memories and the vector index saved (a save blanks the vectors of
deleted elements).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from memstream.schemas.memcube import MemState
from memstream.schemas.views import Memory

from .context import INDEXING, indexed, stored_metadata
from .core import PROJECTOR_VERSION
from .duck import DuckStore
from .embedding import CachedEmbedder, embed_query
from .errors import IndexUnusable
from .facets import facets_of
from .keyword import KeywordIndex
from .processor import Decided, ProcessorContext
from .reads import (
    CURRENT_EXPRESSIONS,
    CURRENT_SOURCE,
    memory_view,
    view_from_row,
    view_select,
)
from .vectors import VectorIndex

__all__ = ["LIVE_STATES", "SemanticProjection"]

log = logging.getLogger("memstream.semantic")

#: States whose current version is searchable by default (and kept in the indexes).
LIVE_STATES: tuple[str, ...] = ("active", "activated")
FOLLOWER_FILE = "follower.json"
FOLLOWER_FORMAT = 1

ProgressFactory = Callable[[str, int], Callable[[int], None]]

#: (text, content hash, producer vector) of one version.
_Content = tuple[str | None, str | None, list[float] | None]


class SemanticProjection:
    """Vector (hnswlib) and keyword (tantivy) indexes of the live memories of one store.

    Args:
        directory: where ``vectors/``, ``keywords/`` and ``follower.json`` live.
        embedder: the cached embedder; its cache must survive rebuilds of the indexes.
        save_interval: seconds between saves of the vector index while it changes.
        save_changes: changed memories that trigger a save regardless of time.
        progress: a progress factory for rebuilds (``label, total -> tick(n)``).
        vector_options: :class:`VectorIndex` keywords (``num_threads``, ``exact_limit``...).
    """

    name = "semantic"
    #: What a message about its lag calls it.
    title = "the search indexes (vector and keyword)"

    def __init__(
        self,
        directory: str | os.PathLike[str],
        embedder: CachedEmbedder,
        *,
        save_interval: float = 5.0,
        save_changes: int = 5_000,
        purge_delay: float = 1.0,
        progress: ProgressFactory | None = None,
        vector_options: dict[str, Any] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.embedder = embedder
        self.save_interval = save_interval
        self.save_changes = save_changes
        self.purge_delay = purge_delay
        self.progress = progress
        self.vector_options = dict(vector_options or {})
        #: The core offset both indexes reflect (``-1``: nothing yet; not open yet either).
        self.checkpoint = -1
        #: Why the indexes were rebuilt on open (``None``: loaded from their manifests).
        self.rebuild_reason: str | None = None
        #: memory id -> why it is not in the vector index although live (bad vector).
        self.problems: dict[str, str] = {}
        self.vectors: VectorIndex | None = None
        self.keywords: KeywordIndex | None = None
        self._lock = threading.RLock()
        self._duck: DuckStore | None = None
        self._dirty = 0
        self._last_save = time.monotonic()
        #: when the erasures seen since the last purge are due to be purged
        self._purge_due: float | None = None

    # -- opening -------------------------------------------------------------------------

    @property
    def opened(self) -> bool:
        return self.vectors is not None

    def _identity(self, duck: DuckStore) -> dict[str, Any]:
        return {
            "format": FOLLOWER_FORMAT,
            "log_id": duck.meta().get("log_id"),
            "projector_version": PROJECTOR_VERSION,
            "model_id": self.embedder.model_id,
            "dim": self.embedder.dim,
            "indexing": INDEXING,
        }

    def _open(self, duck: DuckStore, upto: int) -> None:
        """Load both indexes and catch up, or rebuild them from DuckDB's current state."""
        want = self._identity(duck)
        vectors = keywords = None
        try:
            path = self.directory / FOLLOWER_FILE
            try:
                have = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise IndexUnusable("no follower.json: never built", path) from None
            except (OSError, ValueError) as exc:
                raise IndexUnusable(f"follower.json is unreadable ({exc})", path) from None
            if have != want:
                diff = sorted(k for k in want if have.get(k) != want[k])
                raise IndexUnusable(f"built for another {', '.join(diff)}", path)
            vectors = VectorIndex.load(
                self.directory / "vectors", want["dim"], want["model_id"], **self.vector_options
            )
            keywords = KeywordIndex.open(self.directory / "keywords")
            start = min(int(vectors.offset or -1), int(keywords.offset or -1))
            if start > upto:
                raise IndexUnusable(
                    f"indexes cover offset {start}, beyond the store's offset {upto}", path
                )
        except IndexUnusable as exc:
            if keywords is not None:
                keywords.close()
            self.rebuild_reason = exc.reason
            log.info("rebuilding the semantic indexes of %s: %s", self.directory, exc.reason)
            self._rebuild(duck, upto, want)
            return
        self.vectors, self.keywords = vectors, keywords
        self.checkpoint = start
        self.rebuild_reason = None
        if start < upto:
            self._sync(duck, upto)

    def _rebuild(self, duck: DuckStore, upto: int, identity: dict[str, Any]) -> None:
        (self.directory / FOLLOWER_FILE).unlink(missing_ok=True)
        self.vectors = VectorIndex(self.embedder.dim, self.embedder.model_id, **self.vector_options)
        self.keywords = KeywordIndex(self.directory / "keywords", overwrite=True)
        self.problems.clear()
        ids = [r["memory_id"] for r in duck.query(
            "SELECT memory_id FROM memories WHERE list_contains(?, state) ORDER BY memory_id",
            [list(LIVE_STATES)],
        )]  # fmt: skip
        tick = self.progress("indexing memories", len(ids)) if self.progress and ids else None
        for start in range(0, len(ids), 2_048):
            chunk = ids[start : start + 2_048]
            self._apply(duck, chunk)
            if tick:
                tick(len(chunk))
        self.checkpoint = upto
        self._save(force=True)
        tmp = self.directory / (FOLLOWER_FILE + ".tmp")
        tmp.write_text(json.dumps(identity, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.directory / FOLLOWER_FILE)

    # -- the processor protocol ------------------------------------------------------------

    def busy(self) -> str | None:
        """What keeps it from catching up besides work (its embedding model loading, with
        the seconds it has taken so far), or None."""
        from .models import loading

        under_way = loading()
        if under_way is None:
            return None
        name, seconds = under_way
        return f"loading the embedding model {name} ({seconds:.0f} s so far)"

    def start(self, ctx: ProcessorContext) -> int:
        """Load both indexes and catch up with the core projection's current state (or
        rebuild them from it); the checkpoint they reflect."""
        with self._lock:
            self._duck = ctx.duck
            self._open(ctx.duck, ctx.head)
            assert self.keywords is not None
            if self.keywords.purge_pending:  # erasures a crash left unpurged
                self._purge()
            self._save()
            return self.checkpoint

    def process(self, batch: Sequence[Decided]) -> None:
        """Reflect a batch of decided events: each memory an accepted event changed is
        indexed at its post-state (its content from the event that made it, or, for a
        memory that became live again or was rolled back, from its version), or removed."""
        with self._lock:
            latest: dict[str, tuple[MemState, _Content | None]] = {}
            for logged, out in batch:
                if out.status != "accepted":
                    continue
                ev = logged.event
                p = ev.payload
                text = getattr(p, "text", None) if p is not None else None
                for m in out.changes:
                    content: _Content | None = None
                    if text is not None and m.memory_id == ev.memory_id:
                        content = (text, logged.content_hash, getattr(p, "vector", None))
                    else:
                        prev = latest.get(m.memory_id)
                        if prev is not None and prev[0].version == m.version:
                            content = prev[1]
                    latest[m.memory_id] = (m, content)
            missing = [
                (memory_id, m.version)
                for memory_id, (m, content) in latest.items()
                if content is None and m.state in LIVE_STATES
            ]
            found = self._contents(missing)
            entries = []
            for memory_id, (m, content) in latest.items():
                text, content_hash, vector = content or found.get(
                    (memory_id, m.version), (None, None, None)
                )
                entries.append((memory_view(m, text, content_hash), vector))
            if entries:
                self._index(entries)
            assert self.keywords is not None
            last = batch[-1][0].offset
            if entries:
                self.keywords.commit(last)
            self.checkpoint = last
            self._dirty += len(entries)

    def _contents(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], _Content]:
        """(text, content hash, producer vector) of the versions ``keys`` name (content is
        immutable per version: the core projection holds it once the event is decided)."""
        if not keys:
            return {}
        assert self._duck is not None
        with self._duck.reading() as cur:
            rows = cur.execute(
                "SELECT v.memory_id, v.version, v.text, v.content_hash, v.vector FROM versions v "
                "JOIN (SELECT unnest(?::VARCHAR[]) AS memory_id, unnest(?::INTEGER[]) AS version)"
                " k ON k.memory_id = v.memory_id AND k.version = v.version",
                [[k[0] for k in keys], [k[1] for k in keys]],
            ).fetchall()
        return {(r[0], r[1]): (r[2], r[3], r[4]) for r in rows}

    def tick(self) -> None:
        """Purge erasures when due; save the vector index when enough changed or enough
        time passed."""
        with self._lock:
            if self._purge_due is not None and time.monotonic() >= self._purge_due:
                self._purge()
            self._save()

    def flush(self) -> None:
        """Persist everything now: purge pending erasures, save the vector index."""
        with self._lock:
            if self.vectors is None or self.keywords is None:
                return
            if self.keywords.purge_pending:
                self._purge()
            elif self._dirty or self.vectors.offset != self.checkpoint:
                self._save(force=True)

    def _purge(self) -> None:
        """Rewrite the keyword index from the live memories and save the vector index, so
        that no erased memory's terms or vector stay in a file."""
        assert self.keywords is not None and self._duck is not None
        with self._duck.reading() as cur:
            rows = cur.execute(
                f"SELECT m.memory_id, m.namespace, v.text, v.metadata, v.tags FROM {CURRENT_SOURCE} "
                "WHERE list_contains(?, m.state) AND v.text IS NOT NULL ORDER BY m.memory_id",
                [list(LIVE_STATES)],
            ).fetchall()
        docs = [
            (m, ns, indexed(text, None, stored_metadata(meta))[0], text, tags or [])
            for m, ns, text, meta, tags in rows
        ]
        started = time.monotonic()
        self.keywords.purge(docs, self.checkpoint)
        self._save(force=True)
        self._purge_due = None
        log.info(
            "purged erased memories from the indexes of %s (%d documents, %.2f s)",
            self.directory, len(docs), time.monotonic() - started,
        )  # fmt: skip

    # -- following -----------------------------------------------------------------------

    def sync(self, duck: DuckStore, upto: int) -> None:
        """Reflect the core projection up to offset ``upto`` (and save when due)."""
        with self._lock:
            if not self.opened:
                self._open(duck, upto)
            elif upto > self.checkpoint:
                self._sync(duck, upto)
            self._save()

    def _sync(self, duck: DuckStore, upto: int) -> None:
        ids = [r["memory_id"] for r in duck.query(
            'SELECT DISTINCT memory_id FROM transitions WHERE "offset" > ? AND "offset" <= ? '
            "ORDER BY memory_id",
            [self.checkpoint, upto],
        )]  # fmt: skip
        for start in range(0, len(ids), 2_048):
            self._apply(duck, ids[start : start + 2_048])
        assert self.keywords is not None
        self.keywords.commit(upto)
        self.checkpoint = upto
        self._dirty += len(ids)

    def _apply(self, duck: DuckStore, ids: list[str]) -> None:
        """Upsert the live ones among ``ids`` at their current version; remove the rest."""
        with duck.reading() as cur:
            rows = cur.execute(
                f"SELECT {view_select(CURRENT_EXPRESSIONS)}, v.vector "
                f"FROM {CURRENT_SOURCE} JOIN (SELECT unnest(?::VARCHAR[]) AS memory_id) c "
                "ON c.memory_id = m.memory_id",
                [ids],
            ).fetchall()
        self._index([(view_from_row(row[:-1]), row[-1]) for row in rows])

    def _index(self, entries: list[tuple[Memory, list[float] | None]]) -> None:
        """Index the live memories among ``entries`` (views with their producer vectors,
        if any) and remove the rest."""
        assert self.vectors is not None and self.keywords is not None
        live: list[tuple[str, str, str, str, list[float] | None]] = []
        facets: dict[str, tuple[str, ...]] = {}  # the vector index's (namespace, tags)
        tags: dict[str, list[str]] = {}  # the keyword index's
        own_texts: list[str] = []  # each live text without its context (keyword field)
        gone: list[str] = []
        erased: list[str] = []
        for view, vector in entries:
            if (
                view.state in LIVE_STATES
                and view.text is not None
                and view.content_hash is not None
            ):
                # The indexes see the text with its context (projections/context.py).
                text, key = indexed(view.text, view.content_hash, view.metadata)
                live.append(
                    (view.memory_id, view.namespace, text, key or view.content_hash, vector)
                )
                facets[view.memory_id] = facets_of(view.namespace, view.tags)
                tags[view.memory_id] = view.tags
                own_texts.append(view.text)
            else:
                gone.append(view.memory_id)
                if view.state == "erased":
                    erased.append(view.memory_id)
        if gone:
            self.vectors.remove(gone)
            wiped = set(erased)
            self.keywords.remove([m for m in gone if m not in wiped])
            for memory_id in gone:
                self.problems.pop(memory_id, None)
        if erased:
            self.keywords.remove(erased, erased=True)
            self.embedder.cache.forget_memories(erased)
            if self._purge_due is None:
                self._purge_due = time.monotonic() + self.purge_delay
        if not live:
            return
        self.keywords.upsert(
            [
                (m, ns, text, own, tags[m])
                for (m, ns, text, _, _), own in zip(live, own_texts, strict=True)
            ]
        )
        dim = self.embedder.dim
        supplied = [(m, h, v) for m, _, _, h, v in live if v is not None]
        good = [(m, h, v) for m, h, v in supplied if len(v) == dim]
        for memory_id, _, v in supplied:
            if len(v) != dim:
                why = (
                    f"memory {memory_id}: supplied vector has dimension {len(v)}, the store's "
                    f"model {self.embedder.model_id!r} has {dim}; revise it with a vector of "
                    f"{dim} floats, or without one to embed its text"
                )
                self.problems[memory_id] = why
                log.warning("not indexed for semantic search: %s", why)
                self.vectors.remove([memory_id])
        ok_ids: list[str] = []
        matrices: list[npt.NDArray[np.float32]] = []
        if good:
            try:
                self.embedder.put_vectors([h for _, h, _ in good], [v for _, _, v in good])
            except ValueError as exc:  # zero or non-finite rows: name them and go on
                for memory_id, h, v in good:
                    try:
                        self.embedder.put_vectors([h], [v])
                    except ValueError:
                        self.problems[memory_id] = f"memory {memory_id}: supplied vector {exc}"
                        log.warning("not indexed for semantic search: %s", exc)
                good = [g for g in good if g[0] not in self.problems]
            if good:
                ok_ids.extend(m for m, _, _ in good)
                matrices.append(np.asarray([v for _, _, v in good], dtype=np.float32))
        own = [(m, h, text) for m, _, text, h, v in live if v is None]
        if own:
            matrices.append(self.embedder.embed([(h, text) for _, h, text in own]))
            ok_ids.extend(m for m, _, _ in own)
        self.embedder.cache.link([(m, h) for m, _, _, h, _ in live])
        if ok_ids:
            for memory_id in ok_ids:
                self.problems.pop(memory_id, None)
            self.vectors.upsert(ok_ids, np.concatenate(matrices), [facets[m] for m in ok_ids])

    # -- saving --------------------------------------------------------------------------

    def _save(self, force: bool = False) -> None:
        if self.vectors is None or self.keywords is None:
            return
        due = force or self._dirty >= self.save_changes
        due = due or (self._dirty > 0 and time.monotonic() - self._last_save >= self.save_interval)
        if not due:
            return
        self.vectors.save(self.directory / "vectors", self.checkpoint)
        if self.keywords.offset != self.checkpoint:
            self.keywords.commit(self.checkpoint)
        self._dirty = 0
        self._last_save = time.monotonic()

    def close(self) -> None:
        """Save whatever is not saved yet and release the keyword writer."""
        with self._lock:
            if self.vectors is not None and self.keywords is not None:
                if self.keywords.purge_pending:
                    self._purge()
                elif self._dirty or self.vectors.offset != self.checkpoint:
                    self._save(force=True)
                self.keywords.close()
            self.embedder.cache.close()

    # -- reads ---------------------------------------------------------------------------

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        """The query's vector (queries are not cached: they are not memories), on the
        embedder's single-text path when it has one."""
        return embed_query(self.embedder.embedder, text)

    def cached_vectors(self, pairs: Sequence[tuple[str, str]]) -> npt.NDArray[np.float32]:
        """Vectors of ``(content_hash, text)`` pairs from the cache, embedding only misses."""
        return self.embedder.embed(pairs)
