"""Shared fixtures: real stores in temporary directories."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from memstream import MemoryStore

# Stores opened by tests keep no search indexes unless a test asks for them
# (MemoryStore.open(semantic=True)): no embedding model in tests that do not search.
os.environ.setdefault("MEMSTREAM_SEMANTIC", "0")


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(store_dir: Path) -> Iterator[MemoryStore]:
    s = MemoryStore.open(store_dir, actor="tester", durability="os")
    try:
        yield s
    finally:
        s.close()


def take_snapshot(store: MemoryStore) -> dict[str, list]:
    """Every projected table of a store, in a canonical order (for equality checks)."""
    store.flush()
    q = store.runtime.duck.query
    return {
        "memories": q("SELECT * FROM memories ORDER BY memory_id"),
        "versions": q("SELECT * FROM versions ORDER BY memory_id, version"),
        "transitions": q('SELECT * FROM transitions ORDER BY "offset", memory_id'),
        "audit": q('SELECT * FROM audit ORDER BY "offset"'),
        "artifacts": q("SELECT * FROM artifacts ORDER BY artifact_id"),
        "subjects": q("SELECT * FROM subjects ORDER BY subject"),
    }


@pytest.fixture
def snapshot():
    return take_snapshot


def run_workload(
    store: MemoryStore, rng, n: int, namespaces=("user/alice", "user/bob"), erases: bool = True
) -> None:
    """``n`` random operations (many valid, some rejected) through the SDK, in small batches;
    ``erases=False``: none that erase (which make past content unreadable, by design)."""
    ids: list[str] = []
    ops = ["revise", "archive", "restore", "activate", "expire", "freeze", "unfreeze",
           "rollback", "merge", "create", "create", "revise"] + ["erase"] * erases  # fmt: skip
    done = 0
    while done < n:
        batch = []
        for _ in range(rng.randint(1, 8)):
            op = rng.choice(ops) if len(ids) >= 2 else "create"
            ns = rng.choice(namespaces)
            if op == "create":
                mid = f"mem-{len(ids)}"
                ids.append(mid)
                batch.append(
                    store.event("create", ns, mid, {"text": f"fact {rng.random():.6f}",
                                                    "tags": [rng.choice("abc")]})
                )  # fmt: skip
                continue
            mid = rng.choice(ids)
            m = store.runtime.state.memories.get(mid)
            ns = m.namespace if m is not None and rng.random() < 0.9 else ns
            if op == "merge":
                srcs = rng.sample(ids, k=2)
                target = f"mem-{len(ids)}"
                ids.append(target)
                batch.append(store.event("merge", ns, target, {"sources": srcs, "text": "fused"}))
            elif op == "revise":
                batch.append(store.event("revise", ns, mid, {"text": f"rev {rng.random():.6f}"}))
            elif op == "rollback":
                batch.append(store.event("rollback", ns, mid, {"to_version": 1}))
            elif op == "erase":  # one memory; now and then a whole subject
                scope = "subject" if rng.random() < 0.2 else "memory"
                mid = mid if scope == "memory" else f"subject-erase-{done}"
                batch.append(store.event("erase", ns, mid, {"scope": scope, "reason": "test"}))
            else:
                batch.append(store.event(op, ns, mid, {"reason": f"{op} by test"}))
        store.append(batch)
        done += len(batch)


@pytest.fixture
def workload():
    return run_workload


class HashEmbedder:
    """A fast deterministic embedder (16 dimensions, no model): for tests that need a store
    with search on but do not test the ranking."""

    model_id = "test-hash@1"
    dim = 16

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for j, ch in enumerate(t[:64]):
                out[i, (ord(ch) + j) % self.dim] += 1.0
            out[i, 0] += 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture(scope="session")
def hash_embedder() -> HashEmbedder:
    return HashEmbedder()


class HeldProjection:
    """Holds a store's core projection writes until :meth:`release` (what a slow DuckDB
    transaction does), so that what readers see before the commit can be checked."""

    def __init__(self, store: MemoryStore):
        self.gate = threading.Event()
        self.duck = store.runtime.duck
        self.write = self.duck.write
        self.duck.write = self._held  # type: ignore[method-assign]

    def _held(self, batch) -> None:
        self.gate.wait(30)
        self.write(batch)

    def release(self) -> None:
        self.gate.set()
        self.duck.write = self.write  # type: ignore[method-assign]


@pytest.fixture
def hold_projection() -> Iterator[Callable[[MemoryStore], HeldProjection]]:
    """``hold_projection(store)``: hold that store's projection writes (released at the
    end of the test at the latest)."""
    made: list[HeldProjection] = []

    def hold(store: MemoryStore) -> HeldProjection:
        made.append(HeldProjection(store))
        return made[-1]

    yield hold
    for held in made:
        held.release()
