"""Search end to end: real MiniLM, real hnswlib and tantivy, through SDK, HTTP and CLI.

The model is loaded once per process (LazyEmbedder shares it); stores are small. Stores
here are opened with ``semantic=True`` (the suite's default is off, see tests/conftest.py).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from memstream.projections.models import LazyEmbedder
from memstream.projections.semantic import LIVE_STATES
from memstream.projections.vectors import VectorIndex
from typer.testing import CliRunner

from memstream import MemoryStore
from memstream.bench.corpus import load_labelled_set
from memstream.errors import MalformedEvent

RETRIEVAL = Path(__file__).resolve().parents[1] / "data" / "retrieval"


@pytest.fixture(scope="module")
def model() -> LazyEmbedder:
    m = LazyEmbedder()
    m.model()  # load once for the module
    return m


def open_store(path: Path, model: LazyEmbedder, **kw) -> MemoryStore:
    return MemoryStore.open(path, durability="os", semantic=True, embedder=model, **kw)


@pytest.fixture
def store(tmp_path: Path, model: LazyEmbedder) -> Iterator[MemoryStore]:
    s = open_store(tmp_path / "s", model)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def labelled() -> list[tuple[str, str, str]]:
    """(memory id, text, a question that paraphrases it), the first 40 of the set."""
    memories, questions = load_labelled_set(RETRIEVAL)
    first = {}
    for q in questions:
        first.setdefault(q.answer_id, q.question)
    return [(mid, memories[mid], first[mid]) for mid in list(memories)[:40] if mid in first]


def fill(store: MemoryStore, labelled) -> int:
    """Create the labelled memories over 3 namespaces with tags; return the last offset."""
    batch = []
    for i, (mid, text, _) in enumerate(labelled):
        ns = ("user/alice", "user/bob", "team/support")[i % 3]
        tags = [("red", "green", "blue")[i % 3], ("odd" if i % 2 else "even")]
        batch.append(
            store.event("create", ns, mid, {"text": text, "tags": tags,
                                            "metadata": {"n": i % 4, "src": "set"}})
        )  # fmt: skip
    outs = store.append(batch)
    return outs[-1].offset


def ids(hits) -> list[str]:
    return [h.memory.memory_id for h in hits]


def live_ids(store: MemoryStore) -> set[str]:
    return {m.memory_id for m in store.runtime.state.memories.values() if m.state in LIVE_STATES}


# -- finding ------------------------------------------------------------------------------------


def test_finds_by_meaning_and_by_words(store: MemoryStore, labelled) -> None:
    head = fill(store, labelled)
    ticket = store.create("team/support", "Escalation runbook for incident INC-88412 on db3")
    found = 0
    for mid, _, question in labelled:
        hits = store.search(question, k=5, min_offset=head)
        found += mid in ids(hits)
        assert all(h.semantic_score is not None or h.keyword_score is not None for h in hits)
    assert found / len(labelled) >= 0.7  # recall@5 of paraphrased questions, by meaning
    by_word = store.search("INC-88412", k=3, alpha=0.0, min_offset=ticket.offset)
    assert ids(by_word)[0] == ticket.memory_id and by_word[0].keyword_score > 0
    fused = store.search("INC-88412", k=3, min_offset=ticket.offset)
    assert ids(fused)[0] == ticket.memory_id
    hit = fused[0]
    assert hit.memory.namespace == "team/support" and hit.memory.state == "active"


def test_filters_never_lose_recall_against_exact(store: MemoryStore, labelled) -> None:
    head = fill(store, labelled)
    store.archive(labelled[0][0])
    mid_time = datetime.now(UTC)
    late = store.create(
        "user/alice", "The user keeps a sourdough starter named Gerald", tags=["red"]
    )
    head = late.offset
    filters = [
        dict(namespaces=["user/alice"]),
        dict(namespaces=["user/bob", "team/support"], tags_any=["red", "blue"]),
        dict(tags_all=["green", "odd"]),
        dict(states=["active"], metadata={"n": 2}),
        dict(created_after=mid_time),
        dict(created_before=mid_time, kinds=["plaintext"]),
        dict(include_archived=True, tags_any=["red"]),
        dict(updated_after=mid_time, namespaces=["user/alice"]),
    ]
    for f in filters:
        for _, _, question in labelled[:8]:
            for alpha in (None, 1.0, 0.5):
                approx = store.search(question, k=5, alpha=alpha, min_offset=head, **f)
                exact = store.search(question, k=5, alpha=alpha, exact=True, **f)
                assert ids(approx) == ids(exact), (f, question, alpha)
    assert ids(store.search("sourdough", created_after=mid_time)) == [late.memory_id]
    assert late.memory_id not in ids(store.search("sourdough", created_before=mid_time))
    only_bob = store.search("food", namespaces="user/bob", k=50)
    assert only_bob and {h.memory.namespace for h in only_bob} == {"user/bob"}
    both = store.search("food", tags_all=["red", "even"], k=50)
    assert both and all({"red", "even"} <= set(h.memory.tags) for h in both)


def test_include_archived_and_states(store: MemoryStore) -> None:
    a = store.create("user/alice", "Alice's cat Miso loves tuna")
    b = store.create("user/alice", "Alice's dog Rex chews shoes")
    out = store.archive(a.memory_id)
    assert a.memory_id not in ids(store.search("cat", min_offset=out.offset))
    with_archived = store.search("cat", include_archived=True)
    assert ids(with_archived)[0] == a.memory_id
    assert with_archived[0].memory.state == "archived"
    assert ids(store.search("cat", states=["archived"])) == [a.memory_id]
    assert b.memory_id in ids(store.search("dog"))
    restored = store.restore(a.memory_id)
    assert ids(store.search("cat", min_offset=restored.offset))[0] == a.memory_id


def test_as_of_answers_as_the_store_stood(store: MemoryStore) -> None:
    a = store.create("user/alice", "The user's favourite colour is teal")
    b = store.create("user/alice", "The user is learning to play the cello")
    then = b.offset
    store.revise(a.memory_id, "The user's favourite colour is now orange")
    last = store.archive(b.memory_id)
    now = store.search("cello lessons", min_offset=last.offset)
    assert b.memory_id not in ids(now)
    past = store.search("cello lessons", as_of=then)
    assert ids(past)[0] == b.memory_id and past[0].memory.state == "active"
    colour_then = store.search("favourite colour", as_of=then, k=1)[0].memory
    assert colour_then.text == "The user's favourite colour is teal" and colour_then.version == 1
    colour_now = store.search("favourite colour", k=1)[0].memory
    assert colour_now.text.endswith("orange") and colour_now.version == 2
    before_anything = store.search("cello", as_of=a.offset)
    assert b.memory_id not in ids(before_anything)


def test_supplied_vectors(store: MemoryStore, model: LazyEmbedder, tmp_path: Path) -> None:
    zebra = model.embed(["striped animals of the African savanna"])[0].tolist()
    m = store.create("user/alice", "record 17", vector=zebra)
    hits = store.search("zebras grazing in Africa", k=1, alpha=1.0, min_offset=m.offset)
    assert ids(hits) == [m.memory_id]
    calls = store.semantic.embedder.model_calls
    assert calls == 0  # the supplied vector was used, not the model
    head = store.head
    with pytest.raises(MalformedEvent) as bad:
        store.create("user/alice", "wrong size", vector=[0.1] * 7)
    assert bad.value.field == "$.payload.vector" and "384" in str(bad.value)
    assert store.head == head  # nothing appended
    with pytest.raises(ValueError, match="dimension 3"):
        store.search(vector=[1.0, 0.0, 0.0])
    by_vector = store.search(vector=zebra, k=1)
    assert ids(by_vector) == [m.memory_id]


def test_follower_survives_a_raw_vector_of_the_wrong_dimension(
    tmp_path: Path, model: LazyEmbedder
) -> None:
    path = tmp_path / "s"
    with MemoryStore.open(path, durability="os", semantic=False) as raw:  # no check possible
        bad = raw.create("user/alice", "a note about quantum tunnelling", vector=[0.5] * 7)
    with open_store(path, model) as s:
        s.flush()
        assert "dimension 7" in s.semantic.problems[bad.memory_id]
        assert bad.memory_id not in s.semantic.vectors
        assert ids(s.search("tunnelling", alpha=0.0)) == [bad.memory_id]


# -- checkpoints and rebuilds -------------------------------------------------------------------


def _results(store: MemoryStore, labelled) -> list[list[str]]:
    return [ids(store.search(q, k=5, min_offset=store.head)) for _, _, q in labelled[:10]]


def test_restart_resumes_from_the_manifest_without_embedding(
    tmp_path: Path, model: LazyEmbedder, labelled
) -> None:
    path = tmp_path / "s"
    with open_store(path, model) as s:
        fill(s, labelled)
        before = _results(s, labelled)
    with open_store(path, model) as s:
        assert _results(s, labelled) == before
        assert s.semantic.rebuild_reason is None
        assert s.semantic.embedder.model_calls == 0
        extra = s.create("user/bob", "The user collects vintage fountain pens")
    with open_store(path, model) as s:  # behind: catches up from its checkpoint
        assert ids(s.search("fountain pens", k=1, min_offset=extra.offset)) == [extra.memory_id]
        assert s.semantic.rebuild_reason is None and s.semantic.embedder.model_calls == 0


@pytest.mark.parametrize("damage", ["truncated", "other_dimension", "missing", "other_model"])
def test_unusable_index_is_rebuilt_with_same_results(
    tmp_path: Path, model: LazyEmbedder, labelled, damage: str
) -> None:
    path = tmp_path / "s"
    with open_store(path, model) as s:
        fill(s, labelled)
        before = _results(s, labelled)
        offset = s.head
    vec_dir = path / "state" / "semantic" / "vectors"
    if damage == "truncated":
        graph = next(vec_dir.glob("graph-*.bin"))
        graph.write_bytes(graph.read_bytes()[:1000])
    elif damage == "other_dimension":
        shutil.rmtree(vec_dir)
        VectorIndex(8, model.model_id).save(vec_dir, offset)
    elif damage == "missing":
        shutil.rmtree(path / "state" / "semantic")
    else:
        info = path / "state" / "semantic" / "follower.json"
        data = json.loads(info.read_text())
        data["model_id"] = "another-model@0000"
        info.write_text(json.dumps(data))
    with open_store(path, model) as s:
        assert _results(s, labelled) == before
        assert s.semantic.rebuild_reason is not None
        assert s.semantic.embedder.model_calls == 0  # vectors came from the cache


def test_rebuild_and_replay_make_zero_model_calls(
    tmp_path: Path, model: LazyEmbedder, labelled
) -> None:
    path = tmp_path / "s"
    with open_store(path, model) as s:
        fill(s, labelled)
        s.archive(labelled[1][0])
        before = _results(s, labelled)
        with s.replay(tmp_path / "replay") as r:
            assert _results(r, labelled) == before
            assert r.semantic.embedder.model_calls == 0
    shutil.rmtree(path / "state")  # every projection rebuilt from the log
    with open_store(path, model) as s:
        assert _results(s, labelled) == before
        assert s.semantic.embedder.model_calls == 0


def test_erase_removes_from_both_indexes_and_the_cache(store: MemoryStore) -> None:
    # one subject (user/alice) for both: the erase of one memory leaves the other searchable
    keep = store.create("user/alice", "Alice runs the Berlin marathon every September")
    gone = store.create("user/alice", "Alice's passport number is in the blue folder")
    store.flush()
    assert ids(store.search("passport blue folder", k=1)) == [gone.memory_id]
    cache = store.semantic.embedder.cache
    assert cache.count() == 2
    out = store.erase(gone.memory_id)
    for alpha in (1.0, 0.5, 0.0):
        hits = store.search("passport blue folder", alpha=alpha, min_offset=out.offset)
        assert gone.memory_id not in ids(hits)
    assert gone.memory_id not in store.semantic.vectors
    assert store.semantic.keywords.search("passport", 5) == []
    assert cache.count() == 1  # its vector is gone from the cache too
    assert ids(store.search("marathon", k=1)) == [keep.memory_id]
    for alpha in (1.0, 0.5, 0.0):
        (hit,) = store.search("Berlin marathon in September", k=1, alpha=alpha)
        assert hit.memory.memory_id == keep.memory_id
        assert hit.memory.text == "Alice runs the Berlin marathon every September"
    assert gone.memory_id not in ids(store.search("passport", exact=True, states=["erased"]))


# -- hits served from memory ------------------------------------------------------------------------


def test_filtered_searches_and_hits_come_from_the_view_and_never_stale(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import memstream.projections.search as search_module

    bike = store.create("user/alice", "The user's bike is a green Brompton", tags=["ride"])
    car = store.create("user/alice", "The user's car is a red Fiat 500", tags=["ride"])
    store.search("bike", k=2, min_offset=car.offset)  # the follower indexed both
    queried: list[str] = []

    def refuse(*args, **kw):  # type: ignore[no-untyped-def]
        queried.append(args[0] if args else "")
        raise AssertionError("a search of the current state read DuckDB")

    monkeypatch.setattr(search_module, "_memories", refuse)
    monkeypatch.setattr(search_module, "_candidates", refuse)
    hits = store.search("bike", k=2, namespaces=["user/alice"], tags_any=["ride"])
    assert {h.memory.memory_id for h in hits} == {bike.memory_id, car.memory_id}
    assert hits[0].memory == store.get(bike.memory_id)

    revised = store.revise(bike.memory_id, "The user's bike is a blue Brompton")
    top = store.search("bike", k=1, namespaces=["user/alice"], min_offset=revised.offset)[0]
    assert top.memory.text == "The user's bike is a blue Brompton" and top.memory.version == 2
    archived = store.archive(car.memory_id)
    found = store.search("car", k=2, tags_any=["ride"], min_offset=archived.offset)
    assert car.memory_id not in {h.memory.memory_id for h in found}
    assert queried == []

    monkeypatch.undo()  # while the view is not loaded, DuckDB answers the same
    assert store.views is not None
    store.views.ready = False
    again = store.search("car", k=2, tags_any=["ride"], min_offset=archived.offset)
    assert [h.memory for h in again] == [h.memory for h in found]


# -- usage ----------------------------------------------------------------------------------------


def test_usage_indicators_are_counted_in_batches(store: MemoryStore, model: LazyEmbedder) -> None:
    m = store.create("user/alice", "The user's bike is a green Brompton")
    first = store.search("bike", k=1, min_offset=m.offset)[0]
    assert first.access_count == 0
    store.get(m.memory_id)
    buffered = store.search("bike", k=1)[0]  # accesses not flushed yet are counted too
    assert buffered.access_count == 2 and buffered.heat > 1.9
    store.usage_tracker.flush()
    again = store.search("bike", k=1)[0]
    assert again.access_count == 3 and again.last_access is not None and again.heat > 2.9
    rows = store.runtime.duck.query(
        "SELECT access_count FROM usage WHERE memory_id = ?", [m.memory_id]
    )
    assert rows == [{"access_count": 3}]  # flushed in one batch to the usage table
    store.close()
    reopened = open_store(store.path, model)
    try:
        assert reopened.search("bike", k=1)[0].access_count == 4  # mirrored from the table
    finally:
        reopened.close()


# -- HTTP and CLI ---------------------------------------------------------------------------------


def test_http_and_client_search(store: MemoryStore) -> None:
    from memstream.client import HttpMemoryStore
    from memstream.http import create_app

    m = store.create("team/support", "Reset the VPN token from the admin console", tags=["it"])
    client = TestClient(create_app(store))
    resp = client.post("/v1/search", json={"query": "vpn token", "k": 3,
                                           "min_offset": m.offset, "tags_any": ["it"]})  # fmt: skip
    assert resp.status_code == 200, resp.text
    hits = resp.json()["hits"]
    assert hits[0]["memory"]["memory_id"] == m.memory_id and hits[0]["score"] > 0
    bad = client.post("/v1/search", json={"query": "x", "alpha": 2})
    assert bad.status_code == 400 and "alpha" in bad.json()["message"]
    remote = HttpMemoryStore("http://testserver")
    remote._http = client
    got = remote.search("vpn token", namespaces="team/support", k=1, min_offset=m.offset)
    assert ids(got) == [m.memory_id]


def test_cli_search(tmp_path: Path, model: LazyEmbedder) -> None:
    from memstream.cli import app

    path = tmp_path / "s"
    with open_store(path, model) as s:
        m = s.create("user/alice", "The user's locker code is on a sticky note", tags=["home"])
        s.flush()
    runner = CliRunner()
    res = runner.invoke(app, ["search", "locker code", "--store", str(path), "--k", "2",
                              "--tag", "home", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    cli_body = json.loads(res.stdout)
    assert cli_body["hits"][0]["memory"]["memory_id"] == m.memory_id
    # --json is the body POST /v1/search answers (but for the usage the first search added)
    from memstream.http import create_app

    with open_store(path, model) as s, TestClient(create_app(s)) as c:
        http = c.post("/v1/search", json={"query": "locker code", "k": 2, "tags_any": ["home"]})
    usage = ("access_count", "last_access", "heat")
    strip = lambda body: [{k: v for k, v in h.items() if k not in usage} for h in body["hits"]]  # noqa: E731
    assert list(cli_body) == list(http.json()) == ["hits"]
    assert strip(cli_body) == strip(http.json())
    table = runner.invoke(app, ["search", "locker", "--store", str(path), "--exact"])
    assert table.exit_code == 0 and "search: locker" in table.stdout and "active" in table.stdout


# -- the consistency property -------------------------------------------------------------------

TEXTS = [
    "The user drinks green tea every morning",
    "The server room door code changed in March",
    "Grandma's lasagne recipe needs fresh basil",
    "The quarterly budget review moved to Thursday",
    "The user is allergic to peanuts",
    "Backups of the billing database run nightly",
    "The cat's vet appointment is next Tuesday",
    "The user prefers aisle seats on trains",
]
OPS = st.lists(
    st.tuples(
        st.sampled_from(["create", "revise", "archive", "restore", "expire", "erase",
                         "merge", "activate", "rollback"]),
        st.integers(0, 5), st.integers(0, len(TEXTS) - 1),
    ),
    min_size=1, max_size=12,
)  # fmt: skip


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_search_consistency_property(tmp_path_factory, model: LazyEmbedder, ops) -> None:
    """After any sequence of lifecycle events: the indexes hold exactly the live memories,
    search never returns a memory that is not live unless asked, and always finds a live
    one by its exact text."""
    path = tmp_path_factory.mktemp("prop")
    with open_store(path, model) as s:
        made: list[str] = []
        for op, which, t in ops:
            text = TEXTS[t]
            if op == "create" or not made:
                mid = f"m{len(made)}"
                made.append(mid)
                s.append([s.event("create", "user/alice", mid, {"text": text},
                                  subject=f"subj/{mid}")])  # fmt: skip
                continue
            mid = made[which % len(made)]
            if op == "merge":
                target = f"m{len(made)}"
                made.append(target)
                srcs = list(dict.fromkeys([mid, made[(which + 1) % (len(made) - 1)]]))
                if len(srcs) == 2:
                    s.append([s.event("merge", "user/alice", target,
                                      {"sources": srcs, "text": text})])  # fmt: skip
                continue
            payload = {"text": text} if op == "revise" else (
                {"to_version": 1} if op == "rollback" else
                {"scope": "memory"} if op == "erase" else {}
            )  # fmt: skip
            s.append([s.event(op, "user/alice", mid, payload)])
        s.flush()
        states = {m.memory_id: m for m in s.runtime.state.memories.values()}
        live = live_ids(s)
        assert set(s.semantic.vectors.ids()) == live
        assert len(s.semantic.keywords) == len(live)
        for text in TEXTS:
            hits = s.search(text, k=10)
            assert set(ids(hits)) <= live
            assert {h.memory.state for h in hits} <= set(LIVE_STATES)
        for mid in live:
            m = s.get(mid)
            assert m is not None and m.text is not None
            assert mid in ids(s.search(m.text, k=len(live))), (mid, m.text)
        archived = {i for i, m in states.items() if m.state == "archived"}
        with_archived = s.search("the", k=50, alpha=1.0, include_archived=True)
        assert set(ids(with_archived)) <= live | archived


def test_namespace_and_tag_filters_are_answered_by_the_indexes(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Filters on namespaces and tags select their candidates inside the indexes (no
    candidate query, no scan of the view), and still follow every change of tags."""
    a = store.create("user/alice", "Alice's cat Miso loves tuna", tags=["pets"])
    b = store.create("user/bob", "Bob's cat Pixel sleeps all day", tags=["pets"])
    store.create("user/alice", "Alice takes the 8:15 train", tags=["travel"])
    store.flush()  # every index holds them
    import memstream.projections.search as search_module

    assert store.views is not None

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a namespace or tag filter scanned candidates outside the index")

    monkeypatch.setattr(store.views, "select", refuse)
    monkeypatch.setattr(search_module, "_candidates", refuse)
    alice = store.search("cat", namespaces=["user/alice"], alpha=1.0)
    assert ids(alice)[0] == a.memory_id and {h.memory.namespace for h in alice} == {"user/alice"}
    assert set(ids(store.search("cat", tags_any=["pets"], alpha=1.0))) == {a.memory_id, b.memory_id}
    for alpha in (None, 0.5, 0.0):  # the keyword index filters by namespace and tags too
        hits = store.search("cat", tags_any=["pets"], namespaces=["user/bob"], alpha=alpha)
        assert ids(hits) == [b.memory_id], alpha
    out = store.revise(b.memory_id, "Bob's cat Pixel sleeps all day", tags=["indoor"])
    store.flush()
    assert ids(store.search("cat", tags_any=["pets"], alpha=1.0, min_offset=out.offset)) == [
        a.memory_id
    ]
    assert ids(store.search("cat", tags_all=["indoor"], namespaces=["user/bob"], alpha=1.0)) == [
        b.memory_id
    ]
