"""``ingest``: durable events/s through the SDK, against a raw append of the same bytes.

What is timed: building batches of 100 create/revise events with ``MemoryStore.event``
(which validates them) and ``MemoryStore.append`` of each batch (AES-GCM sealing, the
durable log append, deciding, and handing the batch to the projector thread, which competes
for the interpreter while it writes DuckDB). The events' plain values (texts, tags,
metadata, context) are generated beforehand. Each append has returned durably, so the rate
is of acknowledged events. Separately: how long ``flush()`` takes after the last append
returns (the projector's lag: zero when it keeps up), and the CPU time per event of the
append thread, of the projector thread and of the process's other threads (DuckDB's, the
log's checkpointer, the progress bar's) from the appends' start to the flush's end: the two
cores' budget is what bounds the rate.

The baseline, measured in the same run on the same data: the record bytes the SDK run
wrote, read back from its log, appended by :meth:`EmbeddedLog.append` to a fresh log with
the same durability and batch size. Its rate is what the storage layer allows; the ratio is
what the rest of the write path keeps of it.

``stages`` times the append path's steps one after another on one thread (no projector),
so the per-event costs that bound the SDK rate are in the results too.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from memstream.projections.decide import DecisionState, decide
from memstream.schemas.memcube import Logged
from memstream.sdk import MemoryStore
from memstream.streams.embedded import LOG_FILE
from memstream.streams.log import EmbeddedLog

from .common import (
    BenchError,
    Reporter,
    Scratch,
    Stopwatch,
    clean_heap,
    expect_counts,
    median,
    rate,
    scaled,
    spread,
    store_counts,
    thread_cpu_seconds,
)
from .workload import Workload

BATCH = 100
DURABILITIES = ("fsync", "os")
BASE_EVENTS = 100_000
STAGE_EVENTS = 10_000
GOAL_EVENTS_PER_S = 25_000
AIM_EVENTS_PER_S = 50_000
GOAL_RATIO = 0.3


def _log_rows(path: Path) -> list[tuple[bytes, str, bytes]]:
    """The (event id, namespace, record bytes) a store's log holds, in log order."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute(
            'SELECT event_id, namespace, data FROM records ORDER BY "offset"'
        ).fetchall()
    finally:
        db.close()
    return [(bytes(e), n, bytes(d)) for e, n, d in rows]


def _sdk_run(
    scratch: Scratch, reporter: Reporter, events: int, durability: str, seed: int
) -> tuple[dict[str, Any], Path]:
    wl = Workload(seed=seed)
    batches = list(wl.spec_batches(events, BATCH))
    path = scratch.new(f"sdk-{durability}")
    store = MemoryStore.open(path, actor="bench", durability=durability, semantic=False)
    outcomes = []
    try:
        with reporter.task(f"ingest sdk ({durability})", events) as advance, clean_heap():
            threads0, process0 = thread_cpu_seconds(), time.process_time()
            with Stopwatch() as append:
                for b in batches:
                    outcomes.append(store.append([s.build(store) for s in b]))
                    advance(len(b))
            with Stopwatch() as flush:
                store.flush()
            threads1, process1 = thread_cpu_seconds(), time.process_time()
        cpu = _cpu_split(
            threads0, threads1, process1 - process0, store.runtime.projector_native_id, events
        )
        accepted = sum(o.accepted for out in outcomes for o in out)
        if accepted != events:
            raise BenchError(f"ingest: {events - accepted} of {events} events were rejected")
        counts = expect_counts(
            store_counts(store), events=events, creates=wl.creates, what="ingest (sdk)"
        )
    finally:
        store.close()
    return {
        "append_seconds": append.seconds,
        "events_per_s": rate(events, append.seconds),
        "flush_seconds": flush.seconds,
        "end_to_end_events_per_s": rate(events, append.seconds + flush.seconds),
        "cpu_us_per_event": cpu,
        "creates": wl.creates,
        "revises": wl.revises,
        "counts": counts,
    }, path


def _cpu_split(
    before: dict[int, float] | None,
    after: dict[int, float] | None,
    process: float,
    projector: int | None,
    events: int,
) -> dict[str, float | None]:
    """µs of CPU per event: the whole process, the append (calling) thread, the projector
    thread, and the rest (DuckDB's threads, the log's checkpointer, ...)."""
    us = 1e6 / events
    out: dict[str, float | None] = {"process": process * us}
    if before is None or after is None:
        return {**out, "append_thread": None, "projector_thread": None, "other_threads": None}
    used = {tid: t - before.get(tid, 0.0) for tid, t in after.items()}
    main = used.get(threading.get_native_id(), 0.0)
    proj = used.get(projector, 0.0) if projector is not None else 0.0
    return {
        **out,
        "append_thread": main * us,
        "projector_thread": proj * us,
        "other_threads": max(0.0, process - main - proj) * us,
    }


def _raw_run(
    scratch: Scratch, reporter: Reporter, rows: list[tuple[bytes, str, bytes]], durability: str
) -> dict[str, Any]:
    path = scratch.new(f"raw-{durability}")
    log = EmbeddedLog(path / LOG_FILE, durability=durability)
    chunks = [rows[i : i + BATCH] for i in range(0, len(rows), BATCH)]
    try:
        with reporter.task(f"ingest raw log ({durability})", len(rows)) as advance, clean_heap():
            with Stopwatch() as sw:
                for c in chunks:
                    log.append(c)
                    advance(len(c))
        held = log.next_offset
    finally:
        log.close()
    scratch.remove(path)
    if held != len(rows):
        raise BenchError(f"ingest (raw): the log holds {held} records, not {len(rows)}")
    return {"append_seconds": sw.seconds, "events_per_s": rate(len(rows), sw.seconds)}


def _stages(scratch: Scratch, events: int, seed: int) -> dict[str, float]:
    """µs per event of each step of the append path, run one after another on one thread
    (no projector running), subjects' keys already created."""
    wl = Workload(seed=seed)
    batches = list(wl.spec_batches(events, BATCH))
    path = scratch.new("stages")
    store = MemoryStore.open(path, actor="bench", durability="os", semantic=False)
    rt = store.runtime
    sw = {k: Stopwatch() for k in ("build", "seal", "log_os", "log_fsync", "decide")}
    logs = {d: EmbeddedLog(path / f"stage-{d}.sqlite", durability=d) for d in ("os", "fsync")}
    state = DecisionState()
    # A subject's first key is created and fsync'd once: the SDK runs pay for it, the
    # per-event stage costs leave it out.
    for ns in wl.spaces:
        rt.keys.current(ns)
    try:
        with clean_heap():
            for b in batches:
                with sw["build"]:  # MemoryStore.event, and append's check of what it built
                    valid = store._validate([s.build(store) for s in b])
                with sw["seal"]:
                    sealed = rt.sealer.seal_all(valid)
                recs = [(e.id_bytes, e.namespace, s[0]) for e, s in zip(valid, sealed, strict=True)]
                with sw["log_fsync"]:
                    logs["fsync"].append(recs)
                with sw["log_os"]:
                    placed = logs["os"].append(recs)
                with sw["decide"]:
                    for e, (_, kid, chash), a in zip(valid, sealed, placed, strict=True):
                        logged = Logged(a.offset, a.recorded_at, a.chain_hash, e, kid, chash)
                        state.commit(logged, decide(state, logged))
    finally:
        for log in logs.values():
            log.close()
        store.close()
        scratch.remove(path)
    return {k: v.seconds / events * 1e6 for k, v in sw.items()}


def run(
    scratch: Scratch, reporter: Reporter, scale: float, repeats: int, seed: int
) -> dict[str, Any]:
    """Every durability, ``repeats`` times: SDK run, then raw run on the SDK run's bytes."""
    events = scaled(BASE_EVENTS, scale, minimum=BATCH)
    events -= events % BATCH
    runs: dict[str, list[dict[str, Any]]] = {d: [] for d in DURABILITIES}
    for durability in DURABILITIES:
        for _ in range(repeats):
            sdk, path = _sdk_run(scratch, reporter, events, durability, seed)
            rows = _log_rows(path / LOG_FILE)
            scratch.remove(path)
            raw = _raw_run(scratch, reporter, rows, durability)
            runs[durability].append(
                {"sdk": sdk, "raw": raw, "ratio": sdk["events_per_s"] / raw["events_per_s"]}
            )
    stage_events = min(events, scaled(STAGE_EVENTS, scale, minimum=BATCH))
    stage_runs = [_stages(scratch, stage_events, seed) for _ in range(repeats)]
    stages = {k: median([s[k] for s in stage_runs]) for k in stage_runs[0]}

    results: dict[str, Any] = {}
    for durability, rs in runs.items():
        sdk_eps = median([r["sdk"]["events_per_s"] for r in rs])
        raw_eps = median([r["raw"]["events_per_s"] for r in rs])
        results[durability] = {
            "sdk_events_per_s": spread([r["sdk"]["events_per_s"] for r in rs]),
            "raw_log_events_per_s": spread([r["raw"]["events_per_s"] for r in rs]),
            "ratio": sdk_eps / raw_eps,
            "ratio_per_run": [r["ratio"] for r in rs],
            "flush_after_last_append_s": spread([r["sdk"]["flush_seconds"] for r in rs]),
            "end_to_end_events_per_s": spread([r["sdk"]["end_to_end_events_per_s"] for r in rs]),
            "cpu_us_per_event": {
                k: median([r["sdk"]["cpu_us_per_event"][k] for r in rs])
                if rs[0]["sdk"]["cpu_us_per_event"][k] is not None
                else None
                for k in rs[0]["sdk"]["cpu_us_per_event"]
            },
            "meets_required": sdk_eps >= GOAL_EVENTS_PER_S,
            "meets_aim": sdk_eps >= AIM_EVENTS_PER_S,
            "meets_ratio_goal": sdk_eps / raw_eps >= GOAL_RATIO,
            "runs": rs,
        }
    main_thread = stages["build"] + stages["seal"] + stages["log_os"] + stages["decide"]
    return {
        "parameters": {
            "events": events,
            "batch_size": BATCH,
            "durabilities": list(DURABILITIES),
            "repeats": repeats,
            "encryption": "AES-256-GCM per subject",
            "semantic_indexes": False,
            "stage_events": stage_events,
        },
        "goals": {
            "events_per_s_required": GOAL_EVENTS_PER_S,
            "events_per_s_aim": AIM_EVENTS_PER_S,
            "ratio_to_raw_log": GOAL_RATIO,
        },
        "results": results,
        "stages_us_per_event": {
            **stages,
            "append_thread_total_os": main_thread,
            "append_thread_bound_events_per_s": 1e6 / main_thread,
        },
    }
