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
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CursorStore", "Parked", "Position"]

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


class CursorStore:
    """The positions, parked lists and publication usage of one store's subscriptions."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

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
        acked = json.dumps(sorted(position.acked))
        with self._lock:
            self._db.execute(
                "INSERT INTO cursors VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                "generation = excluded.generation, cursor = excluded.cursor, "
                "acked = excluded.acked, updated_at = excluded.updated_at",
                (name, position.generation, position.cursor, acked, time.time()),
            )

    def forget(self, name: str) -> None:
        """Drop what a deleted subscription kept."""
        with self._lock:
            self._db.execute("DELETE FROM cursors WHERE name = ?", (name,))
            self._db.execute("DELETE FROM parked WHERE name = ?", (name,))

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
            cur = self._db.execute(
                f'DELETE FROM parked WHERE name = ? AND generation = ? AND "offset" IN '
                f"({','.join('?' * len(offsets))})",
                (name, generation, *offsets),
            )
            return cur.rowcount

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
