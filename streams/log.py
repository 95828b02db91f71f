"""The embedded log: a durable, append-only, hash-chained sequence of records in SQLite.

Why SQLite in WAL mode: an append of a batch is one transaction (atomic: all records or
none), ``synchronous=FULL`` makes a committed transaction survive ``kill -9`` and power
loss, readers never block the writer, and the file can be copied consistently while it is
written (the online backup API). Offsets are the dense, 0-based row ids; ``recorded_at``
is stamped here and never goes backwards; each row carries its chain hash
``sha256(prev_hash | offset | recorded_at | data)``, written in the same row at append time.

Any number of readers can read from any offset (:meth:`EmbeddedLog.read`): the projector,
a replay, later the subscriptions.

SQLite copies its WAL back into the database file (a checkpoint) every 1,000 pages by
default, inside the commit that crosses the mark: one append in thirty waited for 4 MB to be
copied (and, with ``fsync``, synced). Here a thread of its own does that copy, while appends
go on; the appending connection then finishes the pass itself, which leaves only the last
few batches' pages to copy, so that the WAL starts over from its beginning instead of
growing (see :class:`_Checkpointer`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
from memstream.schemas.record import LogRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    "offset"    INTEGER PRIMARY KEY,
    event_id    BLOB NOT NULL UNIQUE,
    recorded_at INTEGER NOT NULL,
    namespace   TEXT NOT NULL,
    data        BLOB NOT NULL,
    hash        BLOB NOT NULL
);
"""

GENESIS = b"\x00" * 32

#: Bytes appended between two checkpoints (SQLite's own default is 1,000 pages, about 4 MB).
CHECKPOINT_BYTES = 4 << 20

_log = logging.getLogger("memstream.log")

#: ``fsync``: a committed append survives power loss; ``os``: it survives the process
#: being killed (the OS holds it), not a power cut. Both are atomic per batch.
DURABILITY = {"fsync": "FULL", "os": "NORMAL"}


def chain_hash(prev: bytes, offset: int, recorded_at: int, data: bytes) -> bytes:
    h = hashlib.sha256(prev)
    h.update(offset.to_bytes(8, "big"))
    h.update(recorded_at.to_bytes(8, "big", signed=True))
    h.update(data)
    return h.digest()


#: Most rows in one ``INSERT`` (6 values each: far below SQLite's limit of 32,766). The
#: connection keeps a prepared statement for each size up to it.
INSERT_ROWS = 256


@functools.cache
def _insert_sql(n: int) -> str:
    return "INSERT INTO records VALUES " + ",".join(["(?,?,?,?,?,?)"] * n)


def _inserts(rows: list[tuple]) -> list[tuple[str, list]]:
    """The statements that insert ``rows``: one multi-row ``INSERT`` per
    :data:`INSERT_ROWS` rows (a batch of 100: one statement).

    Not ``executemany``: SQLite runs each row as a step of its own, and Python releases
    the interpreter lock around every step. Beside a busy Python thread (the projector, a
    web server's event loop, the application's own work) each step then waits up to the
    interpreter's switch interval (5 ms) to take the lock back: measured, 100-record
    batches fell from 34,000 to 117-742 records/s (docs/benchmarks.md).
    """
    return [
        (_insert_sql(len(chunk)), [v for r in chunk for v in r])
        for chunk in (rows[i : i + INSERT_ROWS] for i in range(0, len(rows), INSERT_ROWS))
    ]


class Appended(msgspec.Struct, frozen=True, gc=False):
    """Where one record landed. ``duplicate`` marks an event id the log already held.

    A Struct rather than a frozen dataclass: one is made per appended record, in a tenth of
    the time, and the garbage collector need not track it (it holds no container)."""

    offset: int
    recorded_at: int
    chain_hash: bytes = b""
    duplicate: bool = False


class _Checkpointer:
    """Copies the log's WAL into its database file on a thread of its own, one pass per
    :meth:`request`, with a connection of its own (SQLite releases the interpreter lock
    while it copies and syncs). A pass does not block appends, so it rarely catches up
    with the last pages: :meth:`EmbeddedLog._checkpoint` finishes it.

    ``idle``: no pass requested or running; ``done``: a pass finished since the last
    request; ``failed``: the last pass raised (logged)."""

    def __init__(self, connect, synchronous: str):
        self._connect = connect
        self._synchronous = synchronous
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.idle, self.done, self.failed = True, False, False

    def request(self) -> None:
        self.idle, self.done = False, False
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="memstream-checkpoint", daemon=True
            )
            self._thread.start()
        self._wake.set()

    def stop(self) -> None:
        if self._thread is not None:
            self._stopping = True
            self._wake.set()
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    return
                try:
                    if db is None:
                        db = self._connect()
                        db.execute(f"PRAGMA synchronous={self._synchronous}")
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as e:
                    _log.warning("background checkpoint failed: %s", e)
                    self.failed = True
                else:
                    self.done = True
                self.idle = True
        finally:
            if db is not None:
                db.close()


@dataclass(frozen=True)
class ChainBreak:
    offset: int
    reason: str


def mismatch(offset: int) -> str:
    return (
        f"record {offset} does not match its chain hash "
        "(its bytes, its time or an earlier record were changed)"
    )


class ChainCheck:
    """Follows the hash chain over records read in offset order, from a verified position:
    ``offset`` (``-1``: none yet) whose chain hash is ``prev``.

    :meth:`follow` passes on the records that continue the chain and stops at the first
    that does not (a gap in the offsets, or a record whose hash is not the one recomputed
    from its bytes, its time and the previous hash), leaving it in ``broken``. Readers that
    must not go past a break (a catch-up, a replay) read through it; ``records`` counts
    what was verified."""

    def __init__(self, offset: int = -1, prev: bytes = GENESIS):
        self.offset, self.prev = offset, prev
        self.start = offset + 1
        self.records = 0
        self.broken: ChainBreak | None = None

    def good(self, batch: list[LogRecord]) -> list[LogRecord]:
        """The records of ``batch`` that continue the chain, up to the first that does not."""
        prev, expected = self.prev, self.offset + 1
        for i, r in enumerate(batch):
            if r.offset != expected:
                self.broken = ChainBreak(expected, f"record {expected} is missing (deleted)")
            elif chain_hash(prev, r.offset, r.recorded_at, r.data) != r.chain_hash:
                self.broken = ChainBreak(r.offset, mismatch(r.offset))
            else:
                prev, expected = r.chain_hash, expected + 1
                continue
            batch = batch[:i]
            break
        if batch:
            self.prev, self.offset = prev, batch[-1].offset
            self.records += len(batch)
        return batch

    def follow(
        self, batches: Iterator[list[LogRecord]], progress=None
    ) -> Iterator[list[LogRecord]]:
        """``batches``, each cut at the first record that breaks the chain (and nothing
        after it)."""
        for batch in batches:
            if self.broken is not None:
                return
            good = self.good(batch)
            if progress is not None:
                progress(len(good))
            if good:
                yield good

    def finish(self, stop: int) -> ChainBreak | None:
        """The break, once every record before ``stop`` was read: also records missing at
        the end of what was read (a read ends quietly at a gap of a whole batch)."""
        if self.broken is None and self.offset < stop - 1:
            nxt = self.offset + 1
            self.broken = ChainBreak(nxt, f"record {nxt} is missing (deleted, or the log was cut)")
        return self.broken


class EmbeddedLog:
    """A file-backed append-only log. One process appends; any thread may read."""

    def __init__(
        self,
        path: str | Path,
        durability: str = "fsync",
        create: bool = True,
        checkpoint_bytes: int = CHECKPOINT_BYTES,
    ):
        self.path = Path(path)
        if not create and not self.path.exists():
            raise FileNotFoundError(f"no log at {self.path}")
        if durability not in DURABILITY:
            raise ValueError(f"durability must be one of {sorted(DURABILITY)}, not {durability!r}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._connect()
        self._db.execute(f"PRAGMA synchronous={DURABILITY[durability]}")
        self._db.executescript(_SCHEMA)
        # Checkpoints are this class's (see the module's docstring), not the commits'.
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer = _Checkpointer(self._connect, DURABILITY[durability])
        self._checkpoint_bytes = checkpoint_bytes
        self._unchecked = 0  # bytes appended since the WAL last started over
        self._lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        row = self._db.execute("SELECT value FROM meta WHERE key='log_id'").fetchone()
        if row is None:
            self.log_id = str(uuid.uuid4())
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('log_id', ?)", (self.log_id,))
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('created_at', ?)", (str(time.time()),)
            )
            self._db.execute("COMMIT")
            self.log_id = self._db.execute("SELECT value FROM meta WHERE key='log_id'").fetchone()[
                0
            ]
        else:
            self.log_id = row[0]
        last = self._db.execute(
            'SELECT "offset", recorded_at, hash FROM records ORDER BY "offset" DESC LIMIT 1'
        ).fetchone()
        if last is None:
            self._next, self._last_time, self._last_hash = 0, 0, GENESIS
        else:
            self._next, self._last_time, self._last_hash = last[0] + 1, last[1], bytes(last[2])

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path,
            check_same_thread=False,
            isolation_level=None,
            cached_statements=INSERT_ROWS + 32,
        )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA busy_timeout=10000")
        return db

    def _reader(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
            with self._lock:
                self._readers.append(db)
        return db

    def close(self) -> None:
        """Close every connection; the last one to close checkpoints the WAL into the file."""
        self._checkpointer.stop()
        with self._lock:
            for db in self._readers:
                db.close()
            self._readers.clear()
        self._db.close()

    # -- writing --------------------------------------------------------------------------

    @property
    def next_offset(self) -> int:
        """The offset the next record will get (= the number of records)."""
        return self._next

    def append(self, records: Sequence[tuple[bytes, str, bytes]]) -> list[Appended]:
        """Append ``(event_id, namespace, data)`` records atomically; durable on return.

        An event id the log already holds is not appended again: its original position
        comes back with ``duplicate=True`` (a producer's retry is idempotent).
        """
        if not records:
            return []
        with self._lock:
            db = self._db
            ids = [r[0] for r in records]
            seen: dict[bytes, tuple[int, int]] = {}
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                q = ",".join("?" * len(chunk))
                for eid, off, rat in db.execute(
                    f'SELECT event_id, "offset", recorded_at FROM records WHERE event_id IN ({q})',
                    chunk,
                ):
                    seen[bytes(eid)] = (off, rat)
            now = max(time.time_ns() // 1000, self._last_time)
            offset, prev = self._next, self._last_hash
            rows = []
            result: list[Appended] = []
            batch_ids: dict[bytes, Appended] = {}
            for eid, namespace, data in records:
                if eid in seen:
                    result.append(Appended(seen[eid][0], seen[eid][1], duplicate=True))
                    continue
                if eid in batch_ids:
                    first = batch_ids[eid]
                    result.append(Appended(first.offset, first.recorded_at, duplicate=True))
                    continue
                h = chain_hash(prev, offset, now, data)
                rows.append((offset, eid, now, namespace, data, h))
                a = Appended(offset, now, h)
                batch_ids[eid] = a
                result.append(a)
                prev = h
                offset += 1
            if rows:
                inserts = _inserts(rows)
                if len(inserts) == 1:  # one statement is atomic by itself: fewer steps
                    db.execute(*inserts[0])
                else:
                    db.execute("BEGIN IMMEDIATE")
                    try:
                        for stmt, values in inserts:
                            db.execute(stmt, values)
                        db.execute("COMMIT")
                    except BaseException:
                        db.execute("ROLLBACK")
                        raise
                self._next, self._last_time, self._last_hash = offset, now, prev
                self._unchecked += sum(len(r[4]) for r in rows)
                if self._unchecked >= self._checkpoint_bytes:
                    self._checkpoint()
            return result

    def _checkpoint(self) -> None:
        """Called with the lock held, after a commit, once enough was appended since the WAL
        last started over: ask the checkpointer for a pass; once it has made one, finish it
        here. Nothing else writes meanwhile, so this pass can copy every page the WAL holds,
        and the next append starts the WAL over. A failing checkpoint never fails an append
        (the records are committed): it is logged, and tried again after the next one."""
        ck = self._checkpointer
        if not ck.idle:
            return  # a pass is under way: the next append looks again
        if ck.failed or not ck.done:
            ck.failed = False
            ck.request()
            return
        ck.done = False
        try:
            busy, frames, copied = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as e:
            _log.warning("checkpoint of %s failed: %s", self.path, e)
            return
        if not busy and frames == copied:
            self._unchecked = 0
        # else a reader still holds older pages: a new pass starts after the next append

    # -- reading --------------------------------------------------------------------------

    def read(
        self, start: int = 0, stop: int | None = None, batch: int = 2_000
    ) -> Iterator[list[LogRecord]]:
        """Batches of records with ``start <= offset < stop`` (``stop=None``: to the current end)."""
        db = self._reader()
        end = self._next if stop is None else min(stop, self._next)
        pos = start
        while pos < end:
            upto = min(pos + batch, end)
            rows = db.execute(
                'SELECT "offset", recorded_at, data, hash FROM records '
                'WHERE "offset" >= ? AND "offset" < ? ORDER BY "offset"',
                (pos, upto),
            ).fetchall()
            if not rows:
                return
            # (offset, recorded_at, data, hash): SQLite hands BLOBs back as bytes
            yield [LogRecord(*r) for r in rows]
            pos = rows[-1][0] + 1

    def offset_at(self, recorded_at_us: int) -> int:
        """The last offset recorded at or before a time (``-1`` if none)."""
        row = (
            self._reader()
            .execute('SELECT max("offset") FROM records WHERE recorded_at <= ?', (recorded_at_us,))
            .fetchone()
        )
        return -1 if row[0] is None else int(row[0])

    def verify(self, progress=None) -> ChainBreak | None:
        """Recompute the hash chain from the stored bytes; the first record that breaks it."""
        check = ChainCheck()
        for _ in check.follow(self.read(0, batch=10_000), progress):
            pass
        return check.finish(self._next)

    def record_at(self, offset: int) -> LogRecord | None:
        """The record at ``offset``, or None when the log has none there."""
        for batch in self.read(offset, offset + 1):
            return batch[0]
        return None

    def event_id_at(self, offset: int) -> str | None:
        """The event id stored beside record ``offset`` (None: no such record)."""
        row = (
            self._reader()
            .execute('SELECT event_id FROM records WHERE "offset" = ?', (offset,))
            .fetchone()
        )
        return None if row is None else str(uuid.UUID(bytes=bytes(row[0])))

    # -- copies ---------------------------------------------------------------------------

    def backup(self, dest: str | Path, stop: int | None = None) -> int:
        """A consistent copy of the log, taken while it is written (SQLite online backup).

        With ``stop``, the copy holds only the records before that offset. Returns the
        number of records in the copy.
        """
        dest = Path(dest)
        target = sqlite3.connect(dest)
        try:
            self._reader().backup(target)
            if stop is not None:
                deleted = target.execute('DELETE FROM records WHERE "offset" >= ?', (stop,))
                target.commit()
                if deleted.rowcount:  # no free pages may keep the later records' bytes
                    target.execute("VACUUM")
            (count,) = target.execute("SELECT count(*) FROM records").fetchone()
        finally:
            target.close()
        return int(count)
