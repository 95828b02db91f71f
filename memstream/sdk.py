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
import contextlib
import functools
import shutil
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import uuid_utils

from memstream.errors import MalformedEvent, UnknownMemory, rejection
from memstream.projections import reads
from memstream.schemas import events as ev
from memstream.schemas.codec import EventCodec, error_path
from memstream.schemas.memcube import Outcome
from memstream.schemas.views import AuditPage, Memory, SearchHit, Version
from memstream.settings import semantic_default as _semantic_default
from memstream.streams.embedded import EmbeddedRuntime, LogPrefix, Options, ProgressFactory
from memstream.streams.log import ChainBreak

if TYPE_CHECKING:
    from memstream.client import HttpMemoryStore

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
    codec: EventCodec

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
        """Build and validate one event: a malformed one raises :class:`MalformedEvent`
        naming the field, here rather than at ``append``.

        The envelope and the payload are checked against the same constraints as wire
        input. An event built here and handed to ``append`` unchanged is not validated a
        second time (see :meth:`MemoryStore.append`).
        """
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
                raise MalformedEvent(msg, field=error_path(e, "$.payload") or "$.payload") from None
        else:
            payload = self.codec.check_payload(etype, payload)
        envelope = self.codec.check_envelope(
            {
                "event_id": event_id or new_id(),
                "type": type,
                "schema_version": etype.version,
                "namespace": namespace,
                "memory_id": memory_id,
                "occurred_at": occurred_at or datetime.now(UTC),
                "actor": actor or self.actor,
                "context": _context(context),
                "expected_version": expected_version,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
                "subject": subject,
            }
        )
        event = ev.Event(
            event_id=envelope.event_id,
            type=type,
            schema_version=etype.version,
            namespace=envelope.namespace,
            memory_id=envelope.memory_id,
            occurred_at=envelope.occurred_at,
            actor=envelope.actor,
            context=envelope.context,
            expected_version=envelope.expected_version,
            correlation_id=envelope.correlation_id,
            causation_id=envelope.causation_id,
            subject=envelope.subject,
            payload=payload,
        )
        self._built(event)
        return event

    def _built(self, event: ev.Event) -> None:  # noqa: B027  (a hook; most backends ignore it)
        """Called with every event :meth:`event` built and validated."""

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


_VECTOR_TYPES = ("create", "revise", "merge")


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


class MemoryStore(Operations):
    """An embedded memory store (one directory; no broker). Use as a context manager."""

    def __init__(
        self,
        runtime: EmbeddedRuntime,
        actor: str = "sdk",
        semantic: Any | None = None,
        usage: Any | None = None,
    ):
        self.runtime = runtime
        self.actor = actor
        self.registry = runtime.codec.registry
        self.codec = runtime.codec
        self._validated = _Validated()
        #: The search indexes (a :class:`SemanticProjection`), or None when disabled.
        self.semantic = semantic
        #: The usage indicators (a :class:`UsageTracker`), or None.
        self.usage_tracker = usage

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
        **options: Any,
    ) -> MemoryStore:
        """Open (or create) the store in ``path``.

        Options: ``max_event_bytes`` (the oversize limit), ``durability`` (``"fsync"``:
        survives power loss; ``"os"``: survives the process being killed), ``batch_size``
        (projector batch), ``read_wait`` (seconds a read waits for ``min_offset``).

        ``semantic`` keeps the search indexes (vector and keyword) as followers of the
        core projection; default on, unless ``$MEMSTREAM_SEMANTIC=0``. The embedding model
        (``embedder``: any :class:`~memstream.projections.embedding.Embedder`; default
        all-MiniLM-L6-v2) loads only when a text must be embedded; vectors are cached in
        ``<path>/embeddings.sqlite`` and never recomputed by a rebuild or a replay.

        ``prefix`` is for :meth:`replay`: records of the source's log to project while the
        copy of that log is written.
        """
        from memstream.projections.usage import UsageTracker

        usage = UsageTracker()
        processors: list[Any] = [usage]
        proj = None
        if semantic if semantic is not None else _semantic_default():
            from memstream.projections.semantic import SemanticProjection, open_embedder

            root = Path(path)
            root.mkdir(parents=True, exist_ok=True)
            proj = SemanticProjection(
                root / "state" / "semantic", open_embedder(root, embedder), progress=progress
            )
            processors.insert(0, proj)
        try:
            rt = EmbeddedRuntime(
                path, registry=registry, options=Options(**options), progress=progress,
                processors=processors, prefix=prefix,
            )  # fmt: skip
        except BaseException:
            if proj is not None:
                proj.embedder.cache.close()
            raise
        return cls(rt, actor=actor, semantic=proj, usage=usage)

    @staticmethod
    def connect(url: str, *, actor: str = "sdk", timeout: float = 30.0) -> HttpMemoryStore:
        """Connect to a running ``memstream serve`` at ``url``: the same operations and
        return types over HTTP (see :class:`memstream.client.HttpMemoryStore`)."""
        from memstream.client import HttpMemoryStore  # here: the client imports this module

        return HttpMemoryStore.connect(url, actor=actor, timeout=timeout)

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
            validated = self._validate(built)
        self._check_vectors(validated)
        outcomes = self.runtime.append(validated, validated=True)
        return _raise_rejections(outcomes, raise_on_reject)

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
        events = self.runtime.codec.decode(data)
        self._check_vectors(events)
        outcomes = self.runtime.append(events, validated=True)
        return _raise_rejections(outcomes, raise_on_reject)

    def _check_vectors(self, events: Sequence[ev.Event]) -> None:
        """Refuse producer vectors of the wrong dimension before anything is appended."""
        if self.semantic is None:
            return
        dim = self.semantic.embedder.dim
        for i, e in enumerate(events):
            vector = getattr(e.payload, "vector", None) if e.type in _VECTOR_TYPES else None
            if vector is not None and len(vector) != dim:
                raise MalformedEvent(
                    f"memory {e.memory_id}: vector has {len(vector)} dimensions, the store's "
                    f"embedding model {self.semantic.embedder.model_id!r} has {dim}; send "
                    f"{dim} floats, or no vector to have the text embedded",
                    field="$.payload.vector",
                    index=i if len(events) > 1 else None,
                )

    def _placement(self, memory_id: str) -> tuple[str, str | None] | None:
        m = self.runtime.state.memories.get(memory_id)
        return (m.namespace, m.subject) if m is not None else None

    # -- reads ---------------------------------------------------------------------------------

    def _as_of(self, as_of: datetime | int | None) -> int | None:
        if as_of is None or isinstance(as_of, int):
            return as_of
        if not isinstance(as_of, datetime):
            raise TypeError(
                f"as_of must be a datetime or an offset (int), not {type(as_of).__name__}"
            )
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
        m = reads.get_memory(self.runtime.duck, memory_id, version, self._as_of(as_of))
        if m is not None and self.usage_tracker is not None:
            self.usage_tracker.record([memory_id])
        return m

    def search(
        self,
        query: str | None = None,
        *,
        vector: Sequence[float] | None = None,
        namespaces: str | Sequence[str] | None = None,
        k: int = 10,
        tags_any: Sequence[str] | None = None,
        tags_all: Sequence[str] | None = None,
        states: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        metadata: dict[str, Any] | None = None,
        include_archived: bool = False,
        as_of: datetime | int | None = None,
        exact: bool = False,
        alpha: float | None = None,
        min_offset: int | None = None,
    ) -> list[SearchHit]:
        """Memories matching ``query`` (text) or ``vector``, best first, with their scores.

        Semantic (vector) and keyword (BM25) rankings are fused by weighted reciprocal
        rank: ``alpha`` is the semantic weight (1 = semantic only, 0 = keyword only;
        default :data:`~memstream.projections.search.DEFAULT_ALPHA`). Filters narrow the
        candidates exactly (no recall lost): ``namespaces``, ``tags_any``/``tags_all``,
        ``states`` (default active and activated, plus archived with
        ``include_archived``), ``kinds``, ``created_*``/``updated_*`` (timezone-aware),
        ``metadata`` (equality per key). ``exact`` scores every candidate by brute force;
        ``as_of`` (a time or an offset) searches the versions valid then. Pass the offset
        of your last write as ``min_offset`` to find it.
        """
        from memstream.projections.search import DEFAULT_ALPHA, SearchQuery
        from memstream.projections.search import search as run

        if self.semantic is None:
            raise RuntimeError(
                f"search is disabled for store {self.path} (opened with semantic=False or "
                "$MEMSTREAM_SEMANTIC=0); reopen it with semantic=True"
            )
        if isinstance(namespaces, str):
            namespaces = [namespaces]
        q = SearchQuery(
            query=query, vector=vector, namespaces=namespaces, k=k, tags_any=tags_any,
            tags_all=tags_all, states=states, kinds=kinds, created_after=created_after,
            created_before=created_before, updated_after=updated_after,
            updated_before=updated_before, metadata=metadata or {},
            include_archived=include_archived, as_of=self._as_of(as_of), exact=exact,
            alpha=DEFAULT_ALPHA if alpha is None else alpha,
        )  # fmt: skip
        q.check(self.semantic.embedder.dim)
        self.runtime.wait_for_follower(min_offset)
        return run(
            self.runtime.duck, self.semantic, q, self.usage_tracker, self.runtime.state.memories
        )

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
        copy with ``MemoryStore.open`` to restore (its projections are rebuilt from the log).

        The store's embedding model choice (``model.json``) goes with it, and, when the
        search indexes are open, the embedding cache, so the restored store searches with
        the same model and embeds nothing again."""
        from memstream.projections.semantic import EMBEDDINGS_FILE, MODEL_FILE

        dest = self.runtime.backup(dest)
        model = self.runtime.root / MODEL_FILE
        if model.exists():
            shutil.copy2(model, dest / MODEL_FILE)
        if self.semantic is not None:
            self.semantic.embedder.cache.backup(dest / EMBEDDINGS_FILE)
        return dest

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

        The log is copied into ``into`` on a thread while the new store projects the same
        records from this store's log, so the projection does not wait for the copy; the new
        store then checks that its copy ends in the very record it projected last.
        """
        head = self.runtime.head
        stop = head + 1 if to is None else min(max(self._as_of(to) + 1, 0), head + 1)  # type: ignore[operator]
        prefix = self.runtime.replay_copy(
            into, stop, origin=f"replay to {to}" if to is not None else "replay",
            progress=progress,
        )  # fmt: skip
        try:
            embedder = None
            if self.semantic is not None:
                # The cache is derived data the replay may reuse: it never re-embeds.
                from memstream.projections.semantic import EMBEDDINGS_FILE

                self.semantic.embedder.cache.backup(Path(into) / EMBEDDINGS_FILE)
                embedder = self.semantic.embedder.embedder
            return MemoryStore.open(
                into, actor=self.actor, registry=self.registry, progress=progress,
                semantic=self.semantic is not None, embedder=embedder, prefix=prefix,
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
