"""``replay``: events/s rebuilding every projection from the log (``MemoryStore.replay``).

At scale 1.0 the log holds 1,000,000 create/revise records (goal: replayed in under 60 s).
The log is written once per run by the fastest honest path (validate, seal, append in
batches of 5,000 with durability ``os``; see :func:`memstream.bench.workload.write_log`);
the source store is then opened, which projects it once (reported, not the headline).

Each repeat times ``store.replay(into)`` end to end: the consistent copy of log and keys
(SQLite's online backup) and the opening of the copy, which reads, opens, decides and
projects every record. The two phases are reported apart: the copy ends when the new store
starts projecting. Every replay must reach the source's state exactly (same counts, same
digest of every memory), or the suite fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from memstream.sdk import MemoryStore
from memstream.streams.embedded import ProgressFactory

from .common import (
    BenchError,
    Reporter,
    Scratch,
    Stopwatch,
    clean_heap,
    dir_bytes,
    expect_counts,
    median,
    rate,
    scaled,
    spread,
    store_counts,
)
from .workload import Workload, write_log

BASE_EVENTS = 1_000_000
GOAL_SECONDS_PER_MILLION = 60.0
LOG_BATCH = 5_000


def _marking(reporter: Reporter, started: list[float]) -> ProgressFactory:
    """A progress factory that also notes when projecting starts (the copy is done then)."""
    bars = reporter.factory("replay")

    def make(what: str, total: int) -> Callable[[int], None]:
        started.append(time.perf_counter())
        return bars(what, total)

    return make


def run(
    scratch: Scratch, reporter: Reporter, scale: float, repeats: int, seed: int
) -> dict[str, Any]:
    events = scaled(BASE_EVENTS, scale, minimum=1_000)
    src = scratch.new("source")
    with reporter.task("replay: write the log", events) as advance:
        written = write_log(src, Workload(seed=seed), events, batch=LOG_BATCH, advance=advance)
    log_bytes = dir_bytes(src)
    with clean_heap(), Stopwatch() as opening:
        source = MemoryStore.open(
            src, actor="bench", durability="os", semantic=False,
            progress=reporter.factory("replay: source"),
        )  # fmt: skip
    runs = []
    try:
        expected = expect_counts(
            store_counts(source), events=events, creates=written.creates, what="replay (source)"
        )
        for _ in range(repeats):
            into = scratch.new("replica")
            started: list[float] = []
            with clean_heap(), Stopwatch() as sw:
                t0 = time.perf_counter()
                replica = source.replay(into, progress=_marking(reporter, started))
            try:
                counts = expect_counts(
                    store_counts(replica), events=events, creates=written.creates, what="replay"
                )
                if counts != expected:
                    raise BenchError(
                        f"replay: the replica differs from its source: {counts} != {expected}"
                    )
            finally:
                with Stopwatch() as closing:
                    replica.close()
            scratch.remove(into)
            copy = (started[0] - t0) if started else 0.0
            runs.append(
                {
                    "seconds": sw.seconds,
                    "events_per_s": rate(events, sw.seconds),
                    "copy_seconds": copy,
                    "project_seconds": sw.seconds - copy,
                    "close_seconds": closing.seconds,
                    "counts": counts,
                }
            )
    finally:
        source.close()
    seconds = median([r["seconds"] for r in runs])
    per_million = seconds * 1_000_000 / events
    return {
        "parameters": {
            "events": events,
            "creates": written.creates,
            "revises": written.revises,
            "repeats": repeats,
            "log_batch": LOG_BATCH,
            "semantic_indexes": False,
            "store_bytes": log_bytes,
            "log_write_seconds": written.seconds,
            "log_write_events_per_s": rate(events, written.seconds),
            "source_open_seconds": opening.seconds,
        },
        "goals": {"seconds_per_million_events": GOAL_SECONDS_PER_MILLION},
        "results": {
            "replay_seconds": spread([r["seconds"] for r in runs]),
            "replay_events_per_s": spread([r["events_per_s"] for r in runs]),
            "copy_seconds": spread([r["copy_seconds"] for r in runs]),
            "project_seconds": spread([r["project_seconds"] for r in runs]),
            "close_seconds": spread([r["close_seconds"] for r in runs]),
            "seconds_per_million_events": per_million,
            "meets_goal": per_million < GOAL_SECONDS_PER_MILLION,
            "runs": runs,
        },
    }
