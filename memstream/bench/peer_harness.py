"""The workload of the ``peers`` suite, run the same way against memstream and a peer.

This file imports nothing but the standard library (and, for the Mem0 peer, ``mem0``), so
it also runs as a script in another environment, where Mem0 is installed and memstream
is not::

    python peer_harness.py mem0 --data DATA.json --out RESULT.json --workdir DIR --model PATH

A peer is anything with the small interface of :class:`Peer`; :func:`measure` drives one
through the same texts, users and questions: writes one at a time and batched, the time
until what was written is searchable, searches filtered to one user, get, history,
update and delete, each timed per call. :class:`Mem0Peer` is Mem0's open-source
``Memory`` without an LLM (``infer=False``: each text stored as given), with its local
embedded Qdrant and the same all-MiniLM-L6-v2 files through sentence-transformers;
:class:`FakePeer` keeps everything in a dict (the test of the harness).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

__all__ = ["FakePeer", "Mem0Peer", "Peer", "measure"]


class Peer(Protocol):
    """What the harness needs of a memory store."""

    name: str

    def add(self, text: str, user: str) -> str:
        """Store one text for ``user``; its id once acknowledged."""
        ...

    def add_batch(self, texts: Sequence[str], user: str) -> list[str]:
        """Store texts for ``user`` in one call; their ids, in order."""
        ...

    def wait_searchable(self) -> None:
        """Return once everything acknowledged so far is found by :meth:`search`."""
        ...

    def search(self, query: str, user: str, k: int) -> list[str]:
        """The ids of the ``k`` best memories of ``user`` for ``query``."""
        ...

    def get(self, memory_id: str) -> str | None:
        """The memory's current text."""
        ...

    def history(self, memory_id: str) -> int:
        """The number of entries in the memory's history."""
        ...

    def update(self, memory_id: str, text: str) -> None: ...

    def delete(self, memory_id: str) -> None: ...

    def close(self) -> None: ...


def _ms(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p95_ms": p95 * 1000,
        "mean_ms": statistics.fmean(ordered) * 1000,
        "n": len(ordered),
    }


def _timed(calls: Sequence[Callable[[], Any]]) -> tuple[list[float], list[Any]]:
    seconds, results = [], []
    for call in calls:
        t0 = time.perf_counter()
        results.append(call())
        seconds.append(time.perf_counter() - t0)
    return seconds, results


def measure(
    make: Callable[[str], Peer],
    data: dict[str, Any],
    *,
    log: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Run the workload on fresh peers from ``make(phase)``; the timings, as JSON.

    ``data``: ``texts``, ``users`` (one per text), ``questions`` (``text``, ``answer``:
    the index of the text it paraphrases), ``single`` (how many texts the one-at-a-time
    phase writes), ``batch`` (texts per call), ``reads`` (calls per read phase), ``k``.
    """
    texts, users = data["texts"], data["users"]
    single, batch, reads, k = data["single"], data["batch"], data["reads"], data["k"]
    out: dict[str, Any] = {}

    log(f"writing {single} texts one at a time")
    peer = make("single")
    try:
        t0 = time.perf_counter()
        for text, user in zip(texts[:single], users[:single], strict=True):
            peer.add(text, user)
        acked = time.perf_counter() - t0
        peer.wait_searchable()
        searchable = time.perf_counter() - t0
    finally:
        peer.close()
    out["single"] = {
        "texts": single,
        "ack_seconds": acked,
        "acks_per_s": single / acked,
        "searchable_seconds": searchable,
    }

    log(f"writing {len(texts)} texts in batches of {batch} per user")
    by_user: dict[str, list[int]] = {}
    for i, user in enumerate(users):
        by_user.setdefault(user, []).append(i)
    calls = [
        (user, idx[s : s + batch])
        for user, idx in by_user.items()
        for s in range(0, len(idx), batch)
    ]
    peer = make("batch")
    try:
        ids: list[str] = [""] * len(texts)
        t0 = time.perf_counter()
        for user, idx in calls:
            for i, memory_id in zip(
                idx, peer.add_batch([texts[i] for i in idx], user), strict=True
            ):
                ids[i] = memory_id
        acked = time.perf_counter() - t0
        peer.wait_searchable()
        searchable = time.perf_counter() - t0
        out["batch"] = {
            "texts": len(texts),
            "calls": len(calls),
            "ack_seconds": acked,
            "searchable_seconds": searchable,
            "texts_per_s": len(texts) / searchable,
        }

        questions = data["questions"]
        log(f"{len(questions)} searches, each filtered to one user")
        seconds, hits = _timed(
            [(lambda q=q: peer.search(q["text"], users[q["answer"]], k)) for q in questions]
        )
        found = sum(ids[q["answer"]] in h for q, h in zip(questions, hits, strict=True))
        out["search"] = {**_ms(seconds), "k": k, "hit_rate": found / max(1, len(questions))}

        sample = list(range(0, len(texts), max(1, len(texts) // reads)))[:reads]
        log(f"get, history, update, delete: {len(sample)} calls each")
        seconds, got = _timed([(lambda i=i: peer.get(ids[i])) for i in sample])
        wrong = sum(g != texts[i] for i, g in zip(sample, got, strict=True))
        out["get"] = {**_ms(seconds), "wrong": wrong}
        seconds, counts = _timed([(lambda i=i: peer.history(ids[i])) for i in sample])
        out["history"] = {**_ms(seconds), "entries": statistics.fmean(counts)}
        half = sample[: len(sample) // 2]
        seconds, _ = _timed(
            [(lambda i=i: peer.update(ids[i], texts[i] + " (updated)")) for i in half]
        )
        out["update"] = _ms(seconds)
        after = [peer.history(ids[i]) for i in half]
        out["history"]["entries_after_update"] = statistics.fmean(after) if after else 0
        rest = sample[len(sample) // 2 :]
        seconds, _ = _timed([(lambda i=i: peer.delete(ids[i])) for i in rest])
        out["delete"] = _ms(seconds)
        out["deleted_gone"] = all(peer.get(ids[i]) is None for i in rest)
    finally:
        peer.close()
    return out


# -- peers ----------------------------------------------------------------------------------


class FakePeer:
    """Everything in a dict: the harness's own test, and a floor for its overhead."""

    name = "fake"

    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, str]] = {}
        self.versions: dict[str, int] = {}

    def add(self, text: str, user: str) -> str:
        memory_id = f"m{len(self.versions)}"
        self.rows[memory_id] = (text, user)
        self.versions[memory_id] = 1
        return memory_id

    def add_batch(self, texts: Sequence[str], user: str) -> list[str]:
        return [self.add(t, user) for t in texts]

    def wait_searchable(self) -> None:
        pass

    def search(self, query: str, user: str, k: int) -> list[str]:
        words = set(query.lower().split())
        mine = [(m, t) for m, (t, u) in self.rows.items() if u == user]
        mine.sort(key=lambda mt: -len(words & set(mt[1].lower().split())))
        return [m for m, _ in mine[:k]]

    def get(self, memory_id: str) -> str | None:
        row = self.rows.get(memory_id)
        return row[0] if row else None

    def history(self, memory_id: str) -> int:
        return self.versions.get(memory_id, 0)

    def update(self, memory_id: str, text: str) -> None:
        self.rows[memory_id] = (text, self.rows[memory_id][1])
        self.versions[memory_id] += 1

    def delete(self, memory_id: str) -> None:
        del self.rows[memory_id]
        self.versions[memory_id] += 1

    def close(self) -> None:
        pass


class Mem0Peer:
    """Mem0's open-source ``Memory`` with no LLM (``infer=False``), local embedded Qdrant
    (on disk), its SQLite history, and the given sentence-transformers model folder."""

    name = "mem0"

    def __init__(self, workdir: Path, model: str, dims: int = 384) -> None:
        os.environ.setdefault("MEM0_TELEMETRY", "False")
        os.environ["MEM0_DIR"] = str(workdir / "mem0-home")
        os.environ.setdefault("OPENAI_API_KEY", "unused: infer=False calls no LLM")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from mem0 import Memory

        self.memory = Memory.from_config(
            {
                "embedder": {
                    "provider": "huggingface",
                    "config": {"model": model, "embedding_dims": dims},
                },
                "vector_store": {
                    "provider": "qdrant",
                    "config": {
                        "path": str(workdir / "qdrant"),
                        "collection_name": "bench",
                        "embedding_model_dims": dims,
                        "on_disk": True,
                    },
                },
                "history_db_path": str(workdir / "history.db"),
            }
        )

    def add(self, text: str, user: str) -> str:
        out = self.memory.add(text, user_id=user, infer=False)
        return out["results"][0]["id"]

    def add_batch(self, texts: Sequence[str], user: str) -> list[str]:
        messages = [{"role": "user", "content": t} for t in texts]
        out = self.memory.add(messages, user_id=user, infer=False)
        return [r["id"] for r in out["results"]]

    def wait_searchable(self) -> None:
        """Nothing to wait for: Mem0's ``add`` returns once the vector is in Qdrant."""

    def search(self, query: str, user: str, k: int) -> list[str]:
        out = self.memory.search(query, filters={"user_id": user}, top_k=k)
        return [r["id"] for r in out["results"]]

    def get(self, memory_id: str) -> str | None:
        row = self.memory.get(memory_id)
        return row["memory"] if row else None

    def history(self, memory_id: str) -> int:
        return len(self.memory.history(memory_id))

    def update(self, memory_id: str, text: str) -> None:
        self.memory.update(memory_id, text)

    def delete(self, memory_id: str) -> None:
        self.memory.delete(memory_id)

    def close(self) -> None:
        client = getattr(getattr(self.memory, "vector_store", None), "client", None)
        if client is not None and hasattr(client, "close"):
            client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the peers workload against one peer.")
    parser.add_argument("peer", choices=["mem0", "fake"])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--model", default=None, help="the embedding model's folder (mem0)")
    args = parser.parse_args(argv)
    data = json.loads(args.data.read_text(encoding="utf-8"))

    def make(phase: str) -> Peer:
        if args.peer == "fake":
            return FakePeer()
        where = args.workdir / phase
        where.mkdir(parents=True, exist_ok=True)
        return Mem0Peer(where, args.model)

    def log(line: str) -> None:
        print(f"{args.peer}: {line}", file=sys.stderr, flush=True)

    result = measure(make, data, log=log)
    if args.peer == "mem0":
        from importlib.metadata import version

        result["versions"] = {
            p: version(p) for p in ("mem0ai", "qdrant-client", "sentence-transformers", "torch")
        }
    args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
