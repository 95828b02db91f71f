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

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout
from memstream.projections.core import CoreBatch, project
from memstream.projections.decide import DecisionState, decide
from memstream.projections.decided import read_outcomes
from memstream.projections.duck import DuckStore, Prepared, Rewritten
from memstream.projections.policy import PolicyState
from memstream.projections.processor import Decided, Processor
from memstream.schemas.codec import EventCodec, MalformedEvent
from memstream.schemas.events import Event, Registry, default_registry
from memstream.schemas.memcube import Logged, Outcome
from memstream.schemas.record import LogRecord

from ..feed import DecidedFeed
from ..keystore import KeyStore
from ..log import GENESIS, ChainBreak, ChainCheck, EmbeddedLog, chain_hash, mismatch
from ..processors import build as build_registered
from ..runner import ProcessorRunner
from ..sealing import RecordCorrupt, Sealer
from ..settings import StoreSettings as Options
from . import copies
from .catchup import catch_up
from .copies import LogPrefix
from .layout import (
    CORE_FILE,
    KEYS_FILE,
    LOCK_FILE,
    LOG_FILE,
    MANIFEST,
    STATE_DIR,
    STORE_FORMAT,
    LogTampered,
    StoreLocked,
    StoreReadOnly,
    locked_message,
    read_manifest,
    write_manifest,
)

ProgressFactory = Callable[[str, int], Callable[[int], None]]

log = logging.getLogger("memstream.embedded")


#: What a wait that runs out suggests, unless the caller knows better.
WAIT_FIX = (
    "retry, or wait longer (read_wait, $MEMSTREAM_READ_WAIT; a model that is loading gets "
    "load_wait more, $MEMSTREAM_LOAD_WAIT)"
)


class NotCaughtUp(TimeoutError):
    """A read asked for ``min_offset`` (``wanted``) that the projection, or a processor
    (the search indexes), did not reach in time.

    ``lagging`` names what lags (``the projection``, ``the search indexes (vector and
    keyword)``, ``processor NAME``); ``reached`` is the last offset it reflects (``-1``:
    none yet); ``started`` is False when it has not even started (it is opening: loading
    its embedding model, or rebuilding from the projection), ``doing`` says what it is
    busy with, ``fix`` what to do. The message says all of it."""

    def __init__(
        self,
        wanted: int,
        reached: int,
        waited: float,
        *,
        lagging: str = "the projection",
        started: bool = True,
        doing: str | None = None,
        fix: str = WAIT_FIX,
        message: str | None = None,
    ):
        self.wanted, self.waited, self.lagging = wanted, waited, lagging
        self.started = started and reached >= -1
        self.reached = max(reached, -1)
        self.doing = doing
        if message is None:
            if self.started:
                lag = f"lag {wanted - self.reached}" + (f"; {doing}" if doing else "")
                state = (
                    f"it reached offset {self.reached} ({lag})"
                    if self.reached >= 0
                    else f"it has reflected no event yet ({lag})"
                )
            else:
                state = f"it has not started yet: {doing or 'opening (loading its model)'}"
            goal = f"reach offset {wanted}" if wanted >= 0 else "start"
            message = f"{lagging} did not {goal} within {waited:.1f} s: {state}; {fix}"
        super().__init__(message)


def _title(processor: Processor) -> str:
    """What a message calls a processor: its ``title`` and name, or ``processor NAME``."""
    title = getattr(processor, "title", None)
    return f"{title} (processor {processor.name!r})" if title else f"processor {processor.name!r}"


def _busy(processor: Processor) -> str | None:
    """What the processor says keeps it from catching up (its model loading), or None."""
    busy = getattr(processor, "busy", None)
    return busy() if busy is not None else None


class _Waiting:
    """The progress of one long wait: after :data:`SHOW_AFTER` seconds, what it waits for
    goes to the store's progress factory (a bar per label, a spinner for a model that is
    loading) and to the log."""

    #: seconds a wait stays silent
    SHOW_AFTER = 2.0
    #: seconds between two log lines about the same wait
    LOG_EVERY = 10.0

    def __init__(self, progress: ProgressFactory | None, timeout: float | None):
        self.progress = progress
        self.started = time.monotonic()
        self.timeout = timeout
        self.refills = 0
        self._bars: dict[str, tuple[Callable[[int], None], int]] = {}
        self._logged: dict[str, float] = {}

    def seconds(self) -> float:
        return time.monotonic() - self.started

    def slice(self, deadline: float | None) -> float:
        """The next slice of a wait that ends at ``deadline`` (None: never)."""
        step = 1.0 if self.seconds() >= self.SHOW_AFTER else self.SHOW_AFTER
        return step if deadline is None else max(0.0, min(step, deadline - time.monotonic()))

    def expired(self, deadline: float | None) -> bool:
        return deadline is not None and time.monotonic() >= deadline

    def _log(self, key: str, level: int, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._logged.get(key, -self.LOG_EVERY) >= self.LOG_EVERY:
            self._logged[key] = now
            log.log(level, message, *args)

    def show(self, label: str, left: int) -> None:
        """``left`` items remain of ``label`` (a bar from the first call on)."""
        if self.seconds() < self.SHOW_AFTER:
            return
        self._log(label, logging.INFO, "waiting: %s, %d events left", label, left)
        if self.progress is None:
            return
        bar = self._bars.get(label)
        if bar is None:
            self._bars[label] = (self.progress(label, left), left)
        else:
            tick, before = bar
            if left < before:
                tick(before - left)
                self._bars[label] = (tick, left)

    def note(self, who: str, doing: str, log_level: int = logging.INFO) -> None:
        """The wait for ``who`` is held up by ``doing`` (``loading the embedding model NAME
        (12 s so far)``): logged every few seconds, and a spinner (progress with no
        total)."""
        if self.seconds() < self.SHOW_AFTER:
            return
        self._log("note", log_level, "waiting for %s: %s", who, doing)
        if self.progress is not None:
            label = doing.split(" (", 1)[0]
            if label not in self._bars:
                self._bars[label] = (self.progress(label, 0), 0)


class ProjectorFailed(RuntimeError):
    """The projector stopped on an error; the store must be reopened (it resumes)."""


#: Where a store keeps the last position of its log verified at an open (beside the
#: projection, in its ``store_meta``: tampering must change two files to go unnoticed, and
#: a rebuilt projection, which reads the whole log anyway, verifies all of it again).
VERIFIED_OFFSET, VERIFIED_HASH = "verified_offset", "verified_hash"


@dataclass(frozen=True)
class OpenCheck:
    """What opening the store verified of its log: ``records`` records from offset
    ``start`` (the one after the position verified at the previous open), in ``seconds``,
    besides the checkpointed record itself; ``broken``: the first bad record, if any."""

    start: int
    records: int
    seconds: float
    broken: ChainBreak | None


class EmbeddedRuntime:
    """Log, key store, decision state and projector of one store directory."""

    def __init__(
        self,
        root: str | Path,
        *,
        registry: Registry | None = None,
        options: Options | None = None,
        progress: ProgressFactory | None = None,
        processors: list[Processor] | None = None,
        prefix: LogPrefix | None = None,
        read_only: bool = False,
    ):
        """``processors``: what follows the decided events besides the core projection
        (the search indexes, ...), each on a lane of :class:`ProcessorRunner`.
        ``prefix``: project these records of another log first (a replay; see
        :class:`LogPrefix`).

        Opening verifies the log's hash chain from the position verified at the previous
        open to the head (see :meth:`_verify_on_open`) and raises :class:`LogTampered`
        at the first bad record. ``read_only`` opens an existing store for inspection:
        a broken log is then only warned about (nothing past the break is projected),
        every append is refused, and the verified position is left as it was."""
        self.root = Path(root)
        #: what long waits (a flush, a read waiting for a model to load) report progress to
        self._progress = progress
        self._processors = list(processors or ())
        self.options = options or Options()
        self.inspecting = read_only
        if read_only and not (self.root / MANIFEST).exists():
            raise FileNotFoundError(
                f"no memstream store at {self.root}; read_only opens an existing store"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.root / LOCK_FILE))
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise StoreLocked(locked_message(self.root)) from None
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
            write_manifest(self.root, manifest)
        if manifest.get("format", 1) > STORE_FORMAT:
            raise RuntimeError(
                f"store {self.root} has format {manifest['format']}; this memstream reads "
                f"format {STORE_FORMAT}: upgrade memstream"
            )
        self.read_only = self.inspecting or bool(manifest.get("read_only"))
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
        self.state.policy = PolicyState.fold(self.duck.governance_rows())
        self._append_lock = threading.Lock()
        self._cond = threading.Condition()
        self._projected = self.duck.offset()
        self._failure: BaseException | None = None
        self._closed = False
        #: The first bad record of the log, when the store was opened read-only despite it.
        self.broken: ChainBreak | None = None
        started = time.perf_counter()
        if prefix is not None:
            # A replay: every record it projects from the source's log is verified on the
            # way; the copy then ends in the very record verified last (``check_copy``).
            check = ChainCheck()
            self._catch_up(progress, prefix.log, prefix.stop, check)
            brk = check.finish(prefix.stop)
            if brk is not None:
                raise LogTampered(
                    prefix.log.path.parent, brk.offset, brk.reason, "nothing was replayed"
                )
            prefix.copied()
            self.log = self._open_log()
            copies.check_copy(self.root, self.log, prefix)
        else:
            check = self._verify_on_open(progress)
        self._catch_up(progress, self.log, self.log.next_offset, check)
        brk = check.finish(self.log.next_offset)
        self.open_check = OpenCheck(check.start, check.records, time.perf_counter() - started, brk)
        if brk is not None:
            if not self.inspecting:
                raise LogTampered(self.root, brk.offset, brk.reason)
            self.broken = brk
            log.warning(
                "store %s opened read-only for inspection: its log's hash chain breaks at "
                "offset %d: %s; the projection was not advanced past it, and writes are "
                "refused. Inspect it with `memstream audit verify --store %s`",
                self.root, brk.offset, brk.reason, self.root,
            )  # fmt: skip
        elif check.offset >= 0 and not self.inspecting:
            self.duck.stamp(
                log_id, **{VERIFIED_OFFSET: str(check.offset), VERIFIED_HASH: check.prev.hex()}
            )
        # An erase a crash (or an older version) left unscrubbed: its bytes go before
        # anything is served.
        self._scrub_due: float | None = None
        self.scrub()
        self._queue: queue.Queue[list[tuple[Logged, Outcome]] | None] = queue.Queue()
        #: Decided events as the core commits them, for every reader from any offset.
        self.feed = DecidedFeed(self._read_decided, self._projected)
        # the driver's own processors, then those installed packages register
        self._processors += build_registered(self.root / STATE_DIR / "processors")
        self.runner = ProcessorRunner(
            self.feed, self.duck, self._processors, interval=self.options.follow_interval
        )
        self._thread = threading.Thread(target=self._run, name="memstream-projector", daemon=True)
        self._thread.start()
        self.runner.start()

    def _open_log(self) -> EmbeddedLog:
        return EmbeddedLog(self.root / LOG_FILE, durability=self.options.durability)

    # -- integrity on open -----------------------------------------------------------------------

    def _verify_on_open(self, progress: ProgressFactory | None) -> ChainCheck:
        """Verify what the log holds beyond the position verified at the previous open.

        That position (offset ``c`` and its chain hash, kept beside the projection) is
        checked first: record ``c`` must still have that hash, and match it from its bytes
        and record ``c - 1``'s hash. The records the projection already holds beyond ``c``
        (appended since that open) are verified here, and their last one's hash must be
        the one the projection stored when it projected it (a record rewritten with the
        chain recomputed after it is caught so, and named). The records not projected yet
        are verified as the catch-up reads them (the returned check, positioned at the
        projection's offset): nothing past a break is projected. Records before ``c`` are
        not read: ``audit verify`` is for them.
        """
        head, projected = self.log.next_offset - 1, self._projected
        meta = self.duck.meta()
        c = int(meta.get(VERIFIED_OFFSET, -1))
        h = bytes.fromhex(meta.get(VERIFIED_HASH, ""))
        if c > projected or len(h) != len(GENESIS):
            c = -1  # not a position this projection vouches for: verify all it holds
        check = ChainCheck(c, h if c >= 0 else GENESIS)
        known = max(c, projected)
        if head < known:
            check.broken = ChainBreak(
                head + 1,
                f"the log ends at offset {head}, but the store held records up to offset "
                f"{known}: records {head + 1}..{known} are missing (the log was cut, or "
                "replaced by an older copy)",
            )
            return check
        if c >= 0:
            check.broken = self._check_checkpoint(c, h)
        if check.broken is None and projected > c:
            tick = progress("verifying the log", projected - c) if progress else None
            for _ in check.follow(self.log.read(c + 1, projected + 1, batch=10_000), tick):
                pass
            if check.finish(projected + 1) is None:
                check.broken = self._compare_projected(projected, check.prev)
        return check

    def _check_checkpoint(self, c: int, h: bytes) -> ChainBreak | None:
        rec = self.log.record_at(c)
        if rec is None:
            return ChainBreak(
                c, f"record {c}, verified when the store was opened before, is missing"
            )
        before = self.log.record_at(c - 1) if c > 0 else None
        if c > 0 and before is None:
            return ChainBreak(c - 1, f"record {c - 1} is missing (deleted)")
        if rec.chain_hash != h:
            return self._rewritten(c)
        prev = before.chain_hash if before is not None else GENESIS
        if chain_hash(prev, c, rec.recorded_at, rec.data) != h:
            return ChainBreak(c, mismatch(c))
        return None

    def _compare_projected(self, offset: int, log_hash: bytes) -> ChainBreak | None:
        """None if the projection's chain hash of record ``offset`` is ``log_hash``."""
        rows = self.duck.query('SELECT chain_hash FROM audit WHERE "offset" = ?', [offset])
        stored = rows[0]["chain_hash"] if rows else None
        return None if stored in (None, log_hash.hex()) else self._rewritten(offset)

    def _rewritten(self, upto: int) -> ChainBreak:
        """The first record up to ``upto`` whose chain hash is not the one the projection
        stored when it projected it (read only on this error's path)."""
        first = upto
        for batch in self.log.read(0, upto + 1, batch=10_000):
            rows = self.duck.query(
                'SELECT "offset", chain_hash FROM audit WHERE "offset" BETWEEN ? AND ?',
                [batch[0].offset, batch[-1].offset],
            )
            stored = {r["offset"]: r["chain_hash"] for r in rows if r["chain_hash"]}
            bad = [
                r.offset for r in batch if stored.get(r.offset) not in (None, r.chain_hash.hex())
            ]
            if bad:
                first = bad[0]
                break
        return ChainBreak(
            first,
            f"record {first}'s chain hash is not the one the store verified and projected "
            "(the hash was changed, or the record or an earlier one was rewritten and the "
            "chain recomputed)",
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
        self.runner.close()
        if self._failure is None:
            try:
                self.scrub()
            except Exception:  # the next open scrubs what is still pending
                log.exception("rewriting the projection after an erase failed")
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
        if self.inspecting:
            raise StoreReadOnly(
                f"store {self.root} was opened read-only (for inspection); reopen it without "
                "read_only to write"
            )
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
                self.feed.announce(pairs)
        for i in duplicates:
            outcomes[i] = self._duplicate_outcome(placed[i].offset)
        return outcomes  # type: ignore[return-value]

    def _decide(self, logged: Logged) -> Outcome:
        out = decide(self.state, logged)
        self.state.commit(logged, out)
        if out.destroy_key is not None:
            self.sealer.forget(self.keys.shred(out.destroy_key))
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
            due = self._scrub_due
            try:
                item = self._queue.get(
                    timeout=None if due is None else max(0.0, due - time.monotonic())
                )
            except queue.Empty:  # the erasures of the last moments are due: rewrite
                try:
                    self.scrub()
                except BaseException:
                    log.exception("rewriting the projection after an erase failed")
                    self._scrub_due = time.monotonic() + max(self.options.erase_scrub_delay, 5)
                continue
            if item is None:
                return
            batch = CoreBatch()
            project(item, batch)
            pairs = list(item)
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
                pairs.extend(more)
            try:
                if self._failure is None:
                    self._write(batch)
                    self.feed.publish(pairs)
                    if batch.erased_memories and self._scrub_due is None:
                        self._scrub_due = time.monotonic() + self.options.erase_scrub_delay
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
            self.feed.publish(fresh)

    def _catch_up(
        self, progress: ProgressFactory | None, log: EmbeddedLog, end: int, check: ChainCheck
    ) -> None:
        """Decide and project the records of ``log`` up to ``end`` (exclusive) that the
        projection does not hold yet, verifying their chain on the way (``check``, which
        stops the catch-up before the first bad record)."""

        def read(start: int, stop: int, batch: int):
            return check.follow(log.read(start, stop, batch=batch))

        catch_up(
            read, self._projected + 1, end, self.options.batch_size,
            lambda batches: self._decided(batches, log), self._write, progress,
        )  # fmt: skip

    def logged_at(self, offset: int) -> Logged | None:
        """The event at ``offset``, opened (its payload None if its key was destroyed)."""
        record = self.log.record_at(offset)
        return self._logged(record) if record is not None else None

    def _logged(self, r: LogRecord, log: EmbeddedLog | None = None) -> Logged:
        try:
            ev, stored = self.sealer.open(r.data)
        except (RecordCorrupt, MalformedEvent) as e:
            raise RecordCorrupt(self._unreadable(r.offset, e, log or self.log)) from None
        kid = stored.sealed.kid if stored.sealed is not None else None
        return Logged(r.offset, r.recorded_at, r.chain_hash, ev, kid, stored.content_hash)

    @staticmethod
    def _unreadable(offset: int, e: Exception, log: EmbeddedLog) -> str:
        root = log.path.parent
        try:
            event = f" (event {log.event_id_at(offset)})"
        except Exception:  # the message matters more than the id
            event = ""
        return (
            f"store {root}: the record at offset {offset}{event} cannot be opened ({e}); "
            f"run `memstream audit verify --store {root}` to check the log"
        )

    def _decided(self, batches: Iterable[list[LogRecord]], log: EmbeddedLog):
        for recs in batches:
            self.sealer.preload([r.data for r in recs])
            pairs = []
            for r in recs:
                one = self._logged(r, log)
                pairs.append((one, self._decide(one)))
            yield pairs

    def _read_decided(self, after: int, upto: int) -> list[Decided]:
        """The decided events ``after < offset <= upto`` from storage: the log's records,
        opened, with the outcomes the core projection stored (``upto`` is committed)."""
        outcomes = read_outcomes(self.duck, after, upto)
        records = [r for batch in self.log.read(after + 1, upto + 1) for r in batch]
        if len(records) != len(outcomes):
            raise RuntimeError(
                f"store {self.root}: the log holds {len(records)} records in offsets "
                f"{after + 1}..{upto}, the projection {len(outcomes)} outcomes; rebuild it "
                "(memstream replay)"
            )
        self.sealer.preload([r.data for r in records])
        return [(self._logged(r), o) for r, o in zip(records, outcomes, strict=True)]

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
        if self.broken is not None:
            raise LogTampered(
                self.root, self.broken.offset, self.broken.reason,
                f"it was opened read-only, and its projection ends at offset {self._projected}",
            )  # fmt: skip
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

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything appended so far is projected, and processed by every
        processor: until done, however long that takes (``timeout``: raise
        :class:`NotCaughtUp` after that many seconds). Long work shows its progress through
        the store's progress factory (and the log): events left to project, the
        processors' lag, an embedding model that is loading."""
        end = self.head if self.broken is None else self._projected
        deadline = None if timeout is None else time.monotonic() + timeout
        waited = _Waiting(self._progress, timeout)
        fix = "retry, or call flush() without a timeout: it waits until done"
        while True:  # the core projection, then the processors, in slices (for progress)
            try:
                self.wait_for(end, timeout=waited.slice(deadline))
                break
            except NotCaughtUp:
                if waited.expired(deadline):
                    raise NotCaughtUp(end, self._projected, timeout or 0.0, fix=fix) from None
                waited.show("projecting events", end - self._projected)
        while True:
            try:
                self.runner.wait_for(
                    end, waited.slice(deadline), lambda reached: NotCaughtUp(end, reached, 0)
                )
                return
            except NotCaughtUp:
                if waited.expired(deadline):
                    raise self._processors_behind(end, timeout or 0.0, None, fix) from None
                for lane in self.runner.lanes:
                    busy = getattr(lane.processor, "busy", None)
                    doing = busy() if busy is not None else None
                    if doing:
                        waited.note(_title(lane.processor), doing)
                    behind = end - max(lane.checkpoint, -1)
                    if behind > 0:
                        waited.show(f"{_title(lane.processor)}: catching up", behind)

    # -- erasure: nothing left on disk -------------------------------------------------------

    def scrub(self) -> Rewritten | None:
        """Rewrite the core projection's file if an erase happened since its last rewrite
        (see :meth:`DuckStore.rewrite`); what the rewrite did, or ``None``."""
        self._scrub_due = None
        done = self.duck.scrub()
        if done is not None:
            log.info(
                "rewrote %s after an erase (%d bytes; copy %.2f s, swap %.3f s)",
                self.duck.path, done.bytes, done.copy_seconds, done.swap_seconds,
            )  # fmt: skip
        return done

    def checkpoint(self, timeout: float | None = None) -> int:
        """Bring every file of the store in line with the log up to now: the core projection
        and every processor catch up, each processor persists what it would persist later
        (indexes saved, erased memories purged from them), and the core projection's file
        is rewritten if an erase is pending. After it returns, nothing of what an erase
        before the call erased is left in any file of the store. Returns the offset it
        covers."""
        head = self.head if self.broken is None else self._projected
        wait = max(self.options.read_wait, 600.0) if timeout is None else timeout
        self.wait_for(head, timeout=wait)
        self.runner.flush(wait, lambda reached: NotCaughtUp(head, reached, wait))
        self.scrub()
        return head

    # -- processors -----------------------------------------------------------------------------

    def wait_for_processors(
        self,
        min_offset: int | None,
        timeout: float | None = None,
        names: Sequence[str] | None = None,
    ) -> None:
        """Block until every processor (or those ``names``: a search waits for the search
        indexes only) reflects ``min_offset`` (or, for ``None``, has started); raise the
        failure of one of them that stopped.

        The wait is bounded by ``timeout`` (default ``read_wait``), plus up to ``load_wait``
        while one of them is loading its embedding model (a cold start on a busy machine):
        that wait is logged, and shown through the store's progress factory, naming the
        model and the seconds it has taken. Running out raises :class:`NotCaughtUp`
        naming the processor that lags, the offset it reached (or that it has not started
        yet, and why) and the fix."""
        self.wait_for(min_offset, timeout)
        wanted = -1 if min_offset is None else min_offset
        wait = self.options.read_wait if timeout is None else timeout
        lanes = [
            lane for lane in self.runner.lanes if names is None or lane.processor.name in names
        ]
        waited = _Waiting(self._progress, wait)
        load_deadline: float | None = None

        def extend() -> float:
            """Seconds more to wait once ``wait`` has run out: while a model loads (up to
            ``load_wait``), then ``read_wait`` afresh for the work it held up."""
            nonlocal load_deadline
            held = next(
                ((lane, d) for lane in lanes if (d := _busy(lane.processor)) is not None), None
            )
            now = time.monotonic()
            if held is not None:
                if load_deadline is None:
                    load_deadline = now + self.options.load_wait
                left = load_deadline - now
                if left > 0:
                    waited.note(_title(held[0].processor), held[1], log_level=logging.WARNING)
                    return min(left, 1.0)
                return 0.0
            if load_deadline is not None and waited.refills < 1:
                waited.refills += 1
                return wait
            return 0.0

        self.runner.wait_for(
            wanted, wait, lambda _: self._processors_behind(wanted, waited.seconds(), names),
            names, extend=extend,
        )  # fmt: skip

    def _processors_behind(
        self, wanted: int, waited: float, names: Sequence[str] | None, fix: str = WAIT_FIX
    ) -> NotCaughtUp:
        """The timeout of a wait for processors: the one that lags most, by name."""
        lanes = [
            lane for lane in self.runner.lanes if names is None or lane.processor.name in names
        ]
        if not lanes:
            return NotCaughtUp(wanted, self.runner.checkpoint, waited, lagging="the processors")
        lane = min(lanes, key=lambda lane: lane.checkpoint)
        return NotCaughtUp(
            wanted, lane.checkpoint, waited, lagging=_title(lane.processor),
            started=lane.checkpoint >= -1, doing=_busy(lane.processor), fix=fix,
        )  # fmt: skip

    # -- copies -------------------------------------------------------------------------------

    # -- copies -------------------------------------------------------------------------------

    def backup(self, dest: str | Path, stop: int | None = None, origin: str = "backup") -> Path:
        """A consistent copy of the log and the key store into a new directory (see
        :func:`~memstream.streams.embedded.copies.backup`)."""
        return copies.backup(self.root, self.log, self.keys, dest, stop, origin)

    def replay_copy(
        self, dest: str | Path, stop: int, origin: str, progress: ProgressFactory | None = None
    ) -> LogPrefix:
        """Start copying the log's first ``stop`` records into a new directory, for a replay
        that projects from this log meanwhile (see
        :func:`~memstream.streams.embedded.copies.replay_copy`)."""
        return copies.replay_copy(self.root, self.log, self.keys, dest, stop, origin, progress)
