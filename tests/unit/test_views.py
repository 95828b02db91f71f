"""The current-memory view (``projections/views.py``) against the DuckDB reads it replaces.

Random workloads through every lifecycle operation; after each batch every memory's
``get`` and ``history`` from the view must equal :mod:`memstream.projections.reads` over
DuckDB, a reopened store (the view loaded from DuckDB) must equal the live one, and the
candidates the view selects for random filters must be the DuckDB candidate query's.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from memstream.projections import reads
from memstream.projections.search import SearchQuery, _candidates
from memstream.projections.views import MemoryViews

from memstream import MemoryStore

NAMESPACES = ("user/alice", "user/bob", "team/x")
SUBJECTS = ("person/alice", "person/bob", None)
TAGS = ("a", "b", "c", "d")


def _open(path: Path) -> MemoryStore:
    return MemoryStore.open(path, actor="tester", durability="os", semantic=False)


def _batch(store: MemoryStore, rng: random.Random, ids: list[str]) -> list:
    ops = ["create", "create", "revise", "revise", "merge", "archive", "restore", "activate",
           "rollback", "expire", "freeze", "unfreeze", "erase"]  # fmt: skip
    batch = []
    for _ in range(rng.randint(1, 6)):
        op = rng.choice(ops) if len(ids) >= 3 else "create"
        if op == "erase" and rng.random() < 0.7:
            op = "revise"  # erasures end memories: keep them rarer
        tags = rng.sample(TAGS, rng.randint(0, 2))
        meta = rng.choice([{}, {"k": rng.randint(0, 2)}, {"k": "x", "n": {"deep": [1, 2]}}])
        if op == "create":
            mid = f"mem-{len(ids)}"
            ids.append(mid)
            subject = rng.choice(SUBJECTS)
            kw = {"subject": subject} if subject else {}
            payload = {"text": f"fact {rng.random():.6f}", "tags": tags, "metadata": meta,
                       "kind": rng.choice(["plaintext", "plaintext", "activation"])}  # fmt: skip
            batch.append(store.event("create", rng.choice(NAMESPACES), mid, payload, **kw))
            continue
        mid = rng.choice(ids)
        m = store.runtime.state.memories.get(mid)
        ns = m.namespace if m is not None else rng.choice(NAMESPACES)
        on = {"subject": m.subject} if m is not None else {}
        if op == "merge":
            known = store.runtime.state.memories
            peers = [
                i for i in ids if (p := known.get(i)) is not None and m is not None
                and i != mid and (p.namespace, p.subject) == (m.namespace, m.subject)
            ]  # fmt: skip
            if not peers:
                continue
            target = f"mem-{len(ids)}"
            ids.append(target)
            payload = {"sources": [mid, rng.choice(peers)], "text": "fused", "tags": tags}
            batch.append(store.event("merge", ns, target, payload, **on))
        elif op == "revise":
            payload = {"text": f"rev {rng.random():.6f}"}
            if rng.random() < 0.5:
                payload["tags"] = tags
            if rng.random() < 0.5:
                payload["metadata"] = meta
            batch.append(store.event("revise", ns, mid, payload, **on))
        elif op == "rollback":
            to = rng.randint(1, max(1, m.version - 1)) if m is not None else 1
            batch.append(store.event("rollback", ns, mid, {"to_version": to}, **on))
        elif op == "erase":
            scope = rng.choice(["memory", "memory", "subject"])
            batch.append(
                store.event(op, ns, mid, {"reason": "erase by test", "scope": scope}, **on)
            )
        else:
            batch.append(store.event(op, ns, mid, {"reason": f"{op} by test"}, **on))
    return batch


def _append_random(store: MemoryStore, rng: random.Random, ids: list[str]) -> None:
    if batch := _batch(store, rng, ids):  # a merge without peers adds nothing
        store.append(batch)


def _assert_same(store: MemoryStore, ids: list[str]) -> None:
    """Every memory read through the store (the view) equals the DuckDB read."""
    views = store.views
    assert views is not None and views.ready
    duck = store.runtime.duck
    for mid in [*ids, "never-created"]:
        assert store.get(mid) == reads.get_memory(duck, mid), mid
        assert store.history(mid) == reads.history(duck, mid), mid
        assert store.history(mid, include_parents=False) == reads.history(duck, mid, False), mid


def _random_query(rng: random.Random, now: datetime) -> SearchQuery:
    q = SearchQuery(vector=[0.0])
    if rng.random() < 0.6:
        q.namespaces = rng.sample(NAMESPACES + ("nobody",), rng.randint(1, 3))
    if rng.random() < 0.4:
        q.tags_any = rng.sample(TAGS, rng.randint(1, 2))
    if rng.random() < 0.3:
        q.tags_all = rng.sample(TAGS, rng.randint(1, 2))
    if rng.random() < 0.3:
        q.states = rng.sample(["active", "activated", "archived", "expired", "merged", "erased"],
                              rng.randint(1, 3))  # fmt: skip
    q.include_archived = rng.random() < 0.3
    if rng.random() < 0.2:
        q.kinds = [rng.choice(["plaintext", "activation"])]
    if rng.random() < 0.2:
        q.metadata = rng.choice([{"k": 1}, {"k": "x"}, {"n": {"deep": [1, 2]}}, {"k": 0}])
    if rng.random() < 0.2:
        q.created_after = now - timedelta(seconds=rng.random())
    if rng.random() < 0.2:
        q.updated_before = now + timedelta(seconds=rng.random())
    return q


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_view_equals_duckdb_after_every_batch(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    ids: list[str] = []
    with _open(tmp_path / "s") as store:
        for _ in range(40):
            _append_random(store, rng, ids)
            store.flush()
            _assert_same(store, ids)
        ids.append("doomed")
        store.append([
            store.event("create", "user/alice", "doomed", {"text": "x", "tags": ["a"]},
                        subject="person/doomed"),
            store.event("revise", "user/alice", "doomed", {"text": "y"}, subject="person/doomed"),
            store.event("erase", "user/alice", "doomed", {"scope": "memory"},
                        subject="person/doomed"),
        ])  # fmt: skip
        store.flush()
        _assert_same(store, ids)
        live = {mid: (store.get(mid), store.history(mid)) for mid in ids}
        assert live["doomed"][0].state == "erased", live["doomed"]
        assert {m.state for m, _ in live.values() if m is not None} >= {"active", "erased"}
    with _open(tmp_path / "s") as store:  # the view loaded from DuckDB
        store.flush()
        assert {mid: (store.get(mid), store.history(mid)) for mid in ids} == live
        _assert_same(store, ids)


@pytest.mark.parametrize("seed", [4, 5])
def test_filtered_candidates_equal_the_duckdb_candidate_query(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    ids: list[str] = []
    with _open(tmp_path / "s") as store:
        for _ in range(30):
            _append_random(store, rng, ids)
        store.flush()
        views = store.views
        assert views is not None
        now = datetime.now(UTC)
        for _ in range(300):
            q = _random_query(rng, now)
            want = {c.memory_id for c in _candidates(store.runtime.duck, q)}
            assert views.select(q) == want, q


def test_reads_wait_for_the_view_and_read_their_writes(tmp_path: Path) -> None:
    with _open(tmp_path / "s") as store:
        first = store.create("user/alice", "v1", tags=["t"])
        mid = first.memory_id
        for i in range(2, 60):
            out = store.revise(mid, f"v{i}", tags=[f"t{i}"])
            m = store.get(mid, min_offset=out.offset)
            assert (m.version, m.text, m.tags) == (i, f"v{i}", [f"t{i}"])
            assert [v.version for v in store.history(mid, min_offset=out.offset)] == list(
                range(1, i + 1)
            )
        # Without min_offset a read is never older than the core projection's offset.
        out = store.archive(mid)
        store.runtime.wait_for(out.offset)
        assert store.get(mid).state == "archived"


def test_an_erase_drops_the_content_from_the_view_at_once(tmp_path: Path) -> None:
    with _open(tmp_path / "s") as store:
        a = store.create("user/alice", "secret", subject="person/alice", tags=["x"],
                         metadata={"k": "v"})  # fmt: skip
        store.revise(a.memory_id, "secret 2")
        out = store.erase(a.memory_id)
        m = store.get(a.memory_id, min_offset=out.offset)
        assert m.state == "erased" and m.text is None and m.content_hash is None
        assert m.tags == [] and m.metadata == {}
        views = store.views
        assert views is not None
        _, versions = views._entries[a.memory_id]
        assert all(v[2] is None and v[3] is None and v[4] == () and v[5] == {} for v in versions)
        assert views.select(SearchQuery(vector=[0.0], tags_any=["x"])) == set()


def test_a_returned_view_is_the_callers_own(tmp_path: Path) -> None:
    with _open(tmp_path / "s") as store:
        out = store.create("user/alice", "tea", tags=["t"], metadata={"n": {"deep": [1]}})
        m = store.get(out.memory_id, min_offset=out.offset)
        m.tags.append("mutated")
        m.metadata["n"]["deep"].append(2)
        again = store.get(out.memory_id)
        assert again.tags == ["t"] and again.metadata == {"n": {"deep": [1]}}


def test_reads_go_to_duckdb_while_the_view_is_not_ready(tmp_path: Path) -> None:
    with _open(tmp_path / "s") as store:
        out = store.create("user/alice", "tea")
        views = store.views
        assert isinstance(views, MemoryViews)
        views.ready = False  # as while loading, or after its lane failed
        assert store.get(out.memory_id, min_offset=out.offset).text == "tea"
        assert len(store.history(out.memory_id)) == 1


def test_a_view_cancelled_by_a_closing_store_is_never_served(tmp_path: Path) -> None:
    with _open(tmp_path / "s") as store:
        first = store.create("user/alice", "tea")
        views = store.views
        assert views is not None
        store.flush()
        views.cancel()  # what close does first, so that a load in progress is not awaited
        assert not views.ready
        out = store.revise(first.memory_id, "coffee")
        assert store.get(first.memory_id, min_offset=out.offset).text == "coffee"  # DuckDB
        store.flush()
        assert views.checkpoint == out.offset  # the lane moves on, applying nothing
        assert views.get(first.memory_id).text == "tea"
