"""The memory service: every operation and every read, once, for every face.

The embedded SDK (:class:`memstream.MemoryStore`), ``memstream serve`` and every Kafka
worker's HTTP API call this class, with a :class:`Caller`; it runs them on a
:class:`~memstream.service.backend.Backend` (the embedded runtime, or a worker's shards).
Every entry point passes :meth:`MemoryService.authorize` first: the one place where access
control goes. Every read that succeeds is then recorded in the access log, when one is kept
(:meth:`MemoryService._accessed`; :mod:`memstream.governance.access_log`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec

from memstream import validation as check
from memstream.errors import BadRequest, MalformedEvent, Unsupported
from memstream.governance.access_log import (
    AccessLog,
    AccessPage,
    AccessQuery,
    checked_query,
    export_format,
)
from memstream.operations import Operations, raise_rejections
from memstream.projections.processor import Decided
from memstream.projections.search import SearchQuery
from memstream.queries import LIST_STATES, AuditQuery, ListQuery, Point
from memstream.schemas import events as ev
from memstream.schemas.events import Context, Event
from memstream.schemas.memcube import Outcome
from memstream.schemas.views import AuditPage, Memory, MemoryPage, SearchHit, Version
from memstream.streams.log import ChainBreak

from .backend import Backend
from .caller import Caller

__all__ = ["ACTIONS", "MemoryService"]

#: What a caller may be allowed to do (the ``action`` of :meth:`MemoryService.authorize`).
ACTIONS = (
    "write", "read", "search", "audit", "verify", "status", "checkpoint", "backup", "replay",
)  # fmt: skip
_VECTOR_TYPES = ("create", "revise", "merge")
_NO_CONTEXT = Context()


class MemoryService:
    """Writes (events in, outcomes out) and reads (get, history, audit, search) over one
    backend, each checked by :meth:`authorize`."""

    def __init__(self, backend: Backend, accesses: AccessLog | None = None):
        self.backend = backend
        self.codec = backend.codec
        #: The access log every read that succeeds is recorded in (None: none kept).
        self.accesses = accesses

    # -- access --------------------------------------------------------------------------------

    def authorize(
        self,
        caller: Caller,
        action: str,
        *,
        namespace: str | None = None,
        memory_id: str | None = None,
    ) -> None:
        """Allow ``caller`` to do ``action`` (one of :data:`ACTIONS`) on ``namespace`` /
        ``memory_id`` (None: not about one), or raise.

        Every principal may do everything until governance lands: then the access check and
        the access log go here, and nowhere else (every entry point calls this first).
        """

    # -- writes --------------------------------------------------------------------------------

    def append(self, caller: Caller, events: Sequence[Event]) -> list[Outcome]:
        """Append validated events (all or none); one outcome per event, rejections
        included (a rejected event is appended and audited too)."""
        events = self._stamped(caller, events)
        for e in events:
            self.authorize(caller, "write", namespace=e.namespace, memory_id=e.memory_id)
        self._check_vectors(events)
        return self.backend.append(events)

    def publish_json(self, caller: Caller, data: bytes | str) -> list[Outcome]:
        """Append wire JSON: one event object or an array of them (decoded and validated
        here; a malformed one refuses the batch with :class:`MalformedEvent`)."""
        return self.append(caller, self.codec.decode(data))

    def operations(self, caller: Caller, namespace: str | None = None) -> Operations:
        """The operation methods (``create``, ``revise``, ``archive``, ``erase``, ...) as
        ``caller``: each builds its event here, server-side, and appends it through
        :meth:`append` (so it is stamped and authorized like any other). ``namespace``
        tells a backend that needs it (a Kafka worker) where existing memories live."""
        return _CallerOperations(self, caller, namespace)

    def _stamped(self, caller: Caller, events: Sequence[Event]) -> list[Event]:
        """A remote caller's events, with its principal as actor and its call context where
        an event names none (a local caller's events are written as built)."""
        if not caller.remote:
            return list(events)
        out = []
        for e in events:
            changes: dict[str, Any] = {}
            if caller.identified and e.actor != caller.principal:
                changes["actor"] = caller.principal
            if e.context == _NO_CONTEXT and caller.context != _NO_CONTEXT:
                changes["context"] = caller.context
            out.append(msgspec.structs.replace(e, **changes) if changes else e)
        return out

    def _check_vectors(self, events: Sequence[Event]) -> None:
        """Refuse producer vectors of the wrong dimension before anything is appended."""
        vectors = [
            (i, e, v)
            for i, e in enumerate(events)
            if e.type in _VECTOR_TYPES and (v := getattr(e.payload, "vector", None)) is not None
        ]
        fits = self.backend.vector_dim() if vectors else None
        if fits is None:
            return
        dim, model_id = fits
        for i, e, vector in vectors:
            if len(vector) != dim:
                raise MalformedEvent(
                    f"memory {e.memory_id}: vector has {len(vector)} dimensions, the store's "
                    f"embedding model {model_id!r} has {dim}; send "
                    f"{dim} floats, or no vector to have the text embedded",
                    field="$.payload.vector",
                    index=i if len(events) > 1 else None,
                )

    # -- reads ---------------------------------------------------------------------------------

    def _accessed(self, caller: Caller, action: str, result: Any, **asked: Any) -> None:
        """Record a read that succeeded (``result``, asked with ``asked``) in the access log."""
        if self.accesses is not None:
            self.accesses.read(caller, action, result, asked, self.backend)

    def get(
        self,
        caller: Caller,
        memory_id: str,
        *,
        namespace: str | None = None,
        version: int | None = None,
        as_of: Point | None = None,
        min_offset: int | None = None,
    ) -> Memory | None:
        """A memory now, at ``version``, or as of a time or an offset; None if unknown."""
        memory_id = check.text(memory_id, "memory_id", optional=False)
        namespace = check.text(namespace, "namespace")
        version = check.integer(version, "version", minimum=1)
        as_of = check.point(as_of, "as_of")
        min_offset = check.integer(min_offset, "min_offset")
        self.authorize(caller, "read", namespace=namespace, memory_id=memory_id)
        memory = self.backend.get(
            caller, memory_id, namespace=namespace, version=version, as_of=as_of,
            min_offset=min_offset,
        )  # fmt: skip
        self._accessed(caller, "get", memory, memory_id=memory_id, namespace=namespace,
                       version=version, as_of=as_of)  # fmt: skip
        return memory

    def history(
        self,
        caller: Caller,
        memory_id: str,
        *,
        namespace: str | None = None,
        include_parents: bool = True,
        as_of: Point | None = None,
        min_offset: int | None = None,
    ) -> list[Version]:
        """The version chain, oldest first, with merge parents' chains."""
        memory_id = check.text(memory_id, "memory_id", optional=False)
        namespace = check.text(namespace, "namespace")
        include_parents = check.boolean(include_parents, "include_parents")
        as_of = check.point(as_of, "as_of")
        min_offset = check.integer(min_offset, "min_offset")
        self.authorize(caller, "read", namespace=namespace, memory_id=memory_id)
        chain = self.backend.history(
            caller, memory_id, namespace=namespace, include_parents=include_parents,
            as_of=as_of, min_offset=min_offset,
        )  # fmt: skip
        self._accessed(caller, "history", chain, memory_id=memory_id, namespace=namespace,
                       include_parents=include_parents, as_of=as_of)  # fmt: skip
        return chain

    def list_memories(
        self, caller: Caller, q: ListQuery, *, min_offset: int | None = None
    ) -> MemoryPage:
        """Memories at their current version, in creation order, a page at a time."""
        if not isinstance(q, ListQuery):
            raise BadRequest(f"expected a ListQuery, not {type(q).__name__}")
        states = check.strings(q.states, "states")
        q = dataclasses.replace(
            q,
            namespace=check.text(q.namespace, "namespace"),
            states=tuple(states) if states is not None else LIST_STATES,
            tags=tuple(check.strings(q.tags, "tags") or ()),
            after=check.integer(q.after, "after", minimum=-1),
            limit=check.integer(q.limit, "limit", optional=False, minimum=1, maximum=10_000),
        )
        min_offset = check.integer(min_offset, "min_offset")
        self.authorize(caller, "read", namespace=q.namespace)
        page = self.backend.list_memories(caller, q, min_offset=min_offset)
        self._accessed(caller, "list", page, query=q)
        return page

    def audit(
        self,
        caller: Caller,
        q: AuditQuery,
        *,
        partition: int | None = None,
        min_offset: int | None = None,
    ) -> AuditPage:
        """Audit entries in log order (``partition``: a whole partition's)."""
        q = _audit_query(q)
        partition = check.integer(partition, "partition")
        min_offset = check.integer(min_offset, "min_offset")
        self.authorize(caller, "audit", namespace=q.namespace, memory_id=q.memory_id)
        page = self.backend.audit(caller, q, partition=partition, min_offset=min_offset)
        self._accessed(caller, "audit", page, query=q, partition=partition)
        return page

    def search(
        self,
        caller: Caller,
        q: SearchQuery,
        *,
        min_offset: int | None = None,
        partitions: list[int] | None = None,
    ) -> list[SearchHit]:
        """``q``'s hits, best first (``partitions``: between workers, which to search)."""
        q = _search_query(q)
        min_offset = check.integer(min_offset, "min_offset")
        if partitions is not None:
            if not isinstance(partitions, list | tuple):
                raise BadRequest("partitions must be a list of integers", field="partitions")
            partitions = [
                check.integer(p, f"partitions[{i}]", optional=False)
                for i, p in enumerate(partitions)
            ]
        for namespace in q.namespaces if q.namespaces is not None else [None]:
            self.authorize(caller, "search", namespace=namespace)
        hits = self.backend.search(caller, q, min_offset=min_offset, partitions=partitions)
        self._accessed(caller, "search", hits, query=q)
        return hits

    def access_log(self, caller: Caller, q: AccessQuery) -> AccessPage:
        """A page of the access log (who read what), oldest first: auditor access."""
        q = checked_query(q)
        self.authorize(caller, "audit")
        page = self._access_log_kept().query(q)
        self._accessed(caller, "access_log", page, query=q)
        return page

    def export_access_log(
        self, caller: Caller, q: AccessQuery, format: str = "jsonl"
    ) -> Iterator[str]:
        """The access records matching ``q`` as JSON Lines or CSV text, a page at a time
        (checked and authorized here, before the first is read): auditor access."""
        q, format = checked_query(q), export_format(format)
        self.authorize(caller, "audit")
        chunks = self._access_log_kept().export(q, format)
        self._accessed(caller, "access_log_export", None, query=q, format=format)
        return chunks

    def _access_log_kept(self) -> AccessLog:
        if self.accesses is None:
            raise Unsupported(
                "no access log is kept here (a store opened with access_log=False or "
                "$MEMSTREAM_ACCESS_LOG_ENABLED=0, or a Kafka worker); open the store with the "
                "access log enabled"
            )
        return self.accesses

    # -- the log and the process ----------------------------------------------------------------

    def verify(
        self, caller: Caller, progress: Callable[[int], None] | None = None
    ) -> ChainBreak | None:
        """Recompute the log's hash chain; the first record that breaks it, or None."""
        check.callback(progress, "progress")
        self.authorize(caller, "verify")
        return self.backend.verify(progress)

    def follow(
        self, caller: Caller, start: int = 0, *, batch: int = 10_000, idle: float | None = None
    ) -> Iterator[list[Decided]]:
        """Batches of decided events (event, outcome) from offset ``start`` on: the history,
        then live, woken by each commit; it ends when the store closes, or after ``idle``
        seconds with nothing new. Reading every event is an audit of the whole store."""
        _follow_args(start, batch, idle)
        self.authorize(caller, "audit")
        batches = self.backend.feed().follow(start, batch=batch, idle=idle)
        self._accessed(caller, "follow", None, start=start)
        return batches

    def follow_async(
        self, caller: Caller, start: int = 0, *, batch: int = 10_000, idle: float | None = None
    ) -> AsyncIterator[list[Decided]]:
        """:meth:`follow` for asyncio."""
        _follow_args(start, batch, idle)
        self.authorize(caller, "audit")
        batches = self.backend.feed().follow_async(start, batch=batch, idle=idle)
        self._accessed(caller, "follow", None, start=start)
        return batches

    def flush(self, caller: Caller, timeout: float | None = None) -> None:
        """Wait until everything appended is projected (``timeout``: at most that long)."""
        self.authorize(caller, "status")
        timeout = check.number(timeout, "timeout", minimum=0.0, maximum=1e9)
        self.backend.flush(timeout)

    def checkpoint(self, caller: Caller) -> dict[str, Any]:
        """Bring every file of the store in line with the log now: projections caught up
        and persisted, and nothing of any memory erased so far left on disk."""
        self.authorize(caller, "checkpoint")
        return self.backend.checkpoint()

    def head(self, caller: Caller) -> int:
        """The last offset in the log (-1: empty)."""
        self.authorize(caller, "status")
        return self.backend.head()

    def health(self, caller: Caller) -> dict[str, Any]:
        """The process is up: pid, version, and what it serves."""
        self.authorize(caller, "status")
        return self.backend.health()

    def ready(self, caller: Caller) -> tuple[bool, dict[str, Any]]:
        """Whether reads and writes are served now, with the offsets and lag that say so."""
        self.authorize(caller, "status")
        return self.backend.ready()

    def status(self, caller: Caller, *, cluster: bool = False) -> dict[str, Any]:
        """Offsets and lag per partition served (``cluster``: of every worker)."""
        self.authorize(caller, "status")
        return self.backend.status(caller, cluster)

    def backup(self, caller: Caller, dest: Path) -> dict[str, Any]:
        """A consistent copy of the log and keys in ``dest`` (a new or empty directory)."""
        dest = check.path(dest, "dest")
        self.authorize(caller, "backup")
        return _writing("backup", "dest", dest, lambda: self.backend.backup(dest))

    def replay_copy(self, caller: Caller, into: Path, to: Point | None = None) -> dict[str, Any]:
        """The log up to ``to`` (inclusive) copied into a new read-only store ``into``."""
        into = check.path(into, "into")
        to = check.point(to, "to")
        self.authorize(caller, "replay")
        return _writing("replay", "into", into, lambda: self.backend.replay_copy(into, to))


class _CallerOperations(Operations):
    """:class:`Operations` bound to a service and a caller (see
    :meth:`MemoryService.operations`)."""

    def __init__(self, service: MemoryService, caller: Caller, namespace: str | None):
        self.service, self.caller, self.namespace = service, caller, namespace
        self.actor = caller.principal
        self.codec = service.codec
        self.registry: ev.Registry = service.codec.registry

    def append(self, events: Sequence[Any], *, raise_on_reject: bool = False) -> list[Outcome]:
        """Append events built by :meth:`event` (validated there); wire input goes through
        :meth:`MemoryService.publish_json`."""
        outcomes = self.service.append(self.caller, events)
        return raise_rejections(outcomes, raise_on_reject)

    def _built(self, event: Event) -> None:
        self.codec.check_size(len(msgspec.json.encode(event.payload)))

    def _placement(self, memory_id: str) -> tuple[str, str | None] | None:
        placement = getattr(self.service.backend, "placement", None)
        if placement is not None:
            return placement(memory_id)
        m = self.service.get(self.caller, memory_id, namespace=self.namespace)
        return (m.namespace, m.subject) if m is not None else None


def _writing(what: str, field: str, path: Path, copy: Callable[[], Any]) -> Any:
    """``copy()``; a path that cannot be written (not a directory, no permission) is a
    :class:`BadRequest` naming the field; a non-empty one stays a FileExistsError."""
    try:
        return copy()
    except FileExistsError:
        raise
    except OSError as e:
        raise BadRequest(f"cannot write the {what} to {path}: {e}", field=field) from None


def _follow_args(start: Any, batch: Any, idle: Any) -> None:
    if isinstance(start, int) and not isinstance(start, bool) and start < 0:
        raise BadRequest(f"start must be an offset >= 0, not {start}", field="start")
    check.integer(start, "start", optional=False)
    check.integer(batch, "batch", optional=False, minimum=1, maximum=1_000_000)
    check.number(idle, "idle", minimum=0.0, maximum=1e9)


def _audit_query(q: AuditQuery) -> AuditQuery:
    """``q`` with every filter checked (a time given as RFC 3339 text parsed)."""
    if not isinstance(q, AuditQuery):
        raise BadRequest(f"expected an AuditQuery, not {type(q).__name__}")
    return dataclasses.replace(
        q,
        namespace=check.text(q.namespace, "namespace"),
        memory_id=check.text(q.memory_id, "memory_id"),
        actor=check.text(q.actor, "actor"),
        type=check.text(q.type, "type"),
        status=check.text(q.status, "status"),
        since=check.time(q.since, "since"),
        until=check.time(q.until, "until"),
        after=check.integer(q.after, "after", minimum=-1),
        as_of=check.point(q.as_of, "as_of"),
        limit=check.integer(q.limit, "limit", optional=False, minimum=1, maximum=10_000),
    )


def _search_query(q: SearchQuery) -> SearchQuery:
    """``q`` with every parameter checked (times given as RFC 3339 text parsed)."""
    if not isinstance(q, SearchQuery):
        raise BadRequest(f"expected a SearchQuery, not {type(q).__name__}")
    if q.query is None and q.vector is None:
        raise BadRequest("search needs query= (text) or vector= (a query vector)", "query")
    return dataclasses.replace(
        q,
        query=check.text(q.query, "query"),
        vector=check.vector(q.vector, "vector"),
        namespaces=check.strings(q.namespaces, "namespaces"),
        k=check.integer(q.k, "k", optional=False, minimum=1, maximum=1000),
        tags_any=check.strings(q.tags_any, "tags_any"),
        tags_all=check.strings(q.tags_all, "tags_all"),
        states=check.strings(q.states, "states"),
        kinds=check.strings(q.kinds, "kinds"),
        created_after=check.time(q.created_after, "created_after"),
        created_before=check.time(q.created_before, "created_before"),
        updated_after=check.time(q.updated_after, "updated_after"),
        updated_before=check.time(q.updated_before, "updated_before"),
        metadata=check.mapping(q.metadata, "metadata"),
        include_archived=check.boolean(q.include_archived, "include_archived"),
        as_of=check.point(q.as_of, "as_of"),
        exact=check.boolean(q.exact, "exact"),
        alpha=check.number(q.alpha, "alpha", minimum=0.0, maximum=1.0),  # None: the default
    )
