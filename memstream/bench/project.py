"""``project``: events/s decided and projected into DuckDB, against a raw Arrow insert.

A log of N create/revise records is written once (unprojected; semantic indexes off: the
core projection only). Then, ``repeats`` times:

- **catch-up** (the headline): a copy of that store directory is opened with
  ``MemoryStore.open``. Its projection is empty, so the runtime reads every record, opens
  it (AES-GCM), decides it and writes the core projection in the batches a catch-up uses
  (``catch_up_batch``: 10,000 records at 100,000 events, a DuckDB row group on logs of
  about 500,000 records and more): exactly the
  path a replay takes. Timed from the call until the store is open and caught up; closing
  it afterwards (DuckDB's final checkpoint) is reported apart.
- **raw** (the baseline): the rows the catch-up wrote are read back from its DuckDB file as
  Arrow tables, cut into the same batches (by offset), and inserted into a fresh file with
  the same schema and connection settings: per batch one transaction with one ``INSERT``
  per table (an upsert for ``memories`` and ``subjects``) and the offset row. That is what
  DuckDB itself costs for these rows; the ratio is what the projector keeps of it. The
  final ``CHECKPOINT`` is reported apart, like the catch-up's close.

Once, to explain the headline, the same records are read, opened, decided, turned into
rows and written by ``DuckStore.write`` step by step on one thread, each step timed on its
own (``stages_us_per_event``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from memstream.projections.core import CoreBatch, project
from memstream.projections.decide import DecisionState, decide
from memstream.projections.duck import DUCKDB_CONFIG, SCHEMA, DuckStore
from memstream.schemas.codec import EventCodec
from memstream.schemas.events import default_registry
from memstream.schemas.memcube import Logged
from memstream.sdk import MemoryStore
from memstream.streams.embedded import CORE_FILE, KEYS_FILE, LOG_FILE, STATE_DIR, catch_up_batch
from memstream.streams.keystore import KeyStore
from memstream.streams.log import EmbeddedLog
from memstream.streams.sealing import Sealer

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
)
from .workload import LogWritten, Workload, write_log

BATCH = 10_000  # the store's default batch (Options.batch_size); catch-up batches are larger
BASE_EVENTS = 100_000
GOAL_EVENTS_PER_S = 20_000


def _copy_store(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    for name in (LOG_FILE, KEYS_FILE):
        shutil.copy2(src / name, dest / name)


def _catch_up(
    scratch: Scratch, reporter: Reporter, src: Path, written: LogWritten
) -> tuple[dict[str, Any], Path]:
    path = scratch.new("catch-up")
    _copy_store(src, path)
    with clean_heap(), Stopwatch() as sw:
        store = MemoryStore.open(
            path, actor="bench", durability="os", batch_size=BATCH, semantic=False,
            progress=reporter.factory("project catch-up"),
        )  # fmt: skip
    try:
        counts = expect_counts(
            store_counts(store),
            events=written.records,
            creates=written.creates,
            what="project (catch-up)",
        )
    finally:
        with Stopwatch() as closing:
            store.close()
    return {
        "seconds": sw.seconds,
        "events_per_s": rate(written.records, sw.seconds),
        "close_seconds": closing.seconds,
        "counts": counts,
    }, path


def _opened(src: Path) -> tuple[list[Logged], dict[str, float]]:
    """Every record of the log, read and opened (decrypted, decoded) as the runtime does,
    with the µs per event each of the two steps took."""
    codec = EventCodec(default_registry())
    keys = KeyStore(src / KEYS_FILE)
    log = EmbeddedLog(src / LOG_FILE, create=False)
    sealer = Sealer(keys, codec)
    read, opened = Stopwatch(), Stopwatch()
    out: list[Logged] = []
    try:
        with clean_heap():
            batches = log.read(0, batch=BATCH)
            while True:
                with read:
                    recs = next(batches, None)
                if recs is None:
                    break
                with opened:
                    for r in recs:
                        ev, stored = sealer.open(r.data)
                        kid = stored.sealed.kid if stored.sealed is not None else None
                        out.append(
                            Logged(
                                r.offset, r.recorded_at, r.chain_hash, ev, kid, stored.content_hash
                            )
                        )
    finally:
        log.close()
        keys.close()
    n = max(1, len(out))
    return out, {"read": read.seconds / n * 1e6, "open": opened.seconds / n * 1e6}


def _isolated(scratch: Scratch, logged: list[Logged], batch_size: int) -> dict[str, float]:
    """Decide, project and write pre-opened events in the runtime's batches; µs per event."""
    path = scratch.new("isolated")
    path.mkdir()
    duck = DuckStore(path / CORE_FILE)
    state = DecisionState()
    sw = {k: Stopwatch() for k in ("decide", "project", "write")}
    try:
        with clean_heap():
            for i in range(0, len(logged), batch_size):
                pairs = []
                with sw["decide"]:
                    for lg in logged[i : i + batch_size]:
                        out = decide(state, lg)
                        state.commit(lg, out)
                        pairs.append((lg, out))
                with sw["project"]:
                    batch: CoreBatch = project(pairs)
                with sw["write"]:
                    duck.write(batch)
    finally:
        duck.close()
        scratch.remove(path)
    n = len(logged)
    return {k: v.seconds / n * 1e6 for k, v in sw.items()}


def _raw_batches(core: Path, events: int, batch_size: int) -> list[dict[str, pa.Table]]:
    """The rows a projection holds, as Arrow tables cut into the runtime's batches."""
    con = duckdb.connect(str(core), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        out = []
        for lo in range(0, events, batch_size):
            hi = min(lo + batch_size, events) - 1
            rng = f'"offset" BETWEEN {lo} AND {hi}'
            tables = {
                t: con.sql(f'SELECT * FROM {t} WHERE {rng} ORDER BY "offset"').to_arrow_table()
                for t in ("audit", "transitions", "versions")
            }
            # memories: one row per memory the batch touched (an upsert, like the projector's)
            tables["memories"] = con.sql(
                "SELECT * FROM memories WHERE memory_id IN "
                f"(SELECT DISTINCT memory_id FROM transitions WHERE {rng})"
            ).to_arrow_table()
            tables["subjects"] = con.sql(
                "SELECT * FROM subjects WHERE subject IN "
                f"(SELECT DISTINCT subject FROM audit WHERE key_id IS NOT NULL AND {rng})"
            ).to_arrow_table()
            tables["offsets"] = pa.table(
                {"projector": ["core"], "offset": pa.array([hi], pa.int64())}
            )
            out.append(tables)
    finally:
        con.close()
    return out


def _raw_insert(
    scratch: Scratch, batches: list[dict[str, pa.Table]], events: int
) -> dict[str, Any]:
    path = scratch.new("raw")
    path.mkdir()
    # The store's own connection settings, so that the baseline differs only in the rows'
    # path: Arrow tables straight from DuckDB rather than from the projector.
    con = duckdb.connect(str(path / CORE_FILE), config=dict(DUCKDB_CONFIG))
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(SCHEMA)
        with clean_heap(), Stopwatch() as sw:
            for b in batches:
                _insert_batch(con, b)
        with Stopwatch() as checkpoint:
            con.execute("CHECKPOINT")
        held = con.execute("SELECT count(*) FROM audit").fetchone()[0]  # type: ignore[index]
    finally:
        con.close()
        scratch.remove(path)
    if held != events:
        raise BenchError(f"project (raw): DuckDB holds {held} audit rows, not {events}")
    return {
        "seconds": sw.seconds,
        "events_per_s": rate(events, sw.seconds),
        "checkpoint_seconds": checkpoint.seconds,
    }


def _insert_batch(con: duckdb.DuckDBPyConnection, b: dict[str, pa.Table]) -> None:
    # DuckDB finds the Arrow tables by their local names (replacement scans), which must
    # not be the names of catalog tables.
    new_audit, new_transitions, new_versions = b["audit"], b["transitions"], b["versions"]  # noqa: F841
    new_memories, new_subjects, new_offsets = b["memories"], b["subjects"], b["offsets"]  # noqa: F841
    con.execute("BEGIN TRANSACTION")
    con.execute("INSERT INTO audit SELECT * FROM new_audit")
    con.execute("INSERT INTO transitions SELECT * FROM new_transitions")
    con.execute("INSERT INTO versions SELECT * FROM new_versions")
    con.execute("INSERT OR REPLACE INTO memories SELECT * FROM new_memories")
    con.execute("INSERT OR REPLACE INTO subjects SELECT * FROM new_subjects")
    con.execute("INSERT OR REPLACE INTO projection_offsets SELECT * FROM new_offsets")
    con.execute("COMMIT")


def run(
    scratch: Scratch, reporter: Reporter, scale: float, repeats: int, seed: int
) -> dict[str, Any]:
    events = scaled(BASE_EVENTS, scale, minimum=1_000)
    src = scratch.new("log")
    with reporter.task("project: write the log", events) as advance:
        written = write_log(src, Workload(seed=seed), events, batch=BATCH, advance=advance)
    # the transactions the catch-up makes (the baseline is cut the same way)
    batch = catch_up_batch(events, BATCH)
    runs = []
    for _ in range(repeats):
        catch, path = _catch_up(scratch, reporter, src, written)
        batches = _raw_batches(path / STATE_DIR / CORE_FILE, events, batch)
        scratch.remove(path)
        raw = _raw_insert(scratch, batches, events)
        del batches
        runs.append(
            {"catch_up": catch, "raw": raw, "ratio": catch["events_per_s"] / raw["events_per_s"]}
        )
    # The step-by-step breakdown explains the headline; once is enough.
    with reporter.task("project: steps one by one", events) as advance:
        logged, stages = _opened(src)
        stages.update(_isolated(scratch, logged, batch))
        advance(events)
    del logged
    eps = median([r["catch_up"]["events_per_s"] for r in runs])
    raw_eps = median([r["raw"]["events_per_s"] for r in runs])
    total = sum(stages.values())
    return {
        "parameters": {
            "events": events,
            "creates": written.creates,
            "revises": written.revises,
            "batch_size": batch,
            "repeats": repeats,
            "semantic_indexes": False,
            "log_write_seconds": written.seconds,
        },
        "goals": {"events_per_s_required": GOAL_EVENTS_PER_S},
        "results": {
            "catch_up_events_per_s": spread([r["catch_up"]["events_per_s"] for r in runs]),
            "raw_duckdb_events_per_s": spread([r["raw"]["events_per_s"] for r in runs]),
            "close_after_catch_up_s": spread([r["catch_up"]["close_seconds"] for r in runs]),
            "raw_final_checkpoint_s": spread([r["raw"]["checkpoint_seconds"] for r in runs]),
            "ratio": eps / raw_eps,
            "ratio_per_run": [r["ratio"] for r in runs],
            "meets_required": eps >= GOAL_EVENTS_PER_S,
            "runs": runs,
        },
        "stages_us_per_event": {
            **stages,
            "total": total,
            "single_thread_bound_events_per_s": 1e6 / total,
        },
    }
