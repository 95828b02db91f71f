"""The access log: every read of a store, by whom, in which call context, of which memories.

The event log says who *changed* what; this log says who *read* what. The service
(:class:`~memstream.service.MemoryService`) records each read that succeeded (``get``,
``history``, ``list``, ``search`` with the ids it returned in order, ``audit``, ``follow``,
and the reads of this log itself): the time (UTC, microseconds), the principal and its call
context (app, session, purpose), the action, the namespaces and memory ids read, and a
small ``detail`` of how it was asked.

It is kept apart from the event log, in ``<store>/access/access.sqlite`` (SQLite, WAL): it
is not part of the hash chain, of a replay or of a backup, and nothing in it is derived
from the log. What it never holds: memory content, and the text of a search query (a
query may itself be sensitive): only a keyed hash of it (BLAKE2b, 128 bits, under a random
key of this access log), so an auditor can see that two searches asked the same thing
without being able to read or confirm it. Metadata filters keep their keys, not values.

Recording costs a read almost nothing: :meth:`AccessLog.record` appends a tuple to an
in-memory queue, and a background thread writes the queue in batches (one transaction
each) every ``flush_interval`` seconds (sooner when many are waiting). ``close`` writes
everything still queued; a process killed with ``kill -9`` loses the reads recorded in its
last ``flush_interval`` at most. The same thread prunes what is past retention
(``max_age_days``, ``max_records``) every ``prune_interval`` seconds.

Deliveries of subscriptions (:meth:`AccessLog.delivered`) are recorded the same way, and
the writer writes each run of consecutive deliveries of one subscription to one caller that
it finds queued together as one record: the memories delivered as its objects, in order,
their positions in its detail, the first delivery's time as its time. A subscription
catching up delivers tens of thousands of events a second; one record per delivery would
make the writer the bottleneck.

Reading it (:meth:`AccessLog.query`, :meth:`AccessLog.export`) first writes out what is
queued, so a query sees every read recorded before it.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import repeat
from pathlib import Path
from typing import Any

import msgspec

from memstream import validation as check
from memstream.errors import BadRequest
from memstream.settings import AccessLogSettings
from memstream.streams.embedded import ACCESS_DIR

from .export import cells, csv_rows, write_export

__all__ = [
    "ACTIONS",
    "FORMATS",
    "MEDIA_TYPES",
    "AccessLog",
    "AccessLogReads",
    "AccessPage",
    "AccessQuery",
    "AccessRecord",
    "checked_query",
    "export_format",
    "open_access_log",
]

log = logging.getLogger("memstream.access_log")

#: What the service records (an action names the read; more may be added).
ACTIONS = ("get", "history", "list", "search", "audit", "follow", "access_log", "access_log_export")
#: The export formats: JSON Lines (one record per line) and CSV (a header, then a row each).
FORMATS = ("jsonl", "csv")
MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
ACCESS_FILE = "access.sqlite"
FORMAT_VERSION = 1

#: Records written per transaction; the writer is woken early once this many wait.
BATCH = 2_000
#: Records waiting beyond this make a read wait for the writer (memory stays bounded).
MAX_PENDING = 200_000
#: Records deleted per transaction when pruning.
PRUNE_CHUNK = 50_000
#: Records read per page of an export.
EXPORT_PAGE = 1_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS access (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    principal TEXT NOT NULL,
    context TEXT,
    action TEXT NOT NULL,
    namespaces TEXT NOT NULL,
    objects TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS access_at ON access (at);
CREATE INDEX IF NOT EXISTS access_principal ON access (principal, id);
CREATE TABLE IF NOT EXISTS access_object (
    key INTEGER NOT NULL, record INTEGER NOT NULL, PRIMARY KEY (key, record)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS access_object_record ON access_object (record);
CREATE TABLE IF NOT EXISTS access_namespace (
    key INTEGER NOT NULL, record INTEGER NOT NULL, PRIMARY KEY (key, record)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS access_namespace_record ON access_namespace (record);
"""
# The lookup tables find the records that read a memory (or a namespace) by a 64-bit hash
# of its id: a third of the bytes of the id itself per row. A query then checks the id in
# the record's own list, so a collision of two hashes can never answer the wrong record.

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def _now_us() -> int:
    """Now, in microseconds since the epoch (UTC)."""
    return time.time_ns() // 1_000


# -- what a query asks, and what it answers ----------------------------------------------------


@dataclass(frozen=True)
class AccessQuery:
    """Which access records to read, oldest first (every given filter must match)."""

    principal: str | None = None
    #: records of reads that asked for, or returned memories of, this namespace
    namespace: str | None = None
    #: records of reads that read this memory
    memory_id: str | None = None
    action: str | None = None
    #: from this time on (inclusive)
    since: datetime | None = None
    #: up to this time (inclusive)
    until: datetime | None = None
    #: the cursor: records after this id (a page's ``next_after``)
    after: int | None = None
    limit: int = 100


class AccessRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One read: when, who (principal and call context), what (``action``), of which
    namespaces and memories (``objects``, in the order read), and how it was asked."""

    id: int
    at: datetime
    principal: str
    context: dict[str, Any]
    action: str
    namespaces: list[str]
    objects: list[str]
    detail: dict[str, Any]


class AccessPage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of access records; pass ``next_after`` as ``after`` for the next (None: the
    last page)."""

    records: list[AccessRecord]
    next_after: int | None


#: the columns of a CSV export, in order
COLUMNS = AccessRecord.__struct_fields__


def checked_query(q: Any) -> AccessQuery:
    """``q`` with every filter checked (a time given as RFC 3339 text parsed), or a
    :class:`BadRequest` naming the field."""
    if not isinstance(q, AccessQuery):
        raise BadRequest(f"expected an AccessQuery, not {type(q).__name__}")
    return dataclasses.replace(
        q,
        principal=check.text(q.principal, "principal"),
        namespace=check.text(q.namespace, "namespace"),
        memory_id=check.text(q.memory_id, "memory_id"),
        action=check.text(q.action, "action"),
        since=check.time(q.since, "since"),
        until=check.time(q.until, "until"),
        after=check.integer(q.after, "after"),
        limit=check.integer(q.limit, "limit", optional=False, minimum=1, maximum=10_000),
    )


def export_format(value: Any) -> str:
    """``jsonl`` or ``csv``, or a :class:`BadRequest` naming ``format``."""
    if not isinstance(value, str) or value not in FORMATS:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise BadRequest(f"format must be 'jsonl' or 'csv', not {shown}", field="format")
    return value


# -- the store ------------------------------------------------------------------------------------


class _Marker:
    """Put in the queue by :meth:`AccessLog.flush`: set once every record queued before it
    is written (and, with ``prune``, once the records past retention are deleted)."""

    __slots__ = ("done", "prune", "pruned")

    def __init__(self, prune: bool = False):
        self.done = threading.Event()
        self.prune = prune
        self.pruned = 0


class AccessLog:
    """The access log of one store directory: a queue the reads append to, a thread that
    writes it to ``<directory>/access.sqlite`` and prunes it, and its queries.

    Open it with :func:`open_access_log` (a store does); one process writes it (the one that
    holds the store's lock). :meth:`close` writes everything still queued.
    """

    def __init__(self, directory: str | Path, settings: AccessLogSettings | None = None):
        self.settings = settings or AccessLogSettings()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / ACCESS_FILE
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._db:
                self._db.executescript(_SCHEMA)
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            if int(meta.get("format", FORMAT_VERSION)) > FORMAT_VERSION:
                raise RuntimeError(
                    f"the access log {self.path} has format {meta['format']}; this memstream "
                    f"reads format {FORMAT_VERSION}: upgrade memstream"
                )
            if "key" not in meta:
                meta["key"] = secrets.token_hex(32)
                with self._db:
                    self._db.executemany(
                        "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                        [("format", str(FORMAT_VERSION)), ("key", meta["key"])],
                    )
            (top,) = self._db.execute("SELECT max(id) FROM access").fetchone()
        except BaseException:
            self._db.close()
            raise
        self._key = bytes.fromhex(meta["key"])
        self._next_id = max(top or 0, int(meta.get("last_id", 0))) + 1
        self._pending: deque[tuple[Any, ...] | _Marker] = deque()
        self._wake = threading.Event()
        self._closed = False
        self._undescribed: set[tuple[str, str]] = set()
        self._thread = threading.Thread(target=self._run, name="memstream-access-log", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"AccessLog({str(self.path)!r})"

    # -- recording (any thread) -------------------------------------------------------------------

    def record(
        self,
        caller: Any,
        action: str,
        namespaces: Sequence[str] = (),
        objects: Sequence[str] = (),
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Record that ``caller`` (a :class:`~memstream.service.Caller`) did ``action``,
        reading ``objects`` (memory ids, in order) of ``namespaces``. Returns at once: the
        record is written by the background thread."""
        described = (tuple(namespaces), tuple(objects), dict(detail or {}))
        self._queue((_now_us(), caller, action, None, None, None, described))

    def delivered(
        self,
        caller: Any,
        namespace: str,
        memory_id: str,
        subscription: str,
        position: int,
        publication: str | None = None,
    ) -> None:
        """Record that a subscription delivered memory ``memory_id`` of ``namespace`` at
        ``position`` to ``caller``. Consecutive deliveries of one subscription to one caller
        that wait in the queue together are written as one record (action ``delivery``):
        its objects are the memories delivered, in order, its detail's ``positions`` their
        positions (one delivery alone: ``position``), its time the first one's."""
        self._queue((_now_us(), caller, _DELIVERY, namespace, memory_id, position,
                     (subscription, publication)))  # fmt: skip

    def read(
        self, caller: Any, action: str, result: Any, asked: dict[str, Any], backend: Any = None
    ) -> None:
        """Record a read the service answered with ``result``, asked with ``asked`` (its
        parameters, by name). A read one worker forwarded to another is recorded by the
        worker it came to first, not twice. ``backend`` places a memory in its namespace
        when the read did not name one (an embedded store's)."""
        if not caller.forwarded:
            # described by the writer thread: the read pays for a tuple and an append
            self._queue((_now_us(), caller, action, result, asked, backend, None))

    def _queue(self, item: tuple[Any, ...]) -> None:
        pending = self._pending
        pending.append(item)
        size = len(pending)
        if size % BATCH == 0:  # the writer drains the whole queue once woken
            self._wake.set()
        if size >= MAX_PENDING:
            self.flush()

    def query_hash(self, text: str) -> str:
        """The keyed hash of a search's query text (what is recorded instead of the text)."""
        data = text.encode("utf-8", "backslashreplace")
        return hashlib.blake2b(data, key=self._key, digest_size=16).hexdigest()

    # -- the writer thread -----------------------------------------------------------------------------

    def flush(self, timeout: float | None = None, *, prune: bool = False) -> int:
        """Wait until every read recorded so far is written (``prune``: and the records past
        retention deleted); the number of records pruned."""
        if self._closed:
            return 0
        marker = _Marker(prune)
        self._pending.append(marker)
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not marker.done.wait(0.5):
            if not self._thread.is_alive():
                if self._closed:
                    return 0
                raise RuntimeError(f"the access log's writer of {self.path} stopped; see the log")
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"the access log {self.path} was not written in {timeout} s")
        return marker.pruned

    def prune(self) -> int:
        """Delete the records past retention now; how many were deleted."""
        return self.flush(prune=True)

    def close(self) -> None:
        """Write everything recorded so far, then close the file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._thread.join()
        self._db.close()

    def _run(self) -> None:
        settings = self.settings
        next_prune = 0.0
        while True:
            closing = self._closed
            if time.monotonic() >= next_prune and not closing:
                self._safely(self._prune)
                next_prune = time.monotonic() + settings.prune_interval
            self._write_pending()
            if closing:
                return
            self._wake.wait(settings.flush_interval)
            self._wake.clear()

    def _safely(self, work: Callable[[], Any]) -> Any:
        """``work()``; an error is logged, never the end of the thread (the records of a
        batch that could not be written are lost, and the log says so)."""
        try:
            return work()
        except Exception:
            log.exception("the access log %s could not be written", self.path)
            return 0

    def _write_pending(self) -> None:
        pending = self._pending
        while pending:
            batch: list[tuple[Any, ...]] = []
            markers: list[_Marker] = []
            while pending and len(batch) < BATCH:
                item = pending.popleft()
                if isinstance(item, _Marker):
                    markers.append(item)
                else:
                    batch.append(item)
            if batch:
                self._safely(lambda b=batch: self._insert(b))
            for m in markers:
                if m.prune:
                    m.pruned = self._safely(self._prune)
                m.done.set()

    def _insert(self, batch: list[tuple[Any, ...]]) -> None:
        rows, objects, namespaces = [], [], []
        first = i = self._next_id
        for at, caller, action, result, asked, backend, described in _coalesced(batch):
            if described is None:
                described = self._describe(action, result, asked, backend)
            spaces, objs, detail = described
            spaces_json, spaces = _strings(spaces)
            objs_json, objs = _strings(objs)
            rows.append(
                (i, at, _clean(caller.principal), _context(caller.context), _clean(action),
                 spaces_json, objs_json, _detail(detail))
            )  # fmt: skip
            objects += zip(map(_lookup_key, objs), repeat(i, len(objs)), strict=True)
            namespaces += zip(map(_lookup_key, spaces), repeat(i, len(spaces)), strict=True)
            i += 1
        try:
            with self._db:
                self._db.executemany("INSERT INTO access VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
                self._db.executemany("INSERT OR IGNORE INTO access_object VALUES (?, ?)", objects)
                self._db.executemany(
                    "INSERT OR IGNORE INTO access_namespace VALUES (?, ?)", namespaces
                )
        except BaseException:
            self._next_id = first
            raise
        self._next_id = i

    def _describe(self, action: str, result: Any, asked: dict[str, Any], backend: Any) -> Any:
        """(namespaces, objects, detail) of a read, from what it answered and was asked."""
        describe = _DESCRIBE.get(action)
        if describe is None:
            return (), (), _given(asked)
        try:
            return describe(self, result, asked, backend)
        except Exception as e:  # a read is recorded, described or not (said once per kind)
            kind = (action, type(e).__name__)
            if kind not in self._undescribed:
                self._undescribed.add(kind)
                log.warning("access log: cannot describe a %s read: %r", action, e)
            return (), (), {"undescribed": type(e).__name__}

    def _prune(self) -> int:
        """Delete the records older than ``max_age_days`` and beyond the newest
        ``max_records``; how many were deleted."""
        db, settings = self._db, self.settings
        cut = 0
        if settings.max_records:
            cut = self._next_id - 1 - settings.max_records
        if settings.max_age_days:
            cutoff = _now_us() - int(settings.max_age_days * 86_400 * 1_000_000)
            row = db.execute(
                "SELECT id FROM access WHERE at < ? ORDER BY at DESC LIMIT 1", (cutoff,)
            ).fetchone()
            if row is not None:
                cut = max(cut, row[0])
        (low,) = db.execute("SELECT min(id) FROM access").fetchone()
        if low is None or cut < low:
            return 0
        deleted = 0
        with db:
            db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('last_id', ?)", (str(self._next_id - 1),)
            )
        while low <= cut:
            high = min(cut, low + PRUNE_CHUNK - 1)
            with db:
                deleted += db.execute("DELETE FROM access WHERE id <= ?", (high,)).rowcount
                db.execute("DELETE FROM access_object WHERE record <= ?", (high,))
                db.execute("DELETE FROM access_namespace WHERE record <= ?", (high,))
            low = high + 1
        return deleted

    # -- reading (any thread) ------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, check_same_thread=False)

    def query(self, q: AccessQuery) -> AccessPage:
        """A page of records matching ``q`` (checked by :func:`checked_query`), oldest first."""
        self.flush()
        where, params = _where(q)
        sql = f"SELECT * FROM access {where} ORDER BY id LIMIT ?"
        db = self._reader()
        try:
            rows = db.execute(sql, (*params, q.limit + 1)).fetchall()
        finally:
            db.close()
        more = len(rows) > q.limit
        records = [_record(r) for r in rows[: q.limit]]
        return AccessPage(records=records, next_after=records[-1].id if more else None)

    def export(self, q: AccessQuery, fmt: str) -> Iterator[str]:
        """Every record matching ``q`` (its ``after`` and the filters; not its ``limit``)
        as text in ``fmt`` (``jsonl`` or ``csv``), a page at a time: the records there
        were when the export began (those recorded meanwhile are the next export's)."""
        self.flush()
        db = self._reader()
        try:
            (top,) = db.execute("SELECT max(id) FROM access").fetchone()
        finally:
            db.close()
        return self._pages(q, fmt, top or 0)

    def _pages(self, q: AccessQuery, fmt: str, top: int) -> Iterator[str]:
        if fmt == "csv":
            yield csv_rows([COLUMNS])
        cursor = q.after if q.after is not None else 0
        while cursor < top:
            where, params = _where(dataclasses.replace(q, after=cursor))
            sql = f"SELECT * FROM access {where} AND id <= ? ORDER BY id LIMIT ?"
            db = self._reader()
            try:
                rows = db.execute(sql, (*params, top, EXPORT_PAGE)).fetchall()
            finally:
                db.close()
            if not rows:
                return
            records = [_record(r) for r in rows]
            if fmt == "csv":
                yield csv_rows(cells(r) for r in records)
            else:
                yield "".join(_encode(r).decode() + "\n" for r in records)
            cursor = records[-1].id


def open_access_log(
    store_root: str | Path, setting: bool | AccessLogSettings | None = None
) -> AccessLog | None:
    """The access log of the store at ``store_root`` (``<store>/access/``), or None when it
    is off. ``setting``: None (the settings, ``MEMSTREAM_ACCESS_LOG_*``), True or False
    (on or off; retention from the settings), or the settings themselves."""
    if setting is None or isinstance(setting, bool):
        settings = AccessLogSettings() if setting is None else AccessLogSettings(enabled=setting)
    elif isinstance(setting, AccessLogSettings):
        settings = setting
    else:
        raise BadRequest(
            f"access_log must be True, False, None or an AccessLogSettings, not "
            f"{type(setting).__name__}",
            field="access_log",
        )
    if not settings.enabled:
        return None
    return AccessLog(Path(store_root) / ACCESS_DIR, settings)


# -- rows, records and text --------------------------------------------------------------------------


#: what marks a delivery in the queue (:meth:`AccessLog.delivered`: its own shape)
_DELIVERY = object()
#: deliveries written in one record at most
DELIVERIES_PER_RECORD = 1_000


def _coalesced(batch: list[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """The queued items of ``batch`` as records to write: each run of consecutive
    deliveries of one subscription to one caller (the same :class:`Caller`), up to
    :data:`DELIVERIES_PER_RECORD`, becomes one described record; any other item is left as
    it is."""
    n = len(batch)
    i = 0
    while i < n:
        item = batch[i]
        if item[2] is not _DELIVERY:
            yield item
            i += 1
            continue
        at, caller, _, _, _, _, sub = item
        j = i + 1
        top = min(n, i + DELIVERIES_PER_RECORD)
        while j < top:
            nxt = batch[j]
            if nxt[2] is not _DELIVERY or nxt[1] is not caller or nxt[6] != sub:
                break
            j += 1
        run = batch[i:j]
        subscription, publication = sub
        detail: dict[str, Any] = {"subscription": subscription}
        if len(run) == 1:
            detail["position"] = item[5]
        else:
            detail["positions"] = [d[5] for d in run]
        detail["publication"] = publication
        spaces = tuple(dict.fromkeys(d[3] for d in run))
        yield (at, caller, "delivery", None, None, None,
               (spaces, tuple(d[4] for d in run), detail))  # fmt: skip
        i = j


def _clean(text: str) -> str:
    """``text``, with what UTF-8 cannot hold (a lone surrogate) escaped."""
    if text.isascii():
        return text
    try:
        text.encode()
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()


def _lookup_key(text: str) -> int:
    """The 64-bit key a memory id or a namespace is looked up by (stable across processes)."""
    digest = hashlib.blake2b(text.encode("utf-8", "backslashreplace"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _strings(values: Sequence[str]) -> tuple[str, Sequence[str]]:
    """A list of ids or namespaces as JSON text, and as the strings stored (what UTF-8
    cannot hold escaped: the encoder refuses it, which is rare enough to check that way)."""
    try:
        return _encode(values).decode(), values
    except (UnicodeEncodeError, TypeError):
        clean = [_clean(str(v)) for v in values]
        return _encode(clean).decode(), clean


def _context(context: Any) -> str | None:
    if context is None:
        return None
    fields = {k: _clean(v) for k in ("app", "session", "purpose") if (v := getattr(context, k))}
    attributes = getattr(context, "attributes", None)
    if attributes:
        fields["attributes"] = {_clean(k): _clean(v) for k, v in attributes.items()}
    return _encode(fields).decode() if fields else None


def _detail(detail: dict[str, Any] | None) -> str | None:
    if not detail:
        return None
    try:
        return _encode(detail).decode()
    except (TypeError, ValueError, OverflowError):
        return _encode({"unencodable": sorted(map(str, detail))}).decode()


def _record(row: tuple[Any, ...]) -> AccessRecord:
    id_, at, principal, context, action, namespaces, objects, detail = row
    return AccessRecord(
        id=id_,
        at=EPOCH + timedelta(microseconds=at),
        principal=principal,
        context=_decode(context) if context else {},
        action=action,
        namespaces=_decode(namespaces),
        objects=_decode(objects),
        detail=_decode(detail) if detail else {},
    )


def _where(q: AccessQuery) -> tuple[str, list[Any]]:
    clauses, params = ["1 = 1"], []
    if q.after is not None:
        clauses.append("id > ?")
        params.append(q.after)
    if q.principal is not None:
        clauses.append("principal = ?")
        params.append(q.principal)
    if q.action is not None:
        clauses.append("action = ?")
        params.append(q.action)
    if q.since is not None:
        # the first id to read from, found by the time index (exact: ids follow time only
        # to within the microseconds two threads may take to queue their records)
        clauses.append(
            "at >= ? AND id >= (SELECT min(id) FROM access INDEXED BY access_at WHERE at >= ?)"
        )
        params += [_us(q.since)] * 2
    if q.until is not None:
        clauses.append("at <= ?")
        params.append(_us(q.until))
    for value, table, column in (
        (q.namespace, "access_namespace", "namespaces"),
        (q.memory_id, "access_object", "objects"),
    ):
        if value is not None:
            clauses.append(
                f"id IN (SELECT record FROM {table} WHERE key = ?) AND "
                f"EXISTS (SELECT 1 FROM json_each(access.{column}) WHERE value = ?)"
            )
            params += [_lookup_key(value), value]
    return "WHERE " + " AND ".join(clauses), params


def _us(when: datetime) -> int:
    """Microseconds since the epoch, exactly (a float would round them)."""
    delta = when - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


# -- what each read is recorded as ---------------------------------------------------------------------


def _given(asked: dict[str, Any], *names: str) -> dict[str, Any]:
    """The parameters of ``asked`` (those in ``names``, or all) that were given."""
    keys = names or tuple(asked)
    return {k: v for k in keys if (v := asked.get(k)) is not None}


def _unique(values: Iterable[str | None]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


def _namespace_of(backend: Any, memory_id: str) -> str | None:
    placement = getattr(backend, "placement", None)
    if placement is None:
        return None
    where = placement(memory_id)
    return where[0] if where else None


Description = tuple[Sequence[str], Sequence[str], dict[str, Any]]


def _get(log: AccessLog, memory: Any, asked: dict[str, Any], backend: Any) -> Description:
    memory_id = asked["memory_id"]
    if memory is not None:
        namespace = memory.namespace
    else:
        namespace = asked.get("namespace") or _namespace_of(backend, memory_id)
    detail = _given(asked, "version", "as_of")
    if memory is None:
        detail["found"] = False
    return (namespace,) if namespace else (), (memory_id,), detail


def _history(log: AccessLog, chain: Any, asked: dict[str, Any], backend: Any) -> Description:
    memory_id = asked["memory_id"]
    namespace = asked.get("namespace") or _namespace_of(backend, memory_id)
    objects = _unique([memory_id, *(v.memory_id for v in chain)])
    detail = {"versions": len(chain), **_given(asked, "as_of")}
    if asked.get("include_parents") is False:
        detail["include_parents"] = False
    return (namespace,) if namespace else (), objects, detail


def _list(log: AccessLog, page: Any, asked: dict[str, Any], backend: Any) -> Description:
    q = asked["query"]
    memories = page.memories
    detail: dict[str, Any] = {"states": list(q.states or ()), "limit": q.limit}
    if q.tags:
        detail["tags"] = list(q.tags)
    if q.after is not None:
        detail["after"] = q.after
    namespaces = _unique([q.namespace, *(m.namespace for m in memories)])
    return namespaces, tuple(m.memory_id for m in memories), detail


_SEARCH_LISTS = ("tags_any", "tags_all", "states", "kinds")
_SEARCH_TIMES = ("created_after", "created_before", "updated_after", "updated_before")


def _search(log: AccessLog, hits: Any, asked: dict[str, Any], backend: Any) -> Description:
    q = asked["query"]
    detail: dict[str, Any] = {"k": q.k}
    if q.query is not None:
        detail["query_hash"] = log.query_hash(q.query)
    if q.vector is not None:
        detail["vector"] = True
    for name in _SEARCH_LISTS:
        if value := getattr(q, name):
            detail[name] = list(value)
    for name in _SEARCH_TIMES:
        if (value := getattr(q, name)) is not None:
            detail[name] = value
    if q.metadata:
        detail["metadata_keys"] = sorted(q.metadata)
    if q.include_archived:
        detail["include_archived"] = True
    if q.as_of is not None:
        detail["as_of"] = q.as_of
    if q.exact:
        detail["exact"] = True
    memories = [h.memory for h in hits]
    namespaces = _unique([*(q.namespaces or ()), *(m.namespace for m in memories)])
    return namespaces, tuple(m.memory_id for m in memories), detail


_AUDIT_FILTERS = ("actor", "type", "status", "since", "until", "after", "as_of")


def _audit(log: AccessLog, page: Any, asked: dict[str, Any], backend: Any) -> Description:
    q = asked["query"]
    detail = {"entries": len(page.entries), "limit": q.limit}
    detail.update({k: v for k in _AUDIT_FILTERS if (v := getattr(q, k)) is not None})
    if asked.get("partition") is not None:
        detail["partition"] = asked["partition"]
    namespaces = _unique([q.namespace, *(e.namespace for e in page.entries)])
    return namespaces, (q.memory_id,) if q.memory_id else (), detail


def _follow(log: AccessLog, _: Any, asked: dict[str, Any], backend: Any) -> Description:
    return (), (), {"start": asked["start"]}


def _access_filters(q: AccessQuery) -> dict[str, Any]:
    return {
        k: v
        for k in ("principal", "namespace", "memory_id", "action", "since", "until", "after")
        if (v := getattr(q, k)) is not None
    }


def _access_log(log: AccessLog, page: Any, asked: dict[str, Any], backend: Any) -> Description:
    q = asked["query"]
    return (), (), {"records": len(page.records), "limit": q.limit, **_access_filters(q)}


def _access_export(log: AccessLog, _: Any, asked: dict[str, Any], backend: Any) -> Description:
    return (), (), {"format": asked["format"], **_access_filters(asked["query"])}


_DESCRIBE: dict[str, Callable[[AccessLog, Any, dict[str, Any], Any], Description]] = {
    "get": _get,
    "history": _history,
    "list": _list,
    "search": _search,
    "audit": _audit,
    "follow": _follow,
    "access_log": _access_log,
    "access_log_export": _access_export,
}


# -- the SDKs' methods --------------------------------------------------------------------------------


class AccessLogReads(abc.ABC):
    """``access_log`` and ``export_access_log``, the same on every SDK that has them (the
    embedded store, the HTTP client); each implements the two hooks."""

    def access_log(
        self,
        *,
        principal: str | None = None,
        namespace: str | None = None,
        memory_id: str | None = None,
        action: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> AccessPage:
        """Access records, oldest first (every given filter must match): reads by
        ``principal``, of ``namespace`` or of memory ``memory_id``, of one ``action``
        (``get``, ``history``, ``list``, ``search``, ``audit``, ``follow``...), from
        ``since`` to ``until`` (inclusive; aware datetimes or RFC 3339 text). Pass
        ``page.next_after`` as ``after`` for the next page. Needs auditor access."""
        q = AccessQuery(
            principal=principal, namespace=namespace, memory_id=memory_id, action=action,
            since=since, until=until, after=after, limit=limit,  # type: ignore[arg-type]
        )  # fmt: skip
        return self._access_log(checked_query(q))

    def export_access_log(
        self,
        out: Any,
        *,
        format: str = "jsonl",
        principal: str | None = None,
        namespace: str | None = None,
        memory_id: str | None = None,
        action: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
    ) -> int:
        """Write every access record matching the filters (those of :meth:`access_log`)
        to ``out`` (a path, written whole or not at all, or a text stream such as
        ``sys.stdout``) as JSON Lines (``format="jsonl"``) or CSV (``"csv"``: a header
        row, lists and objects as JSON text); the number of records written."""
        fmt = export_format(format)
        q = checked_query(
            AccessQuery(
                principal=principal, namespace=namespace, memory_id=memory_id, action=action,
                since=since, until=until,  # type: ignore[arg-type]
            )
        )  # fmt: skip
        if not hasattr(out, "write") or isinstance(out, str | os.PathLike):
            path = check.path(out, "out")
            if path.is_dir():
                raise BadRequest(f"out: {path} is a directory; name a file to write", field="out")
        return write_export(self._export_access_log(q, fmt), out, fmt)

    @abc.abstractmethod
    def _access_log(self, q: AccessQuery) -> AccessPage:
        """A page of the log (each SDK: from its service, or over HTTP)."""

    @abc.abstractmethod
    def _export_access_log(self, q: AccessQuery, fmt: str) -> Iterator[str]:
        """The export's text, a chunk at a time."""
