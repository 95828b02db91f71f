"""The embedded driver: a durable local log plus an in-process processor. No broker.

Write path (one call of :meth:`EmbeddedRuntime.append`): validate every event (malformed
input is refused whole, nothing appended) → seal payloads under their subjects' keys →
append the batch to the log in one durable transaction → decide each record in log order
against the in-memory decision state → hand the (event, outcome) pairs to the projector
thread → return the outcomes. Deciding after the durable append means a crash can only
leave records *not yet decided*, never decisions without records; on restart the runtime
decides them again from the projection's committed offset, reaching the same verdicts.

The projector thread writes batches of pairs to DuckDB, each batch in one transaction with
its offset. Reads take ``min_offset`` and wait (bounded) until the projection holds it, so
a writer reads its own writes.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from filelock import FileLock, Timeout
from memstream.projections.core import CoreBatch, project
from memstream.projections.decide import DecisionState, decide
from memstream.projections.duck import DuckStore, Prepared, prepare
from memstream.schemas.codec import EventCodec
from memstream.schemas.events import Event, Registry, default_registry
from memstream.schemas.memcube import Logged, Outcome
from memstream.schemas.record import LogRecord

from .keystore import KeyStore
from .log import EmbeddedLog
from .sealing import Sealer
from .settings import StoreSettings as Options

STORE_FORMAT = 1
LOG_FILE = "log.sqlite"
KEYS_FILE = "keys.sqlite"
STATE_DIR = "state"
CORE_FILE = "core.duckdb"
MANIFEST = "store.json"
LOCK_FILE = ".lock"
SERVER_FILE = "server.json"
#: Records decided and projected at a time while catching up (see ``_catch_up``).
CATCH_UP_SLICE = 500
#: Records between two young-generation collections while catching up (see ``_catch_up``).
CATCH_UP_COLLECT = 250_000
#: DuckDB's row group. An insert of at least this many rows is written straight to the
#: database file; a smaller one goes to the WAL first and is written again by a checkpoint.
DUCKDB_ROW_GROUP = 122_880


def catch_up_batch(pending: int, batch_size: int) -> int:
    """Records per transaction when catching up on ``pending`` records.

    Live batches are small (``batch_size``: an append waits for its batch), and so are the
    batches of a short catch-up, whose first batch nothing overlaps (100,000 events: 4.1 s
    in batches of 10,000, 4.5 s in batches of 25,000, 5.2 s as one). A long catch-up (a
    replay, a rebuild, from four row groups on) writes a row group per transaction
    instead: each batch then updates ``memories`` with one scan of a table that has grown
    large, and its rows skip the WAL. Measured on 1,000,000 events: 72-90 s in batches of
    10,000, 58 s in batches of 65,536, 52 s in batches of 131,072 (COMMITs, with their WAL
    writes and checkpoints, fell from 21-25 s to 3 s; the updates from 13-16 s to 2 s).
    """
    return DUCKDB_ROW_GROUP if pending >= 4 * DUCKDB_ROW_GROUP else batch_size


ProgressFactory = Callable[[str, int], Callable[[int], None]]

log = logging.getLogger("memstream.embedded")


class StoreLocked(RuntimeError):
    """Another process holds the store (DuckDB allows one writer)."""


class StoreReadOnly(RuntimeError):
    """The store is a replay or a backup being inspected: it takes no appends."""


class NotCaughtUp(TimeoutError):
    """A read asked for ``min_offset`` that the projection did not reach in time."""

    def __init__(self, wanted: int, reached: int, waited: float):
        self.wanted, self.reached = wanted, reached
        super().__init__(
            f"the projection reached offset {reached}, not {wanted}, within {waited:.1f}s "
            f"(lag {wanted - reached}); retry, or raise the wait"
        )


class ProjectorFailed(RuntimeError):
    """The projector stopped on an error; the store must be reopened (it resumes)."""


# -- followers (derived projections fed by the core one; they never decide) -----------------


class Follower(Protocol):
    """A projection that follows the core DuckDB projection (e.g. the search indexes).

    ``sync(duck, upto)`` makes it reflect the core projection up to offset ``upto``;
    it is called from one follower thread whenever the core advances, and at least every
    ``Options.follow_interval`` seconds (for time-based saves). ``close()`` saves.
    """

    name: str
    checkpoint: int

    def sync(self, duck: DuckStore, upto: int) -> None: ...

    def close(self) -> None: ...


class FollowerFailed(RuntimeError):
    """A follower (e.g. the search indexes) stopped on an error; reopen the store."""


@dataclass(frozen=True)
class LogPrefix:
    """The first ``stop`` records of ``log``, which the store being opened will also hold
    once ``copied()`` returns: a replay projects from its source's log while a copy of that
    log is still being written into the new store (see :meth:`EmbeddedRuntime.replay_copy`).

    ``copied()`` waits for the copy and raises its error. The store then opens its own log,
    checks that its record ``stop - 1`` is the source's (the same bytes and chain hash), and
    catches up on whatever follows.
    """

    log: EmbeddedLog
    stop: int
    copied: Callable[[], None]


def read_manifest(root: Path) -> dict:
    p = root / MANIFEST
    return json.loads(p.read_text()) if p.exists() else {}


def _write_manifest(root: Path, data: dict) -> None:
    tmp = root / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, root / MANIFEST)


class EmbeddedRuntime:
    """Log, key store, decision state and projector of one store directory."""

    def __init__(
        self,
        root: str | Path,
        *,
        registry: Registry | None = None,
        options: Options | None = None,
        progress: ProgressFactory | None = None,
        followers: list[Follower] | None = None,
        prefix: LogPrefix | None = None,
    ):
        """``prefix``: project these records of another log first (a replay; see
        :class:`LogPrefix`)."""
        self.root = Path(root)
        self._followers = list(followers or ())
        self.options = options or Options()
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.root / LOCK_FILE))
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise StoreLocked(_locked_message(self.root)) from None
        try:
            self._open(registry or default_registry(), progress, prefix)
        except BaseException:
            for part in ("duck", "log", "keys"):  # whatever was opened before the error
                f = getattr(self, part, None)
                if f is not None:
                    with suppress(Exception):  # the original error is what matters
                        f.close()
            self._lock.release()
            raise

    def _open(
        self, registry: Registry, progress: ProgressFactory | None, prefix: LogPrefix | None
    ) -> None:
        manifest = read_manifest(self.root)
        if not manifest:
            manifest = {"format": STORE_FORMAT, "created_at": time.time(), "read_only": False}
            _write_manifest(self.root, manifest)
        if manifest.get("format", 1) > STORE_FORMAT:
            raise RuntimeError(
                f"store {self.root} has format {manifest['format']}; this memstream reads "
                f"format {STORE_FORMAT}: upgrade memstream"
            )
        self.read_only = bool(manifest.get("read_only"))
        self.manifest = manifest
        self.codec = EventCodec(registry, self.options.max_event_bytes)
        if prefix is None:
            self.log = self._open_log()
            log_id = self.log.log_id
        else:
            log_id = prefix.log.log_id  # a copy keeps its source's identity
        self.keys = KeyStore(self.root / KEYS_FILE)
        self.sealer = Sealer(self.keys, self.codec)
        (self.root / STATE_DIR).mkdir(exist_ok=True)
        core = self.root / STATE_DIR / CORE_FILE
        self.duck = DuckStore(core)
        ok, why = self.duck.stamp_matches(log_id)
        if not ok:
            self.duck.close()
            for p in core.parent.glob(CORE_FILE + "*"):
                p.unlink()
            self.rebuild_reason = why
            self.duck = DuckStore(core)
        else:
            self.rebuild_reason = None
        self.duck.stamp(log_id)
        self.state = DecisionState()
        self.state.load(*self.duck.load_states())
        self._append_lock = threading.Lock()
        self._cond = threading.Condition()
        self._projected = self.duck.offset()
        self._failure: BaseException | None = None
        self._closed = False
        if prefix is not None:
            self._catch_up(progress, prefix.log, prefix.stop)
            prefix.copied()
            self.log = self._open_log()
            self._check_copy(prefix)
        self._catch_up(progress, self.log, self.log.next_offset)
        self._queue: queue.Queue[list[tuple[Logged, Outcome]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="memstream-projector", daemon=True)
        self._thread.start()
        self._start_followers()

    def _open_log(self) -> EmbeddedLog:
        return EmbeddedLog(self.root / LOG_FILE, durability=self.options.durability)

    def _check_copy(self, prefix: LogPrefix) -> None:
        """The copied log must hold the records that were projected from the source: same
        identity, at least ``stop`` records, and the same record at ``stop - 1`` (bytes,
        time and chain hash, which the log computed over every record before it)."""
        mine, theirs = self.log, prefix.log
        if mine.log_id != theirs.log_id or mine.next_offset < prefix.stop:
            raise RuntimeError(
                f"the copy of log {theirs.log_id} in {self.root} holds {mine.next_offset} "
                f"records of log {mine.log_id}; {prefix.stop} were projected from the source"
            )
        if prefix.stop > 0:
            at = prefix.stop - 1
            (a,) = next(mine.read(at, at + 1))
            (b,) = next(theirs.read(at, at + 1))
            if a != b:
                raise RuntimeError(
                    f"the copy of log {theirs.log_id} in {self.root} differs from its source "
                    f"at or before record {at}"
                )

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Drain the projector, then close every file. Nothing acknowledged is lost: the log
        already holds it, and whatever was not projected is projected on the next open."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()
        self._stop_followers()
        self.duck.close()
        self.log.close()
        self.keys.close()
        self._lock.release()

    def __enter__(self) -> EmbeddedRuntime:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the write path ------------------------------------------------------------------------

    def append(self, events: list[Event], validated: bool = False) -> list[Outcome]:
        """Append a batch atomically and return one outcome per event, in order."""
        if self.read_only:
            raise StoreReadOnly(
                f"store {self.root} is read-only ({self.manifest.get('origin', 'a replay')})"
            )
        self._check()
        if not validated:
            events = self.codec.validate(events)
        sealed = self.sealer.seal_all(events)
        duplicates: list[int] = []
        with self._append_lock:
            placed = self.log.append(
                [(e.id_bytes, e.namespace, s[0]) for e, s in zip(events, sealed, strict=True)]
            )
            outcomes: list[Outcome | None] = []
            pairs = []
            for i, (ev, (_, kid, chash), a) in enumerate(zip(events, sealed, placed, strict=True)):
                if a.duplicate:
                    duplicates.append(i)
                    outcomes.append(None)
                    continue
                logged = Logged(a.offset, a.recorded_at, a.chain_hash, ev, kid, chash)
                out = self._decide(logged)
                pairs.append((logged, out))
                outcomes.append(out)
            if pairs:
                self._queue.put(pairs)
        for i in duplicates:
            outcomes[i] = self._duplicate_outcome(placed[i].offset)
        return outcomes  # type: ignore[return-value]

    def _decide(self, logged: Logged) -> Outcome:
        out = decide(self.state, logged)
        self.state.commit(logged, out)
        if out.destroy_key is not None:
            subject, kid = out.destroy_key
            self.sealer.forget(self.keys.destroy(subject, up_to_kid=kid))
        return out

    def _duplicate_outcome(self, offset: int) -> Outcome:
        self.wait_for(offset)
        rows = self.duck.query(
            'SELECT "offset", epoch_us(recorded_at) AS recorded_at, event_id, type, namespace, '
            "memory_id, status, code, reason, version, revision, state FROM audit "
            'WHERE "offset" = ?',
            [offset],
        )
        return Outcome(**rows[0], duplicate=True)

    # -- the projector -------------------------------------------------------------------------

    def _run(self) -> None:
        limit = self.options.batch_size
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = CoreBatch()
            project(item, batch)
            stop = False
            while len(batch) < limit:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                project(more, batch)
            try:
                if self._failure is None:
                    self._write(batch)
            except BaseException as e:  # the projector stops; reads report it
                with self._cond:
                    self._failure = e
                    self._cond.notify_all()
            if stop:
                return

    def _write(self, batch: CoreBatch | Prepared) -> None:
        self.duck.write(batch)
        with self._cond:
            self._projected = batch.last_offset
            self._cond.notify_all()

    def apply(self, pairs: list[tuple[Logged, Outcome]]) -> None:
        """Project decided pairs, skipping what the store already holds (offset dedupe).

        A duplicate delivery of records the projection already holds changes nothing.
        """
        fresh = [p for p in pairs if p[0].offset > self._projected]
        if fresh:
            self._write(project(fresh))

    def _catch_up(self, progress: ProgressFactory | None, log: EmbeddedLog, end: int) -> None:
        """Decide and project the records of ``log`` up to ``end`` (exclusive) that the
        projection does not hold yet."""
        start = self._projected + 1
        total = end - start
        if total <= 0:
            return
        tick = progress("projecting", total) if progress else None
        limit = catch_up_batch(total, self.options.batch_size)
        # Records are decided and turned into rows a slice at a time, and the rows are
        # written every ``limit`` records (``catch_up_batch``). The events of a slice are
        # garbage before the next one is read, so the collector never promotes a whole
        # batch of them to its oldest generation.
        #
        # A writer thread writes batch n to DuckDB while this thread reads, opens and
        # decides batch n + 1: DuckDB releases the interpreter lock while it executes, so
        # the two overlap on two cores. This thread also turns each batch into its Arrow
        # tables (``prepare``), so that the writer holds the lock only between statements
        # (see ``Prepared``). Batches are written in order, each in its own transaction
        # with its offset, exactly as without the thread; the first error stops both.
        #
        # The collector's automatic passes are paused meanwhile (see ``_collector_paused``):
        # every object of a batch lives until the batch is written, so each automatic pass
        # would scan it again, and this path makes no reference cycles for them to find.
        # In case an upcaster or a library does, a young-generation pass runs every
        # ``CATCH_UP_COLLECT`` records (it scans the objects of the batches in flight).
        writer = _BatchWriter(self._write)
        with _collector_paused():
            try:
                batch = CoreBatch()
                uncollected = 0
                slices = log.read(start, end, batch=min(limit, CATCH_UP_SLICE))
                for pairs in self._decided(slices):
                    project(pairs, batch)
                    uncollected += len(pairs)
                    if len(batch) >= limit:
                        writer.put(prepare(batch))
                        batch = CoreBatch()
                        if uncollected >= CATCH_UP_COLLECT:
                            gc.collect(1)
                            uncollected = 0
                    if tick:
                        tick(len(pairs))
                if len(batch):
                    writer.put(prepare(batch))
            except BaseException:
                writer.stop()
                raise
            writer.close()

    def _decided(self, batches: Iterable[list[LogRecord]]):
        open_ = self.sealer.open
        for recs in batches:
            pairs = []
            for r in recs:
                ev, stored = open_(r.data)
                kid = stored.sealed.kid if stored.sealed is not None else None
                logged = Logged(r.offset, r.recorded_at, r.chain_hash, ev, kid, stored.content_hash)
                pairs.append((logged, self._decide(logged)))
            yield pairs

    # -- reads ----------------------------------------------------------------------------------

    def _check(self) -> None:
        if self._failure is not None:
            raise ProjectorFailed(
                f"the projector stopped: {self._failure!r}; reopen the store to resume"
            ) from self._failure
        if self._closed:
            raise RuntimeError("the store is closed")

    @property
    def projector_native_id(self) -> int | None:
        """The projector thread's id in the OS (to account its CPU time apart)."""
        return self._thread.native_id

    @property
    def projected_offset(self) -> int:
        return self._projected

    @property
    def projector_alive(self) -> bool:
        """Whether the store is open and its projector runs (not stopped on an error);
        a readiness probe reports it without raising."""
        return not self._closed and self._failure is None and self._thread.is_alive()

    @property
    def head(self) -> int:
        """The last offset in the log (``-1``: empty)."""
        return self.log.next_offset - 1

    def wait_for(self, min_offset: int | None, timeout: float | None = None) -> None:
        """Block until the projection holds ``min_offset`` (bounded by ``timeout``)."""
        self._check()
        if min_offset is None or self._projected >= min_offset:
            return
        if min_offset > self.head:
            raise ValueError(
                f"min_offset {min_offset} is beyond the end of the log (last offset {self.head})"
            )
        wait = self.options.read_wait if timeout is None else timeout
        deadline = time.monotonic() + wait
        with self._cond:
            while self._projected < min_offset and self._failure is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NotCaughtUp(min_offset, self._projected, wait)
                self._cond.wait(left)
        self._check()

    def flush(self) -> None:
        """Wait until everything appended so far is projected."""
        self.wait_for(self.head, timeout=max(self.options.read_wait, 600.0))
        if self._followers:
            self.wait_for_follower(self.head, timeout=max(self.options.read_wait, 600.0))

    # -- followers ------------------------------------------------------------------------------

    def _start_followers(self) -> None:
        self._followed = -2  # -2: not synced once yet (indexes still loading)
        self._follower_failure: BaseException | None = None
        self._following = bool(self._followers)
        if self._followers:
            self._follower_thread = threading.Thread(
                target=self._follow, name="memstream-follower", daemon=True
            )
            self._follower_thread.start()

    def _follow(self) -> None:
        """Call every follower's ``sync`` when the core advances (or the interval passes);
        after ``close`` one last sync, then stop. An error stops following (reads raise)."""
        while True:
            with self._cond:
                if self._following and self._followed >= self._projected:
                    self._cond.wait(self.options.follow_interval)
                stop, upto = not self._following, self._projected
            try:
                for f in self._followers:
                    f.sync(self.duck, upto)
            except BaseException as e:
                log.exception("follower %s stopped", getattr(f, "name", f))
                with self._cond:
                    self._follower_failure = e
                    self._cond.notify_all()
                return
            with self._cond:
                self._followed = upto
                self._cond.notify_all()
            if stop:
                return

    def _stop_followers(self) -> None:
        if not self._followers:
            return
        with self._cond:
            self._following = False
            self._cond.notify_all()
        self._follower_thread.join()
        for f in self._followers:
            f.close()

    @property
    def followed_offset(self) -> int:
        """The core offset every follower reflects (``-2`` before their first sync)."""
        return self._followed

    def wait_for_follower(self, min_offset: int | None, timeout: float | None = None) -> None:
        """Block until the followers reflect ``min_offset`` (or, for ``None``, have loaded)."""
        self.wait_for(min_offset, timeout)
        if not self._followers:
            return
        wanted = -1 if min_offset is None else min_offset
        wait = self.options.read_wait if timeout is None else timeout
        deadline = time.monotonic() + wait
        with self._cond:
            while self._followed < wanted and self._follower_failure is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NotCaughtUp(wanted, self._followed, wait)
                self._cond.wait(left)
        if self._follower_failure is not None:
            raise FollowerFailed(
                f"the search indexes stopped: {self._follower_failure!r}; reopen the store "
                "to resume (they catch up from their checkpoint, or rebuild)"
            ) from self._follower_failure

    # -- copies -------------------------------------------------------------------------------

    def backup(self, dest: str | Path, stop: int | None = None, origin: str = "backup") -> Path:
        """A consistent copy of the log and the key store into a new directory.

        The log is copied first, the keys after: every key a copied record needs is in the
        copy, unless an erase destroyed it in between, which is what the erase asked for.
        """
        dest = _empty_dir(dest)
        records = self.log.backup(dest / LOG_FILE, stop=stop)
        self.keys.backup(dest / KEYS_FILE)
        self._write_copy_manifest(dest, origin, records)
        return dest

    def replay_copy(
        self, dest: str | Path, stop: int, origin: str, progress: ProgressFactory | None = None
    ) -> LogPrefix:
        """Start copying the log's first ``stop`` records into a new directory, on a thread
        of its own; the store opened there with the returned prefix projects them from this
        log meanwhile (``EmbeddedRuntime(dest, prefix=...)``).

        The keys are copied first, before the thread starts: each record before ``stop``
        was sealed under a key committed before the record was appended, so the copy holds
        every key the copied records need (unless an erase destroyed it since, which is
        what the erase asked for). The copy of a 1,000,000-record log takes about 9 s; the
        projection, which would otherwise wait for it, needs a minute.
        """
        if not 0 <= stop <= self.log.next_offset:
            raise ValueError(f"stop must be within 0..{self.log.next_offset}, not {stop}")
        dest = _empty_dir(dest)
        self.keys.backup(dest / KEYS_FILE)
        self._write_copy_manifest(dest, origin, stop)
        tick = progress("copying the log", stop) if progress else None
        errors: list[BaseException] = []

        def copy() -> None:
            try:
                self.log.backup(dest / LOG_FILE, stop=stop)
            except BaseException as e:  # raised to the caller by ``copied``
                errors.append(e)
            else:
                if tick:
                    tick(stop)

        thread = threading.Thread(target=copy, name="memstream-copy", daemon=True)
        thread.start()

        def copied() -> None:
            thread.join()
            if errors:
                raise errors[0]

        return LogPrefix(self.log, stop, copied)

    def _write_copy_manifest(self, dest: Path, origin: str, records: int) -> None:
        _write_manifest(
            dest,
            {
                "format": STORE_FORMAT,
                "created_at": time.time(),
                "read_only": origin != "backup",
                "origin": origin,
                "source": str(self.root),
                "log_id": self.log.log_id,
                "records": records,
            },
        )


def _empty_dir(dest: str | Path) -> Path:
    """``dest``, created if need be; refused unless it is empty (a copy never mixes)."""
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} exists and is not empty; choose a new directory")
    dest.mkdir(parents=True, exist_ok=True)
    return dest


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the garbage collector's automatic passes (process-wide) for a bulk job.

    Reference counting still frees everything that is not part of a cycle; the caller runs
    ``gc.collect(1)`` at intervals for the rest. Nested and concurrent pauses (two stores
    catching up at once) are counted: the collector comes back, if it was on, when the
    last one ends.
    """
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


class _BatchWriter:
    """Writes batches on a thread of its own, in the order they are put, while the caller
    prepares the next ones (at most ``depth`` wait). An error in a write is raised to the
    caller by its next ``put`` or by ``close``; no later batch is written after it."""

    def __init__(self, write: Callable[[Prepared], None], depth: int = 1):
        self._write = write
        self._queue: queue.Queue[Prepared | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="memstream-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            if self._error is None:
                try:
                    self._write(batch)
                except BaseException as e:  # raised in the caller's thread
                    self._error = e

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, batch: Prepared) -> None:
        self._raise()
        self._queue.put(batch)

    def stop(self) -> None:
        """Wait for the batches already put, without raising (the caller is failing)."""
        self._queue.put(None)
        self._thread.join()

    def close(self) -> None:
        """Wait for every batch put; raise the first write error."""
        self.stop()
        self._raise()


def _locked_message(root: Path) -> str:
    info = root / SERVER_FILE
    if info.exists():
        try:
            s = json.loads(info.read_text())
            return (
                f"store {root} is held by a memstream server (pid {s.get('pid')}) at "
                f"{s.get('url')}; send requests there (the CLI does so by itself) or stop it"
            )
        except (OSError, ValueError):
            pass
    return f"store {root} is open in another process; close it first (DuckDB allows one writer)"


def remove_store(root: str | Path) -> None:
    """Delete a store directory (used by replay's scratch stores and tests)."""
    shutil.rmtree(root)
