"""``sensitive``: precision and recall of sensitive-content detection on the labelled sets,
and what a scan costs per text.

The sets are ``memstream/bench/data/sensitive/{dev,test}.jsonl`` (see
:mod:`memstream.bench.sensitive_data`): ``dev`` is what the recognizers and thresholds were
tuned on, ``test`` was written before any tuning and never tuned on; its numbers are the
ones to quote.

Matching rule (per type, overlap): a detection is correct when a labelled value of the
same type overlaps its span; a labelled value is found when a detection of the same type
overlaps it. Precision = correct detections / detections, recall = found values / values.
The JSON also has the strict rule (same type and exactly the same span) for the overall
figures, and every miss and false alarm of ``dev``, for tuning.

Two scanners are measured on the same texts: with person names (spaCy's small English
model, when installed) and without (a blank tokenizer). Latency: each text scanned once,
one at a time, after a warm-up; p50 and p95 per text, median over the repeats. The load
time (building the analyzer and the spaCy pipeline, after Presidio and spaCy are imported:
``import_seconds``) is a single measurement.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

from memstream.governance.sensitive import TYPES, SensitiveScanner, names_available

from .common import Reporter, Scratch, spread


def load_split(split: str) -> list[dict[str, Any]]:
    """The shipped labelled examples of ``split`` (imported here, not at the top, so that
    ``python -m memstream.bench.sensitive_data`` runs its module only once)."""
    from .sensitive_data import load_split as load

    return load(split)


SPLITS = ("dev", "test")
#: What the suite checks before it reports: recall and precision overall on ``test``,
#: with names, must stay at or above these (set below the measured values).
FLOORS = {"precision": 0.85, "recall": 0.85}


def _overlaps(a: dict[str, Any], start: int, end: int) -> bool:
    return a["start"] < end and start < a["end"]


def evaluate(
    scanner: SensitiveScanner, rows: Sequence[dict[str, Any]], *, keep_errors: bool = False
) -> dict[str, Any]:
    """Per-type and overall precision/recall/F1 of ``scanner`` on labelled ``rows``.

    Types the scanner does not report (``person`` without the name model) are left out of
    the overall figures and shown with ``"reported": false``.
    """
    counts = {t: {"detections": 0, "correct": 0, "labelled": 0, "found": 0} for t in TYPES}
    strict = {"detections": 0, "labelled": 0, "exact": 0}
    errors: list[dict[str, Any]] = []
    flagged = 0
    for row in rows:
        text, gold = row["text"], row["entities"]
        found = scanner.scan(text)
        flagged += bool(found and not gold)
        for d in found:
            c = counts[d.type]
            c["detections"] += 1
            ok = any(g["type"] == d.type and _overlaps(g, d.start, d.end) for g in gold)
            c["correct"] += ok
            if d.type in scanner.types:
                strict["detections"] += 1
                strict["exact"] += any(
                    g["type"] == d.type and (g["start"], g["end"]) == (d.start, d.end) for g in gold
                )
            if not ok and keep_errors:
                errors.append({"error": "false alarm", "type": d.type, "kind": d.kind,
                               "value": text[d.start : d.end], "text": text})  # fmt: skip
        for g in gold:
            c = counts[g["type"]]
            c["labelled"] += 1
            hit = any(d.type == g["type"] and _overlaps(g, d.start, d.end) for d in found)
            c["found"] += hit
            if g["type"] in scanner.types:
                strict["labelled"] += 1
            if not hit and keep_errors and g["type"] in scanner.types:
                errors.append({"error": "miss", "type": g["type"],
                               "value": text[g["start"] : g["end"]], "text": text})  # fmt: skip
    per_type = {t: {**c, **_prf(c), "reported": t in scanner.types} for t, c in counts.items()}
    reported = [counts[t] for t in TYPES if t in scanner.types]
    total = {k: sum(c[k] for c in reported) for k in ("detections", "correct", "labelled", "found")}
    out: dict[str, Any] = {
        "texts": len(rows),
        "texts_with_values": sum(bool(r["entities"]) for r in rows),
        "overall": {**total, **_prf(total)},
        "strict": {
            **strict,
            "precision": _ratio(strict["exact"], strict["detections"]),
            "recall": _ratio(strict["exact"], strict["labelled"]),
        },
        "per_type": per_type,
        # texts with no labelled value in which something was reported anyway
        "negatives_flagged": flagged,
        "negatives": sum(1 for r in rows if not r["entities"]),
    }
    if keep_errors:
        out["errors"] = errors
    return out


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def _prf(c: dict[str, int]) -> dict[str, float | None]:
    p, r = _ratio(c["correct"], c["detections"]), _ratio(c["found"], c["labelled"])
    f1 = 2 * p * r / (p + r) if p is not None and r is not None and p + r > 0 else None
    return {"precision": p, "recall": r, "f1": f1}


def latency(scanner: SensitiveScanner, texts: Sequence[str], repeats: int) -> dict[str, Any]:
    """p50/p95 milliseconds per text, one text at a time (median over ``repeats``)."""
    p50s, p95s, means = [], [], []
    for _ in range(repeats):
        times = []
        for text in texts:
            t = time.perf_counter()
            scanner.scan(text)
            times.append((time.perf_counter() - t) * 1e3)
        times.sort()
        p50s.append(statistics.median(times))
        p95s.append(times[min(len(times) - 1, round(0.95 * (len(times) - 1)))])
        means.append(statistics.fmean(times))
    chars = [len(t) for t in texts]
    return {
        "texts": len(texts),
        "mean_chars": statistics.fmean(chars),
        "p50_ms": spread(p50s),
        "p95_ms": spread(p95s),
        "mean_ms": spread(means),
    }


def measure(repeats: int = 3, *, reporter: Reporter | None = None) -> dict[str, Any]:
    """Both configurations on both splits; see the module's docstring."""
    data = {split: load_split(split) for split in SPLITS}
    t = time.perf_counter()
    import presidio_analyzer  # noqa: F401  (timed apart from the scanners' loading)
    import presidio_anonymizer  # noqa: F401
    import spacy  # noqa: F401

    configs: dict[str, Any] = {"import_seconds": time.perf_counter() - t}
    for name, names in (("names", True), ("no_names", False)):
        if names and not names_available():
            configs[name] = {"skipped": "the name model is not installed"}
            continue
        scanner = SensitiveScanner(names=names)
        t = time.perf_counter()
        scanner.load()
        load_s = time.perf_counter() - t
        result: dict[str, Any] = {"scanner": scanner.describe(), "load_seconds": load_s}
        for split, rows in data.items():
            result[split] = evaluate(scanner, rows, keep_errors=split == "dev")
        texts = [r["text"] for split in SPLITS for r in data[split]]
        if reporter is not None:
            with reporter.task(f"sensitive: latency ({name})", repeats) as advance:
                lat = []
                for _ in range(repeats):
                    lat.append(latency(scanner, texts, 1))
                    advance(1)
            result["latency"] = _merge_latency(lat)
        else:
            result["latency"] = latency(scanner, texts, repeats)
        configs[name] = result
    return configs


def _merge_latency(runs: list[dict[str, Any]]) -> dict[str, Any]:
    first = runs[0]
    return {
        "texts": first["texts"],
        "mean_chars": first["mean_chars"],
        **{k: spread([r[k]["median"] for r in runs]) for k in ("p50_ms", "p95_ms", "mean_ms")},
    }


def run(
    scratch: Scratch, reporter: Reporter, scale: float, repeats: int, seed: int
) -> dict[str, Any]:
    """The ``sensitive`` suite: the labelled sets are fixed, so ``scale`` and ``seed`` do
    not apply. ``meets`` says whether ``test`` reaches :data:`FLOORS`."""
    configs = measure(repeats, reporter=reporter)
    main = configs["names"] if "test" in configs["names"] else configs["no_names"]
    overall = main["test"]["overall"]
    meets = {k: (overall[k] or 0.0) >= floor for k, floor in FLOORS.items()}
    return {
        "parameters": {
            "repeats": repeats,
            "splits": {s: len(load_split(s)) for s in SPLITS},
            "matching": "same type and overlapping span (strict: same type, same span)",
        },
        "goals": FLOORS,
        "results": {
            **configs,
            "headline": "names" if main is configs["names"] else "no_names",
            "meets": meets,
        },  # fmt: skip
    }
