"""The data of the ``search`` suite: realistic memories, questions, and their cached vectors.

Memories are the labelled retrieval set (``tests/data/retrieval``: memories and questions
that paraphrase them) padded with :func:`~memstream.bench.corpus.distractor_corpus`
(docstring prose and templated personal facts) up to the suite's size. Recall measured on
uniform random vectors says nothing, so every vector is a real all-MiniLM-L6-v2 embedding.

Embedding 100,000 texts takes minutes on a small CPU, so the vectors go through
memstream's own durable :class:`~memstream.projections.embedding.EmbeddingCache`, kept in a
directory outside the repository (``$MEMSTREAM_BENCH_CACHE``, default
``~/.cache/memstream/bench``), keyed by the model id and the SHA-256 of each text: they are
computed once, in batches written as they complete (an interrupted run resumes), and reused
by every later run.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from memstream.bench.corpus import LabelledQuestion, distractor_corpus, load_labelled_set
from memstream.projections.embedding import CachedEmbedder, EmbeddingCache
from memstream.projections.models import LazyEmbedder
from memstream.settings import BenchSettings
from memstream.streams.settings import env_var

CACHE_ENV = env_var(BenchSettings, "cache")
LABELLED_ENV = env_var(BenchSettings, "labelled")
CACHE_FILE = "embeddings.sqlite"
#: Texts handed to the cached embedder per call (each call writes its batches durably).
CHUNK = 2_048


def default_cache_dir() -> Path:
    """``$MEMSTREAM_BENCH_CACHE`` or ``~/.cache/memstream/bench`` (XDG_CACHE_HOME honoured)."""
    configured = BenchSettings().cache
    if configured:
        return configured.expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "memstream" / "bench"


def labelled_dir() -> Path:
    """The labelled retrieval set: ``$MEMSTREAM_BENCH_LABELLED`` or the source checkout's."""
    configured = BenchSettings().labelled
    if configured:
        return configured.expanduser()
    return Path(__file__).resolve().parents[2] / "tests" / "data" / "retrieval"


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Corpus:
    ids: list[str]
    texts: list[str]
    questions: list[LabelledQuestion]
    labelled: int


def build_corpus(n: int, seed: int, questions: int | None = None) -> Corpus:
    """``n`` memories (the labelled ones first, then distractors) and the questions."""
    where = labelled_dir()
    if not (where / "memories.jsonl").is_file():
        raise FileNotFoundError(
            f"the labelled retrieval set is not at {where}; run the benchmark from a source "
            f"checkout or set ${LABELLED_ENV} to a folder with memories.jsonl and questions.jsonl"
        )
    memories, qs = load_labelled_set(where)
    ids = list(memories)[:n]
    texts = [memories[i] for i in ids]
    kept = set(ids)
    qs = [q for q in qs if q.answer_id in kept]
    if questions is not None:
        qs = qs[:questions]
    if n > len(ids):
        seen = set(texts)
        extra = [
            t for t in distractor_corpus(min(100_000, n - len(ids) + 64), seed) if t not in seen
        ]
        extra = extra[: n - len(ids)]
        if len(extra) < n - len(ids):
            raise ValueError(
                f"the distractor corpus yields {len(extra)} texts, need {n - len(ids)}"
            )
        ids += [f"d-{i:06d}" for i in range(len(extra))]
        texts += extra
    return Corpus(ids=ids, texts=texts, questions=qs, labelled=len(memories.keys() & kept))


class VectorCache:
    """Vectors of texts under the default model, from (and into) the bench's durable cache."""

    def __init__(self, directory: Path, model: LazyEmbedder | None = None) -> None:
        self.directory = Path(directory)
        self.model = model or LazyEmbedder()
        self.cache = EmbeddingCache(self.directory / CACHE_FILE)
        self.embedder = CachedEmbedder(self.model, self.cache)

    @property
    def model_id(self) -> str:
        return self.model.model_id

    def missing(self, texts: Sequence[str]) -> int:
        """How many distinct texts have no cached vector yet."""
        wanted = list(dict.fromkeys(text_hash(t) for t in texts))
        return len(wanted) - len(self.cache.cached_hashes(self.model_id, wanted))

    def vectors(
        self, texts: Sequence[str], tick: Callable[[int], None] | None = None
    ) -> npt.NDArray[np.float32]:
        """One unit vector per text: the missing ones are embedded and cached, then all read.

        Missing texts are embedded shortest first, so each batch pads to similar lengths
        (padding is most of the cost of batching texts of mixed lengths); every batch is
        written to the cache as it completes, so an interrupted run resumes where it
        stopped. ``tick(n)`` is called with the number of texts embedded per chunk.
        """
        hashes = [text_hash(t) for t in texts]
        have = self.cache.cached_hashes(self.model_id, hashes)
        todo = {h: t for h, t in zip(hashes, texts, strict=True) if h not in have}
        order = sorted(todo, key=lambda h: len(todo[h]))
        for start in range(0, len(order), CHUNK):
            chunk = order[start : start + CHUNK]
            self.embedder.embed([(h, todo[h]) for h in chunk])
            if tick:
                tick(len(chunk))
        out = np.empty((len(texts), self.model.dim), dtype=np.float32)
        for start in range(0, len(hashes), 10_000):
            part = hashes[start : start + 10_000]
            found = self.cache.get_many(self.model_id, part)
            if len(found) != len(set(part)):
                raise RuntimeError(f"the embedding cache {self.cache.path} lost vectors mid-run")
            out[start : start + len(part)] = np.stack([found[h] for h in part])
        return out

    def close(self) -> None:
        self.cache.close()


@dataclass
class EmbeddedCorpus:
    """A search corpus with the vectors of its texts and of its questions (cached)."""

    corpus: Corpus
    questions: list[str]
    vectors: npt.NDArray[np.float32]
    queries: npt.NDArray[np.float32]
    #: texts embedded by this run (cache misses), and the time that took
    embedded_now: int
    embed_seconds: float


def embedded_corpus(
    label: str,
    n: int,
    seed: int,
    n_questions: int,
    model: LazyEmbedder,
    cache_dir: Path,
    reporter: Any,
) -> EmbeddedCorpus:
    """The corpus of ``n`` memories for suite ``label`` and every vector it needs, the
    missing ones embedded into the bench's cache (with progress on ``reporter``)."""
    reporter.note(f"{label}: building the search corpus of {n:,} memories")
    corpus = build_corpus(n, seed, n_questions)
    cached = VectorCache(cache_dir, model)
    try:
        questions = [q.question for q in corpus.questions]
        missing = cached.missing(corpus.texts + questions)
        reporter.note(
            f"{label}: vectors cached in {cache_dir}: {n + len(questions) - missing:,}; "
            f"to embed: {missing:,}"
        )
        start = time.perf_counter()
        with reporter.task(f"{label}: embedding (cache misses)", missing) as tick:
            vectors = cached.vectors(corpus.texts, tick)
            queries = cached.vectors(questions, tick)
        seconds = time.perf_counter() - start
        embedded = cached.embedder.texts_embedded
    finally:
        cached.close()
    return EmbeddedCorpus(corpus, questions, vectors, queries, embedded, seconds)
