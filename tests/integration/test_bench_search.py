"""The ``search`` benchmark suite at a tiny scale: it runs end to end with the real model,
writes its JSON and its summary rows, checks what it measured, and reuses its embedding
cache on the next run (only timing-free facts are asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from memstream.projections.embedding import EmbeddingCache

from memstream import bench
from memstream.bench import report
from memstream.bench.search import _GraphCounter, _recall
from memstream.bench.search_data import CACHE_FILE, build_corpus, text_hash

SCALE = 0.001  # 200 memories (the minimum), 20 questions, 32 texts for throughput


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    root = tmp_path_factory.mktemp("bench-search")
    cache, work = root / "cache", root / "work"
    work.mkdir()
    first = bench.run(
        ["search"], root / "out1", scale=SCALE, repeats=1, workdir=work, progress=False,
        cache_dir=cache,
    )  # fmt: skip
    second = bench.run(
        ["search"], root / "out2", scale=SCALE, repeats=1, workdir=work, progress=False,
        cache_dir=cache,
    )  # fmt: skip
    assert not list(work.iterdir()), "the suite leaves no scratch store behind"
    return root, first["suites"]["search"], second["suites"]["search"]


def test_search_suite_writes_its_json_and_summary_rows(runs) -> None:
    root, d, _ = runs
    on_disk = json.loads((root / "out1" / "search.json").read_text())
    assert on_disk["suite"] == "search" and on_disk["parameters"] == d["parameters"]
    p = d["parameters"]
    assert p["memories"] == 200 and p["questions"] == 20 and p["embedding_texts"] == 32
    assert p["selective_memories"] == 2 and p["repeats"] == 1
    summary = (root / "out1" / "summary.md").read_text()
    for row in (
        "| search, recall@10",
        "| search, latency",
        "| search, embedding",
        "| search, query embedding",
        "| search, index build",
    ):
        assert row in summary
    assert "| search, recall@10" in report.table({"search": d})


def test_search_suite_measures_the_store_it_built(runs) -> None:
    _, d, _ = runs
    r = d["results"]
    (build,) = r["builds"]
    assert build["indexed"] == build["index_vectors"] == build["cache_hits"] == 200
    assert build["model_calls"] == build["texts_embedded"] == 0
    assert "follower.json" in build["rebuild_reason"]
    assert r["setup"]["counts"]["memories"] == r["setup"]["counts"]["accepted"] == 200
    rec = r["recall"]
    assert rec["queries"] == 20
    assert rec["graph_searches"] >= 20  # unfiltered queries took the hnswlib graph
    assert rec["filtered_graph_searches"] == 0  # the 1% filter scored its candidates
    assert rec["filtered_recall_at_10"] == 1.0
    assert 0.9 <= rec["recall_at_10"] <= 1.0
    for how in ("store", "exact"):
        assert 0.0 <= r["labelled_recall"][how]["at_1"] <= r["labelled_recall"][how]["at_10"]
    (lat,) = r["latency_runs"]
    assert {k: v["n"] for k, v in lat.items() if isinstance(v, dict)} == dict.fromkeys(
        ("text", "vector", "filtered", "raw_knn", "raw_knn_k10"), 20
    )
    qe = r["query_embedding"]
    assert qe["questions"] == 20 and qe["runs"][0]["query"]["n"] == 20
    assert qe["query_path"] in ("onednn-bf16", "onednn-prepacked", "eager")
    assert qe["lowest_cosine"] > 0.999 and qe["recall_at_10_delta"] <= 0.005
    assert set(qe["recall_at_10"]) == {"previous", "query"}
    assert r["meets"]["query_recall_delta"] is True
    emb = r["embedding"]
    assert emb["texts"] == 32 and emb["runs"][0]["lowest_cosine_agreement"] > 0.999
    assert emb["ratio"] == pytest.approx(
        emb["memstream_texts_per_s"]["median"] / emb["raw_texts_per_s"]["median"]
    )
    assert set(r["meets"]) == set(d["goals"])


def test_embeddings_are_cached_once_and_reused(runs) -> None:
    root, first, second = runs
    assert first["results"]["setup"]["corpus_vectors_embedded_this_run"] == 220  # 200 + 20
    assert second["results"]["setup"]["corpus_vectors_embedded_this_run"] == 0
    assert first["results"]["recall"] == second["results"]["recall"]
    corpus = build_corpus(200, bench.SEED, 20)
    with EmbeddingCache(root / "cache" / CACHE_FILE) as cache:
        model_id = first["parameters"]["model_id"]
        assert cache.count(model_id) == 220
        assert len(cache.cached_hashes(model_id, map(text_hash, corpus.texts))) == 200


def test_a_filter_that_searched_the_graph_fails_the_suite(tmp_path: Path) -> None:
    """The check behind ``filtered_graph_searches == 0`` really fires (random vectors: this
    is about the path a filtered search takes, not about recall)."""
    import numpy as np
    from memstream.projections.models import LazyEmbedder

    from memstream import MemoryStore
    from memstream.bench.common import BenchError
    from memstream.bench.search import _seed_store_cache, _write_store
    from memstream.bench.search_data import Corpus

    n, tagged = 2_000, list(range(1_000))
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((n, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    corpus = Corpus(ids=[], texts=[f"note {i}" for i in range(n)], questions=[], labelled=0)
    path = tmp_path / "s"
    ids, _ = _write_store(path, corpus, set(tagged))
    model = LazyEmbedder()
    assert _seed_store_cache(path, ids, vectors, model.model_id) == n
    with MemoryStore.open(path, durability="os", semantic=True, embedder=model) as store:
        store.flush()
        assert store.semantic.embedder.model_calls == 0
        index = store.semantic.vectors
        queries = vectors[:5] + 0.1 * vectors[5:10]
        # 1,000 candidates: the filtered search now takes the graph
        index.exact_limit = index.filter_exact_limit = 10
        with pytest.raises(BenchError, match="graph searches"):
            _recall(store, ids, vectors, queries, tagged, _GraphCounter(index))
        index.exact_limit = index.filter_exact_limit = 2_048
        got = _recall(store, ids, vectors, queries, tagged, _GraphCounter(index))
        assert got["filtered_graph_searches"] == 0 and got["filtered_recall_at_10"] == 1.0
