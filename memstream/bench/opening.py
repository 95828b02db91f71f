"""``open``: what verifying the log's hash chain costs when a store opens.

A store verifies, when it opens, the records appended since the position verified at its
previous open (and that position's record), not the whole log: the cost should follow what
is new, not the log's size. At scale 1.0 the log holds 200,000 create/revise records
(written once by :func:`memstream.bench.workload.write_log`); the first open verifies and
projects all of them (reported, not the headline). Each repeat then appends 1,000 records
through the store, closes it, and times:

- the reopen, which verifies those 1,000 records (the baseline's subject);
- the verification inside it (``EmbeddedRuntime.open_check.seconds``);
- a reopen with nothing new (what an open costs without anything to verify);
- ``MemoryStore.verify()`` of the whole log (what ``audit verify`` does), the baseline.

The suite fails unless each reopen verified exactly the records appended since the one
before, and the full verification finds the chain intact.
"""

from __future__ import annotations

from typing import Any

from memstream.sdk import MemoryStore

from .common import BenchError, Reporter, Scratch, Stopwatch, clean_heap, median, scaled, spread
from .workload import Workload, write_log

BASE_RECORDS = 200_000
BASE_NEW = 1_000
LOG_BATCH = 5_000
APPEND_BATCH = 100


def _open(path, reporter: Reporter | None = None) -> MemoryStore:
    progress = reporter.factory("open: first open") if reporter is not None else None
    return MemoryStore.open(path, actor="bench", durability="os", semantic=False, progress=progress)


def run(
    scratch: Scratch, reporter: Reporter, scale: float, repeats: int, seed: int
) -> dict[str, Any]:
    records = scaled(BASE_RECORDS, scale, minimum=1_000)
    new = scaled(BASE_NEW, scale, minimum=10)
    path = scratch.new("store")
    workload = Workload(seed=seed)
    with reporter.task("open: write the log", records) as advance:
        written = write_log(path, workload, records, batch=LOG_BATCH, advance=advance)
    with clean_heap(), Stopwatch() as first:
        store = _open(path, reporter)
    first_check = store.runtime.open_check
    runs = []
    try:
        for _ in range(repeats):
            for events in workload.batches(new, APPEND_BATCH):
                store.append(events, raise_on_reject=True)
            head = store.head
            store.close()
            with clean_heap(), Stopwatch() as reopen:
                store = _open(path)
            check = store.runtime.open_check
            if check.records != new or check.broken is not None or check.start != head - new + 1:
                raise BenchError(f"open: the reopen verified {check}, not the {new} new records")
            with clean_heap(), Stopwatch() as full:
                brk = store.verify()
            if brk is not None:
                raise BenchError(f"open: the log's chain breaks: {brk}")
            store.close()
            with clean_heap(), Stopwatch() as idle:
                store = _open(path)
            if store.runtime.open_check.records != 0:
                raise BenchError(f"open: a reopen with nothing new verified {check}")
            runs.append(
                {
                    "log_records": head + 1,
                    "reopen_seconds": reopen.seconds,
                    "open_verify_seconds": check.seconds,
                    "reopen_nothing_new_seconds": idle.seconds,
                    "full_verify_seconds": full.seconds,
                }
            )
    finally:
        store.close()
    reopen_s = median([r["reopen_seconds"] for r in runs])
    verify_s = median([r["open_verify_seconds"] for r in runs])
    full_s = median([r["full_verify_seconds"] for r in runs])
    idle_s = median([r["reopen_nothing_new_seconds"] for r in runs])
    return {
        "parameters": {
            "log_records": records,
            "new_records": new,
            "creates": written.creates,
            "revises": written.revises,
            "repeats": repeats,
            "append_batch": APPEND_BATCH,
            "semantic_indexes": False,
            "first_open_seconds": first.seconds,
            "first_open_verified_records": first_check.records,
        },
        "goals": {"verified_records_at_reopen": new},
        "results": {
            "reopen_seconds": spread([r["reopen_seconds"] for r in runs]),
            "open_verify_seconds": spread([r["open_verify_seconds"] for r in runs]),
            "reopen_nothing_new_seconds": spread([r["reopen_nothing_new_seconds"] for r in runs]),
            "full_verify_seconds": spread([r["full_verify_seconds"] for r in runs]),
            "full_verify_us_per_record": full_s * 1e6 / runs[-1]["log_records"],
            "open_verify_us_per_record": verify_s * 1e6 / new,
            "reopen_over_full_verify": reopen_s / full_s,
            "open_verify_over_full_verify": verify_s / full_s,
            "reopen_over_nothing_new": reopen_s / idle_s,
            "runs": runs,
        },
    }
