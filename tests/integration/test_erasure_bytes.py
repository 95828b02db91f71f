"""Erasure at the byte level: after an erase and a checkpoint, nothing of the erased
content is left in any file under the store directory.

Each test writes memories whose every field carries a unique marker (text, a revision,
tags, metadata, source, reasons, a merged text), searches them so that every index holds
them, checkpoints and checks that the markers *are* on disk (so the scan can see them),
erases, and then reads every file byte by byte for each marker, its lower-cased form (the
keyword index stores lower-cased tokens) and the bytes of the memory's vector.

- erasing one memory removes its bytes and keeps its neighbour's (same subject);
- erasing a subject removes all of its memories' bytes, found after ``close``;
- a process killed right after the erase was acknowledged leaves the bytes behind, and
  reopening the store removes them before it serves anything.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import tantivy

from memstream import MemoryStore


def marker() -> str:
    # Mixed case: the text holds it as written, the keyword index lower-cased.
    return "Zq" + uuid.uuid4().hex[:14]


def write_marked(store: MemoryStore, namespace: str, subject: str | None = None) -> dict:
    """One memory whose every field holds a marker; returns its id and markers."""
    m = {k: marker() for k in ("text", "revision", "tag", "meta", "source", "reason")}
    kw = {"subject": subject} if subject else {}
    out = store.create(
        namespace,
        f"Alice told us {m['text']} about her favourite tea",
        tags=[m["tag"]],
        metadata={"note": m["meta"]},
        source=m["source"],
        **kw,
    )
    store.archive(out.memory_id, reason=f"parked {m['reason']}")
    store.restore(out.memory_id)
    store.revise(out.memory_id, f"Alice now says {m['revision']} about coffee")
    return {"memory_id": out.memory_id, "markers": m}


def write_merged(store: MemoryStore, namespace: str) -> dict:
    """Two memories merged into a third whose text is a marker."""
    a = store.create(namespace, f"morning routine {marker()}")
    b = store.create(namespace, f"evening routine {marker()}")
    text = marker()
    out = store.merge(namespace, [a.memory_id, b.memory_id], f"daily routine {text}")
    return {"memory_id": out.memory_id, "markers": {"merged": text}}


def needles(store: MemoryStore, memories: list[dict]) -> dict[str, bytes]:
    """What must not survive: every marker as written and lower-cased, and the first 32
    bytes of each memory's vector as the index holds it."""
    out: dict[str, bytes] = {}
    for mem in memories:
        for name, value in mem["markers"].items():
            out[f"{mem['memory_id']}:{name}"] = value.encode()
            out[f"{mem['memory_id']}:{name}:lower"] = value.lower().encode()
        vector = store.semantic.vectors.vector(mem["memory_id"])
        out[f"{mem['memory_id']}:vector"] = np.asarray(vector, np.float32).tobytes()[:32]
    return out


def found_on_disk(root: Path, wanted: dict[str, bytes]) -> dict[str, list[str]]:
    """Each needle found in any file under ``root``, with the files holding it.

    A keyword index compresses its term dictionary (shared prefixes are stored once), so
    a byte scan can miss a token there: every tantivy index under ``root`` is also asked
    for terms starting with each lower-cased marker (its stemmed form may be shorter).

    A running worker merges its index segments while it is scanned, so a file listed may
    be gone when it is read. Such a scan saw the directory change under it and is not an
    answer: it is taken again, up to ten times."""
    for _ in range(10):
        try:
            return _scan(root, wanted)
        except (FileNotFoundError, ValueError):
            time.sleep(0.2)
    return _scan(root, wanted)


def _scan(root: Path, wanted: dict[str, bytes]) -> dict[str, list[str]]:
    hits: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        for name, needle in wanted.items():
            if needle in data:
                hits.setdefault(name, []).append(str(path.relative_to(root)))
    for meta in sorted(root.rglob("meta.json")):
        searcher = tantivy.Index.open(str(meta.parent)).searcher()
        for name, needle in wanted.items():
            if name.endswith(":lower") and searcher.terms_with_prefix("text", needle[:12].decode()):
                hits.setdefault(name, []).append(f"{meta.parent.relative_to(root)} (terms)")
    return hits


def indexed(store: MemoryStore, memories: list[dict]) -> None:
    """Search each memory's text so the query path and both indexes have seen it."""
    store.flush()
    for mem in memories:
        first = next(iter(mem["markers"].values()))
        hits = store.search(first, k=5, alpha=0.5)
        assert hits, f"memory {mem['memory_id']} is not searchable"


def test_erasing_one_memory_leaves_no_byte_of_it_and_keeps_its_neighbour(tmp_path):
    root = tmp_path / "store"
    with MemoryStore.open(root, semantic=True) as store:
        gone = write_marked(store, "user/alice")
        kept = write_marked(store, "user/alice")
        merged = write_merged(store, "user/alice")
        indexed(store, [gone, kept, merged])
        erased = needles(store, [gone, merged])
        neighbour = needles(store, [kept])
        store.checkpoint()
        before = found_on_disk(root, erased)
        # The scan sees the content where the store keeps it (else it proves nothing).
        assert {k for k in erased if not k.endswith((":lower", ":vector"))} <= set(before)
        store.erase(gone["memory_id"])
        store.erase(merged["memory_id"])
        store.checkpoint()
        assert found_on_disk(root, erased) == {}
        # The neighbour of the same subject keeps its content, on disk and in reads.
        assert store.get(kept["memory_id"]).text.endswith("about coffee")
        on_disk = found_on_disk(root, neighbour)
        assert f"{kept['memory_id']}:text" in on_disk
        assert f"{kept['memory_id']}:revision" in on_disk


def test_erasing_a_subject_leaves_no_byte_of_it_after_close(tmp_path):
    root = tmp_path / "store"
    with MemoryStore.open(root, semantic=True) as store:
        mems = [write_marked(store, "user/bob") for _ in range(5)]
        mems.append(write_merged(store, "user/bob"))
        other = write_marked(store, "user/carol")
        indexed(store, [*mems, other])
        erased = needles(store, mems)
        kept = needles(store, [other])
        store.checkpoint()
        assert found_on_disk(root, erased), "the markers must be on disk before the erase"
        store.erase_subject("user/bob")
    assert found_on_disk(root, erased) == {}
    assert f"{other['memory_id']}:text" in found_on_disk(root, kept)


CHILD = textwrap.dedent(
    """
    import json, sys
    sys.path[:0] = [sys.argv[3]]
    from test_erasure_bytes import indexed, needles, write_marked, write_merged
    from memstream import MemoryStore
    store = MemoryStore.open(sys.argv[1], semantic=True)
    mems = [write_marked(store, "user/dave") for _ in range(20)]
    mems.append(write_merged(store, "user/dave"))
    indexed(store, mems)
    wanted = {k: v.hex() for k, v in needles(store, mems).items()}
    store.checkpoint()  # the content is in every file now, then the erase
    with open(sys.argv[2], "w") as f:
        json.dump(wanted, f)
    store.erase_subject("user/dave")
    print("erased", flush=True)
    import time
    time.sleep(600)
    """
)


def test_kill_9_right_after_an_erase_then_reopen_leaves_no_byte(tmp_path):
    root, wanted_file = tmp_path / "store", tmp_path / "needles.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), str(wanted_file), str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line == "erased", proc.stderr.read() if proc.poll() is not None else line
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    wanted = {k: bytes.fromhex(v) for k, v in json.loads(wanted_file.read_text()).items()}
    # Killed before any checkpoint: the bytes are still there (the DuckDB WAL, the index
    # files saved before the erase) ...
    assert found_on_disk(root, wanted)
    # ... opening the store rewrites the core projection before it serves, and the first
    # checkpoint has the indexes (which replay the erase from their own checkpoints) follow.
    with MemoryStore.open(root, semantic=True) as store:
        at_open = found_on_disk(root, wanted)
        assert not [f for files in at_open.values() for f in files if "core.duckdb" in f]
        store.checkpoint()
        assert found_on_disk(root, wanted) == {}
        assert not [
            h for h in store.search("favourite tea", k=10) if h.memory.namespace == "user/dave"
        ]
    assert found_on_disk(root, wanted) == {}


def test_a_kafka_worker_leaves_no_byte_of_an_erased_memory(deployment) -> None:
    """The same on Kafka: the worker's shard rewrites its file after the erasing batch and
    the shard's search indexes purge on their own; then a graceful stop, and a scan of
    everything the worker keeps."""
    from memstream.kafka import KafkaMemoryStore

    w = deployment.start_worker("w1", MEMSTREAM_SEMANTIC="1")
    deployment.serving()
    data = Path(w.data)
    with KafkaMemoryStore(deployment.settings, api=w.url) as store:
        gone = write_marked(store, "user/erin")
        kept = write_marked(store, "user/erin")
        for mem in (gone, kept):
            hits = store.search(mem["markers"]["revision"], k=3, alpha=0.5)
            assert mem["memory_id"] in [h.memory.memory_id for h in hits]
        erased = {
            f"{name}{form}": (value.lower() if form else value).encode()
            for name, value in gone["markers"].items()
            for form in ("", ":lower")
        }
        neighbour = {"text": kept["markers"]["text"].encode()}
        assert found_on_disk(data, erased), "the markers must be on the worker's disk first"
        store.erase(gone["memory_id"])
        deadline = time.monotonic() + 60
        while found_on_disk(data, erased) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert found_on_disk(data, erased) == {}, "a running worker must clear the bytes"
        assert store.get(kept["memory_id"]).text.endswith("about coffee")
    assert deployment.stop(w) == 0
    assert found_on_disk(data, erased) == {}
    assert "text" in found_on_disk(data, neighbour)
