"""Where subscriptions keep their positions: one SQLite file beside the store's state.

Per subscription (name and generation: a subscription deleted and created again starts
afresh):

- its *cursor*: every delivery at or below it is resolved (acknowledged or parked), and
  the offsets acknowledged above it (acknowledgements out of order), so that a restart
  delivers again exactly what was not acknowledged;
- its *parked* deliveries: the ones its consumer rejected, with the reason;
- the deliveries of a publication to each subscriber per period (a publication's terms).

What this file holds is bookkeeping, never content: offsets, event ids, reasons a consumer
gave. A lost write (a crash between an acknowledgement and its commit) delivers again: the
guarantee is at-least-once. The writes are few (one per acknowledgement call, which
consumers batch) and the file is in WAL mode.

On the Kafka runtime a partition's cursors must outlive the worker that kept them: a
:class:`Mirror` (the partition's shared records, written to a compacted topic) receives
every change of the cursors and parked lists, and a store opened with one first adopts what
the mirror holds that is newer than its own file (the partition's previous owner wrote it).
Publication usage is not mirrored (the Kafka runtime refuses delivery quotas).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["CursorStore", "Mirror", "Parked", "Position"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cursors (
    name TEXT PRIMARY KEY,
    generation INTEGER NOT NULL,
    cursor INTEGER NOT NULL,
    acked TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS parked (
    name TEXT NOT NULL,
    generation INTEGER NOT NULL,
    "offset" INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    memory_id TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    reason TEXT,
    parked_at REAL NOT NULL,
    PRIMARY KEY (name, generation, "offset")
);
CREATE TABLE IF NOT EXISTS usage (
    publication TEXT NOT NULL,
    subscriber TEXT NOT NULL,
    period INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (publication, subscriber, period)
);
"""


@dataclass(frozen=True)
class Position:
    """A subscription's durable position: resolved up to ``cursor``, and ``acked`` above."""

    generation: int
    cursor: int
    acked: frozenset[int]


@dataclass(frozen=True)
class Parked:
    """A delivery its consumer rejected: kept aside, never delivered again by itself."""

    subscription: str
    offset: int
    event_id: str
    memory_id: str
    attempts: int
    reason: str | None
    parked_at: float


class Mirror(Protocol):
    """Records shared beyond this process: ``items()`` as last written (by anyone),
    ``put(key, value)`` to write one (``None``: delete it)."""

    def items(self) -> dict[str, bytes]: ...

    def put(self, key: str, value: bytes | None) -> None: ...


def _cursor_key(name: str) -> str:
    return json.dumps(["cursor", name])


def _parked_key(name: str, generation: int, offset: int) -> str:
    return json.dumps(["parked", name, generation, offset])


class CursorStore:
    """The positions, parked lists and publication usage of one store's subscriptions."""

    def __init__(self, path: Path, mirror: Mirror | None = None):
        """``mirror``: where every change of the cursors and parked lists is copied, and
        what is adopted from first (see the module docstring)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.mirror = mirror
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        #: records adopted from the mirror when opened (cursors, parked deliveries)
        self.adopted = self._adopt(mirror.items()) if mirror is not None else 0

    def _adopt(self, records: dict[str, bytes]) -> int:
        """Take the mirror's cursors newer than this file's, and its parked deliveries."""
        n = 0
        with self._lock:
            for key, value in records.items():
                try:
                    kind, *about = json.loads(key)
                    v = json.loads(value)
                    if kind == "cursor":
                        row = self._db.execute(
                            "SELECT updated_at FROM cursors WHERE name = ?", (about[0],)
                        ).fetchone()
                        if row is not None and row[0] >= v["updated_at"]:
                            continue
                        self._upsert(about[0], v["generation"], v["cursor"], v["acked"],
                                     v["updated_at"])  # fmt: skip
                    elif kind == "parked":
                        self._db.execute(
                            "INSERT OR IGNORE INTO parked VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (about[0], about[1], about[2], v["event_id"], v["memory_id"],
                             v["attempts"], v["reason"], v["parked_at"]),
                        )  # fmt: skip
                    else:
                        continue
                except (ValueError, TypeError, KeyError, IndexError):
                    continue  # not a record of this store's: left alone
                n += 1
        return n

    def _upsert(
        self, name: str, generation: int, cursor: int, acked: list[int], updated_at: float
    ) -> None:
        self._db.execute(
            "INSERT INTO cursors VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
            "generation = excluded.generation, cursor = excluded.cursor, "
            "acked = excluded.acked, updated_at = excluded.updated_at",
            (name, generation, cursor, json.dumps(acked), updated_at),
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- positions -------------------------------------------------------------------------

    def position(self, name: str, generation: int) -> Position | None:
        """The saved position of ``name`` in this generation (None: none saved)."""
        with self._lock:
            row = self._db.execute(
                "SELECT generation, cursor, acked FROM cursors WHERE name = ?", (name,)
            ).fetchone()
        if row is None or row[0] != generation:
            return None
        return Position(row[0], row[1], frozenset(json.loads(row[2])))

    def save(self, name: str, position: Position) -> None:
        acked, now = sorted(position.acked), time.time()
        with self._lock:
            self._upsert(name, position.generation, position.cursor, acked, now)
        if self.mirror is not None:
            record = {"generation": position.generation, "cursor": position.cursor,
                      "acked": acked, "updated_at": now}  # fmt: skip
            self.mirror.put(_cursor_key(name), json.dumps(record).encode())

    def forget(self, name: str) -> None:
        """Drop what a deleted subscription kept."""
        with self._lock:
            parked = self._db.execute(
                'SELECT generation, "offset" FROM parked WHERE name = ?', (name,)
            ).fetchall()
            self._db.execute("DELETE FROM cursors WHERE name = ?", (name,))
            self._db.execute("DELETE FROM parked WHERE name = ?", (name,))
        if self.mirror is not None:
            self.mirror.put(_cursor_key(name), None)
            for generation, offset in parked:
                self.mirror.put(_parked_key(name, generation, offset), None)

    # -- the parked list -------------------------------------------------------------------

    def park(self, parked: Parked, generation: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO parked VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    parked.subscription, generation, parked.offset, parked.event_id,
                    parked.memory_id, parked.attempts, parked.reason, parked.parked_at,
                ),
            )  # fmt: skip
        if self.mirror is not None:
            record = {"event_id": parked.event_id, "memory_id": parked.memory_id,
                      "attempts": parked.attempts, "reason": parked.reason,
                      "parked_at": parked.parked_at}  # fmt: skip
            key = _parked_key(parked.subscription, generation, parked.offset)
            self.mirror.put(key, json.dumps(record).encode())

    def parked(self, name: str, generation: int, limit: int = 1_000) -> list[Parked]:
        with self._lock:
            rows = self._db.execute(
                'SELECT "offset", event_id, memory_id, attempts, reason, parked_at FROM parked '
                'WHERE name = ? AND generation = ? ORDER BY "offset" LIMIT ?',
                (name, generation, limit),
            ).fetchall()
        return [Parked(name, *row) for row in rows]

    def parked_count(self, name: str, generation: int) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT count(*) FROM parked WHERE name = ? AND generation = ?", (name, generation)
            ).fetchone()
        return int(row[0])

    def unpark(self, name: str, generation: int, offsets: list[int]) -> int:
        """Remove parked deliveries (handled by hand); how many were removed."""
        with self._lock:
            gone = self._db.execute(
                f'DELETE FROM parked WHERE name = ? AND generation = ? AND "offset" IN '
                f'({",".join("?" * len(offsets))}) RETURNING "offset"',
                (name, generation, *offsets),
            ).fetchall()
        if self.mirror is not None:
            for (offset,) in gone:
                self.mirror.put(_parked_key(name, generation, offset), None)
        return len(gone)

    # -- publication usage -----------------------------------------------------------------

    def used(self, publication: str, subscriber: str, period: int) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT count FROM usage WHERE publication = ? AND subscriber = ? AND period = ?",
                (publication, subscriber, period),
            ).fetchone()
        return row[0] if row else 0

    def use(self, publication: str, subscriber: str, period: int, n: int = 1) -> int:
        """Count ``n`` deliveries in ``period``; the count after them."""
        with self._lock:
            self._db.execute(
                "INSERT INTO usage VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                "count = count + excluded.count",
                (publication, subscriber, period, n),
            )
            self._db.execute(
                "DELETE FROM usage WHERE publication = ? AND subscriber = ? AND period < ?",
                (publication, subscriber, period),
            )
            row = self._db.execute(
                "SELECT count FROM usage WHERE publication = ? AND subscriber = ? AND period = ?",
                (publication, subscriber, period),
            ).fetchone()
        return int(row[0])
