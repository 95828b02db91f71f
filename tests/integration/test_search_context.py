"""Contextual indexing, time hints, and exact search ranking as the normal path does.

Real MiniLM, hnswlib and tantivy; stores opened with ``semantic=True``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from memstream.projections.context import indexed
from memstream.projections.fusion import keyword_bonus
from memstream.projections.models import LazyEmbedder
from memstream.projections.search import DEFAULT_ALPHA, TIME_HINT_BONUS
from memstream.projections.timehints import period_of

from memstream import MemoryStore
from memstream.bench.corpus import load_labelled_set
from memstream.bench.dialogue_recall import memories_of
from memstream.bench.dialogues import load_dialogues

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def model() -> LazyEmbedder:
    m = LazyEmbedder()
    m.model()
    return m


@pytest.fixture
def store(tmp_path: Path, model: LazyEmbedder) -> Iterator[MemoryStore]:
    s = MemoryStore.open(tmp_path / "s", durability="os", semantic=True, embedder=model)
    try:
        yield s
    finally:
        s.close()


def ids(hits) -> list[str]:
    return [h.memory.memory_id for h in hits]


TURN = "Guilty. Biscuit is two and already owns the sofa."
CONTEXT = "Maya, Tuesday 9 May 2023, answering Tobias: Since when do you have a dog?"


def test_the_context_is_indexed_with_the_text_but_not_returned(store: MemoryStore) -> None:
    turn = store.create("chat", TURN, metadata={"context": CONTEXT, "date": "2023-05-09"})
    other = store.create("chat", "Tobias has a dog called Rex who chews shoes")
    store.flush()
    for alpha in (0.0, DEFAULT_ALPHA):
        hits = store.search("Maya's dog", alpha=alpha, k=2, min_offset=other.offset)
        assert ids(hits)[0] == turn.memory_id, alpha
        assert hits[0].memory.text == TURN and hits[0].memory.metadata["context"] == CONTEXT
    # Alone, the turn names neither Maya nor a dog: keywords find it only by its context.
    assert store.semantic.keywords.search("Maya", 5)[0][0] == turn.memory_id
    exact = store.search("Maya's dog", k=2, exact=True)
    assert ids(exact) == ids(store.search("Maya's dog", k=2))
    # Archived, it is scored outside the index, still with its context.
    out = store.archive(turn.memory_id)
    for exact_flag in (False, True):
        hits = store.search(
            "Maya", alpha=0.0, include_archived=True, exact=exact_flag, min_offset=out.offset
        )
        assert ids(hits)[:1] == [turn.memory_id]


def test_a_contextual_vector_is_cached_under_its_own_key_and_erased(store: MemoryStore) -> None:
    turn = store.create("chat", TURN, metadata={"context": CONTEXT}, subject="person/maya")
    plain = store.create("chat", TURN)  # same text, no context: another vector
    store.flush()
    cache = store.semantic.embedder.cache
    assert cache.count() == 2
    view = store.get(turn.memory_id)
    text, key = indexed(view.text, view.content_hash, view.metadata)
    assert text == f"{CONTEXT}\n{TURN}" and key != view.content_hash
    assert cache.cached_hashes(store.semantic.embedder.model_id, [key]) == {key}
    store.erase(turn.memory_id)
    store.flush()
    assert cache.cached_hashes(store.semantic.embedder.model_id, [key]) == set()
    assert ids(store.search("sofa", k=5)) == [plain.memory_id]


def test_rebuilt_indexes_reuse_the_contextual_vectors(tmp_path: Path, model) -> None:
    path = tmp_path / "s"
    with MemoryStore.open(path, durability="os", semantic=True, embedder=model) as s:
        s.create("chat", TURN, metadata={"context": CONTEXT})
        s.flush()
        before = ids(s.search("Maya's dog", k=1))
    shutil.rmtree(path / "state" / "semantic")
    with MemoryStore.open(path, durability="os", semantic=True, embedder=model) as s:
        assert ids(s.search("Maya's dog", k=1, min_offset=s.head)) == before
        assert s.semantic.embedder.model_calls == 0


def test_periods_read_from_the_query() -> None:
    assert period_of("What was Maya reading in May 2023?") == (date(2023, 5, 1), date(2023, 6, 1))
    assert period_of("on Tuesday 9th May, 2023") == (date(2023, 5, 9), date(2023, 5, 10))
    assert period_of("May 9, 2023 and June 2023") == (date(2023, 5, 9), date(2023, 5, 10))
    assert period_of("2023-12-31") == (date(2023, 12, 31), date(2024, 1, 1))
    assert period_of("everything in 2022") == (date(2022, 1, 1), date(2023, 1, 1))
    assert period_of("May I ask what 2023 looked like?") is None
    assert period_of("ticket 2023-13-40") is None


def test_query_hints_rank_memories_of_that_period_first(store: MemoryStore) -> None:
    made = {}
    for day, book in (("2023-03-14", "Dune"), ("2023-05-09", "Piranesi"), ("2023-08-02", "Circe")):
        out = store.create("chat", f"I'm reading {book} at the moment",
                           metadata={"date": day})  # fmt: skip
        made[day] = out.memory_id
    undated = store.create("chat", "Reading is my favourite way to spend an evening")
    for alpha in (1.0, DEFAULT_ALPHA, 0.0):
        hits = store.search(
            "What was I reading in May 2023?", alpha=alpha, min_offset=undated.offset
        )
        assert ids(hits)[0] == made["2023-05-09"], alpha
        assert hits[0].score > TIME_HINT_BONUS > hits[1].score
        assert ids(store.search("reading on 2 August 2023", alpha=alpha))[0] == made["2023-08-02"]
    plain = store.search("What was I reading in May 2023?", query_hints=False)
    assert all(h.score < TIME_HINT_BONUS for h in plain)


# -- exact=True ranks as the normal path does -------------------------------------------------------


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory, model: LazyEmbedder):
    """A store of 40 labelled facts and 3 conversations' turns with contexts, some archived."""
    path = tmp_path_factory.mktemp("busy") / "s"
    store = MemoryStore.open(path, durability="os", semantic=True, embedder=model)
    memories, questions = load_labelled_set(DATA / "retrieval")
    events = [
        store.event("create", ("user/alice", "user/bob")[i % 2], mid, {"text": text})
        for i, (mid, text) in enumerate(list(memories.items())[:40])
    ]
    dialogues = load_dialogues(DATA / "dialogues")
    turns = [t for t in dialogues.turns if t.conversation < 3 and t.session < 6]
    for memory_id, text, metadata in memories_of(turns, "speaker+date+previous"):
        events.append(
            store.event("create", "chat", memory_id, {"text": text, "metadata": metadata})
        )
    store.append(events)
    archived = [t.id for t in turns[::17]] + ["mem-003", "mem-010"]
    for memory_id in archived:
        out = store.archive(memory_id)
    store.flush()
    asked = [q.question for q in questions[:6]]
    asked += [q.question for q in dialogues.questions if q.conversation < 3][:10]
    try:
        yield store, asked, out.offset
    finally:
        store.close()


@pytest.mark.parametrize("alpha", [1.0, DEFAULT_ALPHA, 0.5, 0.0])
def test_exact_ranks_like_the_normal_path_for_every_mode(busy, alpha: float) -> None:
    store, asked, head = busy
    for extra in ({}, {"namespaces": ["chat", "user/bob"]}, {"include_archived": True}):
        for question in asked:
            for hints in (True, False):
                kw = dict(k=10, alpha=alpha, query_hints=hints, **extra)
                normal = store.search(question, min_offset=head, **kw)
                exact = store.search(question, exact=True, **kw)
                assert ids(normal) == ids(exact), (question, extra, hints)
                assert [h.keyword_score or 0.0 for h in normal] == pytest.approx(
                    [h.keyword_score or 0.0 for h in exact], rel=1e-5
                )


def test_the_default_score_is_the_same_filtered_or_not(busy) -> None:
    """A memory's default score depends on the query and the indexes only, not on the
    other candidates: what merging the Kafka runtime's partitions by score relies on."""
    store, asked, head = busy
    assert DEFAULT_ALPHA is None
    compared = 0
    for question in asked:
        for hints in (True, False):
            everywhere = store.search(question, k=20, query_hints=hints, min_offset=head)
            scores = {h.memory.memory_id: h.score for h in everywhere}
            for h in everywhere:  # every candidate is scored on both signals
                assert h.semantic_score is not None
                if not hints:
                    fused = (1 + h.semantic_score) / 2 + keyword_bonus(h.keyword_score)
                    assert h.score == pytest.approx(fused)
            for exact in (False, True):
                chat = store.search(
                    question, k=10, query_hints=hints, namespaces=["chat"], exact=exact,
                    min_offset=head,
                )  # fmt: skip
                for h in chat:
                    if h.memory.memory_id in scores:
                        compared += 1
                        assert h.score == pytest.approx(scores[h.memory.memory_id], abs=1e-5)
    assert compared > 100
