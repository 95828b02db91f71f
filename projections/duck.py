"""The DuckDB projection: current state, version chains, transitions, audit trail, artifacts.

One batch of decided events is written in one transaction together with the log offset
it reaches (``projection_offsets``), so after a crash the store resumes exactly where its
state ends: a batch is in the store with its offset, or neither is. Rows go in as Arrow
tables, a handful of statements per batch whatever its size. DuckDB's upsert keeps the
*first* of two rows with the same key in one statement, so ``memories`` is collapsed to the
last row per id before it is written (see :mod:`memstream.projections.core`).

The store is stamped with the projector version and the id of the log it was built from;
:meth:`DuckStore.stamp_matches` tells the runtime when it must rebuild from the log.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pyarrow as pa
from memstream.schemas.memcube import MemState

from .core import (
    ARTIFACT_COLUMNS,
    AUDIT_COLUMNS,
    GOVERNANCE_COLUMNS,
    MEMORY_COLUMNS,
    PROJECTOR_VERSION,
    TRANSITION_COLUMNS,
    VERSION_COLUMNS,
    Columns,
    CoreBatch,
    memory_row,
)
from .snapshot import fsync_dir, fsync_file

_PARENTS = "STRUCT(memory_id VARCHAR, version INTEGER)[]"
_TS = pa.timestamp("us", tz="UTC")
_PARENT_TYPE = pa.list_(pa.struct([("memory_id", pa.string()), ("version", pa.int32())]))

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS store_meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS projection_offsets (projector VARCHAR PRIMARY KEY, "offset" BIGINT);
CREATE TABLE IF NOT EXISTS memories (
    memory_id VARCHAR PRIMARY KEY, namespace VARCHAR, subject VARCHAR, kind VARCHAR,
    state VARCHAR, frozen BOOLEAN, version INTEGER, revision INTEGER, tags VARCHAR[],
    metadata JSON, source VARCHAR, owner VARCHAR, visibility VARCHAR, priority BIGINT,
    ttl_seconds BIGINT, retention_days BIGINT, expires_at TIMESTAMPTZ, parents {_PARENTS},
    created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ, created_by VARCHAR, updated_by VARCHAR,
    created_offset BIGINT, updated_offset BIGINT
);
CREATE TABLE IF NOT EXISTS versions (
    memory_id VARCHAR, version INTEGER, op VARCHAR, text VARCHAR, content_hash VARCHAR,
    tags VARCHAR[], metadata JSON, parents {_PARENTS}, copy_from INTEGER, event_id VARCHAR,
    "offset" BIGINT, recorded_at TIMESTAMPTZ, actor VARCHAR, vector FLOAT[]
);
CREATE TABLE IF NOT EXISTS transitions (
    "offset" BIGINT, memory_id VARCHAR, namespace VARCHAR, state VARCHAR, frozen BOOLEAN,
    version INTEGER, revision INTEGER, recorded_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS audit (
    "offset" BIGINT, event_id VARCHAR, type VARCHAR, schema_version INTEGER,
    namespace VARCHAR, memory_id VARCHAR, subject VARCHAR, key_id VARCHAR, actor VARCHAR,
    context JSON, occurred_at TIMESTAMPTZ, recorded_at TIMESTAMPTZ, expected_version BIGINT,
    correlation_id VARCHAR, causation_id VARCHAR, status VARCHAR, code VARCHAR,
    reason VARCHAR, why VARCHAR, version INTEGER, revision INTEGER, state VARCHAR,
    chain_hash VARCHAR, tombstone BOOLEAN, scope VARCHAR
);
CREATE TABLE IF NOT EXISTS artifacts (
    artifact_id VARCHAR PRIMARY KEY, memory_id VARCHAR, namespace VARCHAR,
    artifact_kind VARCHAR, model VARCHAR, path VARCHAR, checksum VARCHAR, size_bytes BIGINT,
    status VARCHAR, source_version BIGINT, detail VARCHAR, event_id VARCHAR,
    "offset" BIGINT, recorded_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS governance (
    "offset" BIGINT, type VARCHAR, name VARCHAR, actor VARCHAR, recorded_at TIMESTAMPTZ,
    body JSON
);
CREATE TABLE IF NOT EXISTS subjects (
    subject VARCHAR PRIMARY KEY, key_generation INTEGER, erased_generation INTEGER
);
"""

_TYPES: dict[str, pa.DataType] = {
    "created_at": _TS, "updated_at": _TS, "recorded_at": _TS, "occurred_at": _TS,
    "expires_at": _TS,
    "parents": _PARENT_TYPE, "tags": pa.list_(pa.string()), "frozen": pa.bool_(),
    "tombstone": pa.bool_(), "version": pa.int32(), "revision": pa.int32(),
    "offset": pa.int64(), "copy_from": pa.int32(), "schema_version": pa.int32(),
    "expected_version": pa.int64(), "priority": pa.int64(), "ttl_seconds": pa.int64(),
    "retention_days": pa.int64(), "created_offset": pa.int64(), "updated_offset": pa.int64(),
    "size_bytes": pa.int64(), "source_version": pa.int64(), "vector": pa.list_(pa.float32()),
}  # fmt: skip

CORE = "core"

#: Connection settings. DuckDB checkpoints (writes the WAL's changes into the table data and
#: the indexes) whenever its WAL reaches ``checkpoint_threshold``, and each checkpoint
#: rewrites more of ``memories`` as the table grows. At DuckDB's default (16 MB: every 2-3
#: batches of 5,000 events) the commits of a 1M-event projection cost 63 µs per event;
#: at 256 MB, 28. The price: up to 256 MB of WAL, replayed when the file is reopened after
#: a crash (about 2 s) and checkpointed on close.
DUCKDB_CONFIG: dict[str, str] = {"checkpoint_threshold": "256MB"}


def _arrow(names: tuple[str, ...], data: dict[str, Sequence[Any]]) -> pa.Table:
    arrays = []
    for n in names:
        t = _TYPES.get(n)
        col = data[n]
        if t is _TS and col and isinstance(col[0], int):
            arrays.append(pa.array(col, type=pa.int64()).cast(_TS))
        else:
            arrays.append(pa.array(col, type=t if t is not None else pa.string()))
    return pa.Table.from_arrays(arrays, names=list(names))


def _cols(names: tuple[str, ...]) -> str:
    return ", ".join(f'"{n}"' for n in names)


@dataclass(frozen=True)
class Prepared:
    """A batch's rows as Arrow tables, the columns in each table's own order (rows go in by
    position; a test holds them to it), ready for :meth:`DuckStore.write`.

    Building them is Python work holding the interpreter lock, writing them is DuckDB's,
    which releases it. A catch-up prepares each batch on the thread that decides (which
    holds the lock anyway) and writes it on another: the writing thread then holds the lock
    only between statements, so it seldom keeps the deciding thread waiting, and the
    deciding thread's log reads (one lock round trip per record) are not stalled behind it.
    """

    batch: CoreBatch
    audit: pa.Table
    transitions: pa.Table | None
    versions: pa.Table | None
    #: the last state of every memory the batch touched
    memories: pa.Table | None
    #: the ids of those created before the batch: their rows are in the table, and are
    #: deleted before ``memories`` is inserted. DuckDB's ``UPDATE`` of these columns costs
    #: several times as much: the list columns (``tags``, ``parents``) make it rewrite each
    #: row, and its join grows with the table (400 memories of 600,000: 70-100 ms by
    #: ``UPDATE``, 22-28 ms by delete and insert; docs/benchmarks.md). A memory created
    #: earlier but missing from the table, or created in this batch but already there (the
    #: key's constraint), fails the batch.
    changed: pa.Table | None
    artifacts: pa.Table | None
    governance: pa.Table | None = None

    @property
    def last_offset(self) -> int:
        return self.batch.last_offset


def prepare(b: CoreBatch) -> Prepared | None:
    """The Arrow tables of a batch (``None`` for an empty one). Pure: no I/O."""
    if len(b) == 0:
        return None
    memories = Columns(MEMORY_COLUMNS)
    changed = []
    for m in b.memories.values():
        memories.rows.append(memory_row(m))
        if m.created_offset < b.first_offset:
            changed.append(m.memory_id)

    def table(names: tuple[str, ...], cols: Columns) -> pa.Table | None:
        return _arrow(names, cols.data) if len(cols) else None

    return Prepared(
        batch=b,
        audit=_arrow(AUDIT_COLUMNS, b.audit.data),
        transitions=table(TRANSITION_COLUMNS, b.transitions),
        versions=table(VERSION_COLUMNS, b.versions),
        memories=table(MEMORY_COLUMNS, memories),
        changed=pa.table({"memory_id": pa.array(changed, pa.string())}) if changed else None,
        artifacts=table(ARTIFACT_COLUMNS, b.artifacts),
        governance=table(GOVERNANCE_COLUMNS, b.governance),
    )


class _Gate:
    """Readers share the database file; :meth:`DuckStore.rewrite` takes it alone for the
    moment it swaps the file. Re-entrant for a thread that already reads; a waiting
    rewrite holds back new readers, so it is never starved."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._exclusive = False
        self._waiting = 0
        self._local = threading.local()

    @contextmanager
    def shared(self) -> Iterator[None]:
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            with self._cond:
                while self._exclusive or self._waiting:
                    self._cond.wait()
                self._readers += 1
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0:
                with self._cond:
                    self._readers -= 1
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            try:
                while self._exclusive or self._readers:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


@dataclass(frozen=True)
class Rewritten:
    """What a :meth:`DuckStore.rewrite` did: the new file's size, the seconds writers
    waited (the copy and the swap) and the seconds readers waited (the swap only)."""

    bytes: int
    copy_seconds: float
    swap_seconds: float


#: Suffix of the file a rewrite writes before it replaces the database with it.
REWRITE_SUFFIX = ".rewrite"
#: ``store_meta`` key: the core offset the file was last rewritten at (every erase up to it
#: has no byte left in the file).
REWRITTEN_THROUGH = "rewritten_through"


class DuckStore:
    """A DuckDB file holding the core projection. One writer; readers use cursors.

    Reads go through :meth:`query` or :meth:`reading`, which let :meth:`rewrite` swap the
    file between two reads; the writing side (``write``, ``set_offsets``, what holds
    ``_write_lock``) uses :meth:`cursor`.
    """

    def __init__(
        self, path: str | Path, read_only: bool = False, config: dict[str, str] | None = None
    ):
        """``config`` adds DuckDB settings to (or overrides) :data:`DUCKDB_CONFIG`."""
        self.path = Path(path)
        self.read_only = read_only
        self._config = {**DUCKDB_CONFIG, **(config or {})}
        if not read_only:
            # What an interrupted rewrite left: a copy of live rows only, never needed.
            self.path.with_name(self.path.name + REWRITE_SUFFIX).unlink(missing_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._cursor_lock = threading.Lock()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._gate = _Gate()
        #: bumped by each rewrite: cursors of an older generation belong to a closed file
        self._generation = 0
        self._connect()
        #: subject → key generation in ``subjects`` (read once, then kept by ``write``)
        self._generations: dict[str, int] | None = None

    def _connect(self) -> None:
        self.db = duckdb.connect(str(self.path), read_only=self.read_only, config=self._config)
        if not self.read_only:
            self.db.execute("SET TimeZone = 'UTC'")
            self.db.execute(SCHEMA)

    def _close_connection(self) -> None:
        with self._cursor_lock:
            for cur in self._cursors:
                cur.close()
            self._cursors.clear()
        self.db.close()

    def close(self) -> None:
        self._close_connection()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for the calling thread (DuckDB connections are not shared across threads)."""
        cur = getattr(self._local, "cur", None)
        if cur is None or self._local.generation != self._generation:
            cur = self._local.cur = self.db.cursor()
            self._local.generation = self._generation
            cur.execute("SET TimeZone = 'UTC'")
            with self._cursor_lock:
                self._cursors.append(cur)
        return cur

    @contextmanager
    def reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The calling thread's cursor, for reads: the file is not swapped meanwhile."""
        with self._gate.shared():
            yield self.cursor()

    # -- rewriting: what DuckDB frees it does not overwrite ---------------------------------

    def rewrite(self, meta: dict[str, str] | None = None) -> Rewritten:
        """Replace the database file with a copy of what it holds now, and nothing else.

        DuckDB marks deleted rows and the old values of updated ones as free, but leaves
        their bytes in the file (and in its WAL after a crash) until the space is reused:
        ``grep`` finds text that no query can. An erase needs those bytes gone, so the
        live rows are copied into a fresh file (``COPY FROM DATABASE``: every table with
        its constraints), which is synced and renamed over the old one; the old file's WAL
        is removed with it. ``meta`` rows are written into the copy's ``store_meta``, so
        they land atomically with it. Writers wait for the whole rewrite; readers only for
        the swap. A crash leaves the old file, whole (the copy is removed on the next
        open).
        """
        with self._write_lock:
            return self._rewrite(meta)

    def _rewrite(self, meta: dict[str, str] | None) -> Rewritten:
        # called with ``_write_lock`` held
        tmp = self.path.with_name(self.path.name + REWRITE_SUFFIX)
        tmp.unlink(missing_ok=True)
        started = time.perf_counter()
        cur = self.cursor()
        (name,) = cur.execute("SELECT current_database()").fetchone()
        cur.execute(f"ATTACH '{_quote(str(tmp))}' AS memstream_rewrite")
        try:
            cur.execute(f'COPY FROM DATABASE "{name}" TO memstream_rewrite')
            for key, value in (meta or {}).items():
                cur.execute(
                    "INSERT OR REPLACE INTO memstream_rewrite.store_meta VALUES (?, ?)",
                    (key, value),
                )
        finally:
            cur.execute("DETACH memstream_rewrite")
        fsync_file(tmp)
        copied = time.perf_counter()
        with self._gate.exclusive():
            # The copy holds everything: the old file is not checkpointed on close (that
            # would only write the erased bytes once more, while readers wait), and its WAL
            # goes first: replayed into the new file it would corrupt it, while an old file
            # without its WAL is an older consistent state the log brings forward again.
            self.db.execute("PRAGMA disable_checkpoint_on_shutdown")
            self._close_connection()
            Path(str(self.path) + ".wal").unlink(missing_ok=True)
            fsync_dir(self.path.parent)
            os.replace(tmp, self.path)
            fsync_dir(self.path.parent)
            self._generation += 1
            self._connect()
        swapped = time.perf_counter()
        return Rewritten(self.path.stat().st_size, copied - started, swapped - copied)

    def erase_pending(self) -> bool:
        """Whether an accepted erase is newer than the last :meth:`rewrite` (so the bytes
        it erased may still be in the file)."""
        with self.reading() as cur:
            (last,) = cur.execute(
                "SELECT max(\"offset\") FROM audit WHERE type = 'erase' AND status = 'accepted'"
            ).fetchone()
        return last is not None and last > int(self.meta().get(REWRITTEN_THROUGH, -1))

    def scrub(self) -> Rewritten | None:
        """:meth:`rewrite` the file if an erase is pending (``None``: nothing to do)."""
        with self._write_lock:
            if not self.erase_pending():
                return None
            return self._rewrite({REWRITTEN_THROUGH: str(self.offset())})

    # -- stamp --------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        with self.reading() as cur:
            return dict(cur.execute("SELECT key, value FROM store_meta").fetchall())

    def stamp(self, log_id: str, **extra: str) -> None:
        rows = {"projector_version": str(PROJECTOR_VERSION), "log_id": log_id, **extra}
        with self._write_lock:
            self.cursor().executemany(
                "INSERT OR REPLACE INTO store_meta VALUES (?, ?)", list(rows.items())
            )

    def stamp_matches(self, log_id: str) -> tuple[bool, str]:
        m = self.meta()
        if not m:
            return True, "new store"
        if m.get("log_id") != log_id:
            return False, f"built from log {m.get('log_id')}, not {log_id}"
        if m.get("projector_version") != str(PROJECTOR_VERSION):
            return False, (
                f"built by projector version {m.get('projector_version')}, "
                f"this is version {PROJECTOR_VERSION}"
            )
        return True, "ok"

    def offset(self, projector: str = CORE) -> int:
        """The last log offset this store holds (``-1``: none)."""
        with self.reading() as cur:
            row = cur.execute(
                'SELECT "offset" FROM projection_offsets WHERE projector = ?', (projector,)
            ).fetchone()
        return -1 if row is None else int(row[0])

    # -- writing --------------------------------------------------------------------------

    def write(self, b: CoreBatch | Prepared, offsets: dict[str, int] | None = None) -> None:
        """Write a batch and its offset in one transaction (with ``offsets`` of other
        projectors kept in the same file, e.g. an outbox cursor, when given).

        ``b`` may be :func:`prepare` d already, on another thread: see :class:`Prepared`."""
        p = b if isinstance(b, Prepared) else prepare(b)
        if p is None:
            return
        with self._write_lock:
            cur = self.cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                self._write(cur, p)
                self._set_offsets(cur, {CORE: p.last_offset, **(offsets or {})})
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                self._generations = None  # read again from the table
                raise

    def set_offsets(self, offsets: dict[str, int]) -> None:
        """Record projectors' offsets on their own (e.g. an outbox cursor moving)."""
        with self._write_lock:
            cur = self.cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                self._set_offsets(cur, offsets)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def _set_offsets(self, cur, offsets: dict[str, int]) -> None:
        # An upsert costs a few milliseconds even for one row, an UPDATE a fraction of that;
        # the INSERT runs once, for a projector's first offset.
        for name, value in offsets.items():
            (n,) = cur.execute(
                'UPDATE projection_offsets SET "offset" = ? WHERE projector = ?', (value, name)
            ).fetchone()
            if n == 0:
                cur.execute("INSERT INTO projection_offsets VALUES (?, ?)", (name, value))

    def _raised_generations(self, cur, b: CoreBatch) -> dict[str, int]:
        gens = self._generations
        if gens is None:
            rows = cur.execute("SELECT subject, key_generation FROM subjects").fetchall()
            gens = self._generations = {s: int(g or 0) for s, g in rows}
        raised = {s: g for s, g in b.key_generations.items() if g > gens.get(s, 0)}
        gens.update(raised)  # undone by a rollback (``write`` drops the whole cache)
        return raised

    def _write(self, cur, p: Prepared) -> None:
        # Rows are appended straight from Arrow, as relations: no view is created and
        # dropped per statement (about 1.5 ms each way on a live store's small batches).
        # Statements that read Arrow rows by name (the memories' delete, the artifacts' and
        # subjects' upserts) name a local variable holding them, which DuckDB's replacement
        # scan finds in the calling frame; the names are not those of catalog tables,
        # which would win.
        b = p.batch
        for table, rows in (
            ("audit", p.audit),
            ("transitions", p.transitions),
            ("versions", p.versions),
            ("governance", p.governance),
        ):
            if rows is not None:
                cur.from_arrow(rows).insert_into(table)
        for memory_id, version in b.rollbacks:
            cur.execute(
                "UPDATE versions SET text = src.text, content_hash = src.content_hash, "
                "vector = src.vector "
                "FROM versions AS src WHERE versions.memory_id = ? AND versions.version = ? "
                "AND src.memory_id = versions.memory_id AND src.version = versions.copy_from",
                (memory_id, version),
            )
        if p.changed is not None:
            # Memories created before the batch are in the table: their rows are deleted
            # and inserted again with the others (see :func:`prepare`).
            gone = p.changed  # noqa: F841 (read by name)
            (n,) = cur.execute(
                "DELETE FROM memories WHERE memory_id IN (SELECT memory_id FROM gone)"
            ).fetchone()
            if n != len(p.changed):
                raise RuntimeError(
                    f"batch at offsets {b.first_offset}..{b.last_offset} changes "
                    f"{len(p.changed)} memories created before it, of which only {n} are in "
                    "the projection"
                )
        if p.memories is not None:
            cur.from_arrow(p.memories).insert_into("memories")
        if p.artifacts is not None:
            built = p.artifacts  # noqa: F841 (read by name)
            cur.execute(
                f"INSERT OR REPLACE INTO artifacts ({_cols(ARTIFACT_COLUMNS)}) SELECT * FROM built"
            )
        # Only generations above what the table holds: most batches raise none, and
        # then write nothing here (an upsert costs milliseconds even when it changes
        # nothing). ``_generations`` mirrors the table; a rollback drops it.
        raised = self._raised_generations(cur, b)
        if raised:
            gens = pa.table(  # noqa: F841 (read by name)
                {
                    "subject": pa.array(list(raised), pa.string()),
                    "generation": pa.array(list(raised.values()), pa.int32()),
                }
            )
            cur.execute(
                "INSERT INTO subjects SELECT subject, generation, 0 FROM gens "
                "ON CONFLICT (subject) DO UPDATE SET "
                "key_generation = greatest(subjects.key_generation, excluded.key_generation)"
            )
        if b.erased_memories:
            ids = sorted(set(b.erased_memories))
            cur.execute(
                "UPDATE versions SET text = NULL, content_hash = NULL, tags = [], metadata = NULL, "
                "vector = NULL "
                "WHERE list_contains(?, memory_id)",
                (ids,),
            )
        for d in b.destroyed:
            if d.scope == "memory":
                # The memory's reasons were sealed under its data keys: personal data too.
                # ``subject#g/memory#n``: the keys numbered up to the destroyed ``n`` (the
                # batch may hold later events of the memory, under a later key).
                cur.execute(
                    "UPDATE audit SET why = NULL, tombstone = TRUE WHERE memory_id = ? "
                    "AND subject = ? AND contains(split_part(key_id, '#', 2), '/') "
                    "AND TRY_CAST(split_part(key_id, '#', 3) AS INTEGER) <= ?",
                    (d.memory_id, d.subject, d.generation),
                )
                continue
            gen = d.generation
            cur.execute(
                "INSERT INTO subjects VALUES (?, ?, ?) ON CONFLICT (subject) DO UPDATE SET "
                "erased_generation = greatest(subjects.erased_generation, excluded.erased_generation)",
                (d.subject, gen, gen),
            )
            # Reasons written under the destroyed keys are personal data too. A key id is
            # ``subject#g`` or ``subject#g/memory#n``: ``g`` is the subject's generation.
            cur.execute(
                "UPDATE audit SET why = NULL, tombstone = TRUE WHERE subject = ? AND key_id IS NOT NULL "
                "AND CAST(split_part(split_part(key_id, '#', 2), '/', 1) AS INTEGER) <= ?",
                (d.subject, gen),
            )

    # -- loading the decision state ---------------------------------------------------------

    def load_states(
        self,
    ) -> tuple[list[MemState], list[tuple[str, int, int]], list[str], list[tuple[str, str, int]]]:
        """Memories, (subject, key generation, erased generation), the memories with a
        payload sealed directly under a subject key (a key id without ``/`` after its ``#``),
        and the memories' data key numbers above 1 (see ``DecisionState``)."""
        with self.reading() as cur:
            return self._load_states(cur)

    def _load_states(
        self, cur
    ) -> tuple[list[MemState], list[tuple[str, int, int]], list[str], list[tuple[str, str, int]]]:
        rows = cur.execute(
            f"SELECT {_cols(MEMORY_COLUMNS)}, epoch_us(created_at), epoch_us(updated_at), "
            "epoch_us(expires_at) FROM memories"
        ).fetchall()
        dec = msgspec.json.Decoder()
        states = []
        n = len(MEMORY_COLUMNS)
        for r in rows:
            d = dict(zip(MEMORY_COLUMNS, r[:n], strict=True))
            d["created_at"], d["updated_at"], d["expires_at"] = r[n], r[n + 1], r[n + 2]
            d["tags"] = tuple(d["tags"] or ())
            d["metadata"] = dec.decode(d["metadata"]) if d["metadata"] else {}
            d["parents"] = tuple((p["memory_id"], p["version"]) for p in d["parents"] or ())
            states.append(MemState(**d))
        keys = cur.execute(
            "SELECT subject, key_generation, erased_generation FROM subjects"
        ).fetchall()
        legacy = cur.execute(
            "SELECT DISTINCT memory_id FROM audit WHERE key_id IS NOT NULL "
            "AND NOT contains(split_part(key_id, '#', 2), '/')"
        ).fetchall()
        numbers = cur.execute(
            "SELECT subject, memory_id, max(TRY_CAST(split_part(key_id, '#', 3) AS INTEGER)) AS n "
            "FROM audit WHERE contains(split_part(key_id, '#', 2), '/') "
            "GROUP BY subject, memory_id HAVING n > 1"
        ).fetchall()
        return (
            states,
            [(s, int(g or 0), int(e or 0)) for s, g, e in keys],
            [m for (m,) in legacy],
            [(s, m, int(n)) for s, m, n in numbers],
        )

    def governance_rows(
        self, upto: int | None = None
    ) -> list[tuple[int, str, str, str, int, dict[str, Any]]]:
        """Accepted governance events up to offset ``upto`` (None: all), in log order, as
        :meth:`~memstream.projections.policy.PolicyState.fold` takes them."""
        where, params = ("", []) if upto is None else ('WHERE "offset" <= ?', [upto])
        with self.reading() as cur:
            rows = cur.execute(
                f'SELECT "offset", type, name, actor, epoch_us(recorded_at), body '
                f'FROM governance {where} ORDER BY "offset"',
                params,
            ).fetchall()
        dec = msgspec.json.Decoder()
        return [(o, t, n, a, r, dec.decode(b)) for o, t, n, a, r, b in rows]

    # -- reads --------------------------------------------------------------------------------

    def query(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        with self.reading() as cur:
            res = cur.execute(sql, params) if params is not None else cur.execute(sql)
            names = [d[0] for d in res.description]
            return [dict(zip(names, row, strict=True)) for row in res.fetchall()]

    def offset_at_time(self, when: datetime) -> int:
        """The last offset recorded at or before ``when`` (``-1`` if none)."""
        if when.tzinfo is None:
            raise ValueError("as_of must carry a timezone (e.g. 2026-01-01T00:00:00+00:00)")
        with self.reading() as cur:
            row = cur.execute(
                'SELECT max("offset") FROM audit WHERE recorded_at <= ?', (when.astimezone(UTC),)
            ).fetchone()
        return -1 if row[0] is None else int(row[0])


def _quote(path: str) -> str:
    """A path inside a single-quoted SQL string literal."""
    return path.replace("'", "''")
