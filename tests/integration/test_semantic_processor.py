"""The search indexes as a processor of decided events agree with a rebuild from the core.

The indexes follow the decided events (content from the event that made it, or from its
version for a restore or a rollback); a rebuild reads the core projection's current state.
After every kind of lifecycle change, both must hold the same memories, the same current
views (the ones searches return) and the same vectors. Real MiniLM embeddings.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from memstream.projections.models import LazyEmbedder

from memstream import MemoryStore


@pytest.fixture(scope="module")
def model() -> LazyEmbedder:
    m = LazyEmbedder()
    m.model()
    return m


def open_store(path: Path, model: LazyEmbedder) -> MemoryStore:
    return MemoryStore.open(path, durability="os", semantic=True, embedder=model)


def indexed(store: MemoryStore) -> dict:
    store.flush()
    proj = store.semantic
    ids = sorted(proj.vectors.ids())
    views = store.views.memories(ids)
    missing = [m for m in ids if m not in views]
    return {
        "ids": ids,
        "keywords": len(proj.keywords),
        "views": views,
        "missing": missing,
        "vectors": {m: proj.vectors.vector(m) for m in ids},
    }


def test_event_driven_indexes_equal_a_rebuild(tmp_path: Path, model: LazyEmbedder) -> None:
    root = tmp_path / "s"
    with open_store(root, model) as store:
        a = store.create("user/a", "Alice drinks green tea", tags=["drink"])
        b = store.create("user/a", "Alice works at ACME")
        c = store.create("user/a", "Alice has a cat named Tom", metadata={"pet": True})
        d = store.create("user/b", "Bob likes jazz")
        e = store.create("user/b", "Bob plays chess", vector=[0.5] * 384)
        store.revise(a.memory_id, "Alice drinks jasmine tea", tags=["drink", "tea"])
        store.archive(b.memory_id)
        store.restore(b.memory_id)  # live again: content from its version
        store.revise(c.memory_id, "Alice has two cats")
        store.rollback(c.memory_id, 1)  # content of version 1, as version 3
        store.merge("user/b", [d.memory_id, e.memory_id], "Bob: jazz and chess")
        store.expire(b.memory_id)
        x = store.create("user/c", "Carol's secret diary")
        store.erase(x.memory_id)
        store.activate(a.memory_id)
        store.freeze(c.memory_id)
        live = indexed(store)
    assert live["missing"] == []
    assert len(live["ids"]) == 3  # a, c, the merge
    assert live["views"][c.memory_id].text == "Alice has a cat named Tom"
    assert live["views"][c.memory_id].version == 3

    shutil.rmtree(root / "state" / "semantic")  # rebuilt from the core's current state
    with open_store(root, model) as store:
        rebuilt = indexed(store)
        assert store.semantic.rebuild_reason is not None
        # and every view equals a plain read of the projection
        for memory_id, view in live["views"].items():
            assert store.get(memory_id) == view

    assert live["ids"] == rebuilt["ids"]
    assert live["keywords"] == rebuilt["keywords"]
    assert live["views"] == rebuilt["views"]
    for memory_id in live["ids"]:
        np.testing.assert_array_equal(live["vectors"][memory_id], rebuilt["vectors"][memory_id])
