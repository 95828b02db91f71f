"""``reads``: reads of the current state from the in-memory view, against DuckDB's.

Two stores, both built in the run:

1. **get and history** (no model): ``memories`` creates in 20 namespaces, a fifth of them
   revised once. Timed per call, each ``repeats`` times: ``MemoryStore.get`` and
   ``history`` of random memories through the SDK, answered by the current-memory view
   (:mod:`memstream.projections.views`); the baseline is the same SDK calls on the DuckDB
   path (the backend with its view detached), same store, same ids, same run. Over HTTP
   (``memstream serve``'s app under uvicorn on a local socket, an ``httpx`` client):
   the round trip of ``GET /v1/memories/{id}`` against the server's own time for the same
   requests (an ASGI wrapper around the app), and the same on the DuckDB path. Also the
   view's load time from DuckDB and its memory (``tracemalloc``, bytes per memory).
   Before timing, 300 sampled memories' views must equal the DuckDB reads.
2. **filtered search** (the ``search`` suite's corpus and cached MiniLM vectors): the
   same memories with a tag on 10% of them. For each labelled question: the query's
   embedding alone, the search with the text (embedding included), and the search with the
   query vector, which is what the store adds; for filters on 1 namespace (5% of the
   memories), 3 namespaces (15%) and the 10% tag, candidates selected inside the vector
   index by facets (:mod:`memstream.projections.facets`) against the DuckDB candidate
   query (the baseline, same run: the view detached, and a filter on a time every memory
   passes, which takes the query path), and recall@10 against exact numpy over the
   filter's members.
"""

from __future__ import annotations

import random
import threading
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from memstream.projections.models import LazyEmbedder
from memstream.projections.processor import ProcessorContext
from memstream.projections.views import MemoryViews
from memstream.schemas import events as ev
from memstream.sdk import MemoryStore, new_id

from . import search as sb
from .common import BenchError, Reporter, Scratch, Stopwatch, clean_heap, scaled, spread
from .search_data import default_cache_dir, embedded_corpus

BASE_MEMORIES = 100_000
MIN_MEMORIES = 1_000
NAMESPACES = 20
REVISED_SHARE = 0.2
SAMPLE = 2_000
CHECKED = 300  # of the sampled memories, compared with the DuckDB reads before timing
VIEW_CALLS = 20_000
DUCK_CALLS = 400
HTTP_CALLS = 2_000
HTTP_DUCK_CALLS = 300
BASE_SEARCH_MEMORIES = 100_000
MIN_SEARCH_MEMORIES = 500
GOAL_GET_MS = 0.015
GOAL_HISTORY_MS = 0.2
GOAL_HTTP_GAP_MS = 1.0
GOAL_FILTER_ADDED_MS = 2.0
GOAL_RECALL = 0.98
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FILTERS = {
    "namespace_1": {"namespaces": ["user/u00"]},
    "namespaces_3": {"namespaces": ["user/u00", "user/u01", "user/u02"]},
    "tag_10pct": {"tags_any": [sb.EXTRA_TAG]},
}


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def _summary(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": _pct(ms, 50), "p95_ms": _pct(ms, 95), "n": len(ms)}


def _timed(fn: Any, args: list[Any], calls: int) -> list[float]:
    clock = time.perf_counter
    out = []
    n = len(args)
    for i in range(calls):
        a = args[i % n]
        t = clock()
        fn(a)
        out.append((clock() - t) * 1e3)
    return out


# -- get and history -------------------------------------------------------------------------


def _write(path: Path, n: int, rng: random.Random) -> list[str]:
    store = MemoryStore.open(path, actor="bench", durability="os", semantic=False)
    ids: list[str] = []
    try:
        now = datetime.now(UTC)
        for start in range(0, n, 1_000):
            batch = []
            for i in range(start, min(n, start + 1_000)):
                mid = new_id()
                ids.append(mid)
                payload = ev.Create(
                    text=f"Memory {i}: the user mentioned that their favourite tea is "
                    f"variety {rng.randint(0, 10_000)}, brewed for {rng.randint(1, 6)} minutes.",
                    tags=["bench", f"t{i % 7}"],
                    metadata={"source": "chat", "turn": i},
                )
                batch.append(
                    ev.Event(
                        event_id=new_id(), type="create", schema_version=ev.Create.VERSION,
                        namespace=f"user/u{i % NAMESPACES:02d}", memory_id=mid,
                        occurred_at=now, actor="bench", payload=payload,
                    )
                )  # fmt: skip
            store.append(batch, raise_on_reject=True)
        revised = rng.sample(range(n), round(n * REVISED_SHARE))
        for start in range(0, len(revised), 1_000):
            batch = [
                store.event("revise", f"user/u{i % NAMESPACES:02d}", ids[i],
                            {"text": "revised: the user switched to green tea"})
                for i in revised[start : start + 1_000]
            ]  # fmt: skip
            store.append(batch, raise_on_reject=True)
        store.flush()
    finally:
        store.close()
    return ids


def _view_memory(store: MemoryStore) -> dict[str, Any]:
    """A fresh view loaded from the store's DuckDB: seconds, and bytes it holds."""
    duck = store.runtime.duck
    with clean_heap():
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            view = MemoryViews()
            with Stopwatch() as sw:
                view.start(ProcessorContext(duck, store.runtime.projected_offset))
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    n = len(view)
    view.close()
    return {"memories": n, "load_seconds": sw.seconds, "bytes": held, "bytes_per_memory": held / n}


class _Timed:
    """ASGI wrapper: the server's own time per request (request in, response sent)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.ms: list[float] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t = time.perf_counter()
        await self.app(scope, receive, send)
        self.ms.append((time.perf_counter() - t) * 1e3)


def _http(store: MemoryStore, sample: list[str]) -> dict[str, Any]:
    import httpx
    import uvicorn

    from memstream.http.app import create_app
    from memstream.server import SignalFreeServer, bind_socket

    timed = _Timed(create_app(store))
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = SignalFreeServer(uvicorn.Config(timed, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    out: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline:
                raise BenchError("reads: the HTTP server did not start")
            time.sleep(0.01)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:

            def get(mid: str) -> None:
                r = client.get(f"/v1/memories/{mid}")
                if r.status_code != 200:
                    raise BenchError(f"reads: GET /v1/memories/{mid} answered {r.status_code}")

            _timed(get, sample, 200)  # warm up: connection, threads
            for name, calls, views in (
                ("view", HTTP_CALLS, store.backend.views),
                ("duckdb", HTTP_DUCK_CALLS, None),
            ):
                kept = store.backend.views
                store.backend.views = views
                timed.ms.clear()
                try:
                    with clean_heap():
                        rt = _timed(get, sample, calls)
                finally:
                    store.backend.views = kept
                server_ms = list(timed.ms)
                out[name] = {
                    "round_trip": _summary(rt),
                    "server": _summary(server_ms),
                    "gap_p50_ms": _pct(rt, 50) - _pct(server_ms, 50),
                }
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
    return out


def _get_history(
    scratch: Scratch, reporter: Reporter, n: int, repeats: int, seed: int
) -> dict[str, Any]:
    rng = random.Random(f"reads:{seed}")
    path = scratch.new("reads")
    reporter.note(f"reads: writing {n:,} memories")
    ids = _write(path, n, rng)
    sample = rng.sample(ids, min(SAMPLE, n))
    runs = []
    with MemoryStore.open(path, actor="bench", semantic=False) as store:
        store.flush()
        views = store.views
        assert views is not None
        if not views.ready or len(views) != n:
            raise BenchError(f"reads: the view holds {len(views)} memories, want {n}")
        backend = store.backend
        backend.views = None
        checked = sample[:CHECKED]
        duck = {m: (store.get(m), store.history(m)) for m in checked}
        backend.views = views
        wrong = [m for m in checked if (store.get(m), store.history(m)) != duck[m]]
        if wrong:
            raise BenchError(f"reads: the view differs from DuckDB for {len(wrong)} memories")
        memory = _view_memory(store)
        with reporter.task("reads: get and history", repeats) as tick:
            for _ in range(repeats):
                run: dict[str, Any] = {}
                with clean_heap():
                    run["get_view"] = _summary(_timed(store.get, sample, VIEW_CALLS))
                    run["history_view"] = _summary(_timed(store.history, sample, VIEW_CALLS))
                backend.views = None
                try:
                    with clean_heap():
                        run["get_duckdb"] = _summary(_timed(store.get, sample, DUCK_CALLS))
                        run["history_duckdb"] = _summary(_timed(store.history, sample, DUCK_CALLS))
                finally:
                    backend.views = views
                run["http"] = _http(store, sample)
                runs.append(run)
                tick(1)

    def med(*path: str) -> dict[str, float]:
        vals = []
        for r in runs:
            d: Any = r
            for k in path:
                d = d[k]
            vals.append(d)
        return spread(vals)

    return {
        "memories": n,
        "view_memory": memory,
        "runs": runs,
        "get_view_p50_ms": med("get_view", "p50_ms"),
        "get_view_p95_ms": med("get_view", "p95_ms"),
        "get_duckdb_p50_ms": med("get_duckdb", "p50_ms"),
        "get_duckdb_p95_ms": med("get_duckdb", "p95_ms"),
        "history_view_p50_ms": med("history_view", "p50_ms"),
        "history_view_p95_ms": med("history_view", "p95_ms"),
        "history_duckdb_p50_ms": med("history_duckdb", "p50_ms"),
        "history_duckdb_p95_ms": med("history_duckdb", "p95_ms"),
        "http_view_p50_ms": med("http", "view", "round_trip", "p50_ms"),
        "http_view_server_p50_ms": med("http", "view", "server", "p50_ms"),
        "http_view_gap_p50_ms": med("http", "view", "gap_p50_ms"),
        "http_duckdb_p50_ms": med("http", "duckdb", "round_trip", "p50_ms"),
        "http_duckdb_server_p50_ms": med("http", "duckdb", "server", "p50_ms"),
    }


# -- filtered search -------------------------------------------------------------------------


def _recorder(times: dict[str, list[float]]) -> Any:
    def timed(key: str, fn: Any, *args: Any, **kw: Any) -> None:
        t = time.perf_counter()
        fn(*args, **kw)
        times.setdefault(key, []).append((time.perf_counter() - t) * 1e3)

    return timed


def _filtered(
    scratch: Scratch,
    reporter: Reporter,
    scale: float,
    repeats: int,
    seed: int,
    cache_dir: Path | None,
) -> dict[str, Any]:
    n = scaled(BASE_SEARCH_MEMORIES, scale, MIN_SEARCH_MEMORIES)
    n_questions = scaled(sb.BASE_QUESTIONS, scale, sb.MIN_QUESTIONS)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    model = LazyEmbedder()
    got = embedded_corpus("reads", n, seed, n_questions, model, cache_dir, reporter)
    corpus, questions, vectors, queries = got.corpus, got.questions, got.vectors, got.queries
    rng = random.Random(f"selective:{seed}")
    selective = set(rng.sample(range(n), max(1, round(n * sb.SELECTIVE_SHARE))))
    tenth = set(random.Random(f"tenth:{seed}").sample(range(n), round(n * 0.1)))
    path = scratch.new("search")
    ids, _ = sb._write_store(path, corpus, selective, tenth)
    if sb._seed_store_cache(path, ids, vectors, model.model_id) != n:
        raise BenchError("reads: the store's embedding cache misses vectors")
    _, store = sb._rebuild(path, reporter, model, n)
    spaces = [f"user/u{i % sb.NAMESPACES:02d}" for i in range(n)]
    members = {
        "namespace_1": [i for i in range(n) if spaces[i] == "user/u00"],
        "namespaces_3": [i for i in range(n) if spaces[i] in ("user/u00", "user/u01", "user/u02")],
        "tag_10pct": sorted(tenth),
    }
    try:
        proj = store.semantic
        assert proj is not None and store.views is not None
        backend, views = store.backend, store.views
        store.search(questions[0], k=sb.K)  # loads the model
        recall: dict[str, float] = {}
        for name, f in FILTERS.items():
            sel = np.asarray(members[name], dtype=np.int64)
            overlap = []
            for q in queries:
                want = {ids[int(sel[i])] for i in sb._exact_top(vectors[sel], q, sb.K)}
                got = {h.memory.memory_id for h in store.search(vector=q.tolist(), k=sb.K, **f)}
                overlap.append(len(want & got) / len(want))
            recall[name] = float(np.mean(overlap))
        runs = []
        with reporter.task("reads: filtered search", repeats) as tick:
            for _ in range(repeats):
                times: dict[str, list[float]] = {}
                timed = _recorder(times)

                with clean_heap():
                    # text searches and the embedding alone, interleaved (torch's threads
                    # spin for a while after a forward pass: the pairs share that cost)
                    for text in questions:
                        timed("embed", proj.embed_query, text)
                        for name, f in FILTERS.items():
                            timed(f"text:{name}", store.search, text, k=sb.K, **f)
                    time.sleep(0.5)
                    for i, q in enumerate(queries):
                        vec = q.tolist()
                        order = [("view", views), ("duckdb", None)]
                        for how, v in order if i % 2 == 0 else order[::-1]:
                            backend.views = v
                            # The baseline runs the DuckDB candidate query: a filter on a
                            # time every memory passes takes the query path, not the indexes.
                            extra = {} if v is not None else {"created_after": EPOCH}
                            try:
                                for name, f in FILTERS.items():
                                    timed(
                                        f"{how}:{name}", store.search, vector=vec, k=sb.K,
                                        **f, **extra,
                                    )  # fmt: skip
                                timed(f"{how}:unfiltered", store.search, vector=vec, k=sb.K)
                            finally:
                                backend.views = views
                runs.append({k: _summary(v) for k, v in times.items()})
                tick(1)
    finally:
        store.close()

    def med(key: str, stat: str = "p50_ms") -> dict[str, float]:
        return spread([r[key][stat] for r in runs])

    per_filter = {}
    for name in [*FILTERS, "unfiltered"]:
        d: dict[str, Any] = {
            "view_p50_ms": med(f"view:{name}"),
            "view_p95_ms": med(f"view:{name}", "p95_ms"),
            "duckdb_p50_ms": med(f"duckdb:{name}"),
            "duckdb_p95_ms": med(f"duckdb:{name}", "p95_ms"),
        }
        if name in FILTERS:
            d["members"] = len(members[name])
            d["recall_at_10"] = recall[name]
            d["text_p50_ms"] = med(f"text:{name}")
            d["text_minus_embed_p50_ms"] = d["text_p50_ms"]["median"] - med("embed")["median"]
        per_filter[name] = d
    return {
        "memories": n,
        "questions": len(questions),
        "embed_p50_ms": med("embed"),
        "embed_p95_ms": med("embed", "p95_ms"),
        "filters": per_filter,
        "runs": runs,
    }


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
    reads = _get_history(scratch, reporter, n, repeats, seed)
    search = _filtered(scratch, reporter, scale, repeats, seed, cache_dir)
    f = search["filters"]
    goals = {
        "get_p50_ms": GOAL_GET_MS,
        "history_p50_ms": GOAL_HISTORY_MS,
        "http_gap_p50_ms": GOAL_HTTP_GAP_MS,
        "filter_added_p50_ms": GOAL_FILTER_ADDED_MS,
        "filter_recall_at_10": GOAL_RECALL,
    }
    meets = {
        "get_p50_ms": reads["get_view_p50_ms"]["median"] <= GOAL_GET_MS,
        "history_p50_ms": reads["history_view_p50_ms"]["median"] <= GOAL_HISTORY_MS,
        "http_gap_p50_ms": reads["http_view_gap_p50_ms"]["median"] <= GOAL_HTTP_GAP_MS,
        **{
            f"filter_added_p50_ms:{name}": f[name]["view_p50_ms"]["median"] <= GOAL_FILTER_ADDED_MS
            for name in FILTERS
        },
        **{
            f"filter_recall_at_10:{name}": f[name]["recall_at_10"] >= GOAL_RECALL
            for name in FILTERS
        },
    }
    return {
        "parameters": {
            "memories": n,
            "namespaces": NAMESPACES,
            "revised_share": REVISED_SHARE,
            "sampled_ids": min(SAMPLE, n),
            "view_calls": VIEW_CALLS,
            "duckdb_calls": DUCK_CALLS,
            "http_calls": HTTP_CALLS,
            "http_duckdb_calls": HTTP_DUCK_CALLS,
            "search_memories": search["memories"],
            "questions": search["questions"],
            "filters": FILTERS,
            "repeats": repeats,
        },
        "goals": goals,
        "results": {"reads": reads, "search": search, "meets": meets},
    }
