"""``access``: what recording every read in the access log costs a search.

The store is the ``search`` suite's (its corpus, the cached all-MiniLM-L6-v2 vectors, the
labelled questions; see :mod:`memstream.bench.search_data`), built and opened once, with its
access log. The measured pair, in the same run, on the same store, with the same queries:
``MemoryStore.search`` with the access log on (every search recorded: the principal, the
ids it returned, a keyed hash of the query) and off (the service keeps no access log).
Each repeat makes ``calls`` text searches (the labelled questions, embedding included: what
a user's search costs) and as many with the questions' vectors (the search alone: where the
access log weighs most) with the log on, and the same with it off, interleaved query by
query (on first for even queries, off first for odd ones), so that a machine's changing
load weighs on both alike. The writer thread writes the recorded searches in the
background as it does in use (every second): its work lands on the searches of both arms
alike, and its cost per record is reported on its own. The headline is the p95 with the
log on over the p95 with it off (goal: at most 1.1), median over the repeats.

Before reporting, the suite checks that the access log holds exactly the searches made
with it on, and that the last one's objects are the ids that search returned, in order.
Also measured: the cost of recording one search on the read path (the service's hook,
µs), and the background writer's time per record.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np

from memstream.governance.access_log import AccessLog, open_access_log
from memstream.projections.models import LazyEmbedder
from memstream.projections.search import SearchQuery
from memstream.service import Caller

from . import search as sb
from .common import BenchError, Reporter, Scratch, clean_heap, scaled, spread
from .search_data import default_cache_dir, embedded_corpus

BASE_MEMORIES = 100_000
MIN_MEMORIES = 500
BASE_CALLS = 1_000
MIN_CALLS = 200
#: recordings timed for the read path's own cost (no search: the hook alone), in rounds
HOOK_CALLS = 20_000
ROUND = 1_000
GOAL_P95_RATIO = 1.1


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def _summary(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": _pct(ms, 50), "p95_ms": _pct(ms, 95), "n": len(ms)}


def _logged_searches(path: Path) -> tuple[int, list[str]]:
    """The searches the access log file holds, and the objects of the last one."""
    db = sqlite3.connect(path)
    try:
        (count,) = db.execute("SELECT count(*) FROM access WHERE action = 'search'").fetchone()
        row = db.execute(
            "SELECT objects FROM access WHERE action = 'search' ORDER BY id DESC LIMIT 1"
        ).fetchone()
    finally:
        db.close()
    return int(count), json.loads(row[0]) if row else []


def _hook_cost(log: AccessLog, hits: list[Any], query: Any) -> dict[str, float]:
    """µs per search recorded on the read path, and the writer's µs per record.

    Rounds of :data:`ROUND` recordings, fewer than wake the writer early, each timed, then
    written at once (timed apart): the read path's cost without the writer running beside
    it, which it does once a second in use. Medians over the rounds."""
    caller = Caller(principal="bench")
    log.flush()
    hook, writer = [], []
    for _ in range(max(1, HOOK_CALLS // ROUND)):
        t = time.perf_counter()
        for _ in range(ROUND):
            log.read(caller, "search", hits, {"query": query})
        hook.append((time.perf_counter() - t) / ROUND * 1e6)
        t = time.perf_counter()
        log.flush()
        writer.append((time.perf_counter() - t) / ROUND * 1e6)
    return {"hook_us": float(np.median(hook)), "writer_us_per_record": float(np.median(writer))}


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
    calls = scaled(BASE_CALLS, scale, MIN_CALLS)
    n_questions = scaled(sb.BASE_QUESTIONS, scale, sb.MIN_QUESTIONS)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    model = LazyEmbedder()
    got = embedded_corpus("access", n, seed, n_questions, model, cache_dir, reporter)
    corpus, questions, vectors, queries = got.corpus, got.questions, got.vectors, got.queries
    selective = set(random.Random(f"selective:{seed}").sample(range(n), max(1, n // 100)))
    path = scratch.new("store")
    ids, _ = sb._write_store(path, corpus, selective)
    if sb._seed_store_cache(path, ids, vectors, model.model_id) != n:
        raise BenchError("access: the store's embedding cache misses vectors")
    _, store = sb._rebuild(path, reporter, model, n)
    own = store.accesses is None  # turned off by the environment: this suite turns it on
    log = store.accesses or open_access_log(path, True)
    assert log is not None
    service = store.service
    order = random.Random(seed)
    texts = [questions[order.randrange(len(questions))] for _ in range(calls)]
    vecs = [queries[order.randrange(len(queries))].tolist() for _ in range(calls)]
    runs: list[dict[str, Any]] = []
    recorded = 0
    last: list[str] = []
    try:
        service.accesses = None
        store.search(questions[0], k=sb.K)  # loads the model, not recorded
        with reporter.task("access: search, log on and off", repeats) as tick:
            clock = time.perf_counter
            for _ in range(repeats):
                times: dict[str, list[float]] = {
                    f"{kind}:{arm}": [] for kind in ("text", "vector") for arm in ("on", "off")
                }
                with clean_heap():
                    for i, (text, vec) in enumerate(zip(texts, vecs, strict=True)):
                        for arm in ("on", "off") if i % 2 == 0 else ("off", "on"):
                            service.accesses = log if arm == "on" else None
                            t = clock()
                            store.search(text, k=sb.K)
                            times[f"text:{arm}"].append((clock() - t) * 1e3)
                            t = clock()
                            hits = store.search(vector=vec, k=sb.K)
                            times[f"vector:{arm}"].append((clock() - t) * 1e3)
                            if arm == "on":
                                last = [h.memory.memory_id for h in hits]
                        service.accesses = None
                recorded += 2 * calls
                runs.append({k: _summary(v) for k, v in times.items()})
                tick(1)
        service.accesses = None
        log.flush()
        got, last_objects = _logged_searches(log.path)
        hits = store.search(questions[0], k=sb.K)
        cost = _hook_cost(log, hits, SearchQuery(query=questions[0], k=sb.K))
    finally:
        service.accesses = None if own else log
        store.close()
        if own:
            log.close()
    if got != recorded:
        raise BenchError(f"access: the log holds {got} searches, {recorded} were made with it on")
    if not last or last_objects != last:
        raise BenchError(
            f"access: the last search recorded read {last_objects}, it returned {last}"
        )

    def med(key: str, stat: str = "p95_ms") -> dict[str, float]:
        return spread([x[key][stat] for x in runs])

    ratios = {
        kind: spread([x[f"{kind}:on"]["p95_ms"] / x[f"{kind}:off"]["p95_ms"] for x in runs])
        for kind in ("text", "vector")
    }
    results = {
        **{
            f"{kind}_{block}_{stat}": med(f"{kind}:{block}", f"{stat}_ms")
            for kind in ("text", "vector")
            for block in ("on", "off")
            for stat in ("p50", "p95")
        },
        "text_p95_ratio": ratios["text"],
        "vector_p95_ratio": ratios["vector"],
        "searches_recorded": got,
        **cost,
        "runs": runs,
    }
    results["meets"] = {
        "text_p95_ratio": ratios["text"]["median"] <= GOAL_P95_RATIO,
        "vector_p95_ratio": ratios["vector"]["median"] <= GOAL_P95_RATIO,
    }
    return {
        "parameters": {
            "memories": n,
            "questions": len(questions),
            "calls_per_arm": calls,
            "k": sb.K,
            "hook_calls": HOOK_CALLS,
            "repeats": repeats,
        },
        "goals": {"p95_ratio": GOAL_P95_RATIO},
        "results": results,
    }
