"""``replay``: events/s rebuilding every projection from the log (``MemoryStore.replay``).

At scale 1.0 the log holds 1,000,000 create/revise records (goal: replayed in under 60 s).
The log is written once per run by the fastest honest path (validate, seal, append in
batches of 5,000 with durability ``os``; see :func:`memstream.bench.workload.write_log`);
the source store is then opened, which projects it once (reported, not the headline).

Each repeat times ``store.replay(into)`` end to end: the consistent copy of log and keys
(SQLite's online backup) and the new store's projection of every record (read, open,
decide, project). The two overlap: the log is copied on a thread while the projection reads
the same records from the source's log. Each is reported with its own duration, from the
progress the replay reports. Every replay must reach the source's state exactly (same
counts, same digest of every memory), or the suite fails.
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


def _marking(reporter: Reporter, marks: dict[str, float]) -> ProgressFactory:
    """A progress factory that also notes when the copy ends and the projection starts."""
    bars = reporter.factory("replay")

    def make(what: str, total: int) -> Callable[[int], None]:
        bar = bars(what, total)
        if what != "copying the log":
            marks.setdefault("projecting", time.perf_counter())
            return bar

        def tick(n: int) -> None:  # called once, from the copy's thread, when it is done
            marks["copied"] = time.perf_counter()
            bar(n)

        return tick

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
            marks: dict[str, float] = {}
            with clean_heap(), Stopwatch() as sw:
                t0 = time.perf_counter()
                replica = source.replay(into, progress=_marking(reporter, marks))
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
            if "copied" not in marks or "projecting" not in marks:
                raise BenchError(f"replay: the copy or the projection was not reported: {marks}")
            runs.append(
                {
                    "seconds": sw.seconds,
                    "events_per_s": rate(events, sw.seconds),
                    # The two overlap: the copy runs on a thread while the projection reads
                    # the source's log (``MemoryStore.replay``).
                    "copy_seconds": marks["copied"] - t0,
                    "project_seconds": t0 + sw.seconds - marks["projecting"],
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
