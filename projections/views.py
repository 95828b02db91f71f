"""The current-memory view: every memory's current view and version chain, in memory.

:class:`MemoryViews` is a processor of decided events (:mod:`memstream.projections.processor`)
that keeps, for every memory the store knows (live, archived, expired, merged; erased ones
as tombstones without content):

- its current :class:`~memstream.schemas.memcube.MemState` (the outcome's post-state) and
  the rows of its version chain (what ``versions`` holds in DuckDB), from which a
  :class:`~memstream.schemas.views.Memory` and its :class:`~memstream.schemas.views.Version`
  list are built per read: a ``get`` or ``history`` of the current state answers without
  DuckDB;
- inverted sets of memory ids by namespace, tag, state and kind, so a search's filters
  select its candidates by set intersections instead of a DuckDB query.

It is **exact as of its offset** (:attr:`checkpoint`): after a batch is applied, every
view equals what :func:`memstream.projections.reads.get_memory` and
:func:`~memstream.projections.reads.history` return from a projection at that offset.
It is not a cache: nothing in it is served after the log moved past it, because every
decided event that changes a memory passes through :meth:`process` in log order, and a
reader that must see an offset waits for this processor's lane to reach it (the embedded
backend waits for the core projection's committed offset on every read, so a read is never
older than DuckDB's would be). The content of a new version comes from its event (create,
revise, merge) or, for a rollback, from the version it copies (held here too), so the view
never reads DuckDB after it has loaded.

On start it loads the current state and every version from DuckDB in one transaction and
returns the offset that snapshot holds: no state is kept on disk, nothing to rebuild. An
erase drops the content of the erased memories at once (text, content hash, tags, metadata
of every version), as the core projection does.

Reads run on other threads while the lane applies batches: each memory's entry is one
immutable tuple replaced whole, and the sets are read with single C-level operations
(copy, union, intersection), so a reader sees each memory either before or after an event,
never half-way.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
from memstream.schemas.memcube import MemState
from memstream.schemas.views import Memory, Parent, Version

from .duck import DuckStore
from .processor import Decided, ProcessorContext
from .reads import follow_chains

if TYPE_CHECKING:
    from .search import SearchQuery

__all__ = ["VIEWS", "MemoryViews"]

#: The processor's name (a read waits for the lane of this name).
VIEWS = "views"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_json = msgspec.json.Encoder()
_jdec = msgspec.json.Decoder()
_mp_enc = msgspec.msgpack.Encoder()
_mp_dec = msgspec.msgpack.Decoder()
_VERSION_OPS = ("create", "merge", "revise", "rollback")

# A version row: what ``versions`` holds for one (memory, version), besides the vector
# (only whether the producer supplied one, to fetch it from DuckDB when a search must score
# a memory outside the vector index).
_V_VERSION, _V_OP, _V_TEXT, _V_HASH, _V_TAGS, _V_META = 0, 1, 2, 3, 4, 5
_V_PARENTS, _V_COPY, _V_EVENT, _V_OFFSET, _V_AT, _V_ACTOR, _V_VEC = 6, 7, 8, 9, 10, 11, 12
_Row = tuple[Any, ...]
#: The ``memories`` columns a :class:`MemState` is loaded from, in its field order.
_STATE_COLUMNS = (
    "memory_id", "namespace", "subject", "kind", "state", "frozen", "version", "revision",
    "tags", "metadata", "source", "owner", "visibility", "priority", "ttl_seconds",
    "retention_days", "parents", "created_by", "updated_by", "created_offset",
    "updated_offset",
)  # fmt: skip
#: (current state, version rows in version order)
_Entry = tuple[MemState, tuple[_Row, ...]]


def _time(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _meta(md: dict[str, Any]) -> dict[str, Any]:
    """A copy the caller may change without changing the view (deep when nested)."""
    if not md:
        return {}
    for v in md.values():
        if isinstance(v, dict | list):
            return _mp_dec.decode(_mp_enc.encode(md))
    return dict(md)


def _us(when: datetime | None) -> int | None:
    if when is None:
        return None
    return (when - _EPOCH) // timedelta(microseconds=1)


class MemoryViews:
    """Current views, version chains and filter sets of every memory of one log."""

    name = VIEWS

    def __init__(self) -> None:
        #: The last offset applied (``-1``: none; valid once :attr:`ready`).
        self.checkpoint = -1
        #: Loaded and following; False before start and after a failure (reads then go
        #: to DuckDB).
        self.ready = False
        self._entries: dict[str, _Entry] = {}
        self._by_namespace: dict[str, set[str]] = {}
        self._by_tag: dict[str, set[str]] = {}
        self._by_state: dict[str, set[str]] = {}
        self._by_kind: dict[str, set[str]] = {}
        self._lock = threading.Lock()  # writers (load, process) only
        #: set by :meth:`cancel`: a store closing while the view still loads
        self._cancelled = False

    def __len__(self) -> int:
        return len(self._entries)

    # -- the processor protocol ----------------------------------------------------------------

    def start(self, ctx: ProcessorContext) -> int:
        """Load every memory and version from DuckDB in one snapshot; its offset."""
        with self._lock:
            self.ready = False
            self._clear()
            offset = self._load(ctx.duck)
            self.checkpoint = offset
            self.ready = not self._cancelled
            return offset

    def cancel(self) -> None:
        """Stop loading (the store is closing): the view stays not ready, and the lane
        only moves its checkpoint until it closes (a closing store's lanes catch up first,
        which must not wait for a load nobody will read)."""
        self._cancelled = True
        self.ready = False

    def process(self, batch: Sequence[Decided]) -> None:
        if self._cancelled:
            self.checkpoint = batch[-1][0].offset
            return
        with self._lock:
            try:
                for logged, out in batch:
                    if out.status == "accepted":
                        self._apply(logged, out)
                self.checkpoint = batch[-1][0].offset
            except BaseException:
                self.ready = False  # reads go to DuckDB; reopening the store reloads it
                raise

    def tick(self) -> None:
        pass

    def close(self) -> None:
        with self._lock:
            self.ready = False
            self._clear()

    # -- loading --------------------------------------------------------------------------------

    def _clear(self) -> None:
        self._entries = {}
        self._by_namespace, self._by_tag, self._by_state, self._by_kind = {}, {}, {}, {}

    def _load(self, duck: DuckStore) -> int:
        # Strings that repeat across memories (namespaces, subjects, states, actors, tags,
        # metadata keys...) are held once: DuckDB hands out a new object per row.
        shared: dict[Any, Any] = {}
        one = shared.setdefault

        def many(values: Any) -> tuple[Any, ...]:
            t = tuple([one(v, v) for v in values or ()])
            return one(t, t)

        def meta(raw: str | None) -> dict[str, Any]:
            if not raw:
                return {}
            return {
                one(k, k): one(v, v) if isinstance(v, str) else v
                for k, v in _jdec.decode(raw).items()
            }

        with duck.reading() as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                row = cur.execute(
                    "SELECT \"offset\" FROM projection_offsets WHERE projector = 'core'"
                ).fetchone()
                offset = int(row[0]) if row else -1
                versions: dict[str, list[_Row]] = {}
                res = cur.execute(
                    "SELECT memory_id, version, op, text, content_hash, tags, metadata, parents, "
                    'copy_from, event_id, "offset", epoch_us(recorded_at), actor, '
                    "vector IS NOT NULL FROM versions ORDER BY memory_id, version"
                )
                while (chunk := res.fetchmany(10_000)) and not self._cancelled:
                    for r in chunk:
                        versions.setdefault(r[0], []).append(
                            (
                                r[1], one(r[2], r[2]), r[3], r[4], many(r[5]), meta(r[6]),
                                tuple((p["memory_id"], p["version"]) for p in r[7] or ()),
                                r[8], r[9], r[10], r[11], one(r[12], r[12]), bool(r[13]),
                            )
                        )  # fmt: skip
                res = cur.execute(
                    f"SELECT {', '.join(_STATE_COLUMNS)}, epoch_us(created_at), "
                    "epoch_us(updated_at), epoch_us(expires_at) FROM memories"
                )
                entries = self._entries
                while (chunk := res.fetchmany(10_000)) and not self._cancelled:
                    for r in chunk:
                        chain = tuple(versions.pop(r[0], ()))
                        current = chain[-1] if chain and chain[-1][_V_VERSION] == r[6] else None
                        # the current version's tags and metadata are the state's own
                        tags = current[_V_TAGS] if current is not None else many(r[8])
                        md = meta(r[9])
                        if current is not None and current[_V_META] == md:
                            md = current[_V_META]
                        m = MemState(
                            memory_id=r[0], namespace=one(r[1], r[1]), subject=one(r[2], r[2]),
                            kind=one(r[3], r[3]), state=one(r[4], r[4]), frozen=r[5],
                            version=r[6], revision=r[7],
                            tags=tags if tuple(r[8] or ()) == tags else many(r[8]),
                            metadata=md, source=one(r[10], r[10]), owner=one(r[11], r[11]),
                            visibility=one(r[12], r[12]), priority=r[13], ttl_seconds=r[14],
                            retention_days=r[15], expires_at=r[23],
                            parents=tuple((p["memory_id"], p["version"]) for p in r[16] or ()),
                            created_at=r[21], updated_at=r[22], created_by=one(r[17], r[17]),
                            updated_by=one(r[18], r[18]), created_offset=r[19],
                            updated_offset=r[20],
                        )  # fmt: skip
                        entries[m.memory_id] = (m, chain)
                        self._index(None, m)
            finally:
                cur.execute("COMMIT")
        return offset

    # -- applying decided events ----------------------------------------------------------------

    def _index(self, old: MemState | None, new: MemState) -> None:
        """Move ``new``'s id between the filter sets (from where ``old`` put it)."""
        mid = new.memory_id
        if old is None:
            self._by_namespace.setdefault(new.namespace, set()).add(mid)
            self._by_kind.setdefault(new.kind, set()).add(mid)
        if old is None or old.state != new.state:
            if old is not None:
                self._by_state[old.state].discard(mid)
            self._by_state.setdefault(new.state, set()).add(mid)
        if old is None or old.tags != new.tags:
            gone = set(old.tags) - set(new.tags) if old is not None else ()
            for tag in gone:
                ids = self._by_tag.get(tag)
                if ids is not None:
                    ids.discard(mid)
                    if not ids:
                        del self._by_tag[tag]
            for tag in new.tags:
                self._by_tag.setdefault(tag, set()).add(mid)

    def _apply(self, logged: Any, out: Any) -> None:
        ev = logged.event
        t = ev.type
        entries = self._entries
        row: _Row | None = None
        target = out.changes[0] if out.changes else None
        if t in _VERSION_OPS and target is not None:
            p = ev.payload
            text = getattr(p, "text", None) if p is not None else None
            content_hash = logged.content_hash if text is not None else None
            has_vector = p is not None and getattr(p, "vector", None) is not None
            copy_from = None
            if t == "rollback":
                copy_from = ev.ref("to_version")
                held = entries.get(target.memory_id)
                for v in held[1] if held is not None else ():
                    if v[_V_VERSION] == copy_from:  # the core copies that version's content
                        text, content_hash, has_vector = v[_V_TEXT], v[_V_HASH], v[_V_VEC]
                        break
            if t == "revise" or t == "rollback":
                parents: tuple[tuple[str, int], ...] = ((target.memory_id, target.version - 1),)
            else:
                parents = target.parents
            row = (
                target.version, t, text, content_hash, target.tags, target.metadata, parents,
                copy_from, ev.event_id, logged.offset, logged.recorded_at, ev.actor, has_vector,
            )  # fmt: skip
        erase = t == "erase"
        for m in out.changes:
            held = entries.get(m.memory_id)
            versions = held[1] if held is not None else ()
            if row is not None and m is target:
                if not versions or versions[-1][_V_VERSION] < row[_V_VERSION]:
                    versions = (*versions, row)
                else:  # applied again (idempotent): replace that version, keep the order
                    versions = tuple(
                        sorted(
                            [v for v in versions if v[_V_VERSION] != row[_V_VERSION]] + [row],
                            key=lambda v: v[_V_VERSION],
                        )
                    )
            if erase:
                versions = tuple(
                    (v[0], v[1], None, None, (), {}, v[6], v[7], v[8], v[9], v[10], v[11], False)
                    for v in versions
                )
            entries[m.memory_id] = (m, versions)
            self._index(held[0] if held is not None else None, m)

    # -- reads ------------------------------------------------------------------------------

    def state(self, memory_id: str) -> MemState | None:
        entry = self._entries.get(memory_id)
        return entry[0] if entry is not None else None

    def get(self, memory_id: str) -> Memory | None:
        """The memory's current view (a copy of its own), or None if unknown."""
        entry = self._entries.get(memory_id)
        if entry is None:
            return None
        return _memory(entry)

    def memories(self, memory_ids: Iterable[str]) -> dict[str, Memory]:
        """Current views of those of ``memory_ids`` known here."""
        entries = self._entries
        out = {}
        for memory_id in memory_ids:
            entry = entries.get(memory_id)
            if entry is not None:
                out[memory_id] = _memory(entry)
        return out

    def history(self, memory_id: str, include_parents: bool = True) -> list[Version]:
        """What :func:`memstream.projections.reads.history` returns for the current state."""
        entries = self._entries

        def chain(mid: str, upto: int | None) -> list[Version]:
            entry = entries.get(mid)
            if entry is None:
                return []
            return [_version(mid, v) for v in entry[1] if upto is None or v[_V_VERSION] <= upto]

        return follow_chains(memory_id, include_parents, chain)

    def content(self, memory_id: str) -> tuple[str | None, str | None, bool, dict[str, Any] | None]:
        """(text, content hash, producer vector supplied, metadata) of the current version."""
        entry = self._entries.get(memory_id)
        v = _current(entry) if entry is not None else None
        if v is None:
            return None, None, False, None
        return v[_V_TEXT], v[_V_HASH], v[_V_VEC], v[_V_META]

    def select(self, q: SearchQuery) -> set[str]:
        """The ids of the memories that match ``q``'s filters now (not ``as_of``): what the
        DuckDB candidate query of :mod:`memstream.projections.search` selects."""
        constraints: list[list[set[str]]] = []
        for index, wanted in (
            (self._by_state, q.wanted_states()),
            (self._by_namespace, q.namespaces),
            (self._by_tag, q.tags_any or None),
            (self._by_kind, q.kinds or None),
        ):
            if wanted is not None:
                constraints.append([s for w in dict.fromkeys(wanted) if (s := index.get(w))])
        for tag in dict.fromkeys(q.tags_all or ()):
            s = self._by_tag.get(tag)
            constraints.append([s] if s else [])
        if q.scope is not None:  # a caller's scope: its namespaces, or its memories
            names, ones = q.scope
            parts = [s for n in names if (s := self._by_namespace.get(n))]
            constraints.append([*parts, set(ones)] if ones else parts)
        constraints.sort(key=lambda parts: sum(map(len, parts)))
        first = constraints[0]
        ids: set[str] = set().union(*first) if first else set()
        for parts in constraints[1:]:
            if not ids:
                break
            if len(parts) == 1:
                ids &= parts[0]
            elif not parts:
                ids = set()
            else:
                ids = {i for i in ids if any(i in s for s in parts)}
        return self._scan(ids, q) if ids else ids

    def _scan(self, ids: set[str], q: SearchQuery) -> set[str]:
        """Apply the filters that the sets do not hold (times, metadata), and re-check the
        states (a memory may have changed state between two set operations)."""
        wanted = set(q.wanted_states())
        c_after, c_before = _us(q.created_after), _us(q.created_before)
        u_after, u_before = _us(q.updated_after), _us(q.updated_before)
        meta = [(k, _json.encode(v)) for k, v in q.metadata.items()]
        times = any(x is not None for x in (c_after, c_before, u_after, u_before))
        entries = self._entries
        if not times and not meta:
            return {i for i in ids if (e := entries.get(i)) is not None and e[0].state in wanted}
        out = set()
        for i in ids:
            e = entries.get(i)
            if e is None:
                continue
            m = e[0]
            if m.state not in wanted:
                continue
            if c_after is not None and m.created_at < c_after:
                continue
            if c_before is not None and m.created_at > c_before:
                continue
            if u_after is not None and m.updated_at < u_after:
                continue
            if u_before is not None and m.updated_at > u_before:
                continue
            if meta:
                md = _metadata_of(e)
                if any(k not in md or _json.encode(md[k]) != v for k, v in meta):
                    continue
            out.add(i)
        return out


def _current(entry: _Entry) -> _Row | None:
    m, versions = entry
    if versions and versions[-1][_V_VERSION] == m.version:
        return versions[-1]
    for v in versions:
        if v[_V_VERSION] == m.version:
            return v
    return None


def _metadata_of(entry: _Entry) -> dict[str, Any]:
    v = _current(entry)
    return v[_V_META] if v is not None else {}


def _memory(entry: _Entry) -> Memory:
    m = entry[0]
    v = _current(entry)
    if v is None:
        text = content_hash = None
        tags: list[str] = []
        metadata: dict[str, Any] = {}
    else:
        text, content_hash = v[_V_TEXT], v[_V_HASH]
        tags, metadata = list(v[_V_TAGS]), _meta(v[_V_META])
    return Memory(
        memory_id=m.memory_id, namespace=m.namespace, subject=m.subject, kind=m.kind,
        state=m.state, frozen=m.frozen, version=m.version, revision=m.revision, text=text,
        content_hash=content_hash, tags=tags, metadata=metadata, source=m.source,
        owner=m.owner, visibility=m.visibility, priority=m.priority,
        ttl_seconds=m.ttl_seconds, retention_days=m.retention_days,
        expires_at=None if m.expires_at is None else _time(m.expires_at),
        parents=[Parent(memory_id, version) for memory_id, version in m.parents],
        created_at=_EPOCH + timedelta(microseconds=m.created_at),
        updated_at=_EPOCH + timedelta(microseconds=m.updated_at),
        created_by=m.created_by, updated_by=m.updated_by, offset=m.updated_offset,
    )  # fmt: skip


def _version(memory_id: str, v: _Row) -> Version:
    return Version(
        memory_id=memory_id, version=v[0], op=v[1], text=v[2], content_hash=v[3],
        tags=list(v[4]), metadata=_meta(v[5]), parents=[Parent(p, n) for p, n in v[6]],
        rolled_back_to=v[7], event_id=v[8], offset=v[9], recorded_at=_time(v[10]), actor=v[11],
    )  # fmt: skip
