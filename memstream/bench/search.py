"""``search``: recall, latency and overhead of semantic search, embedding and index build rates.

At scale 1.0 the store holds 100,000 memories: the labelled retrieval set padded with
realistic distractors (see :mod:`memstream.bench.search_data`), embedded with the real
all-MiniLM-L6-v2 through a durable cache kept outside the repository, so only the first
run pays for the embeddings. 1% of the memories carry the tag ``selective``; the queries
are the labelled questions (paraphrases of stored memories).

What is measured, each ``repeats`` times (medians headline, every run in the JSON):

- **projection and index build** (item 5): the store's log is written once (search indexes
  off), the store's own embedding cache is filled with the cached vectors under the
  store's content hashes, then the store is opened with its search indexes and no index
  on disk: the semantic projection rebuilds from DuckDB's current state with every vector
  a cache hit. Timed until the follower has caught up: memories (one create event each)
  projected per second; the model must not be called once (checked). The time spent in
  :meth:`VectorIndex.upsert` during that rebuild gives vectors/s into hnswlib as the store
  builds it; the baseline is raw ``hnswlib`` ``add_items`` of the same vectors with the
  same parameters, threads and chunks.
- **recall@10** (item 1): ``MemoryStore.search(vector=...)`` against exact brute force
  (numpy) over the same vectors; and with the 1%-selective filter, which must take the
  exact-over-candidates path (checked: no graph search runs for it).
- **latency** (item 2): p50/p95 of ``MemoryStore.search`` with the query text (embedding
  included), with a precomputed query vector, and with the filter.
- **overhead** (item 3): p95 of the vector search minus p95 of raw ``knn_query`` on the
  store's own hnswlib graph, same query, same ``k`` and ``ef`` the store asks for.
- **query embedding**: one question at a time, the store's query path
  (:meth:`TransformersEmbedder.embed_query`) against the path queries took before it
  (``embed([text])``: the batch path with a batch of one, the process's torch threads),
  interleaved question by question in the same run; the two vectors' cosine and largest
  difference per component (the query path may multiply in bfloat16: ``query_path``), and
  recall@10 of the labelled questions (the store's search and exact search, over the same
  stored vectors) with each path's query vectors. What the store adds to a text search
  is the text search's time less the query embedding's.
- **embedding throughput** (item 4): texts/s of memstream's :class:`TransformersEmbedder`
  (the batched path the store uses) against raw transformers (``AutoModel`` + tokenizer +
  mean pooling, same batch size, same texts), on texts embedded afresh (no cache); the two
  must agree row by row.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from memstream.projections.models import EMBEDDINGS_FILE, LazyEmbedder
from memstream.projections.vectors import VectorIndex
from memstream.schemas import events as ev
from memstream.sdk import MemoryStore, new_id

from .common import (
    BenchError,
    Reporter,
    Scratch,
    Stopwatch,
    clean_heap,
    expect_counts,
    rate,
    scaled,
    spread,
    store_counts,
)
from .search_data import Corpus, default_cache_dir, embedded_corpus

BASE_MEMORIES = 100_000
MIN_MEMORIES = 200
BASE_QUESTIONS = 500  # capped by the labelled set (220 questions)
MIN_QUESTIONS = 20
BASE_EMBED_TEXTS = 2_000
MIN_EMBED_TEXTS = 32
K = 10
NAMESPACES = 20
SELECTIVE_TAG = "selective"
SELECTIVE_SHARE = 0.01
#: A tag the ``reads`` suite gives 10% of the memories (a filter that is not selective).
EXTRA_TAG = "tenth"
APPEND_BATCH = 1_000
GOAL_RECALL = 0.98
GOAL_OVERHEAD_MS = 2.0
GOAL_EMBED_RATIO = 0.9
GOAL_QUERY_RATIO = 0.5  # the query embedding's p50 against the previous path's
GOAL_QUERY_RECALL_DELTA = 0.005


def _shown(path: Path) -> str:
    """``path`` with the home directory as ``~`` (results are published)."""
    try:
        return "~/" + str(path.expanduser().resolve().relative_to(Path.home().resolve()))
    except ValueError:
        return str(path)


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


# -- the store -------------------------------------------------------------------------------


def _write_store(
    path: Path, corpus: Corpus, selective: set[int], extra: set[int] | None = None
) -> tuple[list[str], dict]:
    """Append one create per memory (search indexes off); return the memory ids. The
    memories of ``extra`` also carry the tag :data:`EXTRA_TAG`."""
    ids: list[str] = []
    spaces = [f"user/u{i:02d}" for i in range(NAMESPACES)]
    store = MemoryStore.open(path, actor="bench", durability="os", semantic=False, batch_size=5_000)
    try:
        now = datetime.now(UTC)
        for start in range(0, len(corpus.texts), APPEND_BATCH):
            batch = []
            for i in range(start, min(start + APPEND_BATCH, len(corpus.texts))):
                mid = new_id()
                ids.append(mid)
                tags = ["bench", SELECTIVE_TAG] if i in selective else ["bench"]
                if extra is not None and i in extra:
                    tags.append(EXTRA_TAG)
                batch.append(
                    ev.Event(
                        event_id=new_id(), type="create", schema_version=ev.Create.VERSION,
                        namespace=spaces[i % NAMESPACES], memory_id=mid, occurred_at=now,
                        actor="bench", payload=ev.Create(text=corpus.texts[i], tags=tags),
                    )
                )  # fmt: skip
            store.append(batch, raise_on_reject=True)
        counts = expect_counts(
            store_counts(store), events=len(ids), creates=len(ids), what="search (store)"
        )
    finally:
        store.close()
    return ids, counts


def _seed_store_cache(
    path: Path, ids: list[str], vectors: npt.NDArray[np.float32], model_id: str
) -> int:
    """Put the cached vectors into the store's own cache under its (keyed) content hashes."""
    from memstream.projections.embedding import EmbeddingCache

    store = MemoryStore.open(path, actor="bench", durability="os", semantic=False)
    try:
        rows = store.runtime.duck.query("SELECT memory_id, content_hash FROM versions")
    finally:
        store.close()
    row_of = {m: i for i, m in enumerate(ids)}
    if len(rows) != len(ids) or any(r["memory_id"] not in row_of for r in rows):
        raise BenchError(f"search: the store holds {len(rows)} versions, {len(ids)} were sent")
    cache = EmbeddingCache(path / EMBEDDINGS_FILE)
    try:
        for start in range(0, len(rows), 10_000):
            chunk = rows[start : start + 10_000]
            cache.put_many(
                model_id, [(r["content_hash"], vectors[row_of[r["memory_id"]]]) for r in chunk]
            )
            cache.link([(r["memory_id"], r["content_hash"]) for r in chunk])
        return cache.count(model_id)
    finally:
        cache.close()


class _UpsertTimer:
    """Times :meth:`VectorIndex.upsert` (the hnswlib inserts of a rebuild) while active."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.vectors = 0
        self._original = VectorIndex.upsert

    def __enter__(self) -> _UpsertTimer:
        original, timer = self._original, self

        def upsert(index: VectorIndex, ids: Any, vectors: Any, facets: Any = None) -> None:
            t = time.perf_counter()
            try:
                original(index, ids, vectors, facets)
            finally:
                timer.seconds += time.perf_counter() - t
                timer.vectors += len(ids)

        VectorIndex.upsert = upsert  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        VectorIndex.upsert = self._original  # type: ignore[method-assign]


def _rebuild(
    path: Path, reporter: Reporter, model: LazyEmbedder, n: int
) -> tuple[dict[str, Any], MemoryStore]:
    """Open the store with no semantic index on disk: it rebuilds from cached vectors."""
    shutil.rmtree(path / "state" / "semantic", ignore_errors=True)
    with clean_heap(), _UpsertTimer() as upserts, Stopwatch() as sw:
        store = MemoryStore.open(
            path, actor="bench", durability="os", semantic=True, embedder=model,
            progress=reporter.factory("search: semantic rebuild"),
        )  # fmt: skip
        store.flush()
    proj = store.semantic
    assert proj is not None and proj.vectors is not None
    run = {
        "seconds": sw.seconds,
        "events_per_s": rate(n, sw.seconds),
        "index_upsert_seconds": upserts.seconds,
        "index_vectors": upserts.vectors,
        "index_vectors_per_s": rate(upserts.vectors, upserts.seconds),
        "rebuild_reason": proj.rebuild_reason,
        "indexed": len(proj.vectors),
        "model_calls": proj.embedder.model_calls,
        "texts_embedded": proj.embedder.texts_embedded,
        "cache_hits": proj.embedder.cache_hits,
    }
    wrong = []
    if run["indexed"] != n or upserts.vectors != n:
        wrong.append(f"{run['indexed']} vectors indexed ({upserts.vectors} upserted), want {n}")
    if run["model_calls"] or run["texts_embedded"]:
        wrong.append(f"the model ran {run['model_calls']} times with every vector cached")
    if run["cache_hits"] != n:
        wrong.append(f"{run['cache_hits']} cache hits, want {n}")
    if proj.problems:
        wrong.append(
            f"{len(proj.problems)} memories not indexed: {next(iter(proj.problems.values()))}"
        )
    if wrong:
        store.close()
        raise BenchError("search (rebuild): " + "; ".join(wrong))
    return run, store


def _raw_build(vectors: npt.NDArray[np.float32], like: VectorIndex, chunk: int) -> dict[str, Any]:
    """Raw hnswlib: same parameters, threads and chunks as the store's index."""
    import hnswlib

    with clean_heap(), Stopwatch() as sw:
        graph = hnswlib.Index(space="ip", dim=vectors.shape[1])
        graph.init_index(
            max_elements=vectors.shape[0], M=like.M, ef_construction=like.ef_construction,
            random_seed=like.seed,
        )  # fmt: skip
        threads = like._threads()
        graph.set_num_threads(threads)
        for start in range(0, vectors.shape[0], chunk):
            part = vectors[start : start + chunk]
            graph.add_items(part, np.arange(start, start + len(part)), num_threads=threads)
    if graph.get_current_count() != vectors.shape[0]:
        raise BenchError("search (raw hnswlib): not every vector was added")
    return {"seconds": sw.seconds, "vectors_per_s": rate(vectors.shape[0], sw.seconds)}


# -- queries ---------------------------------------------------------------------------------


class _GraphCounter:
    """Counts graph searches of one VectorIndex (to tell the ANN path from the exact one)."""

    def __init__(self, index: VectorIndex) -> None:
        self.index, self.calls = index, 0
        original = index._graph_search

        def counted(*args: Any, **kw: Any) -> Any:
            self.calls += 1
            return original(*args, **kw)

        index._graph_search = counted  # type: ignore[method-assign]


def _exact_top(matrix: npt.NDArray[np.float32], q: npt.NDArray[np.float32], k: int) -> list[int]:
    scores = matrix @ q
    k = min(k, scores.shape[0])
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.lexsort((part, -scores[part]))].tolist()


def _recall(
    store: MemoryStore,
    ids: list[str],
    vectors: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
    selective: list[int],
    counter: _GraphCounter,
) -> dict[str, Any]:
    sel = np.asarray(selective, dtype=np.int64)
    sel_matrix = vectors[sel]
    overlap, overlap_f, graph_calls, graph_calls_f = [], [], 0, 0
    for q in queries:
        want = {ids[i] for i in _exact_top(vectors, q, K)}
        before = counter.calls
        got = [h.memory.memory_id for h in store.search(vector=q.tolist(), k=K)]
        graph_calls += counter.calls - before
        overlap.append(len(want & set(got)) / len(want))
        want_f = {ids[int(sel[i])] for i in _exact_top(sel_matrix, q, K)}
        before = counter.calls
        got_f = [
            h.memory.memory_id
            for h in store.search(vector=q.tolist(), k=K, tags_any=[SELECTIVE_TAG])
        ]
        graph_calls_f += counter.calls - before
        overlap_f.append(len(want_f & set(got_f)) / len(want_f))
    if graph_calls_f:
        raise BenchError(
            f"search: the {SELECTIVE_SHARE:.0%} filter ran {graph_calls_f} graph searches; it "
            "must score its candidates exactly"
        )
    return {
        "recall_at_10": float(np.mean(overlap)),
        "recall_at_10_min": float(np.min(overlap)),
        "filtered_recall_at_10": float(np.mean(overlap_f)),
        "filtered_recall_at_10_min": float(np.min(overlap_f)),
        "graph_searches": graph_calls,
        "filtered_graph_searches": graph_calls_f,
        "queries": len(queries),
    }


def _labelled_recall(
    store: MemoryStore,
    corpus: Corpus,
    ids: list[str],
    vectors: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
) -> dict[str, Any]:
    """Share of questions whose answer is in the top 1/5/10: the store vs exact search."""
    row_of = {mid: i for i, mid in enumerate(corpus.ids)}
    hits = {"store": dict.fromkeys((1, 5, 10), 0), "exact": dict.fromkeys((1, 5, 10), 0)}
    for q, labelled in zip(queries, corpus.questions, strict=True):
        answer = ids[row_of[labelled.answer_id]]
        ranked = {
            "store": [h.memory.memory_id for h in store.search(vector=q.tolist(), k=10)],
            "exact": [ids[i] for i in _exact_top(vectors, q, 10)],
        }
        for how, got in ranked.items():
            for k in (1, 5, 10):
                hits[how][k] += answer in got[:k]
    n = len(corpus.questions)
    return {how: {f"at_{k}": v / n for k, v in h.items()} for how, h in hits.items()}


def _latency(
    store: MemoryStore,
    corpus: Corpus,
    queries: npt.NDArray[np.float32],
    graph: Any,
    depth: int,
    ef: int,
) -> dict[str, Any]:
    """Every path timed per query. The query-vector search and raw ``knn_query`` run back to
    back, in alternating order, in a pass of their own: the text searches run torch, whose
    worker threads keep spinning for a while after a forward pass, and whatever ran right
    after one would pay for it."""
    times: dict[str, list[float]] = {
        k: [] for k in ("text", "vector", "filtered", "raw_knn", "raw_knn_k10")
    }
    clock = time.perf_counter

    def timed(name: str, fn: Any, *args: Any, **kw: Any) -> None:
        t = clock()
        fn(*args, **kw)
        times[name].append((clock() - t) * 1e3)

    for labelled in corpus.questions:
        timed("text", store.search, labelled.question, k=K)
    for i, q in enumerate(queries):
        vec = q.tolist()
        pair = [
            ("vector", store.search, (), {"vector": vec, "k": K}),
            ("raw_knn", graph.knn_query, (q,), {"k": depth, "num_threads": 1}),
        ]
        for name, fn, args, kw in pair if i % 2 == 0 else pair[::-1]:
            graph.set_ef(ef)  # what the store's search uses (same graph, same list)
            timed(name, fn, *args, **kw)
        timed("raw_knn_k10", graph.knn_query, q, k=K, num_threads=1)
        timed("filtered", store.search, vector=vec, k=K, tags_any=[SELECTIVE_TAG])
    out: dict[str, Any] = {}
    for name, values in times.items():
        out[name] = {"p50_ms": _pct(values, 50), "p95_ms": _pct(values, 95), "n": len(values)}
    out["overhead_p95_ms"] = out["vector"]["p95_ms"] - out["raw_knn"]["p95_ms"]
    out["overhead_p50_ms"] = out["vector"]["p50_ms"] - out["raw_knn"]["p50_ms"]
    return out


# -- the query embedding ---------------------------------------------------------------------


def _hits_at_10(
    store: MemoryStore,
    corpus: Corpus,
    ids: list[str],
    vectors: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
) -> dict[str, float]:
    row_of = {mid: i for i, mid in enumerate(corpus.ids)}
    hits = {"store": 0, "exact": 0}
    for q, labelled in zip(queries, corpus.questions, strict=True):
        answer = ids[row_of[labelled.answer_id]]
        hits["store"] += answer in {
            h.memory.memory_id for h in store.search(vector=q.tolist(), k=K)
        }
        hits["exact"] += answer in {ids[i] for i in _exact_top(vectors, q, K)}
    return {how: n / len(corpus.questions) for how, n in hits.items()}


def _query_embedding(
    store: MemoryStore,
    model: LazyEmbedder,
    corpus: Corpus,
    ids: list[str],
    vectors: npt.NDArray[np.float32],
    repeats: int,
    reporter: Reporter,
) -> dict[str, Any]:
    """The query embedding alone, previous path against the store's, same questions and run.

    The two run back to back for each question, in alternating order; the text search runs
    after them (it embeds with the store's path, then searches), so what the store adds is
    its time less the query embedding's.
    """
    import torch

    ours = model.model()
    questions = [q.question for q in corpus.questions]
    paths = {"previous": lambda t: ours.embed([t])[0], "query": ours.embed_query}
    for text in questions[: min(10, len(questions))]:
        for fn in paths.values():
            fn(text)
    clock = time.perf_counter
    runs = []
    with reporter.task("search: query embedding", repeats) as tick:
        for _ in range(repeats):
            times: dict[str, list[float]] = {"previous": [], "query": [], "text_search": []}
            with clean_heap():
                for i, text in enumerate(questions):
                    for name in ("previous", "query") if i % 2 == 0 else ("query", "previous"):
                        t = clock()
                        paths[name](text)
                        times[name].append((clock() - t) * 1e3)
                    t = clock()
                    store.search(text, k=K)
                    times["text_search"].append((clock() - t) * 1e3)
            run_ = {
                name: {"p50_ms": _pct(v, 50), "p95_ms": _pct(v, 95), "n": len(v)}
                for name, v in times.items()
            }
            run_["ratio_p50"] = run_["query"]["p50_ms"] / run_["previous"]["p50_ms"]
            run_["ratio_p95"] = run_["query"]["p95_ms"] / run_["previous"]["p95_ms"]
            run_["store_adds_p50_ms"] = run_["text_search"]["p50_ms"] - run_["query"]["p50_ms"]
            runs.append(run_)
            tick(1)
    previous = np.stack([paths["previous"](t) for t in questions])
    query = np.stack([paths["query"](t) for t in questions])
    cosine = np.sum(previous * query, axis=1)
    recall = {
        name: _hits_at_10(store, corpus, ids, vectors, vecs)
        for name, vecs in (("previous", previous), ("query", query))
    }
    delta = max(abs(recall["query"][how] - recall["previous"][how]) for how in ("store", "exact"))
    if cosine.min() < 0.99:
        raise BenchError(
            f"search (query embedding): the query path's vectors differ from the previous "
            f"path's (lowest cosine {cosine.min():.4f})"
        )

    def med(path_: str, key: str) -> dict[str, float]:
        return spread([r[path_][key] for r in runs])

    return {
        "questions": len(questions),
        "mean_words": float(np.mean([len(t.split()) for t in questions])),
        "query_path": ours.query_path,
        "query_precision": ours.query_precision,
        "query_threads": ours.query_threads,
        "previous_threads": torch.get_num_threads(),
        "previous_ms": {"p50": med("previous", "p50_ms"), "p95": med("previous", "p95_ms")},
        "query_ms": {"p50": med("query", "p50_ms"), "p95": med("query", "p95_ms")},
        "text_search_ms": {
            "p50": med("text_search", "p50_ms"),
            "p95": med("text_search", "p95_ms"),
        },
        "store_adds_p50_ms": spread([r["store_adds_p50_ms"] for r in runs]),
        "ratio_p50": spread([r["ratio_p50"] for r in runs]),
        "ratio_p95": spread([r["ratio_p95"] for r in runs]),
        "lowest_cosine": float(cosine.min()),
        "max_abs_difference": float(np.abs(previous - query).max()),
        "recall_at_10": recall,
        "recall_at_10_delta": delta,
        "runs": runs,
    }


# -- embedding throughput --------------------------------------------------------------------


class _RawTransformers:
    """Plain transformers: tokenizer + AutoModel + mean pooling, batches in input order."""

    def __init__(self, path: Path, batch_size: int, max_length: int) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
        self.batch_size, self.max_length = batch_size, max_length

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        torch = self.torch
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(
                    texts[start : start + self.batch_size], padding=True, truncation=True,
                    max_length=self.max_length, return_tensors="pt",
                )  # fmt: skip
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, p=2.0, dim=1).numpy())
        return np.concatenate(out)


def _embedding(
    model: LazyEmbedder, texts: list[str], repeats: int, reporter: Reporter
) -> dict[str, Any]:
    ours = model.model()
    raw = _RawTransformers(ours.path, ours.batch_size, ours.max_length)
    warm = texts[: min(len(texts), ours.batch_size)]
    ours.embed(warm), raw.embed(warm)
    runs = []
    with reporter.task("search: embedding throughput", 2 * repeats) as tick:
        for r in range(repeats):
            timings = {}
            order = ("memstream", "raw") if r % 2 == 0 else ("raw", "memstream")
            for name in order:
                fn = ours.embed if name == "memstream" else raw.embed
                with clean_heap(), Stopwatch() as sw:
                    result = fn(texts)
                timings[name] = (sw.seconds, result)
                tick(1)
            a, b = timings["memstream"][1], timings["raw"][1]
            agreement = float(np.min(np.sum(a * b, axis=1)))
            if agreement < 0.999:
                raise BenchError(
                    f"search (embedding): memstream's vectors differ from raw transformers "
                    f"(lowest cosine {agreement:.4f})"
                )
            runs.append(
                {
                    "memstream_texts_per_s": rate(len(texts), timings["memstream"][0]),
                    "raw_texts_per_s": rate(len(texts), timings["raw"][0]),
                    "lowest_cosine_agreement": agreement,
                }
            )
    ours_rate = spread([r["memstream_texts_per_s"] for r in runs])
    raw_rate = spread([r["raw_texts_per_s"] for r in runs])
    import torch

    return {
        "texts": len(texts),
        "batch_size": ours.batch_size,
        "max_length": ours.max_length,
        "torch_threads": torch.get_num_threads(),
        "memstream_texts_per_s": ours_rate,
        "raw_texts_per_s": raw_rate,
        "ratio": ours_rate["median"] / raw_rate["median"],
        "runs": runs,
    }


# -- the suite -------------------------------------------------------------------------------


def run(
    scratch: Scratch,
    reporter: Reporter,
    scale: float,
    repeats: int,
    seed: int,
    *,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    n = scaled(BASE_MEMORIES, scale, MIN_MEMORIES)
    n_questions = scaled(BASE_QUESTIONS, scale, MIN_QUESTIONS)
    n_embed = scaled(BASE_EMBED_TEXTS, scale, MIN_EMBED_TEXTS)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    model = LazyEmbedder()

    got = embedded_corpus("search", n, seed, n_questions, model, cache_dir, reporter)
    corpus, questions, vectors, queries = got.corpus, got.questions, got.vectors, got.queries
    embedded_now = got.embedded_now

    rng = random.Random(f"selective:{seed}")
    selective = sorted(rng.sample(range(n), max(1, round(n * SELECTIVE_SHARE))))
    path = scratch.new("store")
    with Stopwatch() as write_sw:
        ids, counts = _write_store(path, corpus, set(selective))
        seeded = _seed_store_cache(path, ids, vectors, model.model_id)
    if seeded != n:
        raise BenchError(f"search: the store's cache holds {seeded} vectors, want {n}")

    builds: list[dict[str, Any]] = []
    store: MemoryStore | None = None
    try:
        for _ in range(repeats):
            if store is not None:
                store.close()
            run_, store = _rebuild(path, reporter, model, n)
            assert store.semantic is not None and store.semantic.vectors is not None
            index = store.semantic.vectors
            raw = _raw_build(vectors, index, 2_048)
            run_["raw_hnswlib"] = raw
            run_["index_ratio"] = run_["index_vectors_per_s"] / raw["vectors_per_s"]
            builds.append(run_)
        assert store is not None and store.semantic is not None
        index = store.semantic.vectors
        assert index is not None
        # Below the exact limit the whole index is scored exactly; at small scales lower
        # it so that unfiltered queries still take the graph (at scale 1.0 it is unchanged).
        index.exact_limit = min(index.exact_limit, max(len(selective), n // 10))
        counter = _GraphCounter(index)
        depth = max(5 * K, 50) + 10  # what the search path asks the graph for
        ef = max(index.effective_ef, 2 * depth)  # and the list it searches with
        store.search(questions[0], k=K)  # loads the model for query embedding
        recall = _recall(store, ids, vectors, queries, selective, counter)
        if n > index.exact_limit and recall["graph_searches"] < len(queries):
            raise BenchError("search: unfiltered queries did not search the hnswlib graph")
        labelled = _labelled_recall(store, corpus, ids, vectors, queries)
        latencies = []
        with reporter.task("search: latency", repeats) as tick:
            for _ in range(repeats):
                with clean_heap():
                    latencies.append(_latency(store, corpus, queries, index._graph, depth, ef))
                tick(1)
        query_embedding = _query_embedding(store, model, corpus, ids, vectors, repeats, reporter)
        final_counts = store_counts(store)
    finally:
        if store is not None:
            store.close()
    embedding = _embedding(model, corpus.texts[-n_embed:], repeats, reporter)

    def med(path_: str, key: str) -> dict[str, float]:
        return spread([lat[path_][key] for lat in latencies])

    latency = {
        p: {"p50_ms": med(p, "p50_ms"), "p95_ms": med(p, "p95_ms")}
        for p in ("text", "vector", "filtered", "raw_knn", "raw_knn_k10")
    }
    overhead = spread([lat["overhead_p95_ms"] for lat in latencies])
    index_rate = spread([b["index_vectors_per_s"] for b in builds])
    raw_rate = spread([b["raw_hnswlib"]["vectors_per_s"] for b in builds])
    events_rate = spread([b["events_per_s"] for b in builds])
    results = {
        "recall": recall,
        "labelled_recall": labelled,
        "latency_ms": latency,
        "overhead_p95_ms": overhead,
        "latency_runs": latencies,
        "embedding": embedding,
        "query_embedding": query_embedding,
        "index_build": {
            "store_vectors_per_s": index_rate,
            "raw_hnswlib_vectors_per_s": raw_rate,
            "ratio": index_rate["median"] / raw_rate["median"],
        },
        "projection": {
            "events_per_s": events_rate,
            "seconds": spread([b["seconds"] for b in builds]),
            "model_calls": sum(b["model_calls"] for b in builds),
        },
        "builds": builds,
        "setup": {
            "corpus_vectors_embedded_this_run": embedded_now,
            "embedding_seconds_this_run": got.embed_seconds,
            "store_write_seconds": write_sw.seconds,
            "counts": counts,
            "counts_after": {k: v for k, v in final_counts.items() if k != "digest"},
        },
    }
    goals = {
        "recall_at_10": GOAL_RECALL,
        "filtered_recall_at_10": GOAL_RECALL,
        "overhead_p95_ms": GOAL_OVERHEAD_MS,
        "embedding_ratio": GOAL_EMBED_RATIO,
        "query_embedding_ratio": GOAL_QUERY_RATIO,
        "query_recall_delta": GOAL_QUERY_RECALL_DELTA,
    }
    results["meets"] = {
        "recall_at_10": recall["recall_at_10"] >= GOAL_RECALL,
        "filtered_recall_at_10": recall["filtered_recall_at_10"] >= GOAL_RECALL,
        "overhead_p95_ms": overhead["median"] <= GOAL_OVERHEAD_MS,
        "embedding_ratio": embedding["ratio"] >= GOAL_EMBED_RATIO,
        "query_embedding_ratio": query_embedding["ratio_p50"]["median"] <= GOAL_QUERY_RATIO,
        "query_recall_delta": query_embedding["recall_at_10_delta"] <= GOAL_QUERY_RECALL_DELTA,
    }
    return {
        "parameters": {
            "memories": n,
            "labelled_memories": corpus.labelled,
            "questions": len(corpus.questions),
            "k": K,
            "search_depth": depth,
            "selective_tag": SELECTIVE_TAG,
            "selective_memories": len(selective),
            "namespaces": NAMESPACES,
            "embedding_texts": n_embed,
            "model_id": model.model_id,
            "dim": model.dim,
            "cache_dir": _shown(cache_dir),
            "index": {
                "M": index.M,
                "ef_construction": index.ef_construction,
                "ef_search": index.ef_search,
                "effective_ef": ef,
                "exact_limit": index.exact_limit,
                "threads": index._threads(),
                "chunk": 2_048,
            },
            "cpu_threads": os.cpu_count(),
            "repeats": repeats,
        },
        "goals": goals,
        "results": results,
    }
