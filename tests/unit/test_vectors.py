"""VectorIndex against real hnswlib: writes, searches, filters, persistence and recovery.

Vectors are clustered (like sentence embeddings, unlike uniform noise, on which ANN
recall is meaningless), and every approximate answer is compared with exact numpy search.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from memstream.projections.errors import IndexUnusable
from memstream.projections.vectors import MANIFEST_NAME, VectorIndex

DIM = 48
MODEL = "test-model@0000"
# Small indexes are answered exactly; these tests force the hnswlib graph instead.
GRAPH = {"exact_limit": 0, "filter_exact_limit": 0}


def clustered(n: int, seed: int, dim: int = DIM, clusters: int = 40) -> np.ndarray:
    """Unit vectors around fixed centres on a low-rank subspace, like embeddings.

    The centres depend only on ``dim`` and ``clusters``, so queries drawn with another
    seed come from the same distribution as the indexed data, as real queries do.
    """
    space = np.random.default_rng(dim * 1000 + clusters)
    basis = space.normal(size=(16, dim))
    centres = space.normal(size=(clusters, 16)) @ basis
    rng = np.random.default_rng(seed)
    points = centres[rng.integers(0, clusters, size=n)] + 0.6 * rng.normal(size=(n, dim))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32)


def ids_of(n: int, prefix: str = "m") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return clustered(3000, seed=1)


@pytest.fixture(scope="module")
def built(data: np.ndarray) -> VectorIndex:
    index = VectorIndex(DIM, MODEL, num_threads=1)
    index.upsert(ids_of(len(data)), data)
    return index


def recall(
    index: VectorIndex, queries: np.ndarray, k: int, allowed: set[str] | None = None
) -> float:
    found = 0
    for query in queries:
        truth = {i for i, _ in index.exact_search(query, k, allowed)}
        got = {i for i, _ in index.search(query, k, allowed)}
        found += len(truth & got)
        assert len(got) == len(truth)
    return found / (len(queries) * k)


def test_upsert_then_search_finds_each_vector_first(built: VectorIndex, data: np.ndarray) -> None:
    assert len(built) == 3000
    assert "m17" in built and "m3000" not in built
    for i in (0, 17, 2999):
        top_id, score = built.search(data[i], 1)[0]
        assert top_id == f"m{i}"
        assert score == pytest.approx(1.0, abs=1e-5)


def test_scores_are_cosine_similarities(built: VectorIndex, data: np.ndarray) -> None:
    query = data[5] * 7.0  # any length: queries are normalised
    for memory_id, score in built.search(query, 10):
        expected = float(built.vector(memory_id) @ data[5])
        assert score == pytest.approx(expected, abs=1e-5)


def test_ann_recall_matches_exact_on_clustered_data(built: VectorIndex) -> None:
    queries = clustered(200, seed=99)
    assert recall(built, queries, 10) >= 0.97


def test_small_index_is_answered_exactly(data: np.ndarray) -> None:
    index = VectorIndex(DIM, MODEL, exact_limit=500)
    index.upsert(ids_of(500), data[:500])
    for query in clustered(20, seed=15):
        assert index.search(query, 10) == index.exact_search(query, 10)
    graph_calls: list[object] = []
    graph_search = index._graph_search

    def counting_graph_search(*args: Any) -> Any:
        graph_calls.append(args)
        return graph_search(*args)

    index._graph_search = counting_graph_search  # type: ignore[method-assign]
    index.search(data[3], 1)
    assert graph_calls == []
    index.upsert(ids_of(501), data[:501])  # one more than the limit: the graph answers
    assert index.search(data[3], 1)[0][0] == "m3"
    assert len(graph_calls) == 1


def test_replace_gets_fresh_label_and_moves_the_memory() -> None:
    vectors = clustered(50, seed=2)
    index = VectorIndex(DIM, MODEL, num_threads=1, compact_threshold=None, **GRAPH)
    index.upsert(ids_of(50), vectors)
    index.upsert(["m3"], vectors[40] + 0.01)
    assert len(index) == 50
    assert index.deleted_count == 1
    np.testing.assert_allclose(
        index.vector("m3"), vectors[40] / np.linalg.norm(vectors[40]), atol=0.02
    )
    near = [memory_id for memory_id, _ in index.search(vectors[40], 2)]
    assert set(near) == {"m3", "m40"}
    assert "m3" not in [memory_id for memory_id, _ in index.search(vectors[3], 1)]


def test_last_occurrence_wins_within_one_batch() -> None:
    vectors = clustered(3, seed=3)
    index = VectorIndex(DIM, MODEL)
    index.upsert(["a", "b", "a"], vectors)
    assert len(index) == 2
    np.testing.assert_allclose(index.vector("a"), vectors[2], atol=1e-6)


def test_remove_is_idempotent_and_removed_ids_never_come_back() -> None:
    vectors = clustered(30, seed=4)
    index = VectorIndex(DIM, MODEL, compact_threshold=None, **GRAPH)
    index.upsert(ids_of(30), vectors)
    assert index.remove(["m1", "m2"]) == 2
    assert index.remove(["m1", "m2", "never-stored"]) == 0  # hnswlib would raise here
    assert len(index) == 28 and "m1" not in index
    for query in vectors:
        assert not {"m1", "m2"} & {i for i, _ in index.search(query, 28)}
    with pytest.raises(KeyError, match="m1"):
        index.vector("m1")
    index.upsert(["m1"], vectors[1])  # a removed id can come back
    assert index.search(vectors[1], 1)[0][0] == "m1"


def test_k_larger_than_live_count_returns_all_live() -> None:
    vectors = clustered(8, seed=5)
    index = VectorIndex(DIM, MODEL, compact_threshold=None, **GRAPH)
    assert index.search(vectors[0], 5) == []
    index.upsert(ids_of(8), vectors)
    index.remove(["m0", "m1", "m2"])
    hits = index.search(vectors[0], 50)
    assert sorted(i for i, _ in hits) == ["m3", "m4", "m5", "m6", "m7"]
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)


def test_capacity_grows_in_chunks_and_keeps_everything() -> None:
    vectors = clustered(300, seed=6)
    index = VectorIndex(DIM, MODEL, initial_capacity=16, growth_chunk=32, num_threads=1, **GRAPH)
    capacities = []
    for start in range(0, 300, 25):
        index.upsert(ids_of(300)[start : start + 25], vectors[start : start + 25])
        capacities.append(index.capacity)
    assert capacities[0] >= 25 and capacities[-1] >= 300
    assert len(set(capacities)) < len(capacities)  # grew in chunks, not on every batch
    assert all(index.search(v, 1)[0][0] == f"m{i}" for i, v in enumerate(vectors))


def test_selective_filter_equals_exact_search(built: VectorIndex, data: np.ndarray) -> None:
    rng = np.random.default_rng(7)
    allowed = {f"m{i}" for i in rng.choice(3000, size=30, replace=False)}  # 1%
    for query in clustered(20, seed=8):
        assert built.search(query, 10, allowed) == built.exact_search(query, 10, allowed)
        assert {i for i, _ in built.search(query, 10, allowed)} <= allowed


@pytest.fixture(scope="module")
def graph_filtered(data: np.ndarray) -> VectorIndex:
    """An index that answers every filter through the graph (no exact shortcut)."""
    index = VectorIndex(DIM, MODEL, num_threads=1, exact_limit=0, filter_exact_limit=0)
    index.upsert(ids_of(len(data)), data)
    return index


def test_broad_filter_uses_the_graph_without_losing_recall(graph_filtered: VectorIndex) -> None:
    rng = np.random.default_rng(9)
    allowed = {f"m{i}" for i in rng.choice(3000, size=1500, replace=False)}
    assert recall(graph_filtered, clustered(100, seed=10), 10, allowed) >= 0.95


def test_filter_falls_back_to_exact_when_graph_results_are_filtered_away(
    graph_filtered: VectorIndex, data: np.ndarray
) -> None:
    query = data[0]
    # The allowed memories are the ones least similar to the query: a graph search for
    # neighbours of the query finds none of them, so the exact fallback must answer.
    allowed = {f"m{i}" for i in np.argsort(data @ query)[:600]}
    assert graph_filtered.search(query, 10, allowed) == graph_filtered.exact_search(
        query, 10, allowed
    )


def test_filter_ignores_unknown_and_removed_ids() -> None:
    vectors = clustered(20, seed=11)
    index = VectorIndex(DIM, MODEL, compact_threshold=None)
    index.upsert(ids_of(20), vectors)
    index.remove(["m5"])
    assert index.search(vectors[5], 5, {"m5", "ghost"}) == []
    assert [i for i, _ in index.search(vectors[5], 5, {"m5", "m6"})] == ["m6"]


def test_wrong_dimension_is_rejected_with_both_numbers() -> None:
    index = VectorIndex(DIM, MODEL)
    with pytest.raises(ValueError, match=r"dimension 12, expected 48"):
        index.upsert(["a"], np.ones((1, 12), dtype=np.float32))
    index.upsert(["a"], np.ones((1, DIM), dtype=np.float32))
    with pytest.raises(ValueError, match=r"dimension 12, expected 48"):
        index.search(np.ones(12), 1)
    with pytest.raises(ValueError, match="all zeros"):
        index.upsert(["b"], np.zeros((1, DIM)))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        index.search(np.ones(DIM), 0)


def test_a_query_vector_is_measured_scaled_when_its_squares_overflow() -> None:
    from memstream.projections.embedding import unit_vector

    big = np.full(DIM, 1e30, dtype=np.float32)  # finite, but its squares are not in float32
    assert np.allclose(unit_vector(big), np.full(DIM, 1 / np.sqrt(DIM)), atol=1e-6)
    for bad in (np.zeros(DIM), np.full(DIM, np.nan)):
        with pytest.raises(ValueError, match="finite and not all zeros"):
            unit_vector(bad)


def test_save_and_load_roundtrip(tmp_path: Path, data: np.ndarray) -> None:
    index = VectorIndex(DIM, MODEL, ef_search=77, num_threads=1, compact_threshold=None)
    index.upsert(ids_of(1000), data[:1000])
    index.remove(["m10", "m11"])
    index.upsert(["m12"], data[999])
    index.save(tmp_path / "vec", offset=1234)
    assert index.offset == 1234

    loaded = VectorIndex.load(tmp_path / "vec", DIM, MODEL, num_threads=1)
    assert loaded.offset == 1234
    assert len(loaded) == 998 and loaded.deleted_count == 3
    assert "m10" not in loaded and "m12" in loaded
    # hnswlib resets ef to 10 on load; the saved ef_search must be back in force.
    assert loaded.ef_search == 77 and loaded.graph_ef == 77
    for query in clustered(30, seed=12):
        assert loaded.search(query, 10) == index.search(query, 10)
        assert loaded.exact_search(query, 10) == index.exact_search(query, 10)
    # A loaded index keeps working: it grows, replaces and saves again.
    loaded.upsert(ids_of(500, "n"), data[1000:1500])
    loaded.upsert(["m12"], data[12])
    loaded.save(tmp_path / "vec", offset=2000)
    again = VectorIndex.load(tmp_path / "vec", DIM, MODEL)
    assert again.offset == 2000 and len(again) == 1498
    assert again.search(data[12], 1)[0][0] == "m12"


def test_empty_index_roundtrip(tmp_path: Path) -> None:
    VectorIndex(DIM, MODEL).save(tmp_path, offset=0)
    loaded = VectorIndex.load(tmp_path, DIM, MODEL)
    assert len(loaded) == 0 and loaded.offset == 0
    assert loaded.search(np.ones(DIM), 3) == []


def test_ef_search_override_on_load(tmp_path: Path, data: np.ndarray) -> None:
    index = VectorIndex(DIM, MODEL)
    index.upsert(ids_of(100), data[:100])
    index.save(tmp_path, offset=1)
    loaded = VectorIndex.load(tmp_path, DIM, MODEL, ef_search=150, **GRAPH)
    assert loaded.graph_ef == 150
    loaded.search(data[0], 90)  # a larger k searches with ef = 2k
    assert loaded.graph_ef == 180
    loaded.search(data[0], 5)  # and a small k with ef_search again
    assert loaded.graph_ef == 150


def test_ef_search_grows_with_the_index(
    tmp_path: Path, data: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    import memstream.projections.vectors as vectors

    monkeypatch.setattr(vectors, "EF_MIN", 20)
    monkeypatch.setattr(vectors, "EF_MAX", 60)
    monkeypatch.setattr(vectors, "EF_PER_VECTORS", 10)
    index = VectorIndex(DIM, MODEL, num_threads=1, **GRAPH)
    assert index.ef_search is None and index.effective_ef == 20
    index.upsert(ids_of(300), data[:300])
    assert index.effective_ef == 30
    index.search(data[0], 5)
    assert index.graph_ef == 30  # the search ran with the list sized for 300 vectors
    index.upsert(ids_of(700, "n"), data[300:1000])
    assert index.effective_ef == 60  # capped
    index.search(data[0], 5)
    assert index.graph_ef == 60
    index.save(tmp_path, offset=3)
    assert json.loads((tmp_path / MANIFEST_NAME).read_text())["ef_search"] is None
    loaded = VectorIndex.load(tmp_path, DIM, MODEL)
    assert loaded.ef_search is None and loaded.graph_ef == 60
    index.ef_search = 25  # an explicit list wins over the size rule
    assert index.effective_ef == 25 and index.graph_ef == 25


def saved(tmp_path: Path, data: np.ndarray) -> tuple[Path, dict]:
    index = VectorIndex(DIM, MODEL, num_threads=1)
    index.upsert(ids_of(500), data[:500])
    index.save(tmp_path, offset=42)
    return tmp_path, json.loads((tmp_path / MANIFEST_NAME).read_text())


@pytest.mark.parametrize("role", ["graph", "vectors", "ids"])
def test_truncated_file_is_unusable(tmp_path: Path, data: np.ndarray, role: str) -> None:
    root, manifest = saved(tmp_path, data)
    path = root / manifest["files"][role]["name"]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(IndexUnusable, match=f"{role} file .* bytes"):
        VectorIndex.load(root, DIM, MODEL)


def test_altered_byte_fails_the_checksum(tmp_path: Path, data: np.ndarray) -> None:
    root, manifest = saved(tmp_path, data)
    path = root / manifest["files"]["graph"]["name"]
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(IndexUnusable, match="SHA-256"):
        VectorIndex.load(root, DIM, MODEL)


def test_missing_file_and_missing_or_corrupt_manifest(tmp_path: Path, data: np.ndarray) -> None:
    with pytest.raises(IndexUnusable, match="never saved"):
        VectorIndex.load(tmp_path / "nothing", DIM, MODEL)
    root, manifest = saved(tmp_path, data)
    (root / manifest["files"]["ids"]["name"]).unlink()
    with pytest.raises(IndexUnusable, match="missing"):
        VectorIndex.load(root, DIM, MODEL)
    (root / MANIFEST_NAME).write_text('{"format": "memstream.vector-index", "vers')
    with pytest.raises(IndexUnusable, match="unreadable"):
        VectorIndex.load(root, DIM, MODEL)


def test_other_dimension_is_unusable(tmp_path: Path, data: np.ndarray) -> None:
    root, _ = saved(tmp_path, data)
    with pytest.raises(IndexUnusable, match="dimension 48, expected 64"):
        VectorIndex.load(root, 64, MODEL)


def test_graph_of_another_dimension_is_caught_before_hnswlib(
    tmp_path: Path, data: np.ndarray
) -> None:
    """Even with a manifest that matches the files, a foreign graph is never loaded."""
    root, manifest = saved(tmp_path, data)
    foreign = hnswlib.Index(space="ip", dim=DIM // 2)
    foreign.init_index(max_elements=500, M=16)
    foreign.add_items(data[:500, : DIM // 2], np.arange(500))
    graph = root / manifest["files"]["graph"]["name"]
    foreign.save_index(str(graph))
    import hashlib

    manifest["files"]["graph"]["bytes"] = graph.stat().st_size
    manifest["files"]["graph"]["sha256"] = hashlib.sha256(graph.read_bytes()).hexdigest()
    (root / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(IndexUnusable, match="24 dimensions, expected 48"):
        VectorIndex.load(root, DIM, MODEL)


def test_other_model_is_unusable(tmp_path: Path, data: np.ndarray) -> None:
    root, _ = saved(tmp_path, data)
    with pytest.raises(IndexUnusable, match="other-model"):
        VectorIndex.load(root, DIM, "other-model@1111")


def test_interrupted_save_leaves_previous_index_loadable(tmp_path: Path, data: np.ndarray) -> None:
    root, manifest = saved(tmp_path, data)
    # A save that died before replacing the manifest leaves stray files of its generation.
    (root / "graph-deadbeef.bin").write_bytes(b"\x00" * 100)
    (root / f"{MANIFEST_NAME}.deadbeef.tmp").write_text("{")
    loaded = VectorIndex.load(root, DIM, MODEL)
    assert loaded.offset == 42 and len(loaded) == 500
    loaded.save(root, offset=43)
    names = sorted(p.name for p in root.iterdir())
    assert len(names) == 5 and MANIFEST_NAME in names  # old generation and strays gone


def test_compaction_keeps_results_and_drops_deleted_labels(data: np.ndarray) -> None:
    index = VectorIndex(DIM, MODEL, num_threads=1, compact_threshold=None)
    index.upsert(ids_of(1000), data[:1000])
    index.remove(ids_of(1000)[::3])
    queries = clustered(50, seed=13)
    exact_before = [index.exact_search(q, 10) for q in queries]
    vectors_before = {i: index.vector(i) for i in index.ids()}
    index.compact()
    assert index.deleted_count == 0 and len(index) == len(vectors_before)
    assert all(np.array_equal(index.vector(i), v) for i, v in vectors_before.items())
    assert [index.exact_search(q, 10) for q in queries] == exact_before
    assert recall(index, queries, 10) >= 0.97


def test_compaction_starts_past_the_threshold(data: np.ndarray) -> None:
    index = VectorIndex(DIM, MODEL, num_threads=1, compact_threshold=0.25)
    index.upsert(ids_of(1000), data[:1000])
    index.remove(ids_of(1000)[:200])  # 20% of the labels: kept as tombstones
    assert index.deleted_count == 200
    index.remove(ids_of(1000)[200:300])  # 30%: rebuilt from the live vectors
    assert index.deleted_count == 0 and len(index) == 700
    assert index.capacity <= 700 + index.growth_chunk
    assert all(index.search(data[i], 1)[0][0] == f"m{i}" for i in range(300, 1000, 7))


def test_compaction_through_replacements(data: np.ndarray) -> None:
    index = VectorIndex(DIM, MODEL, num_threads=1, compact_threshold=0.25)
    index.upsert(ids_of(400), data[:400])
    for round_ in range(3):
        index.upsert(ids_of(400)[:150], data[400 + round_ * 150 : 550 + round_ * 150])
    assert index.deleted_count <= 0.25 * (len(index) + index.deleted_count)
    assert len(index) == 400
    for i in range(150):
        assert index.search(data[700 + i], 1)[0][0] == f"m{i}"


def test_single_threaded_builds_are_deterministic(data: np.ndarray) -> None:
    def build() -> VectorIndex:
        index = VectorIndex(DIM, MODEL, num_threads=1, compact_threshold=0.25)
        index.upsert(ids_of(800), data[:800])
        index.remove(ids_of(800)[::3])
        return index

    first, second = build(), build()
    for query in clustered(30, seed=14):
        assert first.search(query, 10) == second.search(query, 10)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["upsert", "remove"]),
            st.lists(st.integers(0, 30), min_size=1, max_size=8),
            st.integers(0, 2**31),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_matches_a_dictionary_model_under_any_history(
    ops: list[tuple[str, list[int], int]],
) -> None:
    index = VectorIndex(8, MODEL, num_threads=1, compact_threshold=0.3, initial_capacity=4, **GRAPH)
    model: dict[str, np.ndarray] = {}
    for op, keys, seed in ops:
        names = [f"k{key}" for key in keys]
        if op == "upsert":
            vectors = np.random.default_rng(seed).normal(size=(len(names), 8)).astype(np.float32)
            index.upsert(names, vectors)
            for name, vector in zip(names, vectors, strict=True):
                model[name] = vector / np.linalg.norm(vector)
        else:
            index.remove(names)
            for name in names:
                model.pop(name, None)
    assert len(index) == len(model) and set(index.ids()) == set(model)
    query = np.ones(8, dtype=np.float32) / np.sqrt(8)
    expected = sorted(((float(v @ query), k) for k, v in model.items()), reverse=True)[:5]
    got = index.exact_search(query, 5)
    np.testing.assert_allclose([s for _, s in got], [s for s, _ in expected], atol=1e-5)
    assert {i for i, _ in index.search(query, 40)} == set(model)


# -- facets ---------------------------------------------------------------------------------


def _facet_model(
    model: dict[str, tuple[np.ndarray, tuple[str, ...]]], clauses: list[list[str]]
) -> set[str]:
    return {m for m, (_, held) in model.items() if all(set(c) & set(held) for c in clauses)}


def test_facet_search_equals_exact_search_over_the_matching_memories(data: np.ndarray) -> None:
    """Every kind of clause (one facet, any of several, all of several), answered by exact
    scoring and by the graph, equals exact search over the memories that match."""
    rng = np.random.default_rng(21)
    spaces = [f"n:ns{i % 7}" for i in range(len(data))]
    tags = [
        tuple(f"t:{t}" for t in rng.choice(6, size=rng.integers(0, 3), replace=False)) for _ in data
    ]
    facets = [(s, *t) for s, t in zip(spaces, tags, strict=True)]
    exact = VectorIndex(DIM, MODEL, num_threads=1)
    graph = VectorIndex(DIM, MODEL, num_threads=1, exact_limit=0, filter_exact_limit=0)
    for index in (exact, graph):
        index.upsert(ids_of(len(data)), data, facets)
    model = {m: (data[i], facets[i]) for i, m in enumerate(ids_of(len(data)))}
    cases = [
        [["n:ns0"]],
        [["n:ns0", "n:ns3", "n:ns5"]],
        [["t:1"]],
        [["t:1", "t:4"]],
        [["t:1"], ["t:2"]],
        [["n:ns2"], ["t:0", "t:5"]],
        [["n:nobody"]],
        [[]],
        [],
    ]
    for clauses in cases:
        allowed = _facet_model(model, clauses)
        for query in clustered(10, seed=22):
            want = exact.exact_search(query, 10, allowed) if allowed else []
            assert exact.search_facets(query, 10, clauses) == want, clauses
            got = graph.search_facets(query, 10, clauses)
            assert {i for i, _ in got} <= allowed, clauses
            if len(allowed) >= 10:
                assert len(got) == 10


def test_facets_follow_replacements_removals_saves_and_compaction(tmp_path: Path) -> None:
    vectors = clustered(40, seed=23)
    index = VectorIndex(DIM, MODEL, num_threads=1, compact_threshold=None)
    index.upsert(ids_of(40), vectors, [("n:a", "t:x") if i % 2 else ("n:b",) for i in range(40)])
    query = vectors[0]

    def matching(clauses: list[list[str]]) -> set[str]:
        return {i for i, _ in index.search_facets(query, 40, clauses)}

    odd = {f"m{i}" for i in range(1, 40, 2)}
    assert matching([["t:x"]]) == odd and matching([["n:b"]]) == set(ids_of(40)) - odd
    index.upsert(["m1"], vectors[1:2], [("n:b", "t:y")])  # retagged, moved
    index.remove(["m3"])
    assert matching([["t:x"]]) == odd - {"m1", "m3"}
    assert matching([["t:y"]]) == {"m1"} and "m1" in matching([["n:b"]])
    index.save(tmp_path, offset=7)
    loaded = VectorIndex.load(tmp_path, DIM, MODEL)
    assert {i for i, _ in loaded.search_facets(query, 40, [["t:x"]])} == odd - {"m1", "m3"}
    index.compact()
    assert matching([["t:x"]]) == odd - {"m1", "m3"} and matching([["t:y"]]) == {"m1"}


def test_a_facets_file_of_the_wrong_length_is_unusable(tmp_path: Path, data: np.ndarray) -> None:
    index = VectorIndex(DIM, MODEL, num_threads=1)
    index.upsert(ids_of(10), data[:10], [("n:a",)] * 10)
    index.save(tmp_path, offset=1)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    entry = manifest["files"]["facets"]
    path = tmp_path / entry["name"]
    path.write_text(json.dumps([["n:a"]] * 9))
    entry["bytes"], entry["sha256"] = (
        path.stat().st_size,
        __import__("hashlib").sha256(path.read_bytes()).hexdigest(),
    )
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(IndexUnusable, match="facets file"):
        VectorIndex.load(tmp_path, DIM, MODEL)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["upsert", "remove", "compact"]),
            st.lists(st.integers(0, 30), min_size=1, max_size=8),
            st.lists(st.sampled_from(["n:a", "n:b", "t:x", "t:y", "t:z"]), max_size=3),
            st.integers(0, 2**31),
        ),
        min_size=1,
        max_size=25,
    ),
    st.lists(
        st.lists(st.sampled_from(["n:a", "n:b", "t:x", "t:y", "t:z"]), max_size=2), max_size=3
    ),
)
def test_facet_search_matches_a_dictionary_model(
    ops: list[tuple[str, list[int], list[str], int]], clauses: list[list[str]]
) -> None:
    index = VectorIndex(8, MODEL, num_threads=1, compact_threshold=0.3, initial_capacity=4)
    model: dict[str, tuple[np.ndarray, tuple[str, ...]]] = {}
    for op, keys, held, seed in ops:
        names = [f"k{key}" for key in keys]
        if op == "upsert":
            vectors = np.random.default_rng(seed).normal(size=(len(names), 8)).astype(np.float32)
            index.upsert(names, vectors, [held] * len(names))
            for name, vector in zip(names, vectors, strict=True):
                model[name] = (vector / np.linalg.norm(vector), tuple(held))
        elif op == "remove":
            index.remove(names)
            for name in names:
                model.pop(name, None)
        else:
            index.compact()
    query = np.ones(8, dtype=np.float32) / np.sqrt(8)
    assert {i for i, _ in index.search_facets(query, 40, clauses)} == _facet_model(model, clauses)


def test_bfloat16_preselection_keeps_the_exact_order(
    data: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large candidate sets are narrowed in bfloat16 before exact scoring: the top k and
    their float32 scores equal exact search's, and the copy follows writes and removals."""
    import memstream.projections.vectors as vectors_module

    monkeypatch.setattr(vectors_module, "PRESELECT_MIN", 100)
    monkeypatch.setattr(vectors_module, "PRESELECT_KEEP", 40)
    index = VectorIndex(DIM, MODEL, num_threads=1, compact_threshold=None)
    index.upsert(ids_of(2000), data[:2000], [("n:a",)] * 2000)
    queries = clustered(30, seed=31)
    for query in queries:
        assert index.search_facets(query, 10, [["n:a"]]) == index.exact_search(query, 10)
    index.upsert(ids_of(500), data[2000:2500], [("n:a",)] * 500)  # replaced after first use
    index.remove(ids_of(2000)[1000:1200])
    for query in queries:
        assert index.search_facets(query, 10, [["n:a"]]) == index.exact_search(query, 10)
