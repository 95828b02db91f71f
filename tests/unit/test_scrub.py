"""What an erase leaves in the files of each projection, piece by piece.

- DuckDB keeps deleted and overwritten values in free blocks: ``DuckStore.rewrite`` leaves
  only the live rows, keeps every table, constraint and row, and lets readers run
  meanwhile;
- tantivy keeps a removed document's terms until its segments merge: ``purge`` rewrites
  the index, and an erasure leaves it ``purge_pending`` across a reopen;
- hnswlib saves a deleted element's vector: ``save`` blanks it in the graph file;
- the runner's ``flush`` reaches every processor after it caught up.
"""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb
import numpy as np
import pytest
import tantivy
from memstream.projections.duck import REWRITE_SUFFIX, DuckStore
from memstream.projections.keyword import KeywordIndex
from memstream.projections.vectors import VectorIndex

MARK = "zqxmarker4f1e9b7c2a"


def _bytes_under(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))


def _fill(store: DuckStore, n: int = 2_000) -> None:
    store.db.execute(
        "INSERT INTO memories (memory_id, namespace, tags) "
        f"SELECT 'm' || i, 'user/a', ['{MARK}' || i || '#'] FROM range({n}) t(i)"
    )
    store.db.execute(
        "INSERT INTO versions (memory_id, version, text) "
        f"SELECT 'm' || i, 1, 'text of {MARK}' || i || '!' FROM range({n}) t(i)"
    )


def test_a_rewrite_leaves_only_the_live_rows_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "core.duckdb"
    store = DuckStore(path)
    _fill(store)
    store.db.execute("CHECKPOINT")
    store.db.execute("UPDATE versions SET text = NULL WHERE memory_id = 'm7'")
    store.db.execute("DELETE FROM memories WHERE memory_id = 'm7'")
    store.db.execute("CHECKPOINT")
    text, tag = f"text of {MARK}7!".encode(), f"{MARK}7#".encode()
    assert text in _bytes_under(path) and tag in _bytes_under(path), "DuckDB left the bytes"
    done = store.rewrite({"note": "rewritten"})
    assert done.bytes == path.stat().st_size and done.copy_seconds >= 0
    data = _bytes_under(path)
    assert text not in data and tag not in data
    assert f"text of {MARK}70!".encode() in data  # the neighbours stay
    rows = store.query("SELECT count(*) AS n, count(text) AS t FROM versions")[0]
    assert rows == {"n": 2_000, "t": 1_999}
    assert store.query("SELECT count(*) AS n FROM memories")[0]["n"] == 1_999
    assert store.meta()["note"] == "rewritten"
    with pytest.raises(duckdb.ConstraintException):  # the primary key came along
        store.db.execute("INSERT INTO memories (memory_id) VALUES ('m1')")
    assert not path.with_name(path.name + REWRITE_SUFFIX).exists()
    store.close()


def test_readers_run_while_the_file_is_rewritten(tmp_path: Path) -> None:
    store = DuckStore(tmp_path / "core.duckdb")
    _fill(store)
    errors: list[BaseException] = []
    stop = threading.Event()
    counts: list[int] = []

    def read() -> None:
        try:
            while not stop.is_set():
                counts.append(store.query("SELECT count(*) AS n FROM versions")[0]["n"])
                with store.reading() as cur:
                    cur.execute("SELECT max(version) FROM versions").fetchone()
        except BaseException as e:
            errors.append(e)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    for _ in range(5):
        store.rewrite()
    stop.set()
    for t in readers:
        t.join()
    assert not errors, errors
    assert counts and set(counts) == {2_000}
    store.close()


def test_a_rewrite_cut_short_leaves_the_old_file_and_is_cleaned_on_open(tmp_path: Path) -> None:
    path = tmp_path / "core.duckdb"
    store = DuckStore(path)
    _fill(store, 10)
    store.close()
    leftover = path.with_name(path.name + REWRITE_SUFFIX)
    leftover.write_bytes(b"half a copy")
    store = DuckStore(path)
    assert not leftover.exists()
    assert store.query("SELECT count(*) AS n FROM versions")[0]["n"] == 10
    store.close()


def test_a_pending_erase_is_scrubbed_once(tmp_path: Path) -> None:
    store = DuckStore(tmp_path / "core.duckdb")
    assert store.scrub() is None  # no erase: nothing to do
    store.db.execute(
        "INSERT INTO audit (\"offset\", type, status) VALUES (4, 'erase', 'accepted'), "
        "(5, 'erase', 'rejected')"
    )
    store.db.execute("INSERT INTO projection_offsets VALUES ('core', 6)")
    assert store.erase_pending()
    assert store.scrub() is not None
    assert not store.erase_pending() and store.scrub() is None
    store.close()


def _terms(root: Path, prefix: str) -> list:
    return tantivy.Index.open(str(root / "tantivy")).searcher().terms_with_prefix("text", prefix)


def test_a_purge_drops_the_terms_of_erased_documents_from_the_files(tmp_path: Path) -> None:
    index = KeywordIndex(tmp_path)
    index.upsert([("a", "ns", f"secret {MARK}"), ("b", "ns", "public words")])
    index.commit(1)
    index.remove(["a"], erased=True)
    index.commit(2)
    assert _terms(tmp_path, MARK[:10]), "a removal leaves the terms in the segments"
    index.close()
    reopened = KeywordIndex.open(tmp_path)
    assert reopened.purge_pending, "the obligation survives a reopen"
    assert reopened.purge([("b", "ns", "public words")], 2) == 1
    assert not _terms(tmp_path, MARK[:10])
    assert reopened.search("public", 5) and not reopened.search(MARK, 5)
    reopened.close()
    assert not KeywordIndex.open(tmp_path).purge_pending


def test_a_saved_graph_holds_no_vector_of_a_deleted_memory(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    data = rng.standard_normal((200, 16)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    index = VectorIndex(16, "test-model", compact_threshold=None, num_threads=1)
    index.upsert([f"m{i}" for i in range(200)], data)
    kept = [index.vector(f"m{i}").tobytes()[:32] for i in range(1, 200, 2)]
    dead = [index.vector(f"m{i}").tobytes()[:32] for i in range(0, 200, 2)]
    index.remove([f"m{i}" for i in range(0, 200, 2)])
    index.save(tmp_path, 9)
    files = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert not [v for v in dead if v in files]
    assert all(v in files for v in kept)
    loaded = VectorIndex.load(tmp_path, 16, "test-model")
    assert loaded.search(data[1], 1)[0][0] == "m1"  # still answers, from the same graph
