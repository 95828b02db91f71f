"""A persistent approximate nearest-neighbour index of memory vectors, over hnswlib.

The index is a projection of the event log: it is fed ``(memory_id, vector)`` upserts and
removals, saved with the log offset it covers, and rebuilt from the log whenever the saved
copy cannot be trusted. hnswlib needs careful handling for that role:

* ``load_index`` trusts the file completely: a truncated file can crash the process and a
  graph of another dimension loads and answers with garbage. :meth:`VectorIndex.load`
  therefore checks a manifest (dimension, model id, sizes and SHA-256 of every file) and
  the graph header before hnswlib sees the file, and raises :class:`IndexUnusable`.
* ``load_index`` resets ``ef`` to 10, which silently ruins recall: ``ef`` is set again
  after every load.
* Replacing a vector in place is several times slower than adding one, and ``mark_deleted``
  raises on a label already deleted; so a replaced memory gets a fresh label, the old one
  is marked deleted exactly once, and the graph is compacted (rebuilt from live vectors)
  once deleted labels exceed a share of the index.
* ``knn_query`` raises when ``k`` exceeds what it can find (live count, or many deleted
  neighbours); searches clamp ``k`` and fall back to exact search.

Live vectors are also kept in a numpy matrix (row = hnswlib label), saved beside the
graph. It gives an exact reference search, exact search over a selective filter (a graph
search followed by filtering loses recall when few candidates are allowed; scoring just
the allowed rows is exact and, for a few thousand rows, faster than the graph), and the
data to compact without re-embedding.

Each vector may carry **facets**: opaque strings naming values a search filters on (the
memory's namespace and tags, :mod:`~memstream.projections.facets`). The index keeps, per
facet, the set of live labels holding it, so a filtered search finds its candidate rows by
set operations over integers, without touching memory ids, and scores them exactly or
in the graph (:meth:`VectorIndex.search_facets`).

Vectors are L2-normalised on the way in and compared by inner product, so scores are
cosine similarities (higher is better).
"""

from __future__ import annotations

import json
import math
import os
import struct
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import filterfalse
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np
import numpy.typing as npt
from memstream.projections.embedding import _torch_threads, normalize_rows, unit_vector
from memstream.projections.errors import IndexUnusable
from memstream.projections.snapshot import (
    MANIFEST_NAME,
    fsync_file,
    read_manifest,
    sha256_of,
    write_manifest,
)

__all__ = ["IndexUnusable", "VectorIndex"]

#: Bounds of the query-time candidate list sized with the index (``ef_search=None``).
EF_MIN = 200
EF_MAX = 1000
#: Vectors per unit of that list: 125 gives 800 at 100,000 vectors.
EF_PER_VECTORS = 125
#: Candidates of a filtered search scored exactly rather than searched in the graph.
FILTER_EXACT_LIMIT = 32_768
FORMAT = "memstream.vector-index"
FORMAT_VERSION = 2  # 2: facets per label

# hnswlib's saved header: offsetLevel0, max_elements, cur_element_count,
# size_data_per_element, label_offset, offset_data (size_t), maxlevel (int),
# enterpoint_node (uint), maxM, maxM0, M (size_t), mult (double), ef_construction (size_t).
_HNSW_HEADER = struct.Struct("<QQQQQQiIQQQdQ")

#: Candidate sets at least this large are gathered and scored by torch on one thread:
#: numpy's gather allocates fresh pages per call and its BLAS spins a second thread,
#: which on a busy machine cost several times the product itself.
GATHER_MIN = 2048
#: Candidate sets at least this large are preselected in bfloat16 (see ``_top``), keeping
#: the best ``max(k * PRESELECT_FACTOR, PRESELECT_KEEP)``.
PRESELECT_MIN = 4096
PRESELECT_FACTOR = 4
PRESELECT_KEEP = 256


def _bf16(matrix: npt.NDArray[np.float32]) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(matrix)).to(torch.bfloat16)


class VectorIndex:
    """Cosine-similarity ANN index keyed by memory id, saved atomically with a log offset.

    Args:
        dim: vector dimension (384 for all-MiniLM-L6-v2).
        model_id: the embedder's id; a saved index only loads for the same model.
        M: graph degree. The defaults (M 48, ef_construction 200, ``ef_search`` growing
            with the index) were chosen on MiniLM embeddings of 100,000 memories, where
            recall depends on the queries: questions phrased unlike any stored text (best
            cosine around 0.3) are the hard case, because the graph search settles in a
            dense cluster of similar memories far from their true neighbours. On that set
            M 24 with ef 200 found 0.914 of the exact top 10; M 48 with ef 800, 0.989
            (docs/benchmarks.md).
        ef_construction: build-time candidate list.
        ef_search: query-time candidate list for ``k`` up to ``ef_search / 2`` (larger
            ``k`` searches with ``2 * k``). ``None`` (the default) sizes it with the
            index: ``len(index) / 125``, at least :data:`EF_MIN` and at most
            :data:`EF_MAX` (200 up to 25,000 vectors, 800 at 100,000), because a fixed
            list finds a shrinking share of the true neighbours as the graph grows.
        num_threads: threads for adding vectors and rebuilding; ``-1`` uses all cores.
            Multi-threaded builds are not deterministic: pass 1 where the graph must be
            reproducible (queries then return identical results after a rebuild).
        initial_capacity: labels allocated up front; capacity then grows by half of
            itself (at least ``growth_chunk``) whenever an upsert needs more.
        compact_threshold: rebuild the graph from live vectors when deleted labels exceed
            this share of all labels; ``None`` disables automatic compaction.
        exact_limit: candidate sets of at most this many vectors (the whole index, or
            the allowed ids of a filtered search) are scored exactly with numpy instead
            of searched in the graph. Around this size exact scoring costs about as
            much as a filtered graph search whatever the index size, and it is never
            less accurate.
        filter_exact_limit: a filtered search scores its candidates exactly up to this
            many (a filtered graph search must fetch ``k`` divided by the filter's share
            of the index, so for a filter held by a few percent of the memories it walks
            far more of the graph than an unfiltered one: at 100,000 vectors and a 5%
            filter, a list of 2,400). Exact scoring reads the candidates' rows once.
        seed: hnswlib's random seed (level assignment), fixed for reproducible builds.
    """

    def __init__(
        self,
        dim: int,
        model_id: str,
        *,
        M: int = 48,
        ef_construction: int = 200,
        ef_search: int | None = None,
        num_threads: int = -1,
        initial_capacity: int = 1024,
        growth_chunk: int = 1024,
        compact_threshold: float | None = 0.25,
        exact_limit: int = 2048,
        filter_exact_limit: int = FILTER_EXACT_LIMIT,
        seed: int = 100,
    ) -> None:
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        if not model_id:
            raise ValueError("model_id must name the embedding model, got an empty string")
        if M < 2 or ef_construction < 1 or (ef_search is not None and ef_search < 1):
            raise ValueError(
                f"M must be >= 2 and ef_construction, ef_search >= 1; got M={M}, "
                f"ef_construction={ef_construction}, ef_search={ef_search}"
            )
        if compact_threshold is not None and not 0.0 < compact_threshold < 1.0:
            raise ValueError(
                f"compact_threshold must be in (0, 1) or None, got {compact_threshold}"
            )
        self.dim = dim
        self.model_id = model_id
        self.M = M
        self.ef_construction = ef_construction
        self._ef_search = ef_search
        self.num_threads = num_threads
        self.growth_chunk = max(1, growth_chunk)
        self.compact_threshold = compact_threshold
        if exact_limit < 0:
            raise ValueError(f"exact_limit must be >= 0, got {exact_limit}")
        self.exact_limit = exact_limit
        if filter_exact_limit < 0:
            raise ValueError(f"filter_exact_limit must be >= 0, got {filter_exact_limit}")
        self.filter_exact_limit = filter_exact_limit
        self.seed = seed
        self.offset: int | None = None
        """The log offset covered by the last save or load (``None`` if never saved)."""
        self._lock = threading.RLock()
        self._init_storage(max(1, initial_capacity))

    # -- state -------------------------------------------------------------------------

    def _init_storage(self, capacity: int) -> None:
        self._capacity = capacity
        self._vectors = np.zeros((capacity, self.dim), dtype=np.float32)
        self._low: Any = None  # _vectors in bfloat16 (a torch tensor), made on first use
        self._live = np.zeros(capacity, dtype=bool)
        self._ids: list[str | None] = []  # label -> memory id, None once deleted
        self._labels: dict[str, int] = {}  # memory id -> live label
        self._keys: list[tuple[str, ...]] = []  # label -> its facets (() once deleted)
        self._facets: dict[str, set[int]] = {}  # facet -> live labels holding it
        self._facet_arrays: dict[str, npt.NDArray[np.int64]] = {}  # sorted, made on use
        self._deleted = 0
        self._graph = self._new_graph(capacity)

    def _new_graph(self, capacity: int) -> hnswlib.Index:
        graph = hnswlib.Index(space="ip", dim=self.dim)
        graph.init_index(
            max_elements=capacity,
            M=self.M,
            ef_construction=self.ef_construction,
            random_seed=self.seed,
        )
        graph.set_ef(self.effective_ef)
        graph.set_num_threads(self._threads())
        return graph

    def _threads(self) -> int:
        return self.num_threads if self.num_threads > 0 else (os.cpu_count() or 1)

    @property
    def ef_search(self) -> int | None:
        """The configured query-time candidate list (``None``: sized with the index)."""
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value: int | None) -> None:
        if value is not None and value < 1:
            raise ValueError(f"ef_search must be positive or None, got {value}")
        with self._lock:
            self._ef_search = value
            self._graph.set_ef(self.effective_ef)

    @property
    def effective_ef(self) -> int:
        """The ``ef`` searches for small ``k`` use now (see ``ef_search``)."""
        if self._ef_search is not None:
            return self._ef_search
        return min(EF_MAX, max(EF_MIN, -(-len(self._labels) // EF_PER_VECTORS)))

    @property
    def graph_ef(self) -> int:
        """The ``ef`` hnswlib is set to (equals ``effective_ef`` after a search for small ``k``)."""
        return int(self._graph.ef)

    @property
    def capacity(self) -> int:
        """Labels allocated in the graph (live, deleted and free)."""
        return self._capacity

    @property
    def deleted_count(self) -> int:
        """Labels marked deleted and not yet compacted away."""
        return self._deleted

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, memory_id: object) -> bool:
        return memory_id in self._labels

    def missing(self, ids: Iterable[str]) -> list[str]:
        """Those of ``ids`` that have no vector here (one C-level pass)."""
        return list(filterfalse(self._labels.__contains__, ids))

    def ids(self) -> Iterator[str]:
        """Live memory ids, in insertion order of their current vectors."""
        with self._lock:
            live = [i for i in self._ids if i is not None]
        return iter(live)

    def vector(self, memory_id: str) -> npt.NDArray[np.float32]:
        """A copy of the stored (normalised) vector of ``memory_id``."""
        with self._lock:
            label = self._labels.get(memory_id)
            if label is None:
                raise KeyError(f"memory {memory_id!r} is not in the vector index")
            return self._vectors[label].copy()

    # -- writes --------------------------------------------------------------------------

    def upsert(
        self,
        ids: Sequence[str],
        vectors: npt.ArrayLike,
        facets: Sequence[Iterable[str]] | None = None,
    ) -> None:
        """Insert or replace the vectors of ``ids`` (row ``i`` of ``vectors`` for ``ids[i]``),
        with ``facets[i]`` the facets of ``ids[i]`` (none when ``facets`` is None).

        A replaced memory gets a fresh label and its old label is marked deleted (adding
        is much faster in hnswlib than replacing in place). Within one call the last
        occurrence of an id wins, as it would if the calls were made one by one.
        """
        ids = list(ids)
        if facets is not None and len(facets) != len(ids):
            raise ValueError(f"got {len(ids)} ids but {len(facets)} facet lists")
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.ndim == 1 and len(ids) == 1:
            matrix = matrix.reshape(1, -1)
        if matrix.ndim != 2 or matrix.shape[1] != self.dim:
            given = matrix.shape[1] if matrix.ndim == 2 else f"shape {matrix.shape}"
            raise ValueError(
                f"vectors have dimension {given}, expected {self.dim} (model {self.model_id!r})"
            )
        if matrix.shape[0] != len(ids):
            raise ValueError(f"got {len(ids)} ids but {matrix.shape[0]} vectors")
        for position, memory_id in enumerate(ids):
            if not isinstance(memory_id, str) or not memory_id:
                raise ValueError(f"memory id at position {position} must be a non-empty str")
        if not ids:
            return
        last = {memory_id: row for row, memory_id in enumerate(ids)}
        rows = list(last.values())
        unique_ids = list(last)
        keys = [tuple(dict.fromkeys(facets[r])) for r in rows] if facets is not None else None
        matrix = normalize_rows(matrix[rows], what="vector")
        with self._lock:
            self._ensure_capacity(len(unique_ids))
            start = len(self._ids)
            labels = np.arange(start, start + len(unique_ids), dtype=np.int64)
            self._graph.add_items(matrix, labels, num_threads=self._threads())
            for memory_id in unique_ids:
                old = self._labels.get(memory_id)
                if old is not None:
                    self._delete_label(old)
            self._vectors[start : start + len(unique_ids)] = matrix
            if self._low is not None:
                self._low[start : start + len(unique_ids)] = _bf16(matrix)
            self._live[start : start + len(unique_ids)] = True
            self._ids.extend(unique_ids)
            for memory_id, label in zip(unique_ids, labels.tolist(), strict=True):
                self._labels[memory_id] = label
            self._add_facets(start, keys if keys is not None else [()] * len(unique_ids))
            self._maybe_compact()

    def _add_facets(self, start: int, keys: list[tuple[str, ...]]) -> None:
        """Record the facets of the labels ``start, start + 1, ...`` (just added)."""
        self._keys.extend(keys)
        facets, arrays = self._facets, self._facet_arrays
        for label, held in enumerate(keys, start):
            for key in held:
                arrays.pop(key, None)
                labels = facets.get(key)
                if labels is None:
                    facets[key] = {label}
                else:
                    labels.add(label)

    def remove(self, ids: Iterable[str]) -> int:
        """Remove memories; ids not present are ignored. Returns how many were removed."""
        removed = 0
        with self._lock:
            for memory_id in ids:
                label = self._labels.pop(memory_id, None)
                if label is not None:
                    self._delete_label(label)
                    removed += 1
            if removed:
                self._maybe_compact()
        return removed

    def _delete_label(self, label: int) -> None:
        memory_id = self._ids[label]
        if memory_id is not None and self._labels.get(memory_id) == label:
            del self._labels[memory_id]
        self._graph.mark_deleted(label)
        self._ids[label] = None
        for key in self._keys[label]:
            self._facet_arrays.pop(key, None)
            labels = self._facets.get(key)
            if labels is not None:
                labels.discard(label)
                if not labels:
                    del self._facets[key]
        self._keys[label] = ()
        self._live[label] = False
        # The row is cleared so a removed memory's vector does not outlive it in our
        # file; hnswlib keeps its copy in memory, and ``save`` blanks it in the graph file.
        self._vectors[label] = 0.0
        if self._low is not None:
            self._low[label] = 0.0
        self._deleted += 1

    def _ensure_capacity(self, extra: int) -> None:
        needed = len(self._ids) + extra
        if needed <= self._capacity:
            return
        new_capacity = max(needed, self._capacity + max(self.growth_chunk, self._capacity // 2))
        self._graph.resize_index(new_capacity)
        vectors = np.zeros((new_capacity, self.dim), dtype=np.float32)
        vectors[: len(self._ids)] = self._vectors[: len(self._ids)]
        live = np.zeros(new_capacity, dtype=bool)
        live[: len(self._ids)] = self._live[: len(self._ids)]
        self._vectors, self._live, self._capacity = vectors, live, new_capacity
        self._low = None

    def _maybe_compact(self) -> None:
        if self.compact_threshold is None or not self._ids:
            return
        if self._deleted > self.compact_threshold * len(self._ids):
            self.compact()

    def compact(self) -> None:
        """Rebuild the graph from the live vectors only, dropping deleted labels.

        Needed because hnswlib never frees a deleted label: its vector stays in memory
        and in the saved file, and searches keep walking through it. Live memories keep
        their relative order, so with ``num_threads=1`` the rebuilt graph is the same
        whatever the history of deletions was.
        """
        with self._lock:
            live_labels = np.flatnonzero(self._live[: len(self._ids)]).tolist()
            ids = [self._live_id(label) for label in live_labels]
            keys = [self._keys[label] for label in live_labels]
            vectors = self._vectors[live_labels].copy()
            capacity = max(len(ids) + self.growth_chunk, len(ids) * 5 // 4, 1)
            self._init_storage(capacity)
            if ids:
                labels = np.arange(len(ids), dtype=np.int64)
                self._graph.add_items(vectors, labels, num_threads=self._threads())
                self._vectors[: len(ids)] = vectors
                self._live[: len(ids)] = True
                kept: list[str | None] = [*ids]
                self._ids = kept
                self._labels = {memory_id: i for i, memory_id in enumerate(ids)}
                self._add_facets(0, keys)

    def _live_id(self, label: int) -> str:
        memory_id = self._ids[label]
        if memory_id is None:
            raise AssertionError(f"label {label} is deleted but was treated as live")
        return memory_id

    # -- reads ---------------------------------------------------------------------------

    def _query(self, vector: npt.ArrayLike) -> npt.NDArray[np.float32]:
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != self.dim:
            raise ValueError(
                f"query vector has dimension {query.shape[0]}, expected {self.dim} "
                f"(model {self.model_id!r})"
            )
        return unit_vector(query, what="query vector")

    @staticmethod
    def _check_k(k: int) -> None:
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")

    def _top(
        self,
        query: npt.NDArray[np.float32],
        labels: npt.NDArray[np.int64],
        k: int,
        preselect: bool = True,
    ) -> list[tuple[str, float]]:
        """Top-``k`` among ``labels`` (live labels only), best first, scored in float32
        (``preselect``: large sets first narrowed in bfloat16)."""
        if labels.size == 0:
            return []
        keep = max(k * PRESELECT_FACTOR, PRESELECT_KEEP)
        if preselect and labels.size >= PRESELECT_MIN and labels.size > keep:
            # Half the bytes to read: the best ``keep`` by a bfloat16 product, then those
            # scored exactly. The order returned is the exact one unless bfloat16's
            # rounding (about 1e-3 of a cosine) moved a true top-k memory below ``keep``.
            labels = labels[self._preselect(query, labels, keep)]
        if labels.size >= GATHER_MIN:
            return self._ordered(labels, self._scores(query, labels), k)
        return self._ordered(labels, self._vectors[labels] @ query, k)

    def _scores(
        self, query: npt.NDArray[np.float32], labels: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        """Scores of many ``labels`` by torch on one thread: their rows gathered, or every
        row through a slice when they are most of the index (a gather copies what it
        reads)."""
        import torch

        n_labels = len(self._ids)
        matrix, q = torch.from_numpy(self._vectors[:n_labels]), torch.from_numpy(query)
        with _torch_threads(torch, 1):
            if labels.size * 2 > n_labels:
                return torch.mv(matrix, q).numpy()[labels]
            rows = matrix.index_select(0, torch.from_numpy(labels))
            return torch.mv(rows, q).numpy()

    def _preselect(
        self, query: npt.NDArray[np.float32], labels: npt.NDArray[np.int64], keep: int
    ) -> npt.NDArray[np.int64]:
        """Positions in ``labels`` of the ``keep`` best by a bfloat16 product."""
        import torch

        with _torch_threads(torch, 1):
            if self._low is None:
                self._low = torch.zeros((self._capacity, self.dim), dtype=torch.bfloat16)
                self._low[: len(self._ids)] = _bf16(self._vectors[: len(self._ids)])
            rows = self._low.index_select(0, torch.from_numpy(labels))
            approx = torch.nn.functional.linear(_bf16(query)[None, :], rows)[0]
            return torch.topk(approx.float(), keep, sorted=False).indices.numpy()

    def _ordered(
        self, labels: npt.NDArray[np.int64], scores: npt.NDArray[np.float32], k: int
    ) -> list[tuple[str, float]]:
        k = min(k, labels.size)
        if k < labels.size:
            part = np.argpartition(-scores, k - 1)[:k]
        else:
            part = np.arange(labels.size)
        # Ties broken by label so that results are reproducible.
        order = part[np.lexsort((labels[part], -scores[part]))]
        return [(self._live_id(int(labels[i])), float(scores[i])) for i in order]

    def exact_search(
        self, vector: npt.ArrayLike, k: int, allowed_ids: Iterable[str] | None = None
    ) -> list[tuple[str, float]]:
        """Brute-force cosine search over all live vectors (or the allowed ones).

        The reference that approximate results are measured against; also the right
        method for small candidate sets.
        """
        self._check_k(k)
        query = self._query(vector)
        with self._lock:
            return self._top(query, self._candidate_labels(allowed_ids), k, preselect=False)

    def _candidate_labels(self, allowed_ids: Iterable[str] | None) -> npt.NDArray[np.int64]:
        """Sorted live labels of ``allowed_ids`` (all live labels for ``None``)."""
        if allowed_ids is None:
            return np.flatnonzero(self._live[: len(self._ids)]).astype(np.int64)
        if not isinstance(allowed_ids, set | frozenset):
            allowed_ids = dict.fromkeys(allowed_ids)  # distinct ids give distinct labels
        found = [label for label in map(self._labels.get, allowed_ids) if label is not None]
        return np.sort(np.asarray(found, dtype=np.int64))

    def search(
        self, vector: npt.ArrayLike, k: int, allowed_ids: Iterable[str] | None = None
    ) -> list[tuple[str, float]]:
        """Return up to ``k`` ``(memory_id, cosine similarity)`` pairs, best first.

        Small candidate sets are scored exactly with numpy: the whole index while it holds
        at most ``exact_limit`` vectors, or the memories of ``allowed_ids`` when there are
        at most ``exact_limit`` of them. A graph search followed by filtering loses recall
        precisely when a filter is selective, and scoring up to a couple of thousand rows
        is faster than the graph search would be.

        Larger candidate sets search the graph. With a filter, the graph is asked for
        enough neighbours that about ``2 * k`` allowed ones are expected among them
        (``k`` divided by the filter's share of the index, doubled), the allowed ones
        are kept, and if fewer than ``k`` survive the search falls back to exact scoring
        of the candidates.
        """
        if allowed_ids is not None:
            return self._search_among(vector, k, lambda: self._candidate_labels(allowed_ids))
        self._check_k(k)
        query = self._query(vector)
        with self._lock:
            live = len(self._labels)
            if live == 0:
                return []
            if live <= self.exact_limit:
                return self._top(query, self._candidate_labels(None), k)
            hits = self._graph_search(query, min(k, live), None)
            if hits is None:
                return self._top(query, self._candidate_labels(None), k)
            return hits

    def search_facets(
        self, vector: npt.ArrayLike, k: int, clauses: Sequence[Sequence[str]]
    ) -> list[tuple[str, float]]:
        """Like :meth:`search`, over the live vectors that hold, for every clause of
        ``clauses``, at least one of its facets (a conjunction of disjunctions; no clause:
        every vector; an empty clause: none)."""
        return self._search_among(vector, k, lambda: self._facet_labels(clauses))

    def _search_among(
        self, vector: npt.ArrayLike, k: int, candidates_of: Callable[[], npt.NDArray[np.int64]]
    ) -> list[tuple[str, float]]:
        """Top ``k`` among the labels ``candidates_of()`` returns (under the lock)."""
        self._check_k(k)
        query = self._query(vector)
        with self._lock:
            live = len(self._labels)
            if live == 0:
                return []
            candidates = candidates_of()
            if candidates.size == 0:
                return []
            return self._filtered(query, candidates, k, live)

    def _facet_labels(self, clauses: Sequence[Sequence[str]]) -> npt.NDArray[np.int64]:
        """Sorted live labels matching ``clauses`` (set operations in C, smallest first)."""
        if not clauses:
            return self._candidate_labels(None)
        groups: list[list[npt.NDArray[np.int64]]] = []
        for clause in clauses:
            parts = [self._facet_array(key) for key in dict.fromkeys(clause) if key in self._facets]
            if not parts:
                return np.empty(0, dtype=np.int64)
            groups.append(parts)
        groups.sort(key=lambda parts: sum(map(len, parts)))
        found: npt.NDArray[np.int64] | None = None
        for parts in groups:
            if len(parts) == 1:
                union = parts[0]
            else:  # a mask over the labels: linear, where a sorted union would sort
                mask = np.zeros(len(self._ids), dtype=bool)
                for part in parts:
                    mask[part] = True
                union = np.flatnonzero(mask)
            found = union if found is None else np.intersect1d(found, union, assume_unique=True)
            if not found.size:
                break
        assert found is not None
        return found

    def _facet_array(self, key: str) -> npt.NDArray[np.int64]:
        """The sorted live labels of facet ``key``, kept until the facet changes (so the
        filter of a namespace nobody writes to is not rebuilt per search)."""
        array = self._facet_arrays.get(key)
        if array is None:
            held = self._facets[key]
            array = np.fromiter(held, dtype=np.int64, count=len(held))
            array.sort()
            self._facet_arrays[key] = array
        return array

    def _filtered(
        self, query: npt.NDArray[np.float32], candidates: npt.NDArray[np.int64], k: int, live: int
    ) -> list[tuple[str, float]]:
        """Top ``k`` among ``candidates`` (sorted live labels): scored exactly while that
        is cheaper than a filtered graph search, else searched in the graph (falling back
        to exact scoring if too few allowed neighbours come back)."""
        if candidates.size <= max(self.exact_limit, self.filter_exact_limit):
            return self._top(query, candidates, k)
        wanted = min(k, int(candidates.size))
        fetch = min(live, math.ceil(wanted * live / candidates.size * 2) + 10)
        if fetch * 4 < live:
            allowed = np.zeros(len(self._ids), dtype=bool)
            allowed[candidates] = True
            hits = self._graph_search(query, fetch, allowed)
            if hits is not None and len(hits) >= wanted:
                return hits[:wanted]
        return self._top(query, candidates, k)

    def _graph_search(
        self,
        query: npt.NDArray[np.float32],
        k: int,
        allowed: npt.NDArray[np.bool_] | None,
    ) -> list[tuple[str, float]] | None:
        """hnswlib search for ``k`` neighbours, keeping live (and ``allowed``) labels.

        ``effective_ef`` is meant for small ``k``; a larger ``k`` searches with
        ``ef = 2 * k`` so deep result lists keep their recall. Returns None when hnswlib
        cannot return ``k`` results (it raises when deleted labels crowd the graph).
        """
        ef = max(self.effective_ef, 2 * k)
        if ef != self._graph.ef:
            self._graph.set_ef(ef)
        try:
            labels, distances = self._graph.knn_query(query, k=k, num_threads=1)
        except RuntimeError:
            return None
        hits = []
        for label, distance in zip(labels[0].tolist(), distances[0].tolist(), strict=True):
            memory_id = self._ids[label]
            if memory_id is not None and (allowed is None or allowed[label]):
                hits.append((memory_id, 1.0 - float(distance)))
        return hits

    # -- persistence ---------------------------------------------------------------------

    def save(self, directory: str | os.PathLike[str], offset: int) -> None:
        """Persist the index atomically as covering the log up to ``offset``.

        Files of a save get fresh names (``graph-<gen>.bin``, ``vectors-<gen>.npy``,
        ``ids-<gen>.json``) and are fsynced before ``manifest.json`` is replaced
        atomically to point at them; the previous generation is deleted only after that.
        A crash at any point leaves either the old or the new index loadable; files of
        other generations are deleted, so the directory belongs to the index. ``offset``
        is stored as given and returned by :meth:`load` (e.g. the next log offset to
        apply), so the caller resumes from it.
        """
        if not isinstance(offset, int) or isinstance(offset, bool):
            raise TypeError(f"offset must be an int log offset, got {offset!r}")
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        generation = uuid.uuid4().hex[:16]
        names = {
            "graph": f"graph-{generation}.bin",
            "vectors": f"vectors-{generation}.npy",
            "ids": f"ids-{generation}.json",
            "facets": f"facets-{generation}.json",
        }
        with self._lock:
            n_labels = len(self._ids)
            self._graph.save_index(str(root / names["graph"]))
            self._blank_deleted(root / names["graph"])
            with (root / names["vectors"]).open("wb") as handle:
                np.save(handle, self._vectors[:n_labels], allow_pickle=False)
            (root / names["ids"]).write_text(json.dumps(self._ids), encoding="utf-8")
            (root / names["facets"]).write_text(json.dumps(self._keys), encoding="utf-8")
            files: dict[str, Any] = {}
            for role, name in names.items():
                path = root / name
                fsync_file(path)
                files[role] = {
                    "name": name,
                    "bytes": path.stat().st_size,
                    "sha256": sha256_of(path),
                }
            manifest = {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "offset": offset,
                "dim": self.dim,
                "model_id": self.model_id,
                "space": "ip",
                "count": len(self._labels),
                "labels": n_labels,
                "deleted": self._deleted,
                "M": self.M,
                "ef_construction": self.ef_construction,
                "ef_search": self._ef_search,
                "files": files,
            }
            write_manifest(root, manifest, tag=generation)
            self.offset = offset
        keep = set(names.values()) | {MANIFEST_NAME}
        for path in root.iterdir():
            stale = path.name.startswith(
                ("graph-", "vectors-", "ids-", "facets-", f"{MANIFEST_NAME}.")
            )
            if stale and path.name not in keep:
                path.unlink(missing_ok=True)

    def _blank_deleted(self, path: Path) -> int:
        """Zero, in a graph file just saved, the vectors of every deleted label.

        hnswlib keeps a deleted element (its links stay waypoints of the graph) and saves
        its vector with it: the vector of an archived, revised or erased memory would
        outlive it on disk, and a vector reveals what its text was about. Each element of
        level 0 is laid out as links, vector, label (offsets in the file's header); the
        vector of every element whose label is no longer live is overwritten with zeros.
        Loaded again, such an element is still a waypoint, at inner product 0 with every
        query. Returns how many vectors were blanked.
        """
        dead = ~self._live[: len(self._ids)]
        if not dead.any():
            return 0
        with path.open("r+b") as handle:
            header = _HNSW_HEADER.unpack(handle.read(_HNSW_HEADER.size))
            count, per_element, label_at, data_at = header[2], header[3], header[4], header[5]
            level0 = np.frombuffer(handle.read(count * per_element), dtype=np.uint8)
            labels = level0.reshape(count, per_element)[:, label_at : label_at + 8].copy()
            labels = labels.view(np.uint64).reshape(count)
            zeros = bytes(label_at - data_at)
            blanked = 0
            for internal in np.flatnonzero(dead[labels.astype(np.int64)]).tolist():
                handle.seek(_HNSW_HEADER.size + internal * per_element + data_at)
                handle.write(zeros)
                blanked += 1
        return blanked

    @staticmethod
    def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
        """The saved manifest, or :class:`IndexUnusable` if it is missing or malformed."""
        path = Path(directory) / MANIFEST_NAME
        manifest = read_manifest(Path(directory), FORMAT, FORMAT_VERSION, "vector index")
        required = {
            "dim": int,
            "model_id": str,
            "count": int,
            "labels": int,
            "deleted": int,
            "M": int,
            "ef_construction": int,
            "files": dict,
        }
        for key, kind in required.items():
            if not isinstance(manifest.get(key), kind):
                raise IndexUnusable(
                    f"manifest field {key!r} is missing or not {kind.__name__}", path
                )
        if "ef_search" not in manifest or not isinstance(manifest["ef_search"], int | None):
            raise IndexUnusable("manifest field 'ef_search' is missing or not int or null", path)
        return manifest

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        dim: int,
        model_id: str,
        **options: Any,
    ) -> VectorIndex:
        """Load a saved index, verifying everything before hnswlib reads a byte.

        Raises :class:`IndexUnusable` (never crashes, never returns a wrong index) when
        the manifest is missing or malformed, was written for another ``dim`` or
        ``model_id``, or any file is missing, truncated or altered. ``options`` are
        constructor keywords (``num_threads``, ``compact_threshold``, ``ef_search``...);
        ``M`` and ``ef_construction`` come from the manifest. ``ef_search`` defaults to
        the saved value and is applied after hnswlib's load (which resets it to 10).
        """
        root = Path(directory)
        manifest = cls.read_manifest(root)
        if manifest["dim"] != dim:
            raise IndexUnusable(
                f"index holds vectors of dimension {manifest['dim']}, expected {dim}", root
            )
        if manifest["model_id"] != model_id:
            raise IndexUnusable(
                f"index was built with model {manifest['model_id']!r}, expected {model_id!r}",
                root,
            )
        paths: dict[str, Path] = {}
        for role in ("graph", "vectors", "ids", "facets"):
            entry = manifest["files"].get(role)
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise IndexUnusable(f"manifest lists no {role} file", root)
            path = root / Path(entry["name"]).name
            if not path.is_file():
                raise IndexUnusable(f"{role} file {path.name} is missing", root)
            size = path.stat().st_size
            if size != entry.get("bytes"):
                raise IndexUnusable(
                    f"{role} file {path.name} has {size} bytes, manifest says {entry.get('bytes')}",
                    root,
                )
            if sha256_of(path) != entry.get("sha256"):
                raise IndexUnusable(f"{role} file {path.name} fails its SHA-256 check", root)
            paths[role] = path

        n_labels = manifest["labels"]
        try:
            ids = json.loads(paths["ids"].read_text(encoding="utf-8"))
            keys = json.loads(paths["facets"].read_text(encoding="utf-8"))
            with paths["vectors"].open("rb") as handle:
                vectors = np.load(handle, allow_pickle=False)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise IndexUnusable(f"cannot read saved ids or vectors ({exc})", root) from None
        if not isinstance(ids, list) or len(ids) != n_labels:
            raise IndexUnusable(f"ids file does not hold {n_labels} labels", root)
        if (
            not isinstance(keys, list)
            or len(keys) != n_labels
            or not all(isinstance(held, list) for held in keys)
        ):
            raise IndexUnusable(f"facets file does not hold {n_labels} labels", root)
        if vectors.dtype != np.float32 or vectors.shape != (n_labels, dim):
            raise IndexUnusable(
                f"vectors file holds {vectors.dtype} {vectors.shape}, expected float32 "
                f"({n_labels}, {dim})",
                root,
            )
        cls._check_graph_header(paths["graph"], n_labels, dim, manifest["M"])

        options.setdefault("ef_search", manifest["ef_search"])  # None: sized with the index
        options["M"] = manifest["M"]
        options["ef_construction"] = manifest["ef_construction"]
        index = cls(dim, model_id, **options)
        capacity = max(n_labels + index.growth_chunk, 1)
        graph = hnswlib.Index(space="ip", dim=dim)
        try:
            graph.load_index(str(paths["graph"]), max_elements=capacity)
        except (RuntimeError, ValueError, MemoryError) as exc:
            raise IndexUnusable(f"hnswlib could not load the graph ({exc})", root) from None
        graph.set_num_threads(index._threads())
        if graph.get_current_count() != n_labels:
            raise IndexUnusable(
                f"graph holds {graph.get_current_count()} labels, manifest says {n_labels}", root
            )
        index._graph = graph
        index._capacity = capacity
        index._vectors = np.zeros((capacity, dim), dtype=np.float32)
        index._vectors[:n_labels] = vectors
        index._live = np.zeros(capacity, dtype=bool)
        index._ids = ids
        index._labels = {}
        for label, memory_id in enumerate(ids):
            if memory_id is not None:
                index._labels[memory_id] = label
                index._live[label] = True
        index._keys = []
        index._add_facets(
            0, [tuple(held) if ids[i] is not None else () for i, held in enumerate(keys)]
        )
        index._deleted = n_labels - len(index._labels)
        graph.set_ef(index.effective_ef)  # hnswlib's load reset it to 10
        if len(index._labels) != manifest["count"] or index._deleted != manifest["deleted"]:
            raise IndexUnusable("live and deleted counts disagree with the manifest", root)
        sample = np.flatnonzero(index._live)[:: max(1, len(index._labels) // 16)][:16]
        if sample.size and not np.allclose(graph.get_items(sample.tolist()), vectors[sample]):
            raise IndexUnusable("graph vectors disagree with the saved vector matrix", root)
        index.offset = manifest["offset"]
        return index

    @staticmethod
    def _check_graph_header(path: Path, n_labels: int, dim: int, M: int) -> None:
        """Cross-check hnswlib's own header so a graph of another shape is never loaded."""
        with path.open("rb") as handle:
            raw = handle.read(_HNSW_HEADER.size)
        if len(raw) != _HNSW_HEADER.size:
            raise IndexUnusable(f"graph file {path.name} is shorter than its header", path)
        fields = _HNSW_HEADER.unpack(raw)
        count, size_per_element, label_offset, offset_data = (
            fields[2],
            fields[3],
            fields[4],
            fields[5],
        )
        max_m0 = fields[9]
        if count != n_labels:
            raise IndexUnusable(f"graph header counts {count} labels, expected {n_labels}", path)
        if label_offset - offset_data != dim * 4 or size_per_element != label_offset + 8:
            raise IndexUnusable(
                f"graph header describes vectors of {(label_offset - offset_data) // 4} "
                f"dimensions, expected {dim}",
                path,
            )
        if max_m0 != 2 * M:
            raise IndexUnusable(f"graph header has maxM0={max_m0}, expected {2 * M}", path)
