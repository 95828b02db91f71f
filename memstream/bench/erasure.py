"""``erasure``: what leaving nothing on disk after an erase costs, against the same work
without erasures, in the same run.

An erase clears the memory's rows at once; then the files that held its bytes in clear are
rewritten (see docs/erasure.md). Measured on a store of N memories (creates in batches,
semantic indexes off: the core projection's share):

- **ingest with erasures**: N creates appended in batches of 100, with one memory erased
  after every 1,000 (so each rewrite of the file runs while appends continue: writers wait
  for it), against the same creates without erasures. Both end with ``checkpoint()``, so
  every rewrite is paid inside the measurement. The ratio is what erasure costs ingest.
- **rewrite**: one more erase on the full store, then ``checkpoint()``: the seconds the
  copy of the file takes (writers wait) and the seconds of the swap (readers wait), and the
  file's size.
- **reads through the gate**: the query ``get`` makes, through ``DuckStore.query`` (which
  passes the read gate that lets a rewrite swap the file) and on a raw cursor of the same
  connection, alternating in one run.
- **keyword purge**: rewriting a keyword index of N documents from its live documents
  (what an erase costs the search indexes, in their own lane), against indexing the same
  documents into a fresh index.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from memstream.projections.keyword import KeywordIndex
from memstream.sdk import MemoryStore

from .common import Reporter, Scratch, Stopwatch, median, rate, scaled, spread
from .corpus import templated_facts

BASE_MEMORIES = 100_000
BATCH = 100
ERASE_EVERY = 1_000
READS = 2_000


def _left_on_disk(root: Path, texts: list[str]) -> int:
    """How many of ``texts`` any file under ``root`` still holds."""
    data = [p.read_bytes() for p in root.rglob("*") if p.is_file()]
    return sum(any(t.encode() in d for d in data) for t in texts)


def _ingest(path: Path, memories: list[str], erase: bool) -> dict[str, Any]:
    """Append ``memories`` (one namespace per 100) in batches; with ``erase``, erase the
    first memory of every ``ERASE_EVERY``; end with a checkpoint. Returns the timings, and
    how many erased texts are still in a file of the store (must be none)."""
    erased: list[str] = []
    with MemoryStore.open(path, actor="bench", durability="os", semantic=False) as store:
        with Stopwatch() as sw:
            for start in range(0, len(memories), BATCH):
                chunk = memories[start : start + BATCH]
                events = [
                    store.event("create", f"bench/u{(start + i) // 100}", f"m{start + i}",
                                {"text": text})
                    for i, text in enumerate(chunk)
                ]  # fmt: skip
                store.append(events)
                if erase and (start + BATCH) % ERASE_EVERY == 0:
                    store.erase(f"m{start}")
                    erased.append(memories[start])
            store.checkpoint()
    return {
        "seconds": sw.seconds,
        "events_per_s": rate(len(memories) + len(erased), sw.seconds),
        "erased": len(erased),
        "erased_texts_on_disk": _left_on_disk(path, erased),
    }


def _rewrite(path: Path) -> dict[str, Any]:
    with MemoryStore.open(path, actor="bench", durability="os", semantic=False) as store:
        store.checkpoint()  # nothing pending: the erase below is the only one
        victim = store.runtime.duck.query(
            "SELECT memory_id FROM memories WHERE state = 'active' LIMIT 1"
        )[0]["memory_id"]
        store.erase(victim)
        store.flush()
        done = store.runtime.scrub()
        assert done is not None, "the erase left nothing to rewrite"
        return {
            "file_bytes": done.bytes,
            "copy_seconds": done.copy_seconds,
            "swap_seconds": done.swap_seconds,
        }


#: One memory's current row, as ``get`` reads it.
_GET = (
    "SELECT * FROM memories m LEFT JOIN versions v ON v.memory_id = m.memory_id "
    "AND v.version = m.version WHERE m.memory_id = ?"
)


def _reads(path: Path, n: int) -> dict[str, Any]:
    """The same query through :meth:`DuckStore.query` (the read gate a rewrite swaps the
    file behind) and on a raw cursor of the same connection."""
    with MemoryStore.open(path, actor="bench", durability="os", semantic=False) as store:
        duck = store.runtime.duck
        ids = [f"m{i * 7 % n}" for i in range(READS)]
        gated = []
        for memory_id in ids:
            t = time.perf_counter()
            duck.query(_GET, [memory_id])
            gated.append(time.perf_counter() - t)
        cur = duck.db.cursor()
        raw = []
        for memory_id in ids:
            t = time.perf_counter()
            res = cur.execute(_GET, [memory_id])
            names = [d[0] for d in res.description]
            [dict(zip(names, row, strict=True)) for row in res.fetchall()]
            raw.append(time.perf_counter() - t)
        cur.close()
    return {"reads": len(ids), "gated_p50_ms": median(gated) * 1e3, "raw_p50_ms": median(raw) * 1e3}


def _purge(scratch: Scratch, docs: list[tuple[str, str, str]]) -> dict[str, Any]:
    path = scratch.new("keywords")
    index = KeywordIndex(path)
    with Stopwatch() as build:
        index.upsert(docs)
        index.commit(0)
    index.remove([docs[0][0]], erased=True)
    index.commit(1)
    with Stopwatch() as purge:
        kept = index.purge(docs[1:], 1)
    index.close()
    scratch.remove(path)
    assert kept == len(docs) - 1
    return {"build_seconds": build.seconds, "purge_seconds": purge.seconds}


def run(
    scratch: Scratch, reporter: Reporter, scale: float, repeats: int, seed: int
) -> dict[str, Any]:
    n = scaled(BASE_MEMORIES, scale, minimum=2_000)
    n -= n % ERASE_EVERY
    # each text unique, so finding one on disk means finding that memory's
    memories = [f"{fact} (note {i})" for i, fact in enumerate(templated_facts(n, seed))]
    runs = []
    for _ in range(repeats):
        with reporter.task("erasure: ingest without and with erasures", 2) as advance:
            plain_path, erasing_path = scratch.new("plain"), scratch.new("erasing")
            plain = _ingest(plain_path, memories, erase=False)
            advance(1)
            erasing = _ingest(erasing_path, memories, erase=True)
            advance(1)
        rewrite = _rewrite(plain_path)
        reads = _reads(plain_path, n)
        scratch.remove(erasing_path)
        scratch.remove(plain_path)
        docs = [(f"m{i}", f"bench/u{i // 100}", t) for i, t in enumerate(memories)]
        purge = _purge(scratch, docs)
        runs.append({"plain": plain, "erasing": erasing, "rewrite": rewrite, "reads": reads,
                     "purge": purge})  # fmt: skip
    plain_eps = [r["plain"]["events_per_s"] for r in runs]
    erasing_eps = [r["erasing"]["events_per_s"] for r in runs]
    return {
        "parameters": {
            "memories": n,
            "batch_size": BATCH,
            "erase_every": ERASE_EVERY,
            "erasures": runs[0]["erasing"]["erased"],
            "repeats": repeats,
            "semantic_indexes": False,
        },
        "goals": {"erased_texts_on_disk": 0},
        "results": {
            "plain_events_per_s": spread(plain_eps),
            "erasing_events_per_s": spread(erasing_eps),
            "ingest_ratio": median(erasing_eps) / median(plain_eps),
            "erased_texts_on_disk": max(r["erasing"]["erased_texts_on_disk"] for r in runs),
            "rewrite_copy_s": spread([r["rewrite"]["copy_seconds"] for r in runs]),
            "rewrite_swap_s": spread([r["rewrite"]["swap_seconds"] for r in runs]),
            "file_mb": runs[-1]["rewrite"]["file_bytes"] / 1e6,
            "gated_read_p50_ms": spread([r["reads"]["gated_p50_ms"] for r in runs]),
            "raw_get_p50_ms": spread([r["reads"]["raw_p50_ms"] for r in runs]),
            "keyword_build_s": spread([r["purge"]["build_seconds"] for r in runs]),
            "keyword_purge_s": spread([r["purge"]["purge_seconds"] for r in runs]),
            "runs": runs,
        },
    }
