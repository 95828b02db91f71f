"""Per-subject data keys, held outside the log (the basis of crypto-shredding).

A *subject* is whose data a payload is: the namespace unless an event names another. Each
subject has a current 256-bit key; its id is ``subject#generation``. Destroying a subject's
keys makes every payload sealed under them unreadable forever, wherever copies of the log
went. The next event for that subject gets a fresh generation.

The store is a small SQLite file with ``secure_delete`` on, so a destroyed key's bytes are
overwritten in the file rather than left in a free page. A new key is committed (durably)
before anything sealed under it can reach the log.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    kid          TEXT PRIMARY KEY,
    subject      TEXT NOT NULL,
    generation   INTEGER NOT NULL,
    key          BLOB,
    created_at   INTEGER NOT NULL,
    destroyed_at INTEGER
);
CREATE INDEX IF NOT EXISTS keys_by_subject ON keys(subject, generation);
"""


class KeyDestroyed(LookupError):
    """The key a payload was sealed under has been destroyed (the subject was erased)."""


class KeyStore:
    """Data keys by subject, in a SQLite file beside (never inside) the log."""

    def __init__(self, path: str | Path, *, create_keys: bool = True):
        """``create_keys=False``: keys come from elsewhere (the Kafka runtime shares them over
        a topic and :meth:`adopt` s them here); :meth:`current` then refuses to make one."""
        self.path = Path(path)
        self.create_keys = create_keys
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(_SCHEMA)
        try:
            os.chmod(self.path, 0o600)
        except OSError:
            pass
        self._lock = threading.Lock()
        self._current: dict[str, tuple[str, bytes]] = {}
        self._by_kid: dict[str, bytes | None] = {}

    def close(self) -> None:
        self._db.close()

    def current(self, subject: str) -> tuple[str, bytes]:
        """The live key of ``subject`` (creating and durably storing it on first use)."""
        hit = self._current.get(subject)
        if hit is None:
            self.ensure((subject,))
            hit = self._current[subject]
        return hit

    def ensure(self, subjects: Iterable[str]) -> None:
        """Give every one of ``subjects`` a live key: the missing ones are created together,
        in one durable commit (a batch that brings fifty new subjects syncs the file once,
        not fifty times), before :meth:`current` hands any of them out."""
        wanted = set(subjects)
        if wanted.issubset(self._current):
            return
        with self._lock:
            found: dict[str, tuple[str, bytes]] = {}
            made = []
            now = time.time_ns() // 1000
            for subject in sorted(wanted):
                if subject in self._current:
                    continue
                row = self._db.execute(
                    "SELECT kid, key, generation FROM keys WHERE subject = ? "
                    "ORDER BY generation DESC LIMIT 1",
                    (subject,),
                ).fetchone()
                if row is not None and row[1] is not None:
                    found[subject] = (row[0], bytes(row[1]))
                    continue
                if not self.create_keys:
                    raise KeyError(f"no live key for subject {subject!r} in {self.path}")
                generation = (row[2] + 1) if row is not None else 1
                kid, key = f"{subject}#{generation}", os.urandom(32)
                made.append((kid, subject, generation, key, now))
                found[subject] = (kid, key)
            if made:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany(
                        "INSERT INTO keys(kid, subject, generation, key, created_at) "
                        "VALUES (?,?,?,?,?)",
                        made,
                    )
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            for subject, hit in found.items():
                self._current[subject] = hit
                self._by_kid[hit[0]] = hit[1]

    def get(self, kid: str) -> bytes:
        """The key ``kid``; raises :class:`KeyDestroyed` when it was destroyed or never existed."""
        if kid in self._by_kid:
            key = self._by_kid[kid]
        else:
            row = self._db.execute("SELECT key FROM keys WHERE kid = ?", (kid,)).fetchone()
            key = bytes(row[0]) if row is not None and row[0] is not None else None
            self._by_kid[kid] = key
        if key is None:
            raise KeyDestroyed(f"key {kid} is destroyed or unknown")
        return key

    def destroy(self, subject: str, up_to_kid: str | None = None) -> list[str]:
        """Destroy the keys of ``subject`` (up to and including generation of ``up_to_kid``).

        Returns the ids of the keys destroyed now. Idempotent.
        """
        limit = int(up_to_kid.rsplit("#", 1)[1]) if up_to_kid else None
        with self._lock:
            rows = self._db.execute(
                "SELECT kid, generation FROM keys WHERE subject = ? AND key IS NOT NULL",
                (subject,),
            ).fetchall()
            kids = [k for k, g in rows if limit is None or g <= limit]
            if kids:
                now = time.time_ns() // 1000
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "UPDATE keys SET key = NULL, destroyed_at = ? WHERE kid = ?",
                    [(now, k) for k in kids],
                )
                self._db.execute("COMMIT")
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            for k in kids:
                self._by_kid[k] = None
            cur = self._current.get(subject)
            if cur is not None and cur[0] in kids:
                del self._current[subject]
            return kids

    def adopt(self, kid: str, subject: str, generation: int, key: bytes | None) -> bool:
        """Record a key made elsewhere; the first key recorded for ``kid`` wins.

        ``key=None`` records the key as destroyed (and destroys a live copy). Returns whether
        this call changed the store.
        """
        with self._lock:
            row = self._db.execute("SELECT key FROM keys WHERE kid = ?", (kid,)).fetchone()
            now = time.time_ns() // 1000
            if row is None:
                self._db.execute(
                    "INSERT INTO keys(kid, subject, generation, key, created_at, destroyed_at) "
                    "VALUES (?,?,?,?,?,?)",
                    (kid, subject, generation, key, now, None if key is not None else now),
                )
            elif key is None and row[0] is not None:
                self._db.execute(
                    "UPDATE keys SET key = NULL, destroyed_at = ? WHERE kid = ?", (now, kid)
                )
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            else:
                return False
            self._by_kid.pop(kid, None)
            cur = self._current.get(subject)
            if cur is not None and (cur[0] == kid or key is not None):
                del self._current[subject]
            return True

    def known(self, kid: str) -> bool:
        """Whether ``kid`` was ever recorded here (live or destroyed)."""
        if self._by_kid.get(kid) is not None:
            return True
        return self._db.execute("SELECT 1 FROM keys WHERE kid = ?", (kid,)).fetchone() is not None

    def kids(self, subject: str, up_to_generation: int) -> list[str]:
        """Every key id of ``subject`` up to a generation, live or destroyed."""
        rows = self._db.execute(
            "SELECT kid FROM keys WHERE subject = ? AND generation <= ? ORDER BY generation",
            (subject, up_to_generation),
        ).fetchall()
        return [r[0] for r in rows]

    def generation(self, subject: str) -> int:
        """The highest key generation recorded for ``subject``, live or destroyed (0: none)."""
        row = self._db.execute(
            "SELECT max(generation) FROM keys WHERE subject = ?", (subject,)
        ).fetchone()
        return int(row[0] or 0)

    def live(self, subject: str) -> str | None:
        """The id of the current live key of ``subject``, or None (never creates one)."""
        row = self._db.execute(
            "SELECT kid, key FROM keys WHERE subject = ? ORDER BY generation DESC LIMIT 1",
            (subject,),
        ).fetchone()
        return row[0] if row is not None and row[1] is not None else None

    def is_destroyed(self, kid: str) -> bool:
        try:
            self.get(kid)
        except KeyDestroyed:
            return True
        return False

    def backup(self, dest: str | Path) -> None:
        """A consistent copy of the key store (SQLite's online backup)."""
        target = sqlite3.connect(dest)
        try:
            with self._lock:
                self._db.backup(target)
        finally:
            target.close()
        os.chmod(dest, 0o600)
