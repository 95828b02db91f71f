"""The Python SDK: one method per memory operation, a batch append, and the reads.

``MemoryStore.open(path)`` opens an embedded store (log, keys and projections in one
directory; no broker). Every write returns an :class:`Outcome` (accepted, with the new
version and the offset where the event landed) or raises a typed :class:`Rejected`
subclass carrying the reason. Every read takes ``min_offset``: pass the offset of your
last write to read your own writes. :class:`AsyncMemoryStore` is the same API for asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from memstream import validation
from memstream.errors import BadRequest, MalformedEvent
from memstream.governance.access_log import (
    AccessLog,
    AccessLogReads,
    AccessPage,
    AccessQuery,
    open_access_log,
)
from memstream.governance.methods import EmbeddedGovernance
from memstream.operations import Operations, new_id, raise_rejections
from memstream.projections.processor import Decided
from memstream.projections.search import SearchQuery
from memstream.pubsub.methods import EmbeddedPubSub
from memstream.queries import AuditQuery, ListQuery, Point, Reads
from memstream.schemas import events as ev
from memstream.schemas.codec import surrogate_error
from memstream.schemas.memcube import Outcome
from memstream.schemas.views import AuditPage, Memory, MemoryPage, SearchHit, Version
from memstream.service import Caller, EmbeddedBackend, MemoryService
from memstream.settings import AccessLogSettings
from memstream.settings import semantic_default as _semantic_default
from memstream.streams.embedded import EmbeddedRuntime, LogPrefix, Options, ProgressFactory
from memstream.streams.log import ChainBreak

if TYPE_CHECKING:
    from memstream.client import HttpMemoryStore
    from memstream.governance.retention import RetentionReport, RetentionScheduler
    from memstream.pubsub.hub import SubscriptionHub
    from memstream.service.pubsub import Subscriber

__all__ = ["AsyncMemoryStore", "MemoryStore", "Operations", "new_id"]

T = TypeVar("T")


class _Validated:
    """The events :meth:`Operations.event` validated, until they are appended.

    An entry holds the event itself (so its ``id`` cannot be reused while it is here) and
    its wire JSON at validation time: an event whose lists or dicts were changed in place
    since then no longer matches and is validated again, so nothing unchecked reaches the
    log. Bounded: an event forgotten here is simply validated in full when it is appended.
    """

    LIMIT = 100_000

    def __init__(self) -> None:
        self._events: dict[int, tuple[ev.Event, bytes]] = {}
        self._lock = threading.Lock()
        self._encode = msgspec.json.Encoder().encode

    def add(self, event: ev.Event) -> int:
        """Remember ``event``; returns the size of its wire JSON."""
        entry = (event, self._encode(event))
        with self._lock:
            self._events[id(event)] = entry
            if len(self._events) > self.LIMIT:
                del self._events[next(iter(self._events))]
        return len(entry[1])

    def take(self, event: ev.Event) -> bool:
        """Whether ``event`` is one validated here and unchanged since (then forgotten)."""
        with self._lock:
            entry = self._events.pop(id(event), None)
        return entry is not None and entry[0] is event and self._encode(event) == entry[1]


class MemoryStore(Operations, Reads, EmbeddedGovernance, EmbeddedPubSub, AccessLogReads):
    """An embedded memory store (one directory; no broker). Use as a context manager.

    A facade over :class:`~memstream.service.MemoryService` on the store's
    :class:`~memstream.service.EmbeddedBackend`, calling as :attr:`actor`: the store's
    owner, unchecked; or, opened with ``principal=``, as that principal, every call checked
    against its grants like an HTTP caller's.
    """

    def __init__(
        self,
        runtime: EmbeddedRuntime,
        actor: str = "sdk",
        semantic: Any | None = None,
        usage: Any | None = None,
        views: Any | None = None,
        principal: str | None = None,
        retention: RetentionScheduler | None = None,
        accesses: AccessLog | None = None,
        hub: SubscriptionHub | None = None,
    ):
        self.runtime = runtime
        self.actor = principal or actor
        #: the principal this store acts as, checked (None: the store's owner)
        self.principal = principal
        self.registry = runtime.codec.registry
        self.codec = runtime.codec
        self._validated = _Validated()
        #: The search indexes (a :class:`SemanticProjection`), or None when disabled.
        self.semantic = semantic
        #: The usage indicators (a :class:`UsageTracker`), or None.
        self.usage_tracker = usage
        #: Every operation and read goes through the service (one per store).
        #: The current-memory view (a :class:`MemoryViews`), or None.
        self.views = views
        #: The retention scheduler (a :class:`RetentionScheduler`), or None.
        self.retention_scheduler = retention
        #: The subscriptions this store serves (memstream.pubsub), or None (read-only).
        self.hub = hub
        self.backend = EmbeddedBackend(runtime, semantic, usage, views, retention, hub)
        #: The access log (every read, by whom, of what), or None when it is off.
        self.accesses = accesses
        self.service = MemoryService(self.backend, accesses)
        self._callers: tuple[str, Caller] | None = None
        if retention is not None:
            self._attach(retention)

    def _attach(self, scheduler: RetentionScheduler) -> None:
        """Wire the retention scheduler to this store: it appends through the service as
        ``memstream:scheduler``, checks the decided state before it acts, reads the last
        accesses from the usage indicators, and stops its background passes when the
        store stops taking writes."""
        from memstream.governance.retention import SCHEDULER

        runtime, service, codec = self.runtime, self.service, self.codec
        caller = Caller.local(SCHEDULER)
        usage = self.usage_tracker

        def emit(events: list[ev.Event]) -> list[Outcome]:
            return service.append(caller, codec.validate(events))

        def last_access(ids: Sequence[str]) -> dict[str, Any]:
            return {m: seen for m, (_, seen, _) in usage.get(list(ids)).items()}

        def wait() -> None:
            target = runtime.head if runtime.broken is None else runtime.projected_offset
            runtime.wait_for_processors(target, names=[scheduler.name])

        scheduler.attach(
            emit,
            current=runtime.state.memories.get,
            last_access=last_access if usage is not None else None,
            wait=wait,
            active=lambda: runtime.projector_alive and not runtime.read_only,
        )

    @property
    def caller(self) -> Caller:
        """Who this store calls the service as: its :attr:`actor`, in this process."""
        cached = self._callers
        if cached is None or cached[0] != self.actor:
            caller = (
                Caller.principal_of(self.actor)
                if self.principal is not None
                else Caller.local(self.actor)
            )
            cached = self._callers = (self.actor, caller)
        return cached[1]

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        actor: str = "sdk",
        registry: ev.Registry | None = None,
        progress: ProgressFactory | None = None,
        semantic: bool | None = None,
        embedder: Any | None = None,
        prefix: LogPrefix | None = None,
        read_only: bool = False,
        principal: str | None = None,
        retention: bool | RetentionScheduler | None = None,
        access_log: bool | AccessLogSettings | None = None,
        **options: Any,
    ) -> MemoryStore:
        """Open (or create) the store in ``path``.

        ``principal``: act as this principal (``memstream principal add``), every call
        checked against its grants, every event written with it as actor; default: the
        store's owner (the account that holds its files), unchecked, as ``actor``.

        Options: ``max_event_bytes`` (the oversize limit), ``durability`` (``"fsync"``:
        survives power loss; ``"os"``: survives the process being killed), ``batch_size``
        (projector batch), ``read_wait`` (seconds a read waits for ``min_offset``).

        ``semantic`` keeps the search indexes (vector and keyword) as processors of the
        decided events; default on, unless ``$MEMSTREAM_SEMANTIC=0``. The embedding model
        (``embedder``: any :class:`~memstream.projections.embedding.Embedder`; default
        all-MiniLM-L6-v2) loads only when a text must be embedded; vectors are cached in
        ``<path>/embeddings.sqlite`` and never recomputed by a rebuild or a replay.

        ``prefix`` is for :meth:`replay`: records of the source's log to project while the
        copy of that log is written.

        Opening verifies the log's hash chain from the position verified at the previous
        open to the head, and refuses a broken log with
        :class:`~memstream.errors.LogTampered` naming the first bad offset. ``read_only``
        opens an existing store for inspection: a broken log is warned about (logged)
        instead, and reads, ``audit``, ``verify``, ``backup`` and ``replay`` work on
        what precedes the break; every write raises
        :class:`~memstream.errors.StoreReadOnly`.

        ``retention`` runs the retention scheduler, which appends ``expire`` and ``erase``
        events when memories' TTLs, expiry times and retention policies fall due
        (docs/governance.md): default on, one pass every ``$MEMSTREAM_RETENTION_INTERVAL``
        seconds (60), unless ``$MEMSTREAM_RETENTION=0``; ``False`` leaves it out; a
        :class:`~memstream.governance.retention.RetentionScheduler` runs that one (its own
        namespace policies, clock and interval). A read-only store runs no background pass.

        ``access_log`` keeps the access log in ``<path>/access/`` (every read, by whom, of
        which memories; see docs/governance.md): None follows the settings
        (``$MEMSTREAM_ACCESS_LOG_ENABLED``, on by default, and its retention), True or False
        turns it on or off, an :class:`~memstream.settings.AccessLogSettings` sets it all.
        """
        from memstream.projections.usage import UsageTracker
        from memstream.projections.views import MemoryViews

        usage = UsageTracker()
        views = MemoryViews()
        processors: list[Any] = [views, usage]
        scheduler = _scheduler(retention)
        if scheduler is not None:
            processors.append(scheduler)
        proj = None
        if semantic if semantic is not None else _semantic_default():
            from memstream.projections.models import open_embedder
            from memstream.projections.semantic import SemanticProjection

            root = Path(path)
            root.mkdir(parents=True, exist_ok=True)
            proj = SemanticProjection(
                root / "state" / "semantic", open_embedder(root, embedder), progress=progress
            )
            processors.insert(0, proj)
        hub = None
        state: list[EmbeddedRuntime] = []  # the runtime, once open (the hub's rules)
        if not read_only and prefix is None:
            from memstream.projections.policy import PolicyState
            from memstream.pubsub.cursors import CursorStore
            from memstream.pubsub.hub import SubscriptionHub

            hub = SubscriptionHub(
                CursorStore(Path(path) / "subscriptions" / "cursors.sqlite"),
                lambda: state[0].state.policy if state else PolicyState(),
                embed=proj.cached_vectors if proj is not None else None,
            )
            processors.extend(hub.lanes)
        try:
            rt = EmbeddedRuntime(
                path, registry=registry, options=Options(**options), progress=progress,
                processors=processors, prefix=prefix, read_only=read_only,
            )  # fmt: skip
        except BaseException:
            if proj is not None:
                proj.embedder.cache.close()
            if hub is not None:
                hub.cursors.close()
            raise
        state.append(rt)
        if hub is not None:
            hub.bind(rt.feed, lambda t: rt.log.offset_at(int(t.timestamp() * 1_000_000) - 1))
        if scheduler is not None and not scheduler.policies_given:
            # namespace retention comes from the store's policies (memstream policy set)
            from memstream.governance.retention import policy_retention

            scheduler.use_policies(policy_retention(lambda: rt.state.policy))
        try:  # once the store is this process's (its lock taken): one writer of the file
            accesses = open_access_log(rt.root, access_log)
        except BaseException:
            rt.close()
            raise
        return cls(
            rt, actor=actor, semantic=proj, usage=usage, views=views, principal=principal,
            retention=scheduler, accesses=accesses, hub=hub,
        )  # fmt: skip

    @staticmethod
    def connect(
        url: str, *, actor: str = "sdk", timeout: float = 30.0, token: str | None = None
    ) -> HttpMemoryStore:
        """Connect to a running ``memstream serve`` at ``url``: the same operations and
        return types over HTTP (see :class:`memstream.client.HttpMemoryStore`). ``token``:
        the principal's bearer token (default: ``$MEMSTREAM_TOKEN``)."""
        from memstream.client import HttpMemoryStore  # here: the client imports this module

        return HttpMemoryStore.connect(url, actor=actor, timeout=timeout, token=token)

    def close(self) -> None:
        if self.views is not None:
            self.views.cancel()  # a view still loading is not waited for
        if self.hub is not None:
            self.hub.stop()  # its consumers end (SubscriptionClosed), positions saved
        try:
            self.runtime.close()  # the lanes catch up (a deletion forgets its cursor)
        finally:
            if self.hub is not None:
                self.hub.cursors.close()
            if self.accesses is not None:
                self.accesses.close()  # every read recorded so far is written

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self.runtime.root

    # -- writes -------------------------------------------------------------------------------

    def append(
        self, events: Sequence[ev.Event | dict[str, Any] | bytes], *, raise_on_reject: bool = False
    ) -> list[Outcome]:
        """Append a batch atomically (all events or none); one outcome per event.

        Events may be :class:`Event` objects, wire dicts or JSON bytes. A malformed event
        refuses the whole batch (:class:`MalformedEvent` names its index and field).
        Rejections come back as outcomes, or raise with ``raise_on_reject=True``.
        """
        built: list[ev.Event] = []
        raw: list[bytes] = []
        validation.boolean(raise_on_reject, "raise_on_reject")
        if isinstance(events, str | bytes | dict | ev.Event) or not isinstance(events, Sequence):
            raise MalformedEvent(
                f"events must be a list of events (Event objects, dicts or JSON bytes), not "
                f"{type(events).__name__}"
            )
        if not events:
            raise MalformedEvent("empty batch: append at least one event")
        for i, e in enumerate(events):
            if isinstance(e, ev.Event):
                built.append(e)
            elif isinstance(e, bytes | str):
                try:
                    raw.append(e.encode() if isinstance(e, str) else e)
                except UnicodeEncodeError:
                    raise surrogate_error(e, index=i) from None
            elif isinstance(e, dict):
                try:
                    raw.append(msgspec.json.encode(e))
                except UnicodeEncodeError:
                    raise surrogate_error(e, index=i) from None
                except (TypeError, ValueError, OverflowError) as err:
                    raise MalformedEvent(f"not JSON ({err})", index=i) from None
            else:
                raise MalformedEvent(
                    f"expected an Event, a dict or JSON bytes, not {type(e).__name__}", index=i
                )
        codec = self.runtime.codec
        if raw and built:
            raise MalformedEvent("a batch mixes Event objects with dicts/bytes; use one kind")
        if raw:
            body = raw[0] if len(raw) == 1 else b"[" + b",".join(raw) + b"]"
            validated = codec.decode(body)
        else:
            validated = self._validate(built)
        return raise_rejections(self.service.append(self.caller, validated), raise_on_reject)

    def _built(self, event: ev.Event) -> None:
        size = self._validated.add(event)
        if size > self.codec.max_event_bytes:  # the payload may be: measure it alone
            try:
                self.codec.check_size(len(msgspec.json.encode(event.payload)))
            except MalformedEvent:
                self._validated.take(event)
                raise

    def _validate(self, events: list[ev.Event]) -> list[ev.Event]:
        """Events ready to append: those :meth:`event` built and validated, unchanged since,
        as they are; every other one (built by hand, ``msgspec.structs.replace``, changed in
        place) through the codec's full validation, as from the wire."""
        out = list(events)
        many = len(events) > 1
        for i, e in enumerate(events):
            if self._validated.take(e):
                continue
            try:
                (out[i],) = self.codec.validate([e])
            except MalformedEvent as err:
                if not many:
                    raise
                raise MalformedEvent(err.detail, field=err.field, index=i) from None
        return out

    def publish_json(self, data: bytes | str, *, raise_on_reject: bool = False) -> list[Outcome]:
        """Append wire JSON: one event object or an array of them."""
        validation.boolean(raise_on_reject, "raise_on_reject")
        outcomes = self.service.publish_json(self.caller, data)
        return raise_rejections(outcomes, raise_on_reject)

    def _placement(self, memory_id: str) -> tuple[str, str | None] | None:
        m = self.runtime.state.memories.get(memory_id)
        return (m.namespace, m.subject) if m is not None else None

    # -- reads (their signatures: memstream.queries.Reads) --------------------------------------

    def _get(
        self,
        memory_id: str,
        namespace: str | None,
        version: int | None,
        as_of: Point | None,
        min_offset: int | None,
    ) -> Memory | None:
        return self.service.get(
            self.caller, memory_id, namespace=namespace, version=version, as_of=as_of,
            min_offset=min_offset,
        )  # fmt: skip

    def _history(
        self,
        memory_id: str,
        namespace: str | None,
        include_parents: bool,
        as_of: Point | None,
        min_offset: int | None,
    ) -> list[Version]:
        return self.service.history(
            self.caller, memory_id, namespace=namespace, include_parents=include_parents,
            as_of=as_of, min_offset=min_offset,
        )  # fmt: skip

    def _list(self, q: ListQuery, min_offset: int | None) -> MemoryPage:
        return self.service.list_memories(self.caller, q, min_offset=min_offset)

    def _audit(self, q: AuditQuery, partition: int | None, min_offset: int | None) -> AuditPage:
        return self.service.audit(self.caller, q, partition=partition, min_offset=min_offset)

    def _search(self, q: SearchQuery, min_offset: int | None) -> list[SearchHit]:
        return self.service.search(self.caller, q, min_offset=min_offset)

    def _access_log(self, q: AccessQuery) -> AccessPage:
        return self.service.access_log(self.caller, q)

    def _export_access_log(self, q: AccessQuery, fmt: str) -> Iterator[str]:
        return self.service.export_access_log(self.caller, q, fmt)

    def verify(self, progress: Callable[[int], None] | None = None) -> ChainBreak | None:
        """Recompute the log's hash chain; the first record that breaks it, or None."""
        return self.service.verify(self.caller, progress)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything appended is projected and processed by every processor
        (the search indexes), however long that takes: long work shows its progress
        through the ``progress`` factory the store was opened with, and in the log.
        ``timeout``: raise :class:`~memstream.errors.NotCaughtUp` after that many seconds,
        naming what lags."""
        self.service.flush(self.caller, timeout)

    def checkpoint(self) -> dict[str, Any]:
        """Bring every file of the store in line with the log: the projections and the
        search indexes catch up and persist, and nothing of any memory erased so far is
        left on disk (see docs/erasure.md). An erase triggers the same work by itself
        about a second later (``erase_scrub_delay``), and ``close`` does it too."""
        return self.service.checkpoint(self.caller)

    def follow(
        self, start: int = 0, *, batch: int = 10_000, idle: float | None = None
    ) -> Iterator[list[Decided]]:
        """Follow the log of decided events from offset ``start``: batches of
        ``(logged event, outcome)`` pairs, the history first, then live as the store
        commits (blocking; no polling). Ends when the store closes, or after ``idle``
        seconds with nothing new (see docs/processors.md)."""
        return self.service.follow(self.caller, start, batch=batch, idle=idle)

    @property
    def head(self) -> int:
        return self.service.head(self.caller)

    def run_retention(
        self, now: datetime | str | None = None, *, dry_run: bool = False
    ) -> RetentionReport:
        """One pass of the retention scheduler now (or as if it were ``now``): an
        ``expire`` or ``erase`` for every memory whose TTL, expiry time or retention rule
        is due, appended as ``memstream:scheduler`` (``dry_run``: listed, not appended).
        Returns the report: each memory due, its rule and the outcome of its event (see
        docs/governance.md). Raises :class:`~memstream.errors.Unsupported` for a store
        opened with ``retention=False``."""
        return self.service.run_retention(self.caller, now=now, dry_run=dry_run)

    # -- copies ---------------------------------------------------------------------------------

    def backup(self, dest: str | Path) -> Path:
        """A consistent copy of log and keys, safe while the store is written; open the
        copy with ``MemoryStore.open`` to restore (its projections are rebuilt from the log).

        The store's embedding model choice (``model.json``) goes with it, and, when the
        search indexes are open, the embedding cache, so the restored store searches with
        the same model and embeds nothing again."""
        return Path(self.service.backup(self.caller, dest)["dest"])

    def replay(
        self,
        into: str | Path,
        *,
        to: Point | None = None,
        progress: ProgressFactory | None = None,
    ) -> MemoryStore:
        """Rebuild every projection from the log into a fresh, read-only store in ``into``.

        ``to`` (a time or an offset, inclusive) stops the replay there: the new store
        answers ``get``/``history``/``audit`` as this one stood at that point.

        The log is copied into ``into`` on a thread while the new store projects the same
        records from this store's log, so the projection does not wait for the copy; the new
        store then checks that its copy ends in the very record it projected last.
        """
        self.service.authorize(self.caller, "replay")
        into = validation.path(into, "into")
        to = validation.point(to, "to")
        validation.callback(progress, "progress")
        if into.exists() and not into.is_dir():
            raise BadRequest(f"into: {into} exists and is not a directory", field="into")
        head = self.runtime.head
        stop = head + 1 if to is None else min(max(self.backend.as_of(to) + 1, 0), head + 1)  # type: ignore[operator]
        try:
            prefix = self.runtime.replay_copy(
                into, stop, origin=f"replay to {to}" if to is not None else "replay",
                progress=progress,
            )  # fmt: skip
        except FileExistsError:
            raise
        except OSError as e:
            raise BadRequest(f"cannot write the replay to {into}: {e}", field="into") from None
        try:
            embedder = None
            if self.semantic is not None:
                # The cache is derived data the replay may reuse: it never re-embeds.
                from memstream.projections.models import EMBEDDINGS_FILE

                self.semantic.embedder.cache.backup(Path(into) / EMBEDDINGS_FILE)
                embedder = self.semantic.embedder.embedder
            return MemoryStore.open(
                into, actor=self.actor, registry=self.registry, progress=progress,
                semantic=self.semantic is not None, embedder=embedder, prefix=prefix,
                retention=False,
            )  # fmt: skip
        except BaseException:
            # Never leave the copy writing into ``into``, nor a half-made store there (its
            # error, if it failed, is what the store's opening raised).
            with contextlib.suppress(Exception):
                prefix.copied()
            for p in Path(into).iterdir():
                if p.is_dir():
                    shutil.rmtree(p)
                else:
                    p.unlink()
            raise


def _scheduler(retention: Any) -> RetentionScheduler | None:
    """The retention scheduler ``MemoryStore.open(retention=...)`` asks for, or None."""
    from memstream.governance.retention import RetentionScheduler
    from memstream.settings import RetentionSettings

    if isinstance(retention, RetentionScheduler):
        return retention
    if retention is not None and not isinstance(retention, bool):
        raise BadRequest(
            "retention must be True, False, None (the default: $MEMSTREAM_RETENTION) or a "
            f"RetentionScheduler, not {type(retention).__name__}",
            field="retention",
        )
    settings = RetentionSettings()
    if not (settings.retention if retention is None else retention):
        return None
    return RetentionScheduler(interval=settings.retention_interval)


class AsyncMemoryStore:
    """The SDK for asyncio: every method of :class:`MemoryStore`, awaited in a worker thread
    (the store's I/O is blocking file and database work)."""

    def __init__(self, store: MemoryStore):
        self.store = store

    @classmethod
    async def open(cls, path: str | Path, **kw: Any) -> AsyncMemoryStore:
        return cls(await asyncio.to_thread(MemoryStore.open, path, **kw))

    async def close(self) -> None:
        await asyncio.to_thread(self.store.close)

    async def __aenter__(self) -> AsyncMemoryStore:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def event(self, *a: Any, **kw: Any) -> ev.Event:
        return self.store.event(*a, **kw)

    def follow(
        self, start: int = 0, *, batch: int = 10_000, idle: float | None = None
    ) -> AsyncIterator[list[Decided]]:
        """:meth:`MemoryStore.follow` as an async iterator (the event loop is never
        blocked while it waits)."""
        store = self.store
        return store.service.follow_async(store.caller, start, batch=batch, idle=idle)

    def subscribe(
        self, name: str, *, heartbeat: float = 15.0, last_seen: int | None = None
    ) -> Subscriber:
        """:meth:`MemoryStore.subscribe`, not awaited: the subscriber itself is what
        coroutines use (``async for d in store.subscribe(name)``, ``await
        sub.next_async()``), and its waits never block the event loop."""
        return self.store.subscribe(name, heartbeat=heartbeat, last_seen=last_seen)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        fn = getattr(self.store, name)
        if not callable(fn):
            return fn

        @functools.wraps(fn)
        async def call(*a: Any, **kw: Any) -> Any:
            return await asyncio.to_thread(fn, *a, **kw)

        return call
