"""The summary: one markdown table built from the suites' JSON files.

The table is rebuilt from whatever ``<suite>.json`` files the output directory holds, so
suites run at different times into the same directory still give one table. The same
table can replace the block between two markers in ``docs/benchmarks.md``; the prose
around it (what bounds each number) is written by hand and stays.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SUITE_ORDER = ("ingest", "project", "replay")
START = "<!-- bench:summary:start -->"
END = "<!-- bench:summary:end -->"


def _n(x: float) -> str:
    return f"{x:,.0f}"


def _ok(flag: bool) -> str:
    return "yes" if flag else "**no**"


def load(out: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for name in SUITE_ORDER:
        p = out / f"{name}.json"
        if p.exists():
            found[name] = json.loads(p.read_text())
    return found


def _ingest_rows(d: dict[str, Any]) -> list[str]:
    p, rows = d["parameters"], []
    for durability, r in d["results"].items():
        sdk, raw = r["sdk_events_per_s"]["median"], r["raw_log_events_per_s"]["median"]
        lag = r["flush_after_last_append_s"]["median"]
        rows.append(
            f"| ingest, durability `{durability}` | SDK `append`, {_n(p['events'])} events in "
            f"batches of {p['batch_size']}: **{_n(sdk)} ev/s** (projector done "
            f"{lag:.2f} s after the last append) | raw `EmbeddedLog.append` of the same "
            f"bytes: {_n(raw)} ev/s | {r['ratio']:.2f} | ≥ 25,000 ev/s (aim 50,000), "
            f"ratio ≥ 0.3 | {_ok(r['meets_required'])} / {_ok(r['meets_ratio_goal'])} |"
        )
    return rows


def _project_rows(d: dict[str, Any]) -> list[str]:
    p, r = d["parameters"], d["results"]
    eps, raw = r["catch_up_events_per_s"]["median"], r["raw_duckdb_events_per_s"]["median"]
    close, ckpt = r["close_after_catch_up_s"]["median"], r["raw_final_checkpoint_s"]["median"]
    return [
        f"| project | catch-up (read, open, decide, project into DuckDB) of "
        f"{_n(p['events'])} events, batches of {_n(p['batch_size'])}: **{_n(eps)} ev/s** "
        f"(close afterwards {close:.1f} s) | raw Arrow → DuckDB insert of the same rows: "
        f"{_n(raw)} ev/s (final checkpoint {ckpt:.1f} s) | {r['ratio']:.2f} | "
        f"≥ 20,000 ev/s | {_ok(r['meets_required'])} |"
    ]


def _replay_rows(d: dict[str, Any]) -> list[str]:
    p, r = d["parameters"], d["results"]
    s = r["replay_seconds"]["median"]
    return [
        f"| replay | `MemoryStore.replay` of {_n(p['events'])} events: **{s:.1f} s** "
        f"({_n(r['replay_events_per_s']['median'])} ev/s; copy "
        f"{r['copy_seconds']['median']:.1f} s, projection {r['project_seconds']['median']:.1f} s;"
        f" close afterwards {r['close_seconds']['median']:.1f} s)"
        f" | — | — | < 60 s per 1,000,000 events ({r['seconds_per_million_events']:.0f} s) "
        f"| {_ok(r['meets_goal'])} |"
    ]


_ROWS = {"ingest": _ingest_rows, "project": _project_rows, "replay": _replay_rows}


def table(results: dict[str, dict[str, Any]]) -> str:
    """The markdown summary of the suites in ``results`` (name → suite JSON)."""
    lines = [
        "| suite | measured (median) | baseline, same run | ratio | goal | met |",
        "|---|---|---|---|---|---|",
    ]
    for name in SUITE_ORDER:
        if name in results:
            lines.extend(_ROWS[name](results[name]))
    notes = []
    for name in SUITE_ORDER:
        if name not in results:
            continue
        d = results[name]
        m = d["machine"]
        notes.append(
            f"- `{name}`: {d['timestamp']}, scale {d['scale']}, {d['parameters']['repeats']} "
            f"repeats; {m['cpu_usable']} CPUs ({m['cpu_model']}), Python {m['python']}, "
            f"DuckDB {m['libraries'].get('duckdb')}, SQLite {m['libraries'].get('sqlite')}."
        )
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def write_summary(out: Path) -> Path:
    """``<out>/summary.md`` from the suite JSON files in ``out``."""
    text = "# memstream benchmark summary\n\n" + table(load(out))
    path = out / "summary.md"
    path.write_text(text)
    return path


def update_docs(doc: Path, out: Path) -> None:
    """Replace the summary block of a markdown document (between the markers)."""
    text = doc.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{doc} has no {START} ... {END} block to replace")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(head + START + "\n" + table(load(out)) + END + tail)
