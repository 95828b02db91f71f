"""Recall of each search mode on the single-fact paraphrase set, through the real store.

``python -m memstream.bench.single_fact_recall [--distractors 5000] [--json OUT]`` stores
the 220 memories of ``tests/data/retrieval`` and the first ``--distractors`` texts of
:func:`~memstream.bench.corpus.distractor_corpus` (20,000, seed 0; the corpus is
shuffled, so a prefix is a fair sample) as memories through the SDK, then asks every
question with ``MemoryStore.search(k=10)`` in the default ranking and at each ``alpha``
of the reciprocal-rank fusion, and reports recall@1, @5 and @10 (the share of questions
whose memory is among the first k hits; the JSON also has each question's rank of its
memory per mode, for paired comparisons). Vectors come from the bench's durable cache
(see :mod:`memstream.bench.dialogue_recall`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from memstream.sdk import MemoryStore

from .corpus import distractor_corpus, load_labelled_set
from .dialogue_recall import CachedModel, mode_name, parse_alpha

__all__ = ["ALPHAS", "run"]

ALPHAS: tuple[float | None, ...] = (None, 1.0, 0.98, 0.95, 0.9, 0.85, 0.7, 0.5, 0.0)
KS = (1, 5, 10)
DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "retrieval"


def run(
    distractors: int = 5_000,
    alphas: Sequence[float | None] = ALPHAS,
    *,
    embedder: Any | None = None,
    data: Path = DATA,
) -> dict[str, Any]:
    """mode -> k -> recall@k over the labelled questions."""
    memories, questions = load_labelled_set(data)
    texts = distractor_corpus(20_000, seed=0)[:distractors]
    model = embedder if embedder is not None else CachedModel()
    root = Path(tempfile.mkdtemp(prefix="memstream-single-fact-"))
    out: dict[str, Any] = {"questions": len(questions), "memories": len(memories) + len(texts)}
    try:
        store = MemoryStore.open(
            root / "s", durability="os", semantic=True, embedder=model, read_wait=3600.0
        )
        try:
            rows = list(memories.items()) + [(f"d{i:05d}", t) for i, t in enumerate(texts)]
            head = -1
            for start in range(0, len(rows), 500):
                events = [
                    store.event("create", "facts", memory_id, {"text": text})
                    for memory_id, text in rows[start : start + 500]
                ]
                head = store.append(events)[-1].offset
            qvecs = model.embed([q.question for q in questions])
            out["ranks"] = {}
            for alpha in alphas:
                found = dict.fromkeys(KS, 0)
                ranks: list[int | None] = []
                for i, q in enumerate(questions):
                    vector = None if alpha == 0.0 else qvecs[i].tolist()
                    hits = store.search(
                        q.question, vector=vector, k=max(KS), alpha=alpha, min_offset=head
                    )
                    ranked = [h.memory.memory_id for h in hits]
                    ranks.append(ranked.index(q.answer_id) + 1 if q.answer_id in ranked else None)
                    for k in KS:
                        found[k] += q.answer_id in ranked[:k]
                out[mode_name(alpha, True)] = {k: found[k] / len(questions) for k in KS}
                out["ranks"][mode_name(alpha, True)] = ranks
        finally:
            store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if embedder is None and isinstance(model, CachedModel):
            model.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m memstream.bench.single_fact_recall",
        description="Recall@1/@5/@10 of each search mode on the single-fact paraphrase set.",
    )
    parser.add_argument("--distractors", type=int, default=5_000)
    parser.add_argument(
        "--alpha", action="append", type=parse_alpha, help="repeatable; 'default' is alpha=None"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = parser.parse_args(argv)
    results = run(args.distractors, args.alpha or ALPHAS)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"{results['questions']} questions, {results['memories']} memories", file=sys.stderr)
    print("| ranking | " + " | ".join(f"recall@{k}" for k in KS) + " |")
    print("|---|" + "---|" * len(KS))
    for mode, row in results.items():
        if isinstance(row, dict) and mode != "ranks":
            print(f"| {mode} | " + " | ".join(f"{row[k]:.3f}" for k in KS) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
