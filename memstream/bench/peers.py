"""The ``peers`` suite: memstream side by side with Mem0, on the same texts and questions.

Not part of the default run: Mem0 lives in an environment of its own (``mem0ai`` is not a
dependency of memstream), which ``--peer-python`` (or ``$MEMSTREAM_PEER_PYTHON``) names;
``./ops/bench-peers`` creates it and runs the suite. The workload is
:func:`memstream.bench.peer_harness.measure`, run in this process against memstream and,
through ``peer_harness.py`` as a script, in the peer's interpreter against Mem0's
open-source ``Memory`` (``infer=False``: no LLM, each text stored as given; local embedded
Qdrant; the same all-MiniLM-L6-v2 files through sentence-transformers). The raw embedding
floor (the same model embedding the same texts directly, batches of 64) is measured in the
same run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .common import BenchError, Reporter, Scratch, Stopwatch, scaled
from .peer_harness import measure
from .search_data import build_corpus

__all__ = ["INSTALL", "PeerMissing", "find_peer_python", "run"]

PEER_ENV = "MEMSTREAM_PEER_PYTHON"
HARNESS = Path(__file__).with_name("peer_harness.py")
INSTALL = (
    "Mem0 (the mem0ai package) is not installed where this suite can run it. Install it "
    "into an environment of its own and point the suite at its interpreter:\n"
    "  python3.11 -m venv .venv-mem0\n"
    '  .venv-mem0/bin/pip install mem0ai "torch==2.13.0" sentence-transformers\n'
    "  memstream bench --suite peers --peer-python .venv-mem0/bin/python\n"
    "(./ops/bench-peers does all three.)"
)
USERS = 20
#: States a deleted memory reads back in (no longer current).
GONE = frozenset({"archived", "erased", "expired"})
BATCH = 100


class PeerMissing(RuntimeError):
    """No interpreter that can import ``mem0`` was found; the message says how to add one."""


def find_peer_python(peer_python: str | os.PathLike[str] | None = None) -> str:
    """The interpreter that runs Mem0: ``peer_python``, ``$MEMSTREAM_PEER_PYTHON``, or this
    one if it can import ``mem0``; :class:`PeerMissing` (with the install commands)
    otherwise."""
    candidates = [str(p) for p in (peer_python, os.environ.get(PEER_ENV)) if p]
    candidates.append(sys.executable)
    for python in candidates:
        probe = subprocess.run(
            [python, "-c", "import mem0"], capture_output=True, text=True, check=False
        ) if Path(python).exists() else None  # fmt: skip
        if probe is not None and probe.returncode == 0:
            return python
    raise PeerMissing(INSTALL)


class MemstreamPeer:
    """The harness's interface over an embedded store with its search indexes (defaults:
    durability ``fsync``); each user is a namespace ``user/NAME``; update is ``revise``,
    delete is ``archive``."""

    name = "memstream"

    def __init__(self, root: Path, reporter: Reporter | None = None):
        from memstream import MemoryStore

        self.store = MemoryStore.open(root, actor="bench", semantic=True)
        #: the offset of the last write: reads pass it as ``min_offset`` (read your writes,
        #: as Mem0's synchronous calls do; free once the projection holds it)
        self.last = -1

    def add(self, text: str, user: str) -> str:
        o = self.store.create(f"user/{user}", text)
        self.last = o.offset
        return o.memory_id

    def add_batch(self, texts: Sequence[str], user: str) -> list[str]:
        from memstream.sdk import new_id

        events = [self.store.event("create", f"user/{user}", new_id(), {"text": t}) for t in texts]
        outcomes = self.store.append(events, raise_on_reject=True)
        self.last = outcomes[-1].offset
        return [o.memory_id for o in outcomes]

    def wait_searchable(self) -> None:
        self.store.flush()

    def search(self, query: str, user: str, k: int) -> list[str]:
        hits = self.store.search(query, namespaces=[f"user/{user}"], k=k, min_offset=self.last)
        return [h.memory.memory_id for h in hits]

    def get(self, memory_id: str) -> str | None:
        m = self.store.get(memory_id, min_offset=self.last)
        return m.text if m is not None and m.state not in GONE else None

    def history(self, memory_id: str) -> int:
        return len(self.store.history(memory_id, min_offset=self.last))

    def update(self, memory_id: str, text: str) -> None:
        self.last = self.store.revise(memory_id, text).offset

    def delete(self, memory_id: str) -> None:
        # archive: out of every search, history kept (Mem0's delete also keeps a history
        # row); erase, which destroys the content, is measured by the erasure suite
        self.last = self.store.archive(memory_id, reason="deleted").offset

    def close(self) -> None:
        self.store.close()


def workload(scale: float, seed: int) -> dict[str, Any]:
    """The texts (the search suite's: labelled memories, then distractors), one user each
    (round robin over 20), the labelled questions whose answer is among them, and the
    sizes of each phase: at scale 1.0, 5,000 texts, 1,000 of them written one at a time,
    200 questions, 200 calls per read phase."""
    n = scaled(5_000, scale, 200)
    corpus = build_corpus(n, seed, questions=200)
    index = {memory_id: i for i, memory_id in enumerate(corpus.ids)}
    users = [f"u{i % USERS:02d}" for i in range(n)]
    return {
        "texts": corpus.texts,
        "users": users,
        "questions": [{"text": q.question, "answer": index[q.answer_id]} for q in corpus.questions],
        "single": min(n, scaled(1_000, scale, 50)),
        "batch": BATCH,
        "reads": min(n // 2, 200),
        "k": 5,
    }


def _floor(texts: list[str]) -> dict[str, Any]:
    """The model embedding the texts directly: tokenizer + AutoModel + mean pooling."""
    from memstream.projections.models import shared_embedder

    from .search import _RawTransformers

    model = shared_embedder()
    raw = _RawTransformers(model.path, 64, model.max_length)
    raw.embed(texts[:64])  # warm
    with Stopwatch() as sw:
        raw.embed(texts)
    return {"texts": len(texts), "seconds": sw.seconds, "texts_per_s": len(texts) / sw.seconds}


def run(
    scratch: Scratch,
    reporter: Reporter,
    scale: float,
    repeats: int,
    seed: int,
    *,
    peer_python: str | None = None,
    peer: str = "mem0",
) -> dict[str, Any]:
    """Both halves and the floor, once each (``repeats`` is not used: a Mem0 run at scale
    1.0 takes minutes). ``peer``: ``mem0``, or ``fake`` (the harness's test: a dict, run
    by this interpreter through the same script)."""
    python = find_peer_python(peer_python) if peer == "mem0" else sys.executable
    data = workload(scale, seed)
    data_dir = scratch.new("data")
    data_dir.mkdir(parents=True)
    data_file = data_dir / "workload.json"
    data_file.write_text(json.dumps(data), encoding="utf-8")

    from memstream.projections.models import shared_embedder

    model = shared_embedder()
    model.model()  # loaded before any timing, as Mem0's is when it starts
    reporter.note(f"peers: memstream, {len(data['texts'])} texts")
    stores = scratch.new("memstream")
    ours = measure(lambda phase: MemstreamPeer(stores / phase), data, log=reporter.note)
    reporter.note("peers: the raw embedding floor")
    floor = _floor(data["texts"])

    reporter.note(f"peers: {peer} ({python})")
    out = scratch.root / "peer-result.json"
    log = scratch.root / "peer.log"
    with log.open("wb") as stderr:
        done = subprocess.run(
            [python, str(HARNESS), peer, "--data", str(data_file), "--out", str(out),
             "--workdir", str(scratch.new("peer-work")), "--model", str(model.path)],
            stderr=stderr, stdout=subprocess.DEVNULL, check=False,
        )  # fmt: skip
    if done.returncode != 0 or not out.exists():
        tail = log.read_text(errors="replace")[-3000:]
        raise BenchError(f"the {peer} half failed (exit {done.returncode}):\n{tail}")
    theirs = json.loads(out.read_text(encoding="utf-8"))
    for name, result in (("memstream", ours), (peer, theirs)):
        if result["get"]["wrong"] or not result["deleted_gone"]:
            raise BenchError(
                f"{name} did not read back what it was sent: {json.dumps([ours, theirs])}"
            )
    return {
        "parameters": {
            "texts": len(data["texts"]),
            "single": data["single"],
            "batch": data["batch"],
            "users": USERS,
            "questions": len(data["questions"]),
            "reads": data["reads"],
            "k": data["k"],
            "peer": peer,
            "peer_python": python,
            "repeats": 1,
        },
        "memstream": ours,
        "peer": theirs,
        "floor": floor,
    }
