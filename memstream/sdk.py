"""The Python SDK: one method per memory operation, a batch append, and the reads.

``MemoryStore.open(path)`` opens an embedded store (log, keys and projections in one
directory; no broker). Every write returns an :class:`Outcome` (accepted, with the new
version and the offset where the event landed) or raises a typed :class:`Rejected`
subclass carrying the reason. Every read takes ``min_offset``: pass the offset of your
last write to read your own writes. :class:`AsyncMemoryStore` is the same API for asyncio.
"""

from __future__ import annotations

import abc
import asyncio
import functools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import uuid_utils

from memstream.errors import MalformedEvent, UnknownMemory, rejection
from memstream.projections import reads
from memstream.schemas import events as ev
from memstream.schemas.memcube import Outcome
from memstream.schemas.views import AuditPage, Memory, Version
from memstream.streams.embedded import EmbeddedRuntime, Options, ProgressFactory
from memstream.streams.log import ChainBreak

T = TypeVar("T")


def new_id() -> str:
    """A UUIDv7 (time-ordered) as a string: event ids, and memory ids when none is given."""
    return str(uuid_utils.uuid7())


def _context(context: ev.Context | dict[str, Any] | None) -> ev.Context:
    if context is None:
        return ev.Context()
    if isinstance(context, ev.Context):
        return context
    try:
        return msgspec.convert(context, ev.Context)
    except msgspec.ValidationError as e:
        raise MalformedEvent(str(e), field="$.context") from None


class Operations(abc.ABC):
    """The write API, shared by every backend: each method builds one event."""

    actor: str
    registry: ev.Registry

    @abc.abstractmethod
    def append(self, events: Sequence[Any], *, raise_on_reject: bool = False) -> list[Outcome]:
        """Append a batch of events; one outcome per event."""

    @abc.abstractmethod
    def _placement(self, memory_id: str) -> tuple[str, str | None] | None:
        """(namespace, subject) of an existing memory, or None."""

    # -- building events ------------------------------------------------------------------

    def event(
        self,
        type: str,
        namespace: str,
        memory_id: str,
        payload: dict[str, Any] | ev.Payload,
        *,
        actor: str | None = None,
        context: ev.Context | dict[str, Any] | None = None,
        expected_version: int | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        subject: str | None = None,
        occurred_at: datetime | None = None,
        event_id: str | None = None,
    ) -> ev.Event:
        """Build (and type-check) one event; ``append`` validates it fully."""
        etype = self.registry.get(type)
        if etype is None:
            raise MalformedEvent(
                f"unknown event type {type!r}; known types: {', '.join(self.registry.names())}",
                field="$.type",
            )
        if not isinstance(payload, ev.Payload):
            try:
                payload = msgspec.convert(payload, etype.payload)
            except msgspec.ValidationError as e:
                msg = str(e).replace("`$", "`$.payload")
                raise MalformedEvent(msg, field="$.payload") from None
        return ev.Event(
            event_id=event_id or new_id(),
            type=type,
            schema_version=etype.version,
            namespace=namespace,
            memory_id=memory_id,
            occurred_at=occurred_at or datetime.now(UTC),
            actor=actor or self.actor,
            context=_context(context),
            expected_version=expected_version,
            correlation_id=correlation_id,
            causation_id=causation_id,
            subject=subject,
            payload=payload,
        )

    def _submit(self, event: ev.Event) -> Outcome:
        return self.append([event], raise_on_reject=True)[0]

    def _on(
        self, type: str, memory_id: str, payload: dict[str, Any], namespace: str | None, kw: dict
    ) -> Outcome:
        """An operation on an existing memory: namespace and subject default to the memory's."""
        placed = self._placement(memory_id)
        if placed is None and namespace is None:
            raise UnknownMemory(
                {
                    "type": type,
                    "code": "unknown_memory",
                    "memory_id": memory_id,
                    "offset": None,
                    "reason": f"memory {memory_id} does not exist; pass namespace= to record "
                    "the attempt in the audit anyway",
                }
            )
        ns = namespace or placed[0]  # type: ignore[index]
        if placed is not None and kw.get("subject") is None and placed[1] != ns:
            kw["subject"] = placed[1]
        return self._submit(self.event(type, ns, memory_id, payload, **kw))

    # -- one method per operation ---------------------------------------------------------------

    def create(
        self,
        namespace: str,
        text: str,
        *,
        memory_id: str | None = None,
        kind: str = "plaintext",
        tags: Sequence[str] = (),
        metadata: dict[str, Any] | None = None,
        source: str | None = None,
        owner: str | None = None,
        visibility: str = "private",
        priority: int = 0,
        ttl_seconds: int | None = None,
        retention_days: int | None = None,
        vector: Sequence[float] | None = None,
        **kw: Any,
    ) -> Outcome:
        """Create a memory. ``subject=`` names whose data it is (default: the namespace)."""
        payload = dict(
            text=text, kind=kind, tags=list(tags), metadata=metadata or {}, source=source,
            owner=owner, visibility=visibility, priority=priority, ttl_seconds=ttl_seconds,
            retention_days=retention_days, vector=list(vector) if vector is not None else None,
        )  # fmt: skip
        return self._submit(self.event("create", namespace, memory_id or new_id(), payload, **kw))

    def revise(
        self,
        memory_id: str,
        text: str,
        *,
        tags: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
        reason: str | None = None,
        vector: Sequence[float] | None = None,
        namespace: str | None = None,
        **kw: Any,
    ) -> Outcome:
        """A new version of the content; ``expected_version=`` guards against lost updates."""
        payload = dict(
            text=text,
            tags=list(tags) if tags is not None else None,
            metadata=metadata,
            reason=reason,
            vector=list(vector) if vector is not None else None,
        )
        return self._on("revise", memory_id, payload, namespace, kw)

    def merge(
        self,
        namespace: str,
        sources: Sequence[str],
        text: str,
        *,
        memory_id: str | None = None,
        kind: str = "plaintext",
        tags: Sequence[str] = (),
        metadata: dict[str, Any] | None = None,
        reason: str | None = None,
        vector: Sequence[float] | None = None,
        **kw: Any,
    ) -> Outcome:
        """Fuse ``sources`` into a new memory; the sources become ``merged``."""
        payload = dict(
            sources=list(sources), text=text, kind=kind, tags=list(tags),
            metadata=metadata or {}, reason=reason,
            vector=list(vector) if vector is not None else None,
        )  # fmt: skip
        return self._submit(self.event("merge", namespace, memory_id or new_id(), payload, **kw))

    def rollback(
        self, memory_id: str, to_version: int, *, reason: str | None = None,
        namespace: str | None = None, **kw: Any,
    ) -> Outcome:  # fmt: skip
        """Make the content of ``to_version`` current again, as a new version."""
        payload = {"to_version": to_version, "reason": reason}
        return self._on("rollback", memory_id, payload, namespace, kw)

    def activate(self, memory_id: str, *, reason: str | None = None, **kw: Any) -> Outcome:
        """Mark a memory hot (it gets a KV-cache artifact)."""
        return self._on("activate", memory_id, {"reason": reason}, kw.pop("namespace", None), kw)

    def archive(self, memory_id: str, *, reason: str | None = None, **kw: Any) -> Outcome:
        """Move a memory to cold storage (out of default search; restorable)."""
        return self._on("archive", memory_id, {"reason": reason}, kw.pop("namespace", None), kw)

    def restore(self, memory_id: str, *, reason: str | None = None, **kw: Any) -> Outcome:
        """Bring an archived memory back to ``active``."""
        return self._on("restore", memory_id, {"reason": reason}, kw.pop("namespace", None), kw)

    def expire(self, memory_id: str, *, reason: str | None = None, **kw: Any) -> Outcome:
        """Take a memory out of every index (kept for audit)."""
        return self._on("expire", memory_id, {"reason": reason}, kw.pop("namespace", None), kw)

    def freeze(self, memory_id: str, *, reason: str | None = None, **kw: Any) -> Outcome:
        """Legal hold: nothing but ``unfreeze`` changes the memory."""
        return self._on("freeze", memory_id, {"reason": reason}, kw.pop("namespace", None), kw)

    def unfreeze(self, memory_id: str, *, reason: str | None = None, **kw: Any) -> Outcome:
        """Lift a legal hold."""
        return self._on("unfreeze", memory_id, {"reason": reason}, kw.pop("namespace", None), kw)

    def erase(self, memory_id: str, *, reason: str | None = None, **kw: Any) -> Outcome:
        """Crypto-shred the memory's **subject**: its key is destroyed, and every memory
        sealed under it is erased (plaintext gone from the log, for good, and from every
        projection). Give a memory its own ``subject=`` at create to erase it alone. The
        reason stays readable in the audit: keep personal data out of it."""
        return self._on("erase", memory_id, {"reason": reason}, kw.pop("namespace", None), kw)

    def artifact_built(
        self, memory_id: str, *, artifact_id: str, artifact_kind: str, model: str, path: str,
        checksum: str, size_bytes: int = 0, status: str = "ready",
        source_version: int | None = None, detail: str | None = None, **kw: Any,
    ) -> Outcome:  # fmt: skip
        """A builder reports a KV cache or LoRA adapter built for a memory."""
        payload = dict(
            artifact_id=artifact_id, artifact_kind=artifact_kind, model=model, path=path,
            checksum=checksum, size_bytes=size_bytes, status=status,
            source_version=source_version, detail=detail,
        )  # fmt: skip
        return self._on("artifact_built", memory_id, payload, kw.pop("namespace", None), kw)


def _raise_rejections(outcomes: list[Outcome], raise_on_reject: bool) -> list[Outcome]:
    if raise_on_reject:
        for o in outcomes:
            if not o.accepted:
                raise rejection(o)
    return outcomes


class MemoryStore(Operations):
    """An embedded memory store (one directory; no broker). Use as a context manager."""

    def __init__(self, runtime: EmbeddedRuntime, actor: str = "sdk"):
        self.runtime = runtime
        self.actor = actor
        self.registry = runtime.codec.registry

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        actor: str = "sdk",
        registry: ev.Registry | None = None,
        progress: ProgressFactory | None = None,
        **options: Any,
    ) -> MemoryStore:
        """Open (or create) the store in ``path``.

        Options: ``max_event_bytes`` (the oversize limit), ``durability`` (``"fsync"``:
        survives power loss; ``"os"``: survives the process being killed), ``batch_size``
        (projector batch), ``read_wait`` (seconds a read waits for ``min_offset``).
        """
        rt = EmbeddedRuntime(path, registry=registry, options=Options(**options), progress=progress)
        return cls(rt, actor=actor)

    def close(self) -> None:
        self.runtime.close()

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
        for e in events:
            if isinstance(e, ev.Event):
                built.append(e)
            elif isinstance(e, bytes | str):
                raw.append(e.encode() if isinstance(e, str) else e)
            else:
                raw.append(msgspec.json.encode(e))
        codec = self.runtime.codec
        if raw and built:
            raise MalformedEvent("a batch mixes Event objects with dicts/bytes; use one kind")
        if raw:
            body = raw[0] if len(raw) == 1 else b"[" + b",".join(raw) + b"]"
            validated = codec.decode(body)
        else:
            validated = codec.validate(built)
        outcomes = self.runtime.append(validated, validated=True)
        return _raise_rejections(outcomes, raise_on_reject)

    def publish_json(self, data: bytes | str, *, raise_on_reject: bool = False) -> list[Outcome]:
        """Append wire JSON: one event object or an array of them."""
        outcomes = self.runtime.append(self.runtime.codec.decode(data), validated=True)
        return _raise_rejections(outcomes, raise_on_reject)

    def _placement(self, memory_id: str) -> tuple[str, str | None] | None:
        m = self.runtime.state.memories.get(memory_id)
        return (m.namespace, m.subject) if m is not None else None

    # -- reads ---------------------------------------------------------------------------------

    def _as_of(self, as_of: datetime | int | None) -> int | None:
        if as_of is None or isinstance(as_of, int):
            return as_of
        if not isinstance(as_of, datetime):
            raise TypeError(f"as_of must be a datetime or an offset (int), not {type(as_of).__name__}")
        if as_of.tzinfo is None:
            raise ValueError("as_of must carry a timezone, e.g. datetime(..., tzinfo=UTC)")
        return self.runtime.log.offset_at(int(as_of.timestamp() * 1_000_000))

    def get(
        self,
        memory_id: str,
        *,
        version: int | None = None,
        as_of: datetime | int | None = None,
        min_offset: int | None = None,
    ) -> Memory | None:
        """A memory now, at ``version``, or as of a time (``recorded_at``) or an offset."""
        self.runtime.wait_for(min_offset)
        return reads.get_memory(self.runtime.duck, memory_id, version, self._as_of(as_of))

    def history(
        self,
        memory_id: str,
        *,
        include_parents: bool = True,
        as_of: datetime | int | None = None,
        min_offset: int | None = None,
    ) -> list[Version]:
        """The version chain, oldest first, with merge parents' chains."""
        self.runtime.wait_for(min_offset)
        return reads.history(self.runtime.duck, memory_id, include_parents, self._as_of(as_of))

    def audit(
        self,
        *,
        namespace: str | None = None,
        memory_id: str | None = None,
        actor: str | None = None,
        type: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: int | None = None,
        as_of: datetime | int | None = None,
        limit: int = 100,
        min_offset: int | None = None,
    ) -> AuditPage:
        """Audit entries in log order; pass ``page.next_after`` as ``after`` for the next page."""
        self.runtime.wait_for(min_offset)
        return reads.audit(
            self.runtime.duck, namespace=namespace, memory_id=memory_id, actor=actor,
            type=type, status=status, since=since, until=until, after=after,
            as_of_offset=self._as_of(as_of), limit=limit,
        )  # fmt: skip

    def verify(self, progress: Callable[[int], None] | None = None) -> ChainBreak | None:
        """Recompute the log's hash chain; the first record that breaks it, or None."""
        return self.runtime.log.verify(progress)

    def flush(self) -> None:
        """Wait until everything appended is projected."""
        self.runtime.flush()

    @property
    def head(self) -> int:
        return self.runtime.head

    # -- copies ---------------------------------------------------------------------------------

    def backup(self, dest: str | Path) -> Path:
        """A consistent copy of log and keys, safe while the store is written; open the
        copy with ``MemoryStore.open`` to restore (its projections are rebuilt from the log)."""
        return self.runtime.backup(dest)

    def replay(
        self,
        into: str | Path,
        *,
        to: datetime | int | None = None,
        progress: ProgressFactory | None = None,
    ) -> MemoryStore:
        """Rebuild every projection from the log into a fresh, read-only store in ``into``.

        ``to`` (a time or an offset, inclusive) stops the replay there: the new store
        answers ``get``/``history``/``audit`` as this one stood at that point.
        """
        stop = None
        if to is not None:
            stop = self._as_of(to) + 1  # type: ignore[operator]
        self.runtime.backup(into, stop=stop, origin=f"replay to {to}" if to is not None else "replay")
        return MemoryStore.open(into, actor=self.actor, registry=self.registry, progress=progress)


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

    def __getattr__(self, name: str) -> Callable[..., Any]:
        fn = getattr(self.store, name)
        if not callable(fn):
            return fn

        @functools.wraps(fn)
        async def call(*a: Any, **kw: Any) -> Any:
            return await asyncio.to_thread(fn, *a, **kw)

        return call
