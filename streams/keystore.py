"""Keys, held outside the log (the basis of crypto-shredding): per subject, per memory.

A *subject* is whose data a payload is: the namespace unless an event names another. Each
subject has a current 256-bit *subject key*; its id is ``subject#generation``. Each memory
has its own 256-bit *data key*, id ``subject#generation/memory_id#n``, stored *wrapped*
(AES-256-GCM, the key id as associated data) by the subject key of that generation: the
raw data key is never written anywhere. Payloads are sealed under data keys (records of
earlier versions were sealed under subject keys directly, and still open).

- Destroying a memory's data keys makes that memory's payloads unreadable forever,
  wherever copies of the log went, and no other memory's.
- Destroying a subject's keys does that for every memory of the subject: the data keys
  they wrapped cannot be unwrapped any more, and their wrapped bytes are deleted too. The
  next event for that subject gets a fresh generation.

The store is a small SQLite file with ``secure_delete`` on, and every destruction ends
with a WAL checkpoint, so a destroyed key's bytes are overwritten in the file rather than
left in a free page or in the WAL. A new key is committed (durably) before anything sealed
under it can reach the log.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from memstream.schemas.keyid import KeyId
from memstream.schemas.memcube import KeyDestruction

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
CREATE TABLE IF NOT EXISTS data_keys (
    kid          TEXT PRIMARY KEY,
    subject      TEXT NOT NULL,
    generation   INTEGER NOT NULL,
    memory_id    TEXT NOT NULL,
    n            INTEGER NOT NULL,
    wrapped      BLOB,
    created_at   INTEGER NOT NULL,
    destroyed_at INTEGER
);
CREATE INDEX IF NOT EXISTS data_keys_by_memory ON data_keys(memory_id, subject, n);
CREATE INDEX IF NOT EXISTS data_keys_by_generation ON data_keys(subject, generation);
"""

#: the most unwrapped data keys (and current ones per memory) kept in memory
_CACHED = 65_536


def _remember(cache: OrderedDict, key, value) -> None:
    """Insert into a bounded cache, dropping the oldest entry when full (an OrderedDict:
    finding a plain dict's oldest entry walks past every slot deleted before it, which made
    a long catch-up's key lookups quadratic)."""
    if len(cache) >= _CACHED:
        cache.popitem(last=False)
    cache[key] = value


def _wrapping_kid(kid: str) -> str | None:
    """The subject key id that wraps data key id ``kid`` (``subject#g/memory#n``); None
    when ``kid`` is not a data key id (the cheap test :meth:`KeyStore.prefetch` needs)."""
    subject, _, rest = kid.partition("#")
    generation, slash, _ = rest.partition("/")
    return f"{subject}#{generation}" if slash else None


def wrap(kek: AESGCM, kid: str, dek: bytes) -> bytes:
    """``dek`` wrapped by ``kek``: nonce (12 bytes) + AES-256-GCM ciphertext, AAD the kid."""
    nonce = os.urandom(12)
    return nonce + kek.encrypt(nonce, dek, kid.encode())


def unwrap(kek: AESGCM, kid: str, wrapped: bytes) -> bytes:
    return kek.decrypt(wrapped[:12], wrapped[12:], kid.encode())


class KeyDestroyed(LookupError):
    """The key a payload was sealed under has been destroyed (its memory or its subject was
    erased)."""


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
        # re-entrant: a read that misses the caches takes it too (a checkpoint of the
        # connection fails while another thread's statement on it is open)
        self._lock = threading.RLock()
        self._current: dict[str, tuple[str, bytes]] = {}
        self._by_kid: dict[str, bytes | None] = {}
        #: (subject, memory id) → its current data key; data key id → the unwrapped key
        self._current_data: OrderedDict[tuple[str, str], tuple[str, bytes]] = OrderedDict()
        self._data: OrderedDict[str, bytes] = OrderedDict()
        #: subject key id → its cipher (a few subjects wrap many data keys)
        self._keks: dict[str, AESGCM] = {}

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
            self._ensure_locked(wanted)

    def _ensure_locked(self, wanted: set[str]) -> None:
        """:meth:`ensure`, the caller holding the lock."""
        self._commit(self._plan_keys(wanted), [])

    def _plan_keys(self, wanted: set[str]) -> list[tuple]:
        """Make the missing subject keys of ``wanted`` current here (caller holds the lock);
        returns the rows to insert (the caller commits them before handing any out)."""
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
                hit = (row[0], bytes(row[1]))
            else:
                if not self.create_keys:
                    raise KeyError(f"no live key for subject {subject!r} in {self.path}")
                generation = (row[2] + 1) if row is not None else 1
                kid, key = f"{subject}#{generation}", os.urandom(32)
                made.append((kid, subject, generation, key, now))
                hit = (kid, key)
            self._current[subject] = hit
            self._by_kid[hit[0]] = hit[1]
        return made

    def _commit(self, keys: list[tuple], data: list[tuple]) -> None:
        """Insert new subject keys and data keys in one durable commit. On failure the new
        keys are forgotten here (nothing was handed out)."""
        if not keys and not data:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT INTO keys(kid, subject, generation, key, created_at) VALUES (?,?,?,?,?)",
                keys,
            )
            self._db.executemany(
                "INSERT INTO data_keys(kid, subject, generation, memory_id, n, wrapped, "
                "created_at) VALUES (?,?,?,?,?,?,?)",
                data,
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            for kid, subject, *_ in keys:
                self._current.pop(subject, None)
                self._by_kid.pop(kid, None)
            raise

    def get(self, kid: str) -> bytes:
        """The key ``kid`` (a data key unwrapped); raises :class:`KeyDestroyed` when it, or
        the subject key wrapping it, was destroyed or never existed."""
        key = self._data.get(kid)  # a data key at hand (most reads of the log)
        if key is not None:
            return key
        k = KeyId.parse(kid)
        if k.memory_id is not None:
            return self._data_key(kid, k)
        if kid in self._by_kid:
            key = self._by_kid[kid]
        else:
            row = self._fetch_one("SELECT key FROM keys WHERE kid = ?", (kid,))
            key = bytes(row[0]) if row is not None and row[0] is not None else None
            self._by_kid[kid] = key
        if key is None:
            raise KeyDestroyed(f"key {kid} is destroyed or unknown")
        return key

    def _fetch_one(self, sql: str, args: tuple = ()) -> Any:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def _fetch_all(self, sql: str, args: tuple = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _kek(self, subject_kid: str) -> AESGCM:
        """The cipher of a live subject key; :class:`KeyDestroyed` when it is not."""
        c = self._keks.get(subject_kid)
        if c is None:
            c = AESGCM(self.get(subject_kid))
            if len(self._keks) >= _CACHED:
                self._keks.clear()
            self._keks[subject_kid] = c
        return c

    def _data_key(self, kid: str, k: KeyId) -> bytes:
        key = self._data.get(kid)
        if key is not None:
            return key
        row = self._fetch_one("SELECT wrapped FROM data_keys WHERE kid = ?", (kid,))
        if row is None or row[0] is None:
            raise KeyDestroyed(f"key {kid} is destroyed or unknown")
        key = unwrap(self._kek(k.subject_kid), kid, bytes(row[0]))
        _remember(self._data, kid, key)
        return key

    def prefetch(self, kids: Iterable[str]) -> int:
        """Bring the live data keys among ``kids`` into the cache, in one query per 500
        rather than one per key (a reader opening a slice of the log asks for thousands).
        Subject key ids, keys already cached, and destroyed or unknown keys are left out:
        :meth:`get` then answers those as it always does (a destroyed key raises
        :class:`KeyDestroyed`), so prefetching changes what a read costs, never what it
        returns. Returns how many keys were unwrapped."""
        data = self._data
        wanted = {k: s for k in kids if k not in data and (s := _wrapping_kid(k)) is not None}
        if not wanted:
            return 0
        n = 0
        ids = sorted(wanted)
        # under the lock: a destruction cannot slip in between the read and the caching
        with self._lock:
            rows = self._rows_in("SELECT kid, wrapped FROM data_keys", "kid", ids,
                                 "AND wrapped IS NOT NULL")  # fmt: skip
            for kid, wrapped in rows:
                try:
                    key = unwrap(self._kek(wanted[kid]), kid, bytes(wrapped))
                except Exception:  # destroyed subject key, damage: get() says which
                    continue
                _remember(data, kid, key)
                n += 1
        return n

    # -- data keys (one per memory, wrapped by the subject key) -----------------------------

    def current_data_key(self, subject: str, memory_id: str) -> tuple[str, bytes]:
        """The live data key of memory ``memory_id`` of ``subject`` (created on first use)."""
        hit = self._current_data.get((subject, memory_id))
        if hit is None:
            self.ensure_data_keys(((subject, memory_id),))
            hit = self._current_data[(subject, memory_id)]
        return hit

    def ensure_data_keys(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Give every ``(subject, memory id)`` a live data key under the subject's current
        key: the subject keys first (:meth:`ensure`), then the missing data keys, together,
        in one durable commit, before :meth:`current_data_key` hands any of them out."""
        wanted = {p for p in pairs if p not in self._current_data}
        if not wanted:
            return
        with self._lock:
            keys = self._plan_keys({s for s, _ in wanted})
            made = []
            found: dict[tuple[str, str], tuple[str, bytes]] = {}
            now = time.time_ns() // 1000
            latest = self._latest_data_keys(wanted)
            for subject, memory_id in sorted(wanted):
                skid = self._current[subject][0]
                gen = KeyId.parse(skid).generation
                row = latest.get((subject, memory_id))
                if row is not None and row[1] is not None and row[2] == gen:
                    found[(subject, memory_id)] = (
                        row[0],
                        unwrap(self._kek(skid), row[0], bytes(row[1])),
                    )
                    continue
                if not self.create_keys:
                    raise KeyError(
                        f"no live data key for memory {memory_id!r} of subject {subject!r} "
                        f"in {self.path}"
                    )
                n = (row[3] + 1) if row is not None else 1
                kid = str(KeyId.data_key(subject, gen, memory_id, n))
                dek = os.urandom(32)
                made.append((kid, subject, gen, memory_id, n, wrap(self._kek(skid), kid, dek), now))
                found[(subject, memory_id)] = (kid, dek)
            self._commit(keys, made)
            for pair, hit in found.items():
                _remember(self._current_data, pair, hit)
                _remember(self._data, hit[0], hit[1])

    def _rows_in(self, select: str, column: str, values: list[Any], more: str = "") -> list[Any]:
        """The rows of ``select WHERE column IN values more``, in one query per 500 values
        (SQLite bounds the parameters of a statement)."""
        rows: list[Any] = []
        for i in range(0, len(values), 500):
            chunk = values[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows += self._db.execute(
                f"{select} WHERE {column} IN ({marks}) {more}", chunk
            ).fetchall()
        return rows

    def _latest_data_keys(
        self, pairs: set[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[str, bytes | None, int, int]]:
        """The newest data key row (kid, wrapped, generation, n) of each pair that has one,
        in one query per 500 memories rather than one per memory (a batch of creates asks
        for hundreds, none of which exist yet)."""
        out: dict[tuple[str, str], tuple[str, bytes | None, int, int]] = {}
        ids = sorted({m for _, m in pairs})
        rows = self._rows_in(
            "SELECT subject, memory_id, kid, wrapped, generation, n FROM data_keys",
            "memory_id",
            ids,
        )
        for subject, memory_id, kid, wrapped, gen, n in rows:
            pair = (subject, memory_id)
            if pair in pairs and (pair not in out or n > out[pair][3]):
                out[pair] = (kid, wrapped, gen, n)
        return out

    def live_data_key(self, subject: str, memory_id: str) -> str | None:
        """The id of the live data key of a memory under the subject's live key, or None
        (never creates one)."""
        hit = self._current_data.get((subject, memory_id))
        if hit is not None:  # dropped here whenever it or its subject key is destroyed
            return hit[0]
        skid = self.live(subject)
        if skid is None:
            return None
        row = self._fetch_one(
            "SELECT kid, wrapped, generation FROM data_keys WHERE subject = ? AND memory_id = ? "
            "ORDER BY n DESC LIMIT 1",
            (subject, memory_id),
        )
        if row is None or row[1] is None or row[2] != KeyId.parse(skid).generation:
            return None
        return row[0]

    def data_key_number(self, subject: str, memory_id: str) -> int:
        """The highest data key number recorded for a memory, live or destroyed (0: none)."""
        row = self._fetch_one(
            "SELECT max(n) FROM data_keys WHERE subject = ? AND memory_id = ?",
            (subject, memory_id),
        )
        return int(row[0] or 0)

    def wrap(self, kid: str, dek: bytes) -> bytes:
        """``dek`` wrapped by the (live) subject key that data key id ``kid`` names."""
        return wrap(self._kek(KeyId.parse(kid).subject_kid), kid, dek)

    def data_kids(self, subject: str, memory_id: str) -> list[str]:
        """Every data key id of a memory, live or destroyed."""
        rows = self._fetch_all(
            "SELECT kid FROM data_keys WHERE subject = ? AND memory_id = ? ORDER BY n",
            (subject, memory_id),
        )
        return [r[0] for r in rows]

    def destroy_memory(self, subject: str, memory_id: str, up_to: int | None = None) -> list[str]:
        """Destroy the data keys of a memory (numbered up to ``up_to``; all without), their
        bytes overwritten in the file. Returns the ids of the keys destroyed now. Idempotent."""
        with self._lock:
            kids = [
                r[0]
                for r in self._db.execute(
                    "SELECT kid FROM data_keys WHERE subject = ? AND memory_id = ? "
                    "AND wrapped IS NOT NULL AND n <= ?",
                    (subject, memory_id, up_to if up_to is not None else 2**62),
                ).fetchall()
            ]
            if kids:
                self._null_data_keys(kids)
            self._current_data.pop((subject, memory_id), None)
            return kids

    def _null_data_keys(self, kids: list[str]) -> None:
        """Overwrite data keys (caller holds the lock), and forget them here."""
        now = time.time_ns() // 1000
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "UPDATE data_keys SET wrapped = NULL, destroyed_at = ? WHERE kid = ?",
                [(now, k) for k in kids],
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._forget_data(kids)

    def _forget_data(self, kids: Iterable[str]) -> None:
        for kid in kids:
            self._data.pop(kid, None)
            k = KeyId.parse(kid)
            assert k.memory_id is not None
            cur = self._current_data.get((k.subject, k.memory_id))
            if cur is not None and cur[0] == kid:
                del self._current_data[(k.subject, k.memory_id)]

    def shred(self, d: KeyDestruction) -> list[str]:
        """Destroy what an accepted erase names (see :class:`KeyDestruction`); returns the
        ids of the keys destroyed now."""
        if d.scope == "memory":
            assert d.memory_id is not None
            return self.destroy_memory(d.subject, d.memory_id, d.generation or None)
        return self.destroy(d.subject, str(KeyId.subject_key(d.subject, d.generation)))

    def destroy(self, subject: str, up_to_kid: str | None = None) -> list[str]:
        """Destroy the keys of ``subject`` (up to and including generation of ``up_to_kid``),
        and every data key they wrap.

        Returns the ids of the keys destroyed now (subject keys and data keys). Idempotent.
        """
        limit = KeyId.parse(up_to_kid).generation if up_to_kid else None
        with self._lock:
            rows = self._db.execute(
                "SELECT kid, generation FROM keys WHERE subject = ? AND key IS NOT NULL",
                (subject,),
            ).fetchall()
            kids = [k for k, g in rows if limit is None or g <= limit]
            data = [
                k
                for k, g in self._db.execute(
                    "SELECT kid, generation FROM data_keys WHERE subject = ? "
                    "AND wrapped IS NOT NULL",
                    (subject,),
                ).fetchall()
                if limit is None or g <= limit
            ]
            if kids or data:
                now = time.time_ns() // 1000
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany(
                        "UPDATE keys SET key = NULL, destroyed_at = ? WHERE kid = ?",
                        [(now, k) for k in kids],
                    )
                    self._db.executemany(
                        "UPDATE data_keys SET wrapped = NULL, destroyed_at = ? WHERE kid = ?",
                        [(now, k) for k in data],
                    )
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            for k in kids:
                self._by_kid[k] = None
                self._keks.pop(k, None)
            self._forget_data(data)
            cur = self._current.get(subject)
            if cur is not None and cur[0] in kids:
                del self._current[subject]
            return kids + data

    def adopt(self, kid: str, subject: str, generation: int, key: bytes | None) -> bool:
        """Record a key made elsewhere; the first key recorded for ``kid`` wins.

        ``key`` is a subject key, or for a data key id its *wrapped* bytes. ``key=None``
        records the key as destroyed (and destroys a live copy; for a subject key, every
        data key it wraps too). Returns whether this call changed the store.
        """
        k = KeyId.parse(kid)
        if k.memory_id is not None:
            return self._adopt_data_key(kid, k, key)
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
            if key is None:
                wrapped = [
                    r[0]
                    for r in self._db.execute(
                        "SELECT kid FROM data_keys WHERE subject = ? AND generation = ? "
                        "AND wrapped IS NOT NULL",
                        (subject, generation),
                    ).fetchall()
                ]
                if wrapped:
                    self._null_data_keys(wrapped)
            self._by_kid.pop(kid, None)
            self._keks.pop(kid, None)
            cur = self._current.get(subject)
            if cur is not None and (cur[0] == kid or key is not None):
                del self._current[subject]
            return True

    def _adopt_data_key(self, kid: str, k: KeyId, wrapped: bytes | None) -> bool:
        assert k.memory_id is not None
        with self._lock:
            row = self._db.execute("SELECT wrapped FROM data_keys WHERE kid = ?", (kid,)).fetchone()
            if row is None:
                if wrapped is not None:
                    kek = self._db.execute(
                        "SELECT key FROM keys WHERE kid = ?", (k.subject_kid,)
                    ).fetchone()
                    if kek is not None and kek[0] is None:
                        wrapped = None  # its subject key is destroyed already: useless
                now = time.time_ns() // 1000
                self._db.execute(
                    "INSERT INTO data_keys(kid, subject, generation, memory_id, n, wrapped, "
                    "created_at, destroyed_at) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        kid, k.subject, k.generation, k.memory_id, k.dek_generation, wrapped,
                        now, None if wrapped is not None else now,
                    ),
                )  # fmt: skip
                if wrapped is None:
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            elif wrapped is None and row[0] is not None:
                self._null_data_keys([kid])
            else:
                return False
            self._current_data.pop((k.subject, k.memory_id), None)
            self._data.pop(kid, None)
            return True

    def known(self, kid: str) -> bool:
        """Whether ``kid`` was ever recorded here (live or destroyed)."""
        if self._by_kid.get(kid) is not None or kid in self._data:
            return True
        table = "data_keys" if KeyId.parse(kid).is_data_key else "keys"
        return self._fetch_one(f"SELECT 1 FROM {table} WHERE kid = ?", (kid,)) is not None

    def kids(self, subject: str, up_to_generation: int) -> list[str]:
        """Every key id of ``subject`` up to a generation, live or destroyed."""
        rows = self._fetch_all(
            "SELECT kid FROM keys WHERE subject = ? AND generation <= ? ORDER BY generation",
            (subject, up_to_generation),
        )
        return [r[0] for r in rows]

    def generation(self, subject: str) -> int:
        """The highest key generation recorded for ``subject``, live or destroyed (0: none)."""
        row = self._fetch_one("SELECT max(generation) FROM keys WHERE subject = ?", (subject,))
        return int(row[0] or 0)

    def live(self, subject: str) -> str | None:
        """The id of the current live key of ``subject``, or None (never creates one)."""
        row = self._fetch_one(
            "SELECT kid, key FROM keys WHERE subject = ? ORDER BY generation DESC LIMIT 1",
            (subject,),
        )
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
