"""The real all-MiniLM-L6-v2 model: vectors, the durable cache, and retrieval on real data.

The model is loaded once for the module; every vector here comes from it.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from memstream.projections.embedding import (
    CachedEmbedder,
    Embedder,
    EmbeddingCache,
    TransformersEmbedder,
    default_model_path,
    model_fingerprint,
)
from memstream.projections.vectors import VectorIndex

from memstream.bench.corpus import distractor_corpus, evaluate_recall, load_labelled_set

RETRIEVAL_DATA = Path(__file__).resolve().parents[1] / "data" / "retrieval"


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def embedder() -> TransformersEmbedder:
    return TransformersEmbedder()


class CountingEmbedder:
    """Wraps the real model and records every call, to count forward batches."""

    def __init__(self, inner: TransformersEmbedder) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self.batch_size = inner.batch_size
        self.calls: list[int] = []

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return self.inner.embed(texts)


@pytest.fixture
def counting(embedder: TransformersEmbedder) -> CountingEmbedder:
    return CountingEmbedder(embedder)


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[EmbeddingCache]:
    with EmbeddingCache(tmp_path / "cache.sqlite") as c:
        yield c


def test_vectors_are_384_dimensional_float32_unit_rows(embedder: TransformersEmbedder) -> None:
    assert isinstance(embedder, Embedder)
    assert embedder.dim == 384
    assert embedder.model_id.startswith("all-MiniLM-L6-v2@")
    vectors = embedder.embed(["I like tea.", "", "a much longer sentence " * 200])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_matches_sentence_transformers_reference(embedder: TransformersEmbedder) -> None:
    """Same pooling and normalisation as the model's own sentence-transformers config."""
    from sentence_transformers import SentenceTransformer

    texts = ["The user prefers window seats.", "Kafka retention is seven days.", "ok"]
    reference = SentenceTransformer(str(default_model_path()), device="cpu").encode(
        texts, normalize_embeddings=True
    )
    np.testing.assert_allclose(embedder.embed(texts), reference, atol=1e-5)


def test_paraphrases_score_higher_than_unrelated_texts(embedder: TransformersEmbedder) -> None:
    a, b, c, d = embedder.embed(
        [
            "The user is allergic to penicillin.",
            "Which antibiotics cause them an allergic reaction?",
            "The staging cluster is reset every Sunday night.",
            "When is the test environment wiped?",
        ]
    )
    assert a @ b > a @ c + 0.2 and a @ b > a @ d + 0.2
    assert c @ d > c @ a + 0.2 and c @ d > c @ b + 0.2


def test_same_text_gives_the_same_vector(embedder: TransformersEmbedder) -> None:
    text = "Band rehearsal is every Wednesday evening."
    first = embedder.embed([text])[0]
    assert np.array_equal(first, embedder.embed([text])[0])
    # In a batch of other lengths (more padding) the vector agrees to float precision.
    batch = embedder.embed(["short", text, "a far longer text about something else " * 10])
    np.testing.assert_allclose(batch[1], first, atol=1e-5)


def test_output_order_follows_input_despite_length_sorting(embedder: TransformersEmbedder) -> None:
    texts = ["b " * 50, "a", "c " * 10, "d " * 30]
    together = embedder.embed(texts)
    one_by_one = np.stack([embedder.embed([t])[0] for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_missing_model_folder_is_named_in_the_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-model-here"
    with pytest.raises(FileNotFoundError, match="no-model-here"):
        TransformersEmbedder(path=missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="lacks config.json"):
        TransformersEmbedder(path=tmp_path / "empty")


def test_model_id_detects_another_model_at_the_same_path(tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(default_model_path(), copy)
    original = model_fingerprint(copy)
    assert original == model_fingerprint(default_model_path())
    assert model_fingerprint(copy, max_length=128) != original
    weights = copy / "model.safetensors"
    with weights.open("r+b") as handle:  # one weight byte differs: same size, same header
        handle.seek(weights.stat().st_size - 10)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 1]))
    assert model_fingerprint(copy) != original


def test_cache_hit_avoids_model_calls(counting: CountingEmbedder, cache: EmbeddingCache) -> None:
    cached = CachedEmbedder(counting, cache, batch_size=4)
    texts = [f"Memory number {i} about topic {i % 3}." for i in range(10)]
    items = [(content_hash(t), t) for t in texts]
    first = cached.embed(items)
    assert cached.model_calls == 3 and counting.calls == [4, 4, 2]
    assert cached.texts_embedded == 10 and cached.cache_hits == 0

    second = cached.embed(list(reversed(items)))
    assert cached.model_calls == 3 and len(counting.calls) == 3  # nothing recomputed
    assert cached.cache_hits == 10
    np.testing.assert_array_equal(second, first[::-1])

    fresh = ("new", "A memory that was never embedded.")
    cached.embed([items[0], fresh, items[1]])
    assert counting.calls[-1] == 1 and cached.texts_embedded == 11


def test_duplicates_within_a_call_are_embedded_once(
    counting: CountingEmbedder, cache: EmbeddingCache
) -> None:
    cached = CachedEmbedder(counting, cache)
    items = [("h1", "same text"), ("h2", "other text"), ("h1", "same text")]
    vectors = cached.embed(items)
    assert counting.calls == [2] and cached.texts_embedded == 2
    np.testing.assert_array_equal(vectors[0], vectors[2])


def test_cache_survives_reopening(
    counting: CountingEmbedder, tmp_path: Path, embedder: TransformersEmbedder
) -> None:
    items = [(content_hash(t), t) for t in ("alpha fact", "beta fact", "gamma fact")]
    with EmbeddingCache(tmp_path / "c.sqlite") as cache:
        expected = CachedEmbedder(counting, cache).embed(items)
    with EmbeddingCache(tmp_path / "c.sqlite") as cache:
        again = CachedEmbedder(counting, cache)
        np.testing.assert_array_equal(again.embed(items), expected)
        assert again.model_calls == 0 and again.cache_hits == 3
        assert cache.count(embedder.model_id) == 3


def test_cache_is_keyed_by_model(cache: EmbeddingCache) -> None:
    cache.put_many("model-a", [("h", np.ones(4))])
    assert set(cache.get_many("model-a", ["h", "missing"])) == {"h"}
    assert cache.get_many("model-b", ["h"]) == {}


def test_cache_batches_large_requests_and_ignores_torn_rows(tmp_path: Path) -> None:
    with EmbeddingCache(tmp_path / "c.sqlite") as cache:
        vectors = np.random.default_rng(0).normal(size=(1200, 8)).astype(np.float32)
        assert cache.put_many("m", [(f"h{i}", v) for i, v in enumerate(vectors)]) == 1200
        got = cache.get_many("m", [f"h{i}" for i in range(1200)])
        assert len(got) == 1200
        np.testing.assert_array_equal(got["h1199"], vectors[1199])
    with sqlite3.connect(tmp_path / "c.sqlite") as conn:
        conn.execute("UPDATE embeddings SET vector = x'0000' WHERE content_hash = 'h5'")
    with EmbeddingCache(tmp_path / "c.sqlite") as cache:
        assert set(cache.get_many("m", ["h5", "h6"])) == {"h6"}
    with sqlite3.connect(tmp_path / "c.sqlite") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_corrupt_cache_file_is_reported_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "broken.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ValueError, match="broken.sqlite.*delete the file"):
        EmbeddingCache(path)


def test_put_vectors_checks_the_dimension(
    counting: CountingEmbedder, cache: EmbeddingCache
) -> None:
    cached = CachedEmbedder(counting, cache)
    with pytest.raises(ValueError, match=r"dimension 100, expected 384"):
        cached.put_vectors(["h"], np.ones((1, 100)))
    with pytest.raises(ValueError, match="2 content hashes but 1 vectors"):
        cached.put_vectors(["h", "i"], np.ones((1, 384)))
    cached.put_vectors(["supplied"], np.full(384, 3.0))
    vector = cached.embed([("supplied", "text the model never sees")])[0]
    assert counting.calls == [] and cached.cache_hits == 1
    np.testing.assert_allclose(vector, np.full(384, 1 / np.sqrt(384)), atol=1e-6)


@pytest.fixture(scope="module")
def labelled_index(embedder: TransformersEmbedder) -> tuple[VectorIndex, list]:
    """The labelled memories and 400 distractors, embedded by the batch path, in a
    VectorIndex that always searches its graph; and the labelled questions."""
    memories, questions = load_labelled_set(RETRIEVAL_DATA)
    distractors = distractor_corpus(400, seed=0)
    ids = list(memories) + [f"d{i}" for i in range(len(distractors))]
    vectors = embedder.embed(list(memories.values()) + distractors)
    index = VectorIndex(embedder.dim, embedder.model_id, exact_limit=0)  # always the graph
    index.upsert(ids, vectors)
    return index, questions


def test_semantic_retrieval_on_labelled_paraphrases(
    embedder: TransformersEmbedder, labelled_index: tuple[VectorIndex, list]
) -> None:
    """Real MiniLM vectors in the ANN index: recall against exact search and on questions."""
    index, questions = labelled_index
    query_vectors = embedder.embed([q.question for q in questions])

    overlap = 0
    for query in query_vectors:
        exact = {i for i, _ in index.exact_search(query, 10)}
        overlap += len(exact & {i for i, _ in index.search(query, 10)})
    assert overlap / (10 * len(questions)) >= 0.98

    by_question = dict(zip((q.question for q in questions), query_vectors, strict=True))
    scores = evaluate_recall(
        lambda q: [i for i, _ in index.search(by_question[q], 10)], questions, ks=(1, 5, 10)
    )
    assert scores[1] >= 0.6 and scores[10] >= 0.85


# -- the query path (embed_query): one short text, the same vector space -------------------


def _query_texts() -> list[str]:
    """The 220 questions of the labelled set and a few edge cases."""
    _, questions = load_labelled_set(RETRIEVAL_DATA)
    return [q.question for q in questions] + [
        "", "ok", "Überweisung an Zoë, 5 € — schon erledigt? 🙂", "token " * 400,
    ]  # fmt: skip


def _reference(embedder: TransformersEmbedder, texts: list[str]) -> np.ndarray:
    """Plain transformers on the same weights, one text at a time: mean pooling, L2 norm."""
    import torch

    rows = []
    with torch.inference_mode():
        for text in texts:
            enc = embedder._tokenizer([text], truncation=True, max_length=256, return_tensors="pt")
            hidden = embedder._model(**enc).last_hidden_state
            pooled = hidden.mean(dim=1)  # one text: every token counts
            rows.append(torch.nn.functional.normalize(pooled, dim=1)[0].numpy())
    return np.stack(rows)


#: How far each query path's unit vectors may be from the float32 model's, per component.
#: bfloat16 products: at most 1.1e-3 measured on the labelled questions (cosine 0.99998).
QUERY_TOLERANCE = {"onednn-bf16": 5e-3, "onednn-prepacked": 1e-5, "eager": 1e-5}


def _bf16_machine() -> bool:
    from memstream.projections import embedding

    return embedding._cpu_has_bf16()


@pytest.mark.slow
def test_query_path_agrees_with_the_batch_path_and_reference(
    embedder: TransformersEmbedder,
) -> None:
    texts = _query_texts()
    model_id = embedder.model_id
    fast = np.stack([embedder.embed_query(t) for t in texts])
    assert embedder.query_path in QUERY_TOLERANCE
    if _bf16_machine():  # where the CPU multiplies bfloat16, queries take that path
        assert embedder.query_path == "onednn-bf16"
    assert embedder.model_id == model_id  # stored vectors are the batch path's, unchanged
    assert fast.shape == (len(texts), 384) and fast.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    sample = texts[::8] + texts[-4:]
    for got, want in (
        (fast, embedder.embed(texts)),
        (fast[[texts.index(t) for t in sample]], _reference(embedder, sample)),
    ):
        cosine = np.sum(got * want, axis=1)
        assert cosine.min() >= 0.9999
        assert np.abs(got - want).max() < QUERY_TOLERANCE[embedder.query_path]


def test_query_tokens_are_the_tokenizers(embedder: TransformersEmbedder) -> None:
    """The query path tokenizes through the tokenizer's backend directly: the same ids
    and token types as the tokenizer's own call, truncation included; and the same
    vector through the tokenizer's call where there is no backend."""
    texts = _query_texts()
    for text in texts:
        want = embedder._tokenizer(text, truncation=True, max_length=256, return_tensors="pt")
        got = embedder._query_inputs(text)
        assert set(got) == {"input_ids", "token_type_ids"}
        for key in got:
            assert got[key].tolist() == want[key].tolist(), text
    assert embedder._query_inputs(texts[-1])["input_ids"].shape == (1, 256)
    backend, embedder._query_tokenizer = embedder._query_tokenizer, None
    try:
        slow = {t: embedder.embed_query(t) for t in texts[:5]}
    finally:
        embedder._query_tokenizer = backend
    for text, vector in slow.items():
        assert np.array_equal(embedder.embed_query(text), vector)


@pytest.mark.slow
def test_float32_query_precision_is_the_float32_math() -> None:
    """``query_precision="float32"``: the prepacked float32 path, equal to the batch path
    to rounding (sums in another order)."""
    exact = TransformersEmbedder(query_precision="float32")
    texts = _query_texts()[::10]
    fast = np.stack([exact.embed_query(t) for t in texts])
    assert exact.query_path in ("onednn-prepacked", "eager")
    assert np.abs(fast - exact.embed(texts)).max() < 1e-5


@pytest.mark.slow
def test_query_path_is_deterministic(embedder: TransformersEmbedder) -> None:
    texts = _query_texts()[:40]
    first = [embedder.embed_query(t) for t in texts]
    embedder.embed(texts)  # a batch in between changes nothing
    for text, vector in zip(reversed(texts), reversed(first), strict=True):
        assert np.array_equal(embedder.embed_query(text), vector)


@pytest.mark.slow
def test_batch_embedding_is_unchanged_by_the_query_path() -> None:
    """Document vectors (what stores hold) come from the batch path, which queries leave
    alone: bitwise the same before and after the first queries, and equal to plain
    transformers."""
    import torch

    memories, _ = load_labelled_set(RETRIEVAL_DATA)
    texts = list(memories.values())[:64]
    fresh = TransformersEmbedder()
    before = fresh.embed(texts)
    threads = torch.get_num_threads()
    for text in texts[:5]:
        fresh.embed_query(text)
    assert torch.get_num_threads() == threads  # the query's own setting was undone
    assert np.array_equal(fresh.embed(texts), before)
    np.testing.assert_allclose(before[:16], _reference(fresh, texts[:16]), atol=1e-6)


@pytest.mark.slow
def test_query_path_recall_equals_the_batch_path(
    embedder: TransformersEmbedder, labelled_index: tuple[VectorIndex, list]
) -> None:
    """Recall@10 of the labelled questions over documents embedded by the batch path (as
    stores hold them): the query path's vectors against the batch path's."""
    index, questions = labelled_index
    texts = [q.question for q in questions]
    old = dict(zip(texts, embedder.embed(texts), strict=True))
    new = {t: embedder.embed_query(t) for t in texts}
    recall = {
        name: evaluate_recall(
            lambda q, v=vectors: [i for i, _ in index.search(v[q], 10)], questions
        )
        for name, vectors in (("old", old), ("new", new))
    }
    assert abs(recall["new"][10] - recall["old"][10]) <= 0.005
    assert recall["new"][10] >= 0.85
    # and the top 10 themselves, exact search over the labelled memories and distractors:
    # nearly all the same, at most two swapped at the tail for any question
    old_v, new_v = np.stack([old[t] for t in texts]), np.stack([new[t] for t in texts])
    overlap = [
        len({i for i, _ in index.exact_search(a, 10)} & {i for i, _ in index.exact_search(b, 10)})
        for a, b in zip(old_v, new_v, strict=True)
    ]
    assert np.mean(overlap) >= 9.8 and min(overlap) >= 8


def test_query_threads_are_the_calling_threads_own(embedder: TransformersEmbedder) -> None:
    """The query sets its torch threads for its own thread only, and restores them."""
    import threading

    import torch

    seen: dict[str, int] = {}
    go, done = threading.Event(), threading.Event()

    def other() -> None:
        seen["before"] = torch.get_num_threads()
        go.set()
        done.wait(10)
        seen["after"] = torch.get_num_threads()

    worker = threading.Thread(target=other)
    worker.start()
    go.wait(10)
    threads = torch.get_num_threads()
    embedder.embed_query("Is the other thread's setting left alone?")
    done.set()
    worker.join()
    assert torch.get_num_threads() == threads
    assert seen["after"] == seen["before"]
    with pytest.raises(TypeError):
        embedder.embed_query(["not", "a", "str"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="query_threads"):
        TransformersEmbedder(query_threads=0)
    with pytest.raises(ValueError, match="query_precision"):
        TransformersEmbedder(query_precision="int8")


def _unavailable(model: object) -> object:
    raise RuntimeError("not on this machine")


@pytest.mark.parametrize(
    ("missing", "path", "tolerance"),
    [
        (["_bf16_encoder"], "onednn-prepacked", 1e-5),  # float32 without bfloat16
        (["_bf16_encoder", "_prepacked_copy"], "eager", 1e-6),  # the model itself
    ],
)
def test_query_path_falls_back_when_a_faster_one_is_unavailable(
    monkeypatch: pytest.MonkeyPatch, missing: list[str], path: str, tolerance: float
) -> None:
    from memstream.projections import embedding

    for name in missing:
        monkeypatch.setattr(embedding, name, _unavailable)
    fallback = TransformersEmbedder()
    text = "Which herb should be left out of dishes I cook for them?"
    vector = fallback.embed_query(text)
    assert fallback.query_path == path
    np.testing.assert_allclose(vector, fallback.embed([text])[0], atol=tolerance)


def test_a_query_model_that_disagrees_on_the_probes_is_not_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fast path that drifts from the float32 model (here: the bfloat16 encoder with one
    weight perturbed by 2%, or one whose output is off on one probe only) is rejected by
    the probes, and queries take the next path."""
    import torch
    from memstream.projections import embedding

    real = embedding._bf16_encoder

    def perturbed(model: object) -> object:
        encoder = real(model)
        (weight, bias), *rest = encoder.layers[2]
        encoder.layers[2] = ((weight, bias * 1.02 + 0.02), *rest)
        return encoder

    monkeypatch.setattr(embedding, "_bf16_encoder", perturbed)
    drifted = TransformersEmbedder()
    text = "Do they ever have seafood even though they don't eat meat?"
    vector = drifted.embed_query(text)
    assert drifted.query_path in ("onednn-prepacked", "eager")
    np.testing.assert_allclose(vector, drifted.embed([text])[0], atol=1e-5)

    class OffOnOneText(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, **kw: torch.Tensor) -> object:
            out = self.inner(input_ids, **kw)
            if input_ids.shape[1] > 20:  # the long probe sentence only
                out.last_hidden_state[..., 0] += 0.5
            return out

    monkeypatch.setattr(embedding, "_bf16_encoder", lambda m: OffOnOneText(real(m)))
    once = TransformersEmbedder()
    once.embed_query(text)
    assert once.query_path in ("onednn-prepacked", "eager")


def test_bf16_encoder_takes_one_unpadded_text(embedder: TransformersEmbedder) -> None:
    """Where the CPU multiplies bfloat16 the lean encoder refuses a batch or padding;
    elsewhere it is never built (the query path falls back to float32)."""
    import torch
    from memstream.projections import embedding

    if not _bf16_machine():
        with pytest.raises(RuntimeError, match="bfloat16"):
            embedding._bf16_encoder(embedder._model)
        return
    encoder = embedding._bf16_encoder(embedder._model)
    enc = embedder._tokenizer(["a short one", "and a longer text"], padding=True,
                              return_tensors="pt")  # fmt: skip
    with torch.inference_mode(), pytest.raises(ValueError, match="one unpadded text"):
        encoder(**enc)
    with torch.inference_mode(), pytest.raises(ValueError, match="one unpadded text"):
        encoder(enc["input_ids"][:1], attention_mask=enc["attention_mask"][:1])
