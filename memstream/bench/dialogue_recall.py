"""Recall of each search mode on the dialogue set, through the real store.

``python -m memstream.bench.dialogue_recall [--split dev|test] [--json OUT]`` stores every
turn of ``tests/data/dialogues`` (see :mod:`memstream.bench.dialogues`) as one memory
through the SDK, the way an agent would: namespace ``dialogues``, tags for the
conversation and the session, metadata ``speaker``, ``date``, ``session``, and, depending
on the *indexing* variant, a ``context`` (:func:`memstream.context.turn_context`):

* ``plain``: no context; the indexes see the turn alone;
* ``speaker+date``: the speaker's name and the session's date;
* ``speaker+date+previous``: those and the turn just before it in the session.

Then it asks every question of the split with ``MemoryStore.search(k=10)`` in the default
ranking (``alpha=None``: semantic score plus a bonus for the memory's own words, see
:mod:`memstream.projections.fusion`) and at each ``alpha`` of the reciprocal-rank fusion
(1 = semantic only, 0 = keyword only), and reports recall@1 and recall@10 per
question type: the share of a question's evidence turns among the first k hits, averaged
over the questions (a multi-hop question has two evidence turns, so its recall@1 is at
most 0.5).

Vectors come through memstream's durable embedding cache kept outside the repository
(``--cache-dir``, default ``$MEMSTREAM_BENCH_CACHE`` or ``~/.cache/memstream/bench``):
the first run embeds about 14,000 texts (a few minutes on 2 idle cores), later runs none.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from memstream.context import turn_context
from memstream.projections.search import DEFAULT_ALPHA
from memstream.sdk import MemoryStore

from .dialogues import QUESTION_TYPES, DialogueSet, Question, Turn, load_dialogues

__all__ = [
    "ALPHAS",
    "VARIANTS",
    "build_store",
    "evaluate",
    "memories_of",
    "recall_table",
    "run",
]

NAMESPACE = "dialogues"
VARIANTS = ("plain", "speaker+date", "speaker+date+previous")
#: ``None`` is the default ranking, the numbers weigh a reciprocal-rank fusion.
ALPHAS: tuple[float | None, ...] = (None, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.0)
#: (alpha, query hints): every alpha with the query hints (the default), and without.
MODES = tuple((a, h) for h in (True, False) for a in ALPHAS)
KS = (1, 10)


def memories_of(turns: Sequence[Turn], variant: str) -> list[tuple[str, str, dict[str, Any]]]:
    """``(memory id, text, metadata)`` of every turn, as stored for ``variant``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {VARIANTS}")
    out = []
    previous: Turn | None = None
    for t in turns:
        if previous is not None and (previous.conversation, previous.session) != (
            t.conversation,
            t.session,
        ):
            previous = None
        metadata: dict[str, Any] = {"speaker": t.speaker, "date": t.date, "session": t.session}
        if variant == "speaker+date":
            metadata["context"] = turn_context(t.speaker, t.date)
        elif variant == "speaker+date+previous":
            before = [(previous.speaker, previous.text)] if previous is not None else []
            metadata["context"] = turn_context(t.speaker, t.date, before)
        out.append((t.id, t.text, metadata))
        previous = t
    return out


def build_store(
    path: Path,
    turns: Sequence[Turn],
    variant: str,
    embedder: Any | None = None,
    batch: int = 500,
) -> tuple[MemoryStore, int]:
    """A store holding one memory per turn; returns it and the last offset."""
    store = MemoryStore.open(
        path, durability="os", semantic=True, embedder=embedder, read_wait=3600.0
    )
    head = -1
    try:
        rows = memories_of(turns, variant)
        by_id = {t.id: t for t in turns}
        for start in range(0, len(rows), batch):
            events = []
            for memory_id, text, metadata in rows[start : start + batch]:
                t = by_id[memory_id]
                tags = [f"conversation-{t.conversation:02d}", f"session-{t.session:02d}"]
                payload = {"text": text, "tags": tags, "metadata": metadata}
                events.append(store.event("create", NAMESPACE, memory_id, payload))
            outs = store.append(events)
            head = outs[-1].offset
    except BaseException:
        store.close()
        raise
    return store, head


def mode_name(alpha: float | None, query_hints: bool) -> str:
    """``0.7`` (alpha, query hints on: the default) or ``0.7 no-hints``; ``default`` (or
    ``default no-hints``) for the default ranking (``alpha=None``)."""
    name = "default" if alpha is None else f"{alpha:g}"
    return name if query_hints else f"{name} no-hints"


def evaluate(
    store: MemoryStore,
    questions: Sequence[Question],
    modes: Iterable[tuple[float | None, bool]],
    vectors: npt.NDArray[np.float32] | None = None,
    head: int | None = None,
    k: int = 10,
) -> dict[str, dict[str, dict[int, float]]]:
    """mode (alpha, query hints) -> question type (and ``all``) -> k -> recall@k (the
    share of a question's evidence turns among the first k hits, averaged)."""
    out: dict[str, dict[str, dict[int, float]]] = {}
    for alpha, hints in modes:
        sums: dict[str, dict[int, float]] = defaultdict(lambda: dict.fromkeys(KS, 0.0))
        counts: dict[str, int] = defaultdict(int)
        for i, q in enumerate(questions):
            vector = None if vectors is None or alpha == 0.0 else vectors[i].tolist()
            hits = store.search(
                q.question, vector=vector, k=k, alpha=alpha, query_hints=hints, min_offset=head
            )
            ranked = [h.memory.memory_id for h in hits]
            for kind in (q.type, "all"):
                counts[kind] += 1
                for n in KS:
                    found = len(set(q.evidence) & set(ranked[:n]))
                    sums[kind][n] += found / len(q.evidence)
        out[mode_name(alpha, hints)] = {
            kind: {n: sums[kind][n] / counts[kind] for n in KS} for kind in sorted(counts)
        }
    return out


class CachedModel:
    """An :class:`Embedder` over the bench's durable cache (by text), so a store built for
    the evaluation embeds each text once across runs."""

    def __init__(self, cache_dir: Path | None = None) -> None:
        from .search_data import VectorCache, default_cache_dir

        self.cache = VectorCache(cache_dir or default_cache_dir())
        self.model_id = self.cache.model_id
        self.dim = self.cache.model.dim

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return self.cache.vectors(list(texts))

    def close(self) -> None:
        self.cache.close()


def run(
    split: str = "dev",
    variants: Sequence[str] = VARIANTS,
    modes: Sequence[tuple[float | None, bool]] | None = None,
    *,
    data: DialogueSet | None = None,
    conversations: Sequence[int] | None = None,
    embedder: Any | None = None,
    workdir: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Recall per variant, alpha and question type on ``split`` (``dev``, ``test`` or
    ``all``); ``conversations`` restricts the turns stored and the questions asked."""
    data = data or load_dialogues()
    turns = data.turns
    questions = data.questions if split == "all" else data.split(split)
    if conversations is not None:
        keep = set(conversations)
        turns = [t for t in turns if t.conversation in keep]
        questions = [q for q in questions if q.conversation in keep]
    own_model = embedder is None
    model = embedder if embedder is not None else CachedModel()
    root = Path(tempfile.mkdtemp(prefix="memstream-dialogues-", dir=workdir))
    results: dict[str, Any] = {"split": split, "questions": len(questions), "turns": len(turns)}
    try:
        qvecs = model.embed([q.question for q in questions])
        for variant in variants:
            started = time.monotonic()
            store, head = build_store(root / variant.replace("+", "-"), turns, variant, model)
            try:
                table = evaluate(store, questions, modes or MODES, qvecs, head)
            finally:
                store.close()
            results[variant] = table
            if log:
                log(f"{variant}: {time.monotonic() - started:.0f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if own_model and isinstance(model, CachedModel):
            model.close()
    return results


def recall_table(results: dict[str, Any], variants: Sequence[str] | None = None) -> str:
    """Markdown: one row per (variant, alpha), recall@1 / recall@10 per question type."""
    kinds = [*QUESTION_TYPES, "all"]
    lines = [
        "| indexing | alpha | " + " | ".join(kinds) + " |",
        "|---|---|" + "---|" * len(kinds),
    ]
    for variant in variants or [v for v in VARIANTS if v in results]:
        for mode, table in results[variant].items():
            head = mode.split()[0]
            alpha = None if head == "default" else float(head)
            names = {1.0: " (semantic only)", 0.0: " (keyword only)"}
            label = mode + (names.get(alpha, "") if alpha is not None else " (own-words bonus)")
            if alpha == DEFAULT_ALPHA and "no-hints" not in mode:
                label = f"**{label}**"
            cells = []
            for kind in kinds:
                r = table.get(kind)
                cells.append("-" if r is None else f"{r['1'] if '1' in r else r[1]:.3f} / "
                             f"{r['10'] if '10' in r else r[10]:.3f}")  # fmt: skip
            lines.append(f"| {variant} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_alpha(value: str) -> float | None:
    return None if value == "default" else float(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m memstream.bench.dialogue_recall",
        description="Recall@1/@10 of each search mode on the dialogue set, per question type.",
    )
    parser.add_argument("--split", choices=("dev", "test", "all"), default="dev")
    parser.add_argument("--variant", action="append", choices=VARIANTS, help="repeatable")
    parser.add_argument(
        "--alpha", action="append", type=parse_alpha, help="repeatable; 'default' is alpha=None"
    )
    parser.add_argument(
        "--hints", choices=("on", "off", "both"), default="both", help="query hints (default both)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    started = time.monotonic()
    hints = {"on": (True,), "off": (False,), "both": (True, False)}[args.hints]
    model = CachedModel(args.cache_dir)
    try:
        results = run(
            args.split, args.variant or VARIANTS,
            [(a, h) for h in hints for a in args.alpha or ALPHAS], embedder=model,
            log=lambda s: print(s, file=sys.stderr, flush=True),
        )  # fmt: skip
    finally:
        model.close()
    results["seconds"] = round(time.monotonic() - started, 1)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    print(f"split {results['split']}: {results['questions']} questions, {results['turns']} turns")
    print(recall_table(json.loads(json.dumps(results, default=str))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
